//! `brigade bench-loader`: loader-only throughput (no model), from original
//! files (`--data DIR`, indexed on the fly) or a packed store (`--store FILE`).
//!
//! One warm-up batch starts the workers and is not timed (as the PyTorch
//! reference script); then `--batches` batches are timed, continuing into the
//! next epoch when one ends. Prints per-stage timings and, as its last line,
//! `loader img/s: N`.

use anyhow::{bail, Context};
use brigade_augment::Pipeline;
use brigade_index::{Index, IndexOptions, Split};
use brigade_loader::adapters::{FileSource, StoreSource};
use brigade_loader::{Loader, LoaderConfig, ProcessMemory, Source};
use brigade_store::Store;
use std::path::PathBuf;
use std::sync::Arc;

/// Which augmentation pipeline to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AugmentKind {
    /// RandomResizedCrop + flip (the default train pipeline)
    Train,
    /// Resize 8/7 + centre crop
    Eval,
}

/// Arguments of `brigade bench-loader`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["data", "store"])))]
pub struct Args {
    /// Dataset folder (original files; indexed first)
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Packed store file (from `brigade pack`)
    #[arg(long)]
    pub store: Option<PathBuf>,
    /// Output side in pixels
    #[arg(long, default_value_t = 224)]
    pub size: u32,
    /// Images per batch
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Timed batches (after one warm-up batch)
    #[arg(long, default_value_t = 30)]
    pub batches: usize,
    /// Worker threads
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Augmentation pipeline
    #[arg(long, value_enum, default_value_t = AugmentKind::Train)]
    pub augment: AugmentKind,
    /// Seed of the order and augmentations
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print one JSON object (before the last line)
    #[arg(long)]
    pub json: bool,
}

/// What one run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchResult {
    pub input: String,
    pub images: usize,
    pub batches: usize,
    pub seconds: f64,
    pub images_per_sec: f64,
    /// Worker time per image, by stage (milliseconds, summed over threads).
    pub read_ms_per_image: f64,
    pub decode_ms_per_image: f64,
    pub augment_ms_per_image: f64,
    /// Fraction of consumer time waiting (a loader-only run waits ~always).
    pub stall_fraction: f64,
    pub mean_ready_batches: f64,
    pub mean_free_slots: f64,
    pub failed_samples: usize,
    pub threads: usize,
    pub batch: usize,
    pub size: u32,
    pub peak_rss_mib: Option<f64>,
    /// Largest anonymous (loader-owned) resident memory while running, and
    /// file-backed (mapped store pages, shared with the page cache) at the end.
    pub peak_rss_anon_mib: Option<f64>,
    pub rss_file_mib: Option<f64>,
    /// Bytes the batch ring holds: slots x batch x size x size x 3.
    pub ring_mib: f64,
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<()> {
    if args.batches == 0 {
        bail!("--batches must be at least 1");
    }
    let pipeline = match args.augment {
        AugmentKind::Train => Pipeline::default(),
        AugmentKind::Eval => Pipeline::eval(),
    };
    let config = LoaderConfig {
        batch_size: args.batch,
        threads: args.threads,
        seed: args.seed,
        shuffle: true,
        drop_last: true,
        ..LoaderConfig::default()
    };
    let result = if let Some(store) = &args.store {
        let st =
            Store::open(store).with_context(|| format!("opening store {}", store.display()))?;
        let src = StoreSource::new(Arc::new(st), Some(Split::Train));
        bench(
            src,
            pipeline,
            config,
            &args,
            format!("store {}", store.display()),
        )?
    } else if let Some(data) = &args.data {
        let (index, _report) = Index::build(data, &IndexOptions::default())
            .with_context(|| format!("indexing {}", data.display()))?;
        let src = FileSource::new(&index, Some(Split::Train));
        bench(
            src,
            pipeline,
            config,
            &args,
            format!("files {}", data.display()),
        )?
    } else {
        bail!("give --data DIR or --store FILE");
    };
    print_result(&result, args.json)?;
    Ok(())
}

fn bench<S: Source>(
    source: S,
    pipeline: Pipeline,
    config: LoaderConfig,
    args: &Args,
    input: String,
) -> anyhow::Result<BenchResult> {
    if source.is_empty() {
        bail!("{input}: no training samples");
    }
    let mut loader = Loader::new(source, pipeline, config)?;
    let m = loader
        .measure(args.size, args.batches)
        .with_context(|| format!("loading from {input}"))?;
    let ring_bytes = loader.ring_slots() * args.batch * (args.size as usize).pow(2) * 3;
    let mem = ProcessMemory::current();
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    for f in &m.failures {
        eprintln!("failed sample {} ({}): {}", f.sample_id, f.name, f.reason);
    }
    let s = &m.stats;
    Ok(BenchResult {
        input,
        images: m.images,
        batches: m.batches,
        seconds: m.elapsed.as_secs_f64(),
        images_per_sec: m.images_per_sec(),
        read_ms_per_image: m.ms_per_image(s.read),
        decode_ms_per_image: m.ms_per_image(s.decode),
        augment_ms_per_image: m.ms_per_image(s.augment),
        stall_fraction: s.stall_fraction(),
        mean_ready_batches: s.mean_ready_depth(),
        mean_free_slots: s.mean_free_slots(),
        failed_samples: s.failed,
        threads: args.threads,
        batch: args.batch,
        size: args.size,
        peak_rss_mib: mem.map(|m| mib(m.peak_rss)),
        peak_rss_anon_mib: m.peak_rss_anon.map(mib),
        rss_file_mib: mem.map(|m| mib(m.rss_file)),
        ring_mib: mib(ring_bytes as u64),
    })
}

fn print_result(r: &BenchResult, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(r)?);
    } else {
        println!("input:    {}", r.input);
        println!(
            "timed:    {} batches x {} images of {}x{} in {:.3} s ({} threads)",
            r.batches, r.batch, r.size, r.size, r.seconds, r.threads
        );
        println!(
            "stages:   read {:.3} ms/img, decode {:.3} ms/img, augment {:.3} ms/img (worker time)",
            r.read_ms_per_image, r.decode_ms_per_image, r.augment_ms_per_image
        );
        println!(
            "consumer: stall {:.1} %, {:.2} batches ready on average, {:.2} free ring slots",
            100.0 * r.stall_fraction,
            r.mean_ready_batches,
            r.mean_free_slots
        );
        println!("failed:   {} samples (replaced)", r.failed_samples);
        if let (Some(peak), Some(anon), Some(file)) =
            (r.peak_rss_mib, r.peak_rss_anon_mib, r.rss_file_mib)
        {
            println!(
                "memory:   peak RSS {peak:.1} MiB; loader's anonymous memory at most {anon:.1} MiB (batch ring {:.1} MiB); {file:.1} MiB file-backed (store pages, shared)",
                r.ring_mib
            );
        }
    }
    println!("loader img/s: {:.1}", r.images_per_sec);
    Ok(())
}
