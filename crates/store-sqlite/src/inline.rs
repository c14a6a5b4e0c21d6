//! SQLite run on the calling thread (decision 86).
//!
//! sqlx gives every SQLite connection a thread of its own and sends it each statement: a
//! statement costs two thread wake-ups, and a transaction of ten statements holds the write
//! lock for ten round trips. On this machine kind that was the largest part of a provisioned
//! core's CPU (perf: 65 % of the samples in the kernel, a third of all in the scheduler); it
//! took half of it away. A [`Database`] runs
//! statements where it is called instead: a read on one of its read connections, a write
//! transaction as one synchronous closure on its write connection. Only waiting for the
//! write connection is asynchronous; nothing in a closure awaits, so no transaction is left
//! half done by a cancelled future.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

/// Prepared statements a connection keeps (the hot ones of the store and the local cloud fit).
const STATEMENT_CACHE: usize = 128;

/// How long a writer retries when another process holds the write lock.
const WRITE_PATIENCE: Duration = Duration::from_secs(10);

/// A SQLite database in WAL mode: one write connection, read connections on demand.
pub struct Database {
    path: PathBuf,
    writer: tokio::sync::Mutex<Connection>,
    readers: std::sync::Mutex<Vec<Connection>>,
    /// Idle read connections kept for reuse.
    max_idle_readers: usize,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database").field("path", &self.path).finish_non_exhaustive()
    }
}

/// Why [`Database::open_migrated`] failed (each says what its source says).
#[derive(Debug, thiserror::Error)]
pub enum OpenFailure {
    /// The migrations' connection could not be opened.
    #[error(transparent)]
    Connect(sqlx::Error),
    #[error(transparent)]
    Migrate(sqlx::migrate::MigrateError),
    #[error(transparent)]
    Open(rusqlite::Error),
}

impl Database {
    /// Applies `migrator`'s pending migrations (sqlx's, recorded in `_sqlx_migrations`, which
    /// existing data directories carry) on a connection of their own, closed again, then
    /// opens the database.
    pub async fn open_migrated(path: &Path, migrator: &sqlx::migrate::Migrator) -> Result<Self, OpenFailure> {
        use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let migrations = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await
            .map_err(OpenFailure::Connect)?;
        migrator.run(&migrations).await.map_err(OpenFailure::Migrate)?;
        migrations.close().await;
        Self::open(path).map_err(OpenFailure::Open)
    }

    /// Opens (creating if needed) the database file in WAL mode with `synchronous = NORMAL`:
    /// a commit is durable against a crash of the process at once and against a crash of
    /// the machine from the next checkpoint on, as with the sqlx connections before.
    pub fn open(path: &Path) -> rusqlite::Result<Self> {
        let writer = connect(path)?;
        writer.pragma_update(None, "journal_mode", "WAL")?;
        // Waiting for another process's write lock happens in `write`, asynchronously: SQLite's
        // busy handler would sleep the runtime's thread.
        writer.busy_timeout(Duration::ZERO)?;
        Ok(Self {
            path: path.to_owned(),
            writer: tokio::sync::Mutex::new(writer),
            readers: std::sync::Mutex::default(),
            max_idle_readers: usize::try_from(crate::read_connections()).unwrap_or(2),
        })
    }

    /// Runs `f` on a read connection (a snapshot of the last commit when it starts).
    pub fn read<T, E: From<rusqlite::Error>>(&self, f: impl FnOnce(&Connection) -> Result<T, E>) -> Result<T, E> {
        let idle = self.readers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop();
        let conn = match idle {
            Some(conn) => conn,
            None => {
                let conn = connect(&self.path)?;
                // A reader is only kept from a WAL file by a checkpoint restart; brief.
                conn.busy_timeout(Duration::from_secs(1))?;
                // Writes belong to the write connection: one here would fail, not race it.
                conn.pragma_update(None, "query_only", true)?;
                conn
            }
        };
        let result = f(&conn);
        let mut idle = self.readers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if idle.len() < self.max_idle_readers {
            idle.push(conn);
        }
        result
    }

    /// Runs `f` in a write transaction (`BEGIN IMMEDIATE`), committed when `f` returns `Ok`
    /// and rolled back when it returns `Err`. Writers of this process take turns on the write
    /// connection; a writer of another process is waited for with short async sleeps.
    pub async fn write<T, E: From<rusqlite::Error>>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        self.write_mapped(f, E::from).await
    }

    /// [`Database::write`] for an error type that SQLite's errors are turned into by `db_error`.
    pub async fn write_mapped<T, E>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, E>,
        db_error: impl Fn(rusqlite::Error) -> E,
    ) -> Result<T, E> {
        let mut conn = self.writer.lock().await;
        let started = tokio::time::Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            // The transaction (which borrows the connection) never lives across an await.
            match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
                Ok(tx) => {
                    let value = f(&tx)?;
                    tx.commit().map_err(db_error)?;
                    return Ok(value);
                }
                Err(err) if is_busy(&err) && started.elapsed() < WRITE_PATIENCE => {}
                Err(err) => return Err(db_error(err)),
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }
}

/// Whether `sql` finds a row.
pub fn exists(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<bool> {
    conn.prepare_cached(sql)?.exists(params)
}

/// Runs `sql`; the number of rows it changed.
pub fn execute(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute(params)
}

/// The first row of `sql`, mapped, if there is one.
pub fn one<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    map: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Option<T>> {
    use rusqlite::OptionalExtension as _;
    conn.prepare_cached(sql)?.query_row(params, map).optional()
}

/// Every row of `sql`, mapped.
pub fn all<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    map: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    conn.prepare_cached(sql)?.query_map(params, map)?.collect()
}

fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

fn is_busy(err: &rusqlite::Error) -> bool {
    matches!(err.sqlite_error_code(), Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failed_write_leaves_nothing_and_the_next_one_commits() {
        let dir = tempfile_dir();
        let db = Database::open(&dir.join("t.db")).unwrap();
        db.write(|tx| tx.execute_batch("CREATE TABLE t (k TEXT PRIMARY KEY)")).await.unwrap();
        let failed: Result<(), rusqlite::Error> = db
            .write(|tx| {
                tx.execute("INSERT INTO t (k) VALUES ('a')", [])?;
                tx.execute("INSERT INTO t (k) VALUES ('a')", [])?; // unique violation
                Ok(())
            })
            .await;
        assert!(failed.is_err());
        let count = |db: &Database| db.read(|c| c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get::<_, i64>(0)));
        assert_eq!(count(&db).unwrap(), 0, "the failed transaction was rolled back");
        db.write(|tx| tx.execute("INSERT INTO t (k) VALUES ('a')", [])).await.unwrap();
        assert_eq!(count(&db).unwrap(), 1, "a reader sees the last commit");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_writer_waits_for_another_process_holding_the_write_lock() {
        let dir = tempfile_dir();
        let path = dir.join("t.db");
        let db = std::sync::Arc::new(Database::open(&path).unwrap());
        db.write(|tx| tx.execute_batch("CREATE TABLE t (k TEXT PRIMARY KEY)")).await.unwrap();
        // Another connection (as another process would) holds the write lock.
        let mut other = connect(&path).unwrap();
        let held = other.transaction_with_behavior(TransactionBehavior::Immediate).unwrap();
        held.execute("INSERT INTO t (k) VALUES ('first')", []).unwrap();
        let writer = tokio::spawn({
            let db = db.clone();
            async move { db.write(|tx| tx.execute("INSERT INTO t (k) VALUES ('second')", [])).await }
        });
        tokio::task::yield_now().await;
        assert!(!writer.is_finished(), "the writer waits while the lock is held");
        held.commit().unwrap();
        writer.await.unwrap().unwrap();
        let keys: i64 = db.read(|c| c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))).unwrap();
        assert_eq!(keys, 2);
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ggprov-inline-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
