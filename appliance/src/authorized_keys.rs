//! The key lines of a collected `authorized_keys` file (sshd(8), "AUTHORIZED_KEYS
//! FILE FORMAT"): options, key type, base64 key, comment. Each line is
//! listed with the SHA-256 that `RemoveAuthorizedKey` names and the key's
//! `SHA256:` fingerprint as sshd logs it, so the console can offer "remove
//! this line" one click away, and an operator can match the fingerprint in
//! an `Accepted publickey … SHA256:…` log line.

use base64::Engine;
use sha2::{Digest, Sha256};
use vigil_proto::query::response::KeyLine;

/// Most lines listed: a larger file is listed up to here (the file itself
/// is kept whole with its command).
pub const MAX_KEY_LINES: usize = 1000;

/// Key types sshd accepts in `authorized_keys` (prefix match covers the
/// `-cert-v01@openssh.com` and `sk-` variants).
const KEY_TYPES: &[&str] = &["ssh-", "ecdsa-sha2-", "sk-ssh-", "sk-ecdsa-sha2-"];

/// The public-key lines of `data` (comments, blank and unparsable lines
/// are skipped; a line is never guessed at).
pub fn key_lines(data: &[u8]) -> Vec<KeyLine> {
    let text = String::from_utf8_lossy(data);
    let mut out = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        if out.len() >= MAX_KEY_LINES {
            break;
        }
        let line = raw.trim_end_matches('\r');
        if let Some(k) = parse_line(line, i as u32 + 1) {
            out.push(k);
        }
    }
    out
}

fn parse_line(line: &str, number: u32) -> Option<KeyLine> {
    let trimmed = line.trim_start();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return None;
    }
    let tokens = split_outside_quotes(trimmed);
    // Options come first when the first token is not a key type.
    let at = tokens.iter().position(|t| is_key_type(t))?;
    let key_type = tokens[at];
    let blob = base64::engine::general_purpose::STANDARD
        .decode(tokens.get(at + 1)?)
        .ok()?;
    let fingerprint =
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(Sha256::digest(&blob));
    Some(KeyLine {
        number,
        // What the sensor compares: the line as in the file, no newline.
        line_sha256: hex::encode(Sha256::digest(line.as_bytes())),
        key_type: key_type.to_owned(),
        fingerprint: format!("SHA256:{fingerprint}"),
        comment: tokens[at + 2..].join(" "),
        has_options: at > 0,
    })
}

fn is_key_type(t: &str) -> bool {
    KEY_TYPES.iter().any(|p| t.starts_with(p)) && !t.contains('=')
}

/// Whitespace-separated tokens, where a double-quoted span (an option's
/// value such as `command="a b"`) does not split.
fn split_outside_quotes(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = None;
    let mut quoted = false;
    for (i, c) in s.char_indices() {
        match c {
            '"' => {
                quoted = !quoted;
                start.get_or_insert(i);
            }
            c if c.is_whitespace() && !quoted => {
                if let Some(st) = start.take() {
                    out.push(&s[st..i]);
                }
            }
            _ => {
                start.get_or_insert(i);
            }
        }
    }
    if let Some(st) = start {
        out.push(&s[st..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // A real ed25519 public key (ssh-keygen -t ed25519), fingerprint from
    // `ssh-keygen -lf`.
    const KEY: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIGcpoE2keMvqb1pn3PdQQj/SqHGHoVzjqW91d5yO1s3m";
    /// `ssh-keygen -lf` of it.
    const FINGERPRINT: &str = "SHA256:zD+JNzauHW/0IIoI9lAaf9mr489uPc/nNgZcmx8pJ1Y";

    #[test]
    fn lines_are_listed_with_hash_fingerprint_comment_and_options() {
        let file = format!(
            "# admins\n\nssh-ed25519 {KEY} alice@laptop\r\n\
             from=\"10.0.0.0/8\",command=\"echo a b\" ssh-ed25519 {KEY} backup key\n\
             not a key line\nssh-rsa !!!notbase64 x\n"
        );
        let lines = key_lines(file.as_bytes());
        assert_eq!(lines.len(), 2, "{lines:?}");
        let a = &lines[0];
        assert_eq!(a.number, 3);
        assert_eq!(a.key_type, "ssh-ed25519");
        assert_eq!(a.comment, "alice@laptop");
        assert!(!a.has_options);
        // The hash the sensor compares is of the line without "\r\n".
        let want = hex::encode(Sha256::digest(format!("ssh-ed25519 {KEY} alice@laptop")));
        assert_eq!(a.line_sha256, want);
        let b = &lines[1];
        assert_eq!(
            (b.number, b.comment.as_str(), b.has_options),
            (4, "backup key", true)
        );
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_eq!(a.fingerprint, FINGERPRINT);
    }

    #[test]
    fn fingerprint_matches_ssh_keygen_on_a_fresh_key() {
        let dir = std::env::temp_dir().join(format!("vigil-keyfp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("k");
        let made = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "t", "-f"])
            .arg(&f)
            .status();
        if made.is_err() {
            std::fs::remove_dir_all(&dir).unwrap();
            assert!(
                std::env::var_os("CI").is_none(),
                "ssh-keygen is missing under CI"
            );
            eprintln!("skipped: ssh-keygen is not installed");
            return;
        }
        let line = std::fs::read_to_string(dir.join("k.pub")).unwrap();
        let out = std::process::Command::new("ssh-keygen")
            .arg("-lf")
            .arg(dir.join("k.pub"))
            .output()
            .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let printed = String::from_utf8_lossy(&out.stdout);
        let ours = &key_lines(line.as_bytes())[0].fingerprint;
        assert!(printed.contains(ours.as_str()), "{printed} vs {ours}");
    }

    #[test]
    fn a_huge_file_is_listed_up_to_the_cap() {
        let one = format!("ssh-ed25519 {KEY} k\n");
        let lines = key_lines(one.repeat(MAX_KEY_LINES + 5).as_bytes());
        assert_eq!(lines.len(), MAX_KEY_LINES);
    }
}
