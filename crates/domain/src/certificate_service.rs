//! Certificate use cases for the API: the inventory (expiring certificates, counts by expiry
//! bucket and CA) and revocation.
//!
//! Revocation is three idempotent steps, so a retry after any failure converges: AWS IoT sets
//! the certificate `REVOKED` (never ACTIVE again), it is detached from its thing, and the record
//! notes it with its event in one write. Until the last step the inventory still shows ACTIVE,
//! and the caller got an error it can retry.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Serialize;

use crate::certificates::{
    CERTIFICATE_REVOKED_EVENT, CaCounts, CertificateEntry, CertificateInfo, CertificateState, ExpiryBuckets, ExpiryKey,
    bucket_bounds,
};
use crate::core_task_service::{CoreTaskError, CoreTaskService};
use crate::cores::{Event, Task};
use crate::pagination::{Page, PageRequest};
use crate::ports::{CertificateAuthorities, CloudError, CoreStore, CsrSigner, IotRegistry, StoreError};
use crate::provisioning::KeyAlgorithm;
use crate::rotation::{RevokeOld, RotationJournal, RotationSpec};
use crate::task::TaskId;
use crate::thing::ThingKind;
use crate::thing::ThingName;
use crate::thing_lifecycle::done_if_absent;
use crate::time::Timestamp;
use crate::validation::Problems;

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
    #[error("{field}: {problem}")]
    Invalid { field: &'static str, problem: String },
    #[error("{0}")]
    NothingToConfirm(String),
    #[error(
        "the certificate {certificate_id} of '{name}' was revoked, and a revoked thing is not given a new certificate; provision it again (or delete it)"
    )]
    Revoked { name: ThingName, certificate_id: String },
    #[error("ggprov holds no CA '{0}'")]
    CaNotFound(String),
    #[error("could not read or change the certificate authorities: {0}")]
    CaSource(#[source] CloudError),
    #[error(
        "CA '{ca}' still signs {count} ACTIVE certificate(s); rotate them onto another CA first (POST /certificateRotationTasks with caId and targets selecting them)"
    )]
    CaInUse { ca: String, count: i64 },
    #[error("CA '{0}' is the default CA; make another CA the default first (`ggprov ca create --default`)")]
    CaIsDefault(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A CA ggprov holds, with what it signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct CaView {
    pub ca_id: String,
    /// Signs the certificates of requests that name no CA.
    pub default: bool,
    /// ACTIVE certificates of cores and client devices it signed.
    pub active_certificates: i64,
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
    cas: Arc<dyn CertificateAuthorities>,
    tasks: CoreTaskService,
    signer: Arc<dyn CsrSigner>,
    /// Why rotation tasks cannot run on this backend, if they cannot.
    rotation_unavailable: Option<String>,
}

/// The most cores one rotation task takes.
pub const MAX_ROTATION_CORES: usize = 10_000;

/// Which cores a rotation task rotates: the union of what each names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RotationTargets {
    /// Cores by name (each must be a core ggprov provisioned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thing_names: Option<Vec<String>>,
    /// Every ggprov core in these thing groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thing_group_names: Option<Vec<String>>,
    /// Every ggprov core a fleet-indexing query selects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thing_index_query: Option<String>,
    /// Every core whose ACTIVE certificate ends within this many days (expired ones too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiring_within_days: Option<u32>,
    /// Every core whose ACTIVE certificate this CA signed: moving the fleet off a CA is one
    /// task with this and `caId` naming the new CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by_ca_id: Option<String>,
}

/// A rotation request as the API received it.
#[derive(Debug, Clone, Default)]
pub struct NewRotation {
    pub targets: RotationTargets,
    pub ca_id: Option<String>,
    pub key_algorithm: Option<KeyAlgorithm>,
    pub days_expiry: Option<u32>,
    pub revoke_old: Option<RevokeOld>,
    /// Waves, as a deployment task's `rollout` (a rollback is not offered: a rotated core
    /// keeps working with its new certificate).
    pub rollout: Option<crate::rollout::RolloutSpec>,
}

impl CertificateService {
    pub fn new(
        store: Arc<dyn CoreStore>,
        iot: Arc<dyn IotRegistry>,
        cas: Arc<dyn CertificateAuthorities>,
        tasks: CoreTaskService,
        signer: Arc<dyn CsrSigner>,
    ) -> Self {
        Self { store, iot, cas, tasks, signer, rotation_unavailable: None }
    }

    /// Refuses rotation tasks with `reason` (a backend that cannot reach the cores' component).
    #[must_use]
    pub fn without_rotation(mut self, reason: Option<String>) -> Self {
        self.rotation_unavailable = reason;
        self
    }

    /// Every CA ggprov holds, with its ACTIVE certificates.
    pub async fn cas(&self) -> Result<Vec<CaView>, CertificateError> {
        let counts = self.store.certificate_counts(&[]).await?;
        let default = self.cas.default_ca_id();
        let ids = self.cas.ca_ids().await.map_err(CertificateError::CaSource)?;
        Ok(ids
            .into_iter()
            .map(|ca_id| CaView {
                default: default.as_deref() == Some(ca_id.as_str()),
                active_certificates: counts.get(&ca_id).map_or(0, |c| c.active),
                ca_id,
            })
            .collect())
    }

    /// Forgets a CA that signs no ACTIVE certificate and is not the default.
    pub async fn delete_ca(&self, ca_id: &str) -> Result<(), CertificateError> {
        let ids = self.cas.ca_ids().await.map_err(CertificateError::CaSource)?;
        if !ids.iter().any(|id| id == ca_id) {
            return Err(CertificateError::CaNotFound(ca_id.to_owned()));
        }
        if self.cas.default_ca_id().as_deref() == Some(ca_id) {
            return Err(CertificateError::CaIsDefault(ca_id.to_owned()));
        }
        let count = self.store.certificate_counts(&[]).await?.get(ca_id).map_or(0, |c| c.active);
        if count > 0 {
            return Err(CertificateError::CaInUse { ca: ca_id.to_owned(), count });
        }
        match self.cas.delete_ca(ca_id).await {
            Ok(()) => Ok(()),
            Err(err) if err.is_not_found() => Err(CertificateError::CaNotFound(ca_id.to_owned())),
            Err(source) => Err(CertificateError::CaSource(source)),
        }
    }

    /// Validates a rotation, resolves its targets to ggprov cores, stores and queues the task.
    /// Everything wrong is reported at once, by field.
    pub async fn submit_rotation(&self, request: NewRotation) -> Result<Task, CoreTaskError> {
        if let Some(reason) = &self.rotation_unavailable {
            return Err(CoreTaskError::Conflict { code: "ROTATION_UNAVAILABLE", message: reason.clone() });
        }
        let mut problems = Problems::new();
        let t = &request.targets;
        if t.thing_names.is_none()
            && t.thing_group_names.is_none()
            && t.thing_index_query.is_none()
            && t.expiring_within_days.is_none()
            && t.signed_by_ca_id.is_none()
        {
            problems.add(
                "targets",
                "name thingNames, thingGroupNames, thingIndexQuery, expiringWithinDays or signedByCaId",
            );
        }
        let ca_id = match request.ca_id.clone().or_else(|| self.cas.default_ca_id()) {
            None => {
                problems.add("caId", "no CA is configured: name one with caId, or create one with `ggprov ca create`");
                String::new()
            }
            Some(ca_id) => {
                if self.cas.ca(&ca_id).await.map_err(CoreTaskError::Cloud)?.is_none() {
                    problems.add("caId", format!("ggprov holds no CA '{ca_id}'; create or import it with `ggprov ca create` / `ggprov ca import`"));
                }
                ca_id
            }
        };
        if let Some(days) = request.days_expiry.filter(|d| !(1..=36_500).contains(d)) {
            problems.add("daysExpiry", format!("{days} must be between 1 and 36500"));
        }
        let mut chosen: BTreeSet<ThingName> = BTreeSet::new();
        let mut candidates: Vec<ThingName> = Vec::new();
        for (i, name) in t.thing_names.iter().flatten().enumerate() {
            match ThingName::parse(name) {
                Ok(thing) => {
                    if !chosen.insert(thing.clone()) {
                        problems.add(format!("targets.thingNames[{i}]"), format!("'{name}' is listed more than once"));
                    }
                }
                Err(err) => problems.add(format!("targets.thingNames[{i}]"), err.to_string()),
            }
        }
        let named: Vec<ThingName> = chosen.iter().cloned().collect();
        let cores = self.store.existing_cores(&named).await?;
        for (i, name) in t.thing_names.iter().flatten().enumerate() {
            if let Ok(thing) = ThingName::parse(name)
                && !cores.contains(&thing)
            {
                problems.add(
                    format!("targets.thingNames[{i}]"),
                    format!("'{name}' is not a core ggprov provisioned (client devices rotate by CSR through the API)"),
                );
            }
        }
        for (i, group) in t.thing_group_names.iter().flatten().enumerate() {
            match self.iot.list_things_in_thing_group(group).await {
                Ok(things) => candidates.extend(things),
                Err(err) if err.is_not_found() => problems
                    .add(format!("targets.thingGroupNames[{i}]"), format!("thing group '{group}' does not exist")),
                Err(err) => return Err(CoreTaskError::Cloud(err)),
            }
        }
        if let Some(query) = &t.thing_index_query {
            match self.iot.check_thing_query(query).await {
                Ok(()) => candidates.extend(self.iot.search_things(query).await.map_err(CoreTaskError::Cloud)?),
                Err(why) => problems.add("targets.thingIndexQuery", why),
            }
        }
        if t.expiring_within_days.is_some() || t.signed_by_ca_id.is_some() {
            // Expiry and CA read the same index: every ACTIVE certificate ending within the days
            // given (all of them for a CA alone), kept when the CA matches too.
            let days = t.expiring_within_days.unwrap_or(36_500);
            let within = i64::from(days.min(36_500)) * 86_400_000;
            let mut page = PageRequest::first(1000);
            loop {
                let result = self.expiring(within, page).await.map_err(|e| match e {
                    CertificateError::Store(store) => CoreTaskError::Store(store),
                    other => CoreTaskError::Conflict { code: "INVENTORY_UNAVAILABLE", message: other.to_string() },
                })?;
                candidates.extend(
                    result
                        .page
                        .items
                        .into_iter()
                        .filter(|e| e.thing_kind == ThingKind::Core)
                        .filter(|e| {
                            t.signed_by_ca_id.as_ref().is_none_or(|ca| e.certificate.ca_id.as_ref() == Some(ca))
                        })
                        .map(|e| e.thing_name),
                );
                match result.page.last_evaluated {
                    Some(last) => page = PageRequest::after(1000, last),
                    None => break,
                }
            }
        }
        // Groups, queries and expiry select among ggprov's cores; other things are not ours.
        candidates.retain(|c| !chosen.contains(c));
        candidates.sort();
        candidates.dedup();
        for chunk in candidates.chunks(1000) {
            chosen.extend(self.store.existing_cores(chunk).await?);
        }
        if problems.is_empty() && chosen.is_empty() {
            problems.add("targets", "the targets select no core ggprov provisioned");
        }
        if let Some(rollout) = &request.rollout {
            if let Err(found) = rollout.check(Some(chosen.len())) {
                for p in found.into_vec() {
                    problems.add(p.field, p.problem);
                }
            }
            if rollout.on_abort == crate::rollout::OnAbort::Rollback {
                problems.add(
                    "rollout.onAbort",
                    "a rotation cannot be rolled back (a rotated core runs with its new certificate); use \"stop\"",
                );
            }
        }
        if chosen.len() > MAX_ROTATION_CORES {
            problems.add(
                "targets",
                format!("the targets select {} cores; one task rotates at most {MAX_ROTATION_CORES}", chosen.len()),
            );
        }
        if !problems.is_empty() {
            return Err(CoreTaskError::Invalid(problems.into_vec()));
        }
        // A rotation item needs only its core's name: the journal and record say the rest.
        let chosen_count = chosen.len();
        let items = chosen.into_iter().map(|name| crate::cores::NewCore::for_thing(name, String::new())).collect();
        let spec = RotationSpec {
            targets: serde_json::to_value(&request.targets).expect("targets serialise"),
            ca_id,
            key_algorithm: request.key_algorithm.unwrap_or_default(),
            revoke_old: request.revoke_old.unwrap_or_default(),
            days_expiry: request.days_expiry,
            rollout: request.rollout.map(|rollout| {
                let planned = rollout.plan(chosen_count);
                Box::new(crate::rollout::RolloutState::start(rollout, &planned, Timestamp::now()))
            }),
        };
        self.tasks.submit_rotation(spec, items).await
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
        // Gone from IoT: nothing can use it.
        done_if_absent(self.iot.revoke_certificate(id).await).map_err(cloud)?;
        let journal = self.store.journal(&entry.thing_name).await?;
        // The thing's current certificate: a lost thing must connect with none of its others
        // either (the new one of an unconfirmed rotation, old ones `revokeOld: never` kept).
        let (mut pending, mut kept) = (None, Vec::new());
        if journal.certificate_id.as_deref() == Some(id)
            && let Some(arn) = &journal.certificate_arn
        {
            done_if_absent(self.iot.detach_thing_principal(&entry.thing_name, arn).await).map_err(cloud)?;
            pending = until_no_conflict(|| self.revoke_pending_rotation(&entry.thing_name, id)).await?;
            for other in &journal.kept_certificates {
                self.revoke_and_detach(&entry.thing_name, &other.id, &other.arn).await?;
                kept.push(other.id.clone());
            }
        }
        let mut detail = serde_json::json!({
            "certificateId": id,
            "thingName": entry.thing_name.as_str(),
            "thingKind": entry.thing_kind.as_str(),
            "caId": entry.certificate.ca_id,
            "status": "success",
        });
        if let Some(pending) = pending {
            detail["pendingCertificateId"] = serde_json::Value::String(pending);
        }
        if !kept.is_empty() {
            detail["keptCertificateIds"] = kept.into();
        }
        let event = Event { detail_type: CERTIFICATE_REVOKED_EVENT.to_owned(), detail };
        self.store
            .set_certificate_status(id, CertificateState::Revoked, Timestamp::now(), &event)
            .await?
            .ok_or_else(|| CertificateError::NotFound(id.to_owned()))
    }

    /// A thing whose certificate `revoked` is revoked loses the new certificate of a rotation it
    /// has not confirmed as well (a lost device must connect with neither): revoked in IoT,
    /// detached, and the rotation ends failed, so no confirmation can adopt it. Answers the
    /// pending certificate's id, if there was one.
    async fn revoke_pending_rotation(
        &self,
        name: &ThingName,
        revoked: &str,
    ) -> Result<Option<String>, CertificateError> {
        let mut journal = self.store.journal(name).await?;
        let Some(rotation) = journal.rotation.as_ref().filter(|r| !r.finished && r.failed.is_none()) else {
            return Ok(None);
        };
        let pending = rotation.certificate_id.clone().filter(|new| new != revoked);
        if let (Some(new_id), Some(arn)) = (&pending, &rotation.certificate_arn) {
            self.revoke_and_detach(name, new_id, arn).await?;
        }
        journal.rotation_mut().failed =
            Some(format!("certificate {revoked}, which this rotation was to replace, was revoked; so was the new one"));
        self.store.save_journal(name, &mut journal).await?;
        Ok(pending)
    }

    /// Sets a certificate `REVOKED` in IoT and detaches it from the thing; gone counts as done.
    async fn revoke_and_detach(&self, name: &ThingName, id: &str, arn: &str) -> Result<(), CertificateError> {
        let cloud = |source| CertificateError::Cloud { id: id.to_owned(), source };
        done_if_absent(self.iot.revoke_certificate(id).await).map_err(cloud)?;
        done_if_absent(self.iot.detach_thing_principal(name, arn).await).map_err(cloud)
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

/// A client device's certificate rotation by CSR (`POST /devices/{name}/certificateRotation`).
#[derive(Debug, Clone, Default)]
pub struct DeviceCsr {
    pub csr: String,
    pub ca_id: Option<String>,
    pub days_expiry: Option<u32>,
    pub revoke_old: Option<RevokeOld>,
}

/// What a client device gets back: its new certificate (public), and whether the old one waits
/// for its confirmation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct DeviceRotation {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub thing_name: ThingName,
    pub certificate_id: String,
    pub certificate_pem: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_certificate_pem: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_certificate_id: Option<String>,
    /// `ROTATED` (the inventory names the new certificate) or `AWAITING_CONFIRMATION` (both
    /// are ACTIVE until `POST /devices/{name}/certificateRotation/confirm`).
    pub status: &'static str,
}

impl CertificateService {
    /// Signs a client device's CSR (its key stays on the device), registers the certificate
    /// and attaches it next to the old one with the same policies; the old one goes now
    /// (`immediately`), never, or when the device confirms (`afterConfirm`, the default).
    /// The same CSR sent again answers the same certificate (every step is journaled).
    pub async fn rotate_device(
        &self,
        name: &ThingName,
        request: DeviceCsr,
    ) -> Result<DeviceRotation, CertificateError> {
        until_no_conflict(|| self.rotate_device_once(name, &request)).await
    }

    async fn rotate_device_once(
        &self,
        name: &ThingName,
        request: &DeviceCsr,
    ) -> Result<DeviceRotation, CertificateError> {
        let device = self.store.device(name).await?.ok_or_else(|| CertificateError::UnknownThing(name.clone()))?;
        if let Some(revoked) = device.certificate.as_ref().filter(|c| c.status == CertificateState::Revoked) {
            return Err(CertificateError::Revoked {
                name: name.clone(),
                certificate_id: revoked.certificate_id.clone(),
            });
        }
        if request.csr.trim().is_empty() {
            return Err(CertificateError::Invalid { field: "csr", problem: "give the device's CSR (PEM)".into() });
        }
        let revoke_old = request.revoke_old.unwrap_or_default();
        let request_id = TaskId::from_text(&format!("csr-{:016x}", crate::hash::fnv1a(request.csr.trim().as_bytes())));
        let mut journal = self.store.journal(name).await?;
        if let Some(previous) = journal.rotation.clone().filter(|r| r.task_id != request_id && !r.finished) {
            // A newer CSR replaces a rotation the device never confirmed: its certificate goes.
            if previous.failed.is_none()
                && let (Some(id), Some(arn)) = (&previous.certificate_id, &previous.certificate_arn)
            {
                crate::thing_lifecycle::retire(self.iot.as_ref(), name, id, arn, &journal.attached_policies)
                    .await
                    .map_err(|source| CertificateError::Cloud { id: id.clone(), source })?;
            }
            journal.rotation = None;
        }
        // This CSR's rotation was ended by a revocation (which marks it failed) while it ran.
        if journal.rotation.as_ref().is_some_and(|r| r.task_id == request_id && r.failed.is_some()) {
            let certificate_id = journal.certificate_id.clone().unwrap_or_default();
            return Err(CertificateError::Revoked { name: name.clone(), certificate_id });
        }
        if journal.rotation.as_ref().is_none_or(|r| r.task_id != request_id) {
            if journal.certificate_arn.is_none() {
                return Err(CertificateError::NoCertificate(name.clone()));
            }
            // Saved with the signed certificate below: a CSR that cannot be signed leaves nothing.
            journal.rotation = Some(RotationJournal::new(
                request_id.clone(),
                journal.certificate_id.clone(),
                journal.certificate_arn.clone(),
            ));
        }
        let cloud = |id: &str| {
            let id = id.to_owned();
            move |source| CertificateError::Cloud { id, source }
        };
        if journal.rotation().certificate_pem.is_none() {
            let ca_id =
                request.ca_id.clone().or_else(|| self.cas.default_ca_id()).ok_or(CertificateError::Invalid {
                    field: "caId",
                    problem: "no CA is configured: name one with caId, or create one with `ggprov ca create`".into(),
                })?;
            let ca = self.cas.ca(&ca_id).await.map_err(CertificateError::CaSource)?.ok_or_else(|| {
                CertificateError::Invalid { field: "caId", problem: format!("ggprov holds no CA '{ca_id}'") }
            })?;
            let days =
                request.days_expiry.unwrap_or_else(|| crate::certificates::lifetime_days(device.certificate.as_ref()));
            let pem = self
                .signer
                .sign(&ca, name, &request.csr, days)
                .map_err(|problem| CertificateError::Invalid { field: "csr", problem })?;
            let r = journal.rotation_mut();
            r.certificate_pem = Some(pem);
            r.ca_certificate_pem = Some(ca.certificate_pem);
            r.ca_id = Some(ca_id);
            self.store.save_journal(name, &mut journal).await?;
        }
        if journal.rotation().certificate_id.is_none() {
            let r = journal.rotation();
            let pem = r.certificate_pem.clone().expect("signed above");
            let registered = self
                .iot
                .register_certificate(
                    &pem,
                    r.ca_certificate_pem.as_deref(),
                    crate::provisioning::CertificateStatus::Active,
                )
                .await
                .map_err(cloud("new"))?;
            let r = journal.rotation_mut();
            r.certificate_id = Some(registered.id);
            r.certificate_arn = Some(registered.arn);
            self.store.save_journal(name, &mut journal).await?;
        }
        let new_id = journal.rotation().certificate_id.clone().expect("registered above");
        if !journal.rotation().attached {
            let arn = journal.rotation().certificate_arn.clone().expect("registered above");
            for policy in &journal.attached_policies {
                self.iot.attach_policy(policy, &arn).await.map_err(cloud(&new_id))?;
            }
            self.iot.attach_thing_principal(name, &arn).await.map_err(cloud(&new_id))?;
            let r = journal.rotation_mut();
            r.attached = true;
            r.delivered = true;
            self.store.save_journal(name, &mut journal).await?;
        }
        let finished = journal.rotation().finished;
        if !finished {
            match revoke_old {
                RevokeOld::AfterConfirm => return Ok(answer(name, &journal, "AWAITING_CONFIRMATION")),
                RevokeOld::Immediately => self.finish_device(name, &mut journal, true).await?,
                RevokeOld::Never => self.finish_device(name, &mut journal, false).await?,
            }
        }
        Ok(answer(name, &journal, "ROTATED"))
    }

    /// The device runs with its new certificate: the old one is retired and the inventory
    /// names the new one.
    pub async fn confirm_device(&self, name: &ThingName) -> Result<DeviceRotation, CertificateError> {
        until_no_conflict(|| self.confirm_device_once(name)).await
    }

    async fn confirm_device_once(&self, name: &ThingName) -> Result<DeviceRotation, CertificateError> {
        self.store.device(name).await?.ok_or_else(|| CertificateError::UnknownThing(name.clone()))?;
        let mut journal = self.store.journal(name).await?;
        let Some(r) = journal.rotation.clone().filter(|r| r.failed.is_none() && r.attached) else {
            return Err(CertificateError::NothingToConfirm(format!(
                "client device {name} has no new certificate waiting; send its CSR with POST /devices/{name}/certificateRotation first"
            )));
        };
        if !r.finished {
            self.finish_device(name, &mut journal, true).await?;
        }
        Ok(answer(name, &journal, "ROTATED"))
    }

    /// Retires the old certificate (when asked), makes the journal and the record name the new
    /// one, with its event.
    async fn finish_device(
        &self,
        name: &ThingName,
        journal: &mut crate::provisioning::ProvisioningJournal,
        retire_old: bool,
    ) -> Result<(), CertificateError> {
        let r = journal.rotation().clone();
        if retire_old
            && !r.old_retired
            && let (Some(id), Some(arn)) = (&r.old_certificate_id, &r.old_certificate_arn)
        {
            crate::thing_lifecycle::retire(self.iot.as_ref(), name, id, arn, &journal.attached_policies)
                .await
                .map_err(|source| CertificateError::Cloud { id: id.clone(), source })?;
            journal.rotation_mut().old_retired = true;
            self.store.save_journal(name, journal).await?;
        }
        journal.adopt_rotation();
        self.store.save_journal(name, journal).await?;
        let pem = r.certificate_pem.clone().expect("signed");
        let details =
            self.signer.describe(&pem).map_err(|problem| CertificateError::Invalid { field: "csr", problem })?;
        let info = CertificateInfo::issued(
            r.certificate_id.clone().expect("registered"),
            journal.ca_id.clone(),
            details,
            CertificateState::Active,
        )
        .map_err(|problem| CertificateError::Invalid { field: "csr", problem })?;
        let event = Event {
            detail_type: crate::rotation::CERTIFICATE_ROTATED_EVENT.to_owned(),
            detail: serde_json::json!({
                "thingName": name.as_str(),
                "thingKind": "device",
                "oldCertificateId": r.old_certificate_id,
                "certificateId": r.certificate_id,
                "status": "success",
            }),
        };
        self.store.replace_device_certificate(name, &info, Timestamp::now(), &event).await?;
        Ok(())
    }
}

/// Runs a journaled device step again while another request saved the journal in between (two
/// clients sending the same CSR, or a CSR and a confirmation at once): each run resumes from the
/// journal it reads, so both end with the same answer.
async fn until_no_conflict<T, F, Fut>(mut run: F) -> Result<T, CertificateError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, CertificateError>>,
{
    let mut attempts = 0;
    loop {
        match run().await {
            Err(CertificateError::Store(StoreError::Conflict)) if attempts < 8 => attempts += 1,
            other => return other,
        }
    }
}

fn answer(
    name: &ThingName,
    journal: &crate::provisioning::ProvisioningJournal,
    status: &'static str,
) -> DeviceRotation {
    let r = journal.rotation();
    DeviceRotation {
        thing_name: name.clone(),
        certificate_id: r.certificate_id.clone().unwrap_or_default(),
        certificate_pem: r.certificate_pem.clone().unwrap_or_default(),
        ca_certificate_pem: r.ca_certificate_pem.clone(),
        old_certificate_id: r.old_certificate_id.clone(),
        status,
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
