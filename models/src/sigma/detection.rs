//! The `detection` section: named selections compiled to value tests, and
//! the condition over them.
//!
//! A selection that is a mapping is the AND of its fields; a list of
//! mappings is the OR of them; a list of plain values is a keyword search
//! (any field of the event contains one of them). Several values for one
//! field are OR'ed, or AND'ed with the `all` modifier.

use super::condition::{self, Expr};
use super::error::Located;
use super::fields::{EventView, Field, Source};
use super::pattern::{windash_variants, Anchor, Cidr, Pattern};
use super::yaml::{self, at, Lit, Node};

/// The field name and value that made a rule fire (its explanation).
pub(crate) type Matched = Vec<(&'static str, String)>;

/// A compiled `detection` section.
#[derive(Debug, Clone)]
pub(crate) struct Detection {
    searches: Vec<Search>,
    condition: Expr,
}

#[derive(Debug, Clone)]
enum Search {
    /// OR of groups; each group is the AND of its items.
    Groups(Vec<Vec<Item>>),
    /// Any of the source's fields matches any of these.
    Keywords(Vec<Pattern>),
}

/// One `Field|modifiers: values` entry.
#[derive(Debug, Clone)]
struct Item {
    /// `None` for a keyword entry (`'|all': [...]`), which any field satisfies.
    field: Option<Field>,
    /// One entry per value written; each holds the alternatives that value
    /// expands to (several only under `windash`).
    values: Vec<Vec<Pattern>>,
    all: bool,
}

impl Item {
    fn matches(&self, view: &EventView<'_>, fields: &[Field]) -> bool {
        let one = |alts: &Vec<Pattern>| match self.field {
            Some(f) => {
                let value = view.get(f);
                alts.iter().any(|p| p.matches(value))
            }
            None => fields.iter().any(|&f| {
                let value = view.get(f);
                value.is_some() && alts.iter().any(|p| p.matches(value))
            }),
        };
        if self.all {
            self.values.iter().all(one)
        } else {
            self.values.iter().any(one)
        }
    }

    /// Appends the fields that satisfied a matching item.
    fn explain(&self, view: &EventView<'_>, fields: &[Field], out: &mut Matched) {
        let candidates = match &self.field {
            Some(f) => std::slice::from_ref(f),
            None => fields,
        };
        for &f in candidates {
            let Some(v) = view.get(f) else { continue };
            let hit = self.field.is_some()
                || self
                    .values
                    .iter()
                    .any(|alts| alts.iter().any(|p| p.matches(Some(v))));
            if hit {
                out.push((f.name(), v.raw.clone()));
            }
        }
    }
}

impl Detection {
    /// Compiles the `detection` mapping for a rule over `source`.
    pub fn compile(node: &Node<'_>, source: &Source) -> Result<Detection, Vec<Located>> {
        let entries = yaml::mapping(node, "detection").map_err(|e| vec![e])?;
        let mut errors = Vec::new();
        let mut names = Vec::new();
        let mut searches = Vec::new();
        let mut cond_node = None;
        for (key, value) in entries {
            let name = match yaml::string(key, "detection key") {
                Ok(n) => n,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            match name.as_str() {
                "condition" => cond_node = Some(value),
                "timeframe" => errors.push(at(
                    key,
                    "unsupported feature: `timeframe` (aggregations over time)",
                )),
                _ => {
                    match compile_search(value, source) {
                        Ok(s) => searches.push(s),
                        Err(mut e) => {
                            errors.append(&mut e);
                            searches.push(Search::Keywords(Vec::new()));
                        }
                    }
                    names.push(name);
                }
            }
        }
        let condition = match cond_node {
            None => {
                errors.push(at(node, "`detection` has no `condition`"));
                None
            }
            Some(c) => match compile_condition(c, &names) {
                Ok(expr) => Some(expr),
                Err(e) => {
                    errors.push(e);
                    None
                }
            },
        };
        match condition {
            Some(condition) if errors.is_empty() => Ok(Detection {
                searches,
                condition,
            }),
            _ => Err(errors),
        }
    }

    /// Whether the event matches; the fields that made it are appended to
    /// `matched` (nothing is appended when it does not match).
    pub fn matches(&self, view: &EventView<'_>, fields: &[Field], matched: &mut Matched) -> bool {
        self.eval(&self.condition, view, fields, matched, true)
    }

    fn eval(
        &self,
        expr: &Expr,
        view: &EventView<'_>,
        fields: &[Field],
        out: &mut Matched,
        record: bool,
    ) -> bool {
        let mark = out.len();
        let hit = match expr {
            Expr::Sel(i) => self.search(*i, view, fields, out, record),
            // What makes a `not` true is an absence: nothing to show.
            Expr::Not(inner) => !self.eval(inner, view, fields, out, false),
            Expr::And(items) => items
                .iter()
                .all(|e| self.eval(e, view, fields, out, record)),
            Expr::Or(items) => items
                .iter()
                .any(|e| self.eval(e, view, fields, out, record)),
            Expr::AnyOf(ids) => ids
                .iter()
                .any(|&i| self.search(i, view, fields, out, record)),
            Expr::AllOf(ids) => ids
                .iter()
                .all(|&i| self.search(i, view, fields, out, record)),
        };
        if !hit {
            out.truncate(mark);
        }
        hit
    }

    fn search(
        &self,
        i: usize,
        view: &EventView<'_>,
        fields: &[Field],
        out: &mut Matched,
        record: bool,
    ) -> bool {
        match &self.searches[i] {
            Search::Groups(groups) => {
                let Some(group) = groups
                    .iter()
                    .find(|g| g.iter().all(|it| it.matches(view, fields)))
                else {
                    return false;
                };
                if record {
                    for item in group {
                        item.explain(view, fields, out);
                    }
                }
                true
            }
            Search::Keywords(words) => {
                for &field in fields {
                    let value = view.get(field);
                    if words.iter().any(|w| w.matches(value)) {
                        if let (true, Some(v)) = (record, value) {
                            out.push((field.name(), v.raw.clone()));
                        }
                        return true;
                    }
                }
                false
            }
        }
    }
}

fn compile_condition(node: &Node<'_>, names: &[String]) -> Result<Expr, Located> {
    // A list of conditions is their OR (older Sigma rules use this form).
    let nodes: Vec<&Node<'_>> = match yaml::sequence(node) {
        Some(items) if !items.is_empty() => items.iter().collect(),
        Some(_) => return Err(at(node, "`condition` is an empty list")),
        None => vec![node],
    };
    let mut exprs = Vec::new();
    for n in nodes {
        let text = yaml::string(n, "condition")?;
        let expr = condition::parse(&text, names).map_err(|e| {
            let mut loc = at(n, format!("condition: {}", e.message));
            // Offsets are exact for plain one-line scalars, close otherwise.
            loc.column = loc.column.map(|c| c + e.offset);
            loc
        })?;
        exprs.push(expr);
    }
    Ok(if exprs.len() == 1 {
        exprs.remove(0)
    } else {
        Expr::Or(exprs)
    })
}

fn compile_search(node: &Node<'_>, source: &Source) -> Result<Search, Vec<Located>> {
    if yaml::is_alias(node) {
        return Err(vec![yaml::alias(node)]);
    }
    if let Some(items) = yaml::sequence(node) {
        if items.is_empty() {
            return Err(vec![at(node, "a selection cannot be an empty list")]);
        }
        if items.iter().all(|n| yaml::mapping(n, "").is_ok()) {
            let mut groups = Vec::new();
            let mut errors = Vec::new();
            for n in items {
                match compile_group(n, source) {
                    Ok(g) => groups.push(g),
                    Err(mut e) => errors.append(&mut e),
                }
            }
            return if errors.is_empty() {
                Ok(Search::Groups(groups))
            } else {
                Err(errors)
            };
        }
        return items
            .iter()
            .map(keyword)
            .collect::<Result<_, _>>()
            .map(Search::Keywords)
            .map_err(|e| vec![e]);
    }
    if yaml::mapping(node, "").is_ok() {
        return compile_group(node, source).map(|g| Search::Groups(vec![g]));
    }
    keyword(node)
        .map(|p| Search::Keywords(vec![p]))
        .map_err(|e| vec![e])
}

fn keyword(node: &Node<'_>) -> Result<Pattern, Located> {
    match yaml::lit(node) {
        Some(Lit::Str(s)) => Pattern::text(&s, Anchor::Contains, false).map_err(|m| at(node, m)),
        _ => Err(at(
            node,
            "a selection must be a mapping, a list of mappings or a list of keywords",
        )),
    }
}

fn compile_group(node: &Node<'_>, source: &Source) -> Result<Vec<Item>, Vec<Located>> {
    let entries = yaml::mapping(node, "selection").map_err(|e| vec![e])?;
    if entries.is_empty() {
        return Err(vec![at(node, "a selection cannot be an empty mapping")]);
    }
    let mut items = Vec::new();
    let mut errors = Vec::new();
    for (key, value) in entries {
        match compile_item(key, value, source) {
            Ok(item) => items.push(item),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(items)
    } else {
        Err(errors)
    }
}

/// What a field's modifiers ask for.
#[derive(Debug, Default)]
struct Mods {
    anchor: Option<Anchor>,
    all: bool,
    /// `re` with its `i`, `m`, `s` flags.
    re: Option<(bool, bool, bool)>,
    cidr: bool,
    windash: bool,
    exists: bool,
    cased: bool,
}

/// Modifiers of the Sigma specification this engine does not implement.
const UNSUPPORTED_MODIFIERS: &[&str] = &[
    "base64",
    "base64offset",
    "utf16le",
    "utf16be",
    "utf16",
    "wide",
    "expand",
    "lt",
    "lte",
    "gt",
    "gte",
    "fieldref",
    "minute",
    "hour",
    "day",
    "week",
    "month",
    "year",
    "neq",
];

fn parse_mods(key: &Node<'_>, mods: &[&str]) -> Result<Mods, Located> {
    let mut m = Mods::default();
    for raw in mods {
        let name = raw.to_ascii_lowercase();
        let anchor = match name.as_str() {
            "contains" => Some(Anchor::Contains),
            "startswith" => Some(Anchor::StartsWith),
            "endswith" => Some(Anchor::EndsWith),
            _ => None,
        };
        match (name.as_str(), anchor) {
            (_, Some(a)) if m.anchor.is_none() => m.anchor = Some(a),
            (_, Some(_)) => {
                return Err(at(
                    key,
                    "conflicting modifiers: only one of contains, startswith, endswith",
                ))
            }
            ("all", _) => m.all = true,
            ("re", _) => m.re = Some((false, false, false)),
            ("i" | "ignorecase" | "m" | "multiline" | "s" | "dotall", _) if m.re.is_some() => {
                if let Some(flags) = m.re.as_mut() {
                    match name.as_bytes()[0] {
                        b'i' => flags.0 = true,
                        b'm' => flags.1 = true,
                        _ => flags.2 = true,
                    }
                }
            }
            ("cidr", _) => m.cidr = true,
            ("windash", _) => m.windash = true,
            ("exists", _) => m.exists = true,
            ("cased", _) => m.cased = true,
            (n, _) if UNSUPPORTED_MODIFIERS.contains(&n) => {
                return Err(at(
                    key,
                    format!("unsupported feature: field modifier `{raw}`"),
                ))
            }
            _ => return Err(at(key, format!("unknown field modifier `{raw}`"))),
        }
    }
    let exclusive = [m.re.is_some(), m.cidr, m.exists]
        .iter()
        .filter(|b| **b)
        .count();
    if exclusive > 1 || (exclusive == 1 && (m.anchor.is_some() || m.windash || m.cased)) {
        return Err(at(
            key,
            "`re`, `cidr` and `exists` cannot be combined with each other or with string modifiers",
        ));
    }
    Ok(m)
}

fn compile_item(key: &Node<'_>, value: &Node<'_>, source: &Source) -> Result<Item, Located> {
    let key_text = yaml::string(key, "field name")?;
    let mut parts = key_text.split('|');
    let field_name = parts.next().unwrap_or_default();
    let mods: Vec<&str> = parts.collect();
    // An empty field name (`'|all':`) is a keyword search over every field.
    let field = match field_name {
        "" => None,
        name => Some(source.field(name).ok_or_else(|| {
            at(
                key,
                format!(
                    "field `{name}` is not available for logsource {} (available: {})",
                    source.label,
                    source.field_names()
                ),
            )
        })?),
    };
    let mut mods = parse_mods(key, &mods)?;
    if field.is_none() && mods.anchor.is_none() {
        // Keywords match anywhere in a value, as in a keyword list.
        mods.anchor = Some(Anchor::Contains);
    }
    if yaml::is_alias(value) {
        return Err(yaml::alias(value));
    }
    let value_nodes: Vec<&Node<'_>> = match yaml::sequence(value) {
        Some([]) => {
            return Err(at(
                value,
                format!("`{key_text}` has an empty list of values"),
            ))
        }
        Some(items) => items.iter().collect(),
        None => vec![value],
    };
    let values = value_nodes
        .into_iter()
        .map(|n| compile_value(n, &mods, &key_text))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Item {
        field,
        values,
        all: mods.all,
    })
}

fn compile_value(node: &Node<'_>, mods: &Mods, key: &str) -> Result<Vec<Pattern>, Located> {
    let lit = yaml::lit(node).ok_or_else(|| {
        at(
            node,
            format!("`{key}`: a value must be a string, number, boolean or null"),
        )
    })?;
    if mods.exists {
        return match lit {
            Lit::Bool(b) => Ok(vec![Pattern::Exists(b)]),
            _ => Err(at(node, format!("`{key}`: `exists` takes true or false"))),
        };
    }
    let text = match lit {
        Lit::Null if mods.re.is_none() && !mods.cidr => return Ok(vec![Pattern::Null]),
        Lit::Null => {
            return Err(at(
                node,
                format!("`{key}`: null cannot be a regex or network"),
            ))
        }
        Lit::Bool(b) => b.to_string(),
        Lit::Str(s) => s,
    };
    let one = |p: Result<Pattern, String>| {
        p.map(|p| vec![p])
            .map_err(|m| at(node, format!("`{key}`: {m}")))
    };
    if let Some((i, m, s)) = mods.re {
        return one(Pattern::regex(&text, i, m, s));
    }
    if mods.cidr {
        return one(Cidr::parse(&text).map(Pattern::Cidr));
    }
    let anchor = mods.anchor.unwrap_or(Anchor::Whole);
    let variants = if mods.windash {
        windash_variants(&text)
    } else {
        vec![text]
    };
    variants
        .iter()
        .map(|v| {
            Pattern::text(v, anchor, mods.cased).map_err(|m| at(node, format!("`{key}`: {m}")))
        })
        .collect()
}
