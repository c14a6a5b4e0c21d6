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
        writer.create_task(&task).await.unwrap();
        let event = Event { detail_type: "Core Created Event".into(), detail: serde_json::json!({}) };
        writer.complete_core_create(&task.id, &Core::new(name, "p".into(), now), &event).await.unwrap();
        // Read twice: the second answer may come from memory, and must still be right.
        for _ in 0..2 {
            assert_eq!(cores(&reader.software_counters().await.unwrap()), round);
            assert_eq!(reader.fleet_counters().await.unwrap(), reader.recount_fleet().await.unwrap());
        }
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
