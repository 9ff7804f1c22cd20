//! The ring of reusable batch buffers. A [`Slot`] travels: free list (a
//! bounded channel owned by the loader) → a worker, which fills it → the
//! consumer as a [`Batch`] → back to the free list when the batch is dropped.

use crate::source::OutSize;
use crate::Failure;
use crossbeam_channel::Sender;
use std::any::Any;
use std::time::Duration;

/// Storage for one batch of u8 NHWC images. `Vec<u8>` grows on demand (only
/// when an epoch asks for a larger output than any before); a fixed buffer
/// (e.g. pinned host memory from the tensor crate) refuses to grow.
pub trait SlotBuf: Send + 'static {
    /// The whole buffer.
    fn bytes(&self) -> &[u8];
    /// The whole buffer, writable.
    fn bytes_mut(&mut self) -> &mut [u8];
    /// Makes `bytes()` at least `len` long; `Err(capacity)` when it cannot.
    fn ensure_len(&mut self, len: usize) -> Result<(), usize>;
    /// For downcasting to the concrete buffer (e.g. to reach a pinned tensor).
    fn as_any(&self) -> &dyn Any;
}

impl SlotBuf for Vec<u8> {
    fn bytes(&self) -> &[u8] {
        self
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        self
    }
    fn ensure_len(&mut self, len: usize) -> Result<(), usize> {
        if self.len() < len {
            self.resize(len, 0);
        }
        Ok(())
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Per-batch stage times, measured by the worker that filled it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BatchTimes {
    pub read: Duration,
    pub decode: Duration,
    pub augment: Duration,
}

/// One ring entry: the pixel buffer plus per-image metadata, all reused.
pub(crate) struct Slot {
    pub buf: Box<dyn SlotBuf>,
    pub labels: Vec<u32>,
    pub ids: Vec<u32>,
    pub failures: Vec<Failure>,
    pub times: BatchTimes,
}

impl Slot {
    pub fn new(buf: Box<dyn SlotBuf>, batch_size: usize) -> Self {
        Slot {
            buf,
            labels: Vec::with_capacity(batch_size),
            ids: Vec::with_capacity(batch_size),
            failures: Vec::new(),
            times: BatchTimes::default(),
        }
    }
}

/// A filled batch: `len` images of `size`, u8 NHWC, with their labels and
/// sample ids. Dropping it returns its buffer to the loader's ring.
pub struct Batch {
    pub(crate) slot: Option<Slot>,
    pub(crate) home: Sender<Slot>,
    /// Epoch this batch belongs to.
    pub epoch: u64,
    /// Position of this batch in the epoch (0-based, counting from batch 0
    /// even when the epoch was started at a later batch).
    pub index: usize,
    /// Output geometry of every image.
    pub size: OutSize,
}

impl Batch {
    pub(crate) fn slot(&self) -> &Slot {
        // A Batch holds its slot from construction until drop.
        match &self.slot {
            Some(s) => s,
            None => unreachable!("batch slot taken before drop"),
        }
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.slot().labels.len()
    }

    /// True for a batch without images (never yielded by the loader).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The images, `len * height * width * 3` bytes, NHWC.
    pub fn images(&self) -> &[u8] {
        let n = self.len() * self.size.image_bytes();
        &self.slot().buf.bytes()[..n]
    }

    /// Image `k` of the batch (HWC).
    pub fn image(&self, k: usize) -> &[u8] {
        let b = self.size.image_bytes();
        &self.images()[k * b..(k + 1) * b]
    }

    /// Class labels, one per image.
    pub fn labels(&self) -> &[u32] {
        &self.slot().labels
    }

    /// Sample ids (`Source::sample_id`), one per image.
    pub fn ids(&self) -> &[u32] {
        &self.slot().ids
    }

    /// Samples of this batch's positions that failed and were replaced.
    pub fn failures(&self) -> &[Failure] {
        &self.slot().failures
    }

    /// The buffer behind `images()` (for downcasting to a caller-provided type).
    pub fn buffer(&self) -> &dyn SlotBuf {
        &*self.slot().buf
    }

    /// `[n, h, w, c]` of `images()`.
    pub fn shape_nhwc(&self) -> [usize; 4] {
        [
            self.len(),
            self.size.height as usize,
            self.size.width as usize,
            3,
        ]
    }
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("epoch", &self.epoch)
            .field("index", &self.index)
            .field("size", &self.size)
            .field("len", &self.len())
            .field("failures", &self.failures().len())
            .finish()
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            // The ring channel has room for every slot, so this never blocks;
            // it fails only when the loader is gone, and then the buffer is freed.
            let _ = self.home.send(slot);
        }
    }
}
