use super::*;
use crate::Direction;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

const MINUTE: i64 = 60_000;

fn gaussian(seed: u64, n: usize) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let normal = Normal::new(100.0, 5.0).unwrap();
    (0..n).map(|_| normal.sample(&mut rng)).collect()
}

fn run(cfg: &DetectorConfig, xs: &[f64]) -> Vec<Scored> {
    let mut d = AdaptiveDetector::new(cfg.clone());
    xs.iter()
        .enumerate()
        .map(|(i, &x)| d.update(i as i64 * MINUTE, x))
        .collect()
}

fn fired(out: &[Scored]) -> Vec<usize> {
    out.iter()
        .enumerate()
        .filter(|(_, s)| s.excursion.is_some_and(|e| e.first))
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn default_config_is_valid() {
    assert!(DetectorConfig::default().problems().is_empty());
}

#[test]
fn problems_name_every_bad_field() {
    let cfg = DetectorConfig {
        threshold: 1.5,
        reset_threshold: -1.0,
        reset_samples: 0,
        level_half_life: 0.5,
        spread_half_life: f64::NAN,
        calibration_half_life: 0.0,
        daily_buckets: 49,
        daily_half_life_days: 0.0,
        min_spread: -1.0,
        ..DetectorConfig::default()
    };
    let fields: Vec<&str> = cfg.problems().iter().map(|(f, _)| *f).collect();
    for f in [
        "threshold",
        "reset_threshold",
        "reset_samples",
        "level_half_life",
        "spread_half_life",
        "calibration_half_life",
        "daily_buckets",
        "daily_half_life_days",
        "min_spread",
    ] {
        assert!(fields.contains(&f), "{f} not reported in {fields:?}");
    }
}

#[test]
fn stationary_gaussian_noise_raises_no_alarm_at_defaults() {
    for seed in [7, 8] {
        let xs = gaussian(seed, 100_000);
        let out = run(&DetectorConfig::default(), &xs);
        let f = fired(&out);
        assert!(
            f.is_empty(),
            "seed {seed}: {} alarms, first at {:?}",
            f.len(),
            &f[..f.len().min(5)]
        );
        assert!(out.iter().all(|s| (0.0..=1.0).contains(&s.score)));
    }
}

#[test]
fn stationary_gaussian_noise_alarm_rate_when_sensitive_is_bounded() {
    // The sensitive preset is tuned for NAB, which tolerates roughly one
    // false alarm per few hundred samples; on pure Gaussian noise it fires
    // on about one sample in 400 (252 in these 100,000), never more than
    // one per excursion.
    let xs = gaussian(7, 100_000);
    let out = run(&DetectorConfig::sensitive(), &xs);
    let f = fired(&out);
    assert!(f.len() < 300, "{} alarms", f.len());
    let hits = out
        .iter()
        .filter(|s| s.score >= DetectorConfig::sensitive().threshold)
        .count();
    assert_eq!(hits, f.len(), "one scored sample per excursion");
}

#[test]
fn six_sigma_spike_fires_on_that_sample() {
    let cfg = DetectorConfig::default();
    let mut xs = gaussian(11, 3000);
    xs[2500] = 100.0 + 6.0 * 5.0;
    let out = run(&cfg, &xs);
    let f = fired(&out);
    assert!(f.contains(&2500), "{f:?}");
    let s = out[2500];
    assert!(s.score >= cfg.threshold);
    let ex = s.excursion.unwrap();
    assert!(ex.above && ex.first);
    assert_eq!(ex.onset_ms, 2500 * MINUTE);
    // And nothing else fires at the default threshold.
    assert_eq!(f, vec![2500]);
    // The sensitive preset fires on it too.
    assert!(fired(&run(&DetectorConfig::sensitive(), &xs)).contains(&2500));
}

#[test]
fn level_shift_fires() {
    let xs = gaussian(13, 4000);
    for (cfg, shift) in [
        (DetectorConfig::default(), 6.0),
        (DetectorConfig::sensitive(), 6.0),
    ] {
        let mut xs = xs.clone();
        for x in &mut xs[3000..] {
            *x += shift * 5.0;
        }
        let f = fired(&run(&cfg, &xs));
        let near: Vec<usize> = f
            .iter()
            .copied()
            .filter(|i| (3000..3300).contains(i))
            .collect();
        // The shift is one excursion: it fires once, at once, then the
        // level adapts.
        assert!(near.len() == 1 && near[0] < 3005, "{f:?}");
    }
}

#[test]
fn missing_daily_peak_fires() {
    // A daily pattern (5-minute samples): high from 08:00 to 18:00. On day 8
    // the peak does not come; the level feature alone cannot tell that from
    // an ordinary night.
    let mut rng = StdRng::seed_from_u64(17);
    let noise = Normal::new(0.0, 1.0).unwrap();
    let step = 5 * MINUTE;
    let day = 288;
    let xs: Vec<f64> = (0..10 * day)
        .map(|i| {
            let tod = i % day;
            let peak = (96..216).contains(&tod) && i / day != 8;
            let base: f64 = if peak { 80.0 } else { 20.0 };
            base + noise.sample(&mut rng)
        })
        .collect();
    for cfg in [DetectorConfig::default(), DetectorConfig::sensitive()] {
        let mut d = AdaptiveDetector::new(cfg.clone());
        let first: Vec<usize> = xs
            .iter()
            .enumerate()
            .filter(|&(i, &x)| {
                d.update(i as i64 * step, x)
                    .excursion
                    .is_some_and(|e| e.first)
            })
            .map(|(i, _)| i)
            .collect();
        assert!(
            first
                .iter()
                .any(|&i| (8 * day + 96..8 * day + 100).contains(&i)),
            "{first:?}"
        );
        if cfg.threshold >= DetectorConfig::default().threshold {
            // The regular daily transitions are not anomalies.
            assert!(
                first.iter().all(|&i| i < 3 * day || i / day == 8),
                "{first:?}"
            );
        }
    }
}

#[test]
fn no_look_ahead() {
    let mut xs = gaussian(19, 5000);
    xs[1200] += 60.0;
    for x in &mut xs[3000..] {
        *x -= 25.0;
    }
    let full = run(&DetectorConfig::default(), &xs);
    for cut in [1, 31, 1200, 1201, 2999, 3000, 4321] {
        let part = run(&DetectorConfig::default(), &xs[..cut]);
        assert_eq!(part, full[..cut], "prefix of {cut} rows differs");
    }
}

#[test]
fn warmup_scores_zero() {
    let xs = gaussian(23, 200);
    let cfg = DetectorConfig::default();
    let out = run(&cfg, &xs);
    assert!(out[..cfg.warmup as usize]
        .iter()
        .all(|s| *s == Scored::QUIET));
}

#[test]
fn direction_filters_the_side() {
    let base = gaussian(29, 3000);
    let mut down = base.clone();
    down[2000] = 100.0 - 12.0 * 5.0;
    let mut up = base.clone();
    up[2000] = 100.0 + 12.0 * 5.0;
    let at = |direction, xs: &[f64]| {
        let cfg = DetectorConfig {
            direction,
            ..DetectorConfig::default()
        };
        fired(&run(&cfg, xs))
    };
    assert_eq!(at(Direction::Both, &down), vec![2000]);
    assert_eq!(at(Direction::Both, &up), vec![2000]);
    assert_eq!(at(Direction::Up, &up), vec![2000]);
    assert_eq!(at(Direction::Up, &down), Vec::<usize>::new());
    assert_eq!(at(Direction::Down, &down), vec![2000]);
    assert_eq!(at(Direction::Down, &up), Vec::<usize>::new());
    let out = run(&DetectorConfig::default(), &down);
    assert!(!out[2000].excursion.unwrap().above);
    let out = run(&DetectorConfig::default(), &up);
    assert!(out[2000].excursion.unwrap().above);
    // An unwatched side scores 0.
    let cfg = DetectorConfig {
        direction: Direction::Up,
        ..DetectorConfig::default()
    };
    assert_eq!(run(&cfg, &down)[2000].score, 0.0);
}

#[test]
fn hysteresis_fires_once_per_excursion() {
    let cfg = DetectorConfig::default();
    let mut xs = gaussian(31, 4000);
    // A burst of alternating spikes: one excursion, one alarm.
    for i in 0..10 {
        xs[2000 + 2 * i] += 60.0;
    }
    // Well after the burst has reset, another spike fires again.
    xs[3500] += 60.0;
    let out = run(&cfg, &xs);
    assert_eq!(fired(&out), vec![2000, 3500]);
    // Inside the excursion the per-sample score is 0, so thresholding the
    // score also gives one alarm; the excursion keeps the peak score.
    let hits: Vec<usize> = (0..xs.len())
        .filter(|&i| out[i].score >= cfg.threshold)
        .collect();
    assert_eq!(hits, vec![2000, 3500]);
    assert!(out[2002]
        .excursion
        .is_some_and(|e| !e.first && e.onset_ms == 2000 * MINUTE));
    assert!(out[2002].score == 0.0);
    assert!(out[2002].excursion.unwrap().peak_score >= out[2000].score);
    // The excursion ended: reset_samples quiet samples after the burst.
    let end = 2018 + cfg.reset_samples as usize + 2;
    assert!(out[end].excursion.is_none(), "still in excursion at {end}");
}

#[test]
fn flat_signal_then_change() {
    let mut xs = vec![5.0; 2000];
    xs[1500] = 6.0;
    let out = run(&DetectorConfig::default(), &xs);
    assert_eq!(fired(&out), vec![1500]);
    // With min_spread the same wiggle is not an anomaly.
    let cfg = DetectorConfig {
        min_spread: 2.0,
        ..DetectorConfig::default()
    };
    assert!(fired(&run(&cfg, &xs)).is_empty());
}

#[test]
fn non_finite_values_are_ignored() {
    let xs = gaussian(37, 500);
    let mut d = AdaptiveDetector::new(DetectorConfig::default());
    let mut e = AdaptiveDetector::new(DetectorConfig::default());
    for (i, &x) in xs.iter().enumerate() {
        let t = i as i64 * MINUTE;
        let a = d.update(t, x);
        assert_eq!(e.update(t, f64::NAN).score, 0.0);
        let b = e.update(t, x);
        assert_eq!(a, b);
    }
}

#[test]
fn score_from_p_is_monotone_on_a_log_scale() {
    assert_eq!(score_from_p(1.0), 0.0);
    assert_eq!(score_from_p(1e-13), 1.0);
    assert!((score_from_p(1e-6) - 0.5).abs() < 1e-12);
    assert!(score_from_p(1e-3) < score_from_p(1e-4));
}

#[test]
fn state_is_small() {
    let size = std::mem::size_of::<AdaptiveDetector>();
    println!("AdaptiveDetector: {size} bytes");
    assert!(size <= 2048, "{size} bytes");
}

#[test]
fn the_band_is_k_sigmas_either_side_of_the_level_and_holds_normal_samples() {
    let mut d = AdaptiveDetector::new(DetectorConfig::default());
    let xs = gaussian(7, 2000);
    let mut inside = 0;
    for (i, &x) in xs.iter().enumerate() {
        let (lo, hi) = d.band(3.0);
        assert!((lo + hi) / 2.0 - d.level() < 1e-9 && hi - lo - 6.0 * d.sigma() < 1e-9);
        if i >= 500 && (lo..=hi).contains(&x) {
            inside += 1;
        }
        d.update(i as i64 * MINUTE, x);
    }
    // N(100, 5): 99.7% within 3 sigma; the band holds nearly all of them.
    assert!(inside >= 1450, "{inside} of 1500");
}

#[test]
fn hard_limits_fire_from_the_first_sample_and_respect_direction() {
    let cfg = DetectorConfig {
        direction: Direction::Down,
        limit_below: Some(0.5),
        ..DetectorConfig::default()
    };
    // `up` of a target: 1, 1, then 0 while the detector is still warming up.
    let out = run(&cfg, &[1.0, 1.0, 1.0, 0.0, 0.0, 1.0]);
    assert_eq!(fired(&out), vec![3]);
    assert_eq!(out[3].score, 1.0);
    assert!(!out[3].excursion.unwrap().above);
    // A series that starts beyond the limit fires on its first sample.
    assert_eq!(fired(&run(&cfg, &[0.0, 0.0])), vec![0]);
    // Not watched side: a limit_above with direction down never fires.
    let up_only = DetectorConfig {
        direction: Direction::Down,
        limit_above: Some(10.0),
        ..DetectorConfig::default()
    };
    assert!(fired(&run(&up_only, &[1.0, 50.0, 50.0])).is_empty());
}

#[test]
fn limits_are_validated() {
    let cfg = DetectorConfig {
        limit_above: Some(1.0),
        limit_below: Some(2.0),
        ..DetectorConfig::default()
    };
    let p = cfg.problems();
    assert_eq!(
        p,
        vec![(
            "limit_above",
            "must be greater than limit_below (2), got 1".to_string()
        )]
    );
}

/// Feeds `xs` from sample `from` on (timestamps one minute apart).
fn feed(d: &mut AdaptiveDetector, from: usize, xs: &[f64]) -> Vec<Scored> {
    xs.iter()
        .enumerate()
        .map(|(i, &x)| d.update((from + i) as i64 * MINUTE, x))
        .collect()
}

#[test]
fn forgetting_an_excursion_restores_the_state_before_it() {
    let noise = gaussian(11, 3000);
    let mut d = AdaptiveDetector::new(DetectorConfig::default());
    feed(&mut d, 0, &noise[..2000]);
    let untouched = d.clone();
    // A fault: 40 samples 20 spreads up. The detector fires on its first
    // sample and, left alone, learns from the rest.
    let fault = vec![200.0; 40];
    let out = feed(&mut d, 2000, &fault);
    assert!(out[0].excursion.is_some_and(|e| e.first));
    assert!(out[39].excursion.is_some());
    assert!(d.level() > untouched.level() + 5.0, "{}", d.level());

    // An action fixed it: forgetting puts everything back.
    assert!(d.forget_excursion());
    assert_eq!(d.level(), untouched.level());
    assert_eq!(d.sigma(), untouched.sigma());
    // ...so the rest of the series scores exactly as if the fault had never
    // been seen, and a second, identical fault fires just as high.
    let mut never = untouched;
    let rest: Vec<f64> = noise[2000..2500]
        .iter()
        .copied()
        .chain(std::iter::repeat_n(200.0, 5))
        .collect();
    let a = feed(&mut d, 2040, &rest);
    let b = feed(&mut never, 2040, &rest);
    assert_eq!(a, b);
    assert!(a[500].excursion.is_some_and(|e| e.first));
    // Nothing to forget outside an excursion.
    let mut quiet = AdaptiveDetector::new(DetectorConfig::default());
    feed(&mut quiet, 0, &noise[..100]);
    assert!(!quiet.forget_excursion());
}

#[test]
fn without_forgetting_a_repeated_fault_is_learnt() {
    // The contrast to the test above: a long fault that is not forgotten
    // teaches the tails that such deviations happen, so the same fault a
    // second time scores lower.
    let noise = gaussian(12, 2500);
    let mut d = AdaptiveDetector::new(DetectorConfig::default());
    feed(&mut d, 0, &noise[..2000]);
    let first = feed(&mut d, 2000, &[160.0; 100]);
    feed(&mut d, 2100, &noise[2000..2400]);
    let second = feed(&mut d, 2500, &[160.0; 100]);
    assert!(first[0].excursion.is_some_and(|e| e.first));
    assert!(
        second[0].score < first[0].score,
        "second {} vs first {}",
        second[0].score,
        first[0].score
    );
}

#[test]
fn in_band_tells_when_the_series_is_back_where_it_was() {
    let noise = gaussian(13, 2100);
    let mut d = AdaptiveDetector::new(DetectorConfig::default());
    feed(&mut d, 0, &noise[..2000]);
    // Up 20 spreads: out of the band (level 100, spread 5: band 85..115).
    let out = feed(&mut d, 2000, &[200.0, 200.0, 190.0]);
    assert!(out.iter().all(|s| s.excursion.is_some_and(|e| !e.in_band)));
    // Back to the old level: in the band at once, while the excursion's
    // hysteresis still keeps it open.
    let out = feed(&mut d, 2003, &[101.0, 99.0]);
    assert!(out.iter().all(|s| s.excursion.is_some_and(|e| e.in_band)));
    // Halfway back is not back; far below is not this excursion's trouble.
    let out = feed(&mut d, 2005, &[150.0, 20.0]);
    assert!(out[0].excursion.is_some_and(|e| !e.in_band));
    assert!(out[1].excursion.is_some_and(|e| e.in_band));
}

#[test]
fn in_band_respects_hard_limits() {
    let cfg = DetectorConfig {
        direction: Direction::Down,
        limit_below: Some(0.5),
        ..DetectorConfig::default()
    };
    let mut d = AdaptiveDetector::new(cfg);
    let out = feed(&mut d, 0, &[1.0; 50]);
    assert!(out.iter().all(|s| s.excursion.is_none()));
    let out = feed(&mut d, 50, &[0.0, 0.0, 1.0]);
    let ex: Vec<bool> = out.iter().map(|s| s.excursion.unwrap().in_band).collect();
    assert_eq!(ex, vec![false, false, true]);
}

#[test]
fn a_climb_on_a_perfectly_flat_series_fires_even_if_its_first_step_falls_short() {
    // Resident memory of an idle service: the very same value every scrape.
    // A leak's first sample (3 spreads up) falls just short of the
    // threshold and is learnt as the tail's first excess; the next one (19
    // spreads up) must still fire. (With the method-of-moments shape from
    // one or two excesses, the tail looked heavy and the whole leak went
    // unnoticed until the process died.)
    let cfg = DetectorConfig {
        direction: Direction::Up,
        min_spread: 1_048_576.0,
        ..DetectorConfig::default()
    };
    let mut d = AdaptiveDetector::new(cfg);
    let flat = feed(&mut d, 0, &[3_400_000.0; 130]);
    assert!(flat.iter().all(|s| s.excursion.is_none()));
    let leak: Vec<f64> = (0..4)
        .map(|k| 6_300_000.0 + 16.0 * 1_048_576.0 * f64::from(k))
        .collect();
    let out = feed(&mut d, 130, &leak);
    assert!(out[0].excursion.is_none(), "{:?}", out[0]);
    assert!(out[1].excursion.is_some_and(|e| e.first), "{:?}", out[1]);
}

#[test]
fn the_sample_that_fires_is_never_back_in_band() {
    // Requests in flight: 0 nearly always, so a spread floor of 1. The first
    // scrape after a hang catches only 3 piled-up requests: within three
    // spreads of the level, yet it fires. It must not count as recovered
    // (a re-check just before acting would otherwise call the symptom
    // gone); the next scrapes (10 in flight) are not back either; a restart
    // (0 in flight) is.
    // (The sensitive preset fires on 3; the default needs more.)
    let cfg = DetectorConfig {
        direction: Direction::Up,
        min_spread: 1.0,
        ..DetectorConfig::sensitive()
    };
    let mut d = AdaptiveDetector::new(cfg);
    let quiet: Vec<f64> = (0..300)
        .map(|i| if i % 50 == 7 { 1.0 } else { 0.0 })
        .collect();
    feed(&mut d, 0, &quiet);
    let out = feed(&mut d, 300, &[3.0, 10.0, 10.0, 0.0]);
    let ex: Vec<(bool, bool)> = out
        .iter()
        .map(|s| {
            let e = s.excursion.expect("in the excursion");
            (e.first, e.in_band)
        })
        .collect();
    assert_eq!(
        ex,
        vec![(true, false), (false, false), (false, false), (false, true)]
    );
}
