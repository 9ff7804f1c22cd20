//! Errors of this crate. Each names the file and the problem.

use std::io;
use std::path::PathBuf;

/// Building an index failed as a whole (per-file trouble is a
/// [`crate::Problem`] in the report instead).
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: not a directory")]
    NotADirectory { path: PathBuf },
    #[error("{path}: required file is missing ({what})")]
    MissingFile { path: PathBuf, what: &'static str },
    #[error("{path}: no layout detected: no meta/classes.txt, no classes.txt + train.txt, and no class folders with images")]
    NoLayout { path: PathBuf },
    #[error("{path}: line {line_no}: {problem}")]
    BadClassList {
        path: PathBuf,
        line_no: usize,
        problem: String,
    },
    #[error("invalid option {option}: {problem}")]
    BadOption {
        option: &'static str,
        problem: String,
    },
}

impl IndexError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        IndexError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Reading or writing an index file failed.
#[derive(Debug, thiserror::Error)]
pub enum IndexFileError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: not a brigade index file (bad magic)")]
    BadMagic { path: PathBuf },
    #[error("{path}: index file version {found} is not supported (this build reads version {supported})")]
    UnsupportedVersion {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("{path}: truncated index file ({len} bytes, header says {expected})")]
    Truncated {
        path: PathBuf,
        len: u64,
        expected: u64,
    },
    #[error("{path}: checksum mismatch (stored crc32 {stored:08x}, computed {computed:08x}): the file is corrupt")]
    Checksum {
        path: PathBuf,
        stored: u32,
        computed: u32,
    },
    #[error("{path}: cannot decode index payload: {source}")]
    Decode {
        path: PathBuf,
        #[source]
        source: postcard::Error,
    },
    #[error("{path}: cannot encode index: {source}")]
    Encode {
        path: PathBuf,
        #[source]
        source: postcard::Error,
    },
    #[error("{path}: index payload is inconsistent: {problem}")]
    Inconsistent { path: PathBuf, problem: String },
}

/// A manifest is invalid.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{origin}: {source}")]
    Io {
        origin: String,
        #[source]
        source: io::Error,
    },
    #[error("{origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("{origin}: key `{key}`: {problem}")]
    Invalid {
        origin: String,
        key: &'static str,
        problem: String,
    },
}
