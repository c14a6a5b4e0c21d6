-- The local cloud's own state: what AWS IoT and Greengrass V2 would hold.
CREATE TABLE things (
    name        TEXT NOT NULL PRIMARY KEY,
    thing_type  TEXT,
    attributes  TEXT NOT NULL DEFAULT '{}',
    created_at  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE thing_groups (
    name        TEXT NOT NULL PRIMARY KEY,
    created_at  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE thing_group_members (
    group_name  TEXT NOT NULL,
    thing_name  TEXT NOT NULL,
    PRIMARY KEY (group_name, thing_name)
) WITHOUT ROWID;
CREATE INDEX thing_group_members_by_thing ON thing_group_members (thing_name);

CREATE TABLE ca_certificates (
    id          TEXT NOT NULL PRIMARY KEY,
    pem         TEXT NOT NULL,
    created_at  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE certificates (
    id          TEXT NOT NULL PRIMARY KEY,
    pem         TEXT NOT NULL,
    ca_id       TEXT,
    status      TEXT NOT NULL,
    created_at  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE policies (
    name        TEXT NOT NULL PRIMARY KEY,
    document    TEXT NOT NULL,
    created_at  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE policy_targets (
    policy_name TEXT NOT NULL,
    target      TEXT NOT NULL,
    PRIMARY KEY (policy_name, target)
) WITHOUT ROWID;
CREATE INDEX policy_targets_by_target ON policy_targets (target);

CREATE TABLE thing_principals (
    thing_name  TEXT NOT NULL,
    principal   TEXT NOT NULL,
    PRIMARY KEY (thing_name, principal)
) WITHOUT ROWID;
CREATE INDEX thing_principals_by_principal ON thing_principals (principal);

CREATE TABLE role_aliases (
    alias       TEXT NOT NULL PRIMARY KEY,
    role_arn    TEXT NOT NULL,
    created_at  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE core_devices (
    name                TEXT NOT NULL PRIMARY KEY,
    status              TEXT NOT NULL,
    core_version        TEXT,
    platform            TEXT,
    architecture        TEXT,
    last_status_update  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE installed_components (
    core_name   TEXT NOT NULL,
    name        TEXT NOT NULL,
    version     TEXT NOT NULL,
    PRIMARY KEY (core_name, name)
) WITHOUT ROWID;

CREATE TABLE core_behaviors (
    core_name           TEXT NOT NULL PRIMARY KEY,
    deployment_outcome  TEXT NOT NULL,
    delay_ms            INTEGER NOT NULL
) WITHOUT ROWID;
