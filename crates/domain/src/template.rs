//! Templates: named, versioned sets of Greengrass components plus the deployment settings
//! (IoT job configuration, deployment policies) that roll them out.

mod deployment;
mod names;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

pub use deployment::{
    AbortAction, AbortConfig, AbortCriteria, ComponentUpdateAction, ComponentUpdatePolicy,
    ConfigurationValidationPolicy, DeploymentPolicies, ExponentialRate, FailureHandlingPolicy, FailureType, JobConfig,
    RateIncreaseCriteria, RolloutConfig, TimeoutConfig,
};
pub use names::{ComponentName, ComponentVersion, DEPLOYMENT_GROUP_PREFIX, InvalidName, TemplateName};

use crate::time::Timestamp;
use crate::validation::Problems;

/// One component of a template: a Greengrass component version, plus how to configure and run it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Component {
    /// Greengrass component name, e.g. `aws.greengrass.Cli`.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "aws.greengrass.Cli"))]
    pub key: ComponentName,
    /// Component version (semantic version), e.g. `2.4.0`.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "2.4.0"))]
    pub version: ComponentVersion,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration_update: Option<ConfigurationUpdate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_with: Option<RunWith>,
}

/// Configuration changes applied to a component when it is deployed (Greengrass
/// `ComponentConfigurationUpdate`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigurationUpdate {
    /// A JSON object, serialised as a string, merged into the component's configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(example = r#"{"AuthorizedPosixGroups":"ggc_user"}"#))]
    pub merge: Option<String>,
    /// JSON pointers of configuration values to reset to their defaults (`""` resets everything).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<ResetPointer>>))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset: Option<Vec<String>>,
}

/// A JSON pointer: `""` or starting with `/` (the schema of `reset` items).
#[cfg(feature = "openapi")]
#[derive(utoipa::ToSchema)]
#[schema(pattern = "^(/.*)?$")]
#[allow(dead_code)]
pub struct ResetPointer(String);

/// How the core runs a component's processes (Greengrass `ComponentRunWith`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunWith {
    /// POSIX `user` or `user:group`, printable ASCII without spaces.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[!-9;-~]+(:[!-9;-~]+)?$"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub posix_user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub windows_user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_resource_limits: Option<SystemResourceLimits>,
}

/// Resource limits for a component's processes on Linux cores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SystemResourceLimits {
    /// Maximum CPU time share, e.g. `0.5` for half of one core.
    #[cfg_attr(feature = "openapi", schema(exclusive_minimum = 0.0))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Maximum RAM in kilobytes (Greengrass takes a signed 64-bit number).
    #[cfg_attr(feature = "openapi", schema(maximum = 9223372036854775807_u64))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
}

/// The validated content of a template version: what `POST` and `PUT /templates` carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemplateSpec {
    components: Vec<Component>,
    job_config: Option<JobConfig>,
    deployment_policies: Option<DeploymentPolicies>,
}

impl TemplateSpec {
    /// Checks a template's content and orders its components by key (byte order, as the CDF
    /// API returns them). `field` paths in the problems are those of the request body.
    pub fn new(
        components: Vec<Component>,
        job_config: Option<JobConfig>,
        deployment_policies: Option<DeploymentPolicies>,
    ) -> Result<Self, Problems> {
        let mut problems = Problems::new();
        if components.is_empty() {
            problems.add("components", "must list at least one component");
        }
        let mut seen = BTreeSet::new();
        for (i, c) in components.iter().enumerate() {
            if !seen.insert(c.key.as_str()) {
                problems.add(
                    format!("components[{i}].key"),
                    format!(
                        "component '{}' is listed more than once; a deployment can hold one version of each component",
                        c.key
                    ),
                );
            }
            if let Some(update) = &c.configuration_update {
                update.validate(&mut problems, &format!("components[{i}].configurationUpdate"));
            }
            if let Some(run_with) = &c.run_with {
                run_with.validate(&mut problems, &format!("components[{i}].runWith"));
            }
        }
        if let Some(job_config) = &job_config {
            job_config.validate(&mut problems, "jobConfig");
        }
        if let Some(policies) = &deployment_policies {
            policies.validate(&mut problems, "deploymentPolicies");
        }
        problems.finish(|| {
            let mut components = components;
            components.sort_by(|a, b| a.key.as_str().cmp(b.key.as_str()));
            Self { components, job_config, deployment_policies }
        })
    }

    pub fn components(&self) -> &[Component] {
        &self.components
    }

    pub fn job_config(&self) -> Option<&JobConfig> {
        self.job_config.as_ref()
    }

    pub fn deployment_policies(&self) -> Option<&DeploymentPolicies> {
        self.deployment_policies.as_ref()
    }
}

impl ConfigurationUpdate {
    fn validate(&self, problems: &mut Problems, at: &str) {
        if let Some(merge) = &self.merge {
            match serde_json::from_str::<serde_json::Value>(merge) {
                Ok(serde_json::Value::Object(_)) => {}
                Ok(_) => problems.add(
                    format!("{at}.merge"),
                    "must be a JSON object serialised as a string, e.g. \"{\\\"key\\\":\\\"value\\\"}\"",
                ),
                Err(err) => problems.add(
                    format!("{at}.merge"),
                    format!("is not valid JSON ({err}); it must be a JSON object serialised as a string"),
                ),
            }
        }
        for (i, pointer) in self.reset.iter().flatten().enumerate() {
            if !(pointer.is_empty() || pointer.starts_with('/')) {
                problems.add(
                    format!("{at}.reset[{i}]"),
                    format!("'{pointer}' is not a JSON pointer: it must be \"\" or start with '/'"),
                );
            }
        }
    }
}

impl RunWith {
    fn validate(&self, problems: &mut Problems, at: &str) {
        if let Some(user) = &self.posix_user {
            let valid = !user.is_empty()
                && user.split(':').count() <= 2
                && user.split(':').all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_graphic()));
            if !valid {
                problems.add(
                    format!("{at}.posixUser"),
                    format!("'{user}' must be 'user' or 'user:group' (printable ASCII without spaces)"),
                );
            }
        }
        if let Some(limits) = &self.system_resource_limits
            && let Some(cpus) = limits.cpus
            && !(cpus > 0.0 && cpus.is_finite())
        {
            problems.add(format!("{at}.systemResourceLimits.cpus"), "must be a positive number of CPU cores");
        }
        if let Some(memory) = self.system_resource_limits.as_ref().and_then(|l| l.memory)
            && i64::try_from(memory).is_err()
        {
            problems.add(
                format!("{at}.systemResourceLimits.memory"),
                format!("is {memory} KB; at most {} (2^63 - 1)", i64::MAX),
            );
        }
    }
}

/// A stored template version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Template {
    pub name: TemplateName,
    /// 1 for the first version, +1 for each update.
    pub version: u32,
    pub spec: TemplateSpec,
    /// When the template (version 1) was created; later versions keep it.
    pub created_at: Timestamp,
    /// When this version was created by an update; `None` for version 1.
    pub updated_at: Option<Timestamp>,
}

impl Template {
    /// Version 1 of a new template.
    pub fn first(name: TemplateName, spec: TemplateSpec, now: Timestamp) -> Self {
        Self { name, version: 1, spec, created_at: now, updated_at: None }
    }

    /// The version that follows this one, with new content.
    pub fn next(&self, spec: TemplateSpec, now: Timestamp) -> Self {
        Self {
            name: self.name.clone(),
            version: self.version + 1,
            spec,
            created_at: self.created_at,
            updated_at: Some(now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn component(key: &str, version: &str) -> Component {
        Component {
            key: ComponentName::parse(key).unwrap(),
            version: ComponentVersion::parse(version).unwrap(),
            configuration_update: None,
            run_with: None,
        }
    }

    #[test]
    fn components_are_ordered_by_key_bytes() {
        let spec = TemplateSpec::new(
            vec![component("aws.greengrass.Nucleus", "2.12.0"), component("aws.greengrass.Cli", "2.12.0")],
            None,
            None,
        )
        .unwrap();
        let keys: Vec<_> = spec.components().iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, ["aws.greengrass.Cli", "aws.greengrass.Nucleus"]);
    }

    #[test]
    fn duplicate_component_is_rejected() {
        let err = TemplateSpec::new(
            vec![component("aws.greengrass.Cli", "2.4.0"), component("aws.greengrass.Cli", "2.5.0")],
            None,
            None,
        )
        .unwrap_err();
        assert_eq!(err.iter().next().unwrap().field, "components[1].key");
    }

    #[test]
    fn empty_components_are_rejected() {
        let err = TemplateSpec::new(vec![], None, None).unwrap_err();
        assert_eq!(err.iter().next().unwrap().field, "components");
    }

    #[test]
    fn merge_must_be_a_json_object_string() {
        let mut c = component("aws.greengrass.Cli", "2.4.0");
        c.configuration_update = Some(ConfigurationUpdate { merge: Some("[1]".into()), reset: Some(vec!["x".into()]) });
        let err = TemplateSpec::new(vec![c], None, None).unwrap_err();
        let fields: Vec<_> = err.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["components[0].configurationUpdate.merge", "components[0].configurationUpdate.reset[0]"]);
    }

    #[test]
    fn posix_user_with_two_colons_is_rejected() {
        let mut c = component("aws.greengrass.Cli", "2.4.0");
        c.run_with =
            Some(RunWith { posix_user: Some("a:b:c".into()), windows_user: None, system_resource_limits: None });
        assert!(TemplateSpec::new(vec![c], None, None).is_err());
    }
}
