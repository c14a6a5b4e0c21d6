//! Fault injection: random throttling and errors, and AWS's default per-API rate quotas.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use ggprov_domain::ports::CloudError;
use serde::{Deserialize, Serialize};

/// Faults to inject (`PUT /local-cloud/faults`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultSettings {
    /// Fraction of calls answered with `ThrottlingException` (0 to 1).
    #[serde(default)]
    pub throttle_rate: f64,
    /// Fraction of calls answered with an internal error (0 to 1).
    #[serde(default)]
    pub error_rate: f64,
    /// Enforce AWS's default request-rate quotas per API.
    #[serde(default)]
    pub quotas: bool,
    /// With `quotas`: the simulated account's quotas as a multiple of AWS's defaults (0.5: an
    /// account whose quotas are lower, or shared with other clients; 2: raised ones). Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_scale: Option<f64>,
}

impl FaultSettings {
    pub fn validate(&self) -> Result<(), String> {
        for (name, rate) in [("throttleRate", self.throttle_rate), ("errorRate", self.error_rate)] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("{name} is {rate}; it must be between 0 and 1"));
            }
        }
        if let Some(scale) = self.quota_scale
            && !(scale > 0.0 && scale <= 100.0)
        {
            return Err(format!("quotaScale is {scale}; it must be above 0 and at most 100"));
        }
        Ok(())
    }
}

/// AWS default transactions-per-second quota of an API.
pub fn quota(api: &str) -> f64 {
    ggprov_domain::quotas::aws_default_rate(api)
}

struct Bucket {
    tokens: f64,
    refilled: Instant,
}

/// The fault state of the local cloud.
#[derive(Default)]
pub(crate) struct Faults {
    settings: Mutex<FaultSettings>,
    buckets: Mutex<HashMap<&'static str, Bucket>>,
    calls: Mutex<std::collections::BTreeMap<&'static str, u64>>,
}

impl Faults {
    pub(crate) fn set(&self, settings: FaultSettings) {
        *self.settings.lock().expect("fault settings lock") = settings;
        self.buckets.lock().expect("buckets lock").clear();
    }

    pub(crate) fn get(&self) -> FaultSettings {
        *self.settings.lock().expect("fault settings lock")
    }

    /// Lets a call to `api` through, or answers it with an injected fault.
    pub(crate) fn admit(&self, api: &'static str) -> Result<(), CloudError> {
        *self.calls.lock().expect("calls lock").entry(api).or_default() += 1;
        let settings = self.get();
        if settings.quotas && !self.take_token(api, settings.quota_scale.unwrap_or(1.0)) {
            return Err(CloudError::Throttled { api });
        }
        if settings.throttle_rate > 0.0 && fastrand::f64() < settings.throttle_rate {
            return Err(CloudError::Throttled { api });
        }
        if settings.error_rate > 0.0 && fastrand::f64() < settings.error_rate {
            return Err(CloudError::Unavailable {
                api,
                source: "injected internal failure (local cloud errorRate)".into(),
            });
        }
        Ok(())
    }

    /// Calls received per API (throttled ones included) since start.
    pub(crate) fn calls(&self) -> std::collections::BTreeMap<&'static str, u64> {
        self.calls.lock().expect("calls lock").clone()
    }

    fn take_token(&self, api: &'static str, scale: f64) -> bool {
        let rate = quota(api) * scale;
        let mut buckets = self.buckets.lock().expect("buckets lock");
        let now = Instant::now();
        let bucket = buckets.entry(api).or_insert(Bucket { tokens: rate, refilled: now });
        bucket.tokens = (bucket.tokens + now.duration_since(bucket.refilled).as_secs_f64() * rate).min(rate);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_allow_a_burst_of_one_second_then_throttle() {
        let faults = Faults::default();
        faults.set(FaultSettings { quotas: true, ..FaultSettings::default() });
        let admitted = (0..25).filter(|_| faults.admit("RegisterCertificate").is_ok()).count();
        assert_eq!(admitted, 10, "RegisterCertificate allows 10/s");
        assert!(faults.admit("CreateThing").is_ok(), "buckets are per API");
        faults.set(FaultSettings { quotas: true, quota_scale: Some(0.5), ..FaultSettings::default() });
        let admitted = (0..25).filter(|_| faults.admit("RegisterCertificate").is_ok()).count();
        assert_eq!(admitted, 5, "half the quota");
    }

    #[test]
    fn rates_must_be_fractions() {
        assert!(FaultSettings { throttle_rate: 1.5, ..FaultSettings::default() }.validate().is_err());
        assert!(
            FaultSettings { error_rate: 0.05, throttle_rate: 0.2, quotas: true, quota_scale: None }.validate().is_ok()
        );
        assert!(FaultSettings { quota_scale: Some(0.0), ..FaultSettings::default() }.validate().is_err());
        assert!(FaultSettings { quota_scale: Some(2.0), ..FaultSettings::default() }.validate().is_ok());
    }
}
