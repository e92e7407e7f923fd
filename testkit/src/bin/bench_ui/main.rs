//! `bench-ui`: p95 server render time of the console's overview, host list,
//! host page and alert page over the appliance's real on-disk RocksDB store
//! (by default 10,000 hosts and 50 million events).
//!
//! The store is built once under `/var/cache/vigil/bench-ui-store` (flag
//! `--store DIR` or env `VIGIL_BENCH_UI_STORE`) and reused while its
//! `bench-ui-manifest.json` matches the requested size and seed. Hosts,
//! events, the fleet graph and alerts come from the seeded fleet generator
//! ([`vigil_testkit::fleet`]), so two fills are identical.
//!
//! The fill goes through the real write path (see [`fill`]); pages are
//! rendered by the real console page functions with the appliance's
//! `StoreReader` and `RocksConsoleStore`, at a fixed "now" ([`measure`]).
//! Then the console is served over the store and looked at in headless
//! Chromium ([`look`]: highlighted alert edges, groups, labels apart,
//! filters, click-through, tiles; screenshots 26 and 27); a failed check
//! fails the bench, a machine without Chromium skips it and says so.
//!
//! Flags: `--hosts N` (10000), `--events N` (50000000), `--alerts N` (300),
//! `--iterations N` (100), `--seed N`, `--store DIR`, `--rebuild`,
//! `--no-compact`. Last line: one JSON object ([`report`]).

mod fill;
mod look;
mod measure;
mod report;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use vigil_testkit::fleet::{Fleet, FleetConfig};

/// The fixed "now" of the whole bench (2026-05-28T20:26:40Z).
const NOW: u64 = 1_780_000_000_000_000_000;
const SEC: u64 = 1_000_000_000;
const HOUR: u64 = 3600 * SEC;
const DAY: u64 = 24 * HOUR;
/// Events span the week before [`NOW`].
const SPAN: u64 = 7 * DAY;
/// Bump when the generator or the stored records change, so old stores are
/// rebuilt (2: alerts carry ports and processes).
const GENERATOR_VERSION: u32 = 2;
const MANIFEST: &str = "bench-ui-manifest.json";
const DEFAULT_STORE: &str = "/var/cache/vigil/bench-ui-store";

/// The command line, validated.
struct Opts {
    hosts: usize,
    events: u64,
    alerts: usize,
    iterations: usize,
    seed: u64,
    store: PathBuf,
    rebuild: bool,
    compact: bool,
}

impl Opts {
    /// The fleet these options ask for.
    fn fleet(&self) -> FleetConfig {
        FleetConfig {
            hosts: self.hosts,
            events: self.events,
            seed: self.seed,
            now_ns: NOW,
            span_ns: SPAN,
        }
    }
}

fn parse() -> Result<Opts> {
    let mut o = Opts {
        hosts: 10_000,
        events: 50_000_000,
        alerts: 300,
        iterations: 100,
        seed: 0x005e_ed0f_0b5e,
        store: std::env::var_os("VIGIL_BENCH_UI_STORE")
            .map_or_else(|| PathBuf::from(DEFAULT_STORE), PathBuf::from),
        rebuild: false,
        compact: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--rebuild" => {
                o.rebuild = true;
                continue;
            }
            "--no-compact" => {
                o.compact = false;
                continue;
            }
            _ => {}
        }
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        let num = || -> Result<u64> {
            value
                .replace('_', "")
                .parse()
                .with_context(|| format!("{flag}: not a number: {value}"))
        };
        match flag.as_str() {
            "--hosts" => o.hosts = num()? as usize,
            "--events" => o.events = num()?,
            "--alerts" => o.alerts = num()? as usize,
            "--iterations" => o.iterations = num()? as usize,
            "--seed" => o.seed = num()?,
            "--store" => o.store = PathBuf::from(&value),
            _ => bail!(
                "unknown flag {flag} (use --hosts, --events, --alerts, --iterations, --seed, \
                 --store DIR, --rebuild, --no-compact)"
            ),
        }
    }
    if o.hosts < 10 || o.events < o.hosts as u64 * 2 || o.alerts < 10 {
        bail!("need at least 10 hosts, 2 events per host and 10 alerts");
    }
    Ok(o)
}

/// What a finished fill wrote; a store is reused only when this matches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Manifest {
    generator_version: u32,
    hosts: usize,
    events: u64,
    alerts: usize,
    seed: u64,
    now_ns: u64,
    fill_secs: f64,
    fill_events_per_s: f64,
    compact_secs: f64,
    bytes_after_fill: u64,
    bytes_on_disk: u64,
}

impl Manifest {
    fn matches(&self, o: &Opts) -> bool {
        self.generator_version == GENERATOR_VERSION
            && self.hosts == o.hosts
            && self.events == o.events
            && self.alerts == o.alerts
            && self.seed == o.seed
            && self.now_ns == NOW
    }
}

fn main() -> Result<()> {
    let o = parse()?;
    let fleet = Fleet::plan(&o.fleet());
    let existing: Option<Manifest> = std::fs::read(o.store.join(MANIFEST))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let manifest = match existing {
        Some(m) if m.matches(&o) && !o.rebuild => {
            eprintln!(
                "reusing {} ({} hosts, {} events; built in {:.0} s at {:.0} events/s)",
                o.store.display(),
                m.hosts,
                m.events,
                m.fill_secs,
                m.fill_events_per_s
            );
            m
        }
        _ => fill::fill(&o, &fleet)?,
    };
    let (pages, n_alerts) = measure::measure(&o, &fleet)?;
    let look = look::look(&o)?;
    report::print(&o, &manifest, &pages, n_alerts, &look);
    Ok(())
}
