//! ggprov: provision and deploy to fleets of AWS IoT Greengrass V2 devices.
//!
//! This crate is the composition root: it reads the configuration, chooses the adapter behind
//! each port and serves the API. `main.rs` only parses the command line.

pub mod config;
pub mod telemetry;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use ggprov_api::{App, AppState, HttpConfig};
use ggprov_domain::TemplateService;
use ggprov_local_cloud::LocalCloud;
use ggprov_store_sqlite::SqliteStore;
use tokio::net::TcpListener;

pub use config::Config;

/// A built application: adapters wired, listener bound, not yet serving.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    http: HttpConfig,
}

impl Application {
    /// Opens the store, wires the adapters and binds the listener.
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating the data directory {} (GGPROV_DATA_DIR)", config.data_dir.display()))?;
        let store = Arc::new(SqliteStore::open(&config.database_path()).await?);
        let cloud = Arc::new(LocalCloud::new(config.extra_components.iter().cloned()));
        let app = App { templates: TemplateService::new(store.clone(), cloud), readiness: vec![store] };
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("listening on {} (GGPROV_LISTEN)", config.listen))?;
        Ok(Self {
            listener,
            state: AppState(Arc::new(app)),
            http: HttpConfig { cors: config.cors.clone(), base_path: config.base_path.clone() },
        })
    }

    /// The address actually bound (the chosen port when `GGPROV_LISTEN` had port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let app = ggprov_api::app(self.state, &self.http);
        axum::serve(self.listener, app).with_graceful_shutdown(shutdown).await.context("serving HTTP")
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutdown requested; finishing in-flight requests");
}

/// The OpenAPI document as pretty-printed JSON (what `openapi/openapi.json` holds).
pub fn openapi_json() -> String {
    ggprov_api::openapi().to_pretty_json().expect("the OpenAPI document serialises")
}
