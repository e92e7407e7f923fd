//! A private rsyslogd on loopback: imtcp plain and with GnuTLS (a test CA
//! made with rcgen), writing each input's raw messages to its own file.
//! Killed when dropped.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, SanType};

const GTLS_DRIVER: &str = "/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so";

/// `Ok` when rsyslogd and its GnuTLS driver are installed, else why not.
pub fn rsyslog_available() -> Result<(), String> {
    let found = Command::new("rsyslogd")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        return Err("rsyslogd is not installed (Debian package rsyslog)".into());
    }
    let gtls = Path::new(GTLS_DRIVER).exists()
        || Path::new("/usr/lib/aarch64-linux-gnu/rsyslog/lmnsd_gtls.so").exists();
    if !gtls {
        return Err("rsyslog's GnuTLS driver is missing (Debian package rsyslog-gnutls)".into());
    }
    Ok(())
}

/// A running (or stopped) rsyslogd of this test.
pub struct Rsyslog {
    dir: PathBuf,
    child: Option<Child>,
    pub tcp_port: u16,
    pub tls_port: u16,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_test_pki(dir: &Path) -> Result<(), rcgen::Error> {
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "Vigil forward test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key)?;
    let key = KeyPair::generate()?;
    let mut srv = CertificateParams::new(vec!["localhost".to_string()])?;
    srv.subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    srv.distinguished_name.push(DnType::CommonName, "localhost");
    let srv_cert = srv.signed_by(&key, &ca_cert, &ca_key)?;
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("srv.pem"), srv_cert.pem()).unwrap();
    std::fs::write(dir.join("srv.key"), key.serialize_pem()).unwrap();
    Ok(())
}

impl Rsyslog {
    /// Writes a CA, a server certificate and the configuration into `dir`
    /// and starts rsyslogd.
    pub fn start(dir: &Path) -> Result<Rsyslog, String> {
        write_test_pki(dir).map_err(|e| e.to_string())?;
        let (tcp_port, tls_port) = (free_port(), free_port());
        let d = dir.display();
        let work = dir.join("rsyslog-work");
        std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
        let conf = format!(
            r#"global(workDirectory="{work}" maxMessageSize="64k"
  DefaultNetstreamDriverCAFile="{d}/ca.pem"
  DefaultNetstreamDriverCertFile="{d}/srv.pem"
  DefaultNetstreamDriverKeyFile="{d}/srv.key")
module(load="imtcp")
template(name="raw" type="string" string="%rawmsg%\n")
ruleset(name="tcp") {{ action(type="omfile" file="{d}/tcp.log" template="raw") }}
ruleset(name="tls") {{ action(type="omfile" file="{d}/tls.log" template="raw") }}
input(type="imtcp" address="127.0.0.1" port="{tcp_port}" ruleset="tcp")
input(type="imtcp" address="127.0.0.1" port="{tls_port}" ruleset="tls"
      streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
"#,
            work = work.display()
        );
        std::fs::write(dir.join("rsyslog.conf"), conf).map_err(|e| e.to_string())?;
        let mut r = Rsyslog {
            dir: dir.to_path_buf(),
            child: None,
            tcp_port,
            tls_port,
        };
        r.restart()?;
        Ok(r)
    }

    /// Starts rsyslogd (again) with the same configuration and ports.
    pub fn restart(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("rsyslogd.out"))
            .map_err(|e| e.to_string())?;
        let child = Command::new("rsyslogd")
            .arg("-n")
            .arg("-f")
            .arg(self.dir.join("rsyslog.conf"))
            .arg("-i")
            .arg(self.dir.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start rsyslogd: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        // The plain port only: a bare probe on the TLS port would be
        // logged as a failed handshake. Both inputs start together.
        while TcpStream::connect(("127.0.0.1", self.tcp_port)).is_err() {
            if Instant::now() > deadline {
                let out = std::fs::read_to_string(self.dir.join("rsyslogd.out"));
                return Err(format!("rsyslogd did not listen: {out:?}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Stops rsyslogd gracefully (SIGTERM) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on the pid of a child we spawned and still own.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
