//! Certificate use cases for the API: the inventory (expiring certificates, counts by expiry
//! bucket and CA) and revocation.
//!
//! Revocation is three idempotent steps, so a retry after any failure converges: AWS IoT sets
//! the certificate `REVOKED` (never ACTIVE again), it is detached from its thing, and the record
//! notes it with its event in one write. Until the last step the inventory still shows ACTIVE,
//! and the caller got an error it can retry.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use crate::certificates::{
    CERTIFICATE_REVOKED_EVENT, CaCounts, CertificateEntry, CertificateState, ExpiryBuckets, ExpiryKey, bucket_bounds,
};
use crate::cores::Event;
use crate::pagination::{Page, PageRequest};
use crate::ports::{CloudError, CoreStore, IotRegistry, StoreError};
use crate::thing::ThingName;
use crate::time::Timestamp;

/// Errors of certificate operations.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    #[error("ggprov records no certificate '{0}' (GET /certificates/expiring lists the ones it holds)")]
    NotFound(String),
    #[error("'{0}' is neither a core nor a client device ggprov provisioned")]
    UnknownThing(ThingName),
    #[error("'{0}' has no certificate in ggprov's inventory (it was provisioned before the inventory existed)")]
    NoCertificate(ThingName),
    #[error("could not revoke certificate {id}: {source}")]
    Cloud {
        id: String,
        #[source]
        source: CloudError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The inventory's counts: ACTIVE certificates by expiry bucket, in all and per CA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct CertificateSummary {
    /// The instant the buckets are counted from.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub as_of: Timestamp,
    /// ACTIVE certificates.
    pub active: i64,
    pub buckets: ExpiryBuckets,
    pub by_ca: Vec<CaSummary>,
}

/// One CA's share of the summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct CaSummary {
    /// The CA's id; `null` for certificates ggprov registered as given (no ggprov CA).
    pub ca_id: Option<String>,
    pub active: i64,
    pub buckets: ExpiryBuckets,
}

/// A page of certificates ending before a bound, with how many there are in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiringPage {
    pub before: Timestamp,
    pub total: i64,
    pub page: Page<CertificateEntry, ExpiryKey>,
}

/// The outcome of revoking one thing's certificate in a bulk request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RevocationOutcome {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub thing_name: ThingName,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_id: Option<String>,
    /// `REVOKED`, or `FAILED` with the reason.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Certificate use cases.
#[derive(Clone)]
pub struct CertificateService {
    store: Arc<dyn CoreStore>,
    iot: Arc<dyn IotRegistry>,
}

impl CertificateService {
    pub fn new(store: Arc<dyn CoreStore>, iot: Arc<dyn IotRegistry>) -> Self {
        Self { store, iot }
    }

    pub async fn get(&self, id: &str) -> Result<CertificateEntry, CertificateError> {
        self.store.certificate(id).await?.ok_or_else(|| CertificateError::NotFound(id.to_owned()))
    }

    /// ACTIVE certificates ending within `within_millis` from now (expired ones included).
    pub async fn expiring(
        &self,
        within_millis: i64,
        page: PageRequest<ExpiryKey>,
    ) -> Result<ExpiringPage, CertificateError> {
        let before =
            Timestamp::from_millis(Timestamp::now().as_millis() + within_millis).unwrap_or_else(Timestamp::now);
        let counts = self.store.certificate_counts(&[before]).await?;
        let total = counts.values().map(|c| c.before[0]).sum();
        let page = self.store.expiring_certificates(before, page).await?;
        Ok(ExpiringPage { before, total, page })
    }

    pub async fn summary(&self) -> Result<CertificateSummary, CertificateError> {
        let now = Timestamp::now();
        let counts = self.store.certificate_counts(&bucket_bounds(now)).await?;
        Ok(summarize(now, &counts))
    }

    /// Revokes a certificate ggprov recorded; revoking it again answers the same.
    pub async fn revoke(&self, id: &str) -> Result<CertificateEntry, CertificateError> {
        let entry = self.get(id).await?;
        if entry.certificate.status == CertificateState::Revoked {
            return Ok(entry);
        }
        let cloud = |source| CertificateError::Cloud { id: id.to_owned(), source };
        match self.iot.revoke_certificate(id).await {
            Ok(()) => {}
            Err(err) if err.is_not_found() => {} // gone from IoT: nothing can use it
            Err(err) => return Err(cloud(err)),
        }
        let journal = self.store.journal(&entry.thing_name).await?;
        if journal.certificate_id.as_deref() == Some(id)
            && let Some(arn) = &journal.certificate_arn
        {
            match self.iot.detach_thing_principal(&entry.thing_name, arn).await {
                Ok(()) => {}
                Err(err) if err.is_not_found() => {}
                Err(err) => return Err(cloud(err)),
            }
        }
        let event = Event {
            detail_type: CERTIFICATE_REVOKED_EVENT.to_owned(),
            detail: serde_json::json!({
                "certificateId": id,
                "thingName": entry.thing_name.as_str(),
                "thingKind": entry.thing_kind.as_str(),
                "caId": entry.certificate.ca_id,
                "status": "success",
            }),
        };
        self.store
            .set_certificate_status(id, CertificateState::Revoked, Timestamp::now(), &event)
            .await?
            .ok_or_else(|| CertificateError::NotFound(id.to_owned()))
    }

    /// Revokes the certificate of each thing (core or client device); one outcome each.
    pub async fn revoke_things(&self, names: &[ThingName]) -> Result<Vec<RevocationOutcome>, CertificateError> {
        let mut outcomes = Vec::with_capacity(names.len());
        for name in names {
            let outcome = match self.revoke_thing(name).await {
                Ok(entry) => RevocationOutcome {
                    thing_name: name.clone(),
                    certificate_id: Some(entry.certificate.certificate_id),
                    status: "REVOKED",
                    message: None,
                },
                Err(CertificateError::Store(err)) => return Err(err.into()),
                Err(err) => RevocationOutcome {
                    thing_name: name.clone(),
                    certificate_id: None,
                    status: "FAILED",
                    message: Some(err.to_string()),
                },
            };
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    async fn revoke_thing(&self, name: &ThingName) -> Result<CertificateEntry, CertificateError> {
        let certificate = match self.store.core(name).await? {
            Some(core) => core.certificate,
            None => match self.store.device(name).await? {
                Some(device) => device.certificate,
                None => return Err(CertificateError::UnknownThing(name.clone())),
            },
        };
        let certificate = certificate.ok_or_else(|| CertificateError::NoCertificate(name.clone()))?;
        self.revoke(&certificate.certificate_id).await
    }
}

/// The summary of per-CA counts before [`bucket_bounds`]`(now)`.
pub fn summarize(now: Timestamp, counts: &BTreeMap<String, CaCounts>) -> CertificateSummary {
    let mut total = CaCounts { active: 0, before: vec![0; 4] };
    let by_ca = counts
        .iter()
        .map(|(ca, c)| {
            total.active += c.active;
            for (t, b) in total.before.iter_mut().zip(&c.before) {
                *t += b;
            }
            CaSummary {
                ca_id: (!ca.is_empty()).then(|| ca.clone()),
                active: c.active,
                buckets: ExpiryBuckets::from_cumulative(c),
            }
        })
        .collect();
    CertificateSummary { as_of: now, active: total.active, buckets: ExpiryBuckets::from_cumulative(&total), by_ca }
}
