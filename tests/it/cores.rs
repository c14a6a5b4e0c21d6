//! Core tasks and cores over HTTP: provisioning end to end on the local cloud, deletes,
//! validation, the live device block, artifacts and events.

use serde_json::{Value, json};

use crate::helpers::{cdf_json, create_cores, delete_cores, error_of, spawn_app, spawn_app_with};

fn statuses(task: &Value) -> Vec<(String, String)> {
    task["cores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap().to_owned(), c["taskStatus"].as_str().unwrap().to_owned()))
        .collect()
}

#[tokio::test]
async fn a_core_task_is_stored_waiting_then_provisions_every_core() {
    let app = spawn_app().await;
    let id = app.submit_core_task(&create_cores(&["core-b", "core-a"])).await;
    assert!(id.len() == 9 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'), "{id}");

    let waiting = cdf_json(app.get(&format!("/coreTasks/{id}")).await).await;
    assert_eq!(waiting["taskStatus"], "Waiting");
    assert!(waiting["updatedAt"].is_null());
    assert_eq!(
        statuses(&waiting),
        [("core-a".into(), "Waiting".into()), ("core-b".into(), "Waiting".into())],
        "ordered by name"
    );

    let done = app.finished_core_task(&id).await;
    assert_eq!(done["taskStatus"], "Success", "{done}");
    assert_eq!(done["type"], "Create");
    assert_eq!(done["coreVersion"], "2.12.0");
    assert!(done["updatedAt"].is_string());
    assert!(done.get("statusMessage").is_none());
    assert_eq!(statuses(&done), [("core-a".into(), "Success".into()), ("core-b".into(), "Success".into())]);

    let core = cdf_json(app.get("/cores/core-a").await).await;
    assert_eq!(core["name"], "core-a");
    assert_eq!(core["provisioningTemplate"], "greengrass2_core");
    assert_eq!(core["taskStatus"], "Success");
    assert_eq!(
        core["template"],
        json!({"desired": {"name": "None", "version": 0}, "reported": {"name": "None", "version": 0, "deploymentStatus": "None"}})
    );
    assert_eq!(core["artifacts"]["certs"]["key"], "core-a/core-a/certs.zip");
    assert!(core["artifacts"].get("config").is_none(), "no generator, no installer config");
    // The simulated core powered on by itself after provisioning.
    assert_eq!(core["device"]["status"], "HEALTHY");
    assert_eq!(core["device"]["coreVersion"], "2.12.0");
    assert_eq!(
        core["device"]["installedComponents"],
        json!([{"name": "aws.greengrass.Nucleus", "version": "2.12.0", "lifecycleState": "RUNNING"}])
    );
    assert_eq!(core["device"]["effectiveDeployments"], json!([]));
}

#[tokio::test]
async fn provisioned_cores_have_a_thing_an_active_certificate_and_the_policies() {
    let app = spawn_app().await;
    // The bundled template puts its two shared policies on one thing group the cores join.
    let id = app.submit_core_task(&create_cores(&["core-1", "core-2"])).await;
    assert_eq!(app.finished_core_task(&id).await["taskStatus"], "Success");
    let greengrass = json!(["GreengrassV2IoTThingPolicy", "GreengrassV2TokenExchangeRoleAliasPolicy"]);
    for core in ["core-1", "core-2"] {
        let thing = app.thing(core).await.expect("thing exists");
        let principals = thing["principals"].as_array().unwrap();
        assert_eq!(principals.len(), 1, "{thing}");
        assert_eq!(principals[0]["status"], "ACTIVE");
        assert_eq!(principals[0]["policies"], json!([]), "nothing on the certificate: {thing}");
        assert_eq!(thing["groups"], json!(["ggprov-greengrass2-core-policies"]));
        assert_eq!(thing["inheritedPolicies"], greengrass, "{thing}");
    }
    // The per-certificate path (as in the original), for a template that does not opt in or
    // names a policy per thing: the policies are on each certificate and no group is joined.
    let mut template: Value =
        serde_json::from_str(ggprov_domain::provisioning_template::BUNDLED[0].1).expect("bundled template");
    template["CDF"]["attachPoliciesToThingGroup"] = json!(false);
    assert_eq!(app.put_json("/provisioningTemplates/per_certificate", &template).await.status(), 204);
    let mut per_site = template.clone();
    per_site["CDF"]["attachPoliciesToThingGroup"] = json!(true);
    per_site["Parameters"]["Site"] = json!({"Type": "String", "Default": "berlin"});
    per_site["Resources"]["site"] = json!({"Type": "AWS::IoT::Policy", "Properties": {
        "PolicyName": {"Fn::Sub": "GreengrassV2IoTThingPolicy${Site}"},
        "PolicyDocument": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"}]}
    }});
    assert_eq!(app.put_json("/provisioningTemplates/per_site", &per_site).await.status(), 204);
    let body = json!({"type": "Create", "coreVersion": "2.12.0", "cores": [
        {"name": "old-style", "provisioningTemplate": "per_certificate"},
        {"name": "site-core", "provisioningTemplate": "per_site"}
    ]});
    let id = app.submit_core_task(&body).await;
    let done = app.finished_core_task(&id).await;
    assert_eq!(done["taskStatus"], "Success", "{done}");
    let thing = app.thing("old-style").await.unwrap();
    assert_eq!((&thing["principals"][0]["policies"], &thing["groups"]), (&greengrass, &json!([])), "{thing}");
    let thing = app.thing("site-core").await.unwrap();
    assert_eq!(thing["principals"][0]["policies"], json!(["GreengrassV2IoTThingPolicyberlin"]), "{thing}");
    assert_eq!(thing["inheritedPolicies"], greengrass, "{thing}");
    assert_ne!(
        thing["groups"],
        json!(["ggprov-greengrass2-core-policies"]),
        "its own group, named after its shared policies"
    );
}

#[tokio::test]
async fn the_certs_bundle_holds_a_key_that_matches_a_certificate_chaining_to_the_ca() {
    let app = spawn_app().await;
    let body = json!({"type": "Create", "coreVersion": "2.12.0", "cores": [
        {"name": "ec", "provisioningTemplate": "greengrass2_core", "cdfProvisioningParameters": {"certInfo": {"commonName": "ec-core", "country": "DE", "daysExpiry": 30}}},
        {"name": "rsa", "provisioningTemplate": "greengrass2_core", "cdfProvisioningParameters": {"certInfo": {"keyAlgorithm": "RSA_2048"}}}
    ]});
    let id = app.submit_core_task(&body).await;
    assert_eq!(app.finished_core_task(&id).await["taskStatus"], "Success");
    for name in ["ec", "rsa"] {
        let zip = app.artifact(&format!("{name}/{name}/certs.zip")).expect("certs.zip written");
        let cert = ggprov_pki::read_zip_entry(&zip, "certs/cert.pem").unwrap();
        let key = ggprov_pki::read_zip_entry(&zip, "certs/private.key").unwrap();
        let ca = ggprov_pki::read_zip_entry(&zip, "certs/ca.pem").unwrap();
        assert!(
            ggprov_pki::key_matches(&cert, &ggprov_domain::ports::SecretPem::new(key.clone())).unwrap(),
            "{name}: key matches"
        );
        assert!(ggprov_pki::is_signed_by(&cert, &ca).unwrap(), "{name}: chains to the CA");
        let fingerprint = ggprov_pki::fingerprint(&cert).unwrap();
        let thing = app.thing(name).await.unwrap();
        assert_eq!(
            thing["principals"][0]["certificateId"],
            fingerprint.as_str(),
            "{name}: the registered certificate is the bundled one"
        );
        if name == "rsa" {
            assert!(key.contains("BEGIN PRIVATE KEY") && key.len() > 1500, "an RSA-2048 key");
        }
    }
    // Keys live only in the certs bundles: not in responses, events, the queue or the databases.
    for path in ["/cores/ec", "/cores/rsa", &format!("/coreTasks/{id}"), "/events", "/cores"] {
        let text = app.get(path).await.text().await.unwrap();
        assert!(!text.contains("PRIVATE KEY"), "{path} exposes key material");
    }
    for db in ["ggprov.sqlite", "ggprov.sqlite-wal", "local-cloud.sqlite", "local-cloud.sqlite-wal"] {
        if let Ok(bytes) = std::fs::read(app.data.path().join(db)) {
            assert!(!bytes.windows(11).any(|w| w == b"PRIVATE KEY"), "{db} holds key material");
        }
    }
}

#[tokio::test]
async fn installer_configs_are_rendered_for_both_generators_and_unknown_ones_fail_the_item() {
    let app = spawn_app().await;
    let body = json!({"type": "Create", "coreVersion": "2.12.0", "cores": [
        {"name": "manual", "provisioningTemplate": "greengrass2_core", "configFileGenerator": "MANUAL_INSTALL"},
        {"name": "fleet", "provisioningTemplate": "greengrass2_core", "configFileGenerator": "FLEET_PROVISIONING", "provisioningParameters": {"ThingName": "fleet"}},
        {"name": "custom", "provisioningTemplate": "greengrass2_core", "configFileGenerator": "MY_GENERATOR"}
    ]});
    let id = app.submit_core_task(&body).await;
    let task = app.finished_core_task(&id).await;
    assert_eq!(task["taskStatus"], "Failure", "{task}");
    let custom = task["cores"].as_array().unwrap().iter().find(|c| c["name"] == "custom").unwrap();
    assert_eq!(custom["taskStatus"], "Failure");
    assert!(
        custom["statusMessage"].as_str().unwrap().contains("Unrecognized generator alias: MY_GENERATOR"),
        "{custom}"
    );

    let manual = String::from_utf8(app.artifact("manual/manual/installerConfig.yml").unwrap()).unwrap();
    for expected in [
        "thingName: \"manual\"",
        "rootpath: \"/greengrass/v2\"",
        "version: \"2.12.0\"",
        "iotRoleAlias: \"GreengrassV2TokenExchangeRoleAlias\"",
        "iotDataEndpoint: \"ggprov-local-ats.iot.us-east-1.amazonaws.com\"",
    ] {
        assert!(manual.contains(expected), "{expected} in\n{manual}");
    }
    let fleet = String::from_utf8(app.artifact("fleet/fleet/installerConfig.yml").unwrap()).unwrap();
    assert!(
        fleet.contains("aws.greengrass.FleetProvisioningByClaim:")
            && fleet.contains("provisioningTemplate: \"greengrass2_core\""),
        "{fleet}"
    );
    assert!(!fleet.contains("system:"));
    let core = cdf_json(app.get("/cores/manual").await).await;
    assert_eq!(core["artifacts"]["config"]["key"], "manual/manual/installerConfig.yml");
}

#[tokio::test]
async fn invalid_core_tasks_return_400_or_422_and_store_nothing() {
    let app = spawn_app().await;
    // 400: the body breaks the schema; 422: it satisfies the schema but names a provisioning
    // template, parameter or CA that does not fit, or lists a name twice.
    let cases: Vec<(Value, &str, u16)> = vec![
        (
            json!({"type": "Create", "cores": [{"name": "a", "provisioningTemplate": "greengrass2_core"}]}),
            "coreVersion",
            400,
        ),
        (
            json!({"type": "Create", "coreVersion": "2.12", "cores": [{"name": "a", "provisioningTemplate": "greengrass2_core"}]}),
            "coreVersion",
            400,
        ),
        (
            json!({"type": "Update", "coreVersion": "2.12.0", "cores": [{"name": "a", "provisioningTemplate": "greengrass2_core"}]}),
            "type",
            400,
        ),
        (json!({"type": "Create", "coreVersion": "2.12.0", "cores": []}), "cores", 400),
        (json!({"type": "Create", "coreVersion": "2.12.0"}), "cores", 400),
        (
            json!({"type": "Create", "coreVersion": "2.12.0", "cores": [{"provisioningTemplate": "greengrass2_core"}]}),
            "cores[0].name",
            400,
        ),
        (
            json!({"type": "Create", "coreVersion": "2.12.0", "cores": [{"name": "bad name", "provisioningTemplate": "greengrass2_core"}]}),
            "cores[0].name",
            400,
        ),
        (
            json!({"type": "Create", "coreVersion": "2.12.0", "cores": [{"name": "a"}]}),
            "cores[0].provisioningTemplate",
            400,
        ),
        (
            json!({"type": "Create", "coreVersion": "2.12.0", "cores": [{"name": "a", "provisioningTemplate": "no_such_template"}]}),
            "cores[0].provisioningTemplate",
            422,
        ),
        (
            json!({"type": "Create", "coreVersion": "2.12.0", "cores": [{"name": "a", "provisioningTemplate": "greengrass2_core", "cdfProvisioningParameters": {"caId": "abc123"}}]}),
            "cores[0].cdfProvisioningParameters.caId",
            422,
        ),
        (
            json!({"type": "Create", "coreVersion": "2.12.0", "cores": [{"name": "a", "provisioningTemplate": "greengrass2_core", "cdfProvisioningParameters": {"acmpcaCaArn": "arn:x"}}]}),
            "cores[0].cdfProvisioningParameters",
            400,
        ),
        (
            json!({"type": "Create", "coreVersion": "2.12.0", "cores": [{"name": "a", "provisioningTemplate": "greengrass2_core", "provisioningParameters": {"Typo": "x"}}]}),
            "cores[0].provisioningParameters",
            422,
        ),
        (
            json!({"type": "Create", "coreVersion": "2.12.0", "cores": [{"name": "a", "provisioningTemplate": "greengrass2_core", "provisioningParameters": {"ThingName": "other"}}]}),
            "cores[0].provisioningParameters",
            422,
        ),
        (
            json!({"type": "Create", "coreVersion": "2.12.0", "cores": [{"name": "a", "provisioningTemplate": "greengrass2_core"}, {"name": "a", "provisioningTemplate": "greengrass2_core"}]}),
            "cores[1].name",
            422,
        ),
        (
            json!({"type": "Delete", "coreVersion": "2.12.0", "cores": [{"name": "a", "provisioningTemplate": "x"}]}),
            "options",
            400,
        ),
        (
            json!({"type": "Delete", "coreVersion": "2.12.0", "options": {}, "cores": [{"name": "a", "provisioningTemplate": "x"}]}),
            "options",
            400,
        ),
    ];
    for (body, field, expected) in cases {
        let (status, code, error) = error_of(app.post_json("/coreTasks", &body).await).await;
        assert_eq!((status, code.as_str()), (expected, "VALIDATION_FAILED"), "{body}: {error}");
        let fields: Vec<&str> =
            error["details"].as_array().unwrap().iter().map(|d| d["field"].as_str().unwrap()).collect();
        assert!(fields.iter().any(|f| f.starts_with(field)), "{body}: expected {field}, got {error}");
    }
    assert_eq!(cdf_json(app.get("/coreTasks").await).await, json!({"tasks": []}), "nothing stored");
    app.drain().await;
    assert!(app.thing("a").await.is_none(), "nothing provisioned");
}

#[tokio::test]
async fn re_submitting_create_converges_to_one_thing_one_certificate_one_key() {
    let app = spawn_app().await;
    let first = app.submit_core_task(&create_cores(&["twice"])).await;
    assert_eq!(app.finished_core_task(&first).await["taskStatus"], "Success");
    let bundle = app.artifact("twice/twice/certs.zip").unwrap();
    let second = app.submit_core_task(&create_cores(&["twice"])).await;
    assert_eq!(app.finished_core_task(&second).await["taskStatus"], "Success");
    let thing = app.thing("twice").await.unwrap();
    assert_eq!(thing["principals"].as_array().unwrap().len(), 1, "one certificate: {thing}");
    assert_eq!(app.artifact("twice/twice/certs.zip").unwrap(), bundle, "the same key and certificate");
    let inventory: Value =
        app.client.get(app.url("/local-cloud/inventory")).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        (inventory["things"].as_u64(), inventory["activeCertificates"].as_u64()),
        (Some(1), Some(1)),
        "{inventory}"
    );
}

#[tokio::test]
async fn delete_without_deprovisioning_keeps_the_thing_and_with_it_removes_everything() {
    let app = spawn_app().await;
    let id = app.submit_core_task(&create_cores(&["kept", "gone"])).await;
    assert_eq!(app.finished_core_task(&id).await["taskStatus"], "Success");

    let keep = app.submit_core_task(&delete_cores(&["kept"], false)).await;
    let task = app.finished_core_task(&keep).await;
    assert_eq!((task["taskStatus"].as_str(), task["type"].as_str()), (Some("Success"), Some("Delete")), "{task}");
    assert_eq!(app.get("/cores/kept").await.status(), 404);
    let thing = app.thing("kept").await.expect("the thing stays");
    assert_eq!(thing["principals"][0]["status"], "ACTIVE");
    assert!(app.artifact("kept/kept/certs.zip").is_none(), "artifacts are deleted by default");

    let deprovision = app.submit_core_task(&delete_cores(&["gone"], true)).await;
    assert_eq!(app.finished_core_task(&deprovision).await["taskStatus"], "Success");
    assert_eq!(app.get("/cores/gone").await.status(), 404);
    assert!(app.thing("gone").await.is_none(), "the thing is deleted");
    let inventory: Value =
        app.client.get(app.url("/local-cloud/inventory")).send().await.unwrap().json().await.unwrap();
    assert_eq!(inventory["certificates"], 1, "only kept's certificate remains: {inventory}");
    assert_eq!(
        inventory["coreDevices"], 0,
        "deleting a core unregisters its Greengrass core device, deprovisioned or not"
    );
}

#[tokio::test]
async fn deleting_an_unknown_core_fails_that_item_with_a_reason() {
    let app = spawn_app().await;
    let id = app.submit_core_task(&delete_cores(&["never-seen"], true)).await;
    let task = app.finished_core_task(&id).await;
    assert_eq!(task["taskStatus"], "Failure");
    assert!(task["cores"][0]["statusMessage"].as_str().unwrap().contains("core not found"), "{task}");
}

#[tokio::test]
async fn core_lists_are_sorted_paged_and_filtered() {
    let app = spawn_app().await;
    let id = app.submit_core_task(&create_cores(&["c3", "c1", "c2"])).await;
    app.finished_core_task(&id).await;
    let all = cdf_json(app.get("/cores").await).await;
    let names: Vec<&str> = all["cores"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["c1", "c2", "c3"]);
    assert!(
        all["cores"][0].get("device").is_none() && all["cores"][0].get("artifacts").is_none(),
        "list items are summaries"
    );
    let page = cdf_json(app.get("/cores?count=2").await).await;
    assert_eq!(page["pagination"], json!({"count": "2", "lastEvaluated": {"thingName": "c2"}}));
    let rest = cdf_json(app.get("/cores?count=2&exclusiveStartThingName=c2").await).await;
    assert_eq!(rest["cores"].as_array().unwrap().len(), 1);
    assert_eq!(cdf_json(app.get("/cores?templateName=None").await).await["cores"].as_array().unwrap().len(), 3);
    assert_eq!(cdf_json(app.get("/cores?templateName=other").await).await["cores"], json!([]));
    assert_eq!(cdf_json(app.get("/cores?failedOnly=TRUE").await).await["cores"], json!([]));
    let (status, _, _) = error_of(app.get("/cores?failedOnly=maybe").await).await;
    assert_eq!(status, 400);
    let tasks = cdf_json(app.get("/coreTasks").await).await;
    assert_eq!(tasks["tasks"][0]["cores"], json!([]), "task list items omit cores");
    assert_eq!(tasks["tasks"][0]["taskStatus"], "Success");
}

#[tokio::test]
async fn unknown_tasks_and_cores_are_404() {
    let app = spawn_app().await;
    let (status, code, _) = error_of(app.get("/coreTasks/nope12345").await).await;
    assert_eq!((status, code.as_str()), (404, "CORE_TASK_NOT_FOUND"));
    let (status, code, _) = error_of(app.get("/cores/nope").await).await;
    assert_eq!((status, code.as_str()), (404, "CORE_NOT_FOUND"));
    assert_eq!(cdf_json(app.get("/cores/nope/deployments").await).await, json!({"deployments": [], "pagination": {}}));
}

#[tokio::test]
async fn cores_created_and_deleted_emit_events_in_the_outbox() {
    let app = spawn_app().await;
    let id = app.submit_core_task(&create_cores(&["evented"])).await;
    app.finished_core_task(&id).await;
    let del = app.submit_core_task(&delete_cores(&["evented"], true)).await;
    app.finished_core_task(&del).await;
    let events = cdf_json(app.get("/events").await).await;
    let list = events["events"].as_array().unwrap();
    assert_eq!(list.len(), 2, "exactly one event per outcome: {events}");
    assert_eq!(list[0]["detailType"], "Core Deleted Event", "newest first");
    assert_eq!(list[0]["detail"], json!({"coreName": "evented", "taskId": del, "status": "success"}));
    assert_eq!(list[1]["detailType"], "Core Created Event");
    assert_eq!(list[1]["source"], "com.aws.cdf.greengrass2-provisioning");
    let text = events.to_string();
    assert!(!text.contains("PRIVATE KEY") && !text.contains("BEGIN CERTIFICATE"), "no key material in events");
}

#[tokio::test]
async fn cores_connect_on_command_when_auto_connect_is_off() {
    let app = spawn_app_with(&[("GGPROV_LOCAL_CLOUD_AUTO_CONNECT", "false")]).await;
    let id = app.submit_core_task(&create_cores(&["manual-boot"])).await;
    app.finished_core_task(&id).await;
    assert_eq!(cdf_json(app.get("/cores/manual-boot").await).await["device"]["status"], "UNKNOWN");
    let connect = app
        .client
        .post(app.url("/local-cloud/cores/manual-boot/connect"))
        .json(&json!({"nucleusVersion": "2.13.0"}))
        .send()
        .await
        .unwrap();
    assert_eq!(connect.status(), 204);
    let device = cdf_json(app.get("/cores/manual-boot").await).await["device"].clone();
    assert_eq!((device["status"].as_str(), device["coreVersion"].as_str()), (Some("HEALTHY"), Some("2.13.0")));
    let disconnect = app.client.post(app.url("/local-cloud/cores/manual-boot/disconnect")).send().await.unwrap();
    assert_eq!(disconnect.status(), 204);
    assert_eq!(cdf_json(app.get("/cores/manual-boot").await).await["device"]["status"], "UNHEALTHY");
    let unknown = app.client.post(app.url("/local-cloud/cores/no-such-thing/connect")).send().await.unwrap();
    assert_eq!(unknown.status(), 404);
    let bad_faults =
        app.client.put(app.url("/local-cloud/faults")).json(&json!({"throttleRate": 2})).send().await.unwrap();
    assert_eq!(bad_faults.status(), 400);
}

/// `GET /cores/{name}` answers an unchanged core from memory (decision 82): every change to
/// the record or to Greengrass's view, and every simulated fault, must still show at once.
#[tokio::test]
async fn a_core_read_shows_each_change_and_fault_at_once_though_answered_from_memory() {
    let app = spawn_app().await;
    let id = app.submit_core_task(&create_cores(&["remembered"])).await;
    app.finished_core_task(&id).await;
    let read = || async { cdf_json(app.get("/cores/remembered").await).await };
    let first = read().await;
    assert_eq!(first["device"]["status"], "HEALTHY");
    assert_eq!(read().await, first, "an unchanged core reads the same");

    // Greengrass's side changes: the core goes offline.
    let disconnect = app.client.post(app.url("/local-cloud/cores/remembered/disconnect")).send().await.unwrap();
    assert_eq!(disconnect.status(), 204);
    assert_eq!(read().await["device"]["status"], "UNHEALTHY");

    // Greengrass cannot be asked: UNKNOWN, and not remembered once it can be asked again.
    let faults = |rate: f64| app.client.put(app.url("/local-cloud/faults")).json(&json!({"errorRate": rate})).send();
    assert_eq!(faults(1.0).await.unwrap().status(), 204);
    assert_eq!(read().await["device"]["status"], "UNKNOWN");
    assert_eq!(faults(0.0).await.unwrap().status(), 204);
    assert_eq!(read().await["device"]["status"], "UNHEALTHY");

    // ggprov's record changes: its certificate is revoked.
    let certificate = first["certificate"]["certificateId"].as_str().unwrap().to_owned();
    let revoked = app.post_json(&format!("/certificates/{certificate}/revoke"), &json!({})).await;
    assert_eq!(revoked.status(), 200);
    assert_eq!(read().await["certificate"]["status"], "REVOKED");
}

#[tokio::test]
async fn provisioning_templates_can_be_stored_read_listed_and_deleted() {
    let app = spawn_app().await;
    let listed = cdf_json(app.get("/provisioningTemplates").await).await;
    assert_eq!(listed["templates"], json!(["greengrass2_client_device", "greengrass2_core"]));
    let bundled = cdf_json(app.get("/provisioningTemplates/greengrass2_core").await).await;
    assert!(bundled["Resources"]["thing"].is_object());

    let mut custom = bundled.clone();
    custom["Resources"]["thing"]["Properties"]["AttributePayload"] = json!({"site": {"Ref": "Site"}});
    custom["Parameters"]["Site"] = json!({"Type": "String", "Default": "berlin"});
    let put = app.put_json("/provisioningTemplates/site_core", &custom).await;
    assert_eq!(put.status(), 204);
    let id = app.submit_core_task(&json!({"type": "Create", "coreVersion": "2.12.0", "cores": [{"name": "sited", "provisioningTemplate": "site_core"}]})).await;
    assert_eq!(app.finished_core_task(&id).await["taskStatus"], "Success");
    assert_eq!(app.thing("sited").await.unwrap()["attributes"], json!({"site": "berlin"}));

    let unsupported = json!({"Resources": {"job": {"Type": "AWS::IoT::JobTemplate"}}});
    let (status, code, error) = error_of(app.put_json("/provisioningTemplates/bad", &unsupported).await).await;
    assert_eq!((status, code.as_str()), (400, "INVALID_PROVISIONING_TEMPLATE"));
    assert!(error["message"].as_str().unwrap().contains("AWS::IoT::JobTemplate"));
    // No body, or an empty object, stores nothing (an empty template could be named by tasks).
    for empty in [
        app.cdf(reqwest::Method::PUT, "/provisioningTemplates/hollow").send().await.unwrap(),
        app.put_json("/provisioningTemplates/hollow", &json!({})).await,
    ] {
        let (status, code, error) = error_of(empty).await;
        assert_eq!((status, code.as_str()), (400, "INVALID_PROVISIONING_TEMPLATE"), "{error}");
    }
    assert_eq!(app.get("/provisioningTemplates/hollow").await.status(), 404);
    assert_eq!(app.delete("/provisioningTemplates/site_core").await.status(), 204);
    assert_eq!(app.delete("/provisioningTemplates/site_core").await.status(), 404);
    assert_eq!(app.delete("/provisioningTemplates/greengrass2_core").await.status(), 404, "bundled templates stay");
}

#[tokio::test]
async fn a_1000_core_task_completes_on_the_local_cloud() {
    let app = spawn_app().await;
    let names: Vec<String> = (0..1000).map(|i| format!("fleet-{i:04}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let id = app.submit_core_task(&create_cores(&refs)).await;
    let task = app.finished_core_task(&id).await;
    assert_eq!(task["taskStatus"], "Success");
    assert_eq!(task["cores"].as_array().unwrap().len(), 1000);
    let inventory: Value =
        app.client.get(app.url("/local-cloud/inventory")).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        (inventory["things"].as_u64(), inventory["activeCertificates"].as_u64(), inventory["coreDevices"].as_u64()),
        (Some(1000), Some(1000), Some(1000))
    );
}

#[tokio::test]
async fn devices_holding_their_own_key_send_a_csr_or_an_existing_certificate() {
    let app = spawn_app().await;
    let device_key = rcgen::KeyPair::generate().unwrap();
    let csr = rcgen::CertificateParams::default().serialize_request(&device_key).unwrap().pem().unwrap();
    let existing = ggprov_pki::create_ca("bring-your-own", 30).unwrap().certificate_pem;
    let body = json!({"type": "Create", "coreVersion": "2.12.0", "cores": [
        {"name": "csr-core", "provisioningTemplate": "greengrass2_core", "cdfProvisioningParameters": {"csr": csr, "certInfo": {"organization": "Acme"}}},
        {"name": "pem-core", "provisioningTemplate": "greengrass2_core", "cdfProvisioningParameters": {"certificatePem": existing}}
    ]});
    let id = app.submit_core_task(&body).await;
    assert_eq!(app.finished_core_task(&id).await["taskStatus"], "Success");

    let zip = app.artifact("csr-core/csr-core/certs.zip").unwrap();
    assert!(ggprov_pki::read_zip_entry(&zip, "certs/private.key").is_none(), "the key stays on the device");
    let cert = ggprov_pki::read_zip_entry(&zip, "certs/cert.pem").unwrap();
    assert!(
        ggprov_pki::key_matches(&cert, &ggprov_domain::ports::SecretPem::new(device_key.serialize_pem())).unwrap(),
        "signed for the CSR's key"
    );

    let zip = app.artifact("pem-core/pem-core/certs.zip").unwrap();
    assert_eq!(ggprov_pki::read_zip_entry(&zip, "certs/cert.pem").unwrap(), existing);
    let thing = app.thing("pem-core").await.unwrap();
    assert_eq!(thing["principals"][0]["certificateId"], ggprov_pki::fingerprint(&existing).unwrap().as_str());
}
