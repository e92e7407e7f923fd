//! The technique catalogue: which ATT&CK lateral-movement technique each
//! piece of evidence shows, read from `data/techniques.toml` (data, not
//! code). Loaded and indexed once; every lookup the detector makes to name a
//! technique goes through [`catalogue`].

use serde::Deserialize;
use std::collections::HashMap;
use std::sync::OnceLock;
use thiserror::Error;

/// The catalogue as shipped with this build.
const TECHNIQUES_TOML: &str = include_str!("../data/techniques.toml");

/// Why a catalogue text was refused.
#[derive(Debug, Error)]
pub enum CatalogueError {
    /// The text is not TOML of the expected shape.
    #[error("techniques.toml does not parse: {0}")]
    Parse(#[from] toml::de::Error),
    /// Two entries share an id.
    #[error("technique {0} is listed twice")]
    DuplicateId(String),
    /// An evidence entry has a kind the detector does not know.
    #[error("technique {id}: unknown evidence kind {kind:?}")]
    UnknownKind {
        /// Technique id.
        id: String,
        /// The kind as written.
        kind: String,
    },
    /// An evidence value does not fit its kind (a port that is no number…).
    #[error("technique {id}: evidence {kind} = {value:?} is not valid: {why}")]
    BadValue {
        /// Technique id.
        id: String,
        /// Evidence kind.
        kind: String,
        /// The value as written.
        value: String,
        /// What is wrong with it.
        why: &'static str,
    },
}

/// One technique as written in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Technique {
    /// ATT&CK id (`T1021.002`).
    pub id: String,
    /// ATT&CK name.
    pub name: String,
    /// A strong trace alerts on its own host without a seen inbound hop.
    #[serde(default)]
    pub alone: bool,
    /// Evidence on Windows hosts.
    #[serde(default)]
    pub windows: Vec<Evidence>,
    /// Evidence on Linux hosts.
    #[serde(default)]
    pub linux: Vec<Evidence>,
}

/// One piece of evidence (see the kinds at the top of `techniques.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    /// `port`, `service`, `auth`, `logon`, `parent`, `child`, `file`,
    /// `event`, `pipe` or `unmapped`.
    pub kind: String,
    /// Port number, service, package, logon label, process basename, path
    /// text, event id.
    pub value: String,
    /// For `parent`: `any` (default) or `shells`.
    #[serde(default)]
    pub children: Option<String>,
    /// For `parent`: children it starts as routine (not traces).
    #[serde(default)]
    pub routine: Vec<String>,
    /// For `child`: text its command line must contain (lower case).
    #[serde(default)]
    pub argv: Option<String>,
    /// Free text for readers.
    #[serde(default)]
    pub note: Option<String>,
}

/// Evidence kinds the catalogue may use.
pub const EVIDENCE_KINDS: [&str; 10] = [
    "port", "service", "auth", "logon", "parent", "child", "file", "event", "pipe", "unmapped",
];

/// How a remote-session parent's children count.
#[derive(Debug, Clone)]
struct ParentRule {
    technique: usize,
    shells_only: bool,
    routine: Vec<String>,
}

/// The catalogue, indexed for the detector's lookups.
#[derive(Debug)]
pub struct Catalogue {
    techniques: Vec<Technique>,
    ports: HashMap<u16, usize>,
    services: HashMap<String, usize>,
    auth: HashMap<String, usize>,
    logons: HashMap<String, (usize, Option<String>)>,
    pipes: HashMap<String, usize>,
    parents: HashMap<String, ParentRule>,
    children: HashMap<String, (usize, Option<String>)>,
    files: Vec<(String, usize)>,
}

/// The shipped catalogue, parsed on first use.
pub fn catalogue() -> &'static Catalogue {
    static CAT: OnceLock<Catalogue> = OnceLock::new();
    CAT.get_or_init(|| {
        // validated by this module's tests; a broken file never ships
        Catalogue::parse(TECHNIQUES_TOML).expect("models/data/techniques.toml is valid")
    })
}

impl Catalogue {
    /// Parses and validates a catalogue text.
    pub fn parse(text: &str) -> Result<Self, CatalogueError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            technique: Vec<Technique>,
        }
        let file: File = toml::from_str(text)?;
        let mut cat = Catalogue {
            techniques: Vec::new(),
            ports: HashMap::new(),
            services: HashMap::new(),
            auth: HashMap::new(),
            logons: HashMap::new(),
            pipes: HashMap::new(),
            parents: HashMap::new(),
            children: HashMap::new(),
            files: Vec::new(),
        };
        for (i, t) in file.technique.iter().enumerate() {
            if file.technique[..i].iter().any(|o| o.id == t.id) {
                return Err(CatalogueError::DuplicateId(t.id.clone()));
            }
            for e in t.windows.iter().chain(&t.linux) {
                cat.index(i, t, e)?;
            }
        }
        cat.techniques = file.technique;
        Ok(cat)
    }

    /// Adds one evidence entry of technique `i` to the lookup tables. The
    /// first technique to claim a value keeps it (Windows and Linux lists
    /// may repeat a value).
    fn index(&mut self, i: usize, t: &Technique, e: &Evidence) -> Result<(), CatalogueError> {
        let id = t.id.as_str();
        let bad = |why| CatalogueError::BadValue {
            id: id.to_string(),
            kind: e.kind.clone(),
            value: e.value.clone(),
            why,
        };
        if e.value.trim().is_empty() {
            return Err(bad("empty"));
        }
        let v = e.value.to_ascii_lowercase();
        match e.kind.as_str() {
            "port" => {
                let p: u16 = e.value.parse().map_err(|_| bad("not a port number"))?;
                self.ports.entry(p).or_insert(i);
            }
            "service" => {
                if !matches!(v.as_str(), "ssh" | "rdp" | "smb" | "winrm" | "wmi") {
                    return Err(bad("not a logon service (ssh, rdp, smb, winrm, wmi)"));
                }
                self.services.entry(v).or_insert(i);
            }
            "auth" => {
                if !matches!(v.as_str(), "ntlm" | "kerberos") {
                    return Err(bad("not an authentication package (ntlm, kerberos)"));
                }
                self.auth.entry(v).or_insert(i);
            }
            "logon" => {
                // a local logon has no hop to carry the technique: it can
                // only ever show as an alert of its own
                if !t.alone {
                    return Err(bad("logon evidence needs `alone = true`"));
                }
                self.logons.entry(v).or_insert((i, e.note.clone()));
            }
            "parent" => {
                let shells_only = match e.children.as_deref() {
                    None | Some("any") => false,
                    Some("shells") => true,
                    Some(_) => return Err(bad("children must be \"any\" or \"shells\"")),
                };
                let routine = e.routine.iter().map(|r| r.to_ascii_lowercase()).collect();
                self.parents.entry(v).or_insert(ParentRule {
                    technique: i,
                    shells_only,
                    routine,
                });
            }
            "child" => {
                let argv = e.argv.as_ref().map(|a| a.to_ascii_lowercase());
                self.children.entry(v).or_insert((i, argv));
            }
            "file" => self.files.push((v.replace('\\', "/"), i)),
            "event" => {
                e.value.parse::<u32>().map_err(|_| bad("not an event id"))?;
            }
            "pipe" => {
                self.pipes.entry(v).or_insert(i);
            }
            "unmapped" => {}
            other => {
                return Err(CatalogueError::UnknownKind {
                    id: id.to_string(),
                    kind: other.to_string(),
                })
            }
        }
        Ok(())
    }

    /// Every technique, in file order.
    pub fn techniques(&self) -> &[Technique] {
        &self.techniques
    }

    /// The technique with this id.
    pub fn get(&self, id: &str) -> Option<&Technique> {
        self.techniques.iter().find(|t| t.id == id)
    }

    fn id(&self, i: usize) -> &str {
        &self.techniques[i].id
    }

    /// Technique named by a connection to `port`.
    pub fn port(&self, port: u16) -> Option<&str> {
        self.ports.get(&port).map(|&i| self.id(i))
    }

    /// Technique named by a logon over `service` (`ssh`, `rdp`, …).
    pub fn service(&self, service: &str) -> Option<&str> {
        self.services.get(service).map(|&i| self.id(i))
    }

    /// Technique named by a remote logon's authentication package.
    pub fn auth(&self, package: &str) -> Option<&str> {
        self.auth.get(package).map(|&i| self.id(i))
    }

    /// Technique (and the evidence's note) named by a logon the data-set
    /// adapter labelled `label` (a `LoginService::Other` text such as
    /// `logon-type-9:seclogo`).
    pub fn logon(&self, label: &str) -> Option<(&str, Option<&str>)> {
        self.logons
            .get(&label.to_ascii_lowercase())
            .map(|(i, note)| (self.id(*i), note.as_deref()))
    }

    /// Technique named by a named pipe opened over IPC$ (lower case).
    pub fn pipe(&self, pipe: &str) -> Option<&str> {
        self.pipes
            .get(&pipe.to_ascii_lowercase())
            .map(|&i| self.id(i))
    }

    /// Technique named by a change to `path`.
    pub fn file(&self, path: &str) -> Option<&str> {
        let p = path.to_ascii_lowercase().replace('\\', "/");
        self.files
            .iter()
            .find(|(f, _)| {
                if f.ends_with('/') {
                    p.contains(f.as_str())
                } else {
                    p.ends_with(f.as_str())
                }
            })
            .map(|&(_, i)| self.id(i))
    }

    /// Technique of a process whose start alone is a trace (lower-case
    /// basename and command line).
    pub fn child(&self, child: &str, argv: &str) -> Option<&str> {
        let (i, want) = self.children.get(child)?;
        want.as_deref()
            .is_none_or(|w| argv.contains(w))
            .then(|| self.id(*i))
    }

    /// Technique of a remote-session parent, if `parent` is one.
    pub fn parent(&self, parent: &str) -> Option<&str> {
        self.parents.get(parent).map(|r| self.id(r.technique))
    }

    /// Technique of `parent → child` when the parent is a remote-session
    /// host and the child is not one it starts as routine.
    pub fn spawn(&self, parent: &str, child: &str, is_shell: bool) -> Option<&str> {
        let r = self.parents.get(parent)?;
        let counted = if r.shells_only {
            is_shell
        } else {
            !r.routine.iter().any(|x| x == child)
        };
        counted.then(|| self.id(r.technique))
    }

    /// Whether `process` starting is by itself the trace (a `child` entry).
    pub fn is_child_evidence(&self, process: &str) -> bool {
        self.children.contains_key(process)
    }

    /// Whether a strong trace of `technique` alerts without a seen hop.
    pub fn alone(&self, technique: &str) -> bool {
        self.get(technique).is_some_and(|t| t.alone)
    }

    /// `T1021.002 SMB/Windows Admin Shares`, or the bare id if unknown.
    pub fn label(&self, technique: &str) -> String {
        match self.get(technique) {
            Some(t) => format!("{} {}", t.id, t.name),
            None => technique.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_catalogue_is_valid() {
        let cat = Catalogue::parse(TECHNIQUES_TOML).unwrap();
        assert!(cat.techniques().len() >= 12);
        for t in cat.techniques() {
            assert!(t.id.starts_with('T'), "{}", t.id);
            assert!(!t.name.is_empty(), "{}", t.id);
            assert!(
                !(t.windows.is_empty() && t.linux.is_empty()),
                "{} has no evidence",
                t.id
            );
            for e in t.windows.iter().chain(&t.linux) {
                assert!(EVIDENCE_KINDS.contains(&e.kind.as_str()), "{}", e.kind);
            }
        }
    }

    #[test]
    fn refuses_duplicates_and_unknown_kinds() {
        let dup = "[[technique]]\nid='T1'\nname='a'\n[[technique]]\nid='T1'\nname='b'\n";
        assert!(matches!(
            Catalogue::parse(dup),
            Err(CatalogueError::DuplicateId(_))
        ));
        let kind = "[[technique]]\nid='T1'\nname='a'\nwindows=[{kind='smell',value='x'}]\n";
        assert!(matches!(
            Catalogue::parse(kind),
            Err(CatalogueError::UnknownKind { .. })
        ));
        let port = "[[technique]]\nid='T1'\nname='a'\nwindows=[{kind='port',value='http'}]\n";
        assert!(matches!(
            Catalogue::parse(port),
            Err(CatalogueError::BadValue { .. })
        ));
    }

    #[test]
    fn rpc_alone_names_nothing() {
        // 135 carries DCOM, WMI, services and tasks: only the child decides
        assert_eq!(catalogue().port(135), None);
        assert_eq!(catalogue().port(445), Some("T1021.002"));
        assert_eq!(catalogue().port(5986), Some("T1021.006"));
    }

    #[test]
    fn children_and_files() {
        let c = catalogue();
        assert_eq!(
            c.child("mmc.exe", "c:\\windows\\system32\\mmc.exe -embedding"),
            Some("T1021.003")
        );
        assert_eq!(c.child("mmc.exe", "mmc.exe eventvwr.msc /s"), None);
        assert_eq!(c.child("wsmprovhost.exe", ""), Some("T1021.006"));
        assert_eq!(
            c.file("C:\\Windows\\System32\\Tasks\\Updater"),
            Some("T1053.005")
        );
        assert_eq!(c.file("/home/a/.ssh/authorized_keys"), Some("T1098.004"));
        assert_eq!(c.file("/home/a/.ssh/authorized_keys.bak"), None);
        assert_eq!(c.spawn("sqlservr.exe", "cmd.exe", true), Some("T1210"));
        assert_eq!(c.spawn("sqlservr.exe", "sqlagent.exe", false), None);
        assert!(c.alone("T1569.002") && !c.alone("T1021.001"));
    }

    #[test]
    fn rdp_hijack_and_new_credentials_logon() {
        let c = catalogue();
        // tscon into the caller's RDP connection is the hijack; moving a
        // session to the console is an admin's routine
        assert_eq!(
            c.child("tscon.exe", "tscon  2 /dest:rdp-tcp#8"),
            Some("T1563.002")
        );
        assert_eq!(c.child("tscon.exe", "tscon 1 /dest:console"), None);
        assert!(c.alone("T1563.002"));
        let (id, note) = c.logon("logon-type-9:seclogo").unwrap();
        assert_eq!(id, "T1550.002");
        assert!(note.unwrap().contains("sekurlsa::pth"));
        assert_eq!(
            c.logon("LOGON-TYPE-9:SECLOGO").map(|t| t.0),
            Some("T1550.002")
        );
        assert_eq!(c.logon("logon-type-9"), None);
        assert!(c.alone("T1550.002"));
        assert_eq!(c.service("rdp"), Some("T1021.001"));
    }

    #[test]
    fn logon_evidence_needs_alone() {
        let t =
            "[[technique]]\nid='T1'\nname='a'\nwindows=[{kind='logon',value='logon-type-9:x'}]\n";
        assert!(matches!(
            Catalogue::parse(t),
            Err(CatalogueError::BadValue { .. })
        ));
        let ok = "[[technique]]\nid='T1'\nname='a'\nalone=true\nwindows=[{kind='logon',value='logon-type-9:x'}]\n";
        assert!(Catalogue::parse(ok).is_ok());
    }
}
