//! Tasks: asynchronous, batched work on many items (cores, devices, deployments).

use std::fmt;

use serde::{Deserialize, Serialize};

/// The most items (cores, devices, deployment target names) one task request may name: a
/// 10,000-core fleet in one task, validated and stored within a request's time.
pub const MAX_TASK_ITEMS: usize = 10_000;

/// The most bytes a deployment task's `targets` may take: the task is one record, and a
/// DynamoDB record holds at most 400 KB with everything else in it.
pub const MAX_TARGETS_BYTES: usize = 256 * 1024;

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

    /// A task's status from its items' statuses (see [`ItemCounts::task_status`]).
    pub fn of_items(statuses: impl IntoIterator<Item = TaskStatus>) -> Self {
        let mut counts = ItemCounts::default();
        for s in statuses {
            counts.add(s, 1);
        }
        counts.task_status()
    }
}

/// How many items of a task are in each status: what stores keep (or count) so that a task's
/// status is derived by the one rule here, never by an adapter of its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ItemCounts {
    pub total: i64,
    pub waiting: i64,
    pub success: i64,
    pub failure: i64,
}

impl ItemCounts {
    /// Counts `n` items (negative to remove) of status `status`.
    pub fn add(&mut self, status: TaskStatus, n: i64) {
        self.total += n;
        match status {
            TaskStatus::Waiting => self.waiting += n,
            TaskStatus::Success => self.success += n,
            TaskStatus::Failure => self.failure += n,
            TaskStatus::InProgress => {}
        }
    }

    /// The change of counts when one item moves from `from` to `to`.
    pub fn transition(from: TaskStatus, to: TaskStatus) -> Self {
        let mut delta = Self::default();
        delta.add(from, -1);
        delta.add(to, 1);
        delta
    }

    /// `Waiting` until an item starts, `Success` when all succeeded, `Failure` when all ended
    /// and one failed, `InProgress` otherwise.
    pub fn task_status(&self) -> TaskStatus {
        if self.total == 0 || self.waiting == self.total {
            TaskStatus::Waiting
        } else if self.success + self.failure == self.total {
            if self.failure > 0 { TaskStatus::Failure } else { TaskStatus::Success }
        } else {
            TaskStatus::InProgress
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
    /// A new random id: nine URL-safe characters from 60 random bits. The first is a letter or
    /// digit, so an id never starts with `-` and reads as an argument, not an option, in a shell
    /// (`ggprov tasks watch ID`).
    pub fn generate() -> Self {
        // The low 62 bits of a v4 UUID are random (its version and variant bits are higher).
        let mut bits = uuid::Uuid::new_v4().as_u128() as u64;
        let mut id = String::with_capacity(9);
        // 12 bits modulo 62: 4096 = 66 × 62 + 4, so the first character's bias is below 0.1 %.
        id.push(ALPHABET[((bits & 0xfff) % 62) as usize] as char);
        bits >>= 12;
        for _ in 0..8 {
            id.push(ALPHABET[(bits & 63) as usize] as char);
            bits >>= 6;
        }
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
    fn task_ids_never_start_with_a_hyphen_and_use_the_whole_alphabet() {
        let ids: Vec<String> = (0..20_000).map(|_| TaskId::generate().0).collect();
        assert!(ids.iter().all(|id| id.as_bytes()[0].is_ascii_alphanumeric()), "a shell would read `-…` as an option");
        for position in 0..9 {
            let used: std::collections::BTreeSet<u8> = ids.iter().map(|id| id.as_bytes()[position]).collect();
            let expected = if position == 0 { 62 } else { 64 };
            assert_eq!(used.len(), expected, "characters seen at position {position}");
        }
    }

    #[test]
    fn task_status_follows_its_items() {
        use TaskStatus::*;
        assert_eq!(TaskStatus::of_items([Waiting, Waiting]), Waiting);
        assert_eq!(TaskStatus::of_items([Success, Waiting]), InProgress);
        assert_eq!(TaskStatus::of_items([Success, Success]), Success);
        assert_eq!(TaskStatus::of_items([Success, Failure]), Failure);
        assert_eq!(TaskStatus::of_items([InProgress, Failure]), InProgress);
        assert_eq!(TaskStatus::of_items([]), Waiting);
    }

    #[test]
    fn item_transitions_move_counts_without_changing_the_total() {
        let mut counts = ItemCounts { total: 2, waiting: 2, success: 0, failure: 0 };
        let delta = ItemCounts::transition(TaskStatus::Waiting, TaskStatus::Success);
        counts.total += delta.total;
        counts.waiting += delta.waiting;
        counts.success += delta.success;
        assert_eq!(counts, ItemCounts { total: 2, waiting: 1, success: 1, failure: 0 });
        assert_eq!(counts.task_status(), TaskStatus::InProgress);
    }
}
