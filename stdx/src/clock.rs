//! Wall time, read in one place.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// What time it is on the wall, in ms since the Unix epoch.
///
/// Everything that needs "now" takes a `Clock` (or is given the time as a
/// parameter); nothing calls [`SystemTime::now`] itself. Tests pass a
/// [`ManualClock`] and move it by hand.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// Now, in ms since the Unix epoch (negative before it).
    fn now_ms(&self) -> i64;

    /// Now, in whole seconds since the Unix epoch (rounded down).
    fn now_secs(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_millis() as i64,
            Err(e) => -(e.duration().as_millis() as i64),
        }
    }
}

/// A clock that says what it is told: for tests that control wall time.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock showing `ms`.
    pub fn at(ms: i64) -> ManualClock {
        ManualClock(AtomicI64::new(ms))
    }

    /// Sets the time.
    pub fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }

    /// Moves the time on by `ms`.
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

impl<C: Clock + ?Sized> Clock for std::sync::Arc<C> {
    fn now_ms(&self) -> i64 {
        (**self).now_ms()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_clock_is_after_2020_and_manual_clocks_move_by_hand() {
        // 2020-01-01T00:00:00Z: a clock before it is broken, not early.
        assert!(SystemClock.now_ms() > 1_577_836_800_000);
        let c = ManualClock::at(1_500);
        assert_eq!((c.now_ms(), c.now_secs()), (1_500, 1));
        c.advance(-2_000);
        assert_eq!((c.now_ms(), c.now_secs()), (-500, -1));
        c.set(7);
        assert_eq!(std::sync::Arc::new(c).now_ms(), 7);
    }
}
