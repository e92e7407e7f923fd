//! Which group a host's routine traffic is folded into.
//!
//! The group is the host's *role* read from its name, because fleets name
//! hosts by role (`ws-hr-0042`, `web-prod-017`, `dc01.corp.example`) while
//! their subnets are often flat DHCP ranges that say nothing about what a
//! host does: the leading dash-separated words of the short name up to the
//! first word ending in a digit (at most two words; a first word's trailing
//! digits are dropped, so `dc01` is `dc`, while `k8s` stays a word). A name that yields nothing (all
//! digits, empty) falls back to the host's first address's subnet (/24 for
//! IPv4, /64 for IPv6), and a host with neither is in `other`.

use std::net::IpAddr;

/// A group's key and the host-list search (`/hosts?q=`) that finds its members.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupKey {
    /// Shown on the node: `ws-hr`, `10.16.3.0/24`, `other`.
    pub label: String,
    /// Substring of member names or addresses for `/hosts?q=`.
    pub search: String,
}

/// The group a host with this name and addresses belongs to.
pub fn group_of(hostname: &str, addrs: &[IpAddr]) -> GroupKey {
    if let Some(role) = role(hostname) {
        return GroupKey {
            search: role.clone(),
            label: role,
        };
    }
    match addrs.first() {
        Some(IpAddr::V4(a)) => {
            let o = a.octets();
            GroupKey {
                label: format!("{}.{}.{}.0/24", o[0], o[1], o[2]),
                search: format!("{}.{}.{}.", o[0], o[1], o[2]),
            }
        }
        Some(IpAddr::V6(a)) => {
            let s = a.segments();
            let prefix = format!("{:x}:{:x}:{:x}:{:x}:", s[0], s[1], s[2], s[3]);
            GroupKey {
                label: format!("{prefix}:/64"),
                search: prefix,
            }
        }
        None => other(),
    }
}

/// The catch-all group (hosts beyond the group cap, hosts with no name or address).
pub fn other() -> GroupKey {
    GroupKey {
        label: "other".into(),
        search: String::new(),
    }
}

fn role(hostname: &str) -> Option<String> {
    let short = hostname
        .split('.')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    let mut words = Vec::new();
    for (i, w) in short.split(['-', '_']).enumerate() {
        if words.len() == 2 {
            break;
        }
        if w.ends_with(|c: char| c.is_ascii_digit()) {
            let stem = w.trim_end_matches(|c: char| c.is_ascii_digit());
            if i == 0 && !stem.is_empty() {
                words.push(stem.to_string());
            }
            break;
        }
        if w.is_empty() {
            break;
        }
        words.push(w.to_string());
    }
    let role = words.join("-");
    (!role.is_empty()).then_some(role)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_from_names() {
        let cases = [
            ("ws-hr-0042", "ws-hr"),
            ("web-prod-017", "web-prod"),
            ("dc01.corp.example", "dc"),
            ("lt-bob12", "lt"),
            ("jump-06", "jump"),
            ("hr-laptop-05", "hr-laptop"),
            ("build-runner-ci-7", "build-runner"),
            ("DB-03", "db"),
            ("k8s-node-prod-148", "k8s-node"),
        ];
        for (name, want) in cases {
            assert_eq!(group_of(name, &[]).label, want, "{name}");
        }
    }

    #[test]
    fn subnets_when_the_name_says_nothing() {
        let v4: IpAddr = "10.16.3.77".parse().unwrap();
        let g = group_of("12345", &[v4]);
        assert_eq!(
            (g.label.as_str(), g.search.as_str()),
            ("10.16.3.0/24", "10.16.3.")
        );
        let v6: IpAddr = "fd00:1:2:3::9".parse().unwrap();
        assert_eq!(group_of("", &[v6]).label, "fd00:1:2:3::/64");
        assert_eq!(group_of("0042", &[]), other());
    }
}
