//! Attack campaigns, one function per [`Style`]. Each starts at a random
//! time after the training period, from a foothold chosen the way real
//! intrusions begin (a phished workstation, a compromised server, a rogue
//! device), with credentials an attacker could have harvested there.

use super::fleet::{name_range, Fleet, Kind, Role};
use super::{
    AuthLine, AuthType, EnterpriseConfig, Label, LabelKind, LogonType, Orientation, Principal,
    Record, Style, DAY_S, HOUR_S, MIN_S,
};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use std::collections::{HashMap, HashSet};

use AuthType::{Kerberos, Ntlm};
use LogonType::Network;

/// What benign traffic in the training period shows, as an attacker on a
/// host could learn it (who logs on here, where this host connects).
struct Known {
    /// src → (dst, user) of remote user logons.
    edges: HashMap<usize, Vec<(usize, u32)>>,
    /// host → users who logged on to it (their credentials are there).
    users_at: HashMap<usize, Vec<u32>>,
}

impl Known {
    fn new(fleet: &Fleet, benign: &[Record], split: u64) -> Known {
        let idx: HashMap<u32, usize> = fleet
            .hosts
            .iter()
            .enumerate()
            .map(|(i, h)| (h.num, i))
            .collect();
        let mut edges: HashMap<usize, Vec<(usize, u32)>> = HashMap::new();
        let mut users_at: HashMap<usize, Vec<u32>> = HashMap::new();
        for r in benign.iter().take_while(|r| r.line.time <= split) {
            let l = &r.line;
            let Principal::User(u) = l.src_user else {
                continue;
            };
            if !l.ok || l.orient != Orientation::LogOn {
                continue;
            }
            let (s, d) = (idx[&l.src], idx[&l.dst]);
            let at = users_at.entry(d).or_default();
            if !at.contains(&u) {
                at.push(u);
            }
            if s != d && matches!(l.logon, Network | LogonType::RemoteInteractive) {
                let e = edges.entry(s).or_default();
                if !e.contains(&(d, u)) {
                    e.push((d, u));
                }
            }
        }
        Known { edges, users_at }
    }
}

struct Atk<'a> {
    fleet: &'a Fleet,
    end: u64,
    split: u64,
    rng: &'a mut StdRng,
    known: Known,
    out: Vec<Record>,
    label: Label,
    devices: Vec<u32>,
}

pub(crate) fn generate(
    cfg: &EnterpriseConfig,
    fleet: &Fleet,
    benign: &[Record],
    rng: &mut StdRng,
) -> (Vec<Record>, usize) {
    let mut a = Atk {
        fleet,
        end: cfg.end(),
        split: cfg.split(),
        rng,
        known: Known::new(fleet, benign, cfg.split()),
        out: Vec::new(),
        devices: Vec::new(),
        label: Label {
            style: Style::FanOut,
            campaign: 0,
            kind: LabelKind::Hop,
        },
    };
    let mut n = 0u32;
    for &style in &cfg.styles {
        for _ in 0..cfg.campaigns_per_style {
            a.label = Label {
                style,
                campaign: n,
                kind: LabelKind::Hop,
            };
            n += 1;
            match style {
                Style::FanOut => a.fan_out(),
                Style::SlowChain => a.slow_chain(),
                Style::EdgeReuse => a.edge_reuse(),
                Style::PthOffHours => a.pth_off_hours(cfg),
                Style::ServiceAccountAbuse => a.service_account_abuse(),
                Style::SprayThenHop => a.spray_then_hop(),
                Style::NoHistory => a.no_history(cfg),
            }
        }
    }
    (a.out, n as usize)
}

impl Atk<'_> {
    /// Host number; indices past the fleet are devices campaigns brought.
    fn num(&self, h: usize) -> u32 {
        match self.fleet.hosts.get(h) {
            Some(x) => x.num,
            None => self.devices[h - self.fleet.hosts.len()],
        }
    }

    /// A device with a name nobody used, numbered like every other host.
    fn new_device(&mut self, cfg: &EnterpriseConfig) -> usize {
        let max = name_range(cfg.hosts);
        loop {
            let n = self.rng.gen_range(1..=max);
            let taken = self.fleet.hosts.iter().any(|h| h.num == n) || self.devices.contains(&n);
            if !taken {
                self.devices.push(n);
                return self.fleet.hosts.len() + self.devices.len() - 1;
            }
        }
    }

    fn dc(&mut self) -> usize {
        *self.fleet.of(Role::Dc).choose(self.rng).expect("dc")
    }

    fn push(&mut self, line: AuthLine, kind: LabelKind) {
        if line.time < self.end {
            let label = Label { kind, ..self.label };
            self.out.push(Record {
                line,
                label: Some(label),
            });
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn raw(
        &mut self,
        t: u64,
        who: Principal,
        src: usize,
        dst: usize,
        auth: AuthType,
        logon: LogonType,
        orient: Orientation,
        ok: bool,
        kind: LabelKind,
    ) {
        let line = AuthLine {
            time: t,
            src_user: who,
            dst_user: who,
            src: self.num(src),
            dst: self.num(dst),
            auth,
            logon,
            orient,
            ok,
        };
        self.push(line, kind);
    }

    /// One lateral-movement hop: the service ticket (context), the logon
    /// on the target (the compromise event), its log-off (context).
    fn hop(&mut self, t: u64, user: u32, src: usize, dst: usize, auth: AuthType) {
        let who = Principal::User(user);
        let ctx = LabelKind::Context;
        if auth == Kerberos {
            let dc = self.dc();
            self.raw(
                t - 1,
                who,
                src,
                dc,
                Kerberos,
                LogonType::Unknown,
                Orientation::Tgs,
                true,
                ctx,
            );
        }
        self.raw(
            t,
            who,
            src,
            dst,
            auth,
            Network,
            Orientation::LogOn,
            true,
            LabelKind::Hop,
        );
        let off = t + self.rng.gen_range(MIN_S..20 * MIN_S);
        self.raw(
            off,
            who,
            dst,
            dst,
            AuthType::Unknown,
            LogonType::Unknown,
            Orientation::LogOff,
            true,
            ctx,
        );
    }

    /// A random start in the test period leaving `room` seconds after it.
    fn start(&mut self, room: u64) -> u64 {
        let lo = self.split + HOUR_S;
        let hi = self.end.saturating_sub(room).max(lo + 1);
        self.rng.gen_range(lo..hi)
    }

    /// A phished workstation and its owner (present from the start).
    fn foothold(&mut self) -> (usize, u32) {
        let people: Vec<usize> = (0..self.fleet.users.len())
            .filter(|&u| {
                let x = &self.fleet.users[u];
                x.kind == Kind::Regular && x.appears == 0
            })
            .collect();
        let u = &self.fleet.users[*people.choose(self.rng).expect("people")];
        (u.hosts[0], u.num)
    }

    fn admin(&mut self) -> u32 {
        let admins: Vec<u32> = self
            .fleet
            .users
            .iter()
            .filter(|u| u.kind == Kind::Admin)
            .map(|u| u.num)
            .collect();
        *admins.choose(self.rng).expect("admins")
    }

    /// Hosts (servers and workstations present from the start), minus `not`.
    fn targets(&self, not: &[usize]) -> Vec<usize> {
        (0..self.fleet.hosts.len())
            .filter(|&h| {
                let x = &self.fleet.hosts[h];
                x.appears == 0
                    && !not.contains(&h)
                    && !matches!(
                        x.role,
                        Role::Dc | Role::Backup | Role::Monitor | Role::Scanner
                    )
            })
            .collect()
    }

    /// A credential found on `host`: someone who logged on there, else `or`.
    fn harvest(&mut self, host: usize, or: u32) -> u32 {
        match self.known.users_at.get(&host) {
            Some(users) if !users.is_empty() => *users.choose(self.rng).expect("non-empty"),
            _ => or,
        }
    }

    fn auth(&mut self, p_ntlm: f64) -> AuthType {
        if self.rng.gen_bool(p_ntlm) {
            Ntlm
        } else {
            Kerberos
        }
    }

    /// One source, 4–7 destinations it never reached, within 50 minutes.
    fn fan_out(&mut self) {
        let (ws, owner) = self.foothold();
        let user = if self.rng.gen_bool(0.5) {
            owner
        } else {
            self.admin()
        };
        let reached: HashSet<usize> = self
            .known
            .edges
            .get(&ws)
            .map_or_else(HashSet::new, |e| e.iter().map(|x| x.0).collect());
        let pool: Vec<usize> = self
            .targets(&[ws])
            .into_iter()
            .filter(|h| !reached.contains(h))
            .collect();
        let k = self.rng.gen_range(4..=7).min(pool.len());
        let dsts: Vec<usize> = pool.choose_multiple(self.rng, k).copied().collect();
        let t0 = self.start(2 * HOUR_S);
        let mut offsets: Vec<u64> = (0..k).map(|_| self.rng.gen_range(0..50 * MIN_S)).collect();
        offsets.sort_unstable();
        for (dst, off) in dsts.into_iter().zip(offsets) {
            let auth = self.auth(0.6);
            self.hop(t0 + off, user, ws, dst, auth);
        }
    }

    /// Three or four hops, 2 to 26 hours apart, with credentials found on
    /// each host reached.
    fn slow_chain(&mut self) {
        let (mut cur, owner) = self.foothold();
        let hops = self.rng.gen_range(3..=4u64);
        let room = self.end - self.split - HOUR_S;
        let max_gap = (room / (hops + 1)).clamp(2 * HOUR_S + MIN_S, 26 * HOUR_S);
        let mut t = self.split + HOUR_S + self.rng.gen_range(0..(room / 8).max(1));
        let mut path = vec![cur];
        let mut user = owner;
        for i in 0..hops {
            if i > 0 {
                t += self.rng.gen_range(2 * HOUR_S..max_gap);
                user = self.harvest(cur, user);
            }
            let pool = self.targets(&path);
            let Some(&dst) = pool.choose(self.rng) else {
                return;
            };
            let auth = self.auth(0.3);
            self.hop(t, user, cur, dst, auth);
            path.push(dst);
            cur = dst;
        }
    }

    /// A walk over edges benign traffic used in training, half the time
    /// with another user's credential.
    fn edge_reuse(&mut self) {
        let has_out = |k: &Known, h: usize| k.edges.get(&h).is_some_and(|e| !e.is_empty());
        let mut starts: Vec<usize> = self
            .known
            .edges
            .iter()
            .filter(|(_, e)| e.iter().any(|(d, _)| has_out(&self.known, *d)))
            .map(|(s, _)| *s)
            .filter(|&s| !self.fleet.hosts[s].role.is_server())
            .collect();
        starts.sort_unstable();
        let Some(&start) = starts.choose(self.rng) else {
            return;
        };
        let mut t = self.start(12 * HOUR_S);
        let mut cur = start;
        let mut path = vec![cur];
        let hops = self.rng.gen_range(2..=3);
        for i in 0..hops {
            let Some(edges) = self.known.edges.get(&cur) else {
                return;
            };
            let fresh: Vec<(usize, u32)> = edges
                .iter()
                .filter(|(d, _)| !path.contains(d))
                .copied()
                .collect();
            // keep the walk going: before the last hop, prefer hosts that
            // themselves reach further
            let onward: Vec<(usize, u32)> = fresh
                .iter()
                .filter(|(d, _)| has_out(&self.known, *d))
                .copied()
                .collect();
            let pick = if i + 1 < hops && !onward.is_empty() {
                &onward
            } else {
                &fresh
            };
            let Some(&(dst, edge_user)) = pick.choose(self.rng) else {
                return;
            };
            let user = if self.rng.gen_bool(0.5) {
                edge_user
            } else {
                let any = self.admin();
                self.harvest(cur, any)
            };
            let auth = self.auth(0.2);
            self.hop(t, user, cur, dst, auth);
            path.push(dst);
            cur = dst;
            t += self.rng.gen_range(5 * MIN_S..3 * HOUR_S);
        }
    }

    /// An admin's NTLM hash from a phished workstation, 01:00–05:00 local
    /// time or on a weekend afternoon.
    fn pth_off_hours(&mut self, cfg: &EnterpriseConfig) {
        let (ws, _) = self.foothold();
        let admin = self.admin();
        let site = self.fleet.hosts[ws].site;
        let first = u64::from(cfg.train_days);
        let days: Vec<u32> = (first..u64::from(cfg.days)).map(|d| d as u32).collect();
        let weekend: Vec<u32> = days
            .iter()
            .copied()
            .filter(|d| (cfg.start_weekday + d) % 7 >= 5)
            .collect();
        let t0 = if !weekend.is_empty() && self.rng.gen_bool(0.3) {
            let d = *weekend.choose(self.rng).expect("non-empty");
            Fleet::at_local(d, site, self.rng.gen_range(13.0..17.0))
        } else {
            let d = *days.choose(self.rng).expect("test days");
            Fleet::at_local(d, site, self.rng.gen_range(1.0..5.0))
        };
        let mut t = (t0.max(0) as u64).max(self.split + MIN_S);
        let servers: Vec<usize> = self
            .targets(&[ws])
            .into_iter()
            .filter(|&h| self.fleet.hosts[h].role.is_server())
            .collect();
        let k = self.rng.gen_range(2..=4).min(servers.len());
        for dst in servers
            .choose_multiple(self.rng, k)
            .copied()
            .collect::<Vec<_>>()
        {
            self.hop(t, admin, ws, dst, Ntlm);
            t += self.rng.gen_range(3 * MIN_S..20 * MIN_S);
        }
    }

    /// A shared service account used from a phished workstation or a
    /// compromised application server, to its usual targets and beyond.
    fn service_account_abuse(&mut self) {
        let svcs: Vec<usize> = (0..self.fleet.users.len())
            .filter(|&u| self.fleet.users[u].kind == Kind::Service)
            .collect();
        let fleet = self.fleet;
        let svc = &fleet.users[*svcs.choose(self.rng).expect("service accounts")];
        let src = if self.rng.gen_bool(0.5) {
            self.foothold().0
        } else {
            *svc.hosts.choose(self.rng).expect("hosts")
        };
        let mut dsts: Vec<usize> = svc.targets.iter().copied().filter(|&d| d != src).collect();
        dsts.shuffle(self.rng);
        dsts.truncate(self.rng.gen_range(1..=2));
        let others: Vec<usize> = self
            .targets(&[src])
            .into_iter()
            .filter(|d| !svc.targets.contains(d) && fleet.hosts[*d].role.is_server())
            .collect();
        let extra = self.rng.gen_range(1..=2).min(others.len());
        dsts.extend(others.choose_multiple(self.rng, extra).copied());
        let mut t = self.start(3 * HOUR_S);
        for dst in dsts {
            let auth = self.auth(0.4);
            self.hop(t, svc.num, src, dst, auth);
            t += self.rng.gen_range(2 * MIN_S..30 * MIN_S);
        }
    }

    /// Failed logons from one source for several users across many hosts,
    /// then one success and a hop onwards from the host it opened.
    fn spray_then_hop(&mut self) {
        let (ws, _) = self.foothold();
        let people: Vec<u32> = self
            .fleet
            .users
            .iter()
            .filter(|u| matches!(u.kind, Kind::Regular | Kind::Admin) && u.appears == 0)
            .map(|u| u.num)
            .collect();
        let n_users = self.rng.gen_range(2..=5).min(people.len());
        let users: Vec<u32> = people.choose_multiple(self.rng, n_users).copied().collect();
        let pool = self.targets(&[ws]);
        let n_hosts = self.rng.gen_range(8..=20).min(pool.len());
        let hosts: Vec<usize> = pool.choose_multiple(self.rng, n_hosts).copied().collect();
        let mut t = self.start(4 * HOUR_S);
        for &h in &hosts {
            for &u in &users {
                self.raw(
                    t,
                    Principal::User(u),
                    ws,
                    h,
                    Ntlm,
                    Network,
                    Orientation::LogOn,
                    false,
                    LabelKind::Context,
                );
                t += self.rng.gen_range(1..8);
            }
        }
        let user = *users.choose(self.rng).expect("users");
        let opened = *hosts.choose(self.rng).expect("hosts");
        t += self.rng.gen_range(MIN_S..15 * MIN_S);
        self.hop(t, user, ws, opened, Ntlm);
        let next_pool = self.targets(&[ws, opened]);
        let next = *next_pool.choose(self.rng).expect("hosts");
        t += self.rng.gen_range(5 * MIN_S..40 * MIN_S);
        let auth = self.auth(0.5);
        self.hop(t, user, opened, next, auth);
    }

    /// A device nobody saw before joins (its machine account asks for
    /// tickets like any new host) and moves with a stolen credential.
    fn no_history(&mut self, cfg: &EnterpriseConfig) {
        let rogue = self.new_device(cfg);
        let appears = self.start(6 * HOUR_S);
        let m = Principal::Machine(self.num(rogue));
        let ctx = LabelKind::Context;
        let dc = self.dc();
        self.raw(
            appears,
            m,
            rogue,
            dc,
            Kerberos,
            LogonType::Unknown,
            Orientation::Tgt,
            true,
            ctx,
        );
        let mut t = appears + HOUR_S;
        while t < self.end.min(appears + DAY_S) {
            let dc = self.dc();
            self.raw(
                t,
                m,
                rogue,
                dc,
                Kerberos,
                Network,
                Orientation::LogOn,
                true,
                ctx,
            );
            t += HOUR_S + self.rng.gen_range(0..600);
        }
        let user = if self.rng.gen_bool(0.5) {
            self.admin()
        } else {
            self.foothold().1
        };
        let mut t = appears + self.rng.gen_range(10 * MIN_S..3 * HOUR_S);
        let servers: Vec<usize> = self
            .targets(&[])
            .into_iter()
            .filter(|&h| self.fleet.hosts[h].role.is_server())
            .collect();
        let picks: Vec<usize> = servers.choose_multiple(self.rng, 2).copied().collect();
        let auth = self.auth(0.5);
        self.hop(t, user, rogue, picks[0], auth);
        t += self.rng.gen_range(5 * MIN_S..90 * MIN_S);
        self.hop(t, user, picks[0], picks[1], Kerberos);
        if self.rng.gen_bool(0.5) {
            let more = self.targets(&picks);
            let dst = *more.choose(self.rng).expect("hosts");
            t += self.rng.gen_range(5 * MIN_S..60 * MIN_S);
            self.hop(t, user, rogue, dst, Ntlm);
        }
    }
}
