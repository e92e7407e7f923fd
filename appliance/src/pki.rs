//! The appliance's own certificate authority (rcgen): created at first
//! start, signs the server certificate and every sensor's client
//! certificate (CN = host id as 16 hex digits). Keys are written mode 0600.

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SerialNumber,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use thiserror::Error;
use vigil_proto::HostId;

/// The TLS server name sensors always use.
pub const SERVER_NAME: &str = "vigil-appliance";

/// A PKI failure.
#[derive(Debug, Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("certificate: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("bad certificate signing request: {0}")]
    BadCsr(String),
    #[error("{path}: {detail}")]
    BadFile { path: PathBuf, detail: String },
}

/// Write a file readable only by its owner (mode 0600), atomically.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), PkiError> {
    let io = |source| PkiError::Io {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)
}

fn read(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|source| PkiError::Io {
        path: path.to_owned(),
        source,
    })
}

fn random_serial() -> SerialNumber {
    let mut b: [u8; 16] = rand::random();
    b[0] &= 0x7f;
    b[0] |= 0x01;
    SerialNumber::from_slice(&b)
}

/// The CA plus the server's certificate and key.
pub struct Pki {
    ca_key: KeyPair,
    /// Re-built from the stored CA certificate; used only as the issuer.
    ca_issuer: rcgen::Certificate,
    ca_der: Vec<u8>,
    server_cert_der: Vec<u8>,
    server_key_der: Vec<u8>,
}

impl Pki {
    /// Load the CA and server certificate from `dir`, creating them on first
    /// use. Returns the PKI and whether it was just created.
    pub fn load_or_create(dir: &Path) -> Result<(Pki, bool), PkiError> {
        fs::create_dir_all(dir).map_err(|source| PkiError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let (ca_key_p, ca_crt_p) = (dir.join("ca.key"), dir.join("ca.crt"));
        let (srv_key_p, srv_crt_p) = (dir.join("server.key"), dir.join("server.crt"));
        let created = !ca_key_p.exists();
        if created {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::default();
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CommonName, "Vigil appliance CA");
            dn.push(DnType::OrganizationName, "Vigil");
            params.distinguished_name = dn;
            params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            params.serial_number = Some(random_serial());
            let cert = params.self_signed(&key)?;
            write_private(&ca_key_p, key.serialize_pem().as_bytes())?;
            write_private(&ca_crt_p, cert.pem().as_bytes())?;
        }
        let ca_key = KeyPair::from_pem(&read(&ca_key_p)?)?;
        let ca_pem = read(&ca_crt_p)?;
        let ca_der = pem_to_der(&ca_pem).ok_or_else(|| PkiError::BadFile {
            path: ca_crt_p.clone(),
            detail: "not a PEM certificate".into(),
        })?;
        let ca_issuer = CertificateParams::from_ca_cert_pem(&ca_pem)?.self_signed(&ca_key)?;
        if !srv_key_p.exists() || !srv_crt_p.exists() {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(vec![
                SERVER_NAME.to_owned(),
                "localhost".to_owned(),
                "127.0.0.1".to_owned(),
                "::1".to_owned(),
            ])?;
            params.distinguished_name = DistinguishedName::new();
            params
                .distinguished_name
                .push(DnType::CommonName, SERVER_NAME);
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.serial_number = Some(random_serial());
            params.use_authority_key_identifier_extension = true;
            let cert = params.signed_by(&key, &ca_issuer, &ca_key)?;
            write_private(&srv_key_p, key.serialize_pem().as_bytes())?;
            write_private(&srv_crt_p, cert.pem().as_bytes())?;
        }
        let server_key = KeyPair::from_pem(&read(&srv_key_p)?)?;
        let server_cert_der = pem_to_der(&read(&srv_crt_p)?).ok_or_else(|| PkiError::BadFile {
            path: srv_crt_p.clone(),
            detail: "not a PEM certificate".into(),
        })?;
        Ok((
            Pki {
                ca_key,
                ca_issuer,
                ca_der,
                server_cert_der,
                server_key_der: server_key.serialize_der(),
            },
            created,
        ))
    }

    /// The CA certificate (DER), which sensors pin.
    pub fn ca_der(&self) -> &[u8] {
        &self.ca_der
    }

    /// SHA-256 of the CA certificate's DER, lowercase hex.
    pub fn ca_fingerprint(&self) -> String {
        hex::encode(Sha256::digest(&self.ca_der))
    }

    /// The server's chain: [leaf, CA].
    pub fn server_chain(&self) -> Vec<CertificateDer<'static>> {
        vec![
            CertificateDer::from(self.server_cert_der.clone()),
            CertificateDer::from(self.ca_der.clone()),
        ]
    }

    /// The server's private key.
    pub fn server_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key_der.clone()))
    }

    /// Sign a sensor's CSR as a client certificate for `host`. The CSR's
    /// signature is checked; its subject and extensions are replaced.
    pub fn sign_client_csr(&self, csr_der: &[u8], host: HostId) -> Result<Vec<u8>, PkiError> {
        let der = rustls_pki_types::CertificateSigningRequestDer::from(csr_der);
        let mut csr = CertificateSigningRequestParams::from_der(&der)
            .map_err(|e| PkiError::BadCsr(e.to_string()))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, host.to_string());
        dn.push(DnType::OrganizationName, "Vigil sensors");
        let p = &mut csr.params;
        p.distinguished_name = dn;
        p.subject_alt_names.clear();
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.custom_extensions.clear();
        p.serial_number = Some(random_serial());
        p.use_authority_key_identifier_extension = true;
        let cert = csr.signed_by(&self.ca_issuer, &self.ca_key)?;
        Ok(cert.der().to_vec())
    }
}

/// The host id in a client certificate's CN, if it has one.
pub fn host_from_cert(der: &[u8]) -> Option<HostId> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?;
    if cn.len() != 16 {
        return None;
    }
    cn.parse().ok()
}

fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    Some(p.contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_persists_and_signs_csrs_with_the_host_as_cn() {
        let dir = tempfile::tempdir().unwrap();
        let (pki, created) = Pki::load_or_create(dir.path()).unwrap();
        assert!(created);
        let (again, created) = Pki::load_or_create(dir.path()).unwrap();
        assert!(!created);
        assert_eq!(pki.ca_fingerprint(), again.ca_fingerprint());
        let mode = fs::metadata(dir.path().join("ca.key"))
            .unwrap()
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );

        let key = KeyPair::generate().unwrap();
        let csr = CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .serialize_request(&key)
            .unwrap();
        let cert = again.sign_client_csr(csr.der(), HostId(0xabc)).unwrap();
        assert_eq!(host_from_cert(&cert), Some(HostId(0xabc)));
        assert!(again.sign_client_csr(b"garbage", HostId(1)).is_err());
    }
}
