//! The template-store conformance suite against the SQLite adapter.

use std::sync::Arc;

use ggprov_store_sqlite::SqliteStore;

/// A fresh store in its own directory under `target/tmp`.
async fn sqlite_store() -> Arc<SqliteStore> {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir").keep();
    Arc::new(SqliteStore::open(&dir.join("store.sqlite")).await.expect("store opens"))
}

ggprov_testkit::template_store_conformance!(sqlite_store().await);

mod queue {
    use super::sqlite_store;

    ggprov_testkit::work_queue_conformance!(sqlite_store().await);
}

mod cores {
    use super::sqlite_store;

    ggprov_testkit::core_store_conformance!(sqlite_store().await);
}

mod applications {
    use super::sqlite_store;

    ggprov_testkit::application_store_conformance!(sqlite_store().await);
}

/// The summaries are answered from memory while the database does not change: a commit by
/// another connection (another process sharing the data directory) must show at once.
#[tokio::test]
async fn summaries_see_every_other_writers_commit() {
    use ggprov_domain::cores::{Core, Event, NewCore, Task, TaskItem, TaskKind};
    use ggprov_domain::ports::{CoreRecords, FleetCounters, TaskStore};
    use ggprov_domain::{TaskId, TaskStatus, TaskType, ThingName, Timestamp};

    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir").keep();
    let path = dir.join("store.sqlite");
    let (writer, reader) = (SqliteStore::open(&path).await.unwrap(), SqliteStore::open(&path).await.unwrap());
    let cores = |counts: &std::collections::BTreeMap<_, ggprov_domain::software::SoftwareCounts>| {
        counts.values().map(|c| c.cores).sum::<i64>()
    };
    assert_eq!(cores(&reader.software_counters().await.unwrap()), 0);
    for round in 1..=3 {
        let name = ThingName::parse(&format!("other-{round}")).unwrap();
        let request: NewCore =
            serde_json::from_value(serde_json::json!({"name": name.as_str(), "provisioningTemplate": "p"})).unwrap();
        let now = Timestamp::now();
        let item = TaskItem {
            name: name.clone(),
            request,
            status: TaskStatus::Waiting,
            status_message: None,
            created_at: now,
            updated_at: None,
        };
        let task = Task {
            id: TaskId::generate(),
            kind: TaskKind::Core,
            task_type: TaskType::Create,
            core_version: "2.12.0".into(),
            options: None,
            items: vec![item],
            status: TaskStatus::Waiting,
            status_message: None,
            created_at: now,
            updated_at: None,
        };
        // The core's record is read from memory too: absent first, then there at once.
        for _ in 0..2 {
            assert!(reader.core(&name).await.unwrap().is_none());
        }
        writer.create_task(&task).await.unwrap();
        let event = Event { detail_type: "Core Created Event".into(), detail: serde_json::json!({}) };
        writer.complete_core_create(&task.id, &Core::new(name.clone(), "p".into(), now), &event, None).await.unwrap();
        // Read twice: the second answer may come from memory, and must still be right.
        for _ in 0..2 {
            assert_eq!(cores(&reader.software_counters().await.unwrap()), round);
            assert_eq!(reader.fleet_counters().await.unwrap(), reader.recount_fleet().await.unwrap());
            assert_eq!(reader.core(&name).await.unwrap().map(|c| c.name), Some(name.clone()));
        }
        // And another writer's change of it shows at once.
        assert!(reader.core(&name).await.unwrap().unwrap().software.observed_at.is_none());
        let device = ggprov_domain::ports::CoreDevice {
            status: "HEALTHY".into(),
            core_version: Some("2.12.0".into()),
            platform: Some("linux".into()),
            architecture: Some("amd64".into()),
            last_status_update_timestamp: Some(now),
            tags: Default::default(),
        };
        assert!(writer.observe_core(&name, &device).await.unwrap());
        assert!(reader.core(&name).await.unwrap().unwrap().software.observed_at.is_some(), "seen at once");
    }

    // Templates are read from memory too: another writer's new version shows at once, and so
    // does a template that did not exist when it was first asked for.
    use ggprov_domain::ports::TemplateStore as _;
    let name = ggprov_domain::TemplateName::parse("cached").unwrap();
    for _ in 0..2 {
        assert!(reader.latest_template(&name).await.unwrap().is_none());
    }
    let mut template = ggprov_testkit::builders::template("cached");
    writer.create_template(&template).await.unwrap();
    for version in 1..=3 {
        if version > 1 {
            template = template.next(template.spec.clone(), Timestamp::now());
            writer.append_template_version(&template).await.unwrap();
        }
        for _ in 0..2 {
            assert_eq!(reader.latest_template(&name).await.unwrap().map(|t| t.version), Some(version));
        }
    }
}

/// A core and a client device recorded before the certificate inventory (no `certificate` on
/// their records, the PEM in their journals) get theirs from the journal, once, with counts.
#[tokio::test]
async fn things_recorded_before_the_inventory_get_their_certificates_from_their_journals() {
    use ggprov_domain::cores::{Core, Device, TaskKind};
    use ggprov_domain::ports::{
        CertificateInventory as _, CoreRecords as _, DeviceRecords as _, ProvisioningJournals as _, TaskStore as _,
    };
    use ggprov_domain::{ThingName, Timestamp};

    let store = sqlite_store().await;
    let ca = ggprov_pki::create_ca("old CA", 3650).unwrap();
    let ca_material = ggprov_domain::ports::CaMaterial {
        ca_id: ggprov_pki::fingerprint(&ca.certificate_pem).unwrap(),
        certificate_pem: ca.certificate_pem.clone(),
        private_key: ca.private_key.clone(),
    };
    let thing = |n: &str| ThingName::parse(n).unwrap();
    let core_task = ggprov_testkit::core_store::task(TaskKind::Core, &["old-core", "no-journal"]);
    store.create_task(&core_task).await.unwrap();
    for name in ["old-core", "no-journal"] {
        let core = Core::new(thing(name), "greengrass2_core".into(), Timestamp::now());
        store
            .complete_core_create(
                &core_task.id,
                &core,
                &ggprov_testkit::core_store::event("Core Created Event", 0),
                None,
            )
            .await
            .unwrap();
    }
    let device_task =
        ggprov_testkit::core_store::task(TaskKind::Device { core_name: thing("old-core") }, &["old-sensor"]);
    store.create_task(&device_task).await.unwrap();
    let device = Device {
        name: thing("old-sensor"),
        core_name: thing("old-core"),
        provisioning_template: "greengrass2_client_device".into(),
        artifacts: Default::default(),
        certificate: None,
        created_at: Timestamp::now(),
        updated_at: None,
    };
    store
        .complete_device_create(
            &device_task.id,
            &device,
            &ggprov_testkit::core_store::event("Device Created Event", 0),
            None,
        )
        .await
        .unwrap();
    for (name, days) in [("old-core", 20), ("old-sensor", 200)] {
        let info = ggprov_domain::provisioning::CertInfo { days_expiry: Some(days), ..Default::default() };
        let minted = ggprov_pki::mint(&ca_material, name, &info).unwrap();
        let mut journal = store.journal(&thing(name)).await.unwrap();
        journal.certificate_id = Some(ggprov_pki::fingerprint(&minted.certificate_pem).unwrap());
        journal.certificate_arn =
            Some(format!("arn:aws:iot:us-east-1:123456789012:cert/{}", journal.certificate_id.clone().unwrap()));
        journal.certificate_pem = Some(minted.certificate_pem);
        journal.ca_certificate_pem = Some(ca.certificate_pem.clone());
        store.save_journal(&thing(name), &mut journal).await.unwrap();
    }

    assert_eq!(ggprov_engine::backfill_certificates(store.as_ref()).await.unwrap(), 2);
    let core = store.core(&thing("old-core")).await.unwrap().unwrap().certificate.unwrap();
    assert_eq!(core.ca_id.as_deref(), Some(ca_material.ca_id.as_str()));
    assert_eq!((core.not_after.as_millis() - core.not_before.as_millis()) / 86_400_000, 20);
    assert!(store.device(&thing("old-sensor")).await.unwrap().unwrap().certificate.is_some());
    assert!(store.core(&thing("no-journal")).await.unwrap().unwrap().certificate.is_none());
    let bound = Timestamp::from_millis(Timestamp::now().as_millis() + 30 * 86_400_000).unwrap();
    let counts = store.certificate_counts(&[bound]).await.unwrap();
    assert_eq!((counts[&ca_material.ca_id].active, counts[&ca_material.ca_id].before[0]), (2, 1));
    // A second run finds nothing left to do.
    assert_eq!(ggprov_engine::backfill_certificates(store.as_ref()).await.unwrap(), 0);
}
