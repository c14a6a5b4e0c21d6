//! The AWS channel to the cores' certificate-rotation component (`ggprov.CertificateRotation`,
//! recipe from `ggprov rotation-component`):
//!
//! - ggprov publishes (AWS IoT data plane, `QoS` 1, retained so that a core offline now gets it
//!   when it connects) `ggprov/rotation/<thing>/request` `{"request", "keyAlgorithm"}` and, once
//!   signed, `ggprov/rotation/<thing>/certificate` `{"request", "certificatePem",
//!   "caCertificatePem"}`;
//! - the component publishes `ggprov/rotation/<thing>/csr` `{"request", "csr"}` and
//!   `ggprov/rotation/<thing>/outcome` `{"request", "status": "CONFIRMED" | "FAILED",
//!   "certificateId" | "reason"}`; an IoT topic rule (`infra/`) forwards both into an SQS queue
//!   with the topic's thing name and kind and the sender's certificate added (`thingName`,
//!   `kind`, `principal`: `principal()` in the rule). A message counts only when its sender's
//!   certificate is attached to the thing it names, so no core can speak for another (the
//!   Greengrass thing policy lets cores publish on any topic).
//!
//! Any worker that asks for a core's CSR or outcome first moves what the queue holds into the
//! table (`ROTMSG#<thing>` / `<request>#csr|outcome`, the first message of a kind wins), then
//! reads its own: stateless, and a crash between the write and the queue delete only repeats
//! an idempotent write.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use ggprov_domain::ThingName;
use ggprov_domain::ports::{CloudError, RotationChannel};
use ggprov_domain::provisioning::KeyAlgorithm;
use ggprov_domain::rotation::RotationOutcome;
use serde::Deserialize;

use crate::{AwsIot, cloud_error};
use ggprov_domain::ports::IotRegistry as _;

/// MQTT topics of the rotation component.
pub const TOPIC_PREFIX: &str = "ggprov/rotation";

/// Messages moved from the queue per CSR or outcome lookup, at most (10 a receive).
const PUMP_BATCHES: usize = 10;

/// The rotation channel over AWS IoT Core, an SQS inbox and the table.
#[derive(Clone)]
pub struct AwsRotationChannel {
    data: aws_sdk_iotdataplane::Client,
    sqs: aws_sdk_sqs::Client,
    inbox_url: String,
    dynamo: aws_sdk_dynamodb::Client,
    table: String,
    iot: AwsIot,
}

/// A message of the component, as the topic rule forwards it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Inbound {
    thing_name: String,
    kind: String,
    request: String,
    /// The sender's certificate id (`principal()` of the topic rule).
    #[serde(default)]
    principal: Option<String>,
}

impl AwsRotationChannel {
    pub fn new(
        data: aws_sdk_iotdataplane::Client,
        sqs: aws_sdk_sqs::Client,
        inbox_url: impl Into<String>,
        dynamo: aws_sdk_dynamodb::Client,
        table: impl Into<String>,
        iot: AwsIot,
    ) -> Self {
        Self { data, sqs, inbox_url: inbox_url.into(), dynamo, table: table.into(), iot }
    }

    /// Whether the message's sender holds a certificate attached to the thing it names.
    async fn sent_by_the_thing(&self, inbound: &Inbound) -> Result<bool, CloudError> {
        let Some(principal) = inbound.principal.as_deref().filter(|p| !p.is_empty()) else { return Ok(false) };
        let Ok(thing) = ThingName::parse(&inbound.thing_name) else { return Ok(false) };
        let suffix = format!("cert/{principal}");
        match self.iot.list_thing_principals(&thing).await {
            Ok(arns) => Ok(arns.iter().any(|arn| arn.ends_with(&suffix))),
            Err(err) if err.is_not_found() => Ok(false),
            Err(err) => Err(err),
        }
    }

    async fn publish(&self, core: &ThingName, leaf: &str, payload: serde_json::Value) -> Result<(), CloudError> {
        self.data
            .publish()
            .topic(format!("{TOPIC_PREFIX}/{core}/{leaf}"))
            .qos(1)
            .retain(true)
            .payload(aws_smithy_types::Blob::new(payload.to_string().into_bytes()))
            .send()
            .await
            .map_err(|e| cloud_error("Publish", &e))?;
        Ok(())
    }

    /// Moves what the inbox holds into the table. A message that is not the component's is
    /// dropped with a warning (it would never become one).
    async fn pump(&self) -> Result<(), CloudError> {
        for _ in 0..PUMP_BATCHES {
            let received = self
                .sqs
                .receive_message()
                .queue_url(&self.inbox_url)
                .max_number_of_messages(10)
                .wait_time_seconds(0)
                .send()
                .await
                .map_err(|e| cloud_error("ReceiveMessage", &e))?;
            let messages = received.messages.unwrap_or_default();
            if messages.is_empty() {
                return Ok(());
            }
            for message in messages {
                let body = message.body.unwrap_or_default();
                match serde_json::from_str::<Inbound>(&body) {
                    Ok(inbound) if matches!(inbound.kind.as_str(), "csr" | "outcome") => {
                        if self.sent_by_the_thing(&inbound).await? {
                            self.keep(&inbound, &body).await?;
                        } else {
                            tracing::warn!(
                                thing.name = %inbound.thing_name,
                                principal = inbound.principal.as_deref().unwrap_or("none"),
                                "rotation inbox: dropped a message whose sender holds no certificate of the thing it names"
                            );
                        }
                    }
                    Ok(inbound) => {
                        tracing::warn!(kind = %inbound.kind, "rotation inbox: dropped a message of unknown kind")
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "rotation inbox: dropped a message that is not the component's")
                    }
                }
                if let Some(receipt) = message.receipt_handle {
                    self.sqs
                        .delete_message()
                        .queue_url(&self.inbox_url)
                        .receipt_handle(receipt)
                        .send()
                        .await
                        .map_err(|e| cloud_error("DeleteMessage", &e))?;
                }
            }
        }
        Ok(())
    }

    /// Stores a message unless one of its kind is stored for the request (the first wins).
    async fn keep(&self, inbound: &Inbound, body: &str) -> Result<(), CloudError> {
        let result = self
            .dynamo
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(format!("ROTMSG#{}", inbound.thing_name)))
            .item("sk", AttributeValue::S(format!("{}#{}", inbound.request, inbound.kind)))
            .item("body", AttributeValue::S(body.to_owned()))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(()),
            Err(err) => Err(cloud_error("PutItem", &err)),
        }
    }

    /// The stored message of `kind` for the core's request, if any.
    async fn message(
        &self,
        core: &ThingName,
        request: &str,
        kind: &str,
    ) -> Result<Option<serde_json::Value>, CloudError> {
        let out = self
            .dynamo
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(format!("ROTMSG#{core}")))
            .key("sk", AttributeValue::S(format!("{request}#{kind}")))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| cloud_error("GetItem", &e))?;
        let Some(item) = out.item else { return Ok(None) };
        let Some(AttributeValue::S(body)) = item.get("body") else { return Ok(None) };
        Ok(serde_json::from_str(body).ok())
    }
}

#[async_trait]
impl RotationChannel for AwsRotationChannel {
    async fn csr(
        &self,
        core: &ThingName,
        request: &str,
        key_algorithm: KeyAlgorithm,
    ) -> Result<Option<String>, CloudError> {
        self.pump().await?;
        if let Some(csr) = self.message(core, request, "csr").await?.and_then(|m| m["csr"].as_str().map(str::to_owned))
        {
            return Ok(Some(csr));
        }
        // Asked again on every poll: the request is retained, so this only refreshes it.
        self.publish(core, "request", serde_json::json!({"request": request, "keyAlgorithm": key_algorithm})).await?;
        Ok(None)
    }

    async fn deliver(
        &self,
        core: &ThingName,
        request: &str,
        certificate_pem: &str,
        ca_certificate_pem: Option<&str>,
    ) -> Result<(), CloudError> {
        self.publish(
            core,
            "certificate",
            serde_json::json!({"request": request, "certificatePem": certificate_pem, "caCertificatePem": ca_certificate_pem}),
        )
        .await
    }

    async fn outcome(&self, core: &ThingName, request: &str) -> Result<RotationOutcome, CloudError> {
        self.pump().await?;
        let Some(message) = self.message(core, request, "outcome").await? else { return Ok(RotationOutcome::Pending) };
        Ok(match message["status"].as_str() {
            Some("CONFIRMED") => match message["certificateId"].as_str() {
                Some(id) => RotationOutcome::Confirmed { certificate_id: id.to_owned() },
                None => RotationOutcome::Failed { reason: "the core confirmed without naming its certificate".into() },
            },
            _ => RotationOutcome::Failed {
                reason: message["reason"]
                    .as_str()
                    .unwrap_or("the core's rotation component reported a failure")
                    .to_owned(),
            },
        })
    }
}

/// The component's name in Greengrass.
pub const COMPONENT_NAME: &str = "ggprov.CertificateRotation";

/// The component's program (Python 3 with the AWS IoT Device SDK v2, `openssl` on the core).
pub(crate) const COMPONENT_SCRIPT: &str = include_str!("rotation_component.py");

/// The recipe of the rotation component at `version`, for `CreateComponentVersion`. The
/// program travels base64-encoded in the recipe (no artifact bucket to reach from the core,
/// and no braces for the recipe's variable syntax to trip on). Its MQTT access is limited to
/// its own thing's rotation topics; it runs privileged, since it replaces the files the nucleus
/// authenticates with and restarts the nucleus.
pub fn component_recipe(version: &str) -> serde_json::Value {
    let program = aws_smithy_types::base64::encode(COMPONENT_SCRIPT);
    serde_json::json!({
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": COMPONENT_NAME,
        "ComponentVersion": version,
        "ComponentType": "aws.greengrass.generic",
        "ComponentDescription": "ggprov certificate rotation: makes the core's new key and CSR on the core, installs the certificate ggprov signs, restarts the nucleus with it and reports the outcome.",
        "ComponentPublisher": "ggprov",
        "ComponentConfiguration": {
            "DefaultConfiguration": {
                "certificateFilePath": "/greengrass/v2/thingCert.crt",
                "privateKeyPath": "/greengrass/v2/privKey.key",
                "restartCommand": "systemctl restart greengrass",
                "confirmWaitSecs": 300,
                "accessControl": {
                    "aws.greengrass.ipc.mqttproxy": {
                        "ggprov.CertificateRotation:mqttproxy:1": {
                            "policyDescription": "The rotation topics of this core's own thing only.",
                            "operations": ["aws.greengrass#PublishToIoTCore", "aws.greengrass#SubscribeToIoTCore"],
                            "resources": [format!("{TOPIC_PREFIX}/{{iot:thingName}}/*")]
                        }
                    }
                }
            }
        },
        "Manifests": [{
            "Platform": {"os": "linux"},
            "Lifecycle": {
                "Setenv": {
                    "GGPROV_CERT_PATH": "{configuration:/certificateFilePath}",
                    "GGPROV_KEY_PATH": "{configuration:/privateKeyPath}",
                    "GGPROV_RESTART_COMMAND": "{configuration:/restartCommand}",
                    "GGPROV_CONFIRM_WAIT_SECS": "{configuration:/confirmWaitSecs}",
                    "GGPROV_STATE_DIR": "{work:path}/state"
                },
                "Install": {"Script": "python3 -m pip install --quiet awsiotsdk", "RequiresPrivilege": true},
                "Run": {
                    "Script": format!("echo '{program}' | base64 -d > {{work:path}}/rotation.py && exec python3 -u {{work:path}}/rotation.py"),
                    "RequiresPrivilege": true
                }
            }
        }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recipe_carries_the_program_and_scopes_its_topics_to_its_own_thing() {
        let recipe = component_recipe("1.0.0");
        assert_eq!(
            (recipe["ComponentName"].as_str(), recipe["ComponentVersion"].as_str()),
            (Some(COMPONENT_NAME), Some("1.0.0"))
        );
        let run = recipe["Manifests"][0]["Lifecycle"]["Run"]["Script"].as_str().unwrap();
        let encoded = run.split('\'').nth(1).unwrap();
        let decoded = aws_smithy_types::base64::decode(encoded).unwrap();
        assert_eq!(String::from_utf8(decoded).unwrap(), COMPONENT_SCRIPT, "the program round-trips");
        assert!(!encoded.contains('{'), "no recipe variable syntax in the program text");
        let access = &recipe["ComponentConfiguration"]["DefaultConfiguration"]["accessControl"]["aws.greengrass.ipc.mqttproxy"]
            ["ggprov.CertificateRotation:mqttproxy:1"];
        assert_eq!(access["resources"], serde_json::json!(["ggprov/rotation/{iot:thingName}/*"]));
        // The program speaks the topics the channel and the topic rule use.
        for topic in ["/request", "/certificate", "\"csr\"", "\"outcome\""] {
            assert!(COMPONENT_SCRIPT.contains(topic), "{topic}");
        }
        assert!(COMPONENT_SCRIPT.contains("\"ggprov/rotation/\" + THING"));
        assert!(
            !COMPONENT_SCRIPT.contains("print(key") && !COMPONENT_SCRIPT.contains("publish(\"key"),
            "the key is never sent"
        );
    }
}
