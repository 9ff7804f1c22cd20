//! Augmentation throughput (one core): RandomResizedCrop+flip 512->224, the
//! fastai affine+warp pass, RRC+TrivialAugmentWide, eval resize+centre crop,
//! with torchvision (uint8 tensors, `torch.set_num_threads(1)`) timed in the
//! same run as the peer.
//!
//! `scripts/with-env.sh cargo bench --bench augment`

use brigade_augment::{
    EvalConfig, FastaiConfig, Geometry, Pipeline, PipelineConfig, Rect, SampleSeed, Scratch,
    TrainConfig, TrivialAugmentConfig,
};
use brigade_pixels::ImageView;
use criterion::{criterion_group, Criterion, Throughput};
use std::process::Command;
use std::time::Duration;

const W: u32 = 512;
const H: u32 = 512;

fn image() -> Vec<u8> {
    (0..W * H)
        .flat_map(|i| {
            let (x, y) = (i % W, i / W);
            [(x ^ y) as u8, (x * 2 + y) as u8, (y * 3) as u8]
        })
        .collect()
}

fn pipelines() -> Vec<(&'static str, Pipeline)> {
    let train = |t: TrainConfig| Pipeline::new(PipelineConfig::Train(t)).expect("valid config");
    vec![
        ("rrc_flip_512_224", Pipeline::default()),
        (
            "fastai_affine_512_224",
            train(TrainConfig {
                geometry: Geometry::Fastai(FastaiConfig::default()),
                ..Default::default()
            }),
        ),
        (
            "rrc_trivialaugment_512_224",
            train(TrainConfig {
                trivial_augment: Some(TrivialAugmentConfig::default()),
                ..Default::default()
            }),
        ),
        (
            "eval_resize_crop_512_224",
            Pipeline::new(PipelineConfig::Eval(EvalConfig::default())).expect("valid config"),
        ),
    ]
}

fn bench(c: &mut Criterion) {
    let img = image();
    let src = ImageView {
        width: W,
        height: H,
        data: &img,
    };
    let mut g = c.benchmark_group("augment");
    g.throughput(Throughput::Elements(1));
    g.sample_size(30);
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(3));
    for (name, pipe) in pipelines() {
        let mut scratch = Scratch::new();
        let mut dst = vec![0u8; 224 * 224 * 3];
        let mut s = 0u64;
        g.bench_function(name, |b| {
            b.iter(|| {
                s += 1;
                pipe.apply(
                    src,
                    Rect::full((W, H)),
                    (W, H),
                    (224, 224),
                    SampleSeed::new(0, 0, s),
                    &mut scratch,
                    &mut dst,
                )
                .expect("apply");
            })
        });
    }
    g.finish();
}

const PEER: &str = r#"
import time, statistics, torch
import torchvision.transforms.v2 as T
torch.set_num_threads(1)
torch.manual_seed(0)
img = torch.randint(0, 256, (3, 512, 512), dtype=torch.uint8)
cases = {
  "rrc_flip_512_224": T.Compose([T.RandomResizedCrop(224, antialias=True), T.RandomHorizontalFlip()]),
  "rrc_trivialaugment_512_224": T.Compose([T.RandomResizedCrop(224, antialias=True), T.RandomHorizontalFlip(), T.TrivialAugmentWide()]),
  "eval_resize_crop_512_224": T.Compose([T.Resize(256, antialias=True), T.CenterCrop(224)]),
}
for name, tf in cases.items():
    for _ in range(20): tf(img)
    ts = []
    for _ in range(15):
        t0 = time.perf_counter()
        for _ in range(20): tf(img)
        ts.append((time.perf_counter() - t0) / 20)
    m = statistics.median(ts)
    print(f"{name} {m * 1e3:.4f}")
"#;

/// torchvision's median ms/img for the same cases (one thread).
fn peer() {
    let py = std::env::var("BRIGADE_PYTHON").unwrap_or_else(|_| "python3".into());
    match Command::new(&py).args(["-c", PEER]).output() {
        Ok(o) if o.status.success() => {
            for line in String::from_utf8_lossy(&o.stdout).lines() {
                let mut it = line.split_whitespace();
                if let (Some(name), Some(ms)) = (it.next(), it.next()) {
                    let ms: f64 = ms.parse().unwrap_or(f64::NAN);
                    println!(
                        "peer torchvision augment/{name}: median {ms:.3} ms/img = {:.0} img/s/core",
                        1e3 / ms
                    );
                }
            }
        }
        Ok(o) => eprintln!(
            "peer torchvision failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => eprintln!("peer torchvision: cannot run {py}: {e}"),
    }
}

criterion_group!(benches, bench);

fn main() {
    benches();
    peer();
    Criterion::default().configure_from_args().final_summary();
}
