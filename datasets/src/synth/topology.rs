//! The fleet and its people: hosts with their roles and addresses, users
//! with the servers they use, admins with the servers they manage.
//!
//! Called once by [`Generator::new`](super::Generator::new), which makes
//! the RNG calls in the order the stream depends on: users, then admins.

use super::{Role, SynthConfig, SynthHost, User};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use std::net::{IpAddr, Ipv4Addr};
use vigil_proto::HostId;

fn ws_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 1, (i / 250) as u8, (i % 250 + 1) as u8))
}

/// Every host that will ever exist, ids 1.. in this order: workstations
/// (new hires last), admin workstations, Windows servers (the last one goes
/// live in the attack period), Linux servers, backup, monitor, scanner.
pub(super) fn hosts(cfg: &SynthConfig) -> Vec<SynthHost> {
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
    hosts
}

/// One user per workstation: everyone uses the first two Windows servers
/// (file, mail) and a few others picked with `rng`.
pub(super) fn users(hosts: &[SynthHost], rng: &mut StdRng) -> Vec<User> {
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
    users
}

/// One admin per admin workstation, each managing a random half of the
/// servers (shuffled with `rng`).
pub(super) fn admins(hosts: &[SynthHost], rng: &mut StdRng) -> Vec<User> {
    let all_servers: Vec<usize> = hosts
        .iter()
        .enumerate()
        .filter(|(_, h)| matches!(h.role, Role::WindowsServer | Role::LinuxServer))
        .map(|(i, _)| i)
        .collect();
    hosts
        .iter()
        .enumerate()
        .filter(|(_, h)| h.role == Role::AdminWorkstation)
        .enumerate()
        .map(|(k, (i, _))| {
            let mut s = all_servers.clone();
            s.shuffle(rng);
            s.truncate(all_servers.len() / 2);
            User {
                name: format!("adm{k:02}"),
                home: i,
                servers: s,
                from_day: 0,
            }
        })
        .collect()
}
