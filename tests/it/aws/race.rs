//! The race run on DynamoDB and SQS (moto): see `ggprov-bench race` for the embedded default.

use serde_json::json;

use super::{Api, GreengrassFake, aws_mode_env, moto_url, sdk, serve, unique};

/// The race run against DynamoDB and SQS: two processes (each an API and a worker) with a short
/// lease, clients that submit duplicates and core/device claims at the same moment to different
/// processes; then one certificate per thing (in IoT) and one kind per name.
#[tokio::test(flavor = "multi_thread")]
async fn simultaneous_duplicates_and_claims_leave_one_certificate_and_one_kind_on_dynamodb() {
    let moto = moto_url();
    let fake = GreengrassFake::start().await;
    let table = unique("race");
    let env = aws_mode_env(
        &table,
        &fake,
        &[("GGPROV_WORKER_LEASE_MS", "200"), ("GGPROV_RETRY_BASE_MS", "20"), ("GGPROV_MAX_ATTEMPTS", "50")],
    );
    let (first, second) = (serve(&env, true), serve(&env, true));
    let a = Api { base: first.base.clone(), http: reqwest::Client::new(), key: None };
    let b = Api { base: second.base.clone(), http: reqwest::Client::new(), key: None };
    let gateway = unique("racegw");
    a.provision_core(&gateway).await;
    fake.register_core(&gateway, "2.12.0");
    let core = |name: &str| json!({"type": "Create", "coreVersion": "2.12.0", "cores": [{"name": name, "provisioningTemplate": "greengrass2_core"}]});
    let device = |name: &str| json!({"type": "Create", "devices": [{"name": name, "provisioningTemplate": "greengrass2_client_device"}]});
    let (pairs, claims): (Vec<String>, Vec<String>) =
        ((0..6).map(|_| unique("racep")).collect(), (0..4).map(|_| unique("racec")).collect());
    let mut accepted = Vec::new();
    let mut sequential = Vec::new();
    for name in &pairs {
        let body = core(name);
        let ((s1, t1), (s2, t2)) = tokio::join!(a.post("/coreTasks", &body), b.post("/coreTasks", &body));
        let mut statuses = [s1, s2];
        statuses.sort_unstable();
        if statuses == [202, 202] {
            // Both accepted is right only if one was stored after the other's item had ended
            // (a request slowed behind the other's whole provisioning): checked below.
            sequential.push((
                name.clone(),
                t1["id"].as_str().unwrap().to_owned(),
                t2["id"].as_str().unwrap().to_owned(),
            ));
            accepted.push(format!("/coreTasks/{}", t1["id"].as_str().unwrap()));
            accepted.push(format!("/coreTasks/{}", t2["id"].as_str().unwrap()));
            continue;
        }
        assert_eq!(statuses, [202, 409], "{name}: {t1} {t2}");
        let task = if s1 == 202 { t1 } else { t2 };
        accepted.push(format!("/coreTasks/{}", task["id"].as_str().unwrap()));
    }
    for name in &claims {
        let device_path = format!("/cores/{gateway}/deviceTasks");
        let (as_core, as_device) = (core(name), device(name));
        let ((s1, t1), (s2, t2)) = tokio::join!(a.post("/coreTasks", &as_core), b.post(&device_path, &as_device));
        assert_eq!([s1, s2].iter().filter(|s| **s == 202).count(), 1, "{name}: one wins: {s1} {t1} / {s2} {t2}");
        assert!([s1, s2].iter().all(|s| matches!(s, 202 | 400 | 409)), "{name}: {s1} {t1} / {s2} {t2}");
        accepted.push(if s1 == 202 {
            format!("/coreTasks/{}", t1["id"].as_str().unwrap())
        } else {
            format!("/deviceTasks/{}", t2["id"].as_str().unwrap())
        });
    }
    for task in &accepted {
        a.until(task, "a raced task", |t| t["taskStatus"] == "Success").await;
    }
    for (name, one, other) in &sequential {
        let (_, one) = a.send(reqwest::Method::GET, &format!("/coreTasks/{one}"), None).await;
        let (_, other) = a.send(reqwest::Method::GET, &format!("/coreTasks/{other}"), None).await;
        if let Some(overlap) = ggprov_bench::race::stamps_overlap(&one, &other) {
            panic!("{name}: both Creates accepted while the first was open: {overlap}: {one} / {other}");
        }
    }
    let iot = aws_sdk_iot::Client::new(&sdk(&moto).await);
    for name in pairs.iter().chain(&claims) {
        let principals =
            iot.list_thing_principals().thing_name(name).send().await.unwrap().principals.unwrap_or_default();
        assert_eq!(principals.len(), 1, "{name} has exactly one certificate: {principals:?}");
    }
    for name in &claims {
        let (core_status, _) = a.send(reqwest::Method::GET, &format!("/cores/{name}"), None).await;
        let (device_status, _) = a.send(reqwest::Method::GET, &format!("/devices/{name}"), None).await;
        assert!((core_status == 200) ^ (device_status == 200), "{name}: core {core_status}, device {device_status}");
    }
    // A record DynamoDB cannot hold is the caller's error with the limit named, not a 503.
    let huge = json!({"name": unique("huge"), "components": [{"key": "aws.greengrass.Nucleus", "version": "2.12.0",
        "configurationUpdate": {"merge": json!({"blob": "x".repeat(450_000)}).to_string()}}]});
    let (status, body) = a.post("/templates", &huge).await;
    assert_eq!((status, body["error"].as_str()), (413, Some("PAYLOAD_TOO_LARGE")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("400 KB"), "{body}");
}
