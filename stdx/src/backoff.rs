//! Exponential backoff, the one policy of every retry and restart.

use std::time::Duration;

/// Waits that double from `initial` up to `max`, each shortened by a random
/// share of at most `jitter`.
///
/// Wait `n` (1 for the first retry or restart) is
/// `min(max, initial * 2^(n-1))`, scaled by `1 - jitter * u` for a uniform
/// `u` in [0, 1): never longer than the cap. `jitter: 1.0` is "full jitter"
/// in the terms of Marc Brooker's "Exponential Backoff And Jitter" (AWS
/// Architecture Blog, 2015), which spreads a crowd of clients best; 0
/// keeps the waits exact (one supervisor restarting its own children gains
/// nothing from randomness). The caller draws `u`, so this type stays free
/// of any generator and its results are reproducible.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The first wait.
    pub initial: Duration,
    /// The longest wait.
    pub max: Duration,
    /// Share of each wait that is random, in [0, 1].
    pub jitter: f64,
}

impl Backoff {
    /// Doubling from `initial` to `max`, no jitter.
    pub fn exponential(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            jitter: 0.0,
        }
    }

    /// The same with a `jitter` share (clamped to [0, 1]).
    pub fn with_jitter(self, jitter: f64) -> Backoff {
        Backoff {
            jitter: if jitter.is_finite() {
                jitter.clamp(0.0, 1.0)
            } else {
                0.0
            },
            ..self
        }
    }

    /// Wait number `n` (1 for the first), given a uniform `u` in [0, 1)
    /// (ignored without jitter).
    pub fn delay(&self, n: u32, u: f64) -> Duration {
        let exp = n.saturating_sub(1).min(63);
        let base = self
            .initial
            .saturating_mul(1u32.checked_shl(exp.min(31)).unwrap_or(u32::MAX))
            .min(self.max);
        if self.jitter == 0.0 {
            return base;
        }
        // Whole milliseconds: finer waits mean nothing to a timer wheel.
        let factor = 1.0 - self.jitter * u.clamp(0.0, 1.0);
        Duration::from_millis((base.as_millis() as f64 * factor).round() as u64)
    }

    /// The wait after `current`: twice as long, up to `max` (for a loop
    /// that keeps its own current wait, as the supervisor's restarts do).
    pub fn next_after(&self, current: Duration) -> Duration {
        current.saturating_mul(2).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_jitter_only_shortens() {
        let b = Backoff::exponential(Duration::from_millis(200), Duration::from_secs(10));
        let ms = |n| b.delay(n, 0.9).as_millis();
        assert_eq!(
            [ms(1), ms(2), ms(3), ms(6), ms(7), ms(200)],
            [200, 400, 800, 6400, 10_000, 10_000]
        );
        assert_eq!(
            b.next_after(Duration::from_secs(8)),
            Duration::from_secs(10)
        );
        let j = b.with_jitter(0.5);
        assert_eq!(j.delay(2, 0.0), Duration::from_millis(400));
        assert_eq!(j.delay(2, 0.5), Duration::from_millis(300));
        assert!(j.delay(2, 0.999_999) >= Duration::from_millis(200));
        assert_eq!(b.with_jitter(f64::NAN).jitter, 0.0);
        assert_eq!(b.with_jitter(3.0).jitter, 1.0);
    }
}
