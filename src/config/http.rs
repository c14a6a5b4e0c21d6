//! Serving HTTP: where to listen, CORS, a base path, how long shutdown waits.

use std::net::SocketAddr;
use std::time::Duration;

use ggprov_api::CorsOrigins;

use super::sources::{Setting, Values};

pub(super) const LISTEN: Setting = Setting {
    key: "listen",
    env: "GGPROV_LISTEN",
    default: "127.0.0.1:8080",
    help: "Address and port the HTTP API listens on; port 0 picks a free port (the chosen address is printed).",
};

pub(super) const CORS_ORIGIN: Setting = Setting {
    key: "cors_origin",
    env: "GGPROV_CORS_ORIGIN",
    default: "",
    help: "Origins allowed to call the API from a browser: a comma-separated list of origins such as `https://console.example.com`, `*` for any, or empty (the default) for no CORS headers at all.",
};

pub(super) const BASE_PATH: Setting = Setting {
    key: "base_path",
    env: "GGPROV_BASE_PATH",
    default: "",
    help: "Path prefix removed from request paths before routing, e.g. an API Gateway custom-domain base path such as `prod`.",
};

pub(super) const SHUTDOWN_GRACE_SECS: Setting = Setting {
    key: "shutdown_grace_secs",
    env: "GGPROV_SHUTDOWN_GRACE_SECS",
    default: "30",
    help: "On SIGTERM/SIGINT: stop accepting, then wait this long for in-flight requests and jobs; unfinished jobs return to the queue.",
};

pub(super) const HTTP_HEADER_TIMEOUT_SECS: Setting = Setting {
    key: "http_header_timeout_secs",
    env: "GGPROV_HTTP_HEADER_TIMEOUT_SECS",
    default: "10",
    help: "How long a client may take to send a request's headers before the connection is closed (slow clients cannot hold connections).",
};

pub(super) const HTTP_REQUEST_TIMEOUT_SECS: Setting = Setting {
    key: "http_request_timeout_secs",
    env: "GGPROV_HTTP_REQUEST_TIMEOUT_SECS",
    default: "60",
    help: "The longest one request may take, reading its body included; after it the answer is 503 REQUEST_TIMEOUT.",
};

pub(super) const HTTP_MAX_CONNECTIONS: Setting = Setting {
    key: "http_max_connections",
    env: "GGPROV_HTTP_MAX_CONNECTIONS",
    default: "1024",
    help: "Connections served at once; more wait in the listen backlog until one closes.",
};

/// This section's settings, in the order `--help` and the README list them.
pub(super) const SETTINGS: &[&Setting] = &[
    &LISTEN,
    &CORS_ORIGIN,
    &BASE_PATH,
    &SHUTDOWN_GRACE_SECS,
    &HTTP_HEADER_TIMEOUT_SECS,
    &HTTP_REQUEST_TIMEOUT_SECS,
    &HTTP_MAX_CONNECTIONS,
];

/// How the API is served.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub listen: SocketAddr,
    pub cors: CorsOrigins,
    /// A path prefix removed before routing.
    pub base_path: Option<String>,
    /// On SIGTERM/SIGINT: how long in-flight requests and jobs may take.
    pub shutdown_grace: Duration,
    pub header_read_timeout: Duration,
    pub request_timeout: Duration,
    pub max_connections: usize,
}

impl HttpSettings {
    pub(super) fn read(v: &mut Values) -> Option<Self> {
        let listen = v.parse(&LISTEN, |t| {
            t.parse::<SocketAddr>().map_err(|_| {
                "not an address:port such as 127.0.0.1:8080 or 0.0.0.0:8080 (port 0 picks a free port)".to_owned()
            })
        });
        let cors = {
            let text = v.text_of(&CORS_ORIGIN);
            match CorsOrigins::parse(&text) {
                Ok(cors) => Some(cors),
                Err(why) => {
                    v.fail(&CORS_ORIGIN, why);
                    None
                }
            }
        };
        let base_path = v.parse(&BASE_PATH, |t| {
            let trimmed = t.trim_matches('/');
            if trimmed.chars().any(|c| c.is_whitespace() || c == '?' || c == '#') {
                Err("must be a plain path prefix such as prod or api/v1".into())
            } else {
                Ok((!trimmed.is_empty()).then(|| trimmed.to_owned()))
            }
        });
        let grace = v.number(&SHUTDOWN_GRACE_SECS, 0, 3600);
        let header = v.number(&HTTP_HEADER_TIMEOUT_SECS, 1, 3600);
        let request = v.number(&HTTP_REQUEST_TIMEOUT_SECS, 1, 3600);
        let connections = v.number_as(&HTTP_MAX_CONNECTIONS, 1, 1_000_000);
        Some(Self {
            listen: listen?,
            cors: cors?,
            base_path: base_path?,
            shutdown_grace: Duration::from_secs(grace?),
            header_read_timeout: Duration::from_secs(header?),
            request_timeout: Duration::from_secs(request?),
            max_connections: connections?,
        })
    }
}
