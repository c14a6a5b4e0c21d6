-- Certificate rotation on simulated cores: the key and CSR a core made for each request (the
-- key is the device's own, kept on its "disk"), what it did with the certificate it was
-- handed, and the certificate it connects with since.
CREATE TABLE device_rotations (
    core_name       TEXT    NOT NULL,
    request         TEXT    NOT NULL,
    key_pem         TEXT    NOT NULL,
    csr             TEXT    NOT NULL,
    outcome         TEXT,
    certificate_id  TEXT,
    reason          TEXT,
    PRIMARY KEY (core_name, request)
) WITHOUT ROWID;
CREATE TABLE device_credentials (
    core_name         TEXT NOT NULL PRIMARY KEY,
    certificate_id    TEXT NOT NULL,
    public_key_sha256 TEXT NOT NULL
) WITHOUT ROWID;
ALTER TABLE core_behaviors ADD COLUMN rotation_fails INTEGER NOT NULL DEFAULT 0;
