//! One Sigma value, compiled: how a field's value is tested.
//!
//! Strings compare case-insensitively (Sigma's rule), except under `re`
//! (case-sensitive unless `re|i`) and `cased`. Wildcards: `*` any run, `?`
//! one character; `\*`, `\?` and `\\` are literal; any other backslash is
//! itself (so Windows paths need no escaping).

use std::net::IpAddr;

use regex::{Regex, RegexBuilder};

use super::fields::Value;

/// Upper bound on a compiled regex, so a hostile rule cannot take the
/// appliance's memory at load time.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// How a string value is anchored (from `contains`/`startswith`/`endswith`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Anchor {
    Whole,
    Contains,
    StartsWith,
    EndsWith,
}

/// A compiled value test.
#[derive(Debug, Clone)]
pub(crate) enum Pattern {
    /// `null`: the field is absent or empty.
    Null,
    /// `exists: true/false`.
    Exists(bool),
    /// Literal text (lowercase unless `cased`), anchored.
    Text {
        text: String,
        anchor: Anchor,
        cased: bool,
    },
    /// Wildcards or `re`: a regex over the raw value.
    Regex(Regex),
    /// `cidr`: the value parses as an address inside the network.
    Cidr(Cidr),
}

impl Pattern {
    /// Whether the field's value (None when absent) passes.
    pub fn matches(&self, value: Option<&Value>) -> bool {
        match (self, value) {
            (Pattern::Null, v) => v.is_none_or(|v| v.raw.is_empty()),
            (Pattern::Exists(want), v) => v.is_some() == *want,
            (_, None) => false,
            (
                Pattern::Text {
                    text,
                    anchor,
                    cased,
                },
                Some(v),
            ) => {
                let hay = if *cased { &v.raw } else { &v.lower };
                match anchor {
                    Anchor::Whole => hay == text,
                    Anchor::Contains => hay.contains(text.as_str()),
                    Anchor::StartsWith => hay.starts_with(text.as_str()),
                    Anchor::EndsWith => hay.ends_with(text.as_str()),
                }
            }
            (Pattern::Regex(re), Some(v)) => re.is_match(&v.raw),
            (Pattern::Cidr(net), Some(v)) => v
                .raw
                .parse::<IpAddr>()
                .is_ok_and(|ip| net.contains(ip.to_canonical())),
        }
    }

    /// A string value with Sigma wildcards, anchored as the modifiers say.
    pub fn text(value: &str, anchor: Anchor, cased: bool) -> Result<Pattern, String> {
        let pieces = split_wildcards(value);
        let literal_only = pieces.iter().all(|p| matches!(p, Piece::Lit(_)));
        if literal_only {
            let text: String = pieces
                .iter()
                .map(|p| match p {
                    Piece::Lit(s) => s.as_str(),
                    _ => "",
                })
                .collect();
            let text = if cased { text } else { text.to_lowercase() };
            return Ok(Pattern::Text {
                text,
                anchor,
                cased,
            });
        }
        let mut re = String::from(if cased { "(?s)^" } else { "(?is)^" });
        if matches!(anchor, Anchor::Contains | Anchor::EndsWith) {
            re.push_str(".*");
        }
        for piece in &pieces {
            match piece {
                Piece::Lit(s) => re.push_str(&regex::escape(s)),
                Piece::Any => re.push_str(".*"),
                Piece::One => re.push('.'),
            }
        }
        if matches!(anchor, Anchor::Contains | Anchor::StartsWith) {
            re.push_str(".*");
        }
        re.push('$');
        build_regex(&re, false, false, false).map(Pattern::Regex)
    }

    /// A `re` value with its `i`/`m`/`s` flags.
    pub fn regex(
        value: &str,
        insensitive: bool,
        multi_line: bool,
        dot_all: bool,
    ) -> Result<Pattern, String> {
        build_regex(value, insensitive, multi_line, dot_all).map(Pattern::Regex)
    }
}

fn build_regex(
    re: &str,
    insensitive: bool,
    multi_line: bool,
    dot_all: bool,
) -> Result<Regex, String> {
    RegexBuilder::new(re)
        .case_insensitive(insensitive)
        .multi_line(multi_line)
        .dot_matches_new_line(dot_all)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| format!("invalid regular expression `{re}`: {e}"))
}

#[derive(Debug, PartialEq, Eq)]
enum Piece {
    Lit(String),
    Any,
    One,
}

/// Splits a Sigma string into literal runs and wildcards.
fn split_wildcards(value: &str) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut lit = String::new();
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek() {
                Some(&n @ ('*' | '?' | '\\')) => {
                    lit.push(n);
                    chars.next();
                }
                _ => lit.push('\\'),
            },
            '*' | '?' => {
                if !lit.is_empty() {
                    pieces.push(Piece::Lit(std::mem::take(&mut lit)));
                }
                pieces.push(if c == '*' { Piece::Any } else { Piece::One });
            }
            _ => lit.push(c),
        }
    }
    if !lit.is_empty() || pieces.is_empty() {
        pieces.push(Piece::Lit(lit));
    }
    pieces
}

/// Sigma's `windash`: each variant replaces every dash that starts a word
/// (at the start or after whitespace) with one of the characters Windows
/// tools accept as a switch prefix.
pub(crate) fn windash_variants(value: &str) -> Vec<String> {
    const DASHES: [char; 5] = ['-', '/', '\u{2013}', '\u{2014}', '\u{2015}'];
    let mut out: Vec<String> = Vec::with_capacity(DASHES.len());
    for dash in DASHES {
        let mut prev_space = true;
        let variant: String = value
            .chars()
            .map(|c| {
                let swapped = if c == '-' && prev_space { dash } else { c };
                prev_space = c.is_whitespace();
                swapped
            })
            .collect();
        if !out.contains(&variant) {
            out.push(variant);
        }
    }
    out
}

/// An IPv4 or IPv6 network for the `cidr` modifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `addr/prefix` (a bare address is a /32 or /128).
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let bad = || format!("invalid CIDR network `{s}`");
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| bad())?)),
            None => (s, None),
        };
        let net: IpAddr = addr.trim().parse().map_err(|_| bad())?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        Ok(Cidr { net, prefix })
    }

    /// Whether `ip` is inside this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn val(s: &str) -> Value {
        Value {
            raw: s.to_string(),
            lower: s.to_lowercase(),
        }
    }

    #[test]
    fn wildcards_and_escapes() {
        let cases: &[(&str, Anchor, &str, bool)] = &[
            // `\*` would be a literal star: a backslash before a wildcard is `\\`.
            (
                "C:\\Windows\\\\*.exe",
                Anchor::Whole,
                "c:\\windows\\SC.EXE",
                true,
            ),
            (
                "C:\\Windows\\\\*.exe",
                Anchor::Whole,
                "c:\\windows\\sc.dll",
                false,
            ),
            (
                "C:\\Windows\\*.exe",
                Anchor::Whole,
                "c:\\windows\\sc.exe",
                false,
            ),
            (
                "C:\\Windows\\*.exe",
                Anchor::Whole,
                "c:\\windows*.exe",
                true,
            ),
            ("a?c", Anchor::Whole, "ABC", true),
            ("a?c", Anchor::Whole, "abbc", false),
            ("lit\\*", Anchor::Whole, "lit*", true),
            ("lit\\*", Anchor::Whole, "litx", false),
            ("x\\\\*", Anchor::StartsWith, "x\\yz", true),
            ("mid*dle", Anchor::Contains, "a MIDxxDLE b", true),
            ("end", Anchor::EndsWith, "the END", true),
            ("end", Anchor::EndsWith, "ending", false),
            ("", Anchor::Whole, "", true),
        ];
        for (value, anchor, input, want) in cases {
            let p = Pattern::text(value, *anchor, false).unwrap();
            assert_eq!(
                p.matches(Some(&val(input))),
                *want,
                "{value:?} {anchor:?} {input:?}"
            );
        }
    }

    #[test]
    fn cidr_contains() {
        let net = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("fd00::/8")
            .unwrap()
            .contains("fd12::1".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("nope/8").is_err());
    }

    #[test]
    fn windash_swaps_word_leading_dashes() {
        let v = windash_variants("sc -create a-b");
        assert!(v.contains(&"sc /create a-b".to_string()));
        assert!(v.contains(&"sc \u{2013}create a-b".to_string()));
        assert_eq!(v.len(), 5);
    }
}
