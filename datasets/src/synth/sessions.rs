//! Sessions between two hosts, as the events both ends would record:
//! connect and accept, the login on the target, the processes it starts.
//! Benign activity and campaigns are both made of these, so an attack hop
//! looks like an admin's hop except for its label.

use super::{Generator, Raw, NS};
use rand::Rng;
use std::net::{IpAddr, SocketAddr};
use vigil_proto::{AuthMethod, LoginInfo, LoginService, NetFlow, Payload, ProcessStart, Transport};

impl Generator {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn smb_session(
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

    pub(super) fn connect_pair(
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

    pub(super) fn ssh(
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
    pub(super) fn rdp(
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
    pub(super) fn winrm(
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
}

pub(super) fn flow(local: IpAddr, lp: u16, remote: IpAddr, rp: u16) -> NetFlow {
    NetFlow {
        transport: Transport::Tcp,
        local: SocketAddr::new(local, lp),
        remote: SocketAddr::new(remote, rp),
        pid: None,
        exe: None,
        repeat: 1,
    }
}

pub(super) fn login(
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

pub(super) fn proc(host: usize, ts: u64, pid: u32, parent: &str, exe: &str, user: &str) -> Raw {
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
