//! Serde-deserialisable pipeline configuration (every key validated).

use serde::{Deserialize, Serialize};

use crate::AugmentError;

/// A pipeline description, as the trainer's TOML holds it:
///
/// ```toml
/// kind = "train"
/// [geometry]
/// kind = "random_resized_crop"
/// scale = [0.35, 1.0]
/// [trivial_augment]
/// num_bins = 31
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum PipelineConfig {
    /// Random augmentations for training.
    Train(TrainConfig),
    /// Deterministic resize + crop (and TTA variants) for evaluation.
    Eval(EvalConfig),
}

/// Training augmentations, applied in this order: geometry (one resampling
/// pass, flip folded in), TrivialAugmentWide, colour jitter, fastai lighting
/// (part of the fastai geometry), random erasing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Crop / warp stage.
    pub geometry: Geometry,
    /// TrivialAugmentWide (torchvision), off when absent.
    pub trivial_augment: Option<TrivialAugmentConfig>,
    /// Colour jitter (torchvision `ColorJitter`), off when absent.
    pub color_jitter: Option<ColorJitterConfig>,
    /// Random erasing (torchvision `RandomErasing`), off when absent.
    pub random_erasing: Option<RandomErasingConfig>,
}

/// The geometric stage of a training pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Geometry {
    /// torchvision `RandomResizedCrop` + `RandomHorizontalFlip`.
    RandomResizedCrop(RrcConfig),
    /// fastai v1 `get_transforms()` (flip, warp, rotate, zoom, lighting,
    /// random crop) in one resampling pass with reflection padding.
    Fastai(FastaiConfig),
}

impl Default for Geometry {
    fn default() -> Self {
        Geometry::RandomResizedCrop(RrcConfig::default())
    }
}

/// `RandomResizedCrop(scale, ratio)` followed by a horizontal flip.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RrcConfig {
    /// Area fraction range, default `(0.08, 1.0)`.
    pub scale: (f64, f64),
    /// Aspect ratio range (log-uniform), default `(3/4, 4/3)`.
    pub ratio: (f64, f64),
    /// Probability of a horizontal flip, default 0.5.
    pub hflip: f64,
}

impl Default for RrcConfig {
    fn default() -> Self {
        Self {
            scale: (0.08, 1.0),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
            hflip: 0.5,
        }
    }
}

/// fastai v1 `get_transforms()` arguments (its defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FastaiConfig {
    /// `flip_lr(p=0.5)`.
    pub do_flip: bool,
    /// `rotate(degrees=(-max_rotate, max_rotate))`.
    pub max_rotate: f64,
    /// `rand_zoom(scale=(1, max_zoom))`.
    pub max_zoom: f64,
    /// `brightness` / `contrast` strength.
    pub max_lighting: f64,
    /// `symmetric_warp(magnitude=(-max_warp, max_warp))`.
    pub max_warp: f64,
    /// Probability of each of warp, rotate, zoom.
    pub p_affine: f64,
    /// Probability of each of brightness, contrast.
    pub p_lighting: f64,
}

impl Default for FastaiConfig {
    fn default() -> Self {
        Self {
            do_flip: true,
            max_rotate: 10.0,
            max_zoom: 1.1,
            max_lighting: 0.2,
            max_warp: 0.2,
            p_affine: 0.75,
            p_lighting: 0.75,
        }
    }
}

/// torchvision `TrivialAugmentWide(num_magnitude_bins)`, fill 0, nearest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrivialAugmentConfig {
    /// Magnitude bins, default 31.
    pub num_bins: u32,
}

impl Default for TrivialAugmentConfig {
    fn default() -> Self {
        Self { num_bins: 31 }
    }
}

/// torchvision `ColorJitter`: factors drawn uniformly from `[max(0, 1 - x), 1
/// + x]` (hue from `[-hue, hue]`), ops applied in a random order; the whole
/// jitter applied with probability `p`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ColorJitterConfig {
    /// Brightness strength.
    pub brightness: f64,
    /// Contrast strength.
    pub contrast: f64,
    /// Saturation strength.
    pub saturation: f64,
    /// Hue strength, at most 0.5.
    pub hue: f64,
    /// Probability of applying the jitter, default 1.
    pub p: f64,
}

impl Default for ColorJitterConfig {
    fn default() -> Self {
        Self {
            brightness: 0.4,
            contrast: 0.4,
            saturation: 0.4,
            hue: 0.0,
            p: 1.0,
        }
    }
}

/// What random erasing writes into the erased rectangle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EraseValue {
    /// Per-pixel uniform random bytes (torchvision `value="random"`).
    Random,
    /// Zero after ImageNet normalisation: the mean colour `[124, 116, 104]`,
    /// what torchvision's `value=0` means when erasing follows `Normalize`.
    Zero,
    /// A literal black `[0, 0, 0]`.
    Black,
}

/// torchvision `RandomErasing(p, scale, ratio, value)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RandomErasingConfig {
    /// Probability, default 0.5.
    pub p: f64,
    /// Erased area fraction range, default `(0.02, 0.33)`.
    pub scale: (f64, f64),
    /// Aspect ratio range (log-uniform), default `(0.3, 3.3)`.
    pub ratio: (f64, f64),
    /// Fill, default [`EraseValue::Zero`].
    pub value: EraseValue,
}

impl Default for RandomErasingConfig {
    fn default() -> Self {
        Self {
            p: 0.5,
            scale: (0.02, 0.33),
            ratio: (0.3, 3.3),
            value: EraseValue::Zero,
        }
    }
}

/// Where a TTA / eval crop sits in the resized image (torchvision `FiveCrop`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CropPos {
    /// `CenterCrop`.
    #[default]
    Center,
    /// Top-left corner.
    TopLeft,
    /// Top-right corner.
    TopRight,
    /// Bottom-left corner.
    BottomLeft,
    /// Bottom-right corner.
    BottomRight,
}

/// One test-time-augmentation view: a crop position and an optional flip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct TtaVariant {
    /// Crop position.
    pub pos: CropPos,
    /// Horizontal flip.
    pub flip: bool,
}

impl TtaVariant {
    /// The plain eval view (centre crop, no flip).
    pub const IDENTITY: TtaVariant = TtaVariant {
        pos: CropPos::Center,
        flip: false,
    };
}

/// Evaluation: resize the shorter side to `round(max(out) * resize_ratio)`,
/// then crop `out` (centre for [`crate::Pipeline::apply`]; any listed variant
/// for [`crate::Pipeline::apply_tta`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalConfig {
    /// Resize-to-crop ratio, default `8/7` (256 -> 224).
    pub resize_ratio: f64,
    /// TTA views; default identity and centre flip.
    pub tta: Vec<TtaVariant>,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            resize_ratio: 8.0 / 7.0,
            tta: vec![
                TtaVariant::IDENTITY,
                TtaVariant {
                    pos: CropPos::Center,
                    flip: true,
                },
            ],
        }
    }
}

impl EvalConfig {
    /// Ten-crop TTA: the five crops, plain and flipped.
    pub fn ten_crop() -> Self {
        let mut tta = Vec::with_capacity(10);
        for flip in [false, true] {
            for pos in [
                CropPos::Center,
                CropPos::TopLeft,
                CropPos::TopRight,
                CropPos::BottomLeft,
                CropPos::BottomRight,
            ] {
                tta.push(TtaVariant { pos, flip });
            }
        }
        Self {
            tta,
            ..Self::default()
        }
    }
}

fn bad(msg: String) -> AugmentError {
    AugmentError::Config(msg)
}

fn check_prob(name: &str, p: f64) -> Result<(), AugmentError> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(bad(format!("{name} = {p} must be a probability in [0, 1]")))
    }
}

fn check_range(name: &str, r: (f64, f64), lo: f64, hi: f64) -> Result<(), AugmentError> {
    if r.0.is_finite() && r.1.is_finite() && lo <= r.0 && r.0 <= r.1 && r.1 <= hi {
        Ok(())
    } else {
        Err(bad(format!(
            "{name} = [{}, {}] must be an increasing range within [{lo}, {hi}]",
            r.0, r.1
        )))
    }
}

fn check_nonneg(name: &str, x: f64, hi: f64) -> Result<(), AugmentError> {
    if x.is_finite() && (0.0..=hi).contains(&x) {
        Ok(())
    } else {
        Err(bad(format!("{name} = {x} must lie in [0, {hi}]")))
    }
}

impl PipelineConfig {
    /// Checks every value (ranges, probabilities); serde already rejected
    /// unknown keys.
    pub fn validate(&self) -> Result<(), AugmentError> {
        match self {
            PipelineConfig::Train(t) => {
                match &t.geometry {
                    Geometry::RandomResizedCrop(r) => {
                        check_range("geometry.scale", r.scale, f64::MIN_POSITIVE, 1.0)?;
                        check_range("geometry.ratio", r.ratio, f64::MIN_POSITIVE, f64::MAX)?;
                        check_prob("geometry.hflip", r.hflip)?;
                    }
                    Geometry::Fastai(f) => {
                        check_nonneg("geometry.max_rotate", f.max_rotate, 180.0)?;
                        if !(f.max_zoom.is_finite() && (1.0..=10.0).contains(&f.max_zoom)) {
                            return Err(bad(format!(
                                "geometry.max_zoom = {} must lie in [1, 10]",
                                f.max_zoom
                            )));
                        }
                        check_nonneg("geometry.max_lighting", f.max_lighting, 0.99)?;
                        check_nonneg("geometry.max_warp", f.max_warp, 0.5)?;
                        check_prob("geometry.p_affine", f.p_affine)?;
                        check_prob("geometry.p_lighting", f.p_lighting)?;
                    }
                }
                if let Some(ta) = &t.trivial_augment {
                    if !(2..=1024).contains(&ta.num_bins) {
                        return Err(bad(format!(
                            "trivial_augment.num_bins = {} must lie in [2, 1024]",
                            ta.num_bins
                        )));
                    }
                }
                if let Some(cj) = &t.color_jitter {
                    check_nonneg("color_jitter.brightness", cj.brightness, 1e6)?;
                    check_nonneg("color_jitter.contrast", cj.contrast, 1e6)?;
                    check_nonneg("color_jitter.saturation", cj.saturation, 1e6)?;
                    check_nonneg("color_jitter.hue", cj.hue, 0.5)?;
                    check_prob("color_jitter.p", cj.p)?;
                }
                if let Some(re) = &t.random_erasing {
                    check_prob("random_erasing.p", re.p)?;
                    check_range("random_erasing.scale", re.scale, f64::MIN_POSITIVE, 1.0)?;
                    check_range(
                        "random_erasing.ratio",
                        re.ratio,
                        f64::MIN_POSITIVE,
                        f64::MAX,
                    )?;
                }
                Ok(())
            }
            PipelineConfig::Eval(e) => {
                if !(e.resize_ratio.is_finite() && (1.0..=4.0).contains(&e.resize_ratio)) {
                    return Err(bad(format!(
                        "resize_ratio = {} must lie in [1, 4]",
                        e.resize_ratio
                    )));
                }
                if e.tta.is_empty() {
                    return Err(bad("tta must list at least one variant".into()));
                }
                Ok(())
            }
        }
    }
}
