//! The A/B slot state machine. Pure: no files, no clock; the caller saves
//! the state after each step ([`crate::state`]) and acts on the answer
//! (reboot, start services).
//!
//! ```text
//!            begin_stage            finish_stage
//!  (A active) ──────────▶ B Writing ───────────▶ B Pending ──on_boot──▶ B trial (1 attempt)
//!                              │ abort_stage                            │ on_health(true)  → B active (commit)
//!                              ▼                                        │ on_health(false) → B Failed, next boot A
//!                           B Empty                                     │ boot again, attempts used → B Failed, boot A
//! ```
//!
//! The running slot is never written; the previous good slot stays
//! bootable until the next update replaces it.

use serde::{Deserialize, Serialize};

/// Boots a pending slot gets before it counts as failed: one, so a
/// release that hangs before its health check is abandoned at the next
/// (watchdog) reboot.
pub const MAX_BOOT_ATTEMPTS: u32 = 1;

/// One of the two system slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    /// Slot A.
    A,
    /// Slot B.
    B,
}

impl Slot {
    /// The other slot.
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    /// `a` or `b`: directory and partition label suffix.
    pub fn name(self) -> &'static str {
        match self {
            Slot::A => "a",
            Slot::B => "b",
        }
    }
}

impl std::fmt::Display for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlotStatus {
    /// Nothing installed.
    Empty,
    /// Being written; not bootable (a crash here leaves it so).
    Writing,
    /// Written and verified, waiting for its trial boot.
    Pending,
    /// Booted and passed its health check.
    Good,
    /// Failed its health check or ran out of boot attempts.
    Failed,
}

/// A slot's status and release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotInfo {
    /// What the slot holds.
    pub status: SlotStatus,
    /// Release number (targets version) installed in it, 0 if none.
    pub release: u64,
    /// Release name, if the bundle named it.
    pub release_name: Option<String>,
}

/// A staged update waiting for (or on) its trial boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// The slot holding it.
    pub slot: Slot,
    /// Boots tried so far.
    pub boot_attempts: u32,
}

/// Why a step is not allowed now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    /// An update is already staged or on trial.
    #[error(
        "an update is already pending on slot {0}: boot it and let its health check decide first"
    )]
    UpdatePending(Slot),
    /// `finish_stage` on a slot that is not being written.
    #[error("slot {0} is not being written")]
    NotWriting(Slot),
}

/// The state of both slots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slots {
    /// The committed, known-good slot.
    pub active: Slot,
    /// The slot running now.
    pub booted: Slot,
    /// A staged update, if any.
    pub pending: Option<Pending>,
    /// Slot A.
    pub a: SlotInfo,
    /// Slot B.
    pub b: SlotInfo,
}

/// Which slot to boot, and whether a pending update was just abandoned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootDecision {
    /// The slot to boot.
    pub slot: Slot,
    /// This boot is a pending update's trial.
    pub trial: bool,
    /// A pending update on this slot used its attempts and was abandoned.
    pub rolled_back: Option<Slot>,
}

/// What a health report changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthOutcome {
    /// The trial slot is now the active one.
    Committed(Slot),
    /// The trial slot failed; the next boot is the previous slot.
    RolledBack {
        /// The slot that failed.
        failed: Slot,
        /// The slot booted next.
        to: Slot,
    },
    /// No trial was running; nothing changed.
    Unchanged,
}

impl Slots {
    /// A fresh appliance: `release` in slot A, slot B empty.
    pub fn new(release: u64, release_name: Option<String>) -> Self {
        Slots {
            active: Slot::A,
            booted: Slot::A,
            pending: None,
            a: SlotInfo {
                status: SlotStatus::Good,
                release,
                release_name,
            },
            b: SlotInfo {
                status: SlotStatus::Empty,
                release: 0,
                release_name: None,
            },
        }
    }

    /// The slot's info.
    pub fn info(&self, slot: Slot) -> &SlotInfo {
        match slot {
            Slot::A => &self.a,
            Slot::B => &self.b,
        }
    }

    fn info_mut(&mut self, slot: Slot) -> &mut SlotInfo {
        match slot {
            Slot::A => &mut self.a,
            Slot::B => &mut self.b,
        }
    }

    /// Claims the inactive slot for writing.
    pub fn begin_stage(&mut self) -> Result<Slot, SlotError> {
        if let Some(p) = self.pending {
            return Err(SlotError::UpdatePending(p.slot));
        }
        let slot = self.active.other();
        *self.info_mut(slot) = SlotInfo {
            status: SlotStatus::Writing,
            release: 0,
            release_name: None,
        };
        Ok(slot)
    }

    /// Gives up a slot whose writing failed.
    pub fn abort_stage(&mut self, slot: Slot) {
        if self.info(slot).status == SlotStatus::Writing {
            self.info_mut(slot).status = SlotStatus::Empty;
        }
    }

    /// Marks a fully written, verified slot as pending its trial boot.
    pub fn finish_stage(
        &mut self,
        slot: Slot,
        release: u64,
        release_name: Option<String>,
    ) -> Result<(), SlotError> {
        if self.info(slot).status != SlotStatus::Writing {
            return Err(SlotError::NotWriting(slot));
        }
        *self.info_mut(slot) = SlotInfo {
            status: SlotStatus::Pending,
            release,
            release_name,
        };
        self.pending = Some(Pending {
            slot,
            boot_attempts: 0,
        });
        Ok(())
    }

    /// The slot the next boot should use (what the bootloader is told).
    pub fn next_boot(&self) -> Slot {
        match self.pending {
            Some(p) if p.boot_attempts < MAX_BOOT_ATTEMPTS => p.slot,
            _ => self.active,
        }
    }

    /// Called once per boot, before anything else: spends a trial attempt,
    /// or abandons a pending update that used its attempts.
    pub fn on_boot(&mut self) -> BootDecision {
        match self.pending {
            Some(mut p) if p.boot_attempts < MAX_BOOT_ATTEMPTS => {
                p.boot_attempts += 1;
                self.pending = Some(p);
                self.booted = p.slot;
                BootDecision {
                    slot: p.slot,
                    trial: true,
                    rolled_back: None,
                }
            }
            Some(p) => {
                self.fail(p.slot);
                self.booted = self.active;
                BootDecision {
                    slot: self.active,
                    trial: false,
                    rolled_back: Some(p.slot),
                }
            }
            None => {
                self.booted = self.active;
                BootDecision {
                    slot: self.active,
                    trial: false,
                    rolled_back: None,
                }
            }
        }
    }

    /// At boot on a real disk, where the firmware chose the slot (boot
    /// counting in systemd-boot) and the system only records it: the
    /// pending slot booted is its trial; any other slot booted while an
    /// update was pending means the firmware gave up on it (its tries were
    /// spent without a blessed boot), so it is marked failed.
    pub fn on_booted(&mut self, slot: Slot) -> BootDecision {
        self.booted = slot;
        match self.pending {
            Some(mut p) if p.slot == slot => {
                p.boot_attempts += 1;
                self.pending = Some(p);
                BootDecision {
                    slot,
                    trial: true,
                    rolled_back: None,
                }
            }
            Some(p) => {
                self.fail(p.slot);
                BootDecision {
                    slot,
                    trial: false,
                    rolled_back: Some(p.slot),
                }
            }
            None => BootDecision {
                slot,
                trial: false,
                rolled_back: None,
            },
        }
    }

    /// The health check's verdict on the running system.
    pub fn on_health(&mut self, healthy: bool) -> HealthOutcome {
        let Some(p) = self.pending.filter(|p| p.slot == self.booted) else {
            return HealthOutcome::Unchanged;
        };
        if healthy {
            self.info_mut(p.slot).status = SlotStatus::Good;
            self.active = p.slot;
            self.pending = None;
            HealthOutcome::Committed(p.slot)
        } else {
            self.fail(p.slot);
            HealthOutcome::RolledBack {
                failed: p.slot,
                to: self.active,
            }
        }
    }

    fn fail(&mut self, slot: Slot) {
        self.info_mut(slot).status = SlotStatus::Failed;
        self.pending = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn staged() -> Slots {
        let mut s = Slots::new(1, None);
        let slot = s.begin_stage().unwrap();
        s.finish_stage(slot, 2, None).unwrap();
        s
    }

    #[test]
    fn healthy_trial_commits() {
        let mut s = staged();
        assert_eq!(s.next_boot(), Slot::B);
        assert_eq!(
            s.on_boot(),
            BootDecision {
                slot: Slot::B,
                trial: true,
                rolled_back: None
            }
        );
        assert_eq!(s.on_health(true), HealthOutcome::Committed(Slot::B));
        assert_eq!(
            (s.active, s.b.status, s.a.status),
            (Slot::B, SlotStatus::Good, SlotStatus::Good)
        );
        assert_eq!(s.on_boot().slot, Slot::B);
    }

    #[test]
    fn failed_health_rolls_back() {
        let mut s = staged();
        s.on_boot();
        assert_eq!(
            s.on_health(false),
            HealthOutcome::RolledBack {
                failed: Slot::B,
                to: Slot::A
            }
        );
        assert_eq!(s.next_boot(), Slot::A);
        assert_eq!(s.on_boot().slot, Slot::A);
        assert_eq!(s.b.status, SlotStatus::Failed);
    }

    #[test]
    fn second_boot_without_verdict_rolls_back() {
        let mut s = staged();
        s.on_boot();
        assert_eq!(
            s.next_boot(),
            Slot::A,
            "attempts spent: the bootloader goes back"
        );
        let d = s.on_boot();
        assert_eq!((d.slot, d.rolled_back), (Slot::A, Some(Slot::B)));
        assert_eq!(s.on_health(true), HealthOutcome::Unchanged);
        assert_eq!(s.active, Slot::A);
    }

    #[test]
    fn the_firmware_choice_is_recorded() {
        let mut s = staged();
        assert!(s.on_booted(Slot::B).trial);
        assert_eq!(s.on_health(true), HealthOutcome::Committed(Slot::B));

        let mut s = staged();
        assert!(s.on_booted(Slot::B).trial);
        // The boot was never blessed: systemd-boot went back to A.
        let d = s.on_booted(Slot::A);
        assert_eq!((d.slot, d.rolled_back), (Slot::A, Some(Slot::B)));
        assert_eq!((s.active, s.b.status), (Slot::A, SlotStatus::Failed));
        assert_eq!(s.on_booted(Slot::A).rolled_back, None);
    }

    #[test]
    fn one_update_at_a_time() {
        let mut s = staged();
        assert_eq!(s.begin_stage(), Err(SlotError::UpdatePending(Slot::B)));
    }
}
