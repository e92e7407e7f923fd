//! Replay sources: the data sets as [`ReplayItem`]s (hosts before their
//! first event, then events in time order). Labels are never part of them.

use std::collections::{HashMap, VecDeque};
use std::io::BufRead;
use std::path::{Path, PathBuf};

use vigil_proto::{Event, HostId};

use super::{ReplayHost, ReplayItem};

/// Any source behind one type (the iterator is made on the replay's reader
/// thread, so it need not be `Send` itself).
pub struct BoxedSource(Box<dyn FnOnce() -> Box<dyn Iterator<Item = ReplayItem>> + Send>);

impl BoxedSource {
    /// Box `source`.
    pub fn new<S>(source: S) -> Self
    where
        S: IntoIterator<Item = ReplayItem> + Send + 'static,
        S::IntoIter: 'static,
    {
        BoxedSource(Box::new(move || Box::new(source.into_iter())))
    }
}

impl IntoIterator for BoxedSource {
    type Item = ReplayItem;
    type IntoIter = Box<dyn Iterator<Item = ReplayItem>>;

    fn into_iter(self) -> Self::IntoIter {
        (self.0)()
    }
}

/// The synthetic enterprise as a replay source: every host that will ever
/// exist declared first (name and address; hosts that join later are
/// reached by admins and scanners before their first day), then the events
/// day by day. Labels are not part of the stream (see [`vigil_datasets::synth::Generator::campaigns`]).
pub fn synth_source(
    cfg: vigil_datasets::synth::SynthConfig,
) -> impl Iterator<Item = ReplayItem> + Send {
    let mut gen = vigil_datasets::synth::Generator::new(cfg);
    let days = gen.config().days;
    let mut day = 0u32;
    let mut queue: VecDeque<ReplayItem> = VecDeque::new();
    std::iter::from_fn(move || loop {
        if let Some(item) = queue.pop_front() {
            return Some(item);
        }
        if day >= days {
            return None;
        }
        if day == 0 {
            queue.extend(gen.hosts().iter().map(|h| {
                ReplayItem::Host(ReplayHost {
                    id: h.id,
                    name: h.name.clone(),
                    addrs: vec![h.addr],
                })
            }));
        }
        queue.extend(
            gen.day(day)
                .into_iter()
                .map(|le| ReplayItem::Event(le.event)),
        );
        day += 1;
    })
}

/// The generator's enterprise behind `vigil replay synth --seed SEED --days
/// DAYS --hosts WORKSTATIONS`: campaigns from day `DAYS / 2` on, servers,
/// admins and new hires scaled with the workstations. Tests regenerate the
/// replayed history's labels from it, so it is defined once here.
pub fn synth_config(
    seed: u64,
    days: u32,
    workstations: usize,
) -> vigil_datasets::synth::SynthConfig {
    vigil_datasets::synth::SynthConfig {
        seed,
        days,
        attack_from_day: days / 2,
        workstations,
        windows_servers: (workstations / 6).clamp(4, 250),
        linux_servers: (workstations / 10).clamp(4, 250),
        admins: (workstations / 15).clamp(1, 100),
        new_hires: (workstations / 15).min(100),
        ..vigil_datasets::synth::SynthConfig::default()
    }
}

/// LANL 2015 (`auth.txt[.gz]`, optional `proc.txt[.gz]` and
/// `flows.txt[.gz]`, merged in time order) as a replay source. Every
/// computer named in a line is declared before that line's event, with its
/// LANL name and the stable synthetic address its flows use
/// ([`vigil_datasets::lanl::host_addr`]); `redteam.txt` is not read. Timestamps are
/// LANL's seconds since its own epoch, so replay it with [`TimeMode::Shift`](super::TimeMode::Shift).
/// The files are opened on the replay's reader thread; a read error there
/// ends the stream (logged).
#[derive(Debug, Clone)]
pub struct LanlSource {
    dir: PathBuf,
}

impl LanlSource {
    /// Checks that `DIR/auth.txt[.gz]` exists.
    pub fn new(dir: &Path) -> Result<Self, vigil_datasets::lanl::LanlError> {
        if vigil_datasets::lanl::find(dir, "auth.txt").is_none() {
            return Err(vigil_datasets::lanl::LanlError::Io {
                path: dir.join("auth.txt"),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "auth.txt or auth.txt.gz required",
                ),
            });
        }
        Ok(LanlSource {
            dir: dir.to_path_buf(),
        })
    }
}

impl IntoIterator for LanlSource {
    type Item = ReplayItem;
    type IntoIter = LanlIter;

    fn into_iter(self) -> LanlIter {
        use vigil_datasets::lanl::{find, open_lines, SideKind};
        let open = |name: &str| -> Option<Box<dyn BufRead>> {
            let p = find(&self.dir, name)?;
            open_lines(&p)
                .map_err(|e| tracing::warn!(error = %e, "replay: cannot open LANL {name}"))
                .ok()
        };
        let mut sides = Vec::new();
        for (name, kind) in [("proc.txt", SideKind::Proc), ("flows.txt", SideKind::Flows)] {
            if let Some(lines) = open(name) {
                sides.push(Side {
                    kind,
                    lines,
                    peeked: None,
                    buf: String::new(),
                    done: false,
                });
            }
        }
        LanlIter {
            auth: open("auth.txt"),
            sides,
            seq: vigil_datasets::lanl::Sequencer::default(),
            known: std::collections::HashSet::new(),
            queue: VecDeque::new(),
            line: String::new(),
        }
    }
}

/// One LANL side file, one parsed line ahead: (time, computer names, event).
struct Side {
    kind: vigil_datasets::lanl::SideKind,
    lines: Box<dyn BufRead>,
    peeked: Option<(u64, Vec<String>, Event)>,
    buf: String,
    done: bool,
}

impl Side {
    fn peek(&mut self, seq: &mut vigil_datasets::lanl::Sequencer) -> Option<u64> {
        while self.peeked.is_none() && !self.done {
            self.buf.clear();
            match self.lines.read_line(&mut self.buf) {
                Ok(0) | Err(_) => self.done = true,
                Ok(_) => {
                    if let Some((t, ev)) =
                        vigil_datasets::lanl::side_event(self.kind, &self.buf, seq)
                    {
                        let f: Vec<&str> = self.buf.trim_end().split(',').collect();
                        let names = match self.kind {
                            vigil_datasets::lanl::SideKind::Proc => vec![f[2].to_string()],
                            vigil_datasets::lanl::SideKind::Flows => {
                                vec![f[2].to_string(), f[4].to_string()]
                            }
                        };
                        self.peeked = Some((t, names, ev));
                    }
                }
            }
        }
        self.peeked.as_ref().map(|p| p.0)
    }
}

/// Iterator of [`LanlSource`].
pub struct LanlIter {
    auth: Option<Box<dyn BufRead>>,
    sides: Vec<Side>,
    seq: vigil_datasets::lanl::Sequencer,
    known: std::collections::HashSet<HostId>,
    queue: VecDeque<ReplayItem>,
    line: String,
}

impl LanlIter {
    fn declare(&mut self, name: &str) {
        if name.is_empty() || name == "?" {
            return;
        }
        let id = vigil_datasets::lanl::host_id(name);
        if self.known.insert(id) {
            self.queue.push_back(ReplayItem::Host(ReplayHost {
                id,
                name: name.to_string(),
                addrs: vec![vigil_datasets::lanl::host_addr(name)],
            }));
        }
    }

    fn push_side(&mut self, k: usize) {
        if let Some((_, names, ev)) = self.sides[k].peeked.take() {
            for n in &names {
                self.declare(n);
            }
            self.queue.push_back(ReplayItem::Event(ev));
        }
    }
}

impl Iterator for LanlIter {
    type Item = ReplayItem;

    fn next(&mut self) -> Option<ReplayItem> {
        loop {
            if let Some(item) = self.queue.pop_front() {
                return Some(item);
            }
            self.line.clear();
            let read = match self.auth.as_mut() {
                Some(a) => a.read_line(&mut self.line),
                None => Ok(0),
            };
            match read {
                Ok(0) | Err(_) => {
                    if let Err(e) = read {
                        tracing::warn!(error = %e, "replay: LANL auth read failed; stopping");
                        self.auth = None;
                        return None;
                    }
                    self.auth = None;
                    // Auth done: the side files' rest, in time order.
                    let mut best: Option<(u64, usize)> = None;
                    for k in 0..self.sides.len() {
                        if let Some(t) = self.sides[k].peek(&mut self.seq) {
                            if best.is_none_or(|(bt, _)| t < bt) {
                                best = Some((t, k));
                            }
                        }
                    }
                    let (_, k) = best?;
                    self.push_side(k);
                }
                Ok(_) => {
                    let Some(r) = vigil_datasets::lanl::AuthRecord::parse(&self.line) else {
                        continue;
                    };
                    for k in 0..self.sides.len() {
                        while self.sides[k]
                            .peek(&mut self.seq)
                            .is_some_and(|t| t <= r.time)
                        {
                            self.push_side(k);
                        }
                    }
                    self.declare(&r.src);
                    self.declare(&r.dst);
                    let ev = vigil_datasets::lanl::auth_event(&r, &mut self.seq);
                    self.queue.push_back(ReplayItem::Event(ev));
                }
            }
        }
    }
}

/// OTRF Security-Datasets captures (`.zip` of JSON lines) or `.evtx` files
/// as a replay source, read now. Each capture's hosts are declared first
/// (full name when a record gives one, addresses the records prove, as
/// `vigil eval otrf` registers them), then its events. Captures are laid
/// end to end: each one after the first is shifted to start a minute after
/// the previous one ended, so pacing never waits for the years between
/// recordings.
pub fn otrf_source(
    files: &[PathBuf],
) -> Result<Vec<ReplayItem>, vigil_datasets::otrf::CaptureError> {
    use vigil_datasets::otrf::host_id;
    use vigil_datasets::windows::{own_addrs, payload};
    let mut out = Vec::new();
    let mut declared: HashMap<HostId, usize> = HashMap::new();
    let mut end: Option<u64> = None;
    for f in files {
        let is_evtx = f
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("evtx"));
        let records = if is_evtx {
            vigil_datasets::evtx_file::read_evtx(f)?
        } else {
            vigil_datasets::otrf::read_capture(f)?
        };
        let Some(first) = records.first().map(|r| r.ts_ns) else {
            continue;
        };
        let shift: i128 = match end {
            Some(e) => i128::from(e) + 60_000_000_000 - i128::from(first),
            None => 0,
        };
        for r in &records {
            let id = host_id(&r.hostname);
            let pos = *declared.entry(id).or_insert_with(|| {
                out.push(ReplayItem::Host(ReplayHost {
                    id,
                    name: r.hostname.clone(),
                    addrs: Vec::new(),
                }));
                out.len() - 1
            });
            if let ReplayItem::Host(h) = &mut out[pos] {
                if r.hostname.contains('.') && !h.name.contains('.') {
                    h.name = r.hostname.clone();
                }
                for a in own_addrs(&r.record) {
                    if !h.addrs.contains(&a) {
                        h.addrs.push(a);
                    }
                }
            }
        }
        for r in &records {
            let Some(p) = payload(&r.record) else {
                continue;
            };
            let ts = (i128::from(r.ts_ns) + shift).clamp(0, i128::from(u64::MAX)) as u64;
            end = Some(end.map_or(ts, |e| e.max(ts)));
            out.push(ReplayItem::Event(Event {
                header: vigil_proto::EventHeader {
                    host: host_id(&r.hostname),
                    seq: 0,
                    ts_ns: ts,
                },
                payload: p,
            }));
        }
    }
    Ok(out)
}
