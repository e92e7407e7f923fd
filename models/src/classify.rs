//! Static knowledge: admin ports and shells, and the lookups that name the
//! ATT&CK technique a lateral-movement trace points to. Which evidence
//! shows which technique is data: `data/techniques.toml`, read by
//! [`crate::catalogue`].

use crate::catalogue::catalogue;
use vigil_proto::{AuthMethod, LoginService};

/// Ports whose use between internal hosts is an admin action.
pub const ADMIN_PORTS: [u16; 8] = [22, 135, 139, 445, 3389, 5985, 5986, 5900];

/// Whether `port` is an admin port.
pub fn is_admin_port(port: u16) -> bool {
    ADMIN_PORTS.contains(&port)
}

/// Lower-case basename of a Unix or Windows path.
pub fn basename(path: &str) -> String {
    path.rsplit(['/', '\\'])
        .next()
        .unwrap_or(path)
        .trim()
        .to_ascii_lowercase()
}

/// Shells and script hosts.
pub fn is_shell(exe: &str) -> bool {
    matches!(
        exe,
        "cmd.exe"
            | "powershell.exe"
            | "pwsh.exe"
            | "wscript.exe"
            | "cscript.exe"
            | "mshta.exe"
            | "rundll32.exe"
            | "bash"
            | "sh"
            | "dash"
            | "zsh"
            | "python"
            | "python3"
            | "perl"
    )
}

/// If `parent → child` (lower-case basenames; `argv` the child's command
/// line) is a process spawned by a remote session, the technique it points
/// to, from the catalogue: a process that only starts for a remote session
/// (`child` evidence) first, then the children of remote-session parents.
pub fn remote_spawn(parent: &str, child: &str, argv: &str) -> Option<&'static str> {
    let cat = catalogue();
    cat.child(child, &argv.to_ascii_lowercase())
        .or_else(|| cat.spawn(parent, child, is_shell(child)))
}

/// Admin port a logon service implies.
pub fn service_port(service: &LoginService) -> Option<u16> {
    match service {
        LoginService::Ssh => Some(22),
        LoginService::Rdp => Some(3389),
        LoginService::Smb => Some(445),
        LoginService::WinRm => Some(5985),
        LoginService::Wmi => Some(135),
        _ => None,
    }
}

/// Technique implied by connecting to an admin port, from the catalogue
/// (none for RPC on 135: it carries DCOM, WMI, services and tasks alike).
pub fn port_technique(port: u16) -> Option<&'static str> {
    catalogue().port(port)
}

/// Technique implied by how a remote logon authenticated (NTLM network
/// logons between workstations are how pass-the-hash looks), or by the
/// named pipe an SMB logon was seen through (`smb-pipe:<name>`, as the
/// data-set adapter labels Security 5145 on `IPC$\winreg`…).
pub fn auth_technique(method: &AuthMethod) -> Option<&'static str> {
    match method {
        AuthMethod::Ntlm => catalogue().auth("ntlm"),
        AuthMethod::Kerberos => catalogue().auth("kerberos"),
        AuthMethod::Other(m) => m
            .strip_prefix("smb-pipe:")
            .and_then(|p| catalogue().pipe(p)),
        _ => None,
    }
}

/// Technique implied by the service a logon came over.
pub fn service_technique(service: &LoginService) -> Option<&'static str> {
    let name = match service {
        LoginService::Ssh => "ssh",
        LoginService::Rdp => "rdp",
        LoginService::Smb => "smb",
        LoginService::WinRm => "winrm",
        LoginService::Wmi => "wmi",
        _ => return None,
    };
    catalogue().service(name)
}

/// Technique (and why) of a logon that is by itself a trace on its own
/// host: the catalogue's `logon` evidence, keyed by the label a data-set
/// adapter gives a logon kind that has no service of its own
/// (`LoginService::Other("logon-type-9:seclogo")`).
pub fn logon_technique(service: &LoginService) -> Option<(&'static str, Option<&'static str>)> {
    match service {
        LoginService::Other(label) => catalogue().logon(label),
        _ => None,
    }
}

/// Technique of a change to `path` that is a trace (an SSH
/// `authorized_keys` file, a scheduled task's file…).
pub fn file_technique(path: &str) -> Option<&'static str> {
    catalogue().file(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_remote_spawns() {
        assert_eq!(
            remote_spawn("wmiprvse.exe", "powershell.exe", ""),
            Some("T1047")
        );
        assert_eq!(remote_spawn("services.exe", "svchost.exe", ""), None);
        assert_eq!(
            remote_spawn("services.exe", "cmd.exe", ""),
            Some("T1569.002")
        );
        assert_eq!(remote_spawn("sshd", "bash", ""), Some("T1021.004"));
        assert_eq!(remote_spawn("explorer.exe", "cmd.exe", ""), None);
        assert_eq!(
            remote_spawn("svchost.exe", "wsmprovhost.exe", ""),
            Some("T1021.006")
        );
        // DCOM: MMC20.Application activated under DcomLaunch
        assert_eq!(
            remote_spawn(
                "svchost.exe",
                "mmc.exe",
                "C:\\Windows\\system32\\mmc.exe -Embedding"
            ),
            Some("T1021.003")
        );
        assert_eq!(
            remote_spawn("explorer.exe", "mmc.exe", "mmc.exe eventvwr.msc"),
            None
        );
        assert_eq!(remote_spawn("sqlservr.exe", "cmd.exe", ""), Some("T1210"));
        assert_eq!(port_technique(135), None);
        assert_eq!(service_technique(&LoginService::Wmi), Some("T1047"));
        assert_eq!(auth_technique(&AuthMethod::Ntlm), Some("T1550.002"));
        let pipe = |p: &str| auth_technique(&AuthMethod::Other(format!("smb-pipe:{p}")));
        assert_eq!(pipe("winreg"), Some("T1112"));
        assert_eq!(pipe("spoolss"), Some("T1187"));
        assert_eq!(pipe("atsvc"), Some("T1053.005"));
        assert_eq!(pipe("srvsvc"), None);
        assert_eq!(
            auth_technique(&AuthMethod::Other("smb-share:C$".into())),
            None
        );
        let pth = LoginService::Other("logon-type-9:seclogo".into());
        assert_eq!(logon_technique(&pth).map(|t| t.0), Some("T1550.002"));
        let other = LoginService::Other("logon-type-9:advapi".into());
        assert_eq!(logon_technique(&other), None);
        assert_eq!(logon_technique(&LoginService::Rdp), None);
        assert_eq!(
            file_technique("C:\\Windows\\System32\\Tasks\\Evil"),
            Some("T1053.005")
        );
        assert_eq!(
            basename("C:\\Windows\\System32\\WmiPrvSE.exe"),
            "wmiprvse.exe"
        );
        assert_eq!(basename("/usr/sbin/sshd"), "sshd");
    }
}
