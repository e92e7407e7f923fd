//! Collect one regular file: opened without following a symlink and without
//! blocking (a FIFO must not hang the executor), checked with `fstat` on
//! the opened descriptor (so what is checked is what is read), hashed while
//! read, at most [`MAX_COLLECT_FILE_BYTES`] read.

use std::fs::File;
use std::io::Read;
use std::os::fd::{FromRawFd, RawFd};

use nix::fcntl::OFlag;
use nix::sys::stat::{fstat, Mode, SFlag};
use sha2::{Digest, Sha256};
use vigil_proto::{CollectReceipt, RefusalReason};

/// Most file bytes returned by `CollectFile` (fits a control frame).
pub const MAX_COLLECT_BYTES: u64 = 192 * 1024;
/// Largest file hashed: bigger ones are refused rather than read for minutes.
pub const MAX_COLLECT_FILE_BYTES: u64 = 1 << 30;

/// Why nothing was collected.
#[derive(Debug, PartialEq, Eq)]
pub enum CollectError {
    /// Not a regular file, a symlink, or too large.
    Refused(RefusalReason, String),
    /// Could not open or read.
    Failed(String),
}

/// Hash all of `path` and return its first `max_bytes` (capped by
/// [`MAX_COLLECT_BYTES`]).
pub fn collect(path: &str, max_bytes: u64) -> Result<(CollectReceipt, Vec<u8>), CollectError> {
    let fd = match open_no_symlinks(path) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ELOOP) => {
            return Err(CollectError::Refused(
                RefusalReason::UnsafeTarget,
                format!("{path}: a symlink in the path; not followed"),
            ))
        }
        Err(e) => return Err(CollectError::Failed(format!("{path}: {e}"))),
    };
    // SAFETY: `open` returned a fresh descriptor that nothing else owns.
    let mut file = unsafe { File::from_raw_fd(fd) };
    let st = fstat(fd).map_err(|e| CollectError::Failed(format!("{path}: fstat: {e}")))?;
    let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    if kind != SFlag::S_IFREG {
        return Err(CollectError::Refused(
            RefusalReason::UnsafeTarget,
            format!("{path}: not a regular file ({})", kind_name(kind)),
        ));
    }
    if st.st_size as u64 > MAX_COLLECT_FILE_BYTES {
        return Err(CollectError::Refused(
            RefusalReason::UnsafeTarget,
            format!(
                "{path}: {} bytes, over the {MAX_COLLECT_FILE_BYTES} cap",
                st.st_size
            ),
        ));
    }
    let limit = max_bytes.min(MAX_COLLECT_BYTES) as usize;
    let mut hasher = Sha256::new();
    let mut data = Vec::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => return Err(CollectError::Failed(format!("{path}: {e}"))),
        };
        size += n as u64;
        // A file growing while read is still capped.
        if size > MAX_COLLECT_FILE_BYTES {
            return Err(CollectError::Refused(
                RefusalReason::UnsafeTarget,
                format!("{path}: grew past the {MAX_COLLECT_FILE_BYTES} cap while read"),
            ));
        }
        hasher.update(&buf[..n]);
        let room = limit.saturating_sub(data.len());
        data.extend_from_slice(&buf[..n.min(room)]);
    }
    Ok((
        CollectReceipt {
            size,
            sha256: hasher.finalize().into(),
            sent: data.len() as u64,
        },
        data,
    ))
}

/// Open read-only without following any symlink in the path: `openat2`
/// with `RESOLVE_NO_SYMLINKS` (a symlinked directory on the way would
/// otherwise lead elsewhere), or, on kernels before 5.6, `O_NOFOLLOW`,
/// which checks the last component only. `O_NONBLOCK`: opening a FIFO
/// must not wait for a writer.
fn open_no_symlinks(path: &str) -> Result<RawFd, nix::errno::Errno> {
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let c = std::ffi::CString::new(path).map_err(|_| nix::errno::Errno::EINVAL)?;
    // SAFETY: open_how is plain data; all-zero is its documented default.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = flags.bits() as u64;
    how.resolve = libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: a NUL-terminated path, a valid open_how and its size.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd >= 0 {
        return Ok(fd as RawFd);
    }
    match nix::errno::Errno::last() {
        nix::errno::Errno::ENOSYS => nix::fcntl::open(path, flags, Mode::empty()),
        e => Err(e),
    }
}

fn kind_name(kind: SFlag) -> &'static str {
    match kind {
        SFlag::S_IFIFO => "FIFO",
        SFlag::S_IFCHR => "character device",
        SFlag::S_IFBLK => "block device",
        SFlag::S_IFDIR => "directory",
        SFlag::S_IFSOCK => "socket",
        SFlag::S_IFLNK => "symlink",
        _ => "unknown type",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(r: Result<(CollectReceipt, Vec<u8>), CollectError>) -> String {
        match r {
            Err(CollectError::Refused(RefusalReason::UnsafeTarget, m)) => m,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_regular_file_is_hashed_whole_and_returned_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let content: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        std::fs::write(&p, &content).unwrap();
        let (r, data) = collect(p.to_str().unwrap(), 1000).unwrap();
        assert_eq!(data, content[..1000]);
        assert_eq!(r.size, 100_000);
        assert_eq!(r.sent, 1000);
        assert_eq!(r.sha256, <[u8; 32]>::from(Sha256::digest(&content)));
        assert!(matches!(
            collect("/nonexistent/x", 10),
            Err(CollectError::Failed(_))
        ));
    }

    #[test]
    fn fifo_symlink_device_and_directory_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, Mode::S_IRWXU).unwrap();
        assert!(refused(collect(fifo.to_str().unwrap(), 10)).contains("FIFO"));
        let target = dir.path().join("t");
        std::fs::write(&target, b"x").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(refused(collect(link.to_str().unwrap(), 10)).contains("symlink"));
        let linked_dir = dir.path().join("linked");
        std::os::unix::fs::symlink(dir.path(), &linked_dir).unwrap();
        let through = linked_dir.join("t");
        assert!(refused(collect(through.to_str().unwrap(), 10)).contains("symlink"));
        assert!(refused(collect("/dev/zero", 10)).contains("character device"));
        assert!(refused(collect(dir.path().to_str().unwrap(), 10)).contains("directory"));
    }
}
