//! Tasks: asynchronous, batched work on many items (cores, devices, deployments).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Status of a task and of each item in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TaskStatus {
    Waiting,
    InProgress,
    Success,
    Failure,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "Waiting",
            Self::InProgress => "InProgress",
            Self::Success => "Success",
            Self::Failure => "Failure",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "Waiting" => Self::Waiting,
            "InProgress" => Self::InProgress,
            "Success" => Self::Success,
            "Failure" => Self::Failure,
            _ => return None,
        })
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Success | Self::Failure)
    }

    /// A task's status from its items' statuses: `Waiting` until an item starts, `Success`
    /// when all succeeded, `Failure` when all ended and one failed, `InProgress` otherwise.
    pub fn of_items(statuses: impl IntoIterator<Item = TaskStatus>) -> Self {
        let (mut total, mut waiting, mut success, mut failure) = (0, 0, 0, 0);
        for s in statuses {
            total += 1;
            match s {
                Self::Waiting => waiting += 1,
                Self::Success => success += 1,
                Self::Failure => failure += 1,
                Self::InProgress => {}
            }
        }
        if total == 0 || waiting == total {
            Self::Waiting
        } else if success + failure == total {
            if failure > 0 { Self::Failure } else { Self::Success }
        } else {
            Self::InProgress
        }
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `Create` or `Delete`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskType {
    Create,
    Delete,
}

impl TaskType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "Create",
            Self::Delete => "Delete",
        }
    }
}

/// A task id: 9 characters from `A-Z a-z 0-9 _ -`, as the original's shortid.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(String);

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";

impl TaskId {
    /// A new random id from 54 random bits (9 × 6).
    pub fn generate() -> Self {
        let mut bits = u64::from_le_bytes(*uuid::Uuid::new_v4().as_bytes().first_chunk::<8>().expect("16 bytes"));
        let id = (0..9)
            .map(|_| {
                let c = ALPHABET[(bits & 63) as usize] as char;
                bits >>= 6;
                c
            })
            .collect();
        Self(id)
    }

    /// An id as given by a client; any text is accepted (an unknown id is simply not found).
    pub fn from_text(text: &str) -> Self {
        Self(text.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_are_nine_url_safe_characters_and_differ() {
        let ids: std::collections::BTreeSet<String> = (0..1000).map(|_| TaskId::generate().0).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|id| id.len() == 9 && id.bytes().all(|b| ALPHABET.contains(&b))));
    }

    #[test]
    fn task_status_follows_its_items() {
        use TaskStatus::*;
        assert_eq!(TaskStatus::of_items([Waiting, Waiting]), Waiting);
        assert_eq!(TaskStatus::of_items([Success, Waiting]), InProgress);
        assert_eq!(TaskStatus::of_items([Success, Success]), Success);
        assert_eq!(TaskStatus::of_items([Success, Failure]), Failure);
        assert_eq!(TaskStatus::of_items([InProgress, Failure]), InProgress);
    }
}
