//! `Greengrass` on AWS IoT Greengrass V2: component lookups, core devices, client-device
//! associations and deployments, with pagination everywhere. Deployments target thing
//! groups by ARN, which IoT resolves.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_greengrassv2::Client;
use aws_sdk_greengrassv2::types::{
    AssociateClientDeviceWithCoreDeviceEntry, ComponentConfigurationUpdate, ComponentDeploymentSpecification,
    ComponentRunWith, DeploymentComponentUpdatePolicy, DeploymentConfigurationValidationPolicy,
    DeploymentIoTJobConfiguration, DeploymentPolicies, DisassociateClientDeviceFromCoreDeviceEntry, IoTJobAbortConfig,
    IoTJobAbortCriteria, IoTJobExecutionsRolloutConfig, IoTJobExponentialRolloutRate, IoTJobRateIncreaseCriteria,
    IoTJobTimeoutConfig, SystemResourceLimits,
};
use ggprov_domain::ports::{
    CloudError, ComponentSpec, CoreDevice, DeploymentRequest, EffectiveDeployment, Greengrass, InstalledComponent,
};
use ggprov_domain::software::PlatformSupport;
use ggprov_domain::{ComponentName, ComponentVersion, ThingName, Timestamp};
use serde_json::Value;

use crate::{AwsIot, cloud_error};

/// Greengrass V2 of the account and region of the SDK configuration.
pub struct AwsGreengrass {
    client: Client,
    iot: AwsIot,
    region: String,
}

impl AwsGreengrass {
    /// `DescribeComponent` of a public component version first, then of the account's own
    /// component of that name; `None` when neither exists.
    async fn describe_component(
        &self,
        name: &ComponentName,
        version: &ComponentVersion,
    ) -> Result<Option<aws_sdk_greengrassv2::operation::describe_component::DescribeComponentOutput>, CloudError> {
        let described = |arn: String| async move {
            not_found_is_none(
                self.client
                    .describe_component()
                    .arn(arn)
                    .send()
                    .await
                    .map_err(|e| cloud_error("DescribeComponent", &e)),
            )
        };
        let public = format!(
            "arn:aws:greengrass:{}:aws:components:{}:versions:{}",
            self.region,
            name.as_str(),
            version.as_str()
        );
        if let Some(found) = described(public).await? {
            return Ok(Some(found));
        }
        match self.private_component_arn(name).await? {
            Some(arn) => described(format!("{arn}:versions:{}", version.as_str())).await,
            None => Ok(None),
        }
    }

    pub fn new(client: Client, iot: AwsIot, region: impl Into<String>) -> Self {
        Self { client, iot, region: region.into() }
    }

    /// The ARN (without version) of the account's private component with this name, if any.
    async fn private_component_arn(&self, name: &ComponentName) -> Result<Option<String>, CloudError> {
        let mut token = None;
        loop {
            let out = self
                .client
                .list_components()
                .scope(aws_sdk_greengrassv2::types::ComponentVisibilityScope::Private)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| cloud_error("ListComponents", &e))?;
            if let Some(component) = out
                .components
                .unwrap_or_default()
                .into_iter()
                .find(|c| c.component_name.as_deref() == Some(name.as_str()))
            {
                return Ok(component.arn);
            }
            match out.next_token {
                Some(next) if !next.is_empty() => token = Some(next),
                _ => return Ok(None),
            }
        }
    }
}

fn invalid(api: &'static str, what: impl std::fmt::Display) -> CloudError {
    CloudError::Rejected { api, message: what.to_string() }
}

fn time(t: Option<&aws_smithy_types::DateTime>) -> Option<Timestamp> {
    t.and_then(|t| t.to_millis().ok()).and_then(Timestamp::from_millis)
}

fn not_found_is_none<T>(result: Result<T, CloudError>) -> Result<Option<T>, CloudError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(err) if err.is_not_found() => Ok(None),
        Err(err) => Err(err),
    }
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// The devices a batch (dis)association refused, from its error entries (thing, message, code).
fn failures(
    entries: impl Iterator<Item = (Option<String>, Option<String>, Option<String>)>,
    default: &str,
) -> Vec<(ThingName, String)> {
    entries
        .filter_map(|(thing, message, code)| {
            let name = ThingName::parse(thing.as_deref()?).ok()?;
            Some((name, message.or(code).unwrap_or_else(|| default.to_owned())))
        })
        .collect()
}

fn component(spec: &ComponentSpec) -> Result<ComponentDeploymentSpecification, CloudError> {
    let mut builder = ComponentDeploymentSpecification::builder().component_version(&spec.version);
    if let Some(update) = &spec.configuration_update {
        let reset = update
            .get("reset")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).map(str::to_owned).collect());
        builder = builder.configuration_update(
            ComponentConfigurationUpdate::builder()
                .set_merge(str_of(update, "merge").map(str::to_owned))
                .set_reset(reset)
                .build(),
        );
    }
    if let Some(run_with) = &spec.run_with {
        let limits = run_with.get("systemResourceLimits").map(|l| {
            SystemResourceLimits::builder()
                .set_memory(l.get("memory").and_then(Value::as_i64))
                .set_cpus(l.get("cpus").and_then(Value::as_f64))
                .build()
        });
        builder = builder.run_with(
            ComponentRunWith::builder()
                .set_posix_user(str_of(run_with, "posixUser").map(str::to_owned))
                .set_windows_user(str_of(run_with, "windowsUser").map(str::to_owned))
                .set_system_resource_limits(limits)
                .build(),
        );
    }
    builder.build().map_err(|e| invalid("CreateDeployment", e))
}

fn job_configuration(config: &Value) -> Result<DeploymentIoTJobConfiguration, CloudError> {
    let api = "CreateDeployment";
    let mut builder = DeploymentIoTJobConfiguration::builder();
    if let Some(rollout) = config.get("jobExecutionsRolloutConfig") {
        let rate = rollout
            .get("exponentialRate")
            .map(|r| {
                let criteria = r.get("rateIncreaseCriteria").map(|c| {
                    IoTJobRateIncreaseCriteria::builder()
                        .set_number_of_notified_things(
                            c.get("numberOfNotifiedThings").and_then(Value::as_i64).map(|n| n as i32),
                        )
                        .set_number_of_succeeded_things(
                            c.get("numberOfSucceededThings").and_then(Value::as_i64).map(|n| n as i32),
                        )
                        .build()
                });
                IoTJobExponentialRolloutRate::builder()
                    .set_base_rate_per_minute(r.get("baseRatePerMinute").and_then(Value::as_i64).map(|n| n as i32))
                    .set_increment_factor(r.get("incrementFactor").and_then(Value::as_f64))
                    .set_rate_increase_criteria(criteria)
                    .build()
                    .map_err(|e| invalid(api, e))
            })
            .transpose()?;
        builder = builder.job_executions_rollout_config(
            IoTJobExecutionsRolloutConfig::builder()
                .set_exponential_rate(rate)
                .set_maximum_per_minute(rollout.get("maximumPerMinute").and_then(Value::as_i64).map(|n| n as i32))
                .build(),
        );
    }
    if let Some(abort) = config.get("abortConfig") {
        let criteria = abort
            .get("criteriaList")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|c| {
                IoTJobAbortCriteria::builder()
                    .set_failure_type(str_of(c, "failureType").map(Into::into))
                    .set_action(str_of(c, "action").map(Into::into))
                    .set_threshold_percentage(c.get("thresholdPercentage").and_then(Value::as_f64))
                    .set_min_number_of_executed_things(
                        c.get("minNumberOfExecutedThings").and_then(Value::as_i64).map(|n| n as i32),
                    )
                    .build()
                    .map_err(|e| invalid(api, e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        builder = builder.abort_config(
            IoTJobAbortConfig::builder().set_criteria_list(Some(criteria)).build().map_err(|e| invalid(api, e))?,
        );
    }
    if let Some(timeout) = config.get("timeoutConfig") {
        builder = builder.timeout_config(
            IoTJobTimeoutConfig::builder()
                .set_in_progress_timeout_in_minutes(timeout.get("inProgressTimeoutInMinutes").and_then(Value::as_i64))
                .build(),
        );
    }
    Ok(builder.build())
}

fn deployment_policies(policies: &Value) -> DeploymentPolicies {
    let update = policies.get("componentUpdatePolicy").map(|p| {
        DeploymentComponentUpdatePolicy::builder()
            .set_timeout_in_seconds(p.get("timeoutInSeconds").and_then(Value::as_i64).map(|n| n as i32))
            .set_action(str_of(p, "action").map(Into::into))
            .build()
    });
    let validation = policies.get("configurationValidationPolicy").map(|p| {
        DeploymentConfigurationValidationPolicy::builder()
            .set_timeout_in_seconds(p.get("timeoutInSeconds").and_then(Value::as_i64).map(|n| n as i32))
            .build()
    });
    DeploymentPolicies::builder()
        .set_failure_handling_policy(str_of(policies, "failureHandlingPolicy").map(Into::into))
        .set_component_update_policy(update)
        .set_configuration_validation_policy(validation)
        .build()
}

#[async_trait]
impl Greengrass for AwsGreengrass {
    async fn create_component_version(&self, recipe: &Value) -> Result<(), CloudError> {
        const API: &str = "CreateComponentVersion";
        let bytes = serde_json::to_vec(recipe).map_err(|e| invalid(API, e))?;
        // The same recipe gets the same client token: a retried call is idempotent.
        let token = {
            use sha2::Digest;
            hex::encode(&sha2::Sha256::digest(&bytes)[..16])
        };
        match self
            .client
            .create_component_version()
            .inline_recipe(aws_smithy_types::Blob::new(bytes))
            .client_token(token)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(err) => {
                use aws_sdk_greengrassv2::error::ProvideErrorMetadata;
                if err.code() == Some("ConflictException") {
                    return Err(CloudError::AlreadyExists {
                        api: API,
                        message: err.message().unwrap_or("the component version exists").to_owned(),
                        resource_id: None,
                    });
                }
                Err(cloud_error(API, &err))
            }
        }
    }

    async fn delete_component_version(
        &self,
        name: &ComponentName,
        version: &ComponentVersion,
    ) -> Result<(), CloudError> {
        let Some(arn) = self.private_component_arn(name).await? else {
            return Ok(());
        };
        not_found_is_none(
            self.client
                .delete_component()
                .arn(format!("{arn}:versions:{}", version.as_str()))
                .send()
                .await
                .map_err(|e| cloud_error("DeleteComponent", &e)),
        )?;
        Ok(())
    }

    async fn component_version_exists(
        &self,
        name: &ComponentName,
        version: &ComponentVersion,
    ) -> Result<bool, CloudError> {
        Ok(self.describe_component(name, version).await?.is_some())
    }

    async fn component_platforms(
        &self,
        name: &ComponentName,
        version: &ComponentVersion,
    ) -> Result<Option<PlatformSupport>, CloudError> {
        let Some(described) = self.describe_component(name, version).await? else { return Ok(None) };
        Ok(Some(PlatformSupport(
            described
                .platforms()
                .iter()
                .map(|p| {
                    let attribute = |k: &str| p.attributes().and_then(|a| a.get(k)).cloned();
                    (attribute("os"), attribute("architecture"))
                })
                .collect(),
        )))
    }

    async fn get_core_device(&self, name: &ThingName) -> Result<Option<CoreDevice>, CloudError> {
        let out = not_found_is_none(
            self.client
                .get_core_device()
                .core_device_thing_name(name.as_str())
                .send()
                .await
                .map_err(|e| cloud_error("GetCoreDevice", &e)),
        )?;
        Ok(out.map(|d| CoreDevice {
            status: d.status.map(|s| s.as_str().to_owned()).unwrap_or_else(|| "UNKNOWN".to_owned()),
            core_version: d.core_version,
            platform: d.platform,
            architecture: d.architecture,
            last_status_update_timestamp: time(d.last_status_update_timestamp.as_ref()),
            tags: d.tags.unwrap_or_default().into_iter().collect(),
        }))
    }

    async fn delete_core_device(&self, name: &ThingName) -> Result<(), CloudError> {
        not_found_is_none(
            self.client
                .delete_core_device()
                .core_device_thing_name(name.as_str())
                .send()
                .await
                .map_err(|e| cloud_error("DeleteCoreDevice", &e)),
        )?;
        Ok(())
    }

    async fn list_installed_components(&self, name: &ThingName) -> Result<Vec<InstalledComponent>, CloudError> {
        let mut components = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .client
                .list_installed_components()
                .core_device_thing_name(name.as_str())
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| cloud_error("ListInstalledComponents", &e))?;
            components.extend(out.installed_components.unwrap_or_default().into_iter().map(|c| InstalledComponent {
                name: c.component_name.unwrap_or_default(),
                version: c.component_version.unwrap_or_default(),
                lifecycle_state: c.lifecycle_state.map(|s| s.as_str().to_owned()),
                containers: Vec::new(),
            }));
            match out.next_token {
                Some(next) if !next.is_empty() => token = Some(next),
                _ => return Ok(components),
            }
        }
    }

    async fn list_effective_deployments(&self, name: &ThingName) -> Result<Vec<EffectiveDeployment>, CloudError> {
        let mut deployments = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .client
                .list_effective_deployments()
                .core_device_thing_name(name.as_str())
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| cloud_error("ListEffectiveDeployments", &e))?;
            deployments.extend(out.effective_deployments.unwrap_or_default().into_iter().map(|d| {
                EffectiveDeployment {
                    deployment_id: d.deployment_id,
                    deployment_name: d.deployment_name,
                    iot_job_id: d.iot_job_id,
                    iot_job_arn: d.iot_job_arn,
                    target_arn: Some(d.target_arn),
                    core_device_execution_status: Some(d.core_device_execution_status.as_str().to_owned()),
                    // ListEffectiveDeployments has no detailed status (nor has its event).
                    detailed_status: None,
                    reason: d.reason,
                    created_at: time(Some(&d.creation_timestamp)),
                    updated_at: time(Some(&d.modified_timestamp)),
                }
            }));
            match out.next_token {
                Some(next) if !next.is_empty() => token = Some(next),
                _ => return Ok(deployments),
            }
        }
    }

    async fn associate_client_devices(
        &self,
        core: &ThingName,
        devices: &[ThingName],
    ) -> Result<Vec<(ThingName, String)>, CloudError> {
        let mut failed = Vec::new();
        for chunk in devices.chunks(100) {
            let entries = chunk
                .iter()
                .map(|d| AssociateClientDeviceWithCoreDeviceEntry::builder().thing_name(d.as_str()).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| invalid("BatchAssociateClientDeviceWithCoreDevice", e))?;
            let out = self
                .client
                .batch_associate_client_device_with_core_device()
                .core_device_thing_name(core.as_str())
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| cloud_error("BatchAssociateClientDeviceWithCoreDevice", &e))?;
            let entries = out.error_entries.unwrap_or_default().into_iter().map(|e| (e.thing_name, e.message, e.code));
            failed.extend(failures(entries, "association failed"));
        }
        Ok(failed)
    }

    async fn disassociate_client_devices(
        &self,
        core: &ThingName,
        devices: &[ThingName],
    ) -> Result<Vec<(ThingName, String)>, CloudError> {
        let mut failed = Vec::new();
        for chunk in devices.chunks(100) {
            let entries = chunk
                .iter()
                .map(|d| DisassociateClientDeviceFromCoreDeviceEntry::builder().thing_name(d.as_str()).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| invalid("BatchDisassociateClientDeviceFromCoreDevice", e))?;
            let out = self
                .client
                .batch_disassociate_client_device_from_core_device()
                .core_device_thing_name(core.as_str())
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| cloud_error("BatchDisassociateClientDeviceFromCoreDevice", &e))?;
            let entries = out.error_entries.unwrap_or_default().into_iter().map(|e| (e.thing_name, e.message, e.code));
            failed.extend(failures(entries, "disassociation failed"));
        }
        Ok(failed)
    }

    async fn list_client_devices(&self, core: &ThingName) -> Result<Vec<ThingName>, CloudError> {
        let mut devices = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .client
                .list_client_devices_associated_with_core_device()
                .core_device_thing_name(core.as_str())
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| cloud_error("ListClientDevicesAssociatedWithCoreDevice", &e))?;
            devices.extend(
                out.associated_client_devices
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|d| d.thing_name.as_deref().and_then(|n| ThingName::parse(n).ok())),
            );
            match out.next_token {
                Some(next) if !next.is_empty() => token = Some(next),
                _ => return Ok(devices),
            }
        }
    }

    async fn create_deployment(&self, request: &DeploymentRequest) -> Result<String, CloudError> {
        let target = self.iot.thing_group_arn(&request.thing_group).await?;
        let components = request
            .components
            .iter()
            .map(|(name, spec)| Ok((name.clone(), component(spec)?)))
            .collect::<Result<HashMap<_, _>, CloudError>>()?;
        let out = self
            .client
            .create_deployment()
            .target_arn(target)
            .deployment_name(&request.deployment_name)
            .set_components(Some(components))
            .set_iot_job_configuration(request.iot_job_configuration.as_ref().map(job_configuration).transpose()?)
            .set_deployment_policies(request.deployment_policies.as_ref().map(deployment_policies))
            .send()
            .await
            .map_err(|e| cloud_error("CreateDeployment", &e))?;
        out.deployment_id.ok_or_else(|| CloudError::Unavailable {
            api: "CreateDeployment",
            source: "no deployment id in the answer".into(),
        })
    }

    async fn find_deployment(&self, thing_group: &str, deployment_name: &str) -> Result<Option<String>, CloudError> {
        let target = match self.iot.thing_group_arn(thing_group).await {
            Ok(arn) => arn,
            Err(err) if err.is_not_found() => return Ok(None),
            Err(err) => return Err(err),
        };
        // Every revision, newest first: a retry task's revision is found again by its name.
        let mut pages = self
            .client
            .list_deployments()
            .target_arn(target)
            .history_filter(aws_sdk_greengrassv2::types::DeploymentHistoryFilter::All)
            .into_paginator()
            .send();
        let mut newest: Option<(aws_smithy_types::DateTime, String)> = None;
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| cloud_error("ListDeployments", &e))?;
            for d in page.deployments.unwrap_or_default() {
                if d.deployment_name.as_deref() != Some(deployment_name) {
                    continue;
                }
                let (Some(id), Some(at)) = (d.deployment_id, d.creation_timestamp) else { continue };
                if newest.as_ref().is_none_or(|(t, _)| at > *t) {
                    newest = Some((at, id));
                }
            }
        }
        Ok(newest.map(|(_, id)| id))
    }
}
