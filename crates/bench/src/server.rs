//! A `ggprov serve` process under the harness's control: start, wait until ready, measure,
//! kill -9, restart on the same data directory.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// A running ggprov.
pub struct Server {
    binary: PathBuf,
    data_dir: PathBuf,
    env: Vec<(String, String)>,
    child: Option<Child>,
    pub base: String,
    /// Time from spawn to the address being printed.
    pub startup: Duration,
}

impl Server {
    /// Starts ggprov on a free port with `data_dir` and extra environment.
    pub fn start(binary: &Path, data_dir: &Path, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let mut server = Self {
            binary: binary.to_owned(),
            data_dir: data_dir.to_owned(),
            env: env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            child: None,
            base: String::new(),
            startup: Duration::ZERO,
        };
        server.spawn()?;
        Ok(server)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut command = Command::new(&self.binary);
        command
            .arg("serve")
            .env("GGPROV_LISTEN", "127.0.0.1:0")
            .env("GGPROV_DATA_DIR", &self.data_dir)
            .env("GGPROV_LOG", "warn")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = command.spawn().with_context(|| format!("starting {}", self.binary.display()))?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
        let Some(url) = line.trim().strip_prefix("ggprov listening on ") else {
            let _ = child.kill();
            bail!("ggprov did not start: {line:?}");
        };
        self.base = url.to_owned();
        self.startup = started.elapsed();
        self.child = Some(child);
        Ok(())
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGKILL: the process dies wherever it is.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Starts again on the same data directory.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill()?;
        self.spawn()
    }

    /// User + system CPU seconds of the process so far (Linux).
    pub fn cpu_seconds(&self) -> f64 {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())) else { return 0.0 };
        let fields: Vec<&str> = stat.rsplit_once(") ").map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
        let ticks: f64 = fields.get(11).and_then(|u| u.parse().ok()).unwrap_or(0.0)
            + fields.get(12).and_then(|s| s.parse().ok()).unwrap_or(0.0);
        ticks / 100.0
    }

    /// Resident set size now and at its peak, in MiB (Linux).
    pub fn rss_mib(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
                .unwrap_or(0.0)
                / 1024.0
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// How `binary` was built, from its `--version` ("release" or "debug"); from its path when it
/// does not say (a binary from before it did).
pub fn build_profile(binary: &std::path::Path) -> &'static str {
    let said =
        Command::new(binary).arg("--version").output().ok().map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    match said {
        Some(version) if version.contains("(release build)") => "release",
        Some(version) if version.contains("(debug build)") => "debug",
        _ if binary.to_string_lossy().contains("/release/") => "release",
        _ => "debug",
    }
}

/// The ggprov binary next to this harness (`target/<profile>/ggprov`), built if missing.
pub fn locate_ggprov() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("harness directory")?;
    let candidate = dir.join("ggprov");
    if !candidate.exists() {
        let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cargo.args(["build", "--bin", "ggprov"]);
        if !cfg!(debug_assertions) {
            cargo.arg("--release");
        }
        let status = cargo.status().context("running cargo build --bin ggprov")?;
        if !status.success() {
            bail!("cargo build --bin ggprov failed");
        }
    }
    Ok(candidate)
}
