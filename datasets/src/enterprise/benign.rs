//! Benign traffic: machine accounts, services, people, admins, scanners.
//! Each behaviour is one function writing LANL lines for one day.

use super::fleet::{Fleet, Kind, Role, User};
use super::{
    AuthLine, AuthType, EnterpriseConfig, LogonType, Orientation, Principal, DAY_S, HOUR_S, MIN_S,
};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use std::collections::HashMap;

use AuthType::{Kerberos, Negotiate, Ntlm, Unknown as AnyAuth};
use LogonType::{Interactive, Network, RemoteInteractive, Service, Unlock};
use Orientation::{LogOff, LogOn, Tgs, Tgt};

/// Writes lines, dropping those outside the data or a host's lifetime.
pub(crate) struct Out<'a> {
    pub fleet: &'a Fleet,
    pub end: u64,
    pub lines: Vec<AuthLine>,
}

impl Out<'_> {
    pub(crate) fn active(&self, host: usize, t: i64) -> bool {
        let h = &self.fleet.hosts[host];
        t >= 0 && (t as u64) >= h.appears && (t as u64) < h.leaves
    }

    /// One line between host indices `src` → `dst`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn line(
        &mut self,
        t: i64,
        who: Principal,
        src: usize,
        dst: usize,
        auth: AuthType,
        logon: LogonType,
        orient: Orientation,
        ok: bool,
    ) {
        if t < 0 || t as u64 >= self.end || !self.active(src, t) || !self.active(dst, t) {
            return;
        }
        let dst_user = match who {
            Principal::Machine(n) if logon == Service => Principal::System(n),
            p => p,
        };
        self.lines.push(AuthLine {
            time: t as u64,
            src_user: who,
            dst_user,
            src: self.fleet.hosts[src].num,
            dst: self.fleet.hosts[dst].num,
            auth,
            logon,
            orient,
            ok,
        });
    }

    /// A remote logon as Windows logs it: a service ticket from a domain
    /// controller (Kerberos), the logon on the target, its log-off later.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn remote(
        &mut self,
        rng: &mut StdRng,
        t: i64,
        who: Principal,
        src: usize,
        dst: usize,
        auth: AuthType,
        logon: LogonType,
        dc: usize,
    ) {
        if auth == Kerberos {
            let lag = rng.gen_range(0..3);
            self.line(
                t - lag,
                who,
                src,
                dc,
                Kerberos,
                LogonType::Unknown,
                Tgs,
                true,
            );
        }
        self.line(t, who, src, dst, auth, logon, LogOn, true);
        if rng.gen_bool(0.7) {
            let off = t + rng.gen_range(MIN_S..30 * MIN_S) as i64;
            self.line(
                off,
                who,
                dst,
                dst,
                AnyAuth,
                LogonType::Unknown,
                LogOff,
                true,
            );
        }
    }
}

struct Ctx<'a, 'r> {
    cfg: &'a EnterpriseConfig,
    fleet: &'a Fleet,
    rng: &'r mut StdRng,
    out: Out<'a>,
    dcs: Vec<usize>,
    /// Servers a person picked up after the start (benign novelty).
    picked_up: HashMap<usize, Vec<usize>>,
}

pub(crate) fn generate(cfg: &EnterpriseConfig, fleet: &Fleet, rng: &mut StdRng) -> Vec<AuthLine> {
    let mut c = Ctx {
        cfg,
        fleet,
        rng,
        out: Out {
            fleet,
            end: cfg.end(),
            lines: Vec::new(),
        },
        dcs: fleet.of(Role::Dc),
        picked_up: HashMap::new(),
    };
    let stale_day = c.rng.gen_range(0..cfg.days);
    for d in 0..cfg.days {
        let weekend = (cfg.start_weekday + d) % 7 >= 5;
        c.machines(d);
        c.services(d, weekend);
        if d == stale_day {
            c.stale_password(d);
        }
        for u in 0..fleet.users.len() {
            let user = &fleet.users[u];
            match user.kind {
                Kind::Regular | Kind::Helpdesk => c.person(u, d, weekend),
                Kind::Admin => c.admin(user, d, weekend),
                _ => {}
            }
        }
        c.contractor(d);
    }
    c.out.lines
}

impl Ctx<'_, '_> {
    fn dc(&mut self) -> usize {
        *self.dcs.choose(self.rng).expect("domain controllers")
    }

    fn day0(d: u32) -> i64 {
        i64::from(d) * DAY_S as i64
    }

    /// Computer accounts: hourly logons to a DC, tickets, local services.
    fn machines(&mut self, d: u32) {
        for h in 0..self.fleet.hosts.len() {
            let m = Principal::Machine(self.fleet.hosts[h].num);
            for hour in 0..24 {
                let t = Self::day0(d) + (hour * HOUR_S + self.rng.gen_range(0..HOUR_S)) as i64;
                let mut dc = self.dc();
                if dc == h {
                    dc = *self.dcs.iter().find(|&&x| x != h).unwrap_or(&dc);
                }
                if self.rng.gen_bool(0.5) {
                    self.out
                        .line(t - 1, m, h, dc, Kerberos, LogonType::Unknown, Tgs, true);
                }
                self.out.line(t, m, h, dc, Kerberos, Network, LogOn, true);
                if hour % 8 == 3 {
                    self.out
                        .line(t + 7, m, h, dc, Kerberos, LogonType::Unknown, Tgt, true);
                    self.out
                        .line(t + 9, m, h, h, Negotiate, Service, LogOn, true);
                }
            }
        }
    }

    /// Application, backup, monitoring and scanner accounts.
    fn services(&mut self, d: u32, weekend: bool) {
        let f = self.fleet;
        let day0 = Self::day0(d);
        for u in &f.users {
            let who = Principal::User(u.num);
            match u.kind {
                Kind::Service => {
                    for hour in 0..24u64 {
                        for _ in 0..self.rng.gen_range(1..=3) {
                            let t = day0 + (hour * HOUR_S + self.rng.gen_range(0..HOUR_S)) as i64;
                            let src = *u.hosts.choose(self.rng).expect("hosts");
                            let dst = *u.targets.choose(self.rng).expect("targets");
                            let dc = self.dc();
                            self.out
                                .remote(self.rng, t, who, src, dst, Kerberos, Network, dc);
                        }
                    }
                }
                Kind::MonitorSvc => {
                    let src = u.hosts[0];
                    for slot in 0..48u64 {
                        for &dst in &u.targets {
                            let jitter = self.rng.gen_range(0..120);
                            let t = day0 + (slot * 30 * MIN_S + jitter) as i64;
                            self.out.line(t, who, src, dst, Ntlm, Network, LogOn, true);
                        }
                    }
                }
                Kind::BackupSvc => {
                    let src = u.hosts[0];
                    for &dst in &u.targets {
                        let t = day0 + (HOUR_S + self.rng.gen_range(0..3 * HOUR_S)) as i64;
                        let dc = self.dc();
                        self.out
                            .remote(self.rng, t, who, src, dst, Kerberos, Network, dc);
                    }
                }
                Kind::ScannerSvc if !weekend => self.scan(u, d),
                _ => {}
            }
        }
    }

    /// A rolling vulnerability scan: a fifth of the fleet each weekday
    /// evening, so scanner edges keep appearing during the test period.
    fn scan(&mut self, u: &User, d: u32) {
        let who = Principal::User(u.num);
        let src = u.hosts[0];
        let mut t = Self::day0(d) + 20 * HOUR_S as i64;
        for &dst in &u.targets {
            if dst % 5 != d as usize % 5 || dst == src {
                continue;
            }
            t += self.rng.gen_range(5..90);
            for _ in 0..self.rng.gen_range(1..=3) {
                let ok = self.rng.gen_bool(0.85);
                self.out.line(t, who, src, dst, Ntlm, Network, LogOn, ok);
                t += self.rng.gen_range(1..10);
            }
        }
    }

    /// A service account whose password changed but one server still has
    /// the old one: it fails every 15 minutes for hours.
    fn stale_password(&mut self, d: u32) {
        let f = self.fleet;
        let svcs: Vec<&User> = f.users.iter().filter(|u| u.kind == Kind::Service).collect();
        let u = *svcs.choose(self.rng).expect("service accounts");
        let (src, dst) = (u.hosts[0], u.targets[0]);
        let mut t = Self::day0(d) + self.rng.gen_range(0..12 * HOUR_S) as i64;
        let stop = t + self.rng.gen_range(6..20) as i64 * HOUR_S as i64;
        while t < stop {
            self.out.line(
                t,
                Principal::User(u.num),
                src,
                dst,
                Ntlm,
                Network,
                LogOn,
                false,
            );
            t += (15 * MIN_S) as i64 + self.rng.gen_range(0..30);
        }
    }

    /// Servers a person may use at `t`: their usual ones (new ones only
    /// once they exist) and any picked up since.
    fn pick_target(&mut self, u: usize, t: i64) -> Option<usize> {
        let fleet = self.fleet;
        let user = &fleet.users[u];
        if self.rng.gen_bool(0.03) {
            let pool: Vec<usize> = [Role::File, Role::App, Role::Db]
                .iter()
                .flat_map(|r| self.fleet.of(*r))
                .collect();
            let s = *pool.choose(self.rng).expect("servers");
            self.picked_up.entry(u).or_default().push(s);
            return Some(s);
        }
        let extra = self.picked_up.get(&u).cloned().unwrap_or_default();
        let all: Vec<usize> = user
            .targets
            .iter()
            .chain(extra.iter())
            .copied()
            .filter(|&s| self.out.active(s, t))
            .collect();
        all.choose(self.rng).copied()
    }

    /// A person's day: interactive logon, file and application access,
    /// unlocks, sometimes a colleague's machine, helpdesk RDP.
    fn person(&mut self, u: usize, d: u32, weekend: bool) {
        let fleet = self.fleet;
        let user = &fleet.users[u];
        if !self.rng.gen_bool(if weekend { 0.06 } else { 0.92 }) {
            return;
        }
        let who = Principal::User(user.num);
        let ws = if user.hosts.len() > 1 && self.rng.gen_bool(0.4) {
            user.hosts[1]
        } else {
            user.hosts[0]
        };
        let jitter: f64 = self.rng.gen_range(-0.7..0.7);
        // a new hire's first day starts when their machine appears
        let mut t = Fleet::at_local(d, user.site, user.start_hour + jitter);
        if user.appears > 0 {
            t = t.max(user.appears as i64);
        }
        let hours = if weekend {
            self.rng.gen_range(1..3)
        } else {
            self.rng.gen_range(8..10)
        };
        let end = t + hours * HOUR_S as i64;
        self.logon_at(who, ws, t);
        let roam_at = self.rng.gen_bool(0.05).then(|| self.rng.gen_range(t..end));
        let mut rdp = if user.kind == Kind::Helpdesk {
            self.rng.gen_range(2..6)
        } else {
            0
        };
        while t < end {
            t += self.rng.gen_range(10 * MIN_S..70 * MIN_S) as i64;
            if let Some(dst) = self.pick_target(u, t) {
                if self.rng.gen_bool(0.01) {
                    self.out
                        .line(t - 40, who, ws, dst, Ntlm, Network, LogOn, false);
                }
                let auth = if self.rng.gen_bool(0.88) {
                    Kerberos
                } else {
                    Ntlm
                };
                let dc = self.dc();
                self.out
                    .remote(self.rng, t, who, ws, dst, auth, Network, dc);
            }
            if self.rng.gen_bool(0.25) {
                self.out
                    .line(t + 300, who, ws, ws, Kerberos, Unlock, LogOn, true);
            }
            if self.rng.gen_bool(0.1) {
                let fs = *self.fleet.of(Role::File).choose(self.rng).expect("file");
                let anon = Principal::Anonymous(self.fleet.hosts[fs].num);
                self.out
                    .line(t + 90, anon, ws, fs, Ntlm, Network, LogOn, true);
            }
            if rdp > 0 && self.rng.gen_bool(0.5) {
                rdp -= 1;
                let target = *self
                    .fleet
                    .of(Role::Workstation)
                    .choose(self.rng)
                    .expect("ws");
                let dc = self.dc();
                self.out.remote(
                    self.rng,
                    t + 600,
                    who,
                    ws,
                    target,
                    Kerberos,
                    RemoteInteractive,
                    dc,
                );
            }
            if roam_at.is_some_and(|r| r <= t) {
                self.roam(u, t + 60);
            }
        }
        self.out
            .line(end, who, ws, ws, AnyAuth, LogonType::Unknown, LogOff, true);
    }

    /// Interactive logon with its TGT, sometimes after a typo.
    fn logon_at(&mut self, who: Principal, ws: usize, t: i64) {
        if self.rng.gen_bool(0.04) {
            self.out
                .line(t - 20, who, ws, ws, Negotiate, Interactive, LogOn, false);
        }
        let dc = self.dc();
        self.out
            .line(t - 2, who, ws, dc, Kerberos, LogonType::Unknown, Tgt, true);
        self.out
            .line(t, who, ws, ws, Kerberos, Interactive, LogOn, true);
    }

    /// A person at a shared machine or a colleague's workstation.
    fn roam(&mut self, u: usize, t: i64) {
        let fleet = self.fleet;
        let user = &fleet.users[u];
        let who = Principal::User(user.num);
        let mut pool = self.fleet.of(Role::Shared);
        pool.extend(self.fleet.of(Role::Workstation));
        let host = *pool.choose(self.rng).expect("hosts");
        self.logon_at(who, host, t);
        if let Some(dst) = self.pick_target(u, t + 120) {
            let dc = self.dc();
            self.out
                .remote(self.rng, t + 120, who, host, dst, Kerberos, Network, dc);
        }
        self.out.line(
            t + 1_800,
            who,
            host,
            host,
            AnyAuth,
            LogonType::Unknown,
            LogOff,
            true,
        );
    }

    /// An admin's day: tasks on servers, mostly through a jump host, and
    /// now and then an on-call task at night.
    fn admin(&mut self, user: &User, d: u32, weekend: bool) {
        let who = Principal::User(user.num);
        let ws = user.hosts[0];
        if self.rng.gen_bool(if weekend { 0.25 } else { 0.92 }) {
            let start = Fleet::at_local(
                d,
                user.site,
                user.start_hour + self.rng.gen_range(-0.5..0.5),
            );
            self.logon_at(who, ws, start);
            let tasks = if weekend { 1 } else { self.rng.gen_range(3..9) };
            for _ in 0..tasks {
                let t = start + self.rng.gen_range(10 * MIN_S..9 * HOUR_S) as i64;
                self.admin_task(user, t);
            }
        }
        if self.rng.gen_bool(0.12) {
            let hour = self.rng.gen_range(22.0..26.0);
            let t = Fleet::at_local(d, user.site, hour);
            self.logon_at(who, ws, t);
            for k in 0..self.rng.gen_range(1..3) {
                self.admin_task(user, t + 300 + k * 900);
            }
        }
    }

    fn admin_task(&mut self, user: &User, t: i64) {
        let who = Principal::User(user.num);
        let ws = user.hosts[0];
        let target = if self.rng.gen_bool(0.85) {
            *user.targets.choose(self.rng).expect("targets")
        } else {
            let mut pool = self.fleet.servers();
            pool.extend(self.fleet.of(Role::Workstation));
            *pool.choose(self.rng).expect("hosts")
        };
        let dc = self.dc();
        if self.rng.gen_bool(0.7) {
            let jump = *self
                .fleet
                .of(Role::Jump)
                .choose(self.rng)
                .expect("jump hosts");
            self.out
                .remote(self.rng, t, who, ws, jump, Kerberos, RemoteInteractive, dc);
            let t2 = t + self.rng.gen_range(MIN_S..5 * MIN_S) as i64;
            let lt = if self.rng.gen_bool(0.6) {
                Network
            } else {
                RemoteInteractive
            };
            self.out
                .remote(self.rng, t2, who, jump, target, Kerberos, lt, dc);
        } else {
            let auth = if self.rng.gen_bool(0.8) {
                Kerberos
            } else {
                Ntlm
            };
            self.out
                .remote(self.rng, t, who, ws, target, auth, Network, dc);
        }
    }

    /// The contractor's laptop, on the one day it exists.
    fn contractor(&mut self, d: u32) {
        let fleet = self.fleet;
        let (laptop, u) = fleet.contractor;
        let h = &fleet.hosts[laptop];
        if h.appears / DAY_S != u64::from(d) {
            return;
        }
        let who = Principal::User(self.fleet.users[u].num);
        let mut t = h.appears as i64 + 300;
        self.logon_at(who, laptop, t);
        let _ = self.cfg;
        while t < h.leaves as i64 - 1_800 {
            t += self.rng.gen_range(15 * MIN_S..60 * MIN_S) as i64;
            if let Some(dst) = self.pick_target(u, t) {
                let dc = self.dc();
                self.out
                    .remote(self.rng, t, who, laptop, dst, Kerberos, Network, dc);
            }
        }
    }
}
