-- Idempotency keys of POST requests: the request's fingerprint and, once answered, the answer
-- to give again. Rows expire after a day (deleted lazily as new keys arrive).
CREATE TABLE idempotency_keys (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    response TEXT,                -- JSON RecordedResponse; NULL while pending
    created_at INTEGER NOT NULL   -- ms; a pending row older than the pending window is abandoned
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
