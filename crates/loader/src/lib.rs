//! Multi-threaded prefetching loader: sampler, worker pool, bounded channels,
//! reusable batch ring.
//!
//! A [`Loader`] owns a [`Source`] (where pixels come from: the packed store,
//! original files through the index, memory), a [`Transform`] (the augment
//! pipeline), a ring of batch buffers and a pool of per-thread scratch state.
//! [`Loader::epoch`] starts worker threads that fill batches of u8 NHWC
//! images; the [`Epoch`] iterator yields them **in order**, and dropping a
//! [`Batch`] returns its buffer to the ring, so the steady state allocates
//! nothing.
//!
//! Determinism: batch `k` of epoch `e` is a function of `(seed, e, k)` only.
//! The sampler draws the epoch order from `(seed, epoch)`; each batch is filled
//! whole by one worker; every sample's randomness is keyed by
//! `(seed, epoch, sample_id)`. Thread count and scheduling change nothing.
//!
//! Failed samples (decode errors, unreadable files) are never dropped: the
//! position is filled with the next sample of the epoch order that loads
//! (wrapping around), so batches stay full and deterministic, and the failure
//! is reported in [`Batch::failures`] and [`Epoch::failures`] with the sample's
//! name and the reason. A position whose sample and `max_attempts` substitutes
//! all fail yields an error for that batch.
//!
//! ```
//! use brigade_loader::{Loader, LoaderConfig, NearestResize, VecSource};
//! use brigade_pixels::RgbImage;
//!
//! let images: Vec<RgbImage> = (0..10u8)
//!     .map(|k| RgbImage { width: 8, height: 6, data: vec![k; 8 * 6 * 3] })
//!     .collect();
//! let source = VecSource { images, labels: (0..10).collect(), broken: vec![] };
//! let config = LoaderConfig { batch_size: 4, threads: 2, ..LoaderConfig::default() };
//! let mut loader = Loader::new(source, NearestResize::default(), config)?;
//! let mut seen = Vec::new();
//! for batch in loader.epoch(0, 4, 0)? {
//!     let batch = batch?;
//!     assert_eq!(batch.images().len(), batch.len() * 4 * 4 * 3);
//!     // every pixel of image k is the label's value in this toy source
//!     assert_eq!(batch.image(0)[0] as u32, batch.labels()[0]);
//!     seen.extend_from_slice(batch.labels());
//! }
//! seen.sort();
//! assert_eq!(seen, (0..10).collect::<Vec<u32>>());
//! # Ok::<(), brigade_loader::LoaderError>(())
//! ```

pub mod adapters;
mod measure;
mod ring;
mod sampler;
mod source;

pub use measure::{Measurement, ProcessMemory};
pub use ring::{Batch, SlotBuf};
pub use sampler::{batch_count, Sampler};
pub use source::{
    LoadTimes, Loaded, NearestResize, OutSize, Rect, SampleError, SampleSeed, Source, Transform,
    VecSource,
};

use crossbeam_channel::{bounded, select, Receiver, Sender};
use ring::{BatchTimes, Slot};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How a [`Loader`] samples and batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoaderConfig {
    /// Images per batch.
    pub batch_size: usize,
    /// Worker threads.
    pub threads: usize,
    /// Batch buffers in the ring (bounds memory and prefetch depth); 0 picks
    /// `2 * threads + 2`.
    pub ring_slots: usize,
    /// Seed of the epoch order and of every sample's augmentation.
    pub seed: u64,
    /// Shuffle each epoch (train) or keep source order (eval).
    pub shuffle: bool,
    /// Drop a trailing partial batch.
    pub drop_last: bool,
    /// This process's rank and the number of ranks (sharding as
    /// `DistributedSampler`: padded to a multiple of `world_size`).
    pub rank: usize,
    pub world_size: usize,
    /// Substitutes tried for one failed position before the batch errors.
    pub max_attempts: usize,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        LoaderConfig {
            batch_size: 64,
            threads: 2,
            ring_slots: 0,
            seed: 0,
            shuffle: true,
            drop_last: false,
            rank: 0,
            world_size: 1,
            max_attempts: 16,
        }
    }
}

impl LoaderConfig {
    fn slots(&self) -> usize {
        if self.ring_slots == 0 {
            2 * self.threads + 2
        } else {
            self.ring_slots
        }
    }
}

/// One sample that could not be loaded, and what took its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub epoch: u64,
    /// Position in this rank's epoch order.
    pub position: usize,
    pub sample_id: u32,
    /// The source's name for it (path, store record).
    pub name: String,
    pub reason: String,
    /// Sample id loaded in its place.
    pub replaced_by: Option<u32>,
}

/// Errors of the loader itself (a failed sample is a [`Failure`], not an error).
#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    #[error("invalid loader configuration: {0}")]
    Config(String),
    #[error("start batch {start} is past the end of epoch {epoch}, which has {batches} batches")]
    StartPastEnd {
        epoch: u64,
        start: usize,
        batches: usize,
    },
    #[error("batch {index} needs {need} bytes but its ring slot can hold only {have}; give the loader larger slots")]
    SlotTooSmall {
        index: usize,
        need: usize,
        have: usize,
    },
    #[error("batch {index}: the sample at position {position} and {attempts} substitutes all failed to load; last: {name}: {reason}")]
    TooManyFailures {
        index: usize,
        position: usize,
        attempts: usize,
        name: String,
        reason: String,
    },
    #[error("a loader worker thread stopped unexpectedly (panicked) during epoch {epoch}")]
    WorkerGone { epoch: u64 },
    #[error("could not start a loader worker thread: {0}")]
    Spawn(#[source] std::io::Error),
}

/// Telemetry of one epoch so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EpochStats {
    /// Batches and images yielded.
    pub batches: usize,
    pub images: usize,
    /// Samples that failed and were replaced.
    pub failed: usize,
    /// Worker time per stage, summed over threads.
    pub read: Duration,
    pub decode: Duration,
    pub augment: Duration,
    /// Consumer time blocked in `next()` waiting for the next batch.
    pub wait: Duration,
    /// Consumer time from `Loader::epoch` to the end of the latest `next()`.
    pub elapsed: Duration,
    /// Sums over `next()` calls of the batches ready beyond the one returned
    /// and of the free ring slots, for the means below.
    pub ready_depth_sum: usize,
    pub free_slots_sum: usize,
    pub depth_samples: usize,
}

impl EpochStats {
    /// Fraction of consumer time spent waiting for batches (input stall).
    pub fn stall_fraction(&self) -> f64 {
        ratio(self.wait.as_secs_f64(), self.elapsed.as_secs_f64())
    }
    /// Images per second of consumer time.
    pub fn images_per_sec(&self) -> f64 {
        ratio(self.images as f64, self.elapsed.as_secs_f64())
    }
    /// Mean batches ready ahead of the consumer.
    pub fn mean_ready_depth(&self) -> f64 {
        ratio(self.ready_depth_sum as f64, self.depth_samples as f64)
    }
    /// Mean free ring slots seen by the consumer.
    pub fn mean_free_slots(&self) -> f64 {
        ratio(self.free_slots_sum as f64, self.depth_samples as f64)
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

struct Inner<S, T> {
    source: S,
    transform: T,
    config: LoaderConfig,
}

type Scratch<S, T> = (<S as Source>::Scratch, <T as Transform>::Scratch);

/// Sampler + worker pool + batch ring. See the crate docs.
pub struct Loader<S: Source, T: Transform> {
    inner: Arc<Inner<S, T>>,
    sampler: Sampler,
    free_tx: Sender<Slot>,
    free_rx: Receiver<Slot>,
    slots: usize,
    scratch: Vec<Scratch<S, T>>,
}

impl<S: Source, T: Transform> Loader<S, T> {
    /// A loader whose ring slots are `Vec<u8>`s, grown on first use.
    pub fn new(source: S, transform: T, config: LoaderConfig) -> Result<Self, LoaderError> {
        let n = config.slots();
        let slots = (0..n).map(|_| Box::new(Vec::<u8>::new()) as Box<dyn SlotBuf>);
        Self::with_slots(source, transform, config, slots.collect())
    }

    /// A loader whose ring is exactly `slots` (e.g. pinned host buffers);
    /// `config.ring_slots` is ignored.
    pub fn with_slots(
        source: S,
        transform: T,
        config: LoaderConfig,
        slots: Vec<Box<dyn SlotBuf>>,
    ) -> Result<Self, LoaderError> {
        let bad = |m: &str| Err(LoaderError::Config(m.to_string()));
        if config.batch_size == 0 {
            return bad("batch_size must be at least 1");
        }
        if config.threads == 0 {
            return bad("threads must be at least 1");
        }
        if config.world_size == 0 || config.rank >= config.world_size {
            return Err(LoaderError::Config(format!(
                "rank {} must be below world_size {} (world_size at least 1)",
                config.rank, config.world_size
            )));
        }
        if slots.is_empty() {
            return bad("the ring needs at least one slot");
        }
        let n = slots.len();
        let (free_tx, free_rx) = bounded(n);
        for buf in slots {
            // capacity n: cannot fail while we hold the receiver
            let _ = free_tx.send(Slot::new(buf, config.batch_size));
        }
        let sampler = Sampler {
            len: source.len(),
            seed: config.seed,
            shuffle: config.shuffle,
            rank: config.rank,
            world_size: config.world_size,
        };
        Ok(Loader {
            inner: Arc::new(Inner {
                source,
                transform,
                config,
            }),
            sampler,
            free_tx,
            free_rx,
            slots: n,
            scratch: Vec::new(),
        })
    }

    /// The source.
    pub fn source(&self) -> &S {
        &self.inner.source
    }

    /// The transform.
    pub fn transform(&self) -> &T {
        &self.inner.transform
    }

    /// The configuration.
    pub fn config(&self) -> &LoaderConfig {
        &self.inner.config
    }

    /// Batches in one epoch of this rank.
    pub fn batches_per_epoch(&self) -> usize {
        let c = &self.inner.config;
        batch_count(self.sampler.per_rank(), c.batch_size, c.drop_last)
    }

    /// Slots in the ring.
    pub fn ring_slots(&self) -> usize {
        self.slots
    }

    /// Free slots right now (all of them when no batch is out).
    pub fn free_slots(&self) -> usize {
        self.free_rx.len()
    }

    /// Starts epoch `epoch` with images of `size`, beginning at batch
    /// `start_batch` (0 for a full epoch; the batch after the last one
    /// consumed to resume exactly). Each epoch may use a different size
    /// (progressive resizing).
    pub fn epoch(
        &mut self,
        epoch: u64,
        size: impl Into<OutSize>,
        start_batch: usize,
    ) -> Result<Epoch<'_, S, T>, LoaderError> {
        let size = size.into();
        if size.width == 0 || size.height == 0 {
            return Err(LoaderError::Config(format!(
                "output size {}x{} must not be empty",
                size.width, size.height
            )));
        }
        let batches = self.batches_per_epoch();
        if start_batch > batches {
            return Err(LoaderError::StartPastEnd {
                epoch,
                start: start_batch,
                batches,
            });
        }
        self.presize_free_slots(size);
        let plan = Arc::new(Plan {
            epoch,
            size,
            order: self.sampler.order(epoch),
            batches,
            next_claim: AtomicUsize::new(start_batch),
            cancelled: AtomicBool::new(false),
        });
        let (done_tx, done_rx) = bounded(self.slots);
        // capacity 1, never sent to: dropping the sender wakes every worker; a
        // zero-capacity channel would allocate a packet per blocking select
        let (cancel_tx, cancel_rx) = bounded::<()>(1);
        let threads = self.inner.config.threads.min(batches - start_batch);
        let mut workers = Vec::with_capacity(threads);
        for k in 0..threads {
            let scratch = self.scratch.pop().unwrap_or_default();
            let w = Worker {
                inner: Arc::clone(&self.inner),
                plan: Arc::clone(&plan),
                free_tx: self.free_tx.clone(),
                free_rx: self.free_rx.clone(),
                done_tx: done_tx.clone(),
                cancel_rx: cancel_rx.clone(),
            };
            let spawned = std::thread::Builder::new()
                .name(format!("brigade-loader-{k}"))
                .spawn(move || w.run(scratch));
            match spawned {
                Ok(h) => workers.push(h),
                Err(e) => {
                    plan.cancelled.store(true, Ordering::Relaxed);
                    drop(cancel_tx);
                    for h in workers {
                        if let Ok(s) = h.join() {
                            self.scratch.push(s);
                        }
                    }
                    return Err(LoaderError::Spawn(e));
                }
            }
        }
        let slots = self.slots;
        Ok(Epoch {
            loader: self,
            plan,
            workers,
            done_rx,
            cancel: Some(cancel_tx),
            pending: VecDeque::with_capacity(slots),
            next: start_batch,
            start: Instant::now(),
            stats: EpochStats::default(),
            failures: Vec::new(),
        })
    }
}

impl<S: Source, T: Transform> Loader<S, T> {
    /// Grows every free slot to a full batch of `size` here, on the caller's
    /// thread before the workers start, so that growing the ring (and the
    /// kernel's first-touch page faults on it) is paid once per size change
    /// and not inside the first batches of the epoch. A slot that cannot grow
    /// (a fixed buffer) is left for the worker, which reports it.
    fn presize_free_slots(&mut self, size: OutSize) {
        let need = self.inner.config.batch_size * size.image_bytes();
        let mut taken = Vec::with_capacity(self.slots);
        while let Ok(mut slot) = self.free_rx.try_recv() {
            let _ = slot.buf.ensure_len(need);
            taken.push(slot);
        }
        for slot in taken {
            // the slots came from this channel: there is room for all of them
            let _ = self.free_tx.send(slot);
        }
    }
}

struct Plan {
    epoch: u64,
    size: OutSize,
    order: Vec<u32>,
    batches: usize,
    next_claim: AtomicUsize,
    cancelled: AtomicBool,
}

type Done = (usize, Result<Batch, LoaderError>);

struct Worker<S: Source, T: Transform> {
    inner: Arc<Inner<S, T>>,
    plan: Arc<Plan>,
    free_tx: Sender<Slot>,
    free_rx: Receiver<Slot>,
    done_tx: Sender<Done>,
    cancel_rx: Receiver<()>,
}

impl<S: Source, T: Transform> Worker<S, T> {
    fn run(self, mut scratch: Scratch<S, T>) -> Scratch<S, T> {
        loop {
            let slot = select! {
                recv(self.free_rx) -> s => match s { Ok(s) => s, Err(_) => break },
                recv(self.cancel_rx) -> _ => break,
            };
            let b = self.plan.next_claim.fetch_add(1, Ordering::Relaxed);
            if b >= self.plan.batches || self.plan.cancelled.load(Ordering::Relaxed) {
                let _ = self.free_tx.send(slot);
                break;
            }
            let mut slot = slot;
            let result = match self.fill(b, &mut slot, &mut scratch) {
                Ok(()) => Ok(Batch {
                    slot: Some(slot),
                    home: self.free_tx.clone(),
                    epoch: self.plan.epoch,
                    index: b,
                    size: self.plan.size,
                }),
                Err(e) => {
                    let _ = self.free_tx.send(slot);
                    Err(e)
                }
            };
            if self.done_tx.send((b, result)).is_err() {
                break;
            }
        }
        scratch
    }

    fn fill(
        &self,
        b: usize,
        slot: &mut Slot,
        scratch: &mut Scratch<S, T>,
    ) -> Result<(), LoaderError> {
        let c = &self.inner.config;
        let plan = &*self.plan;
        let n_pos = plan.order.len();
        let first = b * c.batch_size;
        let n = c.batch_size.min(n_pos - first);
        let img = plan.size.image_bytes();
        if let Err(have) = slot.buf.ensure_len(n * img) {
            let need = n * img;
            return Err(LoaderError::SlotTooSmall {
                index: b,
                need,
                have,
            });
        }
        slot.labels.clear();
        slot.ids.clear();
        slot.failures.clear();
        slot.times = BatchTimes::default();
        let source = &self.inner.source;
        for j in 0..n {
            if plan.cancelled.load(Ordering::Relaxed) {
                break;
            }
            let pos = first + j;
            let dst = &mut slot.buf.bytes_mut()[j * img..(j + 1) * img];
            let mut attempt = 0usize;
            loop {
                let i = plan.order[(pos + attempt) % n_pos] as usize;
                let id = source.sample_id(i);
                let key = SampleSeed {
                    seed: c.seed,
                    epoch: plan.epoch,
                    sample: id as u64 | (attempt as u64) << 32,
                };
                match self.load_one(i, key, scratch, dst, &mut slot.times) {
                    Ok(()) => {
                        slot.labels.push(source.label(i));
                        slot.ids.push(id);
                        if attempt > 0 {
                            if let Some(f) = slot.failures.last_mut() {
                                f.replaced_by = Some(id);
                            }
                        }
                        break;
                    }
                    Err(e) => {
                        // A failing substitute is reported at its own position.
                        if attempt == 0 {
                            slot.failures.push(Failure {
                                epoch: plan.epoch,
                                position: pos,
                                sample_id: id,
                                name: source.name(i),
                                reason: e.0.clone(),
                                replaced_by: None,
                            });
                        }
                        attempt += 1;
                        if attempt > c.max_attempts || attempt >= n_pos {
                            let err = LoaderError::TooManyFailures {
                                index: b,
                                position: pos,
                                attempts: attempt - 1,
                                name: source.name(i),
                                reason: e.0,
                            };
                            return Err(err);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn load_one(
        &self,
        i: usize,
        key: SampleSeed,
        scratch: &mut Scratch<S, T>,
        dst: &mut [u8],
        times: &mut BatchTimes,
    ) -> Result<(), SampleError> {
        let (source, transform) = (&self.inner.source, &self.inner.transform);
        let size = self.plan.size;
        let hint = source
            .full_size(i)
            .and_then(|full| dct_hint(transform.source_region(full, size, key), full, size));
        let mut lt = LoadTimes::default();
        let loaded = source.load(i, hint, &mut scratch.0, &mut lt);
        times.read += lt.read;
        times.decode += lt.decode;
        let loaded = loaded?;
        let t = Instant::now();
        let r = transform.apply(loaded.view, loaded.full, size, key, &mut scratch.1, dst);
        times.augment += t.elapsed();
        r
    }
}

/// The smallest whole-image decode size that keeps `region` at least `out`
/// large, when the region is at least twice the output in both directions
/// (worth a DCT-scaled decode); `None` otherwise.
pub fn dct_hint(region: Rect, full: (u32, u32), out: OutSize) -> Option<(u32, u32)> {
    if region.w == 0 || region.h == 0 {
        return None;
    }
    if region.w < 2 * out.width || region.h < 2 * out.height {
        return None;
    }
    let scale = |full: u32, out: u32, r: u32| {
        (full as u64 * out as u64)
            .div_ceil(r as u64)
            .min(full as u64) as u32
    };
    Some((
        scale(full.0, out.width, region.w),
        scale(full.1, out.height, region.h),
    ))
}

/// An epoch in progress: an iterator of batches in order.
pub struct Epoch<'a, S: Source, T: Transform> {
    loader: &'a mut Loader<S, T>,
    plan: Arc<Plan>,
    workers: Vec<JoinHandle<Scratch<S, T>>>,
    done_rx: Receiver<Done>,
    cancel: Option<Sender<()>>,
    pending: VecDeque<Option<Result<Batch, LoaderError>>>,
    next: usize,
    start: Instant,
    stats: EpochStats,
    failures: Vec<Failure>,
}

impl<S: Source, T: Transform> Epoch<'_, S, T> {
    /// Telemetry so far.
    pub fn stats(&self) -> EpochStats {
        self.stats
    }

    /// Every failed sample of the batches yielded so far.
    pub fn failures(&self) -> &[Failure] {
        &self.failures
    }

    /// Index of the next batch `next()` returns.
    pub fn next_batch(&self) -> usize {
        self.next
    }

    /// Batches in the whole epoch (counting those before `start_batch`).
    pub fn batches(&self) -> usize {
        self.plan.batches
    }

    /// The output size of this epoch.
    pub fn size(&self) -> OutSize {
        self.plan.size
    }

    fn take_ready(&mut self) -> Option<Result<Batch, LoaderError>> {
        if matches!(self.pending.front(), Some(Some(_))) {
            self.pending.pop_front().flatten()
        } else {
            None
        }
    }

    fn stash(&mut self, (b, r): Done) {
        let k = b - self.next;
        while self.pending.len() <= k {
            self.pending.push_back(None);
        }
        self.pending[k] = Some(r);
    }
}

impl<S: Source, T: Transform> Iterator for Epoch<'_, S, T> {
    type Item = Result<Batch, LoaderError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.plan.batches {
            return None;
        }
        let t = Instant::now();
        let item = loop {
            while let Ok(d) = self.done_rx.try_recv() {
                self.stash(d);
            }
            if let Some(r) = self.take_ready() {
                break r;
            }
            match self.done_rx.recv() {
                Ok(d) => self.stash(d),
                Err(_) => {
                    let epoch = self.plan.epoch;
                    // nothing more can arrive: end the epoch after this error
                    self.next = self.plan.batches;
                    self.stats.elapsed = self.start.elapsed();
                    return Some(Err(LoaderError::WorkerGone { epoch }));
                }
            }
        };
        self.stats.wait += t.elapsed();
        self.next += 1;
        let s = &mut self.stats;
        s.ready_depth_sum += self.pending.iter().filter(|p| p.is_some()).count();
        s.free_slots_sum += self.loader.free_rx.len();
        s.depth_samples += 1;
        if let Ok(batch) = &item {
            let slot = batch.slot();
            s.batches += 1;
            s.images += batch.len();
            s.failed += slot.failures.len();
            s.read += slot.times.read;
            s.decode += slot.times.decode;
            s.augment += slot.times.augment;
            self.failures.extend(slot.failures.iter().cloned());
        }
        self.stats.elapsed = self.start.elapsed();
        Some(item)
    }
}

impl<S: Source, T: Transform> Drop for Epoch<'_, S, T> {
    fn drop(&mut self) {
        self.plan.cancelled.store(true, Ordering::Relaxed);
        self.cancel.take();
        for h in self.workers.drain(..) {
            if let Ok(s) = h.join() {
                self.loader.scratch.push(s);
            }
        }
        // finished batches not yet yielded return their slots when dropped
        self.pending.clear();
        while self.done_rx.try_recv().is_ok() {}
    }
}
