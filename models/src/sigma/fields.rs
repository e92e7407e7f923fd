//! How Sigma's log sources and field names map onto Vigil's events.
//!
//! Sigma rules are written against Windows/Sysmon field names; Vigil has one
//! event model for Linux and Windows (`vigil_proto::event`). This table is
//! the whole mapping; a rule that names a log source or field not listed
//! here is refused at load time (never loaded to silently never fire).
//!
//! | Sigma `logsource` | Vigil payloads |
//! |---|---|
//! | `category: process_creation` | `ProcessStart` |
//! | `category: network_connection` | `NetConnect`, `NetAccept` |
//! | `category: authentication`, or `product: linux` with `service: auth` / `sshd` | `Login`, `AuthFailure` |
//! | `category: file_event` / `file_change` | `FileChange` (every operation; narrow with `Operation`) |
//!
//! `product` may be `linux`, `windows` or absent: Windows records reach the
//! same payloads through the `datasets` adapters.
//!
//! | Field | Payload | Vigil value |
//! |---|---|---|
//! | `Image` | process, network | `exe` |
//! | `CommandLine` | process | `argv` joined with single spaces |
//! | `ParentImage` | process | `parent_exe` |
//! | `User` | process | `user` |
//! | `ProcessId` | all but file | `pid` |
//! | `ParentProcessId` | process | `ppid` |
//! | `CurrentDirectory` | process | `cwd` |
//! | `Hostname` | all | the header's host id (16 hex digits; Vigil has no names in events) |
//! | `SourceIp` / `SourcePort` | network | the side that opened the connection: local for `NetConnect`, remote for `NetAccept` |
//! | `DestinationIp` / `DestinationPort` | network | the side that was connected to |
//! | `Initiated` | network | `true` for `NetConnect`, `false` for `NetAccept` |
//! | `Protocol` | network | `tcp` / `udp` |
//! | `TargetUserName` | auth | `user` (the account logged into) |
//! | `SubjectUserName` | auth | `from_user` (`su`/`sudo` caller) |
//! | `IpAddress` / `IpPort` | auth | `src_addr` / `src_port` |
//! | `WorkstationName` | auth | `src_host` |
//! | `LogonType` | auth | `2` console, `3` SMB/WinRM/WMI, `10` RDP; absent otherwise |
//! | `AuthenticationPackageName` | auth | `NTLM`, `Kerberos`, `password`, `publickey`, `keyboard-interactive`, or the logged name |
//! | `Service` | auth | `ssh`, `su`, `sudo`, `console`, `smb`, `rdp`, `winrm`, `wmi`, or the logged name |
//! | `Outcome` | auth | `success` (`Login`) / `failure` (`AuthFailure`) |
//! | `TargetFilename` | file | `path` |
//! | `Operation` | file | `created`, `modified`, `deleted`, `renamed`, `attributes` |
//!
//! Not available (refused): `ParentCommandLine` (the sensor does not record
//! the parent's argv), hashes, `EventID`, registry and pipe fields.
//! Addresses are canonical (`::ffff:10.0.0.1` is `10.0.0.1`).

use std::cell::OnceCell;
use std::net::{IpAddr, SocketAddr};

use vigil_proto::event::{AuthMethod, Event, FileOp, LoginInfo, LoginService, NetFlow, Payload};
use vigil_proto::EventKind;

/// A field Vigil can give a Sigma rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Field {
    Image,
    CommandLine,
    ParentImage,
    User,
    ProcessId,
    ParentProcessId,
    CurrentDirectory,
    Hostname,
    SourceIp,
    SourcePort,
    DestinationIp,
    DestinationPort,
    Initiated,
    Protocol,
    TargetUserName,
    SubjectUserName,
    IpAddress,
    IpPort,
    WorkstationName,
    LogonType,
    AuthenticationPackageName,
    Service,
    Outcome,
    TargetFilename,
    Operation,
}

/// Number of [`Field`] variants (the size of an event's field cache).
const FIELD_COUNT: usize = 25;

const PROCESS: &[Field] = &[
    Field::Image,
    Field::CommandLine,
    Field::ParentImage,
    Field::User,
    Field::ProcessId,
    Field::ParentProcessId,
    Field::CurrentDirectory,
    Field::Hostname,
];
const NETWORK: &[Field] = &[
    Field::Image,
    Field::ProcessId,
    Field::SourceIp,
    Field::SourcePort,
    Field::DestinationIp,
    Field::DestinationPort,
    Field::Initiated,
    Field::Protocol,
    Field::Hostname,
];
const AUTH: &[Field] = &[
    Field::TargetUserName,
    Field::SubjectUserName,
    Field::IpAddress,
    Field::IpPort,
    Field::WorkstationName,
    Field::LogonType,
    Field::AuthenticationPackageName,
    Field::Service,
    Field::Outcome,
    Field::ProcessId,
    Field::Hostname,
];
const FILE: &[Field] = &[
    Field::TargetFilename,
    Field::Operation,
    Field::ProcessId,
    Field::Hostname,
];

impl Field {
    /// The Sigma field name.
    pub fn name(self) -> &'static str {
        match self {
            Field::Image => "Image",
            Field::CommandLine => "CommandLine",
            Field::ParentImage => "ParentImage",
            Field::User => "User",
            Field::ProcessId => "ProcessId",
            Field::ParentProcessId => "ParentProcessId",
            Field::CurrentDirectory => "CurrentDirectory",
            Field::Hostname => "Hostname",
            Field::SourceIp => "SourceIp",
            Field::SourcePort => "SourcePort",
            Field::DestinationIp => "DestinationIp",
            Field::DestinationPort => "DestinationPort",
            Field::Initiated => "Initiated",
            Field::Protocol => "Protocol",
            Field::TargetUserName => "TargetUserName",
            Field::SubjectUserName => "SubjectUserName",
            Field::IpAddress => "IpAddress",
            Field::IpPort => "IpPort",
            Field::WorkstationName => "WorkstationName",
            Field::LogonType => "LogonType",
            Field::AuthenticationPackageName => "AuthenticationPackageName",
            Field::Service => "Service",
            Field::Outcome => "Outcome",
            Field::TargetFilename => "TargetFilename",
            Field::Operation => "Operation",
        }
    }
}

/// The event kinds a rule's log source selects, and the fields they have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Source {
    pub kinds: &'static [EventKind],
    pub fields: &'static [Field],
    /// How the log source is named in messages.
    pub label: &'static str,
}

impl Source {
    /// Resolves a field name for this source; Sigma backends compare field
    /// names case-insensitively, so this does too.
    pub fn field(&self, name: &str) -> Option<Field> {
        self.fields
            .iter()
            .copied()
            .find(|f| f.name().eq_ignore_ascii_case(name))
    }

    /// The field names, for error messages.
    pub fn field_names(&self) -> String {
        self.fields
            .iter()
            .map(|f| f.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Maps a rule's `logsource` onto Vigil's payloads, or says why it cannot.
pub(crate) fn source(
    product: Option<&str>,
    category: Option<&str>,
    service: Option<&str>,
) -> Result<Source, String> {
    let product = product.map(str::to_ascii_lowercase);
    if let Some(p) = product.as_deref() {
        if p != "linux" && p != "windows" {
            return Err(format!(
                "logsource product `{p}` is not observed by Vigil (linux, windows)"
            ));
        }
    }
    const SUPPORTED: &str = "category process_creation, network_connection, authentication, \
         file_event, file_change; or product linux with service auth/sshd";
    match (category.map(str::to_ascii_lowercase).as_deref(), service) {
        (Some("process_creation"), _) => Ok(Source {
            kinds: &[EventKind::ProcessStart],
            fields: PROCESS,
            label: "process_creation",
        }),
        (Some("network_connection"), _) => Ok(Source {
            kinds: &[EventKind::NetConnect, EventKind::NetAccept],
            fields: NETWORK,
            label: "network_connection",
        }),
        (Some("authentication"), _) => Ok(auth_source("authentication")),
        (Some("file_event" | "file_change"), _) => Ok(Source {
            kinds: &[EventKind::FileChange],
            fields: FILE,
            label: "file_event",
        }),
        (Some(other), _) => Err(format!(
            "logsource category `{other}` is not observed by Vigil (supported: {SUPPORTED})"
        )),
        (None, Some(s))
            if product.as_deref() != Some("windows")
                && (s.eq_ignore_ascii_case("auth") || s.eq_ignore_ascii_case("sshd")) =>
        {
            Ok(auth_source("linux auth"))
        }
        (None, Some(s)) => Err(format!(
            "logsource service `{s}` is not observed by Vigil (supported: {SUPPORTED})"
        )),
        (None, None) => Err(format!(
            "logsource names no category or service (supported: {SUPPORTED})"
        )),
    }
}

fn auth_source(label: &'static str) -> Source {
    Source {
        kinds: &[EventKind::Login, EventKind::AuthFailure],
        fields: AUTH,
        label,
    }
}

/// One field's value in both spellings matching needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Value {
    /// As the event has it (shown in explanations, used by `re`/`cased`/`cidr`).
    pub raw: String,
    /// Lowercased once, for Sigma's case-insensitive string matching.
    pub lower: String,
}

/// An event seen through Sigma field names. Fields are computed on first
/// use and cached, so a rule set that looks at two fields costs two.
pub(crate) struct EventView<'e> {
    event: &'e Event,
    cache: [OnceCell<Option<Value>>; FIELD_COUNT],
}

impl<'e> EventView<'e> {
    /// A view of `event`; nothing is computed yet.
    pub fn new(event: &'e Event) -> Self {
        EventView {
            event,
            cache: std::array::from_fn(|_| OnceCell::new()),
        }
    }

    /// The field's value, `None` when the event does not have it.
    pub fn get(&self, field: Field) -> Option<&Value> {
        self.cache[field as usize]
            .get_or_init(|| {
                extract(self.event, field).map(|raw| Value {
                    lower: raw.to_lowercase(),
                    raw,
                })
            })
            .as_ref()
    }
}

fn extract(event: &Event, field: Field) -> Option<String> {
    if field == Field::Hostname {
        return Some(event.header.host.to_string());
    }
    match &event.payload {
        Payload::ProcessStart(p) => match field {
            Field::Image => p.exe.clone(),
            Field::CommandLine => (!p.argv.is_empty()).then(|| p.argv.join(" ")),
            Field::ParentImage => p.parent_exe.clone(),
            Field::User => p.user.clone(),
            Field::ProcessId => Some(p.pid.to_string()),
            Field::ParentProcessId => Some(p.ppid.to_string()),
            Field::CurrentDirectory => p.cwd.clone(),
            _ => None,
        },
        Payload::NetConnect(f) => flow(f, field, true),
        Payload::NetAccept(f) => flow(f, field, false),
        Payload::Login(l) => login(l, field, "success"),
        Payload::AuthFailure(l) => login(l, field, "failure"),
        Payload::FileChange(c) => match field {
            Field::TargetFilename => Some(c.path.clone()),
            Field::Operation => Some(file_op(c.op).to_string()),
            Field::ProcessId => c.pid.map(|p| p.to_string()),
            _ => None,
        },
        _ => None,
    }
}

fn flow(f: &NetFlow, field: Field, initiated: bool) -> Option<String> {
    let (src, dst): (SocketAddr, SocketAddr) = if initiated {
        (f.local, f.remote)
    } else {
        (f.remote, f.local)
    };
    match field {
        Field::Image => f.exe.clone(),
        Field::ProcessId => f.pid.map(|p| p.to_string()),
        Field::SourceIp => Some(src.ip().to_canonical().to_string()),
        Field::SourcePort => Some(src.port().to_string()),
        Field::DestinationIp => Some(dst.ip().to_canonical().to_string()),
        Field::DestinationPort => Some(dst.port().to_string()),
        Field::Initiated => Some(initiated.to_string()),
        Field::Protocol => Some(
            match f.transport {
                vigil_proto::event::Transport::Tcp => "tcp",
                vigil_proto::event::Transport::Udp => "udp",
            }
            .to_string(),
        ),
        _ => None,
    }
}

fn login(l: &LoginInfo, field: Field, outcome: &str) -> Option<String> {
    match field {
        Field::TargetUserName => Some(l.user.clone()),
        Field::SubjectUserName => l.from_user.clone(),
        Field::IpAddress => l.src_addr.map(|a: IpAddr| a.to_canonical().to_string()),
        Field::IpPort => l.src_port.map(|p| p.to_string()),
        Field::WorkstationName => l.src_host.clone(),
        Field::LogonType => logon_type(&l.service).map(|t| t.to_string()),
        Field::AuthenticationPackageName => Some(
            match &l.method {
                AuthMethod::Password => "password",
                AuthMethod::PublicKey => "publickey",
                AuthMethod::KeyboardInteractive => "keyboard-interactive",
                AuthMethod::Kerberos => "Kerberos",
                AuthMethod::Ntlm => "NTLM",
                AuthMethod::Other(s) => s,
            }
            .to_string(),
        ),
        Field::Service => Some(
            match &l.service {
                LoginService::Ssh => "ssh",
                LoginService::Su => "su",
                LoginService::Sudo => "sudo",
                LoginService::Console => "console",
                LoginService::Smb => "smb",
                LoginService::Rdp => "rdp",
                LoginService::WinRm => "winrm",
                LoginService::Wmi => "wmi",
                LoginService::Other(s) => s,
            }
            .to_string(),
        ),
        Field::Outcome => Some(outcome.to_string()),
        Field::ProcessId => l.pid.map(|p| p.to_string()),
        _ => None,
    }
}

/// Windows logon types where the service implies one (4624's `LogonType`).
fn logon_type(service: &LoginService) -> Option<u8> {
    match service {
        LoginService::Console => Some(2),
        LoginService::Smb | LoginService::WinRm | LoginService::Wmi => Some(3),
        LoginService::Rdp => Some(10),
        _ => None,
    }
}

fn file_op(op: FileOp) -> &'static str {
    match op {
        FileOp::Created => "created",
        FileOp::Modified => "modified",
        FileOp::Deleted => "deleted",
        FileOp::Renamed => "renamed",
        FileOp::Attributes => "attributes",
    }
}
