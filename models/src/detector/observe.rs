//! The detector's two entry points — one event, one tick — and what each
//! payload kind contributes: logons and admin-port flows become hops, other
//! connections teach the graph, process starts under a remote-execution
//! service and `authorized_keys` writes are traces for the hop before them.

use super::hops::HopObs;
use super::{Detector, HostState, Observed};
use crate::alert::Alert;
use crate::classify::{
    auth_technique, basename, file_technique, is_admin_port, port_technique, remote_spawn,
    service_port, service_technique,
};
use crate::graph::HopKeys;
use crate::registry::{is_internal, is_local_only};
use std::net::IpAddr;
use vigil_proto::{Event, HostId, LoginInfo, NetFlow, Payload};

impl Detector {
    /// The host behind a peer address, else behind a workstation name;
    /// `None` when that is `me` itself or when there is neither a usable
    /// address (loopback, unspecified) nor a name. An unknown address —
    /// internal, public or CGNAT alike — is the address `sshd` or Windows
    /// logged, so it wins over a name and becomes an unmanaged host: a
    /// logon from it is a hop from an unknown host, never a local logon.
    fn resolve_peer(
        &mut self,
        me: HostId,
        addr: Option<IpAddr>,
        name: Option<&str>,
    ) -> Option<HostId> {
        if let Some(ip) = addr {
            if !is_local_only(ip) {
                if let Some(h) = self.registry.by_addr(ip) {
                    return (h != me).then_some(h);
                }
                return Some(self.registry.unmanaged(&ip.to_string(), Some(ip)));
            }
        }
        let name = name.map(str::trim).filter(|n| !n.is_empty() && *n != "-")?;
        if let Some(h) = self.registry.by_name(name) {
            return (h != me).then_some(h);
        }
        Some(self.registry.unmanaged(name, None))
    }

    /// Observes one event; returns the alerts it raised.
    pub fn observe(&mut self, ev: &Event) -> Vec<Alert> {
        self.observe_scored(ev).alerts
    }

    /// Observes one event; returns its score (for logon-like events) and
    /// the alerts it raised.
    pub fn observe_scored(&mut self, ev: &Event) -> Observed {
        let host = ev.header.host;
        let ts = ev.header.ts_ns;
        self.last_ns = self.last_ns.max(ts);
        let mut out = Observed::default();
        self.hosts.entry(host).or_insert_with(|| HostState::new(ts));
        if self.registry.get(host).is_none() {
            self.registry.register(host, "", &[]);
        }
        let ev_id = (host, ev.header.seq);
        match &ev.payload {
            Payload::Login(l) | Payload::AuthFailure(l) | Payload::Logout(l) => {
                let (score, new_edge, alerts) = self.observe_logon(ev, l);
                out.score = Some(score);
                out.new_edge = Some(new_edge);
                out.alerts.extend(alerts);
            }
            Payload::NetConnect(f) | Payload::NetAccept(f) => {
                out.alerts.extend(self.observe_flow(ev, f));
            }
            Payload::ProcessStart(p) => {
                let child = p.exe.as_deref().map(basename).unwrap_or_default();
                let parent = p.parent_exe.as_deref().map(basename).unwrap_or_default();
                let user = p.user.as_deref().map(normalise_user);
                let argv = p.argv.join(" ");
                let proc = (
                    parent.as_str(),
                    child.as_str(),
                    argv.as_str(),
                    user.as_deref(),
                );
                out.alerts.extend(self.process(host, ts, ev_id, proc));
            }
            Payload::FileChange(f) => {
                // an authorized_keys write, a scheduled task's file…
                if let Some(t) = file_technique(&f.path) {
                    out.alerts
                        .extend(self.link_to_hop(host, ts, ev_id, t, None, None, 2.0));
                }
            }
            _ => {}
        }
        out.alerts.extend(self.sigma_alerts(ev));
        out.alerts = self.apply_suppressions(out.alerts, ts);
        out
    }

    /// A logon, failed logon or logout on `ev.header.host` is a hop from
    /// its source (the host itself when the source is unknown or local).
    /// Failures and logouts are scored but never alert; logouts do not
    /// teach the graph. Returns (score, new edge, alerts).
    fn observe_logon(&mut self, ev: &Event, l: &LoginInfo) -> (f64, bool, Vec<Alert>) {
        let (host, ts, ev_id) = (
            ev.header.host,
            ev.header.ts_ns,
            (ev.header.host, ev.header.seq),
        );
        let failure = matches!(ev.payload, Payload::AuthFailure(_));
        let logout = matches!(ev.payload, Payload::Logout(_));
        let user = normalise_user(&l.user);
        let peer = self.resolve_peer(host, l.src_addr, l.src_host.as_deref());
        let obs = HopObs {
            src: peer.unwrap_or(host),
            dst: host,
            user: Some(user),
            port: service_port(&l.service),
            technique: remote_logon_technique(l),
            alertable: peer.is_some() && !failure && !logout,
            failure,
        };
        let (score, new_edge, mut alerts) = self.hop(obs, ts, ev_id, !logout);
        if failure {
            alerts.extend(self.note_failure(peer, host, &normalise_user(&l.user), ts, ev_id));
        } else if !logout {
            // a logon kind that is a technique's trace by itself
            alerts.extend(self.logon_trace(host, ts, ev_id, l));
        }
        (score, new_edge, alerts)
    }

    /// A connection to or from another internal or registered address: on
    /// an admin port it is a hop (no user), otherwise it only teaches the
    /// graph.
    fn observe_flow(&mut self, ev: &Event, f: &NetFlow) -> Vec<Alert> {
        let (host, ts, ev_id) = (
            ev.header.host,
            ev.header.ts_ns,
            (ev.header.host, ev.header.seq),
        );
        let outbound = matches!(ev.payload, Payload::NetConnect(_));
        let remote_ip = f.remote.ip();
        let to_self = remote_ip == f.local.ip();
        if to_self || !(is_internal(remote_ip) || self.registry.by_addr(remote_ip).is_some()) {
            return Vec::new();
        }
        let Some(peer) = self.resolve_peer(host, Some(remote_ip), None) else {
            return Vec::new();
        };
        let port = if outbound {
            f.remote.port()
        } else {
            f.local.port()
        };
        let admin = is_admin_port(port);
        let (src, dst) = if outbound { (host, peer) } else { (peer, host) };
        if !admin {
            self.note_plain_peer(src, dst);
            return Vec::new();
        }
        let obs = HopObs {
            src,
            dst,
            user: None,
            port: Some(port),
            technique: port_technique(port),
            alertable: true,
            failure: false,
        };
        let (_, _, alerts) = self.hop(obs, ts, ev_id, true);
        alerts
    }

    /// Counts a non-admin connection in the graph.
    fn note_plain_peer(&mut self, src: HostId, dst: HostId) {
        self.graph.observe(&HopKeys {
            src: src.0,
            dst: dst.0,
            user: None,
            port: None,
        });
    }

    /// A process start: a child of a remote-execution service is a trace
    /// for the hop before it.
    fn process(
        &mut self,
        host: HostId,
        ts: u64,
        ev_id: (HostId, u64),
        (parent, child, argv, user): (&str, &str, &str, Option<&str>),
    ) -> Vec<Alert> {
        if child.is_empty() {
            return Vec::new();
        }
        let Some(t) = remote_spawn(parent, child, argv) else {
            return Vec::new();
        };
        let bonus = self.cfg.spawn_bonus;
        self.link_to_hop(host, ts, ev_id, t, Some(child.to_string()), user, bonus)
    }

    /// Advances time: traces whose hop never came alert, retrains when due.
    pub fn tick(&mut self, now_ns: u64) -> Vec<Alert> {
        self.last_ns = self.last_ns.max(now_ns);
        let mut alerts = self.expire_pending(now_ns);
        alerts.extend(self.correlate_overdue(self.last_ns));
        match self.retrain_due(now_ns) {
            Some(true) => self.train(now_ns),
            Some(false) => self.train_hosts(now_ns, true),
            None => {}
        }
        self.prune_hops(now_ns);
        self.apply_suppressions(alerts, now_ns)
    }
}

/// Lower-cased user name without a trailing `@domain` or leading `DOMAIN\`.
pub fn normalise_user(u: &str) -> String {
    let u = u.rsplit('\\').next().unwrap_or(u);
    u.split('@').next().unwrap_or(u).trim().to_ascii_lowercase()
}

/// ATT&CK technique of a logon, from its method or else its service.
fn remote_logon_technique(l: &LoginInfo) -> Option<&'static str> {
    auth_technique(&l.method).or_else(|| service_technique(&l.service))
}
