-- The certificate inventory (issue 19): each core's and device's certificate as JSON on its
-- record, and an index of every recorded certificate by id with the ACTIVE ones by expiry,
-- written in the same transaction as the record (crates/store-sqlite/src/certificates.rs).
-- Things recorded before this migration have no certificate until they are re-provisioned.
ALTER TABLE cores ADD COLUMN certificate TEXT;
ALTER TABLE devices ADD COLUMN certificate TEXT;
CREATE TABLE certificates (
    id          TEXT    NOT NULL PRIMARY KEY,
    thing_name  TEXT    NOT NULL,
    thing_kind  TEXT    NOT NULL,
    ca          TEXT    NOT NULL,
    not_after   INTEGER NOT NULL,
    status      TEXT    NOT NULL,
    doc         TEXT    NOT NULL
) WITHOUT ROWID;
CREATE INDEX certificates_by_thing ON certificates (thing_name);
CREATE INDEX certificates_active_by_expiry ON certificates (not_after, id) WHERE status = 'ACTIVE';
