//! Core software on the embedded default: the inventory (provisioning, deployments, Greengrass),
//! `GET /fleet/software` against its recount, filters, and software update tasks (platform and
//! downgrade refusals, the template versions made, waves, idempotency, a failed update).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{TestApp, cdf_json, delete_cores, error_of, header, names, spawn_app};

const NUCLEUS: &str = "aws.greengrass.Nucleus";

async fn set_platform(app: &TestApp, name: &str, os: &str, architecture: &str) {
    let r = app
        .client
        .put(app.url(&format!("/local-cloud/cores/{name}/platform")))
        .json(&json!({"os": os, "architecture": architecture}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
}

/// Deploys `template` (latest version) to `names` and waits for every outcome.
async fn deploy(app: &TestApp, template: &str, names: &[String]) {
    let body = json!({"template": {"name": template}, "targets": {"thingNames": names}});
    let r = app.post_json("/deploymentTasks", &body).await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap_or_default());
    app.settle(Duration::from_secs(180)).await;
}

async fn core(app: &TestApp, name: &str) -> Value {
    cdf_json(app.get(&format!("/cores/{name}")).await).await
}

async fn listed(app: &TestApp, query: &str) -> Vec<String> {
    let body = cdf_json(app.get(&format!("/cores?{query}")).await).await;
    body["cores"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_owned()).collect()
}

/// `GET /fleet/software` after asserting it equals its recount.
async fn software(app: &TestApp) -> Value {
    let counters = cdf_json(app.get("/fleet/software").await).await;
    let recount = cdf_json(app.get("/fleet/software/recount").await).await;
    assert_eq!(counters, recount, "software counters = recount");
    counters
}

/// Cores on `version` (any platform) in a software summary.
fn on_version(summary: &Value, version: &str) -> i64 {
    summary["versions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["nucleusVersion"] == version)
        .map(|r| r["cores"].as_i64().unwrap())
        .sum()
}

async fn submit_update(app: &TestApp, body: &Value) -> Value {
    let r = app.post_json("/softwareUpdateTasks", body).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    let id = header(&r, "x-taskid").unwrap().to_owned();
    assert_eq!(header(&r, "location"), Some(format!("/softwareUpdateTasks/{id}").as_str()));
    let task = cdf_json(r).await;
    assert_eq!(task["taskId"], id);
    task
}

/// Runs the worker until the update task has ended; returns it.
async fn finish_update(app: &TestApp, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        app.drain().await;
        app.worker.ingest().await.unwrap();
        app.worker.advance_rollouts().await.unwrap();
        app.drain().await;
        let task = cdf_json(app.get(&format!("/softwareUpdateTasks/{id}")).await).await;
        if matches!(task["status"].as_str(), Some("Success" | "Failure")) {
            return task;
        }
        assert!(Instant::now() < deadline, "software update did not end: {task}");
        // Simulated cores report asynchronously: poll again shortly.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn outcome<'a>(task: &'a Value, core: &str) -> &'a Value {
    task["cores"].as_array().unwrap().iter().find(|c| c["name"] == core).unwrap_or_else(|| panic!("{core} in {task}"))
}

fn components(template: &Value) -> Vec<(String, String)> {
    let mut list: Vec<(String, String)> = template["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["key"].as_str().unwrap().to_owned(), c["version"].as_str().unwrap().to_owned()))
        .collect();
    list.sort();
    list
}

async fn events(app: &TestApp, kind: &str) -> Vec<Value> {
    let all = cdf_json(app.get("/events?count=1000").await).await;
    all["events"].as_array().unwrap().iter().filter(|e| e["detailType"] == kind).cloned().collect()
}

#[tokio::test]
async fn the_inventory_follows_provisioning_deployments_and_updates_and_refuses_what_cannot_run() {
    let app = spawn_app().await;
    let cores = names("sw", 4);
    app.provision(&cores).await;
    // Provisioned: the installer's nucleus is known, the platform not yet.
    let fresh = core(&app, "sw-0000").await;
    assert_eq!(fresh["software"]["nucleusVersion"], "2.12.0", "{fresh}");
    assert!(fresh["software"].get("os").is_none(), "{fresh}");
    assert_eq!(on_version(&software(&app).await, "2.12.0"), 4);
    assert_eq!(listed(&app, "os=unknown&nucleusVersion=2.12.0").await, cores, "platforms not known yet");

    for (name, os, arch) in [
        ("sw-0000", "linux", "amd64"),
        ("sw-0001", "linux", "aarch64"),
        ("sw-0002", "windows", "amd64"),
        ("sw-0003", "darwin", "amd64"),
    ] {
        set_platform(&app, name, os, arch).await;
    }
    app.create_template(
        "edge",
        &[(NUCLEUS, "2.12.0"), ("aws.greengrass.Cli", "2.12.0"), ("aws.greengrass.LogManager", "2.3.7")],
    )
    .await;
    deploy(&app, "edge", &cores).await;
    // The first move asked Greengrass: the platform is known now.
    let windows = core(&app, "sw-0002").await;
    assert_eq!(
        (windows["software"]["os"].as_str(), windows["software"]["architecture"].as_str()),
        (Some("windows"), Some("amd64")),
        "{windows}"
    );
    assert!(windows["software"]["observedAt"].is_string());
    assert_eq!(listed(&app, "os=windows").await, ["sw-0002"]);
    assert_eq!(listed(&app, "nucleusVersion=2.12.0&architecture=amd64").await, ["sw-0000", "sw-0002", "sw-0003"]);
    assert!(listed(&app, "nucleusVersion=2.13.0").await.is_empty());
    let before = software(&app).await;
    assert_eq!(before["total"], json!({"cores": 4, "updating": 0}));

    let task = submit_update(&app, &json!({"targets": {"thingNames": cores}, "nucleusVersion": "2.13.0"})).await;
    // Refused at once, with the reason: the nucleus does not run on macOS.
    let darwin = outcome(&task, "sw-0003");
    assert_eq!(darwin["status"], "Failure");
    assert!(darwin["message"].as_str().unwrap().contains("darwin/amd64"), "{darwin}");
    // One template version made: the nucleus and the CLI (released with it) bumped, nothing else.
    assert_eq!(task["templates"].as_array().unwrap().len(), 1, "{task}");
    assert_eq!(
        (task["templates"][0]["fromVersion"].as_u64(), task["templates"][0]["toVersion"].as_u64()),
        (Some(1), Some(2))
    );
    let made = cdf_json(app.get("/templates/edge/versions/2").await).await;
    assert_eq!(
        components(&made),
        [
            ("aws.greengrass.Cli".to_owned(), "2.13.0".to_owned()),
            ("aws.greengrass.LogManager".to_owned(), "2.3.7".to_owned()),
            (NUCLEUS.to_owned(), "2.13.0".to_owned()),
        ]
    );
    assert_eq!(task["deploymentTasks"].as_array().unwrap().len(), 1);
    let ended = finish_update(&app, task["taskId"].as_str().unwrap()).await;
    assert_eq!(ended["status"], "Failure", "one core was refused: {ended}");
    assert_eq!(ended["counts"]["success"], 3, "{ended}");
    for name in ["sw-0000", "sw-0001", "sw-0002"] {
        assert_eq!(outcome(&ended, name)["status"], "Success", "{ended}");
        assert_eq!(outcome(&ended, name)["nucleusVersion"], "2.13.0");
    }
    assert_eq!(listed(&app, "nucleusVersion=2.13.0").await, ["sw-0000", "sw-0001", "sw-0002"]);
    let after = software(&app).await;
    assert_eq!((on_version(&after, "2.13.0"), on_version(&after, "2.12.0")), (3, 1));
    assert_eq!(after["total"]["updating"], 0);
    let updated = events(&app, "Core Software Updated").await;
    assert_eq!(updated.len(), 3, "one event per core updated: {updated:?}");
    assert!(updated.iter().all(|e| e["detail"]["fromVersion"] == "2.12.0" && e["detail"]["toVersion"] == "2.13.0"));

    // A downgrade is refused unless allowed.
    let back = json!({"targets": {"thingNames": ["sw-0000"]}, "nucleusVersion": "2.12.0"});
    let refused = submit_update(&app, &back).await;
    assert_eq!(outcome(&refused, "sw-0000")["status"], "Failure");
    assert!(outcome(&refused, "sw-0000")["message"].as_str().unwrap().contains("allowDowngrade"), "{refused}");
    assert!(refused["templates"].as_array().unwrap().is_empty(), "nothing made for refused cores");
    let allowed = submit_update(
        &app,
        &json!({"targets": {"thingNames": ["sw-0000"]}, "nucleusVersion": "2.12.0", "allowDowngrade": true}),
    )
    .await;
    let ended = finish_update(&app, allowed["taskId"].as_str().unwrap()).await;
    assert_eq!(ended["status"], "Success", "{ended}");
    assert_eq!(core(&app, "sw-0000").await["software"]["nucleusVersion"], "2.12.0");
    // A version older than Windows support is refused for the Windows core, whatever allowed.
    let old = submit_update(
        &app,
        &json!({"targets": {"thingNames": ["sw-0002"]}, "nucleusVersion": "2.4.0", "allowDowngrade": true}),
    )
    .await;
    let message = outcome(&old, "sw-0002")["message"].as_str().unwrap().to_owned();
    assert!(message.contains("windows/amd64") && message.contains("2.4.0"), "{message}");
    // A core already on the version is done.
    let same = submit_update(&app, &json!({"targets": {"thingNames": ["sw-0001"]}, "nucleusVersion": "2.13.0"})).await;
    assert_eq!(
        (same["status"].as_str(), outcome(&same, "sw-0001")["status"].as_str()),
        (Some("Success"), Some("Success"))
    );
    software(&app).await;
}

#[tokio::test]
async fn a_client_token_answers_the_same_task_and_bad_requests_get_400() {
    let app = spawn_app().await;
    let cores = names("tok", 2);
    app.provision(&cores).await;
    app.create_template("tok", &[(NUCLEUS, "2.12.0")]).await;
    deploy(&app, "tok", &cores).await;
    let body = json!({"targets": {"thingNames": cores}, "nucleusVersion": "2.13.0", "clientToken": "upgrade-2-13"});
    let first = submit_update(&app, &body).await;
    let again = app.post_json("/softwareUpdateTasks", &body).await;
    assert_eq!(again.status(), 200);
    let again = cdf_json(again).await;
    assert_eq!(again["taskId"], first["taskId"]);
    let versions = cdf_json(app.get("/templates/tok/versions").await).await;
    assert_eq!(versions["templates"].as_array().unwrap().len(), 2, "one template version made: {versions}");
    let other = json!({"targets": {"thingNames": cores}, "nucleusVersion": "2.14.0", "clientToken": "upgrade-2-13"});
    let (status, code, _) = error_of(app.post_json("/softwareUpdateTasks", &other).await).await;
    assert_eq!((status, code.as_str()), (409, "CLIENT_TOKEN_REUSED"));

    for (bad, field) in [
        (json!({"targets": {"thingNames": cores}, "nucleusVersion": "9.9.9"}), "nucleusVersion"),
        (json!({"targets": {"thingNames": cores}, "nucleusVersion": "two"}), "nucleusVersion"),
        (json!({"nucleusVersion": "2.13.0"}), "targets"),
        (
            json!({"targets": {"thingGroupNames": ["no-such-group"]}, "nucleusVersion": "2.13.0"}),
            "targets.thingGroupNames",
        ),
        (
            json!({"targets": {"thingNames": cores}, "nucleusVersion": "2.13.0", "rollout": {"waves": [{"percent": 50}]}}),
            "rollout",
        ),
        (json!({"targets": {"thingNames": cores}, "nucleusVersion": "2.13.0", "clientToken": ""}), "clientToken"),
    ] {
        let (status, code, error) = error_of(app.post_json("/softwareUpdateTasks", &bad).await).await;
        assert_eq!((status, code.as_str()), (400, "VALIDATION_FAILED"), "{bad}: {error}");
        assert!(error.to_string().contains(field), "{bad}: {error}");
    }
    let list = cdf_json(app.get("/softwareUpdateTasks").await).await;
    assert_eq!(list["softwareUpdateTasks"].as_array().unwrap().len(), 1, "bad requests store nothing: {list}");
    let (status, code, _) = error_of(app.get("/softwareUpdateTasks/nope").await).await;
    assert_eq!((status, code.as_str()), (404, "SOFTWARE_UPDATE_TASK_NOT_FOUND"));
}

#[tokio::test]
async fn a_core_that_fails_its_nucleus_update_rolls_back_and_keeps_its_version() {
    let app = spawn_app().await;
    let cores = names("rb", 2);
    app.provision(&cores).await;
    app.create_template("rb", &[(NUCLEUS, "2.12.0")]).await;
    deploy(&app, "rb", &cores).await;
    let r = app
        .client
        .put(app.url("/local-cloud/cores/rb-0001/behavior"))
        .json(&json!({"nucleusUpdateFails": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let task = submit_update(&app, &json!({"targets": {"thingNames": cores}, "nucleusVersion": "2.13.0"})).await;
    let ended = finish_update(&app, task["taskId"].as_str().unwrap()).await;
    assert_eq!(ended["status"], "Failure", "{ended}");
    assert_eq!(outcome(&ended, "rb-0000")["status"], "Success");
    let failed = outcome(&ended, "rb-0001");
    assert_eq!(failed["status"], "Failure");
    assert!(failed["message"].as_str().unwrap().contains("rolled back"), "{failed}");
    assert_eq!(core(&app, "rb-0001").await["software"]["nucleusVersion"], "2.12.0");
    let summary = software(&app).await;
    assert_eq!((on_version(&summary, "2.13.0"), on_version(&summary, "2.12.0")), (1, 1));
    assert_eq!(summary["total"]["updating"], 0);
}

#[tokio::test]
async fn three_waves_update_300_cores_of_mixed_platforms_across_two_template_versions() {
    let app = spawn_app().await;
    let cores = names("fleet", 300);
    app.provision(&cores).await;
    let (first, second) = cores.split_at(150);
    app.create_template("mixed", &[(NUCLEUS, "2.12.0"), ("aws.greengrass.LogManager", "2.3.7")]).await;
    deploy(&app, "mixed", first).await;
    let v2 = json!({"components": [{"key": NUCLEUS, "version": "2.12.0"}, {"key": "aws.greengrass.LogManager", "version": "2.3.8"}]});
    assert_eq!(app.put_json("/templates/mixed", &v2).await.status(), 204);
    deploy(&app, "mixed", second).await;
    let before = software(&app).await;
    let platforms: std::collections::BTreeSet<String> =
        before["versions"].as_array().unwrap().iter().map(|r| format!("{}/{}", r["os"], r["architecture"])).collect();
    assert!(platforms.len() >= 3, "a mix of platforms: {before}");

    let task = submit_update(
        &app,
        &json!({
            "targets": {"thingNames": cores},
            "nucleusVersion": "2.14.0",
            "rollout": {"waves": [{"percent": 10}, {"percent": 50}, {"percent": 100}]},
        }),
    )
    .await;
    let templates = task["templates"].as_array().unwrap();
    assert_eq!(templates.len(), 2, "one new version per template version in use: {task}");
    let made: Vec<(u64, u64)> =
        templates.iter().map(|t| (t["fromVersion"].as_u64().unwrap(), t["toVersion"].as_u64().unwrap())).collect();
    assert_eq!(made, [(1, 3), (2, 4)]);
    for (version, log_manager) in [(3, "2.3.7"), (4, "2.3.8")] {
        let t = cdf_json(app.get(&format!("/templates/mixed/versions/{version}")).await).await;
        assert_eq!(
            components(&t),
            [
                ("aws.greengrass.LogManager".to_owned(), log_manager.to_owned()),
                (NUCLEUS.to_owned(), "2.14.0".to_owned())
            ]
        );
    }
    // Each deployment task rolls out in the three waves given.
    for id in task["deploymentTasks"].as_array().unwrap() {
        let d = cdf_json(app.get(&format!("/deploymentTasks/{}", id.as_str().unwrap())).await).await;
        assert_eq!(d["rollout"]["plan"]["waves"].as_array().map(Vec::len), Some(3), "{d}");
    }
    let ended = finish_update(&app, task["taskId"].as_str().unwrap()).await;
    assert_eq!(ended["status"], "Success", "{}", ended["counts"]);
    assert_eq!(ended["counts"]["success"], 300);
    let after = software(&app).await;
    assert_eq!((on_version(&after, "2.14.0"), after["total"]["cores"].as_i64()), (300, Some(300)));
    let platforms_after: std::collections::BTreeSet<String> =
        after["versions"].as_array().unwrap().iter().map(|r| format!("{}/{}", r["os"], r["architecture"])).collect();
    assert_eq!(platforms_after, platforms, "platforms unchanged");
}

#[tokio::test]
async fn the_software_summary_equals_its_recount_after_random_provisions_updates_and_deletes() {
    let app = spawn_app().await;
    app.create_template("rand", &[(NUCLEUS, "2.12.0")]).await;
    let mut rng = fastrand::Rng::with_seed(16);
    let mut live: Vec<String> = Vec::new();
    let mut next = 0;
    let versions = ["2.12.1", "2.13.0", "2.14.0", "2.15.0"];
    for step in 0..8 {
        let op = if live.len() < 4 { 0 } else { rng.u8(0..3) };
        match op {
            0 => {
                let batch: Vec<String> = (0..rng.usize(2..6)).map(|i| format!("rand-{}", next + i)).collect();
                next += batch.len();
                app.provision(&batch).await;
                deploy(&app, "rand", &batch).await;
                live.extend(batch);
            }
            1 => {
                let targets: Vec<&String> = live.iter().filter(|_| rng.bool()).collect();
                if !targets.is_empty() {
                    let version = versions[rng.usize(..versions.len())];
                    let body =
                        json!({"targets": {"thingNames": targets}, "nucleusVersion": version, "allowDowngrade": true});
                    let task = submit_update(&app, &body).await;
                    finish_update(&app, task["taskId"].as_str().unwrap()).await;
                }
            }
            _ => {
                let gone: Vec<String> = (0..rng.usize(1..3)).map(|_| live.remove(rng.usize(..live.len()))).collect();
                let refs: Vec<&str> = gone.iter().map(String::as_str).collect();
                let id = app.submit_core_task(&delete_cores(&refs, true)).await;
                assert_eq!(app.finished_core_task(&id).await["taskStatus"], "Success");
            }
        }
        let summary = software(&app).await;
        assert_eq!(summary["total"]["cores"].as_u64(), Some(live.len() as u64), "step {step}: {summary}");
    }
}

#[tokio::test]
async fn new_cores_install_their_templates_nucleus_and_a_different_core_version_is_warned_about() {
    let app = spawn_app().await;
    app.create_template("lite", &[(NUCLEUS, "2.14.0"), ("aws.greengrass.Cli", "2.14.0")]).await;
    let core = |name: &str| json!({"name": name, "provisioningTemplate": "greengrass2_core", "configFileGenerator": "MANUAL_INSTALL"});
    let from_template = json!({"type": "Create", "template": "lite", "cores": [core("from-template")]});
    let r = app.post_json("/coreTasks", &from_template).await;
    assert_eq!(r.status(), 202);
    assert!(header(&r, "warning").is_none());
    let id = header(&r, "x-taskid").unwrap().to_owned();
    let task = app.finished_core_task(&id).await;
    assert_eq!((task["taskStatus"].as_str(), task["coreVersion"].as_str()), (Some("Success"), Some("2.14.0")));
    let config = String::from_utf8(app.artifact("from-template/from-template/installerConfig.yml").unwrap()).unwrap();
    assert!(config.contains("version: \"2.14.0\""), "{config}");
    assert_eq!(core_software_version(&app, "from-template").await, "2.14.0");

    let differing = json!({"type": "Create", "coreVersion": "2.12.0", "template": "lite", "cores": [core("pinned")]});
    let r = app.post_json("/coreTasks", &differing).await;
    assert_eq!(r.status(), 202);
    let warning = header(&r, "warning").expect("a Warning header").to_owned();
    assert!(
        warning.starts_with("299 ggprov \"") && warning.contains("2.12.0") && warning.contains("2.14.0"),
        "{warning}"
    );
    let id = header(&r, "x-taskid").unwrap().to_owned();
    assert_eq!(app.finished_core_task(&id).await["coreVersion"], "2.12.0", "the given coreVersion wins");

    let (status, code, _) = error_of(
        app.post_json("/coreTasks", &json!({"type": "Create", "template": "nope", "cores": [core("x")]})).await,
    )
    .await;
    assert_eq!((status, code.as_str()), (404, "TEMPLATE_NOT_FOUND"));
    app.create_template("no_nucleus", &[("aws.greengrass.Cli", "2.14.0")]).await;
    let (status, _, body) = error_of(
        app.post_json("/coreTasks", &json!({"type": "Create", "template": "no_nucleus", "cores": [core("y")]})).await,
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(body["details"][0]["field"], "coreVersion", "{body}");
    let (status, _, body) =
        error_of(app.post_json("/coreTasks", &json!({"type": "Create", "cores": [core("z")]})).await).await;
    assert_eq!((status, body["details"][0]["field"].as_str()), (400, Some("coreVersion")), "CDF's 400 without either");
}

async fn core_software_version(app: &TestApp, name: &str) -> String {
    core(app, name).await["software"]["nucleusVersion"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn concurrent_submissions_with_one_client_token_make_one_task_one_template_version_one_deployment() {
    let app = spawn_app().await;
    let cores = names("same", 3);
    app.provision(&cores).await;
    app.create_template("same", &[(NUCLEUS, "2.12.0"), ("aws.greengrass.Cli", "2.12.0")]).await;
    deploy(&app, "same", &cores).await;
    let body = json!({"targets": {"thingNames": cores}, "nucleusVersion": "2.13.0", "clientToken": "one-update"});
    let answers = futures::future::join_all((0..8).map(|_| app.post_json("/softwareUpdateTasks", &body))).await;
    let mut ids = std::collections::BTreeSet::new();
    let mut created = 0;
    for r in answers {
        let status = r.status().as_u16();
        assert!(status == 201 || status == 200, "{status}");
        created += usize::from(status == 201);
        ids.insert(cdf_json(r).await["taskId"].as_str().unwrap().to_owned());
    }
    assert_eq!((ids.len(), created), (1, 1), "one task, created once");
    let versions = cdf_json(app.get("/templates/same/versions").await).await;
    assert_eq!(versions["templates"].as_array().unwrap().len(), 2, "one template version made: {versions}");
    let deployments = cdf_json(app.get("/deploymentTasks").await).await;
    assert_eq!(
        deployments["deploymentTasks"].as_array().unwrap().len(),
        2,
        "the first deployment and one more: {deployments}"
    );
}

/// A crash after the template version was made but before the task recorded it: resuming finds
/// the version by its content (no second one) and starts the deployment task once.
#[tokio::test]
async fn resuming_an_interrupted_update_makes_nothing_twice() {
    let app = spawn_app().await;
    let cores = names("crash", 2);
    app.provision(&cores).await;
    app.create_template("crash", &[(NUCLEUS, "2.12.0"), ("aws.greengrass.Cli", "2.12.0")]).await;
    deploy(&app, "crash", &cores).await;
    // What a process that died mid-way leaves: the task stored with its plan, version 2 made,
    // nothing recorded after.
    let id = "crashed01";
    let interrupted: ggprov_domain::software_update::SoftwareUpdateTask = serde_json::from_value(json!({
        "id": id,
        "request": {"targets": {"thingNames": cores}, "nucleusVersion": "2.13.0"},
        "templates": [{"templateName": "crash", "fromVersion": 1, "changes": [
            {"component": "aws.greengrass.Cli", "fromVersion": "2.12.0", "toVersion": "2.13.0"},
            {"component": NUCLEUS, "fromVersion": "2.12.0", "toVersion": "2.13.0"}],
            "deploymentTaskId": format!("{id}-1"), "cores": cores}],
        "refused": [], "current": [], "planned": false, "rev": 0,
        "createdAt": "2026-11-30T10:00:00.000Z", "updatedAt": "2026-11-30T10:00:00.000Z",
    }))
    .unwrap();
    let store = ggprov_store_sqlite::SqliteStore::open(&app.data.path().join("ggprov.sqlite")).await.unwrap();
    ggprov_domain::ports::SoftwareUpdateRecords::create_software_update(&store, &interrupted).await.unwrap();
    let v2 = json!({"components": [{"key": "aws.greengrass.Cli", "version": "2.13.0"}, {"key": NUCLEUS, "version": "2.13.0"}]});
    assert_eq!(app.put_json("/templates/crash", &v2).await.status(), 204);

    let r = app.post_json(&format!("/softwareUpdateTasks/{id}/resume"), &json!({})).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let resumed = cdf_json(app.get(&format!("/softwareUpdateTasks/{id}")).await).await;
    assert_eq!(
        (resumed["planned"].as_bool(), resumed["templates"][0]["toVersion"].as_u64()),
        (Some(true), Some(2)),
        "{resumed}"
    );
    assert_eq!(resumed["deploymentTasks"], json!([format!("{id}-1")]));
    let again = app.post_json(&format!("/softwareUpdateTasks/{id}/resume"), &json!({})).await;
    assert_eq!(again.status(), 200);
    let versions = cdf_json(app.get("/templates/crash/versions").await).await;
    assert_eq!(versions["templates"].as_array().unwrap().len(), 2, "no second version: {versions}");
    let ended = finish_update(&app, id).await;
    assert_eq!(ended["status"], "Success", "{ended}");
    let (status, code, _) = error_of(app.post_json("/softwareUpdateTasks/nope/resume", &json!({})).await).await;
    assert_eq!((status, code.as_str()), (404, "SOFTWARE_UPDATE_TASK_NOT_FOUND"));
}
