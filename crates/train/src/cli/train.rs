//! `brigade train [--config FILE] [key=value ...] [--resume RUN_DIR] [--device cuda|cpu|auto]`

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

use crate::config::{Config, DeviceChoice};
use crate::learner::{self, Learner, Outcome};
use crate::{checkpoint, pipeline, report};

/// Arguments of `brigade train`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Recipe (TOML); see recipes/
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Overrides, e.g. `train.batch_size=32 stage.1.lr=1e-4`
    pub overrides: Vec<String>,
    /// Continue the run in RUN_DIR from its latest checkpoint (uses RUN_DIR/recipe.toml)
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Device (overrides run.device)
    #[arg(long)]
    pub device: Option<DeviceChoice>,
    /// No progress bars or epoch table
    #[arg(long)]
    pub quiet: bool,
}

/// Resolves the device: `auto` picks CUDA when available; under a launcher
/// `LOCAL_RANK` selects the GPU.
pub fn resolve_device(choice: DeviceChoice) -> anyhow::Result<tch::Device> {
    let local_rank: usize = std::env::var("LOCAL_RANK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    match choice {
        DeviceChoice::Cpu => Ok(tch::Device::Cpu),
        DeviceChoice::Cuda => {
            if !tch::Cuda::is_available() {
                bail!("--device cuda: no CUDA device is available (libtorch sees none)");
            }
            Ok(tch::Device::Cuda(local_rank))
        }
        DeviceChoice::Auto => Ok(if tch::Cuda::is_available() {
            tch::Device::Cuda(local_rank)
        } else {
            tch::Device::Cpu
        }),
    }
}

/// Loads the recipe for a fresh run or a resume.
pub fn load_config(args: &Args) -> anyhow::Result<(Config, bool)> {
    if let Some(run_dir) = &args.resume {
        let recipe = run_dir.join("recipe.toml");
        let mut cfg = Config::load(&recipe, &args.overrides)
            .with_context(|| format!("--resume {}: reading its recipe", run_dir.display()))?;
        set_run_dir(&mut cfg, run_dir);
        if let Some(d) = args.device {
            cfg.run.device = d;
        }
        return Ok((cfg, true));
    }
    let path = args
        .config
        .clone()
        .context("no recipe: pass --config FILE (e.g. recipes/demo.toml) or --resume RUN_DIR")?;
    let mut cfg = Config::load(&path, &args.overrides)?;
    if let Some(d) = args.device {
        cfg.run.device = d;
    }
    Ok((cfg, false))
}

fn set_run_dir(cfg: &mut Config, run_dir: &Path) {
    cfg.run.out_dir = run_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    cfg.run.name = run_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "run".into());
}

/// What a finished `train` produced.
#[derive(Debug)]
pub struct TrainSummary {
    pub run_dir: PathBuf,
    pub outcome: Outcome,
    /// Test-split evaluation of the best checkpoint (when training finished).
    pub test: Option<report::EvalReport>,
}

/// Trains a recipe end to end (dataset, index, load, fit, test evaluation).
pub fn train(cfg: Config, resume: bool, show: bool) -> anyhow::Result<TrainSummary> {
    let device = resolve_device(cfg.run.device)?;
    // Under a launcher only rank 0 prints and writes files.
    let rank0 = crate::accel::launcher_rank() == 0;
    let prepared = pipeline::prepare(&cfg, device, show && rank0)?;
    let run_dir = cfg.run_dir();
    std::fs::create_dir_all(&run_dir)
        .with_context(|| format!("creating run folder {}", run_dir.display()))?;
    if !resume && rank0 {
        // The saved recipe is what a resume continues: a stop point is a property of
        // this invocation, not of the recipe.
        let mut saved = cfg.clone();
        saved.train.stop_after_steps = 0;
        checkpoint::write_atomic(&run_dir.join("recipe.toml"), saved.to_toml().as_bytes())
            .with_context(|| format!("writing {}", run_dir.join("recipe.toml").display()))?;
    }
    let mut l = Learner::new(cfg.clone(), device, prepared.classes.clone())?;
    l.show = show;
    let cuda = device.is_cuda();
    l.accel = Box::new(crate::accel::TorchAccel::new(
        device,
        cfg.train.bf16.resolve(cuda),
        cfg.train.channels_last.resolve(cuda),
        &l.vs,
    )?);
    let mut train = prepared.train;
    let mut valid = prepared.valid;
    if crate::accel::distributed() {
        let ddp = crate::accel::Ddp::from_env(&l.vs)?;
        use crate::learner::GradSync;
        train.set_shard(ddp.rank(), ddp.world_size());
        l.show = show && ddp.rank() == 0;
        l.sync = Some(Box::new(ddp));
    }
    if show {
        let (on, all) = crate::model::count_params(&l.vs);
        println!(
            "model {} ({} parameters, {} trainable), device {:?}, run folder {}",
            cfg.model.arch,
            all,
            on,
            device,
            run_dir.display()
        );
    }
    if let Err(e) = learner::install_ctrlc() {
        eprintln!(
            "warning: no Ctrl-C handler ({e}); a kill loses the work since the last checkpoint"
        );
    }
    let outcome = l.fit(&mut *train, &mut *valid, resume)?;
    drop(train);
    drop(valid);
    let test = match &outcome {
        Outcome::Stopped { step, checkpoint } => {
            println!(
                "stopped at step {step}; checkpoint {}; continue with: brigade train --resume {}",
                checkpoint.display(),
                run_dir.display()
            );
            None
        }
        Outcome::Finished { .. } if !rank0 => None,
        Outcome::Finished { .. } => {
            let best = checkpoint::find_model_dir(&run_dir)?;
            let (_vs, net, meta) = crate::model::from_checkpoint(&best, device)?;
            let size = cfg.eval_size();
            let mut views = pipeline::eval_views(
                &prepared.index,
                brigade_index::Split::Test,
                cfg.eval.resize_ratio,
                cfg.eval.tta,
                cfg.data.workers as usize,
                device,
            )?;
            let spec = report::EvalSpec {
                classes: &meta.classes,
                size,
                batch_size: cfg.eval.batch_size as usize,
                tta_mode: cfg.eval.tta.name(),
                split: "test",
            };
            let (rep, preds, mistakes) = report::evaluate(net.as_ref(), &mut views, &spec)?;
            drop(views);
            let files = report::write_report(
                &run_dir.join("eval"),
                &rep,
                &preds,
                &meta.classes,
                &mistakes,
            )?;
            if show {
                println!(
                    "test ({} images, {}px{}): top-1 {:.2}%, top-5 {:.2}%; report: {}",
                    rep.n,
                    size,
                    if rep.tta {
                        format!(", TTA {}", rep.tta_mode)
                    } else {
                        String::new()
                    },
                    100.0 * rep.top1,
                    100.0 * rep.top5,
                    files
                        .first()
                        .map_or_else(String::new, |p| p.display().to_string())
                );
            }
            Some(rep)
        }
    };
    Ok(TrainSummary {
        run_dir,
        outcome,
        test,
    })
}

/// `brigade train`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let (cfg, resume) = load_config(&args)?;
    train(cfg, resume, !args.quiet)?;
    Ok(())
}
