//! `brigade synth OUT --classes N --per-class M --test-per-class K --seed S [--max-side 512]`

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use brigade_synth::{generate, SynthConfig};

/// Arguments of `brigade synth`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output folder (created; must not exist or be empty)
    pub out: PathBuf,
    /// Number of classes
    #[arg(long, default_value_t = 10)]
    pub classes: u32,
    /// Training images per class
    #[arg(long, default_value_t = 50)]
    pub per_class: u32,
    /// Test images per class
    #[arg(long, default_value_t = 10)]
    pub test_per_class: u32,
    /// Seed (same seed, same bytes)
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Longest image side in pixels (sides vary from a quarter of it up to it)
    #[arg(long, default_value_t = 512)]
    pub max_side: u32,
    /// JPEG quality (1-100)
    #[arg(long, default_value_t = 90)]
    pub quality: u8,
}

/// Runs `brigade synth`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let cfg = SynthConfig {
        max_side: args.max_side,
        quality: args.quality,
        ..SynthConfig::new(args.classes, args.per_class, args.test_per_class, args.seed)
    };
    let t = Instant::now();
    let s = generate(&cfg, &args.out)
        .with_context(|| format!("generating a synthetic dataset in {}", args.out.display()))?;
    println!(
        "wrote {} classes, {} train + {} test images ({:.1} MB of JPEG) to {} in {:.2} s",
        s.classes,
        s.train,
        s.test,
        s.bytes as f64 / 1e6,
        s.root.display(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
