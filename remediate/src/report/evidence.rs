//! Evidence: the samples of an incident's series around it, with the
//! detector's normal band at each, so that a report can draw the signal as
//! the detector saw it.
//!
//! Two pieces, both pure data with no clock and no I/O:
//!
//! - [`EvidenceRing`], a fixed-size ring of a series' most recent samples,
//!   kept for every watched series so that an incident's evidence starts
//!   with the context *before* it opened (an anomaly is only visible against
//!   what came before it);
//! - [`EvidenceRecorder`], the evidence of one open incident: a copy of the
//!   ring at opening, then every further sample of its series until the
//!   incident resolves, bounded by decimation.
//!
//! The finished [`Evidence`] serializes with serde, so an incident store can
//! keep it as JSON beside the incident.

use serde::{Deserialize, Serialize};

/// One sample as the detector saw it: its value and the normal band
/// `level ± k·sigma` the detector held just before it.
///
/// `f32` because a chart needs no more (seven significant digits), and it
/// halves the ring every series carries; the timestamp stays exact.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidencePoint {
    /// Event time, ms since the Unix epoch.
    pub ts_ms: i64,
    /// The sample's value.
    pub value: f32,
    /// Lower edge of the normal band.
    pub lo: f32,
    /// Upper edge of the normal band.
    pub hi: f32,
}

impl EvidencePoint {
    /// A point from the pipeline's `f64`s. Values beyond `f32`'s range are
    /// clamped to it and a non-finite band edge becomes the value itself, so
    /// that a point always serializes to JSON numbers (JSON has no
    /// infinity) and always draws.
    pub fn new(ts_ms: i64, value: f64, band: (f64, f64)) -> Self {
        let clamp = |x: f64| x.clamp(f32::MIN as f64, f32::MAX as f64) as f32;
        let value = if value.is_finite() { clamp(value) } else { 0.0 };
        let edge = |x: f64| if x.is_finite() { clamp(x) } else { value };
        EvidencePoint {
            ts_ms,
            value,
            lo: edge(band.0),
            hi: edge(band.1),
        }
    }

    /// How far out of its band the point is, in band half-widths from the
    /// band's middle: what decimation keeps the largest of, so that a spike
    /// never disappears from a long incident's chart.
    fn outlyingness(&self) -> f32 {
        let mid = (self.lo + self.hi) / 2.0;
        let half = ((self.hi - self.lo) / 2.0).max(f32::MIN_POSITIVE);
        (self.value - mid).abs() / half
    }
}

/// The samples of an incident's series, oldest first: the context before
/// the incident opened, then every sample (or, once decimated, the most
/// outlying sample of every `stride`) until it resolved.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    /// The points, in time order.
    pub points: Vec<EvidencePoint>,
    /// How many of the first points came before the incident opened (the
    /// ring's copy, the opening sample included).
    #[serde(default)]
    pub context: usize,
    /// Samples the points stand for: more than `points.len()` when the
    /// incident lasted long enough to be decimated.
    #[serde(default)]
    pub samples: u64,
    /// For a signal read from logs: lines it counted and the templates whose
    /// rates moved most, from shortly before the opening on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<LogEvidence>,
}

/// Lines an incident's log signal counted, and what changed in its log.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogEvidence {
    /// Example lines, oldest first: at most [`LOG_LINES_KEPT`], each cut at
    /// [`LOG_LINE_CHARS`] characters, as read (a report escapes them).
    pub lines: Vec<LogLine>,
    /// Lines the signal counted over the slots the examples come from
    /// (more than `lines.len()` when some were left out).
    pub counted: u64,
    /// The templates of the source whose rate moved most, the largest
    /// change first (at most [`TEMPLATE_MOVES_KEPT`]).
    pub templates: Vec<TemplateMove>,
}

/// One example line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogLine {
    /// The slot that counted it, ms since the epoch.
    pub ts_ms: i64,
    /// The line.
    pub text: String,
}

/// A template whose rate changed: lines per slot before (the source's
/// moving average when the change was first seen) and at its peak since.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateMove {
    /// Its id (the `template_id` label of a `count: templates` signal).
    pub template_id: String,
    /// The template (`connection to <*> refused`), cut at
    /// [`LOG_LINE_CHARS`] characters.
    pub template: String,
    /// Lines per slot before.
    pub before: f64,
    /// Lines per slot at the largest departure from `before`.
    pub during: f64,
}

/// Example lines an incident keeps.
pub const LOG_LINES_KEPT: usize = 20;
/// Characters kept of one example line or template.
pub const LOG_LINE_CHARS: usize = 1_000;
/// Moved templates an incident keeps.
pub const TEMPLATE_MOVES_KEPT: usize = 10;

impl LogEvidence {
    /// Adds one slot's lines (`counted` of them in all, some given as
    /// examples) and its moved templates; bounded whatever the input.
    pub fn add(&mut self, ts_ms: i64, counted: u64, lines: &[String], moves: &[TemplateMove]) {
        self.counted += counted;
        for line in lines {
            if self.lines.len() >= LOG_LINES_KEPT {
                break;
            }
            self.lines.push(LogLine {
                ts_ms,
                text: cut(line),
            });
        }
        for m in moves {
            let change = |m: &TemplateMove| (m.during - m.before).abs();
            match self
                .templates
                .iter_mut()
                .find(|t| t.template_id == m.template_id)
            {
                Some(t) => {
                    // The first `before` stands; the largest departure wins.
                    if (m.during - t.before).abs() > change(t) {
                        t.during = m.during;
                    }
                }
                None => self.templates.push(TemplateMove {
                    template_id: cut(&m.template_id),
                    template: cut(&m.template),
                    before: m.before,
                    during: m.during,
                }),
            }
            self.templates
                .sort_by(|a, b| change(b).total_cmp(&change(a)));
            self.templates.truncate(TEMPLATE_MOVES_KEPT);
        }
    }
}

fn cut(text: &str) -> String {
    text.chars().take(LOG_LINE_CHARS).collect()
}

/// Samples a series' ring holds.
pub const RING_LEN: usize = 64;

/// The most recent [`RING_LEN`] samples of one series, with their bands.
///
/// # Memory
///
/// Every watched series carries one, so it is packed: per sample the value
/// and both band edges as `f32` and the gap to the previous sample as a
/// `u32` of milliseconds (16 bytes), plus the newest timestamp as an `i64`:
/// 1,040 bytes in all (a test bounds it), no allocation. At 100,000 series
/// that is 104 MB; with the detector's 1.1 KiB it leaves room in the 4 KiB
/// per series budget. Storing every timestamp as an `i64` would cost 512
/// bytes more per series for nothing: samples of one series are in strictly
/// increasing time order (the sample policy drops the rest).
#[derive(Debug, Clone)]
pub struct EvidenceRing {
    /// Timestamp of the newest sample.
    newest_ms: i64,
    /// Index of the next write.
    head: u8,
    /// Number of samples held.
    len: u8,
    /// Per sample: ms since the previous sample (unused for the oldest).
    gap_ms: [u32; RING_LEN],
    value: [f32; RING_LEN],
    lo: [f32; RING_LEN],
    hi: [f32; RING_LEN],
}

impl Default for EvidenceRing {
    fn default() -> Self {
        EvidenceRing {
            newest_ms: 0,
            head: 0,
            len: 0,
            gap_ms: [0; RING_LEN],
            value: [0.0; RING_LEN],
            lo: [0.0; RING_LEN],
            hi: [0.0; RING_LEN],
        }
    }
}

impl EvidenceRing {
    /// An empty ring.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of samples held (at most [`RING_LEN`]).
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether no sample is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds the newest sample, dropping the oldest when full. A sample not
    /// after the newest one, or more than `u32::MAX` ms (49 days) after it,
    /// empties the ring first: context from before such a jump says
    /// nothing about what follows it, and keeping it would need a wider
    /// gap field in every slot.
    pub fn push(&mut self, point: EvidencePoint) {
        let gap = point.ts_ms.checked_sub(self.newest_ms);
        let gap = match gap.and_then(|g| u32::try_from(g).ok()) {
            Some(g) if g > 0 || self.is_empty() => g,
            _ => {
                self.len = 0;
                0
            }
        };
        let i = self.head as usize;
        self.gap_ms[i] = gap;
        self.value[i] = point.value;
        self.lo[i] = point.lo;
        self.hi[i] = point.hi;
        self.newest_ms = point.ts_ms;
        self.head = ((i + 1) % RING_LEN) as u8;
        self.len = (self.len as usize + 1).min(RING_LEN) as u8;
    }

    /// The samples held, oldest first.
    pub fn to_vec(&self) -> Vec<EvidencePoint> {
        let n = self.len();
        let mut out = Vec::with_capacity(n);
        let mut ts = self.newest_ms;
        for back in 0..n {
            let i = (self.head as usize + RING_LEN - 1 - back) % RING_LEN;
            out.push(EvidencePoint {
                ts_ms: ts,
                value: self.value[i],
                lo: self.lo[i],
                hi: self.hi[i],
            });
            ts -= self.gap_ms[i] as i64;
        }
        out.reverse();
        out
    }
}

/// Points an incident's evidence keeps after its context; past it, the
/// points recorded so far are halved and the stride doubled. 2,000 points
/// are more than a chart 800 pixels wide can show, and at most 50 KB of
/// memory per open incident (24 bytes a point; about 150 KB as JSON, a
/// test bounds it).
pub const EVIDENCE_CAP: usize = 2000;

/// The evidence of one open incident, as it is being recorded.
#[derive(Debug, Clone)]
pub struct EvidenceRecorder {
    evidence: Evidence,
    cap: usize,
    /// Samples per point recorded after the context.
    stride: u64,
    /// The most outlying sample of the current stride, and how many of the
    /// stride's samples have been seen.
    pending: Option<EvidencePoint>,
    in_stride: u64,
}

impl EvidenceRecorder {
    /// Starts an incident's evidence with the context before it opened (the
    /// series' ring, opening sample included), capped at [`EVIDENCE_CAP`].
    pub fn new(ring: &EvidenceRing) -> Self {
        Self::with_cap(ring, EVIDENCE_CAP)
    }

    /// As [`Self::new`] with another cap (at least 2).
    pub fn with_cap(ring: &EvidenceRing, cap: usize) -> Self {
        let points = ring.to_vec();
        EvidenceRecorder {
            evidence: Evidence {
                context: points.len(),
                samples: points.len() as u64,
                points,
                logs: None,
            },
            cap: cap.max(2),
            stride: 1,
            pending: None,
            in_stride: 0,
        }
    }

    /// Appends the next sample of the series.
    pub fn push(&mut self, point: EvidencePoint) {
        self.evidence.samples += 1;
        let keep = match self.pending {
            Some(p) if p.outlyingness() >= point.outlyingness() => p,
            _ => point,
        };
        self.in_stride += 1;
        if self.in_stride < self.stride {
            self.pending = Some(keep);
            return;
        }
        self.pending = None;
        self.in_stride = 0;
        self.evidence.points.push(keep);
        if self.evidence.points.len() - self.evidence.context >= self.cap {
            self.halve();
        }
    }

    /// Merges the points after the context pairwise, keeping the more
    /// outlying of each pair, and doubles the stride.
    fn halve(&mut self) {
        let context = self.evidence.context;
        let tail = self.evidence.points.split_off(context);
        let mut pairs = tail.chunks(2);
        let merged = pairs.by_ref().map(|pair| match pair {
            [a, b] if a.outlyingness() >= b.outlyingness() => *a,
            [_, b] => *b,
            [a] => *a,
            _ => unreachable!("chunks(2) yields one or two points"),
        });
        self.evidence.points.extend(merged);
        self.stride *= 2;
    }

    /// Adds one slot of the series' log evidence (see [`LogEvidence::add`]).
    pub fn push_logs(
        &mut self,
        ts_ms: i64,
        counted: u64,
        lines: &[String],
        moves: &[TemplateMove],
    ) {
        self.evidence
            .logs
            .get_or_insert_with(LogEvidence::default)
            .add(ts_ms, counted, lines, moves);
    }

    /// The evidence so far (a partly seen stride is not in it yet).
    pub fn evidence(&self) -> &Evidence {
        &self.evidence
    }

    /// The finished evidence, the last partly seen stride included.
    pub fn finish(mut self) -> Evidence {
        if let Some(p) = self.pending.take() {
            self.evidence.points.push(p);
        }
        self.evidence
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(ts_ms: i64, value: f64) -> EvidencePoint {
        EvidencePoint::new(ts_ms, value, (value - 1.0, value + 1.0))
    }

    #[test]
    fn the_ring_is_small() {
        let size = std::mem::size_of::<EvidenceRing>();
        assert!(size <= 1040, "{size} bytes");
    }

    #[test]
    fn the_ring_keeps_the_newest_samples_in_order_when_it_wraps() {
        let mut ring = EvidenceRing::new();
        assert!(ring.to_vec().is_empty());
        for i in 0..100 {
            // Irregular gaps: the timestamps must come back exactly.
            ring.push(pt(1_000_000 + i * 1000 + i % 7, i as f64));
        }
        let v = ring.to_vec();
        assert_eq!(v.len(), RING_LEN);
        for (k, p) in v.iter().enumerate() {
            let i = (100 - RING_LEN + k) as i64;
            assert_eq!(p.ts_ms, 1_000_000 + i * 1000 + i % 7);
            assert_eq!(p.value, i as f32);
            assert_eq!((p.lo, p.hi), (i as f32 - 1.0, i as f32 + 1.0));
        }
    }

    #[test]
    fn the_ring_restarts_after_a_jump_back_or_a_49_day_gap() {
        let mut ring = EvidenceRing::new();
        ring.push(pt(10_000, 1.0));
        ring.push(pt(11_000, 2.0));
        ring.push(pt(5_000, 3.0));
        assert_eq!(ring.to_vec(), vec![pt(5_000, 3.0)]);
        ring.push(pt(5_000 + 50 * 86_400_000, 4.0));
        assert_eq!(ring.to_vec(), vec![pt(5_000 + 50 * 86_400_000, 4.0)]);
    }

    #[test]
    fn points_always_serialize_as_numbers() {
        let p = EvidencePoint::new(1, 1e300, (f64::NEG_INFINITY, f64::NAN));
        assert_eq!(p.value, f32::MAX);
        assert_eq!((p.lo, p.hi), (f32::MAX, f32::MAX));
        let e = Evidence {
            points: vec![p, pt(2, 0.1)],
            context: 1,
            samples: 2,
            logs: None,
        };
        let json = serde_json::to_string(&e).unwrap();
        assert!(json.contains(r#""value":0.1"#), "{json}");
        assert_eq!(serde_json::from_str::<Evidence>(&json).unwrap(), e);
    }

    #[test]
    fn a_recorder_starts_with_the_ring_and_appends_every_sample() {
        let mut ring = EvidenceRing::new();
        for i in 0..10 {
            ring.push(pt(i * 1000, 1.0));
        }
        let mut r = EvidenceRecorder::new(&ring);
        for i in 10..20 {
            r.push(pt(i * 1000, 2.0));
        }
        let e = r.finish();
        assert_eq!(e.context, 10);
        assert_eq!(e.samples, 20);
        let ts: Vec<i64> = e.points.iter().map(|p| p.ts_ms / 1000).collect();
        assert_eq!(ts, (0..20).collect::<Vec<_>>());
    }

    #[test]
    fn a_long_incident_is_decimated_under_the_cap_and_keeps_its_spike() {
        let mut ring = EvidenceRing::new();
        for i in 0..5 {
            ring.push(pt(i, 1.0));
        }
        let mut r = EvidenceRecorder::with_cap(&ring, 100);
        let flat = |ts: i64, v: f64| EvidencePoint::new(ts, v, (0.0, 2.0));
        for i in 5..10_005 {
            let v = if i == 7_777 { 50.0 } else { 1.0 };
            r.push(flat(i, v));
            assert!(r.evidence().points.len() < 5 + 100);
        }
        let e = r.finish();
        assert_eq!(e.samples, 10_005);
        assert_eq!(e.context, 5);
        assert!(e.points.len() >= 5 + 50, "{}", e.points.len());
        // The context is never decimated, time order holds, the spike stays.
        assert!(e.points[..5].iter().map(|p| p.ts_ms).eq(0..5));
        assert!(e.points.windows(2).all(|w| w[0].ts_ms < w[1].ts_ms));
        assert!(e.points.iter().any(|p| p.ts_ms == 7_777 && p.value == 50.0));
        // The last sample of a partial stride is there too.
        assert!(e.points.last().unwrap().ts_ms > 9_000);
    }

    #[test]
    fn a_full_evidence_stays_under_200_kb_of_json() {
        // Realistic numbers: epoch-ms timestamps, values and bands with
        // seven significant digits.
        let mut ring = EvidenceRing::new();
        let t0 = 1_772_323_200_000;
        let wobble = |i: i64| 0.2587264 + (i % 13) as f64 * 0.0123457;
        for i in 0..RING_LEN as i64 {
            ring.push(EvidencePoint::new(
                t0 + i * 15_000,
                wobble(i),
                (0.23924546, 0.3170449),
            ));
        }
        let mut r = EvidenceRecorder::new(&ring);
        for i in 64..100_000 {
            r.push(EvidencePoint::new(
                t0 + i * 15_000,
                wobble(i),
                (0.23924546, 0.3170449),
            ));
        }
        let e = r.finish();
        assert!(e.points.len() <= RING_LEN + EVIDENCE_CAP + 1);
        let json = serde_json::to_string(&e).unwrap();
        let per_point = json.len() / e.points.len();
        println!(
            "{} points, {} bytes of JSON, {per_point} per point",
            e.points.len(),
            json.len()
        );
        assert!(json.len() < 200_000, "{}", json.len());
    }

    #[test]
    fn log_evidence_is_bounded_and_keeps_the_largest_moves() {
        let mut logs = LogEvidence::default();
        let long = "x".repeat(5_000);
        let lines: Vec<String> = (0..30).map(|i| format!("{i} {long}")).collect();
        let moves: Vec<TemplateMove> = (0..30)
            .map(|i| TemplateMove {
                template_id: format!("{i:016x}"),
                template: format!("t{i} <*>"),
                before: 1.0,
                during: 1.0 + f64::from(i),
            })
            .collect();
        logs.add(1, 30, &lines, &moves);
        logs.add(2, 5, &lines[..5], &moves[..5]);
        assert_eq!(logs.counted, 35);
        assert_eq!(logs.lines.len(), LOG_LINES_KEPT);
        assert!(logs
            .lines
            .iter()
            .all(|l| l.text.chars().count() == LOG_LINE_CHARS));
        assert_eq!(logs.templates.len(), TEMPLATE_MOVES_KEPT);
        assert_eq!(logs.templates[0].template, "t29 <*>");
        // A later, larger departure of a kept template replaces its peak;
        // its `before` stays the first one seen.
        logs.add(
            3,
            0,
            &[],
            &[TemplateMove {
                template_id: format!("{:016x}", 20),
                template: "t20 <*>".into(),
                before: 9.0,
                during: 100.0,
            }],
        );
        assert_eq!(logs.templates[0].template, "t20 <*>");
        assert_eq!(
            (logs.templates[0].before, logs.templates[0].during),
            (1.0, 100.0)
        );
    }
}
