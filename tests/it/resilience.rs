//! Crashes, retries, faults and dead letters: nothing lost, nothing duplicated.

use serde_json::{Value, json};

use crate::helpers::{TestApp, answered_cloud_calls, cdf_json, create_cores, delete_cores, spawn_app, spawn_app_with};

async fn inventory(app: &TestApp) -> Value {
    app.client.get(app.url("/local-cloud/inventory")).send().await.unwrap().json().await.unwrap()
}

/// Exactly one thing with exactly one ACTIVE certificate, the bundled one, per core.
async fn assert_provisioned_once(app: &TestApp, names: &[&str]) {
    for name in names {
        let thing = app.thing(name).await.unwrap_or_else(|| panic!("{name}: no thing"));
        let principals = thing["principals"].as_array().unwrap();
        assert_eq!(principals.len(), 1, "{name}: {thing}");
        assert_eq!(principals[0]["status"], "ACTIVE");
        let zip = app.artifact(&format!("{name}/{name}/certs.zip")).expect("certs bundle");
        let cert = ggprov_pki::read_zip_entry(&zip, "certs/cert.pem").unwrap();
        let key = ggprov_pki::read_zip_entry(&zip, "certs/private.key").unwrap();
        assert_eq!(
            principals[0]["certificateId"],
            ggprov_pki::fingerprint(&cert).unwrap().as_str(),
            "{name}: the bundle's certificate is the registered one"
        );
        assert!(
            ggprov_pki::key_matches(&cert, &ggprov_domain::ports::SecretPem::new(key)).unwrap(),
            "{name}: the bundled key matches"
        );
    }
    let inv = inventory(app).await;
    assert_eq!(inv["things"].as_u64(), Some(names.len() as u64), "{inv}");
    assert_eq!(inv["certificates"].as_u64(), Some(names.len() as u64), "no orphan certificates: {inv}");
}

#[tokio::test]
async fn a_worker_stopped_between_any_two_create_steps_resumes_to_one_thing_one_certificate_one_key() {
    let create_steps = ggprov_engine::STEPS.iter().filter(|s| s.starts_with("create."));
    for step in create_steps {
        let app = spawn_app().await;
        app.failpoints.arm(step);
        let id = app.submit_core_task(&create_cores(&["crashy", "steady"])).await;
        let task = app.finished_core_task(&id).await;
        assert_eq!(task["taskStatus"], "Success", "stopped at {step}: {task}");
        assert_provisioned_once(&app, &["crashy", "steady"]).await;
        let events = cdf_json(app.get("/events").await).await;
        assert_eq!(events["events"].as_array().unwrap().len(), 2, "stopped at {step}: one event per core");
        // A bundle waits under certs-<fingerprint>.zip until its certificate is journaled and is
        // removed once published; only a stop before journaling leaves one (never registered).
        // (The failpoint fires for whichever core reaches it first.)
        let staged: Vec<String> = ["crashy", "steady"]
            .iter()
            .flat_map(|name| std::fs::read_dir(app.data.path().join(format!("artifacts/{name}/{name}"))).unwrap())
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|f| f.starts_with("certs-"))
            .collect();
        let expected = usize::from(*step == "create.after_certs_bundle");
        assert_eq!(staged.len(), expected, "stopped at {step}: staged bundles left {staged:?}");
    }
}

#[tokio::test]
async fn a_worker_stopped_between_any_two_delete_steps_resumes_and_removes_everything() {
    for step in ggprov_engine::STEPS.iter().filter(|s| s.starts_with("delete.")) {
        let app = spawn_app().await;
        let id = app.submit_core_task(&create_cores(&["doomed"])).await;
        assert_eq!(app.finished_core_task(&id).await["taskStatus"], "Success");
        app.failpoints.arm(step);
        let del = app.submit_core_task(&delete_cores(&["doomed"], true)).await;
        let task = app.finished_core_task(&del).await;
        assert_eq!(task["taskStatus"], "Success", "stopped at {step}: {task}");
        assert!(app.thing("doomed").await.is_none(), "stopped at {step}: thing deleted");
        let inv = inventory(&app).await;
        assert_eq!(
            (inv["certificates"].as_u64(), inv["coreDevices"].as_u64()),
            (Some(0), Some(0)),
            "stopped at {step}: {inv}"
        );
        assert!(app.artifact("doomed/doomed/certs.zip").is_none());
    }
}

#[tokio::test]
async fn throttling_and_errors_are_retried_until_every_core_succeeds() {
    let app = spawn_app_with(&[("GGPROV_MAX_ATTEMPTS", "100")]).await;
    let faults = app
        .client
        .put(app.url("/local-cloud/faults"))
        .json(&json!({"throttleRate": 0.2, "errorRate": 0.05}))
        .send()
        .await
        .unwrap();
    assert_eq!(faults.status(), 204);
    let names: Vec<String> = (0..20).map(|i| format!("flaky-{i:02}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let id = app.submit_core_task(&create_cores(&refs)).await;
    let task = app.finished_core_task(&id).await;
    assert_eq!(task["taskStatus"], "Success", "{task}");
    app.client.put(app.url("/local-cloud/faults")).json(&json!({})).send().await.unwrap();
    assert_provisioned_once(&app, &refs).await;
}

#[tokio::test]
async fn a_job_that_keeps_failing_is_dead_lettered_and_its_cores_fail_with_the_reason() {
    let app = spawn_app_with(&[("GGPROV_MAX_ATTEMPTS", "3")]).await;
    app.client.put(app.url("/local-cloud/faults")).json(&json!({"errorRate": 1.0})).send().await.unwrap();
    let id = app.submit_core_task(&create_cores(&["doomed-1", "doomed-2"])).await;
    let task = app.finished_core_task(&id).await;
    assert_eq!(task["taskStatus"], "Failure", "no task stays InProgress: {task}");
    for core in task["cores"].as_array().unwrap() {
        assert_eq!(core["taskStatus"], "Failure");
        let message = core["statusMessage"].as_str().unwrap();
        assert!(
            message.contains("gave up after repeated failures") && message.contains("injected internal failure"),
            "{message}"
        );
    }
    use ggprov_domain::ports::WorkQueue as _;
    let store = ggprov_store_sqlite::SqliteStore::open(&app.data.path().join("ggprov.sqlite")).await.unwrap();
    let dead = store.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1, "the batch is in the dead-letter queue");
    assert!(dead[0].1.contains("injected internal failure"));
}

#[tokio::test]
async fn the_sweeper_requeues_items_whose_job_was_lost() {
    let app = spawn_app_with(&[("GGPROV_SWEEP_AFTER_SECS", "1")]).await;
    let id = app.submit_core_task(&create_cores(&["orphan"])).await;
    // Lose the job: take it off the queue without running it.
    use ggprov_domain::ports::WorkQueue as _;
    let store = ggprov_store_sqlite::SqliteStore::open(&app.data.path().join("ggprov.sqlite")).await.unwrap();
    let taken = store.receive(10, std::time::Duration::from_secs(3600)).await.unwrap();
    assert_eq!(taken.len(), 1);
    assert!(store.ack(&taken[0].receipt).await.unwrap());
    app.drain().await;
    assert_eq!(cdf_json(app.get(&format!("/coreTasks/{id}")).await).await["taskStatus"], "Waiting", "nothing runs it");
    // Items are only swept once they are older than the threshold.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while app.worker.sweep().await.unwrap() == 0 {
        assert!(std::time::Instant::now() < deadline, "the sweeper never picked the item up");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(app.finished_core_task(&id).await["taskStatus"], "Success");
}

#[tokio::test]
async fn local_cloud_quotas_throttle_bursts_and_the_retries_absorb_them() {
    let app = spawn_app_with(&[("GGPROV_MAX_ATTEMPTS", "100"), ("GGPROV_RETRY_BASE_MS", "20")]).await;
    app.client.put(app.url("/local-cloud/faults")).json(&json!({"quotas": true})).send().await.unwrap();
    let names: Vec<String> = (0..30).map(|i| format!("quota-{i:02}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let id = app.submit_core_task(&create_cores(&refs)).await;
    // Retries are delayed (20 ms and up), so drain until the task has ended.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let task = loop {
        let task = app.finished_core_task(&id).await;
        if task["taskStatus"] == "Success" || task["taskStatus"] == "Failure" {
            break task;
        }
        assert!(std::time::Instant::now() < deadline, "task did not finish: {task}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(task["taskStatus"], "Success", "{task}");
    app.client.put(app.url("/local-cloud/faults")).json(&json!({})).send().await.unwrap();
    assert_provisioned_once(&app, &refs).await;
}

#[tokio::test]
async fn the_sweeper_requeues_a_deployment_task_whose_expansion_was_lost() {
    let app = spawn_app_with(&[("GGPROV_SWEEP_AFTER_SECS", "1")]).await;
    app.create_template("t", &[("aws.greengrass.Cli", "2.12.0")]).await;
    let id = app.submit_core_task(&create_cores(&["swept"])).await;
    app.finished_core_task(&id).await;
    let response = app
        .post_json("/deploymentTasks", &json!({"template": {"name": "t"}, "targets": {"thingNames": ["swept"]}}))
        .await;
    let task = crate::helpers::header(&response, "x-taskid").unwrap().to_owned();
    use ggprov_domain::ports::WorkQueue as _;
    let store = ggprov_store_sqlite::SqliteStore::open(&app.data.path().join("ggprov.sqlite")).await.unwrap();
    let lost = store.receive(10, std::time::Duration::from_secs(3600)).await.unwrap();
    assert!(store.ack(&lost[0].receipt).await.unwrap());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while app.worker.sweep().await.unwrap() == 0 {
        assert!(std::time::Instant::now() < deadline, "the sweeper never picked the task up");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    app.drain().await;
    assert_eq!(cdf_json(app.get(&format!("/deploymentTasks/{task}")).await).await["taskStatus"], "Success");
}

#[tokio::test]
async fn a_templates_policy_group_is_set_up_once_however_many_cores_meet_it_while_it_is_retried() {
    // Three batches of 20 cores at once; half of all calls are throttled and retried after up
    // to 20 ms, so most items reach the group while its set-up is still being retried.
    let app = spawn_app_with(&[
        ("GGPROV_WORKER_CONCURRENCY", "3"),
        ("GGPROV_RETRY_BASE_MS", "20"),
        ("GGPROV_CALL_ATTEMPTS", "100"),
    ])
    .await;
    let faults = json!({"throttleRate": 0.5});
    app.client.put(app.url("/local-cloud/faults")).json(&faults).send().await.unwrap();
    let names: Vec<String> = (0..60).map(|i| format!("together-{i:02}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let id = app.submit_core_task(&create_cores(&refs)).await;
    assert_eq!(app.finished_core_task(&id).await["taskStatus"], "Success");
    app.client.put(app.url("/local-cloud/faults")).json(&json!({})).send().await.unwrap();
    let metrics = reqwest::get(app.url("/metrics")).await.unwrap().text().await.unwrap();
    let answered = answered_cloud_calls(&metrics);
    let ok = |api: &str| answered.get(api).copied().unwrap_or(0);
    // The bundled template shares two policies through one group, set up by one item while
    // the others wait for it; each core then only joins the group.
    assert_eq!(ok("CreateThingGroup"), 1, "{metrics}");
    assert_eq!(ok("GetPolicy"), 2, "{metrics}");
    assert_eq!(ok("AttachPolicy"), 2, "{metrics}");
    assert_eq!(ok("AddThingToThingGroup"), 60, "{metrics}");
    assert_provisioned_once(&app, &refs).await;
}
