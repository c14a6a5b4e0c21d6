#![doc = include_str!("../README.md")]

pub mod application;
pub mod application_service;
pub mod backend;
pub mod core_service;
pub mod core_task_service;
pub mod cores;
pub mod deployment_service;
pub mod deployment_state;
pub mod device_service;
pub mod error_chain;
pub mod jobs;
pub mod metrics;
pub mod pagination;
pub mod ports;
pub mod provisioning;
pub mod provisioning_template;
pub mod provisioning_templates;
pub mod quotas;
pub mod rollout;
pub mod rollout_service;
pub mod task;
pub mod template;
pub mod template_service;
pub mod thing;
pub mod thing_lifecycle;
pub mod thing_query;
pub mod time;
pub mod validation;

pub use error_chain::ErrorChain;
pub use pagination::{Page, PageRequest};
pub use task::{ItemCounts, TaskId, TaskStatus, TaskType};
pub use template::{Component, ComponentName, ComponentVersion, Template, TemplateName, TemplateSpec};
pub use template_service::TemplateService;
pub use thing::ThingName;
pub use time::Timestamp;
pub use validation::{FieldProblem, Problems};
