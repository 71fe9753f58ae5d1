//! The detectors. Each one updates with one sample at a time and returns a
//! [`Scored`](crate::Scored); none looks ahead.
//!
//! - `adaptive/`: the adaptive-threshold detector, the default.
//! - `changepoint`: Bayesian online changepoint detection (level and
//!   variance shifts).
//! - `seasonal`: the residual against a periodically refitted MSTL
//!   decomposition (augurs-seasons, augurs-mstl).
//! - `ensemble`: the adaptive and changepoint detectors (and optionally the
//!   seasonal one) combined into one calibrated score.
//! - `peer`: cross-series: which instance of a service differs from its
//!   siblings at one timestamp (augurs-outlier's MAD).
//! - `excursion`: fire-once excursions and hysteresis, shared.
//!
//! [`Detector`] is the per-signal choice (`kind` in [`DetectorConfig`]):
//! one type with the adaptive detector's methods, so that the pipeline does
//! not care which kind runs.

pub mod adaptive;
mod changepoint;
mod ensemble;
mod excursion;
mod novelty;
pub mod peer;
mod seasonal;

pub use excursion::fire_once;

/// Serde for arrays longer than serde's own impls (32): a sequence, checked
/// for its length when read back. A detector's state is serializable so
/// that a worker taking a partition over restores it (heal's `scale`
/// changelog) instead of re-warming from nothing.
pub(crate) mod serde_array {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(crate) fn serialize<S: Serializer, T: Serialize, const N: usize>(
        a: &[T; N],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(a.iter())
    }

    pub(crate) fn deserialize<'de, D, T, const N: usize>(d: D) -> Result<[T; N], D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        let v = Vec::<T>::deserialize(d)?;
        let len = v.len();
        v.try_into()
            .map_err(|_| D::Error::invalid_length(len, &format!("{N} elements").as_str()))
    }
}

use crate::{AdaptiveDetector, DetectorConfig, DetectorKind, PeerScore, Scored};
use changepoint::Changepoint;
use ensemble::Ensemble;
use excursion::Excursions;
use novelty::Novelty;
use seasonal::Seasonal;

/// What a model says about one sample before warm-up, limits and
/// excursions: its calibrated score, the side, and the baseline it was
/// compared with (which sets the excursion's band).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Assessment {
    /// Calibrated score in [0, 1] (the crate's log scale).
    pub(crate) score: f64,
    /// Whether the sample lies above the baseline.
    pub(crate) above: bool,
    /// Baseline level and spread (a standard deviation) just before the
    /// sample.
    pub(crate) level: f64,
    pub(crate) sigma: f64,
}

/// Evidence about a sample from outside the series' own history (its
/// peers), as [`Detector::update_with`] hands it to the excursion logic: a
/// calibrated score and the signed robust z that tells its side.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outside {
    pub(crate) score: f64,
    pub(crate) z: f64,
}

/// A model that [`Online`] turns into a detector.
pub(crate) trait Model: Clone {
    /// Scores sample `x` taken at `ts_ms`, then learns it.
    fn update(&mut self, ts_ms: i64, x: f64) -> Assessment;
    /// The current baseline level and spread (a standard deviation).
    fn baseline(&self) -> (f64, f64);
    /// Bytes this model holds on the heap.
    fn heap_bytes(&self) -> usize {
        0
    }
}

impl Model for Changepoint {
    fn update(&mut self, _ts_ms: i64, x: f64) -> Assessment {
        Changepoint::update(self, x)
    }
    fn baseline(&self) -> (f64, f64) {
        Changepoint::baseline(self)
    }
}

/// A model with what every detector of the crate shares: warm-up,
/// `direction`, hard limits, fire-once excursions with hysteresis, and the
/// snapshot that [`Online::forget_excursion`] returns to.
///
/// The snapshot is taken just *after* the sample that fired (the models
/// score and learn in one call), so forgetting an excursion keeps what its
/// first sample taught; the adaptive detector, which scores before it
/// learns, forgets that sample too.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone)]
pub(crate) struct Online<M> {
    cfg: DetectorConfig,
    model: M,
    seen: u64,
    excursions: Excursions,
    before: Option<Box<M>>,
}

impl<M: Model> Online<M> {
    fn new(cfg: DetectorConfig, model: M) -> Self {
        Online {
            cfg,
            model,
            seen: 0,
            excursions: Excursions::default(),
            before: None,
        }
    }

    fn update(&mut self, ts_ms: i64, x: f64, outside: Option<Outside>) -> Scored {
        if !x.is_finite() {
            return Scored {
                score: 0.0,
                excursion: self.excursions.current(),
            };
        }
        self.seen += 1;
        let a = self.model.update(ts_ms, x);
        let watched = self.cfg.direction.watches(a.above);
        let mut score = if self.seen <= u64::from(self.cfg.warmup) || !watched {
            0.0
        } else {
            a.score
        };
        let limit = self.cfg.beyond_limit(x);
        let mut above = a.above;
        if let Some(side) = limit {
            (score, above) = (1.0, side);
        }
        let mut peer_z = None;
        if let Some(o) = outside.filter(|o| o.score > score) {
            (score, above, peer_z) = (o.score, o.z > 0.0, Some(o.z));
        }
        if self.excursions.fires(score, self.cfg.threshold) {
            if self.seen == 1 {
                self.excursions.set_limit_band(&self.cfg);
            } else {
                self.excursions.set_band(a.level, a.sigma, x);
            }
            self.before = Some(Box::new(self.model.clone()));
        }
        let scored =
            self.excursions
                .step(&self.cfg, ts_ms, score, x, limit.is_some(), above, peer_z);
        if scored.excursion.is_none() {
            self.before = None;
        }
        scored
    }

    fn band(&self, k: f64) -> (f64, f64) {
        let (level, sigma) = self.model.baseline();
        (level - k * sigma, level + k * sigma)
    }

    fn end_excursion(&mut self) {
        self.excursions.end();
        self.before = None;
    }

    fn forget_excursion(&mut self) -> bool {
        if self.excursions.current().is_none() {
            return false;
        }
        if let Some(before) = self.before.take() {
            self.model = *before;
        }
        self.excursions.end();
        true
    }

    fn heap_bytes(&self) -> usize {
        self.model.heap_bytes()
            + self
                .before
                .as_ref()
                .map_or(0, |b| std::mem::size_of::<M>() + b.heap_bytes())
    }
}

/// The detector of one series, of the kind its configuration names
/// ([`DetectorConfig::kind`]): the type the pipeline holds per series.
///
/// It has the methods of [`AdaptiveDetector`] (`update`, `band`,
/// `end_excursion`, `forget_excursion`), with the same meaning for every
/// kind. The adaptive kind is held inline (its 1.1 KiB is the whole
/// cost of a default series); the others are boxed, so that choosing one
/// for a few signals does not grow every series.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone)]
pub struct Detector(Inner);

// The size difference is the point: the default kind inline, the others
// boxed (see `Detector`).
#[allow(clippy::large_enum_variant)]
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone)]
enum Inner {
    Adaptive(AdaptiveDetector),
    Changepoint(Box<Online<Changepoint>>),
    Seasonal(Box<Online<Seasonal>>),
    Ensemble(Box<Online<Ensemble>>),
    Novelty(Box<Online<Novelty>>),
}

impl Detector {
    /// A detector of the kind and with the settings of `cfg`. Settings are
    /// assumed valid ([`DetectorConfig::problems`] is empty).
    pub fn new(cfg: DetectorConfig) -> Self {
        Detector(match cfg.kind {
            DetectorKind::Adaptive => Inner::Adaptive(AdaptiveDetector::new(cfg)),
            DetectorKind::Changepoint => {
                let m = Changepoint::new(&cfg);
                Inner::Changepoint(Box::new(Online::new(cfg, m)))
            }
            DetectorKind::Seasonal => {
                let m = Seasonal::new(&cfg);
                Inner::Seasonal(Box::new(Online::new(cfg, m)))
            }
            DetectorKind::Ensemble => {
                let m = Ensemble::new(&cfg);
                Inner::Ensemble(Box::new(Online::new(cfg, m)))
            }
            DetectorKind::Novelty => {
                let m = Novelty::new(&cfg);
                Inner::Novelty(Box::new(Online::new(cfg, m)))
            }
        })
    }

    /// A detector that never opens an excursion: every sample reports its
    /// own score (what the detector would report on a sample that fires).
    /// For benchmarks that sweep the threshold afterwards with
    /// [`fire_once`]; nothing the detector learns depends on its
    /// excursions, so the sweep is exact.
    pub fn scores_only(cfg: DetectorConfig) -> Self {
        Detector::new(DetectorConfig {
            threshold: f64::INFINITY,
            ..cfg
        })
    }

    /// The settings this detector runs with.
    pub fn config(&self) -> &DetectorConfig {
        match &self.0 {
            Inner::Adaptive(d) => d.config(),
            Inner::Changepoint(d) => &d.cfg,
            Inner::Seasonal(d) => &d.cfg,
            Inner::Ensemble(d) => &d.cfg,
            Inner::Novelty(d) => &d.cfg,
        }
    }

    /// Changes the firing and reset thresholds while running, keeping
    /// everything learnt (see [`AdaptiveDetector::set_threshold`]): both
    /// clamped to [0, 1], the reset threshold to at most the threshold.
    pub fn set_threshold(&mut self, threshold: f64, reset_threshold: f64) {
        let cfg = match &mut self.0 {
            Inner::Adaptive(d) => return d.set_threshold(threshold, reset_threshold),
            Inner::Changepoint(d) => &mut d.cfg,
            Inner::Seasonal(d) => &mut d.cfg,
            Inner::Ensemble(d) => &mut d.cfg,
            Inner::Novelty(d) => &mut d.cfg,
        };
        cfg.threshold = threshold.clamp(0.0, 1.0);
        cfg.reset_threshold = reset_threshold.clamp(0.0, cfg.threshold);
    }

    /// Which kind of detector this is.
    pub fn kind(&self) -> DetectorKind {
        match &self.0 {
            Inner::Adaptive(_) => DetectorKind::Adaptive,
            Inner::Changepoint(_) => DetectorKind::Changepoint,
            Inner::Seasonal(_) => DetectorKind::Seasonal,
            Inner::Ensemble(_) => DetectorKind::Ensemble,
            Inner::Novelty(_) => DetectorKind::Novelty,
        }
    }

    /// Scores one sample taken at `ts_ms` (see [`AdaptiveDetector::update`]).
    pub fn update(&mut self, ts_ms: i64, x: f64) -> Scored {
        self.update_with(ts_ms, x, None)
    }

    /// Scores one sample taken at `ts_ms` with what the series' peers say
    /// about it at the same timestamp (a [`PeerGroup`](crate::PeerGroup)'s
    /// verdict on this series' instance), or `None`, which is exactly
    /// [`Self::update`].
    ///
    /// The peers are extra evidence for this detector, not a second stream
    /// of anomalies: the sample's score is the higher of the detector's own
    /// score and the peer score, and then the detector's usual excursion
    /// logic runs on it. A replica that stays apart from its siblings
    /// therefore fires once per excursion, like any other anomaly of the
    /// series, and the rules of its signal match it; the excursion it fires
    /// carries the peers' robust z ([`Excursion::peer_z`]) so that the
    /// incident can say why.
    ///
    /// Why the maximum: both scores are calibrated tail probabilities on the
    /// same log scale, and the maximum of the two scores is the minimum of
    /// the two probabilities. By Bonferroni, the chance that either test is
    /// that extreme by luck is at most twice that minimum: the maximum
    /// overstates the score by at most `ln 2 / ln 1e12`, about 0.025, well
    /// inside the margin between the default threshold and the noise.
    /// Weighting the two (as the ensemble does) would move the detector's
    /// own scores on every signal that turns peers on, for a correction
    /// smaller than that; and the peer score only counts after `consecutive`
    /// timestamps in a row apart, which makes its false alarms far rarer
    /// than its per-timestamp probability says.
    ///
    /// The peer evidence honours the signal's `direction` (a replica below
    /// its siblings does not count for an `up` signal). While it says the
    /// instance still differs from its siblings (its streak is running),
    /// the sample is not back in band ([`Excursion::in_band`] is false):
    /// a series is recovered only once it is back among its siblings too.
    ///
    /// [`Excursion::peer_z`]: crate::Excursion::peer_z
    /// [`Excursion::in_band`]: crate::Excursion::in_band
    pub fn update_with(&mut self, ts_ms: i64, x: f64, peer: Option<PeerScore>) -> Scored {
        let direction = self.config().direction;
        let peer = peer.filter(|p| direction.watches(p.z > 0.0));
        let outside = peer.filter(|p| p.score > 0.0).map(|p| Outside {
            score: p.score.clamp(0.0, 1.0),
            z: p.z,
        });
        let mut scored = match &mut self.0 {
            Inner::Adaptive(d) => d.update_with(ts_ms, x, outside),
            Inner::Changepoint(d) => d.update(ts_ms, x, outside),
            Inner::Seasonal(d) => d.update(ts_ms, x, outside),
            Inner::Ensemble(d) => d.update(ts_ms, x, outside),
            Inner::Novelty(d) => d.update(ts_ms, x, outside),
        };
        if peer.is_some_and(|p| p.streak > 0) {
            if let Some(ex) = &mut scored.excursion {
                ex.in_band = false;
            }
        }
        scored
    }

    /// The normal band `level ± k·sigma` before the next sample (see
    /// [`AdaptiveDetector::band`]).
    pub fn band(&self, k: f64) -> (f64, f64) {
        match &self.0 {
            Inner::Adaptive(d) => d.band(k),
            Inner::Changepoint(d) => d.band(k),
            Inner::Seasonal(d) => d.band(k),
            Inner::Ensemble(d) => d.band(k),
            Inner::Novelty(d) => d.band(k),
        }
    }

    /// Forgets the current excursion, keeping everything learnt (see
    /// [`AdaptiveDetector::end_excursion`]).
    pub fn end_excursion(&mut self) {
        match &mut self.0 {
            Inner::Adaptive(d) => d.end_excursion(),
            Inner::Changepoint(d) => d.end_excursion(),
            Inner::Seasonal(d) => d.end_excursion(),
            Inner::Ensemble(d) => d.end_excursion(),
            Inner::Novelty(d) => d.end_excursion(),
        }
    }

    /// Ends the current excursion and forgets what it taught (see
    /// [`AdaptiveDetector::forget_excursion`]). The other kinds score and
    /// learn a sample in one step, so their snapshot is taken just after
    /// the sample that fired: forgetting keeps what that one sample taught
    /// and drops the rest of the excursion. Returns false outside an
    /// excursion.
    pub fn forget_excursion(&mut self) -> bool {
        match &mut self.0 {
            Inner::Adaptive(d) => d.forget_excursion(),
            Inner::Changepoint(d) => d.forget_excursion(),
            Inner::Seasonal(d) => d.forget_excursion(),
            Inner::Ensemble(d) => d.forget_excursion(),
            Inner::Novelty(d) => d.forget_excursion(),
        }
    }

    /// Bytes of state of this detector: the inline size plus what it holds
    /// on the heap (boxed state, history buffers, the snapshot of an open
    /// excursion). What one watched series costs.
    pub fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + match &self.0 {
                Inner::Adaptive(d) => {
                    if d.forget_snapshot_held() {
                        std::mem::size_of::<AdaptiveDetector>()
                    } else {
                        0
                    }
                }
                Inner::Changepoint(d) => std::mem::size_of_val(&**d) + d.heap_bytes(),
                Inner::Seasonal(d) => std::mem::size_of_val(&**d) + d.heap_bytes(),
                Inner::Ensemble(d) => std::mem::size_of_val(&**d) + d.heap_bytes(),
                Inner::Novelty(d) => std::mem::size_of_val(&**d) + d.heap_bytes(),
            }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Direction;

    fn of(kind: DetectorKind) -> DetectorConfig {
        DetectorConfig {
            kind,
            ..DetectorConfig::default()
        }
    }

    /// A steady sine with a little deterministic jitter.
    fn wave(i: usize) -> f64 {
        100.0 + 5.0 * (i as f64 * 0.3).sin() + ((i * 7919) % 17) as f64 / 17.0
    }

    /// A detector's state survives serialization exactly: one detector
    /// stopped half way, written out, read back and run on gives the very
    /// scores of one that ran through (what a scale-out worker taking a
    /// partition over relies on). CBOR, as heal's changelog writes it:
    /// infinities and NaN survive, which JSON's would not.
    #[test]
    fn a_restored_detector_scores_exactly_as_one_that_never_stopped() {
        for kind in [
            DetectorKind::Adaptive,
            DetectorKind::Changepoint,
            DetectorKind::Seasonal,
            DetectorKind::Ensemble,
            DetectorKind::Novelty,
        ] {
            let mut cfg = of(kind);
            cfg.seasonal.refit_every = 64;
            let x = |i: usize| {
                if (700..760).contains(&i) {
                    wave(i) + 40.0
                } else {
                    wave(i)
                }
            };
            let ts = |i: usize| 1_700_000_000_000 + i as i64 * 60_000;
            let mut through = Detector::new(cfg.clone());
            let mut first = Detector::new(cfg.clone());
            for i in 0..650 {
                through.update(ts(i), x(i));
                first.update(ts(i), x(i));
            }
            let mut bytes = Vec::new();
            ciborium::into_writer(&first, &mut bytes).unwrap();
            let mut restored: Detector = ciborium::from_reader(bytes.as_slice()).unwrap();
            let mut fired = 0;
            for i in 650..900 {
                let a = through.update(ts(i), x(i));
                let b = restored.update(ts(i), x(i));
                assert_eq!(a.score.to_bits(), b.score.to_bits(), "{kind:?} at {i}");
                assert_eq!(a.excursion, b.excursion, "{kind:?} at {i}");
                fired += usize::from(a.excursion.is_some_and(|e| e.first));
            }
            assert!(fired >= 1, "{kind:?}: the fault after the restore fires");
        }
    }

    #[test]
    fn each_kind_is_built_from_its_config() {
        for kind in DetectorKind::ALL {
            assert_eq!(Detector::new(of(kind)).kind(), kind);
        }
    }

    #[test]
    fn the_adaptive_kind_is_the_adaptive_detector() {
        let cfg = DetectorConfig::sensitive();
        let mut a = AdaptiveDetector::new(cfg.clone());
        let mut d = Detector::new(cfg);
        for i in 0..3000 {
            let x = wave(i) + if i % 500 == 499 { 30.0 } else { 0.0 };
            let ts = i as i64 * 60_000;
            assert_eq!(d.band(3.0), a.band(3.0));
            assert_eq!(d.update(ts, x), a.update(ts, x));
        }
    }

    #[test]
    fn every_kind_fires_once_on_a_hard_limit_and_forgets_it() {
        for kind in DetectorKind::ALL {
            let mut d = Detector::new(DetectorConfig {
                limit_above: Some(200.0),
                ..of(kind)
            });
            let first = d.update(0, 500.0);
            assert_eq!(first.score, 1.0, "{kind}");
            assert!(
                first.excursion.is_some_and(|e| e.first && e.above),
                "{kind}"
            );
            let second = d.update(60_000, 500.0);
            assert_eq!(second.score, 0.0, "{kind}");
            assert!(second.excursion.is_some_and(|e| !e.first && !e.in_band));
            assert!(d.forget_excursion(), "{kind}");
            assert!(!d.forget_excursion(), "{kind}");
        }
    }

    #[test]
    fn direction_is_honoured_by_every_kind() {
        for kind in [DetectorKind::Changepoint, DetectorKind::Ensemble] {
            let mut d = Detector::new(DetectorConfig {
                direction: Direction::Up,
                ..DetectorConfig {
                    kind,
                    ..DetectorConfig::sensitive()
                }
            });
            for i in 0..3000 {
                d.update(i as i64 * 60_000, wave(i));
            }
            let mut fired_down = false;
            for i in 3000..3100 {
                let s = d.update(i as i64 * 60_000, wave(i) - 60.0);
                fired_down |= s.excursion.is_some();
            }
            assert!(!fired_down, "{kind} fired on a drop while watching up");
        }
    }

    #[test]
    fn set_threshold_moves_every_kind_alike() {
        for kind in DetectorKind::ALL {
            let mut d = Detector::new(of(kind));
            d.set_threshold(0.3, 0.5);
            assert_eq!(d.config().threshold, 0.3, "{kind}");
            assert_eq!(d.config().reset_threshold, 0.3, "{kind}");
            d.set_threshold(2.0, 0.1);
            assert_eq!(d.config().threshold, 1.0, "{kind}");
            assert_eq!(d.config().reset_threshold, 0.1, "{kind}");
        }
    }

    #[test]
    fn end_excursion_keeps_the_model() {
        let mut d = Detector::new(of(DetectorKind::Changepoint));
        for i in 0..2000 {
            d.update(i as i64 * 60_000, wave(i));
        }
        let band = d.band(3.0);
        d.end_excursion();
        assert_eq!(d.band(3.0), band);
        assert!(!d.forget_excursion());
    }

    #[test]
    fn memory_per_series() {
        // The default kind costs what the adaptive detector costs: the
        // other kinds are boxed and do not grow the enum.
        assert!(std::mem::size_of::<Detector>() <= std::mem::size_of::<AdaptiveDetector>() + 8);
        let bytes = |kind| {
            let mut d = Detector::new(of(kind));
            for i in 0..3000 {
                d.update(i as i64 * 60_000, wave(i));
            }
            d.end_excursion();
            d.state_bytes()
        };
        assert!(bytes(DetectorKind::Adaptive) <= 4096);
        assert!(bytes(DetectorKind::Changepoint) <= 4096);
        assert!(bytes(DetectorKind::Ensemble) <= 4096);
        assert!(bytes(DetectorKind::Novelty) <= 4096);
        // The seasonal history dominates: 2,048 samples of 8 bytes.
        let seasonal = bytes(DetectorKind::Seasonal);
        assert!((16_384..=32_768).contains(&seasonal), "{seasonal}");
    }

    /// What a peer group says about an instance `streak` timestamps into
    /// its difference (0: not apart).
    fn apart(streak: u32, z: f64) -> PeerScore {
        PeerScore {
            score: if streak >= 3 { 0.9 } else { 0.0 },
            z,
            streak,
        }
    }

    #[test]
    fn update_with_no_peer_evidence_is_update() {
        for kind in DetectorKind::ALL {
            let cfg = DetectorConfig {
                kind,
                ..DetectorConfig::sensitive()
            };
            let mut plain = Detector::new(cfg.clone());
            let mut with = Detector::new(cfg);
            let mut fired = 0;
            for i in 0..2500 {
                let x = wave(i) + if i % 400 == 399 { 40.0 } else { 0.0 };
                let ts = i as i64 * 60_000;
                let a = plain.update(ts, x);
                assert_eq!(with.update_with(ts, x, None), a, "{kind} at {i}");
                fired += usize::from(a.excursion.is_some_and(|e| e.first));
                assert!(a.excursion.is_none_or(|e| e.peer_z.is_none()));
            }
            assert!(fired >= 3, "{kind}: the spikes fire ({fired})");
        }
    }

    #[test]
    fn peer_evidence_fires_once_per_excursion_and_says_so() {
        for kind in DetectorKind::ALL {
            let mut d = Detector::new(of(kind));
            let mut firsts = Vec::new();
            let mut in_band_while_apart = false;
            let mut open_after = 0;
            for i in 0..2600usize {
                let ts = i as i64 * 60_000;
                // The series itself stays normal; its peers say it is apart
                // (robust z 8) from 2000 to 2099, then back among them.
                let peer = (2000..2100)
                    .contains(&i)
                    .then(|| apart((i - 1999) as u32, 8.0));
                let peer = peer.or(Some(apart(0, 0.3)));
                let s = d.update_with(ts, wave(i), peer);
                if let Some(e) = s.excursion {
                    // (The seasonal kind fires once on its own around its
                    // first refit; only what follows is this test's.)
                    if e.first && i >= 1900 {
                        firsts.push((i, e.peer_z, e.above, s.score));
                    }
                    in_band_while_apart |= (2000..2100).contains(&i) && e.in_band;
                    open_after = i;
                }
            }
            assert_eq!(
                firsts,
                vec![(2002, Some(8.0), true, 0.9)],
                "{kind}: fires once, on the third timestamp apart, with the peers' z"
            );
            assert!(!in_band_while_apart, "{kind}: not back while apart");
            assert!(
                open_after < 2300,
                "{kind}: the excursion ends ({open_after})"
            );
        }
    }

    #[test]
    fn peer_evidence_honours_direction_and_own_higher_scores() {
        let mut d = Detector::new(DetectorConfig {
            direction: Direction::Down,
            ..of(DetectorKind::Adaptive)
        });
        for i in 0..2100usize {
            let s = d.update_with(i as i64 * 60_000, wave(i), Some(apart(5, 8.0)));
            assert!(
                s.excursion.is_none(),
                "an up peer z on a down signal: {s:?}"
            );
        }
        // A hard limit (score 1) outranks the peers: its excursion is the
        // detector's own.
        let mut d = Detector::new(DetectorConfig {
            limit_above: Some(200.0),
            ..of(DetectorKind::Adaptive)
        });
        for i in 0..100usize {
            d.update(i as i64 * 60_000, wave(i));
        }
        let s = d.update_with(100 * 60_000, 500.0, Some(apart(5, 8.0)));
        let e = s.excursion.expect("the limit fires");
        assert!(e.first && e.peer_z.is_none(), "{e:?}");
        assert_eq!(s.score, 1.0);
    }
}
