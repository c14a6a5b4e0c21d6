//! Artifact storage (certs bundles, installer configs, provisioning templates).

use async_trait::async_trait;

use super::StoreError;

/// Storage of artifacts (certs bundles, installer configs, provisioning templates).
#[async_trait]
pub trait ArtifactStore: Send + Sync {
    /// The bucket name shown in artifact records.
    fn bucket(&self) -> &str;
    /// The bucket Greengrass recipes name in `s3://` artifact URIs (on the embedded default,
    /// the local cloud's simulated bucket: the artifact directory is not a bucket name).
    fn recipe_bucket(&self) -> &str {
        self.bucket()
    }
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError>;
    /// Stores and answers the object version the store gave it, when it keeps versions (S3
    /// with versioning enabled).
    async fn put_versioned(&self, key: &str, bytes: Vec<u8>) -> Result<Option<String>, StoreError> {
        self.put(key, bytes).await.map(|()| None)
    }
    /// Whether an object exists under exactly this key.
    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        Ok(self.list(key).await?.iter().any(|k| k == key))
    }
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Deletes; absent is fine.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Moves the object at `from` (whose content is `bytes`) to `to`: afterwards `to` holds
    /// `bytes` and `from` is gone. Absent `from` is fine when `to` is there (moved before).
    /// Stores that can rename do so instead of writing the bytes again.
    async fn relocate(&self, from: &str, to: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.put(to, bytes).await?;
        self.delete(from).await
    }
    /// Keys starting with `prefix`, sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;
    /// A time-limited download link, when the store offers them and they are enabled.
    async fn download_url(&self, _key: &str) -> Result<Option<String>, StoreError> {
        Ok(None)
    }
}
