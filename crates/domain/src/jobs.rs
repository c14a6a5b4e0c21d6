//! Job messages: the contract between the API (which enqueues) and the workers.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::ports::Job;

/// A job's payload type, tied to its kind: what the API enqueues and a worker runs.
pub trait JobPayload: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The job's kind on the queue.
    const KIND: &'static str;

    /// The queue message for this payload.
    fn job(&self) -> Job {
        Job { kind: Self::KIND.to_owned(), payload: serde_json::to_value(self).expect("job payloads serialise") }
    }
}
use crate::task::TaskId;
use crate::thing::ThingName;

/// Kind of a batch of a task's items (core or device task: the worker reads the task).
pub const TASK_BATCH: &str = "task_batch";

/// A batch of task items: ids only, workers re-read the rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskBatch {
    pub task_id: TaskId,
    pub items: Vec<ThingName>,
}

impl JobPayload for TaskBatch {
    const KIND: &'static str = TASK_BATCH;
}

/// Kind of the job that expands a deployment task's targets into cores.
pub const DEPLOYMENT_EXPAND: &str = "deployment_expand";

/// Expand the targets of a deployment task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentExpand {
    pub task_id: TaskId,
}

impl JobPayload for DeploymentExpand {
    const KIND: &'static str = DEPLOYMENT_EXPAND;
}
