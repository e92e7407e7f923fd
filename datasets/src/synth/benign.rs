//! A day of legitimate work: users at their workstations and file
//! servers, admins on the servers they manage (and the helpdesk on users'
//! workstations), service accounts, the weekly scan and the servers' own
//! routine processes. Legitimate novelty lives here too.

use super::sessions::{login, proc};
use super::{Generator, Raw, Role, HOUR, MIN, NS};
use rand::Rng;
use vigil_proto::{AuthMethod, LoginService};

impl Generator {
    fn work_time(&mut self, day0: u64) -> u64 {
        day0 + 8 * HOUR + self.rng.gen_range(0..10 * 3600) * NS
    }

    pub(super) fn users_day(&mut self, d: u32, day0: u64, weekday: bool, raw: &mut Vec<Raw>) {
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

    pub(super) fn admins_day(&mut self, d: u32, day0: u64, weekday: bool, raw: &mut Vec<Raw>) {
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
    pub(super) fn services_day(&mut self, d: u32, day0: u64, raw: &mut Vec<Raw>) {
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
}
