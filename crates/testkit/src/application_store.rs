//! The `ApplicationStore` conformance suite.
//!
//! ```text
//! ggprov_testkit::application_store_conformance!(my_store().await);
//! ```
//! expands to one `#[tokio::test]` per behaviour; the expression must build a fresh, empty
//! store that is also the outbox (`Arc<S>` with `S: ApplicationStore + Outbox`).

use ggprov_domain::PageRequest;
use ggprov_domain::application::{
    Application, ApplicationInput, ApplicationName, ApplicationOptions, ApplicationState, PublishTarget,
};
use ggprov_domain::cores::Event;
use ggprov_domain::ports::{ApplicationStore, Outbox, Publication, StoreError};

/// Generates the suite's tests for one adapter.
#[macro_export]
macro_rules! application_store_conformance {
    ($make:expr) => {
        $crate::application_store_conformance!(@tests $make;
            versions_are_reserved_in_order_and_read_back_unchanged,
            a_version_is_published_once_with_one_event,
            applications_and_versions_list_in_order_and_page_exhaustively,
            delete_removes_every_version_with_its_event,
            a_marked_application_takes_no_new_version_and_publishes_nothing,
        );
    };
    (@tests $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                $crate::application_store::$name(&*$make).await;
            }
        )*
    };
}

/// Version `version` of application `name`, pending, with a Compose file of `compose_bytes`.
pub fn application(name: &str, version: u32, compose_bytes: usize) -> Application {
    let mut compose = String::from("services:\n  web:\n    image: public.ecr.aws/nginx/nginx:1.25\n");
    let line = "# \"padding\" \\ with characters JSON escapes\n";
    while compose.len() + line.len() <= compose_bytes {
        compose.push_str(line);
    }
    let input = ApplicationInput {
        description: Some(format!("{name} v{version}")),
        compose,
        options: ApplicationOptions::default(),
        registry_credentials: Vec::new(),
        images: Vec::new(),
    };
    let checked = input.check("us-east-1").expect("a valid application");
    let target = PublishTarget { prefix: "ggprov.app", bucket: "bucket", region: "us-east-1" };
    Application::build(ApplicationName::parse(name).expect("valid name"), version, checked, &target)
}

fn event(kind: &str, name: &str) -> Event {
    Event { detail_type: kind.to_owned(), detail: serde_json::json!({"applicationName": name}) }
}

async fn event_count<S: Outbox + ?Sized>(store: &S, kind: &str) -> usize {
    let page = store.events(PageRequest { limit: 1000, exclusive_start: None }).await.expect("events");
    page.items.iter().filter(|e| e.event.detail_type == kind).count()
}

pub async fn versions_are_reserved_in_order_and_read_back_unchanged<S: ApplicationStore + Outbox + ?Sized>(store: &S) {
    // The largest Compose file accepted (256 KiB, with characters JSON escapes) is stored.
    let v1 = application("shop", 1, ggprov_domain::application::MAX_COMPOSE_BYTES);
    store.create_application(&v1).await.expect("create");
    assert!(matches!(store.create_application(&v1).await, Err(StoreError::AlreadyExists)));
    assert_eq!(store.latest_application(&v1.name).await.unwrap().as_ref(), Some(&v1));
    assert!(matches!(store.append_application_version(&application("shop", 3, 0)).await, Err(StoreError::Conflict)));
    assert!(matches!(store.append_application_version(&application("gone", 2, 0)).await, Err(StoreError::NotFound)));
    let v2 = application("shop", 2, 0);
    store.append_application_version(&v2).await.expect("append");
    assert!(matches!(store.append_application_version(&v2).await, Err(StoreError::Conflict)), "one writer per number");
    assert_eq!(store.latest_application(&v1.name).await.unwrap().as_ref(), Some(&v2));
    assert_eq!(store.application_version(&v1.name, 1).await.unwrap().as_ref(), Some(&v1));
    assert_eq!(store.application_version(&v1.name, 3).await.unwrap(), None);
}

pub async fn a_version_is_published_once_with_one_event<S: ApplicationStore + Outbox + ?Sized>(store: &S) {
    let mut app = application("pub", 1, 0);
    store.create_application(&app).await.unwrap();
    app.state = ApplicationState::Published;
    app.artifacts[0].version_id = Some("v-1".into());
    let created = event("Application Created Event", "pub");
    let (first, second) = futures::join!(
        store.publish_application_version(&app, &created),
        store.publish_application_version(&app, &created),
    );
    let mut outcomes = [first.unwrap(), second.unwrap()];
    outcomes.sort_by_key(|p| *p != Publication::Published);
    assert_eq!(outcomes, [Publication::Published, Publication::AlreadyPublished], "one publisher wins");
    assert_eq!(event_count(store, "Application Created Event").await, 1);
    assert_eq!(store.latest_application(&app.name).await.unwrap().as_ref(), Some(&app));
}

pub async fn applications_and_versions_list_in_order_and_page_exhaustively<S: ApplicationStore + Outbox + ?Sized>(
    store: &S,
) {
    for name in ["c", "a", "b"] {
        store.create_application(&application(name, 1, 0)).await.unwrap();
    }
    store.append_application_version(&application("b", 2, 0)).await.unwrap();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.list_applications(PageRequest { limit: 2, exclusive_start: after }).await.unwrap();
        seen.extend(page.items.iter().map(|a| (a.name.as_str().to_owned(), a.version)));
        match page.last_evaluated {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, [("a".to_owned(), 1), ("b".to_owned(), 2), ("c".to_owned(), 1)], "latest versions by name");
    let b = ApplicationName::parse("b").unwrap();
    let first = store.list_application_versions(&b, PageRequest { limit: 1, exclusive_start: None }).await.unwrap();
    assert_eq!((first.items[0].version, first.last_evaluated), (1, Some(1)));
    let rest = store.list_application_versions(&b, PageRequest { limit: 1, exclusive_start: Some(1) }).await.unwrap();
    assert_eq!((rest.items[0].version, rest.last_evaluated), (2, None));
}

pub async fn delete_removes_every_version_with_its_event<S: ApplicationStore + Outbox + ?Sized>(store: &S) {
    let app = application("del", 1, 0);
    store.create_application(&app).await.unwrap();
    store.append_application_version(&application("del", 2, 0)).await.unwrap();
    let deleted = event("Application Deleted Event", "del");
    assert!(
        matches!(store.delete_application(&app.name, &deleted).await, Err(StoreError::Conflict)),
        "a delete that has not marked the application deletes nothing"
    );
    assert_eq!(store.application_version(&app.name, 1).await.unwrap().map(|a| a.version), Some(1));
    assert_eq!(store.begin_application_delete(&app.name).await.unwrap(), Some(2));
    assert_eq!(store.begin_application_delete(&app.name).await.unwrap(), Some(2), "an interrupted delete resumes");
    assert!(store.delete_application(&app.name, &deleted).await.unwrap());
    assert!(!store.delete_application(&app.name, &deleted).await.unwrap());
    assert_eq!(store.begin_application_delete(&app.name).await.unwrap(), None);
    assert_eq!(event_count(store, "Application Deleted Event").await, 1);
    assert_eq!(store.latest_application(&app.name).await.unwrap(), None);
    assert_eq!(store.application_version(&app.name, 2).await.unwrap(), None);
    // The name starts again at version 1.
    store.create_application(&app).await.expect("recreated");
    let versions =
        store.list_application_versions(&app.name, PageRequest { limit: 10, exclusive_start: None }).await.unwrap();
    assert_eq!(versions.items.len(), 1);
}

/// Once a delete has begun, the version number it answered is final: no update appends past
/// it and no pending version is published (so a racing update cannot leave a component
/// version the delete did not see), and a version published before stays readable until the
/// delete ends.
pub async fn a_marked_application_takes_no_new_version_and_publishes_nothing<S: ApplicationStore + Outbox + ?Sized>(
    store: &S,
) {
    let mut published = application("mark", 1, 0);
    store.create_application(&published).await.unwrap();
    published.state = ApplicationState::Published;
    let created = event("Application Created Event", "mark");
    assert_eq!(store.publish_application_version(&published, &created).await.unwrap(), Publication::Published);
    let pending = application("mark", 2, 0);
    store.append_application_version(&pending).await.unwrap();
    assert_eq!(store.begin_application_delete(&pending.name).await.unwrap(), Some(2));
    assert!(
        matches!(store.append_application_version(&application("mark", 3, 0)).await, Err(StoreError::NotFound)),
        "no version after the one the delete answered"
    );
    let mut late = pending.clone();
    late.state = ApplicationState::Published;
    let updated = event("Application Updated Event", "mark");
    assert_eq!(store.publish_application_version(&late, &updated).await.unwrap(), Publication::Gone);
    assert_eq!(event_count(store, "Application Updated Event").await, 0, "no event for a version never published");
    assert_eq!(store.application_version(&pending.name, 1).await.unwrap().as_ref(), Some(&published));
    assert!(matches!(store.create_application(&application("mark", 1, 0)).await, Err(StoreError::AlreadyExists)));
    assert!(store.delete_application(&pending.name, &event("Application Deleted Event", "mark")).await.unwrap());
}
