//! Getting a dataset that is not there yet: generate the synthetic one or
//! find/download Food-101.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::pipeline::PipelineError;

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
    println!(
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
    let unavailable = |e: anyhow::Error| {
        PipelineError::Unavailable(format!(
            "Food-101 is not in {} and fetching it failed: {e:#}\n(fetch it by hand with \
             `brigade fetch food101 --dest {}`, or pass the archive with data.archive=PATH)",
            root.display(),
            root.display()
        ))
    };
    let manifest = brigade_index::Manifest::food101().map_err(|e| unavailable(e.into()))?;
    let args = crate::cli::fetch::Args {
        dataset: crate::cli::fetch::Dataset::Food101,
        dest: root.to_path_buf(),
        archive: cfg.data.archive.clone(),
        url: cfg.data.url.clone(),
        manifest: None,
        quiet: false,
    };
    println!(
        "Food-101 is not in {}: fetching it (data.source = \"food101\")",
        root.display()
    );
    crate::cli::fetch::fetch(&manifest, &args).map_err(unavailable)
}
