//! End-to-end tests: the real application on a free port, a fresh SQLite file each, HTTP.
//! One test binary (modules below) so the workspace links once.

mod applications;
mod aws;
mod browser;
mod certificates;
mod cli;
mod cores;
mod deployments;
mod devices;
mod harness;
mod helpers;
mod http_conventions;
mod http_limits;
mod idempotency;
mod local_cloud;
mod openapi;
mod operator;
mod ops;
mod ownership;
mod resilience;
mod rollouts;
mod rotation;
mod software;
mod store_conformance;
mod templates;
