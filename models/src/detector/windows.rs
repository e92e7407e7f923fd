//! Per-host feature windows (5 minutes and 1 hour): closing a window turns
//! it into a feature vector, keeps it for training and, on an active host,
//! scores it against the host's window model.

use super::{Detector, HostPhase};
use crate::alert::{severity_for, Alert, AlertKind};
use crate::features::{FeatureVector, WindowAccum, WindowLen, FEATURE_NAMES, FEATURE_WORDS};
use crate::model::WindowModel;
use vigil_proto::query::FeatureDeviation;
use vigil_proto::HostId;

/// Most 5-minute window vectors kept per host for training (one day).
const RING_5M: usize = 288;
/// Most 1-hour window vectors kept per host for training (one week).
const RING_1H: usize = 168;
/// Indices of the features that speak of lateral movement (new peers,
/// admin-port peers, new logon triples, failed logons, remote-spawned
/// processes, new parent→child pairs, rare binaries).
const LATERAL_FEATURES: [usize; 7] = [1, 2, 4, 5, 6, 7, 8];

impl Detector {
    /// Closes every window of `host` that ended at or before `now_ns`.
    pub(super) fn roll_windows(&mut self, host: HostId, now_ns: u64) -> Vec<Alert> {
        let mut alerts = Vec::new();
        for len in [WindowLen::FiveMin, WindowLen::Hour] {
            let Some(st) = self.hosts.get_mut(&host) else {
                break;
            };
            let slot = match len {
                WindowLen::FiveMin => &mut st.w5,
                WindowLen::Hour => &mut st.w1h,
            };
            let start = now_ns - now_ns % len.ns();
            let closed = match slot {
                Some(w) if w.start_ns + len.ns() <= now_ns => slot.replace(WindowAccum::new(start)),
                Some(_) => None,
                None => {
                    *slot = Some(WindowAccum::new(start));
                    None
                }
            };
            if let Some(w) = closed {
                if let Some(a) = self.close_window(host, len, w) {
                    alerts.push(a);
                }
            }
        }
        alerts
    }

    /// Keeps a closed window for training and, on an active host, alerts
    /// when it is far from the model and a lateral feature moved.
    fn close_window(&mut self, host: HostId, len: WindowLen, w: WindowAccum) -> Option<Alert> {
        let st = self.hosts.get_mut(&host)?;
        let dev = if len == WindowLen::FiveMin {
            st.how.deviation_then_learn(w.start_ns, w.events)
        } else {
            0.0
        };
        let v = w.vector(dev);
        let ring = match len {
            WindowLen::FiveMin => &mut st.ring5,
            WindowLen::Hour => &mut st.ring1h,
        };
        let cap = if len == WindowLen::FiveMin {
            RING_5M
        } else {
            RING_1H
        };
        if ring.len() >= cap {
            ring.pop_front();
        }
        ring.push_back((w.start_ns, v));
        if st.phase != HostPhase::Active {
            return None;
        }
        let model = st.model.as_ref()?;
        let wm = match len {
            WindowLen::FiveMin => model.w5.as_ref(),
            WindowLen::Hour => model.w1h.as_ref(),
        }?;
        let d = wm.distance(&v);
        // More activity alone is not lateral movement: one of the
        // lateral-movement features must have moved too.
        let lateral = wm
            .deviations(&v)
            .iter()
            .any(|(i, _, _, z)| LATERAL_FEATURES.contains(i) && *z >= 2.0);
        if d < wm.threshold || !lateral {
            return None;
        }
        let name = self.registry.name(host);
        let deviations = window_deviations(wm, &v, len, &name);
        let tag = model.version_tag();
        let thr = f64::from(wm.threshold);
        let id = self.alloc_id();
        let summary = format!(
            "{name}'s {} window at {} was {:.1} away from its baseline (threshold {:.1}): {}",
            len.label(),
            w.start_ns / 1_000_000_000,
            d,
            thr,
            deviations
                .iter()
                .take(3)
                .map(|d| d.feature.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        Some(Alert {
            id,
            created_ns: w.start_ns + len.ns(),
            kind: AlertKind::Window,
            severity: severity_for(f64::from(d), thr, 1),
            score: f64::from(d),
            title: format!("Unusual {} of activity on {name}", len.label()),
            host,
            path: vec![host],
            path_names: vec![name],
            users: Vec::new(),
            ports: Vec::new(),
            processes: Vec::new(),
            techniques: Vec::new(),
            summary,
            deviations,
            evidence: w.evidence,
            incident_id: None,
            model_version: Some(tag),
        })
    }

    /// The closed windows kept for training of one host, oldest first:
    /// (window start ns, feature vector).
    pub fn recent_windows(&self, host: HostId, len: WindowLen) -> Vec<(u64, FeatureVector)> {
        self.hosts
            .get(&host)
            .map(|s| match len {
                WindowLen::FiveMin => s.ring5.iter().copied().collect(),
                WindowLen::Hour => s.ring1h.iter().copied().collect(),
            })
            .unwrap_or_default()
    }
}

/// Each feature's deviation from the window model, with a sentence for the
/// analyst.
fn window_deviations(
    wm: &WindowModel,
    v: &FeatureVector,
    len: WindowLen,
    name: &str,
) -> Vec<FeatureDeviation> {
    wm.deviations(v)
        .into_iter()
        .map(|(i, obs, base, z)| FeatureDeviation {
            feature: FEATURE_NAMES[i].to_string(),
            observed: f64::from(obs),
            baseline: f64::from(base),
            score: f64::from(z),
            sentence: format!(
                "{}: {} in this {} window, usually {:.1} on {name} ({:.1} spreads above its norm)",
                FEATURE_WORDS[i],
                obs,
                len.label(),
                base,
                z
            ),
        })
        .collect()
}
