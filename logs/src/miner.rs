//! The online template miner: message → template (`<*>` for variables) and a
//! stable template id, one line at a time, in bounded memory.
//!
//! # Design (and what it takes from Drain, Brain and drain3)
//!
//! 1. **Mask** the message with [`Masker`]: most variables are found here, by
//!    rules, before any clustering (see `mask.rs` for the evidence).
//! 2. **Fast path**: the masked form is looked up in a hash map of masked
//!    forms already seen. Almost every line of a running service ends here: one
//!    pass over its bytes and one hash lookup, which is why the miner runs at
//!    millions of lines per second where Drain walks a prefix tree and scores
//!    every template in a leaf (He et al., "Drain", ICWS 2017, §III).
//! 3. **Slow path** (a masked form never seen): compare with the templates of
//!    the same token count, as Drain does, but position by position with a
//!    *variable-aware* rule instead of Drain's similarity threshold: two
//!    different constant words never match (Drain's threshold 0.5 merges
//!    `from RUNNING to SUCCEEDED` with `from NEW to SCHEDULED`); a variable on
//!    either side matches anything and generalises that position to `<*>`
//!    (`LOCAL(<*>)` vs `<*>`); at least one constant word must be equal, so that
//!    no template is made only of wildcards. The most specific match wins.
//! 4. **Families**: a masked form that matches nothing, but differs from
//!    `family_min_values - 1` templates in the same single position, where all
//!    hold different constant words, merges them into one template with `<*>`
//!    there: a variable without digits (`removing chargen`, `removing echo`,
//!    `removing daytime`, `removing time`). Brain's observation (Yu et al.,
//!    "Brain", TSC 2023) is that a variable position shows many values while a
//!    constant position of a family of statements shows few; a fixed count
//!    is the online form of its threshold, and two positions varying together
//!    (`from X to Y`) are never merged.
//! 5. **Bounded memory**: at most `max_templates` templates, the least recently
//!    seen evicted first (drain3's `max_clusters` LRU), each eviction counted;
//!    the masked-form cache is bounded by `max_cached_forms` and rebuilt from
//!    the templates when cleared.
//!
//! # Template ids
//!
//! An id is the FNV-1a 64 hash of the template's masked form when it was
//! created (a collision takes the hash of the form and a counter), so the same
//! first line gives the same id on every host and every run. An id stays when
//! its template is generalised; when templates merge, the oldest id survives
//! and [`TemplateMiner::resolve`] maps the others to it. [`MinerState`] holds
//! everything needed to continue after a restart with the same ids: it is
//! meant to be persisted with the source's checkpoint.

use std::cmp::Reverse;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, StateError};
use crate::hash::{fnv1a64, FxHashMap};
use crate::mask::{MaskConfig, Masker, VAR};

/// A template's id: stable across restarts and hosts (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TemplateId(pub u64);

impl fmt::Display for TemplateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// How the miner treats each source's messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MinerConfig {
    /// Variable masking (built-in rules, the source's own rules and words).
    pub mask: MaskConfig,
    /// Most templates kept; beyond it the least recently seen is evicted.
    pub max_templates: usize,
    /// Most masked forms cached for the fast path; the cache is cleared when
    /// full and refills from the templates.
    pub max_cached_forms: usize,
    /// Distinct constant words in one position, across templates that are
    /// otherwise equal, that make the position a variable (0: never).
    pub family_min_values: usize,
    /// Largest mean number of lines per value for a family to merge: a
    /// position whose values each recur often is a constant of several
    /// statements (`boot (command <*>)`, `wait (command <*>)`), one whose
    /// values are each seen once or twice is a variable.
    pub family_max_lines_per_value: f64,
    /// Whether the first token is left out of families: the first word of a
    /// message is usually the statement's own (Drain's premise that leading
    /// tokens are constants, He et al. 2017 §III-B): `boot (command <*>)`,
    /// `wait (command <*>)`.
    pub family_skip_first: bool,
    /// Whether a constant word and a variable in the same position may match
    /// (`session closed for user root` and `... user 1001`).
    pub word_matches_variable: bool,
}

/// Default for [`MinerConfig::max_templates`].
pub const DEFAULT_MAX_TEMPLATES: usize = 5_000;
/// Default for [`MinerConfig::family_min_values`].
pub const DEFAULT_FAMILY_MIN_VALUES: usize = 4;
/// Default for [`MinerConfig::family_max_lines_per_value`].
pub const DEFAULT_FAMILY_MAX_LINES_PER_VALUE: f64 = 2.0;

impl Default for MinerConfig {
    fn default() -> Self {
        Self {
            mask: MaskConfig::default(),
            max_templates: DEFAULT_MAX_TEMPLATES,
            max_cached_forms: 4 * DEFAULT_MAX_TEMPLATES,
            family_min_values: DEFAULT_FAMILY_MIN_VALUES,
            family_max_lines_per_value: DEFAULT_FAMILY_MAX_LINES_PER_VALUE,
            family_skip_first: true,
            word_matches_variable: true,
        }
    }
}

impl MinerConfig {
    /// A 64-bit fingerprint of everything that decides which template a
    /// message gets (not the memory bounds); stored in [`MinerState`].
    pub fn fingerprint(&self) -> u64 {
        let canonical = serde_json::json!({
            "mask": self.mask,
            "family_min_values": self.family_min_values,
            "family_max_lines_per_value": self.family_max_lines_per_value,
            "family_skip_first": self.family_skip_first,
            "word_matches_variable": self.word_matches_variable,
        });
        fnv1a64(canonical.to_string().as_bytes())
    }
}

/// What happened to the template a line was assigned to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The template existed and did not change.
    None,
    /// The line made a new template.
    Created,
    /// The template existed and one or more positions became `<*>`.
    Generalized,
    /// Templates merged into this one (a family, or two templates that became
    /// equal); [`TemplateMiner::resolve`] maps the absorbed ids here.
    Merged,
}

/// The result of [`TemplateMiner::add`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The line's template.
    pub id: TemplateId,
    /// What happened to it.
    pub change: Change,
    /// A template evicted to make room, if any.
    pub evicted: Option<TemplateId>,
}

/// Counters of a miner, for heal's `/metrics` and the bench.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MinerStats {
    /// Lines mined.
    pub lines: u64,
    /// Lines answered by the masked-form cache.
    pub cache_hits: u64,
    /// Templates created.
    pub created: u64,
    /// Templates generalised.
    pub generalized: u64,
    /// Templates absorbed by merges.
    pub merged: u64,
    /// Templates evicted by the cap.
    pub evicted: u64,
    /// Times the masked-form cache was cleared because it was full.
    pub cache_clears: u64,
}

/// A template as the miner exposes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemplateView<'a> {
    /// Its id.
    pub id: TemplateId,
    /// The text, tokens joined by single spaces, `<*>` for variables.
    pub text: &'a str,
    /// Lines assigned to it (including absorbed templates' lines).
    pub count: u64,
    /// The line number (the miner's own counter, not a clock) it was last seen at.
    pub last_seen: u64,
}

/// A template in [`MinerState`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateState {
    /// Its id.
    pub id: TemplateId,
    /// Its text.
    pub template: String,
    /// Lines assigned to it.
    pub count: u64,
    /// Miner line counter when last seen.
    pub last_seen: u64,
    /// Miner line counter when created (ties between candidates go to the oldest).
    pub created: u64,
    /// Ids merged into it (at most [`MAX_REDIRECTS_PER_TEMPLATE`], newest kept).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub absorbed: Vec<TemplateId>,
}

/// A miner's persistent state: templates, ids, counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinerState {
    /// Format version ([`STATE_VERSION`]).
    pub version: u32,
    /// [`MinerConfig::fingerprint`] of the configuration that mined it.
    pub config: u64,
    /// Lines mined so far (the miner's logical clock).
    pub tick: u64,
    /// Counters.
    pub stats: MinerStats,
    /// Templates, in no particular order.
    pub templates: Vec<TemplateState>,
}

/// Version of [`MinerState`] this build writes and reads.
pub const STATE_VERSION: u32 = 1;

/// Absorbed ids remembered per template, for [`TemplateMiner::resolve`].
pub const MAX_REDIRECTS_PER_TEMPLATE: usize = 16;

const NIL: u32 = u32::MAX;

#[derive(Debug, Clone)]
struct Template {
    id: TemplateId,
    /// Tokens joined by single spaces.
    text: Box<str>,
    /// End offset of each token in `text`.
    ends: Box<[u32]>,
    count: u64,
    last_seen: u64,
    created: u64,
    absorbed: Vec<TemplateId>,
}

impl Template {
    fn new(id: TemplateId, text: &str, tick: u64) -> Self {
        Self {
            id,
            text: text.into(),
            ends: token_ends(text).into_boxed_slice(),
            count: 0,
            last_seen: tick,
            created: tick,
            absorbed: Vec::new(),
        }
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn token(&self, i: usize) -> &str {
        let start = if i == 0 {
            0
        } else {
            self.ends[i - 1] as usize + 1
        };
        &self.text[start..self.ends[i] as usize]
    }

    /// Replaces the token at each position by the given text.
    fn rewrite(&mut self, changes: &[(usize, String)]) {
        let mut text = String::with_capacity(self.text.len());
        for i in 0..self.len() {
            if i > 0 {
                text.push(' ');
            }
            match changes.iter().find(|(p, _)| *p == i) {
                Some((_, t)) => text.push_str(t),
                None => text.push_str(self.token(i)),
            }
        }
        self.ends = token_ends(&text).into_boxed_slice();
        self.text = text.into_boxed_str();
    }

    fn heap_bytes(&self) -> usize {
        self.text.len() + self.ends.len() * 4 + self.absorbed.capacity() * 8
    }
}

/// End offsets of the space-separated tokens of a masked form. The empty
/// form has no token.
fn token_ends(text: &str) -> Vec<u32> {
    if text.is_empty() {
        return Vec::new();
    }
    let mut ends: Vec<u32> = text
        .bytes()
        .enumerate()
        .filter(|&(_, c)| c == b' ')
        .map(|(i, _)| i as u32)
        .collect();
    ends.push(text.len() as u32);
    ends
}

/// Lengths of the common prefix and suffix of two tokens, which a generalised
/// token keeps around its `<*>`: `<*>,` and `LOCAL(<*>),` give `<*>,`;
/// `chdir(<*>)` and `chdir(pwd)` give `chdir(<*>)`. A `<*>` is never split;
/// with `words` the affixes may hold letters and digits but end at a
/// punctuation boundary (`node-<*>` and `nodes` share nothing), without they
/// are punctuation only (`hiddev` and `hub` share nothing).
fn affixes(a: &str, b: &str, words: bool) -> (usize, usize) {
    let (x, y) = (a.as_bytes(), b.as_bytes());
    let n = x.len().min(y.len());
    let keep = |c: u8| {
        c.is_ascii()
            && c != b'*'
            && (c.is_ascii_punctuation() || (words && c.is_ascii_alphanumeric()))
    };
    let alnum = |c: Option<&u8>| c.is_some_and(u8::is_ascii_alphanumeric);
    let mut i = 0;
    while i < n
        && x[i] == y[i]
        && keep(x[i])
        && !x[i..].starts_with(b"<*>")
        && !y[i..].starts_with(b"<*>")
    {
        i += 1;
    }
    // Do not end inside a word: back off to the last punctuation.
    if i > 0 && x[i - 1].is_ascii_alphanumeric() && (alnum(x.get(i)) || alnum(y.get(i))) {
        while i > 0 && x[i - 1].is_ascii_alphanumeric() {
            i -= 1;
        }
    }
    let mut j = 0;
    while j < n - i
        && x[x.len() - 1 - j] == y[y.len() - 1 - j]
        && keep(x[x.len() - 1 - j])
        && !x[..x.len() - j].ends_with(b"<*>")
        && !y[..y.len() - j].ends_with(b"<*>")
    {
        j += 1;
    }
    if j > 0
        && x[x.len() - j].is_ascii_alphanumeric()
        && (alnum(x.len().checked_sub(j + 1).and_then(|k| x.get(k)))
            || alnum(y.len().checked_sub(j + 1).and_then(|k| y.get(k))))
    {
        while j > 0 && x[x.len() - j].is_ascii_alphanumeric() {
            j -= 1;
        }
    }
    (i, j)
}

/// The token that covers both `a` and `b`: their common affixes around `<*>`.
/// Between two constant words only punctuation is shared.
fn generalize(a: &str, b: &str) -> String {
    let words = a.contains(VAR) || b.contains(VAR);
    let (i, j) = affixes(a, b, words);
    format!("{}{VAR}{}", &a[..i], &a[a.len() - j..])
}

/// Whether `generalize(t, m) == t`: the template token already covers `m`.
fn covers(t: &str, m: &str) -> bool {
    let words = t.contains(VAR) || m.contains(VAR);
    let (i, j) = affixes(t, m, words);
    &t[i..t.len() - j] == VAR
}

/// A token that is a variable with punctuation around it and no letter or
/// digit outside the `<*>`s: `<*>`, `<*>,`, `(<*>)`, `[<*>]:`.
fn bare_variable(tok: &str) -> bool {
    tok.contains(VAR)
        && !tok
            .replace(VAR, "")
            .bytes()
            .any(|c| c.is_ascii_alphanumeric())
}

/// Whether a constant token holds a letter or digit (`****` does not).
fn has_alnum(tok: &str) -> bool {
    tok.bytes().any(|c| c.is_ascii_alphanumeric()) || !tok.is_ascii()
}

#[derive(Debug, Clone)]
struct Slot {
    gen: u32,
    template: Option<Template>,
    prev: u32,
    next: u32,
}

/// The online template miner of one source. See the module documentation.
#[derive(Debug, Clone)]
pub struct TemplateMiner {
    config: MinerConfig,
    masker: Masker,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Most recently seen.
    head: u32,
    /// Least recently seen: evicted first.
    tail: u32,
    live: usize,
    by_id: FxHashMap<TemplateId, u32>,
    by_len: FxHashMap<u32, Vec<u32>>,
    forms: FxHashMap<Box<str>, (u32, u32)>,
    redirects: FxHashMap<TemplateId, TemplateId>,
    tick: u64,
    stats: MinerStats,
    buf: String,
}

/// How a template matches a masked form of the same length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fit {
    /// Tokens equal in both.
    exact: u32,
    /// Positions to generalise.
    generalize: u32,
}

impl TemplateMiner {
    /// A miner with `config`; fails when a mask rule does not compile or a
    /// bound is zero.
    pub fn new(config: MinerConfig) -> Result<Self, ConfigError> {
        if config.max_templates == 0 {
            return Err(ConfigError::Miner {
                field: "max_templates",
                value: "0".into(),
                reason: "must be at least 1".into(),
            });
        }
        if config.family_min_values == 1 {
            return Err(ConfigError::Miner {
                field: "family_min_values",
                value: "1".into(),
                reason: "0 (off) or at least 2".into(),
            });
        }
        if !(config.family_max_lines_per_value.is_finite()
            && config.family_max_lines_per_value > 0.0)
        {
            return Err(ConfigError::Miner {
                field: "family_max_lines_per_value",
                value: config.family_max_lines_per_value.to_string(),
                reason: "must be a positive number".into(),
            });
        }
        let masker = Masker::new(&config.mask)?;
        Ok(Self {
            config,
            masker,
            slots: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            live: 0,
            by_id: FxHashMap::default(),
            by_len: FxHashMap::default(),
            forms: FxHashMap::default(),
            redirects: FxHashMap::default(),
            tick: 0,
            stats: MinerStats::default(),
            buf: String::new(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &MinerConfig {
        &self.config
    }

    /// The masker (to mask a message without mining it).
    pub fn masker(&self) -> &Masker {
        &self.masker
    }

    /// Counters.
    pub fn stats(&self) -> MinerStats {
        self.stats
    }

    /// Number of live templates.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether no template is live.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Mines one message (the part of a line after its header).
    pub fn add(&mut self, message: &str) -> Outcome {
        self.tick += 1;
        self.stats.lines += 1;
        let mut buf = std::mem::take(&mut self.buf);
        self.masker.mask_into(message, &mut buf);
        let outcome = match self.cached(&buf) {
            Some(slot) => {
                self.stats.cache_hits += 1;
                self.hit(slot);
                Outcome {
                    id: self.tpl(slot).id,
                    change: Change::None,
                    evicted: None,
                }
            }
            None => self.slow(&buf),
        };
        self.buf = buf;
        outcome
    }

    /// The template `id` now belongs to: itself while live, the survivor when
    /// it was merged, `None` when it (or its survivor) was evicted.
    pub fn resolve(&self, id: TemplateId) -> Option<TemplateId> {
        let mut id = id;
        for _ in 0..64 {
            if self.by_id.contains_key(&id) {
                return Some(id);
            }
            id = *self.redirects.get(&id)?;
        }
        None
    }

    /// The live template `id` (after [`Self::resolve`]).
    pub fn template(&self, id: TemplateId) -> Option<TemplateView<'_>> {
        let id = self.resolve(id)?;
        let slot = *self.by_id.get(&id)?;
        Some(self.view(slot))
    }

    /// Live templates, most recently seen first.
    pub fn templates(&self) -> impl Iterator<Item = TemplateView<'_>> + '_ {
        let mut slot = self.head;
        std::iter::from_fn(move || {
            if slot == NIL {
                return None;
            }
            let view = self.view(slot);
            slot = self.slots[slot as usize].next;
            Some(view)
        })
    }

    /// Approximate heap bytes held (templates, indexes, cache), for the
    /// memory figures of the bench and `/metrics`.
    pub fn memory_bytes(&self) -> usize {
        const ENTRY: usize = 8; // hashbrown control byte and load-factor slack, rounded
        let templates: usize = self
            .slots
            .iter()
            .filter_map(|s| s.template.as_ref())
            .map(Template::heap_bytes)
            .sum();
        let slots = self.slots.capacity() * std::mem::size_of::<Slot>();
        let by_id = self.by_id.capacity() * (std::mem::size_of::<(TemplateId, u32)>() + ENTRY);
        let by_len: usize = self.by_len.capacity()
            * (std::mem::size_of::<(u32, Vec<u32>)>() + ENTRY)
            + self
                .by_len
                .values()
                .map(|v| v.capacity() * 4)
                .sum::<usize>();
        let forms: usize = self.forms.capacity()
            * (std::mem::size_of::<(Box<str>, (u32, u32))>() + ENTRY)
            + self.forms.keys().map(|k| k.len()).sum::<usize>();
        let redirects = self.redirects.capacity() * (16 + ENTRY);
        templates + slots + by_id + by_len + forms + redirects + self.buf.capacity()
    }

    /// The state to persist with the source's checkpoint.
    pub fn state(&self) -> MinerState {
        MinerState {
            version: STATE_VERSION,
            config: self.config.fingerprint(),
            tick: self.tick,
            stats: self.stats,
            templates: self
                .slots
                .iter()
                .filter_map(|s| s.template.as_ref())
                .map(|t| TemplateState {
                    id: t.id,
                    template: t.text.to_string(),
                    count: t.count,
                    last_seen: t.last_seen,
                    created: t.created,
                    absorbed: t.absorbed.clone(),
                })
                .collect(),
        }
    }

    /// A miner that continues from `state` (same ids, counts, recency).
    /// The configuration must be the one that mined the state.
    pub fn from_state(config: MinerConfig, state: MinerState) -> Result<Self, StateError> {
        if state.version != STATE_VERSION {
            return Err(StateError::Version {
                found: state.version,
                expected: STATE_VERSION,
            });
        }
        let expected = config.fingerprint();
        if state.config != expected {
            return Err(StateError::Config {
                found: state.config,
                expected,
            });
        }
        let mut miner = Self::new(config).map_err(|e| StateError::Template {
            id: 0,
            reason: e.to_string(),
        })?;
        let mut templates = state.templates;
        // Oldest first, so that each insert becomes the most recent.
        templates.sort_by_key(|t| (t.last_seen, t.created, t.id));
        let keep_from = templates.len().saturating_sub(miner.config.max_templates);
        for t in templates.into_iter().skip(keep_from) {
            if miner.by_id.contains_key(&t.id) {
                return Err(StateError::Template {
                    id: t.id.0,
                    reason: "appears twice".into(),
                });
            }
            if t.template.contains("  ") || t.template.starts_with(' ') || t.template.ends_with(' ')
            {
                return Err(StateError::Template {
                    id: t.id.0,
                    reason: "template text has empty tokens".into(),
                });
            }
            let mut tpl = Template::new(t.id, &t.template, t.created);
            tpl.count = t.count;
            tpl.last_seen = t.last_seen;
            for &a in &t.absorbed {
                miner.redirects.insert(a, t.id);
            }
            tpl.absorbed = t.absorbed;
            miner.insert(tpl);
        }
        miner.tick = state.tick;
        miner.stats = state.stats;
        Ok(miner)
    }

    // ---- internals ----

    fn tpl(&self, slot: u32) -> &Template {
        self.slots[slot as usize]
            .template
            .as_ref()
            .expect("slot of a live template")
    }

    fn tpl_mut(&mut self, slot: u32) -> &mut Template {
        self.slots[slot as usize]
            .template
            .as_mut()
            .expect("slot of a live template")
    }

    fn view(&self, slot: u32) -> TemplateView<'_> {
        let t = self.tpl(slot);
        TemplateView {
            id: t.id,
            text: &t.text,
            count: t.count,
            last_seen: t.last_seen,
        }
    }

    fn cached(&mut self, form: &str) -> Option<u32> {
        let &(slot, gen) = self.forms.get(form)?;
        let s = &self.slots[slot as usize];
        if s.gen == gen && s.template.is_some() {
            Some(slot)
        } else {
            self.forms.remove(form);
            None
        }
    }

    fn remember(&mut self, form: &str, slot: u32) {
        if self.forms.len() >= self.config.max_cached_forms.max(1) {
            self.forms.clear();
            self.stats.cache_clears += 1;
        }
        let gen = self.slots[slot as usize].gen;
        self.forms.insert(form.into(), (slot, gen));
    }

    /// Counts a line for `slot` and makes it the most recent.
    fn hit(&mut self, slot: u32) {
        let tick = self.tick;
        let t = self.tpl_mut(slot);
        t.count += 1;
        t.last_seen = tick;
        self.unlink(slot);
        self.push_front(slot);
    }

    fn unlink(&mut self, slot: u32) {
        let (prev, next) = {
            let s = &self.slots[slot as usize];
            (s.prev, s.next)
        };
        if prev == NIL {
            self.head = next;
        } else {
            self.slots[prev as usize].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.slots[next as usize].prev = prev;
        }
        let s = &mut self.slots[slot as usize];
        s.prev = NIL;
        s.next = NIL;
    }

    fn push_front(&mut self, slot: u32) {
        let old = self.head;
        {
            let s = &mut self.slots[slot as usize];
            s.prev = NIL;
            s.next = old;
        }
        if old == NIL {
            self.tail = slot;
        } else {
            self.slots[old as usize].prev = slot;
        }
        self.head = slot;
    }

    /// Adds a template as the most recent; returns its slot.
    fn insert(&mut self, t: Template) -> u32 {
        let len = t.len() as u32;
        let id = t.id;
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize].template = Some(t);
                slot
            }
            None => {
                self.slots.push(Slot {
                    gen: 0,
                    template: Some(t),
                    prev: NIL,
                    next: NIL,
                });
                (self.slots.len() - 1) as u32
            }
        };
        self.push_front(slot);
        self.by_id.insert(id, slot);
        self.by_len.entry(len).or_default().push(slot);
        self.live += 1;
        slot
    }

    /// Removes a live template; its cached forms go stale with the generation.
    fn remove(&mut self, slot: u32) -> Template {
        self.unlink(slot);
        let s = &mut self.slots[slot as usize];
        let t = s.template.take().expect("slot of a live template");
        s.gen = s.gen.wrapping_add(1);
        self.free.push(slot);
        self.by_id.remove(&t.id);
        let len = t.len() as u32;
        if let Some(v) = self.by_len.get_mut(&len) {
            v.retain(|&x| x != slot);
            if v.is_empty() {
                self.by_len.remove(&len);
            }
        }
        self.live -= 1;
        t
    }

    fn evict_lru(&mut self) -> Option<TemplateId> {
        if self.tail == NIL {
            return None;
        }
        let t = self.remove(self.tail);
        for a in &t.absorbed {
            self.redirects.remove(a);
        }
        self.stats.evicted += 1;
        Some(t.id)
    }

    /// Merges `victim` into `survivor` (counts, redirects).
    fn absorb(&mut self, survivor: u32, victim: u32) {
        let v = self.remove(victim);
        let sid = self.tpl(survivor).id;
        self.redirects.insert(v.id, sid);
        for &a in &v.absorbed {
            self.redirects.insert(a, sid);
        }
        let t = self.tpl_mut(survivor);
        t.count += v.count;
        t.created = t.created.min(v.created);
        t.absorbed.push(v.id);
        t.absorbed.extend(v.absorbed);
        if t.absorbed.len() > MAX_REDIRECTS_PER_TEMPLATE {
            let drop = t.absorbed.len() - MAX_REDIRECTS_PER_TEMPLATE;
            let dropped: Vec<TemplateId> = t.absorbed.drain(..drop).collect();
            for d in dropped {
                self.redirects.remove(&d);
            }
        }
        self.stats.merged += 1;
    }

    /// How template `t` fits the masked form's tokens, or `None`.
    ///
    /// Two different tokens are compatible when one of them is a bare
    /// variable (a `<*>` with punctuation only: `<*>,`, `(<*>)`): `LOCAL(<*>),`
    /// and `<*>,` are, `icbi...<*>` and `dcbf...<*>` (different constant words
    /// around a variable) are not, and a punctuation-only word (`****`) is
    /// layout, never a value. Turning a constant word of the template into a
    /// variable needs two equal words per word turned, so that a template's
    /// constant cannot be overwritten by a form that shares little with it.
    fn fit(&self, t: &Template, toks: &[&str]) -> Option<Fit> {
        let mut exact = 0u32;
        let mut exact_words = 0u32;
        let mut generalize = 0u32;
        let mut overwritten = 0u32;
        for (i, &m) in toks.iter().enumerate() {
            let tt = t.token(i);
            if tt == m {
                exact += 1;
                if !tt.contains(VAR) {
                    exact_words += 1;
                }
                continue;
            }
            // Compare what differs once the common affixes are set aside.
            let (a, z) = affixes(tt, m, true);
            let (mt, mm) = (&tt[a..tt.len() - z], &m[a..m.len() - z]);
            match (mt.contains(VAR), mm.contains(VAR)) {
                (false, false) => return None,
                (true, true) => {
                    if !bare_variable(mt) && !bare_variable(mm) {
                        return None;
                    }
                }
                (true, false) => {
                    if !self.config.word_matches_variable || !bare_variable(mt) || !has_alnum(mm) {
                        return None;
                    }
                }
                (false, true) => {
                    if !self.config.word_matches_variable || !bare_variable(mm) || !has_alnum(mt) {
                        return None;
                    }
                    overwritten += 1;
                }
            }
            if mt != VAR {
                generalize += 1;
            }
        }
        let anchored = exact_words >= 1 && exact_words >= 2 * overwritten;
        (anchored || toks.is_empty()).then_some(Fit { exact, generalize })
    }

    fn slow(&mut self, form: &str) -> Outcome {
        let toks: Vec<&str> = if form.is_empty() {
            Vec::new()
        } else {
            form.split(' ').collect()
        };
        let len = toks.len() as u32;
        // Best fit among templates of the same length: most equal tokens, then
        // fewest generalisations, then the oldest.
        type Key = (u32, Reverse<u32>, Reverse<u64>);
        let mut best: Option<(Key, Fit, u32)> = None;
        if let Some(bucket) = self.by_len.get(&len) {
            for &slot in bucket {
                let t = self.tpl(slot);
                if let Some(fit) = self.fit(t, &toks) {
                    let key = (fit.exact, Reverse(fit.generalize), Reverse(t.created));
                    if best.as_ref().is_none_or(|(k, _, _)| key > *k) {
                        best = Some((key, fit, slot));
                    }
                }
            }
        }
        if let Some((_, fit, slot)) = best {
            let mut change = Change::None;
            let mut slot = slot;
            if fit.generalize > 0 {
                let changes: Vec<(usize, String)> = {
                    let t = self.tpl(slot);
                    (0..toks.len())
                        .filter(|&i| t.token(i) != toks[i] && !covers(t.token(i), toks[i]))
                        .map(|i| (i, generalize(t.token(i), toks[i])))
                        .collect()
                };
                self.tpl_mut(slot).rewrite(&changes);
                self.stats.generalized += 1;
                change = Change::Generalized;
                if let Some(s) = self.absorb_covered(slot) {
                    slot = s;
                    change = Change::Merged;
                }
            }
            self.hit(slot);
            self.remember(form, slot);
            return Outcome {
                id: self.tpl(slot).id,
                change,
                evicted: None,
            };
        }
        if let Some(slot) = self.family(&toks) {
            self.hit(slot);
            self.remember(form, slot);
            return Outcome {
                id: self.tpl(slot).id,
                change: Change::Merged,
                evicted: None,
            };
        }
        let evicted = if self.live >= self.config.max_templates {
            self.evict_lru()
        } else {
            None
        };
        let id = self.new_id(form);
        let slot = self.insert(Template::new(id, form, self.tick));
        self.stats.created += 1;
        self.hit(slot);
        self.remember(form, slot);
        Outcome {
            id,
            change: Change::Created,
            evicted,
        }
    }

    /// After `slot` was generalised: every other template of the same length
    /// that it now covers (it fits without generalising) merges with it. The
    /// older id survives, with the more general text. Returns the survivor.
    fn absorb_covered(&mut self, slot: u32) -> Option<u32> {
        let len = self.tpl(slot).len() as u32;
        let covered: Vec<u32> = {
            let t = self.tpl(slot);
            self.by_len
                .get(&len)?
                .iter()
                .copied()
                .filter(|&s| s != slot)
                .filter(|&s| {
                    let other = self.tpl(s);
                    let toks: Vec<&str> = (0..other.len()).map(|i| other.token(i)).collect();
                    self.fit(t, &toks).is_some_and(|f| f.generalize == 0)
                })
                .collect()
        };
        if covered.is_empty() {
            return None;
        }
        let mut survivor = slot;
        for s in covered {
            if self.tpl(s).created < self.tpl(survivor).created {
                // Keep the older id: it takes the general text.
                let text = self.tpl(survivor).text.clone();
                let ends = self.tpl(survivor).ends.clone();
                let old = self.tpl_mut(s);
                old.text = text;
                old.ends = ends;
                self.absorb(s, survivor);
                survivor = s;
            } else {
                self.absorb(survivor, s);
            }
        }
        Some(survivor)
    }

    /// The family rule (module docs, 4.): returns the survivor's slot when the
    /// new form completes a family.
    fn family(&mut self, toks: &[&str]) -> Option<u32> {
        let k = self.config.family_min_values;
        if k < 2 || toks.len() < 2 {
            return None;
        }
        let first = usize::from(self.config.family_skip_first);
        let bucket = self.by_len.get(&(toks.len() as u32))?;
        // (position, slots) of templates differing from `toks` in exactly one
        // position where both hold constant words.
        let mut by_pos: Vec<(usize, Vec<u32>)> = Vec::new();
        for &slot in bucket {
            let t = self.tpl(slot);
            let mut diff = None;
            let mut ok = true;
            for (i, &m) in toks.iter().enumerate() {
                let tt = t.token(i);
                if tt == m || (tt.contains(VAR) && m.contains(VAR) && covers(tt, m)) {
                    continue;
                }
                if diff.is_some() || tt.contains(VAR) || m.contains(VAR) {
                    ok = false;
                    break;
                }
                diff = Some(i);
            }
            if let (true, Some(p)) = (ok, diff.filter(|&p| p >= first)) {
                match by_pos.iter_mut().find(|(q, _)| *q == p) {
                    Some((_, v)) => v.push(slot),
                    None => by_pos.push((p, vec![slot])),
                }
            }
        }
        let (p, members) = by_pos.into_iter().find(|(_, v)| {
            // Many values, each seen few times (Brain: constants are frequent).
            let lines: u64 = v.iter().map(|&s| self.tpl(s).count).sum::<u64>() + 1;
            let values = v.len() + 1;
            values >= k && lines as f64 <= self.config.family_max_lines_per_value * values as f64
        })?;
        // The merged template must keep a constant word.
        let words = toks
            .iter()
            .enumerate()
            .filter(|&(i, m)| i != p && !m.contains(VAR))
            .count();
        if words == 0 {
            return None;
        }
        let survivor = *members.iter().min_by_key(|&&s| (self.tpl(s).created, s))?;
        // Every position where a member differs from the new form (the
        // family's position, and wildcards some members already have) becomes
        // the token covering all of them.
        let mut changes: Vec<(usize, String)> = Vec::new();
        for (i, &m) in toks.iter().enumerate() {
            let mut g = m.to_string();
            for &s in &members {
                let tt = self.tpl(s).token(i);
                if tt != g {
                    g = generalize(tt, &g);
                }
            }
            if g != self.tpl(survivor).token(i) {
                changes.push((i, g));
            }
        }
        for &s in &members {
            if s != survivor {
                self.absorb(survivor, s);
            }
        }
        self.tpl_mut(survivor).rewrite(&changes);
        self.absorb_covered(survivor).or(Some(survivor))
    }

    fn new_id(&self, form: &str) -> TemplateId {
        let mut h = fnv1a64(form.as_bytes());
        let mut salt = 0u32;
        while h == 0
            || self.by_id.contains_key(&TemplateId(h))
            || self.redirects.contains_key(&TemplateId(h))
        {
            salt += 1;
            let mut bytes = form.as_bytes().to_vec();
            bytes.push(0);
            bytes.extend_from_slice(&salt.to_le_bytes());
            h = fnv1a64(&bytes);
        }
        TemplateId(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn miner() -> TemplateMiner {
        TemplateMiner::new(MinerConfig::default()).unwrap()
    }

    fn text(m: &TemplateMiner, id: TemplateId) -> String {
        m.template(id).unwrap().text.to_string()
    }

    #[test]
    fn same_statement_same_template_and_id() {
        let mut m = miner();
        let a = m.add("Receiving block blk_1 src: /10.0.0.1:50010 dest: /10.0.0.2:50010");
        let b = m.add("Receiving block blk_2 src: /10.0.0.3:41000 dest: /10.0.0.2:50010");
        assert_eq!(a.change, Change::Created);
        assert_eq!(b.change, Change::None);
        assert_eq!(a.id, b.id);
        assert_eq!(text(&m, a.id), "Receiving block <*> src: <*> dest: <*>");
        // The id is the stable hash of the first masked form.
        assert_eq!(
            a.id,
            TemplateId(fnv1a64(b"Receiving block <*> src: <*> dest: <*>"))
        );
        assert_eq!(m.stats().cache_hits, 1);
    }

    #[test]
    fn different_constant_words_never_merge() {
        let mut m = miner();
        let a = m.add("attempt_1 TaskAttempt Transitioned from NEW to UNASSIGNED");
        let b = m.add("attempt_2 TaskAttempt Transitioned from UNASSIGNED to ASSIGNED");
        let c = m.add("attempt_3 TaskAttempt Transitioned from ASSIGNED to RUNNING");
        assert_ne!(a.id, b.id);
        assert_ne!(b.id, c.id);
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn a_variable_generalises_its_position() {
        let mut m = miner();
        // `<*>,` covers `LOCAL(<*>),`: same template, unchanged.
        let a = m.add("synchronized to 10.0.0.1, stratum 2");
        let b = m.add("synchronized to LOCAL(0), stratum 10");
        assert_eq!((b.id, b.change), (a.id, Change::None));
        assert_eq!(text(&m, a.id), "synchronized to <*>, stratum <*>");
        // A word where the template has a variable.
        let c = m.add("synchronized to pool, stratum 3");
        assert_eq!(c.id, a.id);
        // A constant word of the template becomes a variable.
        let d = m.add("session opened for user root by sshd");
        let e = m.add("session opened for user 1001 by sshd");
        assert_eq!((e.id, e.change), (d.id, Change::Generalized));
        assert_eq!(text(&m, d.id), "session opened for user <*> by sshd");
    }

    #[test]
    fn different_words_around_variables_and_layout_words_stay_apart() {
        let mut m = miner();
        let a = m.add("data store interrupt caused by icbi.........0");
        let b = m.add("data store interrupt caused by dcbf.........0");
        assert_ne!(a.id, b.id);
        // A word inside the same constant frame is a value.
        let g = m.add("LOGIN chdir(/home/x) failed");
        let h = m.add("LOGIN chdir(pwd) failed");
        assert_eq!(h.id, g.id);
        assert_eq!(text(&m, g.id), "LOGIN chdir(<*>) failed");
        let i = m.add("worker node-7 up");
        let j = m.add("worker nodes up");
        assert_ne!(i.id, j.id);
        let c = m.add("Fan speeds ( 3552 3534 3375 **** 3375 3515 )");
        let d = m.add("Fan speeds ( 3552 3534 3375 3375 3375 3515 )");
        assert_ne!(c.id, d.id);
        // One shared word is not enough to overwrite another.
        let e = m.add("tickTime set to 3000");
        let f = m.add("Snapshotting: 0x1f to 7");
        assert_ne!(e.id, f.id);
    }

    #[test]
    fn a_family_of_words_becomes_a_variable() {
        let mut m = miner();
        let ids: Vec<TemplateId> = ["chargen", "daytime", "echo", "time"]
            .iter()
            .map(|s| m.add(&format!("removing {s}")).id)
            .collect();
        // Values seen many times each are constants of several statements.
        for _ in 0..5 {
            for w in ["boot", "wait", "halt"] {
                m.add(&format!("{w} (command 12)"));
            }
        }
        let halt = m.add("ping (command 13)");
        assert_eq!(halt.change, Change::Created);
        // Three separate templates until the fourth value completes the family.
        assert_eq!(m.resolve(ids[0]), Some(ids[0]));
        for id in &ids {
            assert_eq!(m.resolve(*id), Some(ids[0]));
        }
        assert_eq!(text(&m, ids[0]), "removing <*>");
        assert_eq!(m.add("removing discard").id, ids[0]);
        assert_eq!(m.len(), 5);
        assert_eq!(m.stats().merged, 2);
        // Two values are not a family.
        m.add("Link error");
        m.add("Link ok");
        assert_eq!(m.len(), 7);
    }

    #[test]
    fn single_word_messages_stay_apart() {
        let mut m = miner();
        for w in ["normal", "warning", "running", "active", "blocked"] {
            m.add(w);
        }
        assert_eq!(m.len(), 5);
    }

    #[test]
    fn the_cap_evicts_the_least_recently_seen() {
        let mut m = TemplateMiner::new(MinerConfig {
            max_templates: 2,
            ..MinerConfig::default()
        })
        .unwrap();
        let a = m.add("alpha one");
        let b = m.add("beta two three");
        m.add("alpha one"); // a is now the most recent
        let c = m.add("gamma four five six");
        assert_eq!(c.evicted, Some(b.id));
        assert_eq!(m.len(), 2);
        assert!(m.template(b.id).is_none());
        assert!(m.template(a.id).is_some());
        assert_eq!(m.stats().evicted, 1);
        // b comes back as a new template with the same stable id.
        let b2 = m.add("beta two three");
        assert_eq!(b2.id, b.id);
        assert_eq!(b2.change, Change::Created);
        assert_eq!(b2.evicted, Some(a.id));
    }

    /// A distinct letters-only word for `i` (no digit: not masked).
    fn word(mut i: usize) -> String {
        let mut w = String::from("w");
        loop {
            w.push((b'a' + (i % 26) as u8) as char);
            i /= 26;
            if i == 0 {
                return w;
            }
        }
    }

    #[test]
    fn memory_stays_bounded_under_unique_templates() {
        let mut m = TemplateMiner::new(MinerConfig {
            max_templates: 50,
            max_cached_forms: 200,
            ..MinerConfig::default()
        })
        .unwrap();
        // Two words vary together: no family, every message a new template.
        let msg = |i: usize| format!("{} then {} happened to the widget", word(i), word(i + 7));
        for i in 0..5_000 {
            m.add(&msg(i));
        }
        let after_5k = m.memory_bytes();
        for i in 5_000..20_000 {
            m.add(&msg(i));
        }
        assert_eq!(m.len(), 50);
        let s = m.stats();
        assert_eq!(s.created, 20_000);
        assert_eq!(s.evicted, 20_000 - 50);
        assert!(s.cache_clears > 0);
        assert!(m.forms.len() <= 200);
        assert!(
            m.memory_bytes() <= after_5k + after_5k / 10,
            "{} > {after_5k}",
            m.memory_bytes()
        );
    }

    #[test]
    fn state_round_trips_and_ids_survive_a_restart() {
        let mut m = miner();
        let msgs = [
            "session opened for user 1001 by uid 0",
            "removing chargen",
            "removing daytime",
            "removing echo",
            "removing time",
            "Link error",
        ];
        let ids: Vec<TemplateId> = msgs.iter().map(|s| m.add(s).id).collect();
        let json = serde_json::to_string(&m.state()).unwrap();
        let state: MinerState = serde_json::from_str(&json).unwrap();
        let mut r = TemplateMiner::from_state(MinerConfig::default(), state).unwrap();
        for (msg, id) in msgs.iter().zip(&ids) {
            assert_eq!(Some(r.add(msg).id), m.resolve(*id), "{msg}");
        }
        assert_eq!(r.stats().lines, 12);
        assert_eq!(r.resolve(ids[2]), Some(ids[1]));
        assert_eq!(r.templates().count(), m.templates().count());
    }

    #[test]
    fn a_state_from_another_configuration_is_refused() {
        let m = miner();
        let mut state = m.state();
        let other = MinerConfig {
            family_min_values: 3,
            ..MinerConfig::default()
        };
        let err = TemplateMiner::from_state(other, state.clone()).unwrap_err();
        assert!(matches!(err, StateError::Config { .. }), "{err}");
        state.version = 99;
        let err = TemplateMiner::from_state(MinerConfig::default(), state).unwrap_err();
        assert_eq!(
            err.to_string(),
            "template state version 99, this heal reads version 1"
        );
    }

    #[test]
    fn bad_settings_are_refused() {
        let zero = MinerConfig {
            max_templates: 0,
            ..MinerConfig::default()
        };
        assert_eq!(
            TemplateMiner::new(zero).unwrap_err().to_string(),
            "miner setting `max_templates` = 0: must be at least 1"
        );
    }

    #[test]
    fn arbitrary_text_never_panics_and_state_survives() {
        // Seeded SplitMix64; characters chosen to hit every rule's edges.
        let mut x: u64 = 7;
        let mut next = move || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let alphabet: Vec<char> = "ab0:/.=<*>()[]{},;'\"@#|-_\\ é€\t\n..x9F:"
            .chars()
            .collect();
        let mut m = TemplateMiner::new(MinerConfig {
            max_templates: 40,
            max_cached_forms: 64,
            ..MinerConfig::default()
        })
        .unwrap();
        for _ in 0..5_000 {
            let len = (next() % 40) as usize;
            let msg: String = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let o = m.add(&msg);
            let t = m
                .template(o.id)
                .expect("a line's template is live right after it");
            assert_eq!(t.text, t.text.trim());
            assert!(!t.text.contains("  "), "{:?}", t.text);
        }
        assert!(m.len() <= 40);
        let state = m.state();
        let r = TemplateMiner::from_state(m.config().clone(), state).unwrap();
        assert_eq!(r.len(), m.len());
    }

    #[test]
    fn a_state_larger_than_the_cap_keeps_the_most_recent() {
        let mut m = miner();
        for w in ["alpha one", "beta two", "gamma three"] {
            m.add(w);
        }
        let small = MinerConfig {
            max_templates: 2,
            ..MinerConfig::default()
        };
        let r = TemplateMiner::from_state(small, m.state()).unwrap();
        let kept: Vec<&str> = r.templates().map(|t| t.text).collect();
        assert_eq!(kept, ["gamma three", "beta two"]);
    }

    #[test]
    fn empty_messages_have_a_template() {
        let mut m = miner();
        let a = m.add("");
        let b = m.add("   ");
        assert_eq!(a.id, b.id);
        assert_eq!(text(&m, a.id), "");
    }
}
