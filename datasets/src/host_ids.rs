//! Stable ids and addresses of the hosts a data set names (LANL computers,
//! Windows host names), derived from the names alone so the adapters, the
//! evaluation and the replay agree on them, run after run.
//!
//! Data-set hosts play enrolled sensors, so their ids are managed ids:
//! [`HostId::UNMANAGED_BIT`] clear. The appliance derives the ids of
//! unmanaged peers with that bit set, so the two never collide.

use vigil_proto::HostId;

/// FNV-1a (64 bit) over the name's ASCII-lowercased bytes.
///
/// Fixed forever: replay state dirs are keyed by the ids derived from it,
/// so a different hash would make every data-set host a new one (the
/// `ids_are_stable` test pins values).
pub fn name_key(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b.to_ascii_lowercase());
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The managed id of host `name` in the data-set namespace `ns`
/// (`lanl`, `win`), so equal names in two data sets stay two hosts.
pub fn host_id(ns: &str, name: &str) -> HostId {
    HostId(name_key(&format!("{ns}:{name}")) & !HostId::UNMANAGED_BIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable() {
        // Values of the ids before they moved here: replay state dirs and
        // score files written by earlier versions keep naming the same hosts.
        assert_eq!(name_key(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(name_key("C1003"), name_key("c1003"));
        assert_eq!(host_id("lanl", "C1003"), HostId(0x6316_73c2_ffcf_0b57));
        assert_eq!(host_id("win", "wecserver"), HostId(0x1240_b311_b91c_070d));
        assert!(!host_id("lanl", "C1003").is_unmanaged());
    }
}
