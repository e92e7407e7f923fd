//! The appliance's own certificate authority (rcgen): created at first
//! start, signs the server certificate and every sensor's client
//! certificate (CN = host id as 16 hex digits). Keys are written mode 0600.
//!
//! Lifetimes: the CA 20 years ([`CA_VALIDITY`]), the server certificate 2
//! years (re-issued for the same key at start when fewer than 30 days are
//! left), sensor certificates 90 days ([`CLIENT_CERT_VALIDITY`]), renewed by
//! the sensors over their authenticated connection ([`Pki::renew_client`]).
//! The time is always passed in. Certificates are checked by rustls against
//! the wall clock, so callers pass `SystemTime::now()`, never the
//! appliance's injectable logic clock.

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
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use thiserror::Error;
use time::OffsetDateTime;
use vigil_proto::control::{RenewResponse, RENEW_REFUSAL_PREFIX};
use vigil_proto::{renewal_due, HostId};

/// The TLS server name sensors always use.
pub const SERVER_NAME: &str = "vigil-appliance";

const DAY: u64 = 24 * 60 * 60;

/// Lifetime of the CA. Sensors pin it, so replacing it means re-enrolling
/// every sensor: it outlives the appliance hardware.
pub const CA_VALIDITY: Duration = Duration::from_secs(20 * 365 * DAY);
/// Lifetime of the server certificate (QUIC and HTTPS).
pub const SERVER_CERT_VALIDITY: Duration = Duration::from_secs(2 * 365 * DAY);
/// At start, the server certificate is re-issued (same key) when less than
/// this is left.
pub const SERVER_RENEW_BEFORE: Duration = Duration::from_secs(30 * DAY);
/// Lifetime of a sensor's client certificate: 90 days. A stolen sensor key
/// stops working on its own within that, without anyone revoking it, and a
/// sensor offline for weeks still reconnects. Sensors renew in the last
/// third ([`vigil_proto::renewal_due`]), i.e. with 30 days to spare.
pub const CLIENT_CERT_VALIDITY: Duration = Duration::from_secs(90 * DAY);
/// Certificates start this long before they are issued, so a verifier
/// whose clock is a little behind (a sensor checking the server, or the
/// appliance after a clock step) does not refuse a fresh certificate.
pub const NOT_BEFORE_SLACK: Duration = Duration::from_secs(60 * 60);

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

/// Why a sensor's certificate renewal was refused.
#[derive(Debug, Error)]
pub enum RenewError {
    /// The current certificate has a third or more of its lifetime left.
    #[error(
        "the current certificate is valid until {not_after_s} (Unix s); renew in its last third"
    )]
    TooEarly { not_after_s: i64 },
    /// The CSR is for the key the sensor already has.
    #[error("the CSR must carry a new key, not the current one")]
    SameKey,
    /// The connection's certificate could not be read.
    #[error("the connection's certificate is unreadable")]
    BadCertificate,
    /// The CSR does not parse or its signature is wrong.
    #[error("bad certificate signing request: {0}")]
    BadCsr(String),
    /// Signing failed.
    #[error("certificate: {0}")]
    Sign(#[from] rcgen::Error),
}

impl RenewError {
    /// Stable refusal code (sent to the sensor, used as the counter label);
    /// all start with [`RENEW_REFUSAL_PREFIX`].
    pub fn code(&self) -> &'static str {
        let code = match self {
            RenewError::TooEarly { .. } => "renew_too_early",
            RenewError::SameKey => "renew_same_key",
            RenewError::BadCertificate => "renew_bad_certificate",
            RenewError::BadCsr(_) => "renew_bad_csr",
            RenewError::Sign(_) => "renew_failed",
        };
        debug_assert!(code.starts_with(RENEW_REFUSAL_PREFIX));
        code
    }
}

/// A certificate's validity window, Unix seconds (X.509 has no finer unit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// Not valid before.
    pub not_before_s: i64,
    /// Not valid after.
    pub not_after_s: i64,
}

/// The validity window of a DER certificate, if it parses.
pub fn cert_validity(der: &[u8]) -> Option<Validity> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let v = cert.validity();
    Some(Validity {
        not_before_s: v.not_before.timestamp(),
        not_after_s: v.not_after.timestamp(),
    })
}

/// Seconds since the Unix epoch (negative before it).
fn unix_s(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

/// Valid from `now` (minus [`NOT_BEFORE_SLACK`]) for `lifetime`.
fn set_validity(params: &mut CertificateParams, now: SystemTime, lifetime: Duration) {
    let now = OffsetDateTime::from(now);
    params.not_before = now - NOT_BEFORE_SLACK;
    params.not_after = now + lifetime;
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
    /// use, at the wall clock's time. Returns the PKI and whether it was
    /// just created.
    pub fn load_or_create(dir: &Path) -> Result<(Pki, bool), PkiError> {
        Self::load_or_create_at(dir, SystemTime::now())
    }

    /// [`Pki::load_or_create`] at time `now`: new certificates are dated
    /// from it, and a server certificate with less than
    /// [`SERVER_RENEW_BEFORE`] left at `now` is re-issued for the same key.
    pub fn load_or_create_at(dir: &Path, now: SystemTime) -> Result<(Pki, bool), PkiError> {
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
            set_validity(&mut params, now, CA_VALIDITY);
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
            let cert = server_cert(&key, &ca_issuer, &ca_key, now)?;
            write_private(&srv_key_p, key.serialize_pem().as_bytes())?;
            write_private(&srv_crt_p, cert.pem().as_bytes())?;
        }
        let server_key = KeyPair::from_pem(&read(&srv_key_p)?)?;
        let mut server_cert_der =
            pem_to_der(&read(&srv_crt_p)?).ok_or_else(|| PkiError::BadFile {
                path: srv_crt_p.clone(),
                detail: "not a PEM certificate".into(),
            })?;
        if server_cert_expiring(&server_cert_der, now) {
            let cert = server_cert(&server_key, &ca_issuer, &ca_key, now)?;
            write_private(&srv_crt_p, cert.pem().as_bytes())?;
            tracing::info!(path = %srv_crt_p.display(), "server certificate re-issued (was close to expiry)");
            server_cert_der = cert.der().to_vec();
        }
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

    /// Sign a sensor's CSR as a client certificate for `host`, valid for
    /// [`CLIENT_CERT_VALIDITY`] from `now`. The CSR's signature is checked;
    /// its subject and extensions are replaced.
    pub fn sign_client_csr(
        &self,
        csr_der: &[u8],
        host: HostId,
        now: SystemTime,
    ) -> Result<Vec<u8>, PkiError> {
        let csr = parse_csr(csr_der).map_err(PkiError::BadCsr)?;
        Ok(self.sign_client(csr, host, now)?)
    }

    /// Renew the client certificate `current_der` (the one the sensor
    /// authenticated with) for a CSR carrying a new key. The certificate is
    /// for `host`, the id of the connection's certificate, whatever the
    /// CSR names. Refused while a third or more of the current
    /// certificate's lifetime is left ([`vigil_proto::renewal_due`]), which
    /// also limits how often a sensor can renew, and for the current key,
    /// so a stolen key cannot be carried into a new certificate's lifetime
    /// by reusing it.
    pub fn renew_client(
        &self,
        current_der: &[u8],
        csr_der: &[u8],
        host: HostId,
        now: SystemTime,
    ) -> Result<RenewResponse, RenewError> {
        let (_, current) = x509_parser::parse_x509_certificate(current_der)
            .map_err(|_| RenewError::BadCertificate)?;
        let v = current.validity();
        let (not_before_s, not_after_s) = (v.not_before.timestamp(), v.not_after.timestamp());
        if !renewal_due(not_before_s, not_after_s, unix_s(now)) {
            return Err(RenewError::TooEarly { not_after_s });
        }
        let csr = parse_csr(csr_der).map_err(RenewError::BadCsr)?;
        let current_key = &current.public_key().subject_public_key.data;
        if rcgen::PublicKeyData::der_bytes(&csr.public_key) == current_key.as_ref() {
            return Err(RenewError::SameKey);
        }
        let cert_der = self.sign_client(csr, host, now)?;
        let not_after_s = cert_validity(&cert_der).map_or(0, |v| v.not_after_s);
        Ok(RenewResponse {
            cert_der,
            not_after_ns: u64::try_from(not_after_s)
                .unwrap_or(0)
                .saturating_mul(1_000_000_000),
        })
    }

    /// The client certificate for a parsed CSR: the subject, extensions and
    /// lifetime are ours, only the key is the sensor's.
    fn sign_client(
        &self,
        mut csr: CertificateSigningRequestParams,
        host: HostId,
        now: SystemTime,
    ) -> Result<Vec<u8>, rcgen::Error> {
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
        set_validity(p, now, CLIENT_CERT_VALIDITY);
        let cert = csr.signed_by(&self.ca_issuer, &self.ca_key)?;
        Ok(cert.der().to_vec())
    }
}

/// Parse a CSR and check its signature (proof that the sender holds the key).
fn parse_csr(csr_der: &[u8]) -> Result<CertificateSigningRequestParams, String> {
    let der = rustls_pki_types::CertificateSigningRequestDer::from(csr_der);
    CertificateSigningRequestParams::from_der(&der).map_err(|e| e.to_string())
}

/// The server certificate for `key`, valid for [`SERVER_CERT_VALIDITY`] from `now`.
fn server_cert(
    key: &KeyPair,
    ca_issuer: &rcgen::Certificate,
    ca_key: &KeyPair,
    now: SystemTime,
) -> Result<rcgen::Certificate, PkiError> {
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
    set_validity(&mut params, now, SERVER_CERT_VALIDITY);
    Ok(params.signed_by(key, ca_issuer, ca_key)?)
}

/// Whether the server certificate has less than [`SERVER_RENEW_BEFORE`]
/// left at `now` (an unreadable one counts as expiring).
fn server_cert_expiring(der: &[u8], now: SystemTime) -> bool {
    cert_validity(der)
        .is_none_or(|v| v.not_after_s - unix_s(now) < SERVER_RENEW_BEFORE.as_secs() as i64)
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

    /// A fixed wall clock: 2023-11-14T22:13:20Z.
    fn t0() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn days(n: u64) -> Duration {
        Duration::from_secs(n * DAY)
    }

    fn csr(key: &KeyPair) -> Vec<u8> {
        CertificateParams::new(vec!["claims-another-name".to_owned()])
            .unwrap()
            .serialize_request(key)
            .unwrap()
            .der()
            .to_vec()
    }

    fn lifetime(v: Validity) -> (i64, i64) {
        (v.not_before_s, v.not_after_s - v.not_before_s)
    }

    fn server_validity(pki: &Pki) -> Validity {
        cert_validity(&pki.server_chain()[0]).unwrap()
    }

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
        let cert = again
            .sign_client_csr(&csr(&key), HostId(0xabc), SystemTime::now())
            .unwrap();
        assert_eq!(host_from_cert(&cert), Some(HostId(0xabc)));
        assert!(again
            .sign_client_csr(b"garbage", HostId(1), SystemTime::now())
            .is_err());
    }

    #[test]
    fn issued_certificates_have_the_documented_lifetimes() {
        let dir = tempfile::tempdir().unwrap();
        let (pki, _) = Pki::load_or_create_at(dir.path(), t0()).unwrap();
        let start = 1_700_000_000 - NOT_BEFORE_SLACK.as_secs() as i64;
        let slack = NOT_BEFORE_SLACK.as_secs() as i64;
        let ca = cert_validity(pki.ca_der()).unwrap();
        assert_eq!(lifetime(ca), (start, (20 * 365 * DAY) as i64 + slack));
        assert_eq!(
            lifetime(server_validity(&pki)),
            (start, (2 * 365 * DAY) as i64 + slack)
        );
        let key = KeyPair::generate().unwrap();
        let client = pki.sign_client_csr(&csr(&key), HostId(7), t0()).unwrap();
        let v = cert_validity(&client).unwrap();
        assert_eq!(lifetime(v), (start, (90 * DAY) as i64 + slack));
        assert_eq!(v.not_after_s, 1_700_000_000 + (90 * DAY) as i64);
    }

    #[test]
    fn server_certificate_is_reissued_for_the_same_key_when_a_month_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let (pki, _) = Pki::load_or_create_at(dir.path(), t0()).unwrap();
        let first = server_validity(&pki);
        let key_before = pki.server_key_der.clone();

        let early = t0() + SERVER_CERT_VALIDITY - days(31);
        let (same, _) = Pki::load_or_create_at(dir.path(), early).unwrap();
        assert_eq!(server_validity(&same), first, "31 days left: kept");

        let late = t0() + SERVER_CERT_VALIDITY - days(29);
        let (renewed, created) = Pki::load_or_create_at(dir.path(), late).unwrap();
        assert!(!created);
        let second = server_validity(&renewed);
        assert_eq!(
            second.not_after_s,
            unix_s(late) + SERVER_CERT_VALIDITY.as_secs() as i64
        );
        assert_eq!(renewed.server_key_der, key_before, "same key");
        assert_eq!(renewed.ca_fingerprint(), pki.ca_fingerprint());
        // And it is what the next start reads.
        let (reloaded, _) = Pki::load_or_create_at(dir.path(), late).unwrap();
        assert_eq!(server_validity(&reloaded), second);
    }

    #[test]
    fn renewal_needs_the_last_third_a_new_key_and_keeps_the_host() {
        let dir = tempfile::tempdir().unwrap();
        let (pki, _) = Pki::load_or_create_at(dir.path(), t0()).unwrap();
        let old_key = KeyPair::generate().unwrap();
        let current = pki
            .sign_client_csr(&csr(&old_key), HostId(9), t0())
            .unwrap();
        let new_key = KeyPair::generate().unwrap();

        let at_59_days = t0() + days(59);
        let early = pki.renew_client(&current, &csr(&new_key), HostId(9), at_59_days);
        assert_eq!(early.unwrap_err().code(), "renew_too_early");

        let at_61_days = t0() + days(61);
        let same = pki.renew_client(&current, &csr(&old_key), HostId(9), at_61_days);
        assert_eq!(same.unwrap_err().code(), "renew_same_key");
        let garbage = pki.renew_client(&current, b"garbage", HostId(9), at_61_days);
        assert_eq!(garbage.unwrap_err().code(), "renew_bad_csr");
        let unreadable = pki.renew_client(b"nope", &csr(&new_key), HostId(9), at_61_days);
        assert_eq!(unreadable.unwrap_err().code(), "renew_bad_certificate");

        let renewed = pki
            .renew_client(&current, &csr(&new_key), HostId(9), at_61_days)
            .unwrap();
        assert_eq!(host_from_cert(&renewed.cert_der), Some(HostId(9)));
        let v = cert_validity(&renewed.cert_der).unwrap();
        assert_eq!(v.not_after_s, unix_s(at_61_days) + (90 * DAY) as i64);
        assert_eq!(renewed.not_after_ns, v.not_after_s as u64 * 1_000_000_000);
        let (_, cert) = x509_parser::parse_x509_certificate(&renewed.cert_der).unwrap();
        assert_eq!(
            cert.public_key().subject_public_key.data.as_ref(),
            rcgen::PublicKeyData::der_bytes(&new_key),
            "the new key, not the CSR's claimed name"
        );
        assert!(cert.subject_alternative_name().unwrap().is_none());
    }
}
