//! Adapter for the LANL 2015 "Comprehensive, Multi-Source Cyber-Security
//! Events" format: `auth.txt`, `proc.txt`, `flows.txt`, `dns.txt`,
//! `redteam.txt`, each plain or `.gz`, read line by line (streaming).
//!
//! LANL names computers (`C1234`), not addresses; each computer gets a
//! stable synthetic address `10.x.y.z` derived from its name so flows and
//! logons resolve to the same host.

use crate::host_ids::name_key;
use flate2::read::MultiGzDecoder;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use vigil_proto::{
    AuthMethod, Event, EventHeader, HostId, LoginInfo, LoginService, NetFlow, Payload,
    ProcessStart, Transport,
};

/// Why a LANL file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LanlError {
    /// I/O failure on a file.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A line that does not have the expected fields.
    #[error("{file} line {line}: {reason}")]
    Parse {
        /// File name.
        file: String,
        /// 1-based line number.
        line: u64,
        /// What was wrong.
        reason: String,
    },
}

/// Finds `name` or `name.gz` in `dir`.
pub fn find(dir: &Path, name: &str) -> Option<PathBuf> {
    [dir.join(name), dir.join(format!("{name}.gz"))]
        .into_iter()
        .find(|p| p.is_file())
}

/// Opens a plain or gzip file as lines.
pub fn open_lines(path: &Path) -> Result<Box<dyn BufRead>, LanlError> {
    let f = File::open(path).map_err(|source| LanlError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let gz = path.extension().is_some_and(|e| e == "gz");
    Ok(if gz {
        Box::new(BufReader::with_capacity(1 << 20, MultiGzDecoder::new(f)))
    } else {
        Box::new(BufReader::with_capacity(1 << 20, f))
    })
}

/// One line of `auth.txt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRecord {
    /// Seconds since the start of the data set.
    pub time: u64,
    /// Source user@domain, exactly as written.
    pub src_user: String,
    /// Destination user@domain.
    pub dst_user: String,
    /// Source computer.
    pub src: String,
    /// Destination computer.
    pub dst: String,
    /// Authentication type (`NTLM`, `Kerberos`, `Negotiate`, `?`).
    pub auth_type: String,
    /// Logon type (`Network`, `RemoteInteractive`…).
    pub logon_type: String,
    /// `LogOn`, `LogOff`, `TGS`, `TGT`, `AuthMap`.
    pub orientation: String,
    /// Success or failure.
    pub success: bool,
}

impl AuthRecord {
    /// Parses one line (9 comma-separated fields).
    pub fn parse(line: &str) -> Option<AuthRecord> {
        let mut it = line.trim_end().split(',');
        let time = it.next()?.parse().ok()?;
        let r = AuthRecord {
            time,
            src_user: it.next()?.to_string(),
            dst_user: it.next()?.to_string(),
            src: it.next()?.to_string(),
            dst: it.next()?.to_string(),
            auth_type: it.next()?.to_string(),
            logon_type: it.next()?.to_string(),
            orientation: it.next()?.to_string(),
            success: it.next()?.eq_ignore_ascii_case("success"),
        };
        it.next().is_none().then_some(r)
    }
}

/// One red-team line: `time,user@domain,src,dst`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RedteamRecord {
    /// Seconds.
    pub time: u64,
    /// user@domain.
    pub user: String,
    /// Source computer.
    pub src: String,
    /// Destination computer.
    pub dst: String,
}

/// Reads `redteam.txt[.gz]` if present (empty set when absent or empty).
pub fn read_redteam(dir: &Path) -> Result<HashSet<RedteamRecord>, LanlError> {
    let Some(path) = find(dir, "redteam.txt") else {
        return Ok(HashSet::new());
    };
    let mut out = HashSet::new();
    for (i, line) in open_lines(&path)?.lines().enumerate() {
        let line = line.map_err(|source| LanlError::Io {
            path: path.clone(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.trim().split(',').collect();
        let parsed = (f.len() == 4).then(|| f[0].parse::<u64>().ok()).flatten();
        let Some(time) = parsed else {
            return Err(LanlError::Parse {
                file: "redteam.txt".into(),
                line: i as u64 + 1,
                reason: format!("expected time,user,src,dst: {line:?}"),
            });
        };
        out.insert(RedteamRecord {
            time,
            user: f[1].to_string(),
            src: f[2].to_string(),
            dst: f[3].to_string(),
        });
    }
    Ok(out)
}

/// Stable host id of a LANL computer name.
pub fn host_id(name: &str) -> HostId {
    crate::host_ids::host_id("lanl", name)
}

/// Stable synthetic address of a LANL computer name.
pub fn host_addr(name: &str) -> IpAddr {
    let h = name_key(name);
    IpAddr::V4(Ipv4Addr::new(10, (h >> 16) as u8, (h >> 8) as u8, h as u8))
}

/// Assigns gap-free per-host sequence numbers.
#[derive(Debug, Default)]
pub struct Sequencer {
    next: HashMap<HostId, u64>,
}

impl Sequencer {
    /// Next seq for a host.
    pub fn next(&mut self, host: HostId) -> u64 {
        let s = self.next.entry(host).or_insert(0);
        *s += 1;
        *s
    }
}

fn logon_service(logon_type: &str) -> LoginService {
    match logon_type {
        "RemoteInteractive" => LoginService::Rdp,
        "Interactive" | "CachedInteractive" | "Unlock" => LoginService::Console,
        other => LoginService::Other(other.to_ascii_lowercase()),
    }
}

fn auth_method(t: &str) -> AuthMethod {
    match t {
        "NTLM" => AuthMethod::Ntlm,
        "Kerberos" => AuthMethod::Kerberos,
        other => AuthMethod::Other(other.to_string()),
    }
}

/// The `proto` event of an auth line (on the destination computer).
pub fn auth_event(r: &AuthRecord, seq: &mut Sequencer) -> Event {
    let host = host_id(&r.dst);
    let remote = r.src != r.dst && r.src != "?";
    let info = LoginInfo {
        user: r.src_user.clone(),
        method: auth_method(&r.auth_type),
        service: logon_service(&r.logon_type),
        src_addr: None,
        src_port: None,
        src_host: remote.then(|| r.src.clone()),
        from_user: (r.dst_user != r.src_user).then(|| r.dst_user.clone()),
        pid: None,
    };
    let payload = if !r.success {
        Payload::AuthFailure(info)
    } else if r.orientation == "LogOff" {
        Payload::Logout(info)
    } else {
        Payload::Login(info)
    };
    Event {
        header: EventHeader {
            host,
            seq: seq.next(host),
            ts_ns: r.time * 1_000_000_000,
        },
        payload,
    }
}

/// A non-auth LANL record as an event, if the line is understood.
pub fn side_event(kind: SideKind, line: &str, seq: &mut Sequencer) -> Option<(u64, Event)> {
    let f: Vec<&str> = line.trim_end().split(',').collect();
    let time: u64 = f.first()?.parse().ok()?;
    let (host, payload) = match kind {
        // time,user@domain,computer,process,start/end
        SideKind::Proc if f.len() == 5 && f[4] == "Start" => (
            f[2],
            Payload::ProcessStart(ProcessStart {
                exe: Some(f[3].to_string()),
                user: Some(f[1].to_string()),
                ..Default::default()
            }),
        ),
        // time,duration,src,src port,dst,dst port,protocol,packets,bytes
        SideKind::Flows if f.len() == 9 => {
            let port = |p: &str| p.trim_start_matches('N').parse::<u16>().unwrap_or(0);
            let dport = if f[5].starts_with('N') { 0 } else { port(f[5]) };
            (
                f[2],
                Payload::NetConnect(NetFlow {
                    transport: if f[6] == "17" {
                        Transport::Udp
                    } else {
                        Transport::Tcp
                    },
                    local: SocketAddr::new(host_addr(f[2]), port(f[3])),
                    remote: SocketAddr::new(host_addr(f[4]), dport),
                    pid: None,
                    exe: None,
                    repeat: 1,
                }),
            )
        }
        _ => return None,
    };
    let id = host_id(host);
    Some((
        time,
        Event {
            header: EventHeader {
                host: id,
                seq: seq.next(id),
                ts_ns: time * 1_000_000_000,
            },
            payload,
        },
    ))
}

/// Which side file a line comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SideKind {
    /// `proc.txt`.
    Proc,
    /// `flows.txt`.
    Flows,
}

/// Streams one side file, one parsed event ahead.
pub struct SideStream {
    kind: SideKind,
    lines: Box<dyn BufRead>,
    peeked: Option<(u64, Event)>,
    buf: String,
}

impl SideStream {
    /// Opens a side file when present.
    pub fn open(dir: &Path, name: &str, kind: SideKind) -> Result<Option<Self>, LanlError> {
        let Some(p) = find(dir, name) else {
            return Ok(None);
        };
        Ok(Some(SideStream {
            kind,
            lines: open_lines(&p)?,
            peeked: None,
            buf: String::new(),
        }))
    }

    /// Pops every event with time ≤ `until` (they precede that auth line).
    pub fn drain_until(&mut self, until: u64, seq: &mut Sequencer, out: &mut Vec<Event>) {
        loop {
            if self.peeked.is_none() {
                self.buf.clear();
                match self.lines.read_line(&mut self.buf) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => self.peeked = side_event(self.kind, &self.buf, seq),
                }
                if self.peeked.is_none() {
                    continue;
                }
            }
            match &self.peeked {
                Some((t, _)) if *t <= until => {
                    if let Some((_, e)) = self.peeked.take() {
                        out.push(e);
                    }
                }
                _ => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_auth_lines() {
        let r =
            AuthRecord::parse("150885,U620@DOM1,U620@DOM1,C17693,C1003,NTLM,Network,LogOn,Success")
                .unwrap();
        assert_eq!(r.time, 150885);
        assert_eq!(r.src, "C17693");
        assert!(r.success);
        let mut s = Sequencer::default();
        let e = auth_event(&r, &mut s);
        assert_eq!(e.header.host, host_id("C1003"));
        assert_eq!(e.header.seq, 1);
        let Payload::Login(l) = e.payload else {
            panic!("login expected")
        };
        assert_eq!(l.src_host.as_deref(), Some("C17693"));
        assert_eq!(l.method, AuthMethod::Ntlm);
        assert!(AuthRecord::parse("1,a,b,c").is_none());
        let f = AuthRecord::parse("2,C1$@DOM1,C1$@DOM1,C1,C1,?,?,LogOff,Success").unwrap();
        assert!(matches!(auth_event(&f, &mut s).payload, Payload::Logout(_)));
    }

    #[test]
    fn parses_side_lines() {
        let mut s = Sequencer::default();
        let (t, e) = side_event(SideKind::Proc, "5,C553$@DOM1,C553,P16,Start", &mut s).unwrap();
        assert_eq!(t, 5);
        assert!(matches!(e.payload, Payload::ProcessStart(_)));
        assert!(side_event(SideKind::Proc, "5,C553$@DOM1,C553,P16,End", &mut s).is_none());
        let (_, e) = side_event(SideKind::Flows, "9,0,C1,N1,C2,445,6,3,200", &mut s).unwrap();
        let Payload::NetConnect(f) = e.payload else {
            panic!("flow expected")
        };
        assert_eq!(f.remote.port(), 445);
        assert_eq!(f.remote.ip(), host_addr("C2"));
    }
}
