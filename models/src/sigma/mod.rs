//! Sigma rules over Vigil's events: known techniques in the ecosystem's
//! format, beside the behavioural detector.
//!
//! A [`RuleSet`] is loaded once (`load_dir`, `from_str`), compiled (regexes
//! built, field names resolved, conditions parsed) and indexed by event
//! kind; [`RuleSet::matches`] then costs only the rules for the event's
//! kind. What Vigil does not implement — aggregations, `near`, correlation
//! rules, some modifiers, log sources it does not observe, fields it does
//! not have — is refused at load time with the file, line and feature, never
//! loaded to silently not fire. The field mapping is in [`fields`].
//!
//! Pure: the only I/O is `load_dir` reading the rule files.

mod builtin;
mod condition;
mod detection;
mod error;
pub mod fields;
mod pattern;
mod rule;
mod yaml;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vigil_proto::{Event, EventKind};

pub use builtin::BUILTIN_RULES;
pub use error::RuleError;
pub use rule::{Level, RuleMeta};

use fields::EventView;
use rule::Rule;

/// One rule that fired on one event, with its explanation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigmaHit {
    /// The rule's `id`.
    pub rule_id: String,
    /// The rule's `title`.
    pub title: String,
    /// The rule's `level`.
    pub level: Level,
    /// ATT&CK technique ids from the rule's tags (`T1021.002`).
    pub techniques: Vec<String>,
    /// The fields and values that satisfied the condition (Sigma field
    /// names, values as the event has them): the explanation.
    pub matched: Vec<(String, String)>,
}

/// Compiled Sigma rules, indexed by the event kind they apply to.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
    /// Rule indices per `EventKind::code()`.
    by_kind: Vec<Vec<usize>>,
}

impl RuleSet {
    /// An empty rule set.
    pub fn new() -> Self {
        RuleSet::default()
    }

    /// Loads every `*.yml`/`*.yaml` under `dir` (recursively, in path
    /// order), refusing the whole set if any rule is bad.
    pub fn load_dir(dir: impl AsRef<Path>) -> Result<RuleSet, Vec<RuleError>> {
        let (set, errors) = RuleSet::load_dir_partial(dir);
        if errors.is_empty() {
            Ok(set)
        } else {
            Err(errors)
        }
    }

    /// Loads what it can from `dir` and returns the good rules beside the
    /// problems with the others (for importing a rule set an operator
    /// brings, where one bad rule should not hide the rest).
    pub fn load_dir_partial(dir: impl AsRef<Path>) -> (RuleSet, Vec<RuleError>) {
        let mut set = RuleSet::new();
        let mut errors = Vec::new();
        let mut files = Vec::new();
        collect_files(dir.as_ref(), &mut files, &mut errors, 0);
        files.sort();
        for path in files {
            let name = path.display().to_string();
            match read_rule(&path) {
                Ok(text) => {
                    if let Err(mut e) = set.add_str(&name, &text) {
                        errors.append(&mut e);
                    }
                }
                Err(message) => errors.push(RuleError {
                    file: name,
                    line: None,
                    column: None,
                    message,
                }),
            }
        }
        (set, errors)
    }

    /// A rule set of one rule; `name` stands for the file in errors.
    pub fn from_str(name: &str, yaml: &str) -> Result<RuleSet, Vec<RuleError>> {
        let mut set = RuleSet::new();
        set.add_str(name, yaml)?;
        Ok(set)
    }

    /// Compiles one rule and adds it; a rule whose `id` is already loaded
    /// is refused.
    pub fn add_str(&mut self, name: &str, yaml: &str) -> Result<(), Vec<RuleError>> {
        let rule = rule::compile(name, yaml).map_err(|errs| {
            errs.into_iter()
                .map(|e| e.in_file(name))
                .collect::<Vec<_>>()
        })?;
        self.insert(name, rule)
    }

    /// Adds a compiled rule unless its `id` is already loaded.
    fn insert(&mut self, name: &str, rule: Rule) -> Result<(), Vec<RuleError>> {
        if let Some(other) = self.rules.iter().find(|r| r.meta.id == rule.meta.id) {
            return Err(vec![RuleError {
                file: name.to_string(),
                line: None,
                column: None,
                message: format!(
                    "rule id `{}` is already loaded from {}",
                    rule.meta.id, other.meta.file
                ),
            }]);
        }
        let index = self.rules.len();
        for kind in rule.source.kinds {
            let code = usize::from(kind.code());
            if self.by_kind.len() <= code {
                self.by_kind.resize(code + 1, Vec::new());
            }
            self.by_kind[code].push(index);
        }
        self.rules.push(rule);
        Ok(())
    }

    /// The loaded rules' metadata, in load order.
    pub fn rules(&self) -> impl Iterator<Item = &RuleMeta> {
        self.rules.iter().map(|r| &r.meta)
    }

    /// How many rules are loaded.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether no rule is loaded.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether any rule looks at events of this kind (so a caller can skip
    /// the rest cheaply).
    pub fn wants(&self, kind: EventKind) -> bool {
        self.by_kind
            .get(usize::from(kind.code()))
            .is_some_and(|v| !v.is_empty())
    }

    /// The rules that fire on `event`, in load order.
    pub fn matches(&self, event: &Event) -> Vec<SigmaHit> {
        let Some(indices) = self.by_kind.get(usize::from(event.kind().code())) else {
            return Vec::new();
        };
        let view = EventView::new(event);
        let mut hits = Vec::new();
        let mut matched = Vec::new();
        for &i in indices {
            let rule = &self.rules[i];
            matched.clear();
            if !rule
                .detection
                .matches(&view, rule.source.fields, &mut matched)
            {
                continue;
            }
            let mut pairs: Vec<(String, String)> = Vec::with_capacity(matched.len());
            for (field, value) in matched.drain(..) {
                if !pairs.iter().any(|(f, v)| f == field && *v == value) {
                    pairs.push((field.to_string(), value));
                }
            }
            hits.push(SigmaHit {
                rule_id: rule.meta.id.clone(),
                title: rule.meta.title.clone(),
                level: rule.meta.level,
                techniques: rule.meta.techniques.clone(),
                matched: pairs,
            });
        }
        hits
    }
}

/// Directory depth bound: rule trees are shallow; a link loop is not.
const MAX_DIR_DEPTH: usize = 16;

fn collect_files(dir: &Path, files: &mut Vec<PathBuf>, errors: &mut Vec<RuleError>, depth: usize) {
    let io_error = |path: &Path, e: std::io::Error| RuleError {
        file: path.display().to_string(),
        line: None,
        column: None,
        message: format!("cannot read: {e}"),
    };
    if depth > MAX_DIR_DEPTH {
        errors.push(RuleError {
            file: dir.display().to_string(),
            line: None,
            column: None,
            message: format!("rule directories nested deeper than {MAX_DIR_DEPTH}"),
        });
        return;
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => return errors.push(io_error(dir, e)),
    };
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                errors.push(io_error(dir, e));
                continue;
            }
        };
        let path = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        let is_rule = path
            .extension()
            .is_some_and(|x| x.eq_ignore_ascii_case("yml") || x.eq_ignore_ascii_case("yaml"));
        if hidden {
            continue;
        } else if is_dir {
            collect_files(&path, files, errors, depth + 1);
        } else if is_rule {
            files.push(path);
        }
    }
}

fn read_rule(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if meta.len() > rule::MAX_RULE_BYTES as u64 {
        return Err(format!(
            "rule file larger than {} bytes",
            rule::MAX_RULE_BYTES
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    String::from_utf8(bytes).map_err(|_| "rule file is not UTF-8".to_string())
}
