//! Reading saphyr's marked nodes: every value keeps its position, so every
//! refusal can say where.

use saphyr::{MarkedYaml, Scalar, YamlData};

use super::error::Located;

/// A marked YAML node as the rule compiler sees it.
pub(crate) type Node<'i> = MarkedYaml<'i>;

/// A scalar as Sigma cares about it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Lit {
    Null,
    Bool(bool),
    /// Strings and numbers (numbers compare as their decimal text).
    Str(String),
}

/// Where a node starts.
pub(crate) fn at(node: &Node<'_>, message: impl Into<String>) -> Located {
    Located::at(&node.span.start, message)
}

/// The scalar in `node`, or `None` for a sequence, mapping or alias.
pub(crate) fn lit(node: &Node<'_>) -> Option<Lit> {
    match &node.data {
        YamlData::Value(Scalar::Null) => Some(Lit::Null),
        YamlData::Value(Scalar::Boolean(b)) => Some(Lit::Bool(*b)),
        YamlData::Value(Scalar::Integer(i)) => Some(Lit::Str(i.to_string())),
        YamlData::Value(Scalar::FloatingPoint(f)) => Some(Lit::Str(f.to_string())),
        YamlData::Value(Scalar::String(s)) => Some(Lit::Str(s.to_string())),
        YamlData::Representation(s, _, _) => Some(Lit::Str(s.to_string())),
        YamlData::Tagged(_, inner) => lit(inner),
        _ => None,
    }
}

/// A string (numbers included), or an error naming `what`.
pub(crate) fn string(node: &Node<'_>, what: &str) -> Result<String, Located> {
    match lit(node) {
        Some(Lit::Str(s)) => Ok(s),
        _ => Err(at(node, format!("`{what}` must be a string"))),
    }
}

/// A mapping's entries in file order, or an error naming `what`.
pub(crate) fn mapping<'n, 'i>(
    node: &'n Node<'i>,
    what: &str,
) -> Result<Vec<(&'n Node<'i>, &'n Node<'i>)>, Located> {
    match &node.data {
        YamlData::Mapping(map) => Ok(map.iter().collect()),
        YamlData::Tagged(_, inner) => mapping(inner, what),
        YamlData::Alias(_) => Err(alias(node)),
        _ => Err(at(node, format!("`{what}` must be a mapping"))),
    }
}

/// A sequence's items, if `node` is one.
pub(crate) fn sequence<'n, 'i>(node: &'n Node<'i>) -> Option<&'n [Node<'i>]> {
    match &node.data {
        YamlData::Sequence(items) => Some(items),
        YamlData::Tagged(_, inner) => sequence(inner),
        _ => None,
    }
}

/// A string or a list of strings (Sigma allows either for list fields).
pub(crate) fn strings(node: &Node<'_>, what: &str) -> Result<Vec<String>, Located> {
    match sequence(node) {
        Some(items) => items.iter().map(|n| string(n, what)).collect(),
        None if matches!(lit(node), Some(Lit::Null)) => Ok(Vec::new()),
        None => Ok(vec![string(node, what)?]),
    }
}

/// Refusal of YAML aliases: expanding them would let a small file grow
/// without bound (the "billion laughs"), and no Sigma rule needs them.
pub(crate) fn alias(node: &Node<'_>) -> Located {
    at(node, "unsupported feature: YAML aliases (`*name`)")
}

/// Whether `node` is an alias.
pub(crate) fn is_alias(node: &Node<'_>) -> bool {
    matches!(node.data, YamlData::Alias(_))
}
