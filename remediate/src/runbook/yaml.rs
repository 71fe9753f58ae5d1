//! YAML text to a `serde_json::Value` plus the line and column of every field.
//!
//! Why not `serde_yaml` or yaml-rust2's `YamlLoader`: neither keeps positions
//! in a form that survives deserializing into our types, so an error could
//! only say "rules[3].then[1]: missing field" without a line. Walking the
//! marked event stream ourselves gives every node's position, keyed by the
//! same JSON path `serde_path_to_error` reports. It also lets us reject
//! duplicate keys, which YAML loaders silently resolve to the last one.

pub use super::load::path_and_message;
use std::collections::HashMap;

use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

impl From<Marker> for Pos {
    fn from(m: Marker) -> Pos {
        // yaml-rust2 lines are 1-based, columns 0-based.
        Pos {
            line: m.line(),
            column: m.col() + 1,
        }
    }
}

/// Position of every node, by JSON path (`rules[0].then[1].target`); for a
/// mapping entry, the position of its key.
#[derive(Debug, Clone, Default)]
pub struct Positions(HashMap<String, Pos>);

impl Positions {
    /// Position of `path`, or of its closest ancestor that has one.
    pub fn find(&self, path: &str) -> Option<Pos> {
        let mut path = path;
        loop {
            if let Some(pos) = self.0.get(path) {
                return Some(*pos);
            }
            if path.is_empty() {
                return None;
            }
            path = parent(path);
        }
    }

    /// Whether `path` itself has a position.
    pub fn contains(&self, path: &str) -> bool {
        self.0.contains_key(path)
    }

    /// The path an error `message` at `field` should name. serde reports an
    /// unknown field at the struct holding it; this points at the field
    /// itself, which is what needs fixing, when the file has it.
    pub fn unknown_field_path(&self, field: String, message: &str) -> String {
        let unknown = message
            .strip_prefix("unknown field `")
            .and_then(|m| m.split('`').next());
        match unknown {
            Some(name) if self.contains(&join(&field, name)) => join(&field, name),
            _ => field,
        }
    }
}

/// `a.b[2]` -> `a.b`, `a.b` -> `a`, `a` -> ``.
fn parent(path: &str) -> &str {
    match path.rfind(['.', '[']) {
        Some(i) => &path[..i],
        None => "",
    }
}

/// Appends a map key to a path.
pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// A problem found while reading the YAML itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlProblem {
    /// Where.
    pub pos: Pos,
    /// JSON path of the node, empty for syntax errors.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// Parses one YAML document. A syntax error is returned alone (nothing after
/// it can be trusted); other problems (duplicate keys, non-string keys,
/// numbers JSON cannot hold) are returned together with the value.
pub fn parse(text: &str) -> Result<(Value, Positions, Vec<YamlProblem>), YamlProblem> {
    let mut events = Events(Vec::new());
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut events, true).map_err(|e| YamlProblem {
        pos: Pos::from(*e.marker()),
        path: String::new(),
        message: format!("parsing yaml: {}", e.info()),
    })?;
    // One file, one document: a second `---` would otherwise be dropped
    // silently (or merged, depending on the tool), and half a runbook is
    // worse than an error.
    if let Some((_, mark)) = events
        .0
        .iter()
        .filter(|(e, _)| matches!(e, Event::DocumentStart))
        .nth(1)
    {
        return Err(YamlProblem {
            pos: Pos::from(*mark),
            path: String::new(),
            message: "parsing yaml: more than one document in the file: use one file per document"
                .to_owned(),
        });
    }
    let mut builder = Builder {
        events: events.0,
        next: 0,
        anchors: HashMap::new(),
        positions: Positions::default(),
        problems: Vec::new(),
    };
    // Skip StreamStart and DocumentStart; an empty stream is a null document.
    while builder.next < builder.events.len()
        && matches!(
            builder.events[builder.next].0,
            Event::StreamStart | Event::DocumentStart
        )
    {
        builder.next += 1;
    }
    let value = match builder.events.get(builder.next) {
        Some((Event::StreamEnd, _)) | None => Value::Null,
        Some(_) => builder.node(String::new()),
    };
    Ok((value, builder.positions, builder.problems))
}

struct Events(Vec<(Event, Marker)>);

impl MarkedEventReceiver for Events {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        self.0.push((ev, mark));
    }
}

struct Builder {
    events: Vec<(Event, Marker)>,
    next: usize,
    anchors: HashMap<usize, Value>,
    positions: Positions,
    problems: Vec<YamlProblem>,
}

impl Builder {
    /// Builds the node starting at the next event; records positions.
    fn node(&mut self, path: String) -> Value {
        let (event, mark) = self.events[self.next].clone();
        self.next += 1;
        // A block mapping's start is marked after its first key; its first
        // key is where a reader looks for it.
        let mark = match (&event, self.events.get(self.next)) {
            (Event::MappingStart(..), Some((Event::Scalar(..), key_mark))) => *key_mark,
            _ => mark,
        };
        let pos = Pos::from(mark);
        self.positions.0.entry(path.clone()).or_insert(pos);
        let (value, anchor) = match event {
            Event::Scalar(text, style, anchor, tag) => {
                let is_str_tag = tag.as_ref().is_some_and(|t| t.suffix == "str");
                let value = if style != TScalarStyle::Plain || is_str_tag {
                    Value::String(text)
                } else {
                    self.plain_scalar(text, pos, &path)
                };
                (value, anchor)
            }
            Event::SequenceStart(anchor, _) => {
                let mut items = Vec::new();
                while !matches!(self.events[self.next].0, Event::SequenceEnd) {
                    let item = self.node(format!("{path}[{}]", items.len()));
                    items.push(item);
                }
                self.next += 1;
                (Value::Array(items), anchor)
            }
            Event::MappingStart(anchor, _) => {
                let mut map = Map::new();
                while !matches!(self.events[self.next].0, Event::MappingEnd) {
                    let (key_event, key_mark) = self.events[self.next].clone();
                    let key_pos = Pos::from(key_mark);
                    let key = match key_event {
                        Event::Scalar(text, ..) => {
                            self.next += 1;
                            Some(text)
                        }
                        _ => {
                            // Consume the complex key, then complain.
                            self.node(format!("{path}[?]"));
                            self.problems.push(YamlProblem {
                                pos: key_pos,
                                path: path.clone(),
                                message: "mapping keys must be strings".to_owned(),
                            });
                            None
                        }
                    };
                    let Some(key) = key else {
                        self.node(format!("{path}[?]"));
                        continue;
                    };
                    let child = join(&path, &key);
                    if map.contains_key(&key) {
                        let first = self.positions.find(&child).unwrap_or(key_pos);
                        self.problems.push(YamlProblem {
                            pos: key_pos,
                            path: child.clone(),
                            message: format!(
                                "duplicate key {key:?} (first at line {})",
                                first.line
                            ),
                        });
                        // Keep the first value; build (and drop) the second
                        // without letting it overwrite positions.
                        let saved = std::mem::take(&mut self.positions);
                        self.node(child);
                        self.positions = saved;
                        continue;
                    }
                    self.positions.0.insert(child.clone(), key_pos);
                    let value = self.node(child);
                    map.insert(key, value);
                }
                self.next += 1;
                (Value::Object(map), anchor)
            }
            Event::Alias(id) => (self.anchors.get(&id).cloned().unwrap_or(Value::Null), 0),
            other => {
                // The parser guarantees a node here; anything else is a bug.
                unreachable!("unexpected yaml event {other:?} where a node belongs")
            }
        };
        if anchor > 0 {
            self.anchors.insert(anchor, value.clone());
        }
        value
    }

    /// Resolves an unquoted scalar with the YAML 1.2 core schema.
    fn plain_scalar(&mut self, text: String, pos: Pos, path: &str) -> Value {
        match text.as_str() {
            "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
            "true" | "True" | "TRUE" => return Value::Bool(true),
            "false" | "False" | "FALSE" => return Value::Bool(false),
            _ => {}
        }
        let int = if let Some(hex) = text.strip_prefix("0x") {
            i64::from_str_radix(hex, 16).ok()
        } else if let Some(oct) = text.strip_prefix("0o") {
            i64::from_str_radix(oct, 8).ok()
        } else {
            text.strip_prefix('+').unwrap_or(&text).parse::<i64>().ok()
        };
        if let Some(i) = int {
            return Value::Number(i.into());
        }
        let special = matches!(
            text.as_str(),
            ".inf"
                | ".Inf"
                | ".INF"
                | "+.inf"
                | "+.Inf"
                | "+.INF"
                | "-.inf"
                | "-.Inf"
                | "-.INF"
                | ".nan"
                | ".NaN"
                | ".NAN"
        );
        let looks_numeric = text.bytes().any(|b| b.is_ascii_digit())
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b));
        if special || looks_numeric {
            if let Some(n) = text.parse::<f64>().ok().and_then(Number::from_f64) {
                return Value::Number(n);
            }
            if special || text.parse::<f64>().is_ok() {
                self.problems.push(YamlProblem {
                    pos,
                    path: path.to_owned(),
                    message: format!("number {text} is not finite"),
                });
                return Value::Null;
            }
        }
        Value::String(text)
    }
}

/// How a JSON value's type is named in messages (serde's wording).
pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "sequence",
        Value::Object(_) => "map",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_values_and_positions() {
        let text = "a: 1\nb:\n  - x: 'q'\n    y: 2.5\n  - true\nc: 90s\nd: ~\n";
        let (value, pos, problems) = parse(text).unwrap();
        assert!(problems.is_empty());
        assert_eq!(
            value,
            serde_json::json!({"a": 1, "b": [{"x": "q", "y": 2.5}, true], "c": "90s", "d": null})
        );
        let at = |p: &str| pos.find(p).map(|p| (p.line, p.column));
        assert_eq!(at("a"), Some((1, 1)));
        assert_eq!(at("b"), Some((2, 1)));
        assert_eq!(at("b[0]"), Some((3, 5)));
        assert_eq!(at("b[0].x"), Some((3, 5)));
        assert_eq!(at("b[0].y"), Some((4, 5)));
        assert_eq!(at("b[1]"), Some((5, 5)));
        assert_eq!(at("c"), Some((6, 1)));
        // Unknown paths fall back to the closest ancestor.
        assert_eq!(at("b[0].zzz"), Some((3, 5)));
    }

    #[test]
    fn reports_duplicate_keys_and_non_finite_numbers() {
        let text = "a: 1\nb: .inf\na: 2\n";
        let (value, _, problems) = parse(text).unwrap();
        assert_eq!(value, serde_json::json!({"a": 1, "b": null}));
        let text: Vec<String> = problems
            .iter()
            .map(|p| format!("{}:{} {}: {}", p.pos.line, p.pos.column, p.path, p.message))
            .collect();
        assert_eq!(
            text,
            [
                "2:4 b: number .inf is not finite",
                "3:1 a: duplicate key \"a\" (first at line 1)"
            ]
        );
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert_eq!(err.pos.line, 2);
        assert!(err.message.starts_with("parsing yaml: "), "{}", err.message);
    }

    #[test]
    fn anchors_and_aliases_are_copied() {
        let (value, _, _) = parse("a: &x {k: 1}\nb: *x\n").unwrap();
        assert_eq!(value, serde_json::json!({"a": {"k": 1}, "b": {"k": 1}}));
    }

    #[test]
    fn a_second_document_is_an_error() {
        let err = parse("a: 1\n---\nb: 2\n").unwrap_err();
        assert_eq!(
            (err.pos.line, err.message.as_str()),
            (
                2,
                "parsing yaml: more than one document in the file: use one file per document"
            )
        );
    }

    #[test]
    fn empty_document_is_null() {
        assert_eq!(parse("").unwrap().0, Value::Null);
        assert_eq!(parse("# only a comment\n").unwrap().0, Value::Null);
    }
}
