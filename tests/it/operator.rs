//! Operator experience without a browser: the live event stream, the dashboard's files and
//! credentials check, and the command-line client against a served process.

use std::io::{BufRead as _, BufReader, Read as _};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{ServedProcess, create_cores, names, spawn_app, spawn_app_with};

const BIN: &str = env!("CARGO_BIN_EXE_ggprov");

/// Reads SSE events (id, data) from a response until `n` arrived.
pub(crate) async fn read_events(response: reqwest::Response, n: usize) -> Vec<(u64, Value)> {
    use futures::StreamExt as _;
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    let mut events = Vec::new();
    while events.len() < n {
        let chunk = tokio::time::timeout(Duration::from_secs(30), body.next())
            .await
            .expect("an event within 30 s")
            .expect("the stream stays open")
            .unwrap();
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let id = block.lines().find_map(|l| l.strip_prefix("id:")).map(|i| i.trim().parse::<u64>().unwrap());
            let data: String = block.lines().filter_map(|l| l.strip_prefix("data:")).map(str::trim_start).collect();
            if let (Some(id), false) = (id, data.is_empty()) {
                events.push((id, serde_json::from_str(&data).unwrap()));
            }
        }
    }
    events
}

/// The stream delivers each event once, in order, live; a reconnect with `Last-Event-ID`
/// continues exactly after it; without one it starts with the next event; bad input is a 400.
#[tokio::test(flavor = "multi_thread")]
async fn event_stream_is_live_ordered_and_resumes_after_last_event_id() {
    let app = spawn_app().await;
    // Two cores before anyone listens: 2 Core Created events.
    app.provision(&names("early", 2)).await;
    let from_now = app.client.get(app.url("/events/stream")).send().await.unwrap();
    assert_eq!(from_now.status(), 200);
    assert!(from_now.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let replay = app.client.get(app.url("/events/stream?after=0")).send().await.unwrap();

    // Three more while both listen.
    app.provision(&names("late", 3)).await;
    let live = read_events(from_now, 3).await;
    let names_of = |events: &[(u64, Value)]| -> Vec<String> {
        events.iter().map(|(_, e)| e["detail"]["coreName"].as_str().unwrap_or("").to_owned()).collect()
    };
    let mut seen = names_of(&live);
    seen.sort();
    assert_eq!(seen, names("late", 3), "a stream without a position starts with the next event");
    assert!(live.windows(2).all(|w| w[0].0 < w[1].0), "ids rise: {live:?}");
    for (id, event) in &live {
        assert_eq!(event["sequence"].as_u64(), Some(*id));
        assert_eq!(event["detailType"], "Core Created Event");
    }
    let all = read_events(replay, 5).await;
    assert_eq!(names_of(&all)[..2].iter().filter(|n| n.starts_with("early")).count(), 2, "after=0 replays history");

    // Resume after the second event: exactly the three after it, none twice.
    let resumed =
        app.client.get(app.url("/events/stream")).header("last-event-id", all[1].0.to_string()).send().await.unwrap();
    let again = read_events(resumed, 3).await;
    assert_eq!(again.iter().map(|e| e.0).collect::<Vec<_>>(), all[2..].iter().map(|e| e.0).collect::<Vec<_>>());

    // A filter by detail-type, and bad positions.
    let filtered =
        app.client.get(app.url("/events/stream?after=0&detailType=Core%20Deleted%20Event")).send().await.unwrap();
    let deleting = app.submit_core_task(&crate::helpers::delete_cores(&["early-0000"], false)).await;
    app.finished_core_task(&deleting).await;
    let only = read_events(filtered, 1).await;
    assert_eq!(only[0].1["detailType"], "Core Deleted Event");
    for (header, query, field) in
        [(Some("abc"), "", "Last-Event-ID"), (None, "?after=-1", "after"), (None, "?detailType=,", "detailType")]
    {
        let mut request = app.client.get(app.url(&format!("/events/stream{query}")));
        if let Some(h) = header {
            request = request.header("last-event-id", h);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 400, "{header:?} {query}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["details"][0]["field"], field, "{body}");
    }
}

/// The dashboard's files are in the binary and open (they hold no data) with a strict content
/// security policy; the API behind them keeps its credentials; `/whoami` tells a read-only key.
#[tokio::test(flavor = "multi_thread")]
async fn dashboard_files_are_served_and_whoami_tells_read_only_callers() {
    let (ro, rw) = ("ggp_readonly_test_key", "ggp_readwrite_test_key");
    let hashes = format!(
        "{}:read,{}",
        ggprov::auth::hex(&ggprov::auth::hash_key(ro)),
        ggprov::auth::hex(&ggprov::auth::hash_key(rw))
    );
    let app = spawn_app_with(&[("GGPROV_AUTH", "api-key"), ("GGPROV_API_KEYS", &hashes)]).await;
    let no_redirect = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let moved = no_redirect.get(app.url("/ui")).send().await.unwrap();
    assert_eq!(moved.status(), 308);
    assert_eq!(moved.headers()["location"], "ui/");
    for (path, kind) in [("/ui/", "text/html"), ("/ui/app.js", "text/javascript"), ("/ui/app.css", "text/css")] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path} needs no credentials");
        assert!(response.headers()["content-type"].to_str().unwrap().starts_with(kind));
        let csp = response.headers()["content-security-policy"].to_str().unwrap().to_owned();
        assert!(csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"), "{csp}");
        let etag = response.headers()["etag"].clone();
        let body = response.text().await.unwrap();
        let body = body.replace("http://www.w3.org/2000/svg", "");
        assert!(!body.contains("http://") && !body.contains("https://"), "{path} loads nothing from elsewhere");
        let cached = app.client.get(app.url(path)).header("if-none-match", etag).send().await.unwrap();
        assert_eq!(cached.status(), 304);
    }
    let who = |key: Option<&'static str>| {
        let app = &app;
        async move {
            let mut request = app.client.get(app.url("/whoami"));
            if let Some(key) = key {
                request = request.header("x-api-key", key);
            }
            request.send().await.unwrap()
        }
    };
    assert_eq!(who(None).await.status(), 401);
    assert_eq!(who(Some(ro)).await.json::<Value>().await.unwrap(), json!({"authentication": true, "canWrite": false}));
    assert_eq!(who(Some(rw)).await.json::<Value>().await.unwrap(), json!({"authentication": true, "canWrite": true}));
    // The stream is behind the same credentials.
    assert_eq!(app.client.get(app.url("/events/stream")).send().await.unwrap().status(), 401);
}

/// Runs the CLI against `base` and returns (exit code, stdout, stderr).
fn cli(base: &str, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(BIN).args(args).env("GGPROV_URL", base).env_remove("GGPROV_API_KEY").output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

fn assert_plain(text: &str) {
    assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "control characters in non-terminal output: {text:?}");
}

/// A CSV of 500 cores with `--wait` exits 0 with every core provisioned; a CSV with a bad row
/// fails before submitting, naming the line; JSON output parses; API errors carry the API's
/// message; output that is not a terminal has no control characters.
#[test]
fn cli_provisions_a_csv_and_refuses_a_bad_one_naming_the_line() {
    let data = tempfile::tempdir().unwrap();
    let server = ServedProcess::start(data.path(), [("GGPROV_AUTH", "none")], &[]);
    let dir = tempfile::tempdir().unwrap();

    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "name,configFileGenerator\ncore-1,MANUAL_INSTALL\ncore-2,\ncore 3,\n").unwrap();
    let (code, _, stderr) =
        cli(&server.base, &["cores", "provision", "--csv", bad.to_str().unwrap(), "--core-version", "2.12.0"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("bad.csv:4:") && stderr.contains("core 3"), "{stderr}");
    let dup = dir.path().join("dup.csv");
    std::fs::write(&dup, "name\na-1\na-2\na-1\n").unwrap();
    let (code, _, stderr) =
        cli(&server.base, &["cores", "provision", "--csv", dup.to_str().unwrap(), "--core-version", "2.12.0"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("dup.csv:4:") && stderr.contains("first on line 2"), "{stderr}");
    let (_, tasks, _) = cli(&server.base, &["tasks", "get", "none-such"]);
    assert!(tasks.is_empty());
    // Ids made before ids began with a letter or digit (and the original's) can start with `-`:
    // they are ids to look up, not options.
    for verb in ["get", "retry"] {
        let (code, _, stderr) = cli(&server.base, &["tasks", verb, "-Gb0_x-1a"]);
        assert_eq!(code, 1, "{verb}: {stderr}");
        assert!(stderr.contains("-Gb0_x-1a") && !stderr.contains("unexpected argument"), "{verb}: {stderr}");
    }
    let listed: Value = reqwest::blocking::get(format!("{}/coreTasks", server.base)).unwrap().json().unwrap();
    assert_eq!(listed["tasks"], json!([]), "nothing was submitted");

    // A column the provisioning template does not declare: the API refuses every row; the
    // CLI says which lines, without repeating the problem 40 times.
    let extra = dir.path().join("extra.csv");
    let mut text = String::from("name,Region\n");
    for name in names("extra", 40) {
        text.push_str(&format!("{name},eu\n"));
    }
    std::fs::write(&extra, text).unwrap();
    let (code, _, stderr) =
        cli(&server.base, &["cores", "provision", "--csv", extra.to_str().unwrap(), "--core-version", "2.12.0"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("line 2.provisioningParameters") && stderr.contains("'Region'"), "{stderr}");
    assert!(stderr.contains("and 35 more") && stderr.len() < 2000, "{stderr}");

    let csv = dir.path().join("cores.csv");
    let mut text = String::from("name,configFileGenerator\n");
    for name in names("csv", 500) {
        text.push_str(&format!("{name},MANUAL_INSTALL\n"));
    }
    std::fs::write(&csv, text).unwrap();
    let (code, stdout, stderr) = cli(
        &server.base,
        &["cores", "provision", "--csv", csv.to_str().unwrap(), "--core-version", "2.12.0", "--wait"],
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("500/500 done: 500 succeeded, 0 failed"), "{stdout}");
    assert_plain(&stdout);
    assert_plain(&stderr);

    let (code, stdout, _) = cli(&server.base, &["cores", "list", "--output", "json"]);
    assert_eq!(code, 0);
    let cores: Value = serde_json::from_str(&stdout).expect("--output json parses");
    assert_eq!(cores["cores"].as_array().unwrap().len(), 500, "every page is read");
    let (code, stdout, _) = cli(&server.base, &["fleet", "-o", "json"]);
    assert_eq!(code, 0);
    let fleet: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(fleet["templates"]["None"]["versions"]["0"]["desiredInUse"], 500);

    // Templates: create, a refused duplicate with the API's words, diff.
    let t1 = dir.path().join("t1.json");
    std::fs::write(
        &t1,
        json!({"name": "cams", "components": [{"key": "aws.greengrass.Cli", "version": "2.12.0"}]}).to_string(),
    )
    .unwrap();
    let t2 = dir.path().join("t2.json");
    std::fs::write(&t2, json!({"components": [{"key": "aws.greengrass.Cli", "version": "2.13.0"}, {"key": "aws.greengrass.LogManager", "version": "2.3.7"}]}).to_string()).unwrap();
    assert_eq!(cli(&server.base, &["templates", "create", t1.to_str().unwrap()]).0, 0);
    let (code, _, stderr) = cli(&server.base, &["templates", "create", t1.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("409") && stderr.contains("already exists"), "{stderr}");
    assert_eq!(cli(&server.base, &["templates", "update", "cams", t2.to_str().unwrap()]).0, 0);
    let (code, stdout, _) = cli(&server.base, &["templates", "diff", "cams", "1", "2", "-o", "json"]);
    assert_eq!(code, 0);
    let diff: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        diff["changes"],
        json!([{"component": "aws.greengrass.Cli", "from": "2.12.0", "to": "2.13.0"},
               {"component": "aws.greengrass.LogManager", "from": null, "to": "2.3.7"}])
    );

    // Deploy in waves and wait: exit 0; a core that fails makes the exit 1 with its name.
    let (code, stdout, stderr) = cli(
        &server.base,
        &["deploy", "cams", "--cores", "csv-0000,csv-0001,csv-0002,csv-0003", "--waves", "50,100", "--wait"],
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("4/4 done: 4 succeeded"), "{stdout}");
    let client = reqwest::blocking::Client::new();
    let set = client
        .put(format!("{}/local-cloud/cores/csv-0010/behavior", server.base))
        .json(&json!({"deploymentOutcome": "FAILED"}))
        .send()
        .unwrap();
    assert!(set.status().is_success(), "{}", set.text().unwrap());
    let (code, stdout, stderr) = cli(&server.base, &["deploy", "cams", "--cores", "csv-0010,csv-0011", "--wait"]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("1 succeeded, 1 failed") && stderr.contains("failed: csv-0010: FAILED"),
        "{stdout}\n{stderr}"
    );
    let (code, _, stderr) = cli(&server.base, &["deploy", "cams", "--cores", "csv-0001", "--waves", "10,50"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("last wave must be 100"), "{stderr}");

    // Completions for the shells people use.
    for shell in ["bash", "zsh", "fish"] {
        let (code, stdout, _) = cli(&server.base, &["completions", shell]);
        assert_eq!(code, 0);
        assert!(stdout.contains("provision"), "{shell}");
    }
}

/// A free loopback port (bound and released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Lines of a child's stderr, read on a thread, handed over a channel.
fn lines_of(stream: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if send.send(line).is_err() {
                break;
            }
        }
    });
    receive
}

/// `ggprov tasks watch ID` against `base`, with its stderr lines (stdout stays piped).
fn watch_task(base: &str, id: &str) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    let mut watch = Command::new(BIN)
        .args(["tasks", "watch", id])
        .env("GGPROV_URL", base)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = lines_of(watch.stderr.take().unwrap());
    (watch, lines)
}

fn wait_for_line(lines: &std::sync::mpsc::Receiver<String>, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if pred(&line) => return line,
            Ok(line) => seen.push(line),
            Err(err) => panic!("no line with {what} ({err}); the command said:\n{}", seen.join("\n")),
        }
    }
}

/// `tasks watch` waits out a server restart and ends with the task's result; Ctrl-C stops the
/// watching, not the task, and says how to watch again.
#[test]
fn cli_watch_survives_a_server_restart_and_ctrl_c_leaves_the_task_running() {
    let data = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let env = [("GGPROV_AUTH", "none"), ("GGPROV_LISTEN", listen.as_str()), ("GGPROV_WORKER_LEASE_MS", "3000")];
    let mut first = ServedProcess::start(data.path(), env, &[]);
    let base = first.base.clone();
    let client = reqwest::blocking::Client::new();
    let cores = names("watch", 1500);
    let refs: Vec<&str> = cores.iter().map(String::as_str).collect();
    let response = client
        .post(format!("{base}/coreTasks"))
        .header("content-type", crate::helpers::CDF)
        .body(create_cores(&refs).to_string())
        .send()
        .unwrap();
    assert_eq!(response.status(), 202);
    let id = response.headers()["x-taskid"].to_str().unwrap().to_owned();

    let (mut watch, lines) = watch_task(&base, &id);
    wait_for_line(&lines, "progress", |l| l.contains(" done: "));
    let status = first.terminate();
    assert!(status.success(), "{status:?}");
    wait_for_line(&lines, "the server gone", |l| l.contains("cannot reach"));
    let _second = ServedProcess::start(data.path(), env, &[]);
    wait_for_line(&lines, "the server back", |l| l.contains("answers again"));
    let code = watch.wait().unwrap().code();
    let mut stdout = String::new();
    watch.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("1500/1500 done: 1500 succeeded, 0 failed"), "{stdout}");

    // A rollout that waits for approval never ends by itself: Ctrl-C leaves it as it is.
    let template = json!({"name": "gate", "components": [{"key": "aws.greengrass.Cli", "version": "2.12.0"}]});
    client
        .post(format!("{base}/templates"))
        .header("content-type", crate::helpers::CDF)
        .body(template.to_string())
        .send()
        .unwrap();
    let deploy = json!({"template": {"name": "gate"}, "targets": {"thingNames": ["watch-0000", "watch-0001", "watch-0002"]},
        "rollout": {"waves": [{"count": 1}, {"percent": 100}], "approval": "manual"}});
    let response = client
        .post(format!("{base}/deploymentTasks"))
        .header("content-type", crate::helpers::CDF)
        .body(deploy.to_string())
        .send()
        .unwrap();
    assert_eq!(response.status(), 202);
    let deployment = response.headers()["x-taskid"].to_str().unwrap().to_owned();
    let (mut watch, lines) = watch_task(&base, &deployment);
    wait_for_line(&lines, "the first wave done", |l| l.starts_with("1/3 done"));
    assert!(Command::new("kill").args(["-INT", &watch.id().to_string()]).status().unwrap().success());
    let said = wait_for_line(&lines, "how to watch again", |l| l.contains("stopped watching"));
    assert!(said.contains(&format!("ggprov tasks watch {deployment}")), "{said}");
    assert_eq!(watch.wait().unwrap().code(), Some(130));
    // The task goes on without the watcher: its rollout comes to wait for approval, wave 2
    // unmoved.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let task: Value = client.get(format!("{base}/deploymentTasks/{deployment}")).send().unwrap().json().unwrap();
        if task["rollout"]["state"] == "Paused" {
            assert_eq!(task["rollout"]["waves"][1]["moved"], 0, "{task}");
            break;
        }
        assert!(Instant::now() < deadline && task["rollout"]["state"] == "Running", "{task}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
