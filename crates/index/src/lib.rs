//! Dataset indexing: detect a dataset layout, list its samples and splits,
//! probe every file's header, and report what is wrong.
//!
//! Seam (read by `brigade-store` and `brigade-loader`): an [`Index`] is a list
//! of [`Sample`]s (path relative to the dataset root, class, split, probed
//! geometry) plus class names, saved as a versioned binary file.
//!
//! * Layouts ([`Layout`]): the official Food-101 archive (the root may be the
//!   `food-101` folder or its parent), the fastai copy (lists at the root),
//!   and a generic ImageFolder (optionally with `train/`, `val/`|`valid/`,
//!   `test/`).
//! * Splits: the official train/test lists; a stratified validation hold-out
//!   from train (`valid_pct`); a stratified sample (`sample_frac`). Both are
//!   chosen by `seed` alone: the same seed gives the same split.
//! * Every file's header is probed in parallel ([`probe::probe_file`]); what is
//!   wrong becomes a [`Problem`] in the [`Report`]. Problem files are left out
//!   of the index, never silently.
//! * [`manifest`]: what a correct copy of a dataset contains, and
//!   [`verify_against`] to list how an index differs.
//!
//! ```
//! use brigade_index::{Index, IndexOptions, Split};
//!
//! let dir = tempfile::tempdir()?;
//! for class in ["cat", "dog"] {
//!     std::fs::create_dir_all(dir.path().join(class))?;
//!     for i in 0..4 {
//!         image::RgbImage::new(8, 6).save(dir.path().join(class).join(format!("{i}.png")))?;
//!     }
//! }
//! let opts = IndexOptions { valid_pct: 0.25, seed: 7, ..Default::default() };
//! let (index, report) = Index::build(dir.path(), &opts)?;
//! assert_eq!(index.classes, ["cat", "dog"]);
//! assert_eq!(index.class_counts(Split::Valid), [1, 1]);
//! assert_eq!((index.samples[0].width, index.samples[0].height), (8, 6));
//! assert!(report.problems.is_empty());
//!
//! let file = dir.path().join("index.bin");
//! index.save(&file)?;
//! let again = Index::load(&file)?;
//! assert_eq!(again, index);
//! assert_eq!(again.fingerprint(), index.fingerprint());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

mod error;
pub mod manifest;
pub mod probe;
mod problem;
mod scan;

pub use error::{IndexError, IndexFileError, ManifestError};
pub use manifest::{verify_against, Manifest, Mismatch, Verification};
pub use probe::{probe_file, ImageFormat, Probe, ProbeError};
pub use problem::{Problem, ProblemKind, Severity};
pub use scan::{IndexOptions, Layout, Report};

/// Largest accepted width or height; larger headers are a [`ProblemKind::HugeDimension`].
pub const MAX_SIDE: u32 = 16384;
/// Largest accepted pixel count (100 MP).
pub const MAX_PIXELS: u64 = 100_000_000;

/// Index of a class in [`Index::classes`].
pub type ClassId = u32;
/// Index of a sample in [`Index::samples`].
pub type SampleId = u32;

/// Which split a sample belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Split {
    Train,
    Valid,
    Test,
}

impl Split {
    /// Every split, in order.
    pub const ALL: [Split; 3] = [Split::Train, Split::Valid, Split::Test];

    /// `train`, `valid` or `test`.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Valid => "valid",
            Split::Test => "test",
        }
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One indexed image.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    /// Path relative to [`Index::root`].
    pub path: PathBuf,
    pub class: ClassId,
    pub split: Split,
    /// Geometry read from the file header (no full decode).
    pub width: u32,
    pub height: u32,
    /// File length in bytes when indexed (part of the fingerprint).
    pub file_len: u64,
}

/// A dataset index.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Index {
    pub root: PathBuf,
    pub classes: Vec<String>,
    pub samples: Vec<Sample>,
}

/// Magic bytes at the start of an index file.
pub const INDEX_MAGIC: [u8; 8] = *b"BRGIDX\r\n";
/// Version of the index file layout this build writes and reads.
pub const INDEX_VERSION: u32 = 1;
const HEADER_LEN: usize = 8 + 4 + 8 + 4;

struct Fnv(u64);
impl Fnv {
    fn bytes(&mut self, b: &[u8]) {
        for &x in b {
            self.0 ^= u64::from(x);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01B3);
        }
    }
    fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }
    fn prefixed(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        self.bytes(b);
    }
}

impl Index {
    /// Detects the layout under `root`, lists and probes every file, and
    /// assigns splits. Per-file trouble goes into the [`Report`]; an `Err`
    /// means the dataset could not be read at all.
    pub fn build(root: &Path, opts: &IndexOptions) -> Result<(Index, Report), IndexError> {
        scan::build(root, opts)
    }

    /// Absolute (root-joined) path of a sample.
    pub fn abs_path(&self, sample: &Sample) -> PathBuf {
        self.root.join(&sample.path)
    }

    /// Ids of the samples in `split`, ascending.
    pub fn split_ids(&self, split: Split) -> Vec<SampleId> {
        self.samples
            .iter()
            .enumerate()
            .filter(|(_, s)| s.split == split)
            .map(|(i, _)| i as SampleId)
            .collect()
    }

    /// Number of samples of each class in `split` (one entry per class).
    pub fn class_counts(&self, split: Split) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for s in self.samples.iter().filter(|s| s.split == split) {
            if let Some(c) = counts.get_mut(s.class as usize) {
                *c += 1;
            }
        }
        counts
    }

    /// A stable 64-bit hash (FNV-1a) of the class names and every sample's
    /// path, class, split, geometry and file length. Not the root: moving a
    /// dataset keeps its fingerprint.
    pub fn fingerprint(&self) -> u64 {
        let mut h = Fnv(0xCBF2_9CE4_8422_2325);
        h.prefixed(b"brigade-index-fingerprint-v1");
        h.u64(self.classes.len() as u64);
        for c in &self.classes {
            h.prefixed(c.as_bytes());
        }
        h.u64(self.samples.len() as u64);
        for s in &self.samples {
            h.prefixed(s.path.as_os_str().as_encoded_bytes());
            h.u64(u64::from(s.class));
            h.u64(s.split as u64);
            h.u64(u64::from(s.width));
            h.u64(u64::from(s.height));
            h.u64(s.file_len);
        }
        h.0
    }

    /// Writes the index atomically: a temp file in the same folder, fsynced,
    /// then renamed over `path`. Layout: magic, version (u32 LE), payload
    /// length (u64 LE), crc32 of the payload (u32 LE), postcard payload.
    pub fn save(&self, path: &Path) -> Result<(), IndexFileError> {
        let io = |source| IndexFileError::Io {
            path: path.to_path_buf(),
            source,
        };
        let payload = postcard::to_allocvec(self).map_err(|source| IndexFileError::Encode {
            path: path.to_path_buf(),
            source,
        })?;
        let mut bytes = Vec::with_capacity(HEADER_LEN + payload.len());
        bytes.extend_from_slice(&INDEX_MAGIC);
        bytes.extend_from_slice(&INDEX_VERSION.to_le_bytes());
        bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        bytes.extend_from_slice(&payload);
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "index".into());
        let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let result = (|| {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            drop(f);
            fs::rename(&tmp, path)
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(io(e));
        }
        // Make the rename durable; some filesystems refuse to fsync a folder,
        // which only weakens durability, so that error is not fatal.
        if let Ok(d) = fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Reads an index written by [`Index::save`], checking magic, version,
    /// length, checksum and internal consistency.
    pub fn load(path: &Path) -> Result<Index, IndexFileError> {
        let p = || path.to_path_buf();
        let bytes = fs::read(path).map_err(|source| IndexFileError::Io { path: p(), source })?;
        let magic_ok = bytes.len() >= 8 && bytes[..8] == INDEX_MAGIC;
        let magic_prefix = !bytes.is_empty() && bytes.len() < 8 && INDEX_MAGIC.starts_with(&bytes);
        if !magic_ok && !magic_prefix {
            return Err(IndexFileError::BadMagic { path: p() });
        }
        if bytes.len() < HEADER_LEN {
            return Err(IndexFileError::Truncated {
                path: p(),
                len: bytes.len() as u64,
                expected: HEADER_LEN as u64,
            });
        }
        let le4 = |o: usize| [bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]];
        let version = u32::from_le_bytes(le4(8));
        if version != INDEX_VERSION {
            return Err(IndexFileError::UnsupportedVersion {
                path: p(),
                found: version,
                supported: INDEX_VERSION,
            });
        }
        let mut len8 = [0u8; 8];
        len8.copy_from_slice(&bytes[12..20]);
        let len = u64::from_le_bytes(len8);
        let stored = u32::from_le_bytes(le4(20));
        let expected = HEADER_LEN as u64 + len;
        if bytes.len() as u64 != expected {
            return Err(IndexFileError::Truncated {
                path: p(),
                len: bytes.len() as u64,
                expected,
            });
        }
        let payload = &bytes[HEADER_LEN..];
        let computed = crc32fast::hash(payload);
        if computed != stored {
            return Err(IndexFileError::Checksum {
                path: p(),
                stored,
                computed,
            });
        }
        let index: Index = postcard::from_bytes(payload)
            .map_err(|source| IndexFileError::Decode { path: p(), source })?;
        if let Some((i, s)) = index
            .samples
            .iter()
            .enumerate()
            .find(|(_, s)| s.class as usize >= index.classes.len())
        {
            return Err(IndexFileError::Inconsistent {
                path: p(),
                problem: format!(
                    "sample {i} has class {} but there are {} classes",
                    s.class,
                    index.classes.len()
                ),
            });
        }
        Ok(index)
    }
}
