//! Staged rollouts on the embedded default: waves, thresholds, abort, rollback, retry of what
//! failed, manual approval, operators' actions, query targets and bad input.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{TestApp, cdf_json, create_cores, error_of, header, spawn_app};

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:04}")).collect()
}

async fn provision(app: &TestApp, names: &[String]) {
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let id = app.submit_core_task(&create_cores(&refs)).await;
    assert_eq!(app.finished_core_task(&id).await["taskStatus"], "Success");
}

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
    assert_eq!(r.status(), 204);
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
/// for the task (deadline 120 s); returns the task.
async fn run_until(app: &TestApp, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
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
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        app.drain().await;
        app.worker.ingest().await.unwrap();
        app.worker.reconcile().await.unwrap();
        app.worker.advance_rollouts().await.unwrap();
        let (counters, _) = summary(app).await;
        let in_progress: i64 = counters["templates"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|t| t["versions"].as_object().unwrap().values())
            .map(|v| v["lastDeploymentInProgress"].as_i64().unwrap())
            .sum();
        if in_progress == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "cores still waiting: {counters}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
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
    provision(&app, &cores).await;
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
    let planned: Vec<u64> = done["rollout"]["waves"].as_array().unwrap().iter().map(|w| w["planned"].as_u64().unwrap()).collect();
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
    assert_eq!((v1["desiredInUse"].as_i64(), v1["lastDeploymentSuccess"].as_i64()), (Some(1000), Some(1000)), "{counters}");
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
