#![doc = include_str!("../README.md")]

pub mod builders;
pub mod template_store;
pub mod work_queue;
