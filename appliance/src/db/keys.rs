//! Big-endian key layouts, so byte order equals (host, time, seq) order.

use vigil_proto::HostId;

/// Length of an `events` key: host, ts, seq.
pub const EVENT_KEY_LEN: usize = 24;

/// `events` key for (host, ts, seq).
pub fn event_key(host: HostId, ts_ns: u64, seq: u64) -> [u8; EVENT_KEY_LEN] {
    let mut k = [0u8; EVENT_KEY_LEN];
    k[..8].copy_from_slice(&host.0.to_be_bytes());
    k[8..16].copy_from_slice(&ts_ns.to_be_bytes());
    k[16..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// Decode an `events` key; `None` if it has the wrong length.
pub fn parse_event_key(k: &[u8]) -> Option<(HostId, u64, u64)> {
    if k.len() != EVENT_KEY_LEN {
        return None;
    }
    Some((HostId(be64(&k[..8])), be64(&k[8..16]), be64(&k[16..])))
}

/// `seq_index` key for (host, seq).
pub fn seq_key(host: HostId, seq: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&host.0.to_be_bytes());
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// Prefix of everything a host owns in a host-keyed column family.
pub fn host_prefix(host: HostId) -> [u8; 8] {
    host.0.to_be_bytes()
}

/// The first key after every key that starts with `host`'s prefix.
pub fn host_end(host: HostId) -> Vec<u8> {
    match host.0.checked_add(1) {
        Some(next) => next.to_be_bytes().to_vec(),
        None => vec![0xff; 9],
    }
}

/// Tags of the records kept per host in the `hosts` column family.
pub mod host_tag {
    /// Registry record (hostname, OS, addresses, state).
    pub const RECORD: u8 = 0;
    /// Stored seq ranges (dedupe and `stored_up_to`).
    pub const SEQS: u8 = 1;
    /// Ingest counters (events, duplicates, losses).
    pub const COUNTS: u8 = 2;
    /// Health history, followed by a big-endian timestamp.
    pub const HEALTH: u8 = 3;
    /// Identity claims of the host's sensor that another host owns.
    pub const CONFLICTS: u8 = 4;
}

/// `hosts` key for one of a host's records.
pub fn host_key(host: HostId, tag: u8) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[..8].copy_from_slice(&host.0.to_be_bytes());
    k[8] = tag;
    k
}

/// `hosts` key of a health sample.
pub fn health_key(host: HostId, ts_ns: u64) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[..9].copy_from_slice(&host_key(host, host_tag::HEALTH));
    k[9..].copy_from_slice(&ts_ns.to_be_bytes());
    k
}

/// The first key after every key that starts with `prefix` (`None`: no bound).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last != 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Read a big-endian u64 from exactly 8 bytes.
pub fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_keys_sort_by_host_then_time_then_seq() {
        let a = event_key(HostId(1), 5, 9);
        let b = event_key(HostId(1), 6, 1);
        let c = event_key(HostId(2), 0, 0);
        assert!(a < b && b < c);
        assert_eq!(parse_event_key(&b), Some((HostId(1), 6, 1)));
        assert_eq!(parse_event_key(&b[..5]), None);
    }

    #[test]
    fn host_end_bounds_the_prefix() {
        let k = host_key(HostId(7), host_tag::HEALTH);
        assert!(k[..] >= host_prefix(HostId(7))[..] && k.to_vec() < host_end(HostId(7)));
        assert!(host_end(HostId(u64::MAX)) > health_key(HostId(u64::MAX), u64::MAX).to_vec());
    }

    #[test]
    fn prefix_end_bounds_the_prefix() {
        assert_eq!(prefix_end(b"user/"), Some(b"user0".to_vec()));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
        assert!(b"user/zzz".as_slice() < prefix_end(b"user/").unwrap().as_slice());
    }
}
