//! One owner per thing, over HTTP, with clients that submit at the same moment: duplicate core
//! Creates, and one name submitted as a core and as a client device.

use futures::future::join_all;
use serde_json::{Value, json};

use crate::helpers::{cdf_json, create_cores, error_of, spawn_app};

fn create_devices(names: &[&str]) -> Value {
    json!({"type": "Create", "devices": names.iter().map(|n| json!({"name": n, "provisioningTemplate": "greengrass2_client_device"})).collect::<Vec<_>>()})
}

#[tokio::test]
async fn simultaneous_duplicate_creates_leave_one_task_and_one_certificate_per_thing() {
    let app = spawn_app().await;
    let names: Vec<String> = (0..8).map(|i| format!("dup-{i}")).collect();
    // Two clients submit the same eight new names at the same moment, four times over.
    let responses = join_all((0..8).map(|n| {
        let name = names[n / 2].clone();
        let body = create_cores(&[name.as_str()]);
        let app = &app;
        async move { app.post_json("/coreTasks", &body).await }
    }))
    .await;
    let mut accepted = 0;
    for response in responses {
        match response.status().as_u16() {
            202 => accepted += 1,
            409 => {
                let (_, code, body) = error_of(response).await;
                assert_eq!(code, "THING_BUSY", "{body}");
                let details = body["details"].as_array().unwrap();
                assert_eq!(details[0]["field"], "cores[0].name", "{body}");
                assert!(details[0]["problem"].as_str().unwrap().contains("task "), "{body}");
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(accepted, 4, "one task per name");
    app.drain().await;
    for name in &names[..4] {
        let thing = app.thing(name).await.expect("provisioned");
        assert_eq!(thing["principals"].as_array().unwrap().len(), 1, "one certificate on {name}: {thing}");
    }
    // Once its task ended, a name can be submitted again.
    let again = app.post_json("/coreTasks", &create_cores(&["dup-0"])).await;
    assert_eq!(again.status(), 202);
}

#[tokio::test]
async fn a_name_submitted_as_core_and_device_at_once_becomes_one_kind() {
    let app = spawn_app().await;
    let id = app.submit_core_task(&create_cores(&["gw-own"])).await;
    assert_eq!(app.finished_core_task(&id).await["taskStatus"], "Success");
    for round in 0..4 {
        let name = format!("both-{round}");
        let (core_body, device_body) = (create_cores(&[name.as_str()]), create_devices(&[name.as_str()]));
        let (as_core, as_device) = tokio::join!(
            app.post_json("/coreTasks", &core_body),
            app.post_json("/cores/gw-own/deviceTasks", &device_body),
        );
        let statuses = [as_core.status().as_u16(), as_device.status().as_u16()];
        assert!(statuses.contains(&202) && statuses.contains(&409), "one wins, one is refused: {statuses:?}");
        app.drain().await;
        let is_core = app.get(&format!("/cores/{name}")).await.status() == 200;
        let is_device = app.get(&format!("/devices/{name}")).await.status() == 200;
        assert!(is_core ^ is_device, "{name} is exactly one kind (core: {is_core}, device: {is_device})");
        // And stays that kind: the other kind's Create is refused with what it is.
        let (status, code, body) = if is_core {
            error_of(app.post_json("/cores/gw-own/deviceTasks", &device_body).await).await
        } else {
            error_of(app.post_json("/coreTasks", &core_body).await).await
        };
        // A device task naming a core is 422; a core task naming a device too.
        assert_eq!((status, code.as_str()), (422, "VALIDATION_FAILED"), "{body}");
        let said = body["details"][0]["problem"].as_str().unwrap();
        assert!(said.contains(if is_core { "is a core" } else { "is a client device" }), "{body}");
    }
    let devices = cdf_json(app.get("/cores/gw-own/devices").await).await;
    assert!(devices.is_object());
}

#[tokio::test]
async fn a_device_with_an_open_task_is_not_deleted_directly() {
    let app = spawn_app().await;
    let id = app.submit_core_task(&create_cores(&["gw-del"])).await;
    assert_eq!(app.finished_core_task(&id).await["taskStatus"], "Success");
    let created = app.post_json("/cores/gw-del/deviceTasks", &create_devices(&["dev-del"])).await;
    assert_eq!(created.status(), 202, "{}", created.text().await.unwrap_or_default());
    app.drain().await;
    assert_eq!(app.get("/devices/dev-del").await.status(), 200);
    // A device Delete task is open (not run yet): a direct delete is refused with its id.
    let delete_task = json!({"type": "Delete", "options": {"deprovisionClientDevices": true},
                             "devices": [{"name": "dev-del", "provisioningTemplate": "greengrass2_client_device"}]});
    let queued = app.post_json("/cores/gw-del/deviceTasks", &delete_task).await;
    assert_eq!(queued.status(), 202);
    let task = crate::helpers::header(&queued, "x-taskid").unwrap().to_owned();
    let (status, code, body) = error_of(app.delete("/devices/dev-del").await).await;
    assert_eq!((status, code.as_str()), (409, "THING_BUSY"), "{body}");
    assert!(body["message"].as_str().unwrap().contains(&task), "{body}");
    app.drain().await;
    assert_eq!(app.get("/devices/dev-del").await.status(), 404, "the task deleted it");
}
