//! The executor's admission path: signature, host, expiry, replay (across a
//! restart) and policy, end to end through [`Responder::handle`].

use super::*;
use ed25519_dalek::{Signer, SigningKey};

const NOW: u64 = 1_000_000_000_000;
const HOST: HostId = HostId(7);

fn setup(refuse: Vec<ActionClass>) -> (tempfile::TempDir, SigningKey, Responder) {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::from_bytes(&[9; 32]);
    store_command_key(dir.path(), key.verifying_key().as_bytes()).unwrap();
    let r = Responder::open(ctx(dir.path()), HOST, refuse).unwrap();
    (dir, key, r)
}

fn ctx(dir: &Path) -> ResponseCtx {
    ResponseCtx {
        appliance_addrs: vec!["127.0.0.1".parse().unwrap()],
        appliance_port: 7443,
        netns: None,
        state_dir: dir.to_path_buf(),
    }
}

fn signed(key: &SigningKey, id: u64, action: CommandAction) -> Command {
    let mut c = Command {
        id,
        host: HOST,
        operator: "alice".into(),
        reason: "test".into(),
        created_ns: NOW,
        expires_ns: NOW + 60_000_000_000,
        action,
        signature: Vec::new(),
    };
    c.signature = key.sign(&c.signing_bytes()).to_bytes().to_vec();
    c
}

#[test]
fn a_command_runs_once_even_across_a_restart() {
    let (dir, key, r) = setup(Vec::new());
    let c = signed(&key, 1, CommandAction::ListProcesses);
    let first = r.handle(&c, NOW);
    assert_eq!(first.state, CommandState::Done, "{}", first.message);
    assert!(matches!(first.receipt, Receipt::Listing { total, .. } if total > 0));
    assert_eq!(
        r.handle(&c, NOW).state,
        CommandState::Refused(RefusalReason::Replayed)
    );
    let restarted = Responder::open(ctx(dir.path()), HOST, Vec::new()).unwrap();
    assert_eq!(
        restarted.handle(&c, NOW + 1).state,
        CommandState::Refused(RefusalReason::Replayed)
    );
}

#[test]
fn refusals_are_reported_and_nothing_runs() {
    let (_dir, key, r) = setup(vec![ActionClass::Collect]);
    let mut tampered = signed(&key, 2, CommandAction::ListProcesses);
    tampered.action = CommandAction::ListConnections;
    let other = SigningKey::from_bytes(&[1; 32]);
    let mut foreign = signed(&key, 3, CommandAction::ListProcesses);
    foreign.host = HostId(8);
    foreign.signature = key.sign(&foreign.signing_bytes()).to_bytes().to_vec();
    let collect = CommandAction::CollectFile {
        path: "/etc/hostname".into(),
        max_bytes: 10,
    };
    let cases = [
        (tampered, RefusalReason::BadSignature),
        (
            signed(&other, 4, CommandAction::ListProcesses),
            RefusalReason::BadSignature,
        ),
        (foreign, RefusalReason::WrongHost),
        (signed(&key, 5, collect), RefusalReason::RefusedByPolicy),
        (
            signed(&key, 6, CommandAction::Kill { pid: 2 }),
            RefusalReason::Unsupported,
        ),
    ];
    for (cmd, want) in cases {
        let got = r.handle(&cmd, NOW);
        assert_eq!(got.state, CommandState::Refused(want), "{}", got.message);
        assert_eq!(got.receipt, Receipt::None);
    }
    let late = signed(&key, 7, CommandAction::ListProcesses);
    assert_eq!(
        r.handle(&late, late.expires_ns).state,
        CommandState::Refused(RefusalReason::Expired)
    );
    // A refused command was not recorded: once valid, it runs.
    let fresh = signed(&key, 7, CommandAction::ListProcesses);
    assert_eq!(r.handle(&fresh, NOW).state, CommandState::Done);
}

#[test]
fn without_a_command_key_nothing_runs() {
    let dir = tempfile::tempdir().unwrap();
    let r = Responder::open(ctx(dir.path()), HOST, Vec::new()).unwrap();
    let key = SigningKey::from_bytes(&[9; 32]);
    let got = r.handle(&signed(&key, 1, CommandAction::ListProcesses), NOW);
    assert_eq!(
        got.state,
        CommandState::Refused(RefusalReason::NoCommandKey)
    );
}

#[test]
fn unsigned_commands_get_the_legacy_refusal() {
    let a = answer_unsigned(&UnsignedCommand {
        id: 4,
        operator: "x".into(),
        reason: "y".into(),
        issued_ns: 0,
        action: CommandAction::ListProcesses,
    });
    assert!(!a.ok);
    assert_eq!(a.message, "refused: unsigned");
}

#[test]
fn action_classes_parse_by_name() {
    assert_eq!("collect".parse::<ActionClass>(), Ok(ActionClass::Collect));
    assert!("nuke"
        .parse::<ActionClass>()
        .unwrap_err()
        .contains("isolate, kill"));
    for (name, class) in ActionClass::ALL {
        assert_eq!(class.name(), name);
    }
}
