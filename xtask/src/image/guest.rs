//! A QEMU guest agent client: the boot test runs commands in the booted
//! appliance as root (`vigil update apply`, `vigil token create`) the way
//! a hypervisor's tooling does, over the virtio-serial port QEMU adds.
//! The image's SSH stays off and nothing listens for it on the network:
//! `qemu-guest-agent.service` starts only when that port exists.
//!
//! The protocol is QMP-style JSON lines (`guest-sync`, `guest-exec`,
//! `guest-exec-status`); the few fields read here are picked out by
//! name, so xtask stays std-only.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::Result;

/// A connection to the guest agent.
pub struct Agent {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
    next_id: u64,
}

/// What a command in the guest did.
pub struct Output {
    /// Exit code (-1 if killed by a signal).
    pub code: i64,
    /// Standard output and error, in that order.
    pub text: String,
}

impl Agent {
    /// Connect to QEMU's socket and wait until the agent in the guest
    /// answers (it starts during boot).
    pub fn connect(socket: &Path, limit: Duration) -> Result<Agent> {
        let deadline = Instant::now() + limit;
        let stream = loop {
            match UnixStream::connect(socket) {
                Ok(s) => break s,
                Err(e) if Instant::now() > deadline => {
                    return Err(format!("guest agent socket {}: {e}", socket.display()))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(500)),
            }
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| format!("guest agent: {e}"))?;
        let reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
        let mut agent = Agent {
            stream,
            reader,
            next_id: std::process::id() as u64 * 1000,
        };
        // Syncs sent before the agent ran are answered late, oldest first:
        // read on until the reply to the newest one, as QEMU's protocol
        // prescribes, and only then send another.
        loop {
            agent.next_id += 1;
            let id = agent.next_id;
            let sync = format!("{{\"execute\":\"guest-sync\",\"arguments\":{{\"id\":{id}}}}}");
            let mut reply = agent.request(&sync, Duration::from_secs(5));
            while let Ok(r) = &reply {
                if number(r, "return") == Some(id as i64) {
                    return Ok(agent);
                }
                reply = agent.next_reply(Instant::now() + Duration::from_secs(5));
            }
            if Instant::now() > deadline {
                return Err(format!("the guest agent did not answer within {limit:?}"));
            }
        }
    }

    /// Send one command; the next reply line (`return` or `error`).
    fn request(&mut self, json: &str, limit: Duration) -> Result<String> {
        self.stream
            .write_all(format!("{json}\n").as_bytes())
            .map_err(|e| format!("guest agent: {e}"))?;
        self.next_reply(Instant::now() + limit)
    }

    /// The next reply line, by `deadline`.
    fn next_reply(&mut self, deadline: Instant) -> Result<String> {
        let mut line = String::new();
        loop {
            line.clear();
            match self.reader.read_line(&mut line) {
                Ok(0) => return Err("guest agent: connection closed".into()),
                Ok(_) if line.contains("\"return\"") || line.contains("\"error\"") => {
                    return Ok(line.trim().to_string())
                }
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if Instant::now() > deadline {
                        return Err("guest agent: no reply".into());
                    }
                }
                Err(e) => return Err(format!("guest agent: {e}")),
            }
        }
    }

    /// Run `script` with `/bin/sh -c` in the guest as root, within `limit`.
    pub fn sh(&mut self, script: &str, limit: Duration) -> Result<Output> {
        let exec = format!(
            "{{\"execute\":\"guest-exec\",\"arguments\":{{\"path\":\"/bin/sh\",\"arg\":[\"-c\",{}],\"capture-output\":true}}}}",
            json_string(script)
        );
        let reply = self.request(&exec, Duration::from_secs(30))?;
        let pid = number(&reply, "pid").ok_or_else(|| format!("guest-exec: {reply}"))?;
        let deadline = Instant::now() + limit;
        let status =
            format!("{{\"execute\":\"guest-exec-status\",\"arguments\":{{\"pid\":{pid}}}}}");
        loop {
            let reply = self.request(&status, Duration::from_secs(30))?;
            if reply.contains("\"exited\": true") || reply.contains("\"exited\":true") {
                let field = |k: &str| string(&reply, k).map(|s| base64(&s)).unwrap_or_default();
                return Ok(Output {
                    code: number(&reply, "exitcode").unwrap_or(-1),
                    text: format!("{}{}", field("out-data"), field("err-data")),
                });
            }
            if Instant::now() > deadline {
                return Err(format!("`{script}` did not finish within {limit:?}"));
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// [`Agent::sh`] that must exit 0; its output.
    pub fn ok(&mut self, script: &str, limit: Duration) -> Result<String> {
        let out = self.sh(script, limit)?;
        if out.code != 0 {
            return Err(format!(
                "in the guest, `{script}` exited {}:\n{}",
                out.code, out.text
            ));
        }
        Ok(out.text)
    }
}

/// `s` as a JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The text right after `"key":` (spaces skipped).
fn value<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let at = json.find(&format!("\"{key}\""))? + key.len() + 2;
    Some(json[at..].trim_start().strip_prefix(':')?.trim_start())
}

fn number(json: &str, key: &str) -> Option<i64> {
    let v = value(json, key)?;
    let end = v
        .find(|c: char| !(c.is_ascii_digit() || c == '-'))
        .unwrap_or(v.len());
    v[..end].parse().ok()
}

/// A string field; only the escapes QEMU writes in base64 (`\/`) and
/// quotes are undone.
fn string(json: &str, key: &str) -> Option<String> {
    let v = value(json, key)?.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => out.push(chars.next()?),
            c => out.push(c),
        }
    }
    None
}

fn base64(text: &str) -> String {
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => continue,
        };
        bits = (bits << 6) | u32::from(v);
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_read_by_field() {
        let r = r#"{"return": {"exitcode": 3, "out-data": "aGk\/Cg==", "exited": true}}"#;
        assert_eq!(number(r, "exitcode"), Some(3));
        assert_eq!(string(r, "out-data").as_deref(), Some("aGk/Cg=="));
        assert_eq!(base64("aGVsbG8K"), "hello\n");
        assert_eq!(number(r#"{"return": 4711}"#, "return"), Some(4711));
        assert_eq!(json_string("a \"b\"\n"), r#""a \"b\"\n""#);
    }
}
