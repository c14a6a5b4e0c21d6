-- Tasks of both kinds share one pair of tables: core tasks and client-device tasks of a core.
ALTER TABLE core_tasks RENAME TO tasks;
ALTER TABLE core_task_items RENAME TO task_items;
ALTER TABLE tasks ADD COLUMN kind TEXT NOT NULL DEFAULT 'core';   -- 'core' or 'device'
ALTER TABLE tasks ADD COLUMN core_name TEXT;                       -- device tasks: their core
CREATE INDEX tasks_by_kind ON tasks (kind, id);

CREATE TABLE devices (
    name                   TEXT    NOT NULL PRIMARY KEY,
    core_name              TEXT    NOT NULL,
    provisioning_template  TEXT    NOT NULL,
    artifacts              TEXT    NOT NULL DEFAULT '{}',
    created_at             INTEGER NOT NULL,
    updated_at             INTEGER
) WITHOUT ROWID;
CREATE INDEX devices_by_core ON devices (core_name, name);
