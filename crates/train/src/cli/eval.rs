//! `brigade eval --checkpoint C [--tta] [--data D] [--split test|valid] [--out DIR]`

use anyhow::Context;
use std::path::PathBuf;

use crate::config::{Config, DeviceChoice};
use crate::{checkpoint, pipeline, report};

/// Arguments of `brigade eval`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A checkpoint folder, or a run folder (its best checkpoint)
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Dataset root (default: the run's recipe data.path)
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Horizontal-flip test-time augmentation
    #[arg(long)]
    pub tta: bool,
    /// Split to evaluate
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Crop side (default: the checkpoint's eval size)
    #[arg(long)]
    pub size: Option<u32>,
    /// Output folder (default: <checkpoint>/eval)
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long, default_value = "64")]
    pub batch_size: usize,
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    /// Print eval.json to stdout
    #[arg(long)]
    pub json: bool,
}

/// Finds the recipe of the run a checkpoint belongs to (`RUN/checkpoints/X` → `RUN/recipe.toml`).
fn run_recipe(ckpt: &std::path::Path) -> Option<PathBuf> {
    ckpt.ancestors()
        .map(|a| a.join("recipe.toml"))
        .find(|p| p.is_file())
}

/// `brigade eval`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let device = super::train::resolve_device(args.device)?;
    let dir = checkpoint::find_model_dir(&args.checkpoint)?;
    let (_vs, net, meta) = crate::model::from_checkpoint(&dir, device)?;
    let recipe = run_recipe(&dir);
    let mut cfg = match &recipe {
        Some(p) => Config::load(p, &[]).with_context(|| format!("reading {}", p.display()))?,
        None => Config::from_toml_str("[[stage]]\n", "default", &[])?,
    };
    if let Some(d) = &args.data {
        cfg.data.path = d.clone();
        cfg.data.source = crate::config::DataSource::Local;
    }
    let root = pipeline::ensure_dataset(&cfg)?;
    let (index, _) = pipeline::index_dataset(&cfg, &root, !args.json)?;
    if index.classes != meta.classes {
        anyhow::bail!(
            "{}: the dataset's classes ({}) differ from the checkpoint's ({})",
            root.display(),
            index.classes.len(),
            meta.classes.len()
        );
    }
    let split = match args.split.as_str() {
        "test" => brigade_index::Split::Test,
        "valid" => brigade_index::Split::Valid,
        "train" => brigade_index::Split::Train,
        s => anyhow::bail!("--split {s}: expected test, valid or train"),
    };
    let size = args.size.unwrap_or(meta.eval_size);
    let mut data = pipeline::load_split_eval(&index, split, size, meta.resize_ratio, device)?;
    let (rep, preds) = report::evaluate(
        net.as_ref(),
        &mut data,
        &meta.classes,
        size,
        args.batch_size,
        args.tta,
        &args.split,
    )?;
    let out = args.out.clone().unwrap_or_else(|| dir.join("eval"));
    let files = report::write_report(&out, &rep, &preds, &meta.classes, &data)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rep)?);
    } else {
        println!(
            "{} split: {} images at {}px{}: top-1 {:.2}%  top-5 {:.2}%  loss {:.4}",
            rep.split,
            rep.n,
            size,
            if rep.tta { " (TTA: flip)" } else { "" },
            100.0 * rep.top1,
            100.0 * rep.top5,
            rep.loss
        );
        println!("most confused (truth → predicted, count):");
        for c in rep.most_confused.iter().take(10) {
            println!("  {} → {}: {}", c.truth, c.predicted, c.count);
        }
        for f in files {
            println!("wrote {}", f.display());
        }
    }
    Ok(())
}
