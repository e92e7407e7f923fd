//! Live listings for the analyst: processes (through the collectors'
//! enricher) and sockets (`/proc/thread-self/net/*`, read on a thread in
//! the watched namespace). Output is JSON, cut to fit a control frame.

use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

use super::collect::MAX_COLLECT_BYTES;
use super::isolate::in_netns;

/// One row of the process list.
#[derive(Debug, Serialize)]
pub struct ProcRow {
    /// Process id.
    pub pid: u32,
    /// Parent pid.
    pub ppid: u32,
    /// Real uid.
    pub uid: Option<u32>,
    /// Executable.
    pub exe: Option<String>,
    /// Command line (bounded).
    pub argv: Vec<String>,
    /// Start time, clock ticks after boot (what `KillProcess` names).
    pub start_time_ticks: Option<u64>,
}

/// One socket.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct SocketRow {
    /// `tcp`, `tcp6`, `udp` or `udp6`.
    pub proto: &'static str,
    /// Local address.
    pub local: String,
    /// Remote address.
    pub remote: String,
    /// Kernel state code (TCP: 01 established, 0A listen).
    pub state: String,
    /// Owner uid.
    pub uid: u32,
}

/// JSON of `rows`, dropping rows until it fits: `(json, total, listed)`.
fn bounded_json<T: Serialize>(rows: &[T]) -> (Vec<u8>, u32, u32) {
    let mut shown = rows.len();
    let mut data = serde_json::to_vec(rows).unwrap_or_default();
    while data.len() > MAX_COLLECT_BYTES as usize && shown > 0 {
        shown = shown * 3 / 4;
        data = serde_json::to_vec(&rows[..shown]).unwrap_or_default();
    }
    (data, rows.len() as u32, shown as u32)
}

/// The process list: `(json, total, listed)`.
pub fn processes() -> (Vec<u8>, u32, u32) {
    let mut rows = Vec::new();
    let mut enricher = crate::collect::process::Enricher::new();
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let p = enricher.process_start(pid);
            rows.push(ProcRow {
                pid,
                ppid: p.ppid,
                uid: p.uid,
                exe: p.exe,
                argv: p.argv.into_iter().take(16).collect(),
                start_time_ticks: super::kill::start_time_ticks(pid),
            });
        }
    }
    rows.sort_by_key(|r| r.pid);
    bounded_json(&rows)
}

/// The socket list of the host (or the watched namespace).
pub fn connections(netns: Option<&str>) -> Result<(Vec<u8>, u32, u32), String> {
    let rows = in_netns(netns, || {
        let mut rows = Vec::new();
        for proto in ["tcp", "tcp6", "udp", "udp6"] {
            if let Ok(text) = fs::read_to_string(format!("/proc/thread-self/net/{proto}")) {
                rows.extend(text.lines().skip(1).filter_map(|l| socket_row(proto, l)));
            }
        }
        rows
    })?;
    Ok(bounded_json(&rows))
}

/// One line of `/proc/net/{tcp,udp}[6]`.
fn socket_row(proto: &'static str, line: &str) -> Option<SocketRow> {
    let f: Vec<&str> = line.split_whitespace().collect();
    Some(SocketRow {
        proto,
        local: endpoint(f.get(1)?)?,
        remote: endpoint(f.get(2)?)?,
        state: f.get(3)?.to_string(),
        uid: f.get(7)?.parse().ok()?,
    })
}

/// `0100007F:0016` → `127.0.0.1:22` (the kernel prints each 32-bit word
/// of the address in host byte order).
fn endpoint(s: &str) -> Option<String> {
    let (addr, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words: Vec<u32> = (0..addr.len() / 8)
        .map(|i| u32::from_str_radix(&addr[i * 8..i * 8 + 8], 16))
        .collect::<Result<_, _>>()
        .ok()?;
    let ip = match words.as_slice() {
        [w] => IpAddr::V4(Ipv4Addr::from(w.to_ne_bytes())),
        [a, b, c, d] => {
            let mut o = [0u8; 16];
            for (i, w) in [a, b, c, d].iter().enumerate() {
                o[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(o))
        }
        _ => return None,
    };
    Some(std::net::SocketAddr::new(ip, port).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_lines_parse() {
        let l = "   0: 0100007F:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1234 1";
        let r = socket_row("tcp", l).unwrap();
        assert_eq!(r.local, "127.0.0.1:22");
        assert_eq!(r.remote, "0.0.0.0:0");
        assert_eq!(r.state, "0A");
        let l6 = "   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 1 1";
        assert_eq!(socket_row("tcp6", l6).unwrap().local, "[::1]:8080");
    }

    #[test]
    fn this_process_socket_is_listed() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let (data, total, listed) = connections(None).unwrap();
        assert_eq!(total, listed);
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&data).unwrap();
        assert!(rows
            .iter()
            .any(|r| r["local"] == format!("127.0.0.1:{port}")));
    }
}
