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
//!
//! Writers share commits (decision 89): each closure runs in a savepoint of the transaction
//! open on the write connection, and the transaction is committed when nobody else is waiting
//! for the connection, so a busy worker's item writes and the local cloud's registry writes
//! cost one commit for several of them. A write returns only once it is committed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

/// Prepared statements a connection keeps (the hot ones of the store and the local cloud fit).
const STATEMENT_CACHE: usize = 128;

/// How long a writer retries when another process holds the write lock.
const WRITE_PATIENCE: Duration = Duration::from_secs(10);

/// A SQLite database in WAL mode: one write connection, read connections on demand.
pub struct Database {
    path: PathBuf,
    writer: tokio::sync::Mutex<Writer>,
    /// Writers waiting for the write connection: the open group is handed on while any are.
    waiting: AtomicUsize,
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
            writer: tokio::sync::Mutex::new(Writer { conn: writer, group: None, groups: 0 }),
            waiting: AtomicUsize::new(0),
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
    /// and rolled back when it returns `Err`; returns once its writes are committed. Writers
    /// of this process take turns on the write connection and share commits (group commit,
    /// decision 89); a writer of another process is waited for with short async sleeps.
    pub async fn write<T, E: From<rusqlite::Error>>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, E>,
    ) -> Result<T, E> {
        self.write_mapped(f, E::from).await
    }

    /// [`Database::write`] for an error type that SQLite's errors are turned into by `db_error`.
    ///
    /// Group commit: each write runs in a savepoint of the transaction that is open on the
    /// write connection. A writer that finds others waiting for the connection leaves the
    /// transaction open for them and waits for its commit; the last one of the group (nobody
    /// waiting, [`GROUP_MEMBERS`] reached, or the group [`GROUP_SPAN`] old) commits it for
    /// everyone. A writer's `Err` rolls back its own savepoint only; a failed commit fails
    /// every write of the group. Nothing is reported written before it is committed.
    pub async fn write_mapped<T, E>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, E>,
        db_error: impl Fn(rusqlite::Error) -> E,
    ) -> Result<T, E> {
        let mut writer = {
            let _waiting = Waiting::enter(&self.waiting);
            self.writer.lock().await
        };
        if writer.group.is_none() {
            self.begin(&mut writer).await.map_err(&db_error)?;
        }
        let outcome = writer.run(f, &db_error);
        let committed = if writer.conn.is_autocommit() {
            // SQLite rolled the whole transaction back (disk full, I/O error): every write
            // of the group is lost, and each of its writers is told so.
            let failed = Failed::rolled_back();
            writer.end(Err(failed.clone()));
            Err(failed)
        } else {
            let group = writer.group.as_mut().expect("begun above");
            group.members += 1;
            let open = outcome.is_ok() && group.members < GROUP_MEMBERS && group.began.elapsed() < GROUP_SPAN;
            if open && self.waiting.load(Ordering::Acquire) == 0 {
                // Nobody queued yet: let the tasks that are ready run first, so that those
                // about to write join this group instead of each committing alone.
                writer = Lingering::over(writer).await;
            }
            let group = writer.group.as_ref().expect("a lingering group stays open");
            let hand_on = open && self.waiting.load(Ordering::Acquire) > 0;
            if hand_on {
                let (id, done) = (group.id, group.done.subscribe());
                drop(writer);
                self.committed(id, done).await
            } else {
                writer.commit()
            }
        };
        match outcome {
            Ok(Ok(value)) => committed.map(|()| value).map_err(|failed| db_error(failed.error())),
            Ok(Err(err)) => Err(err),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// Opens the group's transaction, waiting out another process's write lock.
    async fn begin(&self, writer: &mut Writer) -> rusqlite::Result<()> {
        let started = tokio::time::Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            match writer.conn.execute_batch("BEGIN IMMEDIATE") {
                Ok(()) => break,
                Err(err) if is_busy(&err) && started.elapsed() < WRITE_PATIENCE => {}
                Err(err) => return Err(err),
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
        writer.groups += 1;
        let (done, _) = tokio::sync::watch::channel(None);
        writer.group = Some(Group { id: writer.groups, began: Instant::now(), members: 0, done });
        Ok(())
    }

    /// Waits for group `id`'s commit. A writer it was handed on to may have gone away before
    /// taking it (its future dropped): after [`HAND_ON_PATIENCE`] this writer commits the
    /// group itself if it is still open.
    async fn committed(&self, id: u64, mut done: Done) -> Result<(), Failed> {
        loop {
            let waited = tokio::time::timeout(HAND_ON_PATIENCE, done.wait_for(Option::is_some))
                .await
                .map(|result| result.map(|done| done.clone().expect("waited for")));
            match waited {
                Ok(Ok(result)) => return result,
                // The group's sender went away without a result: nothing says it committed.
                Ok(Err(_)) => return Err(Failed::rolled_back()),
                Err(_) => {
                    let mut writer = self.writer.lock().await;
                    if writer.group.as_ref().is_some_and(|group| group.id == id) {
                        return writer.commit();
                    }
                }
            }
        }
    }
}

/// The write connection held, its group open, for one turn of the scheduler
/// ([`tokio::task::yield_now`]): the writes of the tasks that are ready join the group
/// instead of each committing on its own. Under the provisioning run's load a commit then
/// carries about 30 writes instead of 4 to 5 (decision 93); a lone writer loses nothing, its
/// yield returns at once. Dropped meanwhile (its caller went away), it commits the group, so
/// that no transaction stays open with nobody to end it.
struct Lingering<'a>(Option<tokio::sync::MutexGuard<'a, Writer>>);

impl<'a> Lingering<'a> {
    async fn over(writer: tokio::sync::MutexGuard<'a, Writer>) -> tokio::sync::MutexGuard<'a, Writer> {
        let mut lingering = Self(Some(writer));
        tokio::task::yield_now().await;
        lingering.0.take().expect("taken once")
    }
}

impl Drop for Lingering<'_> {
    fn drop(&mut self) {
        if let Some(mut writer) = self.0.take() {
            let _ = writer.commit();
        }
    }
}

/// At most this many writes share a commit.
const GROUP_MEMBERS: usize = 64;

/// A group takes no new writer after this long, so that its writers hear of their commit
/// soon under a steady stream of writes, and another process waits at most about this long
/// for the write lock between two groups.
const GROUP_SPAN: Duration = Duration::from_millis(5);

/// How long a writer that handed the open transaction on waits before committing it itself.
const HAND_ON_PATIENCE: Duration = Duration::from_millis(50);

/// The write connection and the group transaction open on it, if any.
struct Writer {
    conn: Connection,
    group: Option<Group>,
    /// Groups begun, for telling them apart.
    groups: u64,
}

/// A transaction shared by consecutive writers, committed by the last of them.
struct Group {
    id: u64,
    began: Instant,
    members: usize,
    /// The commit's outcome, for the writers that handed the transaction on.
    done: tokio::sync::watch::Sender<Option<Result<(), Failed>>>,
}

type Done = tokio::sync::watch::Receiver<Option<Result<(), Failed>>>;

impl Writer {
    /// Runs `f` in a savepoint, released when it returns `Ok`, rolled back when it returns
    /// `Err` or panics (the panic is handed back to the caller to resume).
    fn run<T, E>(
        &mut self,
        f: impl FnOnce(&Connection) -> Result<T, E>,
        db_error: impl Fn(rusqlite::Error) -> E,
    ) -> Result<Result<T, E>, Box<dyn std::any::Any + Send>> {
        if let Err(err) = self.conn.execute_batch("SAVEPOINT write") {
            // Nothing of `f` ran; what the group wrote before stays for its commit.
            return Ok(Err(db_error(err)));
        }
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&self.conn)));
        let end = match &outcome {
            Ok(Ok(_)) => "RELEASE write",
            Ok(Err(_)) | Err(_) => "ROLLBACK TO write; RELEASE write",
        };
        // Fails only when SQLite already rolled the transaction back; the caller sees that.
        let _ = self.conn.execute_batch(end);
        outcome
    }

    /// Commits the open group and tells its writers.
    fn commit(&mut self) -> Result<(), Failed> {
        let result = self.conn.execute_batch("COMMIT").map_err(|err| {
            let _ = self.conn.execute_batch("ROLLBACK");
            Failed::of(&err)
        });
        self.end(result.clone());
        result
    }

    /// Closes the group with `result`, which its waiting writers receive.
    fn end(&mut self, result: Result<(), Failed>) {
        if let Some(group) = self.group.take() {
            group.done.send_replace(Some(result));
        }
    }
}

/// Why a group's commit failed, for each of its writers.
#[derive(Debug, Clone)]
struct Failed {
    code: rusqlite::ffi::Error,
    message: String,
}

impl Failed {
    fn of(err: &rusqlite::Error) -> Self {
        let code =
            err.sqlite_error().copied().unwrap_or_else(|| rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR));
        Self { code, message: err.to_string() }
    }

    fn rolled_back() -> Self {
        Self {
            code: rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
            message: "the write transaction was rolled back by SQLite before its commit".to_owned(),
        }
    }

    fn error(&self) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(self.code, Some(self.message.clone()))
    }
}

/// Counts a writer waiting for the write connection while it waits (a dropped future too).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
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
    use rusqlite::TransactionBehavior;

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

    /// Writers queued behind the write connection share one commit; each gets its own
    /// outcome: a failing or panicking writer's rows are rolled back, the others' kept.
    #[tokio::test]
    async fn queued_writers_share_a_commit_and_keep_their_own_outcomes() {
        let dir = tempfile_dir();
        let db = std::sync::Arc::new(Database::open(&dir.join("t.db")).unwrap());
        db.write(|tx| tx.execute_batch("CREATE TABLE t (k TEXT PRIMARY KEY)")).await.unwrap();
        db.write(|tx| tx.execute("INSERT INTO t (k) VALUES ('taken')", [])).await.unwrap();
        let groups_before = db.writer.lock().await.groups;

        let held = db.writer.lock().await;
        let insert = |db: &std::sync::Arc<Database>, key: &'static str, panics: bool| {
            let db = db.clone();
            tokio::spawn(async move {
                db.write(move |tx| {
                    tx.execute("INSERT INTO t (k) VALUES (?1)", [key])?;
                    assert!(!panics, "a writer's bug");
                    Ok::<_, rusqlite::Error>(())
                })
                .await
            })
        };
        let first = insert(&db, "first", false);
        let taken = insert(&db, "taken", false); // a unique violation: this writer's Err
        let panicking = insert(&db, "panicked", true);
        let last = insert(&db, "last", false);
        while db.waiting.load(Ordering::Acquire) < 4 {
            tokio::task::yield_now().await;
        }
        drop(held);

        first.await.unwrap().expect("committed");
        assert!(taken.await.unwrap().is_err(), "the duplicate key fails its own writer");
        assert!(panicking.await.unwrap_err().is_panic(), "the panic reaches its own caller");
        last.await.unwrap().expect("committed");
        let keys: Vec<String> =
            db.read(|c| c.prepare("SELECT k FROM t ORDER BY k")?.query_map([], |r| r.get(0))?.collect()).unwrap();
        assert_eq!(keys, ["first", "last", "taken"], "only the failed and the panicked writes are missing");
        // The four writers queued together: the first three handed the transaction on, the
        // panicking one committed it (with `first`) and the last began and committed another.
        assert_eq!(db.writer.lock().await.groups - groups_before, 2, "four writes, two commits");
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Writers that become ready together share a commit even when none of them has queued
    /// yet as the first one finishes its write: it lets them run before it commits.
    #[tokio::test]
    async fn writers_ready_at_the_same_moment_share_one_commit() {
        let dir = tempfile_dir();
        let db = std::sync::Arc::new(Database::open(&dir.join("t.db")).unwrap());
        db.write(|tx| tx.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY)")).await.unwrap();
        let groups_before = db.writer.lock().await.groups;
        // Spawned on this (current-thread) runtime, the writers start one after the other:
        // the first has written before the second is polled.
        let writers: Vec<_> = (0..10)
            .map(|k| {
                let db = db.clone();
                tokio::spawn(async move { db.write(move |tx| tx.execute("INSERT INTO t (k) VALUES (?1)", [k])).await })
            })
            .collect();
        for writer in writers {
            writer.await.unwrap().expect("committed");
        }
        let rows: i64 = db.read(|c| c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))).unwrap();
        assert_eq!(rows, 10);
        assert_eq!(db.writer.lock().await.groups - groups_before, 1, "ten writes, one commit");
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A writer whose caller goes away while it holds the group open commits it: no
    /// transaction is left open with nobody to end it (another connection can write).
    #[tokio::test]
    async fn a_writer_dropped_while_its_group_is_open_commits_it() {
        let dir = tempfile_dir();
        let path = dir.join("t.db");
        let db = Database::open(&path).unwrap();
        db.write(|tx| tx.execute_batch("CREATE TABLE t (k TEXT PRIMARY KEY)")).await.unwrap();
        let write = db.write(|tx| tx.execute("INSERT INTO t (k) VALUES ('dropped')", []));
        // Polled once (the writer holds its group open and yields), then dropped.
        let finished = tokio::select! {
            biased;
            _ = write => true,
            () = std::future::ready(()) => false,
        };
        assert!(!finished, "the writer was still holding its group open");
        assert!(db.writer.lock().await.group.is_none(), "the group was committed as the writer went");
        let other = connect(&path).unwrap();
        other.execute("INSERT INTO t (k) VALUES ('other')", []).expect("the write lock is free");
        let rows: i64 = db.read(|c| c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))).unwrap();
        assert_eq!(rows, 2, "the dropped writer's row was committed with its group");
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Many writers at once on a multi-threaded runtime: every write that returned `Ok` is
    /// there, and none that returned `Err` left anything.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writers_each_see_exactly_their_own_outcome() {
        let dir = tempfile_dir();
        let db = std::sync::Arc::new(Database::open(&dir.join("t.db")).unwrap());
        db.write(|tx| tx.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY, n INTEGER)")).await.unwrap();
        let writers: Vec<_> = (0..400_i64)
            .map(|k| {
                let db = db.clone();
                tokio::spawn(async move {
                    let result = db
                        .write(move |tx| {
                            tx.execute("INSERT INTO t (k, n) VALUES (?1, 1)", [k])?;
                            // A counter row every writer updates: lost updates would show.
                            tx.execute(
                                "INSERT INTO t (k, n) VALUES (-1, 1) ON CONFLICT (k) DO UPDATE SET n = n + 1",
                                [],
                            )?;
                            if k % 7 == 0 {
                                return Err(rusqlite::Error::InvalidQuery); // refused after writing
                            }
                            Ok(())
                        })
                        .await;
                    (k, result.is_ok())
                })
            })
            .collect();
        let mut committed = Vec::new();
        for writer in writers {
            let (k, ok) = writer.await.unwrap();
            assert_eq!(ok, k % 7 != 0, "writer {k} got its own outcome");
            if ok {
                committed.push(k);
            }
        }
        let (keys, counter): (Vec<i64>, i64) = db
            .read(|c| {
                let keys = c
                    .prepare("SELECT k FROM t WHERE k >= 0 ORDER BY k")?
                    .query_map([], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                let counter = c.query_row("SELECT n FROM t WHERE k = -1", [], |r| r.get(0))?;
                Ok::<_, rusqlite::Error>((keys, counter))
            })
            .unwrap();
        assert_eq!(keys, committed, "exactly the writes that returned Ok are there");
        assert_eq!(counter, i64::try_from(committed.len()).unwrap(), "no update lost, none from a failed write");
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A writer hands the open transaction on to one that was waiting and then went away
    /// (its future dropped): it commits the group itself after a short patience.
    #[tokio::test]
    async fn a_write_handed_on_to_a_writer_that_left_is_still_committed() {
        let dir = tempfile_dir();
        let db = Database::open(&dir.join("t.db")).unwrap();
        db.write(|tx| tx.execute_batch("CREATE TABLE t (k TEXT PRIMARY KEY)")).await.unwrap();
        // A writer counted as waiting that never takes the connection.
        db.waiting.fetch_add(1, Ordering::AcqRel);
        let write = db.write(|tx| tx.execute("INSERT INTO t (k) VALUES ('a')", []));
        tokio::time::timeout(Duration::from_secs(10), write).await.expect("not left open").unwrap();
        let keys: i64 = db.read(|c| c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))).unwrap();
        assert_eq!(keys, 1, "committed and visible to readers when the write returned");
        assert!(db.writer.lock().await.group.is_none(), "no transaction is left open");
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ggprov-inline-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
