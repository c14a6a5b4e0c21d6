//! CDF-compatible CA source: the CA certificate from IoT `DescribeCACertificate(caId)`, its
//! private key from the SSM `SecureString` `cdf-ca-key-<caId>`. Read once, kept in memory,
//! never logged (`SecretPem` does not print).

use std::collections::HashMap;

use async_trait::async_trait;
use ggprov_domain::ports::{CaMaterial, CertificateAuthorities, CloudError, SecretPem};
use tokio::sync::Mutex;

use crate::{AwsIot, cloud_error};

/// CAs registered with IoT whose keys are in SSM Parameter Store.
pub struct SsmCertificateAuthorities {
    iot: AwsIot,
    ssm: aws_sdk_ssm::Client,
    default_ca: Option<String>,
    cache: Mutex<HashMap<String, CaMaterial>>,
}

impl SsmCertificateAuthorities {
    pub fn new(iot: AwsIot, ssm: aws_sdk_ssm::Client, default_ca: Option<String>) -> Self {
        Self { iot, ssm, default_ca, cache: Mutex::new(HashMap::new()) }
    }

    /// The SSM parameter that holds a CA's key, as CDF names it.
    pub fn key_parameter(ca_id: &str) -> String {
        format!("cdf-ca-key-{ca_id}")
    }
}

#[async_trait]
impl CertificateAuthorities for SsmCertificateAuthorities {
    async fn ca(&self, ca_id: &str) -> Result<Option<CaMaterial>, CloudError> {
        let mut cache = self.cache.lock().await;
        if let Some(ca) = cache.get(ca_id) {
            return Ok(Some(ca.clone()));
        }
        let Some(certificate_pem) = self.iot.ca_certificate_pem(ca_id).await? else { return Ok(None) };
        let parameter =
            match self.ssm.get_parameter().name(Self::key_parameter(ca_id)).with_decryption(true).send().await {
                Ok(out) => out.parameter.and_then(|p| p.value),
                Err(err) => match cloud_error("GetParameter", &err) {
                    e if e.is_not_found() => None,
                    e => return Err(e),
                },
            };
        let Some(key) = parameter else {
            tracing::warn!(
                ca.id = ca_id,
                "the CA is registered with IoT but its key is not in SSM (cdf-ca-key-<caId>)"
            );
            return Ok(None);
        };
        let material = CaMaterial { ca_id: ca_id.to_owned(), certificate_pem, private_key: SecretPem::new(key) };
        cache.insert(ca_id.to_owned(), material.clone());
        Ok(Some(material))
    }

    fn default_ca_id(&self) -> Option<String> {
        self.default_ca.clone()
    }

    /// The CAs whose key is in SSM (`cdf-ca-key-<caId>`): those ggprov can sign with, found by
    /// name (`DescribeParameters`, every page) rather than by listing IoT's CA certificates.
    async fn ca_ids(&self) -> Result<Vec<String>, CloudError> {
        let filter = aws_sdk_ssm::types::ParameterStringFilter::builder()
            .key("Name")
            .option("BeginsWith")
            .values(Self::key_parameter(""))
            .build()
            .expect("complete filter");
        let mut ids = Vec::new();
        let mut next = None;
        loop {
            let out = self
                .ssm
                .describe_parameters()
                .parameter_filters(filter.clone())
                .set_next_token(next)
                .send()
                .await
                .map_err(|e| cloud_error("DescribeParameters", &e))?;
            ids.extend(
                out.parameters
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|p| p.name)
                    .filter_map(|name| name.strip_prefix(&Self::key_parameter("")).map(str::to_owned)),
            );
            match out.next_token {
                Some(token) if !token.is_empty() => next = Some(token),
                _ => break,
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Deactivates and deletes the CA certificate in IoT (IoT refuses while certificates it
    /// signed are registered), then its key in SSM.
    async fn delete_ca(&self, ca_id: &str) -> Result<(), CloudError> {
        if self.iot.ca_certificate_pem(ca_id).await?.is_none() {
            return Err(CloudError::NotFound { api: "DescribeCACertificate", message: format!("no CA '{ca_id}'") });
        }
        self.iot.delete_ca_certificate(ca_id).await?;
        match self.ssm.delete_parameter().name(Self::key_parameter(ca_id)).send().await {
            Ok(_) => {}
            Err(err) => match cloud_error("DeleteParameter", &err) {
                e if e.is_not_found() => {}
                e => return Err(e),
            },
        }
        self.cache.lock().await.remove(ca_id);
        Ok(())
    }
}
