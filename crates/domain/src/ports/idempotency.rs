//! Idempotency keys: a client that sends `Idempotency-Key` with a POST gets the same answer
//! for the same request again, for a day, however often it retries.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::time::Timestamp;

/// The answer recorded for a key: what the client is given again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedResponse {
    pub status: u16,
    /// The headers worth repeating (`content-type`, `location`, `x-taskid`, ...).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What a key says about a request that carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyClaim {
    /// First use (or the earlier one was abandoned): run the request, then complete or abandon.
    Started,
    /// The same request was answered already: answer this again.
    Replay(RecordedResponse),
    /// The same request is being answered right now by another call.
    InProgress,
    /// The key was used for a different request.
    Mismatch,
}

/// Records of idempotency keys, by key, with a fingerprint of the request they were used for.
#[async_trait]
pub trait IdempotencyRecords: Send + Sync {
    /// Claims `key` for the request with `fingerprint`. A pending claim older than `pending_for`
    /// counts as abandoned (its process died); records older than `keep_for` count as absent.
    async fn begin_idempotent(
        &self,
        key: &str,
        fingerprint: &str,
        now: Timestamp,
        pending_for: Duration,
        keep_for: Duration,
    ) -> Result<IdempotencyClaim, StoreError>;

    /// Records the answer of a started request.
    async fn complete_idempotent(
        &self,
        key: &str,
        fingerprint: &str,
        response: &RecordedResponse,
    ) -> Result<(), StoreError>;

    /// Forgets a started request that failed in a way worth retrying (a 5xx).
    async fn abandon_idempotent(&self, key: &str, fingerprint: &str) -> Result<(), StoreError>;
}
