//! Checkpoints that survive a kill.
//!
//! A checkpoint is a folder: `model.safetensors` (every VarStore variable,
//! BatchNorm running stats included), `meta.json` ([`ModelMeta`]: what is
//! needed to rebuild the model and preprocess for it), and for resumable ones
//! `state.json` ([`TrainState`]: epoch, batch, global step, running sums, best
//! metric), the optimizer's files and `ema.safetensors`. Folders are written
//! under a temporary name, every file fsynced, then renamed; the pointer files
//! `latest.json` / `best.json` in the checkpoints folder are replaced
//! atomically too, so a kill at any moment leaves the previous checkpoint intact.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::metrics::Accum;

/// Checkpoint failures.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("checkpoint {path}: {message}")]
    Format { path: PathBuf, message: String },
    #[error("checkpoint {path}: tensors: {source}")]
    Torch {
        path: PathBuf,
        source: tch::TchError,
    },
    #[error("no checkpoint in {0} (no latest.json): nothing to resume")]
    NoCheckpoint(PathBuf),
}

/// Bumped when the layout changes.
pub const FORMAT: u32 = 1;

/// What rebuilds the model for evaluation or prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    pub format: u32,
    pub arch: String,
    pub head: crate::config::HeadChoice,
    /// Base width (`tiny_cnn` only).
    pub width: u32,
    pub num_classes: u32,
    pub classes: Vec<String>,
    /// Eval crop side and resize ratio (shorter side = size * ratio).
    pub eval_size: u32,
    pub resize_ratio: f64,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

/// Where a run is, exactly, at a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    pub format: u32,
    /// Epoch to continue with (global over stages).
    pub epoch: u32,
    /// First batch of `epoch` still to do.
    pub batch: u32,
    /// Optimizer steps done.
    pub global_step: u64,
    /// Running training sums of the unfinished epoch.
    pub accum: Accum,
    /// Best monitored value so far.
    pub best: Option<f64>,
    pub seed: u64,
    /// Hash of the recipe's training-relevant text (a resume with another recipe is refused).
    pub recipe_hash: u64,
    /// Training time already spent (seconds).
    pub elapsed_secs: f64,
    /// Stage whose optimizer state is in the folder (None: no optimizer saved).
    pub opt_stage: Option<u32>,
    /// Whether `ema.safetensors` is in the folder.
    pub has_ema: bool,
}

/// `latest.json` / `best.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pointer {
    /// Folder name inside the checkpoints folder.
    pub dir: String,
    pub global_step: u64,
    pub metric: Option<String>,
    pub value: Option<f64>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `path` atomically: temp file in the same folder, fsync, rename, fsync the folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    // Directory fsync makes the rename durable; opening a folder read-only works on Unix.
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn fsync_file(path: &Path) -> Result<(), CheckpointError> {
    std::fs::OpenOptions::new()
        .read(true)
        .open(path)
        .and_then(|f| f.sync_all())
        .map_err(io(path))
}

/// Writes a JSON value to `path` (not atomic by itself: used inside a temp folder).
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), CheckpointError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| CheckpointError::Format {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut f = std::fs::File::create(path).map_err(io(path))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(io(path))
}

/// Reads a JSON file.
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, CheckpointError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    serde_json::from_str(&text).map_err(|e| CheckpointError::Format {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Saves a VarStore's variables as safetensors and fsyncs the file.
pub fn save_vars(vs: &tch::nn::VarStore, path: &Path) -> Result<(), CheckpointError> {
    vs.save(path).map_err(|source| CheckpointError::Torch {
        path: path.to_path_buf(),
        source,
    })?;
    fsync_file(path)
}

/// Loads every variable of `vs` from a safetensors file (names must all be present).
pub fn load_vars(vs: &mut tch::nn::VarStore, path: &Path) -> Result<(), CheckpointError> {
    if !path.exists() {
        return Err(CheckpointError::Format {
            path: path.to_path_buf(),
            message: "file missing".into(),
        });
    }
    vs.load(path).map_err(|source| CheckpointError::Torch {
        path: path.to_path_buf(),
        source,
    })
}

/// The checkpoints folder of a run.
pub fn checkpoints_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoints")
}

/// Builds a checkpoint folder: `fill` writes files into the temporary folder,
/// which is then renamed to `name` and published through the pointer file
/// `pointer` (`latest.json` or `best.json`). Older folders with the same
/// prefix (`step-` / `best-`) than the `keep` newest are removed.
pub fn publish(
    ckpt_dir: &Path,
    name: &str,
    pointer_file: &str,
    pointer: &Pointer,
    keep: usize,
    fill: impl FnOnce(&Path) -> Result<(), CheckpointError>,
) -> Result<PathBuf, CheckpointError> {
    std::fs::create_dir_all(ckpt_dir).map_err(io(ckpt_dir))?;
    let tmp = ckpt_dir.join(format!(".{name}.tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    std::fs::create_dir(&tmp).map_err(io(&tmp))?;
    fill(&tmp)?;
    sync_dir(&tmp).map_err(io(&tmp))?;
    let dst = ckpt_dir.join(name);
    if dst.exists() {
        // Same step published twice (e.g. resume then immediate stop): replace.
        std::fs::remove_dir_all(&dst).map_err(io(&dst))?;
    }
    std::fs::rename(&tmp, &dst).map_err(io(&dst))?;
    sync_dir(ckpt_dir).map_err(io(ckpt_dir))?;
    let text = serde_json::to_string_pretty(pointer).map_err(|e| CheckpointError::Format {
        path: ckpt_dir.join(pointer_file),
        message: e.to_string(),
    })?;
    let pointer_path = ckpt_dir.join(pointer_file);
    write_atomic(&pointer_path, text.as_bytes()).map_err(io(&pointer_path))?;
    prune(ckpt_dir, name, keep)?;
    Ok(dst)
}

fn prune(ckpt_dir: &Path, newest: &str, keep: usize) -> Result<(), CheckpointError> {
    let prefix = match newest.split_once('-') {
        Some((p, _)) => format!("{p}-"),
        None => return Ok(()),
    };
    let mut same: Vec<String> = std::fs::read_dir(ckpt_dir)
        .map_err(io(ckpt_dir))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&prefix))
        .collect();
    same.sort();
    let n = same.len();
    for old in same.into_iter().take(n.saturating_sub(keep.max(1))) {
        if old != newest {
            let p = ckpt_dir.join(&old);
            std::fs::remove_dir_all(&p).map_err(io(&p))?;
        }
    }
    Ok(())
}

/// Resolves a pointer file (`latest.json` / `best.json`) to its folder.
pub fn resolve(ckpt_dir: &Path, pointer_file: &str) -> Result<(PathBuf, Pointer), CheckpointError> {
    let p = ckpt_dir.join(pointer_file);
    if !p.exists() {
        return Err(CheckpointError::NoCheckpoint(ckpt_dir.to_path_buf()));
    }
    let ptr: Pointer = read_json(&p)?;
    if ptr.dir.contains(['/', '\\']) || ptr.dir.starts_with('.') {
        return Err(CheckpointError::Format {
            path: p,
            message: format!("pointer names a bad folder {:?}", ptr.dir),
        });
    }
    let dir = ckpt_dir.join(&ptr.dir);
    if !dir.is_dir() {
        return Err(CheckpointError::Format {
            path: p,
            message: format!("points to missing folder {}", dir.display()),
        });
    }
    Ok((dir, ptr))
}

/// Finds a model checkpoint folder from what a user passes to `eval`/`predict`:
/// a checkpoint folder itself (has `model.safetensors`), a run folder (its best,
/// else its latest), or a checkpoints folder.
pub fn find_model_dir(path: &Path) -> Result<PathBuf, CheckpointError> {
    if path.join("model.safetensors").is_file() {
        return Ok(path.to_path_buf());
    }
    for ckpt in [checkpoints_dir(path), path.to_path_buf()] {
        for ptr in ["best.json", "latest.json"] {
            if ckpt.join(ptr).is_file() {
                return resolve(&ckpt, ptr).map(|(d, _)| d);
            }
        }
    }
    Err(CheckpointError::Format {
        path: path.to_path_buf(),
        message: "not a checkpoint (no model.safetensors) nor a run folder with checkpoints".into(),
    })
}

/// FNV-1a 64 of bytes (recipe hash; stable across builds, unlike `DefaultHasher`).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ptr(dir: &str, step: u64) -> Pointer {
        Pointer {
            dir: dir.into(),
            global_step: step,
            metric: None,
            value: None,
        }
    }

    #[test]
    fn publish_resolve_prune() {
        let d = tempfile::tempdir().unwrap();
        let ck = d.path().join("checkpoints");
        for step in [1u64, 2, 3] {
            let name = format!("step-{step:08}");
            publish(&ck, &name, "latest.json", &ptr(&name, step), 2, |tmp| {
                std::fs::write(tmp.join("x.txt"), step.to_string()).map_err(io(tmp))
            })
            .unwrap();
        }
        let (dir, p) = resolve(&ck, "latest.json").unwrap();
        assert_eq!(p.global_step, 3);
        assert_eq!(std::fs::read_to_string(dir.join("x.txt")).unwrap(), "3");
        assert!(!ck.join("step-00000001").exists(), "oldest pruned");
        assert!(ck.join("step-00000002").exists(), "keep = 2");
        // no temp folders left
        let leftovers: Vec<_> = std::fs::read_dir(&ck)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn failed_fill_keeps_previous() {
        let d = tempfile::tempdir().unwrap();
        let ck = d.path().join("c");
        publish(&ck, "step-1", "latest.json", &ptr("step-1", 1), 2, |_| {
            Ok(())
        })
        .unwrap();
        let r = publish(&ck, "step-2", "latest.json", &ptr("step-2", 2), 2, |p| {
            Err(CheckpointError::Format {
                path: p.to_path_buf(),
                message: "simulated crash".into(),
            })
        });
        assert!(r.is_err());
        let (_, p) = resolve(&ck, "latest.json").unwrap();
        assert_eq!(p.dir, "step-1");
    }

    #[test]
    fn missing_and_bad_pointer() {
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(
            resolve(d.path(), "latest.json"),
            Err(CheckpointError::NoCheckpoint(_))
        ));
        std::fs::write(
            d.path().join("latest.json"),
            r#"{"dir":"../etc","global_step":1,"metric":null,"value":null}"#,
        )
        .unwrap();
        let e = resolve(d.path(), "latest.json").unwrap_err().to_string();
        assert!(e.contains("bad folder"), "{e}");
    }

    #[test]
    fn vars_roundtrip() {
        let d = tempfile::tempdir().unwrap();
        let vs = tch::nn::VarStore::new(tch::Device::Cpu);
        let _w = vs.root().randn("w", &[3, 4], 0.0, 1.0);
        let p = d.path().join("m.safetensors");
        save_vars(&vs, &p).unwrap();
        let mut vs2 = tch::nn::VarStore::new(tch::Device::Cpu);
        let w2 = vs2.root().zeros("w", &[3, 4]);
        load_vars(&mut vs2, &p).unwrap();
        let w = vs.variables()["w"].shallow_clone();
        assert!(w.equal(&w2));
    }
}
