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
        key: "extra_components",
        env: "GGPROV_EXTRA_COMPONENTS",
        default: "",
        help: "Local cloud: the account's own Greengrass components, as `name@version` separated by commas, accepted by templates beside the public AWS components.",
    },
];

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

        match (listen, data_dir, log, log_format, cors, base_path) {
            (Some(listen), Some(data_dir), Some(log), Some(log_format), Some(cors), Some(base_path))
                if problems.is_empty() =>
            {
                Ok(Self { listen, data_dir, log, log_format, cors, base_path, extra_components, unknown_env })
            }
            _ => Err(ConfigError(problems)),
        }
    }

    /// Path of the SQLite database.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("ggprov.sqlite")
    }
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
