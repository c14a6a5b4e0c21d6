//! `WorkQueue` on SQS: a standard queue with a redrive policy to its dead-letter queue. A
//! lease is the message's visibility timeout; a retry changes it; a dead letter is sent to
//! the dead-letter queue with its reason and deleted from the work queue.

use std::time::Duration;

use crate::store_error;
use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName, SendMessageBatchRequestEntry,
};
use ggprov_domain::ports::{BoxError, Delivery, Job, QueueDepth, ReadinessCheck, StoreError, WorkQueue};

/// The reason a job was dead-lettered travels as this message attribute.
const ERROR_ATTRIBUTE: &str = "ggprov-error";
/// SQS's longest visibility timeout.
const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 60 * 60);

fn seconds(d: Duration) -> i32 {
    i32::try_from(d.min(MAX_VISIBILITY).as_secs()).unwrap_or(i32::MAX)
}

/// An SQS work queue and its dead-letter queue.
#[derive(Clone)]
pub struct SqsQueue {
    client: Client,
    url: String,
    dead_letter_url: String,
    /// Long polling: how long a receive waits for a job when none is visible.
    wait: Duration,
}

/// Whether the error says the receipt no longer identifies a message in flight.
fn lost_lease(code: Option<&str>) -> bool {
    matches!(code, Some("ReceiptHandleIsInvalid" | "InvalidParameterValue" | "MessageNotInflight"))
        || code.is_some_and(|c| c.contains("ReceiptHandleIsInvalid") || c.contains("MessageNotInflight"))
}

impl SqsQueue {
    pub fn new(client: Client, url: impl Into<String>, dead_letter_url: impl Into<String>) -> Self {
        Self { client, url: url.into(), dead_letter_url: dead_letter_url.into(), wait: Duration::ZERO }
    }

    /// Receives wait up to `wait` (at most 20 s) for a job instead of answering empty at once:
    /// idle workers make one request per `wait`, not one per poll interval, and short polling's
    /// sampled empty answers disappear.
    #[must_use]
    pub fn with_long_polling(mut self, wait: Duration) -> Self {
        self.wait = wait.min(Duration::from_secs(20));
        self
    }

    /// Creates a work queue and its dead-letter queue (redrive after `max_receives`) when
    /// missing, for development and tests; returns their URLs.
    pub async fn create_queues(client: &Client, name: &str, max_receives: u32) -> Result<(String, String), StoreError> {
        let dlq = client
            .create_queue()
            .queue_name(format!("{name}-dlq"))
            .attributes(QueueAttributeName::MessageRetentionPeriod, "1209600")
            .send()
            .await
            .map_err(store_error)?
            .queue_url
            .unwrap_or_default();
        let dlq_arn = Self::queue_arn(client, &dlq).await?;
        let redrive = serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives}).to_string();
        let url = client
            .create_queue()
            .queue_name(name)
            .attributes(QueueAttributeName::RedrivePolicy, redrive)
            .send()
            .await
            .map_err(store_error)?
            .queue_url
            .unwrap_or_default();
        Ok((url, dlq))
    }

    pub async fn queue_arn(client: &Client, url: &str) -> Result<String, StoreError> {
        let out = client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(store_error)?;
        out.attributes
            .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
            .ok_or_else(|| StoreError::unavailable(format!("queue {url} has no ARN")))
    }

    async fn counts(&self, url: &str) -> Result<(u64, u64), StoreError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(store_error)?;
        let attrs = out.attributes.unwrap_or_default();
        let get = |name: &QueueAttributeName| attrs.get(name).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        Ok((
            get(&QueueAttributeName::ApproximateNumberOfMessages),
            get(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
                + get(&QueueAttributeName::ApproximateNumberOfMessagesDelayed),
        ))
    }
}

fn parse_job(body: &str) -> Job {
    serde_json::from_str(body).unwrap_or_else(|_| Job {
        // The worker dead-letters a job of unknown kind: a malformed message cannot loop.
        kind: "malformed".to_owned(),
        payload: serde_json::Value::String(body.chars().take(200).collect()),
    })
}

#[async_trait]
impl WorkQueue for SqsQueue {
    async fn enqueue(&self, jobs: &[Job]) -> Result<(), StoreError> {
        for chunk in jobs.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, job)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(serde_json::to_string(job).expect("jobs serialise"))
                        .build()
                        .expect("complete entry")
                })
                .collect();
            let out = self
                .client
                .send_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(store_error)?;
            if let Some(failed) = out.failed.first() {
                return Err(StoreError::unavailable(format!(
                    "SQS refused {} of {} jobs: {}",
                    out.failed.len(),
                    chunk.len(),
                    failed.message.as_deref().unwrap_or(&failed.code)
                )));
            }
        }
        Ok(())
    }

    async fn receive(&self, max: usize, lease: Duration) -> Result<Vec<Delivery>, StoreError> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(i32::try_from(max.clamp(1, 10)).unwrap_or(10))
            .visibility_timeout(seconds(lease))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .wait_time_seconds(seconds(self.wait))
            .send()
            .await
            .map_err(store_error)?;
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| {
                let attempt = m
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1);
                Some(Delivery {
                    job: parse_job(m.body.as_deref().unwrap_or("")),
                    message_id: m.message_id.clone().unwrap_or_default(),
                    receipt: m.receipt_handle?,
                    attempt,
                })
            })
            .collect())
    }

    async fn ack(&self, receipt: &str) -> Result<bool, StoreError> {
        match self.client.delete_message().queue_url(&self.url).receipt_handle(receipt).send().await {
            Ok(_) => Ok(true),
            Err(err) if lost_lease(aws_sdk_sqs::error::ProvideErrorMetadata::code(&err)) => Ok(false),
            Err(err) => Err(store_error(err)),
        }
    }

    async fn retry_later(&self, receipt: &str, delay: Duration, error: &str) -> Result<(), StoreError> {
        tracing::debug!(error, "job returns to the queue after its delay");
        self.extend_lease(receipt, delay).await.map(|_| ())
    }

    async fn extend_lease(&self, receipt: &str, lease: Duration) -> Result<bool, StoreError> {
        match self
            .client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .visibility_timeout(seconds(lease))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(err) if lost_lease(aws_sdk_sqs::error::ProvideErrorMetadata::code(&err)) => Ok(false),
            Err(err) => Err(store_error(err)),
        }
    }

    async fn requeue(&self, delivery: &Delivery, delay: Duration) -> Result<(), StoreError> {
        // SQS counts receives per message: a new message starts its attempts afresh.
        let delay = i32::try_from(delay.min(Duration::from_secs(900)).as_secs()).unwrap_or(900);
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(serde_json::to_string(&delivery.job).expect("jobs serialise"))
            .delay_seconds(delay)
            .send()
            .await
            .map_err(store_error)?;
        self.ack(&delivery.receipt).await.map(|_| ())
    }

    async fn dead_letter(&self, delivery: &Delivery, error: &str) -> Result<(), StoreError> {
        self.client
            .send_message()
            .queue_url(&self.dead_letter_url)
            .message_body(serde_json::to_string(&delivery.job).expect("jobs serialise"))
            .message_attributes(ERROR_ATTRIBUTE, attribute(error))
            .send()
            .await
            .map_err(store_error)?;
        // A crash between the copy and the delete leaves the job on both queues: it comes back
        // once more and is dead-lettered again (at least once, as everywhere).
        self.ack(&delivery.receipt).await.map(|_| ())
    }

    async fn depth(&self) -> Result<QueueDepth, StoreError> {
        let (visible, in_flight) = self.counts(&self.url).await?;
        let (dead_visible, dead_hidden) = self.counts(&self.dead_letter_url).await?;
        Ok(QueueDepth { visible, in_flight, dead: dead_visible + dead_hidden, oldest_wait_ms: None })
    }

    async fn dead_letters(&self) -> Result<Vec<(Job, String)>, StoreError> {
        let mut seen = std::collections::BTreeMap::new();
        loop {
            let out = self
                .client
                .receive_message()
                .queue_url(&self.dead_letter_url)
                .max_number_of_messages(10)
                .visibility_timeout(5)
                .message_attribute_names(ERROR_ATTRIBUTE)
                .send()
                .await
                .map_err(store_error)?;
            let messages = out.messages.unwrap_or_default();
            if messages.is_empty() {
                break;
            }
            for m in messages {
                let reason = m
                    .message_attributes
                    .as_ref()
                    .and_then(|a| a.get(ERROR_ATTRIBUTE))
                    .and_then(|v| v.string_value.clone())
                    .unwrap_or_else(|| "received more often than the queue's maxReceiveCount".to_owned());
                seen.insert(m.message_id.unwrap_or_default(), (parse_job(m.body.as_deref().unwrap_or("")), reason));
            }
        }
        Ok(seen.into_values().collect())
    }
}

#[async_trait]
impl ReadinessCheck for SqsQueue {
    fn name(&self) -> &'static str {
        "queue"
    }

    async fn check(&self) -> Result<(), BoxError> {
        self.counts(&self.url).await.map(|_| ()).map_err(Into::into)
    }
}

fn attribute(text: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder().data_type("String").string_value(text).build().expect("complete attribute")
}
