//! `brigade fetch food101 [--dest DIR] [--archive PATH] [--url URL] [--manifest FILE]`
//!
//! Download (or take `--archive`), verify the manifest's checksums, extract
//! safely into `DEST/food-101`, index, and verify against the manifest.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use brigade_fetch::{download, extract_tar_gz, verify_file, Expected, ExtractOptions, Progress};
use brigade_index::{verify_against, Index, IndexOptions, Manifest};

/// Datasets `brigade fetch` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Dataset {
    /// Food-101 (101 classes, 101,000 images, 5 GB)
    Food101,
}

/// Arguments of `brigade fetch`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Which dataset
    #[arg(value_enum)]
    pub dataset: Dataset,
    /// Folder to download and extract into (the dataset lands in DEST/food-101)
    #[arg(long, default_value = "data")]
    pub dest: PathBuf,
    /// Use this archive instead of downloading (verified all the same)
    #[arg(long)]
    pub archive: Option<PathBuf>,
    /// Download from this URL instead of the manifest's
    #[arg(long)]
    pub url: Option<String>,
    /// Use this manifest instead of the built-in one
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// No progress bar
    #[arg(long)]
    pub quiet: bool,
}

/// Runs `brigade fetch`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let manifest = match (&args.manifest, args.dataset) {
        (Some(p), _) => Manifest::from_file(p)?,
        (None, Dataset::Food101) => Manifest::food101()?,
    };
    let root = fetch(&manifest, &args)?;
    println!("{} is ready in {}", manifest.name, root.display());
    Ok(())
}

/// Fetches, extracts, indexes and verifies a dataset; returns its root.
pub(crate) fn fetch(manifest: &Manifest, args: &Args) -> anyhow::Result<PathBuf> {
    let src = &manifest.source;
    let expected = Expected {
        sha256: src.sha256.clone(),
        md5: src.md5.clone(),
        size: src.size,
        ..Default::default()
    };
    std::fs::create_dir_all(&args.dest)
        .with_context(|| format!("creating {}", args.dest.display()))?;
    let folder = src
        .top_folder
        .clone()
        .unwrap_or_else(|| manifest.name.clone());
    let root = args.dest.join(&folder);

    if brigade_fetch::is_complete(&root) {
        println!("{} is already extracted; re-indexing", root.display());
    } else {
        let archive = match &args.archive {
            Some(a) => {
                println!("verifying {} ...", a.display());
                verify_file(a, &expected).with_context(|| {
                    format!("checking the archive given with --archive {}", a.display())
                })?;
                a.clone()
            }
            None => {
                let url = args.url.as_deref().unwrap_or(&src.url);
                let dest = args.dest.join(&src.archive_name);
                println!("downloading {url} to {} ...", dest.display());
                let progress = if args.quiet {
                    Progress::Hidden
                } else {
                    Progress::Auto
                };
                download(url, &dest, &expected, progress)
                    .with_context(|| format!("downloading {}", manifest.name))?
            }
        };
        println!("checksums match; extracting to {} ...", root.display());
        let strip = usize::from(src.top_folder.is_some());
        extract_tar_gz(
            &archive,
            &root,
            &ExtractOptions {
                strip_components: strip,
            },
        )
        .with_context(|| format!("extracting {}", archive.display()))?;
    }

    let (index, report) = Index::build(&root, &IndexOptions::default())
        .with_context(|| format!("indexing {}", root.display()))?;
    super::index::print_text(&index, &report);
    let verification = verify_against(&index, manifest);
    if !verification.is_ok() {
        bail!(
            "{} does not match the {} manifest:\n{verification}",
            root.display(),
            manifest.name
        );
    }
    println!(
        "verified against the {} manifest: {}",
        manifest.name, verification
    );
    let index_file = index_path(&args.dest, &folder);
    index
        .save(&index_file)
        .with_context(|| format!("writing the index to {}", index_file.display()))?;
    println!(
        "index written to {} (fingerprint {:016x})",
        index_file.display(),
        index.fingerprint()
    );
    Ok(root)
}

fn index_path(dest: &Path, folder: &str) -> PathBuf {
    dest.join(format!("{folder}.index"))
}
