//! CDF provisioning parameters and the per-thing provisioning journal.

use serde::{Deserialize, Serialize};

/// `cdfProvisioningParameters`: where a core's or device's certificate comes from.
/// `{caId, certInfo}` mints a key and certificate from a CA ggprov holds, `{csr, caId}` signs a
/// device-held key, `{certificatePem}` registers an existing certificate without a CA.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CdfProvisioningParameters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_info: Option<CertInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_pem: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_status: Option<CertificateStatus>,
}

/// Subject and lifetime of a minted certificate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CertInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organizational_unit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days_expiry: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_algorithm: Option<KeyAlgorithm>,
}

impl ProvisioningJournal {
    /// The rotation under way; callers start one first.
    pub fn rotation(&self) -> &crate::rotation::RotationJournal {
        self.rotation.as_ref().expect("a rotation journal is started first")
    }

    pub fn rotation_mut(&mut self) -> &mut crate::rotation::RotationJournal {
        self.rotation.as_mut().expect("a rotation journal is started first")
    }

    /// The rotation's certificate becomes the thing's; the old one is remembered, to be
    /// retired with the thing, unless the rotation retired it.
    pub fn adopt_rotation(&mut self) {
        let r = self.rotation().clone();
        if !r.old_retired
            && let (Some(id), Some(arn)) = (r.old_certificate_id, r.old_certificate_arn)
            && !self.kept_certificates.iter().any(|k| k.id == id)
        {
            self.kept_certificates.push(crate::ports::CertificateRef { id, arn });
        }
        self.certificate_pem = r.certificate_pem;
        self.ca_certificate_pem = r.ca_certificate_pem;
        self.ca_id = r.ca_id;
        self.certificate_id = r.certificate_id;
        self.certificate_arn = r.certificate_arn;
        self.principal_attached = true;
        self.rotation_mut().finished = true;
    }
}

impl CertInfo {
    /// These settings, with `defaults`' where these say nothing (a request's `certInfo` over
    /// its provisioning template's `CDF.certInfo`).
    pub fn or_defaults(self, defaults: Option<&CertInfo>) -> CertInfo {
        let Some(d) = defaults else { return self };
        let d = d.clone();
        CertInfo {
            common_name: self.common_name.or(d.common_name),
            organization: self.organization.or(d.organization),
            organizational_unit: self.organizational_unit.or(d.organizational_unit),
            locality: self.locality.or(d.locality),
            state_name: self.state_name.or(d.state_name),
            country: self.country.or(d.country),
            email_address: self.email_address.or(d.email_address),
            days_expiry: self.days_expiry.or(d.days_expiry),
            key_algorithm: self.key_algorithm.or(d.key_algorithm),
        }
    }
}

/// Key type of a minted key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum KeyAlgorithm {
    #[default]
    #[serde(rename = "EC_P256")]
    EcP256,
    #[serde(rename = "RSA_2048")]
    Rsa2048,
}

/// Status of a certificate in AWS IoT.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CertificateStatus {
    #[default]
    Active,
    Inactive,
}

impl CertificateStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Inactive => "INACTIVE",
        }
    }
}

/// What has been done to provision one thing, so a retry resumes instead of repeating.
/// Keyed by thing name; kept until the thing is deleted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProvisioningJournal {
    /// The thing exists (created by us or found).
    #[serde(default)]
    pub thing_created: bool,
    /// The certificate PEM, once minted/signed/received and its bundle written (public data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_pem: Option<String>,
    /// The CA certificate it chains to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificate_pem: Option<String>,
    /// The ggprov CA that signed it, if any (journals written before the inventory lack it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_id: Option<String>,
    /// Artifact key of the certs bundle, once written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certs_key: Option<String>,
    /// Id and ARN returned by IoT when the certificate was registered (never computed locally).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_arn: Option<String>,
    /// Policies ggprov created for this thing (deleted with it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub created_policies: Vec<String>,
    /// Policies attached to the certificate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attached_policies: Vec<String>,
    /// The thing group carrying the template's shared policies, once the thing joined it
    /// (`CDF.attachPoliciesToThingGroup`): every certificate of the thing inherits them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_group: Option<String>,
    /// The certificate is attached to the thing.
    #[serde(default)]
    pub principal_attached: bool,
    /// Earlier certificates a rotation left ACTIVE (`revokeOld: never`): retired with the thing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept_certificates: Vec<crate::ports::CertificateRef>,
    /// A certificate rotation in progress (or the last one, finished).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<crate::rotation::RotationJournal>,
    /// The revision the journal was read at (kept by the store beside the document, not in it):
    /// saves are conditional on it, so two writers never overwrite each other's steps.
    #[serde(skip)]
    pub rev: u64,
}
