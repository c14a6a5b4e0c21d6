#![doc = include_str!("../README.md")]
//! ggprov on AWS: the adapters behind the domain's ports when `GGPROV_BACKEND=aws`.
//!
//! Every adapter speaks the real AWS wire protocol through the AWS SDK for Rust; the tests
//! run them against `moto_server` and the test kit's Greengrass V2 fake. Endpoints,
//! credentials and region come from the standard AWS environment (`AWS_REGION`,
//! `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_<SERVICE>`, profiles, IMDS, ECS task roles).

mod backend;
mod ca;
mod calls;
mod dynamo;
mod events;
mod greengrass;
mod iot;
mod rotation;
mod s3;
mod sqs;
mod status;

use std::time::Duration;

use aws_smithy_runtime_api::http::Response as HttpResponse;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use ggprov_domain::ports::{CloudError, StoreError};

pub use backend::{AwsBackendSettings, AwsResources, connect};
pub use ca::SsmCertificateAuthorities;
pub use calls::CallCounter;
pub use dynamo::DynamoStore;
pub use events::EventBridgePublisher;
pub use greengrass::AwsGreengrass;
pub use iot::AwsIot;
pub use rotation::{
    AwsRotationChannel, COMPONENT_NAME as ROTATION_COMPONENT_NAME, TOPIC_PREFIX as ROTATION_TOPIC_PREFIX,
    component_recipe as rotation_component_recipe,
};
pub use s3::S3Artifacts;
pub use sqs::SqsQueue;
pub use status::{SqsStatusFeed, parse_status_message};

/// The shared SDK configuration: region, credentials and endpoints from the environment,
/// the standard retry mode with `attempts` tries per call (throttling and transient errors
/// back off exponentially with jitter), and bounded timeouts.
pub async fn sdk_config(attempts: u32) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(attempts.max(1)))
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(30))
                .build(),
        )
        .load()
        .await
}

/// S3 with path-style addressing when an endpoint override is set (moto, `MinIO`, `LocalStack`).
pub fn s3_client(config: &aws_config::SdkConfig, counter: &CallCounter) -> aws_sdk_s3::Client {
    let mut builder = aws_sdk_s3::config::Builder::from(config).interceptor(counter.clone());
    if std::env::var_os("AWS_ENDPOINT_URL").is_some() || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some() {
        builder = builder.force_path_style(true);
    }
    aws_sdk_s3::Client::from_conf(builder.build())
}

/// A store failure from an SDK error, with the service's code and message for the logs.
#[allow(clippy::needless_pass_by_value)] // used as `map_err(store_error)`
pub(crate) fn store_error<E, R>(err: aws_smithy_runtime_api::client::result::SdkError<E, R>) -> StoreError
where
    E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    // DynamoDB refuses records and keys over its limits with a ValidationException; the same
    // input will never fit, so it is the caller's error (413), not an outage (503).
    let message = err.as_service_error().and_then(|e| ProvideErrorMetadata::meta(e).message()).unwrap_or_default();
    if message.contains("Item size has exceeded") || message.contains("Item size to update has exceeded") {
        return StoreError::TooLarge("a DynamoDB record holds at most 400 KB".to_owned());
    }
    if message.contains("key") && message.contains("size") {
        return StoreError::TooLarge("a DynamoDB key holds at most 2048 bytes (partition) and 1024 (sort)".to_owned());
    }
    StoreError::Unavailable(aws_smithy_types::error::display::DisplayErrorContext(&err).to_string().into())
}

/// Maps an SDK error to the domain's cloud error by its AWS error code (and HTTP status).
pub(crate) fn cloud_error<E>(
    api: &'static str,
    err: &aws_smithy_runtime_api::client::result::SdkError<E, HttpResponse>,
) -> CloudError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    let code = err.code().unwrap_or_default();
    let message = err.message().unwrap_or(code).to_owned();
    match (code, status) {
        ("ResourceNotFoundException" | "NotFoundException" | "NoSuchEntity" | "ParameterNotFound", _)
        | (_, Some(404)) => CloudError::NotFound { api, message },
        ("ResourceAlreadyExistsException", _) => CloudError::AlreadyExists { api, message, resource_id: None },
        ("ThrottlingException" | "TooManyRequestsException" | "Throttling" | "RequestLimitExceeded", _)
        | (_, Some(429)) => CloudError::Throttled { api },
        (_, Some(400..=499)) => CloudError::Rejected { api, message },
        _ => CloudError::Unavailable {
            api,
            source: aws_smithy_types::error::display::DisplayErrorContext(err).to_string().into(),
        },
    }
}
