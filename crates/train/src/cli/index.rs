//! `brigade index DATA [--valid-pct P] [--seed S] [--sample-frac F] [--out FILE] [--json]`

use std::path::{Path, PathBuf};

use anyhow::Context;
use brigade_index::{Index, IndexOptions, Report, Severity, Split};

/// How a dataset folder is indexed: the flags `brigade index` and `brigade
/// pack` share.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct IndexFlags {
    /// Fraction of each class's training images held out for validation
    /// (when the layout has no validation split of its own)
    #[arg(long, default_value_t = IndexFlags::default().valid_pct)]
    pub valid_pct: f64,
    /// Seed of the hold-out and the sample
    #[arg(long, default_value_t = IndexFlags::default().seed)]
    pub seed: u64,
    /// Fraction of each class and split kept (e.g. 0.25)
    #[arg(long, default_value_t = IndexFlags::default().sample_frac)]
    pub sample_frac: f64,
}

impl Default for IndexFlags {
    fn default() -> Self {
        Self {
            valid_pct: 0.0,
            seed: 42,
            sample_frac: 1.0,
        }
    }
}

impl IndexFlags {
    /// The index options these flags ask for.
    pub fn options(&self) -> IndexOptions {
        IndexOptions {
            valid_pct: self.valid_pct,
            seed: self.seed,
            sample_frac: self.sample_frac,
        }
    }
}

/// Arguments of `brigade index`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Dataset folder (Food-101 official or fastai layout, or an ImageFolder)
    pub data: PathBuf,
    #[command(flatten)]
    pub index: IndexFlags,
    /// Write the index file here
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print one JSON object instead of text
    #[arg(long)]
    pub json: bool,
}

/// Runs `brigade index`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let (index, report) = Index::build(&args.data, &args.index.options())
        .with_context(|| format!("indexing {}", args.data.display()))?;
    if let Some(out) = &args.out {
        index
            .save(out)
            .with_context(|| format!("writing the index to {}", out.display()))?;
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&to_json(&index, &report, args.out.as_deref()))?
        );
    } else {
        print_text(&index, &report);
        if let Some(out) = &args.out {
            println!(
                "index written to {} (fingerprint {:016x})",
                out.display(),
                index.fingerprint()
            );
        }
    }
    Ok(())
}

/// Counts of errors and warnings in a report.
pub fn severity_counts(report: &Report) -> (usize, usize) {
    let errors = report
        .problems
        .iter()
        .filter(|p| p.kind.severity() == Severity::Error)
        .count();
    (errors, report.problems.len() - errors)
}

/// The human-readable summary (shared with `brigade fetch`).
pub fn print_text(index: &Index, report: &Report) {
    let n = |s| index.split_ids(s).len();
    println!("dataset:  {}", report.root.display());
    println!("layout:   {}", report.layout.name());
    println!("classes:  {}", index.classes.len());
    println!(
        "samples:  {} (train {}, valid {}, test {})",
        index.samples.len(),
        n(Split::Train),
        n(Split::Valid),
        n(Split::Test)
    );
    if report.sampled_out > 0 {
        println!("sampled out: {}", report.sampled_out);
    }
    if report.hidden_skipped > 0 {
        println!(
            "hidden files and folders skipped: {}",
            report.hidden_skipped
        );
    }
    let (errors, warnings) = severity_counts(report);
    if report.problems.is_empty() {
        println!("problems: none");
    } else {
        println!(
            "problems: {errors} error(s) (excluded), {warnings} warning(s), {} in all:",
            report.problems.len()
        );
        for p in &report.problems {
            println!("  {p}");
        }
    }
}

/// The `--json` object. Keys are stable.
pub fn to_json(index: &Index, report: &Report, out: Option<&Path>) -> serde_json::Value {
    let (errors, warnings) = severity_counts(report);
    let problems: Vec<serde_json::Value> = report
        .problems
        .iter()
        .map(|p| {
            serde_json::json!({
                "path": p.path.display().to_string(),
                "severity": p.kind.severity(),
                "kind": p.kind.name(),
                "excluded": p.kind.excluded(),
                "message": p.kind.to_string(),
                "detail": p.kind,
            })
        })
        .collect();
    let counts = |s| index.class_counts(s);
    serde_json::json!({
        "root": report.root.display().to_string(),
        "layout": report.layout.name(),
        "classes": index.classes.len(),
        "class_names": index.classes,
        "labels": report.labels,
        "splits": {
            "train": index.split_ids(Split::Train).len(),
            "valid": index.split_ids(Split::Valid).len(),
            "test": index.split_ids(Split::Test).len(),
        },
        "per_class": {
            "train": counts(Split::Train),
            "valid": counts(Split::Valid),
            "test": counts(Split::Test),
        },
        "total": index.samples.len(),
        "candidates": report.candidates,
        "sampled_out": report.sampled_out,
        "hidden_skipped": report.hidden_skipped,
        "errors": errors,
        "warnings": warnings,
        "problems": problems,
        "fingerprint": format!("{:016x}", index.fingerprint()),
        "out": out.map(|p| p.display().to_string()),
    })
}
