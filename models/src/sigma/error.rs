//! Why a Sigma rule was refused, with where in which file.

use std::fmt;

/// One problem with one rule file: the file, the position when the YAML
/// parser knows it, and what is wrong. Loading reports every problem it
/// finds, not only the first, so an operator fixes a rule set in one pass.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct RuleError {
    /// The file (or the name given to [`super::RuleSet::from_str`]).
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// What is wrong, naming the key, value or feature.
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

/// A problem found while compiling one rule, before the file name is known
/// to the code that found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Located {
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl Located {
    /// A problem at a YAML position (saphyr lines are 1-based, columns 0-based).
    pub fn at(mark: &saphyr::Marker, message: impl Into<String>) -> Self {
        Located {
            line: Some(mark.line()),
            column: Some(mark.col() + 1),
            message: message.into(),
        }
    }

    /// Attaches the file name.
    pub fn in_file(self, file: &str) -> RuleError {
        RuleError {
            file: file.to_string(),
            line: self.line,
            column: self.column,
            message: self.message,
        }
    }
}
