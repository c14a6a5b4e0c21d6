//! Counting the calls this backend makes to DynamoDB, SQS and S3, by service and operation (an
//! SDK interceptor on those clients), into the backend's [`StoreCalls`]. One call counts once,
//! whatever its retries: it is what a route or a core costs.

use std::sync::Arc;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use ggprov_domain::metrics::StoreCalls;

/// The interceptor that counts.
#[derive(Debug, Clone, Default)]
pub struct CallCounter(pub Arc<StoreCalls>);

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "ggprov call counter"
    }

    // Not `read_before_execution`: a client's interceptors see that before the operation's
    // metadata is in the bag.
    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(metadata) = cfg.load::<Metadata>() {
            self.0.record(metadata.service(), metadata.name());
        }
        Ok(())
    }
}

/// A DynamoDB client whose calls are counted.
pub(crate) fn dynamodb_client(config: &aws_config::SdkConfig, counter: &CallCounter) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(config).interceptor(counter.clone()).build(),
    )
}

/// An SQS client whose calls are counted.
pub(crate) fn sqs_client(config: &aws_config::SdkConfig, counter: &CallCounter) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::from_conf(aws_sdk_sqs::config::Builder::from(config).interceptor(counter.clone()).build())
}
