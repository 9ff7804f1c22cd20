//! The metrics log (`metrics.jsonl`, one JSON object a line, stable keys), the
//! fastai-like epoch table, and top-k accuracy helpers.
//!
//! Every line has `"kind"`: `"step"` (one optimizer step) or `"epoch"` (end of
//! an epoch, after validation). Both carry the global `step` count, so a
//! resumed run truncates the log back to its checkpoint with [`MetricsLog::truncate_after`].

use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// Metrics-log failures.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("metrics log {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("metrics log {path}, line {line}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// One optimizer step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Global step (1-based: the number of steps done after this one).
    pub step: u64,
    pub epoch: u32,
    /// Batch index within the epoch.
    pub batch: u32,
    pub loss: f64,
    /// Learning rate of the last (head) parameter group.
    pub lr: f64,
}

/// One finished epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub step: u64,
    pub epoch: u32,
    pub stage: String,
    pub size: u32,
    pub train_loss: f64,
    pub valid_loss: f64,
    pub valid_top1: f64,
    pub valid_top5: f64,
    /// Training images per second (excluding validation).
    pub img_per_s: f64,
    /// Fraction of training time spent waiting for the next batch.
    pub stall_frac: f64,
    pub lr: f64,
    pub secs: f64,
}

impl EpochRecord {
    /// A metric by its monitor name (see `config::MONITORS`).
    pub fn metric(&self, name: &str) -> Option<f64> {
        match name {
            "valid_top1" => Some(self.valid_top1),
            "valid_top5" => Some(self.valid_top5),
            "valid_loss" => Some(self.valid_loss),
            "train_loss" => Some(self.train_loss),
            _ => None,
        }
    }
}

/// A line of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Record {
    Step(StepRecord),
    Epoch(EpochRecord),
}

impl Record {
    /// The global step of the record.
    pub fn step(&self) -> u64 {
        match self {
            Record::Step(s) => s.step,
            Record::Epoch(e) => e.step,
        }
    }
}

/// Append-only JSONL writer (flushed after every line: a kill loses nothing written).
pub struct MetricsLog {
    path: PathBuf,
    file: File,
}

impl MetricsLog {
    /// Opens (creating or appending to) `path`.
    pub fn open(path: &Path) -> Result<MetricsLog, MetricsError> {
        let io = |source| MetricsError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        Ok(MetricsLog {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Appends one record.
    pub fn write(&mut self, rec: &Record) -> Result<(), MetricsError> {
        let mut line = serde_json::to_string(rec).map_err(|e| MetricsError::Parse {
            path: self.path.clone(),
            line: 0,
            message: e.to_string(),
        })?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.flush())
            .map_err(|source| MetricsError::Io {
                path: self.path.clone(),
                source,
            })
    }

    /// Reads every record of a log.
    pub fn read(path: &Path) -> Result<Vec<Record>, MetricsError> {
        let io = |source| MetricsError::Io {
            path: path.to_path_buf(),
            source,
        };
        let f = File::open(path).map_err(io)?;
        let mut out = Vec::new();
        for (i, line) in BufReader::new(f).lines().enumerate() {
            let line = line.map_err(io)?;
            if line.trim().is_empty() {
                continue;
            }
            let rec: Record = serde_json::from_str(&line).map_err(|e| MetricsError::Parse {
                path: path.to_path_buf(),
                line: i + 1,
                message: e.to_string(),
            })?;
            out.push(rec);
        }
        Ok(out)
    }

    /// Rewrites the log keeping only records with `step <= step` (resume: the
    /// records after the checkpoint are redone). Atomic (temp + fsync + rename).
    /// A missing log is fine.
    pub fn truncate_after(path: &Path, step: u64) -> Result<(), MetricsError> {
        if !path.exists() {
            return Ok(());
        }
        let keep: Vec<Record> = Self::read(path)?
            .into_iter()
            .filter(|r| r.step() <= step)
            .collect();
        let mut text = String::new();
        for r in &keep {
            text.push_str(&serde_json::to_string(r).map_err(|e| MetricsError::Parse {
                path: path.to_path_buf(),
                line: 0,
                message: e.to_string(),
            })?);
            text.push('\n');
        }
        crate::checkpoint::write_atomic(path, text.as_bytes()).map_err(|source| MetricsError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// The epoch records of a log, in order.
pub fn epochs(records: &[Record]) -> Vec<&EpochRecord> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Epoch(e) => Some(e),
            Record::Step(_) => None,
        })
        .collect()
}

/// The step records of a log, in order.
pub fn steps(records: &[Record]) -> Vec<&StepRecord> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Step(s) => Some(s),
            Record::Epoch(_) => None,
        })
        .collect()
}

/// Header of the fastai-like epoch table.
pub fn table_header() -> String {
    format!(
        "{:>5}  {:<8} {:>4}  {:>10}  {:>10}  {:>7}  {:>7}  {:>9}  {:>6}  {:>9}  {:>7}",
        "epoch",
        "stage",
        "size",
        "train_loss",
        "valid_loss",
        "top1",
        "top5",
        "img/s",
        "stall",
        "lr",
        "time"
    )
}

/// One row of the epoch table.
pub fn table_row(e: &EpochRecord) -> String {
    let mut stage = e.stage.clone();
    stage.truncate(8);
    format!(
        "{:>5}  {:<8} {:>4}  {:>10.4}  {:>10.4}  {:>6.2}%  {:>6.2}%  {:>9.1}  {:>5.1}%  {:>9.2e}  {:>7}",
        e.epoch,
        stage,
        e.size,
        e.train_loss,
        e.valid_loss,
        100.0 * e.valid_top1,
        100.0 * e.valid_top5,
        e.img_per_s,
        100.0 * e.stall_frac,
        e.lr,
        format_secs(e.secs)
    )
}

/// `m:ss` (or `h:mm:ss`).
pub fn format_secs(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// Running sums for loss and top-k accuracy over batches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Accum {
    pub loss_sum: f64,
    pub top1: u64,
    pub top5: u64,
    pub n: u64,
}

impl Accum {
    /// Adds a batch: mean loss over `n` samples and the counts of correct ones.
    pub fn add(&mut self, mean_loss: f64, n: u64, top1: u64, top5: u64) {
        self.loss_sum += mean_loss * n as f64;
        self.n += n;
        self.top1 += top1;
        self.top5 += top5;
    }
    pub fn loss(&self) -> f64 {
        if self.n == 0 {
            f64::NAN
        } else {
            self.loss_sum / self.n as f64
        }
    }
    pub fn top1(&self) -> f64 {
        if self.n == 0 {
            f64::NAN
        } else {
            self.top1 as f64 / self.n as f64
        }
    }
    pub fn top5(&self) -> f64 {
        if self.n == 0 {
            f64::NAN
        } else {
            self.top5 as f64 / self.n as f64
        }
    }
}

/// Counts of samples whose label is the top-1 and within the top-k of `logits` (`[N, C]`).
pub fn topk_correct(
    logits: &tch::Tensor,
    labels: &tch::Tensor,
    k: i64,
) -> Result<(u64, u64), tch::TchError> {
    let classes = logits.size().get(1).copied().unwrap_or(1);
    let k = k.min(classes).max(1);
    let (_, idx) = logits.f_topk(k, 1, true, true)?;
    let hits = idx.f_eq_tensor(&labels.f_unsqueeze(1)?)?;
    let top1 = hits
        .f_narrow(1, 0, 1)?
        .f_sum(tch::Kind::Int64)?
        .f_int64_value(&[])?;
    let topk = hits.f_sum(tch::Kind::Int64)?.f_int64_value(&[])?;
    Ok((top1 as u64, topk as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(step: u64) -> Record {
        Record::Step(StepRecord {
            step,
            epoch: 0,
            batch: step as u32,
            loss: 1.0 / step as f64,
            lr: 1e-3,
        })
    }

    #[test]
    fn log_roundtrip_and_truncate() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("metrics.jsonl");
        let mut log = MetricsLog::open(&p).unwrap();
        for s in 1..=5 {
            log.write(&rec(s)).unwrap();
        }
        drop(log);
        let all = MetricsLog::read(&p).unwrap();
        assert_eq!(all.len(), 5);
        assert_eq!(all[2], rec(3));
        MetricsLog::truncate_after(&p, 3).unwrap();
        let kept = MetricsLog::read(&p).unwrap();
        assert_eq!(kept, vec![rec(1), rec(2), rec(3)]);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.lines().next().unwrap().contains("\"kind\":\"step\""));
    }

    #[test]
    fn bad_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.jsonl");
        std::fs::write(&p, "{\"kind\":\"step\",\"step\":1,\"epoch\":0,\"batch\":0,\"loss\":1,\"lr\":1}\nnot json\n").unwrap();
        let e = MetricsLog::read(&p).unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn topk_counts() {
        let logits = tch::Tensor::from_slice(&[
            0.1f32, 0.9, 0.0, 0.0, 0.0, 0.0, //
            0.5, 0.1, 0.2, 0.3, 0.4, 0.05, //
            0.0, 0.1, 0.2, 0.3, 0.5, 1.0,
        ])
        .reshape([3, 6]);
        // labels: 1 (top1 hit), 5 (rank 6: miss), 4 (rank 2: top-5 hit)
        let labels = tch::Tensor::from_slice(&[1i64, 5, 4]);
        let (t1, t5) = topk_correct(&logits, &labels, 5).unwrap();
        assert_eq!((t1, t5), (1, 2));
    }

    #[test]
    fn format_time() {
        assert_eq!(format_secs(65.4), "1:05");
        assert_eq!(format_secs(3725.0), "1:02:05");
    }
}
