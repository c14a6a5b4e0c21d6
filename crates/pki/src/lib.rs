#![doc = include_str!("../README.md")]

pub mod installer;

use std::io::Write as _;

use ggprov_domain::ports::{CaMaterial, SecretPem};
use ggprov_domain::provisioning::{CertInfo, KeyAlgorithm};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

/// Default lifetime of a device certificate, as in CDF.
pub const DEFAULT_DAYS: u32 = 365;

/// Why a certificate operation failed; the text names what was wrong with the input.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("the CA certificate or key cannot be used: {0}")]
    InvalidCa(String),
    #[error("the certificate signing request is invalid: {0}")]
    InvalidCsr(String),
    #[error("the certificate PEM is invalid: {0}")]
    InvalidCertificate(String),
    #[error("certInfo is invalid: {0}")]
    InvalidCertInfo(String),
    #[error("could not generate the key or certificate: {0}")]
    Generation(String),
}

/// A key and certificate just minted.
#[derive(Debug, Clone)]
pub struct Minted {
    pub certificate_pem: String,
    pub private_key: SecretPem,
}

/// A new self-signed CA with an EC P-256 key, valid for `days`.
pub fn create_ca(common_name: &str, days: u32) -> Result<Minted, PkiError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| PkiError::Generation(e.to_string()))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.distinguished_name.push(DnType::OrganizationName, "ggprov");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    set_validity(&mut params, days);
    let cert = params.self_signed(&key).map_err(|e| PkiError::Generation(e.to_string()))?;
    Ok(Minted { certificate_pem: cert.pem(), private_key: SecretPem::new(key.serialize_pem()) })
}

/// A new key and a certificate for `thing_name` signed by `ca`. The subject's common name is
/// `certInfo.commonName`, or the thing name.
pub fn mint(ca: &CaMaterial, thing_name: &str, info: &CertInfo) -> Result<Minted, PkiError> {
    let key = match info.key_algorithm.unwrap_or_default() {
        KeyAlgorithm::EcP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        KeyAlgorithm::Rsa2048 => KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048),
    }
    .map_err(|e| PkiError::Generation(e.to_string()))?;
    let params = device_params(thing_name, info)?;
    let issuer = issuer(ca)?;
    let cert = params.signed_by(&key, &issuer).map_err(|e| PkiError::Generation(e.to_string()))?;
    Ok(Minted { certificate_pem: cert.pem(), private_key: SecretPem::new(key.serialize_pem()) })
}

/// What a device does to rotate: a new key of `algorithm` and a CSR for it (subject: the thing
/// name). The key stays with the caller.
pub fn make_csr(thing_name: &str, algorithm: KeyAlgorithm) -> Result<(SecretPem, String), PkiError> {
    let key = match algorithm {
        KeyAlgorithm::EcP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        KeyAlgorithm::Rsa2048 => KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048),
    }
    .map_err(|e| PkiError::Generation(e.to_string()))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, thing_name);
    let csr = params.serialize_request(&key).map_err(|e| PkiError::Generation(e.to_string()))?;
    let pem = csr.pem().map_err(|e| PkiError::Generation(e.to_string()))?;
    Ok((SecretPem::new(key.serialize_pem()), pem))
}

/// SHA-256 of a certificate's public key (its `SubjectPublicKeyInfo`), lower-case hex: what a
/// device's key and a certificate are compared by without showing either.
pub fn public_key_sha256(certificate_pem: &str) -> Result<String, PkiError> {
    let der = pem_der(certificate_pem)?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(&der).map_err(|e| PkiError::InvalidCertificate(e.to_string()))?;
    Ok(hex(&Sha256::digest(cert.public_key().raw)))
}

/// SHA-256 of a private key's public half (`SubjectPublicKeyInfo`), as [`public_key_sha256`].
pub fn key_public_sha256(private_key: &SecretPem) -> Result<String, PkiError> {
    let key = KeyPair::from_pem(private_key.expose()).map_err(|e| PkiError::Generation(e.to_string()))?;
    Ok(hex(&Sha256::digest(rcgen::PublicKeyData::subject_public_key_info(&key))))
}

/// A certificate for the key in `csr_pem`, signed by `ca`. The subject comes from `info` (or
/// the thing name), not from the CSR, so the device cannot choose its identity.
pub fn sign_csr(ca: &CaMaterial, thing_name: &str, csr_pem: &str, info: &CertInfo) -> Result<String, PkiError> {
    let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| PkiError::InvalidCsr(e.to_string()))?;
    let signing =
        CertificateSigningRequestParams { params: device_params(thing_name, info)?, public_key: csr.public_key };
    let issuer = issuer(ca)?;
    let cert = signing.signed_by(&issuer).map_err(|e| PkiError::Generation(e.to_string()))?;
    Ok(cert.pem())
}

fn issuer(ca: &CaMaterial) -> Result<Issuer<'static, KeyPair>, PkiError> {
    let key = KeyPair::from_pem(ca.private_key.expose()).map_err(|e| PkiError::InvalidCa(format!("key: {e}")))?;
    Issuer::from_ca_cert_pem(&ca.certificate_pem, key).map_err(|e| PkiError::InvalidCa(format!("certificate: {e}")))
}

fn device_params(thing_name: &str, info: &CertInfo) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(DnType::CommonName, info.common_name.clone().unwrap_or_else(|| thing_name.to_owned()));
    let optional = [
        (DnType::OrganizationName, &info.organization),
        (DnType::OrganizationalUnitName, &info.organizational_unit),
        (DnType::LocalityName, &info.locality),
        (DnType::StateOrProvinceName, &info.state_name),
    ];
    for (kind, value) in optional {
        if let Some(value) = value {
            dn.push(kind, value.as_str());
        }
    }
    if let Some(country) = &info.country {
        if country.len() != 2 || !country.chars().all(|c| c.is_ascii_alphabetic()) {
            return Err(PkiError::InvalidCertInfo(format!(
                "country '{country}' must be a two-letter ISO 3166 code such as US"
            )));
        }
        dn.push(DnType::CountryName, country.to_ascii_uppercase());
    }
    if let Some(email) = &info.email_address {
        dn.push(DnType::from_oid(&[1, 2, 840, 113_549, 1, 9, 1]), email.as_str());
    }
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    let days = info.days_expiry.unwrap_or(DEFAULT_DAYS);
    if days == 0 || days > 36_500 {
        return Err(PkiError::InvalidCertInfo(format!("daysExpiry {days} must be between 1 and 36500")));
    }
    set_validity(&mut params, days);
    Ok(params)
}

fn set_validity(params: &mut CertificateParams, days: u32) {
    let now = OffsetDateTime::now_utc();
    // A little slack for devices whose clocks run behind.
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(i64::from(days));
    let serial = sha2::Sha256::digest(format!("{}{:?}", now.unix_timestamp_nanos(), std::thread::current().id()));
    let mut bytes = serial[..16].to_vec();
    bytes[0] &= 0x7f; // positive
    params.serial_number = Some(SerialNumber::from_slice(&bytes));
}

/// The SHA-256 fingerprint of a certificate's DER, lower-case hex (AWS IoT's certificate id).
pub fn fingerprint(certificate_pem: &str) -> Result<String, PkiError> {
    let der = pem_der(certificate_pem)?;
    Ok(hex(&Sha256::digest(der)))
}

fn pem_der(certificate_pem: &str) -> Result<Vec<u8>, PkiError> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(certificate_pem.as_bytes())
        .map_err(|e| PkiError::InvalidCertificate(e.to_string()))?;
    if pem.label != "CERTIFICATE" {
        return Err(PkiError::InvalidCertificate(format!("expected a CERTIFICATE, found {}", pem.label)));
    }
    pem.parse_x509().map_err(|e| PkiError::InvalidCertificate(e.to_string()))?;
    Ok(pem.contents)
}

/// What the inventory keeps of a certificate: validity (epoch milliseconds) and key algorithm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateDetails {
    pub not_before_millis: i64,
    pub not_after_millis: i64,
    /// `EC_P256`, `EC_P384`, `RSA_2048`, ... (`EC` / `RSA_<bits>` / the OID when unknown).
    pub key_algorithm: String,
}

/// Reads a certificate's validity and key algorithm.
pub fn describe(certificate_pem: &str) -> Result<CertificateDetails, PkiError> {
    use x509_parser::public_key::PublicKey;
    let der = pem_der(certificate_pem)?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(&der).map_err(|e| PkiError::InvalidCertificate(e.to_string()))?;
    let validity = cert.validity();
    let millis = |t: &x509_parser::time::ASN1Time| t.timestamp() * 1000;
    let spki = cert.public_key();
    let key_algorithm = match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => format!("RSA_{}", rsa.key_size()),
        Ok(PublicKey::EC(point)) => match point.key_size() {
            256 => "EC_P256".to_owned(),
            384 => "EC_P384".to_owned(),
            521 => "EC_P521".to_owned(),
            bits => format!("EC_{bits}"),
        },
        _ => spki.algorithm.algorithm.to_id_string(),
    };
    Ok(CertificateDetails {
        not_before_millis: millis(&validity.not_before),
        not_after_millis: millis(&validity.not_after),
        key_algorithm,
    })
}

/// Whether `certificate_pem` is signed by the CA in `ca_certificate_pem`.
pub fn is_signed_by(certificate_pem: &str, ca_certificate_pem: &str) -> Result<bool, PkiError> {
    let cert_der = pem_der(certificate_pem)?;
    let ca_der = pem_der(ca_certificate_pem)?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(&cert_der).map_err(|e| PkiError::InvalidCertificate(e.to_string()))?;
    let (_, ca) =
        x509_parser::parse_x509_certificate(&ca_der).map_err(|e| PkiError::InvalidCertificate(e.to_string()))?;
    Ok(cert.verify_signature(Some(ca.public_key())).is_ok())
}

/// Whether the private key belongs to the certificate.
pub fn key_matches(certificate_pem: &str, private_key: &SecretPem) -> Result<bool, PkiError> {
    let key = KeyPair::from_pem(private_key.expose()).map_err(|e| PkiError::Generation(e.to_string()))?;
    let der = pem_der(certificate_pem)?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(&der).map_err(|e| PkiError::InvalidCertificate(e.to_string()))?;
    Ok(cert.public_key().raw == rcgen::PublicKeyData::subject_public_key_info(&key))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The certs bundle: `certs/cert.pem`, `certs/private.key` (when the key is ours) and
/// `certs/ca.pem` (when the certificate chains to a CA ggprov holds).
pub fn certs_zip(certificate_pem: &str, private_key: Option<&SecretPem>, ca_certificate_pem: Option<&str>) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().unix_permissions(0o600);
    let mut add = |name: &str, contents: &str| {
        zip.start_file(name, options).expect("in-memory zip entry");
        zip.write_all(contents.as_bytes()).expect("in-memory zip write");
    };
    add("certs/cert.pem", certificate_pem);
    if let Some(key) = private_key {
        add("certs/private.key", key.expose());
    }
    if let Some(ca) = ca_certificate_pem {
        add("certs/ca.pem", ca);
    }
    zip.finish().expect("in-memory zip").into_inner()
}

/// Reads one file of a certs bundle (for tests and tooling).
pub fn read_zip_entry(bundle: &[u8], name: &str) -> Option<String> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bundle)).ok()?;
    let mut file = archive.by_name(name).ok()?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut file, &mut text).ok()?;
    Some(text)
}

/// The PKI behind the domain's [`ggprov_domain::ports::CsrSigner`] port.
pub struct Signer;

impl ggprov_domain::ports::CsrSigner for Signer {
    fn sign(
        &self,
        ca: &CaMaterial,
        thing: &ggprov_domain::ThingName,
        csr_pem: &str,
        days: u32,
    ) -> Result<String, String> {
        let info = CertInfo { days_expiry: Some(days), ..CertInfo::default() };
        sign_csr(ca, thing.as_str(), csr_pem, &info).map_err(|e| e.to_string())
    }

    fn describe(&self, certificate_pem: &str) -> Result<(i64, i64, String), String> {
        describe(certificate_pem)
            .map(|d| (d.not_before_millis, d.not_after_millis, d.key_algorithm))
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca() -> CaMaterial {
        let minted = create_ca("test CA", 30).unwrap();
        CaMaterial {
            ca_id: fingerprint(&minted.certificate_pem).unwrap(),
            certificate_pem: minted.certificate_pem,
            private_key: minted.private_key,
        }
    }

    #[test]
    fn minted_ec_certificates_chain_to_the_ca_and_match_their_key() {
        let ca = ca();
        let info = CertInfo { country: Some("us".into()), organization: Some("Acme".into()), ..CertInfo::default() };
        let minted = mint(&ca, "core-1", &info).unwrap();
        assert!(is_signed_by(&minted.certificate_pem, &ca.certificate_pem).unwrap());
        assert!(key_matches(&minted.certificate_pem, &minted.private_key).unwrap());
        assert!(minted.private_key.expose().contains("PRIVATE KEY"));
        assert_eq!(format!("{:?}", minted.private_key), "SecretPem(<redacted>)");
        let other = mint(&ca, "core-2", &CertInfo::default()).unwrap();
        assert!(!key_matches(&minted.certificate_pem, &other.private_key).unwrap());
        assert_ne!(fingerprint(&minted.certificate_pem).unwrap(), fingerprint(&other.certificate_pem).unwrap());
    }

    #[test]
    fn rsa_2048_on_request() {
        let ca = ca();
        let info = CertInfo { key_algorithm: Some(KeyAlgorithm::Rsa2048), ..CertInfo::default() };
        let minted = mint(&ca, "core-rsa", &info).unwrap();
        assert!(is_signed_by(&minted.certificate_pem, &ca.certificate_pem).unwrap());
        assert!(key_matches(&minted.certificate_pem, &minted.private_key).unwrap());
        let key = KeyPair::from_pem(minted.private_key.expose()).unwrap();
        assert!(key.is_compatible(&rcgen::PKCS_RSA_SHA256));
    }

    #[test]
    fn csr_signing_keeps_the_device_key() {
        let ca = ca();
        let device_key = KeyPair::generate().unwrap();
        let csr = CertificateParams::default().serialize_request(&device_key).unwrap().pem().unwrap();
        let cert = sign_csr(&ca, "device-1", &csr, &CertInfo::default()).unwrap();
        assert!(is_signed_by(&cert, &ca.certificate_pem).unwrap());
        assert!(key_matches(&cert, &SecretPem::new(device_key.serialize_pem())).unwrap());
        assert!(matches!(sign_csr(&ca, "device-1", "garbage", &CertInfo::default()), Err(PkiError::InvalidCsr(_))));
    }

    #[test]
    fn bad_cert_info_is_refused() {
        let ca = ca();
        let bad_country = CertInfo { country: Some("USA".into()), ..CertInfo::default() };
        assert!(matches!(mint(&ca, "x", &bad_country), Err(PkiError::InvalidCertInfo(_))));
        let bad_days = CertInfo { days_expiry: Some(0), ..CertInfo::default() };
        assert!(matches!(mint(&ca, "x", &bad_days), Err(PkiError::InvalidCertInfo(_))));
    }

    #[test]
    fn certs_bundle_holds_cert_key_and_ca() {
        let ca = ca();
        let minted = mint(&ca, "core-1", &CertInfo::default()).unwrap();
        let zip = certs_zip(&minted.certificate_pem, Some(&minted.private_key), Some(&ca.certificate_pem));
        assert_eq!(read_zip_entry(&zip, "certs/cert.pem").unwrap(), minted.certificate_pem);
        assert_eq!(read_zip_entry(&zip, "certs/private.key").unwrap(), minted.private_key.expose());
        assert_eq!(read_zip_entry(&zip, "certs/ca.pem").unwrap(), ca.certificate_pem);
        let without_key = certs_zip(&minted.certificate_pem, None, None);
        assert!(read_zip_entry(&without_key, "certs/private.key").is_none());
    }
}
