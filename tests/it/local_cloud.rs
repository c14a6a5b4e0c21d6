//! The local cloud's simulated cores apply the deployments of their thing groups and report
//! the outcome asynchronously, as their behavior says.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ggprov_domain::ThingName;
use ggprov_domain::ports::IotRegistry as _;
use ggprov_local_cloud::DeployedComponent;
use serde_json::{Value, json};

use crate::helpers::{TestApp, cdf_json, create_cores, spawn_app};

/// Polls `GET /cores/{name}` until its first effective deployment has the status (deadline
/// 10 s), then returns the device block read once more: its Greengrass reads run side by side,
/// not as one snapshot, so the read that first shows the status may predate the installed
/// components written in the same transaction.
async fn wait_for_execution(app: &TestApp, core: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let device = cdf_json(app.get(&format!("/cores/{core}")).await).await["device"].clone();
        if device["effectiveDeployments"][0]["coreDeviceExecutionStatus"] == status {
            return cdf_json(app.get(&format!("/cores/{core}")).await).await["device"].clone();
        }
        assert!(Instant::now() < deadline, "{core} never reached {status}: {device}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn components(version: &str) -> BTreeMap<String, DeployedComponent> {
    BTreeMap::from([(
        "aws.greengrass.Cli".to_owned(),
        DeployedComponent { component_version: version.into(), configuration_update: None, run_with: None },
    )])
}

#[tokio::test]
async fn connected_cores_apply_group_deployments_and_report_as_their_behavior_says() {
    let app = spawn_app().await;
    let task = app.submit_core_task(&create_cores(&["good", "bad", "silent"])).await;
    app.finished_core_task(&task).await;
    let behave = |name: &'static str, outcome: &'static str| {
        let request = app
            .client
            .put(app.url(&format!("/local-cloud/cores/{name}/behavior")))
            .json(&json!({"deploymentOutcome": outcome}));
        async move { assert_eq!(request.send().await.unwrap().status(), 204) }
    };
    behave("bad", "FAILED").await;
    behave("silent", "NO_RESPONSE").await;
    for name in ["good", "bad", "silent"] {
        app.cloud.add_thing_to_thing_group("fleet", &ThingName::parse(name).unwrap()).await.unwrap();
    }
    let deployment = app.cloud.create_deployment("fleet", "fleet-v1", &components("2.12.0")).await.unwrap();

    let good = wait_for_execution(&app, "good", "SUCCEEDED").await;
    assert_eq!(good["effectiveDeployments"][0]["deploymentId"], deployment.as_str());
    assert!(
        good["installedComponents"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "aws.greengrass.Cli", "version": "2.12.0", "lifecycleState": "RUNNING"}))
    );
    let bad = wait_for_execution(&app, "bad", "FAILED").await;
    assert!(
        !bad["installedComponents"].as_array().unwrap().iter().any(|c| c["name"] == "aws.greengrass.Cli"),
        "a failed deployment rolls back"
    );
    let silent = wait_for_execution(&app, "silent", "IN_PROGRESS").await;
    assert_eq!(silent["effectiveDeployments"].as_array().unwrap().len(), 1);

    let events = app.cloud.deployment_status_events(0, 100).await.unwrap();
    let mut outcomes: Vec<(String, String)> =
        events.iter().map(|e| (e.core_name.clone(), e.detailed_status.clone())).collect();
    outcomes.sort();
    assert_eq!(
        outcomes,
        [("bad".into(), "FAILED_ROLLBACK_COMPLETE".into()), ("good".into(), "SUCCESSFUL".into())],
        "the silent core never reports"
    );
}

#[tokio::test]
async fn a_core_that_joins_a_group_or_comes_online_later_gets_its_deployment() {
    let app = spawn_app().await;
    let task = app.submit_core_task(&create_cores(&["early", "late"])).await;
    app.finished_core_task(&task).await;
    app.cloud.add_thing_to_thing_group("site", &ThingName::parse("early").unwrap()).await.unwrap();
    app.cloud.create_deployment("site", "site-v1", &components("2.12.0")).await.unwrap();
    wait_for_execution(&app, "early", "SUCCEEDED").await;

    // Offline when it joins: nothing happens until it connects.
    let late = ThingName::parse("late").unwrap();
    app.cloud.disconnect_core(&late).await.unwrap();
    app.cloud.add_thing_to_thing_group("site", &late).await.unwrap();
    assert_eq!(cdf_json(app.get("/cores/late").await).await["device"]["effectiveDeployments"], json!([]));
    app.cloud.connect_core(&late, None).await.unwrap();
    wait_for_execution(&app, "late", "SUCCEEDED").await;
}

#[tokio::test]
async fn the_registry_keeps_aws_rules_for_principals_and_groups() {
    use ggprov_domain::ports::CloudError;
    let app = spawn_app().await;
    let task = app.submit_core_task(&create_cores(&["ruled"])).await;
    app.finished_core_task(&task).await;
    let name = ThingName::parse("ruled").unwrap();
    let err = app.cloud.delete_thing(&name).await.unwrap_err();
    assert!(matches!(err, CloudError::Rejected { .. }) && err.to_string().contains("attached principal"), "{err}");
    // The core is in its template's policy group already: nine more make ten.
    assert_eq!(app.thing("ruled").await.unwrap()["groups"], json!(["ggprov-greengrass2-core-policies"]));
    for i in 0..9 {
        app.cloud.add_thing_to_thing_group(&format!("group-{i}"), &name).await.unwrap();
    }
    let err = app.cloud.add_thing_to_thing_group("group-10", &name).await.unwrap_err();
    assert!(err.to_string().contains("10 thing groups"), "{err}");
    let err = app.cloud.create_thing(&name, None, &Default::default()).await.unwrap_err();
    assert!(matches!(err, CloudError::AlreadyExists { .. }));
    let missing = ThingName::parse("missing").unwrap();
    assert!(app.cloud.delete_thing(&missing).await.unwrap_err().is_not_found());
}
