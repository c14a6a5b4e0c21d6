//! Running it in production: authentication modes, metrics, roles, graceful shutdown. The
//! binary runs as a child process, as a deployment runs it.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{CDF, ServedProcess, answered_cloud_calls, create_cores, spawn_app};

struct Served {
    process: ServedProcess,
    base: String,
    http: reqwest::Client,
}

fn serve_in(data: &std::path::Path, env: &[(&str, &str)], args: &[&str]) -> Served {
    let process = ServedProcess::start(data, env.iter().copied(), args);
    Served { base: process.base.clone(), process, http: reqwest::Client::new() }
}

impl Served {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base)).header("accept", CDF);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        if let Some(body) = body {
            request = request.header("content-type", CDF).body(body.to_string());
        }
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, headers, None).await
    }

    async fn create_template(&self, name: &str, headers: &[(&str, &str)]) -> (u16, Value) {
        let body = json!({"name": name, "components": [{"key": "aws.greengrass.Cli", "version": "2.12.0"}]});
        self.call(reqwest::Method::POST, "/templates", headers, Some(&body)).await
    }
}

/// Asserts an error answer: status, code, and a message a person can act on.
fn assert_error(answer: &(u16, Value), status: u16, code: &str) {
    assert_eq!(answer.0, status, "{}", answer.1);
    assert_eq!(answer.1["error"], code, "{}", answer.1);
    assert!(answer.1["message"].as_str().is_some_and(|m| m.len() > 10), "{}", answer.1);
}

const SIGV4: [(&str, &str); 2] = [
    (
        "authorization",
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261122/us-east-1/execute-api/aws4_request, SignedHeaders=host;x-amz-date, Signature=0123",
    ),
    ("x-amz-date", "20261122T000000Z"),
];

#[tokio::test(flavor = "multi_thread")]
async fn none_and_iam_modes_accept_the_official_clients_sigv4_headers() {
    let data = tempfile::tempdir().unwrap();
    let open = serve_in(data.path(), &[], &[]);
    assert_eq!(open.get("/templates", &SIGV4).await.0, 200);
    drop(open);

    let data = tempfile::tempdir().unwrap();
    let iam = serve_in(data.path(), &[("GGPROV_AUTH", "iam")], &[]);
    assert_error(&iam.get("/templates", &SIGV4).await, 401, "UNAUTHENTICATED");
    let through_gateway = [SIGV4[0], SIGV4[1], ("x-ggprov-caller", "arn:aws:iam::123456789012:user/ops")];
    assert_eq!(iam.get("/templates", &through_gateway).await.0, 200);
    assert_eq!(iam.get("/health", &[]).await.0, 200, "health stays open");
}

#[tokio::test(flavor = "multi_thread")]
async fn api_keys_are_checked_against_stored_hashes_with_read_only_keys_forbidden_to_write() {
    let (writer, writer_hash) = ggprov::auth::new_api_key();
    let (reader, reader_hash) = ggprov::auth::new_api_key();
    let keys = format!("{writer_hash},{reader_hash}:read");
    let data = tempfile::tempdir().unwrap();
    let served = serve_in(data.path(), &[("GGPROV_AUTH", "api-key"), ("GGPROV_API_KEYS", &keys)], &[]);
    assert_error(&served.get("/templates", &[]).await, 401, "UNAUTHENTICATED");
    assert_error(&served.get("/templates", &[("x-api-key", "ggp_not-a-key")]).await, 401, "UNAUTHENTICATED");
    assert_error(&served.get("/templates", &[("x-api-key", &writer_hash)]).await, 401, "UNAUTHENTICATED");
    assert_eq!(served.get("/templates", &[("x-api-key", &reader)]).await.0, 200);
    assert_error(&served.create_template("cams", &[("x-api-key", &reader)]).await, 403, "FORBIDDEN");
    assert_eq!(served.create_template("cams", &[("x-api-key", &writer)]).await.0, 201);
    for open in ["/health", "/ready", "/metrics"] {
        assert_eq!(served.get(open, &[]).await.0, 200, "{open} stays open");
    }
    assert!(
        !std::fs::read_dir(data.path()).unwrap().any(|e| {
            let path = e.unwrap().path();
            path.is_file()
                && std::fs::read(&path).is_ok_and(|b| b.windows(writer.len()).any(|w| w == writer.as_bytes()))
        }),
        "keys are never stored"
    );
}

fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// An OIDC issuer on a free port: discovery document and JWKS with one EC P-256 key.
async fn issuer(key: &rcgen::KeyPair) -> String {
    counting_issuer(key).await.0
}

/// The same, counting JWKS fetches, and able to go down (500 on every request).
async fn counting_issuer(
    key: &rcgen::KeyPair,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>, std::sync::Arc<std::sync::atomic::AtomicBool>) {
    use std::sync::atomic::Ordering;
    let fetches = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let raw = key.public_key_raw();
    let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256", "use": "sig",
                                 "x": b64url(&raw[1..33]), "y": b64url(&raw[33..65])}]});
    let discovery = json!({"issuer": base, "jwks_uri": format!("{base}/jwks.json")});
    let (counted, failing) = (fetches.clone(), down.clone());
    let app = axum::Router::new()
        .route("/.well-known/openid-configuration", axum::routing::get(move || async move { axum::Json(discovery) }))
        .route(
            "/jwks.json",
            axum::routing::get(move || {
                let (jwks, counted, failing) = (jwks.clone(), counted.clone(), failing.clone());
                async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    if failing.load(Ordering::SeqCst) {
                        Err(axum::http::StatusCode::INTERNAL_SERVER_ERROR)
                    } else {
                        Ok(axum::Json(jwks))
                    }
                }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, fetches, down)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_jwks_is_fetched_once_for_a_burst_and_an_issuer_outage_is_not_hammered() {
    use std::sync::atomic::Ordering;
    let key = rcgen::KeyPair::generate().unwrap();
    let (base, fetches, down) = counting_issuer(&key).await;
    let data = tempfile::tempdir().unwrap();
    let served = serve_in(
        data.path(),
        &[("GGPROV_AUTH", "jwt"), ("GGPROV_JWT_ISSUER", &base), ("GGPROV_JWT_AUDIENCE", "ggprov")],
        &[],
    );
    let exp = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 600) as i64;
    let bearer = format!("Bearer {}", token(&key, &json!({"iss": base, "aud": "ggprov", "exp": exp})));
    // A burst of first requests: one fetch between them (single flight), all verified.
    let statuses = futures::future::join_all(
        (0..24).map(|_| async { served.get("/templates", &[("authorization", bearer.as_str())]).await.0 }),
    )
    .await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(fetches.load(Ordering::SeqCst), 1, "one JWKS fetch for the burst");
    // The issuer goes down: cached keys keep working, and a flood of tokens with unknown key
    // ids costs at most one more fetch, not one per request.
    down.store(true, Ordering::SeqCst);
    let mut unknown = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    unknown.kid = Some("rotated".into());
    let encoding = jsonwebtoken::EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).unwrap();
    let rotated = format!(
        "Bearer {}",
        jsonwebtoken::encode(&unknown, &json!({"iss": base, "aud": "ggprov", "exp": exp}), &encoding).unwrap()
    );
    for _ in 0..20 {
        assert_eq!(served.get("/templates", &[("authorization", rotated.as_str())]).await.0, 401);
        assert_eq!(served.get("/templates", &[("authorization", bearer.as_str())]).await.0, 200);
    }
    assert!(
        fetches.load(Ordering::SeqCst) <= 2,
        "{} fetches while the issuer was down",
        fetches.load(Ordering::SeqCst)
    );
}

fn token(key: &rcgen::KeyPair, claims: &Value) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("k1".into());
    let encoding = jsonwebtoken::EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).unwrap();
    jsonwebtoken::encode(&header, claims, &encoding).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn jwt_tokens_are_verified_against_the_issuers_jwks_and_writes_need_the_scope() {
    let key = rcgen::KeyPair::generate().unwrap();
    let base = issuer(&key).await;
    let data = tempfile::tempdir().unwrap();
    let served = serve_in(
        data.path(),
        &[
            ("GGPROV_AUTH", "jwt"),
            ("GGPROV_JWT_ISSUER", &base),
            ("GGPROV_JWT_AUDIENCE", "ggprov"),
            ("GGPROV_JWT_WRITE_SCOPE", "ggprov/write"),
        ],
        &[],
    );
    let exp = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 600) as i64;
    let bearer = |t: &str| format!("Bearer {t}");
    let reader = token(&key, &json!({"iss": base, "aud": "ggprov", "exp": exp, "sub": "dashboard"}));
    let writer =
        token(&key, &json!({"iss": base, "aud": "ggprov", "exp": exp, "sub": "ci", "scope": "openid ggprov/write"}));
    let expired = token(&key, &json!({"iss": base, "aud": "ggprov", "exp": exp - 7200, "scope": "ggprov/write"}));
    let elsewhere = token(&key, &json!({"iss": base, "aud": "another-api", "exp": exp, "scope": "ggprov/write"}));
    let stranger = token(&rcgen::KeyPair::generate().unwrap(), &json!({"iss": base, "aud": "ggprov", "exp": exp}));

    assert_error(&served.get("/templates", &[]).await, 401, "UNAUTHENTICATED");
    for bad in [&expired, &elsewhere, &stranger] {
        assert_error(&served.get("/templates", &[("authorization", &bearer(bad))]).await, 401, "UNAUTHENTICATED");
    }
    assert_eq!(served.get("/templates", &[("authorization", &bearer(&reader))]).await.0, 200);
    assert_error(&served.create_template("cams", &[("authorization", &bearer(&reader))]).await, 403, "FORBIDDEN");
    assert_eq!(served.create_template("cams", &[("authorization", &bearer(&writer))]).await.0, 201);
    assert_eq!(served.get("/ready", &[]).await.0, 200);
}

#[tokio::test]
async fn metrics_cover_requests_jobs_items_queue_and_cloud_calls() {
    let app = spawn_app().await;
    app.create_template("metered", &[("aws.greengrass.Cli", "2.12.0")]).await;
    assert_eq!(app.get("/templates/metered").await.status(), 200);
    assert_eq!(app.get("/templates/absent").await.status(), 404);
    let task = app.submit_core_task(&create_cores(&["m-1", "m-2"])).await;
    let before = reqwest::get(app.url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(before.contains("ggprov_queue_jobs{state=\"visible\"} 1\n"), "one batch waits: {before}");
    app.drain().await;
    assert_eq!(app.finished_core_task(&task).await["taskStatus"], "Success");
    let response = reqwest::get(app.url("/metrics")).await.unwrap();
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let text = response.text().await.unwrap();
    for family in ggprov_domain::metrics::FAMILIES.iter().map(|f| f.0) {
        assert!(text.contains(&format!("# TYPE {family} ")), "{family} missing");
    }
    for line in [
        "ggprov_http_requests_total{route=\"/templates/{name}\",method=\"GET\",status=\"200\"} 1\n",
        "ggprov_http_requests_total{route=\"/templates/{name}\",method=\"GET\",status=\"404\"} 1\n",
        "ggprov_http_requests_total{route=\"/templates\",method=\"POST\",status=\"201\"} 1\n",
        "ggprov_jobs_total{kind=\"task_batch\",outcome=\"succeeded\"} 1\n",
        "ggprov_items_total{kind=\"task_batch\",outcome=\"processed\"} 2\n",
        "ggprov_cloud_calls_total{api=\"CreateThing\",outcome=\"ok\"} 2\n",
        "ggprov_queue_jobs{state=\"visible\"} 0\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    assert!(text.contains("ggprov_http_request_duration_seconds_count{route=\"/templates\",method=\"POST\"} 1\n"));
    // What two cores cost in cloud calls: four calls a core (no DescribeThing before the
    // CreateThing that answers the same question), and the template's policy group set up once.
    let calls = answered_cloud_calls(&text);
    let expected = [
        ("AddThingToThingGroup", 2),
        ("AttachPolicy", 2),
        ("AttachThingPrincipal", 2),
        ("CreateThing", 2),
        ("CreateThingGroup", 1),
        ("GetPolicy", 2),
        ("RegisterCertificate", 2),
    ];
    assert_eq!(calls, expected.into_iter().map(|(api, n)| (api.to_owned(), n)).collect(), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_worker_role_serves_only_operations_and_the_api_role_runs_no_jobs() {
    let data = tempfile::tempdir().unwrap();
    let api = serve_in(data.path(), &[], &["--role", "api"]);
    let answer = api.call(reqwest::Method::POST, "/coreTasks", &[], Some(&create_cores(&["r-1"]))).await;
    assert_eq!(answer.0, 202, "{}", answer.1);
    let metrics = api.http.get(format!("{}/metrics", api.base)).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("ggprov_queue_jobs{state=\"visible\"} 1\n"),
        "the api role leaves jobs to workers: {metrics}"
    );
    drop(api);

    let worker = serve_in(data.path(), &[], &["--role", "worker"]);
    assert_error(&worker.get("/templates", &[]).await, 404, "ROUTE_NOT_FOUND");
    assert_eq!(worker.get("/health", &[]).await.0, 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = worker.http.get(format!("{}/metrics", worker.base)).send().await.unwrap().text().await.unwrap();
        if text.contains("ggprov_jobs_total{kind=\"task_batch\",outcome=\"succeeded\"} 1\n") {
            break;
        }
        assert!(Instant::now() < deadline, "the worker role ran the job the api role queued: {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_a_running_task_loses_nothing_and_a_restart_finishes_it() {
    let data = tempfile::tempdir().unwrap();
    let env =
        [("GGPROV_CORE_BATCH_SIZE", "2"), ("GGPROV_WORKER_LEASE_MS", "2000"), ("GGPROV_SHUTDOWN_GRACE_SECS", "10")];
    let mut first = serve_in(data.path(), &env, &[]);
    // Slow the simulated cloud to AWS's quotas, so the task is mid-way when the signal comes.
    let faults = first
        .http
        .put(format!("{}/local-cloud/faults", first.base))
        .json(&json!({"quotas": true}))
        .send()
        .await
        .unwrap();
    assert!(faults.status().is_success());
    let names: Vec<String> = (0..40).map(|i| format!("term-{i:02}")).collect();
    let body = create_cores(&names.iter().map(String::as_str).collect::<Vec<_>>());
    let (status, _) = first.call(reqwest::Method::POST, "/coreTasks", &[], Some(&body)).await;
    assert_eq!(status, 202);
    let tasks = first.get("/coreTasks", &[]).await.1;
    let task_id = tasks["tasks"][0]["id"]
        .as_str()
        .or(tasks["coreTasks"][0]["id"].as_str())
        .expect("the task is listed")
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let task = first.get(&format!("/coreTasks/{task_id}"), &[]).await.1;
        let done = task["cores"].as_array().unwrap().iter().filter(|c| c["taskStatus"] == "Success").count();
        if done > 0 {
            assert!(done < 40, "the task must still be running when the signal comes");
            break;
        }
        assert!(Instant::now() < deadline, "no core finished: {task}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    let exit = first.process.terminate();
    assert!(exit.success(), "SIGTERM is a clean shutdown: {exit}");
    assert!(started.elapsed() < Duration::from_secs(12), "within the grace period");

    let second = serve_in(data.path(), &env, &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let task = loop {
        let task = second.get(&format!("/coreTasks/{task_id}"), &[]).await.1;
        if task["taskStatus"] == "Success" {
            break task;
        }
        assert_ne!(task["taskStatus"], "Failure", "{task}");
        assert!(Instant::now() < deadline, "the restarted service did not finish the task: {task}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(task["cores"].as_array().unwrap().len(), 40);
    for name in &names {
        let thing = second.http.get(format!("{}/local-cloud/things/{name}", second.base)).send().await.unwrap();
        let thing: Value = thing.json().await.unwrap();
        assert_eq!(
            thing["principals"].as_array().map(Vec::len),
            Some(1),
            "{name}: one certificate, none lost or doubled: {thing}"
        );
    }
}

#[tokio::test]
async fn made_up_methods_and_paths_do_not_grow_the_metrics() {
    let app = spawn_app().await;
    let client = reqwest::Client::new();
    let send = |method: &str, path: &str| {
        let request = client.request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), app.url(path));
        async move { request.send().await.unwrap().status().as_u16() }
    };
    // Warm up the label sets a made-up request lands in, then measure.
    send("BREW0", "/nowhere/0").await;
    let before = reqwest::get(app.url("/metrics")).await.unwrap().text().await.unwrap();
    for i in 1..40 {
        send(&format!("BREW{i}"), &format!("/nowhere/{i}")).await;
        send(&format!("PROBE{i}"), "/templates").await;
    }
    let after = reqwest::get(app.url("/metrics")).await.unwrap().text().await.unwrap();
    let label_sets = |text: &str| {
        text.lines().filter(|l| l.starts_with("ggprov_http_requests_total{") && !l.contains("/metrics")).count()
    };
    // One more label set at most: /templates answering 405 to `other`; none per request.
    assert_eq!(label_sets(&before), 1, "{before}");
    assert_eq!(label_sets(&after), 2, "{after}");
    assert!(!after.contains("BREW") && !after.contains("PROBE") && !after.contains("/nowhere"), "{after}");
    assert!(after.contains("method=\"other\""), "{after}");
    assert!(after.contains("route=\"unmatched\""), "{after}");
}
