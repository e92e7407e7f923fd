//! Decoding of the records the eBPF programs (`sensor/bpf/vigil.bpf.c`)
//! put in their ring buffers. Pure: bytes in, typed records out.
//!
//! The bytes come from our own kernel programs, but a layout mismatch (an
//! object built from another revision of the C source) must not panic or
//! over-read: every length is checked against the record, and a record that
//! does not fit is an error, counted by the caller.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use thiserror::Error;

/// Record layout version, `ABI_VERSION` in the C source.
pub const ABI_VERSION: u32 = 1;

const KIND_EXEC: u32 = 1;
const KIND_EXIT: u32 = 2;
const KIND_CONNECT: u32 = 3;
const KIND_ACCEPT: u32 = 4;
const KIND_HANDSHAKE: u32 = 5;

const F_ARGV_TRUNC: u16 = 1;
const F_EXE_TRUNC: u16 = 2;
const F_CWD_TRUNC: u16 = 4;
const F_NO_EXE: u16 = 8;
const F_NO_CWD: u16 = 16;

/// `struct exec_hdr`.
const EXEC_HDR: usize = 48;
/// `struct exit_rec`.
const EXIT_REC: usize = 24;
/// `struct net_rec`.
const NET_REC: usize = 48;

/// Why a ring-buffer record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RecordError {
    /// Shorter than its fixed part.
    #[error("record of {len} bytes is shorter than its header ({need})")]
    Short {
        /// Bytes received.
        len: usize,
        /// Bytes the header needs.
        need: usize,
    },
    /// A kind this build does not know.
    #[error("unknown record kind {0}")]
    UnknownKind(u32),
    /// Built from a different revision of the C source.
    #[error("record ABI {0}, expected {ABI_VERSION}")]
    Abi(u32),
    /// The variable part is longer than the record.
    #[error("record lengths ({need} bytes) exceed the record ({len} bytes)")]
    Lengths {
        /// Bytes the header's lengths need.
        need: usize,
        /// Bytes received.
        len: usize,
    },
}

/// A path as the kernel program saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelPath {
    /// The whole path.
    Full(String),
    /// Too deep or too long to walk in the kernel: read it from `/proc`.
    Truncated,
    /// The task has none (e.g. no executable file).
    None,
}

/// One exec, from `sched_process_exec`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRecord {
    /// Process id (tgid).
    pub tgid: u32,
    /// Parent's tgid.
    pub ppid: u32,
    /// Effective uid (the owner `/proc/<pid>` shows).
    pub uid: u32,
    /// `task->start_boottime`, ns since boot including suspend.
    pub start_boottime_ns: u64,
    /// Network-namespace inode.
    pub netns: u64,
    /// Executable (`mm->exe_file`).
    pub exe: KernelPath,
    /// Working directory (`fs->pwd`).
    pub cwd: KernelPath,
    /// Raw `argv` bytes (NUL-separated, as in `/proc/<pid>/cmdline`).
    pub argv: Vec<u8>,
    /// More argv bytes existed than were captured.
    pub argv_truncated: bool,
}

/// One thread-group leader's exit, from `sched_process_exit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitRecord {
    /// Process id (tgid).
    pub tgid: u32,
    /// Parent's tgid at exit.
    pub ppid: u32,
    /// Raw wait status (`task->exit_code`).
    pub status: u32,
    /// Network-namespace inode.
    pub netns: u64,
}

/// A TCP connect (SYN sent) or accept, with the process that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetRecord {
    /// Process id (tgid) of the caller.
    pub tgid: u32,
    /// Local address.
    pub local: SocketAddr,
    /// Remote address.
    pub remote: SocketAddr,
}

/// One decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A process exec'd.
    Exec(ExecRecord),
    /// A process exited.
    Exit(ExitRecord),
    /// This host opened a TCP connection.
    Connect(NetRecord),
    /// A TCP connection to this host was accepted.
    Accept(NetRecord),
    /// A TCP connection to this host completed its handshake (reported
    /// instead of `Accept` where no accept program runs). The handshake
    /// ends in softirq, with no process current: `tgid` is the process that
    /// opened the listening socket (`listen(2)`), 0 when the kernel program
    /// did not see that (a listener older than the sensor).
    Handshake(NetRecord),
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .map_or(0, |s| u16::from_ne_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from(u32_at(b, at)) | u64::from(u32_at(b, at + 4)) << 32
}

/// Decode one ring-buffer record.
pub fn decode(b: &[u8]) -> Result<Record, RecordError> {
    let need = |n: usize| {
        if b.len() < n {
            Err(RecordError::Short {
                len: b.len(),
                need: n,
            })
        } else {
            Ok(())
        }
    };
    need(4)?;
    match u32_at(b, 0) {
        KIND_EXEC => {
            need(EXEC_HDR)?;
            decode_exec(b).map(Record::Exec)
        }
        KIND_EXIT => {
            need(EXIT_REC)?;
            Ok(Record::Exit(ExitRecord {
                tgid: u32_at(b, 4),
                ppid: u32_at(b, 8),
                status: u32_at(b, 12),
                netns: u64_at(b, 16),
            }))
        }
        k @ (KIND_CONNECT | KIND_ACCEPT | KIND_HANDSHAKE) => {
            need(NET_REC)?;
            let rec = decode_net(b);
            Ok(match k {
                KIND_CONNECT => Record::Connect(rec),
                KIND_ACCEPT => Record::Accept(rec),
                _ => Record::Handshake(rec),
            })
        }
        other => Err(RecordError::UnknownKind(other)),
    }
}

fn decode_exec(b: &[u8]) -> Result<ExecRecord, RecordError> {
    let abi = u32_at(b, 44);
    if abi != ABI_VERSION {
        return Err(RecordError::Abi(abi));
    }
    let exe_len = usize::from(u16_at(b, 36));
    let cwd_len = usize::from(u16_at(b, 38));
    let argv_len = usize::from(u16_at(b, 40));
    let flags = u16_at(b, 42);
    let data = &b[EXEC_HDR..];
    let total = exe_len + cwd_len + argv_len;
    if total > data.len() {
        return Err(RecordError::Lengths {
            need: EXEC_HDR + total,
            len: b.len(),
        });
    }
    let (exe, rest) = data.split_at(exe_len);
    let (cwd, rest) = rest.split_at(cwd_len);
    let path = |bytes: &[u8], trunc: u16, none: u16| {
        if flags & none != 0 {
            KernelPath::None
        } else if flags & trunc != 0 {
            KernelPath::Truncated
        } else {
            KernelPath::Full(join_components(bytes))
        }
    };
    Ok(ExecRecord {
        tgid: u32_at(b, 4),
        ppid: u32_at(b, 8),
        uid: u32_at(b, 12),
        start_boottime_ns: u64_at(b, 16),
        netns: u64_at(b, 24),
        exe: path(exe, F_EXE_TRUNC, F_NO_EXE),
        cwd: path(cwd, F_CWD_TRUNC, F_NO_CWD),
        argv: rest[..argv_len].to_vec(),
        argv_truncated: flags & F_ARGV_TRUNC != 0,
    })
}

/// A path from its NUL-terminated components, leaf first (the order the
/// kernel program walks `d_parent`): `b"true\0bin\0usr\0"` → `/usr/bin/true`.
/// No component is the root itself: none at all means `/`.
pub fn join_components(bytes: &[u8]) -> String {
    let parts: Vec<&[u8]> = bytes.split(|c| *c == 0).filter(|p| !p.is_empty()).collect();
    if parts.is_empty() {
        return "/".into();
    }
    let mut out = Vec::with_capacity(bytes.len() + 1);
    for p in parts.iter().rev() {
        out.push(b'/');
        out.extend_from_slice(p);
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn decode_net(b: &[u8]) -> NetRecord {
    let family = u16_at(b, 8);
    let lport = u16_at(b, 10);
    // The remote port is kept in network byte order by the kernel.
    let rport = u16::from_be(u16_at(b, 12));
    let ip = |at: usize| -> IpAddr {
        if family == libc::AF_INET6 as u16 {
            let mut a = [0u8; 16];
            a.copy_from_slice(&b[at..at + 16]);
            let v6 = Ipv6Addr::from(a);
            // A v4-mapped peer of a dual-stack socket, as sock_diag shows it.
            IpAddr::V6(v6)
        } else {
            IpAddr::V4(Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3]))
        }
    };
    NetRecord {
        tgid: u32_at(b, 4),
        local: SocketAddr::new(ip(16), lport),
        remote: SocketAddr::new(ip(32), rport),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn exec_bytes(exe: &[u8], cwd: &[u8], argv: &[u8], flags: u16) -> Vec<u8> {
        let mut b = Vec::new();
        for v in [KIND_EXEC, 42, 7, 1000] {
            b.extend_from_slice(&v.to_ne_bytes());
        }
        b.extend_from_slice(&123_456_789u64.to_ne_bytes());
        b.extend_from_slice(&4_026_531_840u64.to_ne_bytes());
        b.extend_from_slice(&(argv.len() as u32).to_ne_bytes());
        for v in [exe.len() as u16, cwd.len() as u16, argv.len() as u16, flags] {
            b.extend_from_slice(&v.to_ne_bytes());
        }
        b.extend_from_slice(&ABI_VERSION.to_ne_bytes());
        assert_eq!(b.len(), EXEC_HDR);
        b.extend_from_slice(exe);
        b.extend_from_slice(cwd);
        b.extend_from_slice(argv);
        b
    }

    #[test]
    fn decodes_an_exec() {
        let b = exec_bytes(b"true\0bin\0usr\0", b"tmp\0", b"/bin/true\0-x\0", 0);
        assert_eq!(
            decode(&b),
            Ok(Record::Exec(ExecRecord {
                tgid: 42,
                ppid: 7,
                uid: 1000,
                start_boottime_ns: 123_456_789,
                netns: 4_026_531_840,
                exe: KernelPath::Full("/usr/bin/true".into()),
                cwd: KernelPath::Full("/tmp".into()),
                argv: b"/bin/true\0-x\0".to_vec(),
                argv_truncated: false,
            }))
        );
    }

    #[test]
    fn root_cwd_truncation_and_missing_exe() {
        let b = exec_bytes(b"", b"", b"", F_NO_EXE | F_ARGV_TRUNC);
        let Ok(Record::Exec(e)) = decode(&b) else {
            panic!()
        };
        assert_eq!(
            (e.exe, e.cwd),
            (KernelPath::None, KernelPath::Full("/".into()))
        );
        assert!(e.argv_truncated);
        let b = exec_bytes(b"x\0", b"y\0", b"", F_EXE_TRUNC | F_CWD_TRUNC);
        let Ok(Record::Exec(e)) = decode(&b) else {
            panic!()
        };
        assert_eq!(
            (e.exe, e.cwd),
            (KernelPath::Truncated, KernelPath::Truncated)
        );
    }

    #[test]
    fn rejects_bad_lengths_kinds_and_abi() {
        let mut b = exec_bytes(b"a\0", b"", b"", 0);
        b.truncate(EXEC_HDR + 1);
        assert!(matches!(decode(&b), Err(RecordError::Lengths { .. })));
        let mut b = exec_bytes(b"", b"", b"", 0);
        b[44..48].copy_from_slice(&9u32.to_ne_bytes());
        assert_eq!(decode(&b), Err(RecordError::Abi(9)));
        assert_eq!(
            decode(&99u32.to_ne_bytes()),
            Err(RecordError::UnknownKind(99))
        );
        assert!(matches!(decode(&[1, 0]), Err(RecordError::Short { .. })));
    }

    #[test]
    fn decodes_exit_and_net_records() {
        let mut b = Vec::new();
        for v in [KIND_EXIT, 5, 4, 3 << 8] {
            b.extend_from_slice(&v.to_ne_bytes());
        }
        b.extend_from_slice(&77u64.to_ne_bytes());
        assert_eq!(
            decode(&b),
            Ok(Record::Exit(ExitRecord {
                tgid: 5,
                ppid: 4,
                status: 768,
                netns: 77
            }))
        );
        let mut b = Vec::new();
        b.extend_from_slice(&KIND_ACCEPT.to_ne_bytes());
        b.extend_from_slice(&9u32.to_ne_bytes());
        b.extend_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        b.extend_from_slice(&8080u16.to_ne_bytes());
        b.extend_from_slice(&40000u16.to_be().to_ne_bytes());
        b.extend_from_slice(&0u16.to_ne_bytes());
        b.extend_from_slice(&[127, 0, 0, 1]);
        b.extend_from_slice(&[0; 12]);
        b.extend_from_slice(&[10, 0, 0, 2]);
        b.extend_from_slice(&[0; 12]);
        assert_eq!(
            decode(&b),
            Ok(Record::Accept(NetRecord {
                tgid: 9,
                local: "127.0.0.1:8080".parse().unwrap(),
                remote: "10.0.0.2:40000".parse().unwrap(),
            }))
        );
    }

    #[test]
    fn joins_path_components() {
        assert_eq!(join_components(b"c\0b\0a\0"), "/a/b/c");
        assert_eq!(join_components(b""), "/");
        assert_eq!(join_components(b"only"), "/only");
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(b in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&b);
        }

        #[test]
        fn net_records_round_trip(
            kind in prop_oneof![Just(KIND_CONNECT), Just(KIND_ACCEPT), Just(KIND_HANDSHAKE)],
            tgid in any::<u32>(),
            v6 in any::<bool>(),
            lport in any::<u16>(),
            rport in any::<u16>(),
            laddr in any::<[u8; 16]>(),
            raddr in any::<[u8; 16]>(),
            extra in proptest::collection::vec(any::<u8>(), 0..16),
        ) {
            let family = if v6 { libc::AF_INET6 } else { libc::AF_INET } as u16;
            let mut b = Vec::new();
            b.extend_from_slice(&kind.to_ne_bytes());
            b.extend_from_slice(&tgid.to_ne_bytes());
            b.extend_from_slice(&family.to_ne_bytes());
            b.extend_from_slice(&lport.to_ne_bytes());
            b.extend_from_slice(&rport.to_be().to_ne_bytes());
            b.extend_from_slice(&0u16.to_ne_bytes());
            b.extend_from_slice(&laddr);
            b.extend_from_slice(&raddr);
            // Trailing bytes (a newer, longer layout) are ignored.
            b.extend_from_slice(&extra);
            let ip = |a: [u8; 16]| if v6 {
                IpAddr::V6(Ipv6Addr::from(a))
            } else {
                IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
            };
            let want = NetRecord {
                tgid,
                local: SocketAddr::new(ip(laddr), lport),
                remote: SocketAddr::new(ip(raddr), rport),
            };
            let got = decode(&b);
            prop_assert_eq!(got, Ok(match kind {
                KIND_CONNECT => Record::Connect(want),
                KIND_ACCEPT => Record::Accept(want),
                _ => Record::Handshake(want),
            }));
            // Cut short anywhere: an error, never a panic or a record.
            for n in 0..NET_REC {
                prop_assert!(decode(&b[..n]).is_err());
            }
        }

        #[test]
        fn decoding_arbitrary_exec_bodies_never_panics(
            kind in 1u32..7,
            lens in proptest::collection::vec(any::<u16>(), 4),
            body in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            let mut b = kind.to_ne_bytes().to_vec();
            b.resize(36, 0);
            for l in &lens {
                b.extend_from_slice(&l.to_ne_bytes());
            }
            b.extend_from_slice(&ABI_VERSION.to_ne_bytes());
            b.extend_from_slice(&body);
            let _ = decode(&b);
        }
    }
}
