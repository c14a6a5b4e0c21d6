//! AWS mode's resources.

use super::sources::{Setting, Values};

pub(super) const AWS_TABLE: Setting = Setting {
    key: "aws_table",
    env: "GGPROV_AWS_TABLE",
    default: "ggprov",
    help: "AWS mode: the DynamoDB table (key design in docs/aws.md).",
};

pub(super) const AWS_WORK_QUEUE_URL: Setting = Setting {
    key: "aws_work_queue_url",
    env: "GGPROV_AWS_WORK_QUEUE_URL",
    default: "",
    help: "AWS mode: URL of the SQS work queue (required unless GGPROV_AWS_CREATE_RESOURCES creates `<table>-work`).",
};

pub(super) const AWS_WORK_DLQ_URL: Setting = Setting {
    key: "aws_work_dlq_url",
    env: "GGPROV_AWS_WORK_DLQ_URL",
    default: "",
    help: "AWS mode: URL of the work queue's dead-letter queue (required with GGPROV_AWS_WORK_QUEUE_URL).",
};

pub(super) const AWS_STATUS_QUEUE_URL: Setting = Setting {
    key: "aws_status_queue_url",
    env: "GGPROV_AWS_STATUS_QUEUE_URL",
    default: "",
    help: "AWS mode: URL of the SQS queue EventBridge feeds with deployment status and job execution events; empty: outcomes come from reconciliation only.",
};

pub(super) const AWS_ROTATION_QUEUE_URL: Setting = Setting {
    key: "aws_rotation_queue_url",
    env: "GGPROV_AWS_ROTATION_QUEUE_URL",
    default: "",
    help: "AWS mode: URL of the SQS queue the IoT topic rule feeds with the rotation component's CSRs and outcomes (infra/); empty: certificate rotation tasks are refused (409 ROTATION_UNAVAILABLE).",
};

pub(super) const AWS_BUCKET: Setting = Setting {
    key: "aws_bucket",
    env: "GGPROV_AWS_BUCKET",
    default: "",
    help: "AWS mode: S3 bucket of the artifacts (required unless GGPROV_AWS_CREATE_RESOURCES creates `<table>-artifacts`).",
};

pub(super) const AWS_KMS_KEY: Setting = Setting {
    key: "aws_kms_key",
    env: "GGPROV_AWS_KMS_KEY",
    default: "",
    help: "AWS mode: KMS key (id or ARN) for SSE-KMS of artifacts; empty: SSE-S3.",
};

pub(super) const AWS_QUEUE_WAIT_SECS: Setting = Setting {
    key: "aws_queue_wait_secs",
    env: "GGPROV_AWS_QUEUE_WAIT_SECS",
    default: "2",
    help: "AWS mode: SQS long polling of idle workers, 0 to 20 seconds (0: short polling, for emulators that serve one request at a time).",
};

pub(super) const AWS_PRESIGN_SECS: Setting = Setting {
    key: "aws_presign_secs",
    env: "GGPROV_AWS_PRESIGN_SECS",
    default: "0",
    help: "AWS mode: add presigned S3 download links, valid this many seconds, to a core's artifacts in GET /cores/{name}; 0: no links (a certs bundle holds the core's private key: keep it short).",
};

pub(super) const AWS_EVENT_BUS: Setting = Setting {
    key: "aws_event_bus",
    env: "GGPROV_AWS_EVENT_BUS",
    default: "",
    help: "AWS mode: EventBridge bus the lifecycle events are published to; empty: events are kept (GET /events) but not published.",
};

pub(super) const AWS_CREATE_RESOURCES: Setting = Setting {
    key: "aws_create_resources",
    env: "GGPROV_AWS_CREATE_RESOURCES",
    default: "false",
    help: "AWS mode: create the table, queues and bucket when missing (development against moto or a sandbox account; production uses infra/).",
};

/// This section's settings, in the order `--help` and the README list them.
pub(super) const SETTINGS: &[&Setting] = &[
    &AWS_TABLE,
    &AWS_WORK_QUEUE_URL,
    &AWS_WORK_DLQ_URL,
    &AWS_STATUS_QUEUE_URL,
    &AWS_ROTATION_QUEUE_URL,
    &AWS_BUCKET,
    &AWS_KMS_KEY,
    &AWS_QUEUE_WAIT_SECS,
    &AWS_PRESIGN_SECS,
    &AWS_EVENT_BUS,
    &AWS_CREATE_RESOURCES,
];

/// The AWS resources of AWS mode, as the AWS backend takes them.
pub type AwsSettings = ggprov_aws::AwsResources;

/// Reading and checking the section.
pub(super) trait ReadAws: Sized {
    fn read(v: &mut Values) -> Option<Self>;
    fn require_resources(self, v: &mut Values) -> Option<Self>;
}

impl ReadAws for AwsSettings {
    /// The settings as given (checked for form; see `require_resources`).
    fn read(v: &mut Values) -> Option<Self> {
        let create_resources = v.flag(&AWS_CREATE_RESOURCES);
        let presign_secs = v.number(&AWS_PRESIGN_SECS, 0, 604_800);
        let queue_wait_secs = v.number(&AWS_QUEUE_WAIT_SECS, 0, 20);
        Some(Self {
            table: v.optional(&AWS_TABLE).unwrap_or_default(),
            work_queue_url: v.optional(&AWS_WORK_QUEUE_URL),
            work_dlq_url: v.optional(&AWS_WORK_DLQ_URL),
            status_queue_url: v.optional(&AWS_STATUS_QUEUE_URL),
            rotation_queue_url: v.optional(&AWS_ROTATION_QUEUE_URL),
            bucket: v.optional(&AWS_BUCKET),
            kms_key: v.optional(&AWS_KMS_KEY),
            event_bus: v.optional(&AWS_EVENT_BUS),
            create_resources: create_resources?,
            presign_secs: Some(presign_secs?).filter(|s| *s > 0),
            queue_wait_secs: queue_wait_secs?,
        })
    }

    /// In AWS mode: the table is named, and the queues and bucket exist unless ggprov creates them.
    fn require_resources(self, v: &mut Values) -> Option<Self> {
        if self.table.is_empty() {
            v.fail(&AWS_TABLE, "must not be empty");
        }
        if !self.create_resources {
            for (missing, setting) in [
                (self.work_queue_url.is_none(), &AWS_WORK_QUEUE_URL),
                (self.work_dlq_url.is_none(), &AWS_WORK_DLQ_URL),
                (self.bucket.is_none(), &AWS_BUCKET),
            ] {
                if missing {
                    v.fail(
                        setting,
                        "required with GGPROV_BACKEND=aws (the stack outputs of infra/ name it), unless GGPROV_AWS_CREATE_RESOURCES=true",
                    );
                }
            }
        }
        Some(self)
    }
}
