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
    /// Largest anonymous resident memory of the process (bytes) sampled
    /// every 16 timed batches and at the end, while the loader runs: the
    /// loader's own footprint (ring, scratch), without the mapped store's
    /// file-backed pages. `None` where `/proc` is unavailable.
    pub peak_rss_anon: Option<u64>,
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
                if m.batches % 16 == 0 || m.batches == batches {
                    sample_anon(&mut m.peak_rss_anon);
                }
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

fn sample_anon(peak: &mut Option<u64>) {
    if let Some(now) = ProcessMemory::current() {
        *peak = Some(peak.map_or(now.rss_anon, |p| p.max(now.rss_anon)));
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

/// Memory of this process as the kernel accounts it (Linux
/// `/proc/self/status`), in bytes. The store's pages are file-backed and
/// shared with the page cache (`rss_file`); the loader's own memory (batch
/// ring, scratch) is anonymous (`rss_anon`), which is the figure that must
/// stay independent of dataset size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProcessMemory {
    /// Peak resident set (`VmHWM`).
    pub peak_rss: u64,
    /// Anonymous resident memory now (`RssAnon`).
    pub rss_anon: u64,
    /// File-backed resident memory now (`RssFile`), e.g. mapped store pages.
    pub rss_file: u64,
}

impl ProcessMemory {
    /// Reads this process's figures; `None` where `/proc` is unavailable.
    pub fn current() -> Option<Self> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        Self::parse(&status)
    }

    fn parse(status: &str) -> Option<Self> {
        let field = |name: &str| -> Option<u64> {
            let line = status.lines().find(|l| l.starts_with(name))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        };
        Some(Self {
            peak_rss: field("VmHWM:")?,
            rss_anon: field("RssAnon:")?,
            rss_file: field("RssFile:")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::ProcessMemory;

    #[test]
    fn parses_proc_status_fields() {
        let s = "Name:\tx\nVmHWM:\t  2048 kB\nRssAnon:\t 1024 kB\nRssFile:\t   512 kB\n";
        let m = ProcessMemory::parse(s).expect("parse");
        assert_eq!(m.peak_rss, 2048 * 1024);
        assert_eq!(m.rss_anon, 1024 * 1024);
        assert_eq!(m.rss_file, 512 * 1024);
        assert_eq!(ProcessMemory::parse("VmHWM: 1 kB\n"), None);
    }
}
