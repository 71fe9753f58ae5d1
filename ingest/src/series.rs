//! The data model: a series is identified by its [`Labels`] (or their compact [`SeriesId`]) and
//! carries [`Sample`]s.
//!
//! As in Prometheus, the metric name is just the label `__name__`, so one sorted map identifies a
//! series completely and two label sets are equal exactly when they name the same series.
//! A label with an empty value is the same as no label (Prometheus semantics), so constructors
//! drop empty values: that keeps "absent" and `""` from naming two different series, and lets a
//! Parquet dataset store an absent label as null without loss.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;

/// The label that holds the metric name.
pub const METRIC_NAME_LABEL: &str = "__name__";

/// One observation: a value at a time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Milliseconds since the Unix epoch, UTC.
    pub ts_ms: i64,
    /// The observed value; may be NaN or infinite in raw data (see [`crate::Sanitizer`]).
    pub value: f64,
}

impl Sample {
    /// A sample at `ts_ms` (ms since the Unix epoch, UTC).
    pub fn new(ts_ms: i64, value: f64) -> Self {
        Sample { ts_ms, value }
    }
}

/// A canonical, sorted label set identifying one series; the metric name is the label `__name__`.
///
/// Displays in Prometheus form, `name{a="x",b="y"}`, and parses that same form back with
/// [`FromStr`]. Names that are not valid Prometheus identifiers (NAB file stems such as
/// `exchange-2_cpc_results` contain `-`) are written in the quoted form of Prometheus 3's UTF-8
/// syntax, `{__name__="exchange-2_cpc_results"}` and `{"odd key"="v"}`, so every label set
/// survives a round trip through its text form.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels(BTreeMap<String, String>);

impl Labels {
    /// An empty label set.
    pub fn new() -> Self {
        Labels::default()
    }

    /// A label set holding only the metric name.
    pub fn metric(name: impl Into<String>) -> Self {
        Labels::new().with(METRIC_NAME_LABEL, name)
    }

    /// Builds a label set from `(name, value)` pairs; a later pair overrides an earlier one with
    /// the same name, and empty values are dropped.
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        pairs
            .into_iter()
            .fold(Labels::new(), |labels, (k, v)| labels.with(k, v))
    }

    /// Returns the set with label `key` set to `value`, or removed when `value` is empty.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.set(key, value);
        self
    }

    /// Sets label `key` to `value`, or removes it when `value` is empty.
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let (key, value) = (key.into(), value.into());
        if value.is_empty() {
            self.0.remove(&key);
        } else {
            self.0.insert(key, value);
        }
    }

    /// The metric name (label `__name__`), if any.
    pub fn name(&self) -> Option<&str> {
        self.get(METRIC_NAME_LABEL)
    }

    /// The value of label `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// The labels, sorted by name (byte order), the metric name included as `__name__`.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Number of labels, the metric name included.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there is no label at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The compact id of this series.
    pub fn id(&self) -> SeriesId {
        SeriesId::of(self)
    }
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`, Prometheus' legacy metric name syntax.
fn is_metric_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, Prometheus' legacy label name syntax.
pub(crate) fn is_label_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn write_quoted(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in s.chars() {
        match c {
            '\\' => f.write_str("\\\\")?,
            '"' => f.write_str("\\\"")?,
            '\n' => f.write_str("\\n")?,
            c => fmt::Write::write_char(f, c)?,
        }
    }
    f.write_str("\"")
}

impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bare_name = self.name().filter(|n| is_metric_name(n));
        if let Some(name) = bare_name {
            f.write_str(name)?;
            if self.len() == 1 {
                return Ok(());
            }
        }
        f.write_str("{")?;
        let mut first = true;
        // An unquotable name goes first inside the braces, where a reader looks for it.
        let name_inside = self.name().filter(|_| bare_name.is_none());
        let rest = self.iter().filter(|(k, _)| *k != METRIC_NAME_LABEL);
        for (k, v) in name_inside
            .map(|n| (METRIC_NAME_LABEL, n))
            .into_iter()
            .chain(rest)
        {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if is_label_name(k) {
                f.write_str(k)?;
            } else {
                write_quoted(f, k)?;
            }
            f.write_str("=")?;
            write_quoted(f, v)?;
        }
        f.write_str("}")
    }
}

/// A hand-written parser: the grammar is tiny, and hand-writing it gives error messages with
/// exact offsets, which a regex would not.
struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    fn describe(&self) -> String {
        match self.peek() {
            None => "end of input".to_string(),
            Some(_) => {
                // The input is a &str and pos only ever stops on ASCII bytes, so this is a char
                // boundary.
                let c = std::str::from_utf8(&self.s[self.pos..])
                    .ok()
                    .and_then(|rest| rest.chars().next())
                    .unwrap_or('?');
                format!("{c:?}")
            }
        }
    }

    fn expected(&self, what: &str) -> String {
        format!(
            "expected {what} at offset {}, found {}",
            self.pos,
            self.describe()
        )
    }

    fn ident(&mut self, metric: bool) -> String {
        let start = self.pos;
        while let Some(b) = self.peek() {
            let ok = b.is_ascii_alphabetic()
                || b == b'_'
                || (metric && b == b':')
                || (self.pos > start && b.is_ascii_digit());
            if !ok {
                break;
            }
            self.pos += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.pos]).into_owned()
    }

    fn quoted(&mut self) -> Result<String, String> {
        let start = self.pos;
        if self.peek() != Some(b'"') {
            return Err(self.expected("'\"'"));
        }
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err(format!("unterminated string starting at offset {start}")),
                Some(b'"') => {
                    self.pos += 1;
                    break;
                }
                Some(b'\\') => {
                    let escape_at = self.pos;
                    self.pos += 1;
                    match self.peek() {
                        Some(b'\\') => out.push(b'\\'),
                        Some(b'"') => out.push(b'"'),
                        Some(b'n') => out.push(b'\n'),
                        None => {
                            return Err(format!("unterminated string starting at offset {start}"))
                        }
                        Some(_) => {
                            return Err(format!(
                                "unknown escape at offset {escape_at}: only \\\\, \\\" and \\n are allowed"
                            ))
                        }
                    }
                    self.pos += 1;
                }
                Some(b) => {
                    out.push(b);
                    self.pos += 1;
                }
            }
        }
        // Only whole UTF-8 sequences were copied, cut at ASCII quotes and backslashes.
        String::from_utf8(out).map_err(|_| format!("invalid UTF-8 in string at offset {start}"))
    }

    fn labels(&mut self) -> Result<Labels, String> {
        let mut map = BTreeMap::new();
        self.skip_ws();
        let name = self.ident(true);
        if !name.is_empty() {
            map.insert(METRIC_NAME_LABEL.to_string(), name);
        }
        self.skip_ws();
        if self.peek().is_none() {
            return if map.is_empty() {
                Err("empty input".to_string())
            } else {
                Ok(Labels(map))
            };
        }
        if self.peek() != Some(b'{') {
            return Err(self.expected(if map.is_empty() {
                "a metric name or '{'"
            } else {
                "'{'"
            }));
        }
        self.pos += 1;
        loop {
            self.skip_ws();
            if self.peek() == Some(b'}') {
                self.pos += 1;
                break;
            }
            let key_at = self.pos;
            let key = if self.peek() == Some(b'"') {
                self.quoted()?
            } else {
                self.ident(false)
            };
            if key.is_empty() {
                return Err(self.expected("a label name"));
            }
            self.skip_ws();
            if self.peek() != Some(b'=') {
                return Err(self.expected("'='"));
            }
            self.pos += 1;
            self.skip_ws();
            let value = self.quoted()?;
            if map.contains_key(&key) {
                return Err(format!("duplicate label {key:?} at offset {key_at}"));
            }
            if !value.is_empty() {
                map.insert(key, value);
            }
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    break;
                }
                _ => return Err(self.expected("',' or '}'")),
            }
        }
        self.skip_ws();
        if self.peek().is_some() {
            return Err(format!("unexpected text at offset {} after '}}'", self.pos));
        }
        Ok(Labels(map))
    }
}

impl FromStr for Labels {
    type Err = Error;

    /// Parses `name{a="x",b="y"}`, `name`, `{a="x"}` or `{__name__="x"}`; whitespace between
    /// tokens and a trailing comma are allowed, label names may be quoted, and values support the
    /// escapes `\\`, `\"` and `\n`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Parser {
            s: s.as_bytes(),
            pos: 0,
        }
        .labels()
        .map_err(|reason| Error::ParseLabels {
            input: s.to_string(),
            reason,
        })
    }
}

impl Serialize for Labels {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A stable, compact id for a series: FNV-1a 64 over its canonical label form.
///
/// The canonical form is each label in sorted order as `name 0xFF value 0xFF`. 0xFF never occurs
/// in UTF-8, so the encoding is unambiguous (the same separator trick as Prometheus'
/// `labels.Hash`). FNV-1a is used instead of std's `DefaultHasher` because the latter is
/// explicitly allowed to change between Rust releases, and ids end up in files and logs.
/// A 64-bit hash is not collision-free; it is an id for display and fast maps, [`Labels`] stays
/// the identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesId(pub u64);

/// FNV-1a 64-bit parameters, from <http://www.isthe.com/chongo/tech/comp/fnv/>.
const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

impl SeriesId {
    /// The id of a label set.
    pub fn of(labels: &Labels) -> Self {
        let hash = labels.iter().fold(FNV_OFFSET_BASIS, |h, (k, v)| {
            let h = fnv1a(fnv1a(h, k.as_bytes()), &[0xff]);
            fnv1a(fnv1a(h, v.as_bytes()), &[0xff])
        });
        SeriesId(hash)
    }
}

impl fmt::Display for SeriesId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_err(s: &str) -> String {
        s.parse::<Labels>().unwrap_err().to_string()
    }

    #[test]
    fn display_is_prometheus_form_sorted() {
        let l = Labels::from_pairs([("service", "checkout"), ("instance", "checkout-0")])
            .with(METRIC_NAME_LABEL, "http_request_rate");
        assert_eq!(
            l.to_string(),
            r#"http_request_rate{instance="checkout-0",service="checkout"}"#
        );
        assert_eq!(l.name(), Some("http_request_rate"));
        assert_eq!(l.get("service"), Some("checkout"));
        assert_eq!(l.get("zone"), None);
        let keys: Vec<_> = l.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["__name__", "instance", "service"]);
    }

    #[test]
    fn display_forms_without_name_or_labels() {
        assert_eq!(Labels::metric("up").to_string(), "up");
        assert_eq!(Labels::new().to_string(), "{}");
        assert_eq!(Labels::new().with("a", "1").to_string(), r#"{a="1"}"#);
        assert_eq!(
            Labels::metric("exchange-2_cpc").with("a", "1").to_string(),
            r#"{__name__="exchange-2_cpc",a="1"}"#
        );
        assert_eq!(
            Labels::metric("m").with("odd key", "1").to_string(),
            r#"m{"odd key"="1"}"#
        );
    }

    #[test]
    fn values_are_escaped_and_round_trip() {
        let l = Labels::metric("m").with("v", "a\\b\"c\nd").with("u", "é✓");
        assert_eq!(l.to_string(), r#"m{u="é✓",v="a\\b\"c\nd"}"#);
        assert_eq!(l.to_string().parse::<Labels>().unwrap(), l);
    }

    #[test]
    fn odd_names_round_trip() {
        for l in [
            Labels::new(),
            Labels::metric("exchange-2_cpc_results"),
            Labels::metric("a:b").with("x y", "\"").with("_z9", "1"),
            Labels::new().with("A", "1").with("__name__", "9lives"),
        ] {
            assert_eq!(l.to_string().parse::<Labels>().unwrap(), l, "{l}");
        }
    }

    #[test]
    fn empty_values_are_absent() {
        let l = Labels::metric("m").with("a", "x").with("a", "");
        assert_eq!(l, Labels::metric("m"));
        assert_eq!(r#"m{a=""}"#.parse::<Labels>().unwrap(), Labels::metric("m"));
    }

    #[test]
    fn parse_accepts_whitespace_and_trailing_comma() {
        let l: Labels = r#" m { a = "1" , b="2", } "#.parse().unwrap();
        assert_eq!(l, Labels::metric("m").with("a", "1").with("b", "2"));
    }

    #[test]
    fn parse_errors_are_exact() {
        assert_eq!(parse_err(""), r#"parsing labels "": empty input"#);
        assert_eq!(
            parse_err(r#"m{a="1""#),
            r#"parsing labels "m{a=\"1\"": expected ',' or '}' at offset 7, found end of input"#
        );
        assert_eq!(
            parse_err(r#"m{a=1}"#),
            r#"parsing labels "m{a=1}": expected '"' at offset 4, found '1'"#
        );
        assert_eq!(
            parse_err(r#"m{a="1}"#),
            r#"parsing labels "m{a=\"1}": unterminated string starting at offset 4"#
        );
        assert_eq!(
            parse_err(r#"m{a="1",a="2"}"#),
            r#"parsing labels "m{a=\"1\",a=\"2\"}": duplicate label "a" at offset 8"#
        );
        assert_eq!(
            parse_err(r#"m{__name__="x"}"#),
            r#"parsing labels "m{__name__=\"x\"}": duplicate label "__name__" at offset 2"#
        );
        assert_eq!(
            parse_err(r#"m{a="\t"}"#),
            r#"parsing labels "m{a=\"\\t\"}": unknown escape at offset 5: only \\, \" and \n are allowed"#
        );
        assert_eq!(
            parse_err(r#"m{="1"}"#),
            r#"parsing labels "m{=\"1\"}": expected a label name at offset 2, found '='"#
        );
        assert_eq!(
            parse_err(r#"m{a}"#),
            r#"parsing labels "m{a}": expected '=' at offset 3, found '}'"#
        );
        assert_eq!(
            parse_err(r#"m{} x"#),
            r#"parsing labels "m{} x": unexpected text at offset 4 after '}'"#
        );
        assert_eq!(
            parse_err("m-x"),
            r#"parsing labels "m-x": expected '{' at offset 1, found '-'"#
        );
        assert_eq!(
            parse_err("-x"),
            r#"parsing labels "-x": expected a metric name or '{' at offset 0, found '-'"#
        );
    }

    #[test]
    fn fnv1a_matches_reference_vectors() {
        // Test vectors from the FNV reference implementation (test_fnv.c).
        assert_eq!(fnv1a(FNV_OFFSET_BASIS, b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a(FNV_OFFSET_BASIS, b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a(FNV_OFFSET_BASIS, b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn series_id_is_stable() {
        let l: Labels = r#"up{job="api"}"#.parse().unwrap();
        // Computed independently (Python) over b"__name__\xffup\xffjob\xffapi\xff"; this value
        // must never change, ids are persisted.
        assert_eq!(l.id(), SeriesId(EXPECTED_UP_JOB_API));
        assert_eq!(l.id().to_string(), format!("{EXPECTED_UP_JOB_API:016x}"));
        assert_eq!(Labels::new().id().to_string(), "cbf29ce484222325");
        assert_ne!(l.id(), Labels::metric("up").id());
    }

    const EXPECTED_UP_JOB_API: u64 = 0x352a_a4b1_5fa2_8bb6;

    #[test]
    fn labels_serialize_as_text() {
        let l = Labels::metric("m").with("a", "x");
        let json = serde_json::to_string(&l).unwrap();
        assert_eq!(json, r#""m{a=\"x\"}""#);
        assert_eq!(serde_json::from_str::<Labels>(&json).unwrap(), l);
    }
}
