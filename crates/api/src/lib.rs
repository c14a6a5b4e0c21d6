#![doc = include_str!("../README.md")]

mod core_tasks;
mod cores;
mod cors;
mod deployment_tasks;
mod devices;
mod error;
mod extract;
mod health;
mod media;
mod openapi;
mod ops;
mod pagination;
mod paths;
mod provisioning_templates;
mod router;
mod state;
mod templates;

pub use cors::CorsOrigins;
pub use error::ApiError;
pub use media::CDF_MEDIA_TYPE;
pub use openapi::openapi;
pub use ops::{AuthError, Authenticator, Gauges};
pub use router::{HttpConfig, app};
pub use state::{App, AppState};
