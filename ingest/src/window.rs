//! A rolling window of recent samples of one series.
//!
//! Bounded twice: by count (at most `capacity` samples) and by time (samples older than
//! `max_age_ms` relative to the newest are evicted). The count bound keeps memory fixed whatever
//! the scrape rate; the time bound keeps a detector's view meaningful after a gap, when the
//! newest `capacity` samples may span hours.
//!
//! Timestamps and values are stored in two ring buffers (struct of arrays) rather than one buffer
//! of [`Sample`]s so that [`Window::values`] can hand detectors plain `&[f64]` slices to sum or
//! sort without copying. Both buffers are allocated once, in [`Window::new`]; a push never
//! allocates because length never exceeds the capacity they were created with.

use std::collections::VecDeque;

use crate::series::Sample;

/// A ring buffer of the most recent samples of one series, bounded by count and by age.
#[derive(Debug, Clone)]
pub struct Window {
    capacity: usize,
    max_age_ms: i64,
    ts: VecDeque<i64>,
    values: VecDeque<f64>,
}

impl Window {
    /// A window of at most `capacity` samples, none older than `max_age_ms` relative to the
    /// newest. The age bound is left-open: a sample exactly `max_age_ms` older than the newest is
    /// evicted, like a Prometheus 3 range selector `[5m]`, which covers `(t-5m, t]`. Use
    /// `i64::MAX` for no age bound.
    ///
    /// # Panics
    ///
    /// When `capacity` is 0 or `max_age_ms` is not positive: such a window could hold nothing.
    pub fn new(capacity: usize, max_age_ms: i64) -> Self {
        assert!(capacity > 0, "window capacity must be positive");
        assert!(max_age_ms > 0, "window max age must be positive");
        Window {
            capacity,
            max_age_ms,
            ts: VecDeque::with_capacity(capacity),
            values: VecDeque::with_capacity(capacity),
        }
    }

    /// Adds the newest sample, evicting what falls out of the count or age bound.
    ///
    /// Samples must arrive in strictly increasing time order (a [`crate::Sanitizer`] guarantees
    /// it); a sample not newer than the newest is ignored and `false` is returned.
    pub fn push(&mut self, sample: Sample) -> bool {
        if self.ts.back().is_some_and(|&newest| sample.ts_ms <= newest) {
            return false;
        }
        if self.ts.len() == self.capacity {
            self.ts.pop_front();
            self.values.pop_front();
        }
        self.ts.push_back(sample.ts_ms);
        self.values.push_back(sample.value);
        // Saturating: a max age of i64::MAX must not overflow into "evict everything".
        let cutoff = sample.ts_ms.saturating_sub(self.max_age_ms);
        while self.ts.front().is_some_and(|&t| t <= cutoff) {
            self.ts.pop_front();
            self.values.pop_front();
        }
        true
    }

    /// The samples, oldest to newest.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = Sample> + ExactSizeIterator + '_ {
        self.ts
            .iter()
            .zip(self.values.iter())
            .map(|(&ts_ms, &value)| Sample { ts_ms, value })
    }

    /// The values, oldest to newest, as the two halves of the ring (the second may be empty).
    pub fn values(&self) -> (&[f64], &[f64]) {
        self.values.as_slices()
    }

    /// The timestamps, oldest to newest, as the two halves of the ring.
    pub fn timestamps(&self) -> (&[i64], &[i64]) {
        self.ts.as_slices()
    }

    /// Number of samples held.
    pub fn len(&self) -> usize {
        self.ts.len()
    }

    /// True when no sample is held.
    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    /// The count bound.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The age bound, in ms.
    pub fn max_age_ms(&self) -> i64 {
        self.max_age_ms
    }

    /// The newest sample.
    pub fn newest(&self) -> Option<Sample> {
        Some(Sample::new(*self.ts.back()?, *self.values.back()?))
    }

    /// The oldest sample.
    pub fn oldest(&self) -> Option<Sample> {
        Some(Sample::new(*self.ts.front()?, *self.values.front()?))
    }

    /// Empties the window, keeping its buffers.
    pub fn clear(&mut self) {
        self.ts.clear();
        self.values.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(w: &Window) -> Vec<f64> {
        let (a, b) = w.values();
        a.iter().chain(b).copied().collect()
    }

    #[test]
    fn bounded_by_count() {
        let mut w = Window::new(3, i64::MAX);
        for i in 0..5 {
            assert!(w.push(Sample::new(i, i as f64)));
        }
        assert_eq!(w.len(), 3);
        assert_eq!(values(&w), [2.0, 3.0, 4.0]);
        assert_eq!(w.oldest(), Some(Sample::new(2, 2.0)));
        assert_eq!(w.newest(), Some(Sample::new(4, 4.0)));
        let ts: Vec<_> = w.iter().map(|s| s.ts_ms).collect();
        assert_eq!(ts, [2, 3, 4]);
    }

    #[test]
    fn bounded_by_age_left_open() {
        let mut w = Window::new(100, 300);
        for t in [0, 100, 200, 300] {
            w.push(Sample::new(t, t as f64));
        }
        // 300 - 300 = 0: exactly max_age old is evicted.
        assert_eq!(values(&w), [100.0, 200.0, 300.0]);
        // After a gap, one sample remains.
        w.push(Sample::new(10_000, 1.0));
        assert_eq!(w.len(), 1);
        assert_eq!(w.oldest(), w.newest());
    }

    #[test]
    fn rejects_old_and_duplicate_samples() {
        let mut w = Window::new(4, 1000);
        assert!(w.push(Sample::new(10, 1.0)));
        assert!(!w.push(Sample::new(10, 2.0)));
        assert!(!w.push(Sample::new(5, 2.0)));
        assert_eq!(values(&w), [1.0]);
    }

    #[test]
    fn values_as_two_slices_after_wrap() {
        let mut w = Window::new(4, i64::MAX);
        for i in 0..7 {
            w.push(Sample::new(i, i as f64));
        }
        let (a, b) = w.values();
        assert_eq!(a.len() + b.len(), 4);
        assert_eq!(values(&w), [3.0, 4.0, 5.0, 6.0]);
        let (ta, tb) = w.timestamps();
        assert_eq!(ta.len() + tb.len(), 4);
    }

    #[test]
    fn does_not_reallocate() {
        let mut w = Window::new(8, 50);
        let cap = (w.ts.capacity(), w.values.capacity());
        for i in 0..1000 {
            w.push(Sample::new(i * 7, 0.0));
        }
        assert_eq!((w.ts.capacity(), w.values.capacity()), cap);
    }

    #[test]
    fn clear_and_empty() {
        let mut w = Window::new(2, 10);
        assert!(w.is_empty());
        assert_eq!(w.newest(), None);
        w.push(Sample::new(1, 1.0));
        w.clear();
        assert!(w.is_empty());
        assert!(
            w.push(Sample::new(0, 1.0)),
            "a cleared window accepts any time"
        );
        assert_eq!((w.capacity(), w.max_age_ms()), (2, 10));
    }
}
