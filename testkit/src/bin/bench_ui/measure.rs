//! Timing: each page rendered by the real console page functions over the
//! appliance's `StoreReader` and `RocksConsoleStore` at the bench's fixed
//! "now", then the `ReadApi` calls behind them, each alone.

use crate::fill::fixed_clock;
use crate::{Opts, HOUR, NOW};
use anyhow::{bail, Result};
use std::sync::Arc;
use std::time::Instant;
use vigil_appliance::console::RocksConsoleStore;
use vigil_appliance::{Core, StoreReader};
use vigil_proto::event::EventKind;
use vigil_proto::query::{AlertFilter, EventFilter, ReadApi};
use vigil_proto::HostId;
use vigil_testkit::fleet::{Fleet, FleetHost};
use vigil_testkit::render_bench::bench_admin;
use vigil_web_ui::auth::Authed;
use vigil_web_ui::pages::{alerts, graph, host, hosts, overview};
use vigil_web_ui::ConsoleState;

/// Samples of one page or read call, in ms.
pub(crate) struct PageTimes {
    pub(crate) name: &'static str,
    pub(crate) samples: Vec<f64>,
}

impl PageTimes {
    /// The `q`-quantile (nearest rank).
    pub(crate) fn p(&self, q: f64) -> f64 {
        let mut s = self.samples.clone();
        s.sort_by(f64::total_cmp);
        if s.is_empty() {
            return 0.0;
        }
        s[(((s.len() as f64) * q).ceil() as usize).clamp(1, s.len()) - 1]
    }
}

fn time_page(
    name: &'static str,
    iterations: usize,
    mut render: impl FnMut(usize) -> Result<usize>,
) -> Result<PageTimes> {
    // Two untimed renders first (first-touch of code and caches).
    render(usize::MAX - 1)?;
    render(usize::MAX - 2)?;
    let mut samples = Vec::with_capacity(iterations);
    for i in 0..iterations {
        let t = Instant::now();
        std::hint::black_box(render(i)?);
        samples.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(PageTimes { name, samples })
}

/// A named ReadApi call to time alone.
type ReadCall<'a> = (&'static str, Box<dyn Fn() -> Result<usize> + 'a>);

/// Which hosts and alerts the page renders visit.
struct Targets {
    /// The 50 hosts with the most events, busiest first.
    busiest: Vec<HostId>,
    all: Vec<HostId>,
    alert_ids: Vec<u64>,
}

impl Targets {
    /// Host page: every third render a very busy or busy host, else any host.
    fn host(&self, i: usize) -> HostId {
        match i % 3 {
            0 => self.busiest[(i / 3) % self.busiest.len()],
            _ => self.all[i.wrapping_mul(7919) % self.all.len()],
        }
    }
}

/// Time every page, then the read calls. Returns the timings and how many
/// alerts the store holds.
pub(crate) fn measure(o: &Opts, fleet: &Fleet) -> Result<(Vec<PageTimes>, usize)> {
    let (core, _) = Core::open(&o.store, fixed_clock())?;
    let core = Arc::new(core);
    let console: Arc<RocksConsoleStore> = core.console.clone();
    let reader = Arc::new(StoreReader::new(core.clone()));
    let state = ConsoleState::new(reader.clone(), console.clone()).with_clock(Arc::new(|| NOW));
    let mut by_events: Vec<&FleetHost> = fleet.hosts.iter().collect();
    by_events.sort_by_key(|h| std::cmp::Reverse(h.events));
    let alert_ids: Vec<u64> = core
        .db
        .alerts(&AlertFilter {
            limit: usize::MAX,
            ..AlertFilter::default()
        })?
        .iter()
        .map(|a| a.id)
        .collect();
    if alert_ids.is_empty() {
        bail!("the store has no alerts");
    }
    let targets = Targets {
        busiest: by_events.iter().take(50).map(|h| h.id).collect(),
        all: fleet.hosts.iter().map(|h| h.id).collect(),
        alert_ids,
    };
    let mut out = render_pages(&state, &bench_admin(), &targets, o.iterations)?;
    for (name, call) in read_calls(reader.as_ref(), targets.busiest[0]) {
        out.push(time_page(name, 20, |_| call())?);
    }
    Ok((out, targets.alert_ids.len()))
}

/// Overview, host list (pages, sorts, a search), host page (busy and any
/// hosts, several windows), fleet graph (a day, a week) and alert page,
/// `it` renders each.
fn render_pages(
    state: &ConsoleState,
    auth: &Authed,
    t: &Targets,
    it: usize,
) -> Result<Vec<PageTimes>> {
    let err = |e: vigil_web_ui::error::UiError| anyhow::anyhow!("render failed: {e}");
    let n_alerts = t.alert_ids.len();
    Ok(vec![
        time_page("overview", it, |_| {
            Ok(overview::page(state, auth).map_err(err)?.0.len())
        })?,
        time_page("hosts", it, |i| {
            let q = hosts::HostsQuery {
                page: i % 200,
                sort: ["name", "seen", "alerts", "state", "cpu"][i % 5].into(),
                dir: if i % 2 == 0 { "" } else { "desc" }.into(),
                q: if i % 7 == 3 {
                    "prod".into()
                } else {
                    String::new()
                },
                ..Default::default()
            };
            Ok(hosts::page(state, auth, &q).map_err(err)?.0.len())
        })?,
        time_page("host", it, |i| {
            let q = host::HostQuery {
                hours: [None, None, Some(1), Some(168)][i % 4],
            };
            Ok(host::page(state, auth, t.host(i), &q).map_err(err)?.0.len())
        })?,
        time_page("graph", it, |i| {
            let q = graph::GraphQuery {
                hours: Some([24, 168][i % 2]),
                ..Default::default()
            };
            Ok(graph::page(state, auth, &q).map_err(err)?.0.len())
        })?,
        time_page("alert", it, |i| {
            let id = t.alert_ids[i.wrapping_mul(37) % n_alerts];
            Ok(
                alerts::detail_page(state, auth, id, &alerts::AlertQuery::default())
                    .map_err(err)?
                    .0
                    .len(),
            )
        })?,
    ])
}

/// Where the time goes: the ReadApi calls behind the pages.
fn read_calls(reader: &StoreReader, busiest: HostId) -> Vec<ReadCall<'_>> {
    let ev = move |since: u64, kinds: Vec<EventKind>| EventFilter {
        host: Some(busiest),
        since_ns: Some(NOW - since),
        kinds,
        limit: host::EVENT_LIMIT,
        ..EventFilter::default()
    };
    vec![
        ("read.hosts()", Box::new(|| Ok(reader.hosts()?.len()))),
        (
            "read.stats()",
            Box::new(|| Ok(reader.stats()?.counters.len())),
        ),
        (
            "read.host(busiest)",
            Box::new(move || Ok(reader.host(busiest)?.addrs.len())),
        ),
        (
            "read.events(busiest, 24 h, 5000)",
            Box::new(move || Ok(reader.events(&ev(24 * HOUR, vec![]))?.events.len())),
        ),
        (
            "read.events(busiest, 48 h, connects)",
            Box::new(move || {
                Ok(reader
                    .events(&ev(48 * HOUR, vec![EventKind::NetConnect]))?
                    .events
                    .len())
            }),
        ),
        (
            "read.alerts(open, 5000)",
            Box::new(|| {
                Ok(reader
                    .alerts(&AlertFilter {
                        open_only: true,
                        limit: 5000,
                        ..AlertFilter::default()
                    })?
                    .len())
            }),
        ),
        ("read.edges(all)", Box::new(|| Ok(reader.edges(0)?.len()))),
    ]
}
