//! `wtmp` reader: console logins and logouts (local terminals). Remote
//! sessions also appear in wtmp, but sshd's own log lines already give them
//! with method and port, so only entries without a remote host are turned
//! into events here; nothing is reported twice.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use vigil_proto::{AuthMethod, LoginInfo, LoginService, Payload};

/// Size of one `struct utmp` record on Linux (x86_64 and aarch64).
pub const RECORD: usize = 384;
const USER_PROCESS: i16 = 7;
const DEAD_PROCESS: i16 = 8;

/// One decoded wtmp record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Utmp {
    /// Record type (7 login, 8 logout, ...).
    pub kind: i16,
    /// Session leader pid.
    pub pid: i32,
    /// Terminal (`tty1`, `pts/0`).
    pub line: String,
    /// User name (empty on logout records).
    pub user: String,
    /// Remote host (empty for console).
    pub host: String,
}

fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// Decode one record.
pub fn parse_record(r: &[u8; RECORD]) -> Utmp {
    Utmp {
        kind: i16::from_ne_bytes([r[0], r[1]]),
        pid: i32::from_ne_bytes([r[4], r[5], r[6], r[7]]),
        line: cstr(&r[8..40]),
        user: cstr(&r[44..76]),
        host: cstr(&r[76..332]),
    }
}

/// Turns records into console Login/Logout events (remembering who logged
/// in on which line, since logout records carry no user).
#[derive(Debug, Default)]
pub struct WtmpState {
    on_line: HashMap<String, String>,
}

impl WtmpState {
    /// The event for one record, if any.
    pub fn event(&mut self, u: &Utmp) -> Option<Payload> {
        if !u.host.is_empty() {
            return None;
        }
        let info = |user: String| LoginInfo {
            user,
            method: AuthMethod::Password,
            service: LoginService::Console,
            src_addr: None,
            src_port: None,
            src_host: None,
            from_user: None,
            pid: u32::try_from(u.pid).ok().filter(|p| *p > 0),
        };
        match u.kind {
            USER_PROCESS if !u.user.is_empty() => {
                self.on_line.insert(u.line.clone(), u.user.clone());
                Some(Payload::Login(info(u.user.clone())))
            }
            DEAD_PROCESS => {
                let user = self.on_line.remove(&u.line)?;
                Some(Payload::Logout(info(user)))
            }
            _ => None,
        }
    }
}

/// Follows a wtmp file from its current end, record by record.
pub struct WtmpTail {
    path: PathBuf,
    file: Option<File>,
    inode: u64,
    pos: u64,
}

impl WtmpTail {
    /// Start at the end of `path`.
    pub fn new(path: &Path) -> WtmpTail {
        let mut t = WtmpTail {
            path: path.to_path_buf(),
            file: None,
            inode: 0,
            pos: 0,
        };
        if let Ok(f) = File::open(path) {
            let m = f.metadata().ok();
            t.inode = m.as_ref().map_or(0, |m| m.ino());
            t.pos = m.map_or(0, |m| m.len() / RECORD as u64 * RECORD as u64);
            t.file = Some(f);
        }
        t
    }

    /// Whole records appended since the last call.
    pub fn read(&mut self) -> io::Result<Vec<Utmp>> {
        let Ok(meta) = std::fs::metadata(&self.path) else {
            return Ok(Vec::new());
        };
        if self.file.is_none() || meta.ino() != self.inode || meta.len() < self.pos {
            self.file = Some(File::open(&self.path)?);
            self.inode = meta.ino();
            self.pos = 0;
        }
        let f = self.file.as_mut().expect("opened");
        f.seek(SeekFrom::Start(self.pos))?;
        let mut out = Vec::new();
        let mut rec = [0u8; RECORD];
        while self.pos + RECORD as u64 <= meta.len() {
            f.read_exact(&mut rec)?;
            self.pos += RECORD as u64;
            out.push(parse_record(&rec));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: i16, pid: i32, line: &str, user: &str, host: &str) -> [u8; RECORD] {
        let mut r = [0u8; RECORD];
        r[0..2].copy_from_slice(&kind.to_ne_bytes());
        r[4..8].copy_from_slice(&pid.to_ne_bytes());
        r[8..8 + line.len()].copy_from_slice(line.as_bytes());
        r[44..44 + user.len()].copy_from_slice(user.as_bytes());
        r[76..76 + host.len()].copy_from_slice(host.as_bytes());
        r
    }

    #[test]
    fn console_login_and_logout_from_appended_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wtmp");
        std::fs::write(&path, record(USER_PROCESS, 1, "tty9", "old", "")).unwrap();
        let mut tail = WtmpTail::new(&path);
        assert!(tail.read().unwrap().is_empty(), "starts at the end");
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&record(USER_PROCESS, 500, "tty1", "alice", ""));
        bytes.extend_from_slice(&record(USER_PROCESS, 501, "pts/0", "bob", "10.0.0.5"));
        bytes.extend_from_slice(&record(DEAD_PROCESS, 500, "tty1", "", ""));
        use std::io::Write;
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(&bytes)
            .unwrap();
        let recs = tail.read().unwrap();
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[1].host, "10.0.0.5");
        let mut st = WtmpState::default();
        let events: Vec<Payload> = recs.iter().filter_map(|r| st.event(r)).collect();
        assert_eq!(events.len(), 2, "remote session left to the sshd log");
        assert!(
            matches!(&events[0], Payload::Login(l) if l.user == "alice" && l.service == LoginService::Console && l.pid == Some(500))
        );
        assert!(matches!(&events[1], Payload::Logout(l) if l.user == "alice"));
    }
}
