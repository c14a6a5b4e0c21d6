//! Connection limits and timeouts, tried with raw sockets as slow or greedy clients would.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::helpers::{ServedProcess, spawn_app_with};

fn addr(base: &str) -> String {
    base.trim_start_matches("http://").to_owned()
}

/// Reads until the server closes the connection (or `limit` passes); returns what it sent.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut received = Vec::new();
    let read = tokio::time::timeout(limit, stream.read_to_end(&mut received)).await;
    read.ok().map(|_| String::from_utf8_lossy(&received).into_owned())
}

#[tokio::test]
async fn a_client_that_trickles_its_headers_is_disconnected() {
    let app = spawn_app_with(&[("GGPROV_HTTP_HEADER_TIMEOUT_SECS", "1")]).await;
    let mut slow = TcpStream::connect(addr(&app.base)).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: ggprov\r\n").await.unwrap();
    let started = Instant::now();
    let answer = read_until_closed(&mut slow, Duration::from_secs(10)).await.expect("the server closes the connection");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(!answer.contains("200 OK"), "no answer to unfinished headers: {answer}");
    // A prompt client is served meanwhile.
    assert_eq!(app.get("/health").await.status(), 200);
}

#[tokio::test]
async fn a_request_whose_body_never_arrives_times_out_with_a_json_error() {
    let app = spawn_app_with(&[("GGPROV_HTTP_REQUEST_TIMEOUT_SECS", "1")]).await;
    let mut slow = TcpStream::connect(addr(&app.base)).await.unwrap();
    slow.write_all(
        b"POST /templates HTTP/1.1\r\nHost: ggprov\r\nContent-Type: application/json\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{\"name\":",
    )
    .await
    .unwrap();
    let answer = read_until_closed(&mut slow, Duration::from_secs(10)).await.expect("an answer, then close");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("REQUEST_TIMEOUT"), "{answer}");
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_for_a_free_slot() {
    let app = spawn_app_with(&[("GGPROV_HTTP_MAX_CONNECTIONS", "2"), ("GGPROV_HTTP_HEADER_TIMEOUT_SECS", "60")]).await;
    // Two idle connections take both slots.
    let first = TcpStream::connect(addr(&app.base)).await.unwrap();
    let _second = TcpStream::connect(addr(&app.base)).await.unwrap();
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let url = app.url("/health");
    let waiting = tokio::spawn({
        let (client, url) = (client.clone(), url.clone());
        async move { client.get(url).send().await.map(|r| r.status().as_u16()) }
    });
    // Not served while both slots are held (bounded wait, not a sleep-as-sync: it must NOT finish).
    let early = tokio::time::timeout(Duration::from_millis(500), client.get(&url).send()).await;
    assert!(early.is_err(), "a third connection is not served while two are held");
    // Freeing a slot lets the waiting request through.
    drop(first);
    let status = tokio::time::timeout(Duration::from_secs(10), waiting).await.expect("served once a slot is free");
    assert_eq!(status.unwrap().unwrap(), 200);
}

#[test]
fn shutdown_does_not_wait_for_idle_keep_alive_connections() {
    let data = tempfile::tempdir().unwrap();
    let mut served = ServedProcess::start(data.path(), [("GGPROV_SHUTDOWN_GRACE_SECS", "30")], &[]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // A keep-alive connection that answered one request and then sits idle.
    let _idle = runtime.block_on(async {
        let mut stream = TcpStream::connect(addr(&served.base)).await.unwrap();
        stream.write_all(b"GET /health HTTP/1.1\r\nHost: ggprov\r\n\r\n").await.unwrap();
        let mut buffer = [0u8; 512];
        let n = stream.read(&mut buffer).await.unwrap();
        assert!(String::from_utf8_lossy(&buffer[..n]).starts_with("HTTP/1.1 200"));
        stream
    });
    let started = Instant::now();
    let status = served.terminate();
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stopped in {:?}, not after the 30 s grace",
        started.elapsed()
    );
}

#[tokio::test]
async fn every_write_route_refuses_a_missing_or_empty_body_and_stores_nothing() {
    let app = crate::helpers::spawn_app().await;
    let routes = [
        (reqwest::Method::POST, "/templates"),
        (reqwest::Method::PUT, "/templates/edge"),
        (reqwest::Method::POST, "/coreTasks"),
        (reqwest::Method::POST, "/cores/gw/deviceTasks"),
        (reqwest::Method::POST, "/deploymentTasks"),
        (reqwest::Method::PUT, "/provisioningTemplates/mine"),
    ];
    for (method, path) in routes {
        for body in ["", "   ", "{}"] {
            let response = app
                .client
                .request(method.clone(), app.url(path))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let (_, _, error) = crate::helpers::error_of(response).await;
            assert!([400, 404].contains(&status), "{method} {path} with {body:?}: {status} {error}");
        }
        let bare = app.client.request(method.clone(), app.url(path)).send().await.unwrap();
        assert!([400, 404].contains(&bare.status().as_u16()), "{method} {path} without a body: {}", bare.status());
    }
    let stored = crate::helpers::cdf_json(app.get("/provisioningTemplates").await).await;
    assert!(!stored.to_string().contains("mine"), "no empty provisioning template stored: {stored}");
    assert_eq!(crate::helpers::cdf_json(app.get("/templates").await).await["templates"], serde_json::json!([]));
    assert_eq!(crate::helpers::cdf_json(app.get("/coreTasks").await).await, serde_json::json!({"tasks": []}));
    assert_eq!(
        crate::helpers::cdf_json(app.get("/deploymentTasks").await).await["deploymentTasks"],
        serde_json::json!([])
    );
}
