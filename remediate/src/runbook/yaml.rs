//! YAML text to a `serde_json::Value` plus the line and column of every field.
//!
//! Why not `serde_yaml` or yaml-rust2's `YamlLoader`: neither keeps positions
//! in a form that survives deserializing into our types, so an error could
//! only say "rules[3].then[1]: missing field" without a line. Walking the
//! marked event stream ourselves gives every node's position, keyed by the
//! same JSON path `serde_path_to_error` reports. It also lets us reject
//! duplicate keys, which YAML loaders silently resolve to the last one.
//!
//! Every YAML file heal reads (runbooks, `--params`, `heal agent --config`,
//! `heal supervise`'s services file) goes through [`parse`], so its limits
//! hold for all of them: aliases may copy at most [`MAX_ALIAS_NODES`] nodes
//! in all (a "billion laughs" file is refused in the time it takes to read
//! it, instead of expanding to gigabytes), nodes nest at most [`MAX_DEPTH`]
//! deep (a deeper file would overflow the stack), and tags other than the
//! core schema's are an error rather than silently ignored.

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

/// How many nodes aliases may copy into one document, in all. Runbooks
/// alias a guard block or a label set a few dozen times; a "billion laughs"
/// file (each anchor aliasing the previous one ten times) reaches this after
/// five levels and is refused there, before its copies use any memory worth
/// counting (about 100 bytes a node).
pub const MAX_ALIAS_NODES: usize = 100_000;

/// How deep mappings and sequences may nest. A runbook nests about six deep;
/// the limit keeps the recursive builder far from the stack's end.
pub const MAX_DEPTH: usize = 64;

/// Parses one YAML document. A syntax error is returned alone (nothing after
/// it can be trusted), and so is a document that nests deeper than
/// [`MAX_DEPTH`] or whose aliases copy more than [`MAX_ALIAS_NODES`] nodes;
/// other problems (duplicate keys, non-string keys, unsupported tags,
/// numbers JSON cannot hold) are returned together with the value.
pub fn parse(text: &str) -> Result<(Value, Positions, Vec<YamlProblem>), YamlProblem> {
    let mut events = Events(Vec::new());
    let mut parser = Parser::new_from_str(text);
    // Pull events one by one rather than `Parser::load`, which recurses once
    // per nesting level and so could overflow the stack before any limit of
    // ours is checked.
    let mut depth = 0usize;
    loop {
        let (event, mark) = parser.next_token().map_err(|e| YamlProblem {
            pos: Pos::from(*e.marker()),
            path: String::new(),
            message: format!("parsing yaml: {}", e.info()),
        })?;
        match event {
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(YamlProblem {
                        pos: Pos::from(mark),
                        path: String::new(),
                        message: format!(
                            "parsing yaml: mappings and sequences nest more than {MAX_DEPTH} deep"
                        ),
                    });
                }
            }
            Event::SequenceEnd | Event::MappingEnd => depth = depth.saturating_sub(1),
            _ => {}
        }
        let end = matches!(event, Event::StreamEnd);
        events.on_event(event, mark);
        if end {
            break;
        }
    }
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
        alias_nodes: 0,
        too_many_aliases: None,
        built: 0,
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
    if let Some(pos) = builder.too_many_aliases {
        return Err(YamlProblem {
            pos,
            path: String::new(),
            message: format!(
                "parsing yaml: aliases expand to more than {MAX_ALIAS_NODES} nodes \
                 (an alias bomb?): refused at this alias"
            ),
        });
    }
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
    /// Anchored values and how many nodes each holds.
    anchors: HashMap<usize, (Value, usize)>,
    positions: Positions,
    problems: Vec<YamlProblem>,
    /// Nodes copied by aliases so far.
    alias_nodes: usize,
    /// Where the alias budget ran out; from then on aliases give null.
    too_many_aliases: Option<Pos>,
    /// Nodes built so far, copies included: a subtree's size is the
    /// difference across its building, without walking it again.
    built: usize,
}


/// The tags of YAML's core schema that heal accepts (`!!str` on a scalar
/// forces a string; the others say what the node already is). Any other
/// tag, `!custom` or `!!binary`, would be read as if it were absent, which
/// changes what the file means without a word, so it is an error.
fn tag_problem(tag: Option<&yaml_rust2::parser::Tag>, scalar: bool) -> Option<String> {
    let tag = tag?;
    let core = tag.handle == "tag:yaml.org,2002:" || tag.handle == "!!";
    let allowed: &[&str] = if scalar {
        &["str", "int", "float", "bool", "null"]
    } else {
        &["map", "seq"]
    };
    if core && allowed.contains(&tag.suffix.as_str()) {
        return None;
    }
    let shown = if core {
        format!("!!{}", tag.suffix)
    } else {
        format!("{}{}", tag.handle, tag.suffix)
    };
    Some(format!(
        "unsupported yaml tag {shown:?}: heal reads plain YAML (tags other than the core schema's are not supported)"
    ))
}

impl Builder {
    /// Builds the node starting at the next event; records positions.
    fn node(&mut self, path: String) -> Value {
        let built_before = self.built;
        self.built += 1;
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
        let tag = match &event {
            Event::Scalar(_, _, _, tag) => tag_problem(tag.as_ref(), true),
            Event::SequenceStart(_, tag) | Event::MappingStart(_, tag) => {
                tag_problem(tag.as_ref(), false)
            }
            _ => None,
        };
        if let Some(message) = tag {
            // A scalar is marked at its end; its key is where a reader looks.
            self.problems.push(YamlProblem {
                pos: self.positions.find(&path).unwrap_or(pos),
                path: path.clone(),
                message,
            });
        }
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
            Event::Alias(id) => {
                // Each alias is a copy: bound the copies, not the anchors, so
                // that nesting (an anchor made of aliases) is counted in full.
                let value = match self.anchors.get(&id) {
                    Some((value, nodes)) if self.too_many_aliases.is_none() => {
                        self.alias_nodes = self.alias_nodes.saturating_add(*nodes);
                        if self.alias_nodes > MAX_ALIAS_NODES {
                            self.too_many_aliases = Some(pos);
                            Value::Null
                        } else {
                            // The copy's nodes count in any anchor around it.
                            self.built += nodes - 1;
                            value.clone()
                        }
                    }
                    _ => Value::Null,
                };
                (value, 0)
            }
            other => {
                // The parser guarantees a node here; anything else is a bug.
                unreachable!("unexpected yaml event {other:?} where a node belongs")
            }
        };
        if anchor > 0 {
            let nodes = self.built - built_before;
            self.anchors.insert(anchor, (value.clone(), nodes));
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

    /// The classic "billion laughs": nine levels of ten aliases each.
    pub(crate) fn billion_laughs() -> String {
        let mut text = String::from("a0: &a0 [\"lol\"]\n");
        for i in 1..10 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        text
    }

    #[test]
    fn an_alias_bomb_is_refused_at_the_alias_that_crosses_the_budget() {
        let err = parse(&billion_laughs()).unwrap_err();
        assert_eq!(
            err.message,
            "parsing yaml: aliases expand to more than 100000 nodes (an alias bomb?): refused at this alias"
        );
        // a5's tenth copy of a4 (11,111 nodes each) crosses 100,000.
        assert_eq!(err.pos.line, 6);
    }

    #[test]
    fn aliases_within_the_budget_still_work() {
        // 9,000 copies of a ten-node block: under the budget, all kept.
        let mut text = String::from("block: &b {a: 1, b: 2, c: 3, d: [1, 2, 3, 4, 5]}\nitems:\n");
        for _ in 0..9_000 {
            text.push_str("  - *b\n");
        }
        let (value, _, problems) = parse(&text).unwrap();
        assert!(problems.is_empty());
        assert_eq!(value["items"].as_array().unwrap().len(), 9_000);
        assert_eq!(value["items"][8_999]["d"][4], 5);
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_refused() {
        let ok = format!("{}1{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse(&ok).is_ok());
        // Block sequences nest without the scanner's flow-level limit.
        let deep = format!("{}x\n", "- ".repeat(100_000));
        let err = parse(&deep).unwrap_err();
        assert_eq!(
            (err.pos.line, err.message.as_str()),
            (1, "parsing yaml: mappings and sequences nest more than 64 deep")
        );
    }

    #[test]
    fn unsupported_tags_are_problems() {
        let (value, _, problems) =
            parse("a: !custom x\nb: !!str 5\nc: !!binary aGk=\nd: !!map {k: 1}\ne: !t [1]\n")
                .unwrap();
        assert_eq!(value["b"], "5");
        let text: Vec<String> = problems
            .iter()
            .map(|p| format!("{}:{} {}: {}", p.pos.line, p.pos.column, p.path, p.message))
            .collect();
        assert_eq!(
            text,
            [
                "1:1 a: unsupported yaml tag \"!custom\": heal reads plain YAML (tags other than the core schema's are not supported)",
                "3:1 c: unsupported yaml tag \"!!binary\": heal reads plain YAML (tags other than the core schema's are not supported)",
                "5:1 e: unsupported yaml tag \"!t\": heal reads plain YAML (tags other than the core schema's are not supported)",
            ]
        );
    }
}
