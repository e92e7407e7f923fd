//! Reading events back: by host and time range, kind, user, peer, port and
//! process, with cursor pagination; one event by (host, seq).

use super::keys::{event_key, host_end, host_prefix, parse_event_key, seq_key, EVENT_KEY_LEN};
use super::{decode, Db};
use crate::store::{Cf, Direction, StoreError, Visit};
use vigil_proto::query::{EventCursor, EventFilter, EventPage};
use vigil_proto::{Event, EventHeader, EventKind, HostId, Payload};

/// Most events one query returns, whatever the filter asks.
pub const MAX_PAGE: usize = 10_000;
/// Page size when the filter sets no limit.
pub const DEFAULT_PAGE: usize = 1_000;

/// Encode a payload as stored in the `events` column family.
pub fn payload_value(payload: &Payload) -> Vec<u8> {
    super::encode(payload)
}

/// Encode a seq-index value (the event's timestamp).
pub fn seq_index_value(ts_ns: u64) -> Vec<u8> {
    super::encode(&ts_ns)
}

/// Whether an event passes a filter: the one rule, `EventFilter::matches`
/// in `proto` (host and time are checked there too; the store's keys
/// already bound them, so checking again costs nothing and changes nothing).
pub fn matches(ev: &Event, f: &EventFilter) -> bool {
    f.matches(ev)
}

/// The kind of a stored payload from its first byte, without decoding it:
/// postcard writes the enum variant index first as a varint, and `Payload`'s
/// variants are declared in [`EventKind::ALL`] order (a test checks both).
/// `None` if the byte is not a known one-byte variant index.
pub fn stored_kind(value: &[u8]) -> Option<EventKind> {
    let first = *value.first()?;
    if first >= 0x80 {
        return None;
    }
    EventKind::ALL.get(usize::from(first)).copied()
}

/// Whether a stored value can match the filter's kinds (cheap pre-check
/// before decoding; an unknown first byte is left to the full check).
fn kind_may_match(value: &[u8], f: &EventFilter) -> bool {
    f.kinds.is_empty() || stored_kind(value).is_none_or(|k| f.kinds.contains(&k))
}

fn decode_event(k: &[u8], v: &[u8]) -> Result<Event, StoreError> {
    let (host, ts_ns, seq) = parse_event_key(k).ok_or_else(|| StoreError::Corrupt {
        cf: Cf::Events.name(),
        detail: format!("key of {} bytes", k.len()),
    })?;
    Ok(Event {
        header: EventHeader { host, seq, ts_ns },
        payload: decode(Cf::Events, v)?,
    })
}

impl Db {
    /// The first host at or after `from` that has any event.
    fn next_host_with_events(&self, from: HostId) -> Result<Option<HostId>, StoreError> {
        let mut found = None;
        self.store().scan(
            Cf::Events,
            &host_prefix(from),
            None,
            Direction::Forward,
            &mut |k, _| {
                found = parse_event_key(k).map(|(h, _, _)| h);
                Visit::Stop
            },
        )?;
        Ok(found)
    }

    /// Events matching `filter`: host by host (ascending id), oldest first
    /// within a host, at most `limit` (capped at [`MAX_PAGE`]).
    pub fn events(&self, filter: &EventFilter) -> Result<EventPage, StoreError> {
        let limit = match filter.limit {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        };
        if let (true, Some(host)) = (filter.newest_first, filter.host) {
            return self.newest_events(host, filter, limit);
        }
        let since = filter.since_ns.unwrap_or(0);
        let until = filter.until_ns.unwrap_or(u64::MAX);
        let mut page = EventPage::default();
        let mut host = match (filter.after, filter.host) {
            (Some(c), _) => Some(c.host),
            (None, Some(h)) => Some(h),
            (None, None) => self.next_host_with_events(HostId(0))?,
        };
        while let Some(h) = host {
            if filter.host.is_some_and(|want| want != h) {
                break;
            }
            let from = match filter.after {
                Some(c) if c.host == h => match c.seq.checked_add(1) {
                    Some(s) => event_key(h, c.ts_ns.max(since), s).to_vec(),
                    None => event_key(h, c.ts_ns.saturating_add(1).max(since), 0).to_vec(),
                },
                _ => event_key(h, since, 0).to_vec(),
            };
            let to = if until == u64::MAX {
                host_end(h)
            } else {
                event_key(h, until, 0).to_vec()
            };
            let mut err = None;
            let mut full = false;
            self.store().scan(
                Cf::Events,
                &from,
                Some(&to),
                Direction::Forward,
                &mut |k, v| {
                    if page.events.len() == limit {
                        full = true;
                        return Visit::Stop;
                    }
                    // Kind filters (the host page's flows, hunts by kind) skip
                    // other events without decoding them.
                    if !kind_may_match(v, filter) {
                        return Visit::Continue;
                    }
                    match decode_event(k, v) {
                        Ok(ev) => {
                            if matches(&ev, filter) {
                                page.events.push(ev);
                            }
                        }
                        Err(e) => {
                            err = Some(e);
                            return Visit::Stop;
                        }
                    }
                    Visit::Continue
                },
            )?;
            if let Some(e) = err {
                return Err(e);
            }
            if full {
                let last = page.events.last().map(|e| e.header);
                page.next = last.map(|h| EventCursor {
                    host: h.host,
                    ts_ns: h.ts_ns,
                    seq: h.seq,
                });
                return Ok(page);
            }
            host = match (filter.host, h.0.checked_add(1)) {
                (None, Some(next)) => self.next_host_with_events(HostId(next))?,
                _ => None,
            };
        }
        Ok(page)
    }

    /// The newest `limit` matching events of one host, newest first (a
    /// reverse scan of its time range; no cursor).
    fn newest_events(
        &self,
        host: HostId,
        filter: &EventFilter,
        limit: usize,
    ) -> Result<EventPage, StoreError> {
        let from = event_key(host, filter.since_ns.unwrap_or(0), 0).to_vec();
        let to = match filter.until_ns {
            Some(u) => event_key(host, u, 0).to_vec(),
            None => host_end(host),
        };
        let mut page = EventPage::default();
        let mut err = None;
        self.store().scan(
            Cf::Events,
            &from,
            Some(&to),
            Direction::Reverse,
            &mut |k, v| {
                if !kind_may_match(v, filter) {
                    return Visit::Continue;
                }
                match decode_event(k, v) {
                    Ok(ev) if matches(&ev, filter) => page.events.push(ev),
                    Ok(_) => {}
                    Err(e) => {
                        err = Some(e);
                        return Visit::Stop;
                    }
                }
                if page.events.len() == limit {
                    Visit::Stop
                } else {
                    Visit::Continue
                }
            },
        )?;
        match err {
            Some(e) => Err(e),
            None => Ok(page),
        }
    }

    /// One event by (host, seq), if stored and not yet aged out.
    pub fn event(&self, host: HostId, seq: u64) -> Result<Option<Event>, StoreError> {
        let Some(ts) = self.store().get(Cf::SeqIndex, &seq_key(host, seq))? else {
            return Ok(None);
        };
        let ts: u64 = decode(Cf::SeqIndex, &ts)?;
        let key = event_key(host, ts, seq);
        match self.store().get(Cf::Events, &key)? {
            Some(v) => decode_event(&key, &v).map(Some),
            None => Ok(None),
        }
    }

    /// A host's events with seq greater than `after_seq`, in seq order, at
    /// most `limit` of them. The detection pipeline tails the store with this,
    /// so the store itself is its queue and nothing acked is skipped.
    pub fn events_after_seq(
        &self,
        host: HostId,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let mut positions = Vec::new();
        let from = seq_key(host, after_seq.saturating_add(1));
        self.store().scan(
            Cf::SeqIndex,
            &from,
            Some(&host_end(host)),
            Direction::Forward,
            &mut |k, v| {
                if k.len() == 16 {
                    let seq = u64::from_be_bytes(k[8..16].try_into().expect("16-byte key"));
                    positions.push((seq, v.to_vec()));
                }
                if positions.len() >= limit {
                    Visit::Stop
                } else {
                    Visit::Continue
                }
            },
        )?;
        let mut out = Vec::with_capacity(positions.len());
        for (seq, ts) in positions {
            let ts: u64 = decode(Cf::SeqIndex, &ts)?;
            let key = event_key(host, ts, seq);
            // Aged out by retention between the two reads: nothing to detect on.
            if let Some(v) = self.store().get(Cf::Events, &key)? {
                out.push(decode_event(&key, &v)?);
            }
        }
        Ok(out)
    }

    /// Count a host's stored events (a full scan of its range; for tests and tools).
    pub fn count_events(&self, host: HostId) -> Result<u64, StoreError> {
        let mut n = 0u64;
        self.store().scan(
            Cf::Events,
            &host_prefix(host),
            Some(&host_end(host)),
            Direction::Forward,
            &mut |k, _| {
                if k.len() == EVENT_KEY_LEN {
                    n += 1;
                }
                Visit::Continue
            },
        )?;
        Ok(n)
    }

    /// Every (seq) stored for a host, in key order (for tests and audits).
    pub fn stored_seqs(&self, host: HostId) -> Result<Vec<u64>, StoreError> {
        let mut out = Vec::new();
        self.store().scan(
            Cf::Events,
            &host_prefix(host),
            Some(&host_end(host)),
            Direction::Forward,
            &mut |k, _| {
                if let Some((_, _, seq)) = parse_event_key(k) {
                    out.push(seq);
                }
                Visit::Continue
            },
        )?;
        Ok(out)
    }

    /// Oldest event timestamp of a host.
    pub fn oldest_event_ts(&self, host: HostId) -> Result<Option<u64>, StoreError> {
        let mut ts = None;
        self.store().scan(
            Cf::Events,
            &host_prefix(host),
            Some(&host_end(host)),
            Direction::Forward,
            &mut |k, _| {
                ts = parse_event_key(k).map(|(_, t, _)| t);
                Visit::Stop
            },
        )?;
        Ok(ts)
    }

    /// Delete a host's events with `ts < cutoff_ns` (range delete) and
    /// exactly their seq-index entries (timestamps need not follow seqs).
    pub fn delete_events_before(&self, host: HostId, cutoff_ns: u64) -> Result<(), StoreError> {
        const CHUNK: usize = 50_000;
        let from = event_key(host, 0, 0);
        let to = event_key(host, cutoff_ns, 0);
        let mut doomed = Vec::new();
        self.store().scan(
            Cf::Events,
            &from,
            Some(&to),
            Direction::Forward,
            &mut |k, _| {
                if let Some((_, _, seq)) = parse_event_key(k) {
                    doomed.push(seq);
                }
                Visit::Continue
            },
        )?;
        for chunk in doomed.chunks(CHUNK) {
            let mut wb = crate::store::WriteBatch::default();
            for seq in chunk {
                wb.delete(Cf::SeqIndex, seq_key(host, *seq).to_vec());
            }
            self.store().write(wb, false)?;
        }
        self.store().delete_range(Cf::Events, &from, &to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_proto::event::*;

    /// One payload of every kind, in `EventKind::ALL` order.
    fn one_of_each() -> Vec<Payload> {
        let flow = NetFlow {
            transport: Transport::Tcp,
            local: "10.0.0.1:40000".parse().unwrap(),
            remote: "10.0.0.2:22".parse().unwrap(),
            pid: None,
            exe: None,
            repeat: 1,
        };
        let login = LoginInfo {
            user: "alice".into(),
            method: AuthMethod::PublicKey,
            service: LoginService::Ssh,
            src_addr: None,
            src_port: None,
            src_host: None,
            from_user: None,
            pid: None,
        };
        vec![
            Payload::ProcessStart(ProcessStart::default()),
            Payload::ProcessExit(ProcessExit::default()),
            Payload::NetConnect(flow.clone()),
            Payload::NetAccept(flow),
            Payload::Login(login.clone()),
            Payload::Logout(login.clone()),
            Payload::AuthFailure(login),
            Payload::FileChange(FileChange {
                path: "/etc/passwd".into(),
                op: FileOp::Modified,
                size: None,
                mode: None,
                uid: None,
                sha256: None,
                pid: None,
            }),
            Payload::SensorHealth(SensorHealth {
                cpu_pct: 0.0,
                rss_bytes: 0,
                events_per_s: 0.0,
                spool_bytes: 0,
                dropped_total: 0,
                aggregated_total: 0,
                collectors: vec![],
            }),
            Payload::Loss(LossRecord {
                from_seq: 1,
                to_seq: 2,
                count: 2,
                reason: LossReason::SpoolFull,
            }),
            Payload::ResponseResult(ResponseResult {
                command_id: 1,
                ok: true,
                message: String::new(),
            }),
            Payload::Tamper(vigil_proto::TamperRecord {
                source: "auth_log".into(),
                reason: "sshd_line_not_from_sshd".into(),
                detail: String::new(),
            }),
        ]
    }

    #[test]
    fn stored_kind_reads_the_kind_from_the_first_byte() {
        let all = one_of_each();
        assert_eq!(all.len(), EventKind::ALL.len(), "add the new kind here");
        for p in &all {
            assert_eq!(stored_kind(&payload_value(p)), Some(p.kind()), "{p:?}");
        }
        assert_eq!(stored_kind(&[]), None);
        assert_eq!(stored_kind(&[0x80, 0x01]), None);
    }

    fn memory_db() -> Db {
        Db::new(std::sync::Arc::new(crate::store::memory::MemoryStore::new()))
    }

    /// Events 1..=n of `host` at ts 1000 + seq, cycling through every kind.
    fn write_cycle(db: &Db, host: HostId, n: u64) {
        let all = one_of_each();
        let mut wb = crate::store::WriteBatch::default();
        for seq in 1..=n {
            let p = &all[(seq as usize) % all.len()];
            wb.put(
                Cf::Events,
                event_key(host, 1_000 + seq, seq).to_vec(),
                payload_value(p),
            );
            wb.put(
                Cf::SeqIndex,
                seq_key(host, seq).to_vec(),
                seq_index_value(1_000 + seq),
            );
        }
        db.store().write(wb, false).unwrap();
    }

    #[test]
    fn kind_filters_skip_other_events_and_page_correctly() {
        let db = memory_db();
        let host = HostId(3);
        let all = one_of_each();
        write_cycle(&db, host, 110);
        let filter = |after| EventFilter {
            host: Some(host),
            kinds: vec![EventKind::NetConnect, EventKind::Loss],
            limit: 7,
            after,
            ..EventFilter::default()
        };
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = db.events(&filter(after)).unwrap();
            assert!(page.events.len() <= 7);
            seen.extend(page.events.iter().map(|e| (e.header.seq, e.kind())));
            match page.next {
                Some(c) => after = Some(c),
                None => break,
            }
        }
        let want: Vec<(u64, EventKind)> = (1..=110u64)
            .map(|seq| (seq, all[(seq as usize) % all.len()].kind()))
            .filter(|(_, k)| matches!(k, EventKind::NetConnect | EventKind::Loss))
            .collect();
        assert_eq!(seen, want);
    }

    /// A host page asks for the newest events of a window: the last ones,
    /// newest first, filtered by kind and bounded by the window.
    #[test]
    fn newest_first_returns_the_latest_matching_events() {
        let db = memory_db();
        let host = HostId(4);
        let all = one_of_each();
        write_cycle(&db, host, 60);
        // Another host's events must never leak into the range.
        write_cycle(&db, HostId(5), 60);
        let kinds = vec![EventKind::NetConnect];
        let page = db
            .events(&EventFilter {
                host: Some(host),
                kinds: kinds.clone(),
                until_ns: Some(1_055),
                limit: 3,
                newest_first: true,
                ..EventFilter::default()
            })
            .unwrap();
        let want: Vec<u64> = (1..55u64)
            .rev()
            .filter(|seq| all[(*seq as usize) % all.len()].kind() == EventKind::NetConnect)
            .take(3)
            .collect();
        let got: Vec<u64> = page.events.iter().map(|e| e.header.seq).collect();
        assert_eq!(got, want);
        assert!(page.events.iter().all(|e| e.header.host == host));
        assert!(page.next.is_none());
    }
}
