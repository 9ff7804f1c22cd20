//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in `brigade-optim`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// libtorch reported an error (shape/device mismatch, out of memory, ...).
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// A fused libtorch kernel (through brigade-torch-ext) failed.
    #[error("fused optimizer kernel: {0}")]
    Fused(#[from] brigade_torch_ext::Error),
    /// A group index past the end.
    #[error("no parameter group {group}: the optimizer has {len} group(s)")]
    NoSuchGroup {
        /// the index asked for
        group: usize,
        /// how many groups there are
        len: usize,
    },
    /// Some VarStore variables matched no layer-group prefix.
    #[error("{} parameter(s) match no layer group: {}", names.len(), names.join(", "))]
    Unassigned {
        /// the unmatched variable names
        names: Vec<String>,
    },
    /// The same parameter name appears twice.
    #[error("parameter `{0}` appears twice in the parameter groups")]
    DuplicateParam(String),
    /// A hyper-parameter is out of range.
    #[error("invalid hyper-parameter: {0}")]
    Config(String),
    /// A saved state does not fit this optimizer (kind, groups, names, shapes).
    #[error("optimizer state does not match: {0}")]
    StateMismatch(String),
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// the file
        path: PathBuf,
        /// what the OS said
        source: std::io::Error,
    },
    /// A JSON state file is malformed.
    #[error("{}: invalid JSON: {source}", path.display())]
    Json {
        /// the file
        path: PathBuf,
        /// the parse error
        source: serde_json::Error,
    },
    /// A safetensors state file could not be read or written.
    #[error("{}: {msg}", path.display())]
    Tensors {
        /// the file
        path: PathBuf,
        /// the problem
        msg: String,
    },
    /// Drawing a plot failed.
    #[error("{}: cannot draw plot: {msg}", path.display())]
    Plot {
        /// the PNG file
        path: PathBuf,
        /// the problem
        msg: String,
    },
    /// The training-step closure given to the LR finder failed.
    #[error("LR finder step {iteration} (lr {lr:e}) failed: {source}")]
    Step {
        /// iteration of the sweep
        iteration: usize,
        /// learning rate of that iteration
        lr: f64,
        /// the closure's error
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
