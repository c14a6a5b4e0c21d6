//! The conformance suite of the record ports (`TaskStore`, `CoreRecords`, `DeviceRecords`,
//! `ProvisioningJournals`, `Outbox`, `DeploymentRecords`, `FleetCounters`, `IngestCursors`):
//! derived task status, exactly-once item endings with their events, fleet counters that always
//! equal a recount, the deployment transitions persisted, paging, the outbox relay's claims,
//! journals, cursors and the sweeper's queries. Every adapter runs all of it.
//!
//! ```text
//! ggprov_testkit::core_store_conformance!(my_store().await);
//! ```

use std::sync::Arc;
use std::time::Duration;

use ggprov_domain::cores::DeploymentStatus;
use ggprov_domain::cores::{Core, Device, Event, NewCore, Task, TaskFamily, TaskItem, TaskKind, TemplateRef};
use ggprov_domain::ports::{CoreFilter, CoreStore, DeploymentOutcome};
use ggprov_domain::{PageRequest, TaskId, TaskStatus, TaskType, ThingName, Timestamp};

mod certificates;
mod concurrency;

pub use certificates::*;
pub use concurrency::*;

/// Generates the suite's tests for one adapter; the expression builds a fresh, empty store.
#[macro_export]
macro_rules! core_store_conformance {
    ($make:expr) => {
        $crate::core_store_conformance!(@tests $make;
            task_status_follows_its_items_and_items_end_once,
            core_records_move_the_fleet_counters_exactly,
            deployment_tasks_expand_once_and_outcomes_apply_unless_stale,
            devices_list_by_core_and_delete_once,
            outbox_events_are_claimed_by_one_relay_and_published_once,
            the_sweeper_sees_open_items_and_unexpanded_tasks,
            journals_round_trip_and_go_with_their_core,
            a_device_items_end_saves_its_journal_on_the_journals_condition,
            ingest_cursors_only_move_forward,
            a_failed_deployment_item_marks_its_core_failed,
            a_thing_has_one_owner_until_its_item_ends,
            concurrent_claims_of_one_name_have_exactly_one_winner,
            idempotency_keys_replay_refuse_and_expire,
            an_item_is_worked_on_by_one_holder_at_a_time,
            rollout_state_changes_are_conditional_and_items_keep_their_waves,
            core_software_is_observed_counted_and_filtered,
            software_update_tasks_are_conditional_and_found_by_token,
            certificate_inventory_counts_equal_a_recount_and_revocation_sticks,
            rotation_rollouts_hold_later_waves_and_skip_what_never_started,
        );
    };
    (@tests $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let store: ::std::sync::Arc<dyn ::ggprov_domain::ports::CoreStore> = $make;
                $crate::core_store::$name(store).await;
            }
        )*
    };
}

pub(crate) fn thing(name: &str) -> ThingName {
    ThingName::parse(name).expect("valid thing name")
}

fn request(name: &str) -> NewCore {
    serde_json::from_value(serde_json::json!({"name": name, "provisioningTemplate": "greengrass2_core"}))
        .expect("request")
}

/// A task of `kind` with a waiting item per name (for suites and tests outside this crate too).
pub fn task(kind: TaskKind, names: &[&str]) -> Task {
    let now = Timestamp::now();
    Task {
        id: TaskId::generate(),
        kind,
        task_type: TaskType::Create,
        core_version: "2.12.0".into(),
        options: None,
        items: names
            .iter()
            .map(|n| TaskItem {
                name: thing(n),
                request: request(n),
                status: TaskStatus::Waiting,
                status_message: None,
                created_at: now,
                updated_at: None,
            })
            .collect(),
        status: TaskStatus::Waiting,
        status_message: None,
        created_at: now,
        updated_at: None,
    }
}

/// A deployment task of `template` targeting `names`, not expanded yet.
fn deployment_task(template: TemplateRef, names: &[&str]) -> Task {
    Task::new_deployment(
        TaskId::generate(),
        template,
        serde_json::json!({"thingNames": names}),
        None,
        None,
        Timestamp::now(),
    )
}

/// An event of `kind` numbered `n`.
pub fn event(kind: &str, n: usize) -> Event {
    Event { detail_type: kind.into(), detail: serde_json::json!({"n": n}) }
}

pub(crate) async fn event_count(store: &Arc<dyn CoreStore>) -> usize {
    store.events(PageRequest::first(1000)).await.expect("events").items.len()
}

async fn counters_match_recount(store: &Arc<dyn CoreStore>) {
    assert_eq!(store.fleet_counters().await.unwrap(), store.recount_fleet().await.unwrap(), "counters = recount");
    assert_eq!(
        store.software_counters().await.unwrap(),
        store.recount_software().await.unwrap(),
        "software counters = recount"
    );
}

pub async fn task_status_follows_its_items_and_items_end_once(store: Arc<dyn CoreStore>) {
    let t = task(TaskKind::Core, &["a-1", "a-2"]);
    store.create_task(&t).await.unwrap();
    assert_eq!(store.task_header(&t.id).await.unwrap().unwrap().status, TaskStatus::Waiting);
    let started = store.start_item(&t.id, &thing("a-1"), "job-1", Duration::from_secs(60)).await.unwrap().unwrap();
    assert!(started.won);
    assert_eq!(started.item.status, TaskStatus::InProgress);
    assert_eq!(store.task_header(&t.id).await.unwrap().unwrap().status, TaskStatus::InProgress);
    let core = Core::new(thing("a-1"), "greengrass2_core".into(), Timestamp::now());
    store.complete_core_create(&t.id, &core, &event("Core Created Event", 1), None).await.unwrap();
    // A duplicate delivery changes nothing and writes no second event.
    store.complete_core_create(&t.id, &core, &event("Core Created Event", 1), None).await.unwrap();
    store.fail_item(&t.id, &thing("a-2"), "boom", Some(&event("Core Created Event", 2))).await.unwrap();
    store.fail_item(&t.id, &thing("a-2"), "boom again", Some(&event("Core Created Event", 2))).await.unwrap();
    assert_eq!(event_count(&store).await, 2);
    let full = store.task(&t.id).await.unwrap().unwrap();
    assert_eq!(full.status, TaskStatus::Failure);
    let statuses: Vec<_> =
        full.items.iter().map(|i| (i.name.as_str().to_owned(), i.status, i.status_message.clone())).collect();
    assert_eq!(
        statuses,
        vec![("a-1".into(), TaskStatus::Success, None), ("a-2".into(), TaskStatus::Failure, Some("boom".into()))]
    );
    // Listing by family pages through every task exactly once.
    let more = task(TaskKind::Core, &["b-1"]);
    store.create_task(&more).await.unwrap();
    let first = store.list_tasks(TaskFamily::Core, PageRequest { limit: 1, exclusive_start: None }).await.unwrap();
    let second = store
        .list_tasks(TaskFamily::Core, PageRequest { limit: 1, exclusive_start: first.last_evaluated.clone() })
        .await
        .unwrap();
    let mut ids = vec![first.items[0].id.clone(), second.items[0].id.clone()];
    ids.sort();
    let mut expected = vec![t.id.clone(), more.id.clone()];
    expected.sort();
    assert_eq!(ids, expected);
    assert!(store.list_tasks(TaskFamily::Deployment, PageRequest::first(10)).await.unwrap().items.is_empty());
}

pub async fn core_records_move_the_fleet_counters_exactly(store: Arc<dyn CoreStore>) {
    let t = task(TaskKind::Core, &["c-1", "c-2", "c-3"]);
    store.create_task(&t).await.unwrap();
    for n in ["c-1", "c-2", "c-3"] {
        let core = Core::new(thing(n), "greengrass2_core".into(), Timestamp::now());
        store.complete_core_create(&t.id, &core, &event("Core Created Event", 0), None).await.unwrap();
    }
    let counts = store.fleet_counters().await.unwrap();
    assert_eq!(counts[&("None".to_owned(), 0)].desired_in_use, 3);
    counters_match_recount(&store).await;
    // Batched existence reads, across more names than one batch holds.
    let mut asked: Vec<ThingName> = (0..250).map(|i| thing(&format!("absent-{i}"))).collect();
    asked.extend([thing("c-3"), thing("c-1")]);
    let found = store.existing_cores(&asked).await.unwrap();
    assert_eq!(found.iter().map(ThingName::as_str).collect::<Vec<_>>(), ["c-1", "c-3"]);
    assert!(store.existing_devices(&asked).await.unwrap().is_empty());
    // Paging and filters.
    let page = store.list_cores(&CoreFilter::default(), PageRequest { limit: 2, exclusive_start: None }).await.unwrap();
    assert_eq!(page.items.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["c-1", "c-2"]);
    let rest = store
        .list_cores(&CoreFilter::default(), PageRequest { limit: 2, exclusive_start: page.last_evaluated })
        .await
        .unwrap();
    assert_eq!(rest.items.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["c-3"]);
    assert!(rest.last_evaluated.is_none());
    let failed = CoreFilter { failed_only: true, ..CoreFilter::default() };
    assert!(store.list_cores(&failed, PageRequest::first(10)).await.unwrap().items.is_empty());
    // Deleting moves them back.
    let delete = task(TaskKind::Core, &["c-2"]);
    store.create_task(&delete).await.unwrap();
    store.complete_core_delete(&delete.id, &thing("c-2"), &event("Core Deleted Event", 0)).await.unwrap();
    assert!(store.core(&thing("c-2")).await.unwrap().is_none());
    assert_eq!(store.fleet_counters().await.unwrap()[&("None".to_owned(), 0)].desired_in_use, 2);
    counters_match_recount(&store).await;
}

pub async fn deployment_tasks_expand_once_and_outcomes_apply_unless_stale(store: Arc<dyn CoreStore>) {
    let provision = task(TaskKind::Core, &["d-1", "d-2", "d-3"]);
    store.create_task(&provision).await.unwrap();
    for n in ["d-1", "d-2", "d-3"] {
        let core = Core::new(thing(n), "greengrass2_core".into(), Timestamp::now());
        store.complete_core_create(&provision.id, &core, &event("Core Created Event", 0), None).await.unwrap();
    }
    let template = TemplateRef { name: "tpl".into(), version: 2 };
    let nucleus =
        ggprov_domain::software::Nucleus { component: "aws.greengrass.Nucleus".into(), version: "2.13.0".into() };
    let deployment = deployment_task(template.clone(), &["d-1", "d-2", "d-3"]);
    store.create_task(&deployment).await.unwrap();
    let cores = [thing("d-1"), thing("d-2"), thing("d-3")];
    assert!(
        store
            .expand_deployment_task(&deployment.id, &cores, &[], 2, &[event("DeploymentTask Created Event", 0)], None)
            .await
            .unwrap()
    );
    assert!(
        !store
            .expand_deployment_task(&deployment.id, &cores, &[], 2, &[event("DeploymentTask Created Event", 0)], None)
            .await
            .unwrap()
    );
    let header = store.task_header(&deployment.id).await.unwrap().unwrap();
    let TaskKind::Deployment(spec) = &header.kind else { panic!("a deployment task") };
    assert_eq!((spec.expanded, spec.batches_total, header.status), (true, Some(2), TaskStatus::Waiting));
    let first = store.task_items(&deployment.id, PageRequest { limit: 2, exclusive_start: None }).await.unwrap();
    let second = store
        .task_items(&deployment.id, PageRequest { limit: 2, exclusive_start: first.last_evaluated })
        .await
        .unwrap();
    assert_eq!(first.items.len() + second.items.len(), 3);

    // One Greengrass deployment per template version: the first writer wins.
    assert_eq!(store.save_template_deployment(&template, "group", "dep-1").await.unwrap(), "dep-1");
    assert_eq!(store.save_template_deployment(&template, "group", "dep-2").await.unwrap(), "dep-1");
    assert_eq!(store.template_of_deployment("dep-1").await.unwrap(), Some(template.clone()));

    for core in &cores {
        assert!(store.start_item(&deployment.id, core, "job-d", Duration::from_secs(60)).await.unwrap().unwrap().won);
        store
            .complete_deployment_item(&deployment.id, core, &template, "dep-1", Some(&nucleus), Timestamp::now())
            .await
            .unwrap();
    }
    assert_eq!(store.task_header(&deployment.id).await.unwrap().unwrap().status, TaskStatus::Success);
    assert_eq!(store.cores_in_progress().await.unwrap().len(), 3);
    counters_match_recount(&store).await;
    let history = store.core_deployments(&thing("d-1"), PageRequest::first(10)).await.unwrap();
    assert_eq!(history.items.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>(), vec![deployment.id.clone()]);

    let outcome = |core: &str, succeeded: bool, time: Timestamp| DeploymentOutcome {
        position: 0,
        core_name: core.into(),
        deployment_id: "dep-1".into(),
        succeeded,
        detailed_status: if succeeded { "SUCCESSFUL".into() } else { "FAILED".into() },
        reason: None,
        time,
        nucleus: Some(nucleus.clone()),
    };
    let later = Timestamp::from_millis(Timestamp::now().as_millis() + 60_000).unwrap();
    assert!(store.apply_deployment_outcome(&outcome("d-1", true, later), &template, &event("x", 0)).await.unwrap());
    let stale = Timestamp::from_millis(0).unwrap();
    assert!(!store.apply_deployment_outcome(&outcome("d-1", false, stale), &template, &event("x", 0)).await.unwrap());
    assert!(store.apply_deployment_outcome(&outcome("d-2", false, later), &template, &event("x", 0)).await.unwrap());
    let d1 = store.core(&thing("d-1")).await.unwrap().unwrap();
    assert_eq!((d1.reported.clone(), d1.deployment_status.as_str()), (template.clone(), "SUCCESSFUL"));
    let counts = store.fleet_counters().await.unwrap()[&("tpl".to_owned(), 2)];
    assert_eq!(
        (counts.desired_in_use, counts.reported_in_use, counts.last_deployment_success, counts.last_deployment_failed),
        (3, 1, 1, 1)
    );
    counters_match_recount(&store).await;
    let failed = CoreFilter { failed_only: true, ..CoreFilter::default() };
    let failed = store.list_cores(&failed, PageRequest::first(10)).await.unwrap();
    assert_eq!(failed.items.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["d-2"]);
    let by_version =
        CoreFilter { template_name: Some("tpl".into()), template_version: Some(2), ..CoreFilter::default() };
    assert_eq!(store.list_cores(&by_version, PageRequest::first(10)).await.unwrap().items.len(), 3);
    let failed_of_version = CoreFilter { failed_only: true, ..by_version };
    let failed = store.list_cores(&failed_of_version, PageRequest::first(10)).await.unwrap();
    assert_eq!(failed.items.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["d-2"]);
    let other_version = CoreFilter { template_version: Some(1), ..failed_of_version.clone() };
    assert!(store.list_cores(&other_version, PageRequest::first(10)).await.unwrap().items.is_empty());
    // Succeeding again takes the core off the failed listing.
    let again = Timestamp::from_millis(later.as_millis() + 1000).unwrap();
    assert!(store.apply_deployment_outcome(&outcome("d-2", true, again), &template, &event("x", 0)).await.unwrap());
    assert!(store.list_cores(&failed_of_version, PageRequest::first(10)).await.unwrap().items.is_empty());
    counters_match_recount(&store).await;
}

pub async fn devices_list_by_core_and_delete_once(store: Arc<dyn CoreStore>) {
    let t = task(TaskKind::Device { core_name: thing("core-e") }, &["e-1", "e-2", "e-3"]);
    store.create_task(&t).await.unwrap();
    for n in ["e-1", "e-2", "e-3"] {
        let device = Device {
            name: thing(n),
            core_name: thing("core-e"),
            provisioning_template: "greengrass2_client_device".into(),
            artifacts: Default::default(),
            certificate: None,
            created_at: Timestamp::now(),
            updated_at: None,
        };
        store.complete_device_create(&t.id, &device, &event("Device Created Event", 0), None).await.unwrap();
    }
    let first =
        store.list_devices_of_core(&thing("core-e"), PageRequest { limit: 2, exclusive_start: None }).await.unwrap();
    let second = store
        .list_devices_of_core(&thing("core-e"), PageRequest { limit: 2, exclusive_start: first.last_evaluated })
        .await
        .unwrap();
    let names: Vec<_> = first.items.iter().chain(&second.items).map(|d| d.name.as_str().to_owned()).collect();
    assert_eq!(names, ["e-1", "e-2", "e-3"]);
    let found = store.existing_devices(&[thing("e-2"), thing("nope"), thing("e-3")]).await.unwrap();
    assert_eq!(found.iter().map(ThingName::as_str).collect::<Vec<_>>(), ["e-2", "e-3"]);
    let before = event_count(&store).await;
    store.complete_device_delete(None, &thing("e-2"), &event("Device Deleted Event", 0)).await.unwrap();
    store.complete_device_delete(None, &thing("e-2"), &event("Device Deleted Event", 0)).await.unwrap();
    assert!(store.device(&thing("e-2")).await.unwrap().is_none());
    assert_eq!(event_count(&store).await, before + 1, "deleting what is gone says nothing");
}

pub async fn outbox_events_are_claimed_by_one_relay_and_published_once(store: Arc<dyn CoreStore>) {
    let t = task(TaskKind::Core, &["f-1", "f-2", "f-3"]);
    store.create_task(&t).await.unwrap();
    for (i, n) in ["f-1", "f-2", "f-3"].into_iter().enumerate() {
        store.fail_item(&t.id, &thing(n), "x", Some(&event("Core Created Event", i))).await.unwrap();
    }
    let page = store.events(PageRequest { limit: 2, exclusive_start: None }).await.unwrap();
    let rest = store.events(PageRequest { limit: 2, exclusive_start: page.last_evaluated }).await.unwrap();
    let ns: Vec<_> = page.items.iter().chain(&rest.items).map(|e| e.event.detail["n"].as_u64().unwrap()).collect();
    assert_eq!(ns, [2, 1, 0], "newest first, every event once");
    let long = Duration::from_secs(600);
    let claimed = store.claim_unpublished_events(10, long).await.unwrap();
    assert_eq!(claimed.len(), 3);
    assert!(store.claim_unpublished_events(10, long).await.unwrap().is_empty(), "claimed by one relay");
    assert_eq!(store.outbox_backlog().await.unwrap(), 3);
    store.mark_events_published(&claimed[..2]).await.unwrap();
    assert_eq!(store.outbox_backlog().await.unwrap(), 1);
    // A claim lapses: an event whose relay died is claimed again after its lease.
    let later = task(TaskKind::Core, &["f-4"]);
    store.create_task(&later).await.unwrap();
    store.fail_item(&later.id, &thing("f-4"), "x", Some(&event("Core Created Event", 4))).await.unwrap();
    let short = Duration::from_millis(200);
    let first = store.claim_unpublished_events(10, short).await.unwrap();
    assert_eq!(first.iter().map(|e| e.event.detail["n"].as_u64()).collect::<Vec<_>>(), [Some(4)], "only the new one");
    let lapsed = async {
        loop {
            let again = store.claim_unpublished_events(10, short).await.unwrap();
            if !again.is_empty() {
                return again;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let again = tokio::time::timeout(Duration::from_secs(10), lapsed).await.expect("the claim lapses");
    assert_eq!(again.iter().map(|e| e.id.clone()).collect::<Vec<_>>(), vec![first[0].id.clone()]);
}

/// The sweeper's queries: stale open items not held by a live lease, each taken once per
/// period; deployment tasks never expanded.
pub async fn the_sweeper_sees_open_items_and_unexpanded_tasks(store: Arc<dyn CoreStore>) {
    let t = task(TaskKind::Core, &["g-1", "g-2", "g-3"]);
    store.create_task(&t).await.unwrap();
    store.fail_item(&t.id, &thing("g-2"), "x", None).await.unwrap();
    // g-3 is held by a job whose lease lives for an hour.
    assert!(store.start_item(&t.id, &thing("g-3"), "live", Duration::from_secs(3600)).await.unwrap().unwrap().won);
    let base = Timestamp::now().as_millis();
    let at = |ms: i64| Timestamp::from_millis(base + ms).unwrap();
    assert!(store.take_stale_items(Timestamp::from_millis(0).unwrap(), at(0)).await.unwrap().is_empty());
    let open = store.take_stale_items(at(60_000), at(60_000)).await.unwrap();
    assert_eq!(open, vec![(t.id.clone(), thing("g-1"))], "not ended, not held by a live lease");
    // Taken: not again within the period (another sweeper, or the next sweep)...
    assert!(store.take_stale_items(at(60_000), at(60_000)).await.unwrap().is_empty());
    // ...but after it, and once the lease ran out, the held one too.
    let later = store.take_stale_items(at(120_000), at(7_200_000)).await.unwrap();
    assert_eq!(later, vec![(t.id.clone(), thing("g-1")), (t.id.clone(), thing("g-3"))]);
    let deployment = deployment_task(TemplateRef { name: "tpl".into(), version: 1 }, &["g-1"]);
    store.create_task(&deployment).await.unwrap();
    assert!(store.unexpanded_deployment_tasks(at(60_000)).await.unwrap().contains(&deployment.id));
    store.fail_deployment_task(&deployment.id, "matched nothing").await.unwrap();
    assert!(!store.unexpanded_deployment_tasks(at(60_000)).await.unwrap().contains(&deployment.id));
    assert_eq!(store.task_header(&deployment.id).await.unwrap().unwrap().status, TaskStatus::Failure);
}

/// `IngestCursors`: unknown feeds start at 0; a cursor never moves back.
pub async fn ingest_cursors_only_move_forward(store: Arc<dyn CoreStore>) {
    assert_eq!(store.ingest_cursor("feed-a").await.unwrap(), 0);
    store.save_ingest_cursor("feed-a", 7).await.unwrap();
    store.save_ingest_cursor("feed-a", 3).await.unwrap();
    assert_eq!(store.ingest_cursor("feed-a").await.unwrap(), 7);
    assert_eq!(store.ingest_cursor("feed-b").await.unwrap(), 0);
}

/// `DeploymentRecords`: a deployment item that fails records `Failure` on its core, which
/// then counts and lists as failed; a second ending changes nothing.
pub async fn a_failed_deployment_item_marks_its_core_failed(store: Arc<dyn CoreStore>) {
    let provision = task(TaskKind::Core, &["f-1"]);
    store.create_task(&provision).await.unwrap();
    let core = Core::new(thing("f-1"), "greengrass2_core".into(), Timestamp::now());
    store.complete_core_create(&provision.id, &core, &event("Core Created Event", 0), None).await.unwrap();
    let deployment = deployment_task(TemplateRef { name: "tpl".into(), version: 1 }, &["f-1"]);
    store.create_task(&deployment).await.unwrap();
    assert!(
        store
            .expand_deployment_task(
                &deployment.id,
                &[thing("f-1")],
                &[],
                10,
                &[event("DeploymentTask Created Event", 0)],
                None
            )
            .await
            .unwrap()
    );
    store.fail_deployment_item(&deployment.id, &thing("f-1"), "group limit reached").await.unwrap();
    store.fail_deployment_item(&deployment.id, &thing("f-1"), "again").await.unwrap();
    let failed = store.core(&thing("f-1")).await.unwrap().unwrap();
    assert_eq!(
        (failed.deployment_status, failed.deployment_status_message.as_deref()),
        (DeploymentStatus::failure(), Some("group limit reached"))
    );
    assert_eq!(store.task_header(&deployment.id).await.unwrap().unwrap().status, TaskStatus::Failure);
    let listed = store
        .list_cores(&CoreFilter { failed_only: true, ..CoreFilter::default() }, PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(listed.items.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["f-1"]);
    // Still desired: the version it had (none), since the move never happened.
    assert_eq!(store.fleet_counters().await.unwrap()[&("None".to_owned(), 0)].last_deployment_failed, 1);
    counters_match_recount(&store).await;
}

/// Rollouts: the state is saved on condition of its revision (two writers from one revision:
/// one wins), with its event; active rollouts are listed; items keep their wave, the template
/// their core had before the move, and a report once set; stopping skips the waiting items;
/// the sweeper leaves gated items alone; a retry's revision is recorded once.
pub async fn rollout_state_changes_are_conditional_and_items_keep_their_waves(store: Arc<dyn CoreStore>) {
    use ggprov_domain::rollout::{ItemReport, RolloutPhase, RolloutSpec, RolloutState, WaveStep};
    let names = ["r-1", "r-2", "r-3", "r-4"];
    let provision = task(TaskKind::Core, &names);
    store.create_task(&provision).await.unwrap();
    for n in names {
        let mut core = Core::new(thing(n), "greengrass2_core".into(), Timestamp::now());
        core.desired = TemplateRef { name: "tpl".into(), version: 1 };
        store.complete_core_create(&provision.id, &core, &event("Core Created Event", 0), None).await.unwrap();
    }
    let spec = RolloutSpec {
        waves: vec![WaveStep { percent: Some(50), count: None }, WaveStep { percent: Some(100), count: None }],
        success_threshold: None,
        failure_threshold: None,
        wave_timeout_secs: None,
        approval: Default::default(),
        on_abort: Default::default(),
    };
    let template = TemplateRef { name: "tpl".into(), version: 2 };
    let mut deployment = deployment_task(template.clone(), &names);
    let TaskKind::Deployment(d) = &mut deployment.kind else { unreachable!() };
    d.rollout = Some(Box::new(RolloutState::start(spec.clone(), &[], Timestamp::now())));
    store.create_task(&deployment).await.unwrap();
    let cores: Vec<ThingName> = names.iter().map(|n| thing(n)).collect();
    let stored = |t: Task| match t.kind {
        TaskKind::Deployment(d) => *d.rollout.expect("a rollout"),
        _ => panic!("a deployment task"),
    };
    let before = stored(store.task_header(&deployment.id).await.unwrap().unwrap());
    let started = before.clone().expanded(&spec.plan(4), Timestamp::now());
    let expanded = store
        .expand_deployment_task(&deployment.id, &cores, &spec.assign(4), 2, &[event("Wave", 1)], Some(&started))
        .await
        .unwrap();
    assert!(expanded);
    assert_eq!(store.active_rollouts().await.unwrap(), vec![deployment.id.clone()]);
    let state = stored(store.task_header(&deployment.id).await.unwrap().unwrap());
    assert_eq!((state.waves.len(), state.rev), (2, before.rev + 1));
    assert_eq!(store.task_header(&deployment.id).await.unwrap().unwrap().status, TaskStatus::InProgress);

    // Two writers from the same revision: exactly one wins.
    let (mut a, mut b) = (state.clone(), state.clone());
    a.phase = RolloutPhase::Paused;
    b.phase = RolloutPhase::Cancelled;
    let (paused, cancelled) = (event("Paused", 2), event("Cancelled", 3));
    let (won_a, won_b) = tokio::join!(
        store.save_rollout(&deployment.id, &mut a, Some(&paused), None),
        store.save_rollout(&deployment.id, &mut b, Some(&cancelled), None)
    );
    assert_eq!(u8::from(won_a.unwrap()) + u8::from(won_b.unwrap()), 1, "one writer wins");
    let now = stored(store.task_header(&deployment.id).await.unwrap().unwrap());
    assert!(now.phase == RolloutPhase::Paused || now.phase == RolloutPhase::Cancelled);
    assert_eq!(now.rev, state.rev + 1);
    let kinds: Vec<String> = store
        .events(PageRequest::first(100))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| e.event.detail_type)
        .filter(|k| k == "Paused" || k == "Cancelled")
        .collect();
    assert_eq!(kinds.len(), 1, "only the winner's event: {kinds:?}");

    // Back to running: wave 0 moves; items keep wave and previous template; a report sticks.
    let mut running = now.clone();
    running.phase = RolloutPhase::Running;
    assert!(store.save_rollout(&deployment.id, &mut running, None, None).await.unwrap());
    for core in &cores[..2] {
        assert!(store.start_item(&deployment.id, core, "job", Duration::from_secs(60)).await.unwrap().unwrap().won);
        store.complete_deployment_item(&deployment.id, core, &template, "dep-2", None, Timestamp::now()).await.unwrap();
    }
    store.save_item_reports(&deployment.id, &[(cores[0].clone(), ItemReport::Succeeded)]).await.unwrap();
    store.save_item_reports(&deployment.id, &[(cores[0].clone(), ItemReport::Failed)]).await.unwrap();
    let items = store.rollout_items(&deployment.id).await.unwrap();
    let waves: Vec<u32> = items.iter().map(|i| i.wave).collect();
    assert_eq!(waves, vec![0, 0, 1, 1]);
    assert_eq!(items[0].report, Some(ItemReport::Succeeded), "a report is set once");
    assert_eq!(items[1].previous, Some(TemplateRef { name: "tpl".into(), version: 1 }));
    assert_eq!(items[1].core.as_ref().map(|c| c.desired.clone()), Some(template.clone()));
    assert_eq!(items[2].status, TaskStatus::Waiting);

    // The sweeper leaves wave 1 alone while wave 0 runs.
    let later = Timestamp::from_millis(Timestamp::now().as_millis() + 3_600_000).unwrap();
    let stale = store.take_stale_items(later, later).await.unwrap();
    assert!(stale.iter().all(|(t, _)| t != &deployment.id), "gated items are not lost work: {stale:?}");

    // Stopping skips the waiting items and ends the listing.
    let mut stopped = running.clone();
    stopped.phase = RolloutPhase::Aborted;
    assert!(store.save_rollout(&deployment.id, &mut stopped, None, Some("Not moved")).await.unwrap());
    assert!(store.active_rollouts().await.unwrap().is_empty());
    let items = store.rollout_items(&deployment.id).await.unwrap();
    assert_eq!(
        items.iter().map(|i| (i.status, i.report)).collect::<Vec<_>>(),
        vec![
            (TaskStatus::Success, Some(ItemReport::Succeeded)),
            (TaskStatus::Success, None),
            (TaskStatus::Failure, Some(ItemReport::Skipped)),
            (TaskStatus::Failure, Some(ItemReport::Skipped)),
        ]
    );
    assert_eq!(store.task_header(&deployment.id).await.unwrap().unwrap().status, TaskStatus::Failure);
    counters_match_recount(&store).await;

    // A retry task's revision: recorded once, and outcomes of it name the template version.
    assert_eq!(store.save_template_deployment(&template, "group", "dep-2").await.unwrap(), "dep-2");
    let retry = deployment_task(template.clone(), &[]);
    store.create_task(&retry).await.unwrap();
    assert_eq!(store.save_task_revision(&retry.id, &template, "dep-3").await.unwrap(), "dep-3");
    assert_eq!(store.save_task_revision(&retry.id, &template, "dep-4").await.unwrap(), "dep-3");
    assert_eq!(store.template_deployment(&template).await.unwrap().as_deref(), Some("dep-3"));
    assert_eq!(store.template_of_deployment("dep-2").await.unwrap(), Some(template.clone()));
    assert_eq!(store.template_of_deployment("dep-3").await.unwrap(), Some(template));
}

pub async fn core_software_is_observed_counted_and_filtered(store: Arc<dyn CoreStore>) {
    use ggprov_domain::ports::CoreDevice;
    use ggprov_domain::software::{CORE_SOFTWARE_UPDATED_EVENT, CoreSoftware};
    let t = task(TaskKind::Core, &["s-1", "s-2", "s-3"]);
    store.create_task(&t).await.unwrap();
    for n in ["s-1", "s-2", "s-3"] {
        let mut core = Core::new(thing(n), "greengrass2_core".into(), Timestamp::now());
        core.software = CoreSoftware::installed("2.12.0");
        store.complete_core_create(&t.id, &core, &event("Core Created Event", 0), None).await.unwrap();
    }
    counters_match_recount(&store).await;
    let device = |os: &str, arch: &str, version: &str| CoreDevice {
        status: "HEALTHY".into(),
        core_version: Some(version.into()),
        platform: Some(os.into()),
        architecture: Some(arch.into()),
        last_status_update_timestamp: None,
        tags: Default::default(),
    };
    assert!(store.observe_core(&thing("s-1"), &device("linux", "amd64", "2.12.0")).await.unwrap());
    assert!(store.observe_core(&thing("s-2"), &device("windows", "amd64", "2.12.0")).await.unwrap());
    assert!(!store.observe_core(&thing("absent"), &device("linux", "amd64", "2.12.0")).await.unwrap());
    counters_match_recount(&store).await;
    let names = |page: ggprov_domain::Page<Core, ThingName>| {
        page.items.iter().map(|c| c.name.as_str().to_owned()).collect::<Vec<_>>()
    };
    let windows = CoreFilter { os: Some("windows".into()), ..CoreFilter::default() };
    assert_eq!(names(store.list_cores(&windows, PageRequest::first(10)).await.unwrap()), ["s-2"]);
    let unknown = CoreFilter { os: Some(ggprov_domain::software::UNKNOWN.into()), ..CoreFilter::default() };
    assert_eq!(names(store.list_cores(&unknown, PageRequest::first(10)).await.unwrap()), ["s-3"], "never described");
    let amd64 = CoreFilter { architecture: Some("amd64".into()), ..CoreFilter::default() };
    assert_eq!(names(store.list_cores(&amd64, PageRequest::first(10)).await.unwrap()), ["s-1", "s-2"]);
    let v12 = CoreFilter { nucleus_version: Some("2.12.0".into()), ..CoreFilter::default() };
    let first = store.list_cores(&v12, PageRequest { limit: 2, exclusive_start: None }).await.unwrap();
    let rest =
        store.list_cores(&v12, PageRequest { limit: 2, exclusive_start: first.last_evaluated.clone() }).await.unwrap();
    assert_eq!([names(first), names(rest)].concat(), ["s-1", "s-2", "s-3"]);
    // A nucleus that changes writes its event with the change, once.
    let before = event_count(&store).await;
    assert!(store.observe_core(&thing("s-1"), &device("linux", "amd64", "2.13.0")).await.unwrap());
    assert!(store.observe_core(&thing("s-1"), &device("linux", "amd64", "2.13.0")).await.unwrap());
    let events = store.events(PageRequest::first(1000)).await.unwrap().items;
    let updated: Vec<_> = events.iter().filter(|e| e.event.detail_type == CORE_SOFTWARE_UPDATED_EVENT).collect();
    assert_eq!((events.len(), updated.len()), (before + 1, 1));
    assert_eq!(updated[0].event.detail["toVersion"], "2.13.0");
    let counts = store.software_counters().await.unwrap();
    let on = |version: &str, os: &str| {
        counts.iter().filter(|(k, _)| k.version == version && k.os == os).map(|(_, c)| c.cores).sum::<i64>()
    };
    assert_eq!((on("2.13.0", "linux"), on("2.12.0", "windows"), on("2.12.0", "unknown")), (1, 1, 1));
    counters_match_recount(&store).await;
}

pub async fn software_update_tasks_are_conditional_and_found_by_token(store: Arc<dyn CoreStore>) {
    use ggprov_domain::ports::StoreError;
    use ggprov_domain::software_update::{NewSoftwareUpdate, SoftwareUpdateTask};
    let new = |token: Option<&str>| SoftwareUpdateTask {
        id: TaskId::generate(),
        request: NewSoftwareUpdate {
            targets: serde_json::json!({"thingNames": ["u-1"]}),
            nucleus_version: "2.13.0".into(),
            allow_downgrade: false,
            rollout: None,
            client_token: token.map(str::to_owned),
        },
        templates: Vec::new(),
        refused: Vec::new(),
        current: Vec::new(),
        planned: false,
        rev: 0,
        created_at: Timestamp::now(),
        updated_at: Timestamp::now(),
    };
    let mut first = new(Some("tok-1"));
    store.create_software_update(&first).await.unwrap();
    assert!(matches!(store.create_software_update(&new(Some("tok-1"))).await, Err(StoreError::AlreadyExists)));
    let untokened = new(None);
    store.create_software_update(&untokened).await.unwrap();
    store.create_software_update(&new(None)).await.unwrap();
    let stale = first.clone();
    first.planned = true;
    store.save_software_update(&mut first).await.unwrap();
    assert_eq!(first.rev, 1);
    let mut stale = stale;
    assert!(matches!(store.save_software_update(&mut stale).await, Err(StoreError::Conflict)));
    assert_eq!(stale.rev, 0, "a refused save leaves the revision as it was");
    let found = store.software_update_by_token("tok-1").await.unwrap().unwrap();
    assert_eq!((found.id.clone(), found.planned, found.rev), (first.id.clone(), true, 1));
    assert_eq!(store.software_update(&untokened.id).await.unwrap().unwrap().id, untokened.id);
    assert!(store.software_update_by_token("tok-2").await.unwrap().is_none());
    let page = store.list_software_updates(PageRequest { limit: 2, exclusive_start: None }).await.unwrap();
    let rest = store
        .list_software_updates(PageRequest { limit: 2, exclusive_start: page.last_evaluated.clone() })
        .await
        .unwrap();
    assert_eq!(page.items.len() + rest.items.len(), 3);
    assert!(rest.last_evaluated.is_none());
}

/// A certificate rotation task with waves: its rollout runs from the moment it is stored, its
/// items get their waves in name order, the sweeper leaves later waves alone, and an ended
/// rollout skips the items that never started (as rotation items, not deployment records).
pub async fn rotation_rollouts_hold_later_waves_and_skip_what_never_started(store: Arc<dyn CoreStore>) {
    use ggprov_domain::rollout::{ItemReport, RolloutPhase, RolloutSpec, RolloutState, WaveStep};
    let spec = RolloutSpec {
        waves: vec![WaveStep { percent: None, count: Some(1) }, WaveStep { percent: Some(100), count: None }],
        success_threshold: None,
        failure_threshold: None,
        wave_timeout_secs: None,
        approval: Default::default(),
        on_abort: Default::default(),
    };
    let state = RolloutState::start(spec.clone(), &spec.plan(3), Timestamp::now());
    let rotation = ggprov_domain::rotation::RotationSpec {
        targets: serde_json::json!({"thingNames": ["w-c", "w-a", "w-b"]}),
        ca_id: "ca-one".into(),
        key_algorithm: Default::default(),
        revoke_old: Default::default(),
        days_expiry: None,
        rollout: Some(Box::new(state.clone())),
    };
    // Items in another order than their names: waves follow the names.
    let task = task(TaskKind::Rotation(rotation), &["w-c", "w-a", "w-b"]);
    store.create_task(&task).await.unwrap();
    assert!(store.active_rollouts().await.unwrap().contains(&task.id), "running from the start");
    let header = store.task_header(&task.id).await.unwrap().unwrap();
    assert_eq!(header.rollout(), Some(&state));
    assert_eq!(header.status, TaskStatus::InProgress, "a running rollout is in progress");
    let started: Vec<serde_json::Value> = store
        .events(PageRequest::first(100))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.event.detail_type == "CertificateRotationTask Wave Started Event")
        .map(|e| e.event.detail)
        .collect();
    assert_eq!(
        started,
        [serde_json::json!({"taskId": task.id.as_str(), "wave": 1, "waves": 2, "planned": 1})],
        "the first wave starts with the stored task, in the same write"
    );
    let waves: Vec<(String, u32)> = store
        .rollout_items(&task.id)
        .await
        .unwrap()
        .into_iter()
        .map(|i| (i.name.as_str().to_owned(), i.wave))
        .collect();
    assert_eq!(waves, [("w-a".to_owned(), 0), ("w-b".to_owned(), 1), ("w-c".to_owned(), 1)]);
    // The sweeper re-queues the first wave's item only.
    let later = Timestamp::from_millis(Timestamp::now().as_millis() + 60_000).unwrap();
    let stale: Vec<ThingName> = store
        .take_stale_items(later, later)
        .await
        .unwrap()
        .into_iter()
        .filter(|(t, _)| *t == task.id)
        .map(|(_, n)| n)
        .collect();
    assert_eq!(stale, [thing("w-a")]);
    // The first wave's core starts; then the rollout is cancelled: the two that never started
    // end `Failure`, reported SKIPPED, and the started one goes on.
    assert!(store.start_item(&task.id, &thing("w-a"), "job-w", Duration::from_secs(60)).await.unwrap().unwrap().won);
    let mut cancelled = state.clone();
    cancelled.phase = RolloutPhase::Cancelled;
    assert!(store.save_rollout(&task.id, &mut cancelled, None, Some("Not rotated: cancelled")).await.unwrap());
    assert!(!store.active_rollouts().await.unwrap().contains(&task.id));
    let items = store.rollout_items(&task.id).await.unwrap();
    let outcome: Vec<(&str, TaskStatus, Option<ItemReport>)> =
        items.iter().map(|i| (i.name.as_str(), i.status, i.report)).collect();
    assert_eq!(
        outcome,
        [
            ("w-a", TaskStatus::InProgress, None),
            ("w-b", TaskStatus::Failure, Some(ItemReport::Skipped)),
            ("w-c", TaskStatus::Failure, Some(ItemReport::Skipped)),
        ]
    );
    let page = store.core_deployments(&thing("w-b"), PageRequest::first(10)).await.unwrap();
    assert!(page.items.is_empty(), "a skipped rotation item is no deployment record");
    let stored = store.task(&task.id).await.unwrap().unwrap();
    assert_eq!(stored.status, TaskStatus::Failure, "a cancelled rollout fails its task");
    assert_eq!(
        stored.items.iter().find(|i| i.name.as_str() == "w-b").unwrap().status_message.as_deref(),
        Some("Not rotated: cancelled")
    );
}
