//! The conformance tests of one owner per thing: claims at submission, item leases, journal
//! revisions and idempotency keys — the promises that hold under concurrent clients and
//! duplicate deliveries.

use std::sync::Arc;
use std::time::Duration;

use ggprov_domain::cores::{Core, Device, Task, TaskKind};
use ggprov_domain::ports::{CoreStore, IdempotencyClaim, RecordedResponse, StoreError};
use ggprov_domain::provisioning::ProvisioningJournal;
use ggprov_domain::thing::ThingKind;
use ggprov_domain::{TaskStatus, TaskType, Timestamp};

use super::{event, task, thing};

/// `ProvisioningJournals`: what is saved is read back; deleting the core removes its journal.
pub async fn journals_round_trip_and_go_with_their_core(store: Arc<dyn CoreStore>) {
    let name = thing("j-1");
    assert_eq!(store.journal(&name).await.unwrap(), ProvisioningJournal::default());
    let journal = ProvisioningJournal {
        thing_created: true,
        certificate_id: Some("cert-1".into()),
        created_policies: vec!["policy-j-1".into()],
        ..ProvisioningJournal::default()
    };
    let mut journal = journal;
    store.save_journal(&name, &mut journal).await.unwrap();
    assert_eq!(store.journal(&name).await.unwrap(), journal);
    // Saves are conditional on the revision read: a writer holding an older read loses.
    let mut stale = store.journal(&name).await.unwrap();
    let mut fresh = store.journal(&name).await.unwrap();
    fresh.principal_attached = true;
    store.save_journal(&name, &mut fresh).await.unwrap();
    stale.certificate_id = Some("cert-2".into());
    assert!(matches!(store.save_journal(&name, &mut stale).await, Err(StoreError::Conflict)));
    let stored = store.journal(&name).await.unwrap();
    assert_eq!((stored.certificate_id.as_deref(), stored.principal_attached), (Some("cert-1"), true));
    // Two first writers of a journal: one wins.
    let mut a = store.journal(&thing("j-2")).await.unwrap();
    let mut b = store.journal(&thing("j-2")).await.unwrap();
    store.save_journal(&thing("j-2"), &mut a).await.unwrap();
    assert!(matches!(store.save_journal(&thing("j-2"), &mut b).await, Err(StoreError::Conflict)));
    let t = task(TaskKind::Core, &["j-1"]);
    store.create_task(&t).await.unwrap();
    let core = Core::new(name.clone(), "greengrass2_core".into(), Timestamp::now());
    // Ending a core's item can save its journal in the same write, on the same condition: a
    // writer holding an older journal ends nothing and records nothing.
    let created = event("Core Created Event", 0);
    stale.certificate_arn = Some("arn:stale".into());
    assert!(matches!(
        store.complete_core_create(&t.id, &core, &created, Some(&stale)).await,
        Err(StoreError::Conflict)
    ));
    assert!(store.core(&name).await.unwrap().is_none(), "no core recorded by a stale journal's writer");
    assert_eq!(store.task(&t.id).await.unwrap().unwrap().items[0].status, TaskStatus::Waiting);
    let mut done = store.journal(&name).await.unwrap();
    done.certificate_arn = Some("arn:done".into());
    store.complete_core_create(&t.id, &core, &created, Some(&done)).await.unwrap();
    assert!(store.core(&name).await.unwrap().is_some());
    let saved = store.journal(&name).await.unwrap();
    assert_eq!((saved.certificate_arn.as_deref(), saved.rev), (Some("arn:done"), done.rev + 1));
    // A duplicate delivery of the ending leaves the journal as the first one saved it.
    done.certificate_arn = Some("arn:again".into());
    store.complete_core_create(&t.id, &core, &created, Some(&done)).await.unwrap();
    assert_eq!(store.journal(&name).await.unwrap(), saved);
    let mut delete = task(TaskKind::Core, &["j-1"]);
    delete.task_type = TaskType::Delete;
    store.create_task(&delete).await.unwrap();
    store.complete_core_delete(&delete.id, &name, &event("Core Deleted Event", 0)).await.unwrap();
    assert_eq!(store.journal(&name).await.unwrap(), ProvisioningJournal::default());
}

/// Ending a client device's `Create` item saves its journal in the same write, on the
/// journal's revision condition, as for cores: a writer holding an older journal records no
/// device and leaves the item open; a duplicate ending changes nothing.
pub async fn a_device_items_end_saves_its_journal_on_the_journals_condition(store: Arc<dyn CoreStore>) {
    let name = thing("jd-1");
    let t = task(TaskKind::Device { core_name: thing("core-jd") }, &["jd-1"]);
    store.create_task(&t).await.unwrap();
    let mut first = ProvisioningJournal { thing_created: true, ..ProvisioningJournal::default() };
    store.save_journal(&name, &mut first).await.unwrap();
    let mut stale = store.journal(&name).await.unwrap();
    let mut fresh = store.journal(&name).await.unwrap();
    fresh.certificate_id = Some("cert-jd".into());
    store.save_journal(&name, &mut fresh).await.unwrap();
    let device = Device {
        name: name.clone(),
        core_name: thing("core-jd"),
        provisioning_template: "greengrass2_client_device".into(),
        artifacts: Default::default(),
        certificate: None,
        created_at: Timestamp::now(),
        updated_at: None,
    };
    let created = event("Device Created Event", 0);
    stale.certificate_arn = Some("arn:stale".into());
    assert!(matches!(
        store.complete_device_create(&t.id, &device, &created, Some(&stale)).await,
        Err(StoreError::Conflict)
    ));
    assert!(store.device(&name).await.unwrap().is_none(), "no device recorded by a stale journal's writer");
    assert_eq!(store.task(&t.id).await.unwrap().unwrap().items[0].status, TaskStatus::Waiting);
    let mut done = store.journal(&name).await.unwrap();
    done.certificate_arn = Some("arn:done".into());
    store.complete_device_create(&t.id, &device, &created, Some(&done)).await.unwrap();
    assert!(store.device(&name).await.unwrap().is_some());
    assert_eq!(store.task(&t.id).await.unwrap().unwrap().items[0].status, TaskStatus::Success);
    let saved = store.journal(&name).await.unwrap();
    assert_eq!(
        (saved.certificate_id.as_deref(), saved.certificate_arn.as_deref(), saved.rev),
        (Some("cert-jd"), Some("arn:done"), done.rev + 1)
    );
    done.certificate_arn = Some("arn:again".into());
    store.complete_device_create(&t.id, &device, &created, Some(&done)).await.unwrap();
    assert_eq!(store.journal(&name).await.unwrap(), saved, "a duplicate ending leaves the journal as it was");
}

/// `TaskStore::create_task`: a core or device task's open items claim their things; a task
/// naming a claimed thing is refused whole (nothing stored) with the holder's id; the claim goes
/// when the item ends; a `Create` never turns a core into a device or back.
pub async fn a_thing_has_one_owner_until_its_item_ends(store: Arc<dyn CoreStore>) {
    let first = task(TaskKind::Core, &["own-1"]);
    store.create_task(&first).await.unwrap();
    assert_eq!(store.open_claim(&thing("own-1")).await.unwrap(), Some(first.id.clone()));
    let second = task(TaskKind::Core, &["own-2", "own-1"]);
    match store.create_task(&second).await {
        Err(StoreError::Claimed { name, task }) => assert_eq!((name.as_str(), task), ("own-1", first.id.clone())),
        other => panic!("expected Claimed, got {other:?}"),
    }
    assert!(store.task(&second.id).await.unwrap().is_none(), "a refused task is not stored");
    // own-2 was not left claimed by the refused task.
    store.create_task(&task(TaskKind::Core, &["own-2"])).await.unwrap();
    // A device task is refused the same way while the core item is open.
    let device = task(TaskKind::Device { core_name: thing("own-gw") }, &["own-1"]);
    assert!(matches!(store.create_task(&device).await, Err(StoreError::Claimed { .. })));

    let core = Core::new(thing("own-1"), "greengrass2_core".into(), Timestamp::now());
    store.complete_core_create(&first.id, &core, &event("Core Created Event", 0), None).await.unwrap();
    assert_eq!(store.open_claim(&thing("own-1")).await.unwrap(), None, "released with the item");
    // Ended: the name is free for a core task again, but it is a core, never a device.
    let device = task(TaskKind::Device { core_name: thing("own-gw") }, &["own-1"]);
    match store.create_task(&device).await {
        Err(StoreError::OtherKind { name, is }) => assert_eq!((name.as_str(), is), ("own-1", ThingKind::Core)),
        other => panic!("expected OtherKind, got {other:?}"),
    }
    let again = task(TaskKind::Core, &["own-1"]);
    store.create_task(&again).await.unwrap();
    // A failed item releases its claim too.
    store.fail_item(&again.id, &thing("own-1"), "boom", None).await.unwrap();
    store.create_task(&task(TaskKind::Core, &["own-1"])).await.unwrap();
}

/// Claims hold under concurrency: of many tasks naming one new thing at the same moment, as
/// cores or as client devices, exactly one is stored.
pub async fn concurrent_claims_of_one_name_have_exactly_one_winner(store: Arc<dyn CoreStore>) {
    let tasks: Vec<Task> = (0..8)
        .map(|i| {
            if i % 2 == 0 {
                task(TaskKind::Core, &["race-1"])
            } else {
                task(TaskKind::Device { core_name: thing("race-gw") }, &["race-1"])
            }
        })
        .collect();
    let results = futures::future::join_all(tasks.iter().map(|t| store.create_task(t))).await;
    let won: Vec<usize> = results.iter().enumerate().filter(|(_, r)| r.is_ok()).map(|(i, _)| i).collect();
    assert_eq!(won.len(), 1, "exactly one winner: {results:?}");
    for (i, result) in results.iter().enumerate() {
        if i != won[0] {
            match result {
                Err(StoreError::Claimed { task, .. }) => assert_eq!(task, &tasks[won[0]].id),
                other => panic!("a loser is refused with the winner's id, got {other:?}"),
            }
        }
    }
}

/// `IdempotencyRecords`: the first use starts, a concurrent one is told it is in progress, an
/// answered one replays, another request with the key mismatches; abandoned or dead pending
/// claims and expired records can be claimed again.
pub async fn idempotency_keys_replay_refuse_and_expire(store: Arc<dyn CoreStore>) {
    let (minute, day) = (Duration::from_secs(60), Duration::from_secs(86_400));
    let now = Timestamp::now();
    let begin = |key: &'static str, fp: &'static str, at: Timestamp, pending: Duration, keep: Duration| {
        let store = store.clone();
        async move { store.begin_idempotent(key, fp, at, pending, keep).await.unwrap() }
    };
    assert_eq!(begin("k1", "fp-a", now, minute, day).await, IdempotencyClaim::Started);
    assert_eq!(begin("k1", "fp-a", now, minute, day).await, IdempotencyClaim::InProgress);
    assert_eq!(begin("k1", "fp-b", now, minute, day).await, IdempotencyClaim::Mismatch);
    let answer =
        RecordedResponse { status: 202, headers: vec![("x-taskid".into(), "T1".into())], body: b"{}".to_vec() };
    store.complete_idempotent("k1", "fp-a", &answer).await.unwrap();
    assert_eq!(begin("k1", "fp-a", now, minute, day).await, IdempotencyClaim::Replay(answer.clone()));
    // Completing again (a duplicate) does not change the recorded answer.
    let other = RecordedResponse { status: 500, headers: vec![], body: vec![] };
    store.complete_idempotent("k1", "fp-a", &other).await.unwrap();
    assert_eq!(begin("k1", "fp-a", now, minute, day).await, IdempotencyClaim::Replay(answer));
    // An abandoned request (a 5xx) can be run again.
    assert_eq!(begin("k2", "fp-c", now, minute, day).await, IdempotencyClaim::Started);
    store.abandon_idempotent("k2", "fp-c").await.unwrap();
    assert_eq!(begin("k2", "fp-c", now, minute, day).await, IdempotencyClaim::Started);
    // A pending claim older than the pending window belonged to a process that died.
    let later = Timestamp::from_millis(now.as_millis() + 61_000).unwrap();
    assert_eq!(begin("k2", "fp-c", later, minute, day).await, IdempotencyClaim::Started);
    // After the keeping period the key is free, even for another request.
    let next_day = Timestamp::from_millis(now.as_millis() + 86_400_000 + 120_000).unwrap();
    assert_eq!(begin("k1", "fp-z", next_day, minute, day).await, IdempotencyClaim::Started);
}

/// `TaskStore::start_item`: the first holder wins an item; another holder does not while the
/// lease lives, the same holder (a redelivery) does, and anyone does once the lease ran out;
/// an ended item is won by no one.
pub async fn an_item_is_worked_on_by_one_holder_at_a_time(store: Arc<dyn CoreStore>) {
    let t = task(TaskKind::Core, &["lease-1", "lease-2"]);
    store.create_task(&t).await.unwrap();
    let (name, long, none) = (thing("lease-1"), Duration::from_secs(600), Duration::ZERO);
    let first = store.start_item(&t.id, &name, "msg-a", long).await.unwrap().unwrap();
    assert!(first.won);
    assert!(!store.start_item(&t.id, &name, "msg-b", long).await.unwrap().unwrap().won, "held by msg-a");
    assert!(store.start_item(&t.id, &name, "msg-a", long).await.unwrap().unwrap().won, "a redelivery of msg-a");
    // Concurrent claims of a waiting item: exactly one winner.
    let second = thing("lease-2");
    let claims = futures::future::join_all(
        ["m1", "m2", "m3", "m4"].map(|holder| store.start_item(&t.id, &second, holder, long)),
    )
    .await;
    assert_eq!(claims.iter().filter(|c| c.as_ref().unwrap().as_ref().unwrap().won).count(), 1);
    assert_eq!(store.task_header(&t.id).await.unwrap().unwrap().status, TaskStatus::InProgress);
    // A lease that ran out can be taken over.
    let expired = task(TaskKind::Core, &["lease-3"]);
    store.create_task(&expired).await.unwrap();
    assert!(store.start_item(&expired.id, &thing("lease-3"), "msg-x", none).await.unwrap().unwrap().won);
    assert!(store.start_item(&expired.id, &thing("lease-3"), "msg-y", long).await.unwrap().unwrap().won);
    // Ended: nobody wins it.
    let core = Core::new(name.clone(), "greengrass2_core".into(), Timestamp::now());
    store.complete_core_create(&t.id, &core, &event("Core Created Event", 0), None).await.unwrap();
    assert!(!store.start_item(&t.id, &name, "msg-a", long).await.unwrap().unwrap().won);
    assert!(store.start_item(&t.id, &thing("nope"), "msg-a", long).await.unwrap().is_none());
}
