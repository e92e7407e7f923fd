//! Runs the dev captures in `../shared/datasets/` (outside the repo) through
//! the detector. Skips, saying so, when the folder is absent.

use std::path::{Path, PathBuf};
use vigil_models::DetectorConfig;
use vigil_proto::Payload;
use vigil_tools::eval::otrf::{judge, read_labels, run_capture};

fn shared(sub: &str) -> Option<PathBuf> {
    let p = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../../shared/datasets")
    .join(sub);
    let p = if p.is_dir() {
        p
    } else {
        Path::new("/work/shared/datasets").join(sub)
    };
    if p.is_dir() {
        Some(p)
    } else if std::env::var_os("CI").is_some() {
        panic!("dev data set {sub} not found under ../shared/datasets/ (CI must have it)");
    } else {
        eprintln!("SKIPPED: dev data set {sub} not found (expected under ../shared/datasets/); nothing to check");
        None
    }
}

#[test]
fn otrf_dev_captures_detect_the_labelled_hops() {
    let Some(dir) = shared("otrf-lateral-movement") else {
        return;
    };
    let labels = read_labels(&std::fs::read_to_string(dir.join("labels.tsv")).unwrap());
    assert!(labels.len() >= 20, "labels parsed: {}", labels.len());
    let cfg = DetectorConfig::default();
    let mut detected = Vec::new();
    let mut total_alerts = 0;
    for l in &labels {
        let path = dir.join("host").join(&l.file);
        let records = vigil_datasets::otrf::read_capture(&path).unwrap();
        assert!(!records.is_empty(), "{}", l.file);
        let (det, alerts, events) = run_capture(&records, &cfg);
        let r = judge(&l.file, &det, &alerts, events, Some(l));
        total_alerts += r.alerts;
        if r.detected {
            assert!(!r.techniques.is_empty(), "{}: techniques assigned", l.file);
            detected.push(l.file.clone());
        }
    }
    // frozen on this dev set; a regression below this is a real change
    assert!(
        detected.len() >= 13,
        "detected {}: {detected:?}",
        detected.len()
    );
    for must in [
        "empire_smbexec_dcerpc_smb_svcctl.zip",
        "empire_psexec_dcerpc_tcp_svcctl.zip",
        "empire_wmi_dcerpc_wmi_IWbemServices_ExecMethod.zip",
    ] {
        assert!(detected.iter().any(|d| d == must), "{must} not detected");
    }
    assert!(
        total_alerts <= 3 * labels.len(),
        "alert count {total_alerts}"
    );
}

#[test]
fn evtx_samples_parse_and_map() {
    let Some(dir) = shared("evtx-to-mitre-lateral") else {
        return;
    };
    let f = dir.join("T1021.002-SMB Windows Admin Shares/ID4688,4697,5140-5145 PSexec remote execution + admin share.evtx");
    let recs = vigil_datasets::evtx_file::read_evtx(&f).unwrap();
    assert_eq!(recs.len(), 30);
    assert!(recs
        .iter()
        .all(|r| r.hostname.to_ascii_lowercase().starts_with("srvdefender01")));
    let payloads: Vec<Payload> = recs
        .iter()
        .filter_map(|r| vigil_datasets::windows::payload(&r.record))
        .collect();
    assert!(payloads
        .iter()
        .any(|p| matches!(p, Payload::Login(l) if l.src_addr.is_some())));
    assert!(payloads.iter().any(|p| matches!(p, Payload::ProcessStart(ps) if ps.parent_exe.as_deref().is_some_and(|x| x.ends_with("services.exe")))));
}

/// Techniques each sample must name, run as `vigil eval otrf` runs it.
/// Every entry fails if its catalogue evidence or its adapter mapping breaks.
const EVTX_TECHNIQUES: [(&str, &str); 11] = [
    ("T1021.002-SMB Windows Admin Shares/ID4688,4697,5140-5145 PSexec remote execution + admin share.evtx", "T1021.002"),
    ("T1021.002-SMB Windows Admin Shares/ID4688,4697,5140-5145 PSexec remote execution + admin share.evtx", "T1569.002"),
    ("T1021.002-SMB Windows Admin Shares/ID5140-ADMIN$ share connection with Golden ticket.evtx", "T1021.002"),
    ("T1021.002-SMB Windows Admin Shares/ID5142- New file share created.evtx", "T1021.002"),
    ("T1021.002-SMB Windows Admin Shares/ID5145-remote shell execution via SMB admin share.evtx", "T1021.002"),
    ("T1021.003-Distributed Component Object Model (DCOM)/ID4688,4674-DCOMexec process spawned.evtx", "T1021.003"),
    // 4778: the victim's session reconnected from the attacker's client (an RDP logon);
    // tscon /dest:rdp-tcp#N run as SYSTEM before it is the hijack
    ("T1021.001-Remote Desktop Protocol/ID4688,4778,4779 RDP hijack direct.evtx", "T1021.001"),
    ("T1021.001-Remote Desktop Protocol/ID4688,4778,4779 RDP hijack direct.evtx", "T1563.002"),
    ("T1021.001-Remote Desktop Protocol/ID4688-4778 RDP hijack command execution.evtx", "T1021.001"),
    ("T1021.001-Remote Desktop Protocol/ID4688-4778 RDP hijack command execution.evtx", "T1563.002"),
    // 4624 logon type 9 by seclogo (sekurlsa::pth)
    (PTH_SAMPLE, "T1550.002"),
];

/// The mimikatz pass-the-hash excerpt (one host, FS03).
const PTH_SAMPLE: &str =
    "T1550-Use Alternate Authentication Material/ID4624-Mimikatz Pass the hash.evtx";

#[test]
fn evtx_samples_name_their_technique() {
    let Some(dir) = shared("evtx-to-mitre-lateral") else {
        return;
    };
    let cfg = DetectorConfig::default();
    for (file, want) in EVTX_TECHNIQUES {
        let recs = vigil_datasets::evtx_file::read_evtx(&dir.join(file)).unwrap();
        let (det, alerts, events) = run_capture(&recs, &cfg);
        let r = judge(file, &det, &alerts, events, None);
        assert!(
            r.techniques.iter().any(|t| t == want),
            "{file}: wants {want}, named {:?}",
            r.techniques
        );
    }
}

/// A service shell with no inbound hop in the excerpt alerts on its own.
/// The excerpt's RDP session records (4778/4779) are the hop it followed,
/// so they are left out here: what remains has no hop.
#[test]
fn evtx_service_shell_without_its_hop_alerts_alone() {
    let Some(dir) = shared("evtx-to-mitre-lateral") else {
        return;
    };
    let file = "T1021.001-Remote Desktop Protocol/ID4688-4778 RDP hijack command execution.evtx";
    let mut recs = vigil_datasets::evtx_file::read_evtx(&dir.join(file)).unwrap();
    recs.retain(|r| {
        !matches!(
            vigil_datasets::windows::int_field(&r.record, "EventID"),
            Some(4778 | 4779)
        )
    });
    let (_, alerts, _) = run_capture(&recs, &DetectorConfig::default());
    let t = alerts
        .iter()
        .find(|a| a.kind == vigil_models::AlertKind::Trace)
        .expect("trace alert");
    assert_eq!(t.techniques, vec!["T1569.002".to_string()]);
}

/// The RDP hijack excerpt: the victim's session reconnected from the
/// attacker's client is an RDP hop, and tscon run as SYSTEM just before it
/// names the hijack on that hop.
#[test]
fn evtx_rdp_hijack_names_the_hop_and_the_hijack() {
    let Some(dir) = shared("evtx-to-mitre-lateral") else {
        return;
    };
    let file = "T1021.001-Remote Desktop Protocol/ID4688,4778,4779 RDP hijack direct.evtx";
    let recs = vigil_datasets::evtx_file::read_evtx(&dir.join(file)).unwrap();
    let (_, alerts, _) = run_capture(&recs, &DetectorConfig::default());
    let hop = alerts
        .iter()
        .find(|a| a.kind == vigil_models::AlertKind::Hop)
        .expect("hop alert");
    assert_eq!(hop.path_names[0], "10.23.23.9", "{hop:?}");
    assert_eq!(hop.users, vec!["admmarsid".to_string()]);
    for t in ["T1021.001", "T1563.002"] {
        assert!(hop.techniques.iter().any(|x| x == t), "{t}: {hop:?}");
    }
    assert!(hop.processes.iter().any(|p| p == "tscon.exe"), "{hop:?}");
}

/// 4825 (RDP refused to valid credentials) is a failed RDP logon from the
/// client: scored and learned, never an alert by itself.
#[test]
fn evtx_rdp_denied_is_a_failed_rdp_logon() {
    let Some(dir) = shared("evtx-to-mitre-lateral") else {
        return;
    };
    let file =
        "T1021.001-Remote Desktop Protocol/ID4825-Denied RDP connection with valid credentials.evtx";
    let recs = vigil_datasets::evtx_file::read_evtx(&dir.join(file)).unwrap();
    let failures: Vec<_> = recs
        .iter()
        .filter_map(|r| match vigil_datasets::windows::payload(&r.record) {
            Some(Payload::AuthFailure(l)) => Some(l),
            _ => None,
        })
        .collect();
    assert_eq!(failures.len(), 2);
    for l in &failures {
        assert_eq!(l.user, "svc6test1");
        assert_eq!(l.src_addr, Some("10.23.23.9".parse().unwrap()));
        assert_eq!(
            vigil_models::classify::service_technique(&l.service),
            Some("T1021.001")
        );
    }
    let (_, alerts, events) = run_capture(&recs, &DetectorConfig::default());
    assert_eq!((events, alerts.len()), (2, 0), "{alerts:?}");
}

/// The pass-the-hash excerpt: FS03's own logon type 9 by seclogo alerts
/// there, naming T1550.002 alone. The excerpt also holds reads of FS03's
/// C$ from 10.23.23.9 (5145, an SMB session that predates the type-9
/// logon): that hop, and only it, is the admin-share access T1021.002.
#[test]
fn evtx_pass_the_hash_names_t1550_002_on_its_host() {
    let Some(dir) = shared("evtx-to-mitre-lateral") else {
        return;
    };
    let recs = vigil_datasets::evtx_file::read_evtx(&dir.join(PTH_SAMPLE)).unwrap();
    let (_, alerts, _) = run_capture(&recs, &DetectorConfig::default());
    let pth = alerts
        .iter()
        .find(|a| a.kind == vigil_models::AlertKind::Trace)
        .expect("trace alert");
    assert_eq!(pth.techniques, vec!["T1550.002".to_string()]);
    assert_eq!(pth.path_names, vec!["FS03.offsec.lan".to_string()]);
    assert_eq!(pth.users, vec!["admmig".to_string()]);
    for a in alerts
        .iter()
        .filter(|a| a.techniques.iter().any(|t| t == "T1021.002"))
    {
        assert_eq!(a.kind, vigil_models::AlertKind::Hop, "{a:?}");
        assert_eq!(a.path_names[0], "10.23.23.9", "{a:?}");
        assert!(!a.techniques.iter().any(|t| t == "T1550.002"), "{a:?}");
    }
}

/// Catalogue techniques with no public sample in `../shared/datasets/`,
/// each with why. Each has a test on constructed events instead
/// (`models/tests/detector.rs` and its `techniques` module).
const NO_PUBLIC_SAMPLE: [(&str, &str); 7] = [
    ("T1021.004", "the two OpenSSH EVTX samples show the server installed and listening, no logon; the SSH lab is not a public sample"),
    ("T1021.005", "no VNC capture"),
    ("T1053.005", "the OTRF scheduled-task captures are held out of ../shared/datasets; no 4698/4702 EVTX sample"),
    ("T1210", "no MSSQL xp_cmdshell or Zerologon capture"),
    ("T1098.004", "no Linux capture with an authorized_keys write"),
    ("T1112", "no remote-registry (winreg pipe) capture"),
    ("T1187", "no SpoolSample capture (the Mimispool 5142/5143 sample is a print share, not the spoolss coercion)"),
];

/// Every catalogue technique is named by a public sample above or says in
/// NO_PUBLIC_SAMPLE why not: a new entry cannot slip in untested.
#[test]
fn every_catalogue_technique_has_a_public_sample_or_says_why() {
    let sampled: Vec<&str> = EVTX_TECHNIQUES
        .iter()
        .chain(OTRF_TECHNIQUES.iter())
        .map(|(_, t)| *t)
        .collect();
    let cat = vigil_models::catalogue::catalogue();
    for t in cat.techniques() {
        let with_sample = sampled.contains(&t.id.as_str());
        let without = NO_PUBLIC_SAMPLE.iter().any(|(id, _)| *id == t.id);
        assert!(
            with_sample || without,
            "{} has no public-sample test and is not in NO_PUBLIC_SAMPLE",
            t.id
        );
        assert!(
            !(with_sample && without),
            "{} has a public sample now: take it out of NO_PUBLIC_SAMPLE",
            t.id
        );
    }
    for (id, why) in NO_PUBLIC_SAMPLE {
        assert!(cat.get(id).is_some(), "{id} is not in the catalogue");
        assert!(!why.is_empty());
    }
}

/// OTRF dev captures: the technique each must name on its labelled hop,
/// and RPC on 135 alone must not name WMI where no WmiPrvSE child ran.
const OTRF_TECHNIQUES: [(&str, &str); 10] = [
    ("covenant_psremoting_command.zip", "T1021.006"),
    ("empire_psremoting_stager.zip", "T1021.006"),
    ("covenant_sharpwmi_create_dcerpc_wmi.zip", "T1047"),
    (
        "empire_wmi_dcerpc_wmi_IWbemServices_ExecMethod.zip",
        "T1047",
    ),
    ("empire_msbuild_dcerpc_wmi_smb.zip", "T1047"),
    ("empire_psexec_dcerpc_tcp_svcctl.zip", "T1569.002"),
    ("empire_smbexec_dcerpc_smb_svcctl.zip", "T1569.002"),
    // invoke_smbexec authenticates with the hash: an NTLM network logon
    ("empire_smbexec_dcerpc_smb_svcctl.zip", "T1550.002"),
    ("covenant_sharpsc_create_dcerpc_smb_svcctl.zip", "T1569.002"),
    ("covenant_copy_smb_CreateRequest.zip", "T1021.002"),
];

#[test]
fn otrf_dev_captures_name_their_technique() {
    let Some(dir) = shared("otrf-lateral-movement") else {
        return;
    };
    let labels = read_labels(&std::fs::read_to_string(dir.join("labels.tsv")).unwrap());
    let cfg = DetectorConfig::default();
    let run = |file: &str| {
        let l = labels.iter().find(|l| l.file.ends_with(file)).unwrap();
        let records = vigil_datasets::otrf::read_capture(&dir.join("host").join(&l.file)).unwrap();
        let (det, alerts, events) = run_capture(&records, &cfg);
        judge(&l.file, &det, &alerts, events, Some(l))
    };
    for (file, want) in OTRF_TECHNIQUES {
        let r = run(file);
        assert!(r.detected, "{file} not detected");
        assert!(
            r.techniques.iter().any(|t| t == want),
            "{file}: wants {want}, named {:?}",
            r.techniques
        );
    }
    for file in [
        "empire_psexec_dcerpc_tcp_svcctl.zip",
        "covenant_sharpsc_create_dcerpc_smb_svcctl.zip",
    ] {
        let r = run(file);
        assert!(
            !r.techniques.iter().any(|t| t == "T1047"),
            "{file}: {:?}",
            r.techniques
        );
    }
}
