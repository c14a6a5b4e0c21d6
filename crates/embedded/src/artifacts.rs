//! Artifacts on disk: the embedded default's artifact store, a directory under the data dir
//! laid out by key (`<core>/<core>/certs.zip`, `provisioning-templates/<name>.json`).

use std::path::{Component, Path, PathBuf};

use async_trait::async_trait;
use ggprov_domain::ports::{ArtifactStore, StoreError};

/// Artifacts as files below a root directory. Files are written atomically (temp + rename)
/// and readable by the owner only, since certs bundles hold private keys.
#[derive(Debug, Clone)]
pub struct DirectoryArtifacts {
    root: PathBuf,
    bucket: String,
}

impl DirectoryArtifacts {
    pub fn new(root: PathBuf) -> Self {
        let bucket = root.display().to_string();
        Self { root, bucket }
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

    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        let path = self.path(key)?;
        tokio::task::spawn_blocking(move || {
            let dir = path.parent().expect("keys have a parent");
            std::fs::create_dir_all(dir)?;
            // Unique per write: two writers of one key never share (and truncate) a temporary file.
            let temp = dir.join(format!(
                ".{}.{}.tmp",
                path.file_name().and_then(|n| n.to_str()).unwrap_or("artifact"),
                uuid::Uuid::new_v4().simple()
            ));
            {
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create(true).truncate(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut file = options.open(&temp)?;
                std::io::Write::write_all(&mut file, &bytes)?;
                file.sync_all()?;
            }
            std::fs::rename(&temp, &path)
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

    /// A rename: no second file, no second `fsync` (the bytes were synced when `from` was
    /// written), where writing `to` afresh cost a new inode and a sync.
    async fn relocate(&self, from: &str, to: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        let (source, target) = (self.path(from)?, self.path(to)?);
        match tokio::fs::rename(&source, &target).await {
            Ok(()) => Ok(()),
            // Moved before (by a retry or a second holder of the item): `to` is there, or the
            // caller's bytes make it so.
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
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

#[cfg(test)]
mod tests {
    use super::*;

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
