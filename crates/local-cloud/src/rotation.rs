//! The rotation component of simulated cores: a core makes its new key and CSR itself (the key
//! stays in the local cloud's record of the device, never in ggprov), installs the certificate
//! it is handed and reconnects with it: HEALTHY with the new certificate when that certificate
//! is registered, ACTIVE, attached to its thing and matches its key; otherwise, or when told to
//! fail (`rotationFails`), it goes back to its old certificate and says why.

use async_trait::async_trait;
use ggprov_domain::ThingName;
use ggprov_domain::ports::{CloudError, RotationChannel, SecretPem};
use ggprov_domain::provisioning::KeyAlgorithm;
use ggprov_domain::rotation::RotationOutcome;
use serde::Serialize;
use sqlx::Row;

use crate::{LocalCloud, db, not_found, rejected};

const API: &str = "RotationComponent";

/// `GET /local-cloud/cores/{name}/credentials`: what a rotated core connects with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceCredentials {
    pub certificate_id: String,
    /// SHA-256 of the public key of the key the core generated (the key itself stays put).
    pub public_key_sha256: String,
}

impl LocalCloud {
    /// The certificate a core connects with since its last rotation (`None`: never rotated).
    pub async fn device_credentials(&self, core: &ThingName) -> Result<Option<DeviceCredentials>, CloudError> {
        let row = sqlx::query("SELECT certificate_id, public_key_sha256 FROM device_credentials WHERE core_name = ?")
            .bind(core.as_str())
            .fetch_optional(self.pool())
            .await
            .map_err(db(API))?;
        Ok(row.map(|r| DeviceCredentials {
            certificate_id: r.get("certificate_id"),
            public_key_sha256: r.get("public_key_sha256"),
        }))
    }

    /// Why the core cannot use `certificate_pem` with `key`, if it cannot.
    async fn unusable(
        &self,
        core: &ThingName,
        certificate_pem: &str,
        key: &SecretPem,
    ) -> Result<Option<String>, CloudError> {
        if !ggprov_pki::key_matches(certificate_pem, key).unwrap_or(false) {
            return Ok(Some("the certificate is not for the key the core generated".into()));
        }
        let id = ggprov_pki::fingerprint(certificate_pem).map_err(|e| rejected(API, e.to_string()))?;
        let status: Option<String> = sqlx::query("SELECT status FROM certificates WHERE id = ?")
            .bind(&id)
            .fetch_optional(self.pool())
            .await
            .map_err(db(API))?
            .map(|r| r.get("status"));
        if status.as_deref() != Some("ACTIVE") {
            return Ok(Some(format!("AWS IoT refused the connection: certificate {id} is not ACTIVE")));
        }
        let attached = sqlx::query("SELECT 1 FROM thing_principals WHERE thing_name = ? AND principal = ?")
            .bind(core.as_str())
            .bind(self.cert_arn(&id))
            .fetch_optional(self.pool())
            .await
            .map_err(db(API))?;
        if attached.is_none() {
            return Ok(Some(format!("certificate {id} is not attached to thing {core}")));
        }
        Ok(None)
    }
}

#[async_trait]
impl RotationChannel for LocalCloud {
    async fn csr(
        &self,
        core: &ThingName,
        request: &str,
        key_algorithm: KeyAlgorithm,
    ) -> Result<Option<String>, CloudError> {
        let existing = sqlx::query("SELECT csr FROM device_rotations WHERE core_name = ? AND request = ?")
            .bind(core.as_str())
            .bind(request)
            .fetch_optional(self.pool())
            .await
            .map_err(db(API))?;
        if let Some(row) = existing {
            return Ok(Some(row.get("csr")));
        }
        let online = sqlx::query("SELECT status FROM core_devices WHERE name = ?")
            .bind(core.as_str())
            .fetch_optional(self.pool())
            .await
            .map_err(db(API))?
            .is_some_and(|r| r.get::<String, _>("status") == "HEALTHY");
        if !online {
            return Ok(None); // an offline core answers when it comes back
        }
        let (key, csr) =
            ggprov_pki::make_csr(core.as_str(), key_algorithm).map_err(|e| rejected(API, e.to_string()))?;
        // A second request racing this one keeps the first key: the device makes one per request.
        sqlx::query("INSERT OR IGNORE INTO device_rotations (core_name, request, key_pem, csr) VALUES (?, ?, ?, ?)")
            .bind(core.as_str())
            .bind(request)
            .bind(key.expose())
            .bind(&csr)
            .execute(self.writer())
            .await
            .map_err(db(API))?;
        let row = sqlx::query("SELECT csr FROM device_rotations WHERE core_name = ? AND request = ?")
            .bind(core.as_str())
            .bind(request)
            .fetch_one(self.pool())
            .await
            .map_err(db(API))?;
        Ok(Some(row.get("csr")))
    }

    async fn deliver(
        &self,
        core: &ThingName,
        request: &str,
        certificate_pem: &str,
        _ca_certificate_pem: Option<&str>,
    ) -> Result<(), CloudError> {
        let row = sqlx::query("SELECT key_pem, outcome FROM device_rotations WHERE core_name = ? AND request = ?")
            .bind(core.as_str())
            .bind(request)
            .fetch_optional(self.pool())
            .await
            .map_err(db(API))?
            .ok_or_else(|| not_found(API, format!("core {core} made no key for request {request}")))?;
        if row.get::<Option<String>, _>("outcome").is_some() {
            return Ok(()); // delivered before
        }
        let key = SecretPem::new(row.get("key_pem"));
        let fails = sqlx::query("SELECT rotation_fails FROM core_behaviors WHERE core_name = ?")
            .bind(core.as_str())
            .fetch_optional(self.pool())
            .await
            .map_err(db(API))?
            .is_some_and(|r| r.get::<bool, _>("rotation_fails"));
        let problem = if fails {
            Some("the nucleus did not come back with the new certificate (simulated: rotationFails)".to_owned())
        } else {
            self.unusable(core, certificate_pem, &key).await?
        };
        let id = ggprov_pki::fingerprint(certificate_pem).map_err(|e| rejected(API, e.to_string()))?;
        let mut tx = self.writer().begin_with("BEGIN IMMEDIATE").await.map_err(db(API))?;
        sqlx::query(
            "UPDATE device_rotations SET outcome = ?, certificate_id = ?, reason = ? WHERE core_name = ? AND request = ? AND outcome IS NULL",
        )
        .bind(if problem.is_some() { "FAILED" } else { "CONFIRMED" })
        .bind(&id)
        .bind(&problem)
        .bind(core.as_str())
        .bind(request)
        .execute(&mut *tx)
        .await
        .map_err(db(API))?;
        if problem.is_none() {
            let public = ggprov_pki::key_public_sha256(&key).map_err(|e| rejected(API, e.to_string()))?;
            sqlx::query(
                "INSERT INTO device_credentials (core_name, certificate_id, public_key_sha256) VALUES (?, ?, ?) \
                 ON CONFLICT (core_name) DO UPDATE SET certificate_id = excluded.certificate_id, public_key_sha256 = excluded.public_key_sha256",
            )
            .bind(core.as_str())
            .bind(&id)
            .bind(public)
            .execute(&mut *tx)
            .await
            .map_err(db(API))?;
            // The nucleus restarted with it and reconnected.
            sqlx::query("UPDATE core_devices SET status = 'HEALTHY', last_status_update = ? WHERE name = ?")
                .bind(ggprov_domain::Timestamp::now().as_millis())
                .bind(core.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db(API))?;
        }
        tx.commit().await.map_err(db(API))
    }

    async fn outcome(&self, core: &ThingName, request: &str) -> Result<RotationOutcome, CloudError> {
        let row = sqlx::query(
            "SELECT outcome, certificate_id, reason FROM device_rotations WHERE core_name = ? AND request = ?",
        )
        .bind(core.as_str())
        .bind(request)
        .fetch_optional(self.pool())
        .await
        .map_err(db(API))?;
        Ok(match row {
            Some(r) => match r.get::<Option<String>, _>("outcome").as_deref() {
                Some("CONFIRMED") => RotationOutcome::Confirmed { certificate_id: r.get("certificate_id") },
                Some(_) => RotationOutcome::Failed { reason: r.get::<Option<String>, _>("reason").unwrap_or_default() },
                None => RotationOutcome::Pending,
            },
            None => RotationOutcome::Pending,
        })
    }
}
