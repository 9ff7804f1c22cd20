//! `brigade fetch food101 [--dest DIR] [--archive PATH] [--url URL] [--manifest FILE]`
//!
//! Download (or take `--archive`), verify the manifest's checksums, extract
//! safely into `DEST/food-101`, index, and verify against the manifest.

use std::path::PathBuf;

use brigade_index::Manifest;

use crate::datasets::{fetch_dataset, FetchRequest};

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
    let request = FetchRequest {
        dest: args.dest.clone(),
        archive: args.archive.clone(),
        url: args.url.clone(),
        quiet: args.quiet,
    };
    let fetched = fetch_dataset(&manifest, &request)?;
    super::index::print_text(&fetched.index, &fetched.report);
    println!(
        "verified against the {} manifest: {}",
        manifest.name, fetched.verification
    );
    println!(
        "index written to {} (fingerprint {:016x})",
        fetched.index_file.display(),
        fetched.index.fingerprint()
    );
    println!("{} is ready in {}", manifest.name, fetched.root.display());
    Ok(())
}
