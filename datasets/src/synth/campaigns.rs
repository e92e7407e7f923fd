//! Campaigns: planned once when the generator is built (style, day, path),
//! played on their day as labelled hops in the campaign's style.

use super::sessions::{login, proc};
use super::Role;
use super::{Campaign, Generator, Raw, Style, DAY, EPOCH_NS, HOUR, MIN, NS};
use rand::seq::SliceRandom;
use rand::Rng;
use vigil_proto::{AuthMethod, FileChange, FileOp, LoginService, Payload};

impl Generator {
    pub(super) fn plan_campaigns(&mut self) {
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

    pub(super) fn campaign(&mut self, c: &Campaign, raw: &mut Vec<Raw>) {
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
