//! Seeded image augmentations on u8 HWC buffers, writing straight into a batch slot.
//!
//! A [`Pipeline`] is built from a serde-deserialisable [`PipelineConfig`]
//! (train: RandomResizedCrop + flip or the fastai v1 `get_transforms` warp,
//! TrivialAugmentWide, colour jitter, random erasing; eval: resize `8/7` +
//! centre crop, with TTA variants). Every random choice comes from a
//! [`SampleSeed`] `(seed, epoch, sample)`, so the same sample gives the same
//! bytes on any thread. [`Pipeline::source_region`] tells the loader which
//! rectangle of the image a sample reads, so it can decode just that region
//! (possibly downscaled) and hand it to [`Pipeline::apply`].
//!
//! ```
//! use brigade_augment::{Pipeline, PipelineConfig, Rect, SampleSeed, Scratch};
//! use brigade_pixels::ImageView;
//!
//! let cfg: PipelineConfig = toml::from_str(r#"
//!     kind = "train"
//!     [geometry]
//!     kind = "random_resized_crop"
//!     scale = [0.35, 1.0]
//! "#).unwrap();
//! let pipe = Pipeline::new(cfg).unwrap();
//!
//! let (w, h) = (64u32, 48u32);
//! let pixels: Vec<u8> = (0..w * h * 3).map(|i| (i % 251) as u8).collect();
//! let seed = SampleSeed::new(42, 0, 7);
//! let out = (32, 32);
//!
//! // The loader may decode only this region...
//! let region = pipe.source_region((w, h), out, seed);
//! let mut crop = Vec::new();
//! for y in region.y..region.y + region.h {
//!     let s = ((y * w + region.x) * 3) as usize;
//!     crop.extend_from_slice(&pixels[s..s + region.w as usize * 3]);
//! }
//! let part = ImageView { width: region.w, height: region.h, data: &crop };
//!
//! let mut scratch = Scratch::new();
//! let mut a = vec![0u8; 32 * 32 * 3];
//! let mut b = vec![0u8; 32 * 32 * 3];
//! pipe.apply(part, region, (w, h), out, seed, &mut scratch, &mut a).unwrap();
//! // ...and gets exactly what the full image gives.
//! let full = ImageView { width: w, height: h, data: &pixels };
//! pipe.apply(full, Rect::full((w, h)), (w, h), out, seed, &mut scratch, &mut b).unwrap();
//! assert_eq!(a, b);
//! ```

mod config;
mod geometry;
pub mod ops;
mod pipeline;
mod rect;
mod resample;
mod seed;

pub use config::{
    ColorJitterConfig, CropPos, EraseValue, EvalConfig, FastaiConfig, Geometry, PipelineConfig,
    RandomErasingConfig, RrcConfig, TrainConfig, TrivialAugmentConfig, TtaVariant,
};
pub use geometry::{random_resized_crop_params, CropParams, FastaiParams};
pub use pipeline::{fastai_warp, resized_crop, Pipeline, Scratch};
pub use rect::Rect;
pub use seed::{SampleRng, SampleSeed};

/// Why an augmentation could not run. Bad inputs are values, never panics.
#[derive(Debug, thiserror::Error)]
pub enum AugmentError {
    /// The configuration holds an out-of-range value.
    #[error("invalid augmentation config: {0}")]
    Config(String),
    /// An image or output size is zero.
    #[error("empty image or output: full {full:?}, out {out:?}, src {src:?}")]
    Empty {
        full: (u32, u32),
        out: (u32, u32),
        src: (u32, u32),
    },
    /// The source buffer does not match its declared size.
    #[error("source buffer holds {got} bytes, but a {width}x{height} RGB8 image needs {want}")]
    SourceSize {
        width: u32,
        height: u32,
        got: usize,
        want: usize,
    },
    /// The destination slot does not match the output size.
    #[error("destination slot holds {got} bytes, but a {out:?} RGB8 output needs {want}")]
    DestSize {
        out: (u32, u32),
        got: usize,
        want: usize,
    },
    /// The source rectangle is empty or lies outside the full image.
    #[error("source rectangle {rect:?} is empty or lies outside the {full:?} image")]
    RectOutside { rect: Rect, full: (u32, u32) },
    /// The source pixels are larger than the rectangle they stand for.
    #[error("source pixels {src:?} are larger than their rectangle {rect:?} (only downscaled regions are supported)")]
    Upscaled { rect: Rect, src: (u32, u32) },
    /// The source rectangle misses part of what this sample reads.
    #[error("source rectangle {given:?} does not cover the region {needed:?} this sample reads (use Pipeline::source_region)")]
    RegionNotCovered { given: Rect, needed: Rect },
    /// A TTA variant index past the end of the list.
    #[error("TTA variant {k} does not exist ({n} variants)")]
    NoSuchVariant { k: usize, n: usize },
}
