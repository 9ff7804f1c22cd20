//! Dataset manifests (`data-manifests/*.toml`): where a dataset comes from,
//! its checksums, and what a correct copy contains; [`verify_against`]
//! reports exactly how an [`Index`] differs.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::ManifestError;
use crate::{Index, Split};

/// The Food-101 manifest, embedded in the binary.
pub const FOOD101_TOML: &str = include_str!("../../../data-manifests/food-101.toml");

/// The manifest format version this build reads.
pub const MANIFEST_FORMAT_VERSION: u32 = 1;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    name: String,
    format_version: u32,
    source: RawSource,
    dataset: RawDataset,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    url: String,
    md5: Option<String>,
    sha256: Option<String>,
    size: Option<u64>,
    archive_name: String,
    top_folder: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDataset {
    layout: String,
    classes: u32,
    train_per_class: Option<u32>,
    test_per_class: Option<u32>,
    total_images: u64,
    max_side: Option<u32>,
    class_names: Option<Vec<String>>,
}

/// Where a dataset's archive comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub url: String,
    /// Lower-case hex.
    pub md5: Option<String>,
    /// Lower-case hex.
    pub sha256: Option<String>,
    /// Archive size in bytes.
    pub size: Option<u64>,
    /// File name to store the archive under.
    pub archive_name: String,
    /// The archive's single top-level folder, if it has one.
    pub top_folder: Option<String>,
}

/// What a complete, correct copy of the dataset contains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    /// `food101`, `fastai` or `image_folder`.
    pub layout: String,
    pub classes: u32,
    /// Training images per class (train + any held-out validation).
    pub train_per_class: Option<u32>,
    pub test_per_class: Option<u32>,
    pub total_images: u64,
    /// Longest image side.
    pub max_side: Option<u32>,
    /// The class names, when the manifest lists them.
    pub class_names: Option<Vec<String>>,
}

/// A validated dataset manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub name: String,
    pub source: Source,
    pub dataset: Expectation,
}

fn check_hex(
    origin: &str,
    key: &'static str,
    value: Option<String>,
    len: usize,
) -> Result<Option<String>, ManifestError> {
    let Some(v) = value else { return Ok(None) };
    let v = v.to_ascii_lowercase();
    if v.len() != len || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ManifestError::Invalid {
            origin: origin.to_string(),
            key,
            problem: format!("{v:?} is not {len} hex digits"),
        });
    }
    Ok(Some(v))
}

impl Manifest {
    /// The embedded Food-101 manifest.
    pub fn food101() -> Result<Manifest, ManifestError> {
        Manifest::parse(FOOD101_TOML, "embedded food-101.toml")
    }

    /// Reads and validates a manifest file.
    pub fn from_file(path: &Path) -> Result<Manifest, ManifestError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Io {
            origin: origin.clone(),
            source,
        })?;
        Manifest::parse(&text, &origin)
    }

    /// Parses and validates manifest text; `origin` names it in errors.
    /// Unknown keys are rejected (the error names the key).
    pub fn parse(text: &str, origin: &str) -> Result<Manifest, ManifestError> {
        let raw: RawManifest = toml::from_str(text).map_err(|e| ManifestError::Parse {
            origin: origin.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let invalid = |key: &'static str, problem: String| ManifestError::Invalid {
            origin: origin.to_string(),
            key,
            problem,
        };
        if raw.format_version != MANIFEST_FORMAT_VERSION {
            return Err(invalid(
                "format_version",
                format!(
                    "{} is not supported (this build reads {MANIFEST_FORMAT_VERSION})",
                    raw.format_version
                ),
            ));
        }
        if raw.name.trim().is_empty() {
            return Err(invalid("name", "must not be empty".into()));
        }
        let s = raw.source;
        if !(s.url.starts_with("http://") || s.url.starts_with("https://")) {
            return Err(invalid(
                "source.url",
                format!("{:?} is not an http(s) URL", s.url),
            ));
        }
        let md5 = check_hex(origin, "source.md5", s.md5, 32)?;
        let sha256 = check_hex(origin, "source.sha256", s.sha256, 64)?;
        if s.archive_name.is_empty()
            || s.archive_name.contains('/')
            || s.archive_name.contains('\\')
            || s.archive_name.starts_with('.')
        {
            return Err(invalid(
                "source.archive_name",
                format!("{:?} is not a plain file name", s.archive_name),
            ));
        }
        if let Some(t) = &s.top_folder {
            if t.is_empty() || t.contains('/') || t.contains('\\') || t.starts_with('.') {
                return Err(invalid(
                    "source.top_folder",
                    format!("{t:?} is not a plain folder name"),
                ));
            }
        }
        let d = raw.dataset;
        if !matches!(d.layout.as_str(), "food101" | "fastai" | "image_folder") {
            return Err(invalid(
                "dataset.layout",
                format!(
                    "{:?} is not one of \"food101\", \"fastai\", \"image_folder\"",
                    d.layout
                ),
            ));
        }
        if d.classes == 0 {
            return Err(invalid("dataset.classes", "must be at least 1".into()));
        }
        if let Some(names) = &d.class_names {
            if names.len() != d.classes as usize {
                return Err(invalid(
                    "dataset.class_names",
                    format!(
                        "lists {} names but dataset.classes is {}",
                        names.len(),
                        d.classes
                    ),
                ));
            }
            let unique: BTreeSet<&String> = names.iter().collect();
            if unique.len() != names.len() {
                return Err(invalid("dataset.class_names", "lists a name twice".into()));
            }
        }
        if let (Some(tr), Some(te)) = (d.train_per_class, d.test_per_class) {
            let expected = u64::from(d.classes) * (u64::from(tr) + u64::from(te));
            if expected != d.total_images {
                return Err(invalid(
                    "dataset.total_images",
                    format!(
                        "{} but classes × (train_per_class + test_per_class) = {expected}",
                        d.total_images
                    ),
                ));
            }
        }
        if d.max_side == Some(0) {
            return Err(invalid("dataset.max_side", "must be at least 1".into()));
        }
        Ok(Manifest {
            name: raw.name,
            source: Source {
                url: s.url,
                md5,
                sha256,
                size: s.size,
                archive_name: s.archive_name,
                top_folder: s.top_folder,
            },
            dataset: Expectation {
                layout: d.layout,
                classes: d.classes,
                train_per_class: d.train_per_class,
                test_per_class: d.test_per_class,
                total_images: d.total_images,
                max_side: d.max_side,
                class_names: d.class_names,
            },
        })
    }
}

/// One way an index differs from its manifest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Mismatch {
    ClassCount {
        expected: u32,
        found: usize,
    },
    MissingClasses {
        classes: Vec<String>,
    },
    ExtraClasses {
        classes: Vec<String>,
    },
    /// `split` is `train` (train + valid) or `test`.
    PerClassCount {
        class: String,
        split: &'static str,
        expected: u32,
        found: usize,
    },
    Total {
        expected: u64,
        found: usize,
    },
    Oversized {
        max_side: u32,
        count: usize,
        examples: Vec<PathBuf>,
    },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::ClassCount { expected, found } => {
                write!(f, "class count: expected {expected}, found {found}")
            }
            Mismatch::MissingClasses { classes } => {
                write!(f, "missing classes: {}", classes.join(", "))
            }
            Mismatch::ExtraClasses { classes } => {
                write!(f, "unexpected classes: {}", classes.join(", "))
            }
            Mismatch::PerClassCount {
                class,
                split,
                expected,
                found,
            } => write!(
                f,
                "class {class}: expected {expected} {split} images, found {found}"
            ),
            Mismatch::Total { expected, found } => {
                write!(f, "total images: expected {expected}, found {found}")
            }
            Mismatch::Oversized {
                max_side,
                count,
                examples,
            } => {
                let ex: Vec<String> = examples.iter().map(|p| p.display().to_string()).collect();
                write!(
                    f,
                    "{count} images have a side over {max_side} px (e.g. {})",
                    ex.join(", ")
                )
            }
        }
    }
}

/// The result of [`verify_against`].
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Verification {
    pub mismatches: Vec<Mismatch>,
}

impl Verification {
    /// No differences.
    pub fn is_ok(&self) -> bool {
        self.mismatches.is_empty()
    }
}

impl fmt::Display for Verification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_ok() {
            return f.write_str("matches the manifest");
        }
        writeln!(
            f,
            "{} differences from the manifest:",
            self.mismatches.len()
        )?;
        for m in &self.mismatches {
            writeln!(f, "  - {m}")?;
        }
        Ok(())
    }
}

/// Compares an index with what its manifest promises; reports every
/// difference (class count, missing/extra classes, per-class counts, total,
/// oversized images).
pub fn verify_against(index: &Index, manifest: &Manifest) -> Verification {
    let d = &manifest.dataset;
    let mut out = Vec::new();
    if index.classes.len() != d.classes as usize {
        out.push(Mismatch::ClassCount {
            expected: d.classes,
            found: index.classes.len(),
        });
    }
    if let Some(names) = &d.class_names {
        let want: BTreeSet<&str> = names.iter().map(String::as_str).collect();
        let have: BTreeSet<&str> = index.classes.iter().map(String::as_str).collect();
        let missing: Vec<String> = want.difference(&have).map(|s| s.to_string()).collect();
        let extra: Vec<String> = have.difference(&want).map(|s| s.to_string()).collect();
        if !missing.is_empty() {
            out.push(Mismatch::MissingClasses { classes: missing });
        }
        if !extra.is_empty() {
            out.push(Mismatch::ExtraClasses { classes: extra });
        }
    }
    let train = index.class_counts(Split::Train);
    let valid = index.class_counts(Split::Valid);
    let test = index.class_counts(Split::Test);
    for (c, name) in index.classes.iter().enumerate() {
        if let Some(e) = d.train_per_class {
            let found = train[c] + valid[c];
            if found != e as usize {
                out.push(Mismatch::PerClassCount {
                    class: name.clone(),
                    split: "train",
                    expected: e,
                    found,
                });
            }
        }
        if let Some(e) = d.test_per_class {
            if test[c] != e as usize {
                out.push(Mismatch::PerClassCount {
                    class: name.clone(),
                    split: "test",
                    expected: e,
                    found: test[c],
                });
            }
        }
    }
    if index.samples.len() as u64 != d.total_images {
        out.push(Mismatch::Total {
            expected: d.total_images,
            found: index.samples.len(),
        });
    }
    if let Some(max) = d.max_side {
        let over: Vec<&PathBuf> = index
            .samples
            .iter()
            .filter(|s| s.width.max(s.height) > max)
            .map(|s| &s.path)
            .collect();
        if !over.is_empty() {
            out.push(Mismatch::Oversized {
                max_side: max,
                count: over.len(),
                examples: over.into_iter().take(5).cloned().collect(),
            });
        }
    }
    Verification { mismatches: out }
}
