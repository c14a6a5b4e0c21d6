//! Certificate authorities on disk (the embedded default): `<data>/cas/<id>/ca.pem` and
//! `ca.key` (mode 0600), `<data>/cas/default` naming the default CA. On AWS the CA key comes
//! from SSM instead (CDF-compatible), through the same port.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use async_trait::async_trait;
use ggprov_domain::ports::{CaMaterial, CertificateAuthorities, CloudError, SecretPem};

/// CAs held in the data directory.
#[derive(Debug, Clone)]
pub struct FileCertificateAuthorities {
    dir: PathBuf,
    configured_default: Option<String>,
}

impl FileCertificateAuthorities {
    pub fn new(data_dir: &Path, configured_default: Option<String>) -> Self {
        Self { dir: data_dir.join("cas"), configured_default }
    }

    fn valid_id(id: &str) -> bool {
        !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric())
    }

    /// Stores a CA (certificate + key) and returns its id (the certificate's fingerprint).
    pub fn store(&self, certificate_pem: &str, private_key: &SecretPem, make_default: bool) -> anyhow::Result<String> {
        let id = ggprov_pki::fingerprint(certificate_pem).context("reading the CA certificate")?;
        let material = CaMaterial {
            ca_id: id.clone(),
            certificate_pem: certificate_pem.to_owned(),
            private_key: private_key.clone(),
        };
        // Refuse a key that does not sign for this certificate.
        let probe = ggprov_pki::mint(&material, "ggprov-ca-check", &Default::default())
            .context("the CA key cannot sign with this certificate")?;
        if !ggprov_pki::is_signed_by(&probe.certificate_pem, certificate_pem)? {
            anyhow::bail!("the private key does not belong to the CA certificate");
        }
        let dir = self.dir.join(&id);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(dir.join("ca.pem"), certificate_pem)?;
        write_private(&dir.join("ca.key"), private_key.expose())?;
        if make_default || self.default_from_disk().is_none() {
            std::fs::write(self.dir.join("default"), &id)?;
        }
        Ok(id)
    }

    fn default_from_disk(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.join("default"))
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| Self::valid_id(s))
    }

    /// Ids of every CA held, sorted.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_dir(&self.dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .filter(|e| e.path().is_dir())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }

    /// The CA's certificate, read synchronously (CLI use).
    pub fn certificate(&self, id: &str) -> Option<String> {
        Self::valid_id(id).then(|| std::fs::read_to_string(self.dir.join(id).join("ca.pem")).ok()).flatten()
    }
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).with_context(|| format!("writing {}", path.display()))?;
    std::io::Write::write_all(&mut file, contents.as_bytes())?;
    Ok(())
}

#[async_trait]
impl CertificateAuthorities for FileCertificateAuthorities {
    async fn ca(&self, ca_id: &str) -> Result<Option<CaMaterial>, CloudError> {
        if !Self::valid_id(ca_id) {
            return Ok(None);
        }
        let dir = self.dir.join(ca_id);
        let (cert, key) =
            (tokio::fs::read_to_string(dir.join("ca.pem")).await, tokio::fs::read_to_string(dir.join("ca.key")).await);
        match (cert, key) {
            (Ok(certificate_pem), Ok(key)) => {
                Ok(Some(CaMaterial { ca_id: ca_id.to_owned(), certificate_pem, private_key: SecretPem::new(key) }))
            }
            _ => Ok(None),
        }
    }

    fn default_ca_id(&self) -> Option<String> {
        self.configured_default.clone().or_else(|| self.default_from_disk())
    }

    async fn ca_ids(&self) -> Result<Vec<String>, CloudError> {
        Ok(self.ids())
    }

    async fn delete_ca(&self, ca_id: &str) -> Result<(), CloudError> {
        let dir = self.dir.join(ca_id);
        if !Self::valid_id(ca_id) || !dir.is_dir() {
            return Err(CloudError::NotFound { api: "DeleteCA", message: format!("ggprov holds no CA '{ca_id}'") });
        }
        tokio::fs::remove_dir_all(&dir)
            .await
            .map_err(|e| CloudError::Unavailable { api: "DeleteCA", source: Box::new(e) })
    }
}

/// The CAs on disk as the local cloud sees them: a CA added while the service runs (`ggprov ca
/// create|import`) is registered with the local cloud's IoT the first time it signs, as one
/// registered with AWS IoT before use. Registration is remembered for the process.
pub(crate) struct RegisteredCas {
    files: FileCertificateAuthorities,
    cloud: ggprov_local_cloud::LocalCloud,
    registered: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl RegisteredCas {
    /// Over `files` whose CAs are all registered already (at start-up).
    pub(crate) fn new(files: FileCertificateAuthorities, cloud: ggprov_local_cloud::LocalCloud) -> Self {
        let registered = std::sync::Mutex::new(files.ids().into_iter().collect());
        Self { files, cloud, registered }
    }
}

#[async_trait]
impl CertificateAuthorities for RegisteredCas {
    async fn ca(&self, ca_id: &str) -> Result<Option<CaMaterial>, CloudError> {
        let Some(ca) = self.files.ca(ca_id).await? else { return Ok(None) };
        let known = self.registered.lock().expect("registered CAs").contains(ca_id);
        if !known {
            self.cloud.register_ca_certificate(&ca.certificate_pem).await?;
            self.registered.lock().expect("registered CAs").insert(ca_id.to_owned());
        }
        Ok(Some(ca))
    }

    fn default_ca_id(&self) -> Option<String> {
        self.files.default_ca_id()
    }

    async fn ca_ids(&self) -> Result<Vec<String>, CloudError> {
        self.files.ca_ids().await
    }

    async fn delete_ca(&self, ca_id: &str) -> Result<(), CloudError> {
        self.files.delete_ca(ca_id).await?;
        self.registered.lock().expect("registered CAs").remove(ca_id);
        Ok(())
    }
}
