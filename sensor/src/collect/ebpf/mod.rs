//! The optional eBPF backend: loads `sensor/bpf/vigil.bpf.c` (compiled by
//! `build.rs`, embedded here) with aya, attaches its programs and hands
//! their ring-buffer records to the collectors.
//!
//! Nothing requires it: when it cannot load (no clang at build time, no
//! kernel BTF, no CAP_BPF, an old kernel) [`Probes::process`] says why and
//! the process collector falls back to the netlink connector.
//!
//! Wakeups: the kernel programs submit without waking the reader unless the
//! ring is over half full, and [`Probes::wait`] polls with a short timeout,
//! so a busy host costs one wakeup per [`DRAIN_EVERY`], not one per event.
//! Records the kernel could not queue (ring full) are counted in a per-CPU
//! map and read by [`Probes::lost`].

pub mod record;

use std::os::fd::AsRawFd;
use std::time::Duration;

use aya::maps::{Array, MapData, PerCpuArray, RingBuf};
use aya::programs::{BtfTracePoint, FExit, KProbe};
use aya::{Btf, Ebpf, EbpfLoader};
use thiserror::Error;

/// How often the rings are drained when the kernel does not wake us.
pub const DRAIN_EVERY: Duration = Duration::from_millis(100);

/// The compiled programs (empty when built without clang).
#[cfg(vigil_ebpf)]
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/vigil.bpf.o"));
#[cfg(not(vigil_ebpf))]
static OBJECT: &[u8] = &[];

/// Process ring size. Exec records are sent at their real size (a few
/// hundred bytes), so 1 MiB holds several thousand: many drain periods of a
/// very busy host. The data pages are mapped twice into the sensor (the
/// ring's wrap-around), so every MiB here is two MiB of its RSS.
const PROC_RING_BYTES: u32 = 1 << 20;
/// Network ring size (records of under 100 bytes).
const NET_RING_BYTES: u32 = 512 << 10;

/// Why the eBPF backend is not running.
#[derive(Debug, Error)]
pub enum EbpfError {
    /// `build.rs` found no clang.
    #[error("built without eBPF (no clang at build time)")]
    NotBuilt,
    /// The object could not be loaded (maps, BTF, relocations).
    #[error("loading the eBPF object failed: {0}")]
    Load(String),
    /// The running kernel has no BTF to attach BTF tracepoints with.
    #[error("kernel BTF unavailable (/sys/kernel/btf/vmlinux): {0}")]
    Btf(String),
    /// One program failed to load (verifier) or attach.
    #[error("eBPF program {program}: {reason}")]
    Program {
        /// Program name in the C source.
        program: &'static str,
        /// The error, with the verifier's last words when it rejected it.
        reason: String,
    },
    /// A map is missing or of the wrong type.
    #[error("eBPF map {map}: {reason}")]
    Map {
        /// Map name in the C source.
        map: &'static str,
        /// The error.
        reason: String,
    },
}

/// Which programs to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Set {
    Process,
    Network,
}

/// Loaded and attached programs with their ring buffer; detached on drop.
pub struct Probes {
    ring: RingBuf<MapData>,
    lost: PerCpuArray<MapData, u64>,
    lost_index: u32,
    accepts: bool,
    // Owns the programs and their links: dropping it detaches them.
    _bpf: Ebpf,
}

impl std::fmt::Debug for Probes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probes")
            .field("lost_index", &self.lost_index)
            .finish_non_exhaustive()
    }
}

impl Probes {
    /// Exec and exit tracepoints, keeping only processes in network
    /// namespace `netns` (inode) when given: the filter runs in the kernel.
    pub fn process(netns: Option<u64>) -> Result<Probes, EbpfError> {
        Probes::load(Set::Process, netns)
    }

    /// TCP connect and accept records for the network collector, for
    /// sockets in network namespace `netns` (inode) when given: connects
    /// from `inet_sock_set_state`; accepts from `inet_csk_accept` (fexit,
    /// else kretprobe) or, where neither attaches, from the handshake's
    /// SYN_RECV -> ESTABLISHED transition (attributed to the listener).
    pub fn network(netns: Option<u64>) -> Result<Probes, EbpfError> {
        Probes::load(Set::Network, netns)
    }

    fn load(set: Set, netns: Option<u64>) -> Result<Probes, EbpfError> {
        if OBJECT.is_empty() {
            return Err(EbpfError::NotBuilt);
        }
        let btf = Btf::from_sys_fs().map_err(|e| EbpfError::Btf(e.to_string()))?;
        // The ring of the other set is shrunk to one page: unused here.
        let page = page_size();
        let (proc_ring, net_ring) = match set {
            Set::Process => (PROC_RING_BYTES, page),
            Set::Network => (page, NET_RING_BYTES),
        };
        let mut bpf = EbpfLoader::new()
            .btf(Some(&btf))
            .set_max_entries("PROC_EVENTS", proc_ring)
            .set_max_entries("NET_EVENTS", net_ring)
            .load(OBJECT)
            .map_err(|e| EbpfError::Load(error_chain(&e)))?;
        set_netns_filter(&mut bpf, netns.unwrap_or(0))?;
        let mut accepts = false;
        match set {
            Set::Process => {
                attach_tp_btf(&mut bpf, &btf, "vigil_exec", "sched_process_exec")?;
                attach_tp_btf(&mut bpf, &btf, "vigil_exit", "sched_process_exit")?;
            }
            Set::Network => {
                attach_tp_btf(&mut bpf, &btf, "vigil_connect", "inet_sock_set_state")?;
                // fexit needs BPF trampolines, which some kernels refuse
                // (EPERM in some VMs): a kretprobe on the same function is
                // tried next; without either, accepts are found by the
                // /proc scan, as UDP is.
                match attach_fexit(&mut bpf, &btf, "vigil_accept", "inet_csk_accept") {
                    Ok(()) => accepts = true,
                    Err(fexit) => {
                        match attach_kretprobe(&mut bpf, "vigil_accept_ret", "inet_csk_accept") {
                            Ok(()) => accepts = true,
                            // No trampolines and no kprobes (e.g. a kernel
                            // without the kprobe PMU): the connect program
                            // reports inbound handshakes instead, without a
                            // process; the collector gives them the listener's.
                            Err(kret) => {
                                tracing::info!(%fexit, %kret, "accepts reported at handshake, attributed to the listener");
                                set_config(&mut bpf, CONFIG_HANDSHAKES, 1)?;
                                accepts = true;
                            }
                        }
                    }
                }
            }
        }
        let ring_name = match set {
            Set::Process => "PROC_EVENTS",
            Set::Network => "NET_EVENTS",
        };
        let ring = bpf
            .take_map(ring_name)
            .ok_or_else(|| missing_map(ring_name))
            .and_then(|m| RingBuf::try_from(m).map_err(|e| map_error(ring_name, e)))?;
        let lost = bpf
            .take_map("LOST")
            .ok_or_else(|| missing_map("LOST"))
            .and_then(|m| PerCpuArray::try_from(m).map_err(|e| map_error("LOST", e)))?;
        // The parsed kernel BTF (tens of MB for a 5 MB vmlinux blob) is
        // only needed while loading: free it and hand the pages back, or
        // glibc keeps them and the sensor's RSS grows by that much.
        drop(btf);
        release_free_heap();
        Ok(Probes {
            ring,
            lost,
            lost_index: u32::from(set == Set::Network),
            accepts,
            _bpf: bpf,
        })
    }

    /// True when accepts are reported too: by the fexit or kretprobe
    /// program (with the accepting process), or else as handshake records
    /// (without one).
    pub fn attributes_accepts(&self) -> bool {
        self.accepts
    }

    /// Wait until the kernel wakes us (ring over half full) or `timeout`
    /// passes; true when woken.
    pub fn wait(&self, timeout: Duration) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.ring.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: pfd is one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, ms) > 0 }
    }

    /// Hand every queued record to `f`; returns how many there were.
    pub fn drain(&mut self, mut f: impl FnMut(&[u8])) -> usize {
        let mut n = 0;
        while let Some(item) = self.ring.next() {
            f(&item);
            n += 1;
        }
        n
    }

    /// Records the kernel dropped because the ring was full, since load.
    pub fn lost(&self) -> u64 {
        self.lost
            .get(&self.lost_index, 0)
            .map(|v| v.iter().sum())
            .unwrap_or(0)
    }
}

/// `CONFIG[1]`: report inbound TCP handshakes (see the C source).
const CONFIG_HANDSHAKES: u32 = 1;

fn set_config(bpf: &mut Ebpf, index: u32, value: u64) -> Result<(), EbpfError> {
    let map = bpf.map_mut("CONFIG").ok_or_else(|| missing_map("CONFIG"))?;
    let mut config: Array<_, u64> = Array::try_from(map).map_err(|e| map_error("CONFIG", e))?;
    config
        .set(index, value, 0)
        .map_err(|e| map_error("CONFIG", e))
}

fn set_netns_filter(bpf: &mut Ebpf, netns: u64) -> Result<(), EbpfError> {
    let map = bpf.map_mut("CONFIG").ok_or_else(|| missing_map("CONFIG"))?;
    let mut config: Array<_, u64> = Array::try_from(map).map_err(|e| map_error("CONFIG", e))?;
    config.set(0, netns, 0).map_err(|e| map_error("CONFIG", e))
}

fn attach_tp_btf(
    bpf: &mut Ebpf,
    btf: &Btf,
    program: &'static str,
    tracepoint: &str,
) -> Result<(), EbpfError> {
    let p: &mut BtfTracePoint = program_mut(bpf, program)?;
    p.load(tracepoint, btf)
        .map_err(|e| program_error(program, &e))?;
    p.attach().map_err(|e| program_error(program, &e))?;
    Ok(())
}

/// A kretprobe (`kretprobe/...` section) on a kernel function.
fn attach_kretprobe(
    bpf: &mut Ebpf,
    program: &'static str,
    function: &str,
) -> Result<(), EbpfError> {
    let p: &mut KProbe = program_mut(bpf, program)?;
    p.load().map_err(|e| program_error(program, &e))?;
    p.attach(function, 0)
        .map_err(|e| program_error(program, &e))?;
    Ok(())
}

fn attach_fexit(
    bpf: &mut Ebpf,
    btf: &Btf,
    program: &'static str,
    function: &str,
) -> Result<(), EbpfError> {
    let p: &mut FExit = program_mut(bpf, program)?;
    p.load(function, btf)
        .map_err(|e| program_error(program, &e))?;
    p.attach().map_err(|e| program_error(program, &e))?;
    Ok(())
}

/// The object's program `program` as the kind `P` the caller attaches.
fn program_mut<'a, P>(bpf: &'a mut Ebpf, program: &'static str) -> Result<&'a mut P, EbpfError>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    bpf.program_mut(program)
        .ok_or_else(|| missing_program(program))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| program_error(program, &e))
}

fn program_error(program: &'static str, e: &dyn std::error::Error) -> EbpfError {
    EbpfError::Program {
        program,
        reason: error_chain(e),
    }
}

fn missing_program(program: &'static str) -> EbpfError {
    EbpfError::Program {
        program,
        reason: "not in the object".into(),
    }
}

fn missing_map(map: &'static str) -> EbpfError {
    EbpfError::Map {
        map,
        reason: "not in the object".into(),
    }
}

fn map_error(map: &'static str, e: impl std::error::Error) -> EbpfError {
    EbpfError::Map {
        map,
        reason: error_chain(&e),
    }
}

/// An error with its sources, bounded: a verifier log can be megabytes,
/// and its end says why.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    const KEEP: usize = 2000;
    if s.len() > KEEP {
        let mut cut = s.len() - KEEP;
        while !s.is_char_boundary(cut) {
            cut += 1;
        }
        s = format!("…{}", &s[cut..]);
    }
    s
}

/// Return freed heap pages to the kernel (every glibc arena).
fn release_free_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn page_size() -> u32 {
    // SAFETY: sysconf has no preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if v > 0 {
        v as u32
    } else {
        4096
    }
}
