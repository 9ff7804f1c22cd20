//! Epoch order: a seeded shuffle per epoch, sharded across ranks like
//! PyTorch's `DistributedSampler` (padding by wrapping to the front), then
//! cut into batches.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Which positions of a dataset of `len` samples one rank reads each epoch.
///
/// Epoch order: the permutation of `0..len` drawn from `(seed, epoch)` (or the
/// identity when `shuffle` is off), padded by repeating its first entries up to
/// a multiple of `world_size` (as `DistributedSampler(drop_last=False)`), then
/// every `world_size`-th entry starting at `rank`. With `world_size == 1` the
/// order is the plain permutation. Batching then cuts the rank's order into
/// `batch_size` pieces; `drop_last` drops a trailing partial batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sampler {
    pub len: usize,
    pub seed: u64,
    pub shuffle: bool,
    pub rank: usize,
    pub world_size: usize,
}

impl Sampler {
    /// A single-process sampler.
    pub fn new(len: usize, seed: u64, shuffle: bool) -> Self {
        Sampler {
            len,
            seed,
            shuffle,
            rank: 0,
            world_size: 1,
        }
    }

    /// Number of positions per rank: `ceil(len / world_size)` (0 when empty).
    pub fn per_rank(&self) -> usize {
        self.len.div_ceil(self.world_size.max(1))
    }

    /// This rank's order for `epoch`, written into `out` (cleared first, its
    /// capacity reused).
    pub fn order_into(&self, epoch: u64, out: &mut Vec<u32>) {
        out.clear();
        if self.len == 0 {
            return;
        }
        let world = self.world_size.max(1);
        let mut perm: Vec<u32> = (0..self.len as u32).collect();
        if self.shuffle {
            let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
            rng.set_stream(epoch);
            perm.shuffle(&mut rng);
        }
        let total = self.per_rank() * world;
        out.extend(
            (self.rank..total)
                .step_by(world)
                .map(|k| perm[k % self.len]),
        );
    }

    /// This rank's order for `epoch`.
    pub fn order(&self, epoch: u64) -> Vec<u32> {
        let mut v = Vec::new();
        self.order_into(epoch, &mut v);
        v
    }
}

/// Number of batches for `n` positions.
pub fn batch_count(n: usize, batch_size: usize, drop_last: bool) -> usize {
    if batch_size == 0 {
        return 0;
    }
    if drop_last {
        n / batch_size
    } else {
        n.div_ceil(batch_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_per_epoch_and_deterministic() {
        let s = Sampler::new(1000, 7, true);
        let a = s.order(0);
        let b = s.order(1);
        assert_eq!(a, s.order(0));
        assert_ne!(a, b);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..1000).collect::<Vec<u32>>());
        assert_ne!(a, sorted, "shuffle on must not give the identity");
        assert_ne!(Sampler::new(1000, 8, true).order(0), a);
        assert_eq!(Sampler::new(5, 7, false).order(3), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn shards_cover_epoch_disjointly_with_torch_padding() {
        for (len, world) in [(10, 3), (12, 4), (7, 1), (5, 8), (1001, 2)] {
            let orders: Vec<Vec<u32>> = (0..world)
                .map(|rank| {
                    Sampler {
                        len,
                        seed: 3,
                        shuffle: true,
                        rank,
                        world_size: world,
                    }
                    .order(2)
                })
                .collect();
            let per = len.div_ceil(world);
            let perm = Sampler::new(len, 3, true).order(2);
            let mut padded = perm.clone();
            padded.extend(perm.iter().cycle().take(per * world - len));
            for (rank, o) in orders.iter().enumerate() {
                assert_eq!(o.len(), per, "len {len} world {world}");
                let want: Vec<u32> = padded.iter().skip(rank).step_by(world).copied().collect();
                assert_eq!(o, &want, "torch's indices[rank:total:world]");
            }
            // union is the epoch; positions are disjoint (the only repeats are the padding)
            let mut all: Vec<u32> = orders.concat();
            all.sort_unstable();
            let mut expect = padded.clone();
            expect.sort_unstable();
            assert_eq!(all, expect);
            let mut uniq = all.clone();
            uniq.dedup();
            assert_eq!(uniq.len(), len);
        }
    }

    #[test]
    fn batch_counts() {
        assert_eq!(batch_count(10, 4, false), 3);
        assert_eq!(batch_count(10, 4, true), 2);
        assert_eq!(batch_count(8, 4, true), 2);
        assert_eq!(batch_count(0, 4, false), 0);
    }
}
