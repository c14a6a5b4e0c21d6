-- An item in progress is held by one queue message for a lease, so that a duplicate delivery
-- (another message for the same items) does not work on it at the same time.
ALTER TABLE task_items ADD COLUMN holder TEXT;
ALTER TABLE task_items ADD COLUMN lease_until INTEGER;
-- Journal saves are conditional on the revision read; existing journals start at 1.
ALTER TABLE provisioning_journals ADD COLUMN rev INTEGER NOT NULL DEFAULT 1;
