//! Connections to a receiver: TCP or TLS (rustls, CA pinned from a PEM
//! file), blocking, with timeouts; and the one thing TCP can tell us about
//! delivery: whether the peer's TCP has acknowledged every byte we wrote.

use std::io::{self, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use thiserror::Error;

/// Connection failures.
#[derive(Debug, Error)]
pub enum TransportError {
    /// Resolving, connecting, writing or waiting failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The underlying error.
        source: io::Error,
    },
    /// The CA file could not be read or holds no certificate.
    #[error("CA file {path}: {problem}")]
    Ca {
        /// The PEM file.
        path: String,
        /// What is wrong.
        problem: String,
    },
    /// The TLS configuration or server name was refused.
    #[error("TLS: {0}")]
    Tls(String),
    /// The peer closed or reset the connection, or never acknowledged.
    #[error("connection lost: {0}")]
    Lost(&'static str),
}

fn io(what: &'static str) -> impl FnOnce(io::Error) -> TransportError {
    move |source| TransportError::Io { what, source }
}

/// A TLS client configuration trusting only the CAs in `ca_pem`.
pub fn tls_config(ca_pem: &Path) -> Result<Arc<ClientConfig>, TransportError> {
    let ca_err = |problem: String| TransportError::Ca {
        path: ca_pem.display().to_string(),
        problem,
    };
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca_pem).map_err(|e| ca_err(e.to_string()))?;
    for cert in certs {
        let cert = cert.map_err(|e| ca_err(e.to_string()))?;
        roots.add(cert).map_err(|e| ca_err(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(ca_err("no certificate in it".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TransportError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Where and how to connect.
#[derive(Clone)]
pub struct Endpoint {
    /// `host:port`.
    pub address: String,
    /// TLS configuration and the name to verify, or plain TCP.
    pub tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
}

/// An open connection to a receiver.
pub enum Connection {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS over TCP.
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Connection {
    /// Connects (and completes the TLS handshake) within `timeout`.
    pub fn open(ep: &Endpoint, timeout: Duration) -> Result<Connection, TransportError> {
        let addrs = ep
            .address
            .to_socket_addrs()
            .map_err(io("resolve receiver address"))?;
        let mut last = None;
        let mut stream = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let sock = stream
            .ok_or_else(|| io("connect")(last.unwrap_or_else(|| io::Error::other("no address"))))?;
        sock.set_nodelay(true).map_err(io("set TCP_NODELAY"))?;
        sock.set_write_timeout(Some(timeout))
            .map_err(io("set timeout"))?;
        sock.set_read_timeout(Some(timeout))
            .map_err(io("set timeout"))?;
        let Some((config, name)) = &ep.tls else {
            return Ok(Connection::Tcp(sock));
        };
        let conn = ClientConnection::new(config.clone(), name.clone())
            .map_err(|e| TransportError::Tls(e.to_string()))?;
        let mut tls = StreamOwned::new(conn, sock);
        while tls.conn.is_handshaking() {
            tls.conn
                .complete_io(&mut tls.sock)
                .map_err(io("TLS handshake"))?;
        }
        Ok(Connection::Tls(Box::new(tls)))
    }

    fn fd(&self) -> RawFd {
        match self {
            Connection::Tcp(s) => s.as_raw_fd(),
            Connection::Tls(s) => s.sock.as_raw_fd(),
        }
    }

    /// Whether the peer still has the connection open: not closed, not
    /// reset. A syslog receiver never writes, so anything else is its end.
    pub fn usable(&self) -> bool {
        matches!(tcp_state(self.fd()), Some(TCP_ESTABLISHED))
    }

    /// Writes `bytes`, flushes, and waits until the peer's TCP has
    /// acknowledged all of them (or `timeout` passes).
    pub fn send(&mut self, bytes: &[u8], timeout: Duration) -> Result<(), TransportError> {
        match self {
            Connection::Tcp(s) => {
                s.write_all(bytes).map_err(io("write"))?;
                s.flush().map_err(io("flush"))?;
            }
            Connection::Tls(s) => {
                s.write_all(bytes).map_err(io("write"))?;
                s.flush().map_err(io("flush"))?;
            }
        }
        self.wait_acked(timeout)
    }

    /// Polls the socket until no written byte is unacknowledged. A reset
    /// leaves bytes unacknowledged and the state closed: that is a loss of
    /// the connection, never a success.
    fn wait_acked(&self, timeout: Duration) -> Result<(), TransportError> {
        let fd = self.fd();
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_micros(200);
        loop {
            let state = tcp_state(fd);
            if !matches!(state, Some(TCP_ESTABLISHED) | Some(TCP_CLOSE_WAIT)) {
                return Err(TransportError::Lost("closed or reset by the receiver"));
            }
            match unacked_bytes(fd) {
                Some(0) => return Ok(()),
                Some(_) => {}
                None => return Err(TransportError::Lost("cannot read the send queue")),
            }
            if Instant::now() >= deadline {
                return Err(TransportError::Lost("receiver did not acknowledge in time"));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }
}

/// Linux TCP states (include/net/tcp_states.h).
const TCP_ESTABLISHED: u8 = 1;
const TCP_CLOSE_WAIT: u8 = 8;

/// The kernel's TCP state of `fd`, `None` when it cannot be read.
fn tcp_state(fd: RawFd) -> Option<u8> {
    // SAFETY: tcp_info is plain old data; the kernel writes at most `len`
    // bytes into it and we pass its true size.
    unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let rc = libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        );
        (rc == 0).then_some(info.tcpi_state)
    }
}

/// Bytes written to `fd` that the peer has not acknowledged (SIOCOUTQ:
/// `write_seq - snd_una`).
fn unacked_bytes(fd: RawFd) -> Option<u32> {
    let mut n: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (== TIOCOUTQ) writes one int through the pointer.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut n as *mut libc::c_int) };
    (rc == 0 && n >= 0).then_some(n as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    #[test]
    fn a_listener_that_reads_acknowledges_and_a_closed_one_is_seen() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let ep = Endpoint {
            address: l.local_addr().unwrap().to_string(),
            tls: None,
        };
        let mut c = Connection::open(&ep, Duration::from_secs(5)).unwrap();
        let (mut peer, _) = l.accept().unwrap();
        c.send(b"5 hello", Duration::from_secs(5)).unwrap();
        let mut buf = [0u8; 7];
        peer.read_exact(&mut buf).unwrap();
        assert!(c.usable());
        drop(peer);
        let deadline = Instant::now() + Duration::from_secs(5);
        while c.usable() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!c.usable(), "the peer's close is visible before sending");
        // Sending anyway is never reported as delivered.
        let err = c.send(b"5 world", Duration::from_secs(2));
        assert!(err.is_err());
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ca.pem");
        std::fs::write(&p, "not a pem").unwrap();
        assert!(tls_config(&p).is_err());
    }
}
