//! `TemplateStore` and `CoreStore` on one DynamoDB table (design: `docs/aws.md`).
//!
//! Every record is one item under `pk`/`sk`. Records that are read as a whole carry a JSON
//! `doc`; what conditions, indexes and counters need is kept in attributes beside it. Three
//! sparse, all-projecting global secondary indexes (`gsi1`..`gsi3`) serve the listings and
//! the background scans. A state change, its counters and its outbox event are written in one
//! `TransactWriteItems`, conditioned on the revision read (optimistic concurrency).

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, TransactWriteItem,
};
use ggprov_domain::ports::{BoxError, ReadinessCheck, StoreError};

pub(crate) use crate::store_error;

/// Whether an error is DynamoDB's `ConditionalCheckFailedException`.
pub(crate) fn condition_failed<E: aws_sdk_dynamodb::error::ProvideErrorMetadata>(err: &E) -> bool {
    err.code() == Some("ConditionalCheckFailedException")
}

/// The outcome of a conditional write whose losing condition changed nothing, which the caller
/// accepts (a release of what is no longer ours, a second completion).
pub(crate) fn unless_condition_failed<T, E, R>(
    result: Result<T, aws_smithy_runtime_api::client::result::SdkError<E, R>>,
) -> Result<(), StoreError>
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match result {
        Ok(_) => Ok(()),
        Err(err) if err.as_service_error().is_some_and(condition_failed) => Ok(()),
        Err(err) => Err(store_error(err)),
    }
}

pub(crate) type Item = HashMap<String, aws_sdk_dynamodb::types::AttributeValue>;
pub(crate) use aws_sdk_dynamodb::types::AttributeValue as Av;

/// Shards of the fleet counters and of the outbox and open-item indexes: writes spread over
/// this many partition keys, reads visit them all.
pub(crate) const SHARDS: u64 = 8;

/// The DynamoDB adapter: one table, named by configuration.
#[derive(Clone)]
pub struct DynamoStore {
    pub(crate) client: Client,
    pub(crate) table: String,
}

pub(crate) fn unavailable(err: impl Into<BoxError>) -> StoreError {
    StoreError::Unavailable(err.into())
}

pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    unavailable(format!("stored data is invalid: {what}"))
}

pub(crate) fn s(value: impl Into<String>) -> Av {
    Av::S(value.into())
}

#[allow(clippy::needless_pass_by_value)] // numbers are passed by value
pub(crate) fn n(value: impl ToString) -> Av {
    Av::N(value.to_string())
}

pub(crate) fn get_s<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    match item.get(name) {
        Some(Av::S(text)) => Ok(text),
        _ => Err(corrupt(format!("attribute {name} missing"))),
    }
}

pub(crate) fn opt_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    match item.get(name) {
        Some(Av::S(text)) => Some(text),
        _ => None,
    }
}

pub(crate) fn get_n<T: std::str::FromStr>(item: &Item, name: &str) -> Result<T, StoreError> {
    opt_n(item, name)?.ok_or_else(|| corrupt(format!("number {name} missing")))
}

pub(crate) fn opt_n<T: std::str::FromStr>(item: &Item, name: &str) -> Result<Option<T>, StoreError> {
    match item.get(name) {
        Some(Av::N(text)) => text.parse().map(Some).map_err(|_| corrupt(format!("number {name}"))),
        _ => Ok(None),
    }
}

pub(crate) fn doc<T: serde::de::DeserializeOwned>(item: &Item) -> Result<T, StoreError> {
    serde_json::from_str(get_s(item, "doc")?).map_err(corrupt)
}

pub(crate) fn to_doc<T: serde::Serialize>(value: &T) -> Av {
    s(serde_json::to_string(value).expect("records serialise"))
}

/// A stable shard for a key (FNV-1a), so one core always moves the same counter items.
pub(crate) fn shard_of(key: &str) -> u64 {
    ggprov_domain::hash::fnv1a(key.as_bytes()) % SHARDS
}

/// `key = value` pairs of a primary key.
pub(crate) fn key(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

/// Why a transaction did not commit.
#[derive(Debug)]
pub(crate) enum TxError {
    /// A condition failed or another transaction touched the same items: re-read and retry.
    Cancelled(Vec<String>),
    Store(StoreError),
}

impl From<StoreError> for TxError {
    fn from(err: StoreError) -> Self {
        Self::Store(err)
    }
}

/// How often a read-modify-write is tried before the store reports a conflict.
pub(crate) const MAX_TRIES: usize = 16;

/// Builds a transaction with `$build` (an expression of type
/// `Result<Option<Vec<TransactWriteItem>>, StoreError>`; `None` = nothing to do) and commits
/// it, building again after a cancellation. With `fenced` true, the first write is a fence:
/// when its own condition fails the store reports a conflict at once instead of building again
/// (a journal saved by another writer stays saved however often this one re-reads the rest).
macro_rules! retry_tx {
    ($store:expr, $build:block) => {
        retry_tx!($store, false, $build)
    };
    ($store:expr, $fenced:expr, $build:block) => {{
        let mut result = Err(ggprov_domain::ports::StoreError::Conflict);
        for _ in 0..$crate::dynamo::MAX_TRIES {
            let built: Result<Option<Vec<TransactWriteItem>>, ggprov_domain::ports::StoreError> =
                async { $build }.await;
            let Some(writes) = built? else {
                result = Ok(());
                break;
            };
            match $store.transact(writes).await {
                Ok(()) => {
                    result = Ok(());
                    break;
                }
                Err($crate::dynamo::TxError::Cancelled(reasons))
                    if $fenced && reasons.first().is_some_and(|r| r == "ConditionalCheckFailed") =>
                {
                    break;
                }
                Err($crate::dynamo::TxError::Cancelled(_)) => continue,
                Err($crate::dynamo::TxError::Store(err)) => {
                    result = Err(err);
                    break;
                }
            }
        }
        result
    }};
}

mod applications;
mod certificates;
mod claims;
mod cores;
mod cursors;
mod deployments;
mod devices;
mod fleet;
mod idempotency;
mod journals;
mod outbox;
mod rollouts;
mod software_updates;
mod tasks;
mod templates;
mod versioned;

/// A `Query` to run: which index, which partition, which range of sort keys.
pub(crate) struct Query<'a> {
    pub index: Option<&'a str>,
    pub pk: String,
    /// `begins_with(sk, prefix)` when there is no `after`/`before`.
    pub prefix: Option<String>,
    /// Only sort keys strictly greater than this.
    pub after: Option<String>,
    /// Only sort keys strictly less than this (newest-first reads). With `after` too, both
    /// bounds are inclusive (`BETWEEN`): callers pass bounds no sort key equals.
    pub before: Option<String>,
    pub forward: bool,
    /// Stop once this many items are collected (all pages otherwise).
    pub limit: Option<usize>,
    /// An optional filter, with its value placeholders.
    pub filter: Option<(String, Vec<(String, Av)>)>,
}

impl<'a> Query<'a> {
    pub(crate) fn partition(index: Option<&'a str>, pk: impl Into<String>) -> Self {
        Self { index, pk: pk.into(), prefix: None, after: None, before: None, forward: true, limit: None, filter: None }
    }
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    /// Creates the table with its indexes when it does not exist (development and tests;
    /// production tables come from `infra/`).
    pub async fn create_table_if_missing(&self) -> Result<(), StoreError> {
        match self.client.describe_table().table_name(&self.table).send().await {
            Ok(_) => return Ok(()),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => {}
            Err(err) => return Err(store_error(err)),
        }
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("complete attribute definition")
        };
        let keys = |pk: &str, sk: &str| {
            vec![
                KeySchemaElement::builder().attribute_name(pk).key_type(KeyType::Hash).build().expect("key"),
                KeySchemaElement::builder().attribute_name(sk).key_type(KeyType::Range).build().expect("key"),
            ]
        };
        let mut create = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .set_key_schema(Some(keys("pk", "sk")))
            .attribute_definitions(attr("pk"))
            .attribute_definitions(attr("sk"));
        for index in ["gsi1", "gsi2", "gsi3"] {
            let (pk, sk) = (format!("{index}pk"), format!("{index}sk"));
            create = create.attribute_definitions(attr(&pk)).attribute_definitions(attr(&sk)).global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(index)
                    .set_key_schema(Some(keys(&pk, &sk)))
                    .projection(Projection::builder().projection_type(ProjectionType::All).build())
                    .build()
                    .expect("complete index"),
            );
        }
        match create.send().await {
            Ok(_) => Ok(()),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_resource_in_use_exception()) => Ok(()),
            Err(err) => Err(store_error(err)),
        }
    }

    pub(crate) async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(store_error)?;
        Ok(out.item)
    }

    /// Which of the keys exist: `BatchGetItem`, 100 keys a call, unprocessed keys asked again.
    pub(crate) async fn existing_keys(&self, keys: Vec<Item>) -> Result<Vec<Item>, StoreError> {
        self.batch_get(keys, Some("pk, sk")).await
    }

    /// The items of the keys that exist (with `projection`, only those attributes).
    pub(crate) async fn batch_get(&self, keys: Vec<Item>, projection: Option<&str>) -> Result<Vec<Item>, StoreError> {
        let mut found = Vec::new();
        for chunk in keys.chunks(100) {
            let mut pending = Some(
                aws_sdk_dynamodb::types::KeysAndAttributes::builder()
                    .set_keys(Some(chunk.to_vec()))
                    .consistent_read(true)
                    .set_projection_expression(projection.map(str::to_owned))
                    .build()
                    .expect("keys given"),
            );
            let mut rounds = 0;
            while let Some(request) = pending.take() {
                rounds += 1;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(store_error)?;
                found.extend(out.responses.and_then(|mut r| r.remove(&self.table)).unwrap_or_default());
                pending = out.unprocessed_keys.and_then(|mut u| u.remove(&self.table)).filter(|k| !k.keys.is_empty());
                if pending.is_some() {
                    if rounds >= MAX_TRIES {
                        return Err(StoreError::unavailable("BatchGetItem left keys unprocessed"));
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(20 * rounds as u64)).await;
                }
            }
        }
        Ok(found)
    }

    pub(crate) async fn delete(&self, pk: &str, sk: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .send()
            .await
            .map_err(store_error)?;
        Ok(())
    }

    /// Runs a query through all its pages (or until `limit` items).
    pub(crate) async fn query(&self, q: Query<'_>) -> Result<Vec<Item>, StoreError> {
        let (pk_attr, sk_attr) = match q.index {
            Some(index) => (format!("{index}pk"), format!("{index}sk")),
            None => ("pk".to_owned(), "sk".to_owned()),
        };
        let mut condition = "#pk = :pk".to_owned();
        let mut values: Item = HashMap::from([(":pk".to_owned(), s(q.pk.clone()))]);
        match (&q.after, &q.before, &q.prefix) {
            // Both bounds: inclusive, so callers pass bounds no sort key equals.
            (Some(after), Some(before), _) => {
                condition.push_str(" AND #sk BETWEEN :after AND :before");
                values.insert(":after".into(), s(after.clone()));
                values.insert(":before".into(), s(before.clone()));
            }
            (Some(after), None, _) => {
                condition.push_str(" AND #sk > :after");
                values.insert(":after".into(), s(after.clone()));
            }
            (None, Some(before), _) => {
                condition.push_str(" AND #sk < :before");
                values.insert(":before".into(), s(before.clone()));
            }
            (None, None, Some(prefix)) => {
                condition.push_str(" AND begins_with(#sk, :prefix)");
                values.insert(":prefix".into(), s(prefix.clone()));
            }
            (None, None, None) => {}
        }
        // An upper bound for `after` within the prefix: `prefix` + U+FFFF.
        if let (Some(_), Some(prefix)) = (&q.after, &q.prefix) {
            condition = "#pk = :pk AND #sk BETWEEN :after AND :end".to_owned();
            values.insert(":end".into(), s(format!("{prefix}\u{ffff}")));
        }
        let mut names = HashMap::from([("#pk".to_owned(), pk_attr.clone())]);
        if condition.contains("#sk") {
            names.insert("#sk".to_owned(), sk_attr.clone());
        }
        let mut filter = None;
        if let Some((expression, filter_values)) = &q.filter {
            filter = Some(expression.clone());
            values.extend(filter_values.iter().cloned());
        }
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .set_index_name(q.index.map(str::to_owned))
                .key_condition_expression(&condition)
                .set_filter_expression(filter.clone())
                .set_expression_attribute_names(Some(names.clone()))
                .set_expression_attribute_values(Some(values.clone()))
                .scan_index_forward(q.forward)
                .set_consistent_read(q.index.is_none().then_some(true))
                .set_exclusive_start_key(start.take())
                .set_limit(
                    q.limit.filter(|_| filter.is_none()).map(|l| i32::try_from(l - items.len()).unwrap_or(i32::MAX)),
                )
                .send()
                .await
                .map_err(store_error)?;
            let mut page = out.items.unwrap_or_default();
            // BETWEEN is inclusive: drop the `after` key itself.
            if let Some(after) = &q.after {
                page.retain(|item| opt_s(item, &sk_attr) != Some(after.as_str()));
            }
            items.extend(page);
            if q.limit.is_some_and(|l| items.len() >= l) {
                items.truncate(q.limit.unwrap_or(usize::MAX));
                return Ok(items);
            }
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(items),
            }
        }
    }

    /// Commits the writes atomically; `Cancelled` when a condition failed or a concurrent
    /// transaction interfered.
    pub(crate) async fn transact(&self, writes: Vec<TransactWriteItem>) -> Result<(), TxError> {
        if writes.is_empty() {
            return Ok(());
        }
        match self.client.transact_write_items().set_transact_items(Some(writes)).send().await {
            Ok(_) => Ok(()),
            Err(err) => match err.as_service_error() {
                Some(service) if service.is_transaction_canceled_exception() => {
                    let reasons = match service {
                        aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(e) => e
                            .cancellation_reasons()
                            .iter()
                            .map(|r| r.code().unwrap_or("None").to_owned())
                            .collect(),
                        _ => Vec::new(),
                    };
                    Err(TxError::Cancelled(reasons))
                }
                _ => Err(TxError::Store(store_error(err))),
            },
        }
    }

    /// Deletes items by key, 25 a call, retrying what DynamoDB leaves unprocessed.
    pub(crate) async fn delete_all(&self, keys: Vec<Item>) -> Result<(), StoreError> {
        use aws_sdk_dynamodb::types::{DeleteRequest, WriteRequest};
        let requests: Vec<WriteRequest> = keys
            .into_iter()
            .map(|k| {
                WriteRequest::builder()
                    .delete_request(DeleteRequest::builder().set_key(Some(k)).build().expect("key given"))
                    .build()
            })
            .collect();
        self.write_batches(requests).await
    }

    pub(crate) async fn put_all(&self, items: Vec<Item>) -> Result<(), StoreError> {
        use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
        let requests: Vec<WriteRequest> = items
            .into_iter()
            .map(|i| {
                WriteRequest::builder()
                    .put_request(PutRequest::builder().set_item(Some(i)).build().expect("item given"))
                    .build()
            })
            .collect();
        self.write_batches(requests).await
    }

    async fn write_batches(&self, requests: Vec<aws_sdk_dynamodb::types::WriteRequest>) -> Result<(), StoreError> {
        for chunk in requests.chunks(25) {
            let mut pending = chunk.to_vec();
            for attempt in 0..10u32 {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, pending.clone())
                    .send()
                    .await
                    .map_err(store_error)?;
                pending = out.unprocessed_items.and_then(|mut m| m.remove(&self.table)).unwrap_or_default();
                if pending.is_empty() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50 << attempt.min(6))).await;
            }
            if !pending.is_empty() {
                return Err(unavailable("DynamoDB left writes unprocessed after 10 tries"));
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl ReadinessCheck for DynamoStore {
    fn name(&self) -> &'static str {
        "store"
    }

    async fn check(&self) -> Result<(), BoxError> {
        self.client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|e| BoxError::from(store_error(e)))?;
        Ok(())
    }
}
