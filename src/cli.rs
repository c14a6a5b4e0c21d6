//! Subcommands besides `serve`: certificate authorities and the local cloud's controls.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Subcommand;
use ggprov_domain::ThingName;
use ggprov_domain::ports::SecretPem;

use crate::config::Config;
use ggprov_embedded::FileCertificateAuthorities;

/// `ggprov ca ...`
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create a new CA (EC P-256, self-signed) in the data directory and register it with
    /// the local cloud; prints its id (use it as `cdfProvisioningParameters.caId`).
    Create {
        /// Subject common name.
        #[arg(long, default_value = "ggprov CA")]
        name: String,
        /// Validity in days.
        #[arg(long, default_value_t = 3650)]
        days: u32,
        /// Make it the CA used when a request names none.
        #[arg(long)]
        default: bool,
    },
    /// Import an existing CA certificate and its private key (PEM files).
    Import {
        #[arg(long, value_name = "FILE")]
        certificate: PathBuf,
        #[arg(long, value_name = "FILE")]
        private_key: PathBuf,
        #[arg(long)]
        default: bool,
    },
    /// List the CAs ggprov holds (`*` marks the default).
    List,
}

/// `ggprov local-cloud ...`: talks to the running service's `/local-cloud` API.
#[derive(Debug, Subcommand)]
pub enum LocalCloudCommand {
    /// Power on a simulated core: it registers with Greengrass as HEALTHY.
    Connect {
        name: String,
        /// Nucleus version the core runs.
        #[arg(long)]
        nucleus_version: Option<String>,
    },
    /// Take a simulated core offline (UNHEALTHY).
    Disconnect { name: String },
    /// Set how the core's next deployments end.
    Behavior {
        name: String,
        /// `SUCCEEDED`, `FAILED` or `NO_RESPONSE`.
        #[arg(long, default_value = "SUCCEEDED")]
        deployment_outcome: String,
        #[arg(long, default_value_t = 0)]
        delay_ms: u64,
        /// Deployments with a Docker Compose application fail: its images do not pull.
        #[arg(long)]
        image_pull_error: bool,
        /// Deployments that change the nucleus version fail; the core rolls back.
        #[arg(long)]
        nucleus_update_fails: bool,
        /// Certificate rotations fail: the core keeps its old certificate.
        #[arg(long)]
        rotation_fails: bool,
    },
    /// Set the platform a simulated core reports to Greengrass.
    Platform {
        name: String,
        /// `linux`, `windows`, ...
        #[arg(long)]
        os: String,
        /// `amd64`, `aarch64`, `arm`, `x86`, ...
        #[arg(long)]
        architecture: String,
    },
    /// Inject faults into the simulated AWS APIs.
    Faults {
        #[arg(long, default_value_t = 0.0)]
        throttle_rate: f64,
        #[arg(long, default_value_t = 0.0)]
        error_rate: f64,
        /// Enforce AWS's default per-API request rates.
        #[arg(long)]
        quotas: bool,
        /// With --quotas: the account's quotas as a multiple of AWS's defaults (0.5, 2, ...).
        #[arg(long)]
        quota_scale: Option<f64>,
    },
    /// Show a thing as the simulated registry holds it.
    Thing { name: String },
}

pub fn run_ca(config: &Config, command: CaCommand) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.storage.data_dir)
        .with_context(|| format!("creating {}", config.storage.data_dir.display()))?;
    let cas = FileCertificateAuthorities::new(&config.storage.data_dir, config.provisioning.default_ca.clone());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    match command {
        CaCommand::Create { name, days, default } => {
            let minted = ggprov_pki::create_ca(&name, days)?;
            let id = cas.store(&minted.certificate_pem, &minted.private_key, default)?;
            runtime.block_on(register(config, &minted.certificate_pem))?;
            println!("{id}");
        }
        CaCommand::Import { certificate, private_key, default } => {
            let certificate_pem = read(&certificate)?;
            let key = SecretPem::new(read(&private_key)?);
            let id = cas.store(&certificate_pem, &key, default)?;
            runtime.block_on(register(config, &certificate_pem))?;
            println!("{id}");
        }
        CaCommand::List => {
            let default = ggprov_domain::ports::CertificateAuthorities::default_ca_id(&cas);
            for id in cas.ids() {
                let marker = if Some(&id) == default.as_ref() { "*" } else { " " };
                println!("{marker} {id}");
            }
        }
    }
    Ok(())
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

async fn register(config: &Config, certificate_pem: &str) -> anyhow::Result<()> {
    let cloud = ggprov_embedded::open_local_cloud(&crate::embedded_settings(config)).await?;
    cloud.register_ca_certificate(certificate_pem).await.context("registering the CA with the local cloud")?;
    Ok(())
}

pub fn run_local_cloud(config: &Config, url: Option<String>, command: &LocalCloudCommand) -> anyhow::Result<()> {
    let base = url.unwrap_or_else(|| format!("http://{}", config.http.listen)).trim_end_matches('/').to_owned();
    let check =
        |name: &str| ThingName::parse(name).map(|_| ()).with_context(|| format!("'{name}' is not a thing name"));
    let (method, path, body) = match command {
        LocalCloudCommand::Connect { name, nucleus_version } => {
            check(name)?;
            (
                reqwest::Method::POST,
                format!("/local-cloud/cores/{name}/connect"),
                serde_json::json!({"nucleusVersion": nucleus_version}),
            )
        }
        LocalCloudCommand::Disconnect { name } => {
            check(name)?;
            (reqwest::Method::POST, format!("/local-cloud/cores/{name}/disconnect"), serde_json::Value::Null)
        }
        LocalCloudCommand::Behavior {
            name,
            deployment_outcome,
            delay_ms,
            image_pull_error,
            nucleus_update_fails,
            rotation_fails,
        } => {
            check(name)?;
            (
                reqwest::Method::PUT,
                format!("/local-cloud/cores/{name}/behavior"),
                serde_json::json!({"deploymentOutcome": deployment_outcome, "delayMs": delay_ms,
                                   "imagePullError": image_pull_error, "nucleusUpdateFails": nucleus_update_fails,
                                   "rotationFails": rotation_fails}),
            )
        }
        LocalCloudCommand::Platform { name, os, architecture } => {
            check(name)?;
            (
                reqwest::Method::PUT,
                format!("/local-cloud/cores/{name}/platform"),
                serde_json::json!({"os": os, "architecture": architecture}),
            )
        }
        LocalCloudCommand::Faults { throttle_rate, error_rate, quotas, quota_scale } => (
            reqwest::Method::PUT,
            "/local-cloud/faults".to_owned(),
            serde_json::json!({"throttleRate": throttle_rate, "errorRate": error_rate, "quotas": quotas, "quotaScale": quota_scale}),
        ),
        LocalCloudCommand::Thing { name } => {
            check(name)?;
            (reqwest::Method::GET, format!("/local-cloud/things/{name}"), serde_json::Value::Null)
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let mut request = client.request(method, format!("{base}{path}"));
        if !body.is_null() {
            let mut body = body;
            if let Some(map) = body.as_object_mut() {
                map.retain(|_, v| !v.is_null());
            }
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("no answer from ggprov at {base}; is `ggprov serve` running?"))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            anyhow::bail!("{status}: {text}");
        }
        if !text.is_empty() {
            println!("{text}");
        }
        Ok(())
    })
}
