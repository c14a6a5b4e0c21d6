//! `EventPublisher` on EventBridge: outbox events become `PutEvents` entries on the
//! configured bus, with the CDF event source and detail types.

use async_trait::async_trait;
use aws_sdk_eventbridge::Client;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use ggprov_domain::cores::StoredEvent;
use ggprov_domain::ports::{CloudError, EventPublisher};

use crate::cloud_error;

/// Publishes to one event bus.
pub struct EventBridgePublisher {
    client: Client,
    bus: String,
    source: String,
}

impl EventBridgePublisher {
    pub fn new(client: Client, bus: impl Into<String>, source: impl Into<String>) -> Self {
        Self { client, bus: bus.into(), source: source.into() }
    }
}

#[async_trait]
impl EventPublisher for EventBridgePublisher {
    async fn publish(&self, events: &[StoredEvent]) -> Result<Vec<String>, CloudError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let entries = events
            .iter()
            .map(|e| {
                PutEventsRequestEntry::builder()
                    .event_bus_name(&self.bus)
                    .source(&self.source)
                    .detail_type(&e.event.detail_type)
                    .detail(e.event.detail.to_string())
                    .time(aws_smithy_types::DateTime::from_millis(e.time.as_millis()))
                    .build()
            })
            .collect();
        let out = self
            .client
            .put_events()
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| cloud_error("PutEvents", &e))?;
        // Entries answer in request order; one with an error code was not accepted.
        Ok(out
            .entries
            .unwrap_or_default()
            .iter()
            .zip(events)
            .filter(|(entry, _)| entry.error_code.is_some())
            .map(|(_, event)| event.id.clone())
            .collect())
    }
}
