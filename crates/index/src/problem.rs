//! What indexing found wrong: one [`Problem`] per file (or list line).

use std::fmt;
use std::path::PathBuf;

use crate::probe::{ImageFormat, ProbeError};
use crate::{Layout, Split};

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; the file is still indexed (or a duplicate is indexed once).
    Warning,
    /// The file is excluded from the index.
    Error,
}

/// One thing wrong with a dataset.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// Path relative to the dataset root (for list problems: the list file).
    pub path: PathBuf,
    pub kind: ProblemKind,
}

/// The kinds of problem indexing detects.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProblemKind {
    /// Listed (or expected) but not on disk.
    Missing,
    /// Could not be opened or read.
    Unreadable { error: String },
    /// Zero bytes long.
    Empty,
    /// Content is not a recognised image (e.g. text named `.jpg`).
    WrongMagic,
    /// A real image whose extension names another format (e.g. PNG named
    /// `.jpg`): a warning; the file is indexed with its real format.
    ExtensionMismatch {
        extension: String,
        actual: ImageFormat,
    },
    /// Recognised format, truncated or malformed header.
    BadHeader { format: ImageFormat, reason: String },
    /// Width or height is zero.
    ZeroDimension { width: u32, height: u32 },
    /// Side over [`crate::MAX_SIDE`] or area over [`crate::MAX_PIXELS`].
    HugeDimension { width: u32, height: u32 },
    /// Listed more than once: the first listing is kept, this one ignored.
    Duplicate { first: Split, again: Split },
    /// On disk under the image folder but in no list: not indexed.
    Unlisted,
    /// A list line names a class that is not in the class list.
    UnknownClass { class: String },
    /// A list line that cannot be parsed.
    BadListLine { line_no: usize, line: String },
    /// A file that is not an image by its extension (ImageFolder layout): not indexed.
    NotAnImage,
    /// A file outside any class folder (ImageFolder layout): not indexed.
    OutsideClassFolder,
    /// A class (the problem's path is its name) with no image in a split
    /// that has images (e.g. an empty class folder, a class only in `test/`):
    /// a warning; the class keeps its id.
    ClassWithoutImages { split: Split },
    /// The root is the image folder of a dataset whose lists define the
    /// splits (e.g. `food-101/images`): indexed as an ImageFolder, so every
    /// image is in train and the official test list is ignored. A warning.
    InsideListedDataset { parent: PathBuf, layout: Layout },
}

impl ProblemKind {
    /// Error (excluded from the index) or warning (informational).
    pub fn severity(&self) -> Severity {
        match self {
            ProblemKind::ExtensionMismatch { .. }
            | ProblemKind::Duplicate { .. }
            | ProblemKind::Unlisted
            | ProblemKind::NotAnImage
            | ProblemKind::OutsideClassFolder
            | ProblemKind::ClassWithoutImages { .. }
            | ProblemKind::InsideListedDataset { .. } => Severity::Warning,
            _ => Severity::Error,
        }
    }

    /// Whether the file (or line) with this problem is left out of the index.
    /// Everything except an extension mismatch is left out (a duplicate
    /// listing is left out; its first listing is kept); a class without
    /// images concerns no file.
    pub fn excluded(&self) -> bool {
        !matches!(self, ProblemKind::ExtensionMismatch { .. }) && !self.is_dataset_level()
    }

    /// About the dataset as a whole (a class, the chosen root), not one file:
    /// no per-file listing shows it, so callers print it themselves.
    pub fn is_dataset_level(&self) -> bool {
        matches!(
            self,
            ProblemKind::ClassWithoutImages { .. } | ProblemKind::InsideListedDataset { .. }
        )
    }

    /// Short stable name (the JSON `kind` tag).
    pub fn name(&self) -> &'static str {
        match self {
            ProblemKind::Missing => "missing",
            ProblemKind::Unreadable { .. } => "unreadable",
            ProblemKind::Empty => "empty",
            ProblemKind::WrongMagic => "wrong_magic",
            ProblemKind::ExtensionMismatch { .. } => "extension_mismatch",
            ProblemKind::BadHeader { .. } => "bad_header",
            ProblemKind::ZeroDimension { .. } => "zero_dimension",
            ProblemKind::HugeDimension { .. } => "huge_dimension",
            ProblemKind::Duplicate { .. } => "duplicate",
            ProblemKind::Unlisted => "unlisted",
            ProblemKind::UnknownClass { .. } => "unknown_class",
            ProblemKind::BadListLine { .. } => "bad_list_line",
            ProblemKind::NotAnImage => "not_an_image",
            ProblemKind::OutsideClassFolder => "outside_class_folder",
            ProblemKind::ClassWithoutImages { .. } => "class_without_images",
            ProblemKind::InsideListedDataset { .. } => "inside_listed_dataset",
        }
    }
}

impl From<ProbeError> for ProblemKind {
    fn from(e: ProbeError) -> Self {
        match e {
            ProbeError::Missing => ProblemKind::Missing,
            ProbeError::Unreadable(error) => ProblemKind::Unreadable { error },
            ProbeError::Empty => ProblemKind::Empty,
            ProbeError::WrongMagic => ProblemKind::WrongMagic,
            ProbeError::BadHeader { format, reason } => ProblemKind::BadHeader { format, reason },
        }
    }
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProblemKind::Missing => f.write_str("listed but missing"),
            ProblemKind::Unreadable { error } => write!(f, "unreadable: {error}"),
            ProblemKind::Empty => f.write_str("empty file"),
            ProblemKind::WrongMagic => f.write_str("not an image (unrecognised magic bytes)"),
            ProblemKind::ExtensionMismatch { extension, actual } => {
                write!(
                    f,
                    "extension .{extension} but content is {actual} (indexed as {actual})"
                )
            }
            ProblemKind::BadHeader { format, reason } => write!(f, "bad {format} header: {reason}"),
            ProblemKind::ZeroDimension { width, height } => {
                write!(f, "zero dimension ({width}x{height})")
            }
            ProblemKind::HugeDimension { width, height } => write!(
                f,
                "huge dimensions ({width}x{height}; limit {} px a side, {} MP)",
                crate::MAX_SIDE,
                crate::MAX_PIXELS / 1_000_000
            ),
            ProblemKind::Duplicate { first, again } => write!(
                f,
                "listed again in {} (first listed in {}; kept once)",
                again.name(),
                first.name()
            ),
            ProblemKind::Unlisted => f.write_str("present but not listed (not indexed)"),
            ProblemKind::UnknownClass { class } => write!(f, "unknown class {class:?}"),
            ProblemKind::BadListLine { line_no, line } => {
                write!(f, "line {line_no}: cannot parse {line:?}")
            }
            ProblemKind::NotAnImage => f.write_str("not an image file extension (not indexed)"),
            ProblemKind::OutsideClassFolder => {
                f.write_str("file outside any class folder (not indexed)")
            }
            ProblemKind::ClassWithoutImages { split } => {
                write!(f, "class has no images in the {} split", split.name())
            }
            ProblemKind::InsideListedDataset { parent, layout } => write!(
                f,
                "this folder holds the images of the {} dataset at {}: indexed as an \
                 ImageFolder, every image is in train and the official test list is ignored; \
                 index {} for the official splits",
                layout.name(),
                parent.display(),
                parent.display()
            ),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.kind.severity() {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        write!(f, "{sev}: {}: {}", self.path.display(), self.kind)
    }
}
