//! What a process runs (its role) and how its workers take work from the queue.

use std::time::Duration;

use super::sources::{Setting, Values};

pub(super) const ROLE: Setting = Setting {
    key: "role",
    env: "GGPROV_ROLE",
    default: "all",
    help: "What this process runs: `all` (API and workers), `api` (the API only), `worker` (workers only, with /health, /ready and /metrics). `ggprov serve --role` overrides it.",
};

pub(super) const WORKER: Setting = Setting {
    key: "worker",
    env: "GGPROV_WORKER",
    default: "true",
    help: "Run the workers in this process (`false`: API only; jobs wait on the queue).",
};

pub(super) const WORKER_CONCURRENCY: Setting = Setting {
    key: "worker_concurrency",
    env: "GGPROV_WORKER_CONCURRENCY",
    default: "24",
    help: "Jobs (batches) a worker works on at once; the next is received as soon as one ends, or waits with every unfinished item waiting out a retry's backoff (at most 4× this many in hand).",
};

pub(super) const ITEM_CONCURRENCY: Setting = Setting {
    key: "item_concurrency",
    env: "GGPROV_ITEM_CONCURRENCY",
    default: "20",
    help: "Items of one batch working at once; an item waiting out a retry's backoff lets another start meanwhile (at most 4× this many started).",
};

pub(super) const CORE_BATCH_SIZE: Setting = Setting {
    key: "core_batch_size",
    env: "GGPROV_CORE_BATCH_SIZE",
    default: "20",
    help: "Cores per queued batch of a core task.",
};

pub(super) const DEPLOYMENT_BATCH_SIZE: Setting = Setting {
    key: "deployment_batch_size",
    env: "GGPROV_DEPLOYMENT_BATCH_SIZE",
    default: "50",
    help: "Cores per queued batch of a deployment task.",
};

pub(super) const WORKER_LEASE_MS: Setting = Setting {
    key: "worker_lease_ms",
    env: "GGPROV_WORKER_LEASE_MS",
    default: "120000",
    help: "How long a job stays invisible to other workers while one works on it; after a crash it is delivered again after this.",
};

pub(super) const CALL_ATTEMPTS: Setting = Setting {
    key: "call_attempts",
    env: "GGPROV_CALL_ATTEMPTS",
    default: "10",
    help: "Tries of one IoT or Greengrass call that fails transiently (throttling, an outage), with jittered backoff from GGPROV_RETRY_BASE_MS, before its step fails and the batch goes back to the queue.",
};

pub(super) const MAX_ATTEMPTS: Setting = Setting {
    key: "max_attempts",
    env: "GGPROV_MAX_ATTEMPTS",
    default: "8",
    help: "Deliveries of a failing job before it is dead-lettered and its items fail.",
};

pub(super) const RETRY_BASE_MS: Setting = Setting {
    key: "retry_base_ms",
    env: "GGPROV_RETRY_BASE_MS",
    default: "500",
    help: "First retry delay of a failed job, doubling per delivery (jittered, at most 60 s); also the base of a failed IoT or Greengrass call's waits between tries: a random share of a ceiling that doubles up to 8× this while the API keeps failing, up to 2× while most of its calls succeed (at most 5 s).",
};

pub(super) const SWEEP_AFTER_SECS: Setting = Setting {
    key: "sweep_after_secs",
    env: "GGPROV_SWEEP_AFTER_SECS",
    default: "auto",
    help: "Items unfinished and unheld for this long are queued again by the sweeper, each at most once per this period. `auto` (default): the worst case a job may keep items legitimately, GGPROV_MAX_ATTEMPTS × (GGPROV_WORKER_LEASE_MS + 60 s backoff cap) + 60 s (25 minutes with the defaults); or seconds.",
};

/// This section's settings, in the order `--help` and the README list them.
pub(super) const SETTINGS: &[&Setting] = &[
    &ROLE,
    &WORKER,
    &WORKER_CONCURRENCY,
    &ITEM_CONCURRENCY,
    &CORE_BATCH_SIZE,
    &DEPLOYMENT_BATCH_SIZE,
    &WORKER_LEASE_MS,
    &CALL_ATTEMPTS,
    &MAX_ATTEMPTS,
    &RETRY_BASE_MS,
    &SWEEP_AFTER_SECS,
];

/// What a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    All,
    Api,
    Worker,
}

impl Role {
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "all" => Some(Self::All),
            "api" => Some(Self::Api),
            "worker" => Some(Self::Worker),
            _ => None,
        }
    }
}

/// The process's role and its workers.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub role: Role,
    /// Whether this process runs workers at all (`GGPROV_WORKER`).
    pub enabled: bool,
    /// Jobs processed at once.
    pub concurrency: usize,
    /// Items of one batch processed at once.
    pub item_concurrency: usize,
    pub core_batch_size: usize,
    pub deployment_batch_size: u32,
    pub lease: Duration,
    /// Tries of one IoT or Greengrass call (the only retry layer per call).
    pub call_attempts: u32,
    /// Deliveries of a job before it is dead-lettered.
    pub max_attempts: u32,
    pub retry_base: Duration,
    /// `None`: derived from the worst-case retry time (see [`WorkerConfig::sweep_after`]).
    pub sweep_after_secs: Option<u64>,
}

/// The longest a worker waits before retrying a failed job (`WorkerSettings::max_backoff`).
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

impl WorkerConfig {
    /// How long an item may stay unfinished and unheld before the sweeper queues it again:
    /// as configured, or the worst case a job may keep its items while still being retried
    /// (every attempt's lease plus the longest backoff between attempts, plus one sweep).
    pub fn sweep_after(&self) -> Duration {
        match self.sweep_after_secs {
            Some(secs) => Duration::from_secs(secs),
            None => (self.lease + MAX_BACKOFF) * self.max_attempts + Duration::from_secs(60),
        }
    }

    pub(super) fn read(v: &mut Values) -> Option<Self> {
        let role = v.parse(&ROLE, |t| Role::parse(t).ok_or_else(|| "must be all, api or worker".to_owned()));
        let enabled = v.flag(&WORKER);
        let concurrency = v.number_as(&WORKER_CONCURRENCY, 1, 256);
        let item_concurrency = v.number_as(&ITEM_CONCURRENCY, 1, 256);
        let core_batch_size = v.number_as(&CORE_BATCH_SIZE, 1, 1000);
        let deployment_batch_size = v.number_as(&DEPLOYMENT_BATCH_SIZE, 1, 1000);
        let lease_ms = v.number(&WORKER_LEASE_MS, 0, 43_200_000);
        let max_attempts = v.number_as(&MAX_ATTEMPTS, 1, 100);
        let call_attempts = v.number_as(&CALL_ATTEMPTS, 1, 100);
        let retry_base_ms = v.number(&RETRY_BASE_MS, 0, 600_000);
        let sweep_after_secs = v.parse(&SWEEP_AFTER_SECS, |t| match t {
            "auto" => Ok(None),
            _ => match t.parse::<u64>() {
                Ok(n) if (1..=604_800).contains(&n) => Ok(Some(n)),
                _ => Err("must be auto or a whole number of seconds from 1 to 604800".to_owned()),
            },
        });
        Some(Self {
            role: role?,
            enabled: enabled?,
            concurrency: concurrency?,
            item_concurrency: item_concurrency?,
            core_batch_size: core_batch_size?,
            deployment_batch_size: deployment_batch_size?,
            lease: Duration::from_millis(lease_ms?),
            call_attempts: call_attempts?,
            max_attempts: max_attempts?,
            retry_base: Duration::from_millis(retry_base_ms?),
            sweep_after_secs: sweep_after_secs?,
        })
    }
}
