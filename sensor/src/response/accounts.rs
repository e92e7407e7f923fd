//! Account remediation: remove one `authorized_keys` line (named by its
//! SHA-256, so the command carries no key material and cannot remove a line
//! the operator did not see), and disable a local account with the
//! system's own tools (`usermod -L -e 1`: lock the password, expire the
//! account) rather than editing `/etc/shadow` ourselves.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command as Proc;

use sha2::{Digest, Sha256};
use vigil_proto::RefusalReason;

/// Why an account action did not happen.
#[derive(Debug, PartialEq, Eq)]
pub enum AccountError {
    /// Refused (root's account, a symlinked key file).
    Refused(RefusalReason, String),
    /// No such user or line, or the edit failed.
    Failed(String),
}

fn home_of(user: &str) -> Result<(nix::unistd::User, PathBuf), AccountError> {
    let u = nix::unistd::User::from_name(user)
        .map_err(|e| AccountError::Failed(format!("user {user}: {e}")))?
        .ok_or_else(|| AccountError::Failed(format!("no local user {user}")))?;
    let home = u.dir.clone();
    Ok((u, home))
}

/// Remove the line of `user`'s `~/.ssh/authorized_keys` whose SHA-256
/// (without its newline) is `line_sha256`. Returns the file and the line.
/// The file is replaced atomically with the same owner and mode.
pub fn remove_authorized_key(
    user: &str,
    line_sha256: &[u8; 32],
) -> Result<(String, String), AccountError> {
    let (_, home) = home_of(user)?;
    remove_key_line(&home.join(".ssh/authorized_keys"), line_sha256)
}

/// [`remove_authorized_key`] on an explicit file (tests use a temp dir).
pub fn remove_key_line(
    path: &Path,
    line_sha256: &[u8; 32],
) -> Result<(String, String), AccountError> {
    let shown = path.display().to_string();
    let meta =
        fs::symlink_metadata(path).map_err(|e| AccountError::Failed(format!("{shown}: {e}")))?;
    if !meta.file_type().is_file() {
        return Err(AccountError::Refused(
            RefusalReason::UnsafeTarget,
            format!("{shown}: not a regular file (symlink?); not edited"),
        ));
    }
    let text =
        fs::read_to_string(path).map_err(|e| AccountError::Failed(format!("{shown}: {e}")))?;
    let mut removed = None;
    let mut kept = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end_matches('\n').trim_end_matches('\r');
        if removed.is_none() && Sha256::digest(bare.as_bytes()).as_slice() == line_sha256 {
            removed = Some(bare.to_string());
        } else {
            kept.push_str(line);
        }
    }
    let Some(line) = removed else {
        return Err(AccountError::Failed(format!(
            "{shown}: no line with SHA-256 {}",
            hex::encode(line_sha256)
        )));
    };
    let tmp = path.with_extension("vigil-tmp");
    let write = || -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(meta.mode() & 0o777)
            .open(&tmp)?;
        f.set_permissions(fs::Permissions::from_mode(meta.mode() & 0o777))?;
        std::os::unix::fs::fchown(&f, Some(meta.uid()), Some(meta.gid()))?;
        f.write_all(kept.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|e| AccountError::Failed(format!("{shown}: {e}")))?;
    Ok((shown, line))
}

/// Lock and expire `user` with `usermod -L -e 1`; never root. Returns what
/// changed.
pub fn disable_account(user: &str) -> Result<Vec<String>, AccountError> {
    let (u, _) = home_of(user)?;
    if u.uid.is_root() {
        return Err(AccountError::Refused(
            RefusalReason::UnsafeTarget,
            format!("refusing to disable {user} (uid 0)"),
        ));
    }
    let out = Proc::new("usermod")
        .args(["-L", "-e", "1", "--", user])
        .output()
        .map_err(|e| AccountError::Failed(format!("cannot run usermod: {e}")))?;
    if !out.status.success() {
        return Err(AccountError::Failed(format!(
            "usermod -L -e 1 {user}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(vec![
        format!("password of {user} locked (usermod -L)"),
        format!("account {user} expired on 1970-01-02 (usermod -e 1)"),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_the_named_line_is_removed_keeping_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("authorized_keys");
        fs::write(
            &p,
            "ssh-ed25519 AAAA a@x\nssh-ed25519 BBBB evil@y\nssh-rsa CCCC c@z\n",
        )
        .unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        let sha: [u8; 32] = Sha256::digest(b"ssh-ed25519 BBBB evil@y").into();
        let (_, line) = remove_key_line(&p, &sha).unwrap();
        assert_eq!(line, "ssh-ed25519 BBBB evil@y");
        assert_eq!(
            fs::read_to_string(&p).unwrap(),
            "ssh-ed25519 AAAA a@x\nssh-rsa CCCC c@z\n"
        );
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        assert!(matches!(
            remove_key_line(&p, &sha),
            Err(AccountError::Failed(_))
        ));
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        assert!(matches!(
            remove_key_line(&link, &sha),
            Err(AccountError::Refused(..))
        ));
    }

    #[test]
    fn root_is_never_disabled() {
        assert!(matches!(
            disable_account("root"),
            Err(AccountError::Refused(..))
        ));
        assert!(matches!(
            disable_account("no-such-user-vigil"),
            Err(AccountError::Failed(_))
        ));
    }
}
