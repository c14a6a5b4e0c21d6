//! The `ggprov` binary itself: start-up, configuration errors, help, shutdown.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_ggprov");

#[test]
fn version_names_the_build_profile() {
    let output = Command::new(BIN).arg("--version").output().unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let profile = if cfg!(debug_assertions) { "(debug build)" } else { "(release build)" };
    assert!(stdout.starts_with(&format!("ggprov {}", env!("CARGO_PKG_VERSION"))), "{stdout}");
    assert!(stdout.trim_end().ends_with(profile), "{stdout}");
}

#[test]
fn bad_configuration_stops_start_up_with_every_problem_named() {
    let output = Command::new(BIN)
        .arg("serve")
        .env("GGPROV_LISTEN", "localhost")
        .env("GGPROV_CORS_ORIGIN", "console.example.com")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("GGPROV_LISTEN='localhost'"), "{stderr}");
    assert!(stderr.contains("GGPROV_CORS_ORIGIN='console.example.com'"), "{stderr}");
    assert!(stderr.contains("ggprov serve --help"), "{stderr}");
}

#[test]
fn serving_beyond_loopback_without_authentication_needs_it_said_explicitly() {
    let data = tempfile::tempdir().unwrap();
    let refused = Command::new(BIN)
        .arg("serve")
        .env("GGPROV_LISTEN", "0.0.0.0:0")
        .env("GGPROV_DATA_DIR", data.path())
        .env_remove("GGPROV_AUTH")
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("serves beyond this machine"), "{stderr}");
    assert!(stderr.contains("GGPROV_AUTH=none"), "{stderr}");
    // Said explicitly, it starts (and stops cleanly).
    let mut explicit = Command::new(BIN)
        .arg("serve")
        .env("GGPROV_LISTEN", "0.0.0.0:0")
        .env("GGPROV_AUTH", "none")
        .env("GGPROV_DATA_DIR", data.path())
        .env("GGPROV_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(explicit.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert!(line.starts_with("ggprov listening on "), "{line}");
    explicit.kill().unwrap();
    explicit.wait().unwrap();
}

#[test]
fn serve_help_lists_every_setting() {
    let output = Command::new(BIN).args(["serve", "--help"]).output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for setting in ggprov::config::settings() {
        assert!(help.contains(setting.env), "{} missing from --help", setting.env);
    }
}

#[test]
fn readme_configuration_table_lists_every_setting() {
    let readme = include_str!("../../README.md");
    for setting in ggprov::config::settings() {
        assert!(readme.contains(&format!("`{}`", setting.env)), "{} missing from the README", setting.env);
    }
}

#[test]
fn serve_prints_the_chosen_address_and_stops_cleanly_on_sigterm() {
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .env("GGPROV_LISTEN", "127.0.0.1:0")
        .env("GGPROV_DATA_DIR", data.path().join("nested"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("ggprov listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    assert!(!url.ends_with(":0"), "the real port is printed: {url}");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let status = runtime.block_on(async { reqwest::get(format!("{url}/health")).await.unwrap().status() });
    assert_eq!(status, 200);
    assert!(data.path().join("nested/ggprov.sqlite").exists(), "the data directory is created with the database");
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "SIGTERM is a clean shutdown: {exit}");
}

#[tokio::test]
async fn a_ca_created_with_the_cli_signs_the_certificates_of_cores_that_name_it() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().display().to_string();
    let created =
        Command::new(BIN).args(["ca", "create", "--name", "Fleet CA"]).env("GGPROV_DATA_DIR", &dir).output().unwrap();
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let id = String::from_utf8(created.stdout).unwrap().trim().to_owned();
    assert!(id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()), "a CA id is a SHA-256 fingerprint: {id}");
    let listed = Command::new(BIN).args(["ca", "list"]).env("GGPROV_DATA_DIR", &dir).output().unwrap();
    assert_eq!(String::from_utf8(listed.stdout).unwrap().trim(), format!("* {id}"), "the first CA is the default");
    let key_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(data.path().join("cas").join(&id).join("ca.key")).unwrap().permissions(),
    );
    assert_eq!(key_mode & 0o777, 0o600, "the CA key is readable by its owner only");

    let app = crate::helpers::spawn_app_with(&[("GGPROV_DATA_DIR", &dir)]).await;
    let body = serde_json::json!({"type": "Create", "coreVersion": "2.12.0", "cores": [
        {"name": "fleet-ca-core", "provisioningTemplate": "greengrass2_core", "cdfProvisioningParameters": {"caId": id, "certInfo": {"country": "US"}}}
    ]});
    let task = app.submit_core_task(&body).await;
    assert_eq!(app.finished_core_task(&task).await["taskStatus"], "Success");
    let zip = std::fs::read(data.path().join("artifacts/fleet-ca-core/fleet-ca-core/certs.zip")).unwrap();
    let cert = ggprov_pki::read_zip_entry(&zip, "certs/cert.pem").unwrap();
    let ca = std::fs::read_to_string(data.path().join("cas").join(&id).join("ca.pem")).unwrap();
    assert!(ggprov_pki::is_signed_by(&cert, &ca).unwrap());
    assert_eq!(ggprov_pki::read_zip_entry(&zip, "certs/ca.pem").unwrap(), ca);
}

#[tokio::test]
async fn local_cloud_subcommands_drive_the_running_service() {
    let app = crate::helpers::spawn_app_with(&[("GGPROV_LOCAL_CLOUD_AUTO_CONNECT", "false")]).await;
    let task = app.submit_core_task(&crate::helpers::create_cores(&["cli-core"])).await;
    app.finished_core_task(&task).await;
    let url = app.base.clone();
    let run = move |args: &[&str]| {
        let mut cmd = Command::new(BIN);
        cmd.arg("local-cloud").args(args).args(["--url", &url]);
        cmd.output().unwrap()
    };
    let output = tokio::task::spawn_blocking({
        let run = run.clone();
        move || run(&["connect", "cli-core", "--nucleus-version", "2.14.0"])
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let core = crate::helpers::cdf_json(app.get("/cores/cli-core").await).await;
    assert_eq!(
        (core["device"]["status"].as_str(), core["device"]["coreVersion"].as_str()),
        (Some("HEALTHY"), Some("2.14.0"))
    );
    let missing = tokio::task::spawn_blocking(move || run(&["thing", "no-such-thing"])).await.unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("404"), "{}", String::from_utf8_lossy(&missing.stderr));
}

#[test]
fn the_rotation_component_recipe_is_printed_with_a_program_python_can_parse() {
    let output = Command::new(BIN).args(["rotation-component", "--version", "2.1.0"]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let recipe: serde_json::Value = serde_json::from_slice(&output.stdout).expect("a JSON recipe");
    assert_eq!(recipe["ComponentName"], "ggprov.CertificateRotation");
    assert_eq!(recipe["ComponentVersion"], "2.1.0");
    let run = recipe["Manifests"][0]["Lifecycle"]["Run"]["Script"].as_str().unwrap();
    let encoded = run.split('\'').nth(1).expect("the program, quoted");
    use base64::Engine as _;
    let program = base64::engine::general_purpose::STANDARD.decode(encoded).expect("base64");
    // The core runs it with python3: it must at least parse.
    let mut python = Command::new("python3")
        .args(["-c", "import ast, sys; ast.parse(sys.stdin.read())"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs the tests' tools too");
    std::io::Write::write_all(python.stdin.as_mut().unwrap(), &program).unwrap();
    assert!(python.wait().unwrap().success(), "the component's program is valid Python");
}
