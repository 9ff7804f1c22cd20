//! `brigade eval --checkpoint C [--tta [flip|five-crop|ten-crop]] [--data D] [--split test|valid] [--out DIR]`

use anyhow::Context;
use std::path::PathBuf;

use crate::config::{Config, DeviceChoice, TtaMode};
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
    /// Test-time augmentation: `--tta` alone is `flip`; also `five-crop`,
    /// `ten-crop`, `none` (softmax averaged over the views)
    #[arg(long, num_args = 0..=1, default_missing_value = "flip", value_name = "MODE")]
    pub tta: Option<TtaMode>,
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
    /// Loader threads decoding the test images (default: the recipe's data.workers)
    #[arg(long)]
    pub workers: Option<usize>,
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
    let tta = args.tta.unwrap_or(TtaMode::None);
    let workers = args.workers.unwrap_or(cfg.data.workers as usize).max(1);
    let mut views = pipeline::eval_views(&index, split, meta.resize_ratio, tta, workers, device)?;
    let spec = report::EvalSpec {
        classes: &meta.classes,
        size,
        batch_size: args.batch_size.max(1),
        tta_mode: tta.name(),
        split: &args.split,
    };
    let (rep, preds, mistakes) = report::evaluate(net.as_ref(), &mut views, &spec)?;
    let out = args.out.clone().unwrap_or_else(|| dir.join("eval"));
    let files = report::write_report(&out, &rep, &preds, &meta.classes, &mistakes)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rep)?);
    } else {
        println!(
            "{} split: {} images at {}px{}: top-1 {:.2}%  top-5 {:.2}%  loss {:.4}",
            rep.split,
            rep.n,
            size,
            if rep.tta {
                format!(" (TTA: {}, {} views)", rep.tta_mode, rep.tta_views)
            } else {
                String::new()
            },
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
