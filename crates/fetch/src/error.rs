use std::io;
use std::path::PathBuf;

/// Everything that can go wrong fetching or extracting. Each variant names
/// the file or URL and the problem.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The server could not be reached at all.
    #[error("cannot reach {url}: {cause}\n\n{advice}")]
    Offline {
        url: String,
        cause: String,
        /// A paragraph telling the user where to put the file by hand.
        advice: String,
    },
    #[error("{url}: HTTP status {status}")]
    Http { url: String, status: u16 },
    #[error("{url}: {message}")]
    Transfer { url: String, message: String },
    #[error("{url}: gave up after {attempts} attempts; the partial download is kept at {part} and the next run resumes it; last error: {last}")]
    TooManyAttempts {
        url: String,
        attempts: u32,
        part: PathBuf,
        last: String,
    },
    #[error("{path}: {algorithm} mismatch: expected {expected}, got {got}{removed}")]
    Checksum {
        path: PathBuf,
        algorithm: &'static str,
        expected: String,
        got: String,
        /// Text saying the partial file was deleted (empty when not).
        removed: &'static str,
    },
    #[error("{path}: size mismatch: expected {expected} bytes, got {got}")]
    Size {
        path: PathBuf,
        expected: u64,
        got: u64,
    },
    #[error("invalid expectation: {0}")]
    BadExpectation(String),
    #[error(
        "{archive}: unsafe entry {entry:?}: {reason}; nothing was extracted to the destination"
    )]
    UnsafeEntry {
        archive: PathBuf,
        entry: String,
        reason: String,
    },
    #[error("{archive}: corrupt archive: {source}")]
    Archive {
        archive: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: exists but has no .complete marker (a half-finished extraction or someone else's folder); remove it and retry")]
    Incomplete { path: PathBuf },
}

impl FetchError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        FetchError::Io {
            path: path.into(),
            source,
        }
    }
}
