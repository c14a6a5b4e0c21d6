//! Pacing the workers' IoT and Greengrass calls at the AWS quotas.

use std::collections::BTreeMap;

use super::sources::{Setting, Values};

pub(super) const RATE_LIMIT: Setting = Setting {
    key: "rate_limit",
    env: "GGPROV_RATE_LIMIT",
    default: "auto",
    help: "Pace the workers' IoT and Greengrass calls at 95% of each API's quota, so bulk work is not throttled: `aws` (AWS default quotas), `aws,RegisterCertificate=20,CreateThing=50` (your account's raised quotas, calls per second), `off` (as fast as answers come), `auto` (`aws` in AWS mode, `off` on the embedded default). A throttled API's pace drops to 85% and climbs back by 1% of its quota per call that passes (AIMD).",
};

/// This section's settings, in the order `--help` and the README list them.
pub(super) const SETTINGS: &[&Setting] = &[&RATE_LIMIT];

/// `GGPROV_RATE_LIMIT`, as given.
#[derive(Debug, Clone, PartialEq)]
pub enum RateLimit {
    /// Paced in AWS mode (real quotas apply), not on the embedded default.
    Auto,
    /// As fast as answers come.
    Off,
    /// At 95% of the AWS default quotas, with the account's raised quotas (calls per second by API).
    Aws(BTreeMap<String, f64>),
}

impl RateLimit {
    /// The quota overrides to pace with, or `None` for no pacing.
    pub fn quotas(&self, aws_mode: bool) -> Option<BTreeMap<String, f64>> {
        match self {
            Self::Auto => aws_mode.then(BTreeMap::new),
            Self::Off => None,
            Self::Aws(quotas) => Some(quotas.clone()),
        }
    }

    pub(super) fn read(v: &mut Values) -> Option<Self> {
        v.parse(&RATE_LIMIT, |t| {
            let mut parts = t.split(',').map(str::trim).filter(|p| !p.is_empty());
            match parts.next() {
                Some("off") if parts.next().is_none() => Ok(Self::Off),
                Some("auto") if parts.next().is_none() => Ok(Self::Auto),
                Some("aws") => {
                    let mut quotas = BTreeMap::new();
                    for part in parts {
                        match part.split_once('=').map(|(api, rate)| (api.trim(), rate.trim().parse::<f64>())) {
                            Some((api, Ok(rate))) if !api.is_empty() && rate > 0.0 && rate.is_finite() => {
                                quotas.insert(api.to_owned(), rate);
                            }
                            _ => {
                                return Err(
                                    "quota overrides must be API=calls-per-second, e.g. aws,RegisterCertificate=20"
                                        .into(),
                                );
                            }
                        }
                    }
                    Ok(Self::Aws(quotas))
                }
                _ => Err("must be auto, off, aws, or aws followed by API=rate overrides".into()),
            }
        })
    }
}
