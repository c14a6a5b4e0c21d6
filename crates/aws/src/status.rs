//! `StatusFeed` on SQS: the ingest queue that EventBridge rules feed with Greengrass
//! deployment status events and IoT job execution events (shapes in `docs/aws.md`).

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use ggprov_domain::ports::{CloudError, DeploymentOutcome, ReceivedStatus, StatusFeed, StatusSignal};
use ggprov_domain::{ThingName, Timestamp};
use serde_json::Value;

use crate::cloud_error;

/// The ingest queue.
pub struct SqsStatusFeed {
    client: Client,
    url: String,
}

impl SqsStatusFeed {
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        Self { client, url: url.into() }
    }
}

/// What a message says, or `None` for a message ggprov does not act on (it is acknowledged).
pub fn parse_status_message(body: &str) -> Option<StatusSignal> {
    let envelope: Value = serde_json::from_str(body).ok()?;
    // An IoT job execution event as the IoT rule forwards it (no EventBridge envelope).
    if envelope.get("eventType").and_then(Value::as_str) == Some("JOB_EXECUTION") {
        let thing = envelope.get("thingArn").and_then(Value::as_str)?.rsplit_once("thing/")?.1;
        return ThingName::parse(thing).ok().map(StatusSignal::CoreChanged);
    }
    let detail = envelope.get("detail")?;
    // EventBridge's `time` is precise to the second; the event happened within that second,
    // so it counts as its last millisecond. Otherwise an outcome reported in the same second
    // as the deployment started would look older than the start and be ignored as stale.
    let time = envelope
        .get("time")
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<Timestamp>().ok())
        .map(|t| if t.as_millis() % 1000 == 0 { Timestamp::from_millis(t.as_millis() + 999).unwrap_or(t) } else { t })
        .unwrap_or_else(Timestamp::now);
    match envelope.get("detail-type").and_then(Value::as_str)? {
        "Greengrass V2 Effective Deployment Status Change" => {
            let core = detail.get("thingName").and_then(Value::as_str).map(str::to_owned).or_else(|| {
                envelope
                    .get("resources")?
                    .as_array()?
                    .iter()
                    .filter_map(Value::as_str)
                    .find_map(|arn| arn.split_once(":coreDevices:").map(|(_, name)| name.to_owned()))
            })?;
            let status = detail.get("coreDeviceExecutionStatus").and_then(Value::as_str)?;
            let succeeded = match status {
                "SUCCEEDED" | "COMPLETED" => true,
                "FAILED" | "REJECTED" | "TIMED_OUT" | "CANCELED" | "ABORTED" => false,
                _ => return None, // still running: nothing to record yet
            };
            let error_stack: Vec<&str> = detail
                .pointer("/statusDetails/errorStack")
                .and_then(Value::as_array)
                .map(|s| s.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            Some(StatusSignal::Outcome(DeploymentOutcome {
                position: 0,
                core_name: core,
                deployment_id: detail.get("deploymentId").and_then(Value::as_str)?.to_owned(),
                succeeded,
                detailed_status: if succeeded { "SUCCESSFUL".to_owned() } else { status.to_owned() },
                reason: detail
                    .get("reason")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .or_else(|| (!error_stack.is_empty()).then(|| error_stack.join(" > "))),
                time,
                nucleus: None,
            }))
        }
        // An IoT job execution event (forwarded by an IoT rule): the job of a Greengrass
        // deployment ended on a core; Greengrass is asked what it ended with.
        "IoT Job Execution" | "Job Execution Status Change" => {
            let thing = detail
                .get("thingName")
                .and_then(Value::as_str)
                .or_else(|| detail.get("thingArn").and_then(Value::as_str)?.rsplit_once("thing/").map(|(_, n)| n))?;
            ThingName::parse(thing).ok().map(StatusSignal::CoreChanged)
        }
        _ => None,
    }
}

#[async_trait]
impl StatusFeed for SqsStatusFeed {
    async fn receive(&self, max: u32) -> Result<Vec<ReceivedStatus>, CloudError> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(i32::try_from(max.clamp(1, 10)).unwrap_or(10))
            .visibility_timeout(60)
            .wait_time_seconds(0)
            .send()
            .await
            .map_err(|e| cloud_error("ReceiveMessage", &e))?;
        let mut received = Vec::new();
        let mut ignored = Vec::new();
        for message in out.messages.unwrap_or_default() {
            let Some(receipt) = message.receipt_handle else { continue };
            match message.body.as_deref().and_then(parse_status_message) {
                Some(signal) => received.push(ReceivedStatus { signal, receipt }),
                None => ignored.push(receipt),
            }
        }
        self.acknowledge(&ignored).await?;
        Ok(received)
    }

    async fn acknowledge(&self, receipts: &[String]) -> Result<(), CloudError> {
        for receipt in receipts {
            match self.client.delete_message().queue_url(&self.url).receipt_handle(receipt).send().await {
                Ok(_) => {}
                // A receipt of an earlier delivery: the message comes again and is applied again, harmlessly.
                Err(err) if cloud_error("DeleteMessage", &err).is_transient() => {
                    return Err(cloud_error("DeleteMessage", &err));
                }
                Err(_) => {}
            }
        }
        Ok(())
    }
}
