//! Certificate rotation tasks: keys born on the core, one new certificate per core per task,
//! the old one retired as `revokeOld` says, a core that cannot use the new one keeping its old
//! one, every step resumable, a SIGKILL in the middle of 200 cores losing and duplicating
//! nothing, and a rotation onto a new CA.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{ServedProcess, TestApp, cdf_json, error_of, header, names, spawn_app};

async fn submit_rotation(app: &TestApp, body: &Value) -> String {
    let response = app.post_json("/certificateRotationTasks", body).await;
    assert_eq!(response.status(), 202, "{}", response.text().await.unwrap_or_default());
    let id = header(&response, "x-taskid").unwrap().to_owned();
    assert_eq!(header(&response, "location"), Some(format!("/certificateRotationTasks/{id}").as_str()));
    id
}

async fn finished_rotation(app: &TestApp, id: &str) -> Value {
    app.drain().await;
    cdf_json(app.get(&format!("/certificateRotationTasks/{id}")).await).await
}

/// The thing's certificates as the local cloud's IoT holds them: `(id, status, key digest)`.
async fn principals(app: &TestApp, name: &str) -> Vec<(String, String, String)> {
    let thing = app.thing(name).await.unwrap();
    thing["principals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["certificateId"].as_str().unwrap().to_owned(),
                p["status"].as_str().unwrap().to_owned(),
                p["publicKeySha256"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

async fn credentials(client: &reqwest::Client, base: &str, name: &str) -> Value {
    let response = client.get(format!("{base}/local-cloud/cores/{name}/credentials")).send().await.unwrap();
    assert_eq!(response.status(), 200, "{name} has rotated");
    response.json().await.unwrap()
}

async fn certificate_id(app: &TestApp, core: &str) -> String {
    cdf_json(app.get(&format!("/cores/{core}")).await).await["certificate"]["certificateId"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Makes the simulated core refuse (or, `false`, accept again) its next new certificate.
async fn rotation_fails(app: &TestApp, core: &str, fails: bool) {
    let body = if fails { json!({"rotationFails": true}) } else { json!({}) };
    let response =
        app.client.put(app.url(&format!("/local-cloud/cores/{core}/behavior"))).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 204);
}

/// Retries a finished rotation task, asserting 202; the new task's id.
async fn retry_rotation(app: &TestApp, id: &str) -> String {
    let response = app.post_json(&format!("/certificateRotationTasks/{id}/retry"), &json!({})).await;
    assert_eq!(response.status(), 202);
    header(&response, "x-taskid").unwrap().to_owned()
}

#[tokio::test]
async fn a_rotation_attaches_the_policies_of_a_per_certificate_template_to_the_new_certificate() {
    let app = spawn_app().await;
    let mut template: Value =
        serde_json::from_str(ggprov_domain::provisioning_template::BUNDLED[0].1).expect("bundled template");
    template["CDF"]["attachPoliciesToThingGroup"] = json!(false);
    assert_eq!(app.put_json("/provisioningTemplates/per_certificate", &template).await.status(), 204);
    let body = json!({"type": "Create", "coreVersion": "2.12.0",
        "cores": [{"name": "pc-1", "provisioningTemplate": "per_certificate"}]});
    let id = app.submit_core_task(&body).await;
    assert_eq!(app.finished_core_task(&id).await["taskStatus"], "Success");
    let old = certificate_id(&app, "pc-1").await;
    let id = submit_rotation(&app, &json!({"targets": {"thingNames": ["pc-1"]}})).await;
    assert_eq!(finished_rotation(&app, &id).await["taskStatus"], "Success");
    let thing = app.thing("pc-1").await.unwrap();
    assert_eq!(thing["principals"].as_array().map(Vec::len), Some(1), "{thing}");
    assert_ne!(thing["principals"][0]["certificateId"], old.as_str());
    assert_eq!(
        thing["principals"][0]["policies"],
        json!(["GreengrassV2IoTThingPolicy", "GreengrassV2TokenExchangeRoleAliasPolicy"]),
        "{thing}"
    );
    assert_eq!(thing["inheritedPolicies"], json!([]));
}

#[tokio::test]
async fn a_rotation_gives_each_core_a_certificate_for_a_key_it_made_and_retires_the_old_one() {
    let app = spawn_app().await;
    let cores = names("rot", 6);
    app.provision(&cores).await;
    let before: Vec<String> = futures::future::join_all(cores.iter().map(|c| certificate_id(&app, c))).await;

    let id = submit_rotation(&app, &json!({"targets": {"thingNames": &cores[..4]}, "daysExpiry": 30})).await;
    let task = finished_rotation(&app, &id).await;
    assert_eq!(task["taskStatus"], "Success", "{task}");
    assert_eq!(task["counts"]["success"], 4);
    assert_eq!(task["revokeOld"], "afterConfirm");
    for (core, old) in cores.iter().zip(&before).take(4) {
        // One certificate on the thing, ACTIVE, for the key the core generated; the old is gone.
        let held = principals(&app, core).await;
        assert_eq!(held.len(), 1, "{core}: {held:?}");
        let (new_id, status, key) = &held[0];
        assert_eq!(status, "ACTIVE");
        assert_ne!(new_id, old);
        let device = credentials(&app.client, &app.base, core).await;
        assert_eq!(device["certificateId"], new_id.as_str(), "{core} connects with the new certificate");
        assert_eq!(device["publicKeySha256"], key.as_str(), "{core}: the certificate is for the core's own key");
        // The record and the inventory follow; the old certificate is out of both.
        let record = cdf_json(app.get(&format!("/cores/{core}")).await).await;
        assert_eq!(record["certificate"]["certificateId"], new_id.as_str());
        let days = (record["certificate"]["notAfter"]
            .as_str()
            .unwrap()
            .parse::<ggprov_domain::Timestamp>()
            .unwrap()
            .as_millis()
            - record["certificate"]["notBefore"]
                .as_str()
                .unwrap()
                .parse::<ggprov_domain::Timestamp>()
                .unwrap()
                .as_millis())
            / 86_400_000;
        assert_eq!(days, 30);
        assert_eq!(app.get(&format!("/certificates/{old}")).await.status(), 404);
    }
    // Untouched cores keep theirs.
    assert_eq!(principals(&app, &cores[5]).await[0].0, before[5]);
    // The policies came along: a rotated core has the same policies as an untouched one (the
    // bundled template's come from its thing group, so no AttachPolicy for the new certificate).
    let thing = app.thing(&cores[0]).await.unwrap();
    let untouched = app.thing(&cores[5]).await.unwrap();
    assert_eq!(thing["principals"][0]["policies"], untouched["principals"][0]["policies"]);
    assert_eq!(thing["inheritedPolicies"], untouched["inheritedPolicies"]);
    assert_eq!(thing["inheritedPolicies"].as_array().map(Vec::len), Some(2), "{thing}");
    // No private key in any answer or event; one event per core.
    let events = cdf_json(app.get("/events").await).await;
    let rotated: Vec<&Value> =
        events["events"].as_array().unwrap().iter().filter(|e| e["detailType"] == "Certificate Rotated").collect();
    assert_eq!(rotated.len(), 4);
    assert_eq!(rotated[0]["detail"]["status"], "success");
    assert!(!events.to_string().contains("PRIVATE KEY"));
    assert!(!task.to_string().contains("PRIVATE KEY"));
    let summary = cdf_json(app.get("/fleet/certificates").await).await;
    assert_eq!(summary["active"], 6);
    assert_eq!(summary["buckets"]["within30Days"], 4, "{summary}");
}

#[tokio::test]
async fn a_core_that_cannot_use_its_new_certificate_keeps_the_old_one_and_its_item_fails_until_retried() {
    let app = spawn_app().await;
    let cores = names("frail", 3);
    app.provision(&cores).await;
    let old = certificate_id(&app, &cores[1]).await;
    rotation_fails(&app, &cores[1], true).await;

    let id = submit_rotation(&app, &json!({"targets": {"thingNames": cores}})).await;
    let task = finished_rotation(&app, &id).await;
    assert_eq!(task["taskStatus"], "Failure", "{task}");
    let failed = task["cores"].as_array().unwrap().iter().find(|c| c["name"] == cores[1].as_str()).unwrap();
    assert_eq!(failed["taskStatus"], "Failure");
    assert!(failed["statusMessage"].as_str().unwrap().contains("keeps its old certificate"), "{failed}");
    let held = principals(&app, &cores[1]).await;
    assert_eq!(held, vec![(old.clone(), "ACTIVE".to_owned(), held[0].2.clone())], "only the old one, still ACTIVE");
    assert_eq!(certificate_id(&app, &cores[1]).await, old);
    let events = cdf_json(app.get("/events").await).await;
    assert!(events["events"].as_array().unwrap().iter().any(|e| e["detailType"] == "Certificate Rotated"
        && e["detail"]["status"] == "failed"
        && e["detail"]["thingName"] == cores[1].as_str()));

    // Fixed, the failed core is retried alone: a new task, one more certificate.
    rotation_fails(&app, &cores[1], false).await;
    let retry = retry_rotation(&app, &id).await;
    let task = finished_rotation(&app, &retry).await;
    assert_eq!((task["taskStatus"].as_str(), task["counts"]["total"].as_u64()), (Some("Success"), Some(1)), "{task}");
    let held = principals(&app, &cores[1]).await;
    assert_eq!(held.len(), 1);
    assert_ne!(held[0].0, old);
}

#[tokio::test]
async fn revoke_old_never_keeps_the_old_certificate_until_the_core_is_deleted_and_immediately_retires_it_at_once() {
    let app = spawn_app().await;
    let cores = names("keep", 2);
    app.provision(&cores).await;
    let old = certificate_id(&app, &cores[0]).await;
    let id = submit_rotation(&app, &json!({"targets": {"thingNames": [&cores[0]]}, "revokeOld": "never"})).await;
    assert_eq!(finished_rotation(&app, &id).await["taskStatus"], "Success");
    let held = principals(&app, &cores[0]).await;
    assert_eq!(held.len(), 2, "old and new: {held:?}");
    assert!(held.iter().all(|(_, status, _)| status == "ACTIVE"));
    assert_ne!(certificate_id(&app, &cores[0]).await, old, "the record follows the new one");
    // Revoking the lost core by name revokes the kept one too: it connects with neither.
    let revoked = app.post_json("/certificates/revoke", &json!({"thingNames": [&cores[0]]})).await;
    assert_eq!(revoked.status(), 200);
    let held = principals(&app, &cores[0]).await;
    assert!(held.iter().all(|(_, status, _)| status != "ACTIVE"), "{held:?}");
    // Deleting the core deprovisions both.
    let delete = app.submit_core_task(&crate::helpers::delete_cores(&[&cores[0]], true)).await;
    assert_eq!(app.finished_core_task(&delete).await["taskStatus"], "Success");
    let inventory: Value =
        app.client.get(app.url("/local-cloud/inventory")).send().await.unwrap().json().await.unwrap();
    assert_eq!(inventory["certificates"], 1, "only the other core's: {inventory}");

    let old = certificate_id(&app, &cores[1]).await;
    let id = submit_rotation(&app, &json!({"targets": {"thingNames": [&cores[1]]}, "revokeOld": "immediately"})).await;
    assert_eq!(finished_rotation(&app, &id).await["taskStatus"], "Success");
    let held = principals(&app, &cores[1]).await;
    assert_eq!(held.len(), 1);
    assert_ne!(held[0].0, old);
}

#[tokio::test]
async fn every_rotation_step_resumes_after_a_crash_with_one_new_certificate() {
    let app = spawn_app().await;
    let steps: Vec<&'static str> = ggprov_engine::STEPS.iter().copied().filter(|s| s.starts_with("rotate.")).collect();
    let cores = names("step", steps.len());
    app.provision(&cores).await;
    for (core, step) in cores.iter().zip(&steps) {
        let old = certificate_id(&app, core).await;
        app.failpoints.arm(step);
        let id = submit_rotation(&app, &json!({"targets": {"thingNames": [core]}})).await;
        let task = finished_rotation(&app, &id).await;
        assert_eq!(task["taskStatus"], "Success", "after a crash at {step}: {task}");
        let held = principals(&app, core).await;
        assert_eq!(held.len(), 1, "{step}: {held:?}");
        assert_ne!(held[0].0, old, "{step}");
        assert_eq!(certificate_id(&app, core).await, held[0].0, "{step}");
    }
    let inventory: Value =
        app.client.get(app.url("/local-cloud/inventory")).send().await.unwrap().json().await.unwrap();
    assert_eq!(inventory["certificates"], cores.len(), "no certificate left behind: {inventory}");
}

#[tokio::test]
async fn rotation_requests_are_checked_whole_before_anything_is_stored() {
    let app = spawn_app().await;
    app.provision(&names("chk", 1)).await;
    for (body, field) in [
        (json!({"targets": {}}), "targets"),
        (json!({"targets": {"thingNames": ["nobody"]}}), "targets.thingNames[0]"),
        (json!({"targets": {"thingGroupNames": ["no-such-group"]}}), "targets.thingGroupNames[0]"),
        (json!({"targets": {"thingIndexQuery": "thingName:("}}), "targets.thingIndexQuery"),
        (json!({"targets": {"thingNames": ["chk-0000"]}, "caId": "0000"}), "caId"),
        (json!({"targets": {"expiringWithinDays": 1}}), "targets"),
        (json!({"targets": {"signedByCaId": "0000"}}), "targets"),
    ] {
        let (status, _, problem) = error_of(app.post_json("/certificateRotationTasks", &body).await).await;
        assert_eq!(status, 422, "{body}: {problem}");
        let fields: Vec<&str> =
            problem["details"].as_array().unwrap().iter().map(|d| d["field"].as_str().unwrap()).collect();
        assert!(fields.contains(&field), "{body}: {problem}");
    }
    for body in
        [json!({"targets": {"thingNames": ["chk-0000"]}, "revokeOld": "sometimes"}), json!({"targets": {"things": []}})]
    {
        let (status, _, problem) = error_of(app.post_json("/certificateRotationTasks", &body).await).await;
        assert_eq!(status, 400, "{body}: {problem}");
    }
    let list = cdf_json(app.get("/certificateRotationTasks").await).await;
    assert!(list["tasks"].as_array().unwrap().is_empty(), "nothing stored: {list}");
    let (status, code, _) = error_of(app.get("/certificateRotationTasks/nosuchtsk").await).await;
    assert_eq!((status, code.as_str()), (404, "ROTATION_TASK_NOT_FOUND"));
}

#[tokio::test]
async fn cores_rotate_onto_a_new_ca_in_one_task_selected_by_their_old_ca() {
    let app = spawn_app().await;
    let cores = names("ca", 3);
    app.provision(&cores).await;
    let old_ca = cdf_json(app.get(&format!("/cores/{}", cores[0])).await).await["certificate"]["caId"].clone();
    // `ggprov ca create` while the service runs: a new CA in the data directory.
    let files = ggprov_embedded::FileCertificateAuthorities::new(app.data.path(), None);
    let minted = ggprov_pki::create_ca("Fleet CA 2027", 3650).unwrap();
    let new_ca = files.store(&minted.certificate_pem, &minted.private_key, false).unwrap();
    assert_ne!(json!(new_ca), old_ca);
    let old_ca = old_ca.as_str().unwrap().to_owned();
    let listed = cdf_json(app.get("/certificateAuthorities").await).await;
    let view = |id: &str| {
        listed["certificateAuthorities"].as_array().unwrap().iter().find(|c| c["caId"] == id).cloned().unwrap()
    };
    assert_eq!(
        (view(&old_ca)["default"].as_bool(), view(&old_ca)["activeCertificates"].as_i64()),
        (Some(true), Some(3))
    );
    assert_eq!(
        (view(&new_ca)["default"].as_bool(), view(&new_ca)["activeCertificates"].as_i64()),
        (Some(false), Some(0))
    );
    // The old CA can go only once it is neither the default nor signing ACTIVE certificates.
    let (status, code, _) = error_of(app.delete(&format!("/certificateAuthorities/{old_ca}")).await).await;
    assert_eq!((status, code.as_str()), (409, "CA_IS_DEFAULT"));
    files.store(&minted.certificate_pem, &minted.private_key, true).unwrap(); // `ggprov ca create --default`
    let (status, code, problem) = error_of(app.delete(&format!("/certificateAuthorities/{old_ca}")).await).await;
    assert_eq!((status, code.as_str()), (409, "CA_IN_USE"));
    assert!(problem["message"].as_str().unwrap().contains("3 ACTIVE"), "{problem}");
    let id = submit_rotation(&app, &json!({"targets": {"signedByCaId": old_ca}})).await;
    let task = finished_rotation(&app, &id).await;
    assert_eq!((task["taskStatus"].as_str(), task["counts"]["total"].as_u64()), (Some("Success"), Some(3)), "{task}");
    let summary = cdf_json(app.get("/fleet/certificates").await).await;
    assert_eq!(task["caId"], new_ca.as_str(), "the default CA signs when the request names none");
    let by_ca: BTreeSet<String> =
        summary["byCa"].as_array().unwrap().iter().map(|c| c["caId"].as_str().unwrap().to_owned()).collect();
    assert_eq!(by_ca, BTreeSet::from([new_ca.clone()]), "every core is off the old CA: {summary}");
    assert_eq!(summary["active"], 3);
    let response = app.delete(&format!("/certificateAuthorities/{old_ca}")).await;
    assert_eq!(response.status(), 204);
    let listed = cdf_json(app.get("/certificateAuthorities").await).await;
    assert_eq!(listed["certificateAuthorities"].as_array().unwrap().len(), 1, "{listed}");
    let (status, code, _) = error_of(app.delete(&format!("/certificateAuthorities/{old_ca}")).await).await;
    assert_eq!((status, code.as_str()), (404, "CA_NOT_FOUND"));
}

/// Polls `probe` until it answers `Some`, failing after `limit`.
async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sigkill_in_the_middle_of_rotating_200_cores_loses_nothing_and_makes_no_second_certificate() {
    let data = tempfile::tempdir().unwrap();
    let env = [("GGPROV_WORKER_LEASE_MS", "500"), ("GGPROV_ITEM_CONCURRENCY", "2"), ("GGPROV_AUTH", "none")];
    let client = reqwest::Client::new();
    let cores = names("kill", 200);
    let cdf = |request: reqwest::RequestBuilder| {
        request.header("accept", crate::helpers::CDF).header("content-type", crate::helpers::CDF)
    };
    let json_of = |response: reqwest::Response| async move { response.json::<Value>().await.unwrap() };

    let server = ServedProcess::start(data.path(), env, &[]);
    let body = crate::helpers::create_cores(&cores.iter().map(String::as_str).collect::<Vec<_>>());
    let response = cdf(client.post(format!("{}/coreTasks", server.base))).json(&body).send().await.unwrap();
    let provision = response.headers()["x-taskid"].to_str().unwrap().to_owned();
    eventually(Duration::from_secs(180), "provisioning", || async {
        let task =
            json_of(cdf(client.get(format!("{}/coreTasks/{provision}", server.base))).send().await.unwrap()).await;
        (task["taskStatus"] == "Success").then_some(())
    })
    .await;
    let response = cdf(client.post(format!("{}/certificateRotationTasks", server.base)))
        .json(&json!({"targets": {"expiringWithinDays": 400}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let id = response.headers()["x-taskid"].to_str().unwrap().to_owned();
    // SIGKILL once some cores are done and others are not; never more than two certificates a
    // core (old and new) on the way.
    let done_at_kill = eventually(Duration::from_secs(180), "a part of the rotation", || async {
        let inventory: Value =
            client.get(format!("{}/local-cloud/inventory", server.base)).send().await.unwrap().json().await.unwrap();
        assert!(inventory["certificates"].as_u64().unwrap() <= 400, "{inventory}");
        let task =
            json_of(cdf(client.get(format!("{}/certificateRotationTasks/{id}", server.base))).send().await.unwrap())
                .await;
        let done = task["counts"]["success"].as_u64().unwrap();
        (done >= 10).then_some(done)
    })
    .await;
    drop(server); // SIGKILL
    assert!(done_at_kill < 200, "the kill came after the last core ({done_at_kill})");
    let server = ServedProcess::start(data.path(), env, &[]);
    let task = eventually(Duration::from_secs(240), "the rotation after the restart", || async {
        let task =
            json_of(cdf(client.get(format!("{}/certificateRotationTasks/{id}", server.base))).send().await.unwrap())
                .await;
        (task["taskStatus"] == "Success" || task["taskStatus"] == "Failure").then_some(task)
    })
    .await;
    assert_eq!(task["taskStatus"], "Success", "{task}");
    assert_eq!(task["counts"]["success"], 200);
    let inventory: Value =
        client.get(format!("{}/local-cloud/inventory", server.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        (inventory["certificates"].as_u64(), inventory["activeCertificates"].as_u64()),
        (Some(200), Some(200)),
        "{inventory}"
    );
    for core in &cores {
        let thing: Value = client
            .get(format!("{}/local-cloud/things/{core}", server.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let principals = thing["principals"].as_array().unwrap();
        assert_eq!(principals.len(), 1, "{core}: {thing}");
        let device = credentials(&client, &server.base, core).await;
        assert_eq!(device["certificateId"], principals[0]["certificateId"], "{core}");
        assert_eq!(device["publicKeySha256"], principals[0]["publicKeySha256"], "{core}: the core's own key");
    }
    let summary = json_of(cdf(client.get(format!("{}/fleet/certificates", server.base))).send().await.unwrap()).await;
    assert_eq!(summary["active"], 200, "{summary}");
}

/// Runs the worker's loop by hand (jobs, rollout steps) until `done` holds for the rotation.
async fn rotate_until(app: &TestApp, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        app.drain().await;
        app.worker.advance_rollouts().await.unwrap();
        app.drain().await;
        let task = cdf_json(app.get(&format!("/certificateRotationTasks/{id}")).await).await;
        if done(&task) {
            return task;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}: {task}");
    }
}

async fn event_types(app: &TestApp) -> Vec<String> {
    let events = cdf_json(app.get("/events?count=1000").await).await;
    events["events"].as_array().unwrap().iter().map(|e| e["detailType"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn a_rotation_in_waves_rotates_one_wave_at_a_time_and_waits_for_approval() {
    let app = spawn_app().await;
    let cores = names("wave", 6);
    app.provision(&cores).await;
    let before: Vec<String> = futures::future::join_all(cores.iter().map(|c| certificate_id(&app, c))).await;
    // Submitted in reverse: waves follow the names.
    let reversed: Vec<&String> = cores.iter().rev().collect();
    let body = json!({"targets": {"thingNames": reversed},
        "rollout": {"waves": [{"count": 2}, {"percent": 100}], "approval": "manual"}});
    let id = submit_rotation(&app, &body).await;

    // Wave 1 only: the first two cores by name rotate, the others wait.
    app.drain().await;
    let rotated = |task: &Value| -> Vec<String> {
        task["cores"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["taskStatus"] == "Success")
            .map(|c| c["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let task = cdf_json(app.get(&format!("/certificateRotationTasks/{id}")).await).await;
    assert_eq!(rotated(&task), cores[..2].to_vec(), "{task}");
    assert_eq!(task["counts"]["waiting"], 4);
    assert_eq!(task["taskStatus"], "InProgress");
    assert_eq!(
        (task["rollout"]["state"].as_str(), task["rollout"]["currentWave"].as_u64()),
        (Some("Running"), Some(1))
    );
    for (core, old) in cores.iter().zip(&before).skip(2) {
        assert_eq!(&certificate_id(&app, core).await, old, "{core} waits for its wave");
    }

    // The wave met its threshold: manual approval pauses before wave 2.
    let task = rotate_until(&app, &id, "approval", |t| t["rollout"]["awaitingApproval"] == true).await;
    assert_eq!(task["rollout"]["state"], "Paused");
    assert_eq!(task["rollout"]["waves"][0]["succeeded"], 2, "{task}");
    assert_eq!(task["rollout"]["waves"][1]["planned"], 4);
    app.drain().await;
    assert_eq!(rotated(&cdf_json(app.get(&format!("/certificateRotationTasks/{id}")).await).await).len(), 2);

    let response = app.post_json(&format!("/certificateRotationTasks/{id}/resume"), &json!({})).await;
    assert_eq!(response.status(), 202);
    let task = rotate_until(&app, &id, "the end", |t| t["taskStatus"] != "InProgress").await;
    assert_eq!(task["taskStatus"], "Success", "{task}");
    assert_eq!((task["rollout"]["state"].as_str(), task["counts"]["success"].as_u64()), (Some("Completed"), Some(6)));
    for (core, old) in cores.iter().zip(&before) {
        let held = principals(&app, core).await;
        assert_eq!(held.len(), 1, "{core}: {held:?}");
        assert_ne!(&held[0].0, old, "{core} rotated");
    }
    let kinds = event_types(&app).await;
    for kind in ["CertificateRotationTask Paused Event", "CertificateRotationTask Completed Event"] {
        assert_eq!(kinds.iter().filter(|k| *k == kind).count(), 1, "one {kind}: {kinds:?}");
    }
    assert!(!kinds.iter().any(|k| k.starts_with("DeploymentTask")), "{kinds:?}");
    // Each wave's start is an event, the first one's written as the task is stored.
    let events = cdf_json(app.get("/events?count=1000").await).await;
    let started: Vec<Value> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["detailType"] == "CertificateRotationTask Wave Started Event")
        .map(|e| e["detail"].clone())
        .collect();
    assert_eq!(
        started,
        // Newest first.
        [
            json!({"taskId": id, "wave": 2, "waves": 2, "planned": 4}),
            json!({"taskId": id, "wave": 1, "waves": 2, "planned": 2})
        ],
        "{events}"
    );
}

#[tokio::test]
async fn a_failing_first_wave_aborts_the_rotation_and_the_rest_keep_their_certificates() {
    let app = spawn_app().await;
    let cores = names("brake", 5);
    app.provision(&cores).await;
    let before: Vec<String> = futures::future::join_all(cores.iter().map(|c| certificate_id(&app, c))).await;
    rotation_fails(&app, &cores[0], true).await;
    let body = json!({"targets": {"thingNames": cores},
        "rollout": {"waves": [{"count": 2}, {"percent": 100}], "failureThreshold": {"count": 0}}});
    let id = submit_rotation(&app, &body).await;
    let task = rotate_until(&app, &id, "the abort", |t| t["taskStatus"] != "InProgress").await;
    assert_eq!((task["taskStatus"].as_str(), task["rollout"]["state"].as_str()), (Some("Failure"), Some("Aborted")));
    assert!(task["statusMessage"].as_str().unwrap_or_default().contains("failure threshold"), "{task}");
    let by_name = |name: &str| task["cores"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap().clone();
    assert_eq!(by_name(&cores[0])["taskStatus"], "Failure");
    assert_eq!(by_name(&cores[1])["taskStatus"], "Success", "wave 1's other core rotated");
    for (core, old) in cores.iter().zip(&before).skip(2) {
        let item = by_name(core);
        assert_eq!(item["taskStatus"], "Failure");
        assert_eq!(item["statusMessage"], "Not rotated: the rollout was aborted");
        assert_eq!(principals(&app, core).await.len(), 1);
        assert_eq!(&certificate_id(&app, core).await, old, "{core} keeps its certificate");
    }
    assert!(event_types(&app).await.iter().any(|k| k == "CertificateRotationTask Aborted Event"));

    // Fixed, a retry rolls out again over what did not rotate: the failed core and the skipped.
    rotation_fails(&app, &cores[0], false).await;
    let retry = retry_rotation(&app, &id).await;
    let task = rotate_until(&app, &retry, "the retry", |t| t["taskStatus"] != "InProgress").await;
    assert_eq!(task["taskStatus"], "Success", "{task}");
    assert_eq!(task["counts"]["total"], 4);
    assert_eq!(task["rollout"]["waves"][0]["planned"], 2, "the same waves over the retried cores");
    for (core, old) in cores.iter().zip(&before) {
        assert_ne!(&certificate_id(&app, core).await, old, "{core} rotated in the end");
    }
}

#[tokio::test]
async fn rotation_waves_are_validated_and_actions_follow_the_state() {
    let app = spawn_app().await;
    let cores = names("gate", 3);
    app.provision(&cores).await;
    for (rollout, field) in [
        (json!({"waves": [{"count": 1}, {"count": 2}]}), "rollout.waves[1]"),
        (json!({"waves": [{"percent": 100}], "onAbort": "rollback"}), "rollout.onAbort"),
        (json!({"waves": [{"percent": 50}, {"percent": 40}, {"percent": 100}]}), "rollout.waves[1]"),
    ] {
        let (status, code, body) = error_of(
            app.post_json("/certificateRotationTasks", &json!({"targets": {"thingNames": cores}, "rollout": rollout}))
                .await,
        )
        .await;
        assert_eq!((status, code.as_str()), (422, "VALIDATION_FAILED"), "{body}");
        assert!(body["details"].as_array().unwrap().iter().any(|d| d["field"] == field), "{field}: {body}");
    }
    let listed = cdf_json(app.get("/certificateRotationTasks").await).await;
    assert_eq!(listed["tasks"], json!([]), "nothing stored");

    // Actions on a task without waves, on no task, and on a cancelled rollout.
    let plain = submit_rotation(&app, &json!({"targets": {"thingNames": [&cores[0]]}})).await;
    let (status, code, _) =
        error_of(app.post_json(&format!("/certificateRotationTasks/{plain}/pause"), &json!({})).await).await;
    assert_eq!((status, code.as_str()), (409, "NO_ROLLOUT"));
    let (status, code, _) = error_of(app.post_json("/certificateRotationTasks/nope/pause", &json!({})).await).await;
    assert_eq!((status, code.as_str()), (404, "ROTATION_TASK_NOT_FOUND"));
    app.drain().await;
    let body = json!({"targets": {"thingNames": &cores[1..]}, "rollout": {"waves": [{"count": 1}, {"percent": 100}], "approval": "manual"}});
    let id = submit_rotation(&app, &body).await;
    let paused = app.post_json(&format!("/certificateRotationTasks/{id}/pause"), &json!({})).await;
    assert_eq!(paused.status(), 202);
    let paused = cdf_json(paused).await;
    assert_eq!(paused["rollout"]["state"], "Paused");
    // Paused before its first core ran: nothing rotates.
    app.drain().await;
    let task = cdf_json(app.get(&format!("/certificateRotationTasks/{id}")).await).await;
    assert_eq!(task["counts"]["waiting"], 2, "{task}");
    let cancelled = app.post_json(&format!("/certificateRotationTasks/{id}/cancel"), &json!({})).await;
    assert_eq!(cancelled.status(), 202);
    let task = cdf_json(app.get(&format!("/certificateRotationTasks/{id}")).await).await;
    assert_eq!((task["taskStatus"].as_str(), task["rollout"]["state"].as_str()), (Some("Failure"), Some("Cancelled")));
    assert!(
        task["cores"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["statusMessage"] == "Not rotated: the rollout was cancelled")
    );
    let (status, code, _) =
        error_of(app.post_json(&format!("/certificateRotationTasks/{id}/resume"), &json!({})).await).await;
    assert_eq!((status, code.as_str()), (409, "ROLLOUT_STATE"));
    // Cancelling again is idempotent.
    assert_eq!(app.post_json(&format!("/certificateRotationTasks/{id}/cancel"), &json!({})).await.status(), 202);
}

/// A revoked core stays cut off: a rotation does not hand it a new certificate, however it
/// was selected.
#[tokio::test]
async fn a_core_whose_certificate_was_revoked_is_not_rotated_back_in() {
    let app = spawn_app().await;
    let cores = names("lost", 2);
    app.provision(&cores).await;
    let revoked = app.post_json("/certificates/revoke", &json!({"thingNames": [&cores[0]]})).await;
    assert_eq!(revoked.status(), 200);
    let id = submit_rotation(&app, &json!({"targets": {"thingNames": [&cores[0], &cores[1]]}})).await;
    let task = finished_rotation(&app, &id).await;
    let outcome = |name: &str| {
        task["cores"].as_array().unwrap().iter().find(|c| c["name"] == name).cloned().unwrap_or(Value::Null)
    };
    let lost = outcome(&cores[0]);
    assert_eq!(lost["taskStatus"], "Failure", "{task}");
    assert!(lost["statusMessage"].as_str().unwrap_or_default().contains("was revoked"), "{lost}");
    assert_eq!(outcome(&cores[1])["taskStatus"], "Success", "{task}");
    assert!(principals(&app, &cores[0]).await.iter().all(|(_, status, _)| status != "ACTIVE"));
}

/// A core revoked while its rotation waits for it: the rotation ends failed, without waiting
/// out its 24 hours, and hands out nothing.
#[tokio::test]
async fn a_core_revoked_while_its_rotation_waits_ends_failed_with_nothing_active() {
    let app = spawn_app().await;
    let cores = names("gone", 1);
    app.provision(&cores).await;
    let disconnect = app.client.post(app.url(&format!("/local-cloud/cores/{}/disconnect", cores[0]))).send().await;
    assert_eq!(disconnect.unwrap().status(), 204);
    let id = submit_rotation(&app, &json!({"targets": {"thingNames": [&cores[0]]}})).await;
    app.drain().await;
    let revoked = app.post_json("/certificates/revoke", &json!({"thingNames": [&cores[0]]})).await;
    assert_eq!(revoked.status(), 200);
    // A revoked core cannot come back online; the rotation ends at its next look.
    let task =
        rotate_until(&app, &id, "the end", |t| t["taskStatus"] != "InProgress" && t["taskStatus"] != "Waiting").await;
    let item = &task["cores"][0];
    assert_eq!(item["taskStatus"], "Failure", "{task}");
    assert!(item["statusMessage"].as_str().unwrap_or_default().contains("was revoked"), "{item}");
    assert!(principals(&app, &cores[0]).await.iter().all(|(_, status, _)| status != "ACTIVE"));
}
