//! What the loader needs from the data side: a [`Source`] of decoded pixels
//! and a [`Transform`] writing one output image into a batch slot. Adapters
//! for the real crates live in [`crate::adapters`]; [`VecSource`] and
//! [`NearestResize`] are small in-crate implementations (tests, examples).

pub use brigade_augment::{Rect, SampleSeed};
use brigade_pixels::{ImageView, RgbImage};
use std::time::Duration;

/// Output geometry of one epoch's images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutSize {
    pub height: u32,
    pub width: u32,
}

impl OutSize {
    /// A square output.
    pub fn square(side: u32) -> Self {
        OutSize {
            height: side,
            width: side,
        }
    }

    /// Bytes of one RGB8 image of this size.
    pub fn image_bytes(&self) -> usize {
        self.height as usize * self.width as usize * 3
    }

    /// `(width, height)`, the order the augment crate's `out` arguments use.
    pub fn wh(&self) -> (u32, u32) {
        (self.width, self.height)
    }
}

impl From<u32> for OutSize {
    fn from(side: u32) -> Self {
        OutSize::square(side)
    }
}

/// Time a source spent reading bytes and decoding them for one sample.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadTimes {
    pub read: Duration,
    pub decode: Duration,
}

/// Pixels of one sample as the source produced them.
#[derive(Debug, Clone, Copy)]
pub struct Loaded<'a> {
    /// The whole image, possibly DCT-downscaled (then `view` is smaller than `full`).
    pub view: ImageView<'a>,
    /// Geometry of the full image (the coordinates transforms draw regions in).
    pub full: (u32, u32),
}

/// Why one sample could not be loaded (decode error, unreadable file, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SampleError(pub String);

/// A random-access set of images, shared by all worker threads.
pub trait Source: Send + Sync + 'static {
    /// Per-worker state (decoder, read buffer, decoded image): created once per
    /// thread, reused for every sample.
    type Scratch: Default + Send + 'static;

    /// Number of samples; positions are `0..len()`.
    fn len(&self) -> usize;
    /// True when there is nothing to load.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Class label of position `i`.
    fn label(&self, i: usize) -> u32;
    /// Stable sample id of position `i` (the index's `SampleId` when known):
    /// reported in batches and used to seed augmentation.
    fn sample_id(&self, i: usize) -> u32 {
        i as u32
    }
    /// Human name of position `i` for reports (a path, a store record).
    fn name(&self, i: usize) -> String;
    /// Full image geometry `(width, height)` if known without decoding.
    fn full_size(&self, i: usize) -> Option<(u32, u32)>;
    /// Loads position `i`. `min_size`, when given, is the smallest `(w, h)` of
    /// the whole decoded image the transform needs: a source may decode at a
    /// reduced DCT scale as long as the result is at least that large.
    fn load<'s>(
        &'s self,
        i: usize,
        min_size: Option<(u32, u32)>,
        scratch: &'s mut Self::Scratch,
        times: &mut LoadTimes,
    ) -> Result<Loaded<'s>, SampleError>;
}

/// A per-sample transform writing `out.image_bytes()` bytes of HWC RGB8 into a
/// batch slot. Randomness must come only from the [`SampleSeed`]: the loader
/// passes `(seed, epoch, sample_id)`, and `sample_id | attempt << 32` for a
/// substitute drawn after a failed sample (so it is not a byte copy of that
/// image's own occurrence).
pub trait Transform: Send + Sync + 'static {
    /// Per-worker reusable buffers.
    type Scratch: Default + Send + 'static;

    /// The region of the full image this sample will read (computed from the
    /// seed only); the loader uses it to ask for a DCT-scaled decode.
    fn source_region(&self, full: (u32, u32), out: OutSize, key: SampleSeed) -> Rect;

    /// Writes the output image for `src` (the whole image, `full` geometry,
    /// possibly stored smaller) into `dst` (exactly `out.image_bytes()` long).
    fn apply(
        &self,
        src: ImageView<'_>,
        full: (u32, u32),
        out: OutSize,
        key: SampleSeed,
        scratch: &mut Self::Scratch,
        dst: &mut [u8],
    ) -> Result<(), SampleError>;
}

/// In-memory images (tests, examples). Images listed in `broken` fail to load.
#[derive(Debug, Clone, Default)]
pub struct VecSource {
    pub images: Vec<RgbImage>,
    pub labels: Vec<u32>,
    /// Positions that report a decode error.
    pub broken: Vec<usize>,
}

impl Source for VecSource {
    type Scratch = ();

    fn len(&self) -> usize {
        self.images.len()
    }
    fn label(&self, i: usize) -> u32 {
        self.labels.get(i).copied().unwrap_or(0)
    }
    fn name(&self, i: usize) -> String {
        format!("memory image {i}")
    }
    fn full_size(&self, i: usize) -> Option<(u32, u32)> {
        self.images.get(i).map(|im| (im.width, im.height))
    }
    fn load<'s>(
        &'s self,
        i: usize,
        _min_size: Option<(u32, u32)>,
        _scratch: &'s mut (),
        _times: &mut LoadTimes,
    ) -> Result<Loaded<'s>, SampleError> {
        if self.broken.contains(&i) {
            return Err(SampleError("synthetic decode failure".into()));
        }
        let im = self
            .images
            .get(i)
            .ok_or_else(|| SampleError(format!("no image at position {i}")))?;
        Ok(Loaded {
            view: im.view(),
            full: (im.width, im.height),
        })
    }
}

/// Nearest-neighbour resize of the whole image, optionally mirrored when
/// `random_flip` and the seed says so. Deterministic and cheap: a stand-in for
/// a real augmentation pipeline in tests and examples.
#[derive(Debug, Clone, Copy, Default)]
pub struct NearestResize {
    pub random_flip: bool,
}

impl NearestResize {
    fn flips(&self, key: SampleSeed) -> bool {
        self.random_flip && mix(key.seed ^ mix(key.epoch ^ mix(key.sample))) & 1 == 1
    }
}

/// splitmix64 finaliser.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Transform for NearestResize {
    type Scratch = ();

    fn source_region(&self, full: (u32, u32), _out: OutSize, _key: SampleSeed) -> Rect {
        Rect::full(full)
    }

    fn apply(
        &self,
        src: ImageView<'_>,
        _full: (u32, u32),
        out: OutSize,
        key: SampleSeed,
        _scratch: &mut (),
        dst: &mut [u8],
    ) -> Result<(), SampleError> {
        let (sw, sh) = (src.width as usize, src.height as usize);
        let (ow, oh) = (out.width as usize, out.height as usize);
        if sw == 0 || sh == 0 || src.data.len() != sw * sh * 3 {
            return Err(SampleError(format!(
                "bad source view {sw}x{sh} with {} bytes",
                src.data.len()
            )));
        }
        if dst.len() != out.image_bytes() {
            return Err(SampleError(format!(
                "destination has {} bytes, expected {}",
                dst.len(),
                out.image_bytes()
            )));
        }
        let flip = self.flips(key);
        for (y, row) in dst.chunks_exact_mut(ow * 3).enumerate() {
            let sy = (y * sh) / oh;
            for (x, px) in row.chunks_exact_mut(3).enumerate() {
                let xx = if flip { ow - 1 - x } else { x };
                let sx = (xx * sw) / ow;
                let o = (sy * sw + sx) * 3;
                px.copy_from_slice(&src.data[o..o + 3]);
            }
        }
        Ok(())
    }
}
