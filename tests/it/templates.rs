//! The seven template routes: success paths, every error path, and the CDF field shapes.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::helpers::{cdf_json, error_of, header, spawn_app, spawn_app_with, template_body};

/// `2024-05-20T19:16:22.123Z`: ISO-8601 UTC with milliseconds.
fn is_iso_millis(v: &Value) -> bool {
    let Some(s) = v.as_str() else { return false };
    let pattern = "dddd-dd-ddTdd:dd:dd.dddZ";
    s.len() == pattern.len()
        && s.bytes().zip(pattern.bytes()).all(|(c, p)| if p == b'd' { c.is_ascii_digit() } else { c == p })
}

#[tokio::test]
async fn create_then_get_returns_version_1_with_cdf_headers() {
    let app = spawn_app().await;
    let response =
        app.post_json("/templates", &template_body("edge_cameras", &[("aws.greengrass.Cli", "2.4.0")])).await;
    assert_eq!(response.status(), 201);
    assert_eq!(header(&response, "location"), Some("/templates/edge_cameras"));
    assert_eq!(header(&response, "x-name"), Some("edge_cameras"));
    assert_eq!(header(&response, "x-version"), Some("1"));
    assert!(response.text().await.unwrap().is_empty(), "201 has no body");

    let body = cdf_json(app.get("/templates/edge_cameras").await).await;
    assert_eq!(body["name"], "edge_cameras");
    assert_eq!(body["version"], 1);
    assert_eq!(body["components"], json!([{"key": "aws.greengrass.Cli", "version": "2.4.0"}]));
    assert!(is_iso_millis(&body["createdAt"]), "{body}");
    assert!(body["updatedAt"].is_null(), "updatedAt is null, not omitted: {body}");
    assert!(body.get("jobConfig").is_none() && body.get("deploymentPolicies").is_none());
}

#[tokio::test]
async fn components_are_returned_in_key_order_with_every_optional_part() {
    let app = spawn_app().await;
    let body = json!({
        "name": "full",
        "components": [
            {"key": "aws.greengrass.Nucleus", "version": "2.12.0",
             "configurationUpdate": {"merge": "{\"logging\":{\"level\":\"DEBUG\"}}", "reset": ["/mqtt/port"]},
             "runWith": {"posixUser": "ggc_user:ggc_group", "systemResourceLimits": {"cpus": 0.5, "memory": 102400}}},
            {"key": "aws.greengrass.Cli", "version": "2.12.0"}
        ],
        "jobConfig": {
            "jobExecutionsRolloutConfig": {"exponentialRate": {"baseRatePerMinute": 10, "incrementFactor": 2.5, "rateIncreaseCriteria": {"numberOfNotifiedThings": 10}}, "maximumPerMinute": 100},
            "abortConfig": {"criteriaList": [{"failureType": "TIMED_OUT", "action": "CANCEL", "thresholdPercentage": 12.5, "minNumberOfExecutedThings": 10}]},
            "timeoutConfig": {"inProgressTimeoutInMinutes": 120}
        },
        "deploymentPolicies": {
            "failureHandlingPolicy": "ROLLBACK",
            "componentUpdatePolicy": {"timeoutInSeconds": 60, "action": "NOTIFY_COMPONENTS"},
            "configurationValidationPolicy": {"timeoutInSeconds": 30}
        },
        "enabled": true, "version": 7, "createdAt": "ignored"
    });
    assert_eq!(app.post_json("/templates", &body).await.status(), 201);
    let got = cdf_json(app.get("/templates/full").await).await;
    let keys: Vec<&str> = got["components"].as_array().unwrap().iter().map(|c| c["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["aws.greengrass.Cli", "aws.greengrass.Nucleus"]);
    assert_eq!(got["components"][1]["configurationUpdate"], body["components"][0]["configurationUpdate"]);
    assert_eq!(got["components"][1]["runWith"], body["components"][0]["runWith"]);
    assert_eq!(got["jobConfig"], body["jobConfig"]);
    assert_eq!(got["deploymentPolicies"], body["deploymentPolicies"]);
    assert_eq!(got["version"], 1, "a version in the body is ignored");
    assert!(got.get("enabled").is_none());
}

#[tokio::test]
async fn update_adds_a_version_and_the_current_template_is_exactly_the_latest() {
    let app = spawn_app().await;
    app.create_template("t", &[("aws.greengrass.Cli", "2.4.0"), ("aws.greengrass.LogManager", "2.3.0")]).await;
    let created = cdf_json(app.get("/templates/t").await).await;

    let mut v2 = template_body("ignored-body-name", &[("aws.greengrass.Cli", "2.5.0")]);
    v2["deploymentPolicies"] = json!({"failureHandlingPolicy": "DO_NOTHING"});
    let response = app.put_json("/templates/t", &v2).await;
    assert_eq!(response.status(), 204);
    assert_eq!(header(&response, "x-version"), Some("2"), "the real version, not 'undefined'");
    assert_eq!(header(&response, "location"), Some("/templates/t"));
    assert_eq!(header(&response, "x-name"), Some("t"));

    let current = cdf_json(app.get("/templates/t").await).await;
    assert_eq!(current["version"], 2);
    assert_eq!(current["name"], "t", "the path name wins over the body");
    assert_eq!(
        current["components"],
        json!([{"key": "aws.greengrass.Cli", "version": "2.5.0"}]),
        "removed components are gone"
    );
    assert_eq!(current["createdAt"], created["createdAt"], "createdAt is inherited");
    assert!(is_iso_millis(&current["updatedAt"]));

    // Full replacement: a field left out of the next PUT is cleared.
    assert_eq!(
        app.put_json("/templates/t", &template_body("t", &[("aws.greengrass.Cli", "2.5.0")])).await.status(),
        204
    );
    let v3 = cdf_json(app.get("/templates/t").await).await;
    assert_eq!(v3["version"], 3);
    assert!(v3.get("deploymentPolicies").is_none(), "{v3}");

    let v1 = cdf_json(app.get("/templates/t/versions/1").await).await;
    assert_eq!(v1["components"].as_array().unwrap().len(), 2, "old versions stay readable");
    assert!(v1["updatedAt"].is_null());
}

#[tokio::test]
async fn racing_updates_get_consecutive_versions_and_none_is_lost() {
    let app = spawn_app().await;
    app.create_template("raced", &[("aws.greengrass.Cli", "2.4.0")]).await;
    let minor_versions = ["2.5.0", "2.6.0", "2.7.0", "2.8.0", "2.9.0", "2.10.0", "2.11.0", "2.12.0"];
    let puts = minor_versions.iter().map(|v| {
        let body = template_body("raced", &[("aws.greengrass.Cli", v)]);
        let app = &app;
        async move { app.put_json("/templates/raced", &body).await }
    });
    let responses = futures::future::join_all(puts).await;
    let mut versions = BTreeSet::new();
    for response in responses {
        assert_eq!(response.status(), 204);
        versions.insert(header(&response, "x-version").unwrap().parse::<u32>().unwrap());
    }
    assert_eq!(versions, (2..=9).collect::<BTreeSet<u32>>(), "each PUT got its own version");
    let list = cdf_json(app.get("/templates/raced/versions").await).await;
    let stored: BTreeSet<String> = list["templates"]
        .as_array()
        .unwrap()
        .iter()
        .skip(1)
        .map(|t| t["components"][0]["version"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        stored,
        minor_versions.iter().map(|v| (*v).to_owned()).collect::<BTreeSet<_>>(),
        "every update's content is stored"
    );
}

#[tokio::test]
async fn duplicate_template_returns_409() {
    let app = spawn_app().await;
    app.create_template("dup", &[("aws.greengrass.Cli", "2.4.0")]).await;
    let (status, code, _) =
        error_of(app.post_json("/templates", &template_body("dup", &[("aws.greengrass.Cli", "2.5.0")])).await).await;
    assert_eq!((status, code.as_str()), (409, "TEMPLATE_EXISTS"));
    let body = cdf_json(app.get("/templates/dup").await).await;
    assert_eq!(body["components"][0]["version"], "2.4.0", "the existing template is untouched");
}

#[tokio::test]
async fn unknown_components_return_422_invalid_component_naming_each_one() {
    let app = spawn_app().await;
    let body = template_body(
        "t",
        &[("aws.greengrass.Cli", "2.4.0"), ("aws.greengrass.Cli2", "1.0.0"), ("aws.greengrass.Nucleus", "9.9.9")],
    );
    let (status, code, error) = error_of(app.post_json("/templates", &body).await).await;
    assert_eq!((status, code.as_str()), (422, "INVALID_COMPONENT"));
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("aws.greengrass.Cli2") && message.contains("aws.greengrass.Nucleus version 9.9.9"),
        "{message}"
    );
    assert_eq!(error["details"].as_array().unwrap().len(), 2);
    assert_eq!(app.get("/templates/t").await.status(), 404, "nothing stored");

    // Also on update, and the template keeps its version.
    app.create_template("t", &[("aws.greengrass.Cli", "2.4.0")]).await;
    let (status, code, _) =
        error_of(app.put_json("/templates/t", &template_body("t", &[("com.example.Mine", "1.0.0")])).await).await;
    assert_eq!((status, code.as_str()), (422, "INVALID_COMPONENT"));
    assert_eq!(cdf_json(app.get("/templates/t").await).await["version"], 1);
}

#[tokio::test]
async fn account_components_from_configuration_are_accepted() {
    let app = spawn_app_with(&[("GGPROV_EXTRA_COMPONENTS", "com.example.Mine@1.0.0, com.example.Other@2.0.0")]).await;
    app.create_template("mine", &[("com.example.Mine", "1.0.0"), ("aws.greengrass.Cli", "2.4.0")]).await;
}

#[tokio::test]
async fn invalid_templates_return_400_or_422_naming_the_field() {
    let app = spawn_app().await;
    let cases: Vec<(Value, &str)> = vec![
        (json!({"components": [{"key": "aws.greengrass.Cli", "version": "2.4.0"}]}), "name"),
        (template_body("", &[("aws.greengrass.Cli", "2.4.0")]), "name"),
        (template_body("has:colon", &[("aws.greengrass.Cli", "2.4.0")]), "name"),
        (template_body("café", &[("aws.greengrass.Cli", "2.4.0")]), "name"),
        (template_body(&"n".repeat(87), &[("aws.greengrass.Cli", "2.4.0")]), "name"),
        (json!({"name": "t"}), "components"),
        (json!({"name": "t", "components": []}), "components"),
        (json!({"name": "t", "components": "aws.greengrass.Cli"}), "components"),
        (json!({"name": "t", "components": [{"version": "2.4.0"}]}), "components[0].key"),
        (json!({"name": "t", "components": [{"key": "aws.greengrass.Cli"}]}), "components[0].version"),
        (json!({"name": "t", "components": [{"key": "aws.greengrass.Cli", "version": 2}]}), "components[0].version"),
        (
            json!({"name": "t", "components": [{"key": "aws.greengrass.Cli", "version": "2.4"}]}),
            "components[0].version",
        ),
        (
            json!({"name": "t", "components": [{"key": "aws.greengrass.Cli", "version": "2.4.0"}, {"key": "aws.greengrass.Cli", "version": "2.5.0"}]}),
            "components[1].key",
        ),
        (
            json!({"name": "t", "components": [{"key": "aws.greengrass.Cli", "version": "2.4.0", "configurationUpdate": {"merge": "not json"}}]}),
            "components[0].configurationUpdate.merge",
        ),
        (
            json!({"name": "t", "components": [{"key": "aws.greengrass.Cli", "version": "2.4.0", "configurationUpdate": {"reset": "/a"}}]}),
            "components[0].configurationUpdate.reset",
        ),
        (
            json!({"name": "t", "components": [{"key": "aws.greengrass.Cli", "version": "2.4.0", "runWith": {"posixUser": "a:b:c"}}]}),
            "components[0].runWith.posixUser",
        ),
        (
            json!({"name": "t", "components": [{"key": "aws.greengrass.Cli", "version": "2.4.0", "runWith": {"user": "x"}}]}),
            "components[0].runWith",
        ),
        (
            json!({"name": "t", "components": [{"key": "aws.greengrass.Cli", "version": "2.4.0"}], "deploymentPolicies": {"failureHandlingPolicy": "RETRY"}}),
            "deploymentPolicies.failureHandlingPolicy",
        ),
        (
            json!({"name": "t", "components": [{"key": "aws.greengrass.Cli", "version": "2.4.0"}], "deploymentPolicies": {"componentUpdatePolicy": {"action": "NOTIFY"}}}),
            "deploymentPolicies.componentUpdatePolicy.action",
        ),
        (
            json!({"name": "t", "components": [{"key": "aws.greengrass.Cli", "version": "2.4.0"}], "jobConfig": {"abortConfig": {"criteriaList": [{"failureType": "SOMETIMES", "action": "CANCEL", "thresholdPercentage": 5, "minNumberOfExecutedThings": 1}]}}}),
            "jobConfig.abortConfig.criteriaList[0].failureType",
        ),
        (
            json!({"name": "t", "components": [{"key": "aws.greengrass.Cli", "version": "2.4.0"}], "jobConfig": {"abortConfig": {"criteriaList": [{"failureType": "ALL", "action": "STOP", "thresholdPercentage": 5, "minNumberOfExecutedThings": 1}]}}}),
            "jobConfig.abortConfig.criteriaList[0].action",
        ),
        (
            json!({"name": "t", "components": [{"key": "aws.greengrass.Cli", "version": "2.4.0"}], "jobConfig": {"jobExecutionRolloutConfig": {"maximumPerMinute": 5}}}),
            "jobConfig",
        ),
        (
            json!({"name": "t", "components": [{"key": "aws.greengrass.Cli", "version": "2.4.0"}], "jobConfig": {"jobExecutionsRolloutConfig": {"maximumPerMinute": 0}}}),
            "jobConfig.jobExecutionsRolloutConfig.maximumPerMinute",
        ),
        (
            json!({"name": "t", "components": [{"key": "aws.greengrass.Cli", "version": "2.4.0"}], "jobConfig": {"timeoutConfig": {"inProgressTimeoutInMinutes": "ten"}}}),
            "jobConfig.timeoutConfig.inProgressTimeoutInMinutes",
        ),
        (json!(["not", "an", "object"]), "body"),
        // serde would read a struct from an array of its fields; the schema says object.
        (
            json!({"name": "t", "components": [{"key": "aws.greengrass.Cli", "version": "2.4.0", "runWith": [null, null]}]}),
            "components[0].runWith",
        ),
        (
            json!({"name": "t", "components": [{"key": "aws.greengrass.Cli", "version": "2.4.0"}], "jobConfig": [null]}),
            "jobConfig",
        ),
    ];
    // Two rules the schema cannot state answer 422: a key listed twice, `merge` that is not JSON.
    let beyond_schema = ["components[1].key", "components[0].configurationUpdate.merge"];
    for (body, field) in cases {
        let (status, code, error) = error_of(app.post_json("/templates", &body).await).await;
        let expected = if beyond_schema.contains(&field) { 422 } else { 400 };
        assert_eq!((status, code.as_str()), (expected, "VALIDATION_FAILED"), "{body}");
        let fields: Vec<&str> =
            error["details"].as_array().unwrap().iter().map(|d| d["field"].as_str().unwrap()).collect();
        assert!(fields.iter().any(|f| f.starts_with(field)), "{body}: expected a problem with {field}, got {error}");
    }
    let list = cdf_json(app.get("/templates").await).await;
    assert_eq!(list["templates"], json!([]), "nothing was stored");
}

#[tokio::test]
async fn several_problems_are_reported_together() {
    let app = spawn_app().await;
    let body = json!({"name": "bad:name", "components": [{"key": "aws.greengrass.Cli"}, {"version": "1.0.0"}]});
    let (_, _, error) = error_of(app.post_json("/templates", &body).await).await;
    let fields: Vec<&str> = error["details"].as_array().unwrap().iter().map(|d| d["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["name", "components[0].version", "components[1].key"]);
}

#[tokio::test]
async fn update_of_a_missing_template_returns_404_and_validation_comes_first() {
    let app = spawn_app().await;
    let (status, code, _) =
        error_of(app.put_json("/templates/ghost", &template_body("ghost", &[("aws.greengrass.Cli", "2.4.0")])).await)
            .await;
    assert_eq!((status, code.as_str()), (404, "TEMPLATE_NOT_FOUND"));
    let (status, _, _) = error_of(app.put_json("/templates/ghost", &json!({"name": "ghost"})).await).await;
    assert_eq!(status, 400, "components are mandatory on PUT too");
    assert_eq!(app.get("/templates/ghost").await.status(), 404, "PUT never creates");
}

#[tokio::test]
async fn delete_removes_every_version_and_a_second_delete_is_404() {
    let app = spawn_app().await;
    app.create_template("gone", &[("aws.greengrass.Cli", "2.4.0")]).await;
    assert_eq!(
        app.put_json("/templates/gone", &template_body("gone", &[("aws.greengrass.Cli", "2.5.0")])).await.status(),
        204
    );
    let response = app.delete("/templates/gone").await;
    assert_eq!(response.status(), 204);
    assert_eq!(app.get("/templates/gone").await.status(), 404);
    assert_eq!(app.get("/templates/gone/versions/1").await.status(), 404);
    assert_eq!(cdf_json(app.get("/templates/gone/versions").await).await, json!({"templates": []}));
    let (status, code, _) = error_of(app.delete("/templates/gone").await).await;
    assert_eq!((status, code.as_str()), (404, "TEMPLATE_NOT_FOUND"));
}

#[tokio::test]
async fn missing_templates_and_versions_return_404() {
    let app = spawn_app().await;
    app.create_template("t", &[("aws.greengrass.Cli", "2.4.0")]).await;
    for path in [
        "/templates/absent",
        "/templates/not:valid",
        "/templates/t/versions/2",
        "/templates/t/versions/abc",
        "/templates/t/versions/01x",
        "/templates/absent/versions/1",
    ] {
        let (status, code, _) = error_of(app.get(path).await).await;
        assert_eq!((status, code.as_str()), (404, "TEMPLATE_NOT_FOUND"), "{path}");
    }
}

#[tokio::test]
async fn version_lookup_is_exact_and_current_means_latest() {
    let app = spawn_app().await;
    app.create_template("exact", &[("aws.greengrass.Cli", "2.4.0")]).await;
    for v in [
        "2.5.0", "2.6.0", "2.7.0", "2.8.0", "2.9.0", "2.10.0", "2.11.0", "2.12.0", "2.13.0", "2.14.0", "2.15.0",
        "2.16.0", "2.17.0", "2.12.1", "2.12.2", "2.12.3", "2.12.4", "2.12.5", "2.12.6",
    ] {
        assert_eq!(
            app.put_json("/templates/exact", &template_body("exact", &[("aws.greengrass.Cli", v)])).await.status(),
            204
        );
    }
    // 20 versions exist: "2" must be version 2, not 20 (the original matched by prefix).
    assert_eq!(cdf_json(app.get("/templates/exact/versions/2").await).await["version"], 2);
    assert_eq!(cdf_json(app.get("/templates/exact/versions/20").await).await["version"], 20);
    assert_eq!(cdf_json(app.get("/templates/exact/versions/current").await).await["version"], 20);
}

#[tokio::test]
async fn template_list_is_sorted_paged_and_omits_components() {
    let app = spawn_app().await;
    for name in ["charlie", "alpha", "delta", "bravo", "echo"] {
        app.create_template(name, &[("aws.greengrass.Cli", "2.4.0")]).await;
    }
    let all = cdf_json(app.get("/templates").await).await;
    assert!(all.get("pagination").is_none(), "no count, no continuation: no pagination key ({all})");
    let names: Vec<&str> = all["templates"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["alpha", "bravo", "charlie", "delta", "echo"]);
    assert!(all["templates"][0].get("components").is_none());
    assert!(all["templates"][0]["updatedAt"].is_null());

    let page1 = cdf_json(app.get("/templates?count=2").await).await;
    assert_eq!(page1["pagination"], json!({"count": "2", "lastEvaluated": {"name": "bravo"}}));
    let page2 = cdf_json(app.get("/templates?count=2&exclusiveStartName=bravo").await).await;
    assert_eq!(
        page2["templates"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect::<Vec<_>>(),
        ["charlie", "delta"]
    );
    let page3 = cdf_json(app.get("/templates?count=2&exclusiveStartName=delta").await).await;
    assert_eq!(page3["templates"].as_array().unwrap().len(), 1);
    assert_eq!(page3["pagination"], json!({"count": "2"}), "the last page has no lastEvaluated");
}

#[tokio::test]
async fn versions_list_in_numeric_order_with_working_paging() {
    let app = spawn_app().await;
    app.create_template("v", &[("aws.greengrass.Cli", "2.4.0")]).await;
    for _ in 0..10 {
        assert_eq!(
            app.put_json("/templates/v", &template_body("v", &[("aws.greengrass.Cli", "2.5.0")])).await.status(),
            204
        );
    }
    let all = cdf_json(app.get("/templates/v/versions").await).await;
    let versions: Vec<u64> =
        all["templates"].as_array().unwrap().iter().map(|t| t["version"].as_u64().unwrap()).collect();
    assert_eq!(versions, (1..=11).collect::<Vec<_>>(), "numeric, not string order");
    assert!(all["templates"].as_array().unwrap().iter().all(|t| t["components"].is_array()), "entries are complete");

    let page = cdf_json(app.get("/templates/v/versions?count=4&exclusiveStartVersion=8").await).await;
    let versions: Vec<u64> =
        page["templates"].as_array().unwrap().iter().map(|t| t["version"].as_u64().unwrap()).collect();
    assert_eq!(versions, [9, 10, 11]);
    assert_eq!(page["pagination"], json!({"count": "4"}));
    let first = cdf_json(app.get("/templates/v/versions?count=4").await).await;
    assert_eq!(first["pagination"]["lastEvaluated"], json!({"version": 4}));
    assert_eq!(cdf_json(app.get("/templates/unknown/versions").await).await, json!({"templates": []}));
}

#[tokio::test]
async fn bad_paging_parameters_return_400() {
    let app = spawn_app().await;
    for path in [
        "/templates?count=0",
        "/templates?count=-1",
        "/templates?count=ten",
        "/templates?count=1001",
        "/templates/v/versions?count=0",
        "/templates/v/versions?exclusiveStartVersion=x",
    ] {
        let (status, code, _) = error_of(app.get(path).await).await;
        assert_eq!((status, code.as_str()), (400, "VALIDATION_FAILED"), "{path}");
    }
}
