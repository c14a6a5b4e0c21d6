//! Configuration: `GGPROV_*` environment variables, optionally a TOML file
//! (`GGPROV_CONFIG` / `--config`), validated at start-up. Environment variables win over the
//! file, the file over the defaults.
//!
//! One typed section per concern, each in its own file with its settings declared beside the
//! code that reads them: [`http`], [`telemetry`], [`storage`] (with [`aws`]), [`provisioning`],
//! [`worker`], [`rate_limit`], [`local_cloud`], [`auth`]. `ggprov serve --help`, the README
//! table and the loader all read the same declarations ([`settings`]).

pub mod auth;
pub mod aws;
pub mod http;
pub mod local_cloud;
pub mod provisioning;
pub mod rate_limit;
mod sources;
pub mod storage;
pub mod telemetry;
pub mod worker;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

pub use auth::AuthMode;
pub use aws::AwsSettings;
pub use http::HttpSettings;
pub use local_cloud::LocalCloudConfig;
pub use provisioning::ProvisioningSettings;
pub use rate_limit::RateLimit;
pub use sources::Setting;
pub use storage::{Backend, StorageConfig};
pub use telemetry::{LogFormat, TelemetrySettings};
pub use worker::{Role, WorkerConfig};

use sources::Values;

/// Environment variable naming the TOML configuration file.
pub const CONFIG_FILE_ENV: &str = "GGPROV_CONFIG";

/// Every setting ggprov reads, section by section.
pub fn settings() -> impl Iterator<Item = &'static Setting> {
    [
        http::SETTINGS,
        telemetry::SETTINGS,
        storage::SETTINGS,
        provisioning::SETTINGS,
        worker::SETTINGS,
        rate_limit::SETTINGS,
        local_cloud::SETTINGS,
        auth::SETTINGS,
        aws::SETTINGS,
    ]
    .into_iter()
    .flatten()
    .copied()
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub http: HttpSettings,
    pub telemetry: TelemetrySettings,
    pub storage: StorageConfig,
    pub provisioning: ProvisioningSettings,
    pub worker: WorkerConfig,
    pub rate_limit: RateLimit,
    pub local_cloud: LocalCloudConfig,
    pub auth: AuthMode,
    /// `GGPROV_*` variables that name no setting (probably typos); reported at start-up.
    pub unknown_env: Vec<String>,
}

/// Everything wrong with a configuration, one line per problem.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError(pub Vec<String>);

impl Config {
    /// Loads from the process environment and the optional file.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        let file = file.map(Path::to_path_buf).or_else(|| std::env::var_os(CONFIG_FILE_ENV).map(PathBuf::from));
        Self::from_sources(env, file.as_deref())
    }

    /// Defaults, overlaid by the TOML file, overlaid by the environment.
    pub fn from_sources(
        env: impl IntoIterator<Item = (String, String)>,
        file: Option<&Path>,
    ) -> Result<Self, ConfigError> {
        let all: Vec<&'static Setting> = settings().collect();
        let mut values = Values::defaults(&all);
        if let Some(path) = file {
            values.overlay_file(&all, path);
        }
        let unknown_env = values.overlay_env(&all, env, &[CONFIG_FILE_ENV]);
        let v = &mut values;
        // Every section is read (so every problem is reported), then the whole is assembled.
        let http = HttpSettings::read(v);
        let telemetry = TelemetrySettings::read(v);
        let storage = StorageConfig::read(v);
        let provisioning = ProvisioningSettings::read(v);
        let worker = WorkerConfig::read(v);
        let rate_limit = RateLimit::read(v);
        let local_cloud = LocalCloudConfig::read(v);
        let auth = AuthMode::read(v);
        // Safe by default: no unauthenticated API beyond this machine unless asked for.
        if let (Some(http), Some(AuthMode::None)) = (&http, &auth)
            && !http.listen.ip().is_loopback()
            && !v.is_given(&auth::AUTH)
        {
            v.problems.push(format!(
                "GGPROV_LISTEN={} serves beyond this machine, and no authentication is configured: set GGPROV_AUTH to \
                 api-key, jwt or iam, or set GGPROV_AUTH=none to serve without authentication on purpose (for example \
                 behind a proxy that authenticates)",
                http.listen
            ));
        }
        let complete = (|| {
            Some(Self {
                http: http?,
                telemetry: telemetry?,
                storage: storage?,
                provisioning: provisioning?,
                worker: worker?,
                rate_limit: rate_limit?,
                local_cloud: local_cloud?,
                auth: auth?,
                unknown_env,
            })
        })();
        match complete {
            Some(config) if values.problems.is_empty() => Ok(config),
            _ => Err(ConfigError(values.problems)),
        }
    }

    /// Whether state and work live on AWS.
    pub fn is_aws(&self) -> bool {
        matches!(self.storage.backend, Backend::Aws(_))
    }

    /// The quotas the workers are paced at (`None`: no pacing).
    pub fn pacing(&self) -> Option<std::collections::BTreeMap<String, f64>> {
        self.rate_limit.quotas(self.is_aws())
    }
}

/// The settings as a help text for `ggprov serve --help`.
pub fn help_text() -> String {
    let mut text = String::from(
        "Configuration (environment variables; the same keys in lower case work in a TOML file given with --config or GGPROV_CONFIG):\n",
    );
    for s in settings() {
        let default = if s.default.is_empty() { "(empty)".to_owned() } else { s.default.to_owned() };
        let _ = write!(text, "\n  {} [default: {default}]\n      {}\n", s.env, s.help);
    }
    text
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use ggprov_api::CorsOrigins;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let config = Config::from_sources(env(&[]), None).unwrap();
        assert_eq!(config.http.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.storage.data_dir, PathBuf::from("./data"));
        assert_eq!(config.http.cors, CorsOrigins::Disabled);
        assert_eq!(config.telemetry.log_format, LogFormat::Text);
        assert!(config.http.base_path.is_none());
        assert_eq!(config.storage.artifact_sync, crate::config::storage::ArtifactSync::FileSystem);
    }

    #[test]
    fn every_bad_value_is_reported_with_what_to_do() {
        let err = Config::from_sources(
            env(&[
                ("GGPROV_LISTEN", "localhost"),
                ("GGPROV_LOG_FORMAT", "xml"),
                ("GGPROV_EXTRA_COMPONENTS", "com.example.A"),
                ("GGPROV_ARTIFACT_SYNC", "always"),
            ]),
            None,
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("GGPROV_LISTEN='localhost': not an address:port"), "{text}");
        assert!(text.contains("GGPROV_LOG_FORMAT='xml': must be text or json"), "{text}");
        assert!(text.contains("'com.example.A' is not name@version"), "{text}");
        assert!(text.contains("GGPROV_ARTIFACT_SYNC='always': must be filesystem or file"), "{text}");
        let each = Config::from_sources(env(&[("GGPROV_ARTIFACT_SYNC", "file")]), None).unwrap();
        assert_eq!(each.storage.artifact_sync, crate::config::storage::ArtifactSync::EachFile);
    }

    #[test]
    fn aws_mode_needs_its_resources_and_paces_at_the_quotas_by_default() {
        let err = Config::from_sources(env(&[("GGPROV_BACKEND", "aws")]), None).unwrap_err().to_string();
        for missing in ["GGPROV_AWS_WORK_QUEUE_URL", "GGPROV_AWS_WORK_DLQ_URL", "GGPROV_AWS_BUCKET"] {
            assert!(err.contains(missing), "{missing} reported: {err}");
        }
        let config = Config::from_sources(
            env(&[("GGPROV_BACKEND", "aws"), ("GGPROV_AWS_CREATE_RESOURCES", "true"), ("GGPROV_AWS_TABLE", "fleet")]),
            None,
        )
        .unwrap();
        let Backend::Aws(aws) = &config.storage.backend else { panic!("AWS mode") };
        assert_eq!((aws.table.as_str(), aws.create_resources, aws.event_bus.as_deref()), ("fleet", true, None));
        assert_eq!(config.pacing(), Some(BTreeMap::new()), "auto paces in AWS mode");
        assert_eq!(Config::from_sources(env(&[]), None).unwrap().pacing(), None, "auto does not pace embedded");
        let raised = Config::from_sources(env(&[("GGPROV_RATE_LIMIT", "aws, RegisterCertificate=40")]), None).unwrap();
        assert_eq!(raised.pacing(), Some(BTreeMap::from([("RegisterCertificate".to_owned(), 40.0)])));
        let err =
            Config::from_sources(env(&[("GGPROV_RATE_LIMIT", "aws,RegisterCertificate=fast")]), None).unwrap_err();
        assert!(err.to_string().contains("API=calls-per-second"), "{err}");
    }

    #[test]
    fn environment_wins_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ggprov.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:9000\"\ndata_dir = \"/var/lib/ggprov\"\nextra_components = [\"com.example.A@1.0.0\"]\n").unwrap();
        let config = Config::from_sources(env(&[("GGPROV_LISTEN", "127.0.0.1:0")]), Some(&file)).unwrap();
        assert_eq!(config.http.listen.port(), 0);
        assert_eq!(config.storage.data_dir, PathBuf::from("/var/lib/ggprov"));
        assert_eq!(config.local_cloud.extra_components.len(), 1);
    }

    #[test]
    fn unknown_file_keys_are_errors_and_unknown_variables_are_noted() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ggprov.toml");
        std::fs::write(&file, "lisen = \"127.0.0.1:9000\"\n").unwrap();
        let err = Config::from_sources(env(&[]), Some(&file)).unwrap_err();
        assert!(err.to_string().contains("unknown setting 'lisen'"), "{err}");
        let config = Config::from_sources(env(&[("GGPROV_LISTN", "x")]), None).unwrap();
        assert_eq!(config.unknown_env, ["GGPROV_LISTN"]);
    }

    #[test]
    fn an_unauthenticated_api_beyond_loopback_needs_an_explicit_none() {
        let open = env(&[("GGPROV_LISTEN", "0.0.0.0:8080")]);
        let err = Config::from_sources(open, None).unwrap_err().to_string();
        assert!(err.contains("GGPROV_LISTEN=0.0.0.0:8080 serves beyond this machine"), "{err}");
        assert!(err.contains("GGPROV_AUTH=none"), "{err}");
        let on_purpose = env(&[("GGPROV_LISTEN", "0.0.0.0:8080"), ("GGPROV_AUTH", "none")]);
        assert!(Config::from_sources(on_purpose, None).is_ok());
        assert!(Config::from_sources(env(&[("GGPROV_LISTEN", "[::1]:0")]), None).is_ok(), "loopback is fine");
    }

    #[test]
    fn the_sweep_threshold_is_derived_from_the_worst_case_retry_time() {
        let config = Config::from_sources(env(&[]), None).unwrap();
        assert_eq!(config.worker.sweep_after(), std::time::Duration::from_secs(8 * (120 + 60) + 60));
        let short = env(&[("GGPROV_WORKER_LEASE_MS", "10000"), ("GGPROV_MAX_ATTEMPTS", "3")]);
        assert_eq!(Config::from_sources(short, None).unwrap().worker.sweep_after().as_secs(), 3 * 70 + 60);
        let set = Config::from_sources(env(&[("GGPROV_SWEEP_AFTER_SECS", "1")]), None).unwrap();
        assert_eq!(set.worker.sweep_after().as_secs(), 1);
        assert!(Config::from_sources(env(&[("GGPROV_SWEEP_AFTER_SECS", "soon")]), None).is_err());
    }

    #[test]
    fn every_setting_is_declared_once() {
        let all: Vec<&Setting> = settings().collect();
        let mut envs: Vec<&str> = all.iter().map(|s| s.env).collect();
        envs.sort_unstable();
        envs.dedup();
        assert_eq!(envs.len(), all.len(), "duplicate environment variable");
        assert!(all.iter().all(|s| s.env == format!("GGPROV_{}", s.key.to_ascii_uppercase())));
    }
}
