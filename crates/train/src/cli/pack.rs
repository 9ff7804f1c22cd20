//! `brigade pack DATA --out STORE [--max-side 288] [--side longer|shorter]
//! [--format raw|jpeg] [--quality 90] [--threads N]`
//!
//! DATA is a dataset folder (indexed here, with the same options as `brigade
//! index`) or an index file written by `brigade index --out`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use brigade_index::Index;
use brigade_store::{pack, skipped_path, PackOptions, Side, StoreError, StoreFormat};

/// Which side `--max-side` bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SideArg {
    Longer,
    Shorter,
}

/// Payload format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    Raw,
    Jpeg,
}

/// Arguments of `brigade pack`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Dataset folder, or an index file from `brigade index --out`
    pub data: PathBuf,
    /// Store file to write (replaced atomically when complete)
    #[arg(long)]
    pub out: PathBuf,
    /// Bound on the longer (or shorter) side; images are shrunk, never enlarged
    #[arg(long, default_value_t = 288)]
    pub max_side: u32,
    /// Which side --max-side bounds
    #[arg(long, value_enum, default_value_t = SideArg::Longer)]
    pub side: SideArg,
    /// raw (decoded pixels, zero-copy reads) or jpeg (re-encoded, smaller)
    #[arg(long, value_enum, default_value_t = FormatArg::Raw)]
    pub format: FormatArg,
    /// JPEG quality for --format jpeg (1-100)
    #[arg(long, default_value_t = 90)]
    pub quality: u8,
    /// Worker threads (default: one per core)
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// How DATA is indexed when it is a folder
    #[command(flatten)]
    pub index: super::index::IndexFlags,
    /// Also save the index the store was packed from (for `Store::open_for`)
    #[arg(long)]
    pub save_index: Option<PathBuf>,
    /// No progress bar
    #[arg(long)]
    pub quiet: bool,
    /// Print the result as one JSON object on stdout (store, counts, every
    /// skipped file with its reason, size, speed)
    #[arg(long)]
    pub json: bool,
}

/// Runs `brigade pack`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let index = if args.data.is_file() {
        if args.index != super::index::IndexFlags::default() {
            anyhow::bail!(
                "--valid-pct, --seed and --sample-frac apply when DATA is a folder; {} is an \
                 index file, whose splits are already fixed (re-index the folder instead)",
                args.data.display()
            );
        }
        Index::load(&args.data)
            .with_context(|| format!("reading the index {}", args.data.display()))?
    } else {
        let (index, report) = Index::build(&args.data, &args.index.options())
            .with_context(|| format!("indexing {}", args.data.display()))?;
        // Dataset-level warnings concern no file, so nothing else shows them.
        for p in report.problems.iter().filter(|p| p.kind.is_dataset_level()) {
            eprintln!("{p}");
        }
        let excluded = report.excluded().count();
        if excluded > 0 {
            eprintln!(
                "note: {excluded} file(s) left out by indexing (see `brigade index {}`)",
                args.data.display()
            );
        }
        index
    };
    if let Some(p) = &args.save_index {
        index
            .save(p)
            .with_context(|| format!("writing the index to {}", p.display()))?;
    }
    let cancel = Arc::new(AtomicBool::new(false));
    {
        let c = Arc::clone(&cancel);
        // Another subcommand may own the handler in this process: then Ctrl-C
        // simply kills us, and the next run resumes from the last checkpoint.
        let _ = ctrlc::set_handler(move || c.store(true, Ordering::SeqCst));
    }
    let opts = PackOptions {
        max_side: args.max_side,
        side: match args.side {
            SideArg::Longer => Side::Longer,
            SideArg::Shorter => Side::Shorter,
        },
        format: match args.format {
            FormatArg::Raw => StoreFormat::Raw,
            FormatArg::Jpeg => StoreFormat::Jpeg {
                quality: args.quality,
            },
        },
        threads: args.threads,
        progress: !args.quiet,
        cancel: Some(cancel),
        ..PackOptions::default()
    };
    let report = match pack(&index, &args.out, &opts) {
        Ok(r) => r,
        Err(e @ StoreError::Interrupted { .. }) => anyhow::bail!("{e}"),
        Err(e) => return Err(e).with_context(|| format!("packing {}", args.out.display())),
    };
    let secs = report.elapsed.as_secs_f64().max(1e-9);
    let rate = (index.samples.len() - report.resumed_at.unwrap_or(0)) as f64 / secs;
    if args.json {
        let skipped: Vec<serde_json::Value> = report
            .skipped
            .iter()
            .map(|s| serde_json::json!({"source": s.source, "path": s.path, "reason": s.reason}))
            .collect();
        let (format, quality) = match opts.format {
            StoreFormat::Raw => ("raw", None),
            StoreFormat::Jpeg { quality } => ("jpeg", Some(quality)),
        };
        let json = serde_json::json!({
            "store": args.out.display().to_string(),
            "format": format,
            "quality": quality,
            "max_side": args.max_side,
            "side": match opts.side { Side::Longer => "longer", Side::Shorter => "shorter" },
            "samples": index.samples.len(),
            "packed": report.packed,
            "skipped": skipped,
            "skipped_list": (!report.skipped.is_empty())
                .then(|| skipped_path(&args.out).display().to_string()),
            "bytes": report.bytes,
            "seconds": report.elapsed.as_secs_f64(),
            "images_per_second": rate,
            "resumed_at": report.resumed_at,
        });
        println!("{json}");
        return Ok(());
    }
    for s in &report.skipped {
        println!("skipped {}: {}", s.path, s.reason);
    }
    println!(
        "packed {} of {} images into {} ({:.1} MiB, {:.0} img/s{})",
        report.packed,
        index.samples.len(),
        args.out.display(),
        report.bytes as f64 / (1024.0 * 1024.0),
        rate,
        match report.resumed_at {
            Some(n) => format!(", resumed at {n}"),
            None => String::new(),
        }
    );
    if !report.skipped.is_empty() {
        println!(
            "{} skipped, listed in {}",
            report.skipped.len(),
            skipped_path(&args.out).display()
        );
    }
    Ok(())
}
