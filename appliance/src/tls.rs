//! TLS configurations: QUIC (ingest + enrollment ALPNs, client certificates
//! checked against the appliance CA and the revoked set) and HTTPS.

use crate::internal_events::{HandshakeRejected, InternalEvent};
use crate::metrics::Metrics;
use crate::pki::{host_from_cert, Pki};
use crate::registry::RevokedSet;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, UnixTime};
use std::sync::Arc;
use thiserror::Error;

/// A TLS setup failure.
#[derive(Debug, Error)]
pub enum TlsError {
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client verifier: {0}")]
    Verifier(String),
    #[error("quic crypto: {0}")]
    Quic(String),
}

/// The ring crypto provider (the workspace builds rustls without aws-lc).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Verifies client certificates against the CA, then refuses revoked hosts
/// and counts every refusal. Anonymous clients pass here (they may only
/// enroll; the ingest path insists on a certificate).
#[derive(Debug)]
struct SensorVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    revoked: RevokedSet,
    metrics: Arc<Metrics>,
}

impl ClientCertVerifier for SensorVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if let Err(e) = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)
        {
            HandshakeRejected {
                reason: "bad_certificate",
                detail: &e.to_string(),
            }
            .emit(&self.metrics);
            return Err(e);
        }
        let Some(host) = host_from_cert(end_entity) else {
            HandshakeRejected {
                reason: "no_host_id",
                detail: "client certificate CN is not a host id",
            }
            .emit(&self.metrics);
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::BadEncoding,
            ));
        };
        if self.revoked.read().expect("revoked lock").contains(&host.0) {
            HandshakeRejected {
                reason: "revoked",
                detail: &host.to_string(),
            }
            .emit(&self.metrics);
            return Err(rustls::Error::InvalidCertificate(CertificateError::Revoked));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// rustls server config for the QUIC endpoint.
pub fn quic_server_config(
    pki: &Pki,
    revoked: RevokedSet,
    metrics: Arc<Metrics>,
) -> Result<rustls::ServerConfig, TlsError> {
    let provider = provider();
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(pki.ca_der().to_vec()))?;
    let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let verifier = Arc::new(SensorVerifier {
        inner,
        revoked,
        metrics,
    });
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(pki.server_chain(), pki.server_key())?;
    cfg.alpn_protocols = vec![
        vigil_proto::ALPN_INGEST.to_vec(),
        // Most preferred first: a sensor offering both enrollment versions
        // gets v2 (which carries the command key).
        vigil_proto::ALPN_ENROLL_V2.to_vec(),
        vigil_proto::ALPN_ENROLL.to_vec(),
    ];
    Ok(cfg)
}

/// rustls server config for HTTPS (no client certificates; h2 and http/1.1).
pub fn https_server_config(pki: &Pki) -> Result<rustls::ServerConfig, TlsError> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(pki.server_chain(), pki.server_key())?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}
