-- Client devices associated with Greengrass core devices.
CREATE TABLE client_device_associations (
    core_name      TEXT    NOT NULL,
    thing_name     TEXT    NOT NULL,
    associated_at  INTEGER NOT NULL,
    PRIMARY KEY (core_name, thing_name)
) WITHOUT ROWID;
