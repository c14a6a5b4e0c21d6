//! The dashboard in a real browser: headless Chromium driven over the W3C `WebDriver` protocol
//! (Debian's `chromium` and `chromium-driver`; `scripts/test.sh` installs them). A dozen
//! `WebDriver` calls are all these tests need, so they speak the protocol with reqwest.
//! Screenshots of every page go to `target/ui-screenshots/` for review.

use std::time::{Duration, Instant};

use std::os::unix::process::CommandExt as _;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::helpers::{TestApp, cdf_json, names, spawn_app_with};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn tool(env: &str, default: &str) -> String {
    let path = std::env::var(env).unwrap_or_else(|_| default.to_owned());
    assert!(
        std::path::Path::new(&path).exists(),
        "{path} is missing: the browser tests need Debian's chromium and chromium-driver. Run the README test \
         command (scripts/test.sh installs them), or `apt-get install chromium chromium-driver`, or set {env}"
    );
    path
}

/// A chromedriver process and one browser session, both ended on drop.
struct Browser {
    driver: std::process::Child,
    http: reqwest::Client,
    session: String,
    base: String,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    /// Ends chromedriver and every browser process it started: they share a process group of
    /// their own, so a test that fails midway leaves no browser behind either.
    fn drop(&mut self) {
        let group = format!("-{}", self.driver.id());
        let _ = std::process::Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.driver.wait();
    }
}

impl Browser {
    async fn start() -> Self {
        let driver_path = tool("GGPROV_TEST_CHROMEDRIVER", "/usr/bin/chromedriver");
        let chromium = tool("GGPROV_TEST_CHROMIUM", "/usr/bin/chromium");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = std::process::Command::new(driver_path)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(format!("{base}/status")).send().await
                && r.json::<Value>().await.is_ok_and(|v| v["value"]["ready"] == true)
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {"binary": chromium, "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1366,900", format!("--user-data-dir={}", profile.path().display()),
            ]},
        }}});
        let created: Value =
            http.post(format!("{base}/session")).json(&capabilities).send().await.unwrap().json().await.unwrap();
        let session =
            created["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {created}")).to_owned();
        Self { driver, http, session, base, _profile: profile }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        if answer["value"].get("error").is_some() {
            panic!("WebDriver {path}: {}", answer["value"]);
        }
        answer["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url}))).await;
    }

    /// Runs a script in the page (its `return` value comes back).
    async fn js(&self, script: &str, args: Value) -> Value {
        self.call(reqwest::Method::POST, "/execute/sync", Some(json!({"script": script, "args": args}))).await
    }

    /// Waits until `script` returns true, failing with `what` after 30 s.
    async fn wait_for(&self, what: &str, script: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // Until the page has drawn, the script may find nothing to read: that is a no.
            let guarded = format!("try {{ return (function () {{ {script} }})(); }} catch (e) {{ return false; }}");
            if self.js(&guarded, json!([])).await == true {
                return;
            }
            if Instant::now() > deadline {
                let text = self.js("return document.getElementById('main').innerText", json!([])).await;
                panic!("the page never showed {what}; it shows:\n{}", text.as_str().unwrap_or(""));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn text(&self, selector: &str) -> String {
        let script = "const e = document.querySelector(arguments[0]); return e ? e.textContent.trim() : null";
        self.js(script, json!([selector])).await.as_str().unwrap_or_else(|| panic!("no element {selector}")).to_owned()
    }

    async fn element(&self, selector: &str) -> String {
        let found = self
            .call(reqwest::Method::POST, "/element", Some(json!({"using": "css selector", "value": selector})))
            .await;
        found[ELEMENT].as_str().unwrap().to_owned()
    }

    /// A real click (the browser's own event, as a person's). A live page may redraw between
    /// finding the element and clicking it: then it is found again.
    async fn click(&self, selector: &str) {
        for _ in 0..5 {
            let id = self.element(selector).await;
            let url = format!("{}/session/{}/element/{id}/click", self.base, self.session);
            let answer: Value = self.http.post(url).json(&json!({})).send().await.unwrap().json().await.unwrap();
            match answer["value"].get("error").and_then(Value::as_str) {
                None => return,
                Some("stale element reference") => continue,
                Some(_) => panic!("click {selector}: {}", answer["value"]),
            }
        }
        panic!("{selector} kept being redrawn");
    }

    async fn type_into(&self, selector: &str, text: &str) {
        let id = self.element(selector).await;
        self.call(reqwest::Method::POST, &format!("/element/{id}/clear"), Some(json!({}))).await;
        self.call(reqwest::Method::POST, &format!("/element/{id}/value"), Some(json!({"text": text}))).await;
    }

    /// Presses keys (`WebDriver` key codes, e.g. Tab `\u{E004}`, Enter `\u{E007}`) on whatever
    /// has the focus, as a person at the keyboard would.
    async fn keys(&self, keys: &[&str]) {
        let actions: Vec<Value> = keys
            .iter()
            .flat_map(|k| [json!({"type": "keyDown", "value": k}), json!({"type": "keyUp", "value": k})])
            .collect();
        self.call(
            reqwest::Method::POST,
            "/actions",
            Some(json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})),
        )
        .await;
    }

    async fn enabled(&self, selector: &str) -> bool {
        let id = self.element(selector).await;
        self.call(reqwest::Method::GET, &format!("/element/{id}/enabled"), None).await == true
    }

    async fn screenshot(&self, name: &str) {
        let data = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD.decode(data.as_str().unwrap()).unwrap();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ui-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    /// The browser console's errors since the last call.
    async fn console_errors(&self) -> Vec<String> {
        let log = self.call(reqwest::Method::POST, "/se/log", Some(json!({"type": "browser"}))).await;
        log.as_array()
            .unwrap()
            .iter()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].as_str().unwrap_or("").to_owned())
            .collect()
    }

    /// Every form control has a label, every button a name, every image a text; the page
    /// can be used from the keyboard (links have addresses, nothing takes tabindex > 0).
    async fn assert_accessible(&self, page: &str) {
        let problems = self
            .js(
                r#"const problems = [];
                for (const c of document.querySelectorAll('input, select')) {
                  const labelled = c.labels && c.labels.length || c.getAttribute('aria-label');
                  if (!labelled) problems.push('unlabelled ' + c.outerHTML.slice(0, 80));
                }
                for (const b of document.querySelectorAll('button')) if (!b.textContent.trim() && !b.getAttribute('aria-label')) problems.push('nameless button');
                for (const s of document.querySelectorAll('svg[role=img]')) if (!s.getAttribute('aria-label')) problems.push('svg without label');
                for (const a of document.querySelectorAll('a')) if (!a.getAttribute('href') && a.getAttribute('aria-disabled') !== 'true') problems.push('link without href: ' + a.textContent);
                for (const t of document.querySelectorAll('[tabindex]')) if (Number(t.getAttribute('tabindex')) > 0) problems.push('positive tabindex');
                if (!document.documentElement.lang) problems.push('no lang');
                // WCAG contrast of every piece of text against the background it is drawn on
                // (4.5:1; 3:1 for large or bold-large text; disabled controls are exempt).
                const rgb = (c) => (c.match(/[\d.]+/g) || []).map(Number);
                const lum = ([r, g, b]) => [r, g, b].map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); })
                  .reduce((a, v, i) => a + v * [0.2126, 0.7152, 0.0722][i], 0);
                const background = (e) => {
                  for (; e; e = e.parentElement) { const c = rgb(getComputedStyle(e).backgroundColor); if (c.length === 3 || (c.length === 4 && c[3] > 0)) return c.slice(0, 3); }
                  return [255, 255, 255];
                };
                for (const e of document.querySelectorAll('body *')) {
                  if (e.closest('[disabled], svg, #toast, .skip')) continue;
                  if (![...e.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim())) continue;
                  const style = getComputedStyle(e);
                  if (style.display === 'none' || style.visibility === 'hidden') continue;
                  const [l1, l2] = [lum(rgb(style.color).slice(0, 3)), lum(background(e))].sort((a, b) => b - a);
                  const ratio = (l1 + 0.05) / (l2 + 0.05);
                  const large = parseFloat(style.fontSize) >= 24 || (parseFloat(style.fontSize) >= 18.66 && Number(style.fontWeight) >= 700);
                  if (ratio < (large ? 3 : 4.5)) problems.push(`contrast ${ratio.toFixed(2)} of "${e.textContent.trim().slice(0, 30)}"`);
                }
                return problems;"#,
                json!([]),
            )
            .await;
        assert_eq!(problems, json!([]), "accessibility problems on {page}");
    }
}

async fn app_with_worker(extra: &[(&str, &str)]) -> TestApp {
    let mut env = vec![("GGPROV_WORKER", "true"), ("GGPROV_WORKER_LEASE_MS", "30000")];
    env.extend_from_slice(extra);
    spawn_app_with(&env).await
}

async fn deploy(app: &TestApp, body: Value) -> String {
    let response = app.post_json("/deploymentTasks", &body).await;
    assert_eq!(response.status(), 202, "{}", response.text().await.unwrap_or_default());
    crate::helpers::header(&response, "x-taskid").unwrap().to_owned()
}

/// Polls the API until `check` holds for the JSON at `path`.
async fn until(app: &TestApp, path: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let value = cdf_json(app.get(path).await).await;
        if check(&value) {
            return value;
        }
        assert!(Instant::now() < deadline, "{what} never happened: {value}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The fleet chart shows the numbers after provisioning and a deployment; a task's progress
/// moves live (no reload) after the Resume button; the cores table pages and filters on the
/// server; the core page and the version diff show what the API holds; no console errors.
#[tokio::test(flavor = "multi_thread")]
async fn dashboard_shows_the_fleet_follows_a_task_live_and_pages_the_cores() {
    let app = app_with_worker(&[]).await;
    let browser = Browser::start().await;
    let cores = names("ui", 30);
    // The worker runs in the background here: wait for the task rather than draining.
    let refs: Vec<&str> = cores.iter().map(String::as_str).collect();
    let provisioning = app.submit_core_task(&crate::helpers::create_cores(&refs)).await;
    until(&app, &format!("/coreTasks/{provisioning}"), "30 cores provisioned", |t| t["taskStatus"] == "Success").await;
    app.create_template("cams", &[("aws.greengrass.Cli", "2.12.0")]).await;
    deploy(&app, json!({"template": {"name": "cams"}, "targets": {"thingNames": &cores[..12]}})).await;
    until(&app, "/fleet/summary", "12 cores on cams v1", |s| {
        s["templates"]["cams"]["versions"]["1"]["lastDeploymentSuccess"] == 12
    })
    .await;

    // Fleet: cards, chart and table agree with the API.
    browser.goto(&app.url("/ui/#/fleet")).await;
    browser
        .wait_for(
            "cams v1 in the chart",
            r#"return !!document.querySelector('svg text[data-template="cams"][data-series="reported"]')"#,
        )
        .await;
    assert_eq!(browser.text(r#"svg text[data-template="cams"][data-series="reported"]"#).await, "12 reported");
    assert_eq!(browser.text(r#"svg text[data-template="cams"][data-series="desired"]"#).await, "12 desired");
    assert_eq!(browser.text(r#"svg text[data-template="None"][data-series="desired"]"#).await, "18 desired");
    assert_eq!(browser.text(r#"tr[data-template="cams"] td[data-count="success"]"#).await, "12");
    assert_eq!(browser.text("#total-cores").await, "30");
    assert_eq!(browser.text("#live").await, "● live", "the event stream is connected");
    browser.assert_accessible("fleet").await;
    browser.screenshot("fleet").await;
    // The keyboard alone: the skip link moves the focus to the content without leaving the
    // page; Tab goes on from there; a focused section link opens with Enter.
    browser.js("document.querySelector('a.skip').focus()", json!([])).await;
    browser.keys(&["\u{E007}"]).await;
    assert_eq!(
        browser.js("return [document.activeElement.id, location.hash]", json!([])).await,
        json!(["main", "#/fleet"])
    );
    browser.keys(&["\u{E004}"]).await;
    assert_eq!(browser.js("return document.activeElement.tagName", json!([])).await, "A", "Tab reaches the first link");
    browser.js("document.querySelector('header nav a[data-nav=templates]').focus()", json!([])).await;
    browser.keys(&["\u{E007}"]).await;
    browser
        .wait_for("the templates page by keyboard", "return document.querySelector('h1').textContent === 'Templates'")
        .await;

    // A task followed live: a manual-approval rollout stops after its first core; Resume
    // moves the rest while the page stays the same page (its marker survives).
    let gated = &cores[12..18];
    let id = deploy(
        &app,
        json!({"template": {"name": "cams"}, "targets": {"thingNames": gated},
               "rollout": {"waves": [{"count": 1}, {"percent": 100}], "approval": "manual"}}),
    )
    .await;
    until(&app, &format!("/deploymentTasks/{id}"), "the first wave", |t| t["rollout"]["awaitingApproval"] == true)
        .await;
    browser.goto(&app.url(&format!("/ui/#/tasks/deployment/{id}"))).await;
    browser.wait_for("the rollout's waves", r#"return !!document.querySelector('tr[data-wave="1"]')"#).await;
    browser.js("window.__samePage = 'yes'", json!([])).await;
    assert_eq!(browser.text(r#"tr[data-wave="1"] td:nth-child(4)"#).await, "1", "wave 1 succeeded on its one core");
    assert!(browser.enabled(r#"button[data-action="Resume"]"#).await);
    assert!(!browser.enabled(r#"button[data-action="Retry failed"]"#).await, "nothing failed");
    browser.screenshot("task-paused").await;
    browser.click(r#"button[data-action="Resume"]"#).await;
    browser
        .wait_for(
            "wave 2 with 5 succeeded",
            r#"const c = document.querySelector('tr[data-wave="2"] td:nth-child(4)'); return !!c && c.textContent === '5'"#,
        )
        .await;
    assert_eq!(browser.js("return window.__samePage", json!([])).await, "yes", "updated without a reload");
    browser
        .wait_for("the task's success", "return document.getElementById('task-status').textContent === 'Success'")
        .await;
    browser.screenshot("task-done").await;
    browser.goto(&app.url("/ui/#/tasks")).await;
    browser.wait_for("the task list", &format!(r#"return !!document.querySelector('tr[data-task="{id}"]')"#)).await;
    browser.assert_accessible("tasks").await;
    browser.screenshot("tasks").await;

    // Cores: server-side pages of 10 in name order, then filters.
    browser.goto(&app.url("/ui/#/cores?count=10")).await;
    browser.wait_for("10 cores", "return document.querySelectorAll('tr[data-core]').length === 10").await;
    let first_page: Value =
        browser.js("return [...document.querySelectorAll('tr[data-core]')].map(r => r.dataset.core)", json!([])).await;
    assert_eq!(first_page, json!(cores[..10]));
    browser.click("#next-page").await;
    browser.wait_for("page 2", r#"return document.querySelector('tr[data-core]').dataset.core === 'ui-0010'"#).await;
    let second_page: Value =
        browser.js("return [...document.querySelectorAll('tr[data-core]')].map(r => r.dataset.core)", json!([])).await;
    assert_eq!(second_page, json!(cores[10..20]));
    browser.click("#prev-page").await;
    browser
        .wait_for("page 1 again", r#"return document.querySelector('tr[data-core]').dataset.core === 'ui-0000'"#)
        .await;
    // One core fails its next deployment: "failed only" finds exactly it.
    let r = app
        .client
        .put(app.url("/local-cloud/cores/ui-0020/behavior"))
        .json(&json!({"deploymentOutcome": "FAILED"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    deploy(&app, json!({"template": {"name": "cams"}, "targets": {"thingNames": ["ui-0020"]}})).await;
    until(&app, "/cores?failedOnly=true", "a failed core", |c| c["cores"].as_array().is_some_and(|c| c.len() == 1))
        .await;
    browser.type_into("form.filters input[name=templateName]", "cams").await;
    browser.click("form.filters input[name=failedOnly]").await;
    browser.click("form.filters button[type=submit]").await;
    browser
        .wait_for("only the failed core", r#"const r = document.querySelectorAll('tr[data-core]'); return r.length === 1 && r[0].dataset.core === 'ui-0020'"#)
        .await;
    assert!(browser.text(r#"tr[data-core="ui-0020"]"#).await.contains("FAILED"));
    browser.assert_accessible("cores").await;
    browser.screenshot("cores-failed").await;

    // A core's page: template, device, components, history, artifacts.
    browser.click(r#"tr[data-core="ui-0020"] a"#).await;
    browser.wait_for("the core page", "return document.querySelector('h1').textContent === 'Core ui-0020'").await;
    let page = browser.js("return document.getElementById('main').innerText", json!([])).await;
    let page = page.as_str().unwrap();
    for expected in ["cams v1", "Installed components", "Deployment history", "certs", "Client devices", "HEALTHY"] {
        assert!(page.contains(expected), "{expected} missing from the core page:\n{page}");
    }
    browser.assert_accessible("core").await;
    browser.screenshot("core").await;

    // Templates: two versions side by side.
    let r = app
        .put_json(
            "/templates/cams",
            &crate::helpers::template_body(
                "cams",
                &[("aws.greengrass.Cli", "2.13.0"), ("aws.greengrass.LogManager", "2.3.7")],
            ),
        )
        .await;
    assert_eq!(r.status(), 204);
    browser.goto(&app.url("/ui/#/templates/cams")).await;
    browser
        .wait_for("the diff", r#"return !!document.querySelector('tr[data-component="aws.greengrass.LogManager"]')"#)
        .await;
    assert_eq!(
        browser
            .js(
                r#"return document.querySelector('tr[data-component="aws.greengrass.LogManager"]').className"#,
                json!([])
            )
            .await,
        "diff-added"
    );
    assert_eq!(
        browser
            .js(r#"return document.querySelector('tr[data-component="aws.greengrass.Cli"]').className"#, json!([]))
            .await,
        "diff-changed"
    );
    browser.assert_accessible("template").await;
    browser.screenshot("template-diff").await;
    browser.goto(&app.url("/ui/#/applications")).await;
    browser
        .wait_for("the applications page", "return document.querySelector('h1').textContent === 'Applications'")
        .await;
    browser.screenshot("applications").await;

    assert_eq!(browser.console_errors().await, Vec::<String>::new(), "the console stays clean");
}

/// A read-only key sees everything and can press nothing; a read-write key can.
#[tokio::test(flavor = "multi_thread")]
async fn dashboard_disables_actions_for_a_read_only_key() {
    let (ro, rw) = ("ggp_ui_readonly", "ggp_ui_readwrite");
    let hex = |k: &str| ggprov::auth::hex(&ggprov::auth::hash_key(k));
    let keys = format!("{}:read,{}", hex(ro), hex(rw));
    let app = app_with_worker(&[("GGPROV_AUTH", "api-key"), ("GGPROV_API_KEYS", &keys)]).await;
    let cores = names("ro", 3);
    let with_key = |r: reqwest::RequestBuilder| r.header("x-api-key", rw);
    let r = with_key(app.cdf(reqwest::Method::POST, "/coreTasks"))
        .body(crate::helpers::create_cores(&cores.iter().map(String::as_str).collect::<Vec<_>>()).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = with_key(app.cdf(reqwest::Method::POST, "/templates"))
        .body(crate::helpers::template_body("gate", &[("aws.greengrass.Cli", "2.12.0")]).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let browser = Browser::start().await;
    // Without a key the page asks for one.
    browser.goto(&app.url("/ui/#/fleet")).await;
    browser
        .wait_for("the credentials prompt", "return document.querySelector('h1').textContent === 'Credentials needed'")
        .await;
    browser.screenshot("credentials").await;

    // Wait until the cores are provisioned (the deployment needs them).
    let deadline = Instant::now() + Duration::from_secs(60);
    let id = loop {
        let r = with_key(app.cdf(reqwest::Method::POST, "/deploymentTasks"))
            .body(
                json!({"template": {"name": "gate"}, "targets": {"thingNames": cores},
                         "rollout": {"waves": [{"count": 1}, {"percent": 100}], "approval": "manual"}})
                .to_string(),
            )
            .send()
            .await
            .unwrap();
        if r.status() == 202 {
            break crate::helpers::header(&r, "x-taskid").unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "deployment refused: {}", r.text().await.unwrap());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    browser.type_into("#cred-value", ro).await;
    browser.click("#login button[type=submit]").await;
    browser.wait_for("read-only access", "return document.getElementById('access').textContent === 'read-only'").await;
    browser.goto(&app.url(&format!("/ui/#/tasks/deployment/{id}"))).await;
    browser.wait_for("the task page", r#"return !!document.querySelector('button[data-action="Resume"]')"#).await;
    for action in ["Pause", "Resume", "Cancel", "Retry failed", "Roll back"] {
        assert!(
            !browser.enabled(&format!(r#"button[data-action="{action}"]"#)).await,
            "{action} is disabled for a read-only key"
        );
    }
    browser.screenshot("task-read-only").await;

    browser.type_into("#cred-value", rw).await;
    browser.click("#login button[type=submit]").await;
    browser
        .wait_for("read-write access", "return document.getElementById('access').textContent === 'read-write'")
        .await;
    browser
        .wait_for(
            "Cancel enabled",
            r#"const b = document.querySelector('button[data-action="Cancel"]'); return !!b && !b.disabled"#,
        )
        .await;
    // The key never lands in the address, a cookie or local storage: only this tab's session.
    let stored = browser
        .js(
            "return [location.href, document.cookie, localStorage.length, sessionStorage.getItem('ggprov.credential')]",
            json!([]),
        )
        .await;
    assert!(
        !stored[0].as_str().unwrap().contains(rw) && stored[1] == "" && stored[2] == 0 && stored[3] == rw,
        "{stored}"
    );
    // The only console errors are the 401s of the visit before a key was given.
    let errors = browser.console_errors().await;
    assert!(errors.iter().all(|e| e.contains("401")), "{errors:?}");
}
