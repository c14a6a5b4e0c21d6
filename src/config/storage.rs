//! Where state and work live: the backend, and the embedded default's data directory.

use std::path::PathBuf;

use super::aws::{AwsSettings, ReadAws as _};
use super::sources::{Setting, Values};
pub use ggprov_embedded::ArtifactSync;

pub(super) const DATA_DIR: Setting = Setting {
    key: "data_dir",
    env: "GGPROV_DATA_DIR",
    default: "./data",
    help: "Directory of the embedded default's state (SQLite database); created if missing.",
};

pub(super) const BACKEND: Setting = Setting {
    key: "backend",
    env: "GGPROV_BACKEND",
    default: "embedded",
    help: "`embedded`: SQLite and the local cloud in the data directory. `aws`: DynamoDB, SQS, S3, EventBridge, IoT, Greengrass V2 and SSM (region, credentials and endpoints from the standard AWS environment).",
};

pub(super) const ARTIFACT_SYNC: Setting = Setting {
    key: "artifact_sync",
    env: "GGPROV_ARTIFACT_SYNC",
    default: "filesystem",
    help: "How the embedded default makes an artifact (certs bundle, installer config) durable before its write returns. `filesystem`: one `syncfs` of the data directory's file system for the files written meanwhile (Linux; fastest while ggprov is that disk's main writer). `file`: an `fsync` of each file (for a data directory on a disk that other programs write heavily).",
};

/// This section's settings, in the order `--help` and the README list them.
pub(super) const SETTINGS: &[&Setting] = &[&DATA_DIR, &BACKEND, &ARTIFACT_SYNC];

/// Where state and work live. (Read once at start: the AWS variant's size does not matter.)
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)]
pub enum Backend {
    Embedded,
    Aws(AwsSettings),
}

/// The backend and the data directory (the embedded default's state; CA files).
#[derive(Debug, Clone)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
    pub backend: Backend,
    /// How the embedded default's artifacts are made durable.
    pub artifact_sync: ArtifactSync,
}

impl StorageConfig {
    pub(super) fn read(v: &mut Values) -> Option<Self> {
        let data_dir = v.parse(&DATA_DIR, |t| {
            if t.is_empty() { Err("must name a directory, e.g. ./data".into()) } else { Ok(PathBuf::from(t)) }
        });
        let aws = AwsSettings::read(v);
        let backend = v.parse(&BACKEND, |t| match t.to_ascii_lowercase().as_str() {
            "embedded" => Ok(None),
            "aws" => Ok(Some(())),
            _ => Err("must be embedded or aws".into()),
        });
        let artifact_sync = v.parse(&ARTIFACT_SYNC, |t| match t.to_ascii_lowercase().as_str() {
            "filesystem" => Ok(ArtifactSync::FileSystem),
            "file" => Ok(ArtifactSync::EachFile),
            _ => Err("must be filesystem or file".into()),
        });
        let backend = match backend? {
            None => Backend::Embedded,
            Some(()) => Backend::Aws(aws.and_then(|aws| aws.require_resources(v))?),
        };
        Some(Self { data_dir: data_dir?, backend, artifact_sync: artifact_sync? })
    }

    /// Path of the SQLite database.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("ggprov.sqlite")
    }
}
