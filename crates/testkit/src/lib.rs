#![doc = include_str!("../README.md")]

pub mod application_store;
pub mod builders;
pub mod core_store;
pub mod greengrass_fake;
pub mod template_store;
pub mod work_queue;
