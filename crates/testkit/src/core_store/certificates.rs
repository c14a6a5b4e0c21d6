//! The certificate inventory of the record ports: certificates recorded with their core or
//! device, counts before any bound equal to a recount, the expiry listing paged in order,
//! revocation that sticks, and the index following re-provisioning and deletes.

use std::sync::Arc;

use ggprov_domain::certificates::{
    CertificateInfo, CertificateState, ThingKind, bucket_bounds, day_of, day_start, recount,
};
use ggprov_domain::cores::{Core, Device, TaskKind};
use ggprov_domain::ports::CoreStore;
use ggprov_domain::{PageRequest, Timestamp};

use super::{event, event_count, task, thing};

fn certificate(id: &str, ca: Option<&str>, not_after: Timestamp) -> CertificateInfo {
    CertificateInfo {
        certificate_id: id.to_owned(),
        ca_id: ca.map(str::to_owned),
        not_before: Timestamp::from_millis(0).unwrap(),
        not_after,
        key_algorithm: "EC_P256".into(),
        status: CertificateState::Active,
        revoked_at: None,
    }
}

fn plus_hours(at: Timestamp, hours: i64) -> Timestamp {
    Timestamp::from_millis(at.as_millis() + hours * 3_600_000).unwrap()
}

pub async fn certificate_inventory_counts_equal_a_recount_and_revocation_sticks(store: Arc<dyn CoreStore>) {
    let now = Timestamp::now();
    // Expiries around every bucket bound, on the bounds' own days (before and after the
    // instant), under two CAs and none.
    let today = day_start(day_of(now));
    let hours = [-30, -1, 1, 7 * 24 - 1, 7 * 24 + 1, 29 * 24, 30 * 24 + 2, 89 * 24, 91 * 24, 400 * 24];
    let mut certs = Vec::new();
    for (i, h) in hours.iter().enumerate() {
        let ca = match i % 3 {
            0 => Some("ca-one"),
            1 => Some("ca-two"),
            _ => None,
        };
        certs.push(certificate(&format!("cert-{i:02}"), ca, plus_hours(now, *h)));
    }
    certs.push(certificate("cert-day-start", Some("ca-one"), today));
    let names: Vec<String> = (0..certs.len()).map(|i| format!("inv-{i:02}")).collect();
    let t = task(TaskKind::Core, &names.iter().map(String::as_str).collect::<Vec<_>>());
    store.create_task(&t).await.unwrap();
    for (name, cert) in names.iter().zip(&certs) {
        let mut core = Core::new(thing(name), "greengrass2_core".into(), now);
        core.certificate = Some(cert.clone());
        store.complete_core_create(&t.id, &core, &event("Core Created Event", 0), None).await.unwrap();
    }
    // A client device's certificate is in the inventory too.
    let devices = task(TaskKind::Device { core_name: thing("inv-00") }, &["inv-sensor"]);
    store.create_task(&devices).await.unwrap();
    let device_cert = certificate("cert-device", Some("ca-two"), plus_hours(now, 48));
    let device = Device {
        name: thing("inv-sensor"),
        core_name: thing("inv-00"),
        provisioning_template: "greengrass2_client_device".into(),
        artifacts: Default::default(),
        certificate: Some(device_cert.clone()),
        created_at: now,
        updated_at: None,
    };
    store.complete_device_create(&devices.id, &device, &event("Device Created Event", 0), None).await.unwrap();
    certs.push(device_cert);

    let mut bounds = bucket_bounds(now).to_vec();
    bounds.push(plus_hours(now, 12));
    bounds.push(today);
    assert_eq!(store.certificate_counts(&bounds).await.unwrap(), recount(&certs, &bounds), "counts = recount");

    // The expiry listing: every ACTIVE certificate ending within 30 days, soonest first, once.
    let within = bounds[2];
    let mut expected: Vec<_> = certs.iter().filter(|c| c.not_after < within).collect();
    expected.sort_by(|a, b| (a.not_after, &a.certificate_id).cmp(&(b.not_after, &b.certificate_id)));
    let mut listed = Vec::new();
    let mut page = PageRequest::first(2);
    loop {
        let result = store.expiring_certificates(within, page).await.unwrap();
        assert!(result.items.len() <= 2);
        listed.extend(result.items);
        match result.last_evaluated {
            Some(last) => page = PageRequest::after(2, last),
            None => break,
        }
    }
    assert_eq!(
        listed.iter().map(|e| e.certificate.certificate_id.as_str()).collect::<Vec<_>>(),
        expected.iter().map(|c| c.certificate_id.as_str()).collect::<Vec<_>>()
    );
    let sensor = listed.iter().find(|e| e.certificate.certificate_id == "cert-device").unwrap();
    assert_eq!((sensor.thing_name.as_str(), sensor.thing_kind), ("inv-sensor", ThingKind::Device));

    // Revocation: recorded on the thing, out of the counts and the listing, with one event;
    // a REVOKED certificate never becomes ACTIVE again.
    let events = event_count(&store).await;
    let revoked = store
        .set_certificate_status("cert-02", CertificateState::Revoked, now, &event("Certificate Revoked", 0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(revoked.certificate.status, CertificateState::Revoked);
    assert_eq!(revoked.certificate.revoked_at, Some(now));
    assert_eq!(store.core(&thing("inv-02")).await.unwrap().unwrap().certificate, Some(revoked.certificate.clone()));
    let again = store
        .set_certificate_status("cert-02", CertificateState::Active, now, &event("Certificate Revoked", 1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.certificate.status, CertificateState::Revoked);
    assert_eq!(event_count(&store).await, events + 1, "one event for one revocation");
    let device_revoked = store
        .set_certificate_status("cert-device", CertificateState::Revoked, now, &event("Certificate Revoked", 2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store.device(&thing("inv-sensor")).await.unwrap().unwrap().certificate,
        Some(device_revoked.certificate)
    );
    for cert in certs.iter_mut().filter(|c| ["cert-02", "cert-device"].contains(&c.certificate_id.as_str())) {
        cert.status = CertificateState::Revoked;
    }
    assert_eq!(store.certificate_counts(&bounds).await.unwrap(), recount(&certs, &bounds), "after revocations");
    let listed = store.expiring_certificates(within, PageRequest::first(100)).await.unwrap().items;
    assert!(listed.iter().all(|e| !["cert-02", "cert-device"].contains(&e.certificate.certificate_id.as_str())));
    assert!(store.certificate("cert-02").await.unwrap().is_some(), "the revoked record is kept");
    assert!(
        store.set_certificate_status("absent", CertificateState::Revoked, now, &event("x", 0)).await.unwrap().is_none()
    );

    // Re-provisioning replaces a thing's certificate; deleting the thing forgets it.
    let again = task(TaskKind::Core, &["inv-03"]);
    store.create_task(&again).await.unwrap();
    let mut core = Core::new(thing("inv-03"), "greengrass2_core".into(), now);
    core.certificate = Some(certificate("cert-03-new", Some("ca-one"), plus_hours(now, 5000)));
    store.complete_core_create(&again.id, &core, &event("Core Created Event", 0), None).await.unwrap();
    assert!(store.certificate("cert-03").await.unwrap().is_none());
    assert_eq!(store.certificate("cert-03-new").await.unwrap().unwrap().thing_name.as_str(), "inv-03");
    let delete = task(TaskKind::Core, &["inv-04"]);
    store.create_task(&delete).await.unwrap();
    store.complete_core_delete(&delete.id, &thing("inv-04"), &event("Core Deleted Event", 0)).await.unwrap();
    assert!(store.certificate("cert-04").await.unwrap().is_none());
    certs.retain(|c| !["cert-03", "cert-04"].contains(&c.certificate_id.as_str()));
    certs.push(core.certificate.unwrap());
    assert_eq!(store.certificate_counts(&bounds).await.unwrap(), recount(&certs, &bounds), "after changes");

    // Rotation tasks are stored with what they do, and listed as their own family.
    let spec = ggprov_domain::rotation::RotationSpec {
        targets: serde_json::json!({"expiringWithinDays": 30}),
        ca_id: "ca-one".into(),
        key_algorithm: ggprov_domain::provisioning::KeyAlgorithm::Rsa2048,
        revoke_old: ggprov_domain::rotation::RevokeOld::Never,
        days_expiry: Some(90),
        rollout: None,
    };
    let rotation = task(TaskKind::Rotation(spec), &["inv-00", "inv-01"]);
    store.create_task(&rotation).await.unwrap();
    let stored = store.task(&rotation.id).await.unwrap().unwrap();
    assert_eq!(stored.kind, rotation.kind);
    assert_eq!(stored.items.len(), 2);
    let listed = store.list_tasks(ggprov_domain::cores::TaskFamily::Rotation, PageRequest::first(10)).await.unwrap();
    assert_eq!(listed.items.iter().map(|t| t.id.clone()).collect::<Vec<_>>(), vec![rotation.id.clone()]);
}
