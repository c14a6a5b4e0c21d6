//! Artifact storage (certs bundles, installer configs, provisioning templates).

use async_trait::async_trait;

use super::StoreError;

/// Storage of artifacts (certs bundles, installer configs, provisioning templates).
#[async_trait]
pub trait ArtifactStore: Send + Sync {
    /// The bucket name shown in artifact records.
    fn bucket(&self) -> &str;
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError>;
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Deletes; absent is fine.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Keys starting with `prefix`, sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;
    /// A time-limited download link, when the store offers them and they are enabled.
    async fn download_url(&self, _key: &str) -> Result<Option<String>, StoreError> {
        Ok(None)
    }
}
