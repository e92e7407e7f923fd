//! Network containment with nftables: isolation (one `inet` table,
//! default-drop, replaced in ONE `nft -f` transaction) and blocked peers
//! (a table of their own). What is in force is kept in the state
//! directory, re-applied at start, and lifted only when the last isolation
//! in force expires or a `Release` comes; our tables are the only thing we
//! ever add or delete, so release restores exactly the previous ruleset.
//!
//! With `--netns NAME` everything runs inside that namespace.

use std::fs;
use std::io::Write;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Command as Proc, Stdio};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use vigil_proto::IsolationReceipt;

use super::{ResponseCtx, ResponseError};
use crate::enroll::write_private;

/// Name of the isolation table.
pub const TABLE: &str = vigil_proto::command::ISOLATION_TABLE;
/// Name of the blocked-peers table.
pub use vigil_proto::command::BLOCK_TABLE;
/// Isolations and blocks in force (JSON, 0600).
pub const STATE_FILE: &str = "response_state.json";

/// One isolation command in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Isolation {
    /// The command that asked for it.
    pub id: u64,
    /// When it lifts by itself.
    pub expires_ns: Option<u64>,
    /// Addresses allowed besides the appliance.
    pub allow: Vec<IpAddr>,
    /// DHCP and router discovery allowed.
    pub allow_dhcp_nd: bool,
}

/// What containment is in force (persisted).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Isolations in force; the host is isolated while any is.
    pub isolations: Vec<Isolation>,
    /// Blocked peers.
    pub blocked: Vec<IpAddr>,
}

impl State {
    /// Load from the state directory (nothing in force when absent).
    pub fn load(dir: &Path) -> Result<State, ResponseError> {
        let path = dir.join(STATE_FILE);
        match fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| ResponseError::Store(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(ResponseError::Store(format!("{}: {e}", path.display()))),
        }
    }

    fn save(&self, dir: &Path) -> Result<(), String> {
        let text = serde_json::to_vec_pretty(self).map_err(|e| e.to_string())?;
        write_private(&dir.join(STATE_FILE), &text).map_err(|e| e.to_string())
    }

    /// Drop isolations whose expiry passed; true if any was dropped.
    fn prune(&mut self, now_ns: u64) -> bool {
        let before = self.isolations.len();
        self.isolations
            .retain(|i| i.expires_ns.is_none_or(|e| e > now_ns));
        self.isolations.len() != before
    }

    /// The earliest expiry among isolations in force.
    pub fn next_expiry(&self) -> Option<u64> {
        self.isolations.iter().filter_map(|i| i.expires_ns).min()
    }

    /// When the host stops being isolated if nothing else happens.
    fn until_ns(&self) -> Option<u64> {
        let mut until = 0;
        for i in &self.isolations {
            until = until.max(i.expires_ns?);
        }
        Some(until)
    }
}

/// The isolation ruleset for the isolations in force: one table replaced
/// atomically (the `add`/`delete` prelude makes the transaction valid
/// whether or not the table exists). Let through: loopback; UDP to the
/// appliance's QUIC port and established replies from it; the extra
/// allowed addresses (outbound and their replies); IPv6 neighbour
/// discovery, always, because without it the appliance's IPv6 address
/// stops resolving (IPv4's ARP is not seen by `inet` tables); DHCP and
/// router discovery when an isolation asks for it.
pub fn isolation_ruleset(appliance: &[IpAddr], port: u16, active: &[Isolation]) -> String {
    let mut extra: Vec<IpAddr> = active.iter().flat_map(|i| i.allow.clone()).collect();
    extra.sort();
    extra.dedup();
    let dhcp = active.iter().any(|i| i.allow_dhcp_nd);
    let nd = "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept";
    let mut input = vec!["iif \"lo\" accept".to_string(), nd.to_string()];
    let mut output = vec!["oif \"lo\" accept".to_string(), nd.to_string()];
    for (family, addrs) in split(appliance) {
        input.push(format!(
            "{family} saddr {{ {addrs} }} udp sport {port} ct state established accept"
        ));
        output.push(format!(
            "{family} daddr {{ {addrs} }} udp dport {port} accept"
        ));
    }
    for (family, addrs) in split(&extra) {
        input.push(format!(
            "{family} saddr {{ {addrs} }} ct state established,related accept"
        ));
        output.push(format!("{family} daddr {{ {addrs} }} accept"));
    }
    if dhcp {
        input.push("udp sport 67 udp dport 68 accept".into());
        input.push("udp sport 547 udp dport 546 accept".into());
        input.push("icmpv6 type nd-router-advert accept".into());
        output.push("udp sport 68 udp dport 67 accept".into());
        output.push("udp sport 546 udp dport 547 accept".into());
        output.push("icmpv6 type nd-router-solicit accept".into());
    }
    let chain = |name: &str, rules: &[String]| {
        let mut c =
            format!("  chain {name} {{\n    type filter hook {name} priority -200; policy drop;\n");
        for r in rules {
            c += &format!("    {r}\n");
        }
        c + "  }\n"
    };
    format!(
        "add table inet {TABLE}\ndelete table inet {TABLE}\ntable inet {TABLE} {{\n{}{}{}}}\n",
        chain("input", &input),
        chain("output", &output),
        chain("forward", &[]),
    )
}

/// The blocked-peers table: drop everything to and from each address.
pub fn block_ruleset(blocked: &[IpAddr]) -> String {
    let mut input = Vec::new();
    let mut output = Vec::new();
    for (family, addrs) in split(blocked) {
        input.push(format!("{family} saddr {{ {addrs} }} drop"));
        output.push(format!("{family} daddr {{ {addrs} }} drop"));
    }
    let chain = |name: &str, rules: &[String]| {
        let mut c = format!(
            "  chain {name} {{\n    type filter hook {name} priority -190; policy accept;\n"
        );
        for r in rules {
            c += &format!("    {r}\n");
        }
        c + "  }\n"
    };
    format!(
        "add table inet {BLOCK_TABLE}\ndelete table inet {BLOCK_TABLE}\ntable inet {BLOCK_TABLE} {{\n{}{}}}\n",
        chain("input", &input),
        chain("output", &output),
    )
}

/// `(nft family, "a, b")` for the IPv4 and the IPv6 addresses present.
fn split(addrs: &[IpAddr]) -> Vec<(&'static str, String)> {
    let join = |v6: bool| {
        addrs
            .iter()
            .filter(|a| a.is_ipv6() == v6)
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    [("ip", join(false)), ("ip6", join(true))]
        .into_iter()
        .filter(|(_, a)| !a.is_empty())
        .collect()
}

/// Run one `nft -f -` transaction (in the namespace, if any).
pub fn nft(netns: Option<&str>, script: &str) -> Result<(), String> {
    let mut c = match netns {
        Some(ns) => {
            let mut c = Proc::new("ip");
            c.args(["netns", "exec", ns, "nft", "-f", "-"]);
            c
        }
        None => {
            let mut c = Proc::new("nft");
            c.args(["-f", "-"]);
            c
        }
    };
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run nft: {e}"))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(script.as_bytes())
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Whether our table `name` exists.
pub fn table_exists(netns: Option<&str>, name: &str) -> bool {
    let mut c = match netns {
        Some(ns) => {
            let mut c = Proc::new("ip");
            c.args(["netns", "exec", ns, "nft"]);
            c
        }
        None => Proc::new("nft"),
    };
    c.args(["list", "table", "inet", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn delete_table(netns: Option<&str>, name: &str) -> Result<bool, String> {
    let existed = table_exists(netns, name);
    nft(
        netns,
        &format!("add table inet {name}\ndelete table inet {name}\n"),
    )?;
    Ok(existed)
}

fn apply_isolation(ctx: &ResponseCtx, state: &State) -> Result<[u8; 32], String> {
    let script = isolation_ruleset(&ctx.appliance_addrs, ctx.appliance_port, &state.isolations);
    nft(ctx.netns.as_deref(), &script)?;
    Ok(Sha256::digest(script.as_bytes()).into())
}

/// Add an isolation (replacing one with the same id) and install the
/// ruleset for all in force. The state is saved before the table is
/// installed, so a crash in between is repaired by [`restore`].
pub fn isolate(
    ctx: &ResponseCtx,
    state: &mut State,
    iso: Isolation,
    now_ns: u64,
) -> Result<IsolationReceipt, String> {
    if ctx.appliance_addrs.is_empty() {
        return Err("no pinned appliance address; refusing to cut the sensor off".into());
    }
    state.prune(now_ns);
    state.isolations.retain(|i| i.id != iso.id);
    state.isolations.push(iso);
    state.save(&ctx.state_dir)?;
    let sha = apply_isolation(ctx, state)?;
    let (ok, detail) = self_check(ctx);
    let mut allowed: Vec<IpAddr> = ctx.appliance_addrs.clone();
    allowed.extend(
        state
            .isolations
            .iter()
            .flat_map(|i| i.allow.iter().copied()),
    );
    allowed.sort();
    allowed.dedup();
    Ok(IsolationReceipt {
        ruleset_sha256: sha,
        allowed,
        until_ns: state.until_ns(),
        self_check_ok: ok,
        self_check: detail,
    })
}

/// Lift every isolation: delete our table only. `Ok(true)` if it existed.
pub fn release(ctx: &ResponseCtx, state: &mut State) -> Result<bool, String> {
    state.isolations.clear();
    state.save(&ctx.state_dir)?;
    delete_table(ctx.netns.as_deref(), TABLE)
}

/// Drop isolations whose expiry passed: the table goes when none is left,
/// else it is re-installed for those still in force. `Ok(true)` if
/// anything changed.
pub fn expire(ctx: &ResponseCtx, state: &mut State, now_ns: u64) -> Result<bool, String> {
    if !state.prune(now_ns) {
        return Ok(false);
    }
    state.save(&ctx.state_dir)?;
    if state.isolations.is_empty() {
        delete_table(ctx.netns.as_deref(), TABLE)?;
    } else {
        apply_isolation(ctx, state)?;
    }
    Ok(true)
}

/// At start: re-install what the state says is in force (a reboot or a
/// flushed ruleset lost it), dropping what expired meanwhile.
pub fn restore(ctx: &ResponseCtx, state: &mut State, now_ns: u64) -> Result<(), String> {
    if state.prune(now_ns) {
        state.save(&ctx.state_dir)?;
        if state.isolations.is_empty() {
            delete_table(ctx.netns.as_deref(), TABLE)?;
        }
    }
    if !state.isolations.is_empty() {
        apply_isolation(ctx, state)?;
    }
    if !state.blocked.is_empty() {
        nft(ctx.netns.as_deref(), &block_ruleset(&state.blocked))?;
    }
    Ok(())
}

/// Block one peer (never the appliance). Returns the block table's hash.
pub fn block_peer(ctx: &ResponseCtx, state: &mut State, addr: IpAddr) -> Result<[u8; 32], String> {
    if !state.blocked.contains(&addr) {
        state.blocked.push(addr);
        state.blocked.sort();
    }
    state.save(&ctx.state_dir)?;
    let script = block_ruleset(&state.blocked);
    nft(ctx.netns.as_deref(), &script)?;
    Ok(Sha256::digest(script.as_bytes()).into())
}

/// The isolation self-check: our table is installed, and a UDP datagram to
/// each pinned appliance address on the QUIC port is accepted by the local
/// stack of the isolated namespace (a drop in our output chain makes
/// `send` fail with EPERM). It cannot see the appliance answer; the
/// appliance receiving this receipt over the same QUIC connection, after
/// the table went in, is the end-to-end proof.
pub fn self_check(ctx: &ResponseCtx) -> (bool, String) {
    if !table_exists(ctx.netns.as_deref(), TABLE) {
        return (false, format!("table inet {TABLE} not found after install"));
    }
    let targets: Vec<SocketAddr> = ctx
        .appliance_addrs
        .iter()
        .map(|a| SocketAddr::new(*a, ctx.appliance_port))
        .collect();
    let probe = move || -> Vec<(SocketAddr, Result<(), String>)> {
        targets
            .iter()
            .map(|t| {
                let bind: SocketAddr = if t.is_ipv4() {
                    "0.0.0.0:0".parse().expect("literal")
                } else {
                    "[::]:0".parse().expect("literal")
                };
                let r = UdpSocket::bind(bind)
                    .and_then(|s| s.send_to(&[], t))
                    .map(|_| ())
                    .map_err(|e| e.to_string());
                (*t, r)
            })
            .collect()
    };
    let results = match in_netns(ctx.netns.as_deref(), probe) {
        Ok(r) => r,
        Err(e) => return (false, format!("probe: {e}")),
    };
    let ok = results.iter().any(|(_, r)| r.is_ok());
    let detail = results
        .iter()
        .map(|(t, r)| match r {
            Ok(()) => format!("udp probe to {t}: sent"),
            Err(e) => format!("udp probe to {t}: {e}"),
        })
        .collect::<Vec<_>>()
        .join("; ");
    (ok, format!("table inet {TABLE} installed; {detail}"))
}

/// Run `f` on a thread that joined network namespace `netns` (the calling
/// thread and the rest of the sensor stay where they are).
pub fn in_netns<T: Send>(netns: Option<&str>, f: impl FnOnce() -> T + Send) -> Result<T, String> {
    let Some(ns) = netns else { return Ok(f()) };
    let file =
        fs::File::open(format!("/run/netns/{ns}")).map_err(|e| format!("netns {ns}: {e}"))?;
    std::thread::scope(|s| {
        s.spawn(move || {
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("setns {ns}: {e}"))?;
            Ok(f())
        })
        .join()
        .map_err(|_| "probe thread panicked".to_string())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iso(id: u64, expires_ns: Option<u64>, dhcp: bool) -> Isolation {
        Isolation {
            id,
            expires_ns,
            allow: vec!["192.0.2.9".parse().unwrap()],
            allow_dhcp_nd: dhcp,
        }
    }

    #[test]
    fn the_ruleset_is_one_default_drop_table_allowing_the_appliance_port() {
        let app: Vec<IpAddr> = vec!["10.0.0.1".parse().unwrap(), "fd00::1".parse().unwrap()];
        let s = isolation_ruleset(&app, 7443, &[iso(1, None, false)]);
        assert!(s.starts_with("add table inet vigil_isolate\ndelete table inet vigil_isolate\n"));
        assert_eq!(
            s.matches("policy drop").count(),
            3,
            "input, output, forward"
        );
        assert!(s.contains("ip daddr { 10.0.0.1 } udp dport 7443 accept"));
        assert!(s.contains("ip6 saddr { fd00::1 } udp sport 7443 ct state established accept"));
        assert!(s.contains("ip daddr { 192.0.2.9 } accept"));
        assert!(s.contains("iif \"lo\" accept"));
        assert!(!s.contains("dport 67"), "no DHCP unless asked");
        assert!(
            isolation_ruleset(&app, 7443, &[iso(1, None, false), iso(2, None, true)])
                .contains("udp sport 68 udp dport 67 accept")
        );
    }

    #[test]
    fn the_host_stays_isolated_until_the_last_isolation_expires() {
        let mut st = State {
            isolations: vec![iso(1, Some(10), false), iso(2, Some(20), false)],
            blocked: Vec::new(),
        };
        assert_eq!(st.next_expiry(), Some(10));
        assert_eq!(st.until_ns(), Some(20));
        assert!(st.prune(10));
        assert_eq!(st.isolations.len(), 1);
        st.isolations.push(iso(3, None, false));
        assert_eq!(st.until_ns(), None, "one without expiry holds it");
    }

    #[test]
    fn the_block_table_drops_both_directions() {
        let s = block_ruleset(&["10.0.0.9".parse().unwrap(), "fd00::9".parse().unwrap()]);
        assert!(s.contains("ip saddr { 10.0.0.9 } drop"));
        assert!(s.contains("ip6 daddr { fd00::9 } drop"));
        assert!(s.contains("policy accept"));
    }
}
