//! Job messages: the contract between the API (which enqueues) and the workers.

use serde::{Deserialize, Serialize};

use crate::ports::Job;
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

impl TaskBatch {
    pub fn job(&self) -> Job {
        Job { kind: TASK_BATCH.to_owned(), payload: serde_json::to_value(self).expect("batches serialise") }
    }
}

/// Kind of the job that expands a deployment task's targets into cores.
pub const DEPLOYMENT_EXPAND: &str = "deployment_expand";

/// Expand the targets of a deployment task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentExpand {
    pub task_id: TaskId,
}

impl DeploymentExpand {
    pub fn job(&self) -> Job {
        Job { kind: DEPLOYMENT_EXPAND.to_owned(), payload: serde_json::to_value(self).expect("jobs serialise") }
    }
}
