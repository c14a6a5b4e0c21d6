//! `spawn_app()`: the application as `ggprov serve` builds it, on port 0 with its own data
//! directory, plus a client that speaks like the official CDF client.

use std::sync::Arc;

use ggprov::{Application, Config};
use ggprov_engine::{Failpoints, Worker};
use ggprov_local_cloud::LocalCloud;
use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;
use tempfile::TempDir;

pub(crate) const CDF: &str = "application/vnd.aws-cdf-v1.0+json";

pub(crate) struct TestApp {
    pub(crate) base: String,
    pub(crate) client: reqwest::Client,
    pub(crate) worker: Arc<Worker>,
    pub(crate) failpoints: Failpoints,
    pub(crate) cloud: LocalCloud,
    pub(crate) data: TempDir,
}

/// Starts the app with default settings plus `env` overrides.
pub(crate) async fn spawn_app_with(env: &[(&str, &str)]) -> TestApp {
    let data = tempfile::tempdir().expect("temp dir");
    // The worker does not run in the background: tests drain the queue with `drain()`, and a
    // job that stopped at a failpoint is delivered again at once (lease 0), as after a restart.
    let mut vars = vec![
        ("GGPROV_LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
        ("GGPROV_DATA_DIR".to_owned(), data.path().display().to_string()),
        ("GGPROV_WORKER".to_owned(), "false".to_owned()),
        ("GGPROV_WORKER_LEASE_MS".to_owned(), "0".to_owned()),
        ("GGPROV_RETRY_BASE_MS".to_owned(), "0".to_owned()),
        ("GGPROV_MAX_ATTEMPTS".to_owned(), "4".to_owned()),
    ];
    vars.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    let config = Config::from_sources(vars, None).expect("valid test config");
    let app = Application::build(&config).await.expect("app builds");
    let base = format!("http://{}", app.local_addr());
    let (worker, failpoints, cloud) = (app.worker(), app.failpoints(), app.local_cloud());
    tokio::spawn(app.run_until(std::future::pending()));
    TestApp { base, client: reqwest::Client::new(), worker, failpoints, cloud, data }
}

pub(crate) async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

impl TestApp {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request with the headers the official client sends on every call (CDF Accept and
    /// Content-Type, SigV4 Authorization and X-Amz-Date).
    pub(crate) fn cdf(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, self.url(path))
            .header("accept", CDF)
            .header("content-type", CDF)
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261122/us-east-1/execute-api/aws4_request, SignedHeaders=host;x-amz-date, Signature=0123456789abcdef",
            )
            .header("x-amz-date", "20261122T000000Z")
    }

    pub(crate) async fn get(&self, path: &str) -> Response {
        self.cdf(Method::GET, path).send().await.expect("request sent")
    }

    pub(crate) async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.cdf(Method::POST, path).body(body.to_string()).send().await.expect("request sent")
    }

    pub(crate) async fn put_json(&self, path: &str, body: &Value) -> Response {
        self.cdf(Method::PUT, path).body(body.to_string()).send().await.expect("request sent")
    }

    pub(crate) async fn delete(&self, path: &str) -> Response {
        self.cdf(Method::DELETE, path).send().await.expect("request sent")
    }

    /// Runs the worker loop's steps by hand (jobs, reported outcomes, reconciliation, rollout
    /// steps) until no core waits for an outcome, or fails after `limit`.
    pub(crate) async fn settle(&self, limit: std::time::Duration) {
        self.settle_with(limit, true).await;
    }

    /// `settle`, reading reported outcomes from the status feed only if `feed`; without it,
    /// every outcome comes from reconciliation.
    pub(crate) async fn settle_with(&self, limit: std::time::Duration, feed: bool) {
        let deadline = std::time::Instant::now() + limit;
        loop {
            self.drain().await;
            if feed {
                self.worker.ingest().await.unwrap();
            }
            self.worker.reconcile().await.unwrap();
            self.worker.advance_rollouts().await.unwrap();
            let summary = cdf_json(self.get("/fleet/summary").await).await;
            let in_progress: i64 = summary["templates"]
                .as_object()
                .unwrap()
                .values()
                .flat_map(|t| t["versions"].as_object().unwrap().values())
                .map(|v| v["lastDeploymentInProgress"].as_i64().unwrap())
                .sum();
            if in_progress == 0 {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "cores still waiting for outcomes: {summary}");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Runs queued jobs until none is left.
    pub(crate) async fn drain(&self) {
        self.worker.run_until_idle().await;
    }

    /// Submits a core task, asserting 202, and returns its id.
    pub(crate) async fn submit_core_task(&self, body: &Value) -> String {
        let response = self.post_json("/coreTasks", body).await;
        assert_eq!(response.status(), 202, "{}", response.text().await.unwrap_or_default());
        let id = header(&response, "x-taskid").expect("x-taskid").to_owned();
        assert_eq!(header(&response, "location"), Some(format!("/coreTasks/{id}").as_str()));
        id
    }

    /// The core task after draining the queue.
    pub(crate) async fn finished_core_task(&self, id: &str) -> Value {
        self.drain().await;
        cdf_json(self.get(&format!("/coreTasks/{id}")).await).await
    }

    /// What the local cloud holds for a thing (`None`: no such thing).
    pub(crate) async fn thing(&self, name: &str) -> Option<Value> {
        let response = self.client.get(self.url(&format!("/local-cloud/things/{name}"))).send().await.unwrap();
        match response.status().as_u16() {
            200 => Some(response.json().await.unwrap()),
            404 => None,
            other => panic!("GET /local-cloud/things/{name}: {other}"),
        }
    }

    /// Reads an artifact file from the data directory.
    pub(crate) fn artifact(&self, key: &str) -> Option<Vec<u8>> {
        std::fs::read(self.data.path().join("artifacts").join(key)).ok()
    }

    /// Provisions `names` in one core task, asserting it succeeds.
    pub(crate) async fn provision(&self, names: &[String]) {
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let id = self.submit_core_task(&create_cores(&refs)).await;
        assert_eq!(self.finished_core_task(&id).await["taskStatus"], "Success");
    }

    /// Creates a template with the given components (`[(key, version)]`), asserting 201.
    pub(crate) async fn create_template(&self, name: &str, components: &[(&str, &str)]) {
        let body = template_body(name, components);
        let response = self.post_json("/templates", &body).await;
        assert_eq!(response.status(), 201, "create {name}: {}", response.text().await.unwrap_or_default());
    }
}

pub(crate) fn template_body(name: &str, components: &[(&str, &str)]) -> Value {
    serde_json::json!({
        "name": name,
        "components": components.iter().map(|(k, v)| serde_json::json!({"key": k, "version": v})).collect::<Vec<_>>(),
    })
}

/// The JSON body of a response, asserting the CDF content type.
pub(crate) async fn cdf_json(response: Response) -> Value {
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert!(content_type.starts_with(CDF), "content-type {content_type:?}");
    response.json().await.expect("JSON body")
}

/// Status, error code and message of an error response.
pub(crate) async fn error_of(response: Response) -> (u16, String, Value) {
    let status = response.status().as_u16();
    let body = cdf_json(response).await;
    let code = body["error"].as_str().unwrap_or_else(|| panic!("no error code in {body}")).to_owned();
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "no message in {body}");
    (status, code, body)
}

pub(crate) fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The cloud calls that were answered, by API, from a `/metrics` text
/// (`ggprov_cloud_calls_total{api="…",outcome="ok"}`).
pub(crate) fn answered_cloud_calls(metrics: &str) -> std::collections::BTreeMap<String, u32> {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("ggprov_cloud_calls_total{api=\""))
        .filter_map(|l| l.split_once("\",outcome=\"ok\"} "))
        .map(|(api, count)| (api.to_owned(), count.parse().expect("a count")))
        .collect()
}

/// `prefix-0000`, `prefix-0001`, ...
pub(crate) fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:04}")).collect()
}

/// A core-task body creating `names` with the bundled core template.
pub(crate) fn create_cores(names: &[&str]) -> Value {
    serde_json::json!({
        "type": "Create",
        "coreVersion": "2.12.0",
        "cores": names.iter().map(|n| serde_json::json!({"name": n, "provisioningTemplate": "greengrass2_core"})).collect::<Vec<_>>(),
    })
}

/// A core-task body deleting `names`.
pub(crate) fn delete_cores(names: &[&str], deprovision: bool) -> Value {
    serde_json::json!({
        "type": "Delete",
        "coreVersion": "2.12.0",
        "options": {"deprovisionCores": deprovision, "deprovisionClientDevices": false},
        "cores": names.iter().map(|n| serde_json::json!({"name": n, "provisioningTemplate": "greengrass2_core"})).collect::<Vec<_>>(),
    })
}

/// A `ggprov serve` child process, killed when dropped.
pub(crate) struct ServedProcess {
    child: std::process::Child,
    pub(crate) base: String,
}

impl Drop for ServedProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServedProcess {
    /// Starts `ggprov serve <args>` on a free port (unless `env` sets `GGPROV_LISTEN`) with its
    /// state in `data` and `env` added;
    /// returns once it printed its address.
    pub(crate) fn start<K: AsRef<std::ffi::OsStr>, V: AsRef<std::ffi::OsStr>>(
        data: &std::path::Path,
        env: impl IntoIterator<Item = (K, V)>,
        args: &[&str],
    ) -> Self {
        use std::io::BufRead as _;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ggprov"))
            .arg("serve")
            .args(args)
            .env("GGPROV_LISTEN", "127.0.0.1:0")
            .env("GGPROV_DATA_DIR", data)
            .env("GGPROV_LOG", "warn")
            .env_remove("GGPROV_TEST_MOTO_URL")
            // The caller's settings win (a fixed GGPROV_LISTEN to restart on the same port).
            .envs(env)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("ggprov starts");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout piped")).read_line(&mut line).expect("first line");
        let base = line
            .trim()
            .strip_prefix("ggprov listening on ")
            .unwrap_or_else(|| panic!("ggprov did not start; first line {line:?}"))
            .to_owned();
        Self { child, base }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub(crate) fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        self.child.wait().unwrap()
    }
}
