//! SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number
//! generators", OOPSLA 2014): a seeded generator of a few lines,
//! reproducible on every platform, with no dependency. The lab's error
//! fault draws from it, and so do heal's bench and tune and the tests that
//! need seeded noise: one copy for all of them.

/// The generator's increment (the golden ratio in 64 bits).
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function: a state in, 64 well-mixed bits out.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// 53 random bits as a uniform draw in [0, 1).
fn unit_of(bits: u64) -> f64 {
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// The `n`-th output (from 0) of the generator seeded with 0, without
/// keeping state: the state after `n + 1` steps is `(n + 1) * GAMMA`.
pub fn nth(n: u64) -> u64 {
    mix(n.wrapping_add(1).wrapping_mul(GAMMA))
}

/// The `n`-th draw in [0, 1) of the generator seeded with 0 (see [`nth`]).
pub fn nth_unit(n: u64) -> f64 {
    unit_of(nth(n))
}

/// A seeded SplitMix64 stream.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// The stream of this seed.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GAMMA);
        mix(self.0)
    }

    /// The next uniform draw in [0, 1).
    pub fn unit(&mut self) -> f64 {
        unit_of(self.next_u64())
    }

    /// A uniform draw in [lo, hi).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + self.unit() * (hi - lo)
    }

    /// Noise with mean 0 and standard deviation 1: the sum of four uniform
    /// draws, centred and scaled (close to normal, bounded by ±2√3).
    pub fn noise(&mut self) -> f64 {
        let sum: f64 = (0..4).map(|_| self.unit()).sum();
        (sum - 2.0) * 3f64.sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_and_the_nth_output_agree() {
        let mut s = SplitMix64::new(0);
        for n in 0..100 {
            assert_eq!(s.next_u64(), nth(n));
        }
    }

    #[test]
    fn known_first_output_of_seed_zero() {
        // SplitMix64's reference output for seed 0.
        assert_eq!(SplitMix64::new(0).next_u64(), 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn draws_stay_in_their_ranges() {
        let mut s = SplitMix64::new(7);
        for _ in 0..10_000 {
            let u = s.unit();
            assert!((0.0..1.0).contains(&u));
            let x = s.uniform(-3.0, 5.0);
            assert!((-3.0..5.0).contains(&x));
            assert!(s.noise().abs() <= 2.0 * 3f64.sqrt());
        }
    }
}
