//! The `TemplateStore` conformance suite.
//!
//! ```text
//! ggprov_testkit::template_store_conformance!(my_store().await);
//! ```
//! expands to one `#[tokio::test]` per behaviour; the expression must build a fresh, empty
//! store (it is evaluated once per test, inside an async context) as `Arc<dyn TemplateStore>`.

use std::collections::BTreeSet;
use std::sync::Arc;

use ggprov_domain::ports::{StoreError, TemplateStore};
use ggprov_domain::{PageRequest, TemplateName, Timestamp};

use crate::builders::{full_spec, spec, template};

/// Generates the suite's tests for one adapter.
#[macro_export]
macro_rules! template_store_conformance {
    ($make:expr) => {
        $crate::template_store_conformance!(@tests $make;
            created_template_reads_back_unchanged,
            creating_an_existing_template_fails,
            append_requires_the_previous_version,
            racing_appends_each_get_their_own_version,
            templates_list_in_name_order_and_page_exhaustively,
            versions_list_in_numeric_order_and_page_exhaustively,
            delete_removes_every_version,
            latest_versions_follow_appends_and_deletes,
        );
    };
    (@tests $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let store: ::std::sync::Arc<dyn ::ggprov_domain::ports::TemplateStore> = $make;
                $crate::template_store::$name(store).await;
            }
        )*
    };
}

fn name(s: &str) -> TemplateName {
    TemplateName::parse(s).expect("valid name")
}

pub async fn created_template_reads_back_unchanged(store: Arc<dyn TemplateStore>) {
    let mut t = template("roundtrip");
    t.spec = full_spec();
    store.create_template(&t).await.expect("create");
    assert_eq!(store.latest_template(&t.name).await.unwrap().as_ref(), Some(&t));
    assert_eq!(store.template_version(&t.name, 1).await.unwrap().as_ref(), Some(&t));
    assert_eq!(store.template_version(&t.name, 2).await.unwrap(), None);
    assert_eq!(store.latest_template(&name("absent")).await.unwrap(), None);
}

pub async fn creating_an_existing_template_fails(store: Arc<dyn TemplateStore>) {
    let t = template("dup");
    store.create_template(&t).await.expect("first create");
    let mut other = template("dup");
    other.spec = spec("2.5.0");
    assert!(matches!(store.create_template(&other).await, Err(StoreError::AlreadyExists)));
    assert_eq!(store.latest_template(&t.name).await.unwrap().unwrap().spec, t.spec, "the first template is untouched");
}

pub async fn append_requires_the_previous_version(store: Arc<dyn TemplateStore>) {
    let v1 = template("appends");
    store.create_template(&v1).await.unwrap();
    let v2 = v1.next(spec("2.5.0"), Timestamp::now());
    store.append_template_version(&v2).await.expect("v2 follows v1");
    // A writer that derived its version from v1 too has lost the race.
    let stale = v1.next(spec("2.6.0"), Timestamp::now());
    assert!(matches!(store.append_template_version(&stale).await, Err(StoreError::Conflict)));
    assert_eq!(store.latest_template(&v1.name).await.unwrap(), Some(v2.clone()));
    // Skipping a version is a conflict as well.
    let mut skipping = v2.next(spec("2.6.0"), Timestamp::now());
    skipping.version = 4;
    assert!(matches!(store.append_template_version(&skipping).await, Err(StoreError::Conflict)));
    let orphan = template("never-created").next(spec("2.5.0"), Timestamp::now());
    assert!(matches!(store.append_template_version(&orphan).await, Err(StoreError::NotFound)));
}

pub async fn racing_appends_each_get_their_own_version(store: Arc<dyn TemplateStore>) {
    const WRITERS: usize = 8;
    let v1 = template("race");
    store.create_template(&v1).await.unwrap();
    let writers = (0..WRITERS).map(|i| {
        let store = Arc::clone(&store);
        let name = v1.name.clone();
        tokio::spawn(async move {
            let content = spec(&format!("2.{i}.0"));
            loop {
                let latest = store.latest_template(&name).await.unwrap().unwrap();
                let next = latest.next(content.clone(), Timestamp::now());
                match store.append_template_version(&next).await {
                    Ok(()) => return next.version,
                    Err(StoreError::Conflict) => continue,
                    Err(err) => panic!("append failed: {err}"),
                }
            }
        })
    });
    let versions: BTreeSet<u32> = futures::future::join_all(writers).await.into_iter().map(Result::unwrap).collect();
    let expected: BTreeSet<u32> = (2..=WRITERS as u32 + 1).collect();
    assert_eq!(versions, expected, "every writer got a distinct version, none was lost");
    let stored = store.list_template_versions(&v1.name, PageRequest::first(100)).await.unwrap();
    assert_eq!(stored.items.len(), WRITERS + 1);
    let contents: BTreeSet<String> =
        stored.items.iter().skip(1).map(|t| t.spec.components()[0].version.to_string()).collect();
    assert_eq!(contents.len(), WRITERS, "every writer's content is stored");
}

pub async fn templates_list_in_name_order_and_page_exhaustively(store: Arc<dyn TemplateStore>) {
    let names = ["b", "a", "B", "a-1", "a_1", "c", "A"];
    for n in names {
        store.create_template(&template(n)).await.unwrap();
    }
    let v2 = store.latest_template(&name("c")).await.unwrap().unwrap().next(spec("2.5.0"), Timestamp::now());
    store.append_template_version(&v2).await.unwrap();
    let mut expected: Vec<&str> = names.to_vec();
    expected.sort_unstable(); // byte order: uppercase before lowercase, '-' before '_'
    let all = store.list_templates(PageRequest::first(100)).await.unwrap();
    assert_eq!(all.items.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), expected);
    assert_eq!(all.last_evaluated, None, "one page holds everything");
    assert_eq!(all.items.iter().find(|t| t.name.as_str() == "c").unwrap().version, 2, "lists hold the latest version");
    let mut seen = Vec::new();
    let mut page = PageRequest::first(3);
    loop {
        let result = store.list_templates(page.clone()).await.unwrap();
        assert!(result.items.len() <= 3);
        seen.extend(result.items.iter().map(|t| t.name.as_str().to_owned()));
        match result.last_evaluated {
            Some(key) => page = PageRequest::after(3, key),
            None => break,
        }
    }
    assert_eq!(seen, expected);
}

pub async fn versions_list_in_numeric_order_and_page_exhaustively(store: Arc<dyn TemplateStore>) {
    let mut latest = template("versions");
    store.create_template(&latest).await.unwrap();
    for _ in 0..11 {
        latest = latest.next(spec("2.5.0"), Timestamp::now());
        store.append_template_version(&latest).await.unwrap();
    }
    let all = store.list_template_versions(&latest.name, PageRequest::first(1000)).await.unwrap();
    assert_eq!(all.items.iter().map(|t| t.version).collect::<Vec<_>>(), (1..=12).collect::<Vec<_>>());
    let mut seen = Vec::new();
    let mut page = PageRequest::first(5);
    loop {
        let result = store.list_template_versions(&latest.name, page.clone()).await.unwrap();
        seen.extend(result.items.iter().map(|t| t.version));
        match result.last_evaluated {
            Some(key) => page = PageRequest::after(5, key),
            None => break,
        }
    }
    assert_eq!(seen, (1..=12).collect::<Vec<_>>());
    assert!(store.list_template_versions(&name("absent"), PageRequest::first(10)).await.unwrap().items.is_empty());
}

pub async fn delete_removes_every_version(store: Arc<dyn TemplateStore>) {
    let v1 = template("deleted");
    store.create_template(&v1).await.unwrap();
    store.append_template_version(&v1.next(spec("2.5.0"), Timestamp::now())).await.unwrap();
    store.create_template(&template("kept")).await.unwrap();
    assert!(store.delete_template(&v1.name).await.unwrap());
    assert_eq!(store.latest_template(&v1.name).await.unwrap(), None);
    assert_eq!(store.template_version(&v1.name, 1).await.unwrap(), None);
    assert!(store.list_template_versions(&v1.name, PageRequest::first(10)).await.unwrap().items.is_empty());
    assert!(!store.delete_template(&v1.name).await.unwrap(), "a second delete finds nothing");
    assert!(store.latest_template(&name("kept")).await.unwrap().is_some(), "other templates are untouched");
    // The name is free again, starting over at version 1.
    store.create_template(&v1).await.expect("re-create after delete");
}

pub async fn latest_versions_follow_appends_and_deletes(store: Arc<dyn TemplateStore>) {
    let (a, b) = (template("latest-a"), template("latest-b"));
    let names = [a.name.clone(), b.name.clone(), name("latest-absent")];
    store.create_template(&a).await.unwrap();
    let versions = |pairs: &[(&str, u32)]| pairs.iter().map(|(n, v)| ((*n).to_owned(), *v)).collect();
    assert_eq!(store.latest_versions(&names).await.unwrap(), versions(&[("latest-a", 1)]));
    store.create_template(&b).await.unwrap();
    store.append_template_version(&a.next(spec("2.5.0"), Timestamp::now())).await.unwrap();
    // Asked again right after each write: a cached answer must not hide it.
    assert_eq!(store.latest_versions(&names).await.unwrap(), versions(&[("latest-a", 2), ("latest-b", 1)]));
    assert_eq!(store.latest_versions(&names[1..]).await.unwrap(), versions(&[("latest-b", 1)]));
    assert!(store.delete_template(&a.name).await.unwrap());
    assert_eq!(store.latest_versions(&names).await.unwrap(), versions(&[("latest-b", 1)]));
}
