//! One rule file: its metadata, its log source and its detection.

use saphyr::{LoadableYamlNode, MarkedYaml};
use serde::{Deserialize, Serialize};
use vigil_proto::EventKind;

use super::detection::Detection;
use super::error::Located;
use super::fields::{self, Source};
use super::yaml::{self, at, Lit, Node};

/// Largest rule file accepted; Sigma rules are a few KiB.
pub(crate) const MAX_RULE_BYTES: usize = 256 * 1024;

/// Sigma's `level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Informational, not worth an alert on its own.
    Informational,
    /// Low relevance.
    Low,
    /// Medium relevance (the default when a rule names none).
    Medium,
    /// High relevance.
    High,
    /// Critical: act now.
    Critical,
}

impl Level {
    /// The lowercase name used in rules.
    pub fn name(self) -> &'static str {
        match self {
            Level::Informational => "informational",
            Level::Low => "low",
            Level::Medium => "medium",
            Level::High => "high",
            Level::Critical => "critical",
        }
    }

    fn parse(s: &str) -> Option<Level> {
        [
            Level::Informational,
            Level::Low,
            Level::Medium,
            Level::High,
            Level::Critical,
        ]
        .into_iter()
        .find(|l| l.name().eq_ignore_ascii_case(s))
    }
}

/// What a loaded rule says about itself (for listings and alerts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleMeta {
    /// The rule's `id`, or the file name when it has none.
    pub id: String,
    /// `title`.
    pub title: String,
    /// `status` (`stable`, `test`, `experimental` …), as written.
    pub status: Option<String>,
    /// `description`.
    pub description: Option<String>,
    /// `level`.
    pub level: Level,
    /// `tags`, as written.
    pub tags: Vec<String>,
    /// ATT&CK technique ids from the tags (`attack.t1021.002` → `T1021.002`).
    pub techniques: Vec<String>,
    /// `falsepositives`.
    pub falsepositives: Vec<String>,
    /// `fields`: what an analyst should look at.
    pub fields: Vec<String>,
    /// The file (or name) the rule came from.
    pub file: String,
    /// The event kinds its log source selects.
    pub kinds: Vec<EventKind>,
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub meta: RuleMeta,
    pub source: Source,
    pub detection: Detection,
}

/// Compiles one rule file. `file` names it in the metadata and is the
/// default id.
pub(crate) fn compile(file: &str, text: &str) -> Result<Rule, Vec<Located>> {
    if text.len() > MAX_RULE_BYTES {
        return Err(vec![Located {
            line: None,
            column: None,
            message: format!("rule file larger than {MAX_RULE_BYTES} bytes"),
        }]);
    }
    let docs = MarkedYaml::load_from_str(text).map_err(|e| {
        vec![Located::at(
            e.marker(),
            format!("YAML syntax error: {}", e.info()),
        )]
    })?;
    let root = match docs.as_slice() {
        [] => {
            return Err(vec![Located {
                line: None,
                column: None,
                message: "empty rule file".into(),
            }])
        }
        [root] => root,
        [_, second, ..] => {
            return Err(vec![at(
                second,
                "unsupported feature: rule collections (several YAML documents in one file)",
            )])
        }
    };
    compile_root(file, root)
}

/// Top-level keys Vigil refuses rather than ignores.
const UNSUPPORTED_KEYS: &[(&str, &str)] = &[
    ("correlation", "correlation rules"),
    ("action", "rule collections (`action: global`/`repeat`)"),
    ("filter", "meta filters"),
];

fn compile_root(file: &str, root: &Node<'_>) -> Result<Rule, Vec<Located>> {
    let entries = yaml::mapping(root, "rule").map_err(|e| vec![e])?;
    let get = |name: &str| {
        entries
            .iter()
            .find(|(k, _)| key_is(k, name))
            .map(|(_, v)| *v)
    };
    let mut errors = Vec::new();
    for (key, feature) in UNSUPPORTED_KEYS {
        if let Some((k, _)) = entries.iter().find(|(k, _)| key_is(k, key)) {
            errors.push(at(k, format!("unsupported feature: {feature} (`{key}`)")));
        }
    }
    // Each optional key is read on its own so every bad one is reported.
    let mut keep =
        |r: Result<Option<String>, Located>| r.map_err(|e| errors.push(e)).ok().flatten();
    let text = |name: &str| get(name).map(|n| yaml::string(n, name)).transpose();
    let title = keep(text("title")).unwrap_or_default();
    let id = keep(text("id"));
    let status = keep(text("status"));
    let description = keep(text("description"));
    let level_text = keep(text("level"));
    let mut list = |name: &str| -> Vec<String> {
        match get(name).map(|n| yaml::strings(n, name)).transpose() {
            Ok(v) => v.unwrap_or_default(),
            Err(e) => {
                errors.push(e);
                Vec::new()
            }
        }
    };
    let tags = list("tags");
    let falsepositives = list("falsepositives");
    let fields_list = list("fields");
    let level = match level_text {
        None => Level::Medium,
        Some(s) => Level::parse(&s).unwrap_or_else(|| {
            let node = get("level").unwrap_or(root);
            errors.push(at(
                node,
                format!("unknown level `{s}` (informational, low, medium, high, critical)"),
            ));
            Level::Medium
        }),
    };
    if title.trim().is_empty() {
        errors.push(at(root, "the rule has no `title`"));
    }
    let source = match get("logsource") {
        None => {
            errors.push(at(root, "the rule has no `logsource`"));
            None
        }
        Some(n) => logsource(n).map_err(|e| errors.push(e)).ok(),
    };
    let detection = match (get("detection"), source) {
        (None, _) => {
            errors.push(at(root, "the rule has no `detection`"));
            None
        }
        (Some(n), Some(src)) => Detection::compile(n, &src)
            .map_err(|mut e| errors.append(&mut e))
            .ok(),
        (Some(_), None) => None,
    };
    match (source, detection) {
        (Some(source), Some(detection)) if errors.is_empty() => Ok(Rule {
            meta: RuleMeta {
                id: id.unwrap_or_else(|| file.to_string()),
                title,
                status,
                description,
                level,
                techniques: techniques(&tags),
                tags,
                falsepositives,
                fields: fields_list,
                file: file.to_string(),
                kinds: source.kinds.to_vec(),
            },
            source,
            detection,
        }),
        _ => Err(errors),
    }
}

fn key_is(key: &Node<'_>, name: &str) -> bool {
    matches!(yaml::lit(key), Some(Lit::Str(s)) if s == name)
}

fn logsource(node: &Node<'_>) -> Result<Source, Located> {
    let entries = yaml::mapping(node, "logsource")?;
    let get = |name: &str| -> Result<Option<String>, Located> {
        match entries.iter().find(|(k, _)| key_is(k, name)) {
            Some((_, v)) => yaml::string(v, name).map(Some),
            None => Ok(None),
        }
    };
    let (product, category, service) = (get("product")?, get("category")?, get("service")?);
    fields::source(product.as_deref(), category.as_deref(), service.as_deref())
        .map_err(|m| at(node, m))
}

/// ATT&CK technique ids from Sigma tags: `attack.t1021` → `T1021`,
/// `attack.t1021.002` → `T1021.002`; tactics and other tags are skipped.
pub(crate) fn techniques(tags: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for tag in tags {
        let lower = tag.to_ascii_lowercase();
        let Some(rest) = lower.strip_prefix("attack.t") else {
            continue;
        };
        let (base, sub) = match rest.split_once('.') {
            Some((b, s)) => (b, Some(s)),
            None => (rest, None),
        };
        let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(base, 4) || !sub.is_none_or(|s| digits(s, 3)) {
            continue;
        }
        let id = format!("T{rest}");
        if !out.contains(&id) {
            out.push(id);
        }
    }
    out
}
