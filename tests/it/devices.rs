//! Client devices over HTTP: device tasks, devices, association with their core, deletes,
//! core deletion cleaning up its devices, crash/resume.

use ggprov_domain::ThingName;
use ggprov_domain::ports::Greengrass as _;
use serde_json::{Value, json};

use crate::helpers::{TestApp, cdf_json, create_cores, delete_cores, error_of, header, spawn_app, spawn_app_with};

fn create_devices(names: &[&str]) -> Value {
    json!({"type": "Create", "devices": names.iter().map(|n| json!({"name": n, "provisioningTemplate": "greengrass2_client_device"})).collect::<Vec<_>>()})
}

async fn submit_device_task(app: &TestApp, core: &str, body: &Value) -> String {
    let response = app.post_json(&format!("/cores/{core}/deviceTasks"), body).await;
    assert_eq!(response.status(), 202, "{}", response.text().await.unwrap_or_default());
    let id = header(&response, "x-taskid").unwrap().to_owned();
    assert_eq!(header(&response, "location"), Some(format!("/deviceTasks/{id}").as_str()));
    id
}

async fn finished_device_task(app: &TestApp, id: &str) -> Value {
    app.drain().await;
    cdf_json(app.get(&format!("/deviceTasks/{id}")).await).await
}

/// A provisioned, connected core.
async fn core(app: &TestApp, name: &str) {
    let id = app.submit_core_task(&create_cores(&[name])).await;
    assert_eq!(app.finished_core_task(&id).await["taskStatus"], "Success");
}

async fn associated(app: &TestApp, core: &str) -> Vec<String> {
    app.cloud
        .list_client_devices(&ThingName::parse(core).unwrap())
        .await
        .unwrap()
        .iter()
        .map(|t| t.as_str().to_owned())
        .collect()
}

#[tokio::test]
async fn devices_are_provisioned_and_associated_with_their_core() {
    let app = spawn_app().await;
    core(&app, "gw-1").await;
    let id = submit_device_task(&app, "gw-1", &create_devices(&["sensor-b", "sensor-a"])).await;
    let waiting = cdf_json(app.get(&format!("/deviceTasks/{id}")).await).await;
    assert_eq!(
        (waiting["taskStatus"].as_str(), waiting["coreName"].as_str(), waiting["type"].as_str()),
        (Some("Waiting"), Some("gw-1"), Some("Create"))
    );

    let task = finished_device_task(&app, &id).await;
    assert_eq!(task["taskStatus"], "Success", "{task}");
    let names: Vec<&str> = task["devices"].as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["sensor-a", "sensor-b"]);

    let device = cdf_json(app.get("/devices/sensor-a").await).await;
    assert_eq!(device["coreName"], "gw-1");
    assert_eq!(device["provisioningTemplate"], "greengrass2_client_device");
    assert_eq!(device["artifacts"]["certs"]["key"], "sensor-a/sensor-a/certs.zip");
    assert!(device["artifacts"].get("config").is_none(), "no installer config for client devices");
    let thing = app.thing("sensor-a").await.unwrap();
    assert_eq!(thing["principals"][0]["status"], "ACTIVE");
    assert_eq!(
        thing["principals"][0]["policies"],
        json!(["GreengrassV2ClientDevicePolicy_sensor-a"]),
        "a policy created for this device"
    );
    assert_eq!(associated(&app, "gw-1").await, ["sensor-a", "sensor-b"]);

    let listed = cdf_json(app.get("/cores/gw-1/devices?count=1").await).await;
    assert_eq!(listed["devices"][0]["name"], "sensor-a");
    assert_eq!(listed["pagination"], json!({"count": "1", "lastEvaluated": {"thingName": "sensor-a"}}));
    let events = cdf_json(app.get("/events").await).await;
    let created: Vec<&Value> =
        events["events"].as_array().unwrap().iter().filter(|e| e["detailType"] == "Device Created Event").collect();
    assert_eq!(created.len(), 2);
    assert_eq!(created[0]["detail"]["taskId"], id.as_str());
}

#[tokio::test]
async fn device_tasks_for_unknown_or_unregistered_cores_are_400_and_store_nothing() {
    let app = spawn_app_with(&[("GGPROV_LOCAL_CLOUD_AUTO_CONNECT", "false")]).await;
    let (status, code, error) =
        error_of(app.post_json("/cores/NoSuchCore/deviceTasks", &create_devices(&["d1"])).await).await;
    assert_eq!((status, code.as_str()), (400, "VALIDATION_FAILED"));
    assert_eq!(error["details"][0]["field"], "coreName");
    core(&app, "offline-core").await;
    let (status, _, error) =
        error_of(app.post_json("/cores/offline-core/deviceTasks", &create_devices(&["d1"])).await).await;
    assert_eq!(status, 400);
    assert!(error["message"].as_str().unwrap().contains("not registered with Greengrass"), "{error}");
    app.drain().await;
    assert!(app.thing("d1").await.is_none(), "nothing provisioned");
}

#[tokio::test]
async fn invalid_device_tasks_name_the_field() {
    let app = spawn_app().await;
    core(&app, "gw").await;
    // 400: the body breaks the schema; 422: it names a template that does not exist or a core.
    let cases: Vec<(Value, &str, u16)> = vec![
        (json!({"devices": [{"name": "d", "provisioningTemplate": "greengrass2_client_device"}]}), "type", 400),
        (json!({"type": "Create", "devices": []}), "devices", 400),
        (
            json!({"type": "Create", "devices": [{"name": "bad name", "provisioningTemplate": "greengrass2_client_device"}]}),
            "devices[0].name",
            400,
        ),
        (json!({"type": "Create", "devices": [{"name": "d"}]}), "devices[0].provisioningTemplate", 400),
        (
            json!({"type": "Create", "devices": [{"name": "d", "provisioningTemplate": "nope"}]}),
            "devices[0].provisioningTemplate",
            422,
        ),
        (
            json!({"type": "Create", "devices": [{"name": "gw", "provisioningTemplate": "greengrass2_client_device"}]}),
            "devices[0].name",
            422,
        ),
        (json!({"type": "Delete", "devices": [{"name": "d", "provisioningTemplate": "x"}]}), "options", 400),
    ];
    for (body, field, expected) in cases {
        let (status, _, error) = error_of(app.post_json("/cores/gw/deviceTasks", &body).await).await;
        assert_eq!(status, expected, "{body}");
        let fields: Vec<&str> =
            error["details"].as_array().unwrap().iter().map(|d| d["field"].as_str().unwrap()).collect();
        assert!(fields.iter().any(|f| f.starts_with(field)), "{body}: expected {field}, got {error}");
    }
    // A device cannot take a core's name, nor a core a device's.
    let id = submit_device_task(&app, "gw", &create_devices(&["dev"])).await;
    finished_device_task(&app, &id).await;
    let (status, _, _) = error_of(app.post_json("/coreTasks", &create_cores(&["dev"])).await).await;
    assert_eq!(status, 422);
}

#[tokio::test]
async fn deleting_a_device_directly_deprovisions_it_unless_told_not_to_and_a_second_delete_is_404() {
    let app = spawn_app().await;
    core(&app, "gw").await;
    let id = submit_device_task(&app, "gw", &create_devices(&["gone", "kept"])).await;
    finished_device_task(&app, &id).await;

    assert_eq!(app.delete("/devices/gone").await.status(), 204);
    assert_eq!(app.get("/devices/gone").await.status(), 404);
    assert!(app.thing("gone").await.is_none(), "deprovisioned by default");
    let (status, code, _) = error_of(app.delete("/devices/gone").await).await;
    assert_eq!((status, code.as_str()), (404, "DEVICE_NOT_FOUND"));

    assert_eq!(app.delete("/devices/kept?deprovision=false&disassociateDeviceFromCore=true").await.status(), 204);
    assert_eq!(app.get("/devices/kept").await.status(), 404);
    let thing = app.thing("kept").await.expect("deprovision=false keeps the thing");
    assert_eq!(thing["principals"][0]["status"], "ACTIVE");
    assert!(associated(&app, "gw").await.is_empty(), "both were disassociated");
    let (status, _, _) = error_of(app.delete("/devices/kept?deprovision=maybe").await).await;
    assert_eq!(status, 400);

    let events = cdf_json(app.get("/events").await).await;
    let deleted =
        events["events"].as_array().unwrap().iter().filter(|e| e["detailType"] == "Device Deleted Event").count();
    assert_eq!(deleted, 2, "direct deletes emit events too");
}

#[tokio::test]
async fn a_device_delete_task_disassociates_and_deprovisions_when_asked() {
    let app = spawn_app().await;
    core(&app, "gw").await;
    let id = submit_device_task(&app, "gw", &create_devices(&["d1", "d2"])).await;
    finished_device_task(&app, &id).await;
    let body = json!({"type": "Delete", "options": {"deprovisionClientDevices": true}, "devices": [
        {"name": "d1", "provisioningTemplate": "greengrass2_client_device"},
        {"name": "unknown", "provisioningTemplate": "greengrass2_client_device"}
    ]});
    let del = submit_device_task(&app, "gw", &body).await;
    let task = finished_device_task(&app, &del).await;
    assert_eq!(task["taskStatus"], "Failure", "{task}");
    let unknown = task["devices"].as_array().unwrap().iter().find(|d| d["name"] == "unknown").unwrap();
    assert!(unknown["statusMessage"].as_str().unwrap().contains("client device not found"));
    assert_eq!(app.get("/devices/d1").await.status(), 404);
    assert!(app.thing("d1").await.is_none());
    assert_eq!(associated(&app, "gw").await, ["d2"]);
    assert_eq!(app.get(&format!("/coreTasks/{del}")).await.status(), 404, "a device task is not a core task");
    assert_eq!(app.get(&format!("/deviceTasks/{id}")).await.status(), 200);
}

#[tokio::test]
async fn deleting_a_core_removes_its_client_devices_and_deprovisions_them_when_asked() {
    for deprovision in [false, true] {
        let app = spawn_app().await;
        core(&app, "gw").await;
        let id = submit_device_task(&app, "gw", &create_devices(&["c1", "c2"])).await;
        finished_device_task(&app, &id).await;
        let mut body = delete_cores(&["gw"], true);
        body["options"]["deprovisionClientDevices"] = json!(deprovision);
        let del = app.submit_core_task(&body).await;
        let task = app.finished_core_task(&del).await;
        assert_eq!(task["taskStatus"], "Success", "no task left InProgress: {task}");
        for device in ["c1", "c2"] {
            assert_eq!(app.get(&format!("/devices/{device}")).await.status(), 404);
            assert_eq!(
                app.thing(device).await.is_none(),
                deprovision,
                "deprovisionClientDevices={deprovision}: {device}"
            );
        }
        assert!(app.thing("gw").await.is_none());
        let events = cdf_json(app.get("/events").await).await;
        let deleted =
            events["events"].as_array().unwrap().iter().filter(|e| e["detailType"] == "Device Deleted Event").count();
        assert_eq!(deleted, 2);
    }
}

#[tokio::test]
async fn device_work_stopped_between_any_two_steps_resumes_to_one_certificate_per_device() {
    let steps = ggprov_engine::STEPS.iter().filter(|s| {
        s.starts_with("create.")
            || s.starts_with("device.after_provisioning")
            || s.starts_with("device.after_associate")
    });
    for step in steps {
        let app = spawn_app().await;
        core(&app, "gw").await;
        app.failpoints.arm(step);
        let id = submit_device_task(&app, "gw", &create_devices(&["r1", "r2"])).await;
        let task = finished_device_task(&app, &id).await;
        assert_eq!(task["taskStatus"], "Success", "stopped at {step}: {task}");
        for device in ["r1", "r2"] {
            let thing = app.thing(device).await.unwrap();
            assert_eq!(thing["principals"].as_array().unwrap().len(), 1, "stopped at {step}: {thing}");
        }
        let inventory: Value =
            app.client.get(app.url("/local-cloud/inventory")).send().await.unwrap().json().await.unwrap();
        assert_eq!(inventory["certificates"], 3, "stopped at {step}: the core's and one per device");
        assert_eq!(associated(&app, "gw").await, ["r1", "r2"]);
    }
    let app = spawn_app().await;
    core(&app, "gw").await;
    let id = submit_device_task(&app, "gw", &create_devices(&["x"])).await;
    finished_device_task(&app, &id).await;
    app.failpoints.arm("device.after_disassociate");
    let del = submit_device_task(&app, "gw", &json!({"type": "Delete", "options": {"deprovisionClientDevices": true}, "devices": [{"name": "x", "provisioningTemplate": "t"}]})).await;
    assert_eq!(finished_device_task(&app, &del).await["taskStatus"], "Success");
    assert!(app.thing("x").await.is_none());
}

#[tokio::test]
async fn re_submitting_a_device_create_keeps_one_thing_one_certificate_one_key() {
    let app = spawn_app().await;
    core(&app, "gw").await;
    let first = submit_device_task(&app, "gw", &create_devices(&["twice"])).await;
    finished_device_task(&app, &first).await;
    let bundle = app.artifact("twice/twice/certs.zip").unwrap();
    let second = submit_device_task(&app, "gw", &create_devices(&["twice"])).await;
    assert_eq!(finished_device_task(&app, &second).await["taskStatus"], "Success");
    assert_eq!(app.artifact("twice/twice/certs.zip").unwrap(), bundle);
    assert_eq!(app.thing("twice").await.unwrap()["principals"].as_array().unwrap().len(), 1);
    assert_eq!(associated(&app, "gw").await, ["twice"]);
}
