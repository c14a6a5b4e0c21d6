//! The rotation component of simulated cores: a core makes its new key and CSR itself (the key
//! stays in the local cloud's record of the device, never in ggprov), installs the certificate
//! it is handed and reconnects with it: HEALTHY with the new certificate when that certificate
//! is registered, ACTIVE, attached to its thing and matches its key; otherwise, or when told to
//! fail (`rotationFails`), it goes back to its old certificate and says why.

use crate::{LocalCloud, execute, exists, not_found, one, params, rejected};
use async_trait::async_trait;
use ggprov_domain::ThingName;
use ggprov_domain::ports::{CloudError, RotationChannel, SecretPem};
use ggprov_domain::provisioning::KeyAlgorithm;
use ggprov_domain::rotation::RotationOutcome;
use serde::Serialize;

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
        self.read(API, |c| {
            let sql = "SELECT certificate_id, public_key_sha256 FROM device_credentials WHERE core_name = ?";
            Ok(one(c, sql, [core.as_str()], |r| {
                Ok(DeviceCredentials { certificate_id: r.get(0)?, public_key_sha256: r.get(1)? })
            })?)
        })
    }

    /// Why the core cannot use `certificate_pem` with `key`, if it cannot.
    fn unusable(&self, core: &ThingName, certificate_pem: &str, key: &SecretPem) -> Result<Option<String>, CloudError> {
        if !ggprov_pki::key_matches(certificate_pem, key).unwrap_or(false) {
            return Ok(Some("the certificate is not for the key the core generated".into()));
        }
        let id = ggprov_pki::fingerprint(certificate_pem).map_err(|e| rejected(API, e.to_string()))?;
        let (status, attached) = self.read(API, |c| {
            let status: Option<String> = one(c, "SELECT status FROM certificates WHERE id = ?", [&id], |r| r.get(0))?;
            let sql = "SELECT 1 FROM thing_principals WHERE thing_name = ? AND principal = ?";
            Ok((status, exists(c, sql, [core.as_str(), &self.cert_arn(&id)])?))
        })?;
        if status.as_deref() != Some("ACTIVE") {
            return Ok(Some(format!("AWS IoT refused the connection: certificate {id} is not ACTIVE")));
        }
        if !attached {
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
        const CSR: &str = "SELECT csr FROM device_rotations WHERE core_name = ? AND request = ?";
        let (existing, online) = self.read(API, |c| {
            let existing: Option<String> = one(c, CSR, [core.as_str(), request], |r| r.get(0))?;
            let sql = "SELECT 1 FROM core_devices WHERE name = ? AND status = 'HEALTHY'";
            Ok((existing, exists(c, sql, [core.as_str()])?))
        })?;
        if existing.is_some() {
            return Ok(existing);
        }
        if !online {
            return Ok(None); // an offline core answers when it comes back
        }
        let (key, csr) =
            ggprov_pki::make_csr(core.as_str(), key_algorithm).map_err(|e| rejected(API, e.to_string()))?;
        // A second request racing this one keeps the first key: the device makes one per request.
        self.write(API, |c| {
            let sql = "INSERT OR IGNORE INTO device_rotations (core_name, request, key_pem, csr) VALUES (?, ?, ?, ?)";
            execute(c, sql, [core.as_str(), request, key.expose(), &csr])?;
            Ok(one(c, CSR, [core.as_str(), request], |r| r.get(0))?)
        })
        .await
    }

    async fn deliver(
        &self,
        core: &ThingName,
        request: &str,
        certificate_pem: &str,
        _ca_certificate_pem: Option<&str>,
    ) -> Result<(), CloudError> {
        let (key, outcome, fails) = self.read(API, |c| {
            let sql = "SELECT key_pem, outcome FROM device_rotations WHERE core_name = ? AND request = ?";
            let (key, outcome): (String, Option<String>) =
                one(c, sql, [core.as_str(), request], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .ok_or_else(|| not_found(API, format!("core {core} made no key for request {request}")))?;
            let sql = "SELECT 1 FROM core_behaviors WHERE core_name = ? AND rotation_fails";
            Ok((key, outcome, exists(c, sql, [core.as_str()])?))
        })?;
        if outcome.is_some() {
            return Ok(()); // delivered before
        }
        let key = SecretPem::new(key);
        let problem = if fails {
            Some("the nucleus did not come back with the new certificate (simulated: rotationFails)".to_owned())
        } else {
            self.unusable(core, certificate_pem, &key)?
        };
        let id = ggprov_pki::fingerprint(certificate_pem).map_err(|e| rejected(API, e.to_string()))?;
        let public = match problem {
            None => Some(ggprov_pki::key_public_sha256(&key).map_err(|e| rejected(API, e.to_string()))?),
            Some(_) => None,
        };
        self.write(API, |c| {
            execute(
                c,
                "UPDATE device_rotations SET outcome = ?, certificate_id = ?, reason = ? \
                 WHERE core_name = ? AND request = ? AND outcome IS NULL",
                params![if problem.is_some() { "FAILED" } else { "CONFIRMED" }, id, problem, core.as_str(), request],
            )?;
            if let Some(public) = &public {
                execute(
                    c,
                    "INSERT INTO device_credentials (core_name, certificate_id, public_key_sha256) VALUES (?, ?, ?) \
                     ON CONFLICT (core_name) DO UPDATE SET certificate_id = excluded.certificate_id, public_key_sha256 = excluded.public_key_sha256",
                    [core.as_str(), &id, public],
                )?;
                // The nucleus restarted with it and reconnected.
                execute(
                    c,
                    "UPDATE core_devices SET status = 'HEALTHY', last_status_update = ? WHERE name = ?",
                    params![ggprov_domain::Timestamp::now().as_millis(), core.as_str()],
                )?;
            }
            Ok(())
        })
        .await
    }

    async fn outcome(&self, core: &ThingName, request: &str) -> Result<RotationOutcome, CloudError> {
        let row = self.read(API, |c| {
            let sql =
                "SELECT outcome, certificate_id, reason FROM device_rotations WHERE core_name = ? AND request = ?";
            Ok(one(c, sql, [core.as_str(), request], |r| {
                Ok((r.get::<_, Option<String>>(0)?, r.get::<_, Option<String>>(1)?, r.get::<_, Option<String>>(2)?))
            })?)
        })?;
        Ok(match row {
            Some((outcome, certificate_id, reason)) => match outcome.as_deref() {
                Some("CONFIRMED") => RotationOutcome::Confirmed { certificate_id: certificate_id.unwrap_or_default() },
                Some(_) => RotationOutcome::Failed { reason: reason.unwrap_or_default() },
                None => RotationOutcome::Pending,
            },
            None => RotationOutcome::Pending,
        })
    }
}
