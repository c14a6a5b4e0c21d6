//! Certificate rotation items: the core makes a key and CSR, ggprov signs it with the task's
//! CA, registers the certificate and attaches it next to the old one with the same policies,
//! hands it to the core, and once the core confirms it runs with it, retires the old one (as
//! `revokeOld` says) and records the new one with its event. Every step is journaled before the
//! next, so a crash resumes where it stopped and a task makes one certificate per core.

use ggprov_domain::cores::{Event, Task};
use ggprov_domain::ports::CloudError;
use ggprov_domain::provisioning::{CertInfo, CertificateStatus, ProvisioningJournal};
use ggprov_domain::rotation::{
    ANSWER_POLL, ANSWER_WITHIN, CERTIFICATE_ROTATED_EVENT, RevokeOld, RotationJournal, RotationOutcome, RotationSpec,
};
use ggprov_domain::{ThingName, Timestamp, thing_lifecycle};

use super::things::inventory_entry;
use super::{CoreProvisioner, first_error, permanent};
use crate::StepError;
use crate::jobs::JobContext;

fn rotated_event(core: &ThingName, task: &Task, journal: Option<&RotationJournal>, failure: Option<&str>) -> Event {
    let mut detail = serde_json::json!({
        "thingName": core.as_str(),
        "taskId": task.id.as_str(),
        "status": if failure.is_some() { "failed" } else { "success" },
    });
    if let Some(journal) = journal {
        detail["oldCertificateId"] = serde_json::json!(journal.old_certificate_id);
        detail["certificateId"] = serde_json::json!(journal.certificate_id);
    }
    if let Some(message) = failure {
        detail["message"] = serde_json::Value::String(message.to_owned());
    }
    Event { detail_type: CERTIFICATE_ROTATED_EVENT.to_owned(), detail }
}

/// The core has not answered yet: `Err(reason)` once it had [`ANSWER_WITHIN`] to do so (its
/// item then fails and it keeps its old certificate), else the step waits for it (a waiting
/// job spends no attempt).
fn waiting_for(name: &ThingName, rotation: &RotationJournal, what: &str) -> Result<StepError, String> {
    let asked = rotation.requested_at.map_or(0, |t| t.as_millis());
    let waited = Timestamp::now().as_millis().saturating_sub(asked);
    if u128::try_from(waited).unwrap_or(0) > ANSWER_WITHIN.as_millis() {
        return Err(format!(
            "core {name} did not {what} within {} hours; it keeps its old certificate (retry the task when it is online)",
            ANSWER_WITHIN.as_secs() / 3600
        ));
    }
    Ok(StepError::Waiting { message: format!("waiting for core {name} to {what}"), after: ANSWER_POLL })
}

impl CoreProvisioner {
    pub(super) async fn run_rotation_items(
        &self,
        task: &Task,
        spec: &RotationSpec,
        items: &[ThingName],
        ctx: &JobContext,
    ) -> Result<(), StepError> {
        // A rollout that is not running starts no core: its items stay `Waiting` until it
        // resumes (the controller queues them again then).
        if let Some(state) = &spec.rollout
            && (state.phase != ggprov_domain::rollout::RolloutPhase::Running || state.awaiting_approval)
        {
            return Ok(());
        }
        let results = crate::slots::run_items(items.iter().cloned(), self.settings.concurrency, |name| async move {
            self.rotate_item(task, spec, &name, ctx).await
        })
        .await;
        first_error(results)
    }

    async fn rotate_item(
        &self,
        task: &Task,
        spec: &RotationSpec,
        name: &ThingName,
        ctx: &JobContext,
    ) -> Result<(), StepError> {
        let Some(started) = self.store.start_item(&task.id, name, &ctx.holder, ctx.lease).await? else {
            return Ok(());
        };
        if !started.won {
            return Ok(());
        }
        let span = tracing::info_span!("rotation", core.name = %name, task.id = %task.id);
        match tracing::Instrument::instrument(self.rotate(task, spec, name), span).await {
            Err(StepError::Permanent { message, .. }) => {
                tracing::warn!(core.name = %name, task.id = %task.id, reason = %message, "rotation failed");
                let journal = self.store.journal(name).await?.rotation;
                let event = rotated_event(name, task, journal.as_ref(), Some(&message));
                self.store.fail_item(&task.id, name, &message, Some(&event)).await?;
                Ok(())
            }
            Err(waiting @ StepError::Waiting { .. }) => {
                // Let go of the item: the job that looks again is a new one, another holder.
                self.store.start_item(&task.id, name, &ctx.holder, std::time::Duration::ZERO).await?;
                Err(waiting)
            }
            other => other,
        }
    }

    async fn rotate(&self, task: &Task, spec: &RotationSpec, name: &ThingName) -> Result<(), StepError> {
        let Some(core) = self.store.core(name).await? else {
            return Err(permanent(format!("core not found: ggprov has no core named {name}")));
        };
        let mut journal = self.store.journal(name).await?;
        if let Some(r) = journal.rotation.as_ref().filter(|r| r.task_id == task.id && !r.finished)
            && let Some(reason) = r.failed.clone()
        {
            // Ended from outside (the core's certificate was revoked meanwhile): whatever this
            // rotation registered goes too, however far it got.
            self.retire_new(name, &journal).await?;
            return Err(permanent(reason));
        }
        if journal.rotation.as_ref().is_none_or(|r| r.task_id != task.id) {
            if journal.certificate_arn.is_none() {
                return Err(permanent(format!("core {name} has no certificate ggprov registered; provision it first")));
            }
            if let Some(revoked) =
                core.certificate.as_ref().filter(|c| c.status == ggprov_domain::certificates::CertificateState::Revoked)
            {
                return Err(permanent(format!(
                    "core {name}'s certificate {} was revoked, and a rotation does not let a revoked core back in; \
                     provision it again (or delete it)",
                    revoked.certificate_id
                )));
            }
            journal.rotation = Some(RotationJournal::new(
                task.id.clone(),
                journal.certificate_id.clone(),
                journal.certificate_arn.clone(),
            ));
            self.store.save_journal(name, &mut journal).await?;
        }
        let request = task.id.as_str();
        self.failpoints.check("rotate.after_start")?;

        // 1. The core's CSR, signed with the task's CA (journaled on the journal's revision:
        //    one certificate per core per task, however many holders get here).
        if journal.rotation().certificate_pem.is_none() {
            let Some(csr) = self.rotation.csr(name, request, spec.key_algorithm).await? else {
                return Err(waiting_for(name, journal.rotation(), "send its CSR").unwrap_or_else(permanent));
            };
            let ca = self
                .cas
                .ca(&spec.ca_id)
                .await?
                .ok_or_else(|| permanent(format!("ggprov holds no CA '{}'", spec.ca_id)))?;
            let days = spec
                .days_expiry
                .unwrap_or_else(|| ggprov_domain::certificates::lifetime_days(core.certificate.as_ref()));
            let info = CertInfo { days_expiry: Some(days), ..CertInfo::default() };
            let pem = ggprov_pki::sign_csr(&ca, name.as_str(), &csr, &info)
                .map_err(|e| permanent(format!("the core's CSR cannot be signed: {e}")))?;
            let r = journal.rotation_mut();
            r.certificate_pem = Some(pem);
            r.ca_certificate_pem = Some(ca.certificate_pem);
            r.ca_id = Some(spec.ca_id.clone());
            self.store.save_journal(name, &mut journal).await?;
        }
        self.failpoints.check("rotate.after_sign")?;

        // 2. Registered with IoT (a second registration answers the same id).
        if journal.rotation().certificate_id.is_none() {
            let r = journal.rotation();
            let pem = r.certificate_pem.as_deref().expect("signed above");
            let registered =
                self.iot.register_certificate(pem, r.ca_certificate_pem.as_deref(), CertificateStatus::Active).await?;
            let r = journal.rotation_mut();
            r.certificate_id = Some(registered.id);
            r.certificate_arn = Some(registered.arn);
            self.store.save_journal(name, &mut journal).await?;
        }
        self.failpoints.check("rotate.after_register")?;
        let new_arn = journal.rotation().certificate_arn.clone().expect("registered above");

        // 3. Next to the old one: the same policies, on the same thing.
        if !journal.rotation().attached {
            for policy in &journal.attached_policies {
                self.iot.attach_policy(policy, &new_arn).await?;
            }
            self.iot.attach_thing_principal(name, &new_arn).await?;
            journal.rotation_mut().attached = true;
            self.store.save_journal(name, &mut journal).await?;
        }
        self.failpoints.check("rotate.after_attach")?;

        // 4. To the core.
        if !journal.rotation().delivered {
            let r = journal.rotation();
            let pem = r.certificate_pem.as_deref().expect("signed above");
            self.rotation.deliver(name, request, pem, r.ca_certificate_pem.as_deref()).await?;
            journal.rotation_mut().delivered = true;
            self.store.save_journal(name, &mut journal).await?;
        }
        self.failpoints.check("rotate.after_deliver")?;
        if spec.revoke_old == RevokeOld::Immediately {
            self.retire_old(name, &mut journal).await?;
        }

        // 5. The core's word; then the old certificate goes and the journal names the new one.
        if !journal.rotation().finished {
            let new_id = journal.rotation().certificate_id.clone().expect("registered above");
            let refused = match self.rotation.outcome(name, request).await? {
                RotationOutcome::Pending => {
                    match waiting_for(name, journal.rotation(), "confirm its new certificate") {
                        Ok(waiting) => return Err(waiting),
                        Err(reason) => Some(reason),
                    }
                }
                RotationOutcome::Confirmed { certificate_id } if certificate_id == new_id => None,
                RotationOutcome::Confirmed { certificate_id } => {
                    Some(format!("the core connected with certificate {certificate_id}, not the new {new_id}"))
                }
                RotationOutcome::Failed { reason } => Some(reason),
            };
            if let Some(reason) = refused {
                return Err(self.undo(name, &mut journal, &reason).await?);
            }
            if spec.revoke_old == RevokeOld::AfterConfirm {
                self.retire_old(name, &mut journal).await?;
            }
            self.failpoints.check("rotate.after_retire")?;
            journal.adopt_rotation();
            self.store.save_journal(name, &mut journal).await?;
        }
        self.failpoints.check("rotate.after_journal")?;

        // 6. The record follows, with the item's end and the event, in one write.
        let mut updated = core;
        updated.certificate = Some(inventory_entry(&journal, Some(&spec.ca_id), CertificateStatus::Active)?);
        let event = rotated_event(name, task, journal.rotation.as_ref(), None);
        self.store.complete_core_create(&task.id, &updated, &event, None).await?;
        tracing::info!(core.name = %name, task.id = %task.id, "certificate rotated");
        Ok(())
    }

    /// Retires the certificate the rotation replaces (once).
    async fn retire_old(&self, name: &ThingName, journal: &mut ProvisioningJournal) -> Result<(), StepError> {
        let r = journal.rotation().clone();
        if r.old_retired {
            return Ok(());
        }
        if let (Some(id), Some(arn)) = (&r.old_certificate_id, &r.old_certificate_arn) {
            thing_lifecycle::retire(self.iot.as_ref(), name, id, arn, &journal.attached_policies).await?;
        }
        journal.rotation_mut().old_retired = true;
        self.store.save_journal(name, journal).await?;
        Ok(())
    }

    /// Retires the certificate this rotation registered, if it got that far.
    async fn retire_new(&self, name: &ThingName, journal: &ProvisioningJournal) -> Result<(), StepError> {
        let r = journal.rotation();
        if let (Some(id), Some(arn)) = (&r.certificate_id, &r.certificate_arn) {
            match thing_lifecycle::retire(self.iot.as_ref(), name, id, arn, &journal.attached_policies).await {
                Ok(()) | Err(CloudError::NotFound { .. }) => {}
                Err(err) => return Err(err.into()),
            }
        }
        Ok(())
    }

    /// The core could not use the new certificate: the new one is retired, the old one stays
    /// (unless it was revoked immediately); the item fails with the reason.
    async fn undo(
        &self,
        name: &ThingName,
        journal: &mut ProvisioningJournal,
        reason: &str,
    ) -> Result<StepError, StepError> {
        self.retire_new(name, journal).await?;
        let kept = if journal.rotation().old_retired {
            "its old certificate was revoked already (revokeOld: immediately)"
        } else {
            "it keeps its old certificate"
        };
        let message = format!("core {name} could not use the new certificate: {reason}; {kept}");
        journal.rotation_mut().failed = Some(message.clone());
        self.store.save_journal(name, journal).await?;
        Ok(permanent(message))
    }
}
