//! TLS and QUIC client setup: the appliance is trusted only through its
//! pinned CA, never through system roots.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// The name every appliance certificate carries.
pub const SERVER_NAME: &str = "vigil-appliance";

/// TLS setup failures.
#[derive(Debug, Error)]
pub enum TlsError {
    /// The `--ca-sha256` value is not 32 hex bytes.
    #[error(
        "CA fingerprint {0:?} is not a SHA-256 in hex (64 hex digits, ':' separators allowed)"
    )]
    BadFingerprint(String),
    /// rustls refused the configuration (bad key, bad certificate).
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// quinn refused the TLS configuration.
    #[error("QUIC TLS configuration: {0}")]
    Quic(String),
    /// The CA could not be used as a trust anchor.
    #[error("pinned CA unusable: {0}")]
    BadCa(String),
}

/// Lowercase hex SHA-256 of some DER bytes.
pub fn sha256_hex(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// Parse a fingerprint given with or without ':' separators, in any case.
pub fn parse_fingerprint(input: &str) -> Result<[u8; 32], TlsError> {
    let cleaned: String = input
        .chars()
        .filter(|c| *c != ':' && !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    let bytes = hex::decode(&cleaned).map_err(|_| TlsError::BadFingerprint(input.to_string()))?;
    bytes
        .try_into()
        .map_err(|_| TlsError::BadFingerprint(input.to_string()))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Accepts the server only if the last certificate of its chain is the CA
/// with the pinned fingerprint and the leaf verifies against that CA alone.
#[derive(Debug)]
pub struct PinnedCaVerifier {
    pin: [u8; 32],
    provider: Arc<CryptoProvider>,
    /// Set when a server presented a CA with another fingerprint.
    pub mismatch: Arc<AtomicBool>,
}

impl PinnedCaVerifier {
    /// A verifier for the CA with this SHA-256.
    pub fn new(pin: [u8; 32]) -> Self {
        PinnedCaVerifier {
            pin,
            provider: provider(),
            mismatch: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(ca) = intermediates.last() else {
            self.mismatch.store(true, Ordering::SeqCst);
            return Err(rustls::Error::General(
                "appliance sent no CA certificate to check against the pinned fingerprint".into(),
            ));
        };
        let got: [u8; 32] = Sha256::digest(ca.as_ref()).into();
        if got != self.pin {
            self.mismatch.store(true, Ordering::SeqCst);
            return Err(rustls::Error::General(format!(
                "appliance CA fingerprint {} does not match the pinned {}",
                hex::encode(got),
                hex::encode(self.pin)
            )));
        }
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let inner =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
        inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn quic(mut tls: rustls::ClientConfig, alpns: &[&[u8]]) -> Result<quinn::ClientConfig, TlsError> {
    tls.alpn_protocols = alpns.iter().map(|a| a.to_vec()).collect();
    let q = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| TlsError::Quic(e.to_string()))?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(q));
    let mut transport = quinn::TransportConfig::default();
    // Heartbeats (every 10 s by default) already keep the connection alive;
    // a keep-alive only fires when one is late, so 10,000 idle sensors send
    // the appliance one packet each per heartbeat, not two or three.
    transport.keep_alive_interval(Some(std::time::Duration::from_secs(15)));
    transport.max_idle_timeout(Some(quinn::VarInt::from_u32(30_000).into()));
    // Ask the appliance to acknowledge each packet at once: one wakeup per
    // heartbeat on its side instead of a second one for a delayed-ACK timer.
    let mut ack = quinn::AckFrequencyConfig::default();
    ack.ack_eliciting_threshold(0u32.into());
    transport.ack_frequency_config(Some(ack));
    cfg.transport_config(Arc::new(transport));
    Ok(cfg)
}

/// Client config for enrollment: no client certificate, server pinned by fingerprint.
pub fn enroll_client_config(
    pin: [u8; 32],
) -> Result<(quinn::ClientConfig, Arc<AtomicBool>), TlsError> {
    let verifier = Arc::new(PinnedCaVerifier::new(pin));
    let mismatch = verifier.mismatch.clone();
    let tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    // v2 first: an appliance that knows it answers with its command key
    // (`EnrolledV2`); an older one picks v1 and answers `Enrolled`.
    let alpns = [vigil_proto::ALPN_ENROLL_V2, vigil_proto::ALPN_ENROLL];
    Ok((quic(tls, &alpns)?, mismatch))
}

/// Client config for ingest: mutual TLS with the enrolled certificate, the
/// server verified against the pinned CA only.
pub fn ingest_client_config(
    ca_der: &[u8],
    cert_der: &[u8],
    key_pkcs8_der: &[u8],
) -> Result<quinn::ClientConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca_der.to_vec()))
        .map_err(|e| TlsError::BadCa(e.to_string()))?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pkcs8_der.to_vec()));
    let tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![
                CertificateDer::from(cert_der.to_vec()),
                CertificateDer::from(ca_der.to_vec()),
            ],
            key,
        )?;
    quic(tls, &[vigil_proto::ALPN_INGEST])
}

/// A quinn client endpoint bound to the wildcard address of `peer`'s family.
pub fn client_endpoint(peer: std::net::SocketAddr) -> std::io::Result<quinn::Endpoint> {
    let bind: std::net::SocketAddr = if peer.is_ipv6() {
        "[::]:0".parse().expect("literal")
    } else {
        "0.0.0.0:0".parse().expect("literal")
    };
    quinn::Endpoint::client(bind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_forms() {
        let der = b"hello";
        let hex = sha256_hex(der);
        let want: [u8; 32] = Sha256::digest(der).into();
        assert_eq!(parse_fingerprint(&hex).unwrap(), want);
        let colons = hex
            .to_uppercase()
            .as_bytes()
            .chunks(2)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(parse_fingerprint(&colons).unwrap(), want);
        assert!(parse_fingerprint("abcd").is_err());
        assert!(parse_fingerprint(&format!("{hex}zz")).is_err());
    }
}
