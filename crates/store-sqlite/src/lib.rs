#![doc = include_str!("../README.md")]

mod applications;
mod certificates;
mod cores;
mod cursors;
mod deployments;
mod devices;
mod fleet;
mod idempotency;
mod journals;
mod outbox;
mod queue;
pub mod read_cache;
mod rollouts;
mod rows;
mod software_updates;
mod tasks;
mod templates;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ggprov_domain::ports::{BoxError, ReadinessCheck, StoreError};
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

/// The SQLite-backed store. Cheap to clone (a connection pool inside).
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    read_models: Arc<fleet::ReadModels>,
}

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open the SQLite database {path}: {source}")]
    Connect { path: String, source: sqlx::Error },
    #[error("cannot apply the database migrations to {path}: {source}")]
    Migrate { path: String, source: sqlx::migrate::MigrateError },
}

/// Migrations from the workspace's `migrations/` folder, embedded in the binary.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies pending migrations.
    pub async fn open(path: &Path) -> Result<Self, OpenError> {
        let display = path.display().to_string();
        let options = SqliteConnectOptions::from_str("sqlite://")
            .expect("static SQLite URL parses")
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .min_connections(1)
            .connect_with(options)
            .await
            .map_err(|source| OpenError::Connect { path: display.clone(), source })?;
        MIGRATOR.run(&pool).await.map_err(|source| OpenError::Migrate { path: display, source })?;
        Ok(Self { pool, read_models: Arc::new(fleet::ReadModels::over(path)) })
    }

    /// Starts a write transaction that takes the write lock at once, so that two writers
    /// never deadlock upgrading read locks (SQLite's `BEGIN IMMEDIATE`).
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
        self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(unavailable)
    }
}

#[async_trait]
impl ReadinessCheck for SqliteStore {
    fn name(&self) -> &'static str {
        "store"
    }

    async fn check(&self) -> Result<(), BoxError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

fn unavailable(err: sqlx::Error) -> StoreError {
    StoreError::unavailable(err)
}

/// Whether a database error is a primary-key / unique-constraint violation.
fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}
