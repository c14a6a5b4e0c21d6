//! What provisioning writes: region, CA, role alias, paths in installer configs, artifact
//! keys, the events' source.

use super::sources::{Setting, Values};

pub(super) const REGION: Setting = Setting {
    key: "region",
    env: "GGPROV_REGION",
    default: "us-east-1",
    help: "AWS region named in ARNs, endpoints and installer configs.",
};

pub(super) const DEFAULT_CA: Setting = Setting {
    key: "default_ca",
    env: "GGPROV_DEFAULT_CA",
    default: "",
    help: "Id of the CA that signs certificates when a request names no caId; empty: the CA marked default in the data directory (the development CA on the embedded default).",
};

pub(super) const ROLE_ALIAS: Setting = Setting {
    key: "role_alias",
    env: "GGPROV_ROLE_ALIAS",
    default: "GreengrassV2TokenExchangeRoleAlias",
    help: "Token-exchange role alias written into installer configs.",
};

pub(super) const DEVICE_ROOT_PATH: Setting = Setting {
    key: "device_root_path",
    env: "GGPROV_DEVICE_ROOT_PATH",
    default: "/greengrass/v2",
    help: "Greengrass root directory on devices, used for paths in installer configs.",
};

pub(super) const ARTIFACTS_PREFIX: Setting = Setting {
    key: "artifacts_prefix",
    env: "GGPROV_ARTIFACTS_PREFIX",
    default: "",
    help: "Prefix of artifact keys (`<prefix><core>/<core>/certs.zip`), e.g. `greengrass2/`.",
};

pub(super) const KEEP_ARTIFACTS: Setting = Setting {
    key: "keep_artifacts",
    env: "GGPROV_KEEP_ARTIFACTS",
    default: "false",
    help: "Keep a core's artifacts (its certs bundle holds the private key) when the core is deleted.",
};

pub(super) const EVENT_SOURCE: Setting = Setting {
    key: "event_source",
    env: "GGPROV_EVENT_SOURCE",
    default: "com.aws.cdf.greengrass2-provisioning",
    help: "EventBridge `source` of the lifecycle events.",
};

pub(super) const APPLICATION_PREFIX: Setting = Setting {
    key: "application_component_prefix",
    env: "GGPROV_APPLICATION_COMPONENT_PREFIX",
    default: "ggprov.app",
    help: "Component name prefix of Docker Compose applications: application `shop` is component `<prefix>.shop`.",
};

/// This section's settings, in the order `--help` and the README list them.
pub(super) const SETTINGS: &[&Setting] = &[
    &REGION,
    &DEFAULT_CA,
    &ROLE_ALIAS,
    &DEVICE_ROOT_PATH,
    &ARTIFACTS_PREFIX,
    &KEEP_ARTIFACTS,
    &EVENT_SOURCE,
    &APPLICATION_PREFIX,
];

/// How things are provisioned and described.
#[derive(Debug, Clone)]
pub struct ProvisioningSettings {
    pub region: String,
    /// The CA used when a request names none.
    pub default_ca: Option<String>,
    pub role_alias: String,
    pub device_root_path: String,
    pub artifacts_prefix: String,
    pub keep_artifacts: bool,
    /// EventBridge `source` of lifecycle events.
    pub event_source: String,
    /// Component name prefix of applications.
    pub application_prefix: String,
}

impl ProvisioningSettings {
    pub(super) fn read(v: &mut Values) -> Option<Self> {
        let region = v.text(&REGION);
        let default_ca = v.optional(&DEFAULT_CA);
        let role_alias = v.text(&ROLE_ALIAS);
        let device_root_path = v.text(&DEVICE_ROOT_PATH);
        let artifacts_prefix = v.text_of(&ARTIFACTS_PREFIX).trim().trim_start_matches('/').to_owned();
        let keep_artifacts = v.flag(&KEEP_ARTIFACTS);
        let event_source = v.text(&EVENT_SOURCE);
        let application_prefix = v.parse(&APPLICATION_PREFIX, |t| {
            let valid = !t.is_empty()
                && t.len() <= 60
                && !t.starts_with("aws.")
                && t.split('.').all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
            if valid {
                Ok(t.to_owned())
            } else {
                Err("must be dot-separated ASCII letters, digits, '_' and '-' (at most 60 characters, not starting with 'aws.')".into())
            }
        });
        Some(Self {
            region: region?,
            default_ca,
            role_alias: role_alias?,
            device_root_path: device_root_path?,
            artifacts_prefix,
            keep_artifacts: keep_artifacts?,
            event_source: event_source?,
            application_prefix: application_prefix?,
        })
    }
}
