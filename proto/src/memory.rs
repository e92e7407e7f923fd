//! What a decoded event costs in memory beyond its own struct: the bytes of
//! its strings and the items of its vectors.
//!
//! This is the same account the bounded decoder keeps while it decodes
//! (`bounded.rs` charges each string's length and `size_of` each vector
//! item); a property test checks the two agree, so a field added here and
//! not there (or the reverse) fails a test rather than going unbounded.

use crate::event::*;
use std::mem::size_of;

/// Heap bytes owned by a value (lengths, not capacities: decoded values
/// are allocated exactly).
trait Heap {
    fn heap(&self) -> usize;
}

impl Heap for String {
    fn heap(&self) -> usize {
        self.len()
    }
}

impl<T: Heap> Heap for Option<T> {
    fn heap(&self) -> usize {
        self.as_ref().map_or(0, Heap::heap)
    }
}

impl<T: Heap> Heap for Vec<T> {
    fn heap(&self) -> usize {
        self.len() * size_of::<T>() + self.iter().map(Heap::heap).sum::<usize>()
    }
}

impl Heap for AuthMethod {
    fn heap(&self) -> usize {
        match self {
            AuthMethod::Other(s) => s.heap(),
            _ => 0,
        }
    }
}

impl Heap for LoginService {
    fn heap(&self) -> usize {
        match self {
            LoginService::Other(s) => s.heap(),
            _ => 0,
        }
    }
}

impl Heap for LoginInfo {
    fn heap(&self) -> usize {
        self.user.heap()
            + self.method.heap()
            + self.service.heap()
            + self.src_host.heap()
            + self.from_user.heap()
    }
}

impl Heap for Visibility {
    fn heap(&self) -> usize {
        match self {
            Visibility::Working => 0,
            Visibility::Degraded(s) | Visibility::Unavailable(s) => s.heap(),
        }
    }
}

impl Heap for CollectorHealth {
    fn heap(&self) -> usize {
        self.name.heap() + self.visibility.heap()
    }
}

impl Heap for LossReason {
    fn heap(&self) -> usize {
        match self {
            LossReason::Other(s) => s.heap(),
            _ => 0,
        }
    }
}

impl Payload {
    /// Heap bytes owned by this payload (string bytes, vector items), the
    /// part of its memory that `size_of::<Payload>()` does not count.
    pub fn heap_bytes(&self) -> usize {
        match self {
            Payload::ProcessStart(p) => {
                p.exe.heap() + p.argv.heap() + p.user.heap() + p.cwd.heap() + p.parent_exe.heap()
            }
            Payload::ProcessExit(p) => p.exe.heap(),
            Payload::NetConnect(f) | Payload::NetAccept(f) => f.exe.heap(),
            Payload::Login(l) | Payload::Logout(l) | Payload::AuthFailure(l) => l.heap(),
            Payload::FileChange(f) => f.path.heap(),
            Payload::SensorHealth(h) => h.collectors.heap(),
            Payload::Loss(l) => l.reason.heap(),
            Payload::ResponseResult(r) => r.message.heap(),
            Payload::Tamper(t) => t.source.heap() + t.reason.heap() + t.detail.heap(),
        }
    }
}

impl Event {
    /// Heap bytes owned by this event (see [`Payload::heap_bytes`]).
    pub fn heap_bytes(&self) -> usize {
        self.payload.heap_bytes()
    }

    /// Memory this event takes once decoded: its struct plus its heap bytes.
    pub fn memory_bytes(&self) -> usize {
        size_of::<Event>() + self.heap_bytes()
    }
}
