//! The console's view of forwarding: [`ReceiversApi`] over [`Forwarding`].
//! The console validated the form already; this checks what only the
//! appliance can (unique names across the file and the console, the CA
//! PEM parses as certificates) before it saves and reloads.

use super::{lock, settings, Forwarding};
use std::sync::Arc;
use vigil_forward::{ForwarderConfig, Timing, Transport};
use vigil_web_ui::pages::receivers::{NewReceiver, ReceiverStatus, ReceiversApi};

/// Most receivers the console may add (each has a sender thread).
pub const MAX_CONSOLE_RECEIVERS: usize = 16;

impl ReceiversApi for Forwarding {
    fn receivers(&self) -> Vec<ReceiverStatus> {
        self.snapshot()
            .into_iter()
            .map(|(rc, from_file, s)| ReceiverStatus {
                name: rc.name.clone(),
                address: rc.address.clone(),
                transport: match rc.transport {
                    Transport::Tcp => "tcp".into(),
                    Transport::Tls { .. } => "tls".into(),
                },
                format: format!("{:?}", rc.format).to_lowercase(),
                kinds: rc.kinds.iter().map(|k| k.as_str().to_string()).collect(),
                audit_from: rc.from.as_str().to_string(),
                from_config_file: from_file,
                sent: s.sent,
                queued: s.pending,
                failed_attempts: s.failed_attempts,
                oldest_pending_secs: s.oldest_pending_age.map(|d| d.as_secs()),
                full: s.full,
                refused: s.full_refusals + s.write_errors,
                connected: s.connected,
                last_error: s.last_error,
            })
            .collect()
    }

    fn problem(&self) -> Option<String> {
        Forwarding::problem(self)
    }

    fn add_receiver(&self, new: NewReceiver) -> Result<(), Vec<String>> {
        let _edit = lock(&self.edit);
        let one = |e: String| vec![e];
        let mut console = settings::load_console(&self.data_dir).map_err(|e| one(e.to_string()))?;
        let taken = console.iter().any(|r| r.name == new.name)
            || lock(&self.file)
                .receivers
                .iter()
                .any(|r| r.name == new.name);
        if taken {
            return Err(one("name: another receiver has this name".into()));
        }
        if console.len() >= MAX_CONSOLE_RECEIVERS {
            return Err(one(format!(
                "at most {MAX_CONSOLE_RECEIVERS} receivers can be added in the console"
            )));
        }
        let rc =
            settings::console_receiver(&self.data_dir, &new).map_err(|e| one(e.to_string()))?;
        let refuse = |errs: Vec<String>| {
            settings::remove_ca(&self.data_dir, &rc);
            Err(errs)
        };
        let check = ForwarderConfig {
            queue_dir: self.data_dir.clone(),
            hostname: self.hostname.clone(),
            product_version: String::new(),
            receivers: vec![rc.clone()],
            timing: Timing::default(),
        };
        let problems: Vec<String> = check.problems().iter().map(ToString::to_string).collect();
        if !problems.is_empty() {
            return refuse(problems);
        }
        if let Transport::Tls { ca_pem, .. } = &rc.transport {
            if let Err(e) = vigil_forward::transport::tls_config(ca_pem) {
                return refuse(one(format!("ca_pem: {e}")));
            }
        }
        console.push(rc.clone());
        if let Err(e) = settings::save_console(&self.data_dir, &console) {
            return refuse(one(e.to_string()));
        }
        self.reload_locked();
        Ok(())
    }

    fn remove_receiver(&self, name: &str) -> Result<bool, String> {
        let _edit = lock(&self.edit);
        if lock(&self.file).receivers.iter().any(|r| r.name == name) {
            return Err(format!(
                "{name} is configured in {}; change it there",
                settings::CONFIG_FILE
            ));
        }
        let mut console = settings::load_console(&self.data_dir).map_err(|e| e.to_string())?;
        let Some(at) = console.iter().position(|r| r.name == name) else {
            return Ok(false);
        };
        let gone = console.remove(at);
        settings::save_console(&self.data_dir, &console).map_err(|e| e.to_string())?;
        settings::remove_ca(&self.data_dir, &gone);
        self.reload_locked();
        // After the reload: the forwarding thread no longer writes it.
        super::audit::forget(&self.data_dir, name);
        Ok(true)
    }
}

/// The console's handle on forwarding.
pub fn api(fwd: &Arc<Forwarding>) -> Arc<dyn ReceiversApi> {
    fwd.clone()
}
