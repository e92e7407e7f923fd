//! Who owns an address or a host name, when sensors claim them.
//!
//! A sensor's `Hello` claims a hostname and addresses. The detector maps
//! the source address an `sshd` logged, or a workstation name in a Windows
//! logon, back to a host through them, so a hostile sensor that claims a
//! victim's address or name could frame the victim or blind detection for
//! it. The rule: the first-enrolled (non-revoked) host to claim an address
//! or name owns it; a later conflicting claim is refused for detection and
//! recorded as a conflict for the console, never silently reassigned.
//! Pure: the registry and the pipeline pass the records in.

use crate::db::HostRecord;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::IpAddr;
use vigil_models::registry::{canonical_ip, is_local_only};
use vigil_proto::HostId;

/// What a conflicting claim was about. Stored: never reorder, only append.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Claim {
    /// An address another host owns.
    Addr(IpAddr),
    /// A host name (case-insensitive, or its first label) another host owns.
    Name(String),
}

/// A refused claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    /// The host that made the claim.
    pub host: HostId,
    pub claim: Claim,
    /// The host that owns it.
    pub held_by: HostId,
}

/// What the detector may use for one host.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Accepted {
    /// The host's name, or empty when another host owns it.
    pub hostname: String,
    /// The host's addresses that no earlier host owns.
    pub addrs: Vec<IpAddr>,
}

fn name_keys(name: &str) -> Vec<String> {
    let full = name.trim().trim_start_matches('\\').to_ascii_lowercase();
    let short = full.split('.').next().unwrap_or_default().to_owned();
    let mut keys = vec![full];
    if !short.is_empty() && short != keys[0] {
        keys.push(short);
    }
    keys.retain(|k| !k.is_empty());
    keys
}

/// Resolve every host's claims, first-enrolled first (ties by id), so the
/// result does not depend on the order records are read in. Revoked hosts
/// come last: they keep only what no live host claims, and their refused
/// claims are not conflicts worth showing.
pub fn resolve(records: &[HostRecord]) -> (HashMap<HostId, Accepted>, Vec<Conflict>) {
    let mut order: Vec<&HostRecord> = records.iter().collect();
    order.sort_by_key(|r| (r.revoked_ns.is_some(), r.enrolled_ns, r.id));
    let mut conflicts = Vec::new();
    let accepted = claim_in_order(&order, &mut conflicts);
    (accepted, conflicts)
}

fn claim_in_order(
    order: &[&HostRecord],
    conflicts: &mut Vec<Conflict>,
) -> HashMap<HostId, Accepted> {
    let mut addr_owner: HashMap<IpAddr, HostId> = HashMap::new();
    let mut name_owner: HashMap<String, HostId> = HashMap::new();
    let mut accepted = HashMap::new();
    for &rec in order {
        let me = HostId(rec.id);
        let live = rec.revoked_ns.is_none();
        let mut acc = Accepted::default();
        for a in rec.addrs.iter().map(|a| canonical_ip(*a)) {
            if is_local_only(a) {
                continue;
            }
            match addr_owner.get(&a) {
                Some(&owner) if owner != me => {
                    if live {
                        conflicts.push(Conflict {
                            host: me,
                            claim: Claim::Addr(a),
                            held_by: owner,
                        })
                    }
                }
                _ => {
                    addr_owner.insert(a, me);
                    if !acc.addrs.contains(&a) {
                        acc.addrs.push(a);
                    }
                }
            }
        }
        let keys = name_keys(&rec.hostname);
        match keys
            .iter()
            .find_map(|k| name_owner.get(k).filter(|o| **o != me))
        {
            Some(&owner) => {
                if live {
                    conflicts.push(Conflict {
                        host: me,
                        claim: Claim::Name(rec.hostname.clone()),
                        held_by: owner,
                    })
                }
            }
            None => {
                for k in keys {
                    name_owner.insert(k, me);
                }
                acc.hostname = rec.hostname.clone();
            }
        }
        accepted.insert(me, acc);
    }
    accepted
}

/// The conflicts of `host`'s claim of `hostname` and `addrs` against the
/// other `records` (the registry's check when a `Hello` arrives).
pub fn conflicts_of(
    records: &[HostRecord],
    host: HostId,
    hostname: &str,
    addrs: &[IpAddr],
) -> Vec<Conflict> {
    let mut all: Vec<HostRecord> = records.iter().filter(|r| r.id != host.0).cloned().collect();
    let mine = records.iter().find(|r| r.id == host.0);
    all.push(HostRecord {
        id: host.0,
        hostname: hostname.to_owned(),
        addrs: addrs.to_vec(),
        enrolled_ns: mine.map_or(u64::MAX, |r| r.enrolled_ns),
        revoked_ns: None,
        ..HostRecord::default()
    });
    let (_, conflicts) = resolve(&all);
    conflicts.into_iter().filter(|c| c.host == host).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: u64, enrolled: u64, name: &str, addrs: &[&str]) -> HostRecord {
        HostRecord {
            id,
            hostname: name.into(),
            addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
            enrolled_ns: enrolled,
            ..HostRecord::default()
        }
    }

    #[test]
    fn the_first_enrolled_host_keeps_its_address_and_name() {
        let victim = rec(1, 10, "db01.corp", &["10.0.0.5"]);
        let attacker = rec(2, 20, "DB01", &["10.0.0.5", "10.0.0.9"]);
        // Order of records does not matter.
        for records in [
            vec![victim.clone(), attacker.clone()],
            vec![attacker.clone(), victim.clone()],
        ] {
            let (acc, conflicts) = resolve(&records);
            assert_eq!(
                acc[&HostId(1)].addrs,
                vec!["10.0.0.5".parse::<IpAddr>().unwrap()]
            );
            assert_eq!(acc[&HostId(1)].hostname, "db01.corp");
            assert_eq!(
                acc[&HostId(2)].addrs,
                vec!["10.0.0.9".parse::<IpAddr>().unwrap()]
            );
            assert_eq!(acc[&HostId(2)].hostname, "", "the name is the victim's");
            assert_eq!(conflicts.len(), 2);
            assert!(conflicts
                .iter()
                .all(|c| c.host == HostId(2) && c.held_by == HostId(1)));
        }
    }

    #[test]
    fn revoked_hosts_release_their_claims_and_loopback_is_nobodys() {
        let mut old = rec(1, 10, "web", &["10.0.0.7", "127.0.0.1"]);
        old.revoked_ns = Some(15);
        let new = rec(2, 20, "web", &["10.0.0.7", "127.0.0.1"]);
        let (acc, conflicts) = resolve(&[old, new]);
        assert!(conflicts.is_empty());
        assert_eq!(
            acc[&HostId(2)].addrs,
            vec!["10.0.0.7".parse::<IpAddr>().unwrap()]
        );
        assert!(acc[&HostId(1)].addrs.is_empty(), "the revoked host yields");
    }

    #[test]
    fn a_hello_claiming_anothers_address_is_a_conflict() {
        let records = vec![
            rec(1, 10, "a", &["10.0.0.1"]),
            rec(2, 20, "b", &["10.0.0.2"]),
        ];
        let c = conflicts_of(&records, HostId(2), "b", &["10.0.0.1".parse().unwrap()]);
        assert_eq!(
            c,
            vec![Conflict {
                host: HostId(2),
                claim: Claim::Addr("10.0.0.1".parse().unwrap()),
                held_by: HostId(1)
            }]
        );
        assert!(conflicts_of(&records, HostId(2), "b", &["10.0.0.2".parse().unwrap()]).is_empty());
    }
}
