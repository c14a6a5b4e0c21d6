#![doc = include_str!("../README.md")]

mod applications;
mod body_schema;
mod certificates;
mod core_tasks;
mod cores;
mod cors;
mod deployment_tasks;
mod devices;
mod error;
mod extract;
mod health;
mod idempotency;
mod live;
mod media;
mod openapi;
mod ops;
mod pagination;
mod paths;
mod provisioning_templates;
mod records;
mod rotation_tasks;
mod router;
mod software;
mod state;
mod templates;
mod ui;

/// The CDF versioned media type, used for every response body of the CDF routes.
pub const CDF_MEDIA_TYPE: &str = "application/vnd.aws-cdf-v1.0+json";

pub use cores::{CoreBodies, MAX_CACHED_CORE_BODIES};
pub use cors::CorsOrigins;
pub use error::ApiError;
pub use openapi::openapi;
pub use ops::{Access, AuthError, Authenticator};
pub use router::{HttpConfig, app};
pub use state::Gauges;
pub use state::{App, AppState};
