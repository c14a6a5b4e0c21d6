//! Authentication modes (`GGPROV_AUTH`): API keys stored as SHA-256 hashes, OIDC JWTs checked
//! against the issuer's cached JWKS, and IAM through an API Gateway that verified SigV4.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use ggprov_api::{AuthError, Authenticator};
use jsonwebtoken::jwk::JwkSet;
use tokio::sync::Mutex;

use crate::config::AuthMode;

/// The authenticator of a mode (`None` for `none`).
pub fn authenticator(mode: &AuthMode) -> Option<Arc<dyn Authenticator>> {
    match mode {
        AuthMode::None => None,
        AuthMode::ApiKey(keys) => Some(Arc::new(ApiKeys { keys: keys.clone() })),
        AuthMode::Jwt { issuer, audience, jwks_url, write_scope } => Some(Arc::new(Jwt {
            issuer: issuer.clone(),
            audience: audience.clone(),
            jwks_url: jwks_url.clone(),
            write_scope: write_scope.clone(),
            http: reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("HTTP client"),
            cache: Mutex::new(None),
        })),
        AuthMode::Iam { caller_header } => Some(Arc::new(Iam { header: caller_header.clone() })),
    }
}

/// SHA-256 of a key, as stored in `GGPROV_API_KEYS`.
pub fn hash_key(key: &str) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes());
    digest.as_ref().try_into().expect("32 bytes")
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new random API key (`ggp_` + 43 base64url characters) and its hash for the configuration.
pub fn new_api_key() -> (String, String) {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).expect("system randomness");
    let key = format!("ggp_{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>());
    let hash = hex(&hash_key(&key));
    (key, hash)
}

struct ApiKeys {
    keys: Vec<([u8; 32], bool)>,
}

#[async_trait::async_trait]
impl Authenticator for ApiKeys {
    async fn authenticate(&self, headers: &HeaderMap, write: bool) -> Result<(), AuthError> {
        let Some(key) = headers.get("x-api-key").and_then(|v| v.to_str().ok()).filter(|k| !k.is_empty()) else {
            return Err(AuthError::Unauthenticated("send your API key in the x-api-key header".into()));
        };
        let digest = hash_key(key);
        // Compare every stored hash without stopping early.
        let found = self.keys.iter().fold(None, |found, (hash, read_only)| {
            let same = hash.iter().zip(digest.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
            if same { Some(*read_only) } else { found }
        });
        match found {
            None => Err(AuthError::Unauthenticated("the API key is not valid".into())),
            Some(true) if write => Err(AuthError::Forbidden("this API key is read-only".into())),
            Some(_) => Ok(()),
        }
    }
}

struct Jwt {
    issuer: String,
    audience: String,
    jwks_url: Option<String>,
    write_scope: Option<String>,
    http: reqwest::Client,
    /// The JWKS and when it was fetched.
    cache: Mutex<Option<(Instant, JwkSet)>>,
}

/// Keys are fetched again after this, or sooner for an unknown key id (at most every 30 s).
const JWKS_TTL: Duration = Duration::from_secs(600);
const JWKS_MIN_REFRESH: Duration = Duration::from_secs(30);

impl Jwt {
    async fn fetch(&self) -> Result<JwkSet, String> {
        let url = match &self.jwks_url {
            Some(url) => url.clone(),
            None => {
                let discovery = format!("{}/.well-known/openid-configuration", self.issuer.trim_end_matches('/'));
                let document: serde_json::Value = self
                    .http
                    .get(&discovery)
                    .send()
                    .await
                    .and_then(reqwest::Response::error_for_status)
                    .map_err(|e| format!("OIDC discovery at {discovery} failed: {e}"))?
                    .json()
                    .await
                    .map_err(|e| format!("OIDC discovery at {discovery}: {e}"))?;
                document["jwks_uri"].as_str().ok_or_else(|| format!("{discovery} names no jwks_uri"))?.to_owned()
            }
        };
        self.http
            .get(&url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| format!("fetching the JWKS at {url} failed: {e}"))?
            .json()
            .await
            .map_err(|e| format!("the JWKS at {url} is not valid: {e}"))
    }

    /// The key with this id, fetching the JWKS when it is old or does not have it.
    async fn key(&self, kid: Option<&str>) -> Result<jsonwebtoken::DecodingKey, AuthError> {
        let mut cache = self.cache.lock().await;
        let find = |set: &JwkSet| match kid {
            Some(kid) => set.find(kid).cloned(),
            None => set.keys.first().cloned(),
        };
        let fresh = cache.as_ref().is_some_and(|(at, _)| at.elapsed() < JWKS_TTL);
        let known = cache.as_ref().and_then(|(_, set)| find(set));
        let may_refresh = cache.as_ref().is_none_or(|(at, _)| at.elapsed() >= JWKS_MIN_REFRESH);
        let jwk = match known {
            Some(jwk) if fresh => jwk,
            _ if may_refresh => {
                let set = self.fetch().await.map_err(|e| {
                    tracing::warn!(error = %e, "cannot fetch the JWKS");
                    AuthError::Unauthenticated("the token cannot be verified now; try again".into())
                })?;
                let jwk = find(&set);
                *cache = Some((Instant::now(), set));
                jwk.ok_or_else(|| AuthError::Unauthenticated("the token's signing key is not the issuer's".into()))?
            }
            Some(jwk) => jwk,
            None => return Err(AuthError::Unauthenticated("the token's signing key is not the issuer's".into())),
        };
        jsonwebtoken::DecodingKey::from_jwk(&jwk)
            .map_err(|_| AuthError::Unauthenticated("the issuer's key cannot verify tokens".into()))
    }
}

fn scopes(claims: &serde_json::Value) -> Vec<String> {
    let mut scopes: Vec<String> =
        claims["scope"].as_str().unwrap_or("").split_whitespace().map(str::to_owned).collect();
    if let Some(list) = claims["scp"].as_array() {
        scopes.extend(list.iter().filter_map(|s| s.as_str()).map(str::to_owned));
    }
    scopes
}

#[async_trait::async_trait]
impl Authenticator for Jwt {
    async fn authenticate(&self, headers: &HeaderMap, write: bool) -> Result<(), AuthError> {
        let token = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .ok_or_else(|| {
                AuthError::Unauthenticated("send a token from the issuer as Authorization: Bearer <token>".into())
            })?;
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| AuthError::Unauthenticated("the bearer token is not a JWT".into()))?;
        let key = self.key(header.kid.as_deref()).await?;
        let mut validation = jsonwebtoken::Validation::new(header.alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        let claims = jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
            .map_err(|e| AuthError::Unauthenticated(format!("the token is not valid here: {e}")))?
            .claims;
        if write
            && let Some(scope) = &self.write_scope
            && !scopes(&claims).contains(scope)
        {
            return Err(AuthError::Forbidden(format!("changing state needs the scope '{scope}'")));
        }
        Ok(())
    }
}

struct Iam {
    header: String,
}

#[async_trait::async_trait]
impl Authenticator for Iam {
    async fn authenticate(&self, headers: &HeaderMap, _write: bool) -> Result<(), AuthError> {
        // API Gateway verified the SigV4 signature and IAM authorized the call; it names the
        // caller in this header. Without it the request did not come through the gateway.
        match headers.get(self.header.as_str()).and_then(|v| v.to_str().ok()) {
            Some(caller) if !caller.trim().is_empty() => Ok(()),
            _ => Err(AuthError::Unauthenticated(
                "call the API through its API Gateway endpoint with SigV4-signed requests".into(),
            )),
        }
    }
}
