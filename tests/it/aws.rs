//! AWS mode against real wire protocols: `moto_server` for DynamoDB, SQS, S3, EventBridge,
//! IoT and SSM (its URL in `GGPROV_TEST_MOTO_URL`; `scripts/test.sh` starts one), and the
//! test kit's Greengrass V2 fake. moto is shared by every test, so every resource gets a
//! unique name.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use ggprov_aws::{DynamoStore, SqsQueue};
use ggprov_testkit::greengrass_fake::GreengrassFake;
use serde_json::{Value, json};

use crate::helpers::{CDF, ServedProcess};

mod race;

pub(crate) fn moto_url() -> String {
    std::env::var("GGPROV_TEST_MOTO_URL").unwrap_or_else(|_| {
        panic!(
            "GGPROV_TEST_MOTO_URL is not set: the AWS-mode tests need moto_server. Run the README test command \
             (scripts/test.sh), or start one with `eval \"$(scripts/moto.sh)\"` and run the tests again."
        )
    })
}

pub(crate) async fn sdk(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::Credentials::new("testing", "testing", None, None, "static"))
        .load()
        .await
}

/// A unique, lowercase resource name.
pub(crate) fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple().to_string().get(..12).unwrap_or_default())
}

pub(crate) async fn dynamo_store() -> Arc<DynamoStore> {
    let config = sdk(&moto_url()).await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&config), unique("ggprov"));
    store.create_table_if_missing().await.expect("table created in moto");
    Arc::new(store)
}

pub(crate) async fn sqs_queue() -> Arc<SqsQueue> {
    let config = sdk(&moto_url()).await;
    let client = aws_sdk_sqs::Client::new(&config);
    let (url, dlq) = SqsQueue::create_queues(&client, &unique("work"), 5).await.expect("queues created in moto");
    Arc::new(SqsQueue::new(client, url, dlq))
}

mod dynamo_applications {
    ggprov_testkit::application_store_conformance!(super::dynamo_store().await);
}

mod dynamo_templates {
    ggprov_testkit::template_store_conformance!(super::dynamo_store().await);
}

mod dynamo_cores {
    ggprov_testkit::core_store_conformance!(super::dynamo_store().await);
}

mod sqs {
    ggprov_testkit::work_queue_conformance!(super::sqs_queue().await);
}

#[test]
fn greengrass_and_job_status_events_become_outcomes_and_hints() {
    use ggprov_domain::ports::StatusSignal;
    let event = json!({
        "version": "0", "id": "e1", "detail-type": "Greengrass V2 Effective Deployment Status Change",
        "source": "aws.greengrass", "account": "123456789012", "region": "us-east-1", "time": "2026-11-22T10:00:00Z",
        "resources": ["arn:aws:greengrass:us-east-1:123456789012:coreDevices:core-1"],
        "detail": {"deploymentId": "d-1", "coreDeviceExecutionStatus": "FAILED",
                   "statusDetails": {"errorStack": ["DEPLOYMENT_FAILURE", "ARTIFACT_DOWNLOAD_ERROR"], "errorTypes": []}}
    });
    let Some(StatusSignal::Outcome(outcome)) = ggprov_aws::parse_status_message(&event.to_string()) else {
        panic!("a deployment status event is an outcome")
    };
    assert_eq!(
        (outcome.core_name.as_str(), outcome.deployment_id.as_str(), outcome.succeeded),
        ("core-1", "d-1", false)
    );
    assert_eq!(outcome.detailed_status, "FAILED");
    assert_eq!(outcome.reason.as_deref(), Some("DEPLOYMENT_FAILURE > ARTIFACT_DOWNLOAD_ERROR"));
    assert_eq!(outcome.time.to_string(), "2026-11-22T10:00:00.999Z", "the last millisecond of EventBridge's second");

    let running = event.to_string().replace("\"FAILED\"", "\"IN_PROGRESS\"");
    assert_eq!(ggprov_aws::parse_status_message(&running), None, "a deployment still running is not an outcome");

    let job = json!({"detail-type": "IoT Job Execution", "source": "ggprov.iot-rule", "time": "2026-11-22T10:00:00Z",
                     "detail": {"jobId": "j", "thingArn": "arn:aws:iot:us-east-1:123456789012:thing/core-2", "status": "SUCCEEDED"}});
    assert!(matches!(
        ggprov_aws::parse_status_message(&job.to_string()),
        Some(StatusSignal::CoreChanged(name)) if name.as_str() == "core-2"
    ));
    let raw = json!({"eventType": "JOB_EXECUTION", "operation": "succeeded", "jobId": "j", "status": "SUCCEEDED",
                     "thingArn": "arn:aws:iot:us-east-1:123456789012:thing/core-3", "timestamp": 1795300000});
    assert!(
        matches!(
            ggprov_aws::parse_status_message(&raw.to_string()),
            Some(StatusSignal::CoreChanged(name)) if name.as_str() == "core-3"
        ),
        "the IoT rule forwards job execution events without an envelope"
    );
    assert_eq!(ggprov_aws::parse_status_message("not json"), None);
}

/// The environment of a `ggprov serve` in AWS mode on moto and the Greengrass fake, creating
/// its resources (table `table`), plus `extra`.
fn aws_mode_env(table: &str, fake: &GreengrassFake, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let (moto, greengrass) = (moto_url(), fake.url());
    let base = [
        ("GGPROV_BACKEND", "aws"),
        ("GGPROV_AWS_TABLE", table),
        ("GGPROV_AWS_CREATE_RESOURCES", "true"),
        // moto serves one request at a time (transactions stay atomic): a long poll would stall it.
        ("GGPROV_AWS_QUEUE_WAIT_SECS", "0"),
        ("AWS_ENDPOINT_URL", moto.as_str()),
        ("AWS_ENDPOINT_URL_GREENGRASSV2", greengrass.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ];
    base.iter().chain(extra).map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// A `ggprov serve` process in AWS mode, with or without its workers.
fn serve(env: &[(String, String)], worker: bool) -> ServedProcess {
    let data = tempfile::tempdir().expect("temp dir").keep();
    let mut env = env.to_vec();
    env.push(("GGPROV_WORKER".to_owned(), worker.to_string()));
    ServedProcess::start(&data, env, &[])
}

struct Api {
    base: String,
    http: reqwest::Client,
    /// Sent as `x-api-key` when the process authenticates.
    key: Option<String>,
}

impl Api {
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> (u16, Value) {
        let mut request =
            self.http.request(method, format!("{}{path}", self.base)).header("accept", CDF).header("content-type", CDF);
        if let Some(key) = &self.key {
            request = request.header("x-api-key", key);
        }
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let task_id = response.headers().get("x-taskid").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let text = response.text().await.unwrap_or_default();
        let mut body = serde_json::from_str(&text).unwrap_or(Value::Null);
        if let Some(id) = task_id {
            body = json!({"id": id, "body": body});
        }
        (status, body)
    }

    async fn get(&self, path: &str) -> Value {
        let (status, body) = self.send(reqwest::Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    /// Creates a template of one component, asserting 201.
    async fn create_template(&self, name: &str, key: &str, version: &str) {
        let (status, body) =
            self.post("/templates", &json!({"name": name, "components": [{"key": key, "version": version}]})).await;
        assert_eq!(status, 201, "{body}");
    }

    /// Submits one core task creating `cores` and waits for its success.
    async fn provision_cores(&self, cores: &[String]) -> Value {
        let body = json!({"type": "Create", "coreVersion": "2.12.0", "cores": cores.iter().map(|c| json!({"name": c, "provisioningTemplate": "greengrass2_core"})).collect::<Vec<_>>()});
        let (status, task) = self.post("/coreTasks", &body).await;
        assert_eq!(status, 202, "{task}");
        self.until(&format!("/coreTasks/{}", task["id"].as_str().unwrap()), "the core task", |t| {
            t["taskStatus"] == "Success"
        })
        .await
    }

    /// Submits a core task creating `core` and waits for its success; returns the task.
    async fn provision_core(&self, core: &str) -> Value {
        let body = json!({"type": "Create", "coreVersion": "2.12.0", "cores": [{"name": core, "provisioningTemplate": "greengrass2_core"}]});
        let (status, task) = self.post("/coreTasks", &body).await;
        assert_eq!(status, 202, "{task}");
        let task_id = task["id"].as_str().expect("task id").to_owned();
        self.until(&format!("/coreTasks/{task_id}"), "the core task", |t| t["taskStatus"] == "Success").await
    }

    /// Polls `path` until `done` holds for its body (the workers are other processes: there
    /// is nothing to await but the observable state).
    async fn until(&self, path: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let body = self.get(path).await;
            if done(&body) {
                return body;
            }
            assert_ne!(body["taskStatus"], "Failure", "{what} failed: {body}");
            assert!(Instant::now() < deadline, "timed out waiting for {what}; last {path}: {body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The account's Greengrass thing policies, which the bundled core template attaches (infra/
/// creates them); moto is shared, so another test may have made them.
async fn greengrass_policies(iot: &aws_sdk_iot::Client) {
    for policy in ["GreengrassV2IoTThingPolicy", "GreengrassV2TokenExchangeRoleAliasPolicy"] {
        let document = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["iot:Connect", "iot:Publish", "iot:Subscribe", "iot:Receive", "greengrass:*", "iot:AssumeRoleWithCertificate"], "Resource": "*"}]});
        if let Err(err) = iot.create_policy().policy_name(policy).policy_document(document.to_string()).send().await {
            assert!(err.into_service_error().is_resource_already_exists_exception(), "policy {policy} created");
        }
    }
}

async fn until_async<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_whole_service_runs_on_aws_as_an_api_process_and_two_workers() {
    let moto = moto_url();
    let config = sdk(&moto).await;
    let fake = GreengrassFake::start().await;
    let (iot, ssm, sqs, s3, events) = (
        aws_sdk_iot::Client::new(&config),
        aws_sdk_ssm::Client::new(&config),
        aws_sdk_sqs::Client::new(&config),
        aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build()),
        aws_sdk_eventbridge::Client::new(&config),
    );
    let table = unique("ggprov");

    // A CDF-style CA: certificate registered with IoT, key in SSM.
    let ca = ggprov_pki::create_ca("ggprov aws-mode test CA", 30).expect("CA");
    let ca_id = iot
        .register_ca_certificate()
        .ca_certificate(&ca.certificate_pem)
        .verification_certificate(&ca.certificate_pem)
        .set_as_active(true)
        .send()
        .await
        .expect("CA registered")
        .certificate_id
        .expect("CA id");
    ssm.put_parameter()
        .name(format!("cdf-ca-key-{ca_id}"))
        .value(ca.private_key.expose())
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .expect("CA key stored");

    greengrass_policies(&iot).await;

    // EventBridge: ggprov's bus with a rule delivering its events to a queue we read, and a
    // rule on the default bus routing Greengrass deployment status to the ingest queue.
    let bus = unique("bus");
    events.create_event_bus().name(&bus).send().await.expect("bus");
    let subscriber = sqs.create_queue().queue_name(unique("subscriber")).send().await.unwrap().queue_url.unwrap();
    let status_queue = sqs.create_queue().queue_name(unique("status")).send().await.unwrap().queue_url.unwrap();
    for (bus_name, rule, pattern, queue) in [
        (bus.as_str(), unique("all"), json!({"source": ["com.aws.cdf.greengrass2-provisioning"]}), &subscriber),
        (
            "default",
            unique("gg-status"),
            json!({"source": ["aws.greengrass"], "detail-type": ["Greengrass V2 Effective Deployment Status Change"]}),
            &status_queue,
        ),
    ] {
        events.put_rule().name(&rule).event_bus_name(bus_name).event_pattern(pattern.to_string()).send().await.unwrap();
        let arn = SqsQueue::queue_arn(&sqs, queue).await.unwrap();
        events
            .put_targets()
            .rule(&rule)
            .event_bus_name(bus_name)
            .targets(aws_sdk_eventbridge::types::Target::builder().id("q").arn(arn).build().unwrap())
            .send()
            .await
            .unwrap();
    }

    let (writer, writer_hash) = ggprov::auth::new_api_key();
    let (reader, reader_hash) = ggprov::auth::new_api_key();
    let keys = format!("{writer_hash},{reader_hash}:read");
    let env = aws_mode_env(
        &table,
        &fake,
        &[
            ("GGPROV_AWS_STATUS_QUEUE_URL", status_queue.as_str()),
            ("GGPROV_AWS_EVENT_BUS", bus.as_str()),
            ("GGPROV_DEFAULT_CA", ca_id.as_str()),
            ("GGPROV_RETRY_BASE_MS", "50"),
            ("GGPROV_AWS_PRESIGN_SECS", "300"),
            ("GGPROV_AUTH", "api-key"),
            ("GGPROV_API_KEYS", keys.as_str()),
        ],
    );
    // The API process runs no worker; two worker processes share the queue.
    let api_process = serve(&env, false);
    let _workers = [serve(&env, true), serve(&env, true)];
    let api = Api { base: api_process.base.clone(), http: reqwest::Client::new(), key: Some(writer.clone()) };
    let reader_api = Api { base: api_process.base.clone(), http: reqwest::Client::new(), key: Some(reader.clone()) };
    let (core, device, template) = (unique("core"), unique("device"), unique("tpl"));

    // Template (component existence checked against the Greengrass fake).
    let (status, body) = api
        .post(
            "/templates",
            &json!({"name": template, "components": [{"key": "aws.greengrass.Nucleus", "version": "2.12.0"}]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = api
        .post(
            "/templates",
            &json!({"name": unique("bad"), "components": [{"key": "aws.greengrass.Missing", "version": "1.0.0"}]}),
        )
        .await;
    assert_eq!((status, body["error"].as_str()), (422, Some("INVALID_COMPONENT")), "{body}");

    // Core task → thing, ACTIVE certificate signed by the SSM-held CA, policies, certs bundle in S3.
    let done = api.provision_core(&core).await;
    assert_eq!(done["cores"][0]["taskStatus"], "Success", "{done}");
    let principals = iot.list_thing_principals().thing_name(&core).send().await.unwrap().principals.unwrap_or_default();
    assert_eq!(principals.len(), 1, "exactly one certificate although two workers shared the queue: {principals:?}");
    let certificate_id = principals[0].rsplit('/').next().unwrap().to_owned();
    let described = iot.describe_certificate().certificate_id(&certificate_id).send().await.unwrap();
    let description = described.certificate_description.unwrap();
    assert_eq!(description.status.unwrap().as_str(), "ACTIVE");
    // The bundled template's shared policies are on a thing group the core joined (inherited),
    // not on each certificate.
    let policies =
        iot.list_attached_policies().target(&principals[0]).send().await.unwrap().policies.unwrap_or_default();
    assert!(policies.is_empty(), "nothing attached to the certificate itself: {policies:?}");
    let groups =
        iot.list_thing_groups_for_thing().thing_name(&core).send().await.unwrap().thing_groups.unwrap_or_default();
    let groups: Vec<&str> = groups.iter().filter_map(|g| g.group_name.as_deref()).collect();
    assert_eq!(groups, ["ggprov-greengrass2-core-policies"]);
    let group_arn = iot
        .describe_thing_group()
        .thing_group_name("ggprov-greengrass2-core-policies")
        .send()
        .await
        .unwrap()
        .thing_group_arn
        .unwrap();
    let policies = iot.list_attached_policies().target(&group_arn).send().await.unwrap().policies.unwrap_or_default();
    let mut policies: Vec<&str> = policies.iter().filter_map(|p| p.policy_name.as_deref()).collect();
    policies.sort_unstable();
    assert_eq!(policies, ["GreengrassV2IoTThingPolicy", "GreengrassV2TokenExchangeRoleAliasPolicy"]);
    let bucket = format!("{table}-artifacts");
    let objects = s3.list_objects_v2().bucket(&bucket).send().await.unwrap().contents.unwrap_or_default();
    let keys: Vec<String> = objects.into_iter().filter_map(|o| o.key).collect();
    assert!(keys.iter().any(|k| k.ends_with("certs.zip") && k.contains(&core)), "certs bundle in S3: {keys:?}");
    let head = s3
        .head_object()
        .bucket(&bucket)
        .key(keys.iter().find(|k| k.ends_with("certs.zip")).unwrap())
        .send()
        .await
        .unwrap();
    assert!(head.server_side_encryption.is_some(), "artifacts are written with server-side encryption");
    let described = api.get(&format!("/cores/{core}")).await;
    let link = described["artifacts"]["certs"]["downloadUrl"]
        .as_str()
        .unwrap_or_else(|| panic!("a download link: {described}"));
    assert!(link.contains("X-Amz-Expires=300") && link.contains("X-Amz-Signature="), "a presigned link: {link}");
    let bundle = reqwest::get(link).await.unwrap().bytes().await.unwrap();
    assert!(bundle.starts_with(b"PK"), "the link downloads the certs bundle (a zip)");
    // The bundle holds the private key: a read-only caller sees the artifact, not the link.
    let seen_by_reader = reader_api.get(&format!("/cores/{core}")).await;
    assert!(seen_by_reader["artifacts"]["certs"]["key"].is_string(), "{seen_by_reader}");
    assert!(seen_by_reader["artifacts"]["certs"].get("downloadUrl").is_none(), "no link for readers: {seen_by_reader}");

    // The core's nucleus connects: Greengrass knows it; a client device is provisioned and associated.
    fake.register_core(&core, "2.12.0");
    let (status, task) = api
        .post(
            &format!("/cores/{core}/deviceTasks"),
            &json!({"type": "Create", "devices": [{"name": device, "provisioningTemplate": "greengrass2_client_device"}]}),
        )
        .await;
    assert_eq!(status, 202, "{task}");
    let task_id = task["id"].as_str().unwrap().to_owned();
    api.until(&format!("/deviceTasks/{task_id}"), "the device task", |t| t["taskStatus"] == "Success").await;
    assert_eq!(fake.associations(&core).into_iter().collect::<Vec<_>>(), vec![device.clone()]);

    // Deployment task → a Greengrass deployment on the template's thing group, the core in it.
    let (status, task) = api
        .post(
            "/deploymentTasks",
            &json!({"template": {"name": template, "version": 1}, "targets": {"thingNames": [core]}}),
        )
        .await;
    assert_eq!(status, 202, "{task}");
    let task_id = task["id"].as_str().unwrap().to_owned();
    api.until(&format!("/deploymentTasks/{task_id}"), "the deployment task", |t| t["taskStatus"] == "Success").await;
    let deployments = fake.deployments();
    assert_eq!(deployments.len(), 1, "one Greengrass deployment per template version: {deployments:?}");
    assert!(deployments[0]["targetArn"].as_str().unwrap().contains(":thinggroup/"));
    let deployment_id = deployments[0]["deploymentId"].as_str().unwrap().to_owned();
    let groups =
        iot.list_thing_groups_for_thing().thing_name(&core).send().await.unwrap().thing_groups.unwrap_or_default();
    assert_eq!(groups.len(), 2, "its policy group and one deployment group: {groups:?}");

    // The core reports success: Greengrass's event reaches the ingest queue through EventBridge.
    // (The reconciler would find it too, but only after its 30 s period; this takes < 1 s.)
    fake.finish_deployment(&core, &deployment_id, "SUCCEEDED", None);
    let detail = json!({"deploymentId": deployment_id, "coreDeviceExecutionStatus": "SUCCEEDED", "thingName": core});
    let put = events
        .put_events()
        .entries(
            aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                .source("aws.greengrass")
                .detail_type("Greengrass V2 Effective Deployment Status Change")
                .resources(format!("arn:aws:greengrass:us-east-1:123456789012:coreDevices:{core}"))
                .detail(detail.to_string())
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(put.failed_entry_count, 0);
    let summary = api
        .until("/fleet/summary", "the reported outcome in the fleet summary", |s| {
            s["templates"][&template]["versions"]["1"]["reportedInUse"] == 1
        })
        .await;
    assert_eq!(summary["templates"][&template]["versions"]["1"]["lastDeploymentSuccess"], 1, "{summary}");
    let core_record = api.get(&format!("/cores/{core}")).await;
    assert_eq!(
        core_record["template"]["reported"],
        json!({"name": template, "version": 1, "deploymentStatus": "SUCCESSFUL"}),
        "{core_record}"
    );

    // Delete with deprovisioning: thing, certificate, device and artifacts gone.
    let (status, task) = api
        .post(
            "/coreTasks",
            &json!({"type": "Delete", "coreVersion": "2.12.0", "options": {"deprovisionCores": true, "deprovisionClientDevices": true},
                    "cores": [{"name": core, "provisioningTemplate": "greengrass2_core"}]}),
        )
        .await;
    assert_eq!(status, 202, "{task}");
    let task_id = task["id"].as_str().unwrap().to_owned();
    api.until(&format!("/coreTasks/{task_id}"), "the delete task", |t| t["taskStatus"] == "Success").await;
    for thing in [&core, &device] {
        let err = iot.describe_thing().thing_name(thing).send().await.expect_err("thing deleted");
        assert!(err.into_service_error().is_resource_not_found_exception(), "{thing} is gone");
    }
    assert!(iot.describe_certificate().certificate_id(&certificate_id).send().await.is_err(), "certificate deleted");
    let objects = s3.list_objects_v2().bucket(&bucket).prefix(&core).send().await.unwrap().contents.unwrap_or_default();
    assert!(objects.is_empty(), "artifacts deleted: {objects:?}");
    assert!(!fake.core_registered(&core), "the core device is unregistered from Greengrass");

    // Every lifecycle event reached the subscriber's queue through EventBridge.
    let wanted = [
        "Core Created Event",
        "Device Created Event",
        "DeploymentTask Created Event",
        "Core Template Updated Event",
        "Core Deleted Event",
    ];
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    until_async("the lifecycle events on the subscriber queue", || {
        let (sqs, subscriber, seen) = (sqs.clone(), subscriber.clone(), seen.clone());
        async move {
            let out = sqs.receive_message().queue_url(&subscriber).max_number_of_messages(10).send().await.ok()?;
            for message in out.messages.unwrap_or_default() {
                let body: Value = serde_json::from_str(message.body.as_deref().unwrap_or("{}")).unwrap_or_default();
                assert_eq!(body["source"], "com.aws.cdf.greengrass2-provisioning");
                let text = body.to_string();
                assert!(!text.contains("PRIVATE KEY"), "no key in events");
                seen.lock().unwrap().push(body["detail-type"].as_str().unwrap_or_default().to_owned());
                sqs.delete_message()
                    .queue_url(&subscriber)
                    .receipt_handle(message.receipt_handle.unwrap())
                    .send()
                    .await
                    .ok()?;
            }
            let seen = seen.lock().unwrap();
            wanted.iter().all(|w| seen.iter().any(|s| s == w)).then_some(())
        }
    })
    .await;
    let seen = seen.lock().unwrap().clone();
    let created = seen.iter().filter(|s| *s == "Core Created Event").count();
    assert_eq!(created, 1, "each event published once: {seen:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn development_mode_creates_its_own_ca_once_and_provisions_with_it() {
    let moto = moto_url();
    let fake = GreengrassFake::start().await;
    let table = unique("devmode");
    let env = aws_mode_env(&table, &fake, &[]);
    let config = sdk(&moto).await;
    let ssm = aws_sdk_ssm::Client::new(&config);
    let marker = format!("ggprov-{table}-development-ca");
    let ca_id = {
        let process = serve(&env, true);
        let api = Api { base: process.base.clone(), http: reqwest::Client::new(), key: None };
        let core = unique("devcore");
        api.provision_core(&core).await;
        // The event stream reads DynamoDB's outbox (settled events, so a resume misses none),
        // and the dashboard is served in AWS mode too.
        let stream = api.http.get(format!("{}/events/stream?after=0", api.base)).send().await.unwrap();
        let events = crate::operator::read_events(stream, 1).await;
        assert_eq!(
            (events[0].1["detailType"].as_str(), events[0].1["detail"]["coreName"].as_str()),
            (Some("Core Created Event"), Some(core.as_str()))
        );
        let resumed = api
            .http
            .get(format!("{}/events/stream", api.base))
            .header("last-event-id", events[0].0.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resumed.status(), 200);
        let ui = api.http.get(format!("{}/ui/", api.base)).send().await.unwrap();
        assert_eq!(ui.status(), 200);
        // The certificate inventory on DynamoDB, and a revocation IoT keeps.
        let record = api.get(&format!("/cores/{core}")).await;
        let certificate = record["certificate"].clone();
        assert_eq!(
            (certificate["status"].as_str(), certificate["keyAlgorithm"].as_str()),
            (Some("ACTIVE"), Some("EC_P256"))
        );
        let summary = api.get("/fleet/certificates").await;
        assert_eq!((summary["active"].as_i64(), summary["buckets"]["later"].as_i64()), (Some(1), Some(1)), "{summary}");
        let id = certificate["certificateId"].as_str().unwrap();
        let (status, revoked) = api.post(&format!("/certificates/{id}/revoke"), &json!({})).await;
        assert_eq!((status, revoked["status"].as_str()), (200, Some("REVOKED")), "{revoked}");
        let iot = aws_sdk_iot::Client::new(&config);
        let described = iot.describe_certificate().certificate_id(id).send().await.unwrap();
        assert_eq!(described.certificate_description.unwrap().status.unwrap().as_str(), "REVOKED");
        assert!(
            iot.list_thing_principals()
                .thing_name(&core)
                .send()
                .await
                .unwrap()
                .principals
                .unwrap_or_default()
                .is_empty()
        );
        assert_eq!(api.get("/fleet/certificates").await["active"], 0);
        // The CAs from IoT, the default one refused for deletion.
        let cas = api.get("/certificateAuthorities").await;
        let ca = cas["certificateAuthorities"].as_array().unwrap().iter().find(|c| c["default"] == true).cloned();
        let ca = ca.unwrap_or_else(|| panic!("the development CA is listed as the default: {cas}"));
        let (status, body) = api
            .send(reqwest::Method::DELETE, &format!("/certificateAuthorities/{}", ca["caId"].as_str().unwrap()), None)
            .await;
        assert_eq!((status, body["error"].as_str()), (409, Some("CA_IS_DEFAULT")), "{body}");
        ssm.get_parameter().name(&marker).send().await.expect("the CA is remembered").parameter.unwrap().value.unwrap()
    };
    let key = ssm
        .get_parameter()
        .name(format!("cdf-ca-key-{ca_id}"))
        .with_decryption(true)
        .send()
        .await
        .expect("the CA key is in SSM, CDF style");
    assert!(key.parameter.unwrap().value.unwrap().contains("PRIVATE KEY"));
    // A restart reuses the CA instead of making another.
    let _again = serve(&env, false);
    let remembered = ssm.get_parameter().name(&marker).send().await.unwrap().parameter.unwrap().value.unwrap();
    assert_eq!(remembered, ca_id);
}

/// A Greengrass V2 status event as EventBridge delivers it to the status queue.
fn status_event(core: &str, deployment_id: &str, status: &str) -> String {
    json!({
        "version": "0", "id": unique("ev"), "detail-type": "Greengrass V2 Effective Deployment Status Change",
        "source": "aws.greengrass", "account": "123456789012", "region": "us-east-1",
        "time": chrono_now(),
        "resources": [format!("arn:aws:greengrass:us-east-1:123456789012:coreDevices:{core}")],
        "detail": {"deploymentId": deployment_id, "coreDeviceExecutionStatus": status, "thingName": core}
    })
    .to_string()
}

/// Now, as EventBridge writes `time` (seconds, UTC).
fn chrono_now() -> String {
    let now = ggprov_domain::Timestamp::now().to_string();
    format!("{}Z", &now[..19])
}

/// A staged rollout end to end on AWS (moto, the Greengrass fake): targets from a
/// fleet-indexing query (`SearchIndex`), a first wave that must report before the second moves,
/// an abort on the first failure, a retry that deploys a new revision once and fixes the core.
#[tokio::test(flavor = "multi_thread")]
async fn a_staged_rollout_runs_on_aws_with_query_targets_abort_and_retry() {
    let moto = moto_url();
    let config = sdk(&moto).await;
    let (iot, sqs) = (aws_sdk_iot::Client::new(&config), aws_sdk_sqs::Client::new(&config));
    let fake = GreengrassFake::start().await;
    let table = unique("rollout");
    greengrass_policies(&iot).await;
    let status_queue = sqs.create_queue().queue_name(unique("status")).send().await.unwrap().queue_url.unwrap();
    let env = aws_mode_env(
        &table,
        &fake,
        &[("GGPROV_AWS_STATUS_QUEUE_URL", status_queue.as_str()), ("GGPROV_RETRY_BASE_MS", "50")],
    );
    let process = serve(&env, true);
    let api = Api { base: process.base.clone(), http: reqwest::Client::new(), key: None };
    let template = unique("wave");
    api.create_template(&template, "aws.greengrass.Nucleus", "2.12.0").await;
    let prefix = unique("rc");
    let cores: Vec<String> = (0..4).map(|i| format!("{prefix}-{i}")).collect();
    api.provision_cores(&cores).await;
    for core in &cores {
        fake.register_core(core, "2.12.0");
    }
    // A fifth thing that the query must not select.
    iot.create_thing().thing_name(format!("{prefix}x-other")).send().await.unwrap();

    // A query AWS refuses is a 400 naming the field; nothing is stored.
    let bad = json!({"template": {"name": template}, "targets": {"thingIndexQuery": format!("(thingName:{prefix}-*")}});
    let (status, body) = api.post("/deploymentTasks", &bad).await;
    assert_eq!((status, body["details"][0]["field"].as_str()), (400, Some("targets.thingIndexQuery")), "{body}");

    let (status, task) = api
        .post(
            "/deploymentTasks",
            &json!({"template": {"name": template}, "targets": {"thingIndexQuery": format!("thingName:{prefix}-*")},
                    "rollout": {"waves": [{"count": 1}, {"percent": 100}], "failureThreshold": {"count": 0}}}),
        )
        .await;
    assert_eq!(status, 202, "{task}");
    let path = format!("/deploymentTasks/{}", task["id"].as_str().unwrap());
    let first = api.until(&path, "wave 1 moved", |t| t["rollout"]["waves"][0]["moved"] == 1).await;
    assert_eq!(first["rollout"]["waves"][1]["moved"], 0, "wave 2 waits for wave 1's report: {first}");
    assert_eq!(first["rollout"]["waves"][1]["planned"], 3, "the query selected the four cores only");
    let deployment_id = fake.deployments()[0]["deploymentId"].as_str().unwrap().to_owned();
    let report = |core: &str, status: &str| {
        fake.finish_deployment(core, &deployment_id, status, None);
        sqs.send_message().queue_url(&status_queue).message_body(status_event(core, &deployment_id, status)).send()
    };
    report(&cores[0], "SUCCEEDED").await.unwrap();
    let second = api.until(&path, "wave 2 moved", |t| t["rollout"]["waves"][1]["moved"] == 3).await;
    assert_eq!(second["rollout"]["currentWave"], 2);
    report(&cores[1], "SUCCEEDED").await.unwrap();
    report(&cores[2], "FAILED").await.unwrap();
    let aborted = api.until(&path, "the abort", |t| t["rollout"]["state"] == "Aborted").await;
    assert!(aborted["statusMessage"].as_str().unwrap().contains("1 of 4 cores failed"), "{aborted}");
    assert_eq!(aborted["taskStatus"], "Failure");
    report(&cores[3], "SUCCEEDED").await.unwrap();

    // Retry: only the failed core, through one new revision of the template's deployment.
    let (status, retry) = api.post(&format!("{path}/retry"), &json!({})).await;
    assert_eq!(status, 202, "{retry}");
    let retry_path = format!("/deploymentTasks/{}", retry["id"].as_str().unwrap());
    let moved = api.until(&retry_path, "the retry task", |t| t["taskStatus"] == "Success").await;
    let names: Vec<&str> =
        moved["deployments"].as_array().unwrap().iter().map(|d| d["coreName"].as_str().unwrap()).collect();
    assert_eq!(names, vec![cores[2].as_str()]);
    let deployments = fake.deployments();
    assert_eq!(deployments.len(), 2, "one new revision for the retry task: {deployments:?}");
    let revision = deployments
        .iter()
        .map(|d| d["deploymentId"].as_str().unwrap().to_owned())
        .find(|id| *id != deployment_id)
        .unwrap();
    fake.finish_deployment(&cores[2], &revision, "SUCCEEDED", None);
    sqs.send_message()
        .queue_url(&status_queue)
        .message_body(status_event(&cores[2], &revision, "SUCCEEDED"))
        .send()
        .await
        .unwrap();
    let core = api
        .until(&format!("/cores/{}", cores[2]), "the retried core's success", |c| {
            c["template"]["reported"]["deploymentStatus"] == "SUCCESSFUL"
        })
        .await;
    assert_eq!(core["template"]["reported"]["version"], 1);
    let summary = api.get("/fleet/summary").await;
    let recount = api.get("/fleet/summary/recount").await;
    assert_eq!(summary, recount);
    assert_eq!(summary["templates"][&template]["versions"]["1"]["lastDeploymentSuccess"], 4, "{summary}");
}

#[tokio::test]
async fn an_application_is_published_to_versioned_s3_and_greengrass_and_deleted_from_both() {
    let moto = moto_url();
    let config = sdk(&moto).await;
    let s3 = aws_sdk_s3::Client::new(&config);
    let fake = GreengrassFake::start().await;
    let (table, bucket) = (unique("apps"), unique("apps-bucket"));
    let env = aws_mode_env(&table, &fake, &[("GGPROV_AWS_BUCKET", bucket.as_str())]);
    let process = serve(&env, false);
    let api = Api { base: process.base.clone(), http: reqwest::Client::new(), key: None };
    let name = unique("shop");
    let component = format!("ggprov.app.{name}");
    let compose = "services:\n  web:\n    image: public.ecr.aws/nginx/nginx:1.25\n  api:\n    image: 123456789012.dkr.ecr.us-east-1.amazonaws.com/shop/api:1.4\n";
    // An image tarball the operator uploaded first.
    s3.put_object().bucket(&bucket).key("images/tools.tar").body(b"tar".to_vec().into()).send().await.unwrap();

    let (status, created) = api
        .post(
            "/applications",
            &json!({"name": name, "compose": compose, "images": [{"key": "images/tools.tar", "references": []}]}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let artifact = &created["artifacts"][0];
    let version_id = artifact["versionId"].as_str().expect("S3 gave the Compose file an object version");
    let stored = s3
        .get_object()
        .bucket(&bucket)
        .key(artifact["key"].as_str().unwrap())
        .version_id(version_id)
        .send()
        .await
        .unwrap();
    assert_eq!(stored.body.collect().await.unwrap().into_bytes().as_ref(), compose.as_bytes());
    let recipe = fake.recipe(&component, "1.0.0").expect("CreateComponentVersion received the recipe");
    assert_eq!(recipe, created["recipe"], "the inline recipe is the one shown");
    let uris: Vec<&str> =
        recipe["Manifests"][0]["Artifacts"].as_array().unwrap().iter().map(|a| a["URI"].as_str().unwrap()).collect();
    assert!(uris.contains(&format!("s3://{bucket}/images/tools.tar").as_str()), "{uris:?}");
    assert!(recipe["ComponentDependencies"].get("aws.greengrass.TokenExchangeService").is_some());
    let ecr = created["iamStatements"].as_array().unwrap().iter().find(|s| s["Sid"] == "PullPrivateImages").unwrap();
    assert_eq!(ecr["Resource"], json!(["arn:aws:ecr:us-east-1:123456789012:repository/shop/api"]));

    // A template names the component; the catalogue (the fake's private components) has it.
    let template = unique("apptpl");
    let (status, body) = api
        .post("/templates", &json!({"name": template, "components": [{"key": component, "version": "1.0.0"}]}))
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = api.send(reqwest::Method::DELETE, &format!("/applications/{name}"), None).await;
    assert_eq!((status, body["error"].as_str()), (409, Some("APPLICATION_IN_USE")), "{body}");
    let (status, _) = api.send(reqwest::Method::DELETE, &format!("/templates/{template}"), None).await;
    assert_eq!(status, 204);

    let (status, _) =
        api.send(reqwest::Method::PUT, &format!("/applications/{name}"), Some(&json!({"compose": compose}))).await;
    assert_eq!(status, 204);
    assert!(fake.recipe(&component, "2.0.0").is_some());
    assert_eq!(fake.calls("CreateComponentVersion"), 2);

    let (status, _) = api.send(reqwest::Method::DELETE, &format!("/applications/{name}"), None).await;
    assert_eq!(status, 204);
    assert!(fake.recipe(&component, "1.0.0").is_none() && fake.recipe(&component, "2.0.0").is_none());
    let left = s3.list_objects_v2().bucket(&bucket).prefix(format!("applications/{name}/")).send().await.unwrap();
    assert_eq!(left.key_count(), Some(0), "the application's artifacts are deleted");
    let events = api.get("/events").await;
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["detail"]["applicationName"] == name.as_str())
        .map(|e| e["detailType"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.len(), 3, "{kinds:?}");
}

/// `ggprov_aws_calls_total` of a process, by `service/operation`.
async fn aws_calls(api: &Api) -> std::collections::BTreeMap<String, f64> {
    let text = api.http.get(format!("{}/metrics", api.base)).send().await.unwrap().text().await.unwrap();
    text.lines()
        .filter_map(|line| line.strip_prefix("ggprov_aws_calls_total{"))
        .filter_map(|rest| {
            let (labels, value) = rest.split_once("} ")?;
            let label = |name: &str| {
                labels.split(',').find_map(|kv| kv.strip_prefix(&format!("{name}=\""))).map(|v| v.trim_end_matches('"'))
            };
            Some((format!("{}/{}", label("service")?, label("operation")?), value.parse().ok()?))
        })
        .collect()
}

/// `after - before - overhead`, without zeros.
fn calls_between(
    before: &std::collections::BTreeMap<String, f64>,
    after: &std::collections::BTreeMap<String, f64>,
    overhead: &std::collections::BTreeMap<String, f64>,
) -> std::collections::BTreeMap<String, f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).unwrap_or(&0.0) - overhead.get(k).unwrap_or(&0.0)))
        .filter(|(_, v)| *v != 0.0)
        .collect()
}

#[tokio::test]
async fn each_api_route_makes_the_store_calls_it_made_before() {
    let fake = GreengrassFake::start().await;
    let table = unique("calls");
    let env = aws_mode_env(&table, &fake, &[]);
    let process = serve(&env, false);
    let api = Api { base: process.base.clone(), http: reqwest::Client::new(), key: None };
    let template = unique("calltpl");
    api.create_template(&template, "aws.greengrass.Cli", "2.12.0").await;
    // A scrape's own calls (queue depth) show in the next scrape: measure them once.
    let first = aws_calls(&api).await;
    let second = aws_calls(&api).await;
    let scrape = calls_between(&first, &second, &Default::default());
    const N: usize = 10;
    let mut table_of = Vec::new();
    for route in [
        format!("/templates/{template}"),
        "/fleet/summary".to_owned(),
        "/templates".to_owned(),
        "/fleet/software".to_owned(),
    ] {
        let before = aws_calls(&api).await;
        for _ in 0..N {
            api.get(&route).await;
        }
        let after = aws_calls(&api).await;
        let per_request: std::collections::BTreeMap<String, f64> =
            calls_between(&before, &after, &scrape).into_iter().map(|(k, v)| (k, v / N as f64)).collect();
        table_of.push((route, per_request));
    }
    let expected: [&[(&str, f64)]; 4] = [
        &[("DynamoDB/GetItem", 1.0)],
        &[("DynamoDB/Query", 8.0)],
        &[("DynamoDB/Query", 1.0)],
        &[("DynamoDB/Query", 8.0)],
    ];
    for ((route, calls), expected) in table_of.iter().zip(expected) {
        let expected: std::collections::BTreeMap<String, f64> =
            expected.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
        assert_eq!(calls, &expected, "GET {route}: store calls per request");
    }

    // Per provisioned core, in a worker process: DynamoDB writes (idle loops only read).
    let worker = serve(&env, true);
    let worker_api = Api { base: worker.base.clone(), http: reqwest::Client::new(), key: None };
    greengrass_policies(&aws_sdk_iot::Client::new(&sdk(&moto_url()).await)).await;
    let writes = |calls: &std::collections::BTreeMap<String, f64>| -> f64 {
        calls
            .iter()
            .filter(|(k, _)| {
                ["PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem"]
                    .iter()
                    .any(|op| k.as_str() == format!("DynamoDB/{op}"))
            })
            .map(|(_, v)| v)
            .sum()
    };
    let before = aws_calls(&worker_api).await;
    let prefix = unique("callcore");
    let cores: Vec<String> = (0..10).map(|i| format!("{prefix}-{i}")).collect();
    api.provision_cores(&cores).await;
    let after = aws_calls(&worker_api).await;
    let per_core = writes(&calls_between(&before, &after, &Default::default())) / cores.len() as f64;
    assert!(
        per_core <= PROVISIONING_WRITES_PER_CORE,
        "{per_core} DynamoDB writes per core (bound {PROVISIONING_WRITES_PER_CORE})"
    );
}

/// DynamoDB writes a worker makes per provisioned core, measured 2026-12-01: 1 `PutItem` (the
/// provisioning journal with the minted certificate, before registration) and 2
/// `TransactWriteItems` (start of the item; its end with the core record, counters, event and
/// the finished journal); 7 before decision 76, 4 before decision 77. Issue 18's goal is 3.
const PROVISIONING_WRITES_PER_CORE: f64 = 3.0;

/// Core software on AWS (DynamoDB on moto, the Greengrass fake): the platform Greengrass
/// reports becomes the inventory at the first move, a software update refuses a platform the
/// nucleus recipe does not list, makes one template version, moves the others, and what they
/// report moves `GET /fleet/software` exactly like its recount; `GET /cores` filters by version.
#[tokio::test(flavor = "multi_thread")]
async fn a_software_update_runs_on_aws_with_the_nucleus_platforms_from_greengrass() {
    let moto = moto_url();
    let config = sdk(&moto).await;
    let (iot, sqs) = (aws_sdk_iot::Client::new(&config), aws_sdk_sqs::Client::new(&config));
    let fake = GreengrassFake::start().await;
    let table = unique("software");
    greengrass_policies(&iot).await;
    let status_queue = sqs.create_queue().queue_name(unique("status")).send().await.unwrap().queue_url.unwrap();
    let env = aws_mode_env(&table, &fake, &[("GGPROV_AWS_STATUS_QUEUE_URL", status_queue.as_str())]);
    let process = serve(&env, true);
    let api = Api { base: process.base.clone(), http: reqwest::Client::new(), key: None };
    let template = unique("sw");
    let (status, body) = api
        .post(
            "/templates",
            &json!({"name": template, "components": [
                {"key": "aws.greengrass.Nucleus", "version": "2.12.0"}, {"key": "aws.greengrass.Cli", "version": "2.12.0"}]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let prefix = unique("sc");
    let cores: Vec<String> = (0..3).map(|i| format!("{prefix}-{i}")).collect();
    api.provision_cores(&cores).await;
    for (core, os, arch) in
        [(&cores[0], "linux", "amd64"), (&cores[1], "linux", "aarch64"), (&cores[2], "darwin", "arm64")]
    {
        fake.register_core_on(core, "2.12.0", os, arch);
    }
    let report = |core: String, deployment: String| {
        fake.finish_deployment(&core, &deployment, "SUCCEEDED", None);
        sqs.send_message().queue_url(&status_queue).message_body(status_event(&core, &deployment, "SUCCEEDED")).send()
    };
    let (status, task) =
        api.post("/deploymentTasks", &json!({"template": {"name": template}, "targets": {"thingNames": cores}})).await;
    assert_eq!(status, 202, "{task}");
    api.until(&format!("/deploymentTasks/{}", task["id"].as_str().unwrap()), "the first deployment", |t| {
        t["taskStatus"] == "Success"
    })
    .await;
    let first = fake.deployments()[0]["deploymentId"].as_str().unwrap().to_owned();
    for core in &cores {
        report(core.clone(), first.clone()).await.unwrap();
    }
    let darwin = api.until(&format!("/cores/{}", cores[2]), "the inventory", |c| c["software"]["os"] == "darwin").await;
    assert_eq!(darwin["software"]["architecture"], "arm64");

    let (status, update) =
        api.post("/softwareUpdateTasks", &json!({"targets": {"thingNames": cores}, "nucleusVersion": "2.13.0"})).await;
    assert_eq!(status, 201, "{update}");
    let update = update["body"].clone();
    let refused = update["cores"]
        .as_array()
        .unwrap_or_else(|| panic!("{update}"))
        .iter()
        .find(|c| c["name"] == cores[2].as_str());
    let refused = refused.unwrap_or_else(|| panic!("{} in {update}", cores[2]));
    assert_eq!(refused["status"], "Failure");
    assert!(refused["message"].as_str().unwrap().contains("darwin/arm64"), "{refused}");
    assert_eq!(update["templates"][0]["toVersion"], 2, "{update}");
    let made = api.get(&format!("/templates/{template}/versions/2")).await;
    let versions: Vec<&str> =
        made["components"].as_array().unwrap().iter().map(|c| c["version"].as_str().unwrap()).collect();
    assert_eq!(versions, ["2.13.0", "2.13.0"], "the nucleus and the CLI moved together: {made}");
    let moving = update["deploymentTasks"][0].as_str().unwrap().to_owned();
    api.until(&format!("/deploymentTasks/{moving}"), "the update's deployment", |t| t["taskStatus"] == "Success").await;
    let second = fake
        .deployments()
        .iter()
        .map(|d| d["deploymentId"].as_str().unwrap().to_owned())
        .find(|id| *id != first)
        .expect("a deployment of version 2");
    let summary = api.get("/fleet/software").await;
    assert_eq!(summary["total"], json!({"cores": 3, "updating": 2}), "{summary}");
    for core in &cores[..2] {
        report(core.clone(), second.clone()).await.unwrap();
    }
    let path = format!("/softwareUpdateTasks/{}", update["taskId"].as_str().unwrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    let ended = loop {
        let body = api.get(&path).await;
        if body["counts"]["success"] == 2 {
            break body;
        }
        assert!(Instant::now() < deadline, "the update did not end: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(ended["status"], "Failure", "one core was refused: {ended}");
    let listed = api.get("/cores?nucleusVersion=2.13.0").await;
    let names: Vec<&str> = listed["cores"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, [cores[0].as_str(), cores[1].as_str()]);
    let summary = api.get("/fleet/software").await;
    assert_eq!(summary, api.get("/fleet/software/recount").await);
    assert_eq!(summary["total"], json!({"cores": 3, "updating": 0}), "{summary}");
    let events = api.get("/events?count=1000").await;
    let updated =
        events["events"].as_array().unwrap().iter().filter(|e| e["detailType"] == "Core Software Updated").count();
    assert_eq!(updated, 2, "{events}");
}

/// The thing's certificate ids, as IoT holds them.
async fn certificate_ids(iot: &aws_sdk_iot::Client, thing: &str) -> Vec<String> {
    let principals = iot.list_thing_principals().thing_name(thing).send().await.unwrap().principals.unwrap_or_default();
    principals.iter().map(|p| p.rsplit('/').next().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_rotation_on_aws_asks_the_core_over_mqtt_and_reads_its_answers_from_the_inbox() {
    let moto = moto_url();
    let fake = GreengrassFake::start().await;
    let table = unique("rotaws");
    let config = sdk(&moto).await;
    let (iot, sqs) = (aws_sdk_iot::Client::new(&config), aws_sdk_sqs::Client::new(&config));
    let process = serve(&aws_mode_env(&table, &fake, &[]), true);
    let api = Api { base: process.base.clone(), http: reqwest::Client::new(), key: None };
    let core = unique("rotcore");
    api.provision_core(&core).await;
    let old = certificate_ids(&iot, &core).await;
    assert_eq!(old.len(), 1);

    let response = api
        .http
        .post(format!("{}/certificateRotationTasks", api.base))
        .header("content-type", CDF)
        .body(json!({"targets": {"thingNames": [&core]}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202, "rotation is offered once the component's inbox exists");
    let task_id = response.headers()["x-taskid"].to_str().unwrap().to_owned();

    // The component on the core: its own key and CSR, as the IoT topic rule forwards them to the
    // inbox (with the thing name and kind from the topic, and the sender's certificate). Noise
    // is dropped, and so is a CSR sent for this core by another thing's certificate (first, so
    // it would win if it counted).
    let inbox = sqs.get_queue_url().queue_name(format!("{table}-rotation")).send().await.unwrap().queue_url.unwrap();
    sqs.send_message().queue_url(&inbox).message_body("not the component's").send().await.unwrap();
    let intruder = unique("intruder");
    api.provision_core(&intruder).await;
    let (_, forged) = ggprov_pki::make_csr(&core, ggprov_domain::provisioning::KeyAlgorithm::EcP256).unwrap();
    let message = json!({"thingName": &core, "kind": "csr", "request": &task_id, "csr": forged,
        "principal": certificate_ids(&iot, &intruder).await[0]});
    sqs.send_message().queue_url(&inbox).message_body(message.to_string()).send().await.unwrap();
    let (key, csr) = ggprov_pki::make_csr(&core, ggprov_domain::provisioning::KeyAlgorithm::EcP256).unwrap();
    let message = json!({"thingName": &core, "kind": "csr", "request": &task_id, "csr": csr, "principal": &old[0]});
    sqs.send_message().queue_url(&inbox).message_body(message.to_string()).send().await.unwrap();

    // ggprov signs it, registers the certificate and attaches it next to the old one; the task
    // waits for the core's word.
    let new_id = until_async("the new certificate on the thing", || async {
        let held = certificate_ids(&iot, &core).await;
        (held.len() == 2).then(|| held.into_iter().find(|id| *id != old[0]).unwrap())
    })
    .await;
    let described = iot.describe_certificate().certificate_id(&new_id).send().await.unwrap();
    let pem = described.certificate_description.unwrap().certificate_pem.unwrap();
    assert!(ggprov_pki::key_matches(&pem, &key).unwrap(), "the certificate is for the key the core made");
    let task = api.get(&format!("/certificateRotationTasks/{task_id}")).await;
    assert_eq!(task["taskStatus"], "InProgress", "{task}");

    // The core runs with it and says so: the old certificate goes, the record follows.
    let message = json!({"thingName": &core, "kind": "outcome", "request": &task_id, "status": "CONFIRMED",
        "certificateId": &new_id, "principal": &new_id});
    sqs.send_message().queue_url(&inbox).message_body(message.to_string()).send().await.unwrap();
    api.until(&format!("/certificateRotationTasks/{task_id}"), "the rotation", |t| t["taskStatus"] == "Success").await;
    assert_eq!(certificate_ids(&iot, &core).await, std::slice::from_ref(&new_id));
    assert!(iot.describe_certificate().certificate_id(&old[0]).send().await.is_err(), "the old certificate is deleted");
    let record = api.get(&format!("/cores/{core}")).await;
    assert_eq!(record["certificate"]["certificateId"], new_id.as_str());
}
