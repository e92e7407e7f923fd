//! The detection pipeline's latest per-host model status, published for
//! the console and the CLI. Its own module so that the console, the core
//! and the pipeline share it without importing each other.

use std::collections::BTreeMap;
use std::sync::Mutex;
use vigil_models::ModelStatus;
use vigil_proto::HostId;

/// The pipeline's latest per-host model status, shared with the console
/// and the CLI (refreshed every few seconds, not every round: computing it
/// hashes every model).
#[derive(Debug, Default)]
pub struct ModelBoard {
    inner: Mutex<BoardInner>,
}

#[derive(Debug, Default)]
struct BoardInner {
    hosts: BTreeMap<HostId, ModelStatus>,
    learning_period_ns: u64,
    /// The tuning in force, once the pipeline has published:
    /// (learning period ns, alert budget per day).
    tuning: Option<(u64, f64)>,
}

impl ModelBoard {
    /// Replace the board with the pipeline's current view.
    pub fn publish(&self, status: Vec<ModelStatus>, learning_period_ns: u64, budget: f64) {
        let mut g = self.inner.lock().expect("model board lock");
        g.hosts = status.into_iter().map(|m| (m.host, m)).collect();
        g.learning_period_ns = learning_period_ns;
        g.tuning = Some((learning_period_ns, budget));
    }

    /// The detector's learning period (ns) and alert budget in force, once
    /// the pipeline runs (what the console's settings page shows until an
    /// admin saves its own).
    pub fn tuning(&self) -> Option<(u64, f64)> {
        self.inner.lock().expect("model board lock").tuning
    }

    /// Every host's status, host order.
    pub fn all(&self) -> Vec<ModelStatus> {
        let g = self.inner.lock().expect("model board lock");
        g.hosts.values().cloned().collect()
    }

    /// One host's status, with the learning period in force.
    pub fn host(&self, host: HostId) -> Option<(ModelStatus, u64)> {
        let g = self.inner.lock().expect("model board lock");
        g.hosts
            .get(&host)
            .map(|m| (m.clone(), g.learning_period_ns))
    }
}
