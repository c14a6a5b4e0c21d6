//! Logging: the filter and the format.

use super::sources::{Setting, Values};

pub(super) const LOG: Setting = Setting {
    key: "log",
    env: "GGPROV_LOG",
    default: "info",
    help: "Log filter: a level (error, warn, info, debug, trace) or tracing directives such as `info,ggprov_api=debug`.",
};

pub(super) const LOG_FORMAT: Setting = Setting {
    key: "log_format",
    env: "GGPROV_LOG_FORMAT",
    default: "text",
    help: "Log format: `text` (human-readable) or `json` (one object per line).",
};

/// This section's settings, in the order `--help` and the README list them.
pub(super) const SETTINGS: &[&Setting] = &[&LOG, &LOG_FORMAT];

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// What is logged and how.
#[derive(Debug, Clone)]
pub struct TelemetrySettings {
    /// A `tracing` filter (a level or directives).
    pub log: String,
    pub log_format: LogFormat,
}

impl TelemetrySettings {
    pub(super) fn read(v: &mut Values) -> Option<Self> {
        let log = v.parse(&LOG, |t| match tracing_subscriber::EnvFilter::try_new(t) {
            Ok(_) => Ok(t.to_owned()),
            Err(err) => Err(format!("not a log filter ({err}); use a level such as info or debug")),
        });
        let log_format = v.parse(&LOG_FORMAT, |t| match t.to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err("must be text or json".into()),
        });
        Some(Self { log: log?, log_format: log_format? })
    }
}
