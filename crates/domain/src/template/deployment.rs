//! Deployment settings of a template: the IoT job configuration (`jobConfig`) and the
//! Greengrass deployment policies (`deploymentPolicies`). Field names and enum spellings are
//! those of Greengrass `CreateDeployment`, so the values pass through unchanged; ranges are
//! checked here so that a bad value fails at `POST /templates`, not at deployment time.

use serde::{Deserialize, Serialize};

use crate::validation::Problems;

/// Greengrass `DeploymentIoTJobConfiguration`: how the IoT job behind a deployment rolls out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_executions_rollout_config: Option<RolloutConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_config: Option<AbortConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_config: Option<TimeoutConfig>,
}

/// How fast job executions are started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exponential_rate: Option<ExponentialRate>,
    /// 1 to 1000 job executions started per minute.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1000))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum_per_minute: Option<u32>,
}

/// An exponentially increasing rollout rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExponentialRate {
    /// 1 to 1000.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1000))]
    pub base_rate_per_minute: u32,
    /// 1.1 to 5.
    #[cfg_attr(feature = "openapi", schema(minimum = 1.1, maximum = 5.0))]
    pub increment_factor: f64,
    pub rate_increase_criteria: RateIncreaseCriteria,
}

/// When the rollout rate increases; at least one of the two counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateIncreaseCriteria {
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number_of_notified_things: Option<u32>,
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number_of_succeeded_things: Option<u32>,
}

/// When to stop a rollout that goes wrong.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AbortConfig {
    /// At least one criterion.
    #[cfg_attr(feature = "openapi", schema(min_items = 1))]
    pub criteria_list: Vec<AbortCriteria>,
}

/// One abort rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AbortCriteria {
    pub failure_type: FailureType,
    pub action: AbortAction,
    /// 0 to 100.
    #[cfg_attr(feature = "openapi", schema(minimum = 0.0, maximum = 100.0))]
    pub threshold_percentage: f64,
    /// At least 1.
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub min_number_of_executed_things: u32,
}

/// Which job-execution outcome an abort rule counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FailureType {
    Failed,
    Rejected,
    TimedOut,
    All,
}

/// What an abort rule does; Greengrass supports only `CANCEL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AbortAction {
    Cancel,
}

/// How long a job execution may stay in progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TimeoutConfig {
    /// At least 1.
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_progress_timeout_in_minutes: Option<i64>,
}

/// Greengrass `DeploymentPolicies`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeploymentPolicies {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_handling_policy: Option<FailureHandlingPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component_update_policy: Option<ComponentUpdatePolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration_validation_policy: Option<ConfigurationValidationPolicy>,
}

/// What a core does when a deployment fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FailureHandlingPolicy {
    Rollback,
    DoNothing,
}

/// How components are told about an update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ComponentUpdatePolicy {
    /// At least 1.
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_in_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<ComponentUpdateAction>,
}

/// Whether components are notified before an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ComponentUpdateAction {
    NotifyComponents,
    SkipNotifyComponents,
}

/// How long components may take to validate a configuration update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigurationValidationPolicy {
    /// At least 1.
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_in_seconds: Option<u32>,
}

fn in_range<T: PartialOrd + Copy + std::fmt::Display>(
    problems: &mut Problems,
    field: String,
    value: T,
    min: T,
    max: Option<T>,
) {
    let ok = value >= min && max.as_ref().is_none_or(|m| value <= *m);
    if !ok {
        let range = match max {
            Some(max) => format!("between {min} and {max}"),
            None => format!("at least {min}"),
        };
        problems.add(field, format!("is {value}; it must be {range}"));
    }
}

impl JobConfig {
    pub(crate) fn validate(&self, problems: &mut Problems, at: &str) {
        if let Some(rollout) = &self.job_executions_rollout_config {
            let at = format!("{at}.jobExecutionsRolloutConfig");
            if let Some(max) = rollout.maximum_per_minute {
                in_range(problems, format!("{at}.maximumPerMinute"), max, 1, Some(1000));
            }
            if let Some(rate) = &rollout.exponential_rate {
                let at = format!("{at}.exponentialRate");
                in_range(problems, format!("{at}.baseRatePerMinute"), rate.base_rate_per_minute, 1, Some(1000));
                in_range(problems, format!("{at}.incrementFactor"), rate.increment_factor, 1.1, Some(5.0));
                let criteria = &rate.rate_increase_criteria;
                let at = format!("{at}.rateIncreaseCriteria");
                match (criteria.number_of_notified_things, criteria.number_of_succeeded_things) {
                    (None, None) => problems.add(at, "must set numberOfNotifiedThings or numberOfSucceededThings"),
                    (notified, succeeded) => {
                        if let Some(n) = notified {
                            in_range(problems, format!("{at}.numberOfNotifiedThings"), n, 1, None);
                        }
                        if let Some(n) = succeeded {
                            in_range(problems, format!("{at}.numberOfSucceededThings"), n, 1, None);
                        }
                    }
                }
            }
        }
        if let Some(abort) = &self.abort_config {
            let at = format!("{at}.abortConfig.criteriaList");
            if abort.criteria_list.is_empty() {
                problems.add(at.clone(), "must hold at least one abort criterion (or leave abortConfig out)");
            }
            for (i, c) in abort.criteria_list.iter().enumerate() {
                in_range(problems, format!("{at}[{i}].thresholdPercentage"), c.threshold_percentage, 0.0, Some(100.0));
                in_range(
                    problems,
                    format!("{at}[{i}].minNumberOfExecutedThings"),
                    c.min_number_of_executed_things,
                    1,
                    None,
                );
            }
        }
        if let Some(minutes) = self.timeout_config.as_ref().and_then(|t| t.in_progress_timeout_in_minutes) {
            in_range(problems, format!("{at}.timeoutConfig.inProgressTimeoutInMinutes"), minutes, 1, None);
        }
    }
}

impl DeploymentPolicies {
    pub(crate) fn validate(&self, problems: &mut Problems, at: &str) {
        if let Some(secs) = self.component_update_policy.as_ref().and_then(|p| p.timeout_in_seconds) {
            in_range(problems, format!("{at}.componentUpdatePolicy.timeoutInSeconds"), secs, 1, None);
        }
        if let Some(secs) = self.configuration_validation_policy.as_ref().and_then(|p| p.timeout_in_seconds) {
            in_range(problems, format!("{at}.configurationValidationPolicy.timeoutInSeconds"), secs, 1, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job_config(json: serde_json::Value) -> JobConfig {
        serde_json::from_value(json).unwrap()
    }

    fn fields(config: &JobConfig) -> Vec<String> {
        let mut problems = Problems::new();
        config.validate(&mut problems, "jobConfig");
        problems.into_vec().into_iter().map(|p| p.field).collect()
    }

    #[test]
    fn a_complete_valid_job_config_passes() {
        let config = job_config(serde_json::json!({
            "jobExecutionsRolloutConfig": {
                "exponentialRate": {"baseRatePerMinute": 10, "incrementFactor": 2, "rateIncreaseCriteria": {"numberOfSucceededThings": 5}},
                "maximumPerMinute": 100
            },
            "abortConfig": {"criteriaList": [{"failureType": "FAILED", "action": "CANCEL", "thresholdPercentage": 10, "minNumberOfExecutedThings": 5}]},
            "timeoutConfig": {"inProgressTimeoutInMinutes": 60}
        }));
        assert!(fields(&config).is_empty());
    }

    #[test]
    fn out_of_range_values_name_their_fields() {
        let config = job_config(serde_json::json!({
            "jobExecutionsRolloutConfig": {
                "exponentialRate": {"baseRatePerMinute": 0, "incrementFactor": 9, "rateIncreaseCriteria": {}},
                "maximumPerMinute": 5000
            },
            "abortConfig": {"criteriaList": [{"failureType": "ALL", "action": "CANCEL", "thresholdPercentage": 150, "minNumberOfExecutedThings": 0}]},
            "timeoutConfig": {"inProgressTimeoutInMinutes": 0}
        }));
        assert_eq!(
            fields(&config),
            [
                "jobConfig.jobExecutionsRolloutConfig.maximumPerMinute",
                "jobConfig.jobExecutionsRolloutConfig.exponentialRate.baseRatePerMinute",
                "jobConfig.jobExecutionsRolloutConfig.exponentialRate.incrementFactor",
                "jobConfig.jobExecutionsRolloutConfig.exponentialRate.rateIncreaseCriteria",
                "jobConfig.abortConfig.criteriaList[0].thresholdPercentage",
                "jobConfig.abortConfig.criteriaList[0].minNumberOfExecutedThings",
                "jobConfig.timeoutConfig.inProgressTimeoutInMinutes",
            ]
        );
    }

    #[test]
    fn unknown_enum_values_and_keys_are_refused_by_the_parser() {
        let bad_enum =
            serde_json::from_value::<DeploymentPolicies>(serde_json::json!({"failureHandlingPolicy": "RETRY"}));
        assert!(bad_enum.unwrap_err().to_string().contains("ROLLBACK"));
        // The CDF iotJobConfig model spells it without the `s`; templates must use Greengrass's name.
        let typo = serde_json::from_value::<JobConfig>(serde_json::json!({"jobExecutionRolloutConfig": {}}));
        assert!(typo.unwrap_err().to_string().contains("jobExecutionsRolloutConfig"));
    }
}
