//! Removing what ggprov created for a thing, shared by core deletes, device deletes and
//! `DELETE /devices/{name}`. Every call treats "not found" as done, so a retry converges.

use crate::ports::{CloudError, IotRegistry};
use crate::provisioning::{CertificateStatus, ProvisioningJournal};
use crate::thing::ThingName;

/// A call whose target is gone already counts as done.
pub fn done_if_absent(result: Result<(), CloudError>) -> Result<(), CloudError> {
    match result {
        Err(err) if err.is_not_found() => Ok(()),
        other => other,
    }
}

/// Detaches the journaled certificate (any older one a rotation kept, and the new one of a
/// rotation not confirmed yet) from its policies and the thing, deactivates it and deletes it.
pub async fn retire_certificate(
    iot: &dyn IotRegistry,
    name: &ThingName,
    journal: &ProvisioningJournal,
) -> Result<(), CloudError> {
    if let (Some(id), Some(arn)) = (&journal.certificate_id, &journal.certificate_arn) {
        retire(iot, name, id, arn, &journal.attached_policies).await?;
    }
    for kept in &journal.kept_certificates {
        retire(iot, name, &kept.id, &kept.arn, &journal.attached_policies).await?;
    }
    // A thing deleted while its new certificate awaits confirmation: that one goes too (once a
    // rotation is adopted its certificate is the journal's, retired above; again is harmless).
    if let Some(rotation) = &journal.rotation
        && let (Some(id), Some(arn)) = (&rotation.certificate_id, &rotation.certificate_arn)
        && rotation.certificate_id != journal.certificate_id
    {
        retire(iot, name, id, arn, &journal.attached_policies).await?;
    }
    Ok(())
}

/// Detaches one certificate from `policies` and the thing, deactivates it and deletes it;
/// whatever is gone already counts as done.
pub async fn retire(
    iot: &dyn IotRegistry,
    name: &ThingName,
    id: &str,
    arn: &str,
    policies: &[String],
) -> Result<(), CloudError> {
    for policy in policies {
        done_if_absent(iot.detach_policy(policy, arn).await)?;
    }
    done_if_absent(iot.detach_thing_principal(name, arn).await)?;
    done_if_absent(iot.update_certificate_status(id, CertificateStatus::Inactive).await)?;
    done_if_absent(iot.delete_certificate(id).await)
}

/// Deletes the policies created for the thing, then the thing.
pub async fn delete_thing(
    iot: &dyn IotRegistry,
    name: &ThingName,
    journal: &ProvisioningJournal,
) -> Result<(), CloudError> {
    for policy in &journal.created_policies {
        done_if_absent(iot.delete_policy(policy).await)?;
    }
    done_if_absent(iot.delete_thing(name).await)
}
