//! Authentication of API requests.

use super::sources::{Setting, Values};

pub(crate) const AUTH: Setting = Setting {
    key: "auth",
    env: "GGPROV_AUTH",
    default: "none",
    help: "Authentication: `none` (allowed on a non-loopback GGPROV_LISTEN only when set explicitly), `api-key` (header x-api-key, keys in GGPROV_API_KEYS), `jwt` (Bearer tokens from GGPROV_JWT_ISSUER), `iam` (only behind an API Gateway with IAM authorization that strips and sets GGPROV_IAM_CALLER_HEADER; never directly reachable). /health, /ready and /metrics stay open.",
};

pub(super) const API_KEYS: Setting = Setting {
    key: "api_keys",
    env: "GGPROV_API_KEYS",
    default: "",
    help: "api-key mode: SHA-256 hashes (hex) of the accepted keys, comma-separated; `<hash>:read` for a read-only key. `ggprov api-key create` makes a key and its hash.",
};

pub(super) const JWT_ISSUER: Setting = Setting {
    key: "jwt_issuer",
    env: "GGPROV_JWT_ISSUER",
    default: "",
    help: "jwt mode: the OIDC issuer (`iss`); its JWKS comes from GGPROV_JWT_JWKS_URL or the issuer's /.well-known/openid-configuration, cached.",
};

pub(super) const JWT_AUDIENCE: Setting = Setting {
    key: "jwt_audience",
    env: "GGPROV_JWT_AUDIENCE",
    default: "",
    help: "jwt mode: the required audience (`aud`).",
};

pub(super) const JWT_JWKS_URL: Setting = Setting {
    key: "jwt_jwks_url",
    env: "GGPROV_JWT_JWKS_URL",
    default: "",
    help: "jwt mode: the JWKS URL, when not discovered from the issuer.",
};

pub(super) const JWT_WRITE_SCOPE: Setting = Setting {
    key: "jwt_write_scope",
    env: "GGPROV_JWT_WRITE_SCOPE",
    default: "",
    help: "jwt mode: a scope (`scope`/`scp` claim) required for requests that change state (403 without it); empty: any valid token may write.",
};

pub(super) const IAM_CALLER_HEADER: Setting = Setting {
    key: "iam_caller_header",
    env: "GGPROV_IAM_CALLER_HEADER",
    default: "x-ggprov-caller",
    help: "iam mode: the header API Gateway sets from `$context.identity.userArn` after verifying SigV4; requests without it get 401.",
};

/// This section's settings, in the order `--help` and the README list them.
pub(super) const SETTINGS: &[&Setting] =
    &[&AUTH, &API_KEYS, &JWT_ISSUER, &JWT_AUDIENCE, &JWT_JWKS_URL, &JWT_WRITE_SCOPE, &IAM_CALLER_HEADER];

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

impl AuthMode {
    pub(super) fn read(v: &mut Values) -> Option<Self> {
        let mode = v.text_of(&AUTH);
        match mode.trim().to_ascii_lowercase().as_str() {
            "none" => Some(Self::None),
            "api-key" => {
                let mut keys = Vec::new();
                for entry in v.text_of(&API_KEYS).split(',').map(str::trim).filter(|e| !e.is_empty()) {
                    let (hash, read_only) = match entry.split_once(':') {
                        Some((hash, "read")) => (hash, true),
                        Some(_) => ("", false),
                        None => (entry, false),
                    };
                    match decode_sha256_hex(hash) {
                        Some(digest) => keys.push((digest, read_only)),
                        None => v.fail(
                            &API_KEYS,
                            format!(
                                "'{entry}' is not a SHA-256 hex hash (optionally with :read); `ggprov api-key create` makes one"
                            ),
                        ),
                    }
                }
                if keys.is_empty() {
                    v.fail(&API_KEYS, "api-key mode needs at least one key hash");
                }
                Some(Self::ApiKey(keys))
            }
            "jwt" => {
                let issuer = v.optional(&JWT_ISSUER);
                let audience = v.optional(&JWT_AUDIENCE);
                if issuer.is_none() {
                    v.fail(&JWT_ISSUER, "jwt mode needs the issuer URL");
                }
                if audience.is_none() {
                    v.fail(&JWT_AUDIENCE, "jwt mode needs the audience");
                }
                Some(Self::Jwt {
                    issuer: issuer.unwrap_or_default(),
                    audience: audience.unwrap_or_default(),
                    jwks_url: v.optional(&JWT_JWKS_URL),
                    write_scope: v.optional(&JWT_WRITE_SCOPE),
                })
            }
            "iam" => {
                Some(Self::Iam { caller_header: v.text(&IAM_CALLER_HEADER).unwrap_or_default().to_ascii_lowercase() })
            }
            _ => {
                v.fail(&AUTH, "must be none, api-key, jwt or iam");
                None
            }
        }
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
