//! Self-measurement (CPU %, RSS from `/proc/self`), per-collector state, and
//! the budget rule: above the CPU budget, repeated identical connections are
//! folded into one [`NetFlow`] with a `repeat` count; exec, login and file
//! events are never dropped or folded.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use vigil_proto::{CollectorHealth, NetFlow, Payload, SensorHealth, Transport, Visibility};

/// One collector's live counters and visibility, shared with its thread.
#[derive(Debug)]
pub struct CollectorStats {
    /// Collector name (`process`, `network`, `auth`, `files`).
    pub name: &'static str,
    visibility: Mutex<Visibility>,
    /// Events emitted since start.
    pub events: AtomicU64,
    /// Things the collector knows it missed.
    pub missed: AtomicU64,
    /// What it runs on, when it has a choice (e.g. `ebpf`, `connector`).
    backend: Mutex<Option<String>>,
}

impl CollectorStats {
    /// New stats, starting as unavailable until the collector says otherwise.
    pub fn new(name: &'static str) -> Arc<CollectorStats> {
        Arc::new(CollectorStats {
            name,
            visibility: Mutex::new(Visibility::Unavailable("not started".into())),
            events: AtomicU64::new(0),
            missed: AtomicU64::new(0),
            backend: Mutex::new(None),
        })
    }

    /// Set the visibility (logged when it changes).
    pub fn set(&self, v: Visibility) {
        let mut cur = self.visibility.lock().expect("visibility lock");
        if *cur != v {
            match &v {
                Visibility::Working => tracing::info!(collector = self.name, "collector working"),
                other => {
                    tracing::warn!(collector = self.name, state = ?other, "collector visibility changed")
                }
            }
            *cur = v;
        }
    }

    /// Say what the collector runs on; health then names it
    /// `name (backend)`, e.g. `process (ebpf)`.
    pub fn set_backend(&self, backend: impl Into<String>) {
        let backend = backend.into();
        tracing::info!(collector = self.name, backend = %backend, "collector backend");
        *self.backend.lock().expect("backend lock") = Some(backend);
    }

    /// What it runs on, if it said.
    pub fn backend(&self) -> Option<String> {
        self.backend.lock().expect("backend lock").clone()
    }

    /// Name for health reports: with the backend when there is one.
    pub fn display_name(&self) -> String {
        match self.backend() {
            Some(b) => format!("{} ({b})", self.name),
            None => self.name.to_string(),
        }
    }

    /// Current visibility.
    pub fn visibility(&self) -> Visibility {
        self.visibility.lock().expect("visibility lock").clone()
    }
}

/// CPU time of this process (every thread), ns. Why not `/proc/self/stat`:
/// its clock ticks are 10 ms, so over the 1 s sampling window a sensor
/// using 0.6 % of a core reads as 0, 1 or 2 % from one second to the next
/// and a 1 % budget flips on and off with the rounding.
pub fn self_cpu_ns() -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec for the call to fill.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    (rc == 0).then(|| ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

/// CPU time of this process in clock ticks (utime + stime) from `/proc/self/stat`.
pub fn self_cpu_ticks() -> Option<u64> {
    proc_cpu_ticks(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// utime + stime from the text of a `/proc/<pid>/stat` file.
pub fn proc_cpu_ticks(stat: &str) -> Option<u64> {
    // Fields after the command (which may contain spaces) start after ") ".
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14, stime 15.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Resident set size of a process in bytes, from `/proc/<pid>/statm`.
pub fn rss_bytes(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/statm"),
        None => "/proc/self/statm".into(),
    };
    let text = std::fs::read_to_string(path).ok()?;
    let pages: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

/// Clock ticks per second.
pub fn clk_tck() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if v > 0 {
        v as u64
    } else {
        100
    }
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if v > 0 {
        v as u64
    } else {
        4096
    }
}

/// CPU percent of one core used between two tick readings `elapsed_ns` apart.
pub fn cpu_pct(prev_ticks: u64, now_ticks: u64, elapsed_ns: u64, tck: u64) -> f32 {
    if elapsed_ns == 0 || tck == 0 {
        return 0.0;
    }
    let cpu_ns = (now_ticks.saturating_sub(prev_ticks)) as f64 * 1e9 / tck as f64;
    (cpu_ns / elapsed_ns as f64 * 100.0) as f32
}

/// CPU percent of one core for `cpu_ns` of CPU time over `elapsed_ns`.
pub fn cpu_pct_of_ns(cpu_ns: u64, elapsed_ns: u64) -> f32 {
    if elapsed_ns == 0 {
        return 0.0;
    }
    (cpu_ns as f64 / elapsed_ns as f64 * 100.0) as f32
}

/// Shared sensor-wide health state.
#[derive(Debug)]
pub struct Health {
    /// All collectors.
    pub collectors: Vec<Arc<CollectorStats>>,
    /// Set while the sensor is above its CPU budget.
    pub over_budget: AtomicBool,
    /// Flows folded into aggregates.
    pub aggregated_total: AtomicU64,
    /// Events dropped before the spool (e.g. spool write failures).
    pub dropped_total: AtomicU64,
    /// CPU budget, percent of one core (f32 bits; the appliance may change it).
    pub budget_pct_bits: Arc<std::sync::atomic::AtomicU32>,
    last: Mutex<Sample>,
}

#[derive(Debug, Clone, Default)]
struct Sample {
    at_ns: u64,
    cpu_ns: u64,
    events: Vec<u64>,
    cpu_pct: f32,
    rates: Vec<f32>,
}

impl Health {
    /// Health for these collectors.
    pub fn new(collectors: Vec<Arc<CollectorStats>>, budget_pct: f32) -> Arc<Health> {
        Arc::new(Health {
            collectors,
            over_budget: AtomicBool::new(false),
            aggregated_total: AtomicU64::new(0),
            dropped_total: AtomicU64::new(0),
            budget_pct_bits: Arc::new(std::sync::atomic::AtomicU32::new(budget_pct.to_bits())),
            last: Mutex::new(Sample::default()),
        })
    }

    /// The CPU budget in force, percent of one core.
    pub fn budget_pct(&self) -> f32 {
        f32::from_bits(self.budget_pct_bits.load(Ordering::Relaxed))
    }

    /// Take a sample at `now_ns`: update CPU % and rates, and the budget flag.
    pub fn sample(&self, now_ns: u64) -> f32 {
        let budget_pct = self.budget_pct();
        let cpu_ns = self_cpu_ns().unwrap_or(0);
        let events: Vec<u64> = self
            .collectors
            .iter()
            .map(|c| c.events.load(Ordering::Relaxed))
            .collect();
        let mut last = self.last.lock().expect("health lock");
        if last.at_ns > 0 && now_ns > last.at_ns {
            let dt = now_ns - last.at_ns;
            last.cpu_pct = cpu_pct_of_ns(cpu_ns.saturating_sub(last.cpu_ns), dt);
            last.rates = events
                .iter()
                .zip(last.events.iter().chain(std::iter::repeat(&0)))
                .map(|(n, p)| (n.saturating_sub(*p)) as f32 * 1e9 / dt as f32)
                .collect();
        }
        last.at_ns = now_ns;
        last.cpu_ns = cpu_ns;
        last.events = events;
        let over = last.cpu_pct > budget_pct;
        if over != self.over_budget.swap(over, Ordering::Relaxed) {
            tracing::info!(
                cpu_pct = last.cpu_pct,
                budget_pct,
                over,
                "sensor CPU budget state changed"
            );
        }
        last.cpu_pct
    }

    /// The health record for a heartbeat.
    pub fn snapshot(&self, spool_bytes: u64, spool_dropped: u64) -> SensorHealth {
        let last = self.last.lock().expect("health lock").clone();
        let collectors: Vec<CollectorHealth> = self
            .collectors
            .iter()
            .enumerate()
            .map(|(i, c)| CollectorHealth {
                name: c.display_name(),
                visibility: c.visibility(),
                events_per_s: last.rates.get(i).copied().unwrap_or(0.0),
                missed_total: c.missed.load(Ordering::Relaxed),
            })
            .collect();
        SensorHealth {
            cpu_pct: last.cpu_pct,
            rss_bytes: rss_bytes(None).unwrap_or(0),
            events_per_s: last.rates.iter().sum(),
            spool_bytes,
            dropped_total: spool_dropped
                + self.dropped_total.load(Ordering::Relaxed)
                + collectors.iter().map(|c| c.missed_total).sum::<u64>(),
            aggregated_total: self.aggregated_total.load(Ordering::Relaxed),
            collectors,
        }
    }
}

/// Identity of a flow for aggregation: the local port of an outbound
/// connection is ephemeral, so it is left out.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct FlowKey {
    accept: bool,
    transport: Transport,
    local_ip: IpAddr,
    local_port: Option<u16>,
    remote: SocketAddr,
    pid: Option<u32>,
    exe: Option<String>,
}

/// Folds repeated identical flows while over budget. Pure: the caller
/// decides when to flush (time passed in).
#[derive(Debug, Default)]
pub struct Aggregator {
    pending: HashMap<FlowKey, (NetFlow, u64)>,
}

impl Aggregator {
    /// Offer a payload. Returns it back when it must go out now; keeps (and
    /// returns `None` for) a flow folded into a pending aggregate.
    pub fn offer(&mut self, payload: Payload, over_budget: bool) -> Option<Payload> {
        let (flow, accept) = match (&payload, over_budget) {
            (Payload::NetConnect(f), true) => (f, false),
            (Payload::NetAccept(f), true) => (f, true),
            _ => return Some(payload),
        };
        let key = FlowKey {
            accept,
            transport: flow.transport,
            local_ip: flow.local.ip(),
            local_port: accept.then_some(flow.local.port()),
            remote: if accept {
                SocketAddr::new(flow.remote.ip(), 0)
            } else {
                flow.remote
            },
            pid: flow.pid,
            exe: flow.exe.clone(),
        };
        match self.pending.get_mut(&key) {
            Some((agg, _)) => {
                agg.repeat = agg.repeat.saturating_add(flow.repeat.max(1));
                None
            }
            None => {
                let f = flow.clone();
                self.pending.insert(key, (f, 0));
                None
            }
        }
    }

    /// Emit all pending aggregates; returns them with how many flows were
    /// folded away (sum of `repeat - 1`).
    pub fn flush(&mut self) -> (Vec<Payload>, u64) {
        let mut folded = 0;
        let out = self
            .pending
            .drain()
            .map(|(k, (f, _))| {
                folded += u64::from(f.repeat.saturating_sub(1));
                if k.accept {
                    Payload::NetAccept(f)
                } else {
                    Payload::NetConnect(f)
                }
            })
            .collect();
        (out, folded)
    }

    /// Aggregates waiting to be flushed.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_proto::{LoginInfo, ProcessStart};

    #[test]
    fn parses_proc_stat_with_spaces_in_comm() {
        let stat =
            "1234 (my prog) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 100 1000 200";
        assert_eq!(proc_cpu_ticks(stat), Some(300));
    }

    #[test]
    fn cpu_pct_math() {
        // 50 ticks at 100 Hz = 0.5 s of CPU over 10 s = 5 %.
        assert!((cpu_pct(100, 150, 10_000_000_000, 100) - 5.0).abs() < 1e-4);
        assert_eq!(cpu_pct(1, 2, 0, 100), 0.0);
    }

    #[test]
    fn self_measurement_reads_proc() {
        assert!(self_cpu_ticks().is_some());
        // The process clock has ns resolution: a few ms of work shows.
        let t0 = self_cpu_ns().unwrap();
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_millis(5) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let spent = self_cpu_ns().unwrap() - t0;
        assert!(spent >= 1_000_000, "{spent} ns");
        assert!((cpu_pct_of_ns(5_000_000, 1_000_000_000) - 0.5).abs() < 1e-4);
        let rss = rss_bytes(None).unwrap();
        assert!(rss > 1 << 20 && rss < 1 << 34, "{rss}");
    }

    fn flow(local_port: u16, remote: &str, pid: u32) -> NetFlow {
        NetFlow {
            transport: Transport::Tcp,
            local: SocketAddr::new("10.0.0.1".parse().unwrap(), local_port),
            remote: remote.parse().unwrap(),
            pid: Some(pid),
            exe: Some("/usr/bin/curl".into()),
            repeat: 1,
        }
    }

    #[test]
    fn aggregates_repeated_connects_only_over_budget() {
        let mut agg = Aggregator::default();
        let p = Payload::NetConnect(flow(40000, "10.0.0.2:80", 5));
        assert_eq!(agg.offer(p.clone(), false), Some(p));
        for port in 40000..40100 {
            assert_eq!(
                agg.offer(Payload::NetConnect(flow(port, "10.0.0.2:80", 5)), true),
                None
            );
        }
        assert_eq!(
            agg.offer(Payload::NetConnect(flow(1, "10.0.0.3:80", 5)), true),
            None
        );
        // Exec and login events always pass through, even over budget.
        let exec = Payload::ProcessStart(ProcessStart::default());
        assert_eq!(agg.offer(exec.clone(), true), Some(exec));
        let login = Payload::Login(LoginInfo {
            user: "u".into(),
            method: vigil_proto::AuthMethod::Password,
            service: vigil_proto::LoginService::Ssh,
            src_addr: None,
            src_port: None,
            src_host: None,
            from_user: None,
            pid: None,
        });
        assert_eq!(agg.offer(login.clone(), true), Some(login));
        let (out, folded) = agg.flush();
        assert_eq!(out.len(), 2);
        assert_eq!(folded, 99);
        let repeats: u32 = out
            .iter()
            .map(|p| match p {
                Payload::NetConnect(f) => f.repeat,
                _ => 0,
            })
            .sum();
        assert_eq!(repeats, 101);
        assert!(agg.is_empty());
    }
}
