//! The real data path behind the loop's [`DataSource`]: the dataset packed
//! once into a store (`brigade-store`), read by the prefetching loader
//! (`brigade-loader`) through an augment pipeline (`brigade-augment`), turned
//! into normalised channels-last device tensors (`brigade-tensor`).
//!
//! Batch `k` of epoch `e` is a function of `(seed, e, k)` only, whatever the
//! worker count, so [`DataSource::epoch`]'s `start_batch` resumes exactly.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use brigade_augment::{
    EvalConfig, Geometry, Pipeline, PipelineConfig, RrcConfig, TrainConfig, TrivialAugmentConfig,
};
use brigade_index::{Index, Split};
use brigade_loader::adapters::{FileSource, StoreSource, TtaView};
use brigade_loader::{batch_count, Loader, LoaderConfig, OutSize, Sampler, Source, Transform};
use brigade_store::{pack, PackOptions, Side, Store, StoreError, StoreFormat};
use brigade_tensor::ToTensor;
use tch::{Device, Kind};

use crate::config::{AugmentChoice, Config, PackFormat, TtaMode};
use crate::data::{DataError, DataSource, DeviceBatch, EpochIter, IMAGENET_MEAN, IMAGENET_STD};
use crate::pipeline::PipelineError;

/// The train augmentation pipeline of a recipe (`train.augment`).
pub fn train_pipeline(choice: AugmentChoice, resize_ratio: f64) -> Result<Pipeline, DataError> {
    let cfg = match choice {
        AugmentChoice::None => PipelineConfig::Eval(EvalConfig {
            resize_ratio,
            ..EvalConfig::default()
        }),
        AugmentChoice::RrcFlip => PipelineConfig::Train(TrainConfig {
            geometry: Geometry::RandomResizedCrop(RrcConfig::default()),
            ..TrainConfig::default()
        }),
        AugmentChoice::Fastai => PipelineConfig::Train(TrainConfig {
            geometry: Geometry::Fastai(Default::default()),
            ..TrainConfig::default()
        }),
        AugmentChoice::Trivial => PipelineConfig::Train(TrainConfig {
            geometry: Geometry::RandomResizedCrop(RrcConfig::default()),
            trivial_augment: Some(TrivialAugmentConfig::default()),
            ..TrainConfig::default()
        }),
    };
    Pipeline::new(cfg).map_err(|e| DataError::Msg(e.to_string()))
}

/// The eval pipeline (resize the shorter side by `resize_ratio`, centre
/// crop), with the views of `tta` for [`Pipeline::apply_tta`].
pub fn eval_pipeline(resize_ratio: f64, tta: TtaMode) -> Result<Pipeline, DataError> {
    Pipeline::new(PipelineConfig::Eval(EvalConfig {
        resize_ratio,
        tta: tta.variants(),
    }))
    .map_err(|e| DataError::Msg(e.to_string()))
}

/// The TTA views of `split` for evaluation, read from the original files
/// (full quality, whatever the store's max side; streamed, never held in
/// memory): one eval-order source per view of `tta` (the first is the plain
/// centre crop), each yielding the same samples in the same order.
pub fn tta_views(
    index: &Index,
    split: Split,
    resize_ratio: f64,
    tta: TtaMode,
    threads: usize,
    device: Device,
) -> Result<Vec<LoaderData<TtaView, FileSource>>, DataError> {
    let pipeline = eval_pipeline(resize_ratio, tta)?;
    let source = FileSource::new(index, Some(split));
    (0..pipeline.tta_variants().len())
        .map(|variant| {
            let view = TtaView {
                pipeline: pipeline.clone(),
                variant,
            };
            LoaderData::from_source(source.clone(), view, false, 0, threads, device)
        })
        .collect()
}

/// Folder of cached stores: `data.pack.cache_dir`, else `<dataset root>/.brigade`.
pub fn cache_dir(cfg: &Config, root: &Path) -> PathBuf {
    cfg.data
        .pack
        .cache_dir
        .clone()
        .unwrap_or_else(|| root.join(".brigade"))
}

/// Opens the store packed from `index` with the recipe's `[data.pack]`
/// settings in the cache folder, packing it first when it is missing or was
/// packed from another version of the dataset.
pub fn ensure_store(
    cfg: &Config,
    index: &Index,
    root: &Path,
    verbose: bool,
) -> Result<Store, PipelineError> {
    let p = &cfg.data.pack;
    let dir = cache_dir(cfg, root);
    let (fmt, format) = match p.format {
        PackFormat::Raw => ("raw".to_string(), StoreFormat::Raw),
        PackFormat::Jpeg => (
            format!("jpeg{}", p.quality),
            StoreFormat::Jpeg { quality: p.quality },
        ),
    };
    let path = dir.join(format!(
        "store-{:016x}-{}-{fmt}.bstore",
        index.fingerprint(),
        p.max_side
    ));
    let unavailable = |what: &str, e: StoreError| {
        PipelineError::Unavailable(format!("{what} {}: {e}", path.display()))
    };
    if path.is_file() {
        match Store::open_for(&path, index) {
            Ok(s) => {
                if verbose {
                    println!("store {} ({} records)", path.display(), s.len());
                }
                return Ok(s);
            }
            Err(e) => {
                if verbose {
                    eprintln!("note: repacking: {e}");
                }
            }
        }
    }
    std::fs::create_dir_all(&dir).map_err(|source| PipelineError::Io {
        path: dir.clone(),
        source,
    })?;
    let opts = PackOptions {
        max_side: p.max_side,
        side: Side::Longer,
        format,
        threads: 0,
        progress: verbose,
        ..PackOptions::default()
    };
    let report = pack(index, &path, &opts).map_err(|e| unavailable("packing", e))?;
    for s in &report.skipped {
        eprintln!("pack: skipped {}: {}", s.path, s.reason);
    }
    if verbose {
        println!(
            "packed {} of {} images into {} ({:.1} MiB)",
            report.packed,
            index.samples.len(),
            path.display(),
            report.bytes as f64 / (1024.0 * 1024.0)
        );
    }
    Store::open_for(&path, index).map_err(|e| unavailable("opening", e))
}

/// One split, through the loader, as device batches. `S` is where pixels
/// come from: the packed store, or the original files ([`FileSource`], for
/// evaluation at full quality); `T` is the transform: an augment
/// [`Pipeline`], or one [`TtaView`] of an eval pipeline.
pub struct LoaderData<T: Transform + Clone = Pipeline, S: Source + Clone = StoreSource> {
    source: S,
    pipeline: T,
    train: bool,
    seed: u64,
    threads: usize,
    rank: usize,
    world: usize,
    to_tensor: ToTensor,
    /// Built for one batch size (stages may change it).
    loader: Option<Loader<S, T>>,
    /// Consumer wait inside the loader during the latest epoch.
    wait: Rc<Cell<Duration>>,
}

impl<T: Transform + Clone> LoaderData<T, StoreSource> {
    /// The records of `split` in `store`; train mode shuffles and drops the
    /// last partial batch, eval mode keeps store order and every sample.
    pub fn new(
        store: Arc<Store>,
        split: Split,
        pipeline: T,
        train: bool,
        seed: u64,
        threads: usize,
        device: Device,
    ) -> Result<Self, DataError> {
        let source = StoreSource::new(store, Some(split));
        Self::from_source(source, pipeline, train, seed, threads, device)
    }
}

impl<T: Transform + Clone, S: Source + Clone> LoaderData<T, S> {
    /// Any loader source; train mode shuffles and drops the last partial
    /// batch, eval mode keeps source order and every sample.
    pub fn from_source(
        source: S,
        pipeline: T,
        train: bool,
        seed: u64,
        threads: usize,
        device: Device,
    ) -> Result<Self, DataError> {
        let to_tensor = ToTensor::new(device, IMAGENET_MEAN, IMAGENET_STD, Kind::Float)
            .map_err(|e| DataError::Msg(e.to_string()))?;
        Ok(LoaderData {
            source,
            pipeline,
            train,
            seed,
            threads: threads.max(1),
            rank: 0,
            world: 1,
            to_tensor,
            loader: None,
            wait: Rc::new(Cell::new(Duration::ZERO)),
        })
    }

    /// Data-parallel shard (train mode): this rank's part of every epoch.
    pub fn set_shard(&mut self, rank: usize, world: usize) {
        if (rank, world) != (self.rank, self.world) {
            (self.rank, self.world) = (rank, world.max(1));
            self.loader = None;
        }
    }

    fn config(&self, batch_size: usize) -> LoaderConfig {
        let (rank, world) = if self.train {
            (self.rank, self.world)
        } else {
            (0, 1)
        };
        LoaderConfig {
            batch_size: batch_size.max(1),
            threads: self.threads,
            seed: self.seed,
            shuffle: self.train,
            drop_last: self.train,
            rank,
            world_size: world,
            ..LoaderConfig::default()
        }
    }
}

impl<T: Transform + Clone, S: Source + Clone> DataSource for LoaderData<T, S> {
    fn len(&self) -> usize {
        self.source.len()
    }

    fn num_batches(&self, batch_size: usize) -> usize {
        let c = self.config(batch_size);
        let sampler = Sampler {
            len: self.source.len(),
            seed: c.seed,
            shuffle: c.shuffle,
            rank: c.rank,
            world_size: c.world_size,
        };
        batch_count(sampler.per_rank(), c.batch_size, c.drop_last)
    }

    fn input_wait(&self) -> Option<Duration> {
        Some(self.wait.get())
    }

    fn set_shard(&mut self, rank: usize, world: usize) {
        LoaderData::set_shard(self, rank, world);
    }

    fn epoch(
        &mut self,
        epoch: u32,
        size: u32,
        batch_size: usize,
        start_batch: usize,
    ) -> Result<EpochIter<'_>, DataError> {
        let config = self.config(batch_size);
        if self.loader.as_ref().map(|l| l.config()) != Some(&config) {
            self.loader = None;
            let loader = Loader::new(self.source.clone(), self.pipeline.clone(), config)
                .map_err(|e| DataError::Msg(e.to_string()))?;
            self.loader = Some(loader);
        }
        let Some(loader) = self.loader.as_mut() else {
            return Err(DataError::Msg("the loader is missing".into()));
        };
        let mut it = loader
            .epoch(u64::from(epoch), OutSize::square(size), start_batch)
            .map_err(|e| DataError::Msg(e.to_string()))?;
        let to = &self.to_tensor;
        let wait = Rc::clone(&self.wait);
        wait.set(Duration::ZERO);
        Ok(Box::new(std::iter::from_fn(move || {
            let next = it.next();
            wait.set(it.stats().wait);
            let batch = match next? {
                Ok(b) => b,
                Err(e) => return Some(Err(DataError::Msg(e.to_string()))),
            };
            for f in batch.failures() {
                eprintln!(
                    "warning: sample {} ({}) failed to load: {}; replaced",
                    f.sample_id, f.name, f.reason
                );
            }
            let made = (|| -> Result<DeviceBatch, DataError> {
                let images = to
                    .images(&batch)
                    .map_err(|e| DataError::Msg(e.to_string()))?;
                let labels = to
                    .labels(&batch)
                    .map_err(|e| DataError::Msg(e.to_string()))?;
                Ok(DeviceBatch {
                    images,
                    labels,
                    ids: batch.ids().to_vec(),
                })
            })();
            Some(made)
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use brigade_index::IndexOptions;

    fn all(d: &mut LoaderData, epoch: u32, start: usize) -> Vec<DeviceBatch> {
        d.epoch(epoch, 24, 4, start)
            .unwrap()
            .map(|b| b.unwrap())
            .collect()
    }

    #[test]
    fn store_is_reused_and_epochs_resume_whatever_the_threads() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("synth");
        let sc = brigade_synth::SynthConfig {
            max_side: 48,
            ..brigade_synth::SynthConfig::new(3, 6, 2, 1)
        };
        brigade_synth::generate(&sc, &root).unwrap();
        let opts = IndexOptions {
            valid_pct: 0.2,
            seed: 3,
            sample_frac: 1.0,
        };
        let (index, _) = Index::build(&root, &opts).unwrap();
        let mut cfg = Config::default();
        cfg.data.pack.max_side = 40;
        cfg.data.pack.cache_dir = Some(dir.path().join("cache"));
        let store = ensure_store(&cfg, &index, &root, false).unwrap();
        let path = store.path().to_path_buf();
        let stamp = std::fs::metadata(&path).unwrap().modified().unwrap();
        drop(store);
        let store = Arc::new(ensure_store(&cfg, &index, &root, false).unwrap());
        assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), stamp);

        let make = |threads| {
            let pipe = train_pipeline(AugmentChoice::RrcFlip, 8.0 / 7.0).unwrap();
            LoaderData::new(
                Arc::clone(&store),
                Split::Train,
                pipe,
                true,
                5,
                threads,
                Device::Cpu,
            )
            .unwrap()
        };
        let mut one = make(1);
        let mut three = make(3);
        let n = one.len();
        assert_eq!(n, index.split_ids(Split::Train).len());
        assert_eq!(one.num_batches(4), n / 4);
        let full = all(&mut one, 1, 0);
        assert_eq!(full.len(), n / 4);
        assert_eq!(full[0].images.size(), vec![4, 3, 24, 24]);
        let other = all(&mut three, 1, 0);
        let tail = all(&mut three, 1, 1);
        assert_eq!(tail.len(), full.len() - 1);
        for (a, b) in full.iter().zip(&other) {
            assert!(a.images.equal(&b.images));
            assert_eq!(a.ids, b.ids);
        }
        for (a, b) in full[1..].iter().zip(&tail) {
            assert!(a.images.equal(&b.images));
            assert!(a.labels.equal(&b.labels));
        }
        assert!(one.input_wait().is_some());
        // another epoch is another order
        let next: Vec<u32> = all(&mut one, 2, 0)
            .iter()
            .flat_map(|b| b.ids.clone())
            .collect();
        let first: Vec<u32> = full.iter().flat_map(|b| b.ids.clone()).collect();
        assert_ne!(next, first);

        // eval: store order, every sample, last batch partial
        let mut valid = LoaderData::new(
            store,
            Split::Valid,
            eval_pipeline(8.0 / 7.0, TtaMode::None).unwrap(),
            false,
            5,
            2,
            Device::Cpu,
        )
        .unwrap();
        let v = valid.len();
        assert!(v > 0);
        assert_eq!(valid.num_batches(4), v.div_ceil(4));
        let seen: usize = all(&mut valid, 0, 0).iter().map(|b| b.ids.len()).sum();
        assert_eq!(seen, v);
    }
}
