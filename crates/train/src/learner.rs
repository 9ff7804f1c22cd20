//! The training loop.
//!
//! A [`Learner`] owns the model (a [`Net`] over a `VarStore`), the recipe and
//! the run folder; [`Learner::fit`] runs every `[[stage]]` of the recipe over
//! a train and a valid [`DataSource`]: per batch the stage schedule sets each
//! layer group's LR and momentum, the step seeds torch's RNG from
//! `(seed, global step)` (dropout, mixup: a resumed run draws the same
//! numbers), and after every epoch the loop validates, logs a JSONL record,
//! prints a table row, keeps the best checkpoint by the monitored metric and
//! writes a resumable checkpoint. A stop request (Ctrl-C, `stop_after_steps`)
//! finishes the step, checkpoints `(epoch, next batch)` and returns; a
//! non-finite loss stops before the optimizer step, keeping the last good
//! checkpoint.

use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tch::{nn::VarStore, Device, Kind, Tensor};

use crate::checkpoint::{self, CheckpointError, ModelMeta, Pointer, TrainState};
use crate::config::{Config, MonitorMode, StageConfig};
use crate::data::{splitmix, DataError, DataSource, DeviceBatch};
use crate::metrics::{self, Accum, EpochRecord, MetricsError, MetricsLog, Record, StepRecord};
use crate::model::Net;
use crate::opt::{make_optimizer, make_schedule, stage_lrs, OptError};
use brigade_optim::clip::{clip_grad_norm, Norm};
use brigade_optim::loss::{label_smoothing_ce, MixConfig, Mixer};
use brigade_optim::{named_variables, Ema, Optimizer};

/// Loop failures.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Opt(#[from] OptError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error("tensor op failed: {0}")]
    Torch(#[from] tch::TchError),
    #[error(
        "loss is {loss} at epoch {epoch}, batch {batch} (step {step}): training stopped before \
         the optimizer step; the last good checkpoint is {}. Lower the learning rate or enable \
         gradient clipping (train.clip_grad_norm) and resume or restart.",
        last_good.as_ref().map_or("none (no checkpoint written yet)".to_string(), |p| p.display().to_string())
    )]
    NonFinite {
        loss: f64,
        epoch: u32,
        batch: usize,
        step: u64,
        last_good: Option<PathBuf>,
    },
    #[error("resume: {0}")]
    Resume(String),
    #[error("data: the training set has {samples} samples, fewer than one batch of {batch_size}")]
    TooSmall { samples: usize, batch_size: usize },
    #[error("distributed: {0}")]
    Dist(String),
}

/// How a `fit` ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Every stage ran.
    Finished {
        last: Option<EpochRecord>,
        best: Option<f64>,
    },
    /// Stopped on request (Ctrl-C or `train.stop_after_steps`) after checkpointing.
    Stopped { step: u64, checkpoint: PathBuf },
}

static STOP: AtomicBool = AtomicBool::new(false);

/// Asks the running loop to finish its step, checkpoint and return.
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}

/// Clears a pending stop request.
pub fn clear_stop() {
    STOP.store(false, Ordering::SeqCst);
}

/// Installs the Ctrl-C handler (once per process): the first Ctrl-C requests a
/// graceful stop, a second one exits immediately.
pub fn install_ctrlc() -> Result<(), String> {
    static ONCE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        ctrlc::set_handler(|| {
            if STOP.swap(true, Ordering::SeqCst) {
                eprintln!("\nsecond Ctrl-C: exiting without checkpoint");
                std::process::exit(130);
            }
            eprintln!("\nCtrl-C: finishing the step, writing a checkpoint, then stopping");
        })
        .map_err(|e| e.to_string())
    })
    .clone()
}

/// Gradient and metric synchronisation across processes (DDP). Rank 0 writes
/// checkpoints and logs.
pub trait GradSync {
    fn rank(&self) -> usize;
    fn world_size(&self) -> usize;
    /// Averages the gradients of every trainable variable over ranks.
    fn allreduce_grads(&self, vs: &VarStore) -> Result<(), String>;
    /// Sums values over ranks, in place.
    fn allreduce_sum(&self, values: &mut [f64]) -> Result<(), String>;
}

/// Builds a stage's optimizer from the VarStore, the stage and the layer groups.
pub type OptFactory =
    Box<dyn Fn(&VarStore, &StageConfig, &[Vec<String>]) -> Result<Box<dyn Optimizer>, OptError>>;

/// The recipe's optimizer ([`make_optimizer`]: brigade-optim's SGD, AdamW or Ranger).
pub fn default_optimizer() -> OptFactory {
    Box::new(make_optimizer)
}

/// Device-side switches of the step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepOptions {
    pub device: Device,
    /// bf16 autocast around forward + loss.
    pub bf16: bool,
    /// Channels-last inputs (and model, converted by the caller).
    pub channels_last: bool,
}

/// Hook that wraps the forward pass (autocast) and converts inputs (memory format).
pub trait Accel {
    /// Runs `f` under autocast when enabled.
    fn forward(
        &self,
        f: &mut dyn FnMut() -> Result<Tensor, TrainError>,
    ) -> Result<Tensor, TrainError>;
    /// Converts a batch of images (e.g. to channels-last).
    fn prepare(&self, xs: Tensor) -> Result<Tensor, tch::TchError>;
}

/// No autocast, no conversion.
pub struct PlainAccel;

impl Accel for PlainAccel {
    fn forward(
        &self,
        f: &mut dyn FnMut() -> Result<Tensor, TrainError>,
    ) -> Result<Tensor, TrainError> {
        f()
    }
    fn prepare(&self, xs: Tensor) -> Result<Tensor, tch::TchError> {
        Ok(xs)
    }
}

/// The trainer.
pub struct Learner {
    pub cfg: Config,
    pub vs: VarStore,
    pub net: Box<dyn Net>,
    pub run_dir: PathBuf,
    pub meta: ModelMeta,
    pub device: Device,
    pub make_opt: OptFactory,
    pub accel: Box<dyn Accel>,
    pub sync: Option<Box<dyn GradSync>>,
    /// Print the epoch table and progress bars.
    pub show: bool,
}

/// Seed of torch's RNG for a step (dropout, mixup), so a resumed run draws the same numbers.
pub fn step_seed(seed: u64, step: u64) -> i64 {
    (splitmix(seed ^ splitmix(step.wrapping_add(0x5eed))) >> 1) as i64
}

/// The recipe hash a resume must match (run name/out_dir, checkpoint cadence and stop points excluded).
pub fn recipe_hash(cfg: &Config) -> u64 {
    let mut c = cfg.clone();
    c.run.name = String::new();
    c.run.out_dir = PathBuf::new();
    c.run.device = Default::default();
    c.train.stop_after_steps = 0;
    c.train.checkpoint_every = 0;
    c.data.workers = 1;
    checkpoint::fnv1a(c.to_toml().as_bytes())
}

fn progress(n: usize, start: usize, show: bool, what: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(n as u64);
    pb.set_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed_precise} < {eta_precise})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    pb.set_prefix(what.to_string());
    pb.set_position(start as u64);
    pb
}

/// Applies the recipe's torch settings: intra-op threads (1 in deterministic
/// mode unless `run.threads` says otherwise) and the seed of the initial weights.
pub fn setup_torch(cfg: &Config) {
    let threads = match (cfg.run.threads, cfg.run.deterministic) {
        (0, true) => 1,
        (0, false) => 0,
        (n, _) => n as i32,
    };
    if threads > 0 {
        tch::set_num_threads(threads);
    }
    tch::manual_seed(step_seed(cfg.run.seed, u64::MAX));
}

impl Learner {
    /// A learner for the recipe's model (built-in architectures), with the
    /// built-in optimizer, no acceleration hooks and no output on the terminal.
    pub fn new(
        cfg: Config,
        device: Device,
        classes: Vec<String>,
    ) -> Result<Learner, crate::model::ModelError> {
        setup_torch(&cfg);
        let vs = VarStore::new(device);
        let num_classes = classes.len() as u32;
        let net = crate::model::build(
            &vs.root(),
            &cfg.model.arch,
            cfg.model.width,
            num_classes,
            cfg.model.head,
        )?;
        if let Some(w) = &cfg.model.pretrained {
            let path = crate::model::resolve_pretrained(w)?;
            let summary = net.load_pretrained(&vs, &path)?;
            eprintln!("pretrained weights {}: {summary}", path.display());
        }
        let meta = ModelMeta {
            format: checkpoint::FORMAT,
            arch: cfg.model.arch.clone(),
            head: cfg.model.head,
            width: cfg.model.width,
            num_classes,
            classes,
            eval_size: cfg.eval_size(),
            resize_ratio: cfg.eval.resize_ratio,
            mean: crate::data::IMAGENET_MEAN,
            std: crate::data::IMAGENET_STD,
        };
        Ok(Learner {
            run_dir: cfg.run_dir(),
            cfg,
            vs,
            net,
            meta,
            device,
            make_opt: default_optimizer(),
            accel: Box::new(PlainAccel),
            sync: None,
            show: false,
        })
    }

    /// Whether this process writes files (rank 0 or no DDP).
    pub fn is_main(&self) -> bool {
        self.sync.as_ref().is_none_or(|s| s.rank() == 0)
    }

    /// Path of the metrics log.
    pub fn metrics_path(&self) -> PathBuf {
        self.run_dir.join("metrics.jsonl")
    }

    fn loss_of(&self, logits: &Tensor, ys: &Tensor, smoothing: f64) -> Result<Tensor, TrainError> {
        Ok(label_smoothing_ce(
            &logits.f_to_kind(Kind::Float)?,
            ys,
            smoothing,
        )?)
    }

    /// Mean loss and top-1/top-5 counts of the model (eval mode) over a source.
    pub fn evaluate(
        &self,
        data: &mut dyn DataSource,
        size: u32,
        batch_size: usize,
    ) -> Result<Accum, TrainError> {
        let mut acc = Accum::default();
        let nb = data.num_batches(batch_size);
        let pb = progress(nb, 0, self.show, "valid");
        let _guard = tch::no_grad_guard();
        for batch in data.epoch(0, size, batch_size, 0)? {
            let DeviceBatch { images, labels, .. } = batch?;
            let xs = self.accel.prepare(images)?;
            let logits = self
                .accel
                .forward(&mut || Ok(self.net.forward_t(&xs, false)))?;
            let loss = self.loss_of(&logits, &labels, 0.0)?.f_double_value(&[])?;
            let (t1, t5) = metrics::topk_correct(&logits, &labels, 5)?;
            acc.add(loss, labels.size()[0] as u64, t1, t5);
            pb.inc(1);
        }
        pb.finish_and_clear();
        if let Some(s) = &self.sync {
            let mut v = [acc.loss_sum, acc.top1 as f64, acc.top5 as f64, acc.n as f64];
            s.allreduce_sum(&mut v).map_err(TrainError::Dist)?;
            let w = s.world_size() as f64;
            // every rank evaluated the whole split: average
            acc = Accum {
                loss_sum: v[0] / w,
                top1: (v[1] / w).round() as u64,
                top5: (v[2] / w).round() as u64,
                n: (v[3] / w).round() as u64,
            };
        }
        Ok(acc)
    }

    fn write_checkpoint(
        &self,
        state: &TrainState,
        opt: Option<&dyn Optimizer>,
        ema: Option<&Ema>,
    ) -> Result<PathBuf, TrainError> {
        let dir = checkpoint::checkpoints_dir(&self.run_dir);
        let name = format!("step-{:010}", state.global_step);
        let ptr = Pointer {
            dir: name.clone(),
            global_step: state.global_step,
            metric: None,
            value: None,
        };
        let path = checkpoint::publish(&dir, &name, "latest.json", &ptr, 2, |tmp| {
            checkpoint::save_vars(&self.vs, &tmp.join("model.safetensors"))?;
            checkpoint::write_json(&tmp.join("meta.json"), &self.meta)?;
            if let Some(o) = opt {
                o.save(&tmp.join("optim.safetensors"))
                    .map_err(|e| CheckpointError::Format {
                        path: tmp.join("optim.safetensors"),
                        message: e.to_string(),
                    })?;
            }
            if let Some(e) = ema {
                e.save(&tmp.join("ema.safetensors"))
                    .map_err(|e| CheckpointError::Format {
                        path: tmp.join("ema.safetensors"),
                        message: e.to_string(),
                    })?;
            }
            checkpoint::write_json(&tmp.join("state.json"), state)
        })?;
        Ok(path)
    }

    fn write_best(
        &self,
        state: &TrainState,
        metric: &str,
        value: f64,
    ) -> Result<PathBuf, TrainError> {
        let dir = checkpoint::checkpoints_dir(&self.run_dir);
        let name = format!("best-{:010}", state.global_step);
        let ptr = Pointer {
            dir: name.clone(),
            global_step: state.global_step,
            metric: Some(metric.to_string()),
            value: Some(value),
        };
        Ok(checkpoint::publish(
            &dir,
            &name,
            "best.json",
            &ptr,
            1,
            |tmp| {
                checkpoint::save_vars(&self.vs, &tmp.join("model.safetensors"))?;
                checkpoint::write_json(&tmp.join("meta.json"), &self.meta)?;
                checkpoint::write_json(&tmp.join("state.json"), state)
            },
        )?)
    }

    /// Loads the latest checkpoint of the run folder into the model; returns its state and folder.
    pub fn load_latest(&mut self) -> Result<(TrainState, PathBuf), TrainError> {
        let ck = checkpoint::checkpoints_dir(&self.run_dir);
        let (dir, _) = checkpoint::resolve(&ck, "latest.json")?;
        let state: TrainState = checkpoint::read_json(&dir.join("state.json"))?;
        if state.format != checkpoint::FORMAT {
            return Err(TrainError::Resume(format!(
                "{} has checkpoint format {}, this build reads {}",
                dir.display(),
                state.format,
                checkpoint::FORMAT
            )));
        }
        if state.recipe_hash != recipe_hash(&self.cfg) {
            return Err(TrainError::Resume(format!(
                "{} was written by a different recipe (stages, model, data or training settings \
                 changed); resume with the recipe saved in {}",
                dir.display(),
                self.run_dir.join("recipe.toml").display()
            )));
        }
        checkpoint::load_vars(&mut self.vs, &dir.join("model.safetensors"))?;
        Ok((state, dir))
    }

    /// Runs every stage of the recipe (from the latest checkpoint when `resume`).
    pub fn fit(
        &mut self,
        train: &mut dyn DataSource,
        valid: &mut dyn DataSource,
        resume: bool,
    ) -> Result<Outcome, TrainError> {
        let cfg = self.cfg.clone();
        let main = self.is_main();
        if main {
            std::fs::create_dir_all(&self.run_dir).map_err(|source| CheckpointError::Io {
                path: self.run_dir.clone(),
                source,
            })?;
        }
        let (mut st, resume_dir) = if resume {
            let (s, d) = self.load_latest()?;
            (s, Some(d))
        } else {
            (
                TrainState {
                    format: checkpoint::FORMAT,
                    epoch: 0,
                    batch: 0,
                    global_step: 0,
                    accum: Accum::default(),
                    best: None,
                    seed: cfg.run.seed,
                    recipe_hash: recipe_hash(&cfg),
                    elapsed_secs: 0.0,
                    opt_stage: None,
                    has_ema: false,
                },
                None,
            )
        };
        let metrics_path = self.metrics_path();
        let mut log = if main {
            if resume {
                MetricsLog::truncate_after(&metrics_path, st.global_step)?;
            } else if metrics_path.exists() {
                std::fs::remove_file(&metrics_path).map_err(|source| MetricsError::Io {
                    path: metrics_path.clone(),
                    source,
                })?;
            }
            Some(MetricsLog::open(&metrics_path)?)
        } else {
            None
        };
        let groups = self.net.layer_groups();
        let n_groups = groups.len().max(1);
        let mut ema = if cfg.train.ema > 0.0 {
            let mut e = Ema::new(&named_variables(&self.vs), cfg.train.ema, true)?;
            if let Some(d) = &resume_dir {
                if st.has_ema {
                    e.load(&d.join("ema.safetensors"))?;
                }
            }
            Some(e)
        } else {
            None
        };
        let mut opt: Option<(usize, Box<dyn Optimizer>)> = None;
        let mixer = Mixer::new(
            MixConfig {
                mixup_alpha: cfg.train.mixup,
                cutmix_alpha: cfg.train.cutmix,
                prob: 1.0,
                switch_prob: 0.5,
            },
            cfg.run.seed,
        )?;
        let mut pending_opt = resume_dir.clone();
        let mut last_ckpt: Option<PathBuf> = resume_dir.clone();
        let mut last_record = None;
        let started = Instant::now();
        let elapsed0 = st.elapsed_secs;
        if self.show && main {
            println!("{}", metrics::table_header());
        }
        for epoch in st.epoch..cfg.total_epochs() {
            let Some((si, e_in_stage)) = cfg.stage_of_epoch(epoch) else {
                break;
            };
            let stage = cfg.stage[si].clone();
            let bs = cfg.stage_batch_size(si) as usize;
            if opt.as_ref().map(|(s, _)| *s) != Some(si) {
                self.net.set_frozen(&self.vs, stage.freeze);
                let mut o = (self.make_opt)(&self.vs, &stage, &groups)?;
                if let Some(d) = pending_opt.take() {
                    if st.opt_stage == Some(si as u32) {
                        o.load(&d.join("optim.safetensors"))?;
                    }
                }
                opt = Some((si, o));
            }
            let nb = train.num_batches(bs);
            if nb == 0 {
                return Err(TrainError::TooSmall {
                    samples: train.len(),
                    batch_size: bs,
                });
            }
            let total_iters = u64::from(stage.epochs) * nb as u64;
            let start_b = if epoch == st.epoch {
                st.batch as usize
            } else {
                0
            };
            let mut acc = if epoch == st.epoch {
                st.accum
            } else {
                Accum::default()
            };
            let lrs = stage_lrs(&stage, n_groups)?;
            let sched = make_schedule(&stage);
            let pb = progress(nb, start_b, self.show && main, &format!("epoch {epoch}"));
            let t_epoch = Instant::now();
            let mut wait = 0.0f64;
            let mut images_done = 0u64;
            let mut last_lr = 0.0;
            if start_b < nb {
                let mut it = train.epoch(epoch, stage.size, bs, start_b)?;
                let mut b = start_b;
                loop {
                    let t0 = Instant::now();
                    let next = it.next();
                    wait += t0.elapsed().as_secs_f64();
                    let Some(batch) = next else { break };
                    let batch = batch?;
                    let Some((_, o)) = opt.as_mut() else { break };
                    let iter = u64::from(e_in_stage) * nb as u64 + b as u64;
                    brigade_optim::schedule::apply(
                        o.as_mut(),
                        sched.as_ref(),
                        iter as usize,
                        total_iters as usize,
                        &lrs,
                    )?;
                    last_lr = o.groups().last().map_or(0.0, |g| g.lr);
                    tch::manual_seed(step_seed(cfg.run.seed, st.global_step));
                    let n = batch.labels.size()[0] as u64;
                    let xs = self.accel.prepare(batch.images)?;
                    let mixed = mixer.mix(st.global_step, &xs, &batch.labels)?;
                    let smoothing = cfg.train.label_smoothing;
                    let loss_t = self.accel.forward(&mut || {
                        let logits = self.net.forward_t(&mixed.images, true);
                        Ok(mixed.loss(&logits.f_to_kind(Kind::Float)?, smoothing)?)
                    })?;
                    let loss = loss_t.f_double_value(&[])?;
                    if !loss.is_finite() {
                        pb.abandon();
                        return Err(TrainError::NonFinite {
                            loss,
                            epoch,
                            batch: b,
                            step: st.global_step,
                            last_good: last_ckpt,
                        });
                    }
                    o.zero_grad();
                    loss_t.f_backward()?;
                    if let Some(s) = &self.sync {
                        s.allreduce_grads(&self.vs).map_err(TrainError::Dist)?;
                    }
                    if cfg.train.clip_grad_norm > 0.0 {
                        let params = self.vs.trainable_variables();
                        clip_grad_norm(params.iter(), cfg.train.clip_grad_norm, Norm::L2)?;
                    }
                    o.step()?;
                    if let Some(e) = ema.as_mut() {
                        e.update()?;
                    }
                    st.global_step += 1;
                    b += 1;
                    images_done += n;
                    acc.add(loss, n, 0, 0);
                    if let Some(l) = log.as_mut() {
                        l.write(&Record::Step(StepRecord {
                            step: st.global_step,
                            epoch,
                            batch: (b - 1) as u32,
                            loss,
                            lr: last_lr,
                        }))?;
                    }
                    pb.set_message(format!("loss {:.4}", acc.loss()));
                    pb.inc(1);
                    let stop = STOP.load(Ordering::SeqCst)
                        || (cfg.train.stop_after_steps > 0
                            && st.global_step >= cfg.train.stop_after_steps);
                    let periodic = cfg.train.checkpoint_every > 0
                        && st.global_step % u64::from(cfg.train.checkpoint_every) == 0
                        && b < nb;
                    if stop || periodic {
                        st.epoch = epoch;
                        st.batch = b as u32;
                        st.accum = acc;
                        st.opt_stage = Some(si as u32);
                        st.has_ema = ema.is_some();
                        st.elapsed_secs = elapsed0 + started.elapsed().as_secs_f64();
                        if main {
                            let p = self.write_checkpoint(&st, Some(o.as_ref()), ema.as_ref())?;
                            last_ckpt = Some(p);
                        }
                        if stop {
                            pb.abandon();
                            clear_stop();
                            return Ok(Outcome::Stopped {
                                step: st.global_step,
                                checkpoint: last_ckpt.unwrap_or_default(),
                            });
                        }
                    }
                }
            }
            pb.finish_and_clear();
            let train_secs = t_epoch.elapsed().as_secs_f64();
            // the loader's own figure when it measures one (excludes the upload)
            if start_b < nb {
                if let Some(w) = train.input_wait() {
                    wait = w.as_secs_f64();
                }
            }
            // validation (EMA weights when enabled)
            if let Some(e) = ema.as_mut() {
                e.swap()?;
            }
            let v = self.evaluate(valid, stage.size, cfg.eval.batch_size as usize);
            let v = match v {
                Ok(v) => v,
                Err(err) => {
                    if let Some(e) = ema.as_mut() {
                        e.swap()?;
                    }
                    return Err(err);
                }
            };
            let rec = EpochRecord {
                step: st.global_step,
                epoch,
                stage: stage.name.clone(),
                size: stage.size,
                train_loss: acc.loss(),
                valid_loss: v.loss(),
                valid_top1: v.top1(),
                valid_top5: v.top5(),
                img_per_s: if train_secs > 0.0 {
                    images_done as f64 / train_secs
                } else {
                    0.0
                },
                stall_frac: if train_secs > 0.0 {
                    wait / train_secs
                } else {
                    0.0
                },
                lr: last_lr,
                secs: train_secs,
            };
            st.epoch = epoch + 1;
            st.batch = 0;
            st.accum = Accum::default();
            st.elapsed_secs = elapsed0 + started.elapsed().as_secs_f64();
            let best_result = (|| -> Result<(), TrainError> {
                if let Some(value) = rec.metric(&cfg.train.monitor) {
                    let better = match (st.best, cfg.train.monitor_mode) {
                        (None, _) => value.is_finite(),
                        (Some(b), MonitorMode::Max) => value > b,
                        (Some(b), MonitorMode::Min) => value < b,
                    };
                    if better {
                        st.best = Some(value);
                        if main {
                            self.write_best(&st, &cfg.train.monitor, value)?;
                        }
                    }
                }
                Ok(())
            })();
            if let Some(e) = ema.as_mut() {
                e.swap()?;
            }
            best_result?;
            if let Some(l) = log.as_mut() {
                l.write(&Record::Epoch(rec.clone()))?;
            }
            if self.show && main {
                println!("{}", metrics::table_row(&rec));
            }
            st.opt_stage = opt.as_ref().map(|(s, _)| *s as u32);
            st.has_ema = ema.is_some();
            if main {
                let o = opt.as_ref().map(|(_, o)| o.as_ref());
                last_ckpt = Some(self.write_checkpoint(&st, o, ema.as_ref())?);
                if let Err(e) = self.write_plots() {
                    eprintln!("warning: {e}");
                }
            }
            last_record = Some(rec);
            if STOP.load(Ordering::SeqCst) {
                clear_stop();
                return Ok(Outcome::Stopped {
                    step: st.global_step,
                    checkpoint: last_ckpt.unwrap_or_default(),
                });
            }
        }
        Ok(Outcome::Finished {
            last: last_record,
            best: st.best,
        })
    }

    /// fastai's LR finder on stage `stage` (its freezing, optimizer and batch
    /// size): an exponential sweep, one batch per learning rate; the weights,
    /// BatchNorm statistics and optimizer state are restored afterwards.
    pub fn lr_find(
        &mut self,
        train: &mut dyn DataSource,
        stage: usize,
        finder: &brigade_optim::LrFinderConfig,
    ) -> Result<brigade_optim::LrFindResult, TrainError> {
        let st = self.cfg.stage.get(stage).cloned().ok_or_else(|| {
            TrainError::Resume(format!(
                "lr-find: no stage {stage} (the recipe has {})",
                self.cfg.stage.len()
            ))
        })?;
        let bs = self.cfg.stage_batch_size(stage) as usize;
        let nb = train.num_batches(bs);
        if nb == 0 {
            return Err(TrainError::TooSmall {
                samples: train.len(),
                batch_size: bs,
            });
        }
        self.net.set_frozen(&self.vs, st.freeze);
        let groups = self.net.layer_groups();
        let mut opt = (self.make_opt)(&self.vs, &st, &groups)?;
        let restore: Vec<Tensor> = named_variables(&self.vs)
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        let smoothing = self.cfg.train.label_smoothing;
        let seed = self.cfg.run.seed;
        let mut i = 0usize;
        let net = &self.net;
        let accel = &self.accel;
        let res = brigade_optim::lr_find(opt.as_mut(), &restore, finder, |o, _lr| {
            let (epoch, b) = ((i / nb) as u32, i % nb);
            i += 1;
            let batch = train
                .epoch(epoch, st.size, bs, b)?
                .next()
                .ok_or_else(|| DataError::Msg(format!("no batch {b} in epoch {epoch}")))??;
            tch::manual_seed(step_seed(seed, i as u64));
            let xs = accel.prepare(batch.images)?;
            let loss = accel.forward(&mut || {
                let logits = net.forward_t(&xs, true).f_to_kind(Kind::Float)?;
                Ok(label_smoothing_ce(&logits, &batch.labels, smoothing)?)
            })?;
            o.zero_grad();
            loss.f_backward()?;
            o.step()?;
            Ok::<f64, TrainError>(loss.f_double_value(&[])?)
        })?;
        Ok(res)
    }

    /// Redraws `loss.png`, `accuracy.png`, `lr.png` in the run folder from the log.
    pub fn write_plots(&self) -> Result<Vec<PathBuf>, String> {
        plot_log(&self.metrics_path(), &self.run_dir)
    }
}

/// Plots a metrics log into `dir`.
pub fn plot_log(log: &Path, dir: &Path) -> Result<Vec<PathBuf>, String> {
    let recs = MetricsLog::read(log).map_err(|e| e.to_string())?;
    let steps = metrics::steps(&recs);
    let epochs = metrics::epochs(&recs);
    crate::plot::plot_run(&steps, &epochs, dir).map_err(|e| e.to_string())
}
