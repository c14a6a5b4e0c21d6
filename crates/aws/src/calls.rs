//! Counts of the calls this process makes to DynamoDB, SQS and S3, by service and operation
//! (an SDK interceptor on those clients), rendered by `/metrics` as `ggprov_aws_calls_total`.
//! One execution counts once, whatever its retries: it is what a route or a core costs.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

fn counts() -> &'static Mutex<BTreeMap<(String, String), u64>> {
    static COUNTS: OnceLock<Mutex<BTreeMap<(String, String), u64>>> = OnceLock::new();
    COUNTS.get_or_init(Mutex::default)
}

/// Calls made so far by `(service, operation)`, e.g. `("DynamoDB", "GetItem")`.
pub fn aws_calls() -> BTreeMap<(String, String), u64> {
    counts().lock().expect("call counts lock").clone()
}

/// The interceptor that counts.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallCounter;

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
            let key = (metadata.service().to_owned(), metadata.name().to_owned());
            *counts().lock().expect("call counts lock").entry(key).or_default() += 1;
        }
        Ok(())
    }
}

/// A DynamoDB client whose calls are counted.
pub(crate) fn dynamodb_client(config: &aws_config::SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(config).interceptor(CallCounter).build(),
    )
}

/// An SQS client whose calls are counted.
pub(crate) fn sqs_client(config: &aws_config::SdkConfig) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::from_conf(aws_sdk_sqs::config::Builder::from(config).interceptor(CallCounter).build())
}
