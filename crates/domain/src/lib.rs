#![doc = include_str!("../README.md")]

pub mod pagination;
pub mod ports;
pub mod template;
pub mod template_service;
pub mod time;
pub mod validation;

pub use pagination::{Page, PageRequest};
pub use template::{Component, ComponentName, ComponentVersion, Template, TemplateName, TemplateSpec};
pub use template_service::TemplateService;
pub use time::Timestamp;
pub use validation::{FieldProblem, Problems};
