-- A delete marks the application first (decision 83): from then on no version is appended or
-- published, so a racing update cannot leave a component version behind the delete.
ALTER TABLE application_heads ADD COLUMN deleting INTEGER NOT NULL DEFAULT 0;
