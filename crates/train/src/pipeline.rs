//! From a recipe's `[data]` to the loop's [`DataSource`]s: make sure the
//! dataset exists (generate or download it when missing), index it, and load
//! its splits.
//!
//! By default (`data.loader = "store"`) the splits are read from the dataset
//! packed once into a cached store, through the augment pipeline and the
//! prefetching loader ([`LoaderData`]). `data.loader = "memory"` decodes every
//! image of a split once (rayon, the `image` crate), centre-crops its shorter
//! side and resizes it to a fixed side held in memory ([`MemoryData`]);
//! training augmentation is then a random crop + flip from that square. The
//! test evaluation ([`eval_views`]) streams the original files through the
//! loader, one source per TTA view.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use brigade_index::{Index, IndexOptions, Report, Split};
use rayon::prelude::*;
use tch::Device;

use crate::config::{Config, DataSource as Source, LoaderChoice, TtaMode};
use crate::data::{DataError, DataSource, MemoryData, IMAGENET_MEAN, IMAGENET_STD};
use crate::loaded::LoaderData;

/// Pipeline failures.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(
        "dataset folder {0} does not exist (data.source = \"local\"); set data.path or data.source"
    )]
    Missing(PathBuf),
    #[error(transparent)]
    Index(#[from] brigade_index::IndexError),
    #[error("{path}: cannot decode: {message}")]
    Decode { path: PathBuf, message: String },
    #[error("the {split} split of {root} is empty")]
    EmptySplit { split: &'static str, root: PathBuf },
    #[error("{0}")]
    Unavailable(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// An exclusive lock on the recipe's dataset (`.<name>.brigade-lock` beside
/// `data.path`), held while the dataset is made and packed; released on drop.
pub fn lock_dataset(cfg: &Config) -> Result<std::fs::File, PipelineError> {
    let path = &cfg.data.path;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".into());
    let io = |path: PathBuf| move |source| PipelineError::Io { path, source };
    std::fs::create_dir_all(&parent).map_err(io(parent.clone()))?;
    let lock_path = parent.join(format!(".{name}.brigade-lock"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io(lock_path.clone()))?;
    file.lock().map_err(io(lock_path))?;
    Ok(file)
}

/// Makes sure the dataset exists and returns its root.
pub fn ensure_dataset(cfg: &Config) -> Result<PathBuf, PipelineError> {
    let root = cfg.data.path.clone();
    match cfg.data.source {
        Source::Local => {
            if root.exists() {
                Ok(root)
            } else {
                Err(PipelineError::Missing(root))
            }
        }
        Source::Synth => {
            if root.join("meta").join("classes.txt").is_file() {
                Ok(root)
            } else {
                crate::datasets::generate_synth(cfg, &root)?;
                Ok(root)
            }
        }
        Source::Food101 => crate::datasets::fetch_food101(cfg, &root),
    }
}

/// Indexes the dataset with the recipe's split settings; prints a one-line
/// summary and every problem (problem files are excluded, never silently).
pub fn index_dataset(
    cfg: &Config,
    root: &Path,
    verbose: bool,
) -> Result<(Index, Report), PipelineError> {
    let opts = IndexOptions {
        valid_pct: cfg.data.valid_pct,
        seed: cfg.run.seed,
        sample_frac: cfg.data.sample_frac,
    };
    let (index, report) = Index::build(root, &opts)?;
    if verbose {
        println!(
            "dataset {}: {} layout, {} classes, train {} / valid {} / test {}, {} problem(s)",
            report.root.display(),
            report.layout.name(),
            index.classes.len(),
            index.split_ids(Split::Train).len(),
            index.split_ids(Split::Valid).len(),
            index.split_ids(Split::Test).len(),
            report.problems.len()
        );
        for p in &report.problems {
            eprintln!("  {p}");
        }
    }
    Ok((index, report))
}

/// Decodes an image file to upright RGB8 with the pixels crate (every format,
/// colour model and EXIF orientation the loader reads).
fn decode_file(path: &Path) -> Result<brigade_pixels::RgbImage, PipelineError> {
    let bytes = std::fs::read(path).map_err(|source| PipelineError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut img = brigade_pixels::RgbImage::new(0, 0);
    brigade_pixels::Decoder::new()
        .decode(&bytes, &mut img)
        .map_err(|e| PipelineError::Decode {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    Ok(img)
}

/// Decodes an image file to RGB8, centre-crops the shorter side and resizes to `side`².
pub fn decode_square(path: &Path, side: u32) -> Result<Vec<u8>, PipelineError> {
    let img = decode_file(path)?;
    let (w, h) = (img.width, img.height);
    let s = w.min(h);
    let rgb = image::RgbImage::from_raw(w, h, img.data).filter(|_| s > 0);
    let Some(rgb) = rgb else {
        return Err(PipelineError::Decode {
            path: path.to_path_buf(),
            message: format!("unusable decoded image of {w}x{h}"),
        });
    };
    let crop = image::imageops::crop_imm(&rgb, (w - s) / 2, (h - s) / 2, s, s).to_image();
    let out = image::imageops::resize(&crop, side, side, image::imageops::FilterType::Triangle);
    Ok(out.into_raw())
}

/// Decodes one image file (every format and orientation the pixels crate
/// reads, upright RGB8) and applies the eval preprocessing of the streamed
/// evaluation (`loaded::eval_pipeline`: torchvision's `Resize(round(size ·
/// ratio))` then `CenterCrop(size)`, sizes and offsets rounded as
/// torchvision does); returns `size² · 3` HWC bytes.
pub fn decode_eval(path: &Path, size: u32, ratio: f64) -> Result<Vec<u8>, PipelineError> {
    let decode_error = |message: String| PipelineError::Decode {
        path: path.to_path_buf(),
        message,
    };
    let img = decode_file(path)?;
    let pipeline = crate::loaded::eval_pipeline(ratio, TtaMode::None)
        .map_err(|e| decode_error(e.to_string()))?;
    let full = (img.width, img.height);
    let mut out = vec![0u8; size as usize * size as usize * 3];
    pipeline
        .apply(
            img.view(),
            brigade_augment::Rect::full(full),
            full,
            (size, size),
            brigade_augment::SampleSeed::default(),
            &mut brigade_augment::Scratch::new(),
            &mut out,
        )
        .map_err(|e| decode_error(e.to_string()))?;
    Ok(out)
}

/// The evaluation views of `split` ([`crate::loaded::tta_views`]): the
/// original files, eval preprocessing (shorter side to `size * ratio`, then
/// the crops of `tta`), streamed by `threads` loader workers.
pub fn eval_views(
    index: &Index,
    split: Split,
    ratio: f64,
    tta: TtaMode,
    threads: usize,
    device: Device,
) -> Result<Vec<Box<dyn DataSource>>, PipelineError> {
    if index.split_ids(split).is_empty() {
        return Err(PipelineError::EmptySplit {
            split: split.name(),
            root: index.root.clone(),
        });
    }
    let views = crate::loaded::tta_views(index, split, ratio, tta, threads, device)
        .map_err(|e| PipelineError::Unavailable(e.to_string()))?;
    Ok(views
        .into_iter()
        .map(|v| Box::new(v) as Box<dyn DataSource>)
        .collect())
}

/// Loads a split with eval preprocessing ([`decode_eval`]) at `size`².
pub fn load_split_eval(
    index: &Index,
    split: Split,
    size: u32,
    ratio: f64,
    device: Device,
) -> Result<MemoryData, PipelineError> {
    let ids = index.split_ids(split);
    if ids.is_empty() {
        return Err(PipelineError::EmptySplit {
            split: split.name(),
            root: index.root.clone(),
        });
    }
    let decoded: Vec<Result<Vec<u8>, PipelineError>> = ids
        .par_iter()
        .map(|&id| decode_eval(&index.abs_path(&index.samples[id as usize]), size, ratio))
        .collect();
    let mut pixels = Vec::with_capacity(ids.len() * (size * size * 3) as usize);
    for d in decoded {
        pixels.extend_from_slice(&d?);
    }
    Ok(MemoryData {
        side: size as usize,
        pixels,
        labels: ids
            .iter()
            .map(|&id| index.samples[id as usize].class)
            .collect(),
        train: false,
        seed: 0,
        device,
        mean: IMAGENET_MEAN,
        std: IMAGENET_STD,
        rank: 0,
        world: 1,
    })
}

/// Loads one split into memory at `side`² (train: random crop + flip at fetch time).
pub fn load_split(
    index: &Index,
    split: Split,
    side: u32,
    train: bool,
    seed: u64,
    device: Device,
) -> Result<MemoryData, PipelineError> {
    let ids = index.split_ids(split);
    if ids.is_empty() {
        return Err(PipelineError::EmptySplit {
            split: split.name(),
            root: index.root.clone(),
        });
    }
    let decoded: Vec<Result<(Vec<u8>, u32), PipelineError>> = ids
        .par_iter()
        .map(|&id| {
            let s = &index.samples[id as usize];
            decode_square(&index.abs_path(s), side).map(|px| (px, s.class))
        })
        .collect();
    let mut pixels = Vec::with_capacity(ids.len() * (side * side * 3) as usize);
    let mut labels = Vec::with_capacity(ids.len());
    for d in decoded {
        let (px, class) = d?;
        pixels.extend_from_slice(&px);
        labels.push(class);
    }
    Ok(MemoryData {
        side: side as usize,
        pixels,
        labels,
        train,
        seed,
        device,
        mean: IMAGENET_MEAN,
        std: IMAGENET_STD,
        rank: 0,
        world: 1,
    })
}

/// The train and valid sources of a recipe, with the class names.
pub struct Prepared {
    pub index: Index,
    pub classes: Vec<String>,
    pub train: Box<dyn DataSource>,
    pub valid: Box<dyn DataSource>,
}

/// Side held in memory for a training size: 8/7 of it (room for the random crop).
pub fn memory_side(size: u32) -> u32 {
    (size * 8).div_ceil(7)
}

/// Ensures, indexes and loads a recipe's dataset (`data.loader`: the packed
/// store through the loader, or memory). The valid split is the hold-out
/// (`data.valid_pct`) or, without one, the test split.
pub fn prepare(cfg: &Config, device: Device, verbose: bool) -> Result<Prepared, PipelineError> {
    // Data-parallel ranks (and concurrent runs) share the dataset folder and
    // the store cache: the first to take the lock generates / fetches / packs,
    // the others wait for it and then find everything ready.
    let _lock = lock_dataset(cfg)?;
    let root = ensure_dataset(cfg)?;
    let (index, _report) = index_dataset(cfg, &root, verbose)?;
    let max_size = cfg.stage.iter().map(|s| s.size).max().unwrap_or(64);
    let valid_split = if index.split_ids(Split::Valid).is_empty() {
        Split::Test
    } else {
        Split::Valid
    };
    let (train, valid): (Box<dyn DataSource>, Box<dyn DataSource>) = match cfg.data.loader {
        LoaderChoice::Memory => {
            let side = memory_side(max_size);
            let train = load_split(&index, Split::Train, side, true, cfg.run.seed, device)?;
            let valid =
                load_split_eval(&index, valid_split, max_size, cfg.eval.resize_ratio, device)?;
            (Box::new(train), Box::new(valid))
        }
        LoaderChoice::Store => {
            for split in [Split::Train, valid_split] {
                if index.split_ids(split).is_empty() {
                    return Err(PipelineError::EmptySplit {
                        split: split.name(),
                        root: index.root.clone(),
                    });
                }
            }
            let store = Arc::new(crate::loaded::ensure_store(cfg, &index, &root, verbose)?);
            let threads = cfg.data.workers as usize;
            let data = |e: DataError| PipelineError::Unavailable(e.to_string());
            let train = LoaderData::new(
                Arc::clone(&store),
                Split::Train,
                crate::loaded::train_pipeline(cfg.train.augment, cfg.eval.resize_ratio)
                    .map_err(data)?,
                true,
                cfg.run.seed,
                threads,
                device,
            )
            .map_err(data)?;
            let valid = LoaderData::new(
                store,
                valid_split,
                crate::loaded::eval_pipeline(cfg.eval.resize_ratio, TtaMode::None).map_err(data)?,
                false,
                cfg.run.seed,
                threads,
                device,
            )
            .map_err(data)?;
            for (name, d) in [("train", &train), ("valid", &valid)] {
                if d.is_empty() {
                    return Err(PipelineError::EmptySplit {
                        split: name,
                        root: index.root.clone(),
                    });
                }
            }
            (Box::new(train), Box::new(valid))
        }
    };
    Ok(Prepared {
        classes: index.classes.clone(),
        index,
        train,
        valid,
    })
}
