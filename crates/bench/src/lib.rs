#![doc = include_str!("../README.md")]

pub mod goals;
pub mod race;
pub mod rollout;
pub mod server;
pub mod verify;

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

pub use server::Server;

/// An HTTP client for one ggprov.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub client: reqwest::Client,
}

impl Api {
    pub fn new(base: &str) -> Self {
        Self { base: base.trim_end_matches('/').to_owned(), client: reqwest::Client::new() }
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let response =
            self.client.get(format!("{}{path}", self.base)).send().await.with_context(|| format!("GET {path}"))?;
        let status = response.status();
        let body: Value = response.json().await.with_context(|| format!("GET {path}: body"))?;
        if !status.is_success() {
            bail!("GET {path}: {status} {body}");
        }
        Ok(body)
    }

    pub async fn send(&self, method: reqwest::Method, path: &str, body: &Value) -> anyhow::Result<reqwest::Response> {
        let response = self
            .client
            .request(method, format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .with_context(|| path.to_owned())?;
        if !response.status().is_success() {
            let status = response.status();
            bail!("{path}: {status} {}", response.text().await.unwrap_or_default());
        }
        Ok(response)
    }

    /// Submits a core task creating `names`; returns its id.
    pub async fn create_cores(&self, names: &[String]) -> anyhow::Result<String> {
        let body = json!({
            "type": "Create",
            "coreVersion": "2.12.0",
            "cores": names.iter().map(|n| json!({"name": n, "provisioningTemplate": "greengrass2_core", "configFileGenerator": "MANUAL_INSTALL"})).collect::<Vec<_>>(),
        });
        let response = self.send(reqwest::Method::POST, "/coreTasks", &body).await?;
        Ok(response.headers().get("x-taskid").context("x-taskid")?.to_str()?.to_owned())
    }

    /// Polls a task until it ends (or `timeout`); returns it.
    pub async fn wait_task(&self, path: &str, timeout: Duration) -> anyhow::Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.get(path).await {
                Ok(task) if task["taskStatus"] == "Success" || task["taskStatus"] == "Failure" => return Ok(task),
                Ok(_) | Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
                Ok(task) => bail!("{path} still {} after {timeout:?}", task["taskStatus"]),
                Err(err) => return Err(err),
            }
        }
    }

    pub async fn faults(&self, settings: Value) -> anyhow::Result<()> {
        self.send(reqwest::Method::PUT, "/local-cloud/faults", &settings).await.map(drop)
    }
}

/// Names `prefix-00000` ... for `n` cores.
pub fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:05}")).collect()
}

/// The `q` quantile (0..1) of sorted durations, in milliseconds.
pub fn quantile_ms(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[index.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}
