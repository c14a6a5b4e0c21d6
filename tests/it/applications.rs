//! Docker Compose applications on the embedded default: create, validate, version, deploy
//! through a template, see the containers run, fail an image pull, delete.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{TestApp, cdf_json, create_cores, error_of, header, spawn_app};

const COMPOSE: &str = "services:\n  web:\n    image: public.ecr.aws/nginx/nginx:1.25\n    ports: ['8080:80']\n  cache:\n    image: redis:7.2\n";

fn body(name: &str, compose: &str) -> Value {
    json!({"name": name, "compose": compose})
}

async fn create(app: &TestApp, name: &str, compose: &str) -> Value {
    let response = app.post_json("/applications", &body(name, compose)).await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap_or_default());
    assert_eq!(header(&response, "location"), Some(format!("/applications/{name}").as_str()));
    assert_eq!(header(&response, "x-version"), Some("1"));
    cdf_json(response).await
}

async fn events(app: &TestApp, kind: &str) -> Vec<Value> {
    let all = cdf_json(app.get("/events").await).await;
    all["events"].as_array().unwrap().iter().filter(|e| e["detailType"] == kind).cloned().collect()
}

#[tokio::test]
async fn an_application_becomes_a_component_that_a_template_deploys_and_cores_run() {
    let app = spawn_app().await;
    let created = create(&app, "shop", COMPOSE).await;
    assert_eq!(
        (created["state"].as_str(), created["componentName"].as_str(), created["componentVersion"].as_str()),
        (Some("Published"), Some("ggprov.app.shop"), Some("1.0.0"))
    );
    assert!(created["warnings"].as_array().unwrap().is_empty(), "{created}");
    let uris: Vec<&str> = created["recipe"]["Manifests"][0]["Artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["URI"].as_str().unwrap())
        .collect();
    assert_eq!(uris[1..], ["docker:public.ecr.aws/nginx/nginx:1.25", "docker:redis:7.2"]);
    let key = created["artifacts"][0]["key"].as_str().unwrap();
    assert_eq!(app.artifact(key).as_deref(), Some(COMPOSE.as_bytes()), "the Compose file is an artifact");
    assert_eq!(events(&app, "Application Created Event").await.len(), 1);

    // A template names the component like any other and deploys it.
    app.create_template("edge", &[("aws.greengrass.Cli", "2.12.0"), ("ggprov.app.shop", "1.0.0")]).await;
    let task = app.submit_core_task(&create_cores(&["c1", "c2"])).await;
    assert_eq!(app.finished_core_task(&task).await["taskStatus"], "Success");
    let response = app
        .post_json("/deploymentTasks", &json!({"template": {"name": "edge"}, "targets": {"thingNames": ["c1", "c2"]}}))
        .await;
    assert_eq!(response.status(), 202);
    app.settle(Duration::from_secs(20)).await;
    let core = cdf_json(app.get("/cores/c1").await).await;
    let installed = core["device"]["installedComponents"].as_array().unwrap();
    let shop = installed.iter().find(|c| c["name"] == "ggprov.app.shop").expect("installed");
    assert_eq!(shop["version"], "1.0.0");
    assert_eq!(shop["lifecycleState"], "RUNNING");
    assert_eq!(
        shop["containers"],
        json!([
            {"service": "cache", "image": "redis:7.2", "state": "running"},
            {"service": "web", "image": "public.ecr.aws/nginx/nginx:1.25", "state": "running"},
        ])
    );

    // Version 2 replaces the containers; version 1 stays readable.
    let response =
        app.put_json("/applications/shop", &json!({"compose": "services:\n  web:\n    image: nginx:1.27\n"})).await;
    assert_eq!(response.status(), 204);
    assert_eq!(header(&response, "x-version"), Some("2"));
    app.create_template("edge2", &[("ggprov.app.shop", "2.0.0")]).await;
    let response = app
        .post_json("/deploymentTasks", &json!({"template": {"name": "edge2"}, "targets": {"thingNames": ["c1"]}}))
        .await;
    assert_eq!(response.status(), 202);
    app.settle(Duration::from_secs(20)).await;
    let core = cdf_json(app.get("/cores/c1").await).await;
    let shop = core["device"]["installedComponents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "ggprov.app.shop")
        .cloned()
        .unwrap();
    assert_eq!((shop["version"].as_str(), shop["containers"].as_array().map(Vec::len)), (Some("2.0.0"), Some(1)));
    let versions = cdf_json(app.get("/applications/shop/versions").await).await;
    let numbers: Vec<u64> =
        versions["applications"].as_array().unwrap().iter().map(|v| v["version"].as_u64().unwrap()).collect();
    assert_eq!(numbers, [1, 2]);
    assert!(versions["applications"][0].get("recipe").is_none(), "lists are summaries");
    let v1 = cdf_json(app.get("/applications/shop/versions/1").await).await;
    assert_eq!(v1["compose"], COMPOSE);
    assert_eq!(v1["iamStatements"][0]["Action"], json!(["s3:GetObject"]));
    assert_eq!(events(&app, "Application Updated Event").await.len(), 1);

    // Deleting it is refused while templates name it, and names them.
    let (status, code, body) = error_of(app.delete("/applications/shop").await).await;
    assert_eq!((status, code.as_str()), (409, "APPLICATION_IN_USE"));
    assert!(
        body["message"].as_str().unwrap().contains("edge:1") && body["message"].as_str().unwrap().contains("edge2:1"),
        "{body}"
    );
    for t in ["edge", "edge2"] {
        assert_eq!(app.delete(&format!("/templates/{t}")).await.status(), 204);
    }
    assert_eq!(app.delete("/applications/shop").await.status(), 204);
    assert_eq!(app.get("/applications/shop").await.status(), 404);
    assert_eq!(app.artifact(key), None, "its artifacts are gone");
    let (status, code, _) = error_of(
        app.post_json("/templates", &crate::helpers::template_body("again", &[("ggprov.app.shop", "1.0.0")])).await,
    )
    .await;
    assert_eq!((status, code.as_str()), (422, "INVALID_COMPONENT"), "the component versions are gone");
    assert_eq!(events(&app, "Application Deleted Event").await.len(), 1);
    // The name can be used again, from version 1.
    create(&app, "shop", "services:\n  web:\n    image: nginx:1.27\n").await;
}

#[tokio::test]
async fn an_image_pull_error_fails_the_deployment_and_the_rollout_stops() {
    let app = spawn_app().await;
    create(&app, "shop", COMPOSE).await;
    app.create_template("edge", &[("ggprov.app.shop", "1.0.0")]).await;
    let names: Vec<String> = (1..=4).map(|i| format!("p{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let task = app.submit_core_task(&create_cores(&refs)).await;
    assert_eq!(app.finished_core_task(&task).await["taskStatus"], "Success");
    let r = app
        .client
        .put(app.url("/local-cloud/behaviors"))
        .json(&json!({"names": ["p1", "p2"], "imagePullError": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let response = app
        .post_json(
            "/deploymentTasks",
            &json!({"template": {"name": "edge"}, "targets": {"thingNames": refs},
                    "rollout": {"waves": [{"count": 2}, {"percent": 100}], "failureThreshold": {"count": 0}}}),
        )
        .await;
    assert_eq!(response.status(), 202, "{}", response.text().await.unwrap_or_default());
    let id = header(&response, "x-taskid").unwrap().to_owned();
    app.settle(Duration::from_secs(20)).await;
    let task = cdf_json(app.get(&format!("/deploymentTasks/{id}")).await).await;
    assert_eq!(task["rollout"]["state"], "Aborted", "{task}");
    let core = cdf_json(app.get("/cores/p1").await).await;
    assert!(
        core["template"]["reported"]["deploymentStatus"] != "SUCCESSFUL",
        "the failed core does not report success: {core}"
    );
    let installed = core["device"]["installedComponents"].as_array().unwrap();
    assert!(installed.iter().all(|c| c["name"] != "ggprov.app.shop"), "nothing of the application runs: {installed:?}");
    let deployments = core["device"]["effectiveDeployments"].as_array().unwrap();
    assert!(
        deployments.iter().any(|d| d["reason"].as_str().is_some_and(|r| r.contains("could not pull image"))),
        "{deployments:?}"
    );
    let p3 = cdf_json(app.get("/cores/p3").await).await;
    assert_eq!(p3["template"]["desired"]["name"], "None", "the second wave never moved: {p3}");
    assert_eq!(p3["device"]["effectiveDeployments"], json!([]));
}

#[tokio::test]
async fn bad_applications_get_400_with_the_field_and_line_and_nothing_is_stored() {
    let app = spawn_app().await;
    let cases: Vec<(Value, &str, &str)> = vec![
        (json!({"compose": COMPOSE}), "name", "is required"),
        (json!({"name": "a.b", "compose": COMPOSE}), "name", "not an application name"),
        (json!({"name": "x"}), "compose", "is required"),
        (body("x", "services:\n  web: [\n"), "compose", "is not valid YAML"),
        (body("x", "version: '3'\n"), "compose", "no `services`"),
        (
            body("x", "services:\n  web:\n    build: .\n"),
            "compose",
            "line 2: service 'web' has `build:` and no `image:`",
        ),
        (body("x", "services:\n  web:\n    image: Nginx:1\n"), "compose", "line 3: service 'web': image 'Nginx:1'"),
        (
            body("x", "services:\n  web:\n    image: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/web:1\n"),
            "compose",
            "is in Amazon ECR in eu-west-1, but the cores deploy from us-east-1",
        ),
        (
            body(
                "x",
                "services:\n  a:\n    image: nginx:1\n    container_name: c\n  b:\n    image: nginx:1\n    container_name: c\n",
            ),
            "compose",
            "line 7: service 'b': container name 'c' is also used by service 'a'",
        ),
        (
            body(
                "x",
                "services:\n  a:\n    image: nginx:1\n    ports: ['80:80']\n  b:\n    image: nginx:1\n    ports: ['80:8080']\n",
            ),
            "compose",
            "line 7: service 'b': host port 80/tcp is also published by service 'a'",
        ),
        (
            json!({"name": "x", "compose": COMPOSE, "options": {"statusLogFrequencySecs": 10000}}),
            "options.statusLogFrequencySecs",
            "",
        ),
        (
            json!({"name": "x", "compose": COMPOSE, "registryCredentials": [{"registry": "r.example.com", "secretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:shop-AbCdEf"}]}),
            "registryCredentials[0].secretArn",
            "must start with 'greengrass-'",
        ),
        (
            json!({"name": "x", "compose": COMPOSE, "images": [{"key": "images/missing.tar"}]}),
            "images[0].key",
            "is not in the artifact store",
        ),
        (json!({"name": "x", "compose": COMPOSE, "options": {"pullBeforeUp": "yes"}}), "options.pullBeforeUp", ""),
    ];
    for (request, field, text) in cases {
        let response = app.post_json("/applications", &request).await;
        let (status, code, body) = error_of(response).await;
        assert_eq!((status, code.as_str()), (400, "VALIDATION_FAILED"), "{request} -> {body}");
        let details = body["details"].as_array().unwrap();
        assert!(
            details.iter().any(|d| d["field"] == field && d["problem"].as_str().unwrap().contains(text)),
            "{request}: expected {field}: {text}; got {body}"
        );
    }
    let huge = format!("services:\n  web:\n    image: nginx:1\n{}", "# padding\n".repeat(27_000));
    let (status, code, _) = error_of(app.post_json("/applications", &body("x", &huge)).await).await;
    assert_eq!((status, code.as_str()), (413, "PAYLOAD_TOO_LARGE"));
    assert_eq!(cdf_json(app.get("/applications").await).await["applications"], json!([]), "nothing stored");
    assert!(events(&app, "Application Created Event").await.is_empty());
    assert_eq!(error_of(app.put_json("/applications/nope", &body("nope", COMPOSE)).await).await.0, 404);
    for name in ["", "other"] {
        let (status, _, answer) = error_of(app.put_json("/applications/w", &body(name, COMPOSE)).await).await;
        assert_eq!((status, answer["details"][0]["field"].as_str()), (400, Some("name")), "{answer}");
    }
    assert_eq!(error_of(app.get("/applications/nope/versions").await).await.0, 404);
    assert_eq!(error_of(app.get("/applications/nope/versions/1").await).await.0, 404);
    // Warnings are answered, not refused.
    let response = app.post_json("/applications", &body("w", "services:\n  a:\n    image: nginx\n")).await;
    assert_eq!(response.status(), 201);
    assert!(
        header(&response, "warning")
            .unwrap()
            .starts_with("299 ggprov \"line 3: service 'a': image 'nginx' is untagged")
    );
    assert_eq!(error_of(app.post_json("/applications", &body("w", COMPOSE)).await).await.1, "APPLICATION_EXISTS");
    // The same create again (its first answer lost) is answered with the same version 1.
    let again = app.post_json("/applications", &body("w", "services:\n  a:\n    image: nginx\n")).await;
    assert_eq!((again.status().as_u16(), header(&again, "x-version")), (201, Some("1")));
    assert_eq!(cdf_json(app.get("/applications/w/versions").await).await["applications"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_failed_publication_is_finished_by_the_retried_request_without_a_second_version() {
    let app = spawn_app().await;
    let faults = |rate: f64| {
        let app = &app;
        async move {
            let r =
                app.client.put(app.url("/local-cloud/faults")).json(&json!({"errorRate": rate})).send().await.unwrap();
            assert_eq!(r.status(), 204);
        }
    };
    faults(1.0).await;
    let (status, code, body) = error_of(app.post_json("/applications", &body("shop", COMPOSE)).await).await;
    assert_eq!((status, code.as_str()), (503, "SERVICE_UNAVAILABLE"), "{body}");
    assert!(body["message"].as_str().unwrap().contains("retry the request"), "{body}");
    assert_eq!(cdf_json(app.get("/applications/shop").await).await["state"], "Pending");
    assert!(events(&app, "Application Created Event").await.is_empty(), "no event before it is published");
    faults(0.0).await;
    let created = create(&app, "shop", COMPOSE).await;
    assert_eq!((created["version"].as_u64(), created["state"].as_str()), (Some(1), Some("Published")));
    // A pending update is finished by the next update, which then becomes version 3.
    faults(1.0).await;
    let v2 = json!({"compose": "services:\n  web:\n    image: nginx:1.27\n"});
    assert_eq!(app.put_json("/applications/shop", &v2).await.status(), 503);
    faults(0.0).await;
    let response = app.put_json("/applications/shop", &v2).await;
    assert_eq!(header(&response, "x-version"), Some("2"), "the retry is version 2, not 3");
    let response = app.put_json("/applications/shop", &json!({"compose": COMPOSE})).await;
    assert_eq!(header(&response, "x-version"), Some("3"));
    assert_eq!(events(&app, "Application Created Event").await.len(), 1);
    assert_eq!(events(&app, "Application Updated Event").await.len(), 2);
}

#[tokio::test]
async fn concurrent_updates_get_consecutive_versions_and_one_event_each() {
    let app = spawn_app().await;
    create(&app, "shop", COMPOSE).await;
    let updates = (0..8).map(|i| {
        let app = &app;
        async move {
            let compose = format!("services:\n  web:\n    image: nginx:1.{i}\n");
            let response = app.put_json("/applications/shop", &json!({"compose": compose})).await;
            assert_eq!(response.status(), 204, "{}", response.text().await.unwrap_or_default());
        }
    });
    futures::future::join_all(updates).await;
    let versions = cdf_json(app.get("/applications/shop/versions").await).await;
    let list = versions["applications"].as_array().unwrap();
    assert_eq!(list.len(), 9);
    assert!(list.iter().all(|v| v["state"] == "Published"));
    assert_eq!(events(&app, "Application Updated Event").await.len(), 8);
}

#[tokio::test]
async fn a_delete_racing_updates_leaves_no_component_version_behind() {
    let app = spawn_app().await;
    create(&app, "race", COMPOSE).await;
    let updates = (0..6).map(|i| {
        let app = &app;
        async move {
            let compose = format!("services:\n  web:\n    image: nginx:1.{i}\n");
            app.put_json("/applications/race", &json!({"compose": compose})).await.status().as_u16()
        }
    });
    let delete = async { app.delete("/applications/race").await.status().as_u16() };
    let (statuses, deleted) = futures::join!(futures::future::join_all(updates), delete);
    assert_eq!(deleted, 204, "the delete wins in the end");
    assert!(
        statuses.iter().all(|s| [204, 404].contains(s)),
        "an update either lands before the delete or finds nothing: {statuses:?}"
    );
    assert_eq!(app.get("/applications/race").await.status(), 404);
    for version in 1..=7 {
        let body =
            crate::helpers::template_body(&format!("t{version}"), &[("ggprov.app.race", &format!("{version}.0.0"))]);
        let (status, code, _) = error_of(app.post_json("/templates", &body).await).await;
        assert_eq!((status, code.as_str()), (422, "INVALID_COMPONENT"), "component version {version}.0.0 is gone");
    }
    let left: Vec<_> = walkdir(&app.data.path().join("artifacts/applications/race"));
    assert_eq!(left, Vec::<std::path::PathBuf>::new(), "no artifact of the application is left");
}

/// Files under `dir` (none if it does not exist).
fn walkdir(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries.flatten().flat_map(|e| if e.path().is_dir() { walkdir(&e.path()) } else { vec![e.path()] }).collect()
}
