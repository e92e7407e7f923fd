//! Enrollment: trade a one-time token for a client certificate, pin the
//! appliance CA, and keep the identity in the state directory (mode 0600).
//! A renewed key and certificate replace the stored ones crash-safely
//! ([`Identity::install_renewed`]).

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use thiserror::Error;
use vigil_proto::control::EnrollRequest;
use vigil_proto::{ControlMessage, HostId};

use crate::tls::{self, TlsError};
use crate::wire::{self, WireError};

const KEY_FILE: &str = "key.pem";
const CERT_FILE: &str = "cert.pem";
const CA_FILE: &str = "ca.pem";
const HOST_FILE: &str = "host_id";
/// A renewed key and certificate in one file: written (and renamed into
/// place) first, so the pair is replaced all or nothing; then copied over
/// the key and certificate files and removed. [`Identity::load`] finishes
/// a copy a crash interrupted.
const RENEWED_FILE: &str = "renewed.pem";

/// Enrollment failures, each with a message an administrator can act on.
#[derive(Debug, Error)]
pub enum EnrollError {
    /// Bad TLS input (fingerprint format, certificates).
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The appliance address does not resolve.
    #[error("cannot resolve appliance address {0:?}")]
    Resolve(String),
    /// The appliance presented a CA other than the pinned one.
    #[error("appliance CA does not match --ca-sha256; refusing to enroll (check the fingerprint shown on the appliance)")]
    FingerprintMismatch,
    /// The QUIC connection failed.
    #[error("cannot reach appliance at {addr}: {reason}")]
    Connect {
        /// Address tried.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The stream broke or carried bad frames.
    #[error("enrollment exchange failed: {0}")]
    Wire(#[from] WireError),
    /// The appliance refused the token.
    #[error("appliance refused enrollment ({code}): {message}")]
    Refused {
        /// Machine-readable code, e.g. `token_used`.
        code: String,
        /// Explanation.
        message: String,
    },
    /// The appliance answered something unexpected.
    #[error("unexpected answer from appliance: {0}")]
    Protocol(String),
    /// Key or CSR generation failed.
    #[error("key generation: {0}")]
    Key(#[from] rcgen::Error),
    /// The state directory could not be written or read.
    #[error("state directory {path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A stored identity file is malformed.
    #[error("stored identity is corrupt: {0}")]
    Corrupt(String),
}

/// What enrollment produced and `run` needs.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Host id bound to the certificate.
    pub host: HostId,
    /// Private key, PKCS#8 DER.
    pub key_der: Vec<u8>,
    /// Client certificate, DER.
    pub cert_der: Vec<u8>,
    /// The pinned appliance CA, DER.
    pub ca_der: Vec<u8>,
    /// The state directory it is kept in (set by enrollment and
    /// [`Identity::load`]); a renewal is stored there. `None`: in memory only.
    pub stored_in: Option<PathBuf>,
}

/// Enrollment parameters (the `enroll` subcommand's flags).
#[derive(Debug, Clone)]
pub struct EnrollParams {
    /// Appliance `HOST:PORT`.
    pub appliance: String,
    /// One-time token.
    pub token: String,
    /// SHA-256 of the appliance CA certificate (hex, ':' allowed).
    pub ca_sha256: String,
    /// Where the identity is stored.
    pub state_dir: PathBuf,
}

/// Resolve `HOST:PORT` to one socket address.
pub async fn resolve(addr: &str) -> Result<std::net::SocketAddr, EnrollError> {
    tokio::net::lookup_host(addr)
        .await
        .map_err(|_| EnrollError::Resolve(addr.to_string()))?
        .next()
        .ok_or_else(|| EnrollError::Resolve(addr.to_string()))
}

/// This machine's host name.
pub fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// A short OS description.
pub fn os_name() -> String {
    let pretty = fs::read_to_string("/etc/os-release").ok().and_then(|t| {
        t.lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_string())
    });
    format!("linux ({})", pretty.unwrap_or_else(|| "unknown".into()))
}

/// Enroll with the appliance and store the identity in `params.state_dir`.
pub async fn enroll(params: &EnrollParams) -> Result<Identity, EnrollError> {
    let pin = tls::parse_fingerprint(&params.ca_sha256)?;
    let addr = resolve(&params.appliance).await?;
    let host_name = hostname();
    let (key, csr) = new_key_and_csr(&host_name)?;

    let (client_cfg, mismatch) = tls::enroll_client_config(pin)?;
    let endpoint = tls::client_endpoint(addr).map_err(|e| EnrollError::Connect {
        addr: addr.to_string(),
        reason: e.to_string(),
    })?;
    let connect_err = |reason: String| EnrollError::Connect {
        addr: addr.to_string(),
        reason,
    };
    let conn = endpoint
        .connect_with(client_cfg, addr, tls::SERVER_NAME)
        .map_err(|e| connect_err(e.to_string()))?
        .await;
    let conn = match conn {
        Ok(c) => c,
        Err(_) if mismatch.load(Ordering::SeqCst) => return Err(EnrollError::FingerprintMismatch),
        Err(e) => return Err(connect_err(e.to_string())),
    };
    let (mut send, mut recv) = conn
        .open_bi()
        .await
        .map_err(|e| connect_err(e.to_string()))?;
    let req = ControlMessage::Enroll(EnrollRequest {
        token: params.token.clone(),
        csr_der: csr,
        hostname: host_name,
        os: os_name(),
        sensor_version: env!("CARGO_PKG_VERSION").to_string(),
    });
    wire::write_control(&mut send, &req).await?;
    send.finish().map_err(WireError::from)?;
    let answer = wire::read_control(&mut recv).await?;
    conn.close(0u32.into(), b"enrolled");
    endpoint.wait_idle().await;
    let (resp, command_key) = match answer {
        ControlMessage::Enrolled(r) => (r, None),
        ControlMessage::EnrolledV2(r) => (
            vigil_proto::EnrollResponse {
                host: r.host,
                cert_der: r.cert_der,
                ca_der: r.ca_der,
            },
            Some(r.command_key),
        ),
        ControlMessage::Refused(r) => {
            return Err(EnrollError::Refused {
                code: r.code,
                message: r.message,
            })
        }
        other => return Err(EnrollError::Protocol(format!("{other:?}"))),
    };
    if tls::sha256_hex(&resp.ca_der) != hex::encode(pin) {
        return Err(EnrollError::FingerprintMismatch);
    }
    let identity = Identity {
        host: resp.host,
        key_der: key.serialize_der(),
        cert_der: resp.cert_der,
        ca_der: resp.ca_der,
        stored_in: Some(params.state_dir.clone()),
    };
    identity.save(&params.state_dir)?;
    pin_response_keys(&params.state_dir, command_key.as_ref(), &params.appliance).await?;
    tracing::info!(host = %identity.host, dir = %params.state_dir.display(), "enrolled");
    Ok(identity)
}

/// Store what response commands are checked against: the appliance's
/// command key (absent from an older appliance: commands are then refused
/// as `no_command_key`) and every address of the appliance, resolved now
/// and never again, for isolation rules.
async fn pin_response_keys(
    dir: &Path,
    command_key: Option<&[u8; 32]>,
    appliance: &str,
) -> Result<(), EnrollError> {
    let store = |e: crate::response::ResponseError| EnrollError::Io {
        path: dir.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    };
    match command_key {
        Some(k) => crate::response::store_command_key(dir, k).map_err(store)?,
        None => {
            tracing::warn!("the appliance sent no command key; response commands will be refused")
        }
    }
    let addrs: Vec<std::net::IpAddr> = tokio::net::lookup_host(appliance)
        .await
        .map(|a| a.map(|s| s.ip()).collect())
        .unwrap_or_default();
    crate::response::pin_appliance(dir, &addrs).map_err(store)
}

/// A fresh P-256 key and a CSR for it (DER). The appliance replaces the
/// subject; the host name is only a hint for humans reading the CSR.
pub fn new_key_and_csr(host_name: &str) -> Result<(rcgen::KeyPair, Vec<u8>), rcgen::Error> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut csr_params = rcgen::CertificateParams::new(vec![host_name.to_owned()])?;
    csr_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, host_name.to_owned());
    let csr = csr_params.serialize_request(&key)?;
    Ok((key, csr.der().to_vec()))
}

fn pem(tag: &str, der: &[u8]) -> String {
    use std::fmt::Write as _;
    let b64 = base64_encode(der);
    let mut out = format!("-----BEGIN {tag}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        let _ = writeln!(out, "{}", std::str::from_utf8(chunk).expect("ascii"));
    }
    let _ = writeln!(out, "-----END {tag}-----");
    out
}

fn unpem(text: &str, tag: &str) -> Result<Vec<u8>, EnrollError> {
    let begin = format!("-----BEGIN {tag}-----");
    let end = format!("-----END {tag}-----");
    let start = text
        .find(&begin)
        .ok_or_else(|| EnrollError::Corrupt(format!("no {tag} block")))?
        + begin.len();
    let stop = text[start..]
        .find(&end)
        .ok_or_else(|| EnrollError::Corrupt(format!("unterminated {tag} block")))?
        + start;
    let b64: String = text[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    base64_decode(&b64).ok_or_else(|| EnrollError::Corrupt(format!("bad base64 in {tag}")))
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        if c == b'=' {
            break;
        }
        let v = B64.iter().position(|&x| x == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Create `dir` (and missing parents) mode 0700. An existing `dir` that
/// this process owns is narrowed to 0700 too (a state or spool directory
/// from before, or made by a package); one that is sticky or someone
/// else's (`/tmp`) is left alone.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let meta = fs::metadata(dir)?;
    let ours = meta.uid() == nix::unistd::geteuid().as_raw();
    if ours && meta.mode() & 0o077 != 0 && meta.mode() & 0o1000 == 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

pub(crate) fn write_private(path: &Path, contents: &[u8]) -> Result<(), EnrollError> {
    let err = |source| EnrollError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    // `mode` applies only when the file is created: a leftover tmp file
    // keeps its old mode otherwise.
    f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .map_err(err)?;
    f.write_all(contents).map_err(err)?;
    f.sync_all().map_err(err)?;
    fs::rename(&tmp, path).map_err(err)
}

impl Identity {
    /// Write key, certificate, CA (PEM) and host id, each mode 0600.
    pub fn save(&self, dir: &Path) -> Result<(), EnrollError> {
        create_private_dir(dir).map_err(|source| EnrollError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        write_private(
            &dir.join(KEY_FILE),
            pem("PRIVATE KEY", &self.key_der).as_bytes(),
        )?;
        write_private(
            &dir.join(CERT_FILE),
            pem("CERTIFICATE", &self.cert_der).as_bytes(),
        )?;
        write_private(
            &dir.join(CA_FILE),
            pem("CERTIFICATE", &self.ca_der).as_bytes(),
        )?;
        write_private(&dir.join(HOST_FILE), format!("{}\n", self.host).as_bytes())
    }

    /// Replace key and certificate with renewed ones, in memory and, when
    /// the identity is stored, on disk: both go into one file first (the
    /// commit point: a crash leaves the old pair or the new one, never a
    /// mix), then over the key and certificate files.
    pub fn install_renewed(
        &mut self,
        key_der: Vec<u8>,
        cert_der: Vec<u8>,
    ) -> Result<(), EnrollError> {
        if let Some(dir) = &self.stored_in {
            let mut both = pem("PRIVATE KEY", &key_der);
            both.push_str(&pem("CERTIFICATE", &cert_der));
            write_private(&dir.join(RENEWED_FILE), both.as_bytes())?;
            finish_renewal(dir)?;
        }
        self.key_der = key_der;
        self.cert_der = cert_der;
        Ok(())
    }

    /// Load an identity saved by [`Identity::save`] (finishing an
    /// interrupted [`Identity::install_renewed`] first).
    pub fn load(dir: &Path) -> Result<Identity, EnrollError> {
        finish_renewal(dir)?;
        let read = |name: &str| {
            let path = dir.join(name);
            fs::read_to_string(&path).map_err(|source| EnrollError::Io { path, source })
        };
        let host = read(HOST_FILE)?
            .trim()
            .parse()
            .map_err(|_| EnrollError::Corrupt("host_id is not 16 hex digits".into()))?;
        Ok(Identity {
            host,
            key_der: unpem(&read(KEY_FILE)?, "PRIVATE KEY")?,
            cert_der: unpem(&read(CERT_FILE)?, "CERTIFICATE")?,
            ca_der: unpem(&read(CA_FILE)?, "CERTIFICATE")?,
            stored_in: Some(dir.to_path_buf()),
        })
    }
}

/// Copy a committed renewal (if any) over the key and certificate files,
/// then remove it. Idempotent, so a crash anywhere in here is finished by
/// the next call.
fn finish_renewal(dir: &Path) -> Result<(), EnrollError> {
    let path = dir.join(RENEWED_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(EnrollError::Io { path, source }),
    };
    let key = unpem(&text, "PRIVATE KEY")?;
    let cert = unpem(&text, "CERTIFICATE")?;
    write_private(&dir.join(KEY_FILE), pem("PRIVATE KEY", &key).as_bytes())?;
    write_private(&dir.join(CERT_FILE), pem("CERTIFICATE", &cert).as_bytes())?;
    fs::remove_file(&path).map_err(|source| EnrollError::Io { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn base64_roundtrip() {
        for n in 0..70u8 {
            let data: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
            assert_eq!(base64_decode(&base64_encode(&data)).unwrap(), data);
        }
        assert_eq!(base64_encode(b"Man"), "TWFu");
        assert_eq!(base64_encode(b"Ma"), "TWE=");
    }

    #[test]
    fn identity_save_load_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let id = Identity {
            host: HostId(0xabc),
            key_der: vec![1, 2, 3],
            cert_der: vec![4; 100],
            ca_der: vec![5; 7],
            stored_in: None,
        };
        id.save(dir.path()).unwrap();
        for f in [KEY_FILE, CERT_FILE, CA_FILE, HOST_FILE] {
            let mode = fs::metadata(dir.path().join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        let back = Identity::load(dir.path()).unwrap();
        assert_eq!(back.host, id.host);
        assert_eq!(back.key_der, id.key_der);
        assert_eq!(back.cert_der, id.cert_der);
        assert_eq!(back.ca_der, id.ca_der);
    }

    #[test]
    fn a_renewal_replaces_key_and_certificate_on_disk_and_survives_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let mut id = Identity {
            host: HostId(0xabc),
            key_der: vec![1; 10],
            cert_der: vec![2; 20],
            ca_der: vec![3; 5],
            stored_in: Some(dir.path().to_path_buf()),
        };
        id.save(dir.path()).unwrap();
        id.install_renewed(vec![4; 11], vec![5; 21]).unwrap();
        assert_eq!(
            (id.key_der.clone(), id.cert_der.clone()),
            (vec![4; 11], vec![5; 21])
        );
        let back = Identity::load(dir.path()).unwrap();
        assert_eq!((back.key_der, back.cert_der), (vec![4; 11], vec![5; 21]));
        assert_eq!(back.stored_in.as_deref(), Some(dir.path()));
        assert!(!dir.path().join(RENEWED_FILE).exists());
        for f in [KEY_FILE, CERT_FILE] {
            let mode = fs::metadata(dir.path().join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }

        // A crash after the commit point, with only the key file copied:
        // the next load finishes the job instead of pairing the new key
        // with the old certificate.
        let mut both = pem("PRIVATE KEY", &[6; 12]);
        both.push_str(&pem("CERTIFICATE", &[7; 22]));
        write_private(&dir.path().join(RENEWED_FILE), both.as_bytes()).unwrap();
        write_private(
            &dir.path().join(KEY_FILE),
            pem("PRIVATE KEY", &[6; 12]).as_bytes(),
        )
        .unwrap();
        let back = Identity::load(dir.path()).unwrap();
        assert_eq!(
            (back.key_der.clone(), back.cert_der.clone()),
            (vec![6; 12], vec![7; 22])
        );
        assert!(!dir.path().join(RENEWED_FILE).exists());

        // In memory only: the stored identity is left alone.
        let mut mem = Identity {
            stored_in: None,
            ..back
        };
        mem.install_renewed(vec![8], vec![9]).unwrap();
        assert_eq!(mem.cert_der, vec![9]);
        assert_eq!(Identity::load(dir.path()).unwrap().cert_der, vec![7; 22]);
    }
}
