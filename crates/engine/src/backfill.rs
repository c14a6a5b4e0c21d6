//! Things recorded before the certificate inventory existed get their certificate on their
//! record from their provisioning journal (which holds the PEM IoT registered), once per store,
//! when a worker starts: an upgraded fleet's expiry counts are complete instead of silently empty.

use ggprov_domain::PageRequest;
use ggprov_domain::ThingName;
use ggprov_domain::ports::{CoreFilter, CoreStore, StoreError};
use ggprov_domain::provisioning::CertificateStatus;
use ggprov_domain::thing::ThingKind;

/// Marks the backfill done (an ingestion cursor at 1): later starts read one item, not the fleet.
const DONE: &str = "certificate-backfill";

/// Fills in the certificate of every core and client device that has none but whose journal
/// names one; returns how many records it filled. Runs to the end once per store (every thing
/// provisioned since gets its certificate on its record); safe beside live work and on two
/// workers at once (a record that got a certificate meanwhile is left alone).
pub async fn backfill_certificates(store: &dyn CoreStore) -> Result<usize, StoreError> {
    if store.ingest_cursor(DONE).await? >= 1 {
        return Ok(0);
    }
    let filled = fill_all(store).await?;
    store.save_ingest_cursor(DONE, 1).await?;
    Ok(filled)
}

async fn fill_all(store: &dyn CoreStore) -> Result<usize, StoreError> {
    let mut filled = 0;
    let mut page = PageRequest::first(1000);
    loop {
        let cores = store.list_cores(&CoreFilter::default(), page).await?;
        for core in &cores.items {
            if core.certificate.is_none() {
                filled += usize::from(fill(store, ThingKind::Core, &core.name).await?);
            }
            let mut devices = PageRequest::first(1000);
            loop {
                let result = store.list_devices_of_core(&core.name, devices).await?;
                for device in result.items.iter().filter(|d| d.certificate.is_none()) {
                    filled += usize::from(fill(store, ThingKind::Device, &device.name).await?);
                }
                match result.last_evaluated {
                    Some(last) => devices = PageRequest::after(1000, last),
                    None => break,
                }
            }
        }
        match cores.last_evaluated {
            Some(last) => page = PageRequest::after(1000, last),
            None => return Ok(filled),
        }
    }
}

async fn fill(store: &dyn CoreStore, kind: ThingKind, name: &ThingName) -> Result<bool, StoreError> {
    let journal = store.journal(name).await?;
    if journal.certificate_pem.is_none() || journal.certificate_id.is_none() {
        return Ok(false);
    }
    // A ggprov CA's id is its certificate's fingerprint (embedded and AWS alike).
    let ca = journal.ca_certificate_pem.as_deref().and_then(|pem| ggprov_pki::fingerprint(pem).ok());
    match crate::provisioner::inventory_entry(&journal, ca.as_deref(), CertificateStatus::Active) {
        Ok(certificate) => store.fill_missing_certificate(kind, name, &certificate).await,
        Err(err) => {
            tracing::warn!(thing.name = %name, error = %err, "the journaled certificate cannot be read; left out of the inventory");
            Ok(false)
        }
    }
}
