//! Which host is behind an address or a workstation name.

use crate::graph::key;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use vigil_proto::HostId;

/// What the detector knows about one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInfo {
    /// Registered name (or the address/name it was first seen by).
    pub hostname: String,
    /// Addresses it answers on.
    pub addrs: Vec<IpAddr>,
    /// True for enrolled hosts; false for peers only ever seen from outside.
    pub managed: bool,
}

/// Host registry: id → info, and the reverse lookups.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Registry {
    hosts: BTreeMap<HostId, HostInfo>,
    by_addr: HashMap<IpAddr, HostId>,
    by_name: HashMap<String, HostId>,
}

/// Bit set in ids the detector makes up for unmanaged peers.
pub const UNMANAGED_BIT: u64 = 1 << 63;

fn short_name(name: &str) -> String {
    let lower = name.trim().trim_start_matches('\\').to_ascii_lowercase();
    lower.split('.').next().unwrap_or_default().to_string()
}

/// Normalises `::ffff:a.b.c.d` to the IPv4 address.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Addresses that never name another host (loopback, unspecified).
pub fn is_local_only(ip: IpAddr) -> bool {
    let ip = canonical_ip(ip);
    ip.is_loopback() || ip.is_unspecified()
}

/// Private/internal address ranges (RFC 1918, ULA, link-local).
pub fn is_internal(ip: IpAddr) -> bool {
    match canonical_ip(ip) {
        IpAddr::V4(v4) => v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => {
            let s = v6.segments()[0];
            (s & 0xfe00) == 0xfc00 || (s & 0xffc0) == 0xfe80
        }
    }
}

impl Registry {
    /// Registers (or updates) an enrolled host.
    pub fn register(&mut self, id: HostId, hostname: &str, addrs: &[IpAddr]) {
        let addrs: Vec<IpAddr> = addrs.iter().map(|a| canonical_ip(*a)).collect();
        for a in &addrs {
            self.by_addr.insert(*a, id);
        }
        if !hostname.is_empty() {
            self.by_name
                .insert(hostname.trim().to_ascii_lowercase(), id);
            self.by_name.insert(short_name(hostname), id);
        }
        let info = self.hosts.entry(id).or_insert_with(|| HostInfo {
            hostname: hostname.to_string(),
            addrs: Vec::new(),
            managed: true,
        });
        info.managed = true;
        if !hostname.is_empty() {
            info.hostname = hostname.to_string();
        }
        for a in addrs {
            if !info.addrs.contains(&a) {
                info.addrs.push(a);
            }
        }
    }

    /// Host on this address, if known.
    pub fn by_addr(&self, ip: IpAddr) -> Option<HostId> {
        self.by_addr.get(&canonical_ip(ip)).copied()
    }

    /// Host by full or short name (case-insensitive), if known.
    pub fn by_name(&self, name: &str) -> Option<HostId> {
        let lower = name.trim().to_ascii_lowercase();
        self.by_name
            .get(&lower)
            .or_else(|| self.by_name.get(&short_name(name)))
            .copied()
    }

    /// Id for a peer known only by a label (address or name); registered as
    /// unmanaged on first use.
    pub fn unmanaged(&mut self, label: &str, addr: Option<IpAddr>) -> HostId {
        let id = HostId(key(&format!("peer:{}", label.to_ascii_lowercase())) | UNMANAGED_BIT);
        self.hosts.entry(id).or_insert_with(|| HostInfo {
            hostname: label.to_string(),
            addrs: addr.into_iter().collect(),
            managed: false,
        });
        if let Some(a) = addr {
            self.by_addr.entry(canonical_ip(a)).or_insert(id);
        } else {
            self.by_name.entry(short_name(label)).or_insert(id);
        }
        id
    }

    /// Info of a host.
    pub fn get(&self, id: HostId) -> Option<&HostInfo> {
        self.hosts.get(&id)
    }

    /// Display name of a host (its id when unknown).
    pub fn name(&self, id: HostId) -> String {
        self.hosts
            .get(&id)
            .map(|h| h.hostname.clone())
            .unwrap_or_else(|| id.to_string())
    }

    /// Whether `ip` is one of `host`'s own addresses.
    pub fn is_own_addr(&self, host: HostId, ip: IpAddr) -> bool {
        self.by_addr(ip) == Some(host)
    }

    /// All managed hosts.
    pub fn managed(&self) -> impl Iterator<Item = HostId> + '_ {
        self.hosts
            .iter()
            .filter(|(_, h)| h.managed)
            .map(|(id, _)| *id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_by_addr_and_short_or_full_name() {
        let mut r = Registry::default();
        let ip: IpAddr = "172.18.39.5".parse().unwrap();
        r.register(HostId(5), "WORKSTATION5.theshire.local", &[ip]);
        assert_eq!(
            r.by_addr("::ffff:172.18.39.5".parse().unwrap()),
            Some(HostId(5))
        );
        assert_eq!(r.by_name("workstation5"), Some(HostId(5)));
        assert_eq!(r.by_name("WORKSTATION5.THESHIRE.LOCAL"), Some(HostId(5)));
        assert_eq!(r.by_name("\\\\WORKSTATION5"), Some(HostId(5)));
        let u = r.unmanaged("10.0.0.9", Some("10.0.0.9".parse().unwrap()));
        assert!(u.0 & UNMANAGED_BIT != 0);
        assert_eq!(r.by_addr("10.0.0.9".parse().unwrap()), Some(u));
        assert!(is_internal("fe80::1".parse().unwrap()));
        assert!(!is_internal("8.8.8.8".parse().unwrap()));
    }
}
