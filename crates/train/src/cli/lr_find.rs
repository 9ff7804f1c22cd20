//! `brigade lr-find --config FILE [key=value ...] [--stage N]`: fastai's LR
//! finder (brigade-optim) on the recipe's model and data; writes the curve
//! (`lr_find.png`), the table (`lr_find.txt`) and the suggestions (`lr_find.json`).

use anyhow::Context;
use std::path::PathBuf;

use crate::config::{Config, DeviceChoice};
use crate::learner::Learner;
use crate::pipeline;

/// Arguments of `brigade lr-find`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Recipe (TOML)
    #[arg(long, short)]
    pub config: PathBuf,
    /// Overrides, e.g. `train.batch_size=32`
    pub overrides: Vec<String>,
    /// Stage whose setup (freezing, optimizer, size) is swept
    #[arg(long, default_value = "0")]
    pub stage: usize,
    /// First learning rate of the (exponential) sweep
    #[arg(long, default_value = "1e-7")]
    pub start_lr: f64,
    /// Last learning rate of the sweep
    #[arg(long, default_value = "10")]
    pub end_lr: f64,
    /// Steps in the sweep (it stops early when the loss diverges)
    #[arg(long, default_value = "100")]
    pub num_iter: usize,
    /// Output folder (default: the run folder)
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Device (default: the recipe's run.device)
    #[arg(long)]
    pub device: Option<DeviceChoice>,
    /// Print the result (the content of lr_find.json) as one JSON object on
    /// stdout instead of the table and the suggestions
    #[arg(long)]
    pub json: bool,
}

/// `brigade lr-find`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let mut cfg = Config::load(&args.config, &args.overrides)?;
    if let Some(d) = args.device {
        cfg.run.device = d;
    }
    let device = super::train::resolve_device(cfg.run.device)?;
    let prepared = pipeline::prepare(&cfg, device, !args.json)?;
    let out = args.out.clone().unwrap_or_else(|| cfg.run_dir());
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let mut l = Learner::new(cfg, device, prepared.classes.clone())?;
    let mut train = prepared.train;
    let finder = brigade_optim::LrFinderConfig {
        start_lr: args.start_lr,
        end_lr: args.end_lr,
        num_iter: args.num_iter,
        ..Default::default()
    };
    let res = l.lr_find(&mut *train, args.stage, &finder)?;
    let table = res.table();
    if !args.json {
        println!("{table}");
    }
    std::fs::write(out.join("lr_find.txt"), &table)?;
    let png = out.join("lr_find.png");
    let drew = res.plot(&png)?;
    let fmt = |v: Option<f64>| v.map_or("none".to_string(), |x| format!("{x:.2e}"));
    let json = serde_json::json!({
        "stage": args.stage,
        "lrs": res.lrs,
        "losses": res.losses,
        "smoothed": res.smoothed,
        "stopped": res.stopped,
        "steepest": res.steepest,
        "min_div10": res.min_div10,
    });
    std::fs::write(
        out.join("lr_find.json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    if args.json {
        println!("{}", serde_json::to_string(&json)?);
        return Ok(());
    }
    println!(
        "suggested lr: steepest descent {}, min loss / 10 {}{}",
        fmt(res.steepest),
        fmt(res.min_div10),
        if res.stopped.is_some() {
            " (sweep stopped early: loss diverged)"
        } else {
            ""
        }
    );
    println!(
        "wrote {}{}, lr_find.txt, lr_find.json",
        png.display(),
        if drew {
            ""
        } else {
            " (drawn without text: no TrueType font found)"
        }
    );
    Ok(())
}
