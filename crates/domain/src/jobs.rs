//! Job messages: the contract between the API (which enqueues) and the workers.

use serde::{Deserialize, Serialize};

use crate::ports::Job;
use crate::task::TaskId;
use crate::thing::ThingName;

/// Kind of a batch of a core task's items.
pub const CORE_TASK_BATCH: &str = "core_task_batch";

/// A batch of core-task items: ids only, workers re-read the rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CoreTaskBatch {
    pub task_id: TaskId,
    pub cores: Vec<ThingName>,
}

impl CoreTaskBatch {
    pub fn job(&self) -> Job {
        Job { kind: CORE_TASK_BATCH.to_owned(), payload: serde_json::to_value(self).expect("batches serialise") }
    }
}
