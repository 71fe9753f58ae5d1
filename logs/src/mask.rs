//! Variable masking: a message becomes its *masked form*, the message's tokens
//! joined by single spaces with every variable replaced by `<*>`.
//!
//! Why rules before mining: the Loghub studies found that most of a parser's
//! accuracy comes from identifying variables token by token, not from
//! clustering (Li et al., "Revisiting Log Parsing", IEEE TR 2023: word-level
//! regexes alone parse surprisingly well; Qin et al., "Preprocessing is All You
//! Need", 2024: general regexes raise Drain's template accuracy by 109%). Drain
//! and Brain ship one regex list per dataset (logparser `benchmark.py`); heal
//! has one list for every source, written as a single pass over the bytes of
//! each token instead of a chain of regexes, which is what makes ≥ 1 M lines/s
//! possible (drain3 masks and mines about 160,000 lines/s).
//!
//! A token is the text between runs of ASCII whitespace. Within a token:
//! 1. Opening brackets and quotes are peeled off the front, closing brackets,
//!    quotes and sentence punctuation (`, ; : . ! ?`) off the back; they stay
//!    constant: `(TID 12).` → `(TID <*>).`
//! 2. Whole-token variables: URLs, paths, MAC addresses, UUIDs, IPv6, IPv4
//!    with a port. A path keeps no trailing dot (`part-00001.` is one file name).
//! 3. Otherwise the token splits into pieces at `( ) [ ] { } < > , ; = " ' | @`
//!    and runs of two or more dots (`enable......0`); each piece that holds a
//!    decimal digit is a variable, except the key of `key=value`
//!    (`PSR0=0x1` → `PSR0=<*>`), an alphabetic prefix before `-` or `.` and a
//!    digit (`node-246` → `node-<*>`, `core.7` → `core.<*>`), and alphabetic
//!    labels around colons (`sessionid:0x14` → `sessionid:<*>`,
//!    `10.1.2.3:50010:Got` → `<*>:Got`).
//! 4. A number followed by a size unit is one variable (`384.0 B,` → `<*>,`).
//! 5. A run of more than `max_variable_run` variable tokens (a list of block
//!    ids or host names) becomes one `<*>`, so that a list's length does not
//!    make a new template each time.
//!
//! A source can add its own regexes (every match becomes `<*>` before the
//! built-in rules run) and words that are never masked (`eth1`).

use std::borrow::Cow;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::hash::FxHashSet;

/// The variable placeholder in templates (Loghub's convention).
pub const VAR: &str = "<*>";

/// The built-in masking rules; each can be turned off per source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BuiltinRules {
    /// A piece that holds a decimal digit is a variable (numbers, ids such as
    /// `blk_-42` or `task_1_m_7`, versions, dates, times, hex with digits).
    pub digits: bool,
    /// Numbers (integer, decimal, signed, `0x` hex) are variables even when
    /// `digits` is off.
    pub numbers: bool,
    /// Hexadecimal words of eight or more hex letters (`deadbeef`) are variables.
    pub hex: bool,
    /// IPv4 addresses with an optional port and leading slash
    /// (`/10.0.0.1:8080`) and IPv6 addresses are one variable each.
    pub ips: bool,
    /// UUIDs (`8-4-4-4-12` hex) are one variable.
    pub uuids: bool,
    /// MAC addresses (six or more hex pairs) are one variable.
    pub macs: bool,
    /// File paths are one variable: absolute (`/var/log/x`), relative with a
    /// `./`, `../` or `~/`, Windows (`C:\x`), or any word with two or more
    /// slashes or backslashes and no colon.
    pub paths: bool,
    /// URLs (`scheme://...`) are one variable.
    pub urls: bool,
    /// A number followed by a size unit (`B KB MB GB TB PB KiB MiB GiB TiB`)
    /// is one variable: `384.0 B` → `<*>`.
    pub sizes: bool,
    /// A number followed by a duration unit word (`ms s sec seconds min h`)
    /// is one variable. Off by default: logging code usually writes the unit
    /// as constant text (`took <*> ms`).
    pub durations: bool,
    /// The key of `key=value` stays constant even when it holds a digit.
    pub key_names: bool,
    /// An alphabetic prefix before `-` or `.` and a digit stays constant:
    /// `node-246` → `node-<*>`.
    pub prefixes: bool,
    /// Alphabetic labels around colons stay constant: `id:42` → `id:<*>`.
    pub labels: bool,
    /// A name made of letters and one final digit is a word, not a number:
    /// interfaces, disks, cache levels (`eth1`, `sda2`, `L2`). Names that
    /// vary (`worker7`) become variables through families instead.
    pub short_names: bool,
}

impl Default for BuiltinRules {
    fn default() -> Self {
        Self {
            digits: true,
            numbers: true,
            hex: true,
            ips: true,
            uuids: true,
            macs: true,
            paths: true,
            urls: true,
            sizes: true,
            durations: false,
            key_names: true,
            prefixes: true,
            labels: true,
            short_names: true,
        }
    }
}

/// A source's own masking rule: every match of `regex` becomes `<*>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskRule {
    /// A name for error messages and documentation (`order-id`).
    pub name: String,
    /// The pattern (Rust `regex` syntax).
    pub regex: String,
}

/// What a source masks: the built-in rules, its own regexes and its
/// never-masked words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaskConfig {
    /// The built-in rules (all on but `durations` by default).
    pub builtin: BuiltinRules,
    /// Extra rules of this source, applied before the built-in ones. Each
    /// costs one regex pass over every line; a word that must stay constant
    /// is cheaper in `keep`.
    pub rules: Vec<MaskRule>,
    /// Words (a whole token without its surrounding brackets and punctuation)
    /// that are never masked, such as interface names (`eth1`).
    pub keep: Vec<String>,
    /// A run of more than this many consecutive variable tokens becomes one
    /// `<*>` (0: never). Bounds the number of templates a list can create.
    pub max_variable_run: usize,
}

impl Default for MaskConfig {
    fn default() -> Self {
        Self {
            builtin: BuiltinRules::default(),
            rules: Vec::new(),
            keep: Vec::new(),
            max_variable_run: DEFAULT_MAX_VARIABLE_RUN,
        }
    }
}

/// Default for [`MaskConfig::max_variable_run`]. Lists of up to eight values
/// (fan speeds, IRQ lines, register dumps) are usually fixed-length fields of
/// one logging statement; longer runs are variable-length lists.
pub const DEFAULT_MAX_VARIABLE_RUN: usize = 8;

/// A compiled [`MaskConfig`].
#[derive(Debug, Clone)]
pub struct Masker {
    rules: BuiltinRules,
    extra: Vec<Regex>,
    keep: FxHashSet<String>,
    max_run: usize,
}

impl Masker {
    /// Compiles `config`; an extra rule that does not compile is an error
    /// naming the rule.
    pub fn new(config: &MaskConfig) -> Result<Self, ConfigError> {
        let mut extra = Vec::with_capacity(config.rules.len());
        for rule in &config.rules {
            let re = Regex::new(&rule.regex).map_err(|e| ConfigError::Regex {
                what: format!("mask rule `{}`", rule.name),
                pattern: rule.regex.clone(),
                reason: e.to_string(),
            })?;
            extra.push(re);
        }
        Ok(Self {
            rules: config.builtin,
            extra,
            keep: config.keep.iter().cloned().collect(),
            max_run: config.max_variable_run,
        })
    }

    /// The masked form of `message`.
    pub fn mask(&self, message: &str) -> String {
        let mut out = String::with_capacity(message.len());
        self.mask_into(message, &mut out);
        out
    }

    /// Writes the masked form of `message` into `out` (cleared first); the
    /// miner reuses one buffer for every line.
    pub fn mask_into(&self, message: &str, out: &mut String) {
        out.clear();
        if self.extra.is_empty() {
            self.mask_tokens(message, out);
            return;
        }
        let mut text: Cow<'_, str> = Cow::Borrowed(message);
        for re in &self.extra {
            let replaced = match re.replace_all(&text, VAR) {
                Cow::Owned(o) => Some(o),
                Cow::Borrowed(_) => None,
            };
            if let Some(o) = replaced {
                text = Cow::Owned(o);
            }
        }
        self.mask_tokens(&text, out);
    }

    fn mask_tokens(&self, message: &str, out: &mut String) {
        let mut tokens = Tokens::new(message).peekable();
        let mut run = 0usize;
        let mut run_start = 0usize;
        while let Some(tok) = tokens.next() {
            let sep = out.len();
            if sep > 0 {
                out.push(' ');
            }
            let at = out.len();
            if self.mask_token(tok, tokens.peek().copied(), out) {
                tokens.next();
            }
            if self.max_run > 0 && &out[at..] == VAR {
                run += 1;
                if run == 1 {
                    run_start = sep;
                } else if run > self.max_run {
                    // Collapse the whole run into one variable; later tokens of
                    // the same run are dropped the same way, in O(1) each.
                    out.truncate(run_start);
                    if run_start > 0 {
                        out.push(' ');
                    }
                    out.push_str(VAR);
                }
            } else {
                run = 0;
            }
        }
    }

    /// Masks one token into `out`; returns true when it consumed `next` too
    /// (a number and its unit).
    fn mask_token(&self, tok: &str, next: Option<&str>, out: &mut String) -> bool {
        let b = tok.as_bytes();
        let mut i = 0;
        while i < b.len() && is_open(b[i]) {
            i += 1;
        }
        let mut j = b.len();
        while j > i && is_close(b[j - 1]) {
            j -= 1;
        }
        if i == j {
            out.push_str(tok);
            return false;
        }
        let (pre, core, suf) = (&tok[..i], &tok[i..j], &tok[j..]);
        if !self.keep.is_empty() && self.keep.contains(core) {
            out.push_str(tok);
            return false;
        }
        // Fast path, most tokens of most logs: a word with no digit, slash,
        // colon, delimiter or dot run cannot be a variable unless it is a
        // long hex word.
        let shape = Shape::of(core.as_bytes());
        if shape.flags & (DIGIT | SLASH | COLON | DELIM) == 0
            && !shape.dot_run
            && core.len() != 36
            && !(self.rules.hex && shape.flags & !HEX == 0 && core.len() >= 8)
        {
            out.push_str(tok);
            return false;
        }
        // A plain integer, with or without its size unit.
        if shape.flags == DIGIT
            && !(suf.is_empty() && next.is_some() && (self.rules.sizes || self.rules.durations))
        {
            let var = self.rules.digits || self.rules.numbers;
            out.push_str(pre);
            out.push_str(if var { VAR } else { core });
            out.push_str(suf);
            return false;
        }
        if let Some(kind) = self.whole(core) {
            // An opener closed inside a path belongs to the path
            // (`{guid}GLOBALROOT/Device/...`).
            let absorb = kind == Whole::Path
                && pre
                    .bytes()
                    .last()
                    .is_some_and(|o| core.as_bytes().contains(&closer_of(o)));
            out.push_str(if absorb { &pre[..pre.len() - 1] } else { pre });
            out.push_str(VAR);
            out.push_str(if kind == Whole::Path {
                suf.trim_start_matches('.')
            } else {
                suf
            });
            return false;
        }
        if suf.is_empty() && (self.rules.sizes || self.rules.durations) && is_number(core) {
            if let Some(n) = next {
                let nb = n.as_bytes();
                let mut k = nb.len();
                while k > 0 && is_close(nb[k - 1]) {
                    k -= 1;
                }
                let unit = &n[..k];
                if (self.rules.sizes && is_size_unit(unit))
                    || (self.rules.durations && is_duration_unit(unit))
                {
                    out.push_str(pre);
                    out.push_str(VAR);
                    out.push_str(&n[k..]);
                    return true;
                }
            }
        }
        out.push_str(pre);
        self.mask_core(core, out);
        out.push_str(suf);
        false
    }

    /// A whole-token variable, if `core` is one.
    fn whole(&self, core: &str) -> Option<Whole> {
        let b = core.as_bytes();
        if self.rules.urls && is_url(b) {
            return Some(Whole::Url);
        }
        // `chdir(/home/x)`: a path that starts inside the token is a piece.
        if self.rules.paths && is_path(b) && !b.windows(2).any(|w| is_delim(w[0]) && w[1] == b'/') {
            return Some(Whole::Path);
        }
        if self.rules.uuids && is_uuid(b) {
            return Some(Whole::Other);
        }
        if self.rules.macs && is_hex_groups(b, 6, 2) {
            return Some(Whole::Other);
        }
        if self.rules.ips && (is_ipv4_port(b) || is_ipv6(b)) {
            return Some(Whole::Other);
        }
        None
    }

    fn mask_core(&self, core: &str, out: &mut String) {
        let b = core.as_bytes();
        let has_url = self.rules.urls && b.windows(3).any(|w| w == b"://");
        let mut start = 0;
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            if has_url && i == start && url_scheme_len(&b[i..]).is_some() {
                // A URL runs through `@ : = ,` up to a closing bracket or
                // quote: `[akka.tcp://system@host:7077]`.
                let end = b[i..]
                    .iter()
                    .position(|&c| matches!(c, b')' | b']' | b'}' | b'>' | b'"' | b'\''))
                    .map_or(b.len(), |k| i + k);
                out.push_str(VAR);
                i = end;
                start = i;
                continue;
            }
            if is_delim(c) {
                if start < i {
                    self.mask_piece(&core[start..i], c == b'=', out);
                }
                out.push(c as char);
                i += 1;
                start = i;
            } else if c == b'.' && i + 1 < b.len() && b[i + 1] == b'.' {
                if start < i {
                    self.mask_piece(&core[start..i], false, out);
                }
                let s = i;
                while i < b.len() && b[i] == b'.' {
                    i += 1;
                }
                out.push_str(&core[s..i]);
                start = i;
            } else {
                i += 1;
            }
        }
        if start < b.len() {
            self.mask_piece(&core[start..], false, out);
        }
    }

    fn mask_piece(&self, p: &str, is_key: bool, out: &mut String) {
        let b = p.as_bytes();
        if is_key && self.rules.key_names && b[0].is_ascii_alphabetic() {
            out.push_str(p);
            return;
        }
        let has_digit = b.iter().any(u8::is_ascii_digit);
        if !has_digit || (self.rules.short_names && is_short_name(b)) {
            let var = (self.rules.paths && is_path(b))
                || (self.rules.urls && is_url(b))
                || (self.rules.hex && is_hex_word(b));
            out.push_str(if var { VAR } else { p });
            return;
        }
        if self.whole(p).is_some() {
            out.push_str(VAR);
            return;
        }
        if self.rules.prefixes {
            if let Some(k) = alpha_prefix(b) {
                out.push_str(&p[..=k]);
                out.push_str(VAR);
                return;
            }
        }
        if self.rules.labels && b.contains(&b':') {
            self.colon_split(p, out);
            return;
        }
        let var = self.rules.digits || (self.rules.numbers && is_number(p));
        out.push_str(if var { VAR } else { p });
    }

    /// `label:value` pieces: alphabetic parts stay, runs of other parts
    /// become one variable.
    fn colon_split(&self, p: &str, out: &mut String) {
        let mut in_var = false;
        let mut first = true;
        let mut pending: Option<&str> = None; // a lone variable part, for the prefix rule
        let flush = |pending: &mut Option<&str>, in_var: &mut bool, out: &mut String| {
            if *in_var {
                match pending.take() {
                    Some(single) => self.mask_single(single, out),
                    None => out.push_str(VAR),
                }
                *in_var = false;
            }
        };
        for part in p.split(':') {
            let constant = is_label(part.as_bytes());
            if constant {
                flush(&mut pending, &mut in_var, out);
                if !first {
                    out.push(':');
                }
                out.push_str(part);
            } else if in_var {
                pending = None;
            } else {
                if !first {
                    out.push(':');
                }
                in_var = true;
                pending = Some(part);
            }
            first = false;
        }
        flush(&mut pending, &mut in_var, out);
    }

    /// One colon-free part that is not a label.
    fn mask_single(&self, part: &str, out: &mut String) {
        let b = part.as_bytes();
        if self.rules.prefixes {
            if let Some(k) = alpha_prefix(b) {
                out.push_str(&part[..=k]);
                out.push_str(VAR);
                return;
            }
        }
        let var = b.iter().any(u8::is_ascii_digit) || is_path(b) || b.is_empty();
        out.push_str(if var { VAR } else { part });
    }
}

const DIGIT: u8 = 1;
/// A letter that is not a hex digit.
const ALPHA: u8 = 2;
/// A hex letter (`a-f`, `A-F`).
const HEXALPHA: u8 = 4;
const SLASH: u8 = 8;
const COLON: u8 = 16;
/// A piece delimiter (`is_delim`).
const DELIM: u8 = 32;
/// Anything else (`.`, `-`, `_`, other punctuation, non-ASCII).
const OTHER: u8 = 64;
/// Flags of a hex word.
const HEX: u8 = DIGIT | HEXALPHA;

/// Byte classes, one table lookup per byte.
static CLASS: [u8; 256] = {
    let mut t = [OTHER; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = if b.is_ascii_digit() {
            DIGIT
        } else if matches!(b, b'a'..=b'f' | b'A'..=b'F') {
            HEXALPHA
        } else if b.is_ascii_alphabetic() {
            ALPHA
        } else if b == b'/' || b == b'\\' {
            SLASH
        } else if b == b':' {
            COLON
        } else if is_delim(b) {
            DELIM
        } else {
            OTHER
        };
        c += 1;
    }
    t
};

/// What a token core is made of, in one pass.
#[derive(Debug, Clone, Copy)]
struct Shape {
    flags: u8,
    dot_run: bool,
}

impl Shape {
    #[inline]
    fn of(b: &[u8]) -> Self {
        let mut flags = 0;
        let mut dot_run = false;
        let mut prev_dot = false;
        for &c in b {
            flags |= CLASS[c as usize];
            let dot = c == b'.';
            dot_run |= dot && prev_dot;
            prev_dot = dot;
        }
        Self { flags, dot_run }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Whole {
    Url,
    Path,
    Other,
}

/// Splits on runs of ASCII whitespace. Non-ASCII spaces are rare in logs and
/// stay inside tokens.
struct Tokens<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Tokens<'a> {
    fn new(s: &'a str) -> Self {
        Self { s, pos: 0 }
    }
}

impl<'a> Iterator for Tokens<'a> {
    type Item = &'a str;

    #[inline]
    fn next(&mut self) -> Option<&'a str> {
        let b = self.s.as_bytes();
        let mut i = self.pos;
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == b.len() {
            self.pos = i;
            return None;
        }
        let start = i;
        while i < b.len() && !b[i].is_ascii_whitespace() {
            i += 1;
        }
        self.pos = i;
        Some(&self.s[start..i])
    }
}

#[inline]
fn is_open(c: u8) -> bool {
    matches!(c, b'(' | b'[' | b'{' | b'<' | b'"' | b'\'' | b'`')
}

#[inline]
fn is_close(c: u8) -> bool {
    matches!(
        c,
        b')' | b']' | b'}' | b'>' | b'"' | b'\'' | b'`' | b',' | b';' | b':' | b'.' | b'!' | b'?'
    )
}

fn closer_of(open: u8) -> u8 {
    match open {
        b'(' => b')',
        b'[' => b']',
        b'{' => b'}',
        b'<' => b'>',
        other => other,
    }
}

#[inline]
const fn is_delim(c: u8) -> bool {
    matches!(
        c,
        b'(' | b')'
            | b'['
            | b']'
            | b'{'
            | b'}'
            | b'<'
            | b'>'
            | b','
            | b';'
            | b'='
            | b'"'
            | b'\''
            | b'|'
            | b'@'
    )
}

/// Letters then exactly one digit: `eth1`, `L2`, `sda3`.
fn is_short_name(b: &[u8]) -> bool {
    b.len() >= 2
        && b[b.len() - 1].is_ascii_digit()
        && b[..b.len() - 1].iter().all(u8::is_ascii_alphabetic)
}

/// `[A-Za-z][A-Za-z0-9+.-]*://`
fn is_url(b: &[u8]) -> bool {
    url_scheme_len(b).is_some()
}

/// The length of `scheme://` at the start of `b`, if it starts a URL.
fn url_scheme_len(b: &[u8]) -> Option<usize> {
    if !b.first()?.is_ascii_alphabetic() {
        return None;
    }
    let k = b
        .iter()
        .position(|c| !(c.is_ascii_alphanumeric() || matches!(c, b'+' | b'.' | b'-')))?;
    b[k..].starts_with(b"://").then_some(k + 3)
}

fn is_path(b: &[u8]) -> bool {
    if b.len() < 2 {
        return false;
    }
    if b[0] == b'/' {
        return b[1] != b'/' || b.len() > 2;
    }
    if b.starts_with(b"./") || b.starts_with(b"../") || b.starts_with(b"~/") {
        return true;
    }
    if b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && matches!(b[2], b'\\' | b'/') {
        return true;
    }
    // `key=a/b/c` is a pair whose value the piece rules see; a colon makes
    // it a URL-like or label form.
    if b.contains(&b':') || b.contains(&b'=') {
        return false;
    }
    let slashes = b.iter().filter(|&&c| c == b'/').count();
    let backslashes = b.iter().filter(|&&c| c == b'\\').count();
    slashes >= 2 || backslashes >= 2
}

fn is_uuid(b: &[u8]) -> bool {
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// `min_groups` or more groups of `group` hex digits separated by one kind of
/// separator (`:` or `-`), with at least one decimal digit: MAC addresses.
fn is_hex_groups(b: &[u8], min_groups: usize, group: usize) -> bool {
    let sep = match b.get(group) {
        Some(&c @ (b':' | b'-')) => c,
        _ => return false,
    };
    let parts = b.split(|&c| c == sep);
    let mut n = 0;
    for part in parts {
        if part.len() != group || !part.iter().all(u8::is_ascii_hexdigit) {
            return false;
        }
        n += 1;
    }
    n >= min_groups && b.iter().any(u8::is_ascii_digit)
}

/// `[/]d.d.d.d[:port]`
fn is_ipv4_port(b: &[u8]) -> bool {
    let b = b.strip_prefix(b"/").unwrap_or(b);
    let (ip, port) = match b.iter().position(|&c| c == b':') {
        Some(k) => (&b[..k], Some(&b[k + 1..])),
        None => (b, None),
    };
    if let Some(port) = port {
        if port.is_empty() || port.len() > 5 || !port.iter().all(u8::is_ascii_digit) {
            return false;
        }
    }
    let mut n = 0;
    for octet in ip.split(|&c| c == b'.') {
        if octet.is_empty() || octet.len() > 3 || !octet.iter().all(u8::is_ascii_digit) {
            return false;
        }
        n += 1;
    }
    n == 4
}

/// Hex groups of at most four digits separated by colons, at least two
/// colons, at least one decimal digit (`fe80::1`, `2001:db8::7`).
fn is_ipv6(b: &[u8]) -> bool {
    let colons = b.iter().filter(|&&c| c == b':').count();
    colons >= 2
        && b.iter().any(u8::is_ascii_digit)
        && b.iter().all(|c| c.is_ascii_hexdigit() || *c == b':')
        && b.split(|&c| c == b':').all(|g| g.len() <= 4)
}

/// Eight or more hex letters and digits (`deadbeef`, `0badc0de`).
fn is_hex_word(b: &[u8]) -> bool {
    b.len() >= 8 && b.iter().all(u8::is_ascii_hexdigit)
}

/// `[+-]?digits[.digits][e[+-]digits]` or `0x` hex.
fn is_number(s: &str) -> bool {
    let b = s.as_bytes();
    let b = match b.first() {
        Some(b'+' | b'-') => &b[1..],
        _ => b,
    };
    if b.len() > 2 && b[0] == b'0' && (b[1] == b'x' || b[1] == b'X') {
        return b[2..].iter().all(u8::is_ascii_hexdigit);
    }
    let mut digits = 0;
    let mut dot = false;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'0'..=b'9' => digits += 1,
            b'.' if !dot && digits > 0 => dot = true,
            b'e' | b'E' if digits > 0 && i + 1 < b.len() => {
                let rest = &b[i + 1..];
                let rest = match rest.first() {
                    Some(b'+' | b'-') => &rest[1..],
                    _ => rest,
                };
                return !rest.is_empty() && rest.iter().all(u8::is_ascii_digit);
            }
            _ => return false,
        }
        i += 1;
    }
    digits > 0 && b.last().is_some_and(u8::is_ascii_digit)
}

fn is_size_unit(u: &str) -> bool {
    matches!(
        u,
        "B" | "KB" | "kB" | "MB" | "GB" | "TB" | "PB" | "KiB" | "MiB" | "GiB" | "TiB" | "PiB"
    )
}

fn is_duration_unit(u: &str) -> bool {
    matches!(
        u,
        "ns" | "us"
            | "µs"
            | "ms"
            | "s"
            | "sec"
            | "secs"
            | "second"
            | "seconds"
            | "min"
            | "mins"
            | "minute"
            | "minutes"
            | "h"
            | "hour"
            | "hours"
    )
}

/// The index of the `-` or `.` ending an alphabetic prefix that a digit
/// follows: `node-246` → 4, `core.7` → 4.
fn alpha_prefix(b: &[u8]) -> Option<usize> {
    let k = b.iter().position(|c| !c.is_ascii_alphabetic())?;
    (k > 0 && matches!(b[k], b'-' | b'.') && b.get(k + 1).is_some_and(u8::is_ascii_digit))
        .then_some(k)
}

/// A colon-separated part that is a label: letters (and `_ . -`), no digit,
/// not a path.
fn is_label(b: &[u8]) -> bool {
    !b.is_empty()
        && b[0] != b'/'
        && b.iter().any(u8::is_ascii_alphabetic)
        && b.iter()
            .all(|c| c.is_ascii_alphabetic() || matches!(c, b'_' | b'.' | b'-' | b'$'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(s: &str) -> String {
        Masker::new(&MaskConfig::default()).unwrap().mask(s)
    }

    #[test]
    fn numbers_ids_and_punctuation() {
        assert_eq!(
            mask("Finished task 3.0 in stage 1.0 (TID 12). 2087 bytes result sent"),
            "Finished task <*> in stage <*> (TID <*>). <*> bytes result sent"
        );
        assert_eq!(
            mask("Deleting block blk_-42 file x"),
            "Deleting block <*> file x"
        );
        assert_eq!(mask("  spaced\tout   words "), "spaced out words");
        assert_eq!(mask(""), "");
    }

    #[test]
    fn addresses_paths_urls_uuids_macs() {
        assert_eq!(mask("from /10.1.2.3:50010 to 10.1.2.4"), "from <*> to <*>");
        assert_eq!(mask("host db-eu-7:8030."), "host <*>.");
        assert_eq!(mask("opened /var/log/app.log, ok"), "opened <*>, ok");
        assert_eq!(
            mask("saved to /tmp/out/part-00001. done"),
            "saved to <*> done"
        );
        assert_eq!(mask("rack [/default-rack]"), "rack [<*>]");
        assert_eq!(mask("get https://example.org/a?b=1 now"), "get <*> now");
        assert_eq!(
            mask("engine {d16d444c-56d8-11d5-882d-0080c847b195} up"),
            "engine {<*>} up"
        );
        assert_eq!(mask("mac 00:1a:2b:ce:af:d1"), "mac <*>");
        assert_eq!(mask("addr fe80::1:2 up"), "addr <*> up");
        assert_eq!(mask(r"file C:\Windows\x.log,"), "file <*>,");
        assert_eq!(
            mask("LOGIN chdir(/home/a/b) failed"),
            "LOGIN chdir(<*>) failed"
        );
        assert_eq!(mask("key '{ab12}ROOT/Device/x/y' from"), "key '<*>' from");
        assert_eq!(
            mask("addresses :[akka.tcp://sys@host-7:55904]"),
            "addresses :[<*>]"
        );
        // One slash is a word pair, not a path.
        assert_eq!(mask("power/control problem"), "power/control problem");
    }

    #[test]
    fn keys_prefixes_and_labels_stay() {
        assert_eq!(
            mask("PSR0=0x1f r24=7 (unit=3 bit=4):"),
            "PSR0=<*> r24=<*> (unit=<*> bit=<*>):"
        );
        assert_eq!(
            mask("node node-246 and core.1234"),
            "node node-<*> and core.<*>"
        );
        assert_eq!(mask("sessionid:0x14ed cxid:0x2"), "sessionid:<*> cxid:<*>");
        assert_eq!(mask("10.1.2.3:50010:Got exception"), "<*>:Got exception");
        assert_eq!(mask("[sweep.c:1234]: done"), "[sweep.c:<*>]: done");
        assert_eq!(mask("icache depth........0x1"), "icache depth........<*>");
        assert_eq!(
            mask("via eth1: L2 cache a10 x9y"),
            "via eth1: L2 cache <*> <*>"
        );
        assert_eq!(mask("[file=/etc/x/y] [line=12]"), "[file=<*>] [line=<*>]");
        assert_eq!(
            mask("handle @0x7f, relay=root@localhost"),
            "handle @<*>, relay=root@localhost"
        );
    }

    #[test]
    fn sizes_and_runs() {
        assert_eq!(
            mask("(estimated size 384.0 B, free 317.5 KB)"),
            "(estimated size <*>, free <*>)"
        );
        assert_eq!(mask("took 12 ms"), "took <*> ms");
        assert_eq!(
            mask("fans ( 1 2 3 4 5 6 )"),
            "fans ( <*> <*> <*> <*> <*> <*> )"
        );
        let long = format!(
            "delete {} now",
            (0..20)
                .map(|i| format!("blk_{i}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        assert_eq!(mask(&long), "delete <*> now");
        let nine = format!(
            "x {}",
            (0..9).map(|i| i.to_string()).collect::<Vec<_>>().join(" ")
        );
        assert_eq!(mask(&nine), "x <*>");
    }

    #[test]
    fn source_rules_and_keep_words() {
        let cfg = MaskConfig {
            rules: vec![MaskRule {
                name: "order".into(),
                regex: r"ORD-[A-Z]+".into(),
            }],
            keep: vec!["eth12".into()],
            ..MaskConfig::default()
        };
        let m = Masker::new(&cfg).unwrap();
        assert_eq!(
            m.mask("order ORD-ABC via eth12, eth13"),
            "order <*> via eth12, <*>"
        );
        let bad = MaskConfig {
            rules: vec![MaskRule {
                name: "broken".into(),
                regex: "(".into(),
            }],
            ..MaskConfig::default()
        };
        let err = Masker::new(&bad).unwrap_err().to_string();
        assert!(err.starts_with("mask rule `broken` \"(\":"), "{err}");
    }

    #[test]
    fn rules_can_be_turned_off() {
        let cfg = MaskConfig {
            builtin: BuiltinRules {
                sizes: false,
                paths: false,
                ..BuiltinRules::default()
            },
            ..MaskConfig::default()
        };
        let m = Masker::new(&cfg).unwrap();
        assert_eq!(m.mask("size 3 KB at /a/b"), "size <*> KB at /a/b");
    }

    #[test]
    fn number_shapes() {
        for n in ["0", "-1", "+2.5", "3e10", "0x1F", "1.5E-3"] {
            assert!(is_number(n), "{n}");
        }
        for n in ["", "-", "1.", "1.2.3", "x1", "0x", "1e"] {
            assert!(!is_number(n), "{n}");
        }
    }
}
