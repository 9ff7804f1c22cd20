//! The data seam of the loop: a [`DataSource`] yields device batches for an
//! epoch, at a size, from a batch index (exact resume). Implementations: the
//! real pipeline (store → augment → loader → tensor, in `pipeline`) and
//! [`MemoryData`], an in-memory set of fixed-size images used by tests,
//! `bench-train` and as a fallback.

use tch::{Device, Kind, Tensor};

/// ImageNet mean and std (RGB, 0..1 scale).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Data failures.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("data: {0}")]
    Msg(String),
    #[error("data: tensor: {0}")]
    Torch(#[from] tch::TchError),
}

/// One batch on the device.
pub struct DeviceBatch {
    /// `[N, 3, H, W]` float, normalised (channels-last strides when the source makes them).
    pub images: Tensor,
    /// `[N]` int64 class indices.
    pub labels: Tensor,
    /// Sample ids (index of the sample in its source).
    pub ids: Vec<u32>,
}

/// The iterator a source returns for one epoch.
pub type EpochIter<'a> = Box<dyn Iterator<Item = Result<DeviceBatch, DataError>> + 'a>;

/// Where batches come from.
pub trait DataSource {
    /// Samples in the source.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Batches per epoch for a batch size (train sources drop the last partial batch).
    fn num_batches(&self, batch_size: usize) -> usize;
    /// Consumer time spent waiting for input inside the source during the
    /// latest epoch, when the source measures it (the prefetching loader).
    fn input_wait(&self) -> Option<std::time::Duration> {
        None
    }
    /// Data-parallel shard: this rank's part of each train epoch.
    fn set_shard(&mut self, _rank: usize, _world: usize) {}
    /// The batches of `epoch` at `size`, starting at `start_batch`.
    fn epoch(
        &mut self,
        epoch: u32,
        size: u32,
        batch_size: usize,
        start_batch: usize,
    ) -> Result<EpochIter<'_>, DataError>;
}

/// u8 NHWC bytes → normalised float NCHW (a permute: channels-last strides) on `device`.
pub fn normalise(
    nhwc: &[u8],
    n: usize,
    h: usize,
    w: usize,
    device: Device,
    mean: [f32; 3],
    std: [f32; 3],
) -> Result<Tensor, DataError> {
    let t = Tensor::f_from_slice(nhwc)?
        .f_view([n as i64, h as i64, w as i64, 3])?
        .f_to_device(device)?
        .f_to_kind(Kind::Float)?;
    let m = Tensor::f_from_slice(&mean.map(|v| v * 255.0))?.f_to_device(device)?;
    let s = Tensor::f_from_slice(&std.map(|v| v * 255.0))?.f_to_device(device)?;
    Ok(t.f_sub(&m)?.f_div(&s)?.f_permute([0, 3, 1, 2])?)
}

/// SplitMix64: the deterministic hash used for permutations and per-sample choices.
pub fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Deterministic permutation of `0..n` from a key (Fisher–Yates over SplitMix64).
pub fn permutation(n: usize, key: u64) -> Vec<usize> {
    let mut p: Vec<usize> = (0..n).collect();
    let mut s = splitmix(key);
    for i in (1..n).rev() {
        s = splitmix(s);
        let j = (s % (i as u64 + 1)) as usize;
        p.swap(i, j);
    }
    p
}

/// Fixed-size RGB8 images in memory with labels. Train mode: seeded shuffle,
/// random crop of `size` (when the stored side is larger) and horizontal flip
/// from `(seed, epoch, sample)`; eval mode: source order, centre crop.
pub struct MemoryData {
    pub side: usize,
    /// `len * side * side * 3` bytes, HWC per image.
    pub pixels: Vec<u8>,
    pub labels: Vec<u32>,
    pub train: bool,
    pub seed: u64,
    pub device: Device,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// Data-parallel shard (train mode): this rank takes every `world`-th
    /// sample of the epoch order, all ranks the same count.
    pub rank: usize,
    pub world: usize,
}

impl MemoryData {
    /// Random images with labels (benchmarks).
    pub fn random(n: usize, side: usize, classes: u32, seed: u64, device: Device) -> MemoryData {
        let mut s = splitmix(seed);
        let pixels = (0..n * side * side * 3)
            .map(|_| {
                s = splitmix(s);
                (s >> 56) as u8
            })
            .collect();
        let labels = (0..n)
            .map(|i| (splitmix(seed ^ i as u64) % classes as u64) as u32)
            .collect();
        MemoryData {
            side,
            pixels,
            labels,
            train: true,
            seed,
            device,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
            rank: 0,
            world: 1,
        }
    }

    /// Samples this rank sees per epoch.
    fn shard_len(&self) -> usize {
        if self.train {
            self.labels.len() / self.world.max(1)
        } else {
            self.labels.len()
        }
    }

    fn fill(&self, idx: usize, epoch: u32, size: usize, dst: &mut [u8]) {
        let side = self.side;
        let src = &self.pixels[idx * side * side * 3..(idx + 1) * side * side * 3];
        let span = side.saturating_sub(size);
        let (ox, oy, flip) = if self.train {
            let h = splitmix(self.seed ^ splitmix((u64::from(epoch) << 32) ^ idx as u64));
            let ox = if span > 0 {
                (h % (span as u64 + 1)) as usize
            } else {
                0
            };
            let oy = if span > 0 {
                ((h >> 20) % (span as u64 + 1)) as usize
            } else {
                0
            };
            (ox, oy, (h >> 63) == 1)
        } else {
            (span / 2, span / 2, false)
        };
        let size = size.min(side);
        for y in 0..size {
            for x in 0..size {
                let sx = if flip { ox + size - 1 - x } else { ox + x };
                let s = ((oy + y) * side + sx) * 3;
                let d = (y * size + x) * 3;
                dst[d..d + 3].copy_from_slice(&src[s..s + 3]);
            }
        }
    }
}

impl DataSource for MemoryData {
    fn len(&self) -> usize {
        self.labels.len()
    }

    fn set_shard(&mut self, rank: usize, world: usize) {
        (self.rank, self.world) = (rank, world.max(1));
    }

    fn num_batches(&self, batch_size: usize) -> usize {
        let bs = batch_size.max(1);
        if self.train {
            self.shard_len() / bs
        } else {
            self.len().div_ceil(bs)
        }
    }

    fn epoch(
        &mut self,
        epoch: u32,
        size: u32,
        batch_size: usize,
        start_batch: usize,
    ) -> Result<EpochIter<'_>, DataError> {
        let size = (size as usize).min(self.side);
        let order: Vec<usize> = if self.train {
            let world = self.world.max(1);
            permutation(self.len(), self.seed ^ splitmix(u64::from(epoch)))
                .into_iter()
                .skip(self.rank)
                .step_by(world)
                .take(self.shard_len())
                .collect()
        } else {
            (0..self.len()).collect()
        };
        let nb = self.num_batches(batch_size);
        let bs = batch_size.max(1);
        let this: &MemoryData = self;
        let mut buf = Vec::new();
        Ok(Box::new((start_batch..nb).map(move |b| {
            let ids: Vec<usize> = order[b * bs..((b + 1) * bs).min(order.len())].to_vec();
            buf.resize(ids.len() * size * size * 3, 0);
            for (k, &i) in ids.iter().enumerate() {
                this.fill(
                    i,
                    epoch,
                    size,
                    &mut buf[k * size * size * 3..(k + 1) * size * size * 3],
                );
            }
            let images = normalise(
                &buf,
                ids.len(),
                size,
                size,
                this.device,
                this.mean,
                this.std,
            )?;
            let labels: Vec<i64> = ids.iter().map(|&i| i64::from(this.labels[i])).collect();
            Ok(DeviceBatch {
                images,
                labels: Tensor::f_from_slice(&labels)?.f_to_device(this.device)?,
                ids: ids.iter().map(|&i| i as u32).collect(),
            })
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_is_a_deterministic_shuffle() {
        let a = permutation(100, 5);
        let mut s = a.clone();
        s.sort();
        assert_eq!(s, (0..100).collect::<Vec<_>>());
        assert_eq!(a, permutation(100, 5));
        assert_ne!(a, permutation(100, 6));
    }

    #[test]
    fn memory_epochs_resume_and_normalise() {
        let mut d = MemoryData::random(10, 8, 3, 1, Device::Cpu);
        let full: Vec<DeviceBatch> = d.epoch(2, 6, 3, 0).unwrap().map(|b| b.unwrap()).collect();
        assert_eq!(full.len(), 3); // drop_last
        let tail: Vec<DeviceBatch> = d.epoch(2, 6, 3, 1).unwrap().map(|b| b.unwrap()).collect();
        assert_eq!(tail.len(), 2);
        assert!(tail[0].images.equal(&full[1].images));
        assert_eq!(tail[1].ids, full[2].ids);
        assert_eq!(full[0].images.size(), vec![3, 3, 6, 6]);
        // normalisation against a direct computation on one pixel
        let px = [10u8, 200, 30];
        let t = normalise(&px, 1, 1, 1, Device::Cpu, IMAGENET_MEAN, IMAGENET_STD).unwrap();
        for c in 0..3 {
            let want = (px[c] as f64 / 255.0 - IMAGENET_MEAN[c] as f64) / IMAGENET_STD[c] as f64;
            let got = t.double_value(&[0, c as i64, 0, 0]);
            assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        }
        // two ranks: disjoint shards of equal size covering the epoch
        let mut shards = Vec::new();
        for rank in 0..2 {
            let mut r = MemoryData::random(10, 8, 3, 1, Device::Cpu);
            (r.rank, r.world) = (rank, 2);
            assert_eq!(r.num_batches(1), 5);
            let ids: Vec<u32> = r
                .epoch(2, 6, 1, 0)
                .unwrap()
                .flat_map(|b| b.unwrap().ids)
                .collect();
            shards.push(ids);
        }
        let mut all: Vec<u32> = shards.concat();
        all.sort();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        d.train = false;
        assert_eq!(d.num_batches(3), 4);
    }
}
