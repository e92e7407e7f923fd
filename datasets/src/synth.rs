//! A deterministic synthetic enterprise with injected, labelled ATT&CK
//! lateral-movement campaigns.
//!
//! The fleet has workstations (one owner each), Windows and Linux servers,
//! admins with their own admin workstations, a helpdesk, service accounts
//! (backup, monitoring), and a vulnerability scanner. Users work office
//! hours on weekdays. Legitimate novelty is built in: users slowly pick up
//! new servers, admins touch servers they never touched, helpdesk RDPs into
//! arbitrary workstations, new hires appear with new workstations, and a new
//! server goes live that everyone starts using. Campaigns (test days only)
//! start on a phished workstation and hop 2–4 times in one of six styles.
//!
//! Same seed and config → byte-identical event stream.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use vigil_proto::{
    AuthMethod, Event, EventHeader, FileChange, FileOp, HostId, LoginInfo, LoginService, NetFlow,
    Payload, ProcessStart, Transport,
};

const NS: u64 = 1_000_000_000;
const DAY: u64 = 86_400 * NS;
const HOUR: u64 = 3_600 * NS;
const MIN: u64 = 60 * NS;
/// Day 0 of the simulation: Monday 2024-01-01 00:00 UTC.
pub const EPOCH_NS: u64 = 1_704_067_200 * NS;

/// Size and length of the simulated enterprise.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthConfig {
    /// RNG seed.
    pub seed: u64,
    /// Days simulated.
    pub days: u32,
    /// Campaigns are only injected on days ≥ this (the first days are the
    /// training period).
    pub attack_from_day: u32,
    /// Ordinary workstations.
    pub workstations: usize,
    /// Windows servers.
    pub windows_servers: usize,
    /// Linux servers.
    pub linux_servers: usize,
    /// Admins (each with an admin workstation).
    pub admins: usize,
    /// Campaigns injected.
    pub campaigns: usize,
    /// New hires joining during the attack period.
    pub new_hires: usize,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            seed: 1,
            days: 14,
            attack_from_day: 7,
            workstations: 60,
            windows_servers: 10,
            linux_servers: 6,
            admins: 4,
            campaigns: 6,
            new_hires: 4,
        }
    }
}

/// What a host is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// An employee's workstation.
    Workstation,
    /// An admin's workstation.
    AdminWorkstation,
    /// Windows server.
    WindowsServer,
    /// Linux server.
    LinuxServer,
    /// Backup server (service account source).
    Backup,
    /// Monitoring server (WinRM polling).
    Monitor,
    /// Vulnerability scanner.
    Scanner,
}

/// One simulated host.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthHost {
    /// Id.
    pub id: HostId,
    /// Name.
    pub name: String,
    /// Address.
    pub addr: IpAddr,
    /// Role.
    pub role: Role,
    /// First day it exists.
    pub from_day: u32,
}

/// The lateral-movement style of a campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// SSH hops between Linux servers with a planted key.
    SshChain,
    /// SMB admin share + service install (PsExec), pass-the-hash.
    PsExec,
    /// WMI process create.
    Wmi,
    /// WinRM / PowerShell remoting.
    WinRm,
    /// RDP with stolen credentials.
    Rdp,
    /// Plain logons with stolen valid credentials.
    StolenCreds,
}

impl Style {
    const ALL: [Style; 6] = [
        Style::SshChain,
        Style::PsExec,
        Style::Wmi,
        Style::WinRm,
        Style::Rdp,
        Style::StolenCreds,
    ];

    /// Main ATT&CK technique.
    pub fn technique(self) -> &'static str {
        match self {
            Style::SshChain => "T1021.004",
            Style::PsExec => "T1569.002",
            Style::Wmi => "T1047",
            Style::WinRm => "T1021.006",
            Style::Rdp => "T1021.001",
            Style::StolenCreds => "T1078",
        }
    }
}

/// Ground truth of one injected campaign.
#[derive(Debug, Clone, PartialEq)]
pub struct Campaign {
    /// Campaign number (1-based).
    pub id: u32,
    /// Style.
    pub style: Style,
    /// Hosts in hop order.
    pub path: Vec<HostId>,
    /// Start time, ns.
    pub start_ns: u64,
}

/// An event with its label (campaign id when malicious).
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledEvent {
    /// The event.
    pub event: Event,
    /// Campaign it belongs to, if any.
    pub campaign: Option<u32>,
}

#[derive(Debug, Clone)]
struct User {
    name: String,
    home: usize,
    servers: Vec<usize>,
    from_day: u32,
}

/// The generator. Call [`Generator::day`] for each day in order.
pub struct Generator {
    cfg: SynthConfig,
    rng: StdRng,
    hosts: Vec<SynthHost>,
    users: Vec<User>,
    admins: Vec<User>,
    campaigns: Vec<Campaign>,
    seq: BTreeMap<HostId, u64>,
    pid: u32,
}

struct Raw {
    host: usize,
    ts: u64,
    payload: Payload,
    campaign: Option<u32>,
}

fn ws_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 1, (i / 250) as u8, (i % 250 + 1) as u8))
}

impl Generator {
    /// Builds the fleet and plans the campaigns.
    pub fn new(cfg: SynthConfig) -> Self {
        let mut rng = StdRng::seed_from_u64(cfg.seed);
        let mut hosts = Vec::new();
        let mut add = |name: String, addr: IpAddr, role: Role, from_day: u32| {
            let id = HostId(hosts.len() as u64 + 1);
            hosts.push(SynthHost {
                id,
                name,
                addr,
                role,
                from_day,
            });
            hosts.len() - 1
        };
        let hire_day =
            |i: usize| cfg.attack_from_day + (i as u32 % (cfg.days - cfg.attack_from_day).max(1));
        for i in 0..cfg.workstations + cfg.new_hires {
            let from = if i < cfg.workstations { 0 } else { hire_day(i) };
            add(format!("ws-{i:03}"), ws_ip(i), Role::Workstation, from);
        }
        for i in 0..cfg.admins {
            add(
                format!("adm-ws-{i:02}"),
                IpAddr::V4(Ipv4Addr::new(10, 3, 0, i as u8 + 1)),
                Role::AdminWorkstation,
                0,
            );
        }
        // One extra Windows server goes live at the start of the attack period.
        for i in 0..=cfg.windows_servers {
            let from = if i < cfg.windows_servers {
                0
            } else {
                cfg.attack_from_day + 1
            };
            add(
                format!("srv-win-{i:02}"),
                IpAddr::V4(Ipv4Addr::new(10, 2, 0, i as u8 + 1)),
                Role::WindowsServer,
                from,
            );
        }
        for i in 0..cfg.linux_servers {
            add(
                format!("srv-lnx-{i:02}"),
                IpAddr::V4(Ipv4Addr::new(10, 2, 1, i as u8 + 1)),
                Role::LinuxServer,
                0,
            );
        }
        add(
            "backup-01".into(),
            IpAddr::V4(Ipv4Addr::new(10, 2, 9, 1)),
            Role::Backup,
            0,
        );
        add(
            "monitor-01".into(),
            IpAddr::V4(Ipv4Addr::new(10, 2, 9, 2)),
            Role::Monitor,
            0,
        );
        add(
            "scanner-01".into(),
            IpAddr::V4(Ipv4Addr::new(10, 2, 9, 3)),
            Role::Scanner,
            0,
        );
        let win: Vec<usize> = hosts
            .iter()
            .enumerate()
            .filter(|(_, h)| h.role == Role::WindowsServer)
            .map(|(i, _)| i)
            .collect();
        let mut users = Vec::new();
        for (i, h) in hosts
            .iter()
            .enumerate()
            .filter(|(_, h)| h.role == Role::Workstation)
        {
            // everyone uses the first two (file, mail) servers, plus a few others
            let mut servers = vec![win[0], win[1]];
            for _ in 0..rng.gen_range(0..3) {
                let s = win[rng.gen_range(2..win.len() - 1)];
                if !servers.contains(&s) {
                    servers.push(s);
                }
            }
            users.push(User {
                name: format!("user{i:03}"),
                home: i,
                servers,
                from_day: h.from_day,
            });
        }
        let all_servers: Vec<usize> = hosts
            .iter()
            .enumerate()
            .filter(|(_, h)| matches!(h.role, Role::WindowsServer | Role::LinuxServer))
            .map(|(i, _)| i)
            .collect();
        let admins: Vec<User> = hosts
            .iter()
            .enumerate()
            .filter(|(_, h)| h.role == Role::AdminWorkstation)
            .enumerate()
            .map(|(k, (i, _))| {
                let mut s = all_servers.clone();
                s.shuffle(&mut rng);
                s.truncate(all_servers.len() / 2);
                User {
                    name: format!("adm{k:02}"),
                    home: i,
                    servers: s,
                    from_day: 0,
                }
            })
            .collect();
        let mut g = Generator {
            cfg,
            rng,
            hosts,
            users,
            admins,
            campaigns: Vec::new(),
            seq: BTreeMap::new(),
            pid: 1000,
        };
        g.plan_campaigns();
        g
    }

    fn plan_campaigns(&mut self) {
        let ws: Vec<usize> = self.idx(|h| h.role == Role::Workstation && h.from_day == 0);
        let win = self.idx(|h| h.role == Role::WindowsServer && h.from_day == 0);
        let lnx = self.idx(|h| h.role == Role::LinuxServer);
        for c in 0..self.cfg.campaigns {
            let style = Style::ALL[(c + self.cfg.seed as usize) % Style::ALL.len()];
            let day = self.cfg.attack_from_day
                + self
                    .rng
                    .gen_range(0..(self.cfg.days - self.cfg.attack_from_day).max(1));
            let hour = if self.rng.gen_bool(0.3) {
                self.rng.gen_range(0..6)
            } else {
                self.rng.gen_range(9..17)
            };
            let start_ns =
                EPOCH_NS + u64::from(day) * DAY + hour * HOUR + self.rng.gen_range(0..50) * MIN;
            let hops = self.rng.gen_range(2..=4);
            let first = *ws.choose(&mut self.rng).expect("workstations");
            let mut path = vec![first];
            let pool: Vec<usize> = match style {
                Style::SshChain => lnx.clone(),
                Style::Rdp | Style::StolenCreds => {
                    let mut p = win.clone();
                    p.extend(ws.iter().copied().take(20));
                    p
                }
                _ => {
                    let mut p = win.clone();
                    p.extend(ws.iter().copied());
                    p
                }
            };
            while path.len() <= hops {
                let n = *pool.choose(&mut self.rng).expect("pool");
                if !path.contains(&n) {
                    path.push(n);
                }
            }
            self.campaigns.push(Campaign {
                id: c as u32 + 1,
                style,
                path: path.iter().map(|i| self.hosts[*i].id).collect(),
                start_ns,
            });
        }
    }

    fn idx(&self, f: impl Fn(&SynthHost) -> bool) -> Vec<usize> {
        self.hosts
            .iter()
            .enumerate()
            .filter(|(_, h)| f(h))
            .map(|(i, _)| i)
            .collect()
    }

    /// Every host that will ever exist (register them with the detector).
    pub fn hosts(&self) -> &[SynthHost] {
        &self.hosts
    }

    /// The planned campaigns (ground truth).
    pub fn campaigns(&self) -> &[Campaign] {
        &self.campaigns
    }

    /// Configuration.
    pub fn config(&self) -> &SynthConfig {
        &self.cfg
    }

    fn next_pid(&mut self) -> u32 {
        self.pid = self.pid.wrapping_add(1).max(1000);
        self.pid
    }

    /// All events of day `d`, time-ordered, with per-host gap-free seqs.
    pub fn day(&mut self, d: u32) -> Vec<LabelledEvent> {
        let mut raw: Vec<Raw> = Vec::new();
        let day0 = EPOCH_NS + u64::from(d) * DAY;
        let weekday = d % 7 < 5;
        self.users_day(d, day0, weekday, &mut raw);
        self.admins_day(d, day0, weekday, &mut raw);
        self.services_day(d, day0, &mut raw);
        let camps: Vec<Campaign> = self
            .campaigns
            .iter()
            .filter(|c| c.start_ns >= day0 && c.start_ns < day0 + DAY)
            .cloned()
            .collect();
        for c in camps {
            self.campaign(&c, &mut raw);
        }
        raw.sort_by_key(|r| (r.ts, r.host));
        raw.into_iter()
            .map(|r| {
                let id = self.hosts[r.host].id;
                let s = self.seq.entry(id).or_insert(0);
                *s += 1;
                LabelledEvent {
                    event: Event {
                        header: EventHeader {
                            host: id,
                            seq: *s,
                            ts_ns: r.ts,
                        },
                        payload: r.payload,
                    },
                    campaign: r.campaign,
                }
            })
            .collect()
    }

    fn work_time(&mut self, day0: u64) -> u64 {
        day0 + 8 * HOUR + self.rng.gen_range(0..10 * 3600) * NS
    }

    fn users_day(&mut self, d: u32, day0: u64, weekday: bool, raw: &mut Vec<Raw>) {
        let win = self.idx(|h| h.role == Role::WindowsServer && h.from_day <= d);
        let new_server =
            self.idx(|h| h.role == Role::WindowsServer && h.from_day > 0 && h.from_day <= d);
        for u in 0..self.users.len() {
            if self.users[u].from_day > d || (!weekday && !self.rng.gen_bool(0.05)) {
                continue;
            }
            if self.rng.gen_bool(0.04) {
                continue; // day off
            }
            let home = self.users[u].home;
            let name = self.users[u].name.clone();
            let t0 = day0 + 8 * HOUR + self.rng.gen_range(0..90) * MIN;
            raw.push(login(
                home,
                t0,
                &name,
                None,
                LoginService::Console,
                AuthMethod::Password,
                None,
            ));
            for _ in 0..self.rng.gen_range(6..14) {
                let t = self.work_time(day0).max(t0 + MIN);
                let exe = [
                    "chrome.exe",
                    "outlook.exe",
                    "excel.exe",
                    "winword.exe",
                    "teams.exe",
                ][self.rng.gen_range(0..5)];
                let pid = self.next_pid();
                raw.push(proc(home, t, pid, "explorer.exe", exe, &name));
            }
            // legitimate novelty: pick up a server now and then; everyone
            // moves to the new server once it is live
            if self.rng.gen_bool(0.03) {
                let s = win[self.rng.gen_range(0..win.len())];
                if !self.users[u].servers.contains(&s) {
                    self.users[u].servers.push(s);
                }
            }
            for s in &new_server {
                if !self.users[u].servers.contains(s) && self.rng.gen_bool(0.3) {
                    self.users[u].servers.push(*s);
                }
            }
            let servers = self.users[u].servers.clone();
            for s in servers {
                for _ in 0..self.rng.gen_range(1..4) {
                    let t = self.work_time(day0).max(t0 + MIN);
                    self.smb_session(home, s, t, &name, AuthMethod::Kerberos, None, raw);
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn smb_session(
        &mut self,
        src: usize,
        dst: usize,
        t: u64,
        user: &str,
        method: AuthMethod,
        campaign: Option<u32>,
        raw: &mut Vec<Raw>,
    ) {
        let (sa, da) = (self.hosts[src].addr, self.hosts[dst].addr);
        let port = self.rng.gen_range(49152..65000);
        raw.push(Raw {
            host: src,
            ts: t,
            payload: Payload::NetConnect(flow(sa, port, da, 445)),
            campaign,
        });
        raw.push(Raw {
            host: dst,
            ts: t + NS / 10,
            payload: Payload::NetAccept(flow(da, 445, sa, port)),
            campaign,
        });
        let mut l = login(
            dst,
            t + NS / 5,
            user,
            Some(sa),
            LoginService::Smb,
            method,
            campaign,
        );
        if let Payload::Login(info) = &mut l.payload {
            info.src_port = Some(port);
        }
        raw.push(l);
    }

    fn admins_day(&mut self, d: u32, day0: u64, weekday: bool, raw: &mut Vec<Raw>) {
        let servers = self
            .idx(|h| matches!(h.role, Role::WindowsServer | Role::LinuxServer) && h.from_day <= d);
        let ws = self.idx(|h| h.role == Role::Workstation && h.from_day <= d);
        for a in 0..self.admins.len() {
            if !weekday && !self.rng.gen_bool(0.2) {
                continue;
            }
            let home = self.admins[a].home;
            let name = self.admins[a].name.clone();
            if self.rng.gen_bool(0.15) {
                let s = servers[self.rng.gen_range(0..servers.len())];
                if !self.admins[a].servers.contains(&s) {
                    self.admins[a].servers.push(s);
                }
            }
            let mine = self.admins[a].servers.clone();
            for _ in 0..self.rng.gen_range(3..10) {
                let s = mine[self.rng.gen_range(0..mine.len())];
                let t = self.work_time(day0);
                self.admin_session(home, s, t, &name, raw);
            }
            // helpdesk duty: RDP into users' workstations
            if a == 0 {
                for _ in 0..self.rng.gen_range(1..5) {
                    let w = ws[self.rng.gen_range(0..ws.len())];
                    let t = self.work_time(day0);
                    self.rdp(home, w, t, &name, AuthMethod::Kerberos, None, raw);
                }
            }
        }
    }

    fn admin_session(&mut self, src: usize, dst: usize, t: u64, user: &str, raw: &mut Vec<Raw>) {
        if self.hosts[dst].role == Role::LinuxServer {
            self.ssh(src, dst, t, user, None, raw);
        } else if self.rng.gen_bool(0.5) {
            self.rdp(src, dst, t, user, AuthMethod::Kerberos, None, raw);
        } else {
            self.winrm(src, dst, t, user, None, raw, "hostname.exe");
        }
    }

    fn connect_pair(
        &mut self,
        src: usize,
        dst: usize,
        t: u64,
        port: u16,
        campaign: Option<u32>,
        raw: &mut Vec<Raw>,
    ) {
        let (sa, da) = (self.hosts[src].addr, self.hosts[dst].addr);
        let sp = self.rng.gen_range(49152..65000);
        raw.push(Raw {
            host: src,
            ts: t,
            payload: Payload::NetConnect(flow(sa, sp, da, port)),
            campaign,
        });
        raw.push(Raw {
            host: dst,
            ts: t + NS / 10,
            payload: Payload::NetAccept(flow(da, port, sa, sp)),
            campaign,
        });
    }

    fn ssh(
        &mut self,
        src: usize,
        dst: usize,
        t: u64,
        user: &str,
        campaign: Option<u32>,
        raw: &mut Vec<Raw>,
    ) {
        self.connect_pair(src, dst, t, 22, campaign, raw);
        let sa = self.hosts[src].addr;
        raw.push(login(
            dst,
            t + NS,
            user,
            Some(sa),
            LoginService::Ssh,
            AuthMethod::PublicKey,
            campaign,
        ));
        let pid = self.next_pid();
        let mut p = proc(dst, t + 2 * NS, pid, "/usr/sbin/sshd", "/bin/bash", user);
        p.campaign = campaign;
        raw.push(p);
        let pid = self.next_pid();
        let cmd = if campaign.is_some() {
            "/usr/bin/curl"
        } else {
            "/usr/bin/systemctl"
        };
        let mut p = proc(dst, t + 30 * NS, pid, "/bin/bash", cmd, user);
        p.campaign = campaign;
        raw.push(p);
    }

    #[allow(clippy::too_many_arguments)]
    fn rdp(
        &mut self,
        src: usize,
        dst: usize,
        t: u64,
        user: &str,
        method: AuthMethod,
        campaign: Option<u32>,
        raw: &mut Vec<Raw>,
    ) {
        self.connect_pair(src, dst, t, 3389, campaign, raw);
        let sa = self.hosts[src].addr;
        raw.push(login(
            dst,
            t + NS,
            user,
            Some(sa),
            LoginService::Rdp,
            method,
            campaign,
        ));
        let pid = self.next_pid();
        let mut p = proc(
            dst,
            t + 3 * NS,
            pid,
            "C:\\Windows\\System32\\userinit.exe",
            "C:\\Windows\\explorer.exe",
            user,
        );
        p.campaign = campaign;
        raw.push(p);
    }

    #[allow(clippy::too_many_arguments)]
    fn winrm(
        &mut self,
        src: usize,
        dst: usize,
        t: u64,
        user: &str,
        campaign: Option<u32>,
        raw: &mut Vec<Raw>,
        child: &str,
    ) {
        self.connect_pair(src, dst, t, 5985, campaign, raw);
        let sa = self.hosts[src].addr;
        raw.push(login(
            dst,
            t + NS,
            user,
            Some(sa),
            LoginService::WinRm,
            AuthMethod::Kerberos,
            campaign,
        ));
        let pid = self.next_pid();
        let mut p = proc(
            dst,
            t + 2 * NS,
            pid,
            "C:\\Windows\\System32\\svchost.exe",
            "C:\\Windows\\System32\\wsmprovhost.exe",
            user,
        );
        p.campaign = campaign;
        raw.push(p);
        let pid2 = self.next_pid();
        let mut p = proc(
            dst,
            t + 3 * NS,
            pid2,
            "C:\\Windows\\System32\\wsmprovhost.exe",
            child,
            user,
        );
        p.campaign = campaign;
        raw.push(p);
    }

    fn services_day(&mut self, d: u32, day0: u64, raw: &mut Vec<Raw>) {
        let backup = self.idx(|h| h.role == Role::Backup)[0];
        let monitor = self.idx(|h| h.role == Role::Monitor)[0];
        let scanner = self.idx(|h| h.role == Role::Scanner)[0];
        let servers = self
            .idx(|h| matches!(h.role, Role::WindowsServer | Role::LinuxServer) && h.from_day <= d);
        for s in &servers {
            let t = day0 + HOUR + self.rng.gen_range(0..3600) * NS;
            if self.hosts[*s].role == Role::LinuxServer {
                self.ssh(backup, *s, t, "svc_backup", None, raw);
            } else {
                self.smb_session(backup, *s, t, "svc_backup", AuthMethod::Kerberos, None, raw);
            }
        }
        for h in 0..24 {
            for s in &servers {
                if self.hosts[*s].role == Role::WindowsServer {
                    let t = day0 + h * HOUR + self.rng.gen_range(0..600) * NS;
                    self.winrm(
                        monitor,
                        *s,
                        t,
                        "svc_monitor",
                        None,
                        raw,
                        "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
                    );
                }
            }
        }
        // weekly scan, Sunday 02:00: connections only, every host
        if d % 7 == 6 {
            let all = self.idx(|h| h.role != Role::Scanner && h.from_day <= d);
            for h in all {
                let t = day0 + 2 * HOUR + self.rng.gen_range(0..1800) * NS;
                for port in [22u16, 445, 3389] {
                    self.connect_pair(scanner, h, t, port, None, raw);
                }
            }
        }
        // servers' own routine processes
        for s in servers {
            for _ in 0..4 {
                let t = day0 + self.rng.gen_range(0..86_400) * NS;
                let pid = self.next_pid();
                let (p, c) = if self.hosts[s].role == Role::LinuxServer {
                    ("/usr/lib/systemd/systemd", "/usr/sbin/cron")
                } else {
                    (
                        "C:\\Windows\\System32\\services.exe",
                        "C:\\Windows\\System32\\svchost.exe",
                    )
                };
                raw.push(proc(s, t, pid, p, c, "system"));
            }
        }
    }

    fn campaign(&mut self, c: &Campaign, raw: &mut Vec<Raw>) {
        let path: Vec<usize> = c.path.iter().map(|id| (id.0 - 1) as usize).collect();
        let victim = self
            .users
            .iter()
            .find(|u| u.home == path[0])
            .map(|u| u.name.clone())
            .unwrap_or_else(|| "user000".into());
        let admin = self.admins[self.rng.gen_range(0..self.admins.len())]
            .name
            .clone();
        let mut t = c.start_ns;
        let cid = Some(c.id);
        // the phish: an office document starts a shell on the first host
        let pid = self.next_pid();
        let mut p = proc(path[0], t, pid, "winword.exe", "powershell.exe", &victim);
        p.campaign = cid;
        raw.push(p);
        for w in path.windows(2) {
            t += self.rng.gen_range(3..25) * MIN;
            let (s, d) = (w[0], w[1]);
            match c.style {
                Style::SshChain => {
                    let user = if self.rng.gen_bool(0.5) {
                        admin.clone()
                    } else {
                        "root".to_string()
                    };
                    self.ssh(s, d, t, &user, cid, raw);
                    raw.push(Raw {
                        host: d,
                        ts: t + 40 * NS,
                        payload: Payload::FileChange(FileChange {
                            path: format!("/home/{user}/.ssh/authorized_keys"),
                            op: FileOp::Modified,
                            size: Some(800),
                            mode: Some(0o600),
                            uid: Some(1000),
                            sha256: None,
                            pid: None,
                        }),
                        campaign: cid,
                    });
                }
                Style::PsExec => {
                    self.smb_session(s, d, t, &admin, AuthMethod::Ntlm, cid, raw);
                    let pid = self.next_pid();
                    let mut p = proc(
                        d,
                        t + 2 * NS,
                        pid,
                        "C:\\Windows\\System32\\services.exe",
                        "C:\\Windows\\PSEXESVC.exe",
                        "system",
                    );
                    p.campaign = cid;
                    raw.push(p);
                    let pid2 = self.next_pid();
                    let mut p = proc(
                        d,
                        t + 3 * NS,
                        pid2,
                        "C:\\Windows\\PSEXESVC.exe",
                        "cmd.exe",
                        "system",
                    );
                    p.campaign = cid;
                    raw.push(p);
                }
                Style::Wmi => {
                    self.connect_pair(s, d, t, 135, cid, raw);
                    let sa = self.hosts[s].addr;
                    raw.push(login(
                        d,
                        t + NS,
                        &admin,
                        Some(sa),
                        LoginService::Wmi,
                        AuthMethod::Kerberos,
                        cid,
                    ));
                    let pid = self.next_pid();
                    let mut p = proc(
                        d,
                        t + 2 * NS,
                        pid,
                        "C:\\Windows\\System32\\wbem\\WmiPrvSE.exe",
                        "powershell.exe",
                        &admin,
                    );
                    p.campaign = cid;
                    raw.push(p);
                }
                Style::WinRm => {
                    self.winrm(s, d, t, &admin, cid, raw, "powershell.exe");
                }
                Style::Rdp => {
                    self.rdp(s, d, t, &admin, AuthMethod::Kerberos, cid, raw);
                }
                Style::StolenCreds => {
                    let user = if self.rng.gen_bool(0.5) {
                        victim.clone()
                    } else {
                        admin.clone()
                    };
                    self.smb_session(s, d, t, &user, AuthMethod::Kerberos, cid, raw);
                }
            }
        }
    }
}

fn flow(local: IpAddr, lp: u16, remote: IpAddr, rp: u16) -> NetFlow {
    NetFlow {
        transport: Transport::Tcp,
        local: SocketAddr::new(local, lp),
        remote: SocketAddr::new(remote, rp),
        pid: None,
        exe: None,
        repeat: 1,
    }
}

fn login(
    host: usize,
    ts: u64,
    user: &str,
    src: Option<IpAddr>,
    service: LoginService,
    method: AuthMethod,
    campaign: Option<u32>,
) -> Raw {
    Raw {
        host,
        ts,
        payload: Payload::Login(LoginInfo {
            user: user.to_string(),
            method,
            service,
            src_addr: src,
            src_port: None,
            src_host: None,
            from_user: None,
            pid: None,
        }),
        campaign,
    }
}

fn proc(host: usize, ts: u64, pid: u32, parent: &str, exe: &str, user: &str) -> Raw {
    Raw {
        host,
        ts,
        payload: Payload::ProcessStart(ProcessStart {
            pid,
            ppid: 1,
            exe: Some(exe.to_string()),
            argv: vec![exe.to_string()],
            user: Some(user.to_string()),
            parent_exe: Some(parent.to_string()),
            start_time_ns: Some(ts),
            ..Default::default()
        }),
        campaign: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(seed: u64) -> SynthConfig {
        SynthConfig {
            seed,
            days: 9,
            attack_from_day: 7,
            workstations: 12,
            windows_servers: 4,
            linux_servers: 3,
            admins: 2,
            campaigns: 3,
            new_hires: 1,
        }
    }

    #[test]
    fn same_seed_same_stream() {
        let mut a = Generator::new(small(7));
        let mut b = Generator::new(small(7));
        for d in 0..9 {
            assert_eq!(a.day(d), b.day(d));
        }
        let mut c = Generator::new(small(8));
        let mut a = Generator::new(small(7));
        assert_ne!(a.day(1), c.day(1));
    }

    #[test]
    fn campaigns_are_labelled_only_in_attack_days_and_seqs_are_gap_free() {
        let mut g = Generator::new(small(3));
        let mut last: BTreeMap<HostId, u64> = BTreeMap::new();
        let mut labelled = 0;
        for d in 0..9 {
            for le in g.day(d) {
                let h = le.event.header;
                assert_eq!(last.insert(h.host, h.seq).unwrap_or(0) + 1, h.seq);
                if le.campaign.is_some() {
                    labelled += 1;
                    assert!(h.ts_ns >= EPOCH_NS + 7 * DAY);
                }
            }
        }
        assert!(labelled > 10, "{labelled}");
        assert_eq!(g.campaigns().len(), 3);
    }
}
