//! `Idempotency-Key` on POST: a retried request gets the first answer; a reused key with
//! another request gets 422.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{create_cores, error_of, header, spawn_app, template_body};

#[tokio::test]
async fn a_retried_core_task_gets_the_same_task_and_runs_once() {
    let app = spawn_app().await;
    let body = create_cores(&["idem-1", "idem-2"]);
    let send =
        || app.cdf(Method::POST, "/coreTasks").header("idempotency-key", "retry-7f3a").body(body.to_string()).send();
    let first = send().await.unwrap();
    assert_eq!(first.status(), 202);
    let task = header(&first, "x-taskid").unwrap().to_owned();
    // The client timed out and retries, twice: same answer, no second task (no 409 either).
    for _ in 0..2 {
        let again = send().await.unwrap();
        assert_eq!(again.status(), 202);
        assert_eq!(header(&again, "x-taskid"), Some(task.as_str()));
        assert_eq!(header(&again, "location"), Some(format!("/coreTasks/{task}").as_str()));
        assert_eq!(header(&again, "idempotent-replayed"), Some("true"));
    }
    let tasks = crate::helpers::cdf_json(app.get("/coreTasks").await).await;
    assert_eq!(tasks["tasks"].as_array().unwrap().len(), 1, "{tasks}");
    // The same key for another request is refused.
    let other = app
        .cdf(Method::POST, "/coreTasks")
        .header("idempotency-key", "retry-7f3a")
        .body(create_cores(&["idem-3"]).to_string())
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_of(other).await;
    assert_eq!((status, code.as_str()), (422, "IDEMPOTENCY_KEY_REUSED"));
}

#[tokio::test]
async fn answers_are_replayed_whatever_their_status_and_bad_keys_are_refused() {
    let app = spawn_app().await;
    let body = template_body("idem-tpl", &[("aws.greengrass.Cli", "2.12.0")]);
    let post =
        |key: &str| app.cdf(Method::POST, "/templates").header("idempotency-key", key).body(body.to_string()).send();
    let created = post("tpl-1").await.unwrap();
    assert_eq!(created.status(), 201);
    let first_body = created.text().await.unwrap();
    let replayed = post("tpl-1").await.unwrap();
    assert_eq!(replayed.status(), 201, "the creation's answer, not a 409 for an existing template");
    assert_eq!(replayed.text().await.unwrap(), first_body);
    // Without the key, the same request is a new one: the template exists now.
    let (status, code, _) = error_of(app.post_json("/templates", &body).await).await;
    assert_eq!((status, code.as_str()), (409, "TEMPLATE_EXISTS"));
    // A 4xx answer is recorded too: the retry gets the same 409.
    let conflict = post("tpl-2").await.unwrap();
    assert_eq!(conflict.status(), 409);
    assert_eq!(post("tpl-2").await.unwrap().status(), 409);
    let (status, code, _) = error_of(
        app.cdf(Method::POST, "/templates")
            .header("idempotency-key", "")
            .body(json!({}).to_string())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, code.as_str()), (400, "INVALID_IDEMPOTENCY_KEY"));
}

#[tokio::test]
async fn task_requests_over_the_documented_limits_are_refused_naming_them() {
    let app = spawn_app().await;
    let names: Vec<String> = (0..=ggprov_domain::task::MAX_TASK_ITEMS).map(|i| format!("c-{i:05}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let (status, code, body) = error_of(app.post_json("/coreTasks", &create_cores(&refs)).await).await;
    assert_eq!((status, code.as_str()), (400, "VALIDATION_FAILED"), "{body}");
    assert!(body["details"][0]["problem"].as_str().unwrap().contains("at most 10000 per task"), "{body}");
    assert_eq!(crate::helpers::cdf_json(app.get("/coreTasks").await).await["tasks"], json!([]), "nothing stored");

    app.create_template("big", &[("aws.greengrass.Cli", "2.12.0")]).await;
    let long: Vec<String> = (0..6000).map(|i| format!("a-rather-long-core-name-for-the-limit-{i:06}-x")).collect();
    let deployment = json!({"template": {"name": "big"}, "targets": {"thingNames": long}});
    let (status, _, body) = error_of(app.post_json("/deploymentTasks", &deployment).await).await;
    assert_eq!(status, 400, "{body}");
    let said = body["details"][0]["problem"].as_str().unwrap();
    assert!(said.contains("at most 262144"), "the limit is named: {body}");
}
