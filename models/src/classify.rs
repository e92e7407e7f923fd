//! Static knowledge: admin ports, remote-session host processes, and which
//! ATT&CK technique each lateral-movement trace points to.

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

/// Technique for a remote-session host process that spawned a child, if the
/// parent is one.
pub fn remote_parent_technique(parent: &str) -> Option<&'static str> {
    match parent {
        "wmiprvse.exe" | "scrcons.exe" => Some("T1047"),
        "wsmprovhost.exe" | "winrshost.exe" => Some("T1021.006"),
        "services.exe" | "psexesvc.exe" | "psexesvc" => Some("T1569.002"),
        "sshd" | "sshd-session" => Some("T1021.004"),
        "rdpclip.exe" | "tstheme.exe" => Some("T1021.001"),
        "mmc.exe" | "dllhost.exe" => Some("T1021.003"),
        _ => None,
    }
}

/// Children a remote-session host process starts as routine (not counted).
fn routine_child(parent: &str, child: &str) -> bool {
    match parent {
        "services.exe" => matches!(
            child,
            "svchost.exe"
                | "msiexec.exe"
                | "sppsvc.exe"
                | "trustedinstaller.exe"
                | "vssvc.exe"
                | "wmiapsrv.exe"
                | "taskhostw.exe"
                | "searchindexer.exe"
                | "msmpeng.exe"
                | "nissrv.exe"
                | "spoolsv.exe"
                | "dllhost.exe"
                | "mscorsvw.exe"
                | "windowsazureguestagent.exe"
                | "waappagent.exe"
                | "sysmon.exe"
                | "sysmon64.exe"
                | "vds.exe"
                | "alg.exe"
                | "sdiagnhost.exe"
        ),
        "sshd" | "sshd-session" => matches!(child, "sshd" | "sshd-session" | "sftp-server"),
        "wmiprvse.exe" => matches!(child, "wmiprvse.exe"),
        "dllhost.exe" | "mmc.exe" => !is_shell(child),
        _ => false,
    }
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

/// If `parent → child` is a process spawned by a remote session, the
/// technique it points to.
pub fn remote_spawn(parent: &str, child: &str) -> Option<&'static str> {
    // these hosts only start for a remote session: their start is the trace
    match child {
        "wsmprovhost.exe" | "winrshost.exe" => return Some("T1021.006"),
        "psexesvc.exe" | "psexesvc" => return Some("T1569.002"),
        _ => {}
    }
    let t = remote_parent_technique(parent)?;
    (!routine_child(parent, child)).then_some(t)
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

/// Technique implied by connecting to an admin port.
pub fn port_technique(port: u16) -> &'static str {
    match port {
        22 => "T1021.004",
        3389 => "T1021.001",
        139 | 445 => "T1021.002",
        5985 | 5986 => "T1021.006",
        5900 => "T1021.005",
        135 => "T1047",
        _ => "T1021",
    }
}

/// Technique implied by how a remote logon authenticated: NTLM network
/// logons between workstations are how pass-the-hash looks.
pub fn auth_technique(method: &AuthMethod) -> Option<&'static str> {
    match method {
        AuthMethod::Ntlm => Some("T1550.002"),
        _ => None,
    }
}

/// Whether a file path is an SSH authorized-keys file (T1098.004).
pub fn is_authorized_keys(path: &str) -> bool {
    path.ends_with("/authorized_keys") || path.ends_with("/authorized_keys2")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_remote_spawns() {
        assert_eq!(
            remote_spawn("wmiprvse.exe", "powershell.exe"),
            Some("T1047")
        );
        assert_eq!(remote_spawn("services.exe", "svchost.exe"), None);
        assert_eq!(remote_spawn("services.exe", "cmd.exe"), Some("T1569.002"));
        assert_eq!(remote_spawn("sshd", "bash"), Some("T1021.004"));
        assert_eq!(remote_spawn("explorer.exe", "cmd.exe"), None);
        assert_eq!(
            remote_spawn("svchost.exe", "wsmprovhost.exe"),
            Some("T1021.006")
        );
        assert_eq!(
            basename("C:\\Windows\\System32\\WmiPrvSE.exe"),
            "wmiprvse.exe"
        );
        assert_eq!(basename("/usr/sbin/sshd"), "sshd");
    }
}
