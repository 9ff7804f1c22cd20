//! Per-sample randomness: every random choice derives from a [`SampleSeed`].

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Identifies one draw of one sample: `(run seed, epoch, sample index)`.
///
/// The same triple always yields the same random stream, on any thread, in any
/// order: the ChaCha8 key *is* the triple (plus a domain tag), so distinct
/// triples can never share a stream and nothing is shared between samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct SampleSeed {
    /// The run's seed.
    pub seed: u64,
    /// The epoch (0-based).
    pub epoch: u64,
    /// The sample (index into the dataset, not into the batch).
    pub sample: u64,
}

/// Domain tag in the last key word, so other crates keying ChaCha by the same
/// triple get unrelated streams ("brigaug1").
const DOMAIN: u64 = u64::from_le_bytes(*b"brigaug1");

impl SampleSeed {
    /// Builds a seed triple.
    pub const fn new(seed: u64, epoch: u64, sample: u64) -> Self {
        Self {
            seed,
            epoch,
            sample,
        }
    }

    /// The random stream of this sample.
    pub fn rng(&self) -> SampleRng {
        let mut key = [0u8; 32];
        key[0..8].copy_from_slice(&self.seed.to_le_bytes());
        key[8..16].copy_from_slice(&self.epoch.to_le_bytes());
        key[16..24].copy_from_slice(&self.sample.to_le_bytes());
        key[24..32].copy_from_slice(&DOMAIN.to_le_bytes());
        SampleRng(ChaCha8Rng::from_seed(key))
    }
}

/// A per-sample random stream (ChaCha8). The conversions to floats and ranges
/// are written out here so the stream of values is fixed by this crate, not by
/// a dependency's version.
#[derive(Debug, Clone)]
pub struct SampleRng(ChaCha8Rng);

impl SampleRng {
    /// 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[lo, hi)` (or exactly `lo` when `lo == hi`).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// `exp(uniform(ln lo, ln hi))`: log-uniform in `[lo, hi)`, both positive.
    pub fn log_uniform(&mut self, lo: f64, hi: f64) -> f64 {
        self.uniform(lo.ln(), hi.ln()).exp()
    }

    /// Uniform integer in `[0, n)`; `n == 0` returns 0. Unbiased (rejection).
    pub fn below(&mut self, n: u64) -> u64 {
        if n <= 1 {
            return 0;
        }
        // Lemire's multiply-shift with rejection of the biased low zone.
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = (self.next_u64() as u128) * (n as u128);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }

    /// `true` with probability `p` (`p <= 0`: never, `p >= 1`: always).
    pub fn bernoulli(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        if p >= 1.0 {
            // Still consume one value so the stream layout does not depend on p.
            let _ = self.next_u64();
            return true;
        }
        self.unit() < p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_triple_same_stream_distinct_triples_differ() {
        let mut r1 = SampleSeed::new(1, 2, 3).rng();
        let mut r2 = SampleSeed::new(1, 2, 3).rng();
        let mut r3 = SampleSeed::new(1, 3, 2).rng();
        let v1: Vec<u64> = (0..8).map(|_| r1.next_u64()).collect();
        let v2: Vec<u64> = (0..8).map(|_| r2.next_u64()).collect();
        let v3: Vec<u64> = (0..8).map(|_| r3.next_u64()).collect();
        assert_eq!(v1, v2);
        assert_ne!(v1, v3);
    }

    #[test]
    fn below_and_unit_ranges() {
        let mut r = SampleSeed::new(7, 0, 0).rng();
        let mut counts = [0u32; 5];
        for _ in 0..50_000 {
            let k = r.below(5) as usize;
            counts[k] += 1;
            let u = r.unit();
            assert!((0.0..1.0).contains(&u));
        }
        for c in counts {
            // 10_000 expected; 5 sigma is about 450.
            assert!((9_500..10_500).contains(&c), "{counts:?}");
        }
    }
}
