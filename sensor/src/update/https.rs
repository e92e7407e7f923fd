//! The repository fetcher over HTTPS: one GET per file (hyper 1, HTTP/1.1
//! over tokio-rustls), the server verified against the enrolled appliance
//! CA alone under the name every appliance certificate carries, the body
//! read up to its cap and no further.

use std::sync::Arc;

use http_body_util::BodyExt;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, ServerName};
use vigil_update::remote::{too_long, Fetch};
use vigil_update::VerifyError;

use crate::tls::SERVER_NAME;

/// Where the appliance serves sensor updates, under the base URL.
pub const UPDATES_PATH: &str = "/enroll/updates/";

/// How long one file may take, connection included.
const FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// `https://HOST:PORT` split, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    /// `HOST:PORT` to connect to (IPv6 in brackets).
    pub authority: String,
}

impl BaseUrl {
    /// Parses `https://HOST:PORT` (a trailing `/` allowed, nothing else).
    pub fn parse(url: &str) -> Result<Self, String> {
        let bad = || format!("{url:?} is not https://HOST:PORT");
        let rest = url.strip_prefix("https://").ok_or_else(bad)?;
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = authority.rsplit_once(':').ok_or_else(bad)?;
        let host_ok = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
        if !host_ok || port.parse::<u16>().is_err() {
            return Err(bad());
        }
        Ok(BaseUrl {
            authority: authority.to_string(),
        })
    }
}

/// Fetches repository files from the appliance, blocking on `rt`.
pub struct HttpsFetcher<'a> {
    rt: &'a tokio::runtime::Runtime,
    base: BaseUrl,
    tls: tokio_rustls::TlsConnector,
}

impl<'a> HttpsFetcher<'a> {
    /// A fetcher trusting only `ca_der` (the CA pinned at enrollment).
    pub fn new(
        rt: &'a tokio::runtime::Runtime,
        base: BaseUrl,
        ca_der: &[u8],
    ) -> Result<Self, String> {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from(ca_der.to_vec()))
            .map_err(|e| format!("enrolled CA unusable: {e}"))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(HttpsFetcher {
            rt,
            base,
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
        })
    }

    async fn get(&self, path: &str, max_len: u64) -> Result<Option<Vec<u8>>, GetError> {
        let tcp = tokio::net::TcpStream::connect(&self.base.authority)
            .await
            .map_err(|e| format!("connect {}: {e}", self.base.authority))?;
        let name = ServerName::try_from(SERVER_NAME).map_err(|e| e.to_string())?;
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with {} (enrolled CA): {e}", self.base.authority))?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
        let driver = tokio::spawn(conn);
        let req = hyper::Request::get(format!("{UPDATES_PATH}{path}"))
            .header(hyper::header::HOST, SERVER_NAME)
            .body(http_body_util::Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let res = send.send_request(req).await.map_err(|e| e.to_string())?;
        let status = res.status();
        if status == hyper::StatusCode::NOT_FOUND {
            driver.abort();
            return Ok(None);
        }
        if !status.is_success() {
            driver.abort();
            return Err(GetError::Other(format!("HTTP {status}")));
        }
        let mut body = res.into_body();
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| e.to_string())?;
            if let Some(data) = frame.data_ref() {
                if (out.len() + data.len()) as u64 > max_len {
                    driver.abort();
                    return Err(GetError::TooLong);
                }
                out.extend_from_slice(data);
            }
        }
        driver.abort();
        Ok(Some(out))
    }
}

/// Why a GET failed: the one failure that is the server's bytes, or any
/// other (network, TLS, HTTP status).
enum GetError {
    TooLong,
    Other(String),
}

impl From<String> for GetError {
    fn from(e: String) -> Self {
        GetError::Other(e)
    }
}

impl Fetch for HttpsFetcher<'_> {
    fn fetch(&mut self, path: &str, max_len: u64) -> Result<Option<Vec<u8>>, VerifyError> {
        let got = self
            .rt
            .block_on(async { tokio::time::timeout(FETCH_TIMEOUT, self.get(path, max_len)).await });
        match got {
            Ok(Ok(found)) => Ok(found),
            Ok(Err(GetError::TooLong)) => Err(too_long(path, max_len)),
            Ok(Err(GetError::Other(reason))) => Err(VerifyError::Fetch {
                path: path.to_string(),
                reason,
            }),
            Err(_) => Err(VerifyError::Fetch {
                path: path.to_string(),
                reason: format!("no answer within {FETCH_TIMEOUT:?}"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        assert_eq!(
            BaseUrl::parse("https://10.0.0.1:8443/").unwrap().authority,
            "10.0.0.1:8443"
        );
        assert_eq!(
            BaseUrl::parse("https://[fd00::1]:8443").unwrap().authority,
            "[fd00::1]:8443"
        );
        for bad in [
            "http://10.0.0.1:8443",
            "https://10.0.0.1",
            "https://10.0.0.1:8443/x",
            "https://a b:1",
            "https://:1",
        ] {
            assert!(BaseUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
