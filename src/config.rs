//! Configuration: `GGPROV_*` environment variables, optionally a TOML file
//! (`GGPROV_CONFIG` / `--config`), validated at start-up. Environment variables win over the
//! file, the file over the defaults.
//!
//! Every setting is declared once in [`SETTINGS`]; `ggprov serve --help`, the README table and
//! the loader all read that list.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ggprov_api::CorsOrigins;
use ggprov_domain::{ComponentName, ComponentVersion};

/// One configuration setting.
#[derive(Debug)]
pub struct Setting {
    /// Key in the TOML file.
    pub key: &'static str,
    /// Environment variable.
    pub env: &'static str,
    pub default: &'static str,
    pub help: &'static str,
}

/// Every setting ggprov reads.
pub const SETTINGS: &[Setting] = &[
    Setting {
        key: "listen",
        env: "GGPROV_LISTEN",
        default: "127.0.0.1:8080",
        help: "Address and port the HTTP API listens on; port 0 picks a free port (the chosen address is printed).",
    },
    Setting {
        key: "data_dir",
        env: "GGPROV_DATA_DIR",
        default: "./data",
        help: "Directory of the embedded default's state (SQLite database); created if missing.",
    },
    Setting {
        key: "log",
        env: "GGPROV_LOG",
        default: "info",
        help: "Log filter: a level (error, warn, info, debug, trace) or tracing directives such as `info,ggprov_api=debug`.",
    },
    Setting {
        key: "log_format",
        env: "GGPROV_LOG_FORMAT",
        default: "text",
        help: "Log format: `text` (human-readable) or `json` (one object per line).",
    },
    Setting {
        key: "cors_origin",
        env: "GGPROV_CORS_ORIGIN",
        default: "*",
        help: "Origins allowed to call the API from a browser: `*`, a comma-separated list of origins, or empty to disable CORS.",
    },
    Setting {
        key: "base_path",
        env: "GGPROV_BASE_PATH",
        default: "",
        help: "Path prefix removed from request paths before routing, e.g. an API Gateway custom-domain base path such as `prod`.",
    },
    Setting {
        key: "region",
        env: "GGPROV_REGION",
        default: "us-east-1",
        help: "AWS region named in ARNs, endpoints and installer configs.",
    },
    Setting {
        key: "default_ca",
        env: "GGPROV_DEFAULT_CA",
        default: "",
        help: "Id of the CA that signs certificates when a request names no caId; empty: the CA marked default in the data directory (the development CA on the embedded default).",
    },
    Setting {
        key: "role_alias",
        env: "GGPROV_ROLE_ALIAS",
        default: "GreengrassV2TokenExchangeRoleAlias",
        help: "Token-exchange role alias written into installer configs.",
    },
    Setting {
        key: "device_root_path",
        env: "GGPROV_DEVICE_ROOT_PATH",
        default: "/greengrass/v2",
        help: "Greengrass root directory on devices, used for paths in installer configs.",
    },
    Setting {
        key: "artifacts_prefix",
        env: "GGPROV_ARTIFACTS_PREFIX",
        default: "",
        help: "Prefix of artifact keys (`<prefix><core>/<core>/certs.zip`), e.g. `greengrass2/`.",
    },
    Setting {
        key: "keep_artifacts",
        env: "GGPROV_KEEP_ARTIFACTS",
        default: "false",
        help: "Keep a core's artifacts (its certs bundle holds the private key) when the core is deleted.",
    },
    Setting {
        key: "event_source",
        env: "GGPROV_EVENT_SOURCE",
        default: "com.aws.cdf.greengrass2-provisioning",
        help: "EventBridge `source` of the lifecycle events.",
    },
    Setting {
        key: "worker",
        env: "GGPROV_WORKER",
        default: "true",
        help: "Run the workers in this process (`false`: API only; jobs wait on the queue).",
    },
    Setting {
        key: "worker_concurrency",
        env: "GGPROV_WORKER_CONCURRENCY",
        default: "4",
        help: "Jobs (batches) a worker processes at once.",
    },
    Setting {
        key: "item_concurrency",
        env: "GGPROV_ITEM_CONCURRENCY",
        default: "8",
        help: "Items of one batch processed at once.",
    },
    Setting {
        key: "core_batch_size",
        env: "GGPROV_CORE_BATCH_SIZE",
        default: "20",
        help: "Cores per queued batch of a core task.",
    },
    Setting {
        key: "deployment_batch_size",
        env: "GGPROV_DEPLOYMENT_BATCH_SIZE",
        default: "50",
        help: "Cores per queued batch of a deployment task.",
    },
    Setting {
        key: "worker_lease_ms",
        env: "GGPROV_WORKER_LEASE_MS",
        default: "120000",
        help: "How long a job stays invisible to other workers while one works on it; after a crash it is delivered again after this.",
    },
    Setting {
        key: "rate_limit",
        env: "GGPROV_RATE_LIMIT",
        default: "auto",
        help: "Pace the workers' IoT and Greengrass calls at 95% of each API's quota, so bulk work is not throttled: `aws` (AWS default quotas), `aws,RegisterCertificate=20,CreateThing=50` (your account's raised quotas, calls per second), `off` (as fast as answers come), `auto` (`aws` in AWS mode, `off` on the embedded default).",
    },
    Setting {
        key: "call_attempts",
        env: "GGPROV_CALL_ATTEMPTS",
        default: "10",
        help: "Tries of one IoT or Greengrass call that fails transiently (throttling, an outage), with jittered backoff from GGPROV_RETRY_BASE_MS, before its step fails and the batch goes back to the queue.",
    },
    Setting {
        key: "max_attempts",
        env: "GGPROV_MAX_ATTEMPTS",
        default: "8",
        help: "Deliveries of a failing job before it is dead-lettered and its items fail.",
    },
    Setting {
        key: "retry_base_ms",
        env: "GGPROV_RETRY_BASE_MS",
        default: "500",
        help: "First retry delay of a failed job; doubles per attempt (jittered, at most 60 s).",
    },
    Setting {
        key: "sweep_after_secs",
        env: "GGPROV_SWEEP_AFTER_SECS",
        default: "900",
        help: "Items unfinished for this long are queued again by the sweeper (must exceed the longest retry sequence).",
    },
    Setting {
        key: "local_cloud_auto_connect",
        env: "GGPROV_LOCAL_CLOUD_AUTO_CONNECT",
        default: "true",
        help: "Local cloud: a provisioned core connects to Greengrass (HEALTHY) by itself; `false`: connect it with `ggprov local-cloud connect`.",
    },
    Setting {
        key: "extra_components",
        env: "GGPROV_EXTRA_COMPONENTS",
        default: "",
        help: "Local cloud: the account's own Greengrass components, as `name@version` separated by commas, accepted by templates beside the public AWS components.",
    },
    Setting {
        key: "role",
        env: "GGPROV_ROLE",
        default: "all",
        help: "What this process runs: `all` (API and workers), `api` (the API only), `worker` (workers only, with /health, /ready and /metrics). `ggprov serve --role` overrides it.",
    },
    Setting {
        key: "shutdown_grace_secs",
        env: "GGPROV_SHUTDOWN_GRACE_SECS",
        default: "30",
        help: "On SIGTERM/SIGINT: stop accepting, then wait this long for in-flight requests and jobs; unfinished jobs return to the queue.",
    },
    Setting {
        key: "auth",
        env: "GGPROV_AUTH",
        default: "none",
        help: "Authentication: `none`, `api-key` (header x-api-key, keys in GGPROV_API_KEYS), `jwt` (Bearer tokens from GGPROV_JWT_ISSUER), `iam` (trust an API Gateway with IAM authorization that sets GGPROV_IAM_CALLER_HEADER). /health, /ready and /metrics stay open.",
    },
    Setting {
        key: "api_keys",
        env: "GGPROV_API_KEYS",
        default: "",
        help: "api-key mode: SHA-256 hashes (hex) of the accepted keys, comma-separated; `<hash>:read` for a read-only key. `ggprov api-key create` makes a key and its hash.",
    },
    Setting {
        key: "jwt_issuer",
        env: "GGPROV_JWT_ISSUER",
        default: "",
        help: "jwt mode: the OIDC issuer (`iss`); its JWKS comes from GGPROV_JWT_JWKS_URL or the issuer's /.well-known/openid-configuration, cached.",
    },
    Setting {
        key: "jwt_audience",
        env: "GGPROV_JWT_AUDIENCE",
        default: "",
        help: "jwt mode: the required audience (`aud`).",
    },
    Setting {
        key: "jwt_jwks_url",
        env: "GGPROV_JWT_JWKS_URL",
        default: "",
        help: "jwt mode: the JWKS URL, when not discovered from the issuer.",
    },
    Setting {
        key: "jwt_write_scope",
        env: "GGPROV_JWT_WRITE_SCOPE",
        default: "",
        help: "jwt mode: a scope (`scope`/`scp` claim) required for requests that change state (403 without it); empty: any valid token may write.",
    },
    Setting {
        key: "iam_caller_header",
        env: "GGPROV_IAM_CALLER_HEADER",
        default: "x-ggprov-caller",
        help: "iam mode: the header API Gateway sets from `$context.identity.userArn` after verifying SigV4; requests without it get 401.",
    },
    Setting {
        key: "backend",
        env: "GGPROV_BACKEND",
        default: "embedded",
        help: "`embedded`: SQLite and the local cloud in the data directory. `aws`: DynamoDB, SQS, S3, EventBridge, IoT, Greengrass V2 and SSM (region, credentials and endpoints from the standard AWS environment).",
    },
    Setting {
        key: "aws_table",
        env: "GGPROV_AWS_TABLE",
        default: "ggprov",
        help: "AWS mode: the DynamoDB table (key design in docs/aws.md).",
    },
    Setting {
        key: "aws_work_queue_url",
        env: "GGPROV_AWS_WORK_QUEUE_URL",
        default: "",
        help: "AWS mode: URL of the SQS work queue (required unless GGPROV_AWS_CREATE_RESOURCES creates `<table>-work`).",
    },
    Setting {
        key: "aws_work_dlq_url",
        env: "GGPROV_AWS_WORK_DLQ_URL",
        default: "",
        help: "AWS mode: URL of the work queue's dead-letter queue (required with GGPROV_AWS_WORK_QUEUE_URL).",
    },
    Setting {
        key: "aws_status_queue_url",
        env: "GGPROV_AWS_STATUS_QUEUE_URL",
        default: "",
        help: "AWS mode: URL of the SQS queue EventBridge feeds with deployment status and job execution events; empty: outcomes come from reconciliation only.",
    },
    Setting {
        key: "aws_bucket",
        env: "GGPROV_AWS_BUCKET",
        default: "",
        help: "AWS mode: S3 bucket of the artifacts (required unless GGPROV_AWS_CREATE_RESOURCES creates `<table>-artifacts`).",
    },
    Setting {
        key: "aws_kms_key",
        env: "GGPROV_AWS_KMS_KEY",
        default: "",
        help: "AWS mode: KMS key (id or ARN) for SSE-KMS of artifacts; empty: SSE-S3.",
    },
    Setting {
        key: "aws_queue_wait_secs",
        env: "GGPROV_AWS_QUEUE_WAIT_SECS",
        default: "2",
        help: "AWS mode: SQS long polling of idle workers, 0 to 20 seconds (0: short polling, for emulators that serve one request at a time).",
    },
    Setting {
        key: "aws_presign_secs",
        env: "GGPROV_AWS_PRESIGN_SECS",
        default: "0",
        help: "AWS mode: add presigned S3 download links, valid this many seconds, to a core's artifacts in GET /cores/{name}; 0: no links (a certs bundle holds the core's private key: keep it short).",
    },
    Setting {
        key: "aws_event_bus",
        env: "GGPROV_AWS_EVENT_BUS",
        default: "",
        help: "AWS mode: EventBridge bus the lifecycle events are published to; empty: events are kept (GET /events) but not published.",
    },
    Setting {
        key: "aws_create_resources",
        env: "GGPROV_AWS_CREATE_RESOURCES",
        default: "false",
        help: "AWS mode: create the table, queues and bucket when missing (development against moto or a sandbox account; production uses infra/).",
    },
];

/// What a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    All,
    Api,
    Worker,
}

impl Role {
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "all" => Some(Self::All),
            "api" => Some(Self::Api),
            "worker" => Some(Self::Worker),
            _ => None,
        }
    }
}

/// How requests are authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMode {
    None,
    /// SHA-256 hashes of the keys, and whether each is read-only.
    ApiKey(Vec<([u8; 32], bool)>),
    Jwt {
        issuer: String,
        audience: String,
        jwks_url: Option<String>,
        write_scope: Option<String>,
    },
    Iam {
        caller_header: String,
    },
}

/// Where state and work live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Aws(AwsSettings),
}

/// The AWS resources of AWS mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsSettings {
    pub table: String,
    pub work_queue_url: Option<String>,
    pub work_dlq_url: Option<String>,
    pub status_queue_url: Option<String>,
    pub bucket: Option<String>,
    pub kms_key: Option<String>,
    pub event_bus: Option<String>,
    pub create_resources: bool,
    /// Presigned download links' validity; `None`: no links.
    pub presign_secs: Option<u64>,
    /// SQS long polling of idle workers.
    pub queue_wait_secs: u64,
}

/// Environment variable naming the TOML configuration file.
pub const CONFIG_FILE_ENV: &str = "GGPROV_CONFIG";

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub log: String,
    pub log_format: LogFormat,
    pub cors: CorsOrigins,
    pub base_path: Option<String>,
    pub extra_components: Vec<(ComponentName, ComponentVersion)>,
    pub region: String,
    pub default_ca: Option<String>,
    pub role_alias: String,
    pub device_root_path: String,
    pub artifacts_prefix: String,
    pub keep_artifacts: bool,
    pub event_source: String,
    pub worker: bool,
    pub worker_concurrency: usize,
    pub item_concurrency: usize,
    pub core_batch_size: usize,
    pub deployment_batch_size: u32,
    pub worker_lease_ms: u64,
    pub max_attempts: u32,
    pub call_attempts: u32,
    /// Pacing at the quotas, with the account's quota overrides (calls per second by API).
    pub rate_limit: Option<BTreeMap<String, f64>>,
    pub retry_base_ms: u64,
    pub sweep_after_secs: u64,
    pub local_cloud_auto_connect: bool,
    pub backend: Backend,
    pub role: Role,
    pub shutdown_grace_secs: u64,
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
        let mut problems = Vec::new();
        let mut values: BTreeMap<&'static str, (String, String)> =
            SETTINGS.iter().map(|s| (s.key, (s.default.to_owned(), format!("default of {}", s.env)))).collect();

        if let Some(path) = file {
            match read_file(path) {
                Ok(table) => {
                    for (key, value) in table {
                        match SETTINGS.iter().find(|s| s.key == key) {
                            Some(setting) => {
                                values.insert(setting.key, (value, format!("'{}' in {}", setting.key, path.display())));
                            }
                            None => problems.push(format!(
                                "{}: unknown setting '{key}'; known settings are {}",
                                path.display(),
                                SETTINGS.iter().map(|s| s.key).collect::<Vec<_>>().join(", ")
                            )),
                        }
                    }
                }
                Err(problem) => problems.push(problem),
            }
        }

        let mut unknown_env = Vec::new();
        for (name, value) in env {
            if let Some(setting) = SETTINGS.iter().find(|s| s.env == name) {
                values.insert(setting.key, (value, setting.env.to_owned()));
            } else if name.starts_with("GGPROV_") && name != CONFIG_FILE_ENV {
                unknown_env.push(name);
            }
        }

        let value = |key: &str| values[key].clone();
        let mut fail = |(raw, source): (String, String), why: String| problems.push(format!("{source}='{raw}': {why}"));

        let listen = {
            let v = value("listen");
            match v.0.trim().parse::<SocketAddr>() {
                Ok(addr) => Some(addr),
                Err(_) => {
                    fail(
                        v,
                        "not an address:port such as 127.0.0.1:8080 or 0.0.0.0:8080 (port 0 picks a free port)".into(),
                    );
                    None
                }
            }
        };
        let data_dir = {
            let v = value("data_dir");
            if v.0.trim().is_empty() {
                fail(v, "must name a directory, e.g. ./data".into());
                None
            } else {
                Some(PathBuf::from(v.0.trim()))
            }
        };
        let log = {
            let v = value("log");
            match tracing_subscriber::EnvFilter::try_new(v.0.trim()) {
                Ok(_) => Some(v.0.trim().to_owned()),
                Err(err) => {
                    fail(v, format!("not a log filter ({err}); use a level such as info or debug"));
                    None
                }
            }
        };
        let log_format = {
            let v = value("log_format");
            match v.0.trim().to_ascii_lowercase().as_str() {
                "text" => Some(LogFormat::Text),
                "json" => Some(LogFormat::Json),
                _ => {
                    fail(v, "must be text or json".into());
                    None
                }
            }
        };
        let cors = {
            let v = value("cors_origin");
            match CorsOrigins::parse(&v.0) {
                Ok(cors) => Some(cors),
                Err(why) => {
                    fail(v, why);
                    None
                }
            }
        };
        let base_path = {
            let v = value("base_path");
            let trimmed = v.0.trim().trim_matches('/');
            if trimmed.chars().any(|c| c.is_whitespace() || c == '?' || c == '#') {
                fail(v, "must be a plain path prefix such as prod or api/v1".into());
                None
            } else {
                Some((!trimmed.is_empty()).then(|| trimmed.to_owned()))
            }
        };
        let extra_components = {
            let v = value("extra_components");
            let mut parsed = Vec::new();
            for item in v.0.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                let parsed_item =
                    item.rsplit_once('@').ok_or_else(|| "missing '@version'".to_owned()).and_then(|(n, ver)| {
                        Ok((
                            ComponentName::parse(n).map_err(|e| format!("name {e}"))?,
                            ComponentVersion::parse(ver).map_err(|e| format!("version {e}"))?,
                        ))
                    });
                match parsed_item {
                    Ok(component) => parsed.push(component),
                    Err(why) => {
                        fail(v.clone(), format!("'{item}' is not name@version ({why}), e.g. com.example.Hello@1.0.0"))
                    }
                }
            }
            parsed
        };

        let text = |key: &str, fail: &mut dyn FnMut((String, String), String)| {
            let v = value(key);
            if v.0.trim().is_empty() {
                fail(v, "must not be empty".into());
                None
            } else {
                Some(v.0.trim().to_owned())
            }
        };
        let flag = |key: &str, fail: &mut dyn FnMut((String, String), String)| {
            let v = value(key);
            match v.0.trim().to_ascii_lowercase().as_str() {
                "true" | "on" | "yes" | "1" => Some(true),
                "false" | "off" | "no" | "0" => Some(false),
                _ => {
                    fail(v, "must be true or false".into());
                    None
                }
            }
        };
        let number = |key: &str, min: u64, max: u64, fail: &mut dyn FnMut((String, String), String)| {
            let v = value(key);
            match v.0.trim().parse::<u64>() {
                Ok(n) if (min..=max).contains(&n) => Some(n),
                _ => {
                    fail(v, format!("must be a whole number from {min} to {max}"));
                    None
                }
            }
        };
        let region = text("region", &mut fail);
        let default_ca = Some(value("default_ca").0.trim().to_owned()).filter(|s| !s.is_empty());
        let role_alias = text("role_alias", &mut fail);
        let device_root_path = text("device_root_path", &mut fail);
        let artifacts_prefix = value("artifacts_prefix").0.trim().trim_start_matches('/').to_owned();
        let keep_artifacts = flag("keep_artifacts", &mut fail);
        let event_source = text("event_source", &mut fail);
        let worker = flag("worker", &mut fail);
        let worker_concurrency = number("worker_concurrency", 1, 256, &mut fail);
        let item_concurrency = number("item_concurrency", 1, 256, &mut fail);
        let core_batch_size = number("core_batch_size", 1, 1000, &mut fail);
        let deployment_batch_size = number("deployment_batch_size", 1, 1000, &mut fail);
        let worker_lease_ms = number("worker_lease_ms", 0, 43_200_000, &mut fail);
        let max_attempts = number("max_attempts", 1, 100, &mut fail);
        let call_attempts = number("call_attempts", 1, 100, &mut fail);
        let rate_limit = {
            let v = value("rate_limit");
            let mut parts = v.0.split(',').map(str::trim).filter(|p| !p.is_empty());
            match parts.next() {
                Some("off") if parts.next().is_none() => Some(Some(None)),
                Some("auto") if parts.next().is_none() => Some(None),
                Some("aws") => {
                    let mut quotas = BTreeMap::new();
                    let mut ok = true;
                    for part in parts {
                        match part.split_once('=').map(|(api, rate)| (api.trim(), rate.trim().parse::<f64>())) {
                            Some((api, Ok(rate))) if !api.is_empty() && rate > 0.0 && rate.is_finite() => {
                                quotas.insert(api.to_owned(), rate);
                            }
                            _ => ok = false,
                        }
                    }
                    if ok {
                        Some(Some(Some(quotas)))
                    } else {
                        fail(v, "quota overrides must be API=calls-per-second, e.g. aws,RegisterCertificate=20".into());
                        None
                    }
                }
                _ => {
                    fail(v, "must be auto, off, aws, or aws followed by API=rate overrides".into());
                    None
                }
            }
        };
        let retry_base_ms = number("retry_base_ms", 0, 600_000, &mut fail);
        let sweep_after_secs = number("sweep_after_secs", 1, 604_800, &mut fail);
        let local_cloud_auto_connect = flag("local_cloud_auto_connect", &mut fail);
        let optional = |key: &str| Some(value(key).0.trim().to_owned()).filter(|v| !v.is_empty());
        let role = {
            let v = value("role");
            let role = Role::parse(&v.0);
            if role.is_none() {
                fail(v, "must be all, api or worker".into());
            }
            role
        };
        let shutdown_grace_secs = number("shutdown_grace_secs", 0, 3600, &mut fail);
        let auth = {
            let v = value("auth");
            match v.0.trim().to_ascii_lowercase().as_str() {
                "none" => Some(AuthMode::None),
                "api-key" => {
                    let mut keys = Vec::new();
                    for entry in value("api_keys").0.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                        let (hash, read_only) = match entry.split_once(':') {
                            Some((hash, "read")) => (hash, true),
                            Some(_) => ("", false),
                            None => (entry, false),
                        };
                        match decode_sha256_hex(hash) {
                            Some(digest) => keys.push((digest, read_only)),
                            None => fail(
                                value("api_keys"),
                                format!(
                                    "'{entry}' is not a SHA-256 hex hash (optionally with :read); `ggprov api-key create` makes one"
                                ),
                            ),
                        }
                    }
                    if keys.is_empty() {
                        fail(value("api_keys"), "api-key mode needs at least one key hash".into());
                    }
                    Some(AuthMode::ApiKey(keys))
                }
                "jwt" => {
                    let issuer = optional("jwt_issuer");
                    let audience = optional("jwt_audience");
                    if issuer.is_none() {
                        fail(value("jwt_issuer"), "jwt mode needs the issuer URL".into());
                    }
                    if audience.is_none() {
                        fail(value("jwt_audience"), "jwt mode needs the audience".into());
                    }
                    Some(AuthMode::Jwt {
                        issuer: issuer.unwrap_or_default(),
                        audience: audience.unwrap_or_default(),
                        jwks_url: optional("jwt_jwks_url"),
                        write_scope: optional("jwt_write_scope"),
                    })
                }
                "iam" => Some(AuthMode::Iam {
                    caller_header: text("iam_caller_header", &mut fail).unwrap_or_default().to_ascii_lowercase(),
                }),
                _ => {
                    fail(v, "must be none, api-key, jwt or iam".into());
                    None
                }
            }
        };
        let create_resources = flag("aws_create_resources", &mut fail);
        let presign_secs = number("aws_presign_secs", 0, 604_800, &mut fail);
        let queue_wait_secs = number("aws_queue_wait_secs", 0, 20, &mut fail);
        let backend = {
            let v = value("backend");
            match v.0.trim().to_ascii_lowercase().as_str() {
                "embedded" => Some(Backend::Embedded),
                "aws" => {
                    let aws = AwsSettings {
                        table: text("aws_table", &mut fail).unwrap_or_default(),
                        work_queue_url: optional("aws_work_queue_url"),
                        work_dlq_url: optional("aws_work_dlq_url"),
                        status_queue_url: optional("aws_status_queue_url"),
                        bucket: optional("aws_bucket"),
                        kms_key: optional("aws_kms_key"),
                        event_bus: optional("aws_event_bus"),
                        create_resources: create_resources.unwrap_or(false),
                        presign_secs: presign_secs.filter(|s| *s > 0),
                        queue_wait_secs: queue_wait_secs.unwrap_or(0),
                    };
                    if !aws.create_resources {
                        for (missing, key) in [
                            (aws.work_queue_url.is_none(), "aws_work_queue_url"),
                            (aws.work_dlq_url.is_none(), "aws_work_dlq_url"),
                            (aws.bucket.is_none(), "aws_bucket"),
                        ] {
                            if missing {
                                fail(
                                    value(key),
                                    "required with GGPROV_BACKEND=aws (the stack outputs of infra/ name it), unless GGPROV_AWS_CREATE_RESOURCES=true".into(),
                                );
                            }
                        }
                    }
                    Some(Backend::Aws(aws))
                }
                _ => {
                    fail(v, "must be embedded or aws".into());
                    None
                }
            }
        };

        let complete = (|| {
            Some(Self {
                listen: listen?,
                data_dir: data_dir?,
                log: log?,
                log_format: log_format?,
                cors: cors?,
                base_path: base_path?,
                extra_components,
                region: region?,
                default_ca,
                role_alias: role_alias?,
                device_root_path: device_root_path?,
                artifacts_prefix,
                keep_artifacts: keep_artifacts?,
                event_source: event_source?,
                worker: worker?,
                worker_concurrency: usize::try_from(worker_concurrency?).ok()?,
                item_concurrency: usize::try_from(item_concurrency?).ok()?,
                core_batch_size: usize::try_from(core_batch_size?).ok()?,
                deployment_batch_size: u32::try_from(deployment_batch_size?).ok()?,
                worker_lease_ms: worker_lease_ms?,
                max_attempts: u32::try_from(max_attempts?).ok()?,
                call_attempts: u32::try_from(call_attempts?).ok()?,
                // `auto`: paced in AWS mode, where real quotas apply.
                rate_limit: match rate_limit? {
                    Some(explicit) => explicit,
                    None => matches!(backend.as_ref()?, Backend::Aws(_)).then(BTreeMap::new),
                },
                retry_base_ms: retry_base_ms?,
                sweep_after_secs: sweep_after_secs?,
                local_cloud_auto_connect: local_cloud_auto_connect?,
                backend: backend?,
                role: role?,
                shutdown_grace_secs: shutdown_grace_secs?,
                auth: auth?,
                unknown_env,
            })
        })();
        match complete {
            Some(config) if problems.is_empty() => Ok(config),
            _ => Err(ConfigError(problems)),
        }
    }

    /// Path of the SQLite database.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("ggprov.sqlite")
    }
}

/// 32 bytes from 64 hex digits.
fn decode_sha256_hex(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut digest = [0u8; 32];
    for (i, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(digest)
}

/// Reads the TOML file into setting → text (arrays of strings are joined with commas).
fn read_file(path: &Path) -> Result<BTreeMap<String, String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| format!("cannot read the configuration file {}: {err}", path.display()))?;
    let table: toml::Table = text.parse().map_err(|err| format!("{} is not valid TOML: {err}", path.display()))?;
    table
        .into_iter()
        .map(|(key, value)| {
            let text = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Array(items) => items
                    .into_iter()
                    .map(|i| {
                        i.as_str()
                            .map(str::to_owned)
                            .ok_or_else(|| format!("{}: '{key}' must be a list of strings", path.display()))
                    })
                    .collect::<Result<Vec<_>, _>>()?
                    .join(","),
                other => return Err(format!("{}: '{key}' must be a string, not {}", path.display(), other.type_str())),
            };
            Ok((key, text))
        })
        .collect()
}

/// The settings as a help text for `ggprov serve --help`.
pub fn help_text() -> String {
    let mut text = String::from(
        "Configuration (environment variables; the same keys in lower case work in a TOML file given with --config or GGPROV_CONFIG):\n",
    );
    for s in SETTINGS {
        let default = if s.default.is_empty() { "(empty)".to_owned() } else { s.default.to_owned() };
        let _ = write!(text, "\n  {} [default: {default}]\n      {}\n", s.env, s.help);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let config = Config::from_sources(env(&[]), None).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.data_dir, PathBuf::from("./data"));
        assert_eq!(config.cors, CorsOrigins::Any);
        assert_eq!(config.log_format, LogFormat::Text);
        assert!(config.base_path.is_none());
    }

    #[test]
    fn every_bad_value_is_reported_with_what_to_do() {
        let err = Config::from_sources(
            env(&[
                ("GGPROV_LISTEN", "localhost"),
                ("GGPROV_LOG_FORMAT", "xml"),
                ("GGPROV_EXTRA_COMPONENTS", "com.example.A"),
            ]),
            None,
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("GGPROV_LISTEN='localhost': not an address:port"), "{text}");
        assert!(text.contains("GGPROV_LOG_FORMAT='xml': must be text or json"), "{text}");
        assert!(text.contains("'com.example.A' is not name@version"), "{text}");
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
        let Backend::Aws(aws) = &config.backend else { panic!("AWS mode") };
        assert_eq!((aws.table.as_str(), aws.create_resources, aws.event_bus.as_deref()), ("fleet", true, None));
        assert_eq!(config.rate_limit, Some(BTreeMap::new()), "auto paces in AWS mode");
        assert_eq!(Config::from_sources(env(&[]), None).unwrap().rate_limit, None, "auto does not pace embedded");
        let raised = Config::from_sources(env(&[("GGPROV_RATE_LIMIT", "aws, RegisterCertificate=40")]), None).unwrap();
        assert_eq!(raised.rate_limit, Some(BTreeMap::from([("RegisterCertificate".to_owned(), 40.0)])));
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
        assert_eq!(config.listen.port(), 0);
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/ggprov"));
        assert_eq!(config.extra_components.len(), 1);
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
}
