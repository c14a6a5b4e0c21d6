//! `ArtifactStore` on S3, every object written with server-side encryption (SSE-KMS with the
//! configured key, SSE-S3 otherwise).

use crate::store_error;
use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use ggprov_domain::ports::{ArtifactStore, StoreError};

/// Artifacts in one S3 bucket.
#[derive(Clone)]
pub struct S3Artifacts {
    client: Client,
    bucket: String,
    kms_key: Option<String>,
    /// Presigned download links in API answers, valid this long (off when `None`).
    presign: Option<std::time::Duration>,
}

impl S3Artifacts {
    pub fn new(client: Client, bucket: impl Into<String>, kms_key: Option<String>) -> Self {
        Self { client, bucket: bucket.into(), kms_key, presign: None }
    }

    /// Offers presigned download links valid for `ttl`.
    #[must_use]
    pub fn with_download_links(mut self, ttl: std::time::Duration) -> Self {
        self.presign = Some(ttl);
        self
    }

    /// Creates the bucket when missing, with versioning like `infra/` makes it (development
    /// and tests; `infra/` creates it on AWS).
    pub async fn create_bucket_if_missing(&self) -> Result<(), StoreError> {
        if self.client.head_bucket().bucket(&self.bucket).send().await.is_ok() {
            return Ok(());
        }
        match self.client.create_bucket().bucket(&self.bucket).send().await {
            Ok(_) => {}
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_bucket_already_owned_by_you() || e.is_bucket_already_exists()) => {}
            Err(err) => return Err(store_error(err)),
        }
        let versioning = aws_sdk_s3::types::VersioningConfiguration::builder()
            .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
            .build();
        self.client
            .put_bucket_versioning()
            .bucket(&self.bucket)
            .versioning_configuration(versioning)
            .send()
            .await
            .map_err(store_error)?;
        Ok(())
    }

    /// A time-limited download link for an artifact.
    pub async fn presigned_url(&self, key: &str, ttl: std::time::Duration) -> Result<String, StoreError> {
        let config = aws_sdk_s3::presigning::PresigningConfig::expires_in(ttl).map_err(StoreError::unavailable)?;
        let request =
            self.client.get_object().bucket(&self.bucket).key(key).presigned(config).await.map_err(store_error)?;
        Ok(request.uri().to_owned())
    }
}

#[async_trait]
impl ArtifactStore for S3Artifacts {
    fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.put_versioned(key, bytes).await.map(|_| ())
    }

    async fn put_versioned(&self, key: &str, bytes: Vec<u8>) -> Result<Option<String>, StoreError> {
        let mut request = self.client.put_object().bucket(&self.bucket).key(key).body(ByteStream::from(bytes));
        request = match &self.kms_key {
            Some(kms) => request.server_side_encryption(ServerSideEncryption::AwsKms).ssekms_key_id(kms),
            None => request.server_side_encryption(ServerSideEncryption::Aes256),
        };
        let out = request.send().await.map_err(store_error)?;
        Ok(out.version_id.filter(|v| v != "null"))
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self.client.get_object().bucket(&self.bucket).key(key).send().await {
            Ok(out) => Ok(Some(out.body.collect().await.map_err(StoreError::unavailable)?.into_bytes().to_vec())),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(aws_sdk_s3::operation::get_object::GetObjectError::is_no_such_key) =>
            {
                Ok(None)
            }
            Err(err) => Err(store_error(err)),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.client.delete_object().bucket(&self.bucket).key(key).send().await.map_err(store_error)?;
        Ok(())
    }

    async fn download_url(&self, key: &str) -> Result<Option<String>, StoreError> {
        match self.presign {
            Some(ttl) => self.presigned_url(key, ttl).await.map(Some),
            None => Ok(None),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token)
                .send()
                .await
                .map_err(store_error)?;
            keys.extend(out.contents.unwrap_or_default().into_iter().filter_map(|o| o.key));
            match out.next_continuation_token {
                Some(next) if out.is_truncated == Some(true) => token = Some(next),
                _ => break,
            }
        }
        keys.sort();
        Ok(keys)
    }
}
