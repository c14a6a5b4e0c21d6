//! Deployment tasks, reported status and the fleet summary.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{TestApp, cdf_json, create_cores, delete_cores, error_of, header, spawn_app, template_body};

async fn cores(app: &TestApp, names: &[&str]) {
    let id = app.submit_core_task(&create_cores(names)).await;
    assert_eq!(app.finished_core_task(&id).await["taskStatus"], "Success");
}

async fn deploy(app: &TestApp, template: Value, targets: Value) -> String {
    let response = app.post_json("/deploymentTasks", &json!({"template": template, "targets": targets})).await;
    assert_eq!(response.status(), 202, "{}", response.text().await.unwrap_or_default());
    let id = header(&response, "x-taskid").unwrap().to_owned();
    assert_eq!(header(&response, "location"), Some(format!("/deploymentTasks/{id}").as_str()));
    id
}

/// Runs the worker's steps until no core waits for an outcome (deadline 20 s).
async fn settle(app: &TestApp) {
    app.settle(Duration::from_secs(20)).await;
}

async fn behave(app: &TestApp, core: &str, outcome: &str) {
    let r = app
        .client
        .put(app.url(&format!("/local-cloud/cores/{core}/behavior")))
        .json(&json!({"deploymentOutcome": outcome}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
}

async fn counts(app: &TestApp, template: &str, version: u32) -> Value {
    let summary = cdf_json(app.get("/fleet/summary").await).await;
    summary["templates"][template]["versions"][version.to_string()].clone()
}

async fn inventory(app: &TestApp) -> Value {
    app.client.get(app.url("/local-cloud/inventory")).send().await.unwrap().json().await.unwrap()
}

async fn recount_agrees(app: &TestApp) {
    use ggprov_domain::ports::FleetCounters as _;
    let store = ggprov_store_sqlite::SqliteStore::open(&app.data.path().join("ggprov.sqlite")).await.unwrap();
    assert_eq!(store.fleet_counters().await.unwrap(), store.recount_fleet().await.unwrap(), "counters == recount");
}

#[tokio::test]
async fn a_deployment_task_rolls_a_template_out_and_cores_report_success() {
    let app = spawn_app().await;
    app.create_template("cam", &[("aws.greengrass.Cli", "2.12.0")]).await;
    cores(&app, &["c1", "c2"]).await;
    assert_eq!(cdf_json(app.get("/deploymentTasks").await).await, json!({"deploymentTasks": [], "pagination": {}}));
    let id = deploy(&app, json!({"name": "cam"}), json!({"thingNames": ["c2", "c1", "c1"]})).await;
    let waiting = cdf_json(app.get(&format!("/deploymentTasks/{id}")).await).await;
    assert_eq!(
        (waiting["taskStatus"].as_str(), waiting["deployments"].as_array().map(Vec::len)),
        (Some("Waiting"), Some(0))
    );
    assert!(waiting.get("batchesTotal").is_none(), "no batches before expansion");
    settle(&app).await;

    let task = cdf_json(app.get(&format!("/deploymentTasks/{id}")).await).await;
    assert_eq!(task["taskStatus"], "Success", "{task}");
    assert_eq!(task["template"], json!({"name": "cam", "version": 1}), "the resolved version");
    assert_eq!(task["targets"], json!({"thingNames": ["c2", "c1", "c1"]}), "targets echoed as submitted");
    let names: Vec<&str> =
        task["deployments"].as_array().unwrap().iter().map(|d| d["coreName"].as_str().unwrap()).collect();
    assert_eq!(names, ["c1", "c2"], "de-duplicated, by name");
    assert_eq!((task["batchesTotal"].as_u64(), task["batchesComplete"].as_u64()), (Some(1), Some(1)));

    let core = cdf_json(app.get("/cores/c1").await).await;
    assert_eq!(core["template"]["desired"], json!({"name": "cam", "version": 1}));
    assert_eq!(core["template"]["reported"], json!({"name": "cam", "version": 1, "deploymentStatus": "SUCCESSFUL"}));
    assert!(
        core["device"]["installedComponents"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "aws.greengrass.Cli", "version": "2.12.0", "lifecycleState": "RUNNING"}))
    );
    assert_eq!(
        counts(&app, "cam", 1).await,
        json!({"desiredInUse": 2, "reportedInUse": 2, "lastDeploymentSuccess": 2, "lastDeploymentFailed": 0, "lastDeploymentInProgress": 0})
    );
    let summary = cdf_json(app.get("/fleet/summary").await).await;
    assert_eq!(summary["templates"]["cam"]["latestVersion"], 1);
    assert!(summary["templates"].get("None").is_none(), "no core is left without a template");

    let records = cdf_json(app.get("/cores/c1/deployments").await).await;
    assert_eq!(records["deployments"][0]["taskId"], id.as_str());
    let one = cdf_json(app.get(&format!("/deploymentTasks/{id}/cores/c2")).await).await;
    assert_eq!(one["taskStatus"], "Success");
    assert_eq!(app.get(&format!("/deploymentTasks/{id}/cores/c9")).await.status(), 404);
    let page = cdf_json(app.get(&format!("/deploymentTasks/{id}/cores?count=1")).await).await;
    assert_eq!(page["pagination"], json!({"count": "1", "lastEvaluated": {"thingName": "c1"}}));

    let events = cdf_json(app.get("/events").await).await;
    let of = |t: &str| events["events"].as_array().unwrap().iter().filter(|e| e["detailType"] == t).count();
    assert_eq!(of("DeploymentTask Created Event"), 1, "once per task");
    assert_eq!(of("Core Template Updated Event"), 2, "once per outcome");
    recount_agrees(&app).await;
}

#[tokio::test]
async fn one_greengrass_deployment_per_template_version_however_many_cores_move() {
    let app = spawn_app().await;
    app.create_template("fleet", &[("aws.greengrass.Cli", "2.12.0")]).await;
    let names: Vec<String> = (0..120).map(|i| format!("m{i:03}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    cores(&app, &refs).await;
    let first = deploy(&app, json!({"name": "fleet", "version": "1"}), json!({"thingNames": refs})).await;
    let again = deploy(&app, json!({"name": "fleet", "version": 1}), json!({"thingNames": ["m000", "m001"]})).await;
    settle(&app).await;
    let task = cdf_json(app.get(&format!("/deploymentTasks/{first}")).await).await;
    assert_eq!(
        (task["taskStatus"].as_str(), task["batchesTotal"].as_u64(), task["batchesComplete"].as_u64()),
        (Some("Success"), Some(3), Some(3))
    );
    assert_eq!(cdf_json(app.get(&format!("/deploymentTasks/{again}")).await).await["taskStatus"], "Success");
    assert_eq!(inventory(&app).await["deployments"], 1, "120 cores in 3 batches and a second task: one deployment");
    assert_eq!(counts(&app, "fleet", 1).await["desiredInUse"], 120);
}

/// Whichever of the status feed and the reconciler sees an outcome first, the core reads the
/// same: a suite run once showed `FAILED` (the reconciler's execution status) where the feed
/// says `FAILED_ROLLBACK_COMPLETE`.
#[tokio::test]
async fn a_failure_reads_the_same_whether_the_feed_or_the_reconciler_saw_it_first() {
    let app = spawn_app().await;
    app.create_template("t", &[("aws.greengrass.Cli", "2.12.0")]).await;
    cores(&app, &["fed", "reconciled"]).await;
    behave(&app, "fed", "FAILED").await;
    behave(&app, "reconciled", "FAILED").await;
    let status = |core: &'static str| {
        let app = &app;
        async move { cdf_json(app.get(&format!("/cores/{core}")).await).await["template"]["reported"].clone() }
    };
    deploy(&app, json!({"name": "t"}), json!({"thingNames": ["reconciled"]})).await;
    app.settle_with(Duration::from_secs(20), false).await;
    let reconciled = status("reconciled").await;
    deploy(&app, json!({"name": "t"}), json!({"thingNames": ["fed"]})).await;
    settle(&app).await;
    let fed = status("fed").await;
    assert_eq!(fed["deploymentStatus"], "FAILED_ROLLBACK_COMPLETE", "{fed}");
    assert_eq!(reconciled, fed, "the reconciler's outcome reads as the feed's");
}

#[tokio::test]
async fn a_failed_core_is_reported_failed_then_cleared_by_a_successful_redeploy() {
    let app = spawn_app().await;
    app.create_template("t", &[("aws.greengrass.Cli", "2.12.0")]).await;
    cores(&app, &["ok", "flaky"]).await;
    behave(&app, "flaky", "FAILED").await;
    deploy(&app, json!({"name": "t"}), json!({"thingNames": ["ok", "flaky"]})).await;
    settle(&app).await;
    let failed = cdf_json(app.get("/cores?failedOnly=true").await).await;
    assert_eq!(failed["cores"].as_array().unwrap().len(), 1);
    assert_eq!(failed["cores"][0]["name"], "flaky");
    assert_eq!(failed["cores"][0]["template"]["reported"]["deploymentStatus"], "FAILED_ROLLBACK_COMPLETE");
    let filtered = cdf_json(app.get("/cores?templateName=t&templateVersion=1&failedOnly=true").await).await;
    assert_eq!(filtered["cores"].as_array().unwrap().len(), 1, "consistent with the summary");
    assert_eq!(
        counts(&app, "t", 1).await,
        json!({"desiredInUse": 2, "reportedInUse": 1, "lastDeploymentSuccess": 1, "lastDeploymentFailed": 1, "lastDeploymentInProgress": 0})
    );
    assert_eq!(counts(&app, "None", 0).await["reportedInUse"], 1, "flaky still runs no template");

    behave(&app, "flaky", "SUCCEEDED").await;
    assert_eq!(
        app.put_json("/templates/t", &template_body("t", &[("aws.greengrass.Cli", "2.13.0")])).await.status(),
        204
    );
    deploy(&app, json!({"name": "t"}), json!({"thingNames": ["flaky"]})).await;
    settle(&app).await;
    assert_eq!(cdf_json(app.get("/cores?failedOnly=true").await).await["cores"], json!([]));
    assert_eq!(
        counts(&app, "t", 1).await,
        json!({"desiredInUse": 1, "reportedInUse": 1, "lastDeploymentSuccess": 1, "lastDeploymentFailed": 0, "lastDeploymentInProgress": 0})
    );
    assert_eq!(
        counts(&app, "t", 2).await,
        json!({"desiredInUse": 1, "reportedInUse": 1, "lastDeploymentSuccess": 1, "lastDeploymentFailed": 0, "lastDeploymentInProgress": 0})
    );
    let flaky = cdf_json(app.get("/cores/flaky").await).await;
    assert_eq!(flaky["template"]["reported"], json!({"name": "t", "version": 2, "deploymentStatus": "SUCCESSFUL"}));
    let groups = app.thing("flaky").await.unwrap()["groups"].clone();
    assert_eq!(
        groups,
        json!(["cdf_ggv2_deploymentForTemplate_t_2", "ggprov-greengrass2-core-policies"]),
        "moved out of the version-1 group, still in its policy group"
    );
    recount_agrees(&app).await;
}

#[tokio::test]
async fn cores_that_never_report_count_as_in_progress_and_the_reconciler_fixes_missed_events() {
    let app = spawn_app().await;
    app.create_template("t", &[("aws.greengrass.Cli", "2.12.0")]).await;
    cores(&app, &["quiet", "missed"]).await;
    behave(&app, "quiet", "NO_RESPONSE").await;
    deploy(&app, json!({"name": "t"}), json!({"thingNames": ["quiet", "missed"]})).await;
    app.drain().await;
    // Do not ingest: the outcome event of "missed" is never read. Wait until it has happened.
    let deadline = Instant::now() + Duration::from_secs(10);
    while cdf_json(app.get("/cores/missed").await).await["device"]["effectiveDeployments"][0]["coreDeviceExecutionStatus"]
        != "SUCCEEDED"
    {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(counts(&app, "t", 1).await["lastDeploymentInProgress"], 2);
    assert_eq!(app.worker.reconcile().await.unwrap(), 1, "only the core whose outcome exists is corrected");
    assert_eq!(
        cdf_json(app.get("/cores/missed").await).await["template"]["reported"]["deploymentStatus"],
        "SUCCESSFUL"
    );
    assert_eq!(app.worker.ingest().await.unwrap(), 0, "the late event is older than the reconciled state: ignored");
    assert_eq!(
        counts(&app, "t", 1).await,
        json!({"desiredInUse": 2, "reportedInUse": 1, "lastDeploymentSuccess": 1, "lastDeploymentFailed": 0, "lastDeploymentInProgress": 1})
    );
    recount_agrees(&app).await;
}

#[tokio::test]
async fn targets_expand_through_thing_groups_and_bad_targets_fail_per_core() {
    use ggprov_domain::ThingName;
    use ggprov_domain::ports::IotRegistry as _;
    let app = spawn_app_offline_one().await;
    app.create_template("t", &[("aws.greengrass.Cli", "2.12.0")]).await;
    for core in ["g1", "g2"] {
        app.cloud.add_thing_to_thing_group("site-a", &ThingName::parse(core).unwrap()).await.unwrap();
    }
    let id =
        deploy(&app, json!({"name": "t"}), json!({"thingGroupNames": ["site-a"], "thingNames": ["g1", "stranger"]}))
            .await;
    settle(&app).await;
    let task = cdf_json(app.get(&format!("/deploymentTasks/{id}")).await).await;
    let by_core: std::collections::BTreeMap<&str, (&str, &str)> = task["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["coreName"].as_str().unwrap(),
                (d["taskStatus"].as_str().unwrap(), d["statusMessage"].as_str().unwrap_or("")),
            )
        })
        .collect();
    assert_eq!(by_core["g1"].0, "Success");
    assert_eq!(by_core["g2"], ("Failure", "Core device not registered with Greengrass V2"));
    assert_eq!(by_core["stranger"], ("Failure", "stranger is not a core provisioned by ggprov"));
    assert_eq!(task["taskStatus"], "Failure");
    let g2 = cdf_json(app.get("/cores/g2").await).await;
    assert_eq!(g2["template"]["reported"]["deploymentStatus"], "Failure");
    assert_eq!(g2["template"]["reported"]["deploymentStatusMessage"], "Core device not registered with Greengrass V2");
    let empty = deploy(&app, json!({"name": "t"}), json!({"thingGroupNames": ["no-such-group"]})).await;
    settle(&app).await;
    let failed = cdf_json(app.get(&format!("/deploymentTasks/{empty}")).await).await;
    assert_eq!(failed["taskStatus"], "Failure", "never stuck Waiting: {failed}");
    assert!(failed["statusMessage"].as_str().unwrap().contains("no-such-group"));
    recount_agrees(&app).await;
}

/// Two cores, g1 connected and g2 provisioned but never connected.
async fn spawn_app_offline_one() -> TestApp {
    let app = crate::helpers::spawn_app_with(&[("GGPROV_LOCAL_CLOUD_AUTO_CONNECT", "false")]).await;
    cores(&app, &["g1", "g2"]).await;
    assert_eq!(app.client.post(app.url("/local-cloud/cores/g1/connect")).send().await.unwrap().status(), 204);
    app
}

#[tokio::test]
async fn invalid_deployment_tasks_are_refused_before_anything_is_stored() {
    let app = spawn_app().await;
    app.create_template("t", &[("aws.greengrass.Cli", "2.12.0")]).await;
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({"targets": {"thingNames": ["a"]}}), 400, "VALIDATION_FAILED"),
        (json!({"template": {"name": "t"}}), 400, "VALIDATION_FAILED"),
        (json!({"template": {"name": "t"}, "targets": {}}), 400, "VALIDATION_FAILED"),
        (json!({"template": {"name": "t"}, "targets": {"thingGroups": ["a"]}}), 400, "VALIDATION_FAILED"),
        (json!({"template": {"name": "t"}, "targets": {"thingNames": ["bad name"]}}), 400, "VALIDATION_FAILED"),
        (
            json!({"template": {"name": "t", "version": "two"}, "targets": {"thingNames": ["a"]}}),
            400,
            "VALIDATION_FAILED",
        ),
        (
            json!({"template": {"name": "t"}, "targets": {"assetLibraryDeviceIds": ["x"]}}),
            400,
            "UNSUPPORTED_TARGET_TYPE",
        ),
        (json!({"template": {"name": "nope"}, "targets": {"thingNames": ["a"]}}), 404, "TEMPLATE_NOT_FOUND"),
        (json!({"template": {"name": "t", "version": 2}, "targets": {"thingNames": ["a"]}}), 404, "TEMPLATE_NOT_FOUND"),
    ];
    for (body, status, code) in cases {
        let (got, got_code, _) = error_of(app.post_json("/deploymentTasks", &body).await).await;
        assert_eq!((got, got_code.as_str()), (status, code), "{body}");
    }
    assert_eq!(cdf_json(app.get("/deploymentTasks").await).await["deploymentTasks"], json!([]));
    assert_eq!(app.get("/deploymentTasks/nope12345").await.status(), 404);
    assert_eq!(
        cdf_json(app.get("/deploymentTasks/nope12345/cores").await).await,
        json!({"cores": [], "pagination": {}})
    );
}

#[tokio::test]
async fn fleet_counters_equal_a_recount_after_a_random_sequence_of_everything() {
    let app = spawn_app().await;
    app.create_template("a", &[("aws.greengrass.Cli", "2.12.0")]).await;
    app.create_template("b", &[("aws.greengrass.Cli", "2.12.0")]).await;
    let mut rng = fastrand::Rng::with_seed(0x5eed_f1ee7);
    let mut alive: Vec<String> = Vec::new();
    let mut next = 0;
    for step in 0..40 {
        match rng.u8(0..6) {
            0 | 1 => {
                let batch: Vec<String> = (0..rng.usize(1..4))
                    .map(|_| {
                        next += 1;
                        format!("r{next:03}")
                    })
                    .collect();
                let refs: Vec<&str> = batch.iter().map(String::as_str).collect();
                cores(&app, &refs).await;
                alive.extend(batch);
            }
            2 | 3 if !alive.is_empty() => {
                let template = if rng.bool() { "a" } else { "b" };
                if rng.u8(0..3) == 0 {
                    let body = template_body(
                        template,
                        &[("aws.greengrass.Cli", if rng.bool() { "2.13.0" } else { "2.12.0" })],
                    );
                    assert_eq!(app.put_json(&format!("/templates/{template}"), &body).await.status(), 204);
                }
                let targets: Vec<&str> = alive.iter().filter(|_| rng.bool()).map(String::as_str).collect();
                if !targets.is_empty() {
                    for core in &targets {
                        let outcome = ["SUCCEEDED", "FAILED", "NO_RESPONSE"][rng.usize(0..3)];
                        behave(&app, core, outcome).await;
                    }
                    deploy(&app, json!({"name": template}), json!({"thingNames": targets})).await;
                }
            }
            4 if !alive.is_empty() => {
                let gone = alive.swap_remove(rng.usize(0..alive.len()));
                let id = app.submit_core_task(&delete_cores(&[&gone], rng.bool())).await;
                assert_eq!(app.finished_core_task(&id).await["taskStatus"], "Success", "step {step}");
            }
            _ => {
                app.drain().await;
                app.worker.ingest().await.unwrap();
                app.worker.reconcile().await.unwrap();
            }
        }
        recount_agrees(&app).await;
    }
    app.drain().await;
    tokio::time::sleep(Duration::from_millis(100)).await; // let simulated cores report, then:
    app.worker.ingest().await.unwrap();
    recount_agrees(&app).await;
}
