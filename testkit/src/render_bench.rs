//! Server-side render timing of the console's main pages over any
//! [`ReadApi`]: the in-memory fleet here, the real store in `bench-ui`.

use crate::console_store::MemoryConsoleStore;
use std::sync::Arc;
use std::time::Instant;
use vigil_proto::query::{AlertFilter, ReadApi};
use vigil_web_ui::auth::Authed;
use vigil_web_ui::error::UiError;
use vigil_web_ui::pages::{alerts, graph, host, hosts, overview};
use vigil_web_ui::store::{Role, Session, User};
use vigil_web_ui::ConsoleState;

/// The signed-in admin every bench render uses (no cookie, no expiry).
pub fn bench_admin() -> Authed {
    Authed {
        user: User {
            name: "bench".into(),
            role: Role::Admin,
            password_hash: String::new(),
            created_ns: 0,
            must_change_password: false,
            disabled: false,
        },
        session: Session {
            id: "bench".into(),
            user: "bench".into(),
            csrf: "x".into(),
            created_ns: 0,
            expires_ns: u64::MAX,
        },
    }
}

/// p95 render times in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BenchReport {
    /// Renders of each page.
    pub iterations: usize,
    /// Overview page.
    pub p95_ms_overview: f64,
    /// Host list.
    pub p95_ms_hosts: f64,
    /// One host's page.
    pub p95_ms_host: f64,
    /// One alert's page.
    pub p95_ms_alert: f64,
    /// The fleet graph over the last week.
    pub p95_ms_graph: f64,
}

impl BenchReport {
    /// The one-line JSON the bench prints last.
    pub fn json(&self) -> String {
        format!(
            "{{\"bench\":\"ui\",\"p95_ms_overview\":{:.3},\"p95_ms_hosts\":{:.3},\"p95_ms_host\":{:.3},\"p95_ms_alert\":{:.3},\"p95_ms_graph\":{:.3}}}",
            self.p95_ms_overview, self.p95_ms_hosts, self.p95_ms_host, self.p95_ms_alert, self.p95_ms_graph
        )
    }

    /// A small table for humans.
    pub fn table(&self) -> String {
        format!(
            "page       p95 ms  ({} renders each)\noverview {:>8.2}\nhosts    {:>8.2}\nhost     {:>8.2}\nalert    {:>8.2}\ngraph    {:>8.2}",
            self.iterations, self.p95_ms_overview, self.p95_ms_hosts, self.p95_ms_host, self.p95_ms_alert, self.p95_ms_graph
        )
    }
}

/// 95th percentile of samples (ms).
pub fn p95(samples: &mut [f64]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_by(f64::total_cmp);
    let idx = ((samples.len() as f64) * 0.95).ceil() as usize;
    samples[idx.clamp(1, samples.len()) - 1]
}

fn time<F: FnMut(usize) -> Result<usize, UiError>>(
    iterations: usize,
    mut f: F,
) -> Result<f64, UiError> {
    let mut samples = Vec::with_capacity(iterations);
    for i in 0..iterations {
        let t = Instant::now();
        let len = f(i)?;
        samples.push(t.elapsed().as_secs_f64() * 1000.0);
        std::hint::black_box(len);
    }
    Ok(p95(&mut samples))
}

/// Render overview, host list, host page and alert page `iterations` times
/// each (hosts and alerts taken round-robin) at time `now_ns`.
pub fn bench_pages(
    read: Arc<dyn ReadApi>,
    iterations: usize,
    now_ns: u64,
) -> Result<BenchReport, UiError> {
    let store = Arc::new(MemoryConsoleStore::new());
    let state = ConsoleState::new(read.clone(), store).with_clock(Arc::new(move || now_ns));
    let auth = bench_admin();
    let host_ids: Vec<_> = read.hosts()?.iter().map(|h| h.id).collect();
    let alert_ids: Vec<u64> = read
        .alerts(&AlertFilter {
            limit: 1000,
            ..Default::default()
        })?
        .iter()
        .map(|a| a.id)
        .collect();
    if host_ids.is_empty() || alert_ids.is_empty() {
        return Err(UiError::BadRequest(
            "bench needs at least one host and one alert".into(),
        ));
    }
    let p_overview = time(iterations, |_| Ok(overview::page(&state, &auth)?.0.len()))?;
    let p_hosts = time(iterations, |i| {
        let q = hosts::HostsQuery {
            page: i % 10,
            sort: ["name", "seen", "alerts"][i % 3].into(),
            ..Default::default()
        };
        Ok(hosts::page(&state, &auth, &q)?.0.len())
    })?;
    let p_host = time(iterations, |i| {
        let id = host_ids[(i * 7919) % host_ids.len()];
        Ok(host::page(&state, &auth, id, &host::HostQuery::default())?
            .0
            .len())
    })?;
    let p_alert = time(iterations, |i| {
        let id = alert_ids[i % alert_ids.len()];
        Ok(
            alerts::detail_page(&state, &auth, id, &alerts::AlertQuery::default())?
                .0
                .len(),
        )
    })?;
    let p_graph = time(iterations, |i| {
        let q = graph::GraphQuery {
            hours: Some([24, 168][i % 2]),
            ..Default::default()
        };
        Ok(graph::page(&state, &auth, &q)?.0.len())
    })?;
    Ok(BenchReport {
        iterations,
        p95_ms_graph: p_graph,
        p95_ms_overview: p_overview,
        p95_ms_hosts: p_hosts,
        p95_ms_host: p_host,
        p95_ms_alert: p_alert,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p95_picks_the_right_sample() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(p95(&mut v), 95.0);
        assert_eq!(p95(&mut [3.0]), 3.0);
        assert_eq!(p95(&mut []), 0.0);
    }

    #[test]
    fn bench_runs_on_a_small_fleet_and_prints_json() {
        let now = 1_795_442_585_000_000_000;
        let api = Arc::new(crate::read_api::scaled_read_api(60, 40, now));
        let r = bench_pages(api, 3, now).unwrap();
        let j: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
        assert_eq!(j["bench"], "ui");
        assert!(j["p95_ms_alert"].as_f64().unwrap() > 0.0);
        assert!(j["p95_ms_graph"].as_f64().unwrap() > 0.0);
    }
}
