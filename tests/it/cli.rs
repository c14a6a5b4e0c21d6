//! The `ggprov` binary itself: start-up, configuration errors, help, shutdown.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_ggprov");

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
fn serve_help_lists_every_setting() {
    let output = Command::new(BIN).args(["serve", "--help"]).output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for setting in ggprov::config::SETTINGS {
        assert!(help.contains(setting.env), "{} missing from --help", setting.env);
    }
}

#[test]
fn readme_configuration_table_lists_every_setting() {
    let readme = include_str!("../../README.md");
    for setting in ggprov::config::SETTINGS {
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
