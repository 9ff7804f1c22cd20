//! Training recipes: a TOML file, `key=value` overrides, and validation.
//!
//! Every table is `#[serde(deny_unknown_fields)]`, so a misspelt key is an
//! error that names the key with its full dotted path (`train.batch_sise`);
//! [`Config::validate`] then checks every range and names the bad key too.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What went wrong reading or checking a recipe.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read recipe {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("recipe {origin}: TOML syntax error: {message}")]
    Syntax { origin: String, message: String },
    #[error("recipe {origin}: bad key `{key}`: {message}")]
    Key {
        origin: String,
        key: String,
        message: String,
    },
    #[error("override `{text}`: {message}")]
    Override { text: String, message: String },
    #[error("recipe: `{key}` {message}")]
    Invalid { key: String, message: String },
}

/// Which device to train on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    Cpu,
    Cuda,
    #[default]
    Auto,
}

impl std::str::FromStr for DeviceChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda),
            "auto" => Ok(Self::Auto),
            other => Err(format!("unknown device `{other}` (cpu, cuda or auto)")),
        }
    }
}

/// Test-time augmentation: which views are averaged (softmax mean).
/// In a recipe: `tta = false | true | "none" | "flip" | "five-crop" | "ten-crop"`
/// (`true` is `"flip"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TtaMode {
    /// The centre crop only.
    #[default]
    None,
    /// Centre crop, plain and mirrored.
    Flip,
    /// Centre and four corner crops.
    FiveCrop,
    /// The five crops, plain and mirrored.
    TenCrop,
}

impl TtaMode {
    /// Every mode, in order.
    pub const ALL: [TtaMode; 4] = [Self::None, Self::Flip, Self::FiveCrop, Self::TenCrop];

    /// The name used in recipes, flags and reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Flip => "flip",
            Self::FiveCrop => "five-crop",
            Self::TenCrop => "ten-crop",
        }
    }

    /// The augment crate's views for this mode (the first is the plain centre crop).
    pub fn variants(self) -> Vec<brigade_augment::TtaVariant> {
        use brigade_augment::{CropPos, TtaVariant};
        let crops = [
            CropPos::Center,
            CropPos::TopLeft,
            CropPos::TopRight,
            CropPos::BottomLeft,
            CropPos::BottomRight,
        ];
        let flips: &[bool] = match self {
            Self::None | Self::FiveCrop => &[false],
            Self::Flip | Self::TenCrop => &[false, true],
        };
        let positions: &[CropPos] = match self {
            Self::None | Self::Flip => &crops[..1],
            Self::FiveCrop | Self::TenCrop => &crops,
        };
        flips
            .iter()
            .flat_map(|&flip| positions.iter().map(move |&pos| TtaVariant { pos, flip }))
            .collect()
    }
}

impl std::fmt::Display for TtaMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for TtaMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" | "false" | "off" => Ok(Self::None),
            "flip" | "true" => Ok(Self::Flip),
            "five-crop" => Ok(Self::FiveCrop),
            "ten-crop" => Ok(Self::TenCrop),
            other => Err(format!(
                "unknown TTA mode `{other}` (none, flip, five-crop or ten-crop; true means flip)"
            )),
        }
    }
}

impl Serialize for TtaMode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for TtaMode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            Name(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bool(true) => Ok(Self::Flip),
            Raw::Bool(false) => Ok(Self::None),
            Raw::Name(n) => n.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// `[run]`: naming, seeding and the device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// Run folder name under `out_dir`.
    pub name: String,
    /// Parent folder of run folders.
    pub out_dir: PathBuf,
    pub seed: u64,
    pub device: DeviceChoice,
    /// Same seed → same loss curve (CPU): fixed torch threads, deterministic algorithms.
    pub deterministic: bool,
    /// Torch intra-op threads (0 = libtorch's default).
    pub threads: u32,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            name: "run".into(),
            out_dir: "runs".into(),
            seed: 42,
            device: DeviceChoice::Auto,
            deterministic: false,
            threads: 0,
        }
    }
}

/// Where the dataset comes from when it is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataSource {
    /// `data.path` must exist.
    Local,
    /// Download Food-101 into `data.path` when missing.
    Food101,
    /// Generate a synthetic dataset (`[data.synth]`) into `data.path` when missing.
    Synth,
}

/// How the trainer reads the dataset (`data.loader`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LoaderChoice {
    /// Packed store (`[data.pack]`, cached) → augment → prefetching loader.
    Store,
    /// Every split decoded once into memory (small datasets, tests).
    Memory,
}

/// `[data.synth]`: the generated dataset (source = "synth").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SynthSection {
    pub classes: u32,
    pub per_class: u32,
    pub test_per_class: u32,
    pub max_side: u32,
    pub seed: u64,
}

impl Default for SynthSection {
    fn default() -> Self {
        Self {
            classes: 10,
            per_class: 100,
            test_per_class: 30,
            max_side: 160,
            seed: 7,
        }
    }
}

/// Pixel format of the packed store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PackFormat {
    Raw,
    Jpeg,
}

/// `[data.pack]`: the store built once and reused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PackSection {
    /// Longer side after packing.
    pub max_side: u32,
    pub format: PackFormat,
    /// JPEG quality (format = "jpeg").
    pub quality: u8,
    /// Folder for cached indexes and stores (default `<data.path>/.brigade`).
    pub cache_dir: Option<PathBuf>,
}

impl Default for PackSection {
    fn default() -> Self {
        Self {
            max_side: 288,
            format: PackFormat::Raw,
            quality: 90,
            cache_dir: None,
        }
    }
}

/// `[data]`: the dataset, its splits and loading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    pub path: PathBuf,
    pub source: DataSource,
    /// Archive to extract instead of downloading (source = "food101").
    pub archive: Option<PathBuf>,
    /// Download URL override (source = "food101"; tests use a loopback server).
    pub url: Option<String>,
    /// Validation hold-out taken from the training split (stratified).
    pub valid_pct: f64,
    /// Fraction of each split kept (stratified), like the notebook's 25 % sample.
    pub sample_frac: f64,
    /// Loader worker threads.
    pub workers: u32,
    /// `"store"` (default) or `"memory"`.
    pub loader: LoaderChoice,
    pub synth: SynthSection,
    pub pack: PackSection,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            path: "data".into(),
            source: DataSource::Local,
            archive: None,
            url: None,
            valid_pct: 0.1,
            sample_frac: 1.0,
            workers: 2,
            loader: LoaderChoice::Store,
            synth: SynthSection::default(),
            pack: PackSection::default(),
        }
    }
}

/// Classifier head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeadChoice {
    /// One linear layer after global average pooling (torchvision).
    Linear,
    /// fastai `cnn_learner` head: concat pool, BN, dropout, 512 hidden.
    Fastai,
}

/// `[model]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// `tiny_cnn` (built in) or a zoo name (`resnet18`, `resnet50`, ...).
    pub arch: String,
    /// Pretrained weights: a known name, a file path, or none.
    pub pretrained: Option<String>,
    pub head: HeadChoice,
    /// Base width of `tiny_cnn`.
    pub width: u32,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            arch: "tiny_cnn".into(),
            pretrained: None,
            head: HeadChoice::Linear,
            width: 32,
        }
    }
}

/// Train-time augmentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AugmentChoice {
    /// Resize + centre crop only.
    None,
    /// RandomResizedCrop + horizontal flip (torchvision's ImageNet recipe).
    RrcFlip,
    /// fastai v1 `get_transforms()` (flip, rotate, zoom, warp, lighting).
    Fastai,
    /// RandomResizedCrop + flip + TrivialAugmentWide.
    Trivial,
}

/// Metric direction for the best checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MonitorMode {
    Max,
    Min,
}

/// bf16 autocast / channels-last switches: `auto` = on for CUDA, off on CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Toggle {
    On,
    Off,
    Auto,
}

impl Toggle {
    /// Resolves `auto` for a device.
    pub fn resolve(self, cuda: bool) -> bool {
        match self {
            Toggle::On => true,
            Toggle::Off => false,
            Toggle::Auto => cuda,
        }
    }
}

/// `[train]`: settings shared by every stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub batch_size: u32,
    pub label_smoothing: f64,
    /// Mixup Beta(alpha, alpha); 0 = off.
    pub mixup: f64,
    /// CutMix Beta(alpha, alpha); 0 = off.
    pub cutmix: f64,
    /// EMA decay of the weights; 0 = off.
    pub ema: f64,
    /// Global gradient-norm clip; 0 = off.
    pub clip_grad_norm: f64,
    pub augment: AugmentChoice,
    pub bf16: Toggle,
    pub channels_last: Toggle,
    pub cudnn_benchmark: bool,
    /// Checkpoint every N batches as well as at each epoch end (0 = epochs only).
    pub checkpoint_every: u32,
    /// Metric of the best checkpoint (`valid_top1`, `valid_loss`, ...).
    pub monitor: String,
    pub monitor_mode: MonitorMode,
    /// Stop the run after this many optimizer steps (0 = never; for tests).
    pub stop_after_steps: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            batch_size: 64,
            label_smoothing: 0.0,
            mixup: 0.0,
            cutmix: 0.0,
            ema: 0.0,
            clip_grad_norm: 0.0,
            augment: AugmentChoice::RrcFlip,
            bf16: Toggle::Auto,
            channels_last: Toggle::Auto,
            cudnn_benchmark: true,
            checkpoint_every: 0,
            monitor: "valid_top1".into(),
            monitor_mode: MonitorMode::Max,
            stop_after_steps: 0,
        }
    }
}

/// Optimizer of a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerChoice {
    Sgd,
    Adamw,
    Ranger,
}

/// Learning-rate schedule of a stage (per batch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleChoice {
    /// fastai `fit_one_cycle`.
    OneCycle,
    /// fastai `fit_flat_cos`.
    FlatCos,
    /// Constant learning rate.
    Constant,
}

/// One `[[stage]]`: a number of epochs at one size with one optimizer setup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StageConfig {
    pub name: String,
    pub epochs: u32,
    /// Training image side (progressive resizing: grow it stage by stage).
    pub size: u32,
    /// Train the head only (body frozen, BatchNorm still trainable, as fastai).
    pub freeze: bool,
    pub optimizer: OptimizerChoice,
    /// Peak learning rate (of the last layer group).
    pub lr: f64,
    /// Discriminative LRs: lowest group's LR (geometric `lr_slice(lr_lo, lr)`); 0 = same LR everywhere.
    pub lr_lo: f64,
    pub schedule: ScheduleChoice,
    /// Warm-up fraction (one-cycle) or flat fraction (flat-cos).
    pub pct_start: f64,
    pub weight_decay: f64,
    /// SGD momentum / Adam beta1 (max of the cycle).
    pub momentum: f64,
    /// Batch size override for this stage (0 = `train.batch_size`).
    pub batch_size: u32,
}

impl Default for StageConfig {
    fn default() -> Self {
        Self {
            name: "stage".into(),
            epochs: 1,
            size: 64,
            freeze: false,
            optimizer: OptimizerChoice::Adamw,
            lr: 1e-3,
            lr_lo: 0.0,
            schedule: ScheduleChoice::OneCycle,
            pct_start: 0.3,
            weight_decay: 1e-2,
            momentum: 0.95,
            batch_size: 0,
        }
    }
}

/// `[eval]`: test-time settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// Test crop side (0 = last stage size); test above the last training size (FixRes effect).
    pub size: u32,
    /// Resize shorter side to `size * resize_ratio` before the centre crop (256/224).
    pub resize_ratio: f64,
    /// Test-time augmentation: `false`/`"none"`, `true`/`"flip"`,
    /// `"five-crop"`, `"ten-crop"` (crops need `data.loader = "store"`).
    pub tta: TtaMode,
    pub batch_size: u32,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            size: 0,
            resize_ratio: 256.0 / 224.0,
            tta: TtaMode::None,
            batch_size: 64,
        }
    }
}

/// A whole recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub run: RunConfig,
    pub data: DataConfig,
    pub model: ModelConfig,
    pub train: TrainConfig,
    pub stage: Vec<StageConfig>,
    pub eval: EvalConfig,
}

/// Monitors the best checkpoint may use.
pub const MONITORS: &[&str] = &["valid_top1", "valid_top5", "valid_loss", "train_loss"];

impl Config {
    /// Reads a recipe file, applies `key=value` overrides, validates.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_str(&text, &path.display().to_string(), overrides)
    }

    /// Parses recipe text (`origin` names it in errors), applies overrides, validates.
    pub fn from_toml_str(
        text: &str,
        origin: &str,
        overrides: &[String],
    ) -> Result<Config, ConfigError> {
        let mut value: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    origin: origin.to_string(),
                    message: e.to_string(),
                })?;
        for o in overrides {
            apply_override(&mut value, o)?;
        }
        let cfg: Config = serde_path_to_error::deserialize(toml::Value::Table(value)).map_err(
            |e: serde_path_to_error::Error<toml::de::Error>| ConfigError::Key {
                origin: origin.to_string(),
                key: e.path().to_string(),
                message: e.inner().message().to_string(),
            },
        )?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The recipe as TOML (written into every run folder).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot serialise: {e}\n"))
    }

    /// Range and consistency checks; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, message: String| {
            Err(ConfigError::Invalid {
                key: key.to_string(),
                message,
            })
        };
        if self.run.name.is_empty() || self.run.name.contains(['/', '\\']) {
            return bad(
                "run.name",
                format!("must be a plain folder name, got {:?}", self.run.name),
            );
        }
        if self.run.threads > 1024 {
            return bad(
                "run.threads",
                format!("must be ≤ 1024, got {}", self.run.threads),
            );
        }
        let d = &self.data;
        if !(0.0..1.0).contains(&d.valid_pct) {
            return bad(
                "data.valid_pct",
                format!("must be in [0, 1), got {}", d.valid_pct),
            );
        }
        if !(d.sample_frac > 0.0 && d.sample_frac <= 1.0) {
            return bad(
                "data.sample_frac",
                format!("must be in (0, 1], got {}", d.sample_frac),
            );
        }
        if d.workers == 0 || d.workers > 256 {
            return bad(
                "data.workers",
                format!("must be in 1..=256, got {}", d.workers),
            );
        }
        if !(16..=4096).contains(&d.pack.max_side) {
            return bad(
                "data.pack.max_side",
                format!("must be in 16..=4096, got {}", d.pack.max_side),
            );
        }
        if !(1..=100).contains(&d.pack.quality) {
            return bad(
                "data.pack.quality",
                format!("must be in 1..=100, got {}", d.pack.quality),
            );
        }
        if d.source == DataSource::Synth {
            let s = &d.synth;
            if !(2..=1000).contains(&s.classes) {
                return bad(
                    "data.synth.classes",
                    format!("must be in 2..=1000, got {}", s.classes),
                );
            }
            if s.per_class == 0 || s.test_per_class == 0 {
                return bad(
                    "data.synth.per_class",
                    "and test_per_class must be ≥ 1".into(),
                );
            }
            if !(32..=2048).contains(&s.max_side) {
                return bad(
                    "data.synth.max_side",
                    format!("must be in 32..=2048, got {}", s.max_side),
                );
            }
        }
        if self.model.arch.trim().is_empty() {
            return bad("model.arch", "must name an architecture".into());
        }
        if !(4..=512).contains(&self.model.width) {
            return bad(
                "model.width",
                format!("must be in 4..=512, got {}", self.model.width),
            );
        }
        let t = &self.train;
        if t.batch_size == 0 || t.batch_size > 65536 {
            return bad(
                "train.batch_size",
                format!("must be in 1..=65536, got {}", t.batch_size),
            );
        }
        if !(0.0..1.0).contains(&t.label_smoothing) {
            return bad(
                "train.label_smoothing",
                format!("must be in [0, 1), got {}", t.label_smoothing),
            );
        }
        for (key, v) in [("train.mixup", t.mixup), ("train.cutmix", t.cutmix)] {
            if !(0.0..=10.0).contains(&v) {
                return bad(key, format!("(Beta alpha) must be in [0, 10], got {v}"));
            }
        }
        if !(0.0..1.0).contains(&t.ema) {
            return bad(
                "train.ema",
                format!("(decay) must be in [0, 1), got {}", t.ema),
            );
        }
        if !(t.clip_grad_norm >= 0.0 && t.clip_grad_norm.is_finite()) {
            return bad(
                "train.clip_grad_norm",
                format!("must be ≥ 0, got {}", t.clip_grad_norm),
            );
        }
        if !MONITORS.contains(&t.monitor.as_str()) {
            return bad(
                "train.monitor",
                format!("must be one of {MONITORS:?}, got {:?}", t.monitor),
            );
        }
        if self.stage.is_empty() {
            return bad("stage", "at least one [[stage]] is needed".into());
        }
        for (i, s) in self.stage.iter().enumerate() {
            let k = |f: &str| format!("stage.{i}.{f}");
            if s.epochs == 0 || s.epochs > 10_000 {
                return bad(
                    &k("epochs"),
                    format!("must be in 1..=10000, got {}", s.epochs),
                );
            }
            if !(8..=2048).contains(&s.size) {
                return bad(&k("size"), format!("must be in 8..=2048, got {}", s.size));
            }
            if !(s.lr > 0.0 && s.lr <= 10.0) {
                return bad(&k("lr"), format!("must be in (0, 10], got {}", s.lr));
            }
            if !(s.lr_lo >= 0.0 && s.lr_lo <= s.lr) {
                return bad(
                    &k("lr_lo"),
                    format!("must be in [0, lr = {}], got {}", s.lr, s.lr_lo),
                );
            }
            if !(0.0..1.0).contains(&s.pct_start) {
                return bad(
                    &k("pct_start"),
                    format!("must be in [0, 1), got {}", s.pct_start),
                );
            }
            if !(0.0..=1.0).contains(&s.weight_decay) {
                return bad(
                    &k("weight_decay"),
                    format!("must be in [0, 1], got {}", s.weight_decay),
                );
            }
            if !(0.0..1.0).contains(&s.momentum) {
                return bad(
                    &k("momentum"),
                    format!("must be in [0, 1), got {}", s.momentum),
                );
            }
            if s.batch_size > 65536 {
                return bad(
                    &k("batch_size"),
                    format!("must be ≤ 65536, got {}", s.batch_size),
                );
            }
        }
        let e = &self.eval;
        if e.size != 0 && !(8..=2048).contains(&e.size) {
            return bad(
                "eval.size",
                format!("must be 0 or in 8..=2048, got {}", e.size),
            );
        }
        if !(1.0..=2.0).contains(&e.resize_ratio) {
            return bad(
                "eval.resize_ratio",
                format!("must be in [1, 2], got {}", e.resize_ratio),
            );
        }
        if e.batch_size == 0 || e.batch_size > 65536 {
            return bad(
                "eval.batch_size",
                format!("must be in 1..=65536, got {}", e.batch_size),
            );
        }
        Ok(())
    }

    /// The run folder: `run.out_dir/run.name`.
    pub fn run_dir(&self) -> PathBuf {
        self.run.out_dir.join(&self.run.name)
    }

    /// Test crop side: `eval.size`, or the last stage's size.
    pub fn eval_size(&self) -> u32 {
        if self.eval.size != 0 {
            self.eval.size
        } else {
            self.stage.last().map_or(224, |s| s.size)
        }
    }

    /// Batch size of stage `i`.
    pub fn stage_batch_size(&self, i: usize) -> u32 {
        match self.stage.get(i) {
            Some(s) if s.batch_size > 0 => s.batch_size,
            _ => self.train.batch_size,
        }
    }

    /// Total epochs over all stages.
    pub fn total_epochs(&self) -> u32 {
        self.stage.iter().map(|s| s.epochs).sum()
    }

    /// Maps a global epoch to `(stage index, epoch within the stage)`.
    pub fn stage_of_epoch(&self, epoch: u32) -> Option<(usize, u32)> {
        let mut start = 0;
        for (i, s) in self.stage.iter().enumerate() {
            if epoch < start + s.epochs {
                return Some((i, epoch - start));
            }
            start += s.epochs;
        }
        None
    }
}

/// Applies one `a.b.c=value` override to a TOML table. `value` is parsed as a
/// TOML value (number, bool, string, array); anything that does not parse is
/// taken as a bare string. Numeric path parts index arrays (`stage.1.lr=1e-3`).
pub fn apply_override(root: &mut toml::Table, text: &str) -> Result<(), ConfigError> {
    let err = |message: String| ConfigError::Override {
        text: text.to_string(),
        message,
    };
    let (key, raw) = text
        .split_once('=')
        .ok_or_else(|| err("expected key=value".into()))?;
    let key = key.trim();
    let raw = raw.trim();
    if key.is_empty() {
        return Err(err("empty key".into()));
    }
    let value = parse_value(raw);
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(err(format!("empty component in key `{key}`")));
    }
    let mut whole = toml::Value::Table(std::mem::take(root));
    let result = set_path(&mut whole, &parts, value, &err);
    if let toml::Value::Table(t) = whole {
        *root = t;
    }
    result
}

fn set_path(
    whole: &mut toml::Value,
    parts: &[&str],
    value: toml::Value,
    err: &dyn Fn(String) -> ConfigError,
) -> Result<(), ConfigError> {
    let mut cur = whole;
    for (depth, part) in parts.iter().enumerate() {
        let last = depth + 1 == parts.len();
        let here = parts[..=depth].join(".");
        cur = match cur {
            toml::Value::Table(t) => {
                if last {
                    t.insert(part.to_string(), value);
                    return Ok(());
                }
                t.entry(part.to_string())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            }
            toml::Value::Array(a) => {
                let idx: usize = part
                    .parse()
                    .map_err(|_| err(format!("`{here}`: expected an array index")))?;
                let len = a.len();
                let slot = a.get_mut(idx).ok_or_else(|| {
                    err(format!(
                        "`{here}`: index {idx} out of range (the array has {len} entries)"
                    ))
                })?;
                if last {
                    *slot = value;
                    return Ok(());
                }
                slot
            }
            _ => {
                return Err(err(format!(
                    "`{}` is a value, not a table",
                    parts[..depth].join(".")
                )))
            }
        };
    }
    Ok(())
}

fn parse_value(raw: &str) -> toml::Value {
    let doc = format!("v = {raw}");
    match doc.parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.to_string())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[run]
name = "x"
[train]
batch_size = 32
[[stage]]
epochs = 2
size = 64
[[stage]]
epochs = 1
size = 96
lr = 1e-4
"#;

    fn load(text: &str, o: &[&str]) -> Result<Config, ConfigError> {
        let o: Vec<String> = o.iter().map(|s| s.to_string()).collect();
        Config::from_toml_str(text, "r.toml", &o)
    }

    #[test]
    fn parses_with_defaults_and_overrides() {
        let c = load(
            BASE,
            &[
                "train.batch_size=16",
                "stage.1.lr=2e-4",
                "run.device=\"cpu\"",
                "model.arch=resnet18",
            ],
        )
        .unwrap();
        assert_eq!(c.train.batch_size, 16);
        assert_eq!(c.stage[1].lr, 2e-4);
        assert_eq!(c.stage[0].lr, StageConfig::default().lr);
        assert_eq!(c.run.device, DeviceChoice::Cpu);
        assert_eq!(c.model.arch, "resnet18", "bare word taken as a string");
        assert_eq!(c.total_epochs(), 3);
        assert_eq!(c.stage_of_epoch(2), Some((1, 0)));
        assert_eq!(c.stage_of_epoch(3), None);
        assert_eq!(c.eval_size(), 96);
        // the TOML written into a run folder reads back to the same config
        let again = load(&c.to_toml(), &[]).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn unknown_keys_are_named_with_their_path() {
        let e = load(&BASE.replace("batch_size = 32", "batch_sise = 32"), &[]).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("train.batch_sise"), "{msg}");
        let e = load(BASE, &["data.pack.maxside=3"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("data.pack.maxside"), "{e}");
        let e = load(BASE, &["stage.1.lrr=3"]).unwrap_err().to_string();
        assert!(
            e.contains("stage[1].lrr") || e.contains("stage.1.lrr"),
            "{e}"
        );
        let e = load(BASE, &["bogus.x=1"]).unwrap_err().to_string();
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        for (o, key) in [
            ("train.batch_size=0", "train.batch_size"),
            ("stage.0.lr=-1", "stage.0.lr"),
            ("stage.1.size=4", "stage.1.size"),
            ("data.valid_pct=1.5", "data.valid_pct"),
            ("train.monitor=\"acc\"", "train.monitor"),
            ("train.ema=1.0", "train.ema"),
            ("eval.resize_ratio=0.5", "eval.resize_ratio"),
        ] {
            let e = load(BASE, &[o]).unwrap_err().to_string();
            assert!(e.contains(key), "{o}: {e}");
        }
        // wrong type
        let e = load(BASE, &["train.batch_size=\"big\""])
            .unwrap_err()
            .to_string();
        assert!(e.contains("train.batch_size"), "{e}");
        // an unknown enum value
        let e = load(BASE, &["stage.0.optimizer=adam"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("stage[0].optimizer") || e.contains("stage.0.optimizer"),
            "{e}"
        );
    }

    #[test]
    fn malformed_overrides_and_syntax() {
        assert!(matches!(
            load(BASE, &["novalue"]),
            Err(ConfigError::Override { .. })
        ));
        assert!(matches!(
            load(BASE, &["stage.9.lr=1"]),
            Err(ConfigError::Override { .. })
        ));
        assert!(matches!(
            load(BASE, &["run.name.x=1"]),
            Err(ConfigError::Override { .. })
        ));
        assert!(matches!(
            load("[run\n", &[]),
            Err(ConfigError::Syntax { .. })
        ));
        assert!(
            matches!(load("[run]\n", &[]), Err(ConfigError::Invalid { .. })),
            "no stage"
        );
    }
}
