//! Windows Security / Sysmon / System records (as flat JSON objects with
//! the Windows field names) mapped onto `proto` payloads. Shared by the OTRF
//! and EVTX adapters.
//!
//! | record | payload |
//! |---|---|
//! | Security 4624 (logon types 2, 3, 7, 9, 10, 11) | `Login` |
//! | Security 4625 | `AuthFailure` |
//! | Security 4634 / 4647 | `Logout` |
//! | Security 4648 (explicit credentials, source side) | `Login` without a source (a local fact: who used whose credentials) |
//! | Sysmon 1, Security 4688 | `ProcessStart` |
//! | Sysmon 3, Security 5156 (WFP allowed connection) | `NetConnect` (outbound) / `NetAccept` (inbound) |
//! | Security 4697, System 7045 (service installed) | `ProcessStart` of the service image under `services.exe` (the proto has no service payload; services.exe is what will start it) |
//! | Security 4624 logon type 9 (NewCredentials) | `Login` over `Other("logon-type-9:<LogonProcessName>")`, lower case (`seclogo`: runas /netonly, mimikatz pass-the-hash; the catalogue's `logon` evidence) |
//! | Security 4624 logon type 10, TerminalServices-RemoteConnectionManager 1149 | `Login` over `Rdp` (1149: `Param1` user, `Param3` source address) |
//! | Security 4778 / 4779 / 4825 (RDP session reconnected / disconnected / denied) | `Login` / `Logout` / `AuthFailure` over `Rdp` from `ClientAddress` (`AccountName` the user, `ClientName` the source's name); none without a client address (console sessions) |
//! | Security 5140 / 5145 on an admin share (`ADMIN$`, `C$`…) or on `IPC$\svcctl` | `Login` over `Smb` from `IpAddress` (the share was reached over an authenticated SMB session from there) |
//! | Security 5145 on `IPC$\atsvc`, `IPC$\winreg`, `IPC$\spoolss` | the same `Login`, method `Other("smb-pipe:<pipe>")` (the catalogue's `pipe` evidence names its technique) |
//! | Security 4698 / 4702 (scheduled task created / updated) by a user | `FileChange` of `C:\Windows\System32\Tasks\<TaskName>` (the file the Task Scheduler writes for it) |
//!
//! Machine and built-in accounts (`…$`, `ANONYMOUS LOGON`, `SYSTEM`,
//! `LOCAL SERVICE`, `NETWORK SERVICE`, `DWM-*`, `UMFD-*`) are not turned
//! into logons: they are the background of every Windows network.

use serde_json::{Map, Value};
use std::net::{IpAddr, SocketAddr};
use vigil_proto::{
    AuthMethod, FileChange, FileOp, LoginInfo, LoginService, NetFlow, Payload, ProcessStart,
    Transport,
};

/// A flat record: field name → value.
pub type Record = Map<String, Value>;

/// String value of a field ("-" and empty count as absent).
pub fn field<'a>(r: &'a Record, k: &str) -> Option<&'a str> {
    r.get(k)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty() && *s != "-")
}

/// Integer value of a field that may be a number or a numeric string.
pub fn int_field(r: &Record, k: &str) -> Option<u64> {
    match r.get(k)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Parses Windows/Sysmon address spellings (`::ffff:a.b.c.d`, `fe80:0:0:…`).
pub fn parse_ip(s: &str) -> Option<IpAddr> {
    let s = s.trim().trim_start_matches('[').trim_end_matches(']');
    let s = s.split('%').next().unwrap_or(s);
    s.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

fn is_background_account(user: &str) -> bool {
    let u = user.to_ascii_uppercase();
    u.ends_with('$')
        || matches!(
            u.as_str(),
            "ANONYMOUS LOGON" | "SYSTEM" | "LOCAL SERVICE" | "NETWORK SERVICE"
        )
        || u.starts_with("DWM-")
        || u.starts_with("UMFD-")
}

fn is_sysmon(r: &Record) -> bool {
    field(r, "Channel").is_some_and(|c| c.to_ascii_lowercase().contains("sysmon"))
        || field(r, "SourceName").is_some_and(|c| c.to_ascii_lowercase().contains("sysmon"))
}

fn is_security(r: &Record) -> bool {
    field(r, "Channel").is_some_and(|c| c.eq_ignore_ascii_case("security"))
}

fn login_info(r: &Record) -> Option<LoginInfo> {
    let user = field(r, "TargetUserName")?;
    if is_background_account(user) {
        return None;
    }
    let method = match field(r, "AuthenticationPackageName").unwrap_or("") {
        p if p.eq_ignore_ascii_case("ntlm") => AuthMethod::Ntlm,
        p if p.eq_ignore_ascii_case("kerberos") => AuthMethod::Kerberos,
        p => AuthMethod::Other(p.to_string()),
    };
    let service = match int_field(r, "LogonType") {
        Some(2) | Some(11) => LoginService::Console,
        Some(10) => LoginService::Rdp,
        Some(3) => LoginService::Other("network".into()),
        // NewCredentials: who started it (`seclogo` for runas /netonly and
        // mimikatz sekurlsa::pth) is what the catalogue keys on
        Some(9) => match field(r, "LogonProcessName") {
            Some(p) => LoginService::Other(format!("logon-type-9:{}", p.to_ascii_lowercase())),
            None => LoginService::Other("logon-type-9".into()),
        },
        Some(t) => LoginService::Other(format!("logon-type-{t}")),
        None => LoginService::Other("unknown".into()),
    };
    Some(LoginInfo {
        user: user.to_string(),
        method,
        service,
        src_addr: field(r, "IpAddress").and_then(parse_ip),
        src_port: int_field(r, "IpPort")
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0),
        src_host: field(r, "WorkstationName").map(str::to_string),
        from_user: None,
        pid: None,
    })
}

fn flow(r: &Record, inbound: bool, keys: [&str; 4]) -> Option<Payload> {
    let [sa, sp, da, dp] = keys;
    let src = SocketAddr::new(
        parse_ip(field(r, sa)?)?,
        int_field(r, sp).unwrap_or(0) as u16,
    );
    let dst = SocketAddr::new(
        parse_ip(field(r, da)?)?,
        int_field(r, dp).unwrap_or(0) as u16,
    );
    let udp = field(r, "Protocol").is_some_and(|p| p == "17" || p.eq_ignore_ascii_case("udp"));
    let exe = field(r, "Image")
        .or_else(|| field(r, "Application"))
        .map(str::to_string);
    let nf = |local, remote| NetFlow {
        transport: if udp { Transport::Udp } else { Transport::Tcp },
        local,
        remote,
        pid: int_field(r, "ProcessId")
            .or_else(|| int_field(r, "ProcessID"))
            .map(|p| p as u32),
        exe,
        repeat: 1,
    };
    Some(if inbound {
        Payload::NetAccept(nf(dst, src))
    } else {
        Payload::NetConnect(nf(src, dst))
    })
}

/// The payload of one record, if it maps onto one.
pub fn payload(r: &Record) -> Option<Payload> {
    let id = int_field(r, "EventID")?;
    if is_sysmon(r) {
        return match id {
            1 => Some(Payload::ProcessStart(ProcessStart {
                pid: int_field(r, "ProcessId").unwrap_or(0) as u32,
                ppid: int_field(r, "ParentProcessId").unwrap_or(0) as u32,
                exe: field(r, "Image").map(str::to_string),
                argv: field(r, "CommandLine")
                    .map(|c| vec![c.to_string()])
                    .unwrap_or_default(),
                user: field(r, "User").map(str::to_string),
                parent_exe: field(r, "ParentImage").map(str::to_string),
                cwd: field(r, "CurrentDirectory").map(str::to_string),
                ..Default::default()
            })),
            3 => {
                let inbound =
                    field(r, "Initiated").is_some_and(|v| v.eq_ignore_ascii_case("false"));
                flow(
                    r,
                    inbound,
                    ["SourceIp", "SourcePort", "DestinationIp", "DestinationPort"],
                )
            }
            _ => None,
        };
    }
    if let Some(p) = remote_access(r, id) {
        return Some(p);
    }
    match id {
        4624 => {
            let t = int_field(r, "LogonType")?;
            matches!(t, 2 | 3 | 7 | 9 | 10 | 11)
                .then(|| login_info(r))
                .flatten()
                .map(Payload::Login)
        }
        4625 => login_info(r).map(Payload::AuthFailure),
        4634 | 4647 => login_info(r).map(Payload::Logout),
        4648 => {
            let subject = field(r, "SubjectUserName")?;
            let target = field(r, "TargetUserName")?;
            if is_background_account(target) {
                return None;
            }
            Some(Payload::Login(LoginInfo {
                user: target.to_string(),
                method: AuthMethod::Other("explicit-credentials".into()),
                service: LoginService::Other(format!(
                    "explicit:{}",
                    field(r, "TargetServerName").unwrap_or("?")
                )),
                src_addr: None,
                src_port: None,
                src_host: None,
                from_user: Some(subject.to_string()),
                pid: None,
            }))
        }
        4688 if is_security(r) => Some(Payload::ProcessStart(ProcessStart {
            exe: field(r, "NewProcessName").map(str::to_string),
            argv: field(r, "CommandLine")
                .map(|c| vec![c.to_string()])
                .unwrap_or_default(),
            user: field(r, "SubjectUserName").map(str::to_string),
            parent_exe: field(r, "ParentProcessName").map(str::to_string),
            ..Default::default()
        })),
        5156 if is_security(r) => {
            let inbound = field(r, "Direction")
                .is_some_and(|d| d == "%%14592" || d.eq_ignore_ascii_case("inbound"));
            flow(
                r,
                inbound,
                ["SourceAddress", "SourcePort", "DestAddress", "DestPort"],
            )
        }
        4697 | 7045 => {
            let image = field(r, "ServiceFileName").or_else(|| field(r, "ImagePath"))?;
            let img = image.trim().trim_matches('"');
            let lower = img.to_ascii_lowercase();
            let exe = if lower.starts_with("%comspec%") {
                "C:\\Windows\\System32\\cmd.exe".to_string()
            } else {
                match lower.find(".exe") {
                    Some(i) => img[..i + 4].to_string(),
                    None => img.split_whitespace().next()?.to_string(),
                }
            };
            Some(Payload::ProcessStart(ProcessStart {
                exe: Some(exe),
                argv: vec![image.to_string()],
                user: field(r, "AccountName")
                    .or_else(|| field(r, "ServiceAccount"))
                    .map(str::to_string),
                parent_exe: Some("C:\\Windows\\System32\\services.exe".into()),
                ..Default::default()
            }))
        }
        _ => None,
    }
}

/// Remote-access records beyond logons: RDP authentication (1149) and
/// sessions (4778/4779/4825), SMB admin-share and service-control-pipe
/// access (5140/5145) and scheduled task changes by a user (4698/4702).
fn remote_access(r: &Record, id: u64) -> Option<Payload> {
    match id {
        4778 | 4779 | 4825 if is_security(r) => rdp_session(r, id),
        1149 if field(r, "Channel").is_some_and(|c| c.contains("RemoteConnectionManager")) => {
            let user = field(r, "Param1")?;
            Some(Payload::Login(LoginInfo {
                user: user.to_string(),
                method: AuthMethod::Other("rdp".into()),
                service: LoginService::Rdp,
                src_addr: field(r, "Param3").and_then(parse_ip),
                src_port: None,
                src_host: None,
                from_user: None,
                pid: None,
            }))
        }
        5140 | 5145 if is_security(r) => {
            let user = field(r, "SubjectUserName").filter(|u| !is_background_account(u))?;
            let share = field(r, "ShareName")?
                .rsplit('\\')
                .next()?
                .to_ascii_uppercase();
            let target = field(r, "RelativeTargetName").unwrap_or("");
            let admin =
                share == "ADMIN$" || (share.len() == 2 && share.ends_with('$') && share != "IPC$");
            let svcctl = share == "IPC$" && target.eq_ignore_ascii_case("svcctl");
            let pipe = (share == "IPC$")
                .then(|| target.to_ascii_lowercase())
                .filter(|t| TECHNIQUE_PIPES.contains(&t.as_str()));
            let src = field(r, "IpAddress").and_then(parse_ip)?;
            let method = match &pipe {
                Some(p) => format!("smb-pipe:{p}"),
                None => format!("smb-share:{share}"),
            };
            (admin || svcctl || pipe.is_some()).then(|| {
                Payload::Login(LoginInfo {
                    user: user.to_string(),
                    method: AuthMethod::Other(method),
                    service: LoginService::Smb,
                    src_addr: Some(src),
                    src_port: None,
                    src_host: None,
                    from_user: None,
                    pid: None,
                })
            })
        }
        4698 | 4702 if is_security(r) => {
            field(r, "SubjectUserName").filter(|u| !is_background_account(u))?;
            let task = field(r, "TaskName")?.trim_start_matches('\\');
            Some(Payload::FileChange(FileChange {
                path: format!("C:\\Windows\\System32\\Tasks\\{task}"),
                op: if id == 4698 {
                    FileOp::Created
                } else {
                    FileOp::Modified
                },
                size: None,
                mode: None,
                uid: None,
                sha256: None,
                pid: None,
            }))
        }
        _ => None,
    }
}

/// Named pipes whose opening over IPC$ is a technique's trace (the
/// catalogue's `pipe` evidence): the logon carries `smb-pipe:<name>`.
/// `svcctl` stays a plain SMB logon: a service query is no execution, and
/// an installed service names its technique by 4697/7045.
const TECHNIQUE_PIPES: [&str; 3] = ["atsvc", "winreg", "spoolss"];

/// Security 4778 (an RDP session reconnected: a logon from its client),
/// 4779 (disconnected: a logout) and 4825 (RDP denied to a user whose
/// credentials were valid: a failed logon). A console session has no
/// client address and is not a remote logon.
fn rdp_session(r: &Record, id: u64) -> Option<Payload> {
    let user = field(r, "AccountName").filter(|u| !is_background_account(u))?;
    let src = field(r, "ClientAddress").and_then(parse_ip)?;
    let (what, wrap): (&str, fn(LoginInfo) -> Payload) = match id {
        4778 => ("rdp-reconnect", Payload::Login),
        4779 => ("rdp-disconnect", Payload::Logout),
        _ => ("rdp-denied", Payload::AuthFailure),
    };
    Some(wrap(LoginInfo {
        user: user.to_string(),
        method: AuthMethod::Other(what.into()),
        service: LoginService::Rdp,
        src_addr: Some(src),
        src_port: None,
        src_host: field(r, "ClientName")
            .filter(|n| !n.eq_ignore_ascii_case("unknown"))
            .map(str::to_string),
        from_user: None,
        pid: None,
    }))
}

/// Private ranges (RFC 1918 and link-local IPv4, unique-local and
/// link-local IPv6), IPv4-mapped addresses as IPv4: the addresses a host
/// of the captured network can own.
fn is_internal(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_unique_local() || v6.is_unicast_link_local(),
    }
}

/// The local addresses a record proves its host has (outbound source,
/// inbound destination), used to register hosts' addresses.
pub fn own_addrs(r: &Record) -> Vec<IpAddr> {
    let p = payload(r);
    let local = match &p {
        Some(Payload::NetConnect(f)) | Some(Payload::NetAccept(f)) => Some(f.local.ip()),
        _ => None,
    };
    local
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified() && is_internal(*ip))
        .filter(|ip| !matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80))
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(v: Value) -> Record {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn maps_network_logon_and_wfp_inbound() {
        let r = rec(
            serde_json::json!({"Channel":"Security","EventID":4624,"LogonType":"3",
            "TargetUserName":"pgustavo","IpAddress":"::ffff:172.18.39.5","IpPort":"54717",
            "WorkstationName":"-","AuthenticationPackageName":"NTLM"}),
        );
        let Some(Payload::Login(l)) = payload(&r) else {
            panic!("login")
        };
        assert_eq!(l.src_addr, Some("172.18.39.5".parse().unwrap()));
        assert_eq!(l.method, AuthMethod::Ntlm);
        assert_eq!(l.src_host, None);
        let w = rec(
            serde_json::json!({"Channel":"security","EventID":5156,"Direction":"%%14592",
            "SourceAddress":"172.18.39.5","SourcePort":"56607","DestAddress":"172.18.39.6","DestPort":"135"}),
        );
        let Some(Payload::NetAccept(f)) = payload(&w) else {
            panic!("accept")
        };
        assert_eq!(f.local.port(), 135);
        assert_eq!(f.remote.ip(), "172.18.39.5".parse::<IpAddr>().unwrap());
        assert_eq!(
            own_addrs(&w),
            vec!["172.18.39.6".parse::<IpAddr>().unwrap()]
        );
        let m = rec(
            serde_json::json!({"Channel":"Security","EventID":4624,"LogonType":"3","TargetUserName":"WORKSTATION5$"}),
        );
        assert_eq!(payload(&m), None);
    }

    #[test]
    fn maps_sysmon_process_and_service_install() {
        let r = rec(
            serde_json::json!({"Channel":"Microsoft-Windows-Sysmon/Operational","EventID":1,
            "Image":"C:\\Windows\\System32\\cmd.exe","ParentImage":"C:\\Windows\\System32\\wbem\\WmiPrvSE.exe",
            "ProcessId":"42","User":"THESHIRE\\pgustavo"}),
        );
        let Some(Payload::ProcessStart(p)) = payload(&r) else {
            panic!("proc")
        };
        assert_eq!(p.pid, 42);
        assert!(p.parent_exe.unwrap().ends_with("WmiPrvSE.exe"));
        let s = rec(
            serde_json::json!({"Channel":"System","EventID":7045,"ImagePath":"%COMSPEC% /b /c start /b /min powershell.exe -nop"}),
        );
        let Some(Payload::ProcessStart(p)) = payload(&s) else {
            panic!("svc")
        };
        assert_eq!(
            p.parent_exe.as_deref(),
            Some("C:\\Windows\\System32\\services.exe")
        );
        assert_eq!(p.exe.as_deref(), Some("C:\\Windows\\System32\\cmd.exe"));
    }

    #[test]
    fn maps_rdp_admin_shares_and_tasks() {
        let rdp = rec(serde_json::json!({"Channel":
            "Microsoft-Windows-TerminalServices-RemoteConnectionManager/Operational",
            "EventID":1149,"Param1":"admmig","Param2":"OFFSEC","Param3":"10.23.42.22"}));
        let Some(Payload::Login(l)) = payload(&rdp) else {
            panic!("1149")
        };
        assert_eq!(l.service, LoginService::Rdp);
        assert_eq!(l.src_addr, Some("10.23.42.22".parse().unwrap()));
        let share = |name: &str, target: &str, user: &str| {
            payload(&rec(
                serde_json::json!({"Channel":"Security","EventID":5145,
                "SubjectUserName":user,"IpAddress":"10.23.123.11",
                "ShareName":name,"RelativeTargetName":target}),
            ))
        };
        let Some(Payload::Login(l)) = share("\\\\*\\ADMIN$", "PSEXESVC.exe", "admmig") else {
            panic!("admin share")
        };
        assert_eq!(l.service, LoginService::Smb);
        assert!(matches!(
            share("\\\\*\\IPC$", "svcctl", "admmig"),
            Some(Payload::Login(_))
        ));
        assert_eq!(share("\\\\*\\IPC$", "srvsvc", "admmig"), None);
        let Some(Payload::Login(l)) = share("\\\\*\\IPC$", "winreg", "admmig") else {
            panic!("winreg pipe")
        };
        assert_eq!(l.method, AuthMethod::Other("smb-pipe:winreg".into()));
        assert_eq!(l.service, LoginService::Smb);
        assert_eq!(share("\\\\*\\C$", "x", "WS5$"), None);
        assert_eq!(share("\\\\*\\SYSVOL", "gpt.ini", "admmig"), None);
        let task = |user: &str| {
            payload(&rec(
                serde_json::json!({"Channel":"Security","EventID":4698,
                "SubjectUserName":user,"TaskName":"\\Updater"}),
            ))
        };
        let Some(Payload::FileChange(f)) = task("admmig") else {
            panic!("4698")
        };
        assert_eq!(f.path, "C:\\Windows\\System32\\Tasks\\Updater");
        assert_eq!(task("WORKSTATION6$"), None);
    }

    #[test]
    fn maps_new_credentials_logon_with_its_process() {
        let pth = |process: Option<&str>| {
            let mut v = serde_json::json!({"Channel":"Security","EventID":4624,"LogonType":9,
                "TargetUserName":"admmig","AuthenticationPackageName":"Negotiate","IpAddress":"::1"});
            if let Some(p) = process {
                v["LogonProcessName"] = p.into();
            }
            match payload(&rec(v)) {
                Some(Payload::Login(l)) => l.service,
                other => panic!("type 9: {other:?}"),
            }
        };
        assert_eq!(
            pth(Some("seclogo")),
            LoginService::Other("logon-type-9:seclogo".into())
        );
        assert_eq!(pth(None), LoginService::Other("logon-type-9".into()));
    }

    #[test]
    fn maps_rdp_session_reconnect_disconnect_and_denial() {
        let ev = |id: u32, user: &str, addr: &str| {
            payload(&rec(serde_json::json!({"Channel":"Security","EventID":id,
                "AccountName":user,"AccountDomain":"OFFSEC","SessionName":"RDP-Tcp#8",
                "ClientName":"JUMP01","ClientAddress":addr})))
        };
        let Some(Payload::Login(l)) = ev(4778, "admmarsid", "10.23.23.9") else {
            panic!("4778")
        };
        assert_eq!(l.service, LoginService::Rdp);
        assert_eq!(l.src_addr, Some("10.23.23.9".parse().unwrap()));
        assert_eq!(l.src_host.as_deref(), Some("JUMP01"));
        assert!(matches!(
            ev(4779, "admmig", "10.23.23.9"),
            Some(Payload::Logout(_))
        ));
        let Some(Payload::AuthFailure(f)) = ev(4825, "svc6test1", "10.23.23.9") else {
            panic!("4825")
        };
        assert_eq!(f.service, LoginService::Rdp);
        // a console session reconnecting has no client address
        assert_eq!(ev(4778, "admmig", "LOCAL"), None);
        assert_eq!(ev(4778, "FS01$", "10.23.23.9"), None);
    }
}
