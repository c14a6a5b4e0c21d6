//! Removing what ggprov created for a thing, shared by core deletes, device deletes and
//! `DELETE /devices/{name}`. Every call treats "not found" as done, so a retry converges.

use crate::ports::{CloudError, IotRegistry};
use crate::provisioning::{CertificateStatus, ProvisioningJournal};
use crate::thing::ThingName;

fn done_if_absent(result: Result<(), CloudError>) -> Result<(), CloudError> {
    match result {
        Err(err) if err.is_not_found() => Ok(()),
        other => other,
    }
}

/// Detaches the journaled certificate from its policies and the thing, deactivates it and
/// deletes it.
pub async fn retire_certificate(
    iot: &dyn IotRegistry,
    name: &ThingName,
    journal: &ProvisioningJournal,
) -> Result<(), CloudError> {
    if let (Some(id), Some(arn)) = (&journal.certificate_id, &journal.certificate_arn) {
        for policy in &journal.attached_policies {
            done_if_absent(iot.detach_policy(policy, arn).await)?;
        }
        done_if_absent(iot.detach_thing_principal(name, arn).await)?;
        done_if_absent(iot.update_certificate_status(id, CertificateStatus::Inactive).await)?;
        done_if_absent(iot.delete_certificate(id).await)?;
    }
    Ok(())
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
