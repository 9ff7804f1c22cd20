//! Errors of the store crate. Each names the file and the problem.

use std::path::PathBuf;

/// Why a store could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a brigade store (bad magic bytes)")]
    NotAStore { path: PathBuf },
    #[error("{path} is an unfinished store (header never written: the pack was interrupted); run `brigade pack` again")]
    Unfinished { path: PathBuf },
    #[error(
        "{path}: store layout version {found}, this build reads version {supported}; re-pack it"
    )]
    UnsupportedVersion {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("{path} is truncated: {len} bytes, the header says {expected}; re-pack it")]
    Truncated {
        path: PathBuf,
        len: u64,
        expected: u64,
    },
    #[error("{path} is corrupt: {detail}; re-pack it")]
    Corrupt { path: PathBuf, detail: String },
    #[error(
        "{path} was packed from a different dataset index (store fingerprint {store:016x}, \
         index {index:016x}: files were added, removed or changed since); \
         re-run `brigade pack` on this dataset to rebuild it"
    )]
    FingerprintMismatch {
        path: PathBuf,
        store: u64,
        index: u64,
    },
    #[error("{path}: record {index} out of range (store holds {len})")]
    OutOfRange {
        path: PathBuf,
        index: usize,
        len: usize,
    },
    #[error("invalid pack options: {0}")]
    Options(String),
    #[error("{path}: cannot encode record for sample {sample}: {detail}")]
    Encode {
        path: PathBuf,
        sample: u32,
        detail: String,
    },
    #[error(
        "packing {path} interrupted after {done} of {total} samples; \
         run the same command again to resume from {partial}"
    )]
    Interrupted {
        path: PathBuf,
        partial: PathBuf,
        done: usize,
        total: usize,
    },
}

impl StoreError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> StoreError {
        let path = path.into();
        move |source| StoreError::Io { path, source }
    }
}
