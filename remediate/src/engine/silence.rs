//! Silences and maintenance windows: label matchers plus a time range.
//!
//! One idea, as in Alertmanager: a silence mutes every step on a series
//! whose labels match all of its matchers while the silence is active. A
//! maintenance window is a silence that starts in the future. Muting holds
//! actions back (recorded as `silenced`); incidents still open and are
//! recorded, so nobody loses sight of what happened during the window.

use std::collections::BTreeMap;
use std::fmt;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::time::rfc3339;

/// How a matcher compares a label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MatchOp {
    /// `name=value`
    #[serde(rename = "=")]
    Eq,
    /// `name!=value`
    #[serde(rename = "!=")]
    NotEq,
    /// `name=~regex` (anchored, as in PromQL)
    #[serde(rename = "=~")]
    Re,
    /// `name!~regex`
    #[serde(rename = "!~")]
    NotRe,
}

impl MatchOp {
    fn as_str(self) -> &'static str {
        match self {
            MatchOp::Eq => "=",
            MatchOp::NotEq => "!=",
            MatchOp::Re => "=~",
            MatchOp::NotRe => "!~",
        }
    }
}

/// One label matcher, PromQL style. A missing label has the value `""`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "MatcherRepr", into = "MatcherRepr")]
pub struct Matcher {
    /// Label name.
    pub name: String,
    /// Comparison.
    pub op: MatchOp,
    /// Value or regular expression.
    pub value: String,
    /// The compiled, anchored expression for `=~` and `!~`.
    re: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        (&self.name, self.op, &self.value) == (&other.name, other.op, &other.value)
    }
}

#[derive(Serialize, Deserialize)]
struct MatcherRepr {
    name: String,
    op: MatchOp,
    value: String,
}

impl TryFrom<MatcherRepr> for Matcher {
    type Error = String;
    fn try_from(r: MatcherRepr) -> Result<Self, String> {
        Matcher::new(&r.name, r.op, &r.value)
    }
}

impl From<Matcher> for MatcherRepr {
    fn from(m: Matcher) -> Self {
        MatcherRepr {
            name: m.name,
            op: m.op,
            value: m.value,
        }
    }
}

impl Matcher {
    /// A matcher; the name must be a label name and a regex must compile.
    ///
    /// # Errors
    ///
    /// What is wrong, for the user.
    pub fn new(name: &str, op: MatchOp, value: &str) -> Result<Matcher, String> {
        if !crate::template::is_label_name(name) {
            return Err(format!(
                "invalid label name {name:?}: must match [a-zA-Z_][a-zA-Z0-9_]*"
            ));
        }
        let re = match op {
            MatchOp::Re | MatchOp::NotRe => Some(
                Regex::new(&format!("^(?:{value})$"))
                    .map_err(|e| format!("invalid regular expression {value:?}: {e}"))?,
            ),
            MatchOp::Eq | MatchOp::NotEq => None,
        };
        Ok(Matcher {
            name: name.to_owned(),
            op,
            value: value.to_owned(),
            re,
        })
    }

    /// Parses `name=value`, `name!=value`, `name=~re` or `name!~re`.
    ///
    /// # Errors
    ///
    /// What is wrong, for the user.
    pub fn parse(text: &str) -> Result<Matcher, String> {
        let ops = [
            ("!=", MatchOp::NotEq),
            ("=~", MatchOp::Re),
            ("!~", MatchOp::NotRe),
            ("=", MatchOp::Eq),
        ];
        // The first operator in the text wins; at one position the
        // two-character ones are tried first.
        let found = text
            .char_indices()
            .find_map(|(i, _)| {
                ops.iter()
                    .find(|(s, _)| text[i..].starts_with(s))
                    .map(|&(s, op)| (i, s.len(), op))
            })
            .ok_or_else(|| {
                format!("matcher {text:?}: expected NAME=VALUE, NAME!=VALUE, NAME=~RE or NAME!~RE")
            })?;
        let (i, len, op) = found;
        let value = text[i + len..].trim_matches('"');
        Matcher::new(text[..i].trim(), op, value).map_err(|e| format!("matcher {text:?}: {e}"))
    }

    /// Whether `labels` satisfy this matcher.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.name).map_or("", String::as_str);
        match (self.op, &self.re) {
            (MatchOp::Eq, _) => v == self.value,
            (MatchOp::NotEq, _) => v != self.value,
            (MatchOp::Re, Some(re)) => re.is_match(v),
            (MatchOp::NotRe, Some(re)) => !re.is_match(v),
            // `new` compiles a regex for both regex operators.
            (MatchOp::Re | MatchOp::NotRe, None) => false,
        }
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{:?}", self.name, self.op.as_str(), self.value)
    }
}

/// A silence: while active, no step runs on a series matching every
/// matcher.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    /// `sil-...`, given by the engine.
    pub id: String,
    /// All must match (at least one).
    pub matchers: Vec<Matcher>,
    /// Active from (ms, inclusive).
    pub starts_ms: i64,
    /// Active until (ms, exclusive).
    pub ends_ms: i64,
    /// Who set it.
    pub created_by: String,
    /// Why.
    pub comment: String,
}

impl Silence {
    /// Whether it mutes `labels` at `ts_ms`.
    pub fn mutes(&self, labels: &BTreeMap<String, String>, ts_ms: i64) -> bool {
        self.starts_ms <= ts_ms
            && ts_ms < self.ends_ms
            && !self.matchers.is_empty()
            && self.matchers.iter().all(|m| m.matches(labels))
    }

    /// One line for decisions and listings.
    pub fn describe(&self) -> String {
        let m: Vec<String> = self.matchers.iter().map(ToString::to_string).collect();
        format!(
            "silence {} {{{}}} from {} until {} by {}: {}",
            self.id,
            m.join(", "),
            rfc3339(self.starts_ms),
            rfc3339(self.ends_ms),
            self.created_by,
            self.comment
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn parses_every_operator() {
        let m = Matcher::parse("service=web").unwrap();
        assert_eq!(
            (m.name.as_str(), m.op, m.value.as_str()),
            ("service", MatchOp::Eq, "web")
        );
        assert_eq!(Matcher::parse("service!=web").unwrap().op, MatchOp::NotEq);
        assert_eq!(Matcher::parse("instance=~web-.*").unwrap().op, MatchOp::Re);
        assert_eq!(
            Matcher::parse("instance!~\"web-1\"").unwrap().value,
            "web-1"
        );
        assert!(Matcher::parse("service")
            .unwrap_err()
            .contains("expected NAME=VALUE"));
        assert!(Matcher::parse("1x=a")
            .unwrap_err()
            .contains("invalid label name"));
        assert!(Matcher::parse("a=~(")
            .unwrap_err()
            .contains("invalid regular expression"));
    }

    #[test]
    fn matching_is_anchored_and_missing_labels_are_empty() {
        let l = labels(&[("service", "web"), ("instance", "web-12")]);
        assert!(Matcher::parse("instance=~web-1.").unwrap().matches(&l));
        assert!(!Matcher::parse("instance=~web-1").unwrap().matches(&l));
        assert!(Matcher::parse("zone=").unwrap().matches(&l));
        assert!(Matcher::parse("zone!~.+").unwrap().matches(&l));
        assert!(!Matcher::parse("service!=web").unwrap().matches(&l));
    }

    #[test]
    fn a_silence_mutes_within_its_range_only() {
        let s = Silence {
            id: "sil-1".into(),
            matchers: vec![Matcher::parse("service=web").unwrap()],
            starts_ms: 1000,
            ends_ms: 2000,
            created_by: "ops".into(),
            comment: "deploy".into(),
        };
        let web = labels(&[("service", "web")]);
        assert!(!s.mutes(&web, 999));
        assert!(s.mutes(&web, 1000));
        assert!(!s.mutes(&web, 2000));
        assert!(!s.mutes(&labels(&[("service", "api")]), 1500));
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains(r#""op":"=""#), "{json}");
        let back: Silence = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
    }
}
