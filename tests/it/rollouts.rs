//! Staged rollouts on the embedded default: waves, thresholds, abort, rollback, retry of what
//! failed, manual approval, operators' actions, query targets and bad input.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{TestApp, cdf_json, create_cores, error_of, header, names, spawn_app};

/// Tells the simulated cores `names` how their next deployments end.
async fn behave(app: &TestApp, names: &[String], outcome: &str) {
    if names.is_empty() {
        return;
    }
    let r = app
        .client
        .put(app.url("/local-cloud/behaviors"))
        .json(&json!({"names": names, "deploymentOutcome": outcome}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

async fn submit(app: &TestApp, body: Value) -> String {
    let response = app.post_json("/deploymentTasks", &body).await;
    assert_eq!(response.status(), 202, "{}", response.text().await.unwrap_or_default());
    header(&response, "x-taskid").unwrap().to_owned()
}

async fn task(app: &TestApp, id: &str) -> Value {
    cdf_json(app.get(&format!("/deploymentTasks/{id}")).await).await
}

/// Runs the worker's loop by hand (jobs, reported outcomes, rollout steps) until `done` holds
/// for the task (deadline 300 s: a loaded CI machine); returns the task.
async fn run_until(app: &TestApp, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        app.drain().await;
        app.worker.ingest().await.unwrap();
        app.worker.advance_rollouts().await.unwrap();
        app.drain().await;
        let t = task(app, id).await;
        if done(&t) {
            return t;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}: {t}");
        // Simulated cores report asynchronously: poll again shortly.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn state(t: &Value) -> &str {
    t["rollout"]["state"].as_str().unwrap_or("")
}

fn sum(t: &Value, field: &str) -> u64 {
    t["rollout"]["waves"].as_array().unwrap().iter().map(|w| w[field].as_u64().unwrap()).sum()
}

async fn summary(app: &TestApp) -> (Value, Value) {
    let counters = cdf_json(app.get("/fleet/summary").await).await;
    let recount = cdf_json(app.get("/fleet/summary/recount").await).await;
    (counters, recount)
}

/// Waits until no core of the fleet waits for an outcome.
async fn settle(app: &TestApp) {
    app.settle(Duration::from_secs(180)).await;
}

/// The detail types of every outbox event, all pages.
async fn event_kinds(app: &TestApp) -> Vec<String> {
    let mut kinds = Vec::new();
    let mut path = "/events?count=1000".to_owned();
    loop {
        let page = cdf_json(app.get(&path).await).await;
        kinds.extend(page["events"].as_array().unwrap().iter().map(|e| e["detailType"].as_str().unwrap().to_owned()));
        match page["pagination"]["lastEvaluated"]["sequence"].as_u64() {
            Some(last) => path = format!("/events?count=1000&exclusiveStartSequence={last}"),
            None => return kinds,
        }
    }
}

fn every(names: &[String], nth: usize) -> Vec<String> {
    names.iter().step_by(nth).cloned().collect()
}

/// 1,000 simulated cores: a 5-wave rollout with 3 % failing completes under a 5 % threshold;
/// retrying its failed cores after they are fixed makes them run the version; a second rollout
/// with 10 % failing aborts in the wave that crosses the threshold and moves nothing after;
/// the rollback returns every moved core to its previous version; the summary equals a recount.
#[tokio::test(flavor = "multi_thread")]
async fn waves_complete_abort_roll_back_and_retry_over_a_thousand_cores() {
    let app = spawn_app().await;
    let cores = names("fleet", 1000);
    app.provision(&cores).await;
    app.create_template("fleet", &[("aws.greengrass.Cli", "2.12.0")]).await;
    app.put_json("/templates/fleet", &json!({"components": [{"key": "aws.greengrass.Cli", "version": "2.12.1"}]}))
        .await;
    let waves = json!([{"percent": 5}, {"percent": 20}, {"percent": 40}, {"percent": 70}, {"percent": 100}]);

    // v1 with 3 % failing cores (every 33rd), success threshold 0.9, failure threshold 5 %.
    let failing = every(&cores, 33);
    assert_eq!(failing.len(), 31);
    behave(&app, &failing, "FAILED").await;
    let first = submit(
        &app,
        json!({"template": {"name": "fleet", "version": 1}, "targets": {"thingNames": cores}, "rollout": {
            "waves": waves, "successThreshold": 0.9, "failureThreshold": {"percent": 5}}}),
    )
    .await;
    let done = run_until(&app, &first, "the first rollout", |t| state(t) != "Running").await;
    assert_eq!(state(&done), "Completed", "{}", done["rollout"]);
    assert_eq!(done["taskStatus"], "Success");
    let planned: Vec<u64> =
        done["rollout"]["waves"].as_array().unwrap().iter().map(|w| w["planned"].as_u64().unwrap()).collect();
    assert_eq!(planned, vec![50, 150, 200, 300, 300]);
    assert_eq!((sum(&done, "moved"), sum(&done, "failed"), sum(&done, "succeeded")), (1000, 31, 969));
    for pair in done["rollout"]["waves"].as_array().unwrap().windows(2) {
        assert!(pair[0]["endedAt"].as_str().unwrap() <= pair[1]["startedAt"].as_str().unwrap(), "waves run in order");
    }

    // Retry: a task holding only the 31 failed cores; once fixed they run v1.
    behave(&app, &failing, "SUCCEEDED").await;
    let response = app.post_json(&format!("/deploymentTasks/{first}/retry"), &json!({})).await;
    assert_eq!(response.status(), 202);
    let retry = header(&response, "x-taskid").unwrap().to_owned();
    assert_eq!(header(&response, "location"), Some(format!("/deploymentTasks/{retry}").as_str()));
    let retried = run_until(&app, &retry, "the retry", |t| t["taskStatus"] == "Success").await;
    let mut retried_names: Vec<String> =
        retried["deployments"].as_array().unwrap().iter().map(|d| d["coreName"].as_str().unwrap().to_owned()).collect();
    retried_names.sort();
    assert_eq!(retried_names, failing, "only the failed cores are retried");
    settle(&app).await;
    let (counters, recount) = summary(&app).await;
    assert_eq!(counters, recount);
    assert_eq!(counters["templates"]["fleet"]["versions"]["1"]["lastDeploymentSuccess"], 1000, "{counters}");
    assert_eq!(counters["templates"]["fleet"]["versions"]["1"]["reportedInUse"], 1000);
    let again = app.post_json(&format!("/deploymentTasks/{first}/retry"), &json!({})).await;
    assert_eq!(error_of(again).await.1, "NOTHING_TO_RETRY", "the failed cores succeeded since");

    // v2 with 10 % failing (every 10th): the 5 % threshold (50 cores) is crossed in wave 4.
    let failing = every(&cores, 10);
    behave(&app, &failing, "FAILED").await;
    let second = submit(
        &app,
        json!({"template": {"name": "fleet", "version": 2}, "targets": {"thingNames": cores}, "rollout": {
            "waves": waves, "successThreshold": 0.9, "failureThreshold": {"percent": 5}}}),
    )
    .await;
    let aborted = run_until(&app, &second, "the abort", |t| state(t) != "Running").await;
    assert_eq!(state(&aborted), "Aborted", "{}", aborted["rollout"]);
    assert_eq!(aborted["taskStatus"], "Failure");
    assert_eq!(aborted["rollout"]["currentWave"], 4, "{}", aborted["rollout"]);
    let message = aborted["statusMessage"].as_str().unwrap();
    assert!(message.contains("failure threshold crossed") && message.contains("of 1000 cores failed"), "{message}");
    let moved_at_abort = sum(&aborted, "moved");
    assert_eq!(moved_at_abort, 700, "waves 1-4 moved");
    assert_eq!(aborted["rollout"]["waves"][4]["moved"], 0);
    assert_eq!(aborted["rollout"]["waves"][4]["skipped"], 300);
    // Nothing moves after the abort, however long the workers run.
    for _ in 0..5 {
        app.drain().await;
        app.worker.ingest().await.unwrap();
        app.worker.advance_rollouts().await.unwrap();
        app.worker.sweep().await.unwrap();
    }
    let after = task(&app, &second).await;
    assert_eq!(sum(&after, "moved"), moved_at_abort);
    assert_eq!(state(&after), "Aborted");

    // Rollback (the failing cores fixed first): every moved core back on v1.
    behave(&app, &failing, "SUCCEEDED").await;
    let response = app.post_json(&format!("/deploymentTasks/{second}/rollback"), &json!({})).await;
    assert_eq!(response.status(), 202);
    let body = cdf_json(response).await;
    let rollback_tasks: Vec<String> = body["rollout"]["rollback"]["taskIds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(rollback_tasks.len(), 1, "{body}");
    let rolled = run_until(&app, &rollback_tasks[0], "the rollback task", |t| t["taskStatus"] == "Success").await;
    assert_eq!(rolled["template"], json!({"name": "fleet", "version": 1}));
    assert_eq!(rolled["deployments"].as_array().unwrap().len(), 700);
    settle(&app).await;
    let (counters, recount) = summary(&app).await;
    assert_eq!(counters, recount, "the summary equals a recount after waves, abort and rollback");
    let v1 = &counters["templates"]["fleet"]["versions"]["1"];
    assert_eq!(
        (v1["desiredInUse"].as_i64(), v1["lastDeploymentSuccess"].as_i64()),
        (Some(1000), Some(1000)),
        "{counters}"
    );
    assert_eq!(counters["templates"]["fleet"]["versions"]["2"]["desiredInUse"].as_i64().unwrap_or(0), 0);
    let again = app.post_json(&format!("/deploymentTasks/{second}/rollback"), &json!({})).await;
    assert_eq!(again.status(), 202, "rollback is idempotent");

    // Events: one per wave started, the abort, the rollback, the completion.
    let kinds = event_kinds(&app).await;
    let count = |kind: &str| kinds.iter().filter(|k| *k == kind).count();
    assert_eq!(count("DeploymentTask Wave Started Event"), 5 + 4, "{kinds:?}");
    assert_eq!(count("DeploymentTask Aborted Event"), 1);
    assert_eq!(count("DeploymentTask Rollback Started Event"), 1);
    assert_eq!(count("DeploymentTask Completed Event"), 1);
}

/// Manual approval pauses after each wave; actions are idempotent and refused (409, naming the
/// state) where the state does not allow them; a task without a rollout has no actions.
#[tokio::test(flavor = "multi_thread")]
async fn manual_approval_pauses_after_each_wave_and_actions_follow_the_state() {
    let app = spawn_app().await;
    let cores = names("gate", 6);
    app.provision(&cores).await;
    app.create_template("gate", &[("aws.greengrass.Cli", "2.12.0")]).await;
    let id = submit(
        &app,
        json!({"template": {"name": "gate"}, "targets": {"thingNames": cores}, "rollout": {
            "waves": [{"count": 1}, {"count": 3}, {"percent": 100}], "approval": "manual"}}),
    )
    .await;
    // A share of the fleet can be told how to behave too (here: all of it, to succeed).
    let picked: Value = app
        .client
        .put(app.url("/local-cloud/behaviors"))
        .json(&json!({"share": 1.0, "deploymentOutcome": "SUCCEEDED"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(picked["names"].as_array().unwrap().len(), 6, "{picked}");
    let paused = run_until(&app, &id, "the first wave", |t| t["rollout"]["awaitingApproval"] == true).await;
    assert_eq!((state(&paused), paused["rollout"]["currentWave"].as_u64()), ("Paused", Some(1)));
    assert_eq!(sum(&paused, "moved"), 1);
    // However long the workers run, nothing moves until an operator resumes.
    for _ in 0..3 {
        app.drain().await;
        app.worker.advance_rollouts().await.unwrap();
        app.worker.sweep().await.unwrap();
    }
    assert_eq!(sum(&task(&app, &id).await, "moved"), 1);

    let action = |name: &'static str| {
        let app = &app;
        let id = id.clone();
        async move { app.post_json(&format!("/deploymentTasks/{id}/{name}"), &json!({})).await }
    };
    let r = action("pause").await;
    assert_eq!(r.status(), 202, "pausing a paused rollout is idempotent");
    let (status, code, body) = error_of(action("rollback").await).await;
    assert_eq!((status, code.as_str()), (409, "ROLLOUT_STATE"));
    assert!(body["message"].as_str().unwrap().contains("Paused"), "{body}");
    let resumed = cdf_json(action("resume").await).await;
    assert_eq!((state(&resumed), resumed["rollout"]["currentWave"].as_u64()), ("Running", Some(2)));
    let second = run_until(&app, &id, "the second wave", |t| t["rollout"]["awaitingApproval"] == true).await;
    assert_eq!((sum(&second, "moved"), second["rollout"]["currentWave"].as_u64()), (3, Some(2)));

    // An operator's pause while running holds the wave's remaining cores.
    let resumed = cdf_json(action("resume").await).await;
    assert_eq!(resumed["rollout"]["currentWave"], 3);
    let paused = cdf_json(action("pause").await).await;
    assert_eq!((state(&paused), paused["rollout"]["awaitingApproval"].as_bool()), ("Paused", Some(false)));
    app.drain().await;
    assert_eq!(sum(&task(&app, &id).await, "moved"), 3, "a paused rollout moves nothing");
    let cancelled = cdf_json(action("cancel").await).await;
    assert_eq!(state(&cancelled), "Cancelled");
    assert_eq!(cancelled["taskStatus"], "Failure");
    assert!(cancelled["statusMessage"].as_str().unwrap().contains("cancelled by an operator in wave 3"), "{cancelled}");
    assert_eq!(action("cancel").await.status(), 202, "cancel is idempotent");
    let (status, _, body) = error_of(action("resume").await).await;
    assert_eq!(status, 409);
    assert!(body["message"].as_str().unwrap().contains("Cancelled"), "{body}");
    let t = run_until(&app, &id, "the cancelled task", |_| true).await;
    assert_eq!((sum(&t, "moved"), sum(&t, "skipped")), (3, 3));

    // A task without a rollout: 409 NO_ROLLOUT; an unknown task: 404.
    let plain = submit(&app, json!({"template": {"name": "gate"}, "targets": {"thingNames": [cores[0]]}})).await;
    let (status, code, _) = error_of(app.post_json(&format!("/deploymentTasks/{plain}/pause"), &json!({})).await).await;
    assert_eq!((status, code.as_str()), (409, "NO_ROLLOUT"));
    let (status, code, _) = error_of(app.post_json("/deploymentTasks/nope/cancel", &json!({})).await).await;
    assert_eq!((status, code.as_str()), (404, "DEPLOYMENT_TASK_NOT_FOUND"));
    let (status, code, _) = error_of(app.post_json(&format!("/deploymentTasks/{plain}/retry"), &json!({})).await).await;
    assert_eq!((status, code.as_str()), (409, "TASK_NOT_FINISHED"));
}

/// Targets by fleet-indexing query select exactly the matching things; bad rollouts and bad
/// queries are refused with the field (and the query's position), and nothing is stored.
#[tokio::test(flavor = "multi_thread")]
async fn query_targets_select_exactly_the_matching_cores_and_bad_input_is_refused() {
    let app = spawn_app().await;
    let cores = names("site", 8);
    app.provision(&cores).await;
    app.create_template("sites", &[("aws.greengrass.Cli", "2.12.0")]).await;
    for (i, core) in cores.iter().enumerate() {
        let site = if i % 2 == 0 { "berlin" } else { "lyon" };
        let ring = if i < 4 { "canary" } else { "main" };
        let r = app
            .client
            .put(app.url(&format!("/local-cloud/things/{core}/attributes")))
            .json(&json!({"site": site, "ring": ring}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
    }
    let query = "attributes.site:berlin AND NOT (attributes.ring:main OR thingName:site-0000)";
    let id = submit(&app, json!({"template": {"name": "sites"}, "targets": {"thingIndexQuery": query}})).await;
    let t = run_until(&app, &id, "the query task", |t| t["taskStatus"] == "Success").await;
    let mut moved: Vec<&str> =
        t["deployments"].as_array().unwrap().iter().map(|d| d["coreName"].as_str().unwrap()).collect();
    moved.sort_unstable();
    assert_eq!(moved, vec!["site-0002"]);
    let id =
        submit(&app, json!({"template": {"name": "sites"}, "targets": {"thingIndexQuery": "thingName:site-000*"}}))
            .await;
    let t = run_until(&app, &id, "the prefix task", |t| t["taskStatus"] == "Success").await;
    assert_eq!(t["deployments"].as_array().unwrap().len(), 8);

    let before = cdf_json(app.get("/deploymentTasks").await).await["deploymentTasks"].as_array().unwrap().len();
    let refused = |rollout: Value, targets: Value| {
        let app = &app;
        async move {
            let body = json!({"template": {"name": "sites"}, "targets": targets, "rollout": rollout});
            let (status, code, body) = error_of(app.post_json("/deploymentTasks", &body).await).await;
            assert_eq!((status, code.as_str()), (400, "VALIDATION_FAILED"), "{body}");
            body["details"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["field"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    let names_only = json!({"thingNames": cores});
    assert_eq!(refused(json!({"waves": []}), names_only.clone()).await, vec!["rollout.waves"]);
    assert_eq!(
        refused(json!({"waves": [{"percent": 0}, {"percent": 100}]}), names_only.clone()).await,
        vec!["rollout.waves[0].percent"]
    );
    assert_eq!(
        refused(json!({"waves": [{"percent": 10}, {"percent": 50}]}), names_only.clone()).await,
        vec!["rollout.waves[1]"]
    );
    assert_eq!(refused(json!({"waves": [{"count": 3}]}), names_only.clone()).await, vec!["rollout.waves[0]"]);
    assert_eq!(
        refused(json!({"waves": [{"percent": 100}], "successThreshold": 1.5}), names_only.clone()).await,
        vec!["rollout.successThreshold"]
    );
    assert_eq!(
        refused(json!({"waves": [{"percent": 100}], "failureThreshold": {"percent": 120}}), names_only.clone()).await,
        vec!["rollout.failureThreshold.percent"]
    );
    let bad_query = json!({"thingIndexQuery": "attributes.site:berlin AND (thingName:x"});
    let body = json!({"template": {"name": "sites"}, "targets": bad_query});
    let (status, _, body) = error_of(app.post_json("/deploymentTasks", &body).await).await;
    assert_eq!(status, 400);
    let detail = &body["details"][0];
    assert_eq!(detail["field"], "targets.thingIndexQuery");
    assert!(detail["problem"].as_str().unwrap().starts_with("at character 40"), "{detail}");
    for shape in [
        json!({"waves": [{"percent": 50, "count": 2}, {"percent": 100}]}),
        json!({"waves": "all"}),
        json!({"waves": [{"percent": 100}], "approval": "sometimes"}),
    ] {
        let body = json!({"template": {"name": "sites"}, "targets": names_only, "rollout": shape});
        let (status, _, _) = error_of(app.post_json("/deploymentTasks", &body).await).await;
        assert_eq!(status, 400, "{shape}");
    }
    let after = cdf_json(app.get("/deploymentTasks").await).await["deploymentTasks"].as_array().unwrap().len();
    assert_eq!(before, after, "nothing is stored for a refused task");
}

/// Core and device tasks: retry holds only the failed items, and they succeed once the cause
/// is gone.
#[tokio::test(flavor = "multi_thread")]
async fn retrying_a_core_task_takes_only_its_failed_items() {
    let app = spawn_app().await;
    let good = names("ok", 3);
    app.provision(&good).await;
    // Fail the next task's cores: every IoT call errors until the faults are cleared.
    app.client.put(app.url("/local-cloud/faults")).json(&json!({"errorRate": 1.0})).send().await.unwrap();
    let bad = names("bad", 2);
    let refs: Vec<&str> = bad.iter().map(String::as_str).collect();
    let failed = app.submit_core_task(&create_cores(&refs)).await;
    let task = app.finished_core_task(&failed).await;
    assert_eq!(task["taskStatus"], "Failure");
    app.client.put(app.url("/local-cloud/faults")).json(&json!({})).send().await.unwrap();
    let response = app.post_json(&format!("/coreTasks/{failed}/retry"), &json!({})).await;
    assert_eq!(response.status(), 202);
    let retry = header(&response, "x-taskid").unwrap().to_owned();
    assert_eq!(header(&response, "location"), Some(format!("/coreTasks/{retry}").as_str()));
    let retried = app.finished_core_task(&retry).await;
    assert_eq!(retried["taskStatus"], "Success", "{retried}");
    let mut retried_names: Vec<&str> =
        retried["cores"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    retried_names.sort_unstable();
    assert_eq!(retried_names, refs);
    let first = app.submit_core_task(&create_cores(&["ok-0000"])).await;
    assert_eq!(app.finished_core_task(&first).await["taskStatus"], "Success");
    let (status, code, _) = error_of(app.post_json(&format!("/coreTasks/{first}/retry"), &json!({})).await).await;
    assert_eq!((status, code.as_str()), (409, "NOTHING_TO_RETRY"));
    let (status, _, _) = error_of(app.post_json("/coreTasks/unknown/retry", &json!({})).await).await;
    assert_eq!(status, 404);
    let (status, code, _) = error_of(app.post_json("/deviceTasks/unknown/retry", &json!({})).await).await;
    assert_eq!((status, code.as_str()), (404, "DEVICE_TASK_NOT_FOUND"));

    // A device task of the core: its failed devices only.
    let devices = json!({"type": "Create", "devices": [
        {"name": "dev-a", "provisioningTemplate": "greengrass2_client_device"},
        {"name": "dev-b", "provisioningTemplate": "greengrass2_client_device"}]});
    let response = app.post_json("/cores/ok-0001/deviceTasks", &devices).await;
    assert_eq!(response.status(), 202);
    let failed = header(&response, "x-taskid").unwrap().to_owned();
    app.client.put(app.url("/local-cloud/faults")).json(&json!({"errorRate": 1.0})).send().await.unwrap();
    app.drain().await;
    app.client.put(app.url("/local-cloud/faults")).json(&json!({})).send().await.unwrap();
    let task = cdf_json(app.get(&format!("/deviceTasks/{failed}")).await).await;
    assert_eq!(task["taskStatus"], "Failure", "{task}");
    let response = app.post_json(&format!("/deviceTasks/{failed}/retry"), &json!({})).await;
    assert_eq!(response.status(), 202);
    let retry = header(&response, "x-taskid").unwrap().to_owned();
    assert_eq!(header(&response, "location"), Some(format!("/deviceTasks/{retry}").as_str()));
    app.drain().await;
    let retried = cdf_json(app.get(&format!("/deviceTasks/{retry}")).await).await;
    assert_eq!(retried["taskStatus"], "Success", "{retried}");
    assert_eq!(cdf_json(app.get("/devices/dev-b").await).await["coreName"], "ok-0001");
}

/// A core that never reports counts as failed once its wave's timeout has passed.
#[tokio::test(flavor = "multi_thread")]
async fn silent_cores_time_out_and_abort_the_rollout() {
    let app = spawn_app().await;
    let cores = names("quiet", 4);
    app.provision(&cores).await;
    app.create_template("quiet", &[("aws.greengrass.Cli", "2.12.0")]).await;
    behave(&app, &cores[3..], "NO_RESPONSE").await;
    let id = submit(
        &app,
        json!({"template": {"name": "quiet"}, "targets": {"thingNames": cores}, "rollout": {
            "waves": [{"percent": 100}], "waveTimeoutSecs": 5, "failureThreshold": {"count": 0}}}),
    )
    .await;
    // The wave timeout leaves the three answering cores time to report on a loaded machine (at
    // 1 s a slow report timed out too, and the wait below never ended).
    let waiting = run_until(&app, &id, "three reports", |t| t["rollout"]["waves"][0]["succeeded"] == 3).await;
    assert_eq!((state(&waiting), waiting["rollout"]["waves"][0]["pending"].as_u64()), ("Running", Some(1)));
    let aborted = run_until(&app, &id, "the timeout", |t| state(t) != "Running").await;
    assert_eq!(state(&aborted), "Aborted");
    assert_eq!(
        (aborted["rollout"]["waves"][0]["timedOut"].as_u64(), aborted["rollout"]["waves"][0]["failed"].as_u64()),
        (Some(1), Some(1))
    );
    let response = app.post_json(&format!("/deploymentTasks/{id}/retry"), &json!({})).await;
    assert_eq!(response.status(), 202, "a timed-out core is retried");
}

/// The rollout state is in the store: pause, resume and cancel hold across SIGKILLs of the
/// server (the binary, with its own workers and local cloud).
#[tokio::test(flavor = "multi_thread")]
async fn rollout_actions_survive_a_sigkill_of_the_server() {
    use crate::helpers::{CDF, ServedProcess};
    let data = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let call = |base: String, method: reqwest::Method, path: String, body: Option<Value>| {
        let http = http.clone();
        async move {
            let mut request =
                http.request(method, format!("{base}{path}")).header("accept", CDF).header("content-type", CDF);
            if let Some(body) = body {
                request = request.body(body.to_string());
            }
            let response = request.send().await.expect("request sent");
            let status = response.status().as_u16();
            let task = response.headers().get("x-taskid").and_then(|v| v.to_str().ok()).map(str::to_owned);
            (status, task, response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let until = |base: String, path: String, done: fn(&Value) -> bool| {
        let call = &call;
        async move {
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                let (_, _, body) = call(base.clone(), reqwest::Method::GET, path.clone(), None).await;
                if done(&body) {
                    return body;
                }
                assert!(Instant::now() < deadline, "timed out on {path}: {body}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let env: [(&str, &str); 0] = [];
    let server = ServedProcess::start(data.path(), env, &[]);
    let cores = names("kill", 6);
    let refs: Vec<&str> = cores.iter().map(String::as_str).collect();
    let (status, task, _) =
        call(server.base.clone(), reqwest::Method::POST, "/coreTasks".into(), Some(create_cores(&refs))).await;
    assert_eq!(status, 202);
    until(server.base.clone(), format!("/coreTasks/{}", task.unwrap()), |t| t["taskStatus"] == "Success").await;
    let template = json!({"name": "kill", "components": [{"key": "aws.greengrass.Cli", "version": "2.12.0"}]});
    assert_eq!(call(server.base.clone(), reqwest::Method::POST, "/templates".into(), Some(template)).await.0, 201);
    let body = json!({"template": {"name": "kill"}, "targets": {"thingNames": cores}, "rollout": {
        "waves": [{"count": 2}, {"count": 4}, {"percent": 100}], "approval": "manual"}});
    let (status, id, _) = call(server.base.clone(), reqwest::Method::POST, "/deploymentTasks".into(), Some(body)).await;
    assert_eq!(status, 202);
    let path = format!("/deploymentTasks/{}", id.unwrap());
    until(server.base.clone(), path.clone(), |t| t["rollout"]["awaitingApproval"] == true).await;
    drop(server); // SIGKILL

    let server = ServedProcess::start(data.path(), env, &[]);
    let t = until(server.base.clone(), path.clone(), |_| true).await;
    assert_eq!((t["rollout"]["state"].as_str(), t["rollout"]["currentWave"].as_u64()), (Some("Paused"), Some(1)));
    let (status, _, resumed) = call(server.base.clone(), reqwest::Method::POST, format!("{path}/resume"), None).await;
    assert_eq!((status, resumed["rollout"]["currentWave"].as_u64()), (202, Some(2)));
    let t = until(server.base.clone(), path.clone(), |t| t["rollout"]["awaitingApproval"] == true).await;
    assert_eq!(t["rollout"]["waves"][1]["succeeded"], 2);
    let (status, _, _) = call(server.base.clone(), reqwest::Method::POST, format!("{path}/cancel"), None).await;
    assert_eq!(status, 202);
    drop(server); // SIGKILL

    let server = ServedProcess::start(data.path(), env, &[]);
    let t = until(server.base.clone(), path.clone(), |_| true).await;
    assert_eq!(t["rollout"]["state"], "Cancelled");
    assert_eq!(t["taskStatus"], "Failure");
    let moved: u64 = t["rollout"]["waves"].as_array().unwrap().iter().map(|w| w["moved"].as_u64().unwrap()).sum();
    assert_eq!((moved, t["rollout"]["waves"][2]["skipped"].as_u64()), (4, Some(2)));
    let (status, _, body) = call(server.base.clone(), reqwest::Method::POST, format!("{path}/resume"), None).await;
    assert_eq!(status, 409, "{body}");
}
