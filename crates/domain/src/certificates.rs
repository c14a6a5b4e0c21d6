//! The certificate inventory: what ggprov knows of each core's and client device's certificate
//! (id, CA, validity, key algorithm, status), expiry buckets counted exactly, and revocation.
//!
//! A thing's certificate is part of its record ([`crate::cores::Core::certificate`],
//! [`crate::cores::Device::certificate`]), written with the record; the stores keep an index of
//! the ACTIVE ones by expiry beside it in the same transaction, so counts always equal a recount.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::thing::ThingKind;
use crate::thing::ThingName;
use crate::time::Timestamp;

/// EventBridge `detail-type` of a revocation.
pub const CERTIFICATE_REVOKED_EVENT: &str = "Certificate Revoked";

/// The expiry buckets' upper bounds after "expired", in days from now.
pub const BUCKET_DAYS: [i64; 3] = [7, 30, 90];

const DAY_MILLIS: i64 = 86_400_000;

/// A certificate's status as ggprov last set or saw it in AWS IoT.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CertificateState {
    #[default]
    Active,
    Inactive,
    /// Revoked: deactivated for good, detached from its thing; never active again.
    Revoked,
}

impl CertificateState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Inactive => "INACTIVE",
            Self::Revoked => "REVOKED",
        }
    }
}

/// A thing's certificate as the inventory records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct CertificateInfo {
    /// AWS IoT's certificate id (the SHA-256 fingerprint of the certificate).
    pub certificate_id: String,
    /// The ggprov CA that signed it; absent for a certificate registered as given
    /// (`cdfProvisioningParameters.certificatePem`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_id: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub not_before: Timestamp,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub not_after: Timestamp,
    /// `EC_P256`, `RSA_2048`, ...
    pub key_algorithm: String,
    pub status: CertificateState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub revoked_at: Option<Timestamp>,
}

impl CertificateInfo {
    /// A certificate as issued: its validity (epoch milliseconds) and key algorithm as read
    /// from the PEM; the error names a validity out of range.
    pub fn issued(
        certificate_id: String,
        ca_id: Option<String>,
        (not_before_millis, not_after_millis, key_algorithm): (i64, i64, String),
        status: CertificateState,
    ) -> Result<Self, String> {
        let at = |ms| Timestamp::from_millis(ms).ok_or_else(|| format!("certificate validity out of range: {ms}"));
        Ok(Self {
            certificate_id,
            ca_id,
            not_before: at(not_before_millis)?,
            not_after: at(not_after_millis)?,
            key_algorithm,
            status,
            revoked_at: None,
        })
    }

    /// Whether it counts in the expiry index (ACTIVE certificates only).
    pub fn is_active(&self) -> bool {
        self.status == CertificateState::Active
    }

    /// The UTC day (days since the epoch) its validity ends on: the DynamoDB counters' key.
    pub fn expiry_day(&self) -> i64 {
        self.not_after.as_millis().div_euclid(DAY_MILLIS)
    }

    /// The certificate with `status` set at `at`, or `None` when that changes nothing or is
    /// not allowed: a REVOKED certificate stays REVOKED.
    pub fn changed_to(&self, status: CertificateState, at: Timestamp) -> Option<Self> {
        if self.status == status || self.status == CertificateState::Revoked {
            return None;
        }
        let mut after = self.clone();
        after.status = status;
        if status == CertificateState::Revoked {
            after.revoked_at = Some(at);
        }
        Some(after)
    }

    /// The key the CA is counted under (`""` for certificates without a ggprov CA).
    pub fn ca_key(&self) -> &str {
        self.ca_id.as_deref().unwrap_or("")
    }
}

/// A certificate with the thing that holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateEntry {
    pub thing_name: ThingName,
    pub thing_kind: ThingKind,
    #[serde(flatten)]
    pub certificate: CertificateInfo,
}

/// Whole days `certificate` is valid, for a new certificate that replaces it (365 when there is
/// none, or its validity is out of range).
pub fn lifetime_days(certificate: Option<&CertificateInfo>) -> u32 {
    certificate
        .map(|c| (c.not_after.as_millis() - c.not_before.as_millis()) / DAY_MILLIS)
        .and_then(|days| u32::try_from(days).ok())
        .filter(|d| (1..=36_500).contains(d))
        .unwrap_or(365)
}

/// Where a page of the expiry index starts after: `(notAfter, certificateId)`.
pub type ExpiryKey = (Timestamp, String);

/// ACTIVE certificates of one CA: in all, and how many end before each bound asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaCounts {
    pub active: i64,
    /// `before[i]`: ACTIVE certificates whose `notAfter` is before `bounds[i]`.
    pub before: Vec<i64>,
}

/// Counts of ACTIVE certificates by when they expire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ExpiryBuckets {
    /// `notAfter` has passed.
    pub expired: i64,
    /// Ends within 7 days from now.
    pub within7_days: i64,
    /// Ends in 7 to 30 days.
    pub within30_days: i64,
    /// Ends in 30 to 90 days.
    pub within90_days: i64,
    /// Ends in 90 days or later.
    pub later: i64,
}

impl ExpiryBuckets {
    /// From the counts before `bucket_bounds(now)` and the total.
    pub fn from_cumulative(counts: &CaCounts) -> Self {
        let at = |i: usize| counts.before.get(i).copied().unwrap_or(0);
        Self {
            expired: at(0),
            within7_days: at(1) - at(0),
            within30_days: at(2) - at(1),
            within90_days: at(3) - at(2),
            later: counts.active - at(3),
        }
    }
}

/// `now`, and now plus each of [`BUCKET_DAYS`].
pub fn bucket_bounds(now: Timestamp) -> [Timestamp; 4] {
    let plus = |days: i64| Timestamp::from_millis(now.as_millis() + days * DAY_MILLIS).unwrap_or(now);
    [now, plus(BUCKET_DAYS[0]), plus(BUCKET_DAYS[1]), plus(BUCKET_DAYS[2])]
}

/// The start of a UTC day (days since the epoch).
pub fn day_start(day: i64) -> Timestamp {
    Timestamp::from_millis(day * DAY_MILLIS).expect("a day in range")
}

/// The UTC day an instant falls on.
pub fn day_of(at: Timestamp) -> i64 {
    at.as_millis().div_euclid(DAY_MILLIS)
}

/// The change a record write makes to the per-(CA, expiry day) counts of ACTIVE certificates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertificateDelta(BTreeMap<(String, i64), i64>);

impl CertificateDelta {
    pub fn between(before: Option<&CertificateInfo>, after: Option<&CertificateInfo>) -> Self {
        let mut delta = BTreeMap::new();
        if before == after {
            return Self(delta);
        }
        for (cert, sign) in [(before, -1), (after, 1)] {
            if let Some(cert) = cert.filter(|c| c.is_active()) {
                *delta.entry((cert.ca_key().to_owned(), cert.expiry_day())).or_insert(0) += sign;
            }
        }
        delta.retain(|_, d| *d != 0);
        Self(delta)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&(String, i64), &i64)> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Counts ACTIVE certificates per CA before each bound, from the certificates themselves (the
/// recount the stores' indexes must always equal).
pub fn recount<'a>(
    certificates: impl IntoIterator<Item = &'a CertificateInfo>,
    bounds: &[Timestamp],
) -> BTreeMap<String, CaCounts> {
    let mut counts: BTreeMap<String, CaCounts> = BTreeMap::new();
    for cert in certificates.into_iter().filter(|c| c.is_active()) {
        let c = counts
            .entry(cert.ca_key().to_owned())
            .or_insert_with(|| CaCounts { active: 0, before: vec![0; bounds.len()] });
        c.active += 1;
        for (i, bound) in bounds.iter().enumerate() {
            if cert.not_after < *bound {
                c.before[i] += 1;
            }
        }
    }
    counts
}

/// Parses a duration such as `30d`, `12h` or `90` (days) into milliseconds; at most 100 years.
pub fn parse_within(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, "d"),
    };
    let amount: i64 = digits
        .parse()
        .map_err(|_| format!("'{text}' is not a duration: give a number of days such as 30d (or hours: 12h)"))?;
    let unit_millis = match unit {
        "d" => DAY_MILLIS,
        "h" => DAY_MILLIS / 24,
        _ => return Err(format!("'{text}': the unit must be d (days) or h (hours), as in 30d")),
    };
    if amount > 36_500 * (DAY_MILLIS / unit_millis) {
        return Err(format!("'{text}' is more than 100 years"));
    }
    Ok(amount * unit_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(ca: &str, not_after: &str, status: CertificateState) -> CertificateInfo {
        CertificateInfo {
            certificate_id: format!("{ca}{not_after}"),
            ca_id: Some(ca.to_owned()),
            not_before: "2026-01-01T00:00:00Z".parse().unwrap(),
            not_after: not_after.parse().unwrap(),
            key_algorithm: "EC_P256".into(),
            status,
            revoked_at: None,
        }
    }

    /// The bucket of one certificate ending at `not_after`, counted on its own.
    fn add(buckets: &mut ExpiryBuckets, not_after: Timestamp, now: Timestamp) {
        match bucket_bounds(now).iter().position(|b| not_after < *b) {
            Some(0) => buckets.expired += 1,
            Some(1) => buckets.within7_days += 1,
            Some(2) => buckets.within30_days += 1,
            Some(_) => buckets.within90_days += 1,
            None => buckets.later += 1,
        }
    }

    #[test]
    fn buckets_from_cumulative_counts_equal_buckets_counted_one_by_one() {
        let now: Timestamp = "2026-12-01T12:00:00Z".parse().unwrap();
        let certs = [
            cert("a", "2026-11-30T00:00:00Z", CertificateState::Active),
            cert("a", "2026-12-01T11:59:59Z", CertificateState::Active),
            cert("a", "2026-12-08T11:59:59Z", CertificateState::Active),
            cert("a", "2026-12-08T12:00:00Z", CertificateState::Active),
            cert("a", "2027-02-01T00:00:00Z", CertificateState::Active),
            cert("a", "2028-01-01T00:00:00Z", CertificateState::Active),
            cert("a", "2026-12-02T00:00:00Z", CertificateState::Revoked),
        ];
        let counts = recount(&certs, &bucket_bounds(now));
        let buckets = ExpiryBuckets::from_cumulative(&counts["a"]);
        let mut one_by_one = ExpiryBuckets::default();
        for c in certs.iter().filter(|c| c.is_active()) {
            add(&mut one_by_one, c.not_after, now);
        }
        assert_eq!(buckets, one_by_one);
        assert_eq!(
            buckets,
            ExpiryBuckets { expired: 2, within7_days: 1, within30_days: 1, within90_days: 1, later: 1 }
        );
    }

    #[test]
    fn a_revocation_moves_the_day_counter_down_and_a_no_op_moves_nothing() {
        let active = cert("a", "2027-01-01T00:00:00Z", CertificateState::Active);
        let mut revoked = active.clone();
        revoked.status = CertificateState::Revoked;
        let delta = CertificateDelta::between(Some(&active), Some(&revoked));
        assert_eq!(
            delta.iter().map(|(k, d)| (k.clone(), *d)).collect::<Vec<_>>(),
            vec![(("a".into(), active.expiry_day()), -1)]
        );
        assert!(CertificateDelta::between(Some(&active), Some(&active)).is_empty());
        assert!(CertificateDelta::between(Some(&revoked), None).is_empty());
    }

    #[test]
    fn durations_are_days_or_hours_and_refused_with_the_form_to_use() {
        assert_eq!(parse_within("30d"), Ok(30 * DAY_MILLIS));
        assert_eq!(parse_within("12h"), Ok(DAY_MILLIS / 2));
        assert_eq!(parse_within("7"), Ok(7 * DAY_MILLIS));
        assert!(parse_within("30x").unwrap_err().contains("unit"));
        assert!(parse_within("soon").unwrap_err().contains("30d"));
        assert!(parse_within("99999999d").is_err());
    }
}
