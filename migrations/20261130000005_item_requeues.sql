-- When the sweeper last queued an item again: it does so at most once per sweep period.
ALTER TABLE task_items ADD COLUMN requeued_at INTEGER;
