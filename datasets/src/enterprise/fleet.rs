//! Who is in the enterprise: hosts with roles and sites, people, admins,
//! service accounts, and who appears when.

use super::{EnterpriseConfig, DAY_S, HOUR_S};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use std::collections::HashSet;

/// UTC offsets (hours) of the sites; site 0 holds the data centre.
pub(crate) const SITE_OFFSETS: [i64; 4] = [0, -6, 1, 8];

/// What a host is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Workstation,
    Shared,
    AdminWs,
    Dc,
    File,
    App,
    Db,
    Jump,
    Backup,
    Monitor,
    Scanner,
}

impl Role {
    pub(crate) fn is_server(self) -> bool {
        !matches!(self, Role::Workstation | Role::Shared | Role::AdminWs)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Host {
    /// The number in `C{n}`.
    pub num: u32,
    pub role: Role,
    pub site: usize,
    /// First second the host exists (0: from the start).
    pub appears: u64,
    /// Last second (exclusive) the host exists.
    pub leaves: u64,
}

/// What a person or account does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Regular,
    Helpdesk,
    Admin,
    /// Runs from `hosts` to `targets` day and night.
    Service,
    BackupSvc,
    MonitorSvc,
    ScannerSvc,
}

#[derive(Debug, Clone)]
pub(crate) struct User {
    pub num: u32,
    pub kind: Kind,
    pub site: usize,
    /// Hosts (indices) the account logs on from.
    pub hosts: Vec<usize>,
    /// Servers (indices) it usually reaches.
    pub targets: Vec<usize>,
    /// Local start of the working day, hours.
    pub start_hour: f64,
    /// First second the account exists.
    pub appears: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct Fleet {
    pub hosts: Vec<Host>,
    pub users: Vec<User>,
    /// The contractor's laptop and the user who brings it.
    pub contractor: (usize, usize),
}

/// Names are drawn from 1..=this (LANL-like sparse numbering).
pub(crate) fn name_range(hosts: usize) -> u32 {
    (hosts as u32 * 40).max(2_000)
}

/// Distinct random numbers for names, so a number reveals nothing.
struct Names {
    used: HashSet<u32>,
    max: u32,
}

impl Names {
    fn draw(&mut self, rng: &mut StdRng) -> u32 {
        loop {
            let n = rng.gen_range(1..=self.max);
            if self.used.insert(n) {
                return n;
            }
        }
    }
}

impl Fleet {
    pub(crate) fn new(cfg: &EnterpriseConfig, rng: &mut StdRng) -> Fleet {
        let n = cfg.hosts;
        let mut names = Names {
            used: HashSet::new(),
            max: name_range(n),
        };
        let end = cfg.end();
        let mut hosts = Vec::new();
        let mut add = |role: Role, count: usize, rng: &mut StdRng, names: &mut Names| {
            for _ in 0..count {
                let site = if role.is_server() {
                    0
                } else {
                    *[0, 0, 1, 2, 3].choose(rng).expect("non-empty")
                };
                hosts.push(Host {
                    num: names.draw(rng),
                    role,
                    site,
                    appears: 0,
                    leaves: end,
                });
            }
        };
        let servers = [
            (Role::Dc, (n / 150).max(2)),
            (Role::File, (n / 60).max(2)),
            (Role::App, (n / 40).max(3)),
            (Role::Db, (n / 80).max(2)),
            (Role::Jump, (n / 200).max(2)),
            (Role::Backup, 1),
            (Role::Monitor, 1),
            (Role::Scanner, 1),
        ];
        let admin_ws = (n / 50).max(3);
        let shared = (n / 40).max(2);
        let n_servers: usize = servers.iter().map(|s| s.1).sum();
        for (role, count) in servers {
            add(role, count, rng, &mut names);
        }
        add(Role::AdminWs, admin_ws, rng, &mut names);
        add(Role::Shared, shared, rng, &mut names);
        let ws = n.saturating_sub(n_servers + admin_ws + shared).max(4);
        add(Role::Workstation, ws, rng, &mut names);
        let mut f = Fleet {
            hosts,
            users: Vec::new(),
            contractor: (0, 0),
        };
        f.add_people(cfg, rng, &mut names);
        f.add_services(rng, &mut names);
        f.add_newcomers(cfg, rng, &mut names);
        f
    }

    pub(crate) fn of(&self, role: Role) -> Vec<usize> {
        (0..self.hosts.len())
            .filter(|&i| self.hosts[i].role == role)
            .collect()
    }

    pub(crate) fn servers(&self) -> Vec<usize> {
        (0..self.hosts.len())
            .filter(|&i| self.hosts[i].role.is_server())
            .collect()
    }

    /// Servers a person uses: file servers and a few applications.
    fn office_targets(&self, rng: &mut StdRng) -> Vec<usize> {
        let mut t = self.of(Role::File);
        let apps = self.of(Role::App);
        let k = rng.gen_range(1..=apps.len().min(3));
        t.extend(apps.choose_multiple(rng, k).copied());
        t
    }

    fn add_people(&mut self, cfg: &EnterpriseConfig, rng: &mut StdRng, names: &mut Names) {
        let mut ws = self.of(Role::Workstation);
        ws.shuffle(rng);
        // About one person in six has a second machine (a laptop).
        let second = ws.len() / 7;
        let (pairs, singles) = ws.split_at(second * 2);
        let mut owned: Vec<Vec<usize>> = pairs.chunks(2).map(|c| c.to_vec()).collect();
        owned.extend(singles.iter().map(|&h| vec![h]));
        for (i, hosts) in owned.into_iter().enumerate() {
            let site = self.hosts[hosts[0]].site;
            let kind = if i < 2 { Kind::Helpdesk } else { Kind::Regular };
            let targets = self.office_targets(rng);
            self.users.push(User {
                num: names.draw(rng),
                kind,
                site,
                hosts,
                targets,
                start_hour: rng.gen_range(7.0..10.0),
                appears: 0,
            });
        }
        let servers = self.servers();
        for a in self.of(Role::AdminWs) {
            let k = (servers.len() / 2).max(3);
            let targets = servers.choose_multiple(rng, k).copied().collect();
            self.users.push(User {
                num: names.draw(rng),
                kind: Kind::Admin,
                site: self.hosts[a].site,
                hosts: vec![a],
                targets,
                start_hour: rng.gen_range(7.0..10.0),
                appears: 0,
            });
        }
        let _ = cfg;
    }

    fn add_services(&mut self, rng: &mut StdRng, names: &mut Names) {
        let mut svc = |kind: Kind, hosts: Vec<usize>, targets: Vec<usize>, rng: &mut StdRng| User {
            num: names.draw(rng),
            kind,
            site: 0,
            hosts,
            targets,
            start_hour: 0.0,
            appears: 0,
        };
        let all: Vec<usize> = (0..self.hosts.len()).collect();
        let backup = svc(Kind::BackupSvc, self.of(Role::Backup), all.clone(), rng);
        let monitor = svc(
            Kind::MonitorSvc,
            self.of(Role::Monitor),
            self.servers(),
            rng,
        );
        let scanner = svc(Kind::ScannerSvc, self.of(Role::Scanner), all, rng);
        self.users.extend([backup, monitor, scanner]);
        // Application service accounts, each shared by two app servers.
        let apps = self.of(Role::App);
        let dbs = self.of(Role::Db);
        let files = self.of(Role::File);
        for pair in apps.chunks(2) {
            let mut targets = dbs.clone();
            targets.push(*files.choose(rng).expect("file servers"));
            let mut hosts = pair.to_vec();
            if hosts.len() == 1 {
                hosts.push(apps[0]);
                hosts.dedup();
            }
            let u = svc(Kind::Service, hosts, targets, rng);
            self.users.push(u);
        }
    }

    /// New hires, a new server and the contractor's laptop, all appearing
    /// after the training period.
    fn add_newcomers(&mut self, cfg: &EnterpriseConfig, rng: &mut StdRng, names: &mut Names) {
        let split = cfg.split();
        let end = cfg.end();
        let test_days = u64::from(cfg.days - cfg.train_days);
        let day_in_test = |rng: &mut StdRng| split + rng.gen_range(0..test_days) * DAY_S;
        let hires = (cfg.hosts / 30).max(1);
        for _ in 0..hires {
            let site = *[0, 1, 2, 3].choose(rng).expect("non-empty");
            let appears = day_in_test(rng);
            self.hosts.push(Host {
                num: names.draw(rng),
                role: Role::Workstation,
                site,
                appears,
                leaves: end,
            });
            let targets = self.office_targets(rng);
            self.users.push(User {
                num: names.draw(rng),
                kind: Kind::Regular,
                site,
                hosts: vec![self.hosts.len() - 1],
                targets,
                start_hour: rng.gen_range(7.0..10.0),
                appears,
            });
        }
        let appears = split + rng.gen_range(0..DAY_S);
        self.hosts.push(Host {
            num: names.draw(rng),
            role: Role::App,
            site: 0,
            appears,
            leaves: end,
        });
        let new_server = self.hosts.len() - 1;
        // A third of the people adopt the new application.
        for u in &mut self.users {
            if u.kind == Kind::Regular && rng.gen_bool(0.33) {
                u.targets.push(new_server);
            }
        }
        let day = day_in_test(rng);
        let laptop_appears = day + 9 * HOUR_S + rng.gen_range(0..4 * HOUR_S);
        self.hosts.push(Host {
            num: names.draw(rng),
            role: Role::Workstation,
            site: 0,
            appears: laptop_appears,
            leaves: (laptop_appears + 8 * HOUR_S).min(end),
        });
        let regular: Vec<usize> = (0..self.users.len())
            .filter(|&u| self.users[u].kind == Kind::Regular && self.users[u].appears == 0)
            .collect();
        self.contractor = (
            self.hosts.len() - 1,
            *regular.choose(rng).expect("regular users"),
        );
    }

    /// Converts a local hour of day `d` at `site` into data-set seconds.
    pub(crate) fn at_local(d: u32, site: usize, hour: f64) -> i64 {
        i64::from(d) * DAY_S as i64 + ((hour - SITE_OFFSETS[site] as f64) * 3_600.0) as i64
    }
}
