//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in the zoo: every variant names the file (when
/// there is one) and the problem.
#[derive(Debug, thiserror::Error)]
pub enum ZooError {
    /// An architecture name that is not in [`crate::Arch`].
    #[error("unknown architecture {0:?} (known: {1})")]
    UnknownArch(String, String),
    /// A head name that is not in [`crate::HeadKind`].
    #[error("unknown head {0:?} (known: linear, fastai, fastai-bn-final)")]
    UnknownHead(String),
    /// An input tensor the network cannot take (wrong rank, channels, size
    /// or dtype).
    #[error("bad input to {arch}: {problem}")]
    BadInput {
        /// The model's architecture.
        arch: String,
        /// What is wrong with the input.
        problem: String,
    },
    /// Invalid construction arguments (class count, dropout ...).
    #[error("invalid model configuration: {0}")]
    Config(String),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a weights file this crate can read, or it is damaged.
    #[error("{path}: {problem}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// The pickle inside a `.pth` references a global outside the whitelist
    /// (nothing is ever executed: the file is refused).
    #[error("{path}: pickle references the forbidden global {module}.{name} (only torch tensor/storage rebuilders and collections.OrderedDict are allowed)")]
    ForbiddenGlobal {
        /// The file.
        path: PathBuf,
        /// The global's module.
        module: String,
        /// The global's name.
        name: String,
    },
    /// The weights do not fit the model (wrong architecture or shapes).
    #[error("{path}: weights do not fit {arch}: {summary}")]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// The model's architecture.
        arch: String,
        /// Missing / unexpected / mismatched keys, by name.
        summary: String,
    },
    /// A checkpoint's metadata disagrees with the model it is loaded into.
    #[error("{path}: checkpoint metadata {key}={found:?} but the model has {expected:?}")]
    Metadata {
        /// The file.
        path: PathBuf,
        /// The metadata key.
        key: String,
        /// The model's value.
        expected: String,
        /// The checkpoint's value.
        found: String,
    },
    /// A weights name that is neither a known name nor an existing file.
    #[error(
        "{0:?} is neither a known weights name (see `brigade weights list`) nor an existing file"
    )]
    UnknownWeights(String),
    /// A known weights name whose file is not in the cache yet.
    #[error("weights {name:?} are not downloaded ({path} does not exist): run `brigade weights fetch {name}`")]
    NotDownloaded {
        /// The weights name.
        name: String,
        /// Where the file would be.
        path: PathBuf,
    },
    /// A downloaded file whose checksum does not match the published one.
    #[error("{path}: sha256 {found} does not start with the published prefix {expected}")]
    Checksum {
        /// The file.
        path: PathBuf,
        /// The published prefix.
        expected: String,
        /// The file's sha256.
        found: String,
    },
    /// An error from libtorch.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

/// Shorthand for results of this crate.
pub type Result<T, E = ZooError> = std::result::Result<T, E>;

pub(crate) fn bad(path: &std::path::Path, problem: impl Into<String>) -> ZooError {
    ZooError::BadFile {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> ZooError {
    ZooError::Io {
        path: path.to_path_buf(),
        source,
    }
}
