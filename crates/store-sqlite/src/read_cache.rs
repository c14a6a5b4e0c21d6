//! Exact read caches over a SQLite database in WAL mode, keyed by the database's state: the
//! WAL-index header in `<db>-shm` (SQLite's documented wal-index format: its change counter
//! moves with every committed transaction, by any connection of any process, before the commit
//! returns). A value read at a state is answered from memory while the header is unchanged; any
//! commit anywhere empties the cache at once. So a cached read is as exact as a read, also with
//! several processes sharing the database, and costs one `pread` of 96 bytes (decision 65).

use std::collections::HashMap;
use std::sync::Mutex;

/// The WAL-index header (both copies, as SQLite writes them).
pub type DbState = [u8; 96];

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

/// Values by key, all read at one database state; emptied when the state moves. Bounded: past
/// `max` keys a state keeps what it has and reads the rest through.
#[derive(Debug)]
pub struct KeyedReadCache<T> {
    max: usize,
    slot: Mutex<Option<(DbState, HashMap<String, T>)>>,
}

impl<T: Clone> KeyedReadCache<T> {
    pub fn new(max: usize) -> Self {
        Self { max, slot: Mutex::new(None) }
    }

    /// The value of `key` as read at the state `now`, if known.
    pub fn get(&self, now: Option<DbState>, key: &str) -> Option<T> {
        let now = now?;
        let slot = self.slot.lock().expect("read cache lock");
        slot.as_ref().filter(|(at, _)| *at == now).and_then(|(_, map)| map.get(key).cloned())
    }

    /// Remembers a value read at the state `at` (taken *before* the read: a commit during the
    /// read makes it stale at once).
    pub fn put(&self, at: Option<DbState>, key: &str, value: T) {
        let Some(at) = at else { return };
        let mut slot = self.slot.lock().expect("read cache lock");
        match slot.as_mut() {
            Some((state, map)) if *state == at => {
                if map.len() < self.max {
                    map.insert(key.to_owned(), value);
                }
            }
            _ => *slot = Some((at, HashMap::from([(key.to_owned(), value)]))),
        }
    }
}
