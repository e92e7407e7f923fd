//! A strict CEF parser written from the ArcSight CEF specification (not
//! from our producer): `CEF:Version|Device Vendor|Device Product|Device
//! Version|Signature ID|Name|Severity|Extension`.
//!
//! - Header: `\\` and `\|` are the only escapes; any other backslash
//!   sequence is an error; a raw line break is an error.
//! - Severity: an integer 0–10.
//! - Extension: space-separated `key=value`; keys are alphanumeric (or
//!   `_`); in values `\\`, `\=`, `\n` and `\r` are the only escapes; an
//!   unescaped `=` can only start the next pair (the key is the word before
//!   it); a raw line break, a duplicate key or a bare word is an error.

use proptest::prelude::*;
use vigil_forward::format::cef::{self, CefRecord};

/// A parsed CEF line, unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub header: Vec<String>,
    pub severity: u8,
    pub extension: Vec<(String, String)>,
}

/// What parsing `r.to_line()` must give, from the producer's fields.
pub fn expected(r: &CefRecord) -> Parsed {
    let flat = |s: &str| s.replace(['\r', '\n'], " ");
    Parsed {
        header: vec![
            "Vigil".into(),
            "Vigil".into(),
            flat(&r.version),
            flat(&r.signature),
            flat(&r.name),
        ],
        severity: r.severity,
        extension: r
            .extension
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    }
}

pub fn parse_cef(line: &str) -> Result<Parsed, String> {
    if line.contains(['\n', '\r']) {
        return Err("raw line break".into());
    }
    let rest = line.strip_prefix("CEF:").ok_or("no CEF: prefix")?;
    let mut fields = Vec::new();
    let mut chars = rest.chars();
    let mut cur = String::new();
    while fields.len() < 7 {
        match chars.next() {
            None => return Err(format!("header ends after {} fields", fields.len())),
            Some('|') => fields.push(std::mem::take(&mut cur)),
            Some('\\') => match chars.next() {
                Some(c @ ('\\' | '|')) => cur.push(c),
                other => return Err(format!("bad header escape \\{other:?}")),
            },
            Some(c) => cur.push(c),
        }
    }
    if fields[0] != "0" {
        return Err(format!("version {:?}", fields[0]));
    }
    let severity: u8 = fields[6]
        .parse()
        .map_err(|_| format!("severity {:?}", fields[6]))?;
    if severity > 10 {
        return Err(format!("severity {severity} > 10"));
    }
    let extension = parse_extension(chars.as_str())?;
    Ok(Parsed {
        header: fields[1..6].to_vec(),
        severity,
        extension,
    })
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn parse_extension(ext: &str) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    if ext.is_empty() {
        return Ok(out);
    }
    // Find every unescaped '=' and the key word before it.
    let chars: Vec<char> = ext.chars().collect();
    let mut eqs = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            '=' => {
                eqs.push(i);
                i += 1;
            }
            _ => i += 1,
        }
    }
    let mut key_starts = Vec::new();
    for &eq in &eqs {
        let mut k = eq;
        while k > 0 && is_key_char(chars[k - 1]) {
            k -= 1;
        }
        if k == eq {
            return Err(format!("unescaped '=' without a key at {eq}"));
        }
        if k != 0 && chars[k - 1] != ' ' {
            return Err(format!("unescaped '=' inside a value at {eq}"));
        }
        key_starts.push(k);
    }
    if key_starts.first() != Some(&0) {
        return Err("extension does not start with key=".into());
    }
    for (n, (&k, &eq)) in key_starts.iter().zip(&eqs).enumerate() {
        let key: String = chars[k..eq].iter().collect();
        // The value runs to the space before the next key.
        let end = key_starts.get(n + 1).map_or(chars.len(), |&next| next - 1);
        let value = unescape_value(&chars[eq + 1..end])?;
        if out.iter().any(|(existing, _)| *existing == key) {
            return Err(format!("duplicate key {key}"));
        }
        out.push((key, value));
    }
    Ok(out)
}

fn unescape_value(raw: &[char]) -> Result<String, String> {
    let mut out = String::new();
    let mut it = raw.iter();
    while let Some(&c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('\\') => out.push('\\'),
            Some('=') => out.push('='),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            other => return Err(format!("bad extension escape \\{other:?}")),
        }
    }
    Ok(out)
}

#[test]
fn the_parser_refuses_what_the_spec_does_not_allow() {
    let ok = "CEF:0|V|P|1|sig|name|5|a=1 b=two words c=";
    assert_eq!(parse_cef(ok).unwrap().extension.len(), 3);
    for bad in [
        "CEF:1|V|P|1|s|n|5|",
        "CEF:0|V|P|1|s|n|11|",
        "CEF:0|V|P|1|s|n|5",
        r"CEF:0|V\x|P|1|s|n|5|",
        "CEF:0|V|P|1|s|n|5|a=b=c",
        "CEF:0|V|P|1|s|n|5|a=1 a=2",
        "CEF:0|V|P|1|s|n|5|bare a=1",
        r"CEF:0|V|P|1|s|n|5|a=\|",
        "CEF:0|V|P|1|s|n|5|a=line\nbreak",
    ] {
        assert!(parse_cef(bad).is_err(), "accepted {bad:?}");
    }
}

fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        "[|\\\\= \\n\\ra-zA-Z0-9é☃]{0,24}",
        ".{0,24}",
        Just(" x=y ".to_string()),
        Just("\\".to_string()),
    ]
}

proptest! {
    /// Every CEF line we produce parses strictly and gives back its fields.
    #[test]
    fn produced_cef_round_trips(
        version in hostile(), signature in hostile(), name in hostile(),
        severity in 0u8..=10, values in proptest::collection::vec(hostile(), 0..6),
    ) {
        const KEYS: [&str; 6] = ["msg", "suser", "cs1", "cs2", "dhost", "act"];
        let r = CefRecord {
            version, signature, name, severity,
            extension: KEYS.iter().copied().zip(values).collect(),
        };
        let line = r.to_line();
        let parsed = parse_cef(&line).map_err(|e| TestCaseError::fail(format!("{e}: {line:?}")))?;
        prop_assert_eq!(parsed, expected(&r));
    }
}

#[test]
fn every_hostile_alert_round_trips() {
    let ctx = super::ctx();
    for i in 0..super::HOSTILE.len() * 2 {
        for record in [super::alert(i), super::audit(i)] {
            let r = cef::to_record(&record, i as u64 + 1, &ctx);
            let line = r.to_line();
            assert_eq!(parse_cef(&line).unwrap(), expected(&r), "{line}");
        }
    }
}
