//! The AWS backend, connected: `connect` builds the adapter behind every port from the
//! settings and the standard AWS environment (region, credentials, endpoints), including its
//! development bootstrap (`GGPROV_AWS_CREATE_RESOURCES`: table, bucket, queues, the Greengrass
//! policies and a development CA). Production gets those from `infra/`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use aws_config::retry::RetryConfig;
use ggprov_domain::backend::{Adapters, GREENGRASS_CORE_POLICY, NoObserver, TOKEN_EXCHANGE_POLICY};
use ggprov_domain::ports::{CloudError, EventPublisher, IotRegistry as _, ReceivedStatus, StatusFeed};

use crate::{
    AwsGreengrass, AwsIot, DynamoStore, EventBridgePublisher, S3Artifacts, SqsQueue, SqsStatusFeed,
    SsmCertificateAuthorities, s3_client, sdk_config,
};

/// The AWS resources of AWS mode (`GGPROV_AWS_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsResources {
    pub table: String,
    pub work_queue_url: Option<String>,
    pub work_dlq_url: Option<String>,
    pub status_queue_url: Option<String>,
    /// The rotation component's inbox (`None`: rotation tasks are refused).
    pub rotation_queue_url: Option<String>,
    pub bucket: Option<String>,
    pub kms_key: Option<String>,
    pub event_bus: Option<String>,
    /// Development: create the table, bucket, queues, policies and a CA when missing.
    pub create_resources: bool,
    /// Presigned download links' validity; `None`: no links.
    pub presign_secs: Option<u64>,
    /// SQS long polling of idle workers.
    pub queue_wait_secs: u64,
}

/// Everything AWS mode is built from: its resources and the shared settings it needs.
#[derive(Debug, Clone)]
pub struct AwsBackendSettings {
    pub resources: AwsResources,
    /// Used when the environment names no region.
    pub region: String,
    /// Attempts per call of the clients that have their own retry (`GGPROV_CALL_ATTEMPTS`).
    pub call_attempts: u32,
    /// Deliveries of a job before it is dead-lettered (`GGPROV_MAX_ATTEMPTS`): the work queue's
    /// redrive allows two more, for crash loops.
    pub max_attempts: u32,
    pub default_ca: Option<String>,
    /// EventBridge `source` of published events.
    pub event_source: String,
}

pub async fn connect(settings: &AwsBackendSettings) -> anyhow::Result<Adapters> {
    let aws = &settings.resources;
    let sdk = sdk_config(settings.call_attempts).await;
    let region = sdk.region().map_or_else(|| settings.region.clone(), ToString::to_string);
    let counter = crate::CallCounter::default();
    let dynamo = DynamoStore::new(crate::calls::dynamodb_client(&sdk, &counter), &aws.table);
    let sqs = crate::calls::sqs_client(&sdk, &counter);
    let mut work = (aws.work_queue_url.clone(), aws.work_dlq_url.clone());
    let mut status_queue = aws.status_queue_url.clone();
    let mut rotation_queue = aws.rotation_queue_url.clone();
    let bucket = aws.bucket.clone().unwrap_or_else(|| format!("{}-artifacts", aws.table));
    let mut artifacts = S3Artifacts::new(s3_client(&sdk, &counter), &bucket, aws.kms_key.clone());
    if let Some(secs) = aws.presign_secs {
        artifacts = artifacts.with_download_links(Duration::from_secs(secs));
    }
    if aws.create_resources {
        dynamo.create_table_if_missing().await.context("creating the DynamoDB table")?;
        artifacts.create_bucket_if_missing().await.context("creating the S3 bucket")?;
        if work.0.is_none() || work.1.is_none() {
            let (url, dlq) = SqsQueue::create_queues(&sqs, &format!("{}-work", aws.table), settings.max_attempts + 2)
                .await
                .context("creating the work queues")?;
            work = (Some(url), Some(dlq));
        }
        if status_queue.is_none() {
            let (url, _) = SqsQueue::create_queues(&sqs, &format!("{}-status", aws.table), 10)
                .await
                .context("creating the status queue")?;
            status_queue = Some(url);
        }
        if rotation_queue.is_none() {
            let (url, _) = SqsQueue::create_queues(&sqs, &format!("{}-rotation", aws.table), 10)
                .await
                .context("creating the rotation queue")?;
            rotation_queue = Some(url);
        }
    }
    let (Some(work_url), Some(dlq_url)) = work else {
        anyhow::bail!("GGPROV_AWS_WORK_QUEUE_URL and GGPROV_AWS_WORK_DLQ_URL are required with GGPROV_BACKEND=aws");
    };
    // Idle workers wait on the queue a while (ingestion and the event relay run between waits).
    let queue = Arc::new(
        SqsQueue::new(sqs.clone(), work_url, dlq_url).with_long_polling(Duration::from_secs(aws.queue_wait_secs)),
    );
    // One retry layer per call (decision 44): the IoT and Greengrass clients behind the ports
    // make one attempt, since the root's pacing decorator retries every call to them; the
    // other clients keep the SDK's standard retry.
    let single_attempt = sdk.to_builder().retry_config(RetryConfig::disabled()).build();
    let iot = AwsIot::new(aws_sdk_iot::Client::new(&single_attempt));
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    let mut default_ca = settings.default_ca.clone();
    if aws.create_resources {
        ensure_greengrass_policies(&iot).await.context("creating the Greengrass IoT policies")?;
        if default_ca.is_none() {
            default_ca = Some(
                development_ca(&aws_sdk_iot::Client::new(&sdk), &ssm, &aws.table)
                    .await
                    .context("creating the development CA")?,
            );
        }
    }
    let greengrass =
        Arc::new(AwsGreengrass::new(aws_sdk_greengrassv2::Client::new(&single_attempt), iot.clone(), region.clone()));
    let cas = Arc::new(SsmCertificateAuthorities::new(AwsIot::new(aws_sdk_iot::Client::new(&sdk)), ssm, default_ca));
    let feed: Arc<dyn StatusFeed> = match status_queue {
        Some(url) => Arc::new(SqsStatusFeed::new(sqs.clone(), url)),
        None => Arc::new(NoStatus),
    };
    let publisher = aws.event_bus.as_ref().map(|bus| -> Arc<dyn EventPublisher> {
        Arc::new(EventBridgePublisher::new(aws_sdk_eventbridge::Client::new(&sdk), bus, &settings.event_source))
    });
    let rotation: Arc<dyn ggprov_domain::ports::RotationChannel> = match rotation_queue {
        Some(url) => Arc::new(crate::rotation::AwsRotationChannel::new(
            aws_sdk_iotdataplane::Client::new(&sdk),
            sqs.clone(),
            url,
            crate::calls::dynamodb_client(&sdk, &counter),
            &aws.table,
            AwsIot::new(aws_sdk_iot::Client::new(&sdk)),
        )),
        None => Arc::new(ggprov_domain::backend::NoRotationChannel(
            "certificate rotation in AWS mode needs the rotation component's inbox: set GGPROV_AWS_ROTATION_QUEUE_URL (infra/ creates it and the IoT rule that feeds it)",
        )),
    };
    let store = Arc::new(dynamo);
    Ok(Adapters {
        templates: store.clone(),
        applications: store.clone(),
        region: region.clone(),
        store: store.clone(),
        queue: queue.clone(),
        artifacts: Arc::new(artifacts),
        iot: Arc::new(iot),
        greengrass,
        cas,
        feed,
        observer: Arc::new(NoObserver),
        rotation,
        publisher,
        readiness: vec![store, queue],
        store_calls: Some(counter.0),
    })
}

/// Development on AWS (`GGPROV_AWS_CREATE_RESOURCES`): the IoT policies the bundled core
/// template attaches, as the embedded default's local cloud has them. Production gets them from
/// `infra/` (`CreateGreengrassPolicies`).
async fn ensure_greengrass_policies(iot: &AwsIot) -> anyhow::Result<()> {
    let core = serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Action": ["iot:Connect", "iot:Publish", "iot:Subscribe", "iot:Receive", "greengrass:*"], "Resource": "*"}]});
    let token = serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Action": "iot:AssumeRoleWithCertificate", "Resource": "*"}]});
    for (name, document) in [(GREENGRASS_CORE_POLICY, core), (TOKEN_EXCHANGE_POLICY, token)] {
        if !iot.policy_exists(name).await? {
            match iot.create_policy(name, &document.to_string()).await {
                Ok(()) | Err(CloudError::AlreadyExists { .. }) => {}
                Err(err) => return Err(err.into()),
            }
        }
    }
    Ok(())
}

/// Development on AWS without `GGPROV_DEFAULT_CA`: a development CA, CDF style (certificate
/// registered with IoT, key in SSM as `cdf-ca-key-<id>`), made once per table and remembered
/// in the SSM parameter `ggprov-<table>-development-ca`.
async fn development_ca(iot: &aws_sdk_iot::Client, ssm: &aws_sdk_ssm::Client, table: &str) -> anyhow::Result<String> {
    let marker = format!("ggprov-{table}-development-ca");
    if let Ok(out) = ssm.get_parameter().name(&marker).send().await
        && let Some(id) = out.parameter.and_then(|p| p.value)
    {
        return Ok(id);
    }
    let minted = ggprov_pki::create_ca("ggprov development CA", 3650)?;
    let id = iot
        .register_ca_certificate()
        .ca_certificate(&minted.certificate_pem)
        .certificate_mode(aws_sdk_iot::types::CertificateMode::SniOnly)
        .set_as_active(true)
        .send()
        .await
        .context("RegisterCACertificate")?
        .certificate_id
        .context("RegisterCACertificate answered no id")?;
    ssm.put_parameter()
        .name(SsmCertificateAuthorities::key_parameter(&id))
        .value(minted.private_key.expose())
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .overwrite(true)
        .send()
        .await
        .context("PutParameter of the CA key")?;
    ssm.put_parameter()
        .name(&marker)
        .value(&id)
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .overwrite(true)
        .send()
        .await
        .with_context(|| format!("PutParameter {marker}"))?;
    tracing::info!(ca.id = %id, "created the development CA (IoT + SSM); it signs certificates when a request names no caId");
    Ok(id)
}

/// No status queue configured: outcomes come from reconciliation alone.
struct NoStatus;

#[async_trait::async_trait]
impl StatusFeed for NoStatus {
    async fn receive(&self, _max: u32) -> Result<Vec<ReceivedStatus>, CloudError> {
        Ok(Vec::new())
    }

    async fn acknowledge(&self, _receipts: &[String]) -> Result<(), CloudError> {
        Ok(())
    }
}
