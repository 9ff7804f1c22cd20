//! `brigade demo`: the whole pipeline on CPU in minutes: generate the
//! synthetic dataset (brigade-synth, Food-101 layout), index it, train a small
//! CNN from scratch at low resolution (recipes/demo.toml, embedded), evaluate
//! on the held-out test split, write the report and plots.

use std::path::PathBuf;
use std::time::Instant;

use crate::config::Config;

/// The demo recipe, embedded in the binary.
pub const DEMO_RECIPE: &str = include_str!("../../../../recipes/demo.toml");

/// Arguments of `brigade demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Folder for the generated dataset and the run
    #[arg(long, default_value = "runs")]
    pub out: PathBuf,
    /// Recipe overrides, e.g. `stage.1.epochs=2`
    pub overrides: Vec<String>,
    /// No progress bars or epoch table
    #[arg(long)]
    pub quiet: bool,
}

/// The demo recipe with its folders under `out`.
pub fn demo_config(out: &std::path::Path, overrides: &[String]) -> anyhow::Result<Config> {
    let mut o = vec![
        format!("run.out_dir={:?}", out.display().to_string()),
        format!(
            "data.path={:?}",
            out.join("demo-data").display().to_string()
        ),
    ];
    o.extend(overrides.iter().cloned());
    Ok(Config::from_toml_str(
        DEMO_RECIPE,
        "recipes/demo.toml (embedded)",
        &o,
    )?)
}

/// `brigade demo`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let t = Instant::now();
    let cfg = demo_config(&args.out, &args.overrides)?;
    let summary = super::train::train(cfg, false, !args.quiet)?;
    let secs = t.elapsed().as_secs_f64();
    let Some(test) = summary.test else {
        anyhow::bail!("the demo stopped before the end of training");
    };
    let run = summary.run_dir.display();
    println!("demo finished in {secs:.0}s");
    println!("report: {run}/eval/eval.json (confusion.csv, confusion.png, mistakes.png)");
    println!(
        "plots:  {run}/loss.png, {run}/accuracy.png, {run}/lr.png; metrics: {run}/metrics.jsonl"
    );
    println!(
        "demo top-1: {:.2}% on the held-out test split ({} images; top-5 {:.2}%)",
        100.0 * test.top1,
        test.n,
        100.0 * test.top5
    );
    Ok(())
}
