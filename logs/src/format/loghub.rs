//! Loghub's `log_format` header layouts, read exactly as logparser reads them
//! (`generate_logformat_regex` in logparser's parsers): each `<Field>` becomes
//! the lazy group `(?P<Field>.*?)`, each run of spaces `\s+`, the rest is regex
//! text as written (`\[<Pid>\]`), the whole anchored at both ends and matched
//! against the line without its surrounding whitespace.
//!
//! Layouts made only of fields, literal text and spaces (every Loghub layout
//! but one) are matched by a small backtracking matcher instead of the regex
//! engine: same result, a fraction of the time.

use std::borrow::Cow;

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::time::{TimeField, TimeParser};
use super::{stamp, Record};
use crate::error::{ConfigError, LineError};

/// A `log_format` source format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoghubFormatConfig {
    /// The layout, e.g. `<Date> <Time> <Level> <Component>: <Content>`.
    pub log_format: String,
    /// The field that holds the message (default `Content`).
    #[serde(default = "default_message")]
    pub message: String,
    /// Where the event time is, if the header has it.
    #[serde(default)]
    pub time: Option<TimeField>,
}

fn default_message() -> String {
    "Content".into()
}

impl LoghubFormatConfig {
    /// A layout whose message field is `Content`, without event time.
    pub fn new(log_format: impl Into<String>) -> Self {
        Self {
            log_format: log_format.into(),
            message: default_message(),
            time: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Field,
    Literal(String),
    Spaces,
}

#[derive(Debug, Clone)]
enum Matcher {
    Simple { pieces: Vec<Piece>, regex: Regex },
    Regex(Regex),
}

/// A compiled `log_format`.
#[derive(Debug, Clone)]
pub struct LoghubFormat {
    layout: String,
    names: Vec<String>,
    message: usize,
    matcher: Matcher,
    time: Option<TimeParser>,
}

impl LoghubFormat {
    /// Compiles the layout; it must hold the message field.
    pub fn new(config: &LoghubFormatConfig) -> Result<Self, ConfigError> {
        let layout = &config.log_format;
        let bad = |reason: String| ConfigError::LogFormat {
            format: layout.clone(),
            reason,
        };
        // Split like Python's re.split(r'(<[^<>]+>)', layout).
        let field_re = Regex::new(r"<([^<>]+)>").expect("static regex");
        let mut names = Vec::new();
        let mut regex_src = String::from("^");
        let mut pieces = Vec::new();
        let mut simple = true;
        let mut last = 0;
        let spaces = Regex::new(" +").expect("static regex");
        for cap in field_re.captures_iter(layout) {
            let m = cap.get(0).expect("group 0");
            let text = &layout[last..m.start()];
            regex_src.push_str(&spaces.replace_all(text, r"\s+"));
            simple &= literal_pieces(text, &mut pieces);
            let name = cap[1].to_string();
            if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(bad(format!(
                    "field name `{name}` must be letters, digits and `_`"
                )));
            }
            if names.contains(&name) {
                return Err(bad(format!("field `{name}` appears twice")));
            }
            regex_src.push_str(&format!("(?P<{name}>.*?)"));
            pieces.push(Piece::Field);
            names.push(name);
            last = m.end();
        }
        let tail = &layout[last..];
        regex_src.push_str(&spaces.replace_all(tail, r"\s+"));
        simple &= literal_pieces(tail, &mut pieces);
        regex_src.push('$');
        let Some(message) = names.iter().position(|n| *n == config.message) else {
            return Err(bad(format!(
                "no `<{}>` field for the message",
                config.message
            )));
        };
        let regex = Regex::new(&regex_src).map_err(|e| bad(format!("does not compile: {e}")))?;
        let time = config.time.as_ref().map(TimeParser::new).transpose()?;
        if let Some(t) = &time {
            for f in &t.fields {
                if !names.contains(f) {
                    return Err(bad(format!("no `<{f}>` field for the event time")));
                }
            }
        }
        let matcher = if simple {
            Matcher::Simple { pieces, regex }
        } else {
            Matcher::Regex(regex)
        };
        Ok(Self {
            layout: layout.clone(),
            names,
            message,
            matcher,
            time,
        })
    }

    /// The layout as written.
    pub fn layout(&self) -> &str {
        &self.layout
    }

    /// Field names in layout order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Reads one line.
    pub fn parse<'a>(&self, line: &'a str) -> Result<Record<'a>, LineError> {
        let values = self.split(line).ok_or_else(|| LineError::NoMatch {
            kind: "log format",
            format: self.layout.clone(),
        })?;
        let ts_ms = stamp(self.time.as_ref(), |f| {
            self.names
                .iter()
                .position(|n| n == f)
                .map(|i| values[i].to_string())
        })?;
        let message = Cow::Borrowed(values[self.message]);
        let fields = self
            .names
            .iter()
            .zip(&values)
            .enumerate()
            .filter(|&(i, _)| i != self.message)
            .map(|(_, (n, v))| (Cow::Owned(n.clone()), Cow::Borrowed(*v)))
            .collect();
        Ok(Record {
            message,
            ts_ms,
            fields,
        })
    }

    /// Only the message of `line` (the bench's and `heal logs templates`'
    /// path: no field vector).
    pub fn message<'a>(&self, line: &'a str) -> Option<&'a str> {
        self.split(line).map(|v| v[self.message])
    }

    fn split_regex<'a>(&self, re: &Regex, line: &'a str) -> Option<Vec<&'a str>> {
        let caps = re.captures(line)?;
        Some(
            self.names
                .iter()
                .map(|n| caps.name(n).map_or("", |m| m.as_str()))
                .collect(),
        )
    }

    fn split<'a>(&self, line: &'a str) -> Option<Vec<&'a str>> {
        let line = line.trim();
        match &self.matcher {
            Matcher::Regex(re) => self.split_regex(re, line),
            Matcher::Simple { pieces, regex } => {
                let mut out = Vec::with_capacity(self.names.len());
                let mut budget = MATCH_BUDGET;
                match match_pieces(pieces, line.as_bytes(), 0, &mut out, &mut budget) {
                    Some(true) => Some(out.iter().map(|&(s, e)| &line[s..e]).collect()),
                    Some(false) => None,
                    None => self.split_regex(regex, line),
                }
            }
        }
    }
}

/// Steps the simple matcher may take on one line before the regex decides.
const MATCH_BUDGET: u32 = 20_000;

/// Appends the pieces of a literal stretch of the layout; false when it holds
/// regex syntax other than escaped punctuation (then the regex engine runs).
fn literal_pieces(text: &str, pieces: &mut Vec<Piece>) -> bool {
    let mut lit = String::new();
    let mut chars = text.chars().peekable();
    let flush = |lit: &mut String, pieces: &mut Vec<Piece>| {
        if !lit.is_empty() {
            pieces.push(Piece::Literal(std::mem::take(lit)));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            ' ' => {
                while chars.peek() == Some(&' ') {
                    chars.next();
                }
                flush(&mut lit, pieces);
                pieces.push(Piece::Spaces);
            }
            '\\' => match chars.next() {
                Some(e) if e.is_ascii_punctuation() => lit.push(e),
                _ => return false,
            },
            '.' | '^' | '$' | '*' | '+' | '?' | '(' | ')' | '[' | ']' | '{' | '}' | '|' => {
                return false
            }
            c => lit.push(c),
        }
    }
    flush(&mut lit, pieces);
    true
}

/// Backtracking match with the regex's semantics: fields are lazy (shortest
/// first), `Spaces` is `\s+` (greedy), the match is anchored at both ends.
/// `out` receives each field's (start, end). `budget` bounds the steps: a
/// line that fails to match could otherwise take combinatorial time, and the
/// regex engine (linear time) then decides.
fn match_pieces(
    pieces: &[Piece],
    s: &[u8],
    pos: usize,
    out: &mut Vec<(usize, usize)>,
    budget: &mut u32,
) -> Option<bool> {
    if *budget == 0 {
        return None;
    }
    *budget -= 1;
    let Some((first, rest)) = pieces.split_first() else {
        return Some(pos == s.len());
    };
    match first {
        Piece::Literal(l) => {
            if s[pos..].starts_with(l.as_bytes()) {
                match_pieces(rest, s, pos + l.len(), out, budget)
            } else {
                Some(false)
            }
        }
        Piece::Spaces => {
            let mut end = pos;
            while end < s.len() && is_space(s[end]) {
                end += 1;
            }
            // Greedy: longest run first, then shorter ones.
            let mut e = end;
            while e > pos {
                if match_pieces(rest, s, e, out, budget)? {
                    return Some(true);
                }
                e -= 1;
            }
            Some(false)
        }
        Piece::Field => {
            // Lazy `.*?`: shortest first; `.` does not match a line break.
            let idx = out.len();
            let line_end = s[pos..]
                .iter()
                .position(|&c| c == b'\n')
                .map_or(s.len(), |k| pos + k);
            let Some(next) = rest.first() else {
                // Last piece: `$` forces the field to the end.
                out.push((pos, line_end));
                return Some(line_end == s.len());
            };
            let mut end = pos;
            while end <= line_end {
                // Only positions where the next piece can start are tried.
                let can_start = match next {
                    Piece::Literal(l) => s[end..].starts_with(l.as_bytes()),
                    Piece::Spaces => end < s.len() && is_space(s[end]),
                    Piece::Field => true,
                };
                if can_start {
                    out.truncate(idx);
                    out.push((pos, end));
                    if match_pieces(rest, s, end, out, budget)? {
                        return Some(true);
                    }
                }
                end += 1;
                while end < s.len() && !is_char_start(s[end]) {
                    end += 1;
                }
            }
            out.truncate(idx);
            Some(false)
        }
    }
}

fn is_char_start(b: u8) -> bool {
    (b as i8) >= -0x40
}

/// `\s` for ASCII (Unicode spaces inside a header are not expected).
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(layout: &str) -> LoghubFormat {
        LoghubFormat::new(&LoghubFormatConfig::new(layout)).unwrap()
    }

    #[test]
    fn simple_layout_splits_like_the_regex() {
        let f = fmt(r"<Date> <Time> <Level> \[<Process>\] <Component>: <Content>");
        assert!(matches!(f.matcher, Matcher::Simple { .. }));
        let line = "2015-10-18 18:01:47,978 INFO [main] org.a.b.C: Created MRAppMaster: for x  ";
        let r = f.parse(line).unwrap();
        assert_eq!(r.message, "Created MRAppMaster: for x");
        assert_eq!(r.field("Process"), Some("main"));
        assert_eq!(r.field("Component"), Some("org.a.b.C"));
        assert_eq!(r.field("Time"), Some("18:01:47,978"));
        // The regex engine agrees.
        let Matcher::Regex(_) = regex_twin(&f).matcher else {
            panic!("twin must use the regex")
        };
        assert_eq!(regex_twin(&f).parse(line).unwrap(), r);
    }

    /// The same layout forced through the regex engine.
    fn regex_twin(f: &LoghubFormat) -> LoghubFormat {
        let mut twin = fmt(&f.layout);
        let mut src = String::from("^");
        let field_re = Regex::new(r"<([^<>]+)>").unwrap();
        let spaces = Regex::new(" +").unwrap();
        let mut last = 0;
        for cap in field_re.captures_iter(&f.layout) {
            let m = cap.get(0).unwrap();
            src.push_str(&spaces.replace_all(&f.layout[last..m.start()], r"\s+"));
            src.push_str(&format!("(?P<{}>.*?)", &cap[1]));
            last = m.end();
        }
        src.push_str(&spaces.replace_all(&f.layout[last..], r"\s+"));
        src.push('$');
        twin.matcher = Matcher::Regex(Regex::new(&src).unwrap());
        twin
    }

    #[test]
    fn runs_of_spaces_and_lazy_fields() {
        // Windows-like: a run of spaces inside the header.
        let f = fmt("<Date> <Time>, <Level>                  <Component>    <Content>");
        let line = "2016-09-28 04:30:30, Info                  CBS    Loaded Servicing Stack v6.1 with Core: x.dll";
        let r = f.parse(line).unwrap();
        assert_eq!(r.field("Level"), Some("Info"));
        assert_eq!(r.field("Component"), Some("CBS"));
        assert_eq!(r.message, "Loaded Servicing Stack v6.1 with Core: x.dll");
        assert_eq!(regex_twin(&f).parse(line).unwrap(), r);
        // The first `: ` ends the component, not the last.
        let g = fmt("<Component>: <Content>");
        let r = g.parse("a: b: c").unwrap();
        assert_eq!(
            (r.field("Component"), r.message.as_ref()),
            (Some("a"), "b: c")
        );
        assert_eq!(regex_twin(&g).parse("a: b: c").unwrap(), r);
    }

    #[test]
    fn regex_syntax_falls_back_to_the_regex_engine() {
        let f = fmt(r"<Date> <Component>(\[<PID>\])?: <Content>");
        assert!(matches!(f.matcher, Matcher::Regex(_)));
        assert_eq!(
            f.parse("d1 sshd[42]: hi there").unwrap().field("PID"),
            Some("42")
        );
        assert_eq!(f.parse("d1 kernel: hello").unwrap().message, "hello");
    }

    #[test]
    fn errors() {
        let f = fmt("<Level> <Content>");
        let e = f.parse("nospace").unwrap_err();
        assert_eq!(
            e.to_string(),
            "does not match the log format \"<Level> <Content>\""
        );
        assert_eq!(
            e.at("app.log", 7).to_string(),
            "app.log:7: does not match the log format \"<Level> <Content>\""
        );
        let e = LoghubFormat::new(&LoghubFormatConfig::new("<Level> <Msg>")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "log format \"<Level> <Msg>\": no `<Content>` field for the message"
        );
        let e = LoghubFormat::new(&LoghubFormatConfig::new("<a-b> <Content>")).unwrap_err();
        assert!(e.to_string().contains("field name `a-b`"), "{e}");
    }

    #[test]
    fn event_time_from_two_fields() {
        let f = LoghubFormat::new(&LoghubFormatConfig {
            log_format: "<Date> <Time> <Pid> <Level> <Component>: <Content>".into(),
            message: "Content".into(),
            time: Some(TimeField {
                field: "Date,Time".into(),
                format: "%y%m%d %H%M%S".into(),
            }),
        })
        .unwrap();
        let r = f.parse("240102 030405 143 INFO dfs.X: hello").unwrap();
        assert_eq!(r.ts_ms, Some(1_704_164_645_000));
        let e = f.parse("240102 0304x5 143 INFO dfs.X: hello").unwrap_err();
        assert!(matches!(e, LineError::Time { .. }), "{e}");
    }
}
