//! The appliance side as thin calls: `vigil update verify | apply |
//! status`, the boot-time slot choice and the health check's verdict.
//! Each loads `slots.json`, takes one step and saves it.

use std::io::{Read, Seek, Write};
use std::path::Path;

use serde::Serialize;

use crate::bundle::{self, Bundle};
use crate::error::{UpdateError, VerifyError};
use crate::partition::SlotWriter;
use crate::slots::{BootDecision, HealthOutcome, Pending, Slot, SlotInfo};
use crate::state::{StateStore, UpdateState};
use crate::verify::{Verified, VerifyOptions};

/// What an accepted update did.
#[derive(Debug, Clone, Serialize)]
pub struct ApplyReport {
    /// The slot written; it boots next, on trial.
    pub slot: Slot,
    /// Release number installed.
    pub release: u64,
    /// Release name, if any.
    pub release_name: Option<String>,
    /// Root version before and after, if the bundle rotated the root.
    pub root_rotation: Option<(u64, u64)>,
    /// Target files written.
    pub targets: Vec<String>,
}

/// `vigil update status`.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Committed slot.
    pub active: Slot,
    /// Running slot.
    pub booted: Slot,
    /// Slot the next boot uses.
    pub next_boot: Slot,
    /// Staged update, if any.
    pub pending: Option<Pending>,
    /// Slot A.
    pub a: SlotInfo,
    /// Slot B.
    pub b: SlotInfo,
    /// Trusted root version.
    pub root_version: u64,
    /// Newest release accepted (the targets version).
    pub newest_release_seen: u64,
}

/// Verifies a bundle file against the stored trust without changing
/// anything (`vigil update verify`).
pub fn verify_file(
    path: &Path,
    store: &StateStore,
    opts: &VerifyOptions,
) -> Result<Verified, UpdateError> {
    let state = store.load()?;
    check(&mut bundle::open(path)?, &state, opts)
}

/// Verifies and installs a bundle file into the inactive slot
/// (`vigil update apply FILE`).
pub fn apply_file(
    path: &Path,
    store: &StateStore,
    writer: &mut dyn SlotWriter,
    opts: &VerifyOptions,
) -> Result<ApplyReport, UpdateError> {
    apply(bundle::open(path)?, store, writer, opts)
}

/// Verifies `bundle` completely, then writes it into the inactive slot,
/// re-checking every byte as it is written, and marks that slot pending.
/// On any refusal or failure the running slot and the trust are as before.
pub fn apply<R: Read + Seek>(
    mut bundle: Bundle<R>,
    store: &StateStore,
    writer: &mut dyn SlotWriter,
    opts: &VerifyOptions,
) -> Result<ApplyReport, UpdateError> {
    let mut state = store.load()?;
    let verified = check(&mut bundle, &state, opts)?;
    let slot = state.slots.begin_stage()?;
    store.save(&state)?;
    if let Err(e) = write_slot(&mut bundle, &verified, slot, writer) {
        state.slots.abort_stage(slot);
        store.save(&state)?;
        return Err(e);
    }
    state
        .slots
        .finish_stage(slot, verified.release, verified.release_name.clone())?;
    state.trusted = verified.state;
    store.save(&state)?;
    Ok(ApplyReport {
        slot,
        release: verified.release,
        release_name: verified.release_name,
        root_rotation: verified.root_rotation,
        targets: verified.targets.keys().cloned().collect(),
    })
}

fn check<R: Read + Seek>(
    bundle: &mut Bundle<R>,
    state: &UpdateState,
    opts: &VerifyOptions,
) -> Result<Verified, UpdateError> {
    // Cheap refusals first: a release already installed (or older) is
    // refused from its metadata, before hashing every target's bytes.
    let verified = bundle.verify_metadata(&state.trusted, opts)?;
    if verified.release <= state.trusted.targets_version {
        return Err(VerifyError::NotNewer {
            installed: state.trusted.targets_version,
            offered: verified.release,
        }
        .into());
    }
    if let Some(p) = state.slots.pending {
        return Err(crate::slots::SlotError::UpdatePending(p.slot).into());
    }
    bundle.verify_targets(&verified)?;
    Ok(verified)
}

fn write_slot<R: Read + Seek>(
    bundle: &mut Bundle<R>,
    verified: &Verified,
    slot: Slot,
    writer: &mut dyn SlotWriter,
) -> Result<(), UpdateError> {
    let io = |source| UpdateError::SlotWrite { slot, source };
    writer.clear(slot).map_err(io)?;
    for (name, desc) in &verified.targets {
        let mut file = writer.create(slot, name).map_err(io)?;
        // A failed write (a full partition) is the slot's failure, not
        // the bundle's: told apart from a read error of the bundle.
        let mut out = WriteErrors {
            inner: &mut file,
            error: None,
        };
        let copied = bundle.copy_target(name, desc, &mut out);
        if let Some(e) = out.error.take() {
            return Err(io(e));
        }
        copied?;
        file.finish().map_err(io)?;
    }
    writer.sync(slot).map_err(io)?;
    writer.activate(slot, verified.release).map_err(io)
}

/// A writer that keeps the first error its inner writer returned.
struct WriteErrors<'a, W: Write + ?Sized> {
    inner: &'a mut W,
    error: Option<std::io::Error>,
}

impl<W: Write + ?Sized> Write for WriteErrors<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write(buf).map_err(|e| {
            let copy = std::io::Error::new(e.kind(), e.to_string());
            self.error.get_or_insert(e);
            copy
        })
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// At boot, before services start: which slot to run (a pending update
/// gets its one trial; one that used it is abandoned).
pub fn boot(store: &StateStore) -> Result<BootDecision, UpdateError> {
    let mut state = store.load()?;
    let decision = state.slots.on_boot();
    store.save(&state)?;
    Ok(decision)
}

/// At boot on a real disk: record the slot the firmware chose (see
/// [`crate::slots::Slots::on_booted`]).
pub fn booted(store: &StateStore, slot: Slot) -> Result<BootDecision, UpdateError> {
    let mut state = store.load()?;
    let decision = state.slots.on_booted(slot);
    store.save(&state)?;
    Ok(decision)
}

/// The health check's verdict on the running slot: commits a trial that is
/// healthy, rolls back one that is not (the caller then reboots).
pub fn report_health(store: &StateStore, healthy: bool) -> Result<HealthOutcome, UpdateError> {
    let mut state = store.load()?;
    let outcome = state.slots.on_health(healthy);
    store.save(&state)?;
    Ok(outcome)
}

/// `vigil update status`.
pub fn status(store: &StateStore) -> Result<Status, UpdateError> {
    let state = store.load()?;
    let s = &state.slots;
    Ok(Status {
        active: s.active,
        booted: s.booted,
        next_boot: s.next_boot(),
        pending: s.pending,
        a: s.a.clone(),
        b: s.b.clone(),
        root_version: state.trusted.root()?.version,
        newest_release_seen: state.trusted.targets_version,
    })
}
