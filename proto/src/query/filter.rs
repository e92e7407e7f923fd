//! [`EventFilter::matches`]: the one definition of which events a filter
//! selects, used by the appliance's store and by test fixtures alike.

use super::EventFilter;
use crate::event::{Event, Payload};

impl EventFilter {
    /// Whether `e` passes every set field of the filter (unset fields match
    /// anything). Pagination (`after`, `limit`, `newest_first`) is about
    /// position, not matching, and is ignored here.
    ///
    /// - `host`: the event's host; `since_ns` inclusive, `until_ns` exclusive.
    /// - `kinds`: one of them (empty = any).
    /// - `user` (exact): a login's target user or its initiating `from_user`
    ///   (`su`/`sudo` caller), or a process start's user.
    /// - `peer`: a flow's remote address, or a login's source address.
    /// - `port`: a flow's remote or local port.
    /// - `process` (substring, case-sensitive): a process start's exe or any
    ///   of its arguments, or a process exit's exe.
    pub fn matches(&self, e: &Event) -> bool {
        let h = &e.header;
        self.host.is_none_or(|host| h.host == host)
            && self.since_ns.is_none_or(|s| h.ts_ns >= s)
            && self.until_ns.is_none_or(|u| h.ts_ns < u)
            && (self.kinds.is_empty() || self.kinds.contains(&e.kind()))
            && self
                .user
                .as_ref()
                .is_none_or(|u| user_matches(&e.payload, u))
            && self.peer.is_none_or(|p| match &e.payload {
                Payload::NetConnect(n) | Payload::NetAccept(n) => n.remote.ip() == p,
                Payload::Login(l) | Payload::Logout(l) | Payload::AuthFailure(l) => {
                    l.src_addr == Some(p)
                }
                _ => false,
            })
            && self.port.is_none_or(|p| match &e.payload {
                Payload::NetConnect(n) | Payload::NetAccept(n) => {
                    n.remote.port() == p || n.local.port() == p
                }
                _ => false,
            })
            && self
                .process
                .as_ref()
                .is_none_or(|needle| process_matches(&e.payload, needle))
    }
}

fn user_matches(payload: &Payload, user: &str) -> bool {
    match payload {
        Payload::Login(l) | Payload::Logout(l) | Payload::AuthFailure(l) => {
            l.user == user || l.from_user.as_deref() == Some(user)
        }
        Payload::ProcessStart(p) => p.user.as_deref() == Some(user),
        _ => false,
    }
}

fn process_matches(payload: &Payload, needle: &str) -> bool {
    match payload {
        Payload::ProcessStart(p) => {
            p.exe.as_deref().is_some_and(|e| e.contains(needle))
                || p.argv.iter().any(|a| a.contains(needle))
        }
        Payload::ProcessExit(p) => p.exe.as_deref().is_some_and(|e| e.contains(needle)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::*;
    use crate::query::EventCursor;
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};

    const H1: HostId = HostId(1);
    const H2: HostId = HostId(2);

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    fn at(host: HostId, ts_ns: u64, payload: Payload) -> Event {
        Event {
            header: EventHeader {
                host,
                seq: 1,
                ts_ns,
            },
            payload,
        }
    }

    fn exec() -> Event {
        at(
            H1,
            100,
            Payload::ProcessStart(ProcessStart {
                exe: Some("/usr/bin/python3".into()),
                argv: vec!["python3".into(), "-c".into(), "import pty".into()],
                user: Some("alice".into()),
                ..ProcessStart::default()
            }),
        )
    }

    fn exit() -> Event {
        at(
            H1,
            100,
            Payload::ProcessExit(ProcessExit {
                pid: 1,
                exit_code: Some(0),
                exe: Some("/usr/bin/python3".into()),
            }),
        )
    }

    fn login(kind: fn(LoginInfo) -> Payload) -> Event {
        at(
            H2,
            200,
            kind(LoginInfo {
                user: "root".into(),
                method: AuthMethod::Password,
                service: LoginService::Su,
                src_addr: Some(ip(5)),
                src_port: Some(40000),
                src_host: None,
                from_user: Some("alice".into()),
                pid: None,
            }),
        )
    }

    fn flow(kind: fn(NetFlow) -> Payload) -> Event {
        at(
            H1,
            300,
            kind(NetFlow {
                transport: Transport::Tcp,
                local: SocketAddr::new(ip(1), 51000),
                remote: SocketAddr::new(ip(5), 22),
                pid: Some(7),
                exe: Some("/usr/bin/ssh".into()),
                repeat: 1,
            }),
        )
    }

    fn file() -> Event {
        at(
            H1,
            400,
            Payload::FileChange(FileChange {
                path: "/etc/python3".into(),
                op: FileOp::Modified,
                size: None,
                mode: None,
                uid: None,
                sha256: None,
                pid: None,
            }),
        )
    }

    /// A filter with one change from the default.
    fn with(edit: impl FnOnce(&mut EventFilter)) -> EventFilter {
        let mut f = EventFilter::default();
        edit(&mut f);
        f
    }

    #[test]
    fn filters_match_as_the_store_does() {
        use Payload::{AuthFailure, Login, Logout, NetAccept, NetConnect};
        #[rustfmt::skip]
        let cases: Vec<(&str, EventFilter, Event, bool)> = vec![
            ("empty filter matches all", with(|_| ()), file(), true),
            ("host", with(|f| f.host = Some(H1)), exec(), true),
            ("other host", with(|f| f.host = Some(H2)), exec(), false),
            ("since is inclusive", with(|f| f.since_ns = Some(100)), exec(), true),
            ("before since", with(|f| f.since_ns = Some(101)), exec(), false),
            ("until is exclusive", with(|f| f.until_ns = Some(100)), exec(), false),
            ("before until", with(|f| f.until_ns = Some(101)), exec(), true),
            ("kind listed", with(|f| f.kinds = vec![EventKind::Login, EventKind::ProcessStart]), exec(), true),
            ("kind not listed", with(|f| f.kinds = vec![EventKind::Login]), exec(), false),
            ("user of a process", with(|f| f.user = Some("alice".into())), exec(), true),
            ("user is exact", with(|f| f.user = Some("Alice".into())), exec(), false),
            ("login target user", with(|f| f.user = Some("root".into())), login(Login), true),
            ("login from_user", with(|f| f.user = Some("alice".into())), login(Login), true),
            ("logout from_user", with(|f| f.user = Some("alice".into())), login(Logout), true),
            ("auth failure user", with(|f| f.user = Some("root".into())), login(AuthFailure), true),
            ("other login user", with(|f| f.user = Some("bob".into())), login(Login), false),
            ("no user on a flow", with(|f| f.user = Some("alice".into())), flow(NetConnect), false),
            ("no user on an exit", with(|f| f.user = Some("alice".into())), exit(), false),
            ("peer of a connect", with(|f| f.peer = Some(ip(5))), flow(NetConnect), true),
            ("peer of an accept", with(|f| f.peer = Some(ip(5))), flow(NetAccept), true),
            ("peer is the remote side", with(|f| f.peer = Some(ip(1))), flow(NetConnect), false),
            ("peer of a login", with(|f| f.peer = Some(ip(5))), login(Login), true),
            ("other login peer", with(|f| f.peer = Some(ip(6))), login(AuthFailure), false),
            ("no peer on a process", with(|f| f.peer = Some(ip(5))), exec(), false),
            ("remote port", with(|f| f.port = Some(22)), flow(NetConnect), true),
            ("local port", with(|f| f.port = Some(51000)), flow(NetAccept), true),
            ("other port", with(|f| f.port = Some(23)), flow(NetConnect), false),
            ("no port on a login", with(|f| f.port = Some(40000)), login(Login), false),
            ("exe substring", with(|f| f.process = Some("python".into())), exec(), true),
            ("argv substring", with(|f| f.process = Some("import pt".into())), exec(), true),
            ("process is case-sensitive", with(|f| f.process = Some("Python".into())), exec(), false),
            ("process of an exit", with(|f| f.process = Some("python".into())), exit(), true),
            ("not a flow's exe", with(|f| f.process = Some("ssh".into())), flow(NetConnect), false),
            ("not a file path", with(|f| f.process = Some("python".into())), file(), false),
            ("every field at once", with(|f| {
                f.host = Some(H1);
                f.since_ns = Some(300);
                f.until_ns = Some(301);
                f.kinds = vec![EventKind::NetConnect];
                f.peer = Some(ip(5));
                f.port = Some(22);
            }), flow(NetConnect), true),
            ("one field off fails the whole filter", with(|f| {
                f.port = Some(22);
                f.user = Some("alice".into());
            }), flow(NetConnect), false),
            ("pagination fields are ignored", with(|f| {
                f.limit = 1;
                f.newest_first = true;
                f.after = Some(EventCursor { host: H2, ts_ns: 9_999, seq: 9 });
            }), exec(), true),
        ];
        for (name, filter, event, want) in cases {
            assert_eq!(filter.matches(&event), want, "{name}");
        }
    }
}
