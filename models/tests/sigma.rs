//! Sigma rules: the grammar, the shipped rule set, and refusals.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use proptest::prelude::*;
use vigil_models::sigma::{Level, RuleSet};
use vigil_proto::event::{
    AuthMethod, Event, EventHeader, FileChange, FileOp, HostId, LoginInfo, LoginService, NetFlow,
    Payload, ProcessStart, Transport,
};

fn event(payload: Payload) -> Event {
    Event {
        header: EventHeader {
            host: HostId(0x2a),
            seq: 1,
            ts_ns: 1_700_000_000_000_000_000,
        },
        payload,
    }
}

fn process(exe: &str, cmdline: &str, parent: &str) -> Event {
    event(Payload::ProcessStart(ProcessStart {
        pid: 4242,
        ppid: 1,
        exe: Some(exe.to_string()),
        argv: cmdline.split(' ').map(str::to_string).collect(),
        user: Some("alice".into()),
        parent_exe: (!parent.is_empty()).then(|| parent.to_string()),
        ..ProcessStart::default()
    }))
}

fn login(user: &str, service: LoginService, src: Option<&str>, ok: bool) -> Event {
    let info = LoginInfo {
        user: user.to_string(),
        method: AuthMethod::PublicKey,
        service,
        src_addr: src.map(|s| s.parse::<IpAddr>().unwrap()),
        src_port: Some(50_000),
        src_host: None,
        from_user: None,
        pid: Some(77),
    };
    event(if ok {
        Payload::Login(info)
    } else {
        Payload::AuthFailure(info)
    })
}

fn file(path: &str, op: FileOp) -> Event {
    event(Payload::FileChange(FileChange {
        path: path.to_string(),
        op,
        size: None,
        mode: None,
        uid: None,
        sha256: None,
        pid: None,
    }))
}

fn connect(remote: &str, exe: &str) -> Event {
    event(Payload::NetConnect(NetFlow {
        transport: Transport::Tcp,
        local: "10.0.0.5:40000".parse::<SocketAddr>().unwrap(),
        remote: remote.parse::<SocketAddr>().unwrap(),
        pid: Some(9),
        exe: Some(exe.to_string()),
        repeat: 1,
    }))
}

fn rule(logsource: &str, detection: &str) -> String {
    format!(
        "title: t\nid: test-rule\nlogsource:\n{logsource}\ndetection:\n{detection}\nlevel: low\n"
    )
}

const PROC: &str = "  category: process_creation";

/// Grammar cases: (detection body, event, fires?).
#[test]
fn grammar_table() {
    let sc = process(
        "C:\\Windows\\System32\\sc.exe",
        "sc.exe \\\\dc01 create evil binPath= c:\\x.exe",
        "",
    );
    let ssh = process(
        "/usr/bin/ssh",
        "ssh -o StrictHostKeyChecking=no root@10.0.0.9",
        "/bin/bash",
    );
    let cases: &[(&str, &Event, bool)] = &[
        // Plain values: whole-value, case-insensitive.
        (
            "  s:\n    Image: 'c:\\windows\\system32\\SC.EXE'\n  condition: s",
            &sc,
            true,
        ),
        ("  s:\n    Image: 'sc.exe'\n  condition: s", &sc, false),
        // Wildcards.
        ("  s:\n    Image: '*\\sc.exe'\n  condition: s", &sc, true),
        (
            "  s:\n    Image: 'C:\\Windows\\System3?\\sc.exe'\n  condition: s",
            &sc,
            true,
        ),
        (
            "  s:\n    Image: 'C:\\Windows\\System?\\sc.exe'\n  condition: s",
            &sc,
            false,
        ),
        // Modifiers.
        (
            "  s:\n    CommandLine|contains: 'CREATE EVIL'\n  condition: s",
            &sc,
            true,
        ),
        (
            "  s:\n    CommandLine|startswith: 'sc.exe \\\\\\\\'\n  condition: s",
            &sc,
            true,
        ),
        (
            "  s:\n    Image|endswith: '/ssh'\n  condition: s",
            &ssh,
            true,
        ),
        (
            "  s:\n    CommandLine|contains|all: ['-o', 'nope']\n  condition: s",
            &ssh,
            false,
        ),
        (
            "  s:\n    CommandLine|contains|all: ['-o', 'stricthostkeychecking']\n  condition: s",
            &ssh,
            true,
        ),
        (
            "  s:\n    CommandLine|contains: ['nope', 'root@']\n  condition: s",
            &ssh,
            true,
        ),
        (
            "  s:\n    CommandLine|re: 'Strict\\w+=no'\n  condition: s",
            &ssh,
            true,
        ),
        (
            "  s:\n    CommandLine|re: 'strict\\w+=no'\n  condition: s",
            &ssh,
            false,
        ),
        (
            "  s:\n    CommandLine|re|i: 'strict\\w+=no'\n  condition: s",
            &ssh,
            true,
        ),
        (
            "  s:\n    CommandLine|cased|contains: 'stricthost'\n  condition: s",
            &ssh,
            false,
        ),
        (
            "  s:\n    CommandLine|windash|contains: '/o Strict'\n  condition: s",
            &ssh,
            false,
        ),
        (
            "  s:\n    CommandLine|windash|contains: '-o Strict'\n  condition: s",
            &ssh,
            true,
        ),
        // null and exists.
        (
            "  s:\n    CurrentDirectory: null\n  condition: s",
            &ssh,
            true,
        ),
        ("  s:\n    ParentImage: null\n  condition: s", &ssh, false),
        (
            "  s:\n    ParentImage|exists: true\n  condition: s",
            &ssh,
            true,
        ),
        (
            "  s:\n    ParentImage|exists: false\n  condition: s",
            &sc,
            true,
        ),
        // Numbers compare as text.
        ("  s:\n    ProcessId: 4242\n  condition: s", &ssh, true),
        // Lists of maps are OR; maps are AND.
        (
            "  s:\n    - Image: x\n    - User: ALICE\n  condition: s",
            &ssh,
            true,
        ),
        (
            "  s:\n    Image: x\n    User: alice\n  condition: s",
            &ssh,
            false,
        ),
        // Keywords search every field.
        ("  kw:\n    - 'root@10.0.0'\n  condition: kw", &ssh, true),
        ("  kw:\n    - 'absent'\n  condition: kw", &ssh, false),
        // `'|all':` keywords: every value somewhere in the event.
        (
            "  kw:\n    '|all':\n      - 'stricthost'\n      - 'ALICE'\n  condition: kw",
            &ssh,
            true,
        ),
        (
            "  kw:\n    '|all':\n      - 'stricthost'\n      - 'absent'\n  condition: kw",
            &ssh,
            false,
        ),
        // Conditions.
        (
            "  a:\n    User: alice\n  b:\n    User: bob\n  condition: a and not b",
            &ssh,
            true,
        ),
        (
            "  a:\n    User: alice\n  b:\n    User: bob\n  condition: not a or b",
            &ssh,
            false,
        ),
        (
            "  a:\n    User: alice\n  b:\n    User: bob\n  condition: not (a and b)",
            &ssh,
            true,
        ),
        (
            "  sel1:\n    User: bob\n  sel2:\n    User: alice\n  condition: 1 of sel*",
            &ssh,
            true,
        ),
        (
            "  sel1:\n    User: bob\n  sel2:\n    User: alice\n  condition: all of sel*",
            &ssh,
            false,
        ),
        (
            "  a:\n    User: alice\n  _b:\n    User: bob\n  condition: all of them",
            &ssh,
            true,
        ),
        (
            "  a:\n    User: bob\n  b:\n    User: alice\n  condition: 1 of them",
            &ssh,
            true,
        ),
        (
            "  a:\n    User: bob\n  b:\n    User: alice\n  condition: [a, b]",
            &ssh,
            true,
        ),
    ];
    for (i, (detection, ev, want)) in cases.iter().enumerate() {
        let set = RuleSet::from_str("case.yml", &rule(PROC, detection))
            .unwrap_or_else(|e| panic!("case {i} refused: {e:?}\n{detection}"));
        assert_eq!(!set.matches(ev).is_empty(), *want, "case {i}:\n{detection}");
    }
}

#[test]
fn other_log_sources() {
    let net = rule(
        "  category: network_connection",
        "  s:\n    DestinationIp|cidr: 192.168.0.0/16\n    DestinationPort: 445\n    Initiated: 'true'\n  condition: s",
    );
    let set = RuleSet::from_str("net.yml", &net).unwrap();
    assert_eq!(
        set.matches(&connect("192.168.4.2:445", "/usr/bin/smbclient"))
            .len(),
        1
    );
    assert!(set
        .matches(&connect("10.0.0.2:445", "/usr/bin/smbclient"))
        .is_empty());
    assert!(
        set.matches(&process("/usr/bin/ssh", "ssh", "")).is_empty(),
        "wrong kind never fires"
    );

    let auth = rule(
        "  product: linux\n  service: auth",
        "  s:\n    Outcome: failure\n    AuthenticationPackageName: publickey\n  condition: s",
    );
    let set = RuleSet::from_str("auth.yml", &auth).unwrap();
    assert_eq!(
        set.matches(&login("bob", LoginService::Ssh, None, false))
            .len(),
        1
    );
    assert!(set
        .matches(&login("bob", LoginService::Ssh, None, true))
        .is_empty());
}

#[test]
fn hits_explain_themselves() {
    let set = RuleSet::load_dir(rules_dir()).unwrap();
    let ev = process(
        "C:\\Windows\\System32\\sc.exe",
        "sc.exe \\\\dc01 create evil binPath= c:\\evil.exe",
        "C:\\Windows\\System32\\cmd.exe",
    );
    let hits = set.matches(&ev);
    assert_eq!(hits.len(), 1, "{hits:?}");
    let hit = &hits[0];
    assert_eq!(hit.rule_id, "5c5fbf37-cd47-47e3-9985-aea0d06d21ad");
    assert_eq!(hit.level, Level::High);
    assert_eq!(hit.techniques, ["T1021.002", "T1543.003", "T1569.002"]);
    assert_eq!(
        hit.matched,
        [
            (
                "Image".to_string(),
                "C:\\Windows\\System32\\sc.exe".to_string()
            ),
            (
                "CommandLine".to_string(),
                "sc.exe \\\\dc01 create evil binPath= c:\\evil.exe".to_string()
            ),
        ]
    );
}

fn rules_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("rules/sigma")
}

/// Every shipped rule: an event that fires it and a near miss that must not.
#[test]
fn shipped_rules_fire_on_positive_and_not_on_negative() {
    let set = RuleSet::load_dir(rules_dir()).unwrap_or_else(|e| panic!("{e:#?}"));
    let shell = "C:\\Windows\\System32\\cmd.exe";
    let cases: Vec<(&str, Event, Event)> = vec![
        (
            "vigil_sc_remote_service_create.yml",
            process(
                "C:\\Windows\\System32\\sc.exe",
                "sc \\\\fs02 create upd binPath= C:\\u.exe",
                "",
            ),
            process(
                "C:\\Windows\\System32\\sc.exe",
                "sc create upd binPath= C:\\u.exe",
                "",
            ),
        ),
        (
            "vigil_psexec_service.yml",
            process(
                "C:\\Windows\\PSEXESVC.exe",
                "PSEXESVC.exe",
                "C:\\Windows\\System32\\services.exe",
            ),
            process(
                "C:\\Windows\\PSEXESVC.exe",
                "PSEXESVC.exe",
                "C:\\Windows\\explorer.exe",
            ),
        ),
        (
            "vigil_wmic_remote_process.yml",
            process(
                "C:\\Windows\\System32\\wbem\\WMIC.exe",
                "wmic /node:10.0.0.7 process call create cmd.exe",
                shell,
            ),
            process(
                "C:\\Windows\\System32\\wbem\\WMIC.exe",
                "wmic /node:localhost process call create cmd.exe",
                shell,
            ),
        ),
        (
            "vigil_wmiprvse_shell.yml",
            process(
                shell,
                "cmd.exe /Q /c whoami",
                "C:\\Windows\\System32\\wbem\\WmiPrvSE.exe",
            ),
            process(
                "C:\\Windows\\System32\\notepad.exe",
                "notepad.exe",
                "C:\\Windows\\System32\\wbem\\WmiPrvSE.exe",
            ),
        ),
        (
            "vigil_winrm_shell.yml",
            process(
                "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
                "powershell.exe -nop",
                "C:\\Windows\\System32\\wsmprovhost.exe",
            ),
            process(
                "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
                "powershell.exe",
                shell,
            ),
        ),
        (
            "vigil_ssh_no_host_key_check.yml",
            process(
                "/usr/bin/ssh",
                "ssh -o StrictHostKeyChecking=no admin@10.0.0.9",
                "/bin/bash",
            ),
            process("/usr/bin/ssh", "ssh admin@10.0.0.9", "/bin/bash"),
        ),
        (
            "vigil_authorized_keys_changed.yml",
            file("/root/.ssh/authorized_keys", FileOp::Modified),
            file("/root/.ssh/authorized_keys", FileOp::Deleted),
        ),
        (
            "vigil_ssh_root_from_public.yml",
            login("root", LoginService::Ssh, Some("203.0.113.9"), true),
            login("root", LoginService::Ssh, Some("10.1.2.3"), true),
        ),
        (
            "vigil_mimikatz_pth.yml",
            process(
                "C:\\Users\\x\\m.exe",
                "m.exe privilege::debug \"sekurlsa::pth /user:admin /domain:corp /ntlm:0123\"",
                shell,
            ),
            process(
                "C:\\Users\\x\\m.exe",
                "m.exe privilege::debug sekurlsa::logonpasswords",
                shell,
            ),
        ),
    ];
    let shipped: Vec<String> = std::fs::read_dir(rules_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yml"))
        .collect();
    assert_eq!(
        shipped.len(),
        cases.len(),
        "every shipped rule has a case: {shipped:?}"
    );
    assert_eq!(set.len(), cases.len());
    for (file, positive, negative) in &cases {
        let meta = set
            .rules()
            .find(|r| r.file.ends_with(file))
            .unwrap_or_else(|| panic!("{file} not loaded"));
        assert!(
            !meta.techniques.is_empty(),
            "{file} names ATT&CK techniques"
        );
        let fired: Vec<String> = set
            .matches(positive)
            .into_iter()
            .map(|h| h.rule_id)
            .collect();
        assert!(
            fired.contains(&meta.id),
            "{file} must fire on {positive:?}; fired {fired:?}"
        );
        let fired: Vec<String> = set
            .matches(negative)
            .into_iter()
            .map(|h| h.rule_id)
            .collect();
        assert!(
            !fired.contains(&meta.id),
            "{file} must not fire on {negative:?}"
        );
    }
}

/// Malformed rules: (case, text, expected line, message fragment).
#[test]
fn malformed_rules_are_refused_with_file_and_line() {
    let cases: &[(&str, &str, usize, &str)] = &[
        ("syntax", "title: t\nlogsource: [\n", 3, "YAML syntax error"),
        ("no detection", "title: t\nlogsource:\n  category: process_creation\n", 1, "no `detection`"),
        (
            "aggregation",
            "title: t\nlogsource:\n  category: process_creation\ndetection:\n  s:\n    Image: x\n  condition: s | count() > 5\n",
            7,
            "aggregation",
        ),
        (
            "near",
            "title: t\nlogsource:\n  category: process_creation\ndetection:\n  s:\n    Image: x\n  condition: s near s\n",
            7,
            "`near`",
        ),
        (
            "timeframe",
            "title: t\nlogsource:\n  category: process_creation\ndetection:\n  s:\n    Image: x\n  timeframe: 5m\n  condition: s\n",
            7,
            "timeframe",
        ),
        (
            "correlation",
            "title: t\ncorrelation:\n  type: event_count\nlogsource:\n  category: process_creation\ndetection:\n  s:\n    Image: x\n  condition: s\n",
            2,
            "correlation rules",
        ),
        (
            "modifier",
            "title: t\nlogsource:\n  category: process_creation\ndetection:\n  s:\n    CommandLine|base64offset|contains: x\n  condition: s\n",
            6,
            "field modifier `base64offset`",
        ),
        (
            "field",
            "title: t\nlogsource:\n  category: process_creation\ndetection:\n  s:\n    EventID: 4688\n  condition: s\n",
            6,
            "field `EventID` is not available",
        ),
        (
            "logsource",
            "title: t\nlogsource:\n  product: windows\n  category: registry_set\ndetection:\n  s:\n    Image: x\n  condition: s\n",
            3,
            "registry_set",
        ),
        (
            "regex",
            "title: t\nlogsource:\n  category: process_creation\ndetection:\n  s:\n    Image|re: '(unclosed'\n  condition: s\n",
            6,
            "invalid regular expression",
        ),
        (
            "unknown selection",
            "title: t\nlogsource:\n  category: process_creation\ndetection:\n  s:\n    Image: x\n  condition: s and t\n",
            7,
            "no selection named `t`",
        ),
        (
            "level",
            "title: t\nlevel: severe\nlogsource:\n  category: process_creation\ndetection:\n  s:\n    Image: x\n  condition: s\n",
            2,
            "unknown level",
        ),
        (
            "collection",
            "title: t\nlogsource:\n  category: process_creation\ndetection:\n  s:\n    Image: x\n  condition: s\n---\ntitle: u\n",
            9,
            "rule collections",
        ),
    ];
    for (name, text, line, fragment) in cases {
        let file = format!("{}.yml", name.replace(' ', "_"));
        let errors = RuleSet::from_str(&file, text).expect_err(name);
        let hit = errors
            .iter()
            .find(|e| e.message.contains(fragment))
            .unwrap_or_else(|| panic!("{name}: no error mentions {fragment:?}: {errors:#?}"));
        assert_eq!(hit.file, file, "{name}");
        assert_eq!(hit.line, Some(*line), "{name}: {hit}");
        assert!(
            hit.to_string().starts_with(&format!("{file}:{line}:")),
            "{name}: {hit}"
        );
    }
}

#[test]
fn load_dir_reports_every_bad_file_and_keeps_the_good_ones_when_asked() {
    let dir = std::env::temp_dir().join(format!("vigil-sigma-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let good = rule(PROC, "  s:\n    Image: x\n  condition: s");
    std::fs::write(dir.join("good.yml"), &good).unwrap();
    std::fs::write(dir.join("sub/bad.yaml"), "title: t\ndetection: {}\n").unwrap();
    std::fs::write(dir.join("dup.yml"), &good).unwrap();
    std::fs::write(dir.join("notes.txt"), "not a rule").unwrap();
    let errors = RuleSet::load_dir(&dir).expect_err("bad files refuse the set");
    let (set, partial) = RuleSet::load_dir_partial(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(errors, partial);
    assert!(errors
        .iter()
        .any(|e| e.file.ends_with("bad.yaml") && e.message.contains("logsource")));
    assert!(errors
        .iter()
        .any(|e| e.file.ends_with("good.yml") && e.message.contains("already loaded")));
    assert_eq!(set.len(), 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Arbitrary text never panics the loader.
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
        let _ = RuleSet::from_str("fuzz.yml", &text);
    }

    /// YAML-shaped text built from rule vocabulary never panics either.
    #[test]
    fn rule_shaped_yaml_never_panics(
        parts in proptest::collection::vec(prop::sample::select(vec![
            "title: t\n", "logsource:\n", "  category: process_creation\n", "  product: linux\n",
            "detection:\n", "  s:\n", "    Image|endswith: x\n", "    - a\n", "  condition: ",
            "s\n", "not s\n", "1 of s*\n", "(s\n", "s | count()\n", "    CommandLine|re: '('\n",
            "  - [\n", "&a x\n", "*a\n", "    User: null\n", ": :\n", "- - -\n", "{a: [b, {c: d}]}\n",
            "    IpAddress|cidr: 10.0.0.0/99\n", "tags: [attack.t1021.002, 5]\n",
        ]), 0..30),
    ) {
        let text: String = parts.concat();
        if let Ok(set) = RuleSet::from_str("fuzz.yml", &text) {
            let _ = set.matches(&process("/bin/x", "x", ""));
        }
    }
}

/// Deeply nested YAML is refused, not a stack overflow.
#[test]
fn deep_nesting_is_refused() {
    let n = 20_000;
    let texts = [
        format!("title: t\ndetection: {}", "[".repeat(n)),
        format!("title: t\ndetection: {}", "{a: ".repeat(n)),
        format!(
            "title: t\ndetection:\n  s: {}x{}",
            "[".repeat(n),
            "]".repeat(n)
        ),
        format!(
            "title: t\ndetection:\n  s: {}x{}",
            "{a: ".repeat(n),
            "}".repeat(n)
        ),
    ];
    for text in texts {
        let errors = RuleSet::from_str("deep.yml", &text).unwrap_err();
        assert!(
            errors[0].message.contains("recursion limit"),
            "{}",
            errors[0]
        );
    }
}

/// The appliance shares one rule set between its pipeline threads.
#[test]
fn rule_set_is_send_and_sync() {
    fn shared<T: Send + Sync + Clone>() {}
    shared::<RuleSet>();
}

/// A refused condition points at the offending token, not only its line.
#[test]
fn condition_errors_point_at_the_token() {
    let text = "title: t\nlogsource:\n  category: process_creation\ndetection:\n  s:\n    Image: x\n  condition: s | count() > 5\n";
    let errors = RuleSet::from_str("agg.yml", text).unwrap_err();
    assert_eq!(
        (errors[0].line, errors[0].column),
        (Some(7), Some(16)),
        "{}",
        errors[0]
    );
    assert_eq!(
        errors[0].to_string(),
        "agg.yml:7:16: condition: unsupported feature: aggregation (`| count()`, `| min()` …) in the condition"
    );
}
