//! `spawn_app()`: the application as `ggprov serve` builds it, on port 0 with its own data
//! directory, plus a client that speaks like the official CDF client.

use ggprov::{Application, Config};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;
use tempfile::TempDir;

pub(crate) const CDF: &str = "application/vnd.aws-cdf-v1.0+json";

pub(crate) struct TestApp {
    pub(crate) base: String,
    pub(crate) client: reqwest::Client,
    _data: TempDir,
}

/// Starts the app with default settings plus `env` overrides.
pub(crate) async fn spawn_app_with(env: &[(&str, &str)]) -> TestApp {
    let data = tempfile::tempdir().expect("temp dir");
    let mut vars = vec![
        ("GGPROV_LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
        ("GGPROV_DATA_DIR".to_owned(), data.path().display().to_string()),
    ];
    vars.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    let config = Config::from_sources(vars, None).expect("valid test config");
    let app = Application::build(&config).await.expect("app builds");
    let base = format!("http://{}", app.local_addr());
    tokio::spawn(app.run_until(std::future::pending()));
    TestApp { base, client: reqwest::Client::new(), _data: data }
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
