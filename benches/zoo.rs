//! Model zoo: forward (eval, no grad) and forward+backward (train mode) per
//! architecture at 224 px, batch 8, on the CPU, with PyTorch eager timing the
//! same torchvision model in the same run (venv python, env `BRIGADE_PYTHON`).
//!
//! `scripts/with-env.sh cargo bench --bench zoo`
//! Knobs: `BRIGADE_BENCH_ARCHS=resnet50,efficientnet_b0` (default: all),
//! `BRIGADE_BENCH_BATCH` (8), `BRIGADE_BENCH_SIZE` (224).

use std::process::Command;
use std::time::{Duration, Instant};

use brigade_zoo::{Arch, HeadKind, Model, ModelOptions};
use criterion::{criterion_group, criterion_main, Criterion};
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Kind, Tensor};

const PEER: &str = r#"
import sys, time, statistics, torch, torchvision
arch, batch, size, iters = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.manual_seed(0)
kw = {}
if arch.startswith("efficientnet"): kw = dict(dropout=0.0, stochastic_depth_prob=0.0)
if arch.startswith("mobilenet"): kw = dict(dropout=0.0)
if arch == "resnet50d":
    import torch.nn as nn
    m = torchvision.models.resnet50(num_classes=1000)
    m.conv1 = nn.Sequential(nn.Conv2d(3,32,3,2,1,bias=False), nn.BatchNorm2d(32), nn.ReLU(True),
        nn.Conv2d(32,32,3,1,1,bias=False), nn.BatchNorm2d(32), nn.ReLU(True), nn.Conv2d(32,64,3,1,1,bias=False))
    for layer in [m.layer1, m.layer2, m.layer3, m.layer4]:
        for b in layer:
            if b.downsample is not None:
                c = b.downsample[0]; s = c.stride[0]
                b.downsample = nn.Sequential(nn.AvgPool2d(2, s, ceil_mode=True, count_include_pad=False) if s > 1 else nn.Identity(),
                    nn.Conv2d(c.in_channels, c.out_channels, 1, bias=False), nn.BatchNorm2d(c.out_channels))
else:
    m = getattr(torchvision.models, arch)(weights=None, num_classes=1000, **kw)
x = torch.randn(batch, 3, size, size)
def fwd():
    m.eval()
    with torch.no_grad(): m(x)
def fwd_bwd():
    m.train(); m.zero_grad(set_to_none=True)
    m(x).sum().backward()
for name, f in [("forward", fwd), ("forward_backward", fwd_bwd)]:
    f(); f()
    ts = []
    for _ in range(iters):
        t = time.perf_counter(); f(); ts.append((time.perf_counter() - t) * 1e3)
    print(name, statistics.median(ts), torch.get_num_threads())
"#;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn archs() -> Vec<Arch> {
    match std::env::var("BRIGADE_BENCH_ARCHS") {
        Ok(list) if !list.trim().is_empty() => list
            .split(',')
            .map(|s| {
                s.parse()
                    .unwrap_or_else(|e| panic!("BRIGADE_BENCH_ARCHS: {e}"))
            })
            .collect(),
        _ => Arch::ALL.to_vec(),
    }
}

/// PyTorch eager medians (ms) for (forward, forward+backward) and its thread count.
fn peer(arch: Arch, batch: usize, size: usize) -> Option<(f64, f64, usize)> {
    let py = std::env::var("BRIGADE_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(&py)
        .args([
            "-c",
            PEER,
            arch.name(),
            &batch.to_string(),
            &size.to_string(),
            "5",
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "peer failed for {arch}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut fwd = None;
    let mut fb = None;
    let mut threads = 0;
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() == 3 {
            let ms: f64 = f[1].parse().ok()?;
            threads = f[2].parse().ok()?;
            match f[0] {
                "forward" => fwd = Some(ms),
                "forward_backward" => fb = Some(ms),
                _ => {}
            }
        }
    }
    Some((fwd?, fb?, threads))
}

fn median_ms(mut f: impl FnMut(), iters: usize) -> f64 {
    f();
    f();
    let mut ts: Vec<f64> = (0..iters)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ts.sort_by(|a, b| a.total_cmp(b));
    ts[ts.len() / 2]
}

fn bench(c: &mut Criterion) {
    let batch = env_usize("BRIGADE_BENCH_BATCH", 8);
    let size = env_usize("BRIGADE_BENCH_SIZE", 224);
    let mut summary = Vec::new();
    for arch in archs() {
        let vs = VarStore::new(Device::Cpu);
        let opts = ModelOptions {
            dropout: Some(0.0),
            drop_path: Some(0.0),
        };
        let model =
            Model::with_options(&vs.root(), arch, 1000, HeadKind::Linear, opts).expect("model");
        let x = Tensor::randn(
            [batch as i64, 3, size as i64, size as i64],
            (Kind::Float, Device::Cpu),
        );
        let fwd = || {
            let _ = tch::no_grad(|| model.forward_t(&x, false));
        };
        let fwd_bwd = || {
            for t in vs.trainable_variables() {
                let mut g = t.grad();
                if g.defined() {
                    let _ = g.zero_();
                }
            }
            model.forward_t(&x, true).sum(Kind::Float).backward();
        };
        let mut group = c.benchmark_group(format!("zoo/{arch}/b{batch}x{size}"));
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(3));
        group.bench_function("forward", |b| b.iter(fwd));
        group.bench_function("forward_backward", |b| b.iter(fwd_bwd));
        group.finish();
        // Medians measured the same way as the peer, for the printed ratio.
        let ours = (median_ms(fwd, 5), median_ms(fwd_bwd, 5));
        summary.push((arch, ours, peer(arch, batch, size)));
    }
    println!(
        "\nzoo: batch {batch}, {size} px, CPU, libtorch threads {}",
        tch::get_num_threads()
    );
    println!(
        "{:<20} {:>12} {:>12} {:>7} {:>12} {:>12} {:>7}",
        "arch", "fwd ms", "torch ms", "ratio", "fwd+bwd ms", "torch ms", "ratio"
    );
    for (arch, (f, fb), p) in summary {
        match p {
            Some((pf, pfb, threads)) => println!(
                "{:<20} {f:>12.1} {pf:>12.1} {:>7.2} {fb:>12.1} {pfb:>12.1} {:>7.2}   (torch threads {threads})",
                arch.name(),
                f / pf,
                fb / pfb
            ),
            None => println!("{:<20} {f:>12.1} {:>12} {:>7} {fb:>12.1}", arch.name(), "n/a", "", ),
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
