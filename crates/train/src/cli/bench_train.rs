//! `brigade bench-train --arch resnet18|resnet50 --size 128`: training steps/s
//! of the brigade step (forward, loss, backward, AdamW step) fed by the real
//! input path (a generated dataset packed into a store, RandomResizedCrop +
//! flip in the prefetching loader's worker threads, normalised tensors), and
//! the same model, batch and optimizer in a plain PyTorch eager loop on a
//! fixed random batch (the venv python, `scripts/bench_train_torch.py`)
//! measured in the same run, interleaved, with the overhead ratio: what the
//! trainer adds, loader included. `--no-loader` feeds brigade a fixed random
//! batch too.

use anyhow::{bail, Context};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

use crate::config::{HeadChoice, OptimizerChoice, StageConfig};
use crate::data::DataSource;

/// The PyTorch peer script.
pub const TORCH_PEER: &str = include_str!("../../scripts/bench_train_torch.py");

/// Arguments of `brigade bench-train`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Architecture (a zoo name)
    #[arg(long, default_value = "resnet18")]
    pub arch: String,
    /// Input side in pixels
    #[arg(long, default_value = "128")]
    pub size: i64,
    /// Batch size
    #[arg(long, default_value = "16")]
    pub batch: i64,
    /// Timed steps per round
    #[arg(long, default_value = "10")]
    pub steps: usize,
    /// Rounds (ours and PyTorch's alternate)
    #[arg(long, default_value = "3")]
    pub rounds: usize,
    /// Classes of the model's head
    #[arg(long, default_value = "101")]
    pub classes: u32,
    /// Torch intra-op threads for both (0: libtorch's default)
    #[arg(long, default_value = "0")]
    pub threads: i32,
    /// Python with torch + torchvision (default: $BRIGADE_PYTHON, else python3)
    #[arg(long)]
    pub python: Option<String>,
    /// Skip the PyTorch peer
    #[arg(long)]
    pub no_peer: bool,
    /// Feed brigade a fixed random batch instead of the loader
    #[arg(long)]
    pub no_loader: bool,
    /// Loader worker threads
    #[arg(long, default_value = "2")]
    pub workers: usize,
    /// Print the figures as one JSON object on stdout (per-round medians,
    /// overall medians, the ratio); progress goes to stderr
    #[arg(long)]
    pub json: bool,
}

/// A generated dataset packed into a store in `dir`, read through the loader
/// with the train pipeline: `brigade train`'s own data path
/// ([`crate::pipeline::prepare`] on a synthetic-data recipe).
fn loader_data(args: &Args, dir: &std::path::Path) -> anyhow::Result<Box<dyn DataSource>> {
    let mut cfg = crate::config::Config::default();
    cfg.data.source = crate::config::DataSource::Synth;
    cfg.data.path = dir.join("data");
    cfg.data.valid_pct = 0.0;
    cfg.data.workers = args.workers.max(1) as u32;
    // Labels must fit the model's head (--classes); ten are plenty for timing.
    let classes = args.classes.clamp(1, 10);
    cfg.data.synth = crate::config::SynthSection {
        classes,
        per_class: ((args.batch as usize * (args.steps + 2)).div_ceil(classes as usize) + 1) as u32,
        test_per_class: 1,
        max_side: (args.size as u32 * 5 / 4).max(32),
        seed: 7,
    };
    cfg.data.pack.max_side = cfg.data.synth.max_side;
    cfg.data.pack.cache_dir = Some(dir.join("cache"));
    cfg.train.augment = crate::config::AugmentChoice::RrcFlip;
    let prepared = crate::pipeline::prepare(&cfg, Device::Cpu, false)
        .context("preparing the bench dataset")?;
    let data = prepared.train;
    if data.num_batches(args.batch as usize) < args.steps + 2 {
        bail!("bench dataset too small for {} steps", args.steps + 2);
    }
    Ok(data)
}

/// Median of a sample.
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s.get(s.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Times `steps` brigade training steps after 2 warm-up steps, taking each
/// batch from epoch `round` of `data` (or a fixed random batch when `None`);
/// returns per-step ms (the wait for the batch included).
pub fn time_ours(
    args: &Args,
    data: Option<&mut Box<dyn DataSource>>,
    round: u32,
) -> anyhow::Result<Vec<f64>> {
    if args.threads > 0 {
        tch::set_num_threads(args.threads);
    }
    tch::manual_seed(0);
    let vs = tch::nn::VarStore::new(Device::Cpu);
    let net = crate::model::build(&vs.root(), &args.arch, 32, args.classes, HeadChoice::Linear)?;
    let stage = StageConfig {
        optimizer: OptimizerChoice::Adamw,
        momentum: 0.9,
        ..StageConfig::default()
    };
    let mut opt = crate::opt::make_optimizer(&vs, &stage, &net.layer_groups())?;
    let x = Tensor::randn(
        [args.batch, 3, args.size, args.size],
        (Kind::Float, Device::Cpu),
    );
    let y = Tensor::randint(
        i64::from(args.classes),
        [args.batch],
        (Kind::Int64, Device::Cpu),
    );
    let mut batches = match data {
        Some(d) => Some(d.epoch(round, args.size as u32, args.batch as usize, 0)?),
        None => None,
    };
    let mut times = Vec::new();
    for i in 0..args.steps + 2 {
        let t = Instant::now();
        let (xs, ys) = match batches.as_mut() {
            Some(it) => {
                let b = it.next().context("the loader ran out of batches")??;
                (b.images, b.labels)
            }
            None => (x.shallow_clone(), y.shallow_clone()),
        };
        opt.zero_grad();
        let logits = net.forward_t(&xs, true);
        let loss = brigade_optim::loss::label_smoothing_ce(&logits, &ys, 0.0)?;
        loss.f_backward()?;
        opt.step()?;
        let _ = loss.f_double_value(&[])?;
        if i >= 2 {
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok(times)
}

/// Runs the PyTorch peer once; returns per-step ms.
pub fn time_torch(args: &Args, python: &str, script: &std::path::Path) -> anyhow::Result<Vec<f64>> {
    let out = std::process::Command::new(python)
        .arg(script)
        .args(["--arch", &args.arch])
        .args(["--size", &args.size.to_string()])
        .args(["--batch", &args.batch.to_string()])
        .args(["--steps", &args.steps.to_string()])
        .args(["--classes", &args.classes.to_string()])
        .args(["--threads", &args.threads.to_string()])
        .output()
        .with_context(|| format!("running the PyTorch peer with {python}"))?;
    if !out.status.success() {
        bail!(
            "PyTorch peer failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    let v: serde_json::Value =
        serde_json::from_str(line).with_context(|| format!("PyTorch peer printed {line:?}"))?;
    let times = v["times_ms"]
        .as_array()
        .context("PyTorch peer: no times_ms")?
        .iter()
        .filter_map(|t| t.as_f64())
        .collect();
    Ok(times)
}

/// `brigade bench-train`.
pub fn run(args: Args) -> anyhow::Result<()> {
    if args.classes == 0 || args.batch < 1 || args.size < 16 || args.steps == 0 || args.rounds == 0
    {
        bail!(
            "--classes, --batch, --steps and --rounds must be at least 1 and --size at least 16 \
             (got classes {}, batch {}, steps {}, rounds {}, size {})",
            args.classes,
            args.batch,
            args.steps,
            args.rounds,
            args.size
        );
    }
    let python = args
        .python
        .clone()
        .or_else(|| std::env::var("BRIGADE_PYTHON").ok())
        .unwrap_or_else(|| "python3".into());
    let dir = std::env::temp_dir().join(format!("brigade-bench-train-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let script = dir.join("bench_train_torch.py");
    std::fs::write(&script, TORCH_PEER)?;
    // With --json, stdout carries only the result.
    let say = |line: String| super::note(args.json, line);
    say(format!(
        "bench-train: {} at {}px, batch {}, AdamW, {} steps x {} rounds, CPU; brigade fed by {}",
        args.arch,
        args.size,
        args.batch,
        args.steps,
        args.rounds,
        if args.no_loader {
            "a fixed random batch".to_string()
        } else {
            format!("the store + loader ({} workers)", args.workers)
        }
    ));
    let mut data = if args.no_loader {
        None
    } else {
        Some(loader_data(&args, &dir)?)
    };
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let (mut round_ours, mut round_theirs) = (Vec::new(), Vec::new());
    for r in 0..args.rounds {
        let o = time_ours(&args, data.as_mut(), r as u32)?;
        say(format!(
            "round {r}: brigade median {:.1} ms/step",
            median(&o)
        ));
        round_ours.push(median(&o));
        ours.extend(o);
        if !args.no_peer {
            let t = time_torch(&args, &python, &script)?;
            say(format!(
                "round {r}: pytorch median {:.1} ms/step",
                median(&t)
            ));
            round_theirs.push(median(&t));
            theirs.extend(t);
        }
    }
    drop(data);
    let _ = std::fs::remove_dir_all(&dir);
    let mo = median(&ours);
    if args.json {
        let mt = (!args.no_peer).then(|| median(&theirs));
        let json = serde_json::json!({
            "arch": args.arch,
            "size": args.size,
            "batch": args.batch,
            "steps": args.steps,
            "rounds": args.rounds,
            "fed_by": if args.no_loader { "fixed_batch" } else { "loader" },
            "brigade_round_ms": round_ours,
            "pytorch_round_ms": (!args.no_peer).then_some(round_theirs),
            "brigade_median_ms": mo,
            "pytorch_median_ms": mt,
            "ratio": mt.map(|mt| mo / mt),
        });
        println!("{json}");
        return Ok(());
    }
    println!("brigade: {:.3} steps/s (median {mo:.1} ms/step)", 1e3 / mo);
    if !args.no_peer {
        let mt = median(&theirs);
        println!("pytorch: {:.3} steps/s (median {mt:.1} ms/step)", 1e3 / mt);
        println!(
            "overhead ratio (brigade time / pytorch time): {:.3} ({:+.1} %)",
            mo / mt,
            100.0 * (mo / mt - 1.0)
        );
    }
    Ok(())
}
