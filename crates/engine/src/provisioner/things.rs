//! The steps every thing goes through, core or client device: thing, key and certificate
//! (bundle stored first), registration, policies, attachment; and their undoing.

use std::collections::BTreeMap;
use std::sync::Arc;

use ggprov_domain::certificates::{CertificateInfo, CertificateState};
use ggprov_domain::cores::{Artifact, Device, NewCore, TaskItem};
use ggprov_domain::ports::{CloudError, StoreError};
use ggprov_domain::provisioning::{CertificateStatus, ProvisioningJournal};
use ggprov_domain::provisioning_template::PolicyGroup;
use ggprov_domain::{ThingName, Timestamp, thing_lifecycle};

use super::{CoreProvisioner, permanent};
use crate::StepError;

/// The inventory's view of the journaled certificate: validity and key read from the PEM.
pub(crate) fn inventory_entry(
    journal: &ProvisioningJournal,
    requested_ca: Option<&str>,
    status: CertificateStatus,
) -> Result<CertificateInfo, StepError> {
    let pem = journal.certificate_pem.as_deref().expect("journaled before registration");
    let details = ggprov_pki::describe(pem).map_err(|e| permanent(e.to_string()))?;
    // A journal from before the inventory names no CA: the request's, when it signed.
    let ca_id =
        journal.ca_id.clone().or_else(|| journal.ca_certificate_pem.as_ref().and(requested_ca.map(str::to_owned)));
    let status = match status {
        CertificateStatus::Active => CertificateState::Active,
        CertificateStatus::Inactive => CertificateState::Inactive,
    };
    CertificateInfo::issued(
        journal.certificate_id.clone().expect("registered before"),
        ca_id,
        (details.not_before_millis, details.not_after_millis, details.key_algorithm),
        status,
    )
    .map_err(permanent)
}

impl CoreProvisioner {
    /// The steps every thing goes through, core or client device: thing, key and certificate
    /// (bundle stored first), registration, policies, attachment. Returns the certs artifact,
    /// the certificate for the inventory, and the journal of everything done, which the caller
    /// saves: a core in the transaction that ends its item (decision 77), a device on its own.
    pub(super) async fn provision_thing(
        &self,
        item: &TaskItem<NewCore>,
    ) -> Result<(BTreeMap<String, Artifact>, CertificateInfo, ProvisioningJournal), StepError> {
        let name = &item.name;
        let request = &item.request;
        self.failpoints.check("create.after_start")?;
        let template = self.templates.load(&request.provisioning_template).await.map_err(permanent)?;
        let mut parameters = request.provisioning_parameters.clone();
        parameters.entry("ThingName".to_owned()).or_insert_with(|| name.as_str().to_owned());
        let rendered = template.render(&parameters).map_err(permanent)?;
        if let Some(thing) = rendered.thing_name.as_deref().filter(|t| *t != name.as_str()) {
            return Err(permanent(format!(
                "the provisioning template names the thing '{thing}', but the item is '{name}'"
            )));
        }
        let mut journal = self.store.journal(name).await?;

        // Journal saves (decision 76): only what must not be done twice is saved before it goes
        // on — the minted certificate (before registration, so a retry never makes a second
        // one) and a per-thing policy (before it is created, so it is never leaked). The other
        // steps are idempotent calls (creating an existing thing, registering a registered
        // certificate, attaching twice); their results are saved together once the thing is
        // complete, so a crash in between repeats calls, never their effects.
        // 1. The thing, created without asking first: an existing thing answers
        //    `AlreadyExists` (or, on AWS, success when its configuration is the same), which is
        //    as good, and a new one (nearly every core) saves the DescribeThing call.
        if !journal.thing_created {
            match self.iot.create_thing(name, rendered.thing_type.as_deref(), &rendered.attributes).await {
                Ok(()) | Err(CloudError::AlreadyExists { .. }) => {}
                Err(err) => return Err(err.into()),
            }
            for group in &rendered.thing_groups {
                self.iot.add_thing_to_thing_group(group, name).await?;
            }
            journal.thing_created = true;
        }
        self.failpoints.check("create.after_thing")?;

        // 2. Key and certificate: the bundle is stored before the certificate is journaled and
        //    registered, so a key is never lost and a retry reuses the journaled certificate.
        //    It is first stored under a name of its own (`certs-<fingerprint>.zip`) and copied
        //    to `certs.zip` only by a holder whose journal write won: two holders of one item
        //    (a lease that lapsed under a live worker) each mint, but only the journaled
        //    certificate's bundle is ever published.
        let cdf = request.cdf_provisioning_parameters.clone().unwrap_or_default();
        if journal.certificate_pem.is_none() {
            let mut signed_by = None;
            let (certificate_pem, private_key, ca_pem) = match &cdf.certificate_pem {
                Some(pem) => {
                    ggprov_pki::fingerprint(pem)
                        .map_err(|e| permanent(format!("cdfProvisioningParameters.certificatePem: {e}")))?;
                    (pem.clone(), None, None)
                }
                None => {
                    let ca_id = cdf
                        .ca_id
                        .clone()
                        .or_else(|| self.cas.default_ca_id())
                        .ok_or_else(|| permanent("no CA is configured; create one with `ggprov ca create`"))?;
                    let ca =
                        self.cas.ca(&ca_id).await?.ok_or_else(|| permanent(format!("ggprov holds no CA '{ca_id}'")))?;
                    let info = cdf.cert_info.clone().unwrap_or_default().or_defaults(rendered.cert_info.as_ref());
                    signed_by = Some(ca_id.clone());
                    match &cdf.csr {
                        Some(csr) => {
                            let pem = ggprov_pki::sign_csr(&ca, name.as_str(), csr, &info)
                                .map_err(|e| permanent(e.to_string()))?;
                            (pem, None, Some(ca.certificate_pem))
                        }
                        None => {
                            let minted =
                                ggprov_pki::mint(&ca, name.as_str(), &info).map_err(|e| permanent(e.to_string()))?;
                            (minted.certificate_pem, Some(minted.private_key), Some(ca.certificate_pem))
                        }
                    }
                }
            };
            let staged = self.staged_bundle_key(name, &certificate_pem)?;
            let bundle = ggprov_pki::certs_zip(&certificate_pem, private_key.as_ref(), ca_pem.as_deref());
            self.artifacts.put(&staged, bundle.clone()).await?;
            self.failpoints.check("create.after_certs_bundle")?;
            journal.certificate_pem = Some(certificate_pem);
            journal.ca_certificate_pem = ca_pem;
            journal.ca_id = signed_by;
            journal.certs_key = Some(self.key(name, "certs.zip"));
            if let Err(err) = self.store.save_journal(name, &mut journal).await {
                if matches!(err, StoreError::Conflict) {
                    // Another holder journaled its certificate first: this key is never used.
                    // (After any other failure the write may have landed: the bundle stays.)
                    let _ = self.artifacts.delete(&staged).await;
                }
                return Err(err.into());
            }
            self.failpoints.check("create.after_certs_journal")?;
            self.publish_bundle(&journal, &staged, Some(bundle)).await?;
        } else if let (Some(pem), Some(_)) = (&journal.certificate_pem, &journal.certs_key) {
            // A retry: publish the journaled certificate's bundle if that was not done yet.
            let staged = self.staged_bundle_key(name, pem)?;
            self.publish_bundle(&journal, &staged, None).await?;
        }

        // 3. Register the certificate (a second registration returns the same id).
        if journal.certificate_id.is_none() {
            let status = cdf.certificate_status.unwrap_or(rendered.certificate_status);
            let pem = journal.certificate_pem.as_deref().expect("set above");
            let registered = self.iot.register_certificate(pem, journal.ca_certificate_pem.as_deref(), status).await?;
            // A certificate ggprov revoked, given again as `certificatePem`, is never used again
            // (minted and CSR-signed certificates are new, so only given ones are looked up).
            if cdf.certificate_pem.is_some()
                && let Some(known) = self.store.certificate(&registered.id).await?
                && known.certificate.status == CertificateState::Revoked
            {
                return Err(permanent(format!(
                    "certificate {} was revoked (it belongs to {}); a revoked certificate is never used again",
                    registered.id, known.thing_name
                )));
            }
            self.failpoints.check("create.after_register")?;
            journal.certificate_id = Some(registered.id);
            journal.certificate_arn = Some(registered.arn);
        }
        let arn = journal.certificate_arn.clone().expect("set above");

        // 4. Policies on the certificate, and the shared ones through the template's policy
        //    group (set up once per process; the thing joins it: one call per thing).
        self.attach_policies(name, &arn, &rendered.policies, false, &mut journal).await?;
        self.attach_policies(name, &arn, &rendered.additional_policies, true, &mut journal).await?;
        if let Some(policy_group) = &rendered.policy_group
            && journal.policy_group.as_deref() != Some(policy_group.group.as_str())
        {
            self.join_policy_group(name, policy_group).await?;
            journal.policy_group = Some(policy_group.group.clone());
        }
        self.failpoints.check("create.after_policies")?;

        // 5. The certificate on the thing. Everything done since the last save is saved once,
        //    by the caller (for a core, with the record that ends the item).
        if !journal.principal_attached {
            self.iot.attach_thing_principal(name, &arn).await?;
            journal.principal_attached = true;
        }
        self.failpoints.check("create.after_principal")?;

        let mut artifacts = BTreeMap::new();
        if let Some(key) = &journal.certs_key {
            artifacts.insert(
                "certs".to_owned(),
                Artifact { bucket: self.artifacts.bucket().to_owned(), key: key.clone(), created_at: Timestamp::now() },
            );
        }
        let status = cdf.certificate_status.unwrap_or(rendered.certificate_status);
        let certificate = inventory_entry(&journal, cdf.ca_id.as_deref(), status)?;
        Ok((artifacts, certificate, journal))
    }

    /// Where a freshly minted bundle waits until its certificate is journaled.
    fn staged_bundle_key(&self, name: &ThingName, certificate_pem: &str) -> Result<String, StepError> {
        let fingerprint = ggprov_pki::fingerprint(certificate_pem).map_err(|e| permanent(e.to_string()))?;
        Ok(self.key(name, &format!("certs-{}.zip", &fingerprint[..16])))
    }

    /// Copies the journaled certificate's staged bundle to `certs.zip` and removes the staged
    /// copy; nothing to do when it is gone (published before). Idempotent.
    async fn publish_bundle(
        &self,
        journal: &ProvisioningJournal,
        staged: &str,
        bundle: Option<Vec<u8>>,
    ) -> Result<(), StepError> {
        let Some(published) = journal.certs_key.as_deref() else { return Ok(()) };
        let bundle = match bundle {
            Some(bundle) => bundle,
            None => match self.artifacts.get(staged).await? {
                Some(bundle) => bundle,
                None => return Ok(()),
            },
        };
        self.artifacts.relocate(staged, published, bundle).await?;
        Ok(())
    }

    /// Puts the thing into the group that carries its template's shared policies, after making
    /// sure (once per process) that the group exists and carries them. Idempotent.
    ///
    /// The set-up is one flight: items that meet the group while another sets it up wait for
    /// that one instead of repeating its five calls (under throttling, 28 of 60 items used to);
    /// if it fails, the next waiter tries.
    async fn join_policy_group(&self, name: &ThingName, policy_group: &PolicyGroup) -> Result<(), StepError> {
        let mut key = policy_group.group.clone();
        for (policy, _) in &policy_group.policies {
            key.push('\n');
            key.push_str(policy);
        }
        let setup = self.policy_groups.lock().expect("not poisoned").entry(key.clone()).or_default().clone();
        setup
            .get_or_try_init(|| async {
                self.iot.ensure_thing_group(&policy_group.group).await?;
                for (policy, document) in &policy_group.policies {
                    self.ensure_shared_policy(policy, document.as_deref()).await?;
                    self.iot.attach_policy_to_thing_group(policy, &policy_group.group).await?;
                }
                Ok::<_, StepError>(())
            })
            .await?;
        match self.iot.add_thing_to_thing_group(&policy_group.group, name).await {
            Ok(()) => Ok(()),
            Err(err) => {
                // The group may have been deleted behind ggprov's back: set it up again next
                // time (unless another item has already begun to).
                if err.is_not_found() {
                    let mut groups = self.policy_groups.lock().expect("not poisoned");
                    if groups.get(&key).is_some_and(|current| Arc::ptr_eq(current, &setup)) {
                        groups.remove(&key);
                    }
                }
                Err(err.into())
            }
        }
    }

    /// Makes sure a shared policy exists, creating it from its document when it does not.
    async fn ensure_shared_policy(&self, policy: &str, document: Option<&str>) -> Result<(), StepError> {
        if self.iot.policy_exists(policy).await? {
            return Ok(());
        }
        let Some(document) = document else {
            return Err(permanent(format!(
                "IoT policy '{policy}' does not exist; create it, or give the provisioning template a policy document"
            )));
        };
        match self.iot.create_policy(policy, document).await {
            Ok(()) | Err(CloudError::AlreadyExists { .. }) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    pub(super) async fn attach_policies(
        &self,
        name: &ThingName,
        certificate_arn: &str,
        policies: &[(String, Option<String>)],
        per_thing: bool,
        journal: &mut ProvisioningJournal,
    ) -> Result<(), StepError> {
        for (policy, document) in policies {
            // A policy with a document in `attachAdditionalPolicies` is created for this thing
            // and deleted with it; other policies are shared and must exist or be creatable.
            let policy_name = if per_thing && document.is_some() { format!("{policy}_{name}") } else { policy.clone() };
            // A per-thing policy is journaled before it is created, so that a crash right after
            // creating it cannot leak it: deleting the thing deletes every journaled policy
            // (absent ones are fine).
            if per_thing && document.is_some() && !journal.created_policies.contains(&policy_name) {
                journal.created_policies.push(policy_name.clone());
                self.store.save_journal(name, journal).await?;
            }
            self.ensure_shared_policy(&policy_name, document.as_deref()).await?;
            self.iot.attach_policy(&policy_name, certificate_arn).await?;
            if !journal.attached_policies.contains(&policy_name) {
                journal.attached_policies.push(policy_name);
            }
        }
        Ok(())
    }

    /// Deprovisions a device's certificate and thing (when asked) and deletes its artifacts.
    pub(super) async fn retire_device(&self, device: &Device, deprovision: bool) -> Result<(), StepError> {
        if deprovision {
            let journal = self.store.journal(&device.name).await?;
            thing_lifecycle::retire_certificate(self.iot.as_ref(), &device.name, &journal).await?;
            thing_lifecycle::delete_thing(self.iot.as_ref(), &device.name, &journal).await?;
        }
        self.delete_artifacts(&device.artifacts).await
    }

    pub(super) async fn delete_artifacts(&self, artifacts: &BTreeMap<String, Artifact>) -> Result<(), StepError> {
        if !self.settings.keep_artifacts {
            for artifact in artifacts.values() {
                self.artifacts.delete(&artifact.key).await?;
            }
        }
        Ok(())
    }
}
