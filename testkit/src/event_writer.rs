//! [`EventWriter`]: build one host's event stream by hand, with gap-free
//! sequence numbers and payloads filled in the way a sensor fills them.

use std::net::{IpAddr, SocketAddr};
use vigil_proto::event::*;

/// Builds one host's event stream with gap-free sequence numbers.
pub struct EventWriter {
    host: HostId,
    seq: u64,
    /// Events written so far.
    pub events: Vec<Event>,
}

impl EventWriter {
    /// A writer for `host`, starting at seq 1.
    pub fn new(host: HostId) -> Self {
        EventWriter {
            host,
            seq: 0,
            events: Vec::new(),
        }
    }
    /// Append a payload at `ts_ns`; returns its seq.
    pub fn push(&mut self, ts_ns: u64, payload: Payload) -> u64 {
        self.seq += 1;
        self.events.push(Event {
            header: EventHeader {
                host: self.host,
                seq: self.seq,
                ts_ns,
            },
            payload,
        });
        self.seq
    }
    /// A process start.
    #[allow(clippy::too_many_arguments)] // mirrors the ProcessStart fields a test sets
    pub fn exec(
        &mut self,
        ts: u64,
        pid: u32,
        ppid: u32,
        exe: &str,
        argv: &[&str],
        user: &str,
        parent: &str,
    ) -> u64 {
        self.push(
            ts,
            Payload::ProcessStart(ProcessStart {
                pid,
                ppid,
                exe: Some(exe.into()),
                argv: argv.iter().map(|s| s.to_string()).collect(),
                uid: Some(if user == "root" { 0 } else { 1000 }),
                user: Some(user.into()),
                cwd: Some("/".into()),
                parent_exe: Some(parent.into()),
                start_time_ns: Some(ts),
                netns: 0,
                exited_before_enrichment: false,
            }),
        )
    }
    /// An outbound TCP connection (or inbound with `accept`).
    pub fn flow(
        &mut self,
        ts: u64,
        accept: bool,
        local: SocketAddr,
        remote: SocketAddr,
        exe: &str,
    ) -> u64 {
        let fl = NetFlow {
            transport: Transport::Tcp,
            local,
            remote,
            pid: Some(4242),
            exe: Some(exe.into()),
            repeat: 1,
        };
        self.push(
            ts,
            if accept {
                Payload::NetAccept(fl)
            } else {
                Payload::NetConnect(fl)
            },
        )
    }
    /// A login (or failure) over SSH.
    pub fn login(&mut self, ts: u64, ok: bool, user: &str, src: Option<IpAddr>) -> u64 {
        let info = LoginInfo {
            user: user.into(),
            method: AuthMethod::PublicKey,
            service: LoginService::Ssh,
            src_addr: src,
            src_port: src.map(|_| 50_122),
            src_host: None,
            from_user: None,
            pid: Some(3100),
        };
        self.push(
            ts,
            if ok {
                Payload::Login(info)
            } else {
                Payload::AuthFailure(info)
            },
        )
    }
    /// A watched file change.
    pub fn file(&mut self, ts: u64, path: &str, op: FileOp) -> u64 {
        self.push(
            ts,
            Payload::FileChange(FileChange {
                path: path.into(),
                op,
                size: Some(742),
                mode: Some(0o600),
                uid: Some(0),
                sha256: Some([0xab; 32]),
                pid: Some(3150),
            }),
        )
    }
}
