//! Authentication modes (`GGPROV_AUTH`): API keys stored as SHA-256 hashes, OIDC JWTs checked
//! against the issuer's cached JWKS, and IAM through an API Gateway that verified SigV4.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use ggprov_api::{Access, AuthError, Authenticator};
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
            keys: std::sync::RwLock::new(None),
            refresh: Mutex::new(Refresh::default()),
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
    async fn authenticate(&self, headers: &HeaderMap, write: bool) -> Result<Access, AuthError> {
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
            Some(read_only) => Ok(Access { can_write: !read_only }),
        }
    }
}

struct Jwt {
    issuer: String,
    audience: String,
    jwks_url: Option<String>,
    write_scope: Option<String>,
    http: reqwest::Client,
    /// The JWKS and when it was fetched. Read by every request; held only to copy or swap.
    keys: std::sync::RwLock<Option<(Instant, Arc<JwkSet>)>>,
    /// Single flight: one fetch at a time, outside the keys' lock.
    refresh: Mutex<Refresh>,
}

/// The fetch attempts of the JWKS.
#[derive(Default)]
struct Refresh {
    last_attempt: Option<Instant>,
    failures: u32,
}

impl Refresh {
    /// Whether a fetch may start now: at most every 30 s, and after failures at most every
    /// 2^failures seconds (capped at 5 minutes), so an issuer that is down is not hammered.
    fn may_fetch(&self) -> bool {
        let wait = if self.failures == 0 {
            JWKS_MIN_REFRESH
        } else {
            Duration::from_secs(1u64 << self.failures.min(8)).min(Duration::from_secs(300))
        };
        self.last_attempt.is_none_or(|at| at.elapsed() >= wait)
    }
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

    /// The key with this id. A fresh cached key is used as is; a stale one is used while one
    /// request refreshes the set (the others do not wait); an unknown one waits for the single
    /// refresh in flight, or starts one unless the back-off forbids it.
    async fn key(&self, kid: Option<&str>) -> Result<jsonwebtoken::DecodingKey, AuthError> {
        let find = |set: &JwkSet| match kid {
            Some(kid) => set.find(kid).cloned(),
            None => set.keys.first().cloned(),
        };
        let cached = self.keys.read().expect("JWKS lock").clone();
        let known = cached.as_ref().and_then(|(_, set)| find(set));
        let fresh = cached.as_ref().is_some_and(|(at, _)| at.elapsed() < JWKS_TTL);
        let jwk = match known {
            Some(jwk) if fresh => jwk,
            Some(stale) => {
                // Refresh if nobody is; serve the stale key either way.
                if let Ok(mut refresh) = self.refresh.try_lock()
                    && refresh.may_fetch()
                {
                    self.fetch_into_cache(&mut refresh).await;
                }
                self.keys.read().expect("JWKS lock").as_ref().and_then(|(_, set)| find(set)).unwrap_or(stale)
            }
            None => {
                let mut refresh = self.refresh.lock().await;
                // Another request may have fetched while this one waited.
                let now_known = self.keys.read().expect("JWKS lock").as_ref().and_then(|(_, set)| find(set));
                match now_known {
                    Some(jwk) => jwk,
                    None if refresh.may_fetch() => {
                        if !self.fetch_into_cache(&mut refresh).await {
                            return Err(AuthError::Unauthenticated(
                                "the token cannot be verified now; try again".into(),
                            ));
                        }
                        let found = self.keys.read().expect("JWKS lock").as_ref().and_then(|(_, set)| find(set));
                        found.ok_or_else(|| {
                            AuthError::Unauthenticated("the token's signing key is not the issuer's".into())
                        })?
                    }
                    None if refresh.failures > 0 => {
                        return Err(AuthError::Unauthenticated("the token cannot be verified now; try again".into()));
                    }
                    None => {
                        return Err(AuthError::Unauthenticated("the token's signing key is not the issuer's".into()));
                    }
                }
            }
        };
        jsonwebtoken::DecodingKey::from_jwk(&jwk)
            .map_err(|_| AuthError::Unauthenticated("the issuer's key cannot verify tokens".into()))
    }

    /// Fetches the JWKS (the caller holds the refresh lock) and swaps it in; `false` on failure.
    async fn fetch_into_cache(&self, refresh: &mut Refresh) -> bool {
        refresh.last_attempt = Some(Instant::now());
        match self.fetch().await {
            Ok(set) => {
                refresh.failures = 0;
                *self.keys.write().expect("JWKS lock") = Some((Instant::now(), Arc::new(set)));
                true
            }
            Err(e) => {
                refresh.failures = refresh.failures.saturating_add(1);
                tracing::warn!(error = %e, failures = refresh.failures, "cannot fetch the JWKS; keeping the keys held");
                false
            }
        }
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
    async fn authenticate(&self, headers: &HeaderMap, write: bool) -> Result<Access, AuthError> {
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
        let can_write = self.write_scope.as_ref().is_none_or(|scope| scopes(&claims).contains(scope));
        if write && !can_write {
            let scope = self.write_scope.as_deref().unwrap_or_default();
            return Err(AuthError::Forbidden(format!("changing state needs the scope '{scope}'")));
        }
        Ok(Access { can_write })
    }
}

struct Iam {
    header: String,
}

#[async_trait::async_trait]
impl Authenticator for Iam {
    async fn authenticate(&self, headers: &HeaderMap, _write: bool) -> Result<Access, AuthError> {
        // API Gateway verified the SigV4 signature and IAM authorized the call; it names the
        // caller in this header. Without it the request did not come through the gateway.
        match headers.get(self.header.as_str()).and_then(|v| v.to_str().ok()) {
            Some(caller) if !caller.trim().is_empty() => Ok(Access { can_write: true }),
            _ => Err(AuthError::Unauthenticated(
                "call the API through its API Gateway endpoint with SigV4-signed requests".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwks_fetches_back_off_after_failures_and_not_before_the_minimum_interval() {
        let fresh = Refresh::default();
        assert!(fresh.may_fetch(), "the first fetch may start at once");
        let just_fetched = Refresh { last_attempt: Some(Instant::now()), failures: 0 };
        assert!(!just_fetched.may_fetch(), "at most every 30 s");
        let long_ago = Instant::now().checked_sub(Duration::from_secs(31)).unwrap();
        assert!(Refresh { last_attempt: Some(long_ago), failures: 0 }.may_fetch());
        let failed_once = Instant::now().checked_sub(Duration::from_secs(3)).unwrap();
        assert!(Refresh { last_attempt: Some(failed_once), failures: 1 }.may_fetch(), "2 s after one failure");
        assert!(!Refresh { last_attempt: Some(failed_once), failures: 3 }.may_fetch(), "8 s after three");
        let capped = Instant::now().checked_sub(Duration::from_secs(301)).unwrap();
        assert!(Refresh { last_attempt: Some(capped), failures: 30 }.may_fetch(), "never more than 5 minutes");
    }
}
