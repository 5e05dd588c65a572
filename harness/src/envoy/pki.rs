//! A development PKI: one CA, a gateway (server) certificate, and workload
//! certificates whose only identity is a SPIFFE URI SAN.
//!
//! Job: give `make run` and the Envoy test suites real X.509 material, made
//! in-process with `rcgen`, so nothing (openssl, a mesh CA) has to be
//! installed. A CA saved with [`DevCa::save`] is reloaded by
//! [`DevCa::load_or_create`], so certificates handed to a user stay valid
//! across runs.
//!
//! Invariants:
//! - Workload certificates carry exactly one URI SAN (the SPIFFE ID), the
//!   `clientAuth` extended key usage, and no DNS name: the gateway must
//!   authorise on the URI SAN alone.
//! - Private keys are written with mode 0600 and never appear in `Debug`.
//! - This is for development and tests: keys are unencrypted on disk.

use std::fmt;
use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// Anything that went wrong making or saving certificates.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("invalid name {0:?} for a certificate")]
    Name(String),
}

/// A certificate and its private key, both PEM.
#[derive(Clone)]
pub struct Pem {
    pub cert: String,
    pub key: String,
}

impl fmt::Debug for Pem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pem")
            .field("cert_len", &self.cert.len())
            .field("key", &"<redacted>")
            .finish()
    }
}

/// Where [`Pem::write`] put a certificate and its key.
#[derive(Clone, Debug)]
pub struct PemFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pem {
    /// Writes `{stem}.crt` and `{stem}.key` (mode 0600) into `dir`.
    pub fn write(&self, dir: &Path, stem: &str) -> Result<PemFiles, PkiError> {
        fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let cert = dir.join(format!("{stem}.crt"));
        let key = dir.join(format!("{stem}.key"));
        fs::write(&cert, &self.cert).map_err(|e| io_err(&cert, e))?;
        write_private(&key, &self.key)?;
        Ok(PemFiles { cert, key })
    }
}

/// A certificate authority that can issue gateway and workload certificates.
pub struct DevCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    key_pem: String,
}

impl fmt::Debug for DevCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevCa").finish_non_exhaustive()
    }
}

impl DevCa {
    /// A new self-signed CA named `common_name`.
    pub fn generate(common_name: &str) -> Result<Self, PkiError> {
        let key = KeyPair::generate()?;
        let params = ca_params(common_name);
        let cert_pem = params.self_signed(&key)?.pem();
        let key_pem = key.serialize_pem();
        Ok(Self {
            issuer: Issuer::new(params, key),
            cert_pem,
            key_pem,
        })
    }

    /// Loads `ca.crt` and `ca.key` from `dir`, or generates and saves a CA
    /// there if either is missing.
    pub fn load_or_create(dir: &Path, common_name: &str) -> Result<Self, PkiError> {
        let (crt, key) = (dir.join("ca.crt"), dir.join("ca.key"));
        if crt.exists() && key.exists() {
            let cert_pem = fs::read_to_string(&crt).map_err(|e| io_err(&crt, e))?;
            let key_pem = fs::read_to_string(&key).map_err(|e| io_err(&key, e))?;
            let pair = KeyPair::from_pem(&key_pem)?;
            // Same subject and key as when it was made: what it signs chains
            // to the saved certificate.
            let issuer = Issuer::new(ca_params(common_name), pair);
            return Ok(Self {
                issuer,
                cert_pem,
                key_pem,
            });
        }
        let ca = Self::generate(common_name)?;
        ca.save(dir)?;
        Ok(ca)
    }

    /// Writes `ca.crt` and `ca.key` (0600) into `dir`.
    pub fn save(&self, dir: &Path) -> Result<PemFiles, PkiError> {
        Pem {
            cert: self.cert_pem.clone(),
            key: self.key_pem.clone(),
        }
        .write(dir, "ca")
    }

    /// The CA certificate (the trust bundle), PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A server certificate for the gateway, valid for `dns_names` and `ips`.
    pub fn issue_server(&self, dns_names: &[&str], ips: &[IpAddr]) -> Result<Pem, PkiError> {
        let mut params =
            CertificateParams::new(dns_names.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
        params
            .subject_alt_names
            .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        params.distinguished_name = dn(dns_names.first().copied().unwrap_or("tollgate-gateway"));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        self.sign(params)
    }

    /// A workload certificate whose only SAN is the URI `spiffe_id`.
    ///
    /// The ID is not validated here on purpose: tests need certificates for
    /// untrusted and malformed IDs too.
    pub fn issue_workload(&self, spiffe_id: &str) -> Result<Pem, PkiError> {
        let uri = spiffe_id
            .to_string()
            .try_into()
            .map_err(|_| PkiError::Name(spiffe_id.to_string()))?;
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![SanType::URI(uri)];
        params.distinguished_name = dn("tollgate-workload");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        self.sign(params)
    }

    fn sign(&self, params: CertificateParams) -> Result<Pem, PkiError> {
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }
}

fn ca_params(common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name = dn(common_name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "Tollgate development");
    dn
}

fn io_err(path: &Path, source: io::Error) -> PkiError {
    PkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write_private(path: &Path, contents: &str) -> Result<(), PkiError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io_err(path, e))?;
    f.write_all(contents.as_bytes())
        .map_err(|e| io_err(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reloaded_ca_signs_certificates_that_chain_to_the_saved_one() {
        let dir = std::env::temp_dir().join(format!("tollgate-pki-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let a = DevCa::load_or_create(&dir, "test ca").unwrap();
        let b = DevCa::load_or_create(&dir, "test ca").unwrap();
        assert_eq!(a.cert_pem(), b.cert_pem());
        let w = b
            .issue_workload("spiffe://tollgate.local/ns/a/sa/b")
            .unwrap();
        assert!(w.cert.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(!format!("{w:?}").contains("PRIVATE"));
        let meta = fs::metadata(dir.join("ca.key")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        fs::remove_dir_all(&dir).unwrap();
    }
}
