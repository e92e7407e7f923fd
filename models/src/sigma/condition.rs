//! The `condition` expression: `and`, `or`, `not`, parentheses,
//! `1 of <pattern>`, `all of <pattern>`, `1 of them`, `all of them`.
//!
//! Precedence is Sigma's: `not` binds tightest, then `and`, then `or`.
//! Aggregations (`| count() …`) and `near` are refused by name rather than
//! parsed loosely, so an imported rule never fires on a weaker condition
//! than its author wrote.

/// Nesting bound for parentheses and `not`: the parser is recursive and a
/// hostile rule must not overflow the stack.
const MAX_DEPTH: usize = 64;

/// A parsed condition over selection indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expr {
    /// One named selection.
    Sel(usize),
    Not(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
    /// At least one of these selections.
    AnyOf(Vec<usize>),
    /// Every one of these selections.
    AllOf(Vec<usize>),
}

/// A parse problem with its character offset in the condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CondError {
    pub offset: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    LParen,
    RParen,
    And,
    Or,
    Not,
    One,
    All,
    Of,
    Them,
    Ident(String),
}

/// Parses `text` against the rule's selection names.
pub(crate) fn parse(text: &str, names: &[String]) -> Result<Expr, CondError> {
    let toks = tokenize(text)?;
    let mut p = Parser {
        toks,
        pos: 0,
        names,
        end: text.chars().count(),
    };
    let expr = p.or(0)?;
    match p.toks.get(p.pos) {
        None => Ok(expr),
        Some((_, off)) => Err(CondError {
            offset: *off,
            message: "unexpected text after the end of the condition".into(),
        }),
    }
}

fn tokenize(text: &str) -> Result<Vec<(Tok, usize)>, CondError> {
    let chars: Vec<char> = text.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let tok = match c {
            '(' => Tok::LParen,
            ')' => Tok::RParen,
            // Everything after a pipe is an aggregation: refuse it here,
            // before its words (`count()`, `> 5`) confuse the tokenizer.
            '|' => return Err(CondError {
                offset: i,
                message:
                    "unsupported feature: aggregation (`| count()`, `| min()` …) in the condition"
                        .into(),
            }),
            _ => {
                let start = i;
                while i < chars.len() && !chars[i].is_whitespace() && !"()|".contains(chars[i]) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let tok = match word.to_ascii_lowercase().as_str() {
                    "and" => Tok::And,
                    "or" => Tok::Or,
                    "not" => Tok::Not,
                    "1" => Tok::One,
                    "all" => Tok::All,
                    "of" => Tok::Of,
                    "them" => Tok::Them,
                    "near" => {
                        return Err(CondError {
                            offset: start,
                            message: "unsupported feature: `near` (temporal proximity) conditions"
                                .into(),
                        })
                    }
                    _ if word.chars().all(|c| c.is_ascii_digit()) => {
                        return Err(CondError {
                            offset: start,
                            message: format!(
                                "unsupported feature: `{word} of` (only `1 of` and `all of`)"
                            ),
                        })
                    }
                    _ => Tok::Ident(word),
                };
                toks.push((tok, start));
                continue;
            }
        };
        toks.push((tok, i));
        i += 1;
    }
    Ok(toks)
}

struct Parser<'a> {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    names: &'a [String],
    /// Offset reported for "ended too early".
    end: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(t, _)| t)
    }

    fn offset(&self) -> usize {
        self.toks.get(self.pos).map_or(self.end, |(_, o)| *o)
    }

    fn err(&self, message: impl Into<String>) -> CondError {
        CondError {
            offset: self.offset(),
            message: message.into(),
        }
    }

    fn or(&mut self, depth: usize) -> Result<Expr, CondError> {
        let mut items = vec![self.and(depth)?];
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            items.push(self.and(depth)?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::Or(items)
        })
    }

    fn and(&mut self, depth: usize) -> Result<Expr, CondError> {
        let mut items = vec![self.unary(depth)?];
        while self.peek() == Some(&Tok::And) {
            self.pos += 1;
            items.push(self.unary(depth)?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::And(items)
        })
    }

    fn unary(&mut self, depth: usize) -> Result<Expr, CondError> {
        if depth >= MAX_DEPTH {
            return Err(self.err(format!("condition nested deeper than {MAX_DEPTH}")));
        }
        let Some(tok) = self.peek().cloned() else {
            return Err(self.err("condition ends where a selection was expected"));
        };
        match tok {
            Tok::Not => {
                self.pos += 1;
                Ok(Expr::Not(Box::new(self.unary(depth + 1)?)))
            }
            Tok::LParen => {
                self.pos += 1;
                let inner = self.or(depth + 1)?;
                if self.peek() != Some(&Tok::RParen) {
                    return Err(self.err("missing `)`"));
                }
                self.pos += 1;
                Ok(inner)
            }
            Tok::One | Tok::All => {
                self.pos += 1;
                self.quantified(tok == Tok::All)
            }
            Tok::Ident(name) => {
                let Some(i) = self.names.iter().position(|n| *n == name) else {
                    return Err(self.err(format!("no selection named `{name}`")));
                };
                self.pos += 1;
                Ok(Expr::Sel(i))
            }
            _ => Err(self.err("expected a selection, `not`, `(`, `1 of` or `all of`")),
        }
    }

    fn quantified(&mut self, all: bool) -> Result<Expr, CondError> {
        if self.peek() != Some(&Tok::Of) {
            return Err(self.err("expected `of`"));
        }
        self.pos += 1;
        let picked: Vec<usize> = match self.peek().cloned() {
            // `them` leaves out identifiers starting with `_` (Sigma's rule).
            Some(Tok::Them) => (0..self.names.len())
                .filter(|&i| !self.names[i].starts_with('_'))
                .collect(),
            Some(Tok::Ident(pat)) => {
                let picked: Vec<usize> = (0..self.names.len())
                    .filter(|&i| glob(&pat, &self.names[i]))
                    .collect();
                if picked.is_empty() {
                    return Err(self.err(format!("`{pat}` names no selection")));
                }
                picked
            }
            _ => return Err(self.err("expected `them` or a selection pattern after `of`")),
        };
        if picked.is_empty() {
            return Err(self.err("`them` names no selection"));
        }
        self.pos += 1;
        Ok(if all {
            Expr::AllOf(picked)
        } else {
            Expr::AnyOf(picked)
        })
    }
}

/// Identifier patterns: `*` matches any run (case-sensitive, as names are).
fn glob(pat: &str, name: &str) -> bool {
    let parts: Vec<&str> = pat.split('*').collect();
    if parts.len() == 1 {
        return pat == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        ["sel_a", "sel_b", "filter", "_hidden"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    #[test]
    fn precedence_and_quantifiers() {
        let n = names();
        let cases: &[(&str, Expr)] = &[
            ("sel_a", Expr::Sel(0)),
            (
                "sel_a or sel_b and not filter",
                Expr::Or(vec![
                    Expr::Sel(0),
                    Expr::And(vec![Expr::Sel(1), Expr::Not(Box::new(Expr::Sel(2)))]),
                ]),
            ),
            (
                "(sel_a or sel_b) and not filter",
                Expr::And(vec![
                    Expr::Or(vec![Expr::Sel(0), Expr::Sel(1)]),
                    Expr::Not(Box::new(Expr::Sel(2))),
                ]),
            ),
            ("1 of sel_*", Expr::AnyOf(vec![0, 1])),
            ("all of them", Expr::AllOf(vec![0, 1, 2])),
            ("1 of them", Expr::AnyOf(vec![0, 1, 2])),
            ("1 of _*", Expr::AnyOf(vec![3])),
            (
                "NOT sel_a AND sel_b",
                Expr::And(vec![Expr::Not(Box::new(Expr::Sel(0))), Expr::Sel(1)]),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text, &n).as_ref(), Ok(want), "{text}");
        }
    }

    #[test]
    fn refusals_name_the_problem() {
        let n = names();
        let cases: &[(&str, &str, usize)] = &[
            ("sel_a | count() > 5", "aggregation", 6),
            ("sel_a near sel_b", "near", 6),
            ("2 of sel_*", "`2 of`", 0),
            ("sel_c", "no selection named `sel_c`", 0),
            ("1 of x*", "names no selection", 5),
            ("(sel_a", "missing `)`", 6),
            ("sel_a sel_b", "unexpected text", 6),
            ("sel_a and", "ends where", 9),
        ];
        for (text, needle, offset) in cases {
            let err = parse(text, &n).unwrap_err();
            assert!(err.message.contains(needle), "{text}: {}", err.message);
            assert_eq!(err.offset, *offset, "{text}");
        }
        let deep = format!("{}sel_a{}", "(".repeat(100), ")".repeat(100));
        assert!(parse(&deep, &n).unwrap_err().message.contains("nested"));
    }

    #[test]
    fn glob_patterns() {
        assert!(glob("sel*", "selection"));
        assert!(glob("*tion", "selection"));
        assert!(glob("s*l*n", "selection"));
        assert!(!glob("sel*x", "selection"));
        assert!(glob("*", "anything"));
        assert!(!glob("ab*ba", "aba"));
    }
}
