//! Artifacts on disk: the embedded default's artifact store, a directory under the data dir
//! laid out by key (`<core>/<core>/certs.zip`, `provisioning-templates/<name>.json`).

use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use async_trait::async_trait;
use ggprov_domain::ports::{ArtifactStore, StoreError};

/// Artifacts as files below a root directory. Files are written atomically (temp + rename)
/// and readable by the owner only, since certs bundles hold private keys. A file is on the
/// disk before its write returns (decision 90: one `syncfs` for the files written meanwhile,
/// unless [`ArtifactSync::EachFile`]).
#[derive(Debug, Clone)]
pub struct DirectoryArtifacts {
    root: PathBuf,
    bucket: String,
    durability: Durability,
}

/// How a written artifact is made durable (`GGPROV_ARTIFACT_SYNC`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ArtifactSync {
    /// One `syncfs` of the file system for the files written while the last one ran (Linux;
    /// elsewhere each file's `fsync`). Also writes back other programs' dirty data on that
    /// file system.
    #[default]
    FileSystem,
    /// An `fsync` of each file, and of its directory after the rename: costs one sync a file,
    /// but never waits for other programs' writes.
    EachFile,
}

impl DirectoryArtifacts {
    pub fn new(root: PathBuf) -> Self {
        let bucket = root.display().to_string();
        let durability = Durability { root: root.clone(), group: Some(Arc::default()) };
        Self { root, bucket, durability }
    }

    /// Makes written files durable as `sync` says.
    #[must_use]
    pub fn synced_by(mut self, sync: ArtifactSync) -> Self {
        self.durability.group = match sync {
            ArtifactSync::FileSystem => Some(Arc::default()),
            ArtifactSync::EachFile => None,
        };
        self
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        let relative = Path::new(key);
        if key.is_empty() || !relative.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(StoreError::unavailable(format!("artifact key '{key}' is not a plain relative path")));
        }
        Ok(self.root.join(relative))
    }
}

fn io(err: std::io::Error) -> StoreError {
    StoreError::unavailable(err)
}

#[async_trait]
impl ArtifactStore for DirectoryArtifacts {
    fn bucket(&self) -> &str {
        &self.bucket
    }

    fn recipe_bucket(&self) -> &str {
        "ggprov-local-artifacts"
    }

    /// Writes a temporary file, makes its bytes durable, renames it into place and makes the
    /// rename durable (with any directory it created): the file is whole and under its name
    /// on the disk before the write returns, so nothing recorded after it can name a file a
    /// power loss took back. A new name takes one shared sync for both (`publish_new`).
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let durability = self.durability.clone();
        tokio::task::spawn_blocking(move || {
            let dir = path.parent().expect("keys have a parent");
            let created = !dir.is_dir();
            std::fs::create_dir_all(dir)?;
            // Unique per write: two writers of one key never share (and truncate) a temporary file.
            let temp = dir.join(format!(
                ".{}.{}.tmp",
                path.file_name().and_then(|n| n.to_str()).unwrap_or("artifact"),
                uuid::Uuid::new_v4().simple()
            ));
            let file = {
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create(true).truncate(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut file = options.open(&temp)?;
                std::io::Write::write_all(&mut file, &bytes)?;
                file
            };
            if durability.publish_new(&file, &temp, &path)? {
                return Ok(());
            }
            durability.file(&file)?;
            std::fs::rename(&temp, &path)?;
            durability.entries(&file, dir, created)
        })
        .await
        .map_err(StoreError::unavailable)?
        .map_err(io)
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match tokio::fs::read(self.path(key)?).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(io(err)),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match tokio::fs::remove_file(self.path(key)?).await {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(io(err)),
        }
    }

    /// A rename: no second file, no second copy of the bytes (they were made durable when
    /// `from` was written), only the rename made durable, where writing `to` afresh cost a new
    /// inode and a sync of its bytes.
    async fn relocate(&self, from: &str, to: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        let (source, target) = (self.path(from)?, self.path(to)?);
        let durability = self.durability.clone();
        let renamed = tokio::task::spawn_blocking(move || {
            std::fs::rename(&source, &target)?;
            let dir = target.parent().expect("keys have a parent");
            durability.entries(&std::fs::File::open(&target)?, dir, false)
        })
        .await
        .map_err(StoreError::unavailable)?;
        match renamed {
            Ok(()) => Ok(()),
            // Moved before (by a retry or a second holder of the item): `to` is there, or the
            // caller's bytes make it so.
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let target = self.path(to)?;
                if tokio::fs::try_exists(&target).await.map_err(io)? { Ok(()) } else { self.put(to, bytes).await }
            }
            Err(err) => Err(io(err)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let root = self.root.clone();
        let prefix = prefix.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut keys = Vec::new();
            let mut stack = vec![root.clone()];
            while let Some(dir) = stack.pop() {
                let entries = match std::fs::read_dir(&dir) {
                    Ok(entries) => entries,
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(err) => return Err(io(err)),
                };
                for entry in entries {
                    let path = entry.map_err(io)?.path();
                    if path.is_dir() {
                        stack.push(path);
                    } else if let Ok(relative) = path.strip_prefix(&root) {
                        let key = relative.to_string_lossy().replace('\\', "/");
                        if key.starts_with(&prefix) && !key.rsplit('/').next().is_some_and(|f| f.starts_with('.')) {
                            keys.push(key);
                        }
                    }
                }
            }
            keys.sort();
            Ok(keys)
        })
        .await
        .map_err(StoreError::unavailable)?
    }
}

/// Makes files durable in groups: a writer waits for a sync of the whole file system that
/// began after its write, and the first writer to find none running starts one for everybody
/// waiting. On this machine kind an `fsync` a file cost a third of provisioning's throughput
/// (two files a core); one `syncfs` covers every file written while the last one ran.
#[derive(Debug, Default)]
struct GroupSync {
    state: Mutex<SyncState>,
    finished: Condvar,
}

/// How many runs back a failed sync's outcome is kept for its writers.
const FAILURES_KEPT: u64 = 1024;

#[derive(Debug, Default)]
struct SyncState {
    /// Syncs begun and ended; one runs at a time, so they end in the order they began.
    started: u64,
    ended: u64,
    running: bool,
    /// The syncs that failed, and why (rare; kept so each of their writers hears of it).
    failed: std::collections::BTreeMap<u64, String>,
    /// Writers waiting for a sync (for tests).
    waiting: usize,
}

impl GroupSync {
    /// Returns once a run of `sync` that began after this call has ended: its error, if it
    /// failed. Blocks the calling thread (a blocking-pool thread).
    fn sync(&self, sync: impl FnOnce() -> std::io::Result<()>) -> std::io::Result<()> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let needed = state.started + 1;
        let mut sync = Some(sync);
        loop {
            if state.ended >= needed {
                return match state.failed.get(&needed) {
                    Some(why) => Err(std::io::Error::other(why.clone())),
                    None => Ok(()),
                };
            }
            if state.running {
                state.waiting += 1;
                state = self.finished.wait(state).unwrap_or_else(PoisonError::into_inner);
                state.waiting -= 1;
                continue;
            }
            // None running and `needed` not ended: `needed` is the next to begin, and this
            // writer runs it (its own closure: any file of the file system will do).
            state.running = true;
            state.started += 1;
            let run = state.started;
            drop(state);
            let result = (sync.take().expect("a writer runs one sync"))();
            state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.running = false;
            state.ended = run;
            if let Err(err) = result {
                state.failed.insert(run, format!("syncing the artifacts' file system: {err}"));
                // A writer reads its run's outcome when woken right after it; old ones go.
                state.failed.retain(|&failed, _| failed + FAILURES_KEPT > run);
            }
            self.finished.notify_all();
        }
    }
}

/// How written files reach the disk: by a `syncfs` shared with the files written meanwhile
/// (`group`; Linux), or by `fsync`s of the file and its directories.
#[derive(Debug, Clone)]
struct Durability {
    /// The artifacts' root: directories are synced up to it.
    root: PathBuf,
    group: Option<Arc<GroupSync>>,
}

impl Durability {
    /// Returns once `file`'s bytes are on the disk.
    fn file(&self, file: &std::fs::File) -> std::io::Result<()> {
        self.shared(file).unwrap_or_else(|| file.sync_all())
    }

    /// Returns once the entries of `dir` (a rename, a new file) are on the disk, and, if
    /// `created`, those of its parents up to the root (new directories). `file` is one of
    /// the files on the same file system.
    fn entries(&self, file: &std::fs::File, dir: &Path, created: bool) -> std::io::Result<()> {
        self.shared(file).unwrap_or_else(|| {
            #[cfg(unix)]
            {
                let depth = if created { usize::MAX } else { 1 };
                for dir in dir.ancestors().take(depth).take_while(|d| d.starts_with(&self.root)) {
                    std::fs::File::open(dir)?.sync_all()?;
                }
            }
            // Elsewhere a directory cannot be opened to be synced; NTFS journals its entries.
            #[cfg(not(unix))]
            let _ = (dir, created);
            Ok(())
        })
    }

    /// Moves the written (unsynced) `temp` to `path` if no file has that name, and returns
    /// `true` once bytes and name are on the disk, by one shared `syncfs` for both. A crash
    /// before that sync may leave a partial file under the new name, but nothing refers to
    /// it (the write has not returned) and it replaces nothing; a later write of the name
    /// finds it there and replaces it the careful way. `false` (nothing done): a file has
    /// that name, or there is no shared sync, or the file system cannot refuse to replace.
    fn publish_new(&self, file: &std::fs::File, temp: &Path, path: &Path) -> std::io::Result<bool> {
        #[cfg(target_os = "linux")]
        if self.group.is_some() {
            use rustix::fs::{CWD, RenameFlags, renameat_with};
            use rustix::io::Errno;
            return match renameat_with(CWD, temp, CWD, path, RenameFlags::NOREPLACE) {
                Ok(()) => self.shared(file).unwrap_or(Ok(())).map(|()| true),
                Err(Errno::EXIST | Errno::INVAL | Errno::NOSYS | Errno::NOTSUP) => Ok(false),
                Err(err) => Err(err.into()),
            };
        }
        let _ = (file, temp, path);
        Ok(false)
    }

    /// The shared `syncfs`, where there is one: it covers data and entries alike.
    fn shared(&self, file: &std::fs::File) -> Option<std::io::Result<()>> {
        #[cfg(target_os = "linux")]
        if let Some(group) = &self.group {
            return Some(group.sync(|| rustix::fs::syncfs(file).map_err(std::io::Error::from)));
        }
        let _ = file;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writers that finish while a sync runs share the next one: eight writes, two syncs.
    #[test]
    fn writers_waiting_for_a_sync_share_the_next_one() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let group = Arc::new(GroupSync::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let (release, released) = std::sync::mpsc::channel::<()>();
        let first = std::thread::spawn({
            let (group, runs) = (group.clone(), runs.clone());
            move || {
                group.sync(|| {
                    runs.fetch_add(1, Ordering::SeqCst);
                    released.recv().expect("released");
                    Ok(())
                })
            }
        });
        while !group.state.lock().unwrap().running {
            std::thread::yield_now();
        }
        // Seven writers finish while the first sync runs: it began before their writes.
        let others: Vec<_> = (0..7)
            .map(|_| {
                let (group, runs) = (group.clone(), runs.clone());
                std::thread::spawn(move || {
                    group.sync(|| {
                        runs.fetch_add(1, Ordering::SeqCst);
                        Ok(())
                    })
                })
            })
            .collect();
        while group.state.lock().unwrap().waiting < 7 {
            std::thread::yield_now();
        }
        release.send(()).unwrap();
        first.join().unwrap().expect("synced");
        for other in others {
            other.join().unwrap().expect("synced");
        }
        assert_eq!(runs.load(Ordering::SeqCst), 2, "one sync for the first write, one for the seven after it");
    }

    /// A failed sync fails the writes that waited for it; the next write gets a sync of its own.
    #[test]
    fn a_failed_sync_fails_its_writers_and_the_next_write_syncs_again() {
        let group = GroupSync::default();
        let failed = group.sync(|| Err(std::io::Error::other("device gone")));
        assert!(failed.unwrap_err().to_string().contains("device gone"), "the writer hears why");
        group.sync(|| Ok(())).expect("a later write is not failed by an earlier sync");
    }

    /// A put to a new name waits for one sync after its rename (bytes and name at once); a
    /// put that replaces a file, for one after its bytes are written and another after the
    /// rename, so that the name never points at a partial file; a relocate, for one after
    /// its rename.
    #[tokio::test]
    async fn writes_and_renames_are_on_the_disk_before_they_return() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = DirectoryArtifacts::new(dir.path().to_owned());
        #[cfg(target_os = "linux")]
        let syncs = || store.durability.group.as_ref().expect("shared").state.lock().unwrap().ended;
        store.put("c1/c1/certs-ab.zip", b"bundle".to_vec()).await.expect("put");
        #[cfg(target_os = "linux")]
        assert_eq!(syncs(), 1, "a new name: bytes and rename in one sync");
        store.put("c1/c1/certs-ab.zip", b"bundle 2".to_vec()).await.expect("put");
        #[cfg(target_os = "linux")]
        assert_eq!(syncs(), 3, "a replacement: the bytes, then the rename");
        assert_eq!(store.get("c1/c1/certs-ab.zip").await.expect("get"), Some(b"bundle 2".to_vec()));
        store.relocate("c1/c1/certs-ab.zip", "c1/c1/certs.zip", b"bundle 2".to_vec()).await.expect("moves");
        #[cfg(target_os = "linux")]
        assert_eq!(syncs(), 4, "the rename");
        assert_eq!(store.get("c1/c1/certs.zip").await.expect("get"), Some(b"bundle 2".to_vec()));
        assert_eq!(store.list("c1/").await.expect("list"), vec!["c1/c1/certs.zip".to_owned()], "no temporary files");

        // Each file on its own (`GGPROV_ARTIFACT_SYNC=file`): no shared sync, the same files.
        let each = DirectoryArtifacts::new(dir.path().to_owned()).synced_by(ArtifactSync::EachFile);
        assert!(each.durability.group.is_none());
        each.put("c2/c2/installerConfig.yml", b"config".to_vec()).await.expect("put");
        each.relocate("c2/c2/installerConfig.yml", "c2/c2/moved.yml", b"config".to_vec()).await.expect("moves");
        assert_eq!(each.get("c2/c2/moved.yml").await.expect("get"), Some(b"config".to_vec()));
        assert_eq!(each.list("c2/").await.expect("list"), vec!["c2/c2/moved.yml".to_owned()], "no temporary files");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("c2/c2/moved.yml")).expect("stat").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[tokio::test]
    async fn relocate_moves_the_file_and_a_second_relocate_changes_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = DirectoryArtifacts::new(dir.path().to_owned());
        store.put("c1/c1/certs-ab.zip", b"bundle".to_vec()).await.expect("put");

        store.relocate("c1/c1/certs-ab.zip", "c1/c1/certs.zip", b"bundle".to_vec()).await.expect("moves");
        assert_eq!(store.get("c1/c1/certs.zip").await.expect("get"), Some(b"bundle".to_vec()));
        assert_eq!(store.get("c1/c1/certs-ab.zip").await.expect("get"), None);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("c1/c1/certs.zip")).expect("stat").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "a bundle holds a private key: owner only");
        }

        // A retry (or a second holder) after the move: the published file stays as it is.
        store.relocate("c1/c1/certs-ab.zip", "c1/c1/certs.zip", b"other".to_vec()).await.expect("moved before");
        assert_eq!(store.get("c1/c1/certs.zip").await.expect("get"), Some(b"bundle".to_vec()));
        // Neither there: the caller's bytes are written.
        store.relocate("c2/c2/certs-cd.zip", "c2/c2/certs.zip", b"fresh".to_vec()).await.expect("writes");
        assert_eq!(store.get("c2/c2/certs.zip").await.expect("get"), Some(b"fresh".to_vec()));
    }
}
