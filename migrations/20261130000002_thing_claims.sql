-- One owner per thing: while a core or client-device task has an open item for a name, that
-- name is claimed by the task. A new task that names it is refused (409) in the same
-- transaction that would have stored it; the claim goes when the item ends. Open items at the
-- time of this migration claim their names now.
CREATE TABLE thing_claims (
    name TEXT PRIMARY KEY,
    task_id TEXT NOT NULL,
    kind TEXT NOT NULL,          -- core | device
    created_at INTEGER NOT NULL
);
INSERT OR IGNORE INTO thing_claims (name, task_id, kind, created_at)
SELECT i.name, i.task_id, t.kind, i.created_at
FROM task_items i JOIN tasks t ON t.id = i.task_id
WHERE t.kind IN ('core', 'device') AND i.status IN ('Waiting', 'InProgress');
