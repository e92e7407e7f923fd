//! `bench-ui`: p95 server render time of the main console pages against an
//! in-memory fleet. Flags: `--hosts N` (10000), `--events-per-host N` (100),
//! `--iterations N` (50). Last line: one JSON object.

use anyhow::{bail, Context};
use std::sync::Arc;
use vigil_web_ui::bench::bench_pages;
use vigil_web_ui::fixtures::scaled_read_api;

fn main() -> anyhow::Result<()> {
    let (mut hosts, mut per_host, mut iterations) = (10_000usize, 100usize, 50usize);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        let n: usize = value
            .parse()
            .with_context(|| format!("{flag}: not a number: {value}"))?;
        match flag.as_str() {
            "--hosts" => hosts = n,
            "--events-per-host" => per_host = n,
            "--iterations" => iterations = n,
            _ => bail!("unknown flag {flag} (use --hosts, --events-per-host, --iterations)"),
        }
    }
    let now = vigil_web_ui::system_now_ns();
    eprintln!("building {hosts} hosts × {per_host} events …");
    let api = Arc::new(scaled_read_api(hosts, per_host, now));
    let report = bench_pages(api, iterations, now)?;
    println!("{}", report.table());
    println!("{}", report.json());
    Ok(())
}
