//! Optimizer step time on ResNet-50's parameter set (161 tensors, 25.6 M parameters,
//! random gradients) on the CPU: our AdamW (libtorch's fused kernel, the default, and
//! the per-tensor path) against `torch.optim.AdamW(foreach=True)` and `(fused=True)`
//! measured in the same run (venv python, env `BRIGADE_PYTHON`), plus our Ranger and SGD.
//!
//! `scripts/with-env.sh cargo bench --bench optim`
//! Knob: `BRIGADE_BENCH_STEPS` (timed steps for the medians, 20).

use std::process::Command;
use std::time::{Duration, Instant};

use brigade_optim::{
    ranger, AdamW, AdamWConfig, GroupSpec, Optimizer, Param, RangerConfig, Sgd, SgdConfig,
};
use criterion::{criterion_group, criterion_main, Criterion};
use tch::{Device, Kind, Tensor};

/// torchvision ResNet-50 parameter shapes, in registration order.
fn resnet50_shapes() -> Vec<Vec<i64>> {
    let mut s: Vec<Vec<i64>> = vec![vec![64, 3, 7, 7], vec![64], vec![64]];
    let mut inp = 64;
    for (w, blocks) in [(64i64, 3), (128, 4), (256, 6), (512, 3)] {
        for b in 0..blocks {
            s.extend([vec![w, inp, 1, 1], vec![w], vec![w]]);
            s.extend([vec![w, w, 3, 3], vec![w], vec![w]]);
            s.extend([vec![4 * w, w, 1, 1], vec![4 * w], vec![4 * w]]);
            if b == 0 {
                s.extend([vec![4 * w, inp, 1, 1], vec![4 * w], vec![4 * w]]);
            }
            inp = 4 * w;
        }
    }
    s.extend([vec![1000, 2048], vec![1000]]);
    s
}

const PEER: &str = r#"
import sys, time, statistics, torch
steps = int(sys.argv[1]); shapes = [tuple(int(d) for d in s.split("x")) for s in sys.argv[2].split(",")]
torch.manual_seed(0)
ps = [torch.randn(s, requires_grad=True) for s in shapes]
for p in ps: p.grad = torch.randn_like(p)
for name, kw in [("foreach", dict(foreach=True)), ("fused", dict(fused=True))]:
    opt = torch.optim.AdamW(ps, lr=1e-3, weight_decay=1e-2, **kw)
    opt.step(); opt.step()
    ts = []
    for _ in range(steps):
        t = time.perf_counter(); opt.step(); ts.append((time.perf_counter() - t) * 1e3)
    print(name, statistics.median(ts), torch.get_num_threads())
"#;

fn params() -> Vec<Tensor> {
    tch::manual_seed(0);
    resnet50_shapes()
        .iter()
        .map(|s| {
            let p = Tensor::randn(s.as_slice(), (Kind::Float, Device::Cpu)).set_requires_grad(true);
            (&p * Tensor::randn(s.as_slice(), (Kind::Float, Device::Cpu)))
                .sum(Kind::Float)
                .backward();
            p
        })
        .collect()
}

fn groups(ps: &[Tensor]) -> Vec<GroupSpec> {
    vec![GroupSpec::new(
        "all",
        ps.iter()
            .enumerate()
            .map(|(i, p)| Param::new(format!("p{i}"), p))
            .collect(),
    )]
}

fn median_ms(opt: &mut dyn Optimizer, steps: usize) -> f64 {
    opt.step().unwrap();
    opt.step().unwrap();
    let mut ts: Vec<f64> = (0..steps)
        .map(|_| {
            let t = Instant::now();
            opt.step().unwrap();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ts.sort_by(|a, b| a.total_cmp(b));
    ts[ts.len() / 2]
}

fn peer(steps: usize) -> Vec<(String, f64, usize)> {
    let py = std::env::var("BRIGADE_PYTHON").unwrap_or_else(|_| "python3".into());
    let shapes: Vec<String> = resnet50_shapes()
        .iter()
        .map(|s| {
            s.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("x")
        })
        .collect();
    let out = match Command::new(&py)
        .args(["-c", PEER, &steps.to_string(), &shapes.join(",")])
        .output()
    {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            eprintln!("peer failed: {}", String::from_utf8_lossy(&o.stderr));
            return Vec::new();
        }
        Err(e) => {
            eprintln!("peer python `{py}` did not start: {e}");
            return Vec::new();
        }
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((
                it.next()?.to_string(),
                it.next()?.parse().ok()?,
                it.next()?.parse().ok()?,
            ))
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let steps = std::env::var("BRIGADE_BENCH_STEPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let ps = params();
    let n: i64 = ps.iter().map(|p| p.numel() as i64).sum();
    println!(
        "ResNet-50 parameter set: {} tensors, {n} parameters, tch threads {}",
        ps.len(),
        tch::get_num_threads()
    );

    let mut adamw = AdamW::new(
        groups(&ps),
        AdamWConfig {
            lr: 1e-3,
            weight_decay: 1e-2,
            ..Default::default()
        },
    )
    .unwrap();
    let ours = median_ms(&mut adamw, steps);
    let mut per_tensor = AdamW::new(groups(&ps), *adamw.config()).unwrap();
    per_tensor.set_fused(false).unwrap();
    let per_tensor_ms = median_ms(&mut per_tensor, steps);
    let mut rg = ranger(
        groups(&ps),
        RangerConfig {
            weight_decay: 1e-2,
            ..Default::default()
        },
    )
    .unwrap();
    let ranger_ms = median_ms(&mut rg, steps);
    let mut sgd = Sgd::new(
        groups(&ps),
        SgdConfig {
            weight_decay: 1e-4,
            ..Default::default()
        },
    )
    .unwrap();
    let sgd_ms = median_ms(&mut sgd, steps);
    let peers = peer(steps);

    println!("optimizer step, median of {steps} steps (ms):");
    println!("  brigade AdamW (fused kernel)   {ours:9.2}");
    println!("  brigade AdamW (per tensor)     {per_tensor_ms:9.2}");
    for (name, ms, threads) in &peers {
        println!(
            "  torch AdamW({name}=True)    {ms:9.2}   (torch threads {threads}; brigade/torch = {:.3})",
            ours / ms
        );
    }
    println!(
        "  brigade Ranger (RAdam+LA+GC)   {ranger_ms:9.2}   (Ranger/brigade AdamW = {:.3})",
        ranger_ms / ours
    );
    println!("  brigade SGD (momentum, wd)     {sgd_ms:9.2}");

    let mut g = c.benchmark_group("optim_step_resnet50");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    g.bench_function("adamw", |b| b.iter(|| adamw.step().unwrap()));
    g.bench_function("ranger", |b| b.iter(|| rg.step().unwrap()));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
