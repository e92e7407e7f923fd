//! Kill exactly the named process: a pidfd is opened first, then the start
//! time in `/proc/PID/stat` is compared, then the pidfd is asked whether
//! its process is still alive. If it is, `/proc/PID` was that process when
//! read (a pid is not reused while its process exists), so the signal sent
//! through the pidfd can only reach the process the command named.

use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use vigil_proto::{KillReceipt, RefusalReason};

/// How long to wait for the process to exit after SIGKILL.
const EXIT_WAIT_MS: i32 = 2000;

/// Why a kill did not happen.
#[derive(Debug, PartialEq, Eq)]
pub enum KillError {
    /// Refused: pid 1, the sensor itself, or a reused pid.
    Refused(RefusalReason, String),
    /// The system call failed (no such process, permission).
    Failed(String),
}

/// Start time (clock ticks after boot) of `pid`, from `/proc/PID/stat`.
pub fn start_time_ticks(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields are
    // counted after the last ')'. Field 22 is the 20th after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn pidfd_open(pid: u32) -> Result<OwnedFd, std::io::Error> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn pidfd_send_signal(fd: &OwnedFd, sig: i32) -> Result<(), std::io::Error> {
    // SAFETY: a valid pidfd, a signal number, no siginfo, no flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Whether the pidfd's process exited within `ms` (a pidfd polls readable
/// when its process exits).
fn wait_exit(fd: &OwnedFd, ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, ms) > 0 }
}

/// Clock ticks after boot of a start time given in ns since the Unix epoch,
/// the way the process collectors stamp `ProcessStart::start_time_ns`
/// (`boot + ticks × tick`): exact, or `None` when the time is not on the
/// grid of this boot (another boot, or the wall clock stepped since).
pub fn ticks_on_grid(start_ns: u64, boot_ns: u64, ticks_per_s: u64) -> Option<u64> {
    let tick_ns = 1_000_000_000 / ticks_per_s.max(1);
    let rel = start_ns.checked_sub(boot_ns)?;
    (rel % tick_ns == 0).then_some(rel / tick_ns)
}

/// [`ticks_on_grid`] with this machine's boot time and tick rate, read now.
pub fn ticks_of_start_ns(start_ns: u64) -> Result<u64, KillError> {
    let stat = fs::read_to_string("/proc/stat")
        .map_err(|e| KillError::Failed(format!("read /proc/stat: {e}")))?;
    let btime: u64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| KillError::Failed("no btime in /proc/stat".into()))?;
    // SAFETY: sysconf reads a constant of the running system.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    ticks_on_grid(start_ns, btime * 1_000_000_000, tck).ok_or_else(|| {
        KillError::Refused(
            RefusalReason::TargetMismatch,
            format!(
                "start time {start_ns} ns is not a start time of this boot (booted at {btime} s, \
                 {tck} ticks/s): not killed; list the processes and kill from the listing"
            ),
        )
    })
}

/// Send SIGKILL to `pid` if and only if it started at `start_time_ticks`.
pub fn kill(pid: u32, start_time_ticks: u64) -> Result<KillReceipt, KillError> {
    if pid <= 1 || pid == std::process::id() {
        return Err(KillError::Refused(
            RefusalReason::UnsafeTarget,
            format!("refusing to kill pid {pid}"),
        ));
    }
    let fd = pidfd_open(pid).map_err(|e| KillError::Failed(format!("pidfd_open {pid}: {e}")))?;
    let started = self::start_time_ticks(pid);
    let exe = fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "?".into());
    // Still alive through the pidfd: what /proc showed was this process.
    pidfd_send_signal(&fd, 0).map_err(|e| KillError::Failed(format!("pid {pid} is gone: {e}")))?;
    if started != Some(start_time_ticks) {
        return Err(KillError::Refused(
            RefusalReason::TargetMismatch,
            format!(
                "pid {pid} started at {} ticks, the command names {start_time_ticks}: not killed (pid reused?)",
                started.map_or("?".to_string(), |s| s.to_string())
            ),
        ));
    }
    pidfd_send_signal(&fd, libc::SIGKILL)
        .map_err(|e| KillError::Failed(format!("kill pid {pid}: {e}")))?;
    Ok(KillReceipt {
        pid,
        exe,
        start_time_ticks,
        signal: libc::SIGKILL,
        exited: wait_exit(&fd, EXIT_WAIT_MS),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn start_times_map_back_to_ticks_only_on_the_boots_grid() {
        let boot = 1_700_000_000 * 1_000_000_000;
        assert_eq!(ticks_on_grid(boot + 12_340_000_000, boot, 100), Some(1234));
        assert_eq!(ticks_on_grid(boot, boot, 100), Some(0));
        // Off the 10 ms grid, or before the boot: another boot's process.
        assert_eq!(ticks_on_grid(boot + 12_345_000_000 + 1, boot, 100), None);
        assert_eq!(ticks_on_grid(boot - 1, boot, 100), None);
        // A boot time one second later (clock stepped) moves the answer,
        // so the kill refuses rather than hitting another process.
        assert_eq!(
            ticks_on_grid(boot + 12_340_000_000, boot + 1_000_000_000, 100),
            Some(1134)
        );
    }

    #[test]
    fn a_process_is_killed_by_the_start_time_its_event_carries() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        // What the collectors put in the ProcessStart event.
        let ns = crate::collect::process::procfs::Enricher::new()
            .process_start(pid)
            .start_time_ns
            .unwrap();
        let ticks = ticks_of_start_ns(ns).unwrap();
        assert_eq!(Some(ticks), start_time_ticks(pid));
        assert!(matches!(
            ticks_of_start_ns(ns + 1),
            Err(KillError::Refused(RefusalReason::TargetMismatch, _))
        ));
        let r = kill(pid, ticks).unwrap();
        assert!(r.exited);
        assert_eq!(child.wait().unwrap().signal(), Some(9));
    }

    #[test]
    fn a_process_is_killed_only_with_its_own_start_time() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let ticks = start_time_ticks(pid).unwrap();
        // A reused pid looks like this: same pid, another start time.
        match kill(pid, ticks + 1) {
            Err(KillError::Refused(RefusalReason::TargetMismatch, _)) => {}
            other => panic!("{other:?}"),
        }
        assert!(child.try_wait().unwrap().is_none(), "still running");
        let r = kill(pid, ticks).unwrap();
        assert_eq!((r.pid, r.start_time_ticks, r.signal), (pid, ticks, 9));
        assert!(r.exe.ends_with("sleep"), "{}", r.exe);
        assert!(r.exited);
        assert_eq!(child.wait().unwrap().signal(), Some(9));
        assert!(matches!(
            kill(1, 0),
            Err(KillError::Refused(RefusalReason::UnsafeTarget, _))
        ));
        assert!(matches!(
            kill(std::process::id(), 0),
            Err(KillError::Refused(..))
        ));
    }
}
