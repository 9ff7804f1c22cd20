//! The loop on in-memory data: determinism, stop + resume equals an
//! uninterrupted run, NaN stops with the last good checkpoint, best checkpoint.

use brigade_train::checkpoint;
use brigade_train::config::Config;
use brigade_train::data::{DataSource, MemoryData, IMAGENET_MEAN, IMAGENET_STD};
use brigade_train::learner::{Learner, Outcome, TrainError};
use brigade_train::metrics::{self, MetricsLog, Record};
use brigade_train::model::Net;
use std::cell::Cell;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

/// torch's RNG is process-global and the learner reseeds it every step: tests
/// running on parallel harness threads would interleave their seeds and draws,
/// so every test that trains holds this lock.
static TORCH_RNG: Mutex<()> = Mutex::new(());

fn torch_rng() -> MutexGuard<'static, ()> {
    TORCH_RNG
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
use tch::Device;

const CLASSES: u32 = 4;

/// Learnable images: class c has a bright patch in quadrant c over noise.
fn dataset(n: usize, side: usize, seed: u64, train: bool) -> MemoryData {
    let mut d = MemoryData::random(n, side, CLASSES, seed, Device::Cpu);
    for i in 0..n {
        let c = d.labels[i] as usize;
        let (qx, qy) = ((c % 2) * side / 2, (c / 2) * side / 2);
        for y in qy..qy + side / 2 {
            for x in qx..qx + side / 2 {
                let o = (i * side * side + y * side + x) * 3;
                d.pixels[o] = 255;
                d.pixels[o + 1] = d.pixels[o + 1] / 2 + 128;
            }
        }
    }
    d.train = train;
    d.mean = IMAGENET_MEAN;
    d.std = IMAGENET_STD;
    d
}

fn recipe(dir: &Path, extra: &[&str]) -> Config {
    let text = r#"
[run]
name = "t"
seed = 3
deterministic = true
threads = 1
[model]
arch = "tiny_cnn"
width = 4
[train]
batch_size = 8
[[stage]]
name = "head"
epochs = 1
size = 12
freeze = true
lr = 1e-2
[[stage]]
name = "all"
epochs = 2
size = 16
lr = 5e-3
lr_lo = 5e-4
schedule = "flat_cos"
pct_start = 0.5
"#;
    let mut o: Vec<String> = vec![format!("run.out_dir={:?}", dir.display().to_string())];
    o.extend(extra.iter().map(|s| s.to_string()));
    Config::from_toml_str(text, "test recipe", &o).unwrap()
}

fn classes() -> Vec<String> {
    (0..CLASSES).map(|c| format!("c{c}")).collect()
}

fn run(cfg: &Config, resume: bool) -> Result<Outcome, TrainError> {
    let mut l = Learner::new(cfg.clone(), Device::Cpu, classes()).unwrap();
    let mut train = dataset(48, 16, 1, true);
    let mut valid = dataset(16, 16, 2, false);
    l.fit(&mut train, &mut valid, resume)
}

/// `(step, loss, lr)` of each step.
type Steps = Vec<(u64, f64, f64)>;
/// `(epoch, train_loss, valid_loss, valid_top1)` of each epoch.
type Epochs = Vec<(u32, f64, f64, f64)>;

/// Step losses and epoch metrics (timings excluded) of a run's log.
fn curve(cfg: &Config) -> (Steps, Epochs) {
    let recs = MetricsLog::read(&cfg.run_dir().join("metrics.jsonl")).unwrap();
    let steps = metrics::steps(&recs)
        .iter()
        .map(|s| (s.step, s.loss, s.lr))
        .collect();
    let epochs = metrics::epochs(&recs)
        .iter()
        .map(|e| (e.epoch, e.train_loss, e.valid_loss, e.valid_top1))
        .collect();
    (steps, epochs)
}

#[test]
fn same_seed_same_curve_and_learns() {
    let _rng = torch_rng();
    let d = tempfile::tempdir().unwrap();
    let a = recipe(&d.path().join("a"), &[]);
    let b = recipe(&d.path().join("b"), &[]);
    assert!(matches!(run(&a, false).unwrap(), Outcome::Finished { .. }));
    assert!(matches!(run(&b, false).unwrap(), Outcome::Finished { .. }));
    let (sa, ea) = curve(&a);
    let (sb, eb) = curve(&b);
    assert_eq!(sa.len(), 3 * 6, "6 batches of 8 per epoch, 3 epochs");
    assert_eq!(sa, sb, "same seed → bit-identical loss curve");
    assert_eq!(ea, eb);
    // a different seed changes the curve
    let c = recipe(&d.path().join("c"), &["run.seed=4"]);
    run(&c, false).unwrap();
    assert_ne!(curve(&c).0, sa);
    // it learns the quadrant task
    let last = ea.last().unwrap();
    assert!(
        last.1 < sa[0].1,
        "train loss fell: {} → {}",
        sa[0].1,
        last.1
    );
    // files of a finished run
    let run_dir = a.run_dir();
    for f in ["metrics.jsonl", "loss.png", "accuracy.png", "lr.png"] {
        assert!(run_dir.join(f).is_file(), "{f}");
    }
    let ck = checkpoint::checkpoints_dir(&run_dir);
    let (best_dir, best) = checkpoint::resolve(&ck, "best.json").unwrap();
    assert_eq!(best.metric.as_deref(), Some("valid_top1"));
    let best_top1 = ea.iter().map(|e| e.3).fold(f64::MIN, f64::max);
    assert_eq!(best.value, Some(best_top1));
    assert!(best_dir.join("model.safetensors").is_file());
    let meta: checkpoint::ModelMeta = checkpoint::read_json(&best_dir.join("meta.json")).unwrap();
    assert_eq!(meta.num_classes, CLASSES);
}

#[test]
fn stop_and_resume_equals_uninterrupted() {
    let _rng = torch_rng();
    let d = tempfile::tempdir().unwrap();
    // mixup, cutmix, EMA, smoothing and clipping all draw or keep state: resume must restore it all
    let extra = [
        "train.mixup=0.4",
        "train.cutmix=1.0",
        "train.ema=0.9",
        "train.label_smoothing=0.1",
        "train.clip_grad_norm=5.0",
    ];
    let full = recipe(&d.path().join("full"), &extra);
    run(&full, false).unwrap();
    let (s_full, e_full) = curve(&full);

    // stop mid-epoch in stage 2 (step 9 = epoch 1, batch 3), then mid-way again, then finish
    let mut parts: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    parts.push("train.stop_after_steps=9".into());
    let p: Vec<&str> = parts.iter().map(|s| s.as_str()).collect();
    let cut = recipe(&d.path().join("cut"), &p);
    match run(&cut, false).unwrap() {
        Outcome::Stopped { step, checkpoint } => {
            assert_eq!(step, 9);
            assert!(checkpoint.join("state.json").is_file());
        }
        o => panic!("expected a stop, got {o:?}"),
    }
    let mut parts2 = parts.clone();
    *parts2.last_mut().unwrap() = "train.stop_after_steps=14".into();
    let p2: Vec<&str> = parts2.iter().map(|s| s.as_str()).collect();
    let cut2 = recipe(&d.path().join("cut"), &p2);
    assert!(matches!(
        run(&cut2, true).unwrap(),
        Outcome::Stopped { step: 14, .. }
    ));
    let rest = recipe(&d.path().join("cut"), &extra);
    assert!(matches!(
        run(&rest, true).unwrap(),
        Outcome::Finished { .. }
    ));
    let (s_cut, e_cut) = curve(&rest);
    assert_eq!(
        s_cut, s_full,
        "resumed step losses equal the uninterrupted run's"
    );
    assert_eq!(
        e_cut, e_full,
        "resumed epoch metrics equal the uninterrupted run's"
    );
}

#[test]
fn resume_refuses_another_recipe_and_missing_checkpoint() {
    let _rng = torch_rng();
    let d = tempfile::tempdir().unwrap();
    let cfg = recipe(d.path(), &[]);
    let e = run(&cfg, true).unwrap_err().to_string();
    assert!(e.contains("nothing to resume"), "{e}");
    let stop = recipe(d.path(), &["train.stop_after_steps=2"]);
    run(&stop, false).unwrap();
    let other = recipe(d.path(), &["stage.1.lr=0.1"]);
    let e = run(&other, true).unwrap_err().to_string();
    assert!(e.contains("different recipe"), "{e}");
}

/// A model that returns NaN logits from its 4th training forward on.
struct NanAfter {
    inner: Box<dyn Net>,
    calls: Cell<u32>,
}

impl Net for NanAfter {
    fn forward_t(&self, xs: &tch::Tensor, train: bool) -> tch::Tensor {
        let y = self.inner.forward_t(xs, train);
        if train {
            self.calls.set(self.calls.get() + 1);
            if self.calls.get() >= 4 {
                return y * f64::NAN;
            }
        }
        y
    }
    fn layer_groups(&self) -> Vec<Vec<String>> {
        self.inner.layer_groups()
    }
}

#[test]
fn nan_loss_stops_and_keeps_last_good_checkpoint() {
    let _rng = torch_rng();
    let d = tempfile::tempdir().unwrap();
    let cfg = recipe(d.path(), &["train.checkpoint_every=2"]);
    let mut l = Learner::new(cfg.clone(), Device::Cpu, classes()).unwrap();
    let inner = std::mem::replace(
        &mut l.net,
        brigade_train::model::build(
            &tch::nn::VarStore::new(Device::Cpu).root(),
            "tiny_cnn",
            4,
            4,
            brigade_train::config::HeadChoice::Linear,
        )
        .unwrap(),
    );
    l.net = Box::new(NanAfter {
        inner,
        calls: Cell::new(0),
    });
    let mut train = dataset(48, 16, 1, true);
    let mut valid = dataset(16, 16, 2, false);
    let err = l.fit(&mut train, &mut valid, false).unwrap_err();
    match &err {
        TrainError::NonFinite {
            step, last_good, ..
        } => {
            assert_eq!(*step, 3, "three good steps");
            let good = last_good.as_ref().expect("a checkpoint after step 2");
            assert!(good.ends_with("step-0000000002"), "{}", good.display());
        }
        e => panic!("expected NonFinite, got {e}"),
    }
    assert!(err.to_string().contains("last good checkpoint"));
    // the log never holds a non-finite loss
    let recs = MetricsLog::read(&cfg.run_dir().join("metrics.jsonl")).unwrap();
    assert!(recs.iter().all(|r| match r {
        Record::Step(s) => s.loss.is_finite(),
        Record::Epoch(_) => true,
    }));
    assert_eq!(train.len(), 48);
}

#[test]
fn lr_find_sweeps_and_restores_weights() {
    let _rng = torch_rng();
    let d = tempfile::tempdir().unwrap();
    let cfg = recipe(d.path(), &[]);
    let mut l = Learner::new(cfg, Device::Cpu, classes()).unwrap();
    let before: Vec<(String, tch::Tensor)> = brigade_optim::named_variables(&l.vs)
        .into_iter()
        .map(|(n, t)| (n, brigade_train::opt::deep_copy(&t).unwrap()))
        .collect();
    let mut train = dataset(48, 16, 1, true);
    let finder = brigade_optim::LrFinderConfig {
        num_iter: 12,
        start_lr: 1e-5,
        end_lr: 1.0,
        ..Default::default()
    };
    let res = l.lr_find(&mut train, 1, &finder).unwrap();
    assert!(!res.lrs.is_empty() && res.lrs.len() <= 12);
    assert!(res.lrs.windows(2).all(|w| w[1] > w[0]), "exponential sweep");
    assert!(res.losses.iter().all(|v| v.is_finite()));
    for (n, t) in brigade_optim::named_variables(&l.vs) {
        let b = &before.iter().find(|(m, _)| *m == n).unwrap().1;
        assert!(t.equal(b), "{n} restored after the sweep");
    }
    assert!(l.lr_find(&mut train, 9, &finder).is_err(), "no such stage");
}
