//! Exact read caches over a SQLite database in WAL mode, keyed by the database's state: the
//! WAL-index header in `<db>-shm` (SQLite's documented wal-index format: its change counter
//! moves with every committed transaction, by any connection of any process, before the commit
//! returns). A value read at a state is answered from memory while the header is unchanged; any
//! commit anywhere empties the cache at once. So a cached read is as exact as a read, also with
//! several processes sharing the database, and costs one `pread` of 96 bytes (decision 65).

/// The WAL-index header (both copies, as SQLite writes them).
pub type DbState = ggprov_domain::ports::DataState;

/// The state of one database.
#[derive(Debug, Default)]
pub struct WalIndex {
    /// The open `-shm` file; `None` (no caching) when it cannot be read.
    shm: Option<std::fs::File>,
}

impl WalIndex {
    /// The state of the database file at `db` (its `-shm` next to it, which SQLite creates in
    /// WAL mode once a connection is open).
    pub fn over(db: &std::path::Path) -> Self {
        let mut shm = db.as_os_str().to_owned();
        shm.push("-shm");
        Self { shm: std::fs::File::open(shm).ok() }
    }

    /// The database's state now; `None` when it cannot be told (then nothing is cached), or
    /// while a writer is between the header's two copies.
    pub fn current(&self) -> Option<DbState> {
        use std::os::unix::fs::FileExt as _;
        let mut header = [0u8; 96];
        self.shm.as_ref()?.read_exact_at(&mut header, 0).ok()?;
        (header[..48] == header[48..]).then_some(header)
    }
}

pub use ggprov_domain::read_cache::KeyedReadCache;
