//! Small builders for domain values used across tests.

use ggprov_domain::template::{DeploymentPolicies, JobConfig};
use ggprov_domain::{Component, ComponentName, ComponentVersion, Template, TemplateName, TemplateSpec, Timestamp};

/// A component from its name and version.
pub fn component(key: &str, version: &str) -> Component {
    Component {
        key: ComponentName::parse(key).expect("valid component name"),
        version: ComponentVersion::parse(version).expect("valid component version"),
        configuration_update: None,
        run_with: None,
    }
}

/// A template spec with one component, `aws.greengrass.Cli` at `version`.
pub fn spec(version: &str) -> TemplateSpec {
    TemplateSpec::new(vec![component("aws.greengrass.Cli", version)], None, None).expect("valid spec")
}

/// A spec that uses every optional part, to prove they survive a round trip.
pub fn full_spec() -> TemplateSpec {
    let job_config: JobConfig = serde_json::from_value(serde_json::json!({
        "jobExecutionsRolloutConfig": {"maximumPerMinute": 50, "exponentialRate": {"baseRatePerMinute": 5, "incrementFactor": 1.5, "rateIncreaseCriteria": {"numberOfSucceededThings": 10}}},
        "abortConfig": {"criteriaList": [{"failureType": "FAILED", "action": "CANCEL", "thresholdPercentage": 25.5, "minNumberOfExecutedThings": 3}]},
        "timeoutConfig": {"inProgressTimeoutInMinutes": 30}
    }))
    .expect("valid jobConfig");
    let policies: DeploymentPolicies = serde_json::from_value(serde_json::json!({
        "failureHandlingPolicy": "DO_NOTHING",
        "componentUpdatePolicy": {"timeoutInSeconds": 120, "action": "SKIP_NOTIFY_COMPONENTS"},
        "configurationValidationPolicy": {"timeoutInSeconds": 30}
    }))
    .expect("valid deploymentPolicies");
    let mut nucleus = component("aws.greengrass.Nucleus", "2.12.0");
    nucleus.configuration_update =
        serde_json::from_value(serde_json::json!({"merge": "{\"logging\":{\"level\":\"DEBUG\"}}", "reset": ["/mqtt"]}))
            .ok();
    nucleus.run_with = serde_json::from_value(serde_json::json!({"posixUser": "ggc_user:ggc_group"})).ok();
    TemplateSpec::new(vec![nucleus, component("aws.greengrass.Cli", "2.12.0")], Some(job_config), Some(policies))
        .expect("valid spec")
}

/// Version 1 of a template named `name`.
pub fn template(name: &str) -> Template {
    Template::first(TemplateName::parse(name).expect("valid template name"), spec("2.4.0"), Timestamp::now())
}
