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
mod sql;
mod tasks;
mod templates;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use ggprov_domain::ports::{BoxError, ReadinessCheck, StoreError};
use rusqlite::Connection;

use crate::inline::{Database, OpenFailure};

/// Read connections a database keeps: one more than the machine has cores, from 2 to 7.
/// Reads run on the calling thread (decision 86), so no more of them run at once than there
/// are runtime threads; each idle connection keeps its page cache. (With sqlx each was also
/// an OS thread with its own allocator heap: 3 readers instead of 7 took a 10,000-core
/// task's peak RSS from 104 to 90 MiB, decision 84.)
pub fn read_connections() -> u32 {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    u32::try_from(cores + 1).unwrap_or(u32::MAX).clamp(2, 7)
}

/// The SQLite-backed store. Cheap to clone.
///
/// Statements run on the calling thread (decision 86). Writes go through one connection, as
/// transactions that are one synchronous closure each; reads through the others
/// (`read_connections()` kept). SQLite lets one writer at a time into a WAL database anyway;
/// giving every write the same connection makes writers wait in an async queue instead of
/// in SQLite's busy handler (which sleeps its thread 1–100 ms at a time, with the lock free
/// meanwhile), and keeps that connection's page cache, which a WAL connection empties
/// whenever another one commits (decision 82).
#[derive(Clone, Debug)]
pub struct SqliteStore {
    db: Arc<Database>,
    read_models: Arc<fleet::ReadModels>,
}

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open the SQLite database {path}: {source}")]
    Connect { path: String, source: sqlx::Error },
    #[error("cannot open the SQLite database {path}: {source}")]
    Open { path: String, source: rusqlite::Error },
    #[error("cannot apply the database migrations to {path}: {source}")]
    Migrate { path: String, source: sqlx::migrate::MigrateError },
}

/// Migrations from the workspace's `migrations/` folder, embedded in the binary.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies pending migrations.
    pub async fn open(path: &Path) -> Result<Self, OpenError> {
        let path_text = || path.display().to_string();
        let db = Database::open_migrated(path, &MIGRATOR).await.map_err(|failure| match failure {
            OpenFailure::Connect(source) => OpenError::Connect { path: path_text(), source },
            OpenFailure::Migrate(source) => OpenError::Migrate { path: path_text(), source },
            OpenFailure::Open(source) => OpenError::Open { path: path_text(), source },
        })?;
        Ok(Self { db: Arc::new(db), read_models: Arc::new(fleet::ReadModels::over(path)) })
    }

    /// Runs `f` in a write transaction (`BEGIN IMMEDIATE`: two writers never deadlock
    /// upgrading read locks), committed when it returns `Ok`, rolled back when it returns
    /// `Err`.
    async fn write<T>(&self, f: impl FnOnce(&Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        self.db.write_mapped(|tx| f(tx), unavailable).await
    }

    /// Where reads run: a read connection, on the calling thread.
    fn reader(&self) -> &Database {
        &self.db
    }
}
#[async_trait]
impl ReadinessCheck for SqliteStore {
    fn name(&self) -> &'static str {
        "store"
    }

    async fn check(&self) -> Result<(), BoxError> {
        sql::query("SELECT 1").fetch_one(self.reader())?;
        Ok(())
    }
}

fn unavailable(err: rusqlite::Error) -> StoreError {
    StoreError::unavailable(err)
}

/// Whether a database error is a primary-key / unique-constraint violation.
fn is_unique_violation(err: &rusqlite::Error) -> bool {
    matches!(
        err,
        rusqlite::Error::SqliteFailure(e, _)
            if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
    )
}
