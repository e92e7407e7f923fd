//! A lab of test hosts on one machine: one network namespace per host, all
//! joined to a bridge in a "switch" namespace, each running a real `sshd`
//! that logs to its own auth log. Lateral movement in tests is real `ssh`
//! between these hosts.
//!
//! Addresses come from 198.18.0.0/15 (RFC 2544, reserved for testing network
//! devices) and exist only inside namespaces this lab creates; `Drop`
//! removes them all.

use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Why the lab cannot run here.
#[derive(Debug)]
pub struct Unavailable(pub String);

/// A failure while building or using the lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("{what}: {detail}")]
    Command { what: String, detail: String },
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("timed out: {0}")]
    Timeout(String),
}

/// One lab host.
#[derive(Debug)]
pub struct LabHost {
    /// Short name (`h1`…), also its hostname in logs.
    pub name: String,
    /// The network namespace (`/run/netns/<netns>`).
    pub netns: String,
    pub addr: Ipv4Addr,
    /// Where this host's sshd writes its log (the host's auth log).
    pub auth_log: PathBuf,
    sshd: Option<Child>,
}

/// A set of hosts that can reach each other, each with a real sshd.
pub struct Lab {
    pub hosts: Vec<LabHost>,
    switch: String,
    /// Unique prefix of this lab's namespaces and links.
    tag: String,
    /// Third octet of the lab network 198.18.<subnet>.0/24.
    subnet: u8,
    /// Namespaces added after the hosts (e.g. [`Lab::add_split_appliance`]).
    extra_netns: Vec<String>,
    dir: tempfile::TempDir,
    key: PathBuf,
}

static LABS: AtomicU32 = AtomicU32::new(0);

/// Check whether this machine can build a lab: root, `ip netns`, `sshd`.
pub fn capability() -> Result<(), Unavailable> {
    if !nix_is_root() {
        return Err(Unavailable("needs root (network namespaces)".into()));
    }
    for tool in ["/usr/sbin/sshd", "/usr/bin/ssh", "/usr/bin/ssh-keygen"] {
        if !Path::new(tool).exists() {
            return Err(Unavailable(format!(
                "{tool} missing (apt-get install openssh-server openssh-client)"
            )));
        }
    }
    // Tests of one process probe concurrently: a name per probe, not per
    // process, or one's `add` meets the other's namespace.
    static PROBES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let probe = format!("vigil-probe-{}-{n}", std::process::id());
    let ok = Command::new("ip")
        .args(["netns", "add", &probe])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    let _ = Command::new("ip").args(["netns", "del", &probe]).status();
    if !ok {
        return Err(Unavailable(
            "`ip netns add` failed (needs CAP_SYS_ADMIN and iproute2)".into(),
        ));
    }
    Ok(())
}

/// Run `body` only when the lab can be built. When it cannot: under CI
/// (env `CI` set) the test fails; elsewhere it prints why and skips.
pub fn require_lab(test: &str) -> bool {
    require(test, capability())
}

/// Whether `test` may run given `available`: under CI (env `CI` set) an
/// unavailable capability fails the test; elsewhere it prints why and skips.
pub fn require(test: &str, available: Result<(), Unavailable>) -> bool {
    match available {
        Ok(()) => true,
        Err(Unavailable(why)) => {
            if std::env::var_os("CI").is_some() {
                panic!("{test}: cannot run in CI: {why}");
            }
            eprintln!("SKIPPED {test}: {why}");
            false
        }
    }
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn sh(what: &str, cmd: &mut Command) -> Result<Output, LabError> {
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(LabError::Command {
            what: what.to_string(),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out)
}

fn ip(args: &[&str]) -> Result<(), LabError> {
    sh(
        &format!("ip {}", args.join(" ")),
        Command::new("ip").args(args),
    )
    .map(|_| ())
}

impl Lab {
    /// Build `n` hosts (`h1`…`hn`) on one bridge, each running sshd with a
    /// shared root key so every host can `ssh` into every other.
    pub fn new(n: usize) -> Result<Lab, LabError> {
        let id = std::process::id() % 10_000;
        let serial = LABS.fetch_add(1, Ordering::SeqCst);
        let tag = format!("v{id}x{serial}");
        let subnet = ((id * 7 + serial) % 250) as u8 + 1;
        let dir = tempfile::Builder::new().prefix("vigil-lab-").tempdir()?;
        let switch = format!("{tag}sw");
        let mut lab = Lab {
            hosts: Vec::new(),
            switch: switch.clone(),
            tag: tag.clone(),
            subnet,
            extra_netns: Vec::new(),
            dir,
            key: PathBuf::new(),
        };
        ip(&["netns", "add", &switch])?;
        ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &switch, "link", "set", "br0", "up"])?;
        lab.key = lab.make_client_key()?;
        fs::create_dir_all("/run/sshd")?;
        for i in 1..=n {
            let host = lab.add_host(&tag, subnet, i)?;
            lab.hosts.push(host);
        }
        for i in 0..lab.hosts.len() {
            lab.start_sshd(i)?;
        }
        Ok(lab)
    }

    fn make_client_key(&self) -> Result<PathBuf, LabError> {
        let key = self.dir.path().join("id_ed25519");
        sh(
            "ssh-keygen (client key)",
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "vigil-lab", "-f"])
                .arg(&key),
        )?;
        let authorized = self.dir.path().join("authorized_keys");
        fs::copy(key.with_extension("pub"), &authorized)?;
        fs::set_permissions(&authorized, fs::Permissions::from_mode(0o600))?;
        Ok(key)
    }

    fn add_host(&self, tag: &str, subnet: u8, i: usize) -> Result<LabHost, LabError> {
        let netns = format!("{tag}h{i}");
        let addr = Ipv4Addr::new(198, 18, subnet, i as u8 + 1);
        let (outer, inner) = (format!("{tag}p{i}"), format!("{tag}e{i}"));
        ip(&["netns", "add", &netns])?;
        ip(&[
            "link", "add", &outer, "type", "veth", "peer", "name", &inner,
        ])?;
        ip(&["link", "set", &outer, "netns", &self.switch])?;
        ip(&["link", "set", &inner, "netns", &netns])?;
        ip(&["-n", &self.switch, "link", "set", &outer, "master", "br0"])?;
        ip(&["-n", &self.switch, "link", "set", &outer, "up"])?;
        ip(&["-n", &netns, "link", "set", "lo", "up"])?;
        ip(&["-n", &netns, "link", "set", &inner, "name", "eth0"])?;
        ip(&[
            "-n",
            &netns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", &netns, "link", "set", "eth0", "up"])?;
        let name = format!("h{i}");
        let auth_log = self.dir.path().join(format!("{name}-auth.log"));
        fs::write(&auth_log, b"")?;
        Ok(LabHost {
            name,
            netns,
            addr,
            auth_log,
            sshd: None,
        })
    }

    fn start_sshd(&mut self, i: usize) -> Result<(), LabError> {
        let dir = self.dir.path().to_path_buf();
        let host = &mut self.hosts[i];
        let host_key = dir.join(format!("{}-hostkey", host.name));
        sh(
            "ssh-keygen (host key)",
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(&host_key),
        )?;
        let config = dir.join(format!("{}-sshd_config", host.name));
        fs::write(
            &config,
            format!(
                "ListenAddress {addr}\nPort 22\nHostKey {hk}\nPidFile {dir}/{name}-sshd.pid\n\
                 AuthorizedKeysFile {dir}/authorized_keys\nPermitRootLogin prohibit-password\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
                 StrictModes no\nLogLevel INFO\nSyslogFacility AUTH\n",
                addr = host.addr,
                hk = host_key.display(),
                dir = dir.display(),
                name = host.name,
            ),
        )?;
        let child = Command::new("ip")
            .args(["netns", "exec", &host.netns, "/usr/sbin/sshd", "-D", "-f"])
            .arg(&config)
            .arg("-E")
            .arg(&host.auth_log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        host.sshd = Some(child);
        wait_listening(&host.netns, host.addr)
    }

    /// Run `command` on host `to` over ssh from host `from` (as root).
    pub fn ssh(&self, from: usize, to: usize, command: &str) -> Result<Output, LabError> {
        let (src, dst) = (&self.hosts[from], &self.hosts[to]);
        sh(
            &format!("ssh {} -> {}", src.name, dst.name),
            Command::new("ip")
                .args(["netns", "exec", &src.netns, "ssh"])
                .args(self.ssh_options())
                .arg(format!("root@{}", dst.addr))
                .arg(command),
        )
    }

    /// The options `ssh` needs inside the lab (key, no host-key prompts).
    pub fn ssh_options(&self) -> Vec<String> {
        vec![
            "-i".into(),
            self.key.display().to_string(),
            "-o".into(),
            "StrictHostKeyChecking=no".into(),
            "-o".into(),
            "UserKnownHostsFile=/dev/null".into(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            "ConnectTimeout=5".into(),
            "-o".into(),
            "LogLevel=ERROR".into(),
        ]
    }

    /// Run a command inside host `i`'s namespace.
    pub fn exec(&self, i: usize, program: &str, args: &[&str]) -> Result<Output, LabError> {
        sh(
            &format!("{program} in {}", self.hosts[i].name),
            Command::new("ip")
                .args(["netns", "exec", &self.hosts[i].netns, program])
                .args(args),
        )
    }

    /// An appliance machine on two networks, as a rack appliance is
    /// installed: its sensor-facing address on the lab network (reachable
    /// from every lab host) and a management address on a separate network
    /// that only an administrator's workstation namespace reaches.
    pub fn add_split_appliance(&mut self) -> Result<SplitAppliance, LabError> {
        let appliance = format!("{}ap", self.tag);
        let admin = format!("{}ad", self.tag);
        let sensor_addr = Ipv4Addr::new(198, 18, self.subnet, 250);
        let management_addr = Ipv4Addr::new(10, 254, self.subnet, 1);
        let admin_addr = Ipv4Addr::new(10, 254, self.subnet, 2);
        for ns in [&appliance, &admin] {
            ip(&["netns", "add", ns])?;
            self.extra_netns.push(ns.clone());
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        // Lab side: a port on the lab's bridge, like a host's.
        let (outer, inner) = (format!("{}pa", self.tag), format!("{}ea", self.tag));
        ip(&[
            "link", "add", &outer, "type", "veth", "peer", "name", &inner,
        ])?;
        ip(&["link", "set", &outer, "netns", &self.switch])?;
        ip(&["link", "set", &inner, "netns", &appliance])?;
        ip(&["-n", &self.switch, "link", "set", &outer, "master", "br0"])?;
        ip(&["-n", &self.switch, "link", "set", &outer, "up"])?;
        ip(&["-n", &appliance, "link", "set", &inner, "name", "lab0"])?;
        let lab_cidr = format!("{sensor_addr}/24");
        ip(&["-n", &appliance, "addr", "add", &lab_cidr, "dev", "lab0"])?;
        ip(&["-n", &appliance, "link", "set", "lab0", "up"])?;
        // Management side: a point-to-point link to the admin workstation.
        let (mgmt, ws) = (format!("{}ma", self.tag), format!("{}mw", self.tag));
        ip(&["link", "add", &mgmt, "type", "veth", "peer", "name", &ws])?;
        ip(&["link", "set", &mgmt, "netns", &appliance])?;
        ip(&["link", "set", &ws, "netns", &admin])?;
        for (ns, dev, addr) in [
            (&appliance, &mgmt, management_addr),
            (&admin, &ws, admin_addr),
        ] {
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        Ok(SplitAppliance {
            netns: appliance,
            sensor_addr,
            management_addr,
            admin_netns: admin,
        })
    }

    /// The lab's private folder (keys, configs, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A real local account `name` that can log in to every lab host with
    /// the lab's key (as benign users and service accounts do); removed
    /// when the returned guard drops. Accounts are machine-wide (network
    /// namespaces share `/etc/passwd`), so give each test its own names.
    pub fn add_user(&self, name: &str) -> Result<LabUser, LabError> {
        // sshd reads authorized_keys as the user: let it through the lab
        // folder (names only) to the public key file; private keys stay 0600.
        fs::set_permissions(self.dir.path(), fs::Permissions::from_mode(0o711))?;
        let authorized = self.dir.path().join("authorized_keys");
        fs::set_permissions(&authorized, fs::Permissions::from_mode(0o644))?;
        // `*` (not `!`): no password, yet not "locked", which sshd without
        // PAM would refuse even for key logins.
        sh(
            &format!("useradd {name}"),
            Command::new("useradd").args(["-M", "-d", "/", "-s", "/bin/sh", "-p", "*", name]),
        )?;
        Ok(LabUser(name.to_string()))
    }

    /// Run `command` on host `to` over ssh from host `from` as `user`.
    pub fn ssh_as(
        &self,
        from: usize,
        to: usize,
        user: &str,
        command: &str,
    ) -> Result<Output, LabError> {
        let (src, dst) = (&self.hosts[from], &self.hosts[to]);
        sh(
            &format!("ssh {user}@{} from {}", dst.name, src.name),
            Command::new("ip")
                .args(["netns", "exec", &src.netns, "ssh"])
                .args(self.ssh_options())
                .arg(format!("{user}@{}", dst.addr))
                .arg(command),
        )
    }
}

/// A local account made by [`Lab::add_user`]; deleted on drop.
#[derive(Debug)]
pub struct LabUser(pub String);

impl Drop for LabUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.0).status();
    }
}

fn wait_listening(netns: &str, addr: Ipv4Addr) -> Result<(), LabError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let pattern = format!("{addr}:22");
    while Instant::now() < deadline {
        let out = Command::new("ip")
            .args(["netns", "exec", netns, "ss", "-ltnH"])
            .output()?;
        if String::from_utf8_lossy(&out.stdout).contains(&pattern) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(LabError::Timeout(format!("sshd on {pattern} in {netns}")))
}

impl Drop for Lab {
    fn drop(&mut self) {
        for host in &mut self.hosts {
            if let Some(mut child) = host.sshd.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
            // sshd daemonised children (sessions) die with their namespace's
            // processes killed here.
            kill_all_in(&host.netns);
            let _ = Command::new("ip")
                .args(["netns", "del", &host.netns])
                .status();
        }
        for ns in &self.extra_netns {
            kill_all_in(ns);
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.switch])
            .status();
    }
}

/// Kill every process left in namespace `ns`.
fn kill_all_in(ns: &str) {
    let _ = Command::new("ip")
        .args(["netns", "pids", ns])
        .output()
        .map(|o| {
            for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        });
}

/// The namespaces and addresses of [`Lab::add_split_appliance`].
#[derive(Debug, Clone)]
pub struct SplitAppliance {
    /// The appliance machine's namespace.
    pub netns: String,
    /// Its address on the lab network (where sensors reach it).
    pub sensor_addr: Ipv4Addr,
    /// Its address on the management network.
    pub management_addr: Ipv4Addr,
    /// An administrator's workstation on the management network.
    pub admin_netns: String,
}
