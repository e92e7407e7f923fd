//! The remediation checklist: steps derived from what an incident contains,
//! containment first, each with the command one click turns into a signed
//! command, and which executed command already did it.

use super::times::isolation_in_force;
use super::{event_key, fmt_utc, EventRef, ExecutedCommand, Facts, IncidentView, RootCause};
use crate::command::CommandAction;
use crate::event::{AuthMethod, Event, FileOp, HostId, Payload, ProcessStart};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// Most bytes a proposed file collection asks for: an `authorized_keys`
/// file is a few KiB; this leaves room and stays far under the frame cap.
const COLLECT_MAX_BYTES: u64 = 1024 * 1024;

/// One item of the checklist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemediationStep {
    /// Stable id, derived from the target (`isolate:<host>`…), so the same
    /// step keeps its id as the incident grows.
    pub id: String,
    /// What the step acts on; decides its id and which commands do it.
    pub target: StepTarget,
    /// What to do, in a few words.
    pub title: String,
    /// Why, naming the evidence (and what the analyst must check when no
    /// command can be proposed).
    pub why: String,
    /// The events behind the step.
    pub evidence: Vec<EventRef>,
    /// The command one click sends, when the incident names everything it
    /// needs; `None` for advice and for steps the events cannot complete.
    pub proposed: Option<(HostId, CommandAction)>,
    /// Set by [`mark_done`]: the command that carried the step out.
    pub done: Option<StepDone>,
}

/// Who carried a step out, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepDone {
    /// The command's id.
    pub command_id: u64,
    /// Who issued it.
    pub operator: String,
    /// When it was done, ns since the Unix epoch.
    pub done_ns: u64,
}

/// What a step acts on. Variants are in checklist order: containment
/// (isolate, block, kill, disable), then eradication (collect, remove key),
/// then recovery (credentials).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum StepTarget {
    /// Isolate a reached host.
    Isolate {
        /// The host.
        host: HostId,
    },
    /// Block an attacker address outside the fleet on one reached host.
    BlockPeer {
        /// The host that blocks.
        host: HostId,
        /// The attacker's address.
        addr: IpAddr,
    },
    /// Kill a process the attacker started that was not seen to exit.
    KillProcess {
        /// Its host.
        host: HostId,
        /// Its pid.
        pid: u32,
        /// Its start time, ns since the epoch (the event's time when the
        /// sensor could not read it).
        start_ns: u64,
    },
    /// Disable an account created or first used during the incident.
    DisableAccount {
        /// Its host.
        host: HostId,
        /// The account.
        user: String,
    },
    /// Collect a file the attacker changed (an `authorized_keys`).
    CollectFile {
        /// Its host.
        host: HostId,
        /// Its path.
        path: String,
    },
    /// Remove the attacker's key from an account's `authorized_keys`.
    RemoveKey {
        /// Its host.
        host: HostId,
        /// The account.
        user: String,
    },
    /// Reset an account's credentials everywhere (advice, no command).
    ResetCredentials {
        /// The account.
        user: String,
    },
}

impl StepTarget {
    /// The step's stable id.
    pub fn id(&self) -> String {
        match self {
            StepTarget::Isolate { host } => format!("isolate:{host}"),
            StepTarget::BlockPeer { host, addr } => format!("block:{host}:{addr}"),
            StepTarget::KillProcess {
                host,
                pid,
                start_ns,
            } => format!("kill:{host}:{pid}:{start_ns}"),
            StepTarget::DisableAccount { host, user } => format!("disable:{host}:{user}"),
            StepTarget::CollectFile { host, path } => format!("collect:{host}:{path}"),
            StepTarget::RemoveKey { host, user } => format!("remove-key:{host}:{user}"),
            StepTarget::ResetCredentials { user } => format!("reset-credentials:{user}"),
        }
    }

    /// Whether `c` (done) carries this step out.
    fn done_by(&self, c: &ExecutedCommand) -> bool {
        match (self, &c.action) {
            (StepTarget::BlockPeer { host, addr }, CommandAction::BlockPeer { addr: a }) => {
                c.host == *host && a == addr
            }
            (
                StepTarget::KillProcess {
                    host,
                    pid,
                    start_ns,
                },
                CommandAction::KillProcess { pid: p, .. }
                | CommandAction::KillProcessStartedAt { pid: p, .. },
            ) => c.host == *host && p == pid && c.finished_ns >= *start_ns,
            (
                StepTarget::DisableAccount { host, user },
                CommandAction::DisableAccount { user: u },
            ) => c.host == *host && u == user,
            (
                StepTarget::CollectFile { host, path },
                CommandAction::CollectFile { path: p, .. },
            ) => c.host == *host && p == path,
            (
                StepTarget::RemoveKey { host, user },
                CommandAction::RemoveAuthorizedKey { user: u, .. },
            ) => c.host == *host && u == user,
            _ => false,
        }
    }
}

/// The checklist for an incident, containment first; empty without alerts.
///
/// Which evidence raises which step:
/// - every fleet host on the path → isolate it (last reached first; the
///   step stays when done, so the console can show who did it);
/// - a logon or accepted connection in the evidence from an address outside
///   the fleet → block it on every fleet host of the path;
/// - a process start in the evidence with no exit seen since → kill it;
/// - in the incident events (the evidence, plus given events of a reached
///   host from the time it was reached): an account created (`useradd`,
///   `adduser`, `net user … /add`), or a logon by an account the caller
///   does not know → disable it; an `authorized_keys` written → collect it
///   and remove the planted line; one account logging on with a public key
///   to two or more hosts → remove that key on each;
/// - every account the attacker used → reset its credentials (advice).
pub fn remediation(view: &IncidentView<'_>) -> Vec<RemediationStep> {
    let facts = Facts::new(view);
    let Some(rc) = facts.root_cause() else {
        return Vec::new();
    };
    let mut b = Builder {
        facts: &facts,
        rc: &rc,
        steps: Vec::new(),
    };
    let incident = b.incident_events();
    b.isolate();
    b.block();
    b.kill();
    b.disable(&incident);
    b.keys(&incident);
    b.credentials(&incident);
    let mut steps = b.steps;
    // Containment first; within a kind, the order the builder chose.
    steps.sort_by_key(|s| rank(&s.target));
    steps
}

/// Marks each step done by the earliest done command that carries it out
/// (for isolation: the one that began the isolation still in force at
/// `now_ns`, so a released host's step is open again). Steps without a
/// matching command are left open.
pub fn mark_done(steps: &mut [RemediationStep], commands: &[ExecutedCommand], now_ns: u64) {
    let mut done: Vec<&ExecutedCommand> = commands
        .iter()
        .filter(|c| c.is_done() && c.finished_ns <= now_ns)
        .collect();
    done.sort_by_key(|c| (c.finished_ns, c.id));
    for s in steps.iter_mut() {
        let by = match &s.target {
            StepTarget::Isolate { host } => {
                let mine: Vec<&ExecutedCommand> =
                    done.iter().copied().filter(|c| c.host == *host).collect();
                isolation_in_force(&mine, now_ns)
            }
            t => done.iter().copied().find(|c| t.done_by(c)),
        };
        s.done = by.map(|c| StepDone {
            command_id: c.id,
            operator: c.operator.clone(),
            done_ns: c.finished_ns,
        });
    }
}

fn rank(t: &StepTarget) -> u8 {
    match t {
        StepTarget::Isolate { .. } => 0,
        StepTarget::BlockPeer { .. } => 1,
        StepTarget::KillProcess { .. } => 2,
        StepTarget::DisableAccount { .. } => 3,
        StepTarget::CollectFile { .. } => 4,
        StepTarget::RemoveKey { .. } => 5,
        StepTarget::ResetCredentials { .. } => 6,
    }
}

struct Builder<'f, 'a> {
    facts: &'f Facts<'a>,
    rc: &'f RootCause,
    steps: Vec<RemediationStep>,
}

impl<'a> Builder<'_, 'a> {
    /// Adds a step, or merges its reasons and evidence into the step of
    /// the same id (two findings can ask for the same action).
    fn push(
        &mut self,
        target: StepTarget,
        title: String,
        why: String,
        evidence: Vec<EventRef>,
        proposed: Option<CommandAction>,
    ) {
        let id = target.id();
        if let Some(s) = self.steps.iter_mut().find(|s| s.id == id) {
            if !s.why.contains(&why) {
                s.why = format!("{} {why}", s.why);
            }
            for e in evidence {
                if !s.evidence.contains(&e) {
                    s.evidence.push(e);
                }
            }
            return;
        }
        let host = target_host(&target);
        self.steps.push(RemediationStep {
            id,
            target,
            title,
            why,
            evidence,
            proposed: proposed.zip(host).map(|(a, h)| (h, a)),
            done: None,
        });
    }

    /// Fleet hosts of the incident in the order they were reached.
    fn fleet_hosts(&self) -> Vec<HostId> {
        let mut out = Vec::new();
        let first = std::iter::once(self.rc.origin);
        for h in first.chain(self.rc.reached.iter().map(|r| r.host)) {
            if !h.is_unmanaged() && !out.contains(&h) {
                out.push(h);
            }
        }
        out
    }

    /// When each fleet host was first held by the attacker.
    fn held_since(&self) -> BTreeMap<HostId, u64> {
        let mut out = BTreeMap::new();
        if self.rc.origin_in_fleet {
            out.insert(self.rc.origin, self.rc.entry_ns);
        }
        for r in &self.rc.reached {
            out.entry(r.host).or_insert(r.first_ns);
        }
        out
    }

    /// The evidence plus the given events of each held host from the time
    /// it was held, by (ts, host, seq).
    fn incident_events(&self) -> Vec<&'a Event> {
        let since = self.held_since();
        let mut out: Vec<&Event> = self.facts.evidence.clone();
        let seen: BTreeSet<EventRef> = out.iter().map(|e| EventRef::of(e)).collect();
        for e in self.facts.events.values().copied() {
            let held = since
                .get(&e.header.host)
                .is_some_and(|t| e.header.ts_ns >= *t);
            if held && !seen.contains(&EventRef::of(e)) {
                out.push(e);
            }
        }
        out.sort_by_key(|e| event_key(e));
        out
    }

    fn isolate(&mut self) {
        let hosts = self.fleet_hosts();
        for host in hosts.into_iter().rev() {
            let name = self.facts.name(host);
            let (why, evidence) = match self.rc.reached.iter().find(|r| r.host == host) {
                Some(r) => (
                    format!(
                        "{name} was reached at {}{}{}; isolation cuts the attacker off while its sensor keeps reporting.",
                        fmt_utc(r.first_ns),
                        r.user.as_ref().map(|u| format!(" as {u}")).unwrap_or_default(),
                        r.event.map(|e| format!(" (event {e})")).unwrap_or_default()
                    ),
                    r.event.into_iter().collect(),
                ),
                None => (
                    format!(
                        "The incident starts on {name} at {}; isolation cuts the attacker off while its sensor keeps reporting.",
                        fmt_utc(self.rc.entry_ns)
                    ),
                    self.rc.entry_event.into_iter().collect(),
                ),
            };
            // DHCP and neighbour discovery stay allowed: a host that loses
            // its lease or its router also loses the appliance.
            let action = CommandAction::IsolateHost {
                allow: Vec::new(),
                expires_ns: None,
                allow_dhcp_nd: true,
            };
            let title = format!("Isolate {name}");
            self.push(
                StepTarget::Isolate { host },
                title,
                why,
                evidence,
                Some(action),
            );
        }
    }

    fn block(&mut self) {
        let mut sources: Vec<(IpAddr, &Event)> = Vec::new();
        for e in &self.facts.evidence {
            let addr = match &e.payload {
                Payload::Login(l) | Payload::AuthFailure(l) => l.src_addr,
                Payload::NetAccept(f) => Some(f.remote.ip()),
                _ => None,
            };
            if let Some(a) = addr.filter(|a| self.facts.is_outside(*a)) {
                if !sources.iter().any(|(s, _)| *s == a) {
                    sources.push((a, e));
                }
            }
        }
        let hosts = self.fleet_hosts();
        for (addr, e) in sources {
            let why = format!(
                "{addr} is outside the fleet and {} {} at {} (event {}); block it on every host the incident reached.",
                match &e.payload {
                    Payload::AuthFailure(_) => "tried to log on to",
                    Payload::NetAccept(_) => "connected to",
                    _ => "logged on to",
                },
                self.facts.name(e.header.host),
                fmt_utc(e.header.ts_ns),
                EventRef::of(e)
            );
            for &host in &hosts {
                let title = format!("Block {addr} on {}", self.facts.name(host));
                let target = StepTarget::BlockPeer { host, addr };
                let action = CommandAction::BlockPeer { addr };
                self.push(
                    target,
                    title,
                    why.clone(),
                    vec![EventRef::of(e)],
                    Some(action),
                );
            }
        }
    }

    fn kill(&mut self) {
        for e in self.facts.evidence.clone() {
            let Payload::ProcessStart(p) = &e.payload else {
                continue;
            };
            let host = e.header.host;
            if host.is_unmanaged() || p.pid <= 1 || p.exited_before_enrichment || self.exited(e) {
                continue;
            }
            let start_ns = p.start_time_ns.unwrap_or(e.header.ts_ns);
            let exe = p.exe.as_deref().or(p.argv.first().map(String::as_str));
            let what = exe.unwrap_or("process");
            let how = match p.start_time_ns {
                // The sensor kills only the process with this pid AND this
                // start time, so a pid reused since is refused, not hit.
                Some(_) => "Killing names it by pid and start time: a reused pid is refused.",
                None => {
                    "The event carries no start time, so no command can name it safely: list \
                     the host's processes, check the pid still runs it, and kill it from the \
                     listing."
                }
            };
            let why = format!(
                "{what} (pid {}) started on {} at {}{} (event {}) and no exit was seen since. {how}",
                p.pid,
                self.facts.name(host),
                fmt_utc(start_ns),
                p.user
                    .as_ref()
                    .map(|u| format!(" as {u}"))
                    .unwrap_or_default(),
                EventRef::of(e),
            );
            let title = format!("Kill {what} (pid {}) on {}", p.pid, self.facts.name(host));
            let target = StepTarget::KillProcess {
                host,
                pid: p.pid,
                start_ns,
            };
            let action = p
                .start_time_ns
                .map(|start_time_ns| CommandAction::KillProcessStartedAt {
                    pid: p.pid,
                    start_time_ns,
                });
            self.push(target, title, why, vec![EventRef::of(e)], action);
        }
    }

    /// Whether the process `start` started was seen to exit afterwards.
    fn exited(&self, start: &Event) -> bool {
        let Payload::ProcessStart(p) = &start.payload else {
            return false;
        };
        let from = (start.header.host, start.header.seq);
        let to = (start.header.host, u64::MAX);
        self.facts.events.range(from..=to).any(|(_, e)| {
            matches!(&e.payload, Payload::ProcessExit(x) if x.pid == p.pid)
                && e.header.ts_ns >= start.header.ts_ns
        })
    }

    fn disable(&mut self, incident: &[&Event]) {
        for e in incident {
            let host = e.header.host;
            if host.is_unmanaged() {
                continue;
            }
            // Account, and whether it was created (else: an unknown logon).
            let (user, created) = match &e.payload {
                Payload::ProcessStart(p) => match created_account(p) {
                    Some(u) => (u, Some(p.argv.join(" "))),
                    None => continue,
                },
                Payload::Login(l) if !self.is_known(host, &l.user) => (l.user.clone(), None),
                _ => continue,
            };
            if user.is_empty() || user == "root" {
                continue;
            }
            let name = self.facts.name(host);
            let at = format!("{} (event {})", fmt_utc(e.header.ts_ns), EventRef::of(e));
            let why = match created {
                Some(cmd) => format!("`{cmd}` created {user} on {name} at {at}."),
                None => format!(
                    "{user} logged on to {name} at {at} and is not a known account of that host."
                ),
            };
            let title = format!("Disable account {user} on {name}");
            let action = CommandAction::DisableAccount { user: user.clone() };
            let target = StepTarget::DisableAccount { host, user };
            self.push(target, title, why, vec![EventRef::of(e)], Some(action));
        }
    }

    /// Whether the caller knows `user` on `host`; everyone is known when
    /// the caller has no list.
    fn is_known(&self, host: HostId, user: &str) -> bool {
        match self.facts.view.known_accounts {
            None => true,
            Some(list) => list.iter().any(|(h, u)| *h == host && u == user),
        }
    }

    fn keys(&mut self, incident: &[&Event]) {
        for e in incident {
            let Payload::FileChange(f) = &e.payload else {
                continue;
            };
            let written = matches!(f.op, FileOp::Created | FileOp::Modified | FileOp::Renamed);
            let Some(user) = keys_owner(&f.path).filter(|_| written) else {
                continue;
            };
            let host = e.header.host;
            if host.is_unmanaged() {
                continue;
            }
            let name = self.facts.name(host);
            let at = format!(
                "{user}'s authorized_keys on {name} was written at {} (event {}{})",
                fmt_utc(e.header.ts_ns),
                EventRef::of(e),
                f.sha256
                    .map(|h| format!(", file SHA-256 {}", hex(&h)))
                    .unwrap_or_default()
            );
            let collect = StepTarget::CollectFile {
                host,
                path: f.path.clone(),
            };
            let collect_id = collect.id();
            let action = CommandAction::CollectFile {
                path: f.path.clone(),
                max_bytes: COLLECT_MAX_BYTES,
            };
            let why = format!("{at}; keep a copy to find the planted line.");
            let title = format!("Collect {} from {name}", f.path);
            self.push(collect, title, why, vec![EventRef::of(e)], Some(action));
            let why = format!(
                "{at}. The event carries the whole file's hash, not the added line, so the line \
                 cannot be named here: collect the file ({collect_id}), find the line that is not \
                 in the known-good copy, and remove it by its SHA-256."
            );
            let title = format!("Remove the planted key from {user}'s authorized_keys on {name}");
            let target = StepTarget::RemoveKey { host, user };
            self.push(target, title, why, vec![EventRef::of(e)], None);
        }
        self.reused_keys(incident);
    }

    /// One account logging on with a public key to two or more hosts: the
    /// key is stolen; remove it wherever it let the attacker in.
    fn reused_keys(&mut self, incident: &[&Event]) {
        let mut by_user: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
        for e in incident {
            if let Payload::Login(l) = &e.payload {
                if l.method == AuthMethod::PublicKey && !e.header.host.is_unmanaged() {
                    by_user.entry(&l.user).or_default().push(e);
                }
            }
        }
        for (user, logins) in by_user {
            let hosts: BTreeSet<HostId> = logins.iter().map(|e| e.header.host).collect();
            if hosts.len() < 2 {
                continue;
            }
            let names: Vec<String> = self
                .fleet_hosts()
                .into_iter()
                .chain(hosts.iter().copied())
                .filter(|h| hosts.contains(h))
                .map(|h| self.facts.name(h))
                .fold(Vec::new(), |mut v, n| {
                    if !v.contains(&n) {
                        v.push(n);
                    }
                    v
                });
            for host in &hosts {
                let mine: Vec<EventRef> = logins
                    .iter()
                    .filter(|e| e.header.host == *host)
                    .map(|e| EventRef::of(e))
                    .collect();
                let name = self.facts.name(*host);
                let why =
                    format!(
                    "{user} logged on with a public key to {} (events {}), so its key is in the \
                     attacker's hands. Login events carry no key fingerprint, so the line cannot \
                     be named here: find the key in {name}'s sshd log (\"Accepted publickey for \
                     {user} … SHA256:…\") and remove its line from every authorized_keys that \
                     holds it.",
                    names.join(", "),
                    mine.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(", ")
                );
                let title =
                    format!("Remove the stolen key from {user}'s authorized_keys on {name}");
                let target = StepTarget::RemoveKey {
                    host: *host,
                    user: user.to_string(),
                };
                self.push(target, title, why, mine, None);
            }
        }
    }

    fn credentials(&mut self, incident: &[&Event]) {
        let mut users: Vec<String> = Vec::new();
        let mut add = |u: &str| {
            if !u.is_empty() && !users.iter().any(|x| x == u) {
                users.push(u.to_string());
            }
        };
        if let Some(u) = &self.rc.first_account {
            add(u);
        }
        for r in &self.rc.reached {
            if let Some(u) = &r.user {
                add(u);
            }
        }
        for a in &self.facts.alerts {
            a.users.iter().for_each(|u| add(u));
        }
        for user in users {
            let logins: Vec<&&Event> = incident
                .iter()
                .filter(|e| matches!(&e.payload, Payload::Login(l) if l.user == user))
                .collect();
            let mut hosts: Vec<String> = Vec::new();
            for e in &logins {
                let n = self.facts.name(e.header.host);
                if !hosts.contains(&n) {
                    hosts.push(n);
                }
            }
            let seen = if hosts.is_empty() {
                "the incident's alerts name it".to_string()
            } else {
                format!("it logged on to {}", hosts.join(", "))
            };
            let why = format!(
                "The attacker used {user}: {seen}. Change its password and replace its keys \
                 wherever they are valid (other hosts, directory); no command does this."
            );
            let evidence = logins.iter().map(|e| EventRef::of(e)).collect();
            let title = format!("Reset the credentials of {user}");
            self.push(
                StepTarget::ResetCredentials { user },
                title,
                why,
                evidence,
                None,
            );
        }
    }
}

/// The host a target's command runs on.
fn target_host(t: &StepTarget) -> Option<HostId> {
    match t {
        StepTarget::Isolate { host }
        | StepTarget::BlockPeer { host, .. }
        | StepTarget::KillProcess { host, .. }
        | StepTarget::DisableAccount { host, .. }
        | StepTarget::CollectFile { host, .. }
        | StepTarget::RemoveKey { host, .. } => Some(*host),
        StepTarget::ResetCredentials { .. } => None,
    }
}

/// The account an `authorized_keys` path belongs to (`/root/…` is root's,
/// `/home/<user>/…` is the user's).
/// The account whose `authorized_keys` file `path` is (`/root/.ssh/…` is
/// root's, `/home/NAME/.ssh/…` NAME's), or `None` for any other file.
pub fn keys_owner(path: &str) -> Option<String> {
    let dir = path
        .strip_suffix("/.ssh/authorized_keys")
        .or_else(|| path.strip_suffix("/.ssh/authorized_keys2"))?;
    if dir == "/root" {
        return Some("root".into());
    }
    let user = dir.rsplit('/').next()?;
    (!user.is_empty()).then(|| user.to_string())
}

/// The account a process start creates: `useradd … NAME`, `adduser … NAME`
/// (the last argument), `net user NAME … /add` (Windows).
fn created_account(p: &ProcessStart) -> Option<String> {
    let prog = p.exe.as_deref().or(p.argv.first().map(String::as_str))?;
    let base = prog.rsplit(['/', '\\']).next()?.to_ascii_lowercase();
    let base = base.strip_suffix(".exe").unwrap_or(&base);
    match base {
        "useradd" | "adduser" => {
            let last = p.argv.iter().skip(1).next_back()?;
            (!last.starts_with('-')).then(|| last.clone())
        }
        "net" | "net1" => {
            let args: Vec<String> = p.argv.iter().map(|a| a.to_ascii_lowercase()).collect();
            let at = args.iter().position(|a| a == "user")?;
            if !args.iter().any(|a| a == "/add") {
                return None;
            }
            let name = p.argv.get(at + 1)?;
            (!name.starts_with('/')).then(|| name.clone())
        }
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
