#![doc = include_str!("../README.md")]

mod applications;
mod certificates;
mod cores;
mod cursors;
mod deployments;
mod devices;
mod fleet;
mod idempotency;
pub mod inline;
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

/// Read connections a database gets: one more than the machine has cores, from 2 to 7. A
/// SQLite read runs on its connection's own thread, so readers beyond the cores add no
/// throughput, and each connection costs its thread's allocator heap and page cache: on 2
/// cores, 3 readers instead of 7 for each of the two databases took a 10,000-core task's
/// peak RSS from 104 to 90 MiB (decision 84). Hot API reads are answered from memory anyway.
pub fn read_connections() -> u32 {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    u32::try_from(cores + 1).unwrap_or(u32::MAX).clamp(2, 7)
}

/// The SQLite-backed store. Cheap to clone (two connection pools inside).
///
/// Writes go through one connection (`writer`), reads through the others (`pool`,
/// `read_connections()` of them). SQLite lets one writer at a time into a WAL database
/// anyway; giving every write the same connection makes writers wait in the pool's async
/// queue instead of in SQLite's busy handler (which sleeps its thread 1–100 ms at a time, with
/// the lock free meanwhile), and keeps that
/// connection's page cache, which a WAL connection empties whenever another one commits
/// (decision 82).
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    writer: SqlitePool,
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
        let connect = |connections: u32| {
            SqlitePoolOptions::new()
                .max_connections(connections)
                .min_connections(1)
                // A writer waits its turn in the pool, not in SQLite: give the queue the
                // busy timeout's patience.
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(options.clone())
        };
        let writer = connect(1).await.map_err(|source| OpenError::Connect { path: display.clone(), source })?;
        MIGRATOR.run(&writer).await.map_err(|source| OpenError::Migrate { path: display.clone(), source })?;
        let pool = connect(read_connections()).await.map_err(|source| OpenError::Connect { path: display, source })?;
        Ok(Self { pool, writer, read_models: Arc::new(fleet::ReadModels::over(path)) })
    }

    /// Starts a write transaction that takes the write lock at once, so that two writers
    /// never deadlock upgrading read locks (SQLite's `BEGIN IMMEDIATE`).
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
        self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(unavailable)
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
