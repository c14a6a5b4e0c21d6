//! The certificate inventory over HTTP: each core's and device's certificate with its CA,
//! validity and key; expiry buckets equal to a recount; the expiring list paged with its total;
//! validity per provisioning template (`CDF.certInfo.daysExpiry`) and per request; revocation
//! that sticks (REVOKED in IoT, detached, recorded, counted out, never active again).

use std::collections::BTreeMap;

use ggprov_domain::ports::IotRegistry as _;
use ggprov_domain::provisioning::CertificateStatus;
use serde_json::{Value, json};

use crate::helpers::{TestApp, cdf_json, error_of, spawn_app};

const DAY_MS: i64 = 86_400_000;

fn millis(text: &Value) -> i64 {
    text.as_str().unwrap().parse::<ggprov_domain::Timestamp>().unwrap().as_millis()
}

/// Provisions `names` with certificates valid for `days` (by request, or by template when
/// `template` is given), asserting success.
async fn provision_for(app: &TestApp, names: &[&str], days: Option<u32>, template: &str) {
    let cores: Vec<Value> = names
        .iter()
        .map(|n| {
            let mut core = json!({"name": n, "provisioningTemplate": template});
            if let Some(days) = days {
                core["cdfProvisioningParameters"] = json!({"certInfo": {"daysExpiry": days}});
            }
            core
        })
        .collect();
    let id = app.submit_core_task(&json!({"type": "Create", "coreVersion": "2.12.0", "cores": cores})).await;
    let task = app.finished_core_task(&id).await;
    assert_eq!(task["taskStatus"], "Success", "{task}");
}

/// Buckets counted from every core's certificate as `GET /cores/{name}` shows it.
async fn recount(app: &TestApp, names: &[&str], now: i64) -> (i64, BTreeMap<&'static str, i64>) {
    let mut buckets =
        BTreeMap::from([("expired", 0), ("within7Days", 0), ("within30Days", 0), ("within90Days", 0), ("later", 0)]);
    let mut active = 0;
    for name in names {
        let core = cdf_json(app.get(&format!("/cores/{name}")).await).await;
        let cert = &core["certificate"];
        if cert["status"] != "ACTIVE" {
            continue;
        }
        active += 1;
        let left = millis(&cert["notAfter"]) - now;
        let bucket = match left {
            l if l < 0 => "expired",
            l if l < 7 * DAY_MS => "within7Days",
            l if l < 30 * DAY_MS => "within30Days",
            l if l < 90 * DAY_MS => "within90Days",
            _ => "later",
        };
        *buckets.get_mut(bucket).unwrap() += 1;
    }
    (active, buckets)
}

fn buckets_of(value: &Value) -> BTreeMap<&'static str, i64> {
    ["expired", "within7Days", "within30Days", "within90Days", "later"]
        .into_iter()
        .map(|k| (k, value[k].as_i64().unwrap()))
        .collect()
}

#[tokio::test]
async fn certificates_are_inventoried_counted_exactly_listed_by_expiry_and_revoked_for_good() {
    let app = spawn_app().await;
    // Validity per provisioning template: a copy of the bundled core template whose CDF
    // section sets 60 days.
    let mut template: Value = serde_json::from_str(ggprov_domain::provisioning_template::BUNDLED[0].1).unwrap();
    template["CDF"]["certInfo"] = json!({"daysExpiry": 60});
    let response =
        app.cdf(reqwest::Method::PUT, "/provisioningTemplates/short_lived").json(&template).send().await.unwrap();
    assert!(response.status().is_success(), "{}", response.text().await.unwrap());
    provision_for(&app, &["c-05a", "c-05b"], Some(5), "greengrass2_core").await;
    provision_for(&app, &["c-20"], Some(20), "greengrass2_core").await;
    provision_for(&app, &["c-60"], None, "short_lived").await;
    provision_for(&app, &["c-10-over-template"], Some(10), "short_lived").await;
    provision_for(&app, &["c-default"], None, "greengrass2_core").await;
    let names = ["c-05a", "c-05b", "c-20", "c-60", "c-10-over-template", "c-default"];

    // Each core shows its certificate: IoT's id, the CA, validity as asked, the key.
    let core = cdf_json(app.get("/cores/c-60").await).await;
    let cert = &core["certificate"];
    let days = (millis(&cert["notAfter"]) - millis(&cert["notBefore"])) as f64 / DAY_MS as f64;
    assert!((59.9..=60.1).contains(&days), "60 days from the template, got {days}: {cert}");
    assert_eq!(cert["keyAlgorithm"], "EC_P256");
    assert_eq!(cert["status"], "ACTIVE");
    assert!(cert["caId"].as_str().is_some_and(|id| !id.is_empty()), "{cert}");
    let thing = app.thing("c-60").await.unwrap();
    assert_eq!(thing["principals"][0]["certificateId"], cert["certificateId"], "{thing}");
    let over = cdf_json(app.get("/cores/c-10-over-template").await).await;
    let days = (millis(&over["certificate"]["notAfter"]) - millis(&over["certificate"]["notBefore"])) / DAY_MS;
    assert_eq!(days, 10, "the request's certInfo wins over the template's");
    let default = cdf_json(app.get("/cores/c-default").await).await;
    let days = (millis(&default["certificate"]["notAfter"]) - millis(&default["certificate"]["notBefore"])) / DAY_MS;
    assert_eq!(days, 365, "CDF's default validity");

    // The summary's buckets equal a recount of the cores' certificates.
    let now = ggprov_domain::Timestamp::now().as_millis();
    let summary = cdf_json(app.get("/fleet/certificates").await).await;
    let (active, buckets) = recount(&app, &names, now).await;
    assert_eq!(summary["active"], active);
    assert_eq!(buckets_of(&summary["buckets"]), buckets, "{summary}");
    assert_eq!(buckets["within7Days"], 2);
    assert_eq!(buckets["later"], 1);
    assert_eq!(summary["byCa"].as_array().unwrap().len(), 1);
    assert_eq!(summary["byCa"][0]["caId"], cert["caId"]);

    // Expiring within 30 days: the 5-, 10- and 20-day certificates, soonest first, two a page.
    let mut listed = Vec::new();
    let mut path = "/certificates/expiring?within=30d&count=2".to_owned();
    loop {
        let page = cdf_json(app.get(&path).await).await;
        assert_eq!(page["total"], 4, "{page}");
        listed.extend(
            page["certificates"].as_array().unwrap().iter().map(|c| c["thingName"].as_str().unwrap().to_owned()),
        );
        let Some(last) = page["pagination"].get("lastEvaluated") else { break };
        path = format!(
            "/certificates/expiring?within=30d&count=2&exclusiveStartNotAfter={}&exclusiveStartCertificateId={}",
            last["notAfter"].as_str().unwrap(),
            last["certificateId"].as_str().unwrap()
        );
    }
    assert_eq!(listed.len(), 4);
    assert_eq!(&listed[2..], ["c-10-over-template", "c-20"]);
    let all = cdf_json(app.get("/certificates/expiring?within=400d").await).await;
    assert_eq!(all["total"], 6);
    assert_eq!(all["certificates"][0]["thingKind"], "core");

    // Bad input: a clear 400 naming the parameter.
    for (query, field) in [("within=soon", "within"), ("within=30w", "within"), ("count=0", "count")] {
        let (status, _, body) = error_of(app.get(&format!("/certificates/expiring?{query}")).await).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body.to_string().contains(field), "{query}: {body}");
    }
    let (status, _, body) = error_of(app.get("/certificates/expiring?exclusiveStartCertificateId=abc").await).await;
    assert_eq!(status, 400, "{body}");
    // A start position whose id is no certificate id (schemathesis found it answered 200).
    let (status, _, body) = error_of(
        app.get(
            "/certificates/expiring?exclusiveStartNotAfter=2027-01-01T00:00:00Z&exclusiveStartCertificateId=%C2%BDzz",
        )
        .await,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("exclusiveStartCertificateId"), "{body}");
    let (status, code, _) = error_of(app.get("/certificates/0000").await).await;
    assert_eq!((status, code.as_str()), (404, "CERTIFICATE_NOT_FOUND"));

    // Revocation: REVOKED in IoT and detached at once, the record kept, counted out, one event.
    let id = cert["certificateId"].as_str().unwrap().to_owned();
    let response = app.post_json(&format!("/certificates/{id}/revoke"), &json!({})).await;
    assert_eq!(response.status(), 200);
    let revoked = cdf_json(response).await;
    assert_eq!((revoked["status"].as_str(), revoked["thingName"].as_str()), (Some("REVOKED"), Some("c-60")));
    assert!(revoked["revokedAt"].is_string());
    let thing = app.thing("c-60").await.unwrap();
    assert!(thing["principals"].as_array().unwrap().is_empty(), "detached: {thing}");
    let again = cdf_json(app.post_json(&format!("/certificates/{id}/revoke"), &json!({})).await).await;
    assert_eq!(again["revokedAt"], revoked["revokedAt"], "revoking again changes nothing");
    assert_eq!(cdf_json(app.get("/cores/c-60").await).await["certificate"]["status"], "REVOKED");
    assert_eq!(cdf_json(app.get(&format!("/certificates/{id}")).await).await["status"], "REVOKED");
    let summary = cdf_json(app.get("/fleet/certificates").await).await;
    assert_eq!(summary["active"], 5);
    assert_eq!(buckets_of(&summary["buckets"]), recount(&app, &names, now).await.1);
    let events = cdf_json(app.get("/events").await).await;
    let revocations: Vec<&Value> =
        events["events"].as_array().unwrap().iter().filter(|e| e["detailType"] == "Certificate Revoked").collect();
    assert_eq!(revocations.len(), 1);
    assert_eq!(revocations[0]["detail"]["thingName"], "c-60");
    assert!(!events.to_string().contains("PRIVATE KEY"));
    // Never ACTIVE again: IoT refuses it.
    let refused = app.cloud.update_certificate_status(&id, CertificateStatus::Active).await;
    assert!(refused.is_err(), "a REVOKED certificate was activated again");

    // ...and ggprov will not register it for another thing either.
    let bundle = app.artifact(core["artifacts"]["certs"]["key"].as_str().unwrap()).unwrap();
    let pem = ggprov_pki::read_zip_entry(&bundle, "certs/cert.pem").unwrap();
    let id = app
        .submit_core_task(&json!({"type": "Create", "coreVersion": "2.12.0", "cores": [{"name": "c-reuse",
            "provisioningTemplate": "greengrass2_core", "cdfProvisioningParameters": {"certificatePem": pem}}]}))
        .await;
    let task = app.finished_core_task(&id).await;
    assert_eq!(task["taskStatus"], "Failure", "{task}");
    assert!(task["cores"][0]["statusMessage"].as_str().unwrap().contains("revoked"), "{task}");

    // In bulk by thing: each thing its outcome; bad lists refused whole.
    let response =
        app.post_json("/certificates/revoke", &json!({"thingNames": ["c-05a", "nobody", "c-60", "c-05a"]})).await;
    assert_eq!(response.status(), 200);
    let results = cdf_json(response).await["results"].clone();
    let outcomes: Vec<(&str, &str)> = results
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["thingName"].as_str().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    assert_eq!(outcomes, [("c-05a", "REVOKED"), ("nobody", "FAILED"), ("c-60", "REVOKED")]);
    assert!(results[1]["message"].as_str().unwrap().contains("nobody"));
    for body in [json!({"thingNames": []}), json!({"thingNames": ["bad name!"]}), json!({})] {
        let (status, _, problem) = error_of(app.post_json("/certificates/revoke", &body).await).await;
        assert_eq!(status, 400, "{body}: {problem}");
        assert!(problem.to_string().contains("thingNames"), "{body}: {problem}");
    }
    let summary = cdf_json(app.get("/fleet/certificates").await).await;
    assert_eq!(summary["active"], 4);
    assert_eq!(buckets_of(&summary["buckets"])["within7Days"], 1);
}

#[tokio::test]
async fn client_device_certificates_are_in_the_inventory_and_go_with_the_device() {
    let app = spawn_app().await;
    provision_for(&app, &["gw"], None, "greengrass2_core").await;
    let response = app
        .post_json(
            "/cores/gw/deviceTasks",
            &json!({"type": "Create", "devices": [{"name": "sensor-1", "provisioningTemplate": "greengrass2_client_device",
                "cdfProvisioningParameters": {"certInfo": {"daysExpiry": 3, "keyAlgorithm": "RSA_2048"}}}]}),
        )
        .await;
    assert_eq!(response.status(), 202);
    app.drain().await;
    let device = cdf_json(app.get("/devices/sensor-1").await).await;
    assert_eq!(device["certificate"]["keyAlgorithm"], "RSA_2048", "{device}");
    let expiring = cdf_json(app.get("/certificates/expiring?within=7d").await).await;
    assert_eq!(expiring["total"], 1);
    assert_eq!(expiring["certificates"][0]["thingKind"], "device");
    assert_eq!(expiring["certificates"][0]["thingName"], "sensor-1");
    assert_eq!(cdf_json(app.get("/fleet/certificates").await).await["active"], 2);
    let response = app.delete("/devices/sensor-1").await;
    assert!(response.status().is_success());
    assert_eq!(
        cdf_json(app.get("/fleet/certificates").await).await["active"],
        1,
        "the device's certificate left with it"
    );
    assert_eq!(cdf_json(app.get("/certificates/expiring?within=7d").await).await["total"], 0);
}

#[tokio::test]
async fn a_client_device_rotates_by_csr_and_its_old_certificate_goes_when_it_confirms() {
    let app = spawn_app().await;
    provision_for(&app, &["gw-r"], None, "greengrass2_core").await;
    let response = app
        .post_json(
            "/cores/gw-r/deviceTasks",
            &json!({"type": "Create", "devices": [{"name": "meter-1", "provisioningTemplate": "greengrass2_client_device"},
                                                   {"name": "meter-2", "provisioningTemplate": "greengrass2_client_device"}]}),
        )
        .await;
    assert_eq!(response.status(), 202);
    app.drain().await;
    let old =
        cdf_json(app.get("/devices/meter-1").await).await["certificate"]["certificateId"].as_str().unwrap().to_owned();
    let (status, code, _) =
        error_of(app.post_json("/devices/meter-1/certificateRotation/confirm", &json!({})).await).await;
    assert_eq!((status, code.as_str()), (409, "NOTHING_TO_CONFIRM"));

    // The device makes its key and CSR; ggprov never sees the key.
    let (key, csr) = ggprov_pki::make_csr("meter-1", ggprov_domain::provisioning::KeyAlgorithm::EcP256).unwrap();
    let first =
        cdf_json(app.post_json("/devices/meter-1/certificateRotation", &json!({"csr": csr, "daysExpiry": 90})).await)
            .await;
    assert_eq!(first["status"], "AWAITING_CONFIRMATION", "{first}");
    assert_eq!(first["oldCertificateId"], old.as_str());
    let pem = first["certificatePem"].as_str().unwrap();
    assert!(ggprov_pki::key_matches(pem, &key).unwrap(), "the certificate is for the device's own key");
    assert!(!first.to_string().contains("PRIVATE KEY"));
    let thing = app.thing("meter-1").await.unwrap();
    let statuses: Vec<&str> =
        thing["principals"].as_array().unwrap().iter().map(|p| p["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["ACTIVE", "ACTIVE"], "old and new while the device switches: {thing}");
    assert_eq!(thing["principals"][0]["policies"], thing["principals"][1]["policies"]);
    assert_eq!(cdf_json(app.get("/devices/meter-1").await).await["certificate"]["certificateId"], old.as_str());
    // The same CSR again (a retry): the same certificate, not a second one.
    let again = cdf_json(app.post_json("/devices/meter-1/certificateRotation", &json!({"csr": csr})).await).await;
    assert_eq!(again["certificateId"], first["certificateId"]);
    assert_eq!(app.thing("meter-1").await.unwrap()["principals"].as_array().unwrap().len(), 2);

    let confirmed = cdf_json(app.post_json("/devices/meter-1/certificateRotation/confirm", &json!({})).await).await;
    assert_eq!(confirmed["status"], "ROTATED");
    let thing = app.thing("meter-1").await.unwrap();
    assert_eq!(thing["principals"].as_array().unwrap().len(), 1, "{thing}");
    assert_eq!(thing["principals"][0]["certificateId"], first["certificateId"]);
    let device = cdf_json(app.get("/devices/meter-1").await).await;
    assert_eq!(device["certificate"]["certificateId"], first["certificateId"]);
    let days = (millis(&device["certificate"]["notAfter"]) - millis(&device["certificate"]["notBefore"])) / DAY_MS;
    assert_eq!(days, 90);
    assert_eq!(app.get(&format!("/certificates/{old}")).await.status(), 404);
    let events = cdf_json(app.get("/events").await).await;
    assert!(events["events"].as_array().unwrap().iter().any(|e| e["detailType"] == "Certificate Rotated"
        && e["detail"]["thingKind"] == "device"
        && e["detail"]["oldCertificateId"] == old.as_str()));

    // `immediately`: the old one goes in the same call.
    let (_, csr2) = ggprov_pki::make_csr("meter-2", ggprov_domain::provisioning::KeyAlgorithm::EcP256).unwrap();
    let rotated = cdf_json(
        app.post_json("/devices/meter-2/certificateRotation", &json!({"csr": csr2, "revokeOld": "immediately"})).await,
    )
    .await;
    assert_eq!(rotated["status"], "ROTATED");
    assert_eq!(app.thing("meter-2").await.unwrap()["principals"].as_array().unwrap().len(), 1);
    assert_eq!(cdf_json(app.get("/fleet/certificates").await).await["active"], 3, "gw-r, meter-1, meter-2");

    // Bad input: a clear 4xx, nothing changed.
    let (status, _, problem) =
        error_of(app.post_json("/devices/meter-2/certificateRotation", &json!({"csr": "not a CSR"})).await).await;
    assert_eq!(status, 400, "{problem}");
    assert!(problem.to_string().contains("csr"), "{problem}");
    let (status, _, _) =
        error_of(app.post_json("/devices/nobody/certificateRotation", &json!({"csr": csr2})).await).await;
    assert_eq!(status, 404);
    assert_eq!(app.thing("meter-2").await.unwrap()["principals"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_clients_sending_one_csr_at_once_get_the_same_certificate() {
    let app = spawn_app().await;
    provision_for(&app, &["gw-c"], None, "greengrass2_core").await;
    let response = app
        .post_json(
            "/cores/gw-c/deviceTasks",
            &json!({"type": "Create", "devices": [{"name": "twin-1", "provisioningTemplate": "greengrass2_client_device"}]}),
        )
        .await;
    assert_eq!(response.status(), 202);
    app.drain().await;
    for round in 0..5 {
        let (_, csr) = ggprov_pki::make_csr("twin-1", ggprov_domain::provisioning::KeyAlgorithm::EcP256).unwrap();
        let body = json!({"csr": csr});
        let (a, b) = tokio::join!(
            app.post_json("/devices/twin-1/certificateRotation", &body),
            app.post_json("/devices/twin-1/certificateRotation", &body)
        );
        assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200), "round {round}");
        let (a, b) = (cdf_json(a).await, cdf_json(b).await);
        assert_eq!(a["certificateId"], b["certificateId"], "round {round}: one certificate for one CSR");
        let principals = app.thing("twin-1").await.unwrap()["principals"].as_array().unwrap().len();
        assert_eq!(principals, 2, "round {round}: old and new, no third");
        let empty = json!({});
        let (c, d) = tokio::join!(
            app.post_json("/devices/twin-1/certificateRotation/confirm", &empty),
            app.post_json("/devices/twin-1/certificateRotation/confirm", &empty)
        );
        assert_eq!((c.status().as_u16(), d.status().as_u16()), (200, 200), "round {round}");
        let thing = app.thing("twin-1").await.unwrap();
        assert_eq!(thing["principals"].as_array().unwrap().len(), 1, "round {round}: {thing}");
        assert_eq!(thing["principals"][0]["certificateId"], a["certificateId"]);
    }
    assert_eq!(cdf_json(app.get("/fleet/certificates").await).await["active"], 2);
}

/// A device deleted while its new certificate awaits confirmation takes that certificate with
/// it: nothing ACTIVE is left in IoT for a thing that is gone.
#[tokio::test]
async fn a_device_deleted_mid_rotation_leaves_no_certificate_behind() {
    let app = spawn_app().await;
    device_awaiting_confirmation(&app, "gw-d", "meter-d").await;
    let inventory = |app: &TestApp| {
        let url = app.url("/local-cloud/inventory");
        let client = app.client.clone();
        async move { client.get(url).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    assert_eq!(inventory(&app).await["activeCertificates"], 3, "the core's, and the device's old and new");

    let response = app.delete("/devices/meter-d").await;
    assert_eq!(response.status(), 204, "{}", response.text().await.unwrap());
    let after = inventory(&app).await;
    assert_eq!((after["certificates"].as_u64(), after["activeCertificates"].as_u64()), (Some(1), Some(1)), "{after}");
}

/// Revoking a lost device by name revokes every certificate it could connect with, the new one
/// of a rotation it never confirmed included.
#[tokio::test]
async fn revoking_a_device_mid_rotation_revokes_its_unconfirmed_certificate_too() {
    let app = spawn_app().await;
    let issued = device_awaiting_confirmation(&app, "gw-v", "meter-v").await;
    let revoked = app.post_json("/certificates/revoke", &json!({"thingNames": ["meter-v"]})).await;
    let body = cdf_json(revoked).await;
    let thing = app.thing("meter-v").await.unwrap();
    let active: Vec<&Value> =
        thing["principals"].as_array().unwrap().iter().filter(|p| p["status"] == "ACTIVE").collect();
    assert_eq!(active, Vec::<&Value>::new(), "{body} {thing}");
    // The rotation is over: the device cannot confirm its way back in.
    let (status, code, _) =
        error_of(app.post_json("/devices/meter-v/certificateRotation/confirm", &json!({})).await).await;
    assert_eq!((status, code.as_str()), (409, "NOTHING_TO_CONFIRM"));
    // Nor can it be handed a new certificate: a revoked device is provisioned again.
    let (_, csr2) = ggprov_pki::make_csr("meter-v", ggprov_domain::provisioning::KeyAlgorithm::EcP256).unwrap();
    let (status, code, _) =
        error_of(app.post_json("/devices/meter-v/certificateRotation", &json!({"csr": csr2})).await).await;
    assert_eq!((status, code.as_str()), (409, "CERTIFICATE_REVOKED"));
    let events = cdf_json(app.get("/events").await).await;
    let revoked: Vec<&Value> =
        events["events"].as_array().unwrap().iter().filter(|e| e["detailType"] == "Certificate Revoked").collect();
    assert_eq!(revoked.len(), 1, "{events}");
    assert_eq!(revoked[0]["detail"]["pendingCertificateId"], issued["certificateId"], "{events}");
}

/// A core with one client device that has sent its CSR and not confirmed: the answer.
async fn device_awaiting_confirmation(app: &TestApp, core: &str, device: &str) -> Value {
    provision_for(app, &[core], None, "greengrass2_core").await;
    let response = app
        .post_json(
            &format!("/cores/{core}/deviceTasks"),
            &json!({"type": "Create", "devices": [{"name": device, "provisioningTemplate": "greengrass2_client_device"}]}),
        )
        .await;
    assert_eq!(response.status(), 202);
    app.drain().await;
    let (_, csr) = ggprov_pki::make_csr(device, ggprov_domain::provisioning::KeyAlgorithm::EcP256).unwrap();
    let issued =
        cdf_json(app.post_json(&format!("/devices/{device}/certificateRotation"), &json!({"csr": csr})).await).await;
    assert_eq!(issued["status"], "AWAITING_CONFIRMATION", "{issued}");
    issued
}
