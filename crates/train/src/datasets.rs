//! Getting a dataset that is not there yet: generate the synthetic one, or
//! fetch one a manifest describes (download or take an archive, verify the
//! checksums, extract safely, index, verify against the manifest). `brigade
//! fetch` and `data.source = "food101"` both call [`fetch_dataset`].

use std::path::{Path, PathBuf};

use brigade_fetch::{download, extract_tar_gz, verify_file, Expected, ExtractOptions, Progress};
use brigade_index::{verify_against, Index, IndexOptions, Manifest, Report, Verification};

use crate::config::Config;
use crate::pipeline::PipelineError;

/// Where and how [`fetch_dataset`] gets a dataset.
#[derive(Debug, Clone)]
pub struct FetchRequest {
    /// Folder to download and extract into; the dataset lands in
    /// `dest/<top folder>` and its index in `dest/<top folder>.index`.
    pub dest: PathBuf,
    /// Use this archive instead of downloading (verified all the same).
    pub archive: Option<PathBuf>,
    /// Download from this URL instead of the manifest's.
    pub url: Option<String>,
    /// No progress bar.
    pub quiet: bool,
}

/// A dataset [`fetch_dataset`] made ready.
#[derive(Debug)]
pub struct Fetched {
    /// The extracted dataset's root.
    pub root: PathBuf,
    /// Its index (also written to [`Fetched::index_file`]).
    pub index: Index,
    /// What indexing found (problems, skipped files).
    pub report: Report,
    /// How the index compares with the manifest (it matched).
    pub verification: Verification,
    /// Where the index was written.
    pub index_file: PathBuf,
}

/// Why [`fetch_dataset`] failed. Each message carries its cause (the
/// causes are not chained as `source`, so they print once).
#[derive(Debug, thiserror::Error)]
pub enum FetchDatasetError {
    /// Creating the destination folder failed.
    #[error("{what} {path}: {cause}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
    /// Downloading, verifying or extracting the archive failed.
    #[error("{what}: {cause}")]
    Archive {
        /// What was being done, naming the file or URL.
        what: String,
        /// The cause.
        cause: Box<brigade_fetch::FetchError>,
    },
    /// Writing the index failed.
    #[error("writing the index: {0}")]
    IndexFile(Box<brigade_index::IndexFileError>),
    /// Indexing the extracted dataset failed.
    #[error("indexing {root}: {cause}")]
    Index {
        /// The dataset root.
        root: PathBuf,
        /// The cause.
        cause: Box<brigade_index::IndexError>,
    },
    /// The extracted dataset is not what the manifest describes.
    #[error("{root} does not match the {manifest} manifest:\n{verification}")]
    Mismatch {
        /// The dataset root.
        root: PathBuf,
        /// The manifest's name.
        manifest: String,
        /// What differs.
        verification: Verification,
    },
}

/// Fetches, extracts, indexes and verifies the dataset `manifest` describes;
/// a dataset already extracted (complete) is only re-indexed and verified.
/// Prints one line per step on stderr (stdout stays free for data).
pub fn fetch_dataset(
    manifest: &Manifest,
    request: &FetchRequest,
) -> Result<Fetched, FetchDatasetError> {
    let src = &manifest.source;
    let expected = Expected {
        sha256: src.sha256.clone(),
        md5: src.md5.clone(),
        size: src.size,
        ..Default::default()
    };
    std::fs::create_dir_all(&request.dest).map_err(|cause| FetchDatasetError::Io {
        what: "creating",
        path: request.dest.clone(),
        cause,
    })?;
    let folder = src
        .top_folder
        .clone()
        .unwrap_or_else(|| manifest.name.clone());
    let root = request.dest.join(&folder);

    if brigade_fetch::is_complete(&root) {
        eprintln!("{} is already extracted; re-indexing", root.display());
    } else {
        let archive = match &request.archive {
            Some(a) => {
                eprintln!("verifying {} ...", a.display());
                verify_file(a, &expected).map_err(|cause| FetchDatasetError::Archive {
                    what: format!("checking the archive {}", a.display()),
                    cause: Box::new(cause),
                })?;
                a.clone()
            }
            None => {
                let url = request.url.as_deref().unwrap_or(&src.url);
                let dest = request.dest.join(&src.archive_name);
                eprintln!("downloading {url} to {} ...", dest.display());
                let progress = if request.quiet {
                    Progress::Hidden
                } else {
                    Progress::Auto
                };
                download(url, &dest, &expected, progress).map_err(|cause| {
                    FetchDatasetError::Archive {
                        what: format!("downloading {} from {url}", manifest.name),
                        cause: Box::new(cause),
                    }
                })?
            }
        };
        eprintln!("checksums match; extracting to {} ...", root.display());
        let strip = usize::from(src.top_folder.is_some());
        extract_tar_gz(
            &archive,
            &root,
            &ExtractOptions {
                strip_components: strip,
            },
        )
        .map_err(|cause| FetchDatasetError::Archive {
            what: format!("extracting {}", archive.display()),
            cause: Box::new(cause),
        })?;
    }

    let (index, report) = Index::build(&root, &IndexOptions::default()).map_err(|cause| {
        FetchDatasetError::Index {
            root: root.clone(),
            cause: Box::new(cause),
        }
    })?;
    let verification = verify_against(&index, manifest);
    if !verification.is_ok() {
        return Err(FetchDatasetError::Mismatch {
            root,
            manifest: manifest.name.clone(),
            verification,
        });
    }
    let index_file = request.dest.join(format!("{folder}.index"));
    index
        .save(&index_file)
        .map_err(|e| FetchDatasetError::IndexFile(Box::new(e)))?;
    Ok(Fetched {
        root,
        index,
        report,
        verification,
        index_file,
    })
}

/// Generates the recipe's synthetic dataset (`[data.synth]`) into `root`.
pub fn generate_synth(cfg: &Config, root: &Path) -> Result<(), PipelineError> {
    let s = &cfg.data.synth;
    let sc = brigade_synth::SynthConfig {
        max_side: s.max_side,
        min_side: 0,
        ..brigade_synth::SynthConfig::new(s.classes, s.per_class, s.test_per_class, s.seed)
    };
    let t = std::time::Instant::now();
    let summary = brigade_synth::generate(&sc, root).map_err(|e| {
        PipelineError::Unavailable(format!(
            "generating the synthetic dataset into {}: {e}",
            root.display()
        ))
    })?;
    eprintln!(
        "generated a synthetic dataset in {}: {} classes, {} train + {} test images, {:.1} MB, {:.1}s",
        summary.root.display(),
        summary.classes,
        summary.train,
        summary.test,
        summary.bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Returns the Food-101 root under `root` (the `food-101` folder or `root`
/// itself), fetching it when missing exactly as `brigade fetch food101
/// --dest ROOT` does: `data.archive` when set (verified against the
/// manifest's checksums), else a download from `data.url` or the manifest's
/// URL (resumable), then safe extraction, indexing and verification.
pub fn fetch_food101(cfg: &Config, root: &Path) -> Result<PathBuf, PipelineError> {
    for cand in [root.join("food-101"), root.to_path_buf()] {
        if cand.join("meta").join("classes.txt").is_file() {
            return Ok(cand);
        }
    }
    let unavailable = |e: &dyn std::fmt::Display| {
        PipelineError::Unavailable(format!(
            "Food-101 is not in {} and fetching it failed: {e}\n(fetch it by hand with \
             `brigade fetch food101 --dest {}`, or pass the archive with data.archive=PATH)",
            root.display(),
            root.display()
        ))
    };
    let manifest = Manifest::food101().map_err(|e| unavailable(&e))?;
    let request = FetchRequest {
        dest: root.to_path_buf(),
        archive: cfg.data.archive.clone(),
        url: cfg.data.url.clone(),
        quiet: false,
    };
    eprintln!(
        "Food-101 is not in {}: fetching it (data.source = \"food101\")",
        root.display()
    );
    let fetched = fetch_dataset(&manifest, &request).map_err(|e| unavailable(&e))?;
    eprintln!(
        "verified against the {} manifest: {}; index written to {}",
        manifest.name,
        fetched.verification,
        fetched.index_file.display()
    );
    Ok(fetched.root)
}
