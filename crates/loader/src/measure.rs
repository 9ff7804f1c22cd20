//! Loader-only throughput: drive a loader for a number of batches without a
//! consumer and report images per second and per-stage timings. Used by
//! `brigade bench-loader`, the criterion bench and `scripts/bench-peers.sh`.

use crate::{EpochStats, Failure, Loader, LoaderError, OutSize, Source, Transform};
use std::time::{Duration, Instant};

/// What [`Loader::measure`] saw.
#[derive(Debug, Clone, Default)]
pub struct Measurement {
    /// Timed batches and images (the warm-up batch excluded).
    pub batches: usize,
    pub images: usize,
    /// Wall time of the timed batches.
    pub elapsed: Duration,
    /// Telemetry summed over the epochs touched, without the warm-up batch.
    pub stats: EpochStats,
    /// Every failed sample seen.
    pub failures: Vec<Failure>,
}

impl Measurement {
    /// Images per second of wall time.
    pub fn images_per_sec(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            self.images as f64 / s
        } else {
            0.0
        }
    }

    /// Worker time per image in a stage, in milliseconds.
    pub fn ms_per_image(&self, stage: Duration) -> f64 {
        1e3 * stage.as_secs_f64() / self.stats.images.max(1) as f64
    }
}

impl<S: Source, T: Transform> Loader<S, T> {
    /// Pulls one warm-up batch (starts the workers, untimed, as the PyTorch
    /// reference does), then `batches` timed batches, continuing into the
    /// next epoch when one ends (epochs `0, 1, ...`).
    pub fn measure(
        &mut self,
        size: impl Into<OutSize>,
        batches: usize,
    ) -> Result<Measurement, LoaderError> {
        let size = size.into();
        if self.batches_per_epoch() == 0 {
            return Err(LoaderError::Config(
                "fewer samples than one batch: nothing to measure".into(),
            ));
        }
        let mut m = Measurement::default();
        let mut start: Option<Instant> = None;
        let mut epoch = 0u64;
        while m.batches < batches {
            let mut it = self.epoch(epoch, size, 0)?;
            let mut warm = EpochStats::default();
            while let Some(batch) = it.next() {
                let batch = batch?;
                if start.is_none() {
                    start = Some(Instant::now());
                    warm = it.stats();
                    continue;
                }
                m.images += batch.len();
                m.batches += 1;
                if m.batches == batches {
                    break;
                }
            }
            add(&mut m.stats, &it.stats(), &warm);
            m.failures.extend_from_slice(it.failures());
            epoch += 1;
        }
        m.elapsed = start.map(|s| s.elapsed()).unwrap_or_default();
        Ok(m)
    }
}

/// `total += s - warm`.
fn add(total: &mut EpochStats, s: &EpochStats, warm: &EpochStats) {
    total.batches += s.batches - warm.batches;
    total.images += s.images - warm.images;
    total.failed += s.failed;
    total.read += s.read.saturating_sub(warm.read);
    total.decode += s.decode.saturating_sub(warm.decode);
    total.augment += s.augment.saturating_sub(warm.augment);
    total.wait += s.wait.saturating_sub(warm.wait);
    total.elapsed += s.elapsed.saturating_sub(warm.elapsed);
    total.ready_depth_sum += s.ready_depth_sum - warm.ready_depth_sum;
    total.free_slots_sum += s.free_slots_sum - warm.free_slots_sum;
    total.depth_samples += s.depth_samples - warm.depth_samples;
}
