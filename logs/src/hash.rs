//! Two hashes: a fast one for in-memory maps and a stable one for template ids.
//!
//! `std`'s default SipHash is keyed at random per process and hashes a byte at a
//! time through a heavy round; the miner's hot path hashes one masked message per
//! line, so a multiply-rotate hash over 8-byte words (the Firefox/rustc "Fx" hash,
//! rustc-hash's `FxHasher`) is used for maps. Maps here are keyed by the
//! process's own strings, not by an adversary's choice of keys alone: a
//! flood of colliding messages only slows the slow path, and the template cap
//! bounds memory regardless.
//!
//! Template ids must be identical across runs, platforms and releases, so they
//! use FNV-1a 64 (the same function `ingest` uses for series ids), which is
//! specified byte by byte.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// The Fx hash (rustc-hash): `h = (h.rotl(5) ^ word) * K` per 8-byte word.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FxHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes([
                c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
            ]));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut buf = [0u8; 8];
            buf[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(buf));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

pub(crate) type FxBuild = BuildHasherDefault<FxHasher>;
pub(crate) type FxHashMap<K, V> = HashMap<K, V, FxBuild>;
pub(crate) type FxHashSet<K> = HashSet<K, FxBuild>;

/// FNV-1a, 64 bit: the one implementation is `stdx`'s.
pub(crate) use stdx::fnv1a64;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::Hash;

    #[test]
    fn fx_distinguishes_strings_that_differ_past_the_first_word() {
        let h = |s: &str| {
            let mut f = FxHasher::default();
            s.hash(&mut f);
            f.finish()
        };
        assert_ne!(h("Receiving block <*> src"), h("Receiving block <*> dst"));
        assert_eq!(h("same"), h("same"));
    }
}
