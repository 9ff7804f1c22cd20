//! All-reduce bandwidth over Gloo for ResNet-50's gradient size (25.6 M f32 =
//! 102 MB) in 25 MB buckets, 2 local processes, against torch.distributed
//! (Gloo, same buckets, async all_reduce + wait) measured in the same run.
//!
//! `scripts/with-env.sh cargo bench --bench allreduce`
//!
//! The bench re-runs itself as rank 1 (env `BRIGADE_ALLREDUCE_WORKER`); rank
//! 0 tells it how many rounds to run before each timed batch.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use brigade_torch_ext::{
    free_port, launch, Backend, DistConfig, GradientReducer, LaunchOptions, ProcessGroup, ReduceOp,
};
use criterion::{criterion_group, Criterion, Throughput};
use tch::{nn, Device, Kind, Tensor};

const NUMEL: i64 = 25_600_000;
const BUCKET_BYTES: usize = 25 * 1024 * 1024;

fn bucket_sizes() -> Vec<i64> {
    let per = (BUCKET_BYTES / 4) as i64;
    let mut left = NUMEL;
    let mut v = Vec::new();
    while left > 0 {
        v.push(left.min(per));
        left -= per;
    }
    v
}

fn group(rank: usize, port: u16) -> ProcessGroup {
    ProcessGroup::new(DistConfig {
        rank,
        world_size: 2,
        local_rank: rank,
        master_addr: "127.0.0.1".into(),
        master_port: port,
        timeout: Duration::from_secs(120),
        backend: Backend::Gloo,
        gloo_interface: None,
    })
    .expect("process group")
}

/// A VarStore holding ResNet-50-sized gradients (50 tensors of 512 k f32).
fn grads() -> nn::VarStore {
    let vs = nn::VarStore::new(Device::Cpu);
    let vars: Vec<Tensor> = (0..50)
        .map(|i| vs.root().zeros(&format!("p{i:02}"), &[NUMEL / 50]))
        .collect();
    let loss = vars
        .iter()
        .map(|v| v.sum(Kind::Float))
        .fold(Tensor::zeros([], (Kind::Float, Device::Cpu)), |a, b| a + b);
    loss.backward();
    vs
}

/// Control message: (mode, iterations); mode 0 = stop, 1 = raw buckets, 2 = reducer.
fn control(pg: &ProcessGroup, mode: i64, iters: i64) -> (i64, i64) {
    let t = Tensor::from_slice(&[mode, iters]);
    pg.broadcast(&[&t], 0).expect("control broadcast");
    let v = Vec::<i64>::try_from(&t).expect("control");
    (v[0], v[1])
}

fn run_rounds(
    pg: &ProcessGroup,
    mode: i64,
    iters: i64,
    buckets: &[Tensor],
    reducer: &GradientReducer,
) {
    let refs: Vec<&Tensor> = buckets.iter().collect();
    for _ in 0..iters {
        if mode == 1 {
            pg.allreduce(&refs, ReduceOp::Sum).expect("allreduce");
        } else {
            reducer.reduce(pg).expect("reduce");
        }
    }
}

fn worker(port: u16) {
    let pg = group(1, port);
    let buckets: Vec<Tensor> = bucket_sizes()
        .iter()
        .map(|&n| Tensor::ones([n], (Kind::Float, Device::Cpu)))
        .collect();
    let vs = grads();
    let reducer = GradientReducer::new(&vs, BUCKET_BYTES).expect("reducer");
    loop {
        let (mode, iters) = control(&pg, 0, 0);
        if mode == 0 {
            break;
        }
        run_rounds(&pg, mode, iters, &buckets, &reducer);
    }
}

const PEER: &str = r#"
import os, statistics, time, torch, torch.distributed as dist
torch.set_num_threads(1)
dist.init_process_group("gloo")
sizes = [int(s) for s in os.environ["BRIGADE_SIZES"].split(",")]
bufs = [torch.ones(n) for n in sizes]
def rnd():
    for w in [dist.all_reduce(b, async_op=True) for b in bufs]:
        w.wait()
rnd()
times = []
for _ in range(int(os.environ["BRIGADE_ROUNDS"])):
    t = time.perf_counter(); rnd(); times.append(time.perf_counter() - t)
if dist.get_rank() == 0:
    open(os.environ["BRIGADE_PEER_OUT"], "w").write(str(statistics.median(times)))
dist.destroy_process_group()
"#;

/// Median seconds of one 102 MB round with torch.distributed Gloo (2 procs).
fn torch_peer() -> Option<f64> {
    let python = std::env::var("BRIGADE_PYTHON").unwrap_or_else(|_| "python3".into());
    let dir = tempfile::tempdir().ok()?;
    let out = dir.path().join("peer.txt");
    let sizes: Vec<String> = bucket_sizes().iter().map(|n| n.to_string()).collect();
    let mut opts = LaunchOptions::new(2);
    opts.timeout = Some(Duration::from_secs(300));
    opts.env.push(("BRIGADE_SIZES".into(), sizes.join(",")));
    opts.env.push(("BRIGADE_ROUNDS".into(), "10".into()));
    opts.env
        .push(("BRIGADE_PEER_OUT".into(), out.display().to_string()));
    if let Err(e) = launch(&python, &["-c", PEER], &opts) {
        eprintln!("allreduce bench: torch peer failed: {e}");
        return None;
    }
    std::fs::read_to_string(&out).ok()?.trim().parse().ok()
}

fn bench(c: &mut Criterion) {
    let port = free_port().expect("port");
    let exe = std::env::current_exe().expect("exe");
    let mut child: Child = Command::new(exe)
        .env("BRIGADE_ALLREDUCE_WORKER", port.to_string())
        .spawn()
        .expect("spawn rank 1");
    let pg = group(0, port);
    let buckets: Vec<Tensor> = bucket_sizes()
        .iter()
        .map(|&n| Tensor::ones([n], (Kind::Float, Device::Cpu)))
        .collect();
    let vs = grads();
    let reducer = GradientReducer::new(&vs, BUCKET_BYTES).expect("reducer");
    let bytes = (NUMEL * 4) as u64;

    let mut g = c.benchmark_group("allreduce_gloo_2proc_102MB");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8));
    g.throughput(Throughput::Bytes(bytes));
    for (name, mode) in [("brigade_buckets", 1i64), ("brigade_grad_reducer", 2)] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                control(&pg, mode, iters as i64);
                let t = Instant::now();
                run_rounds(&pg, mode, iters as i64, &buckets, &reducer);
                t.elapsed()
            })
        });
    }
    g.finish();

    // Our own median per round, for the printed ratio.
    let mut ours = Vec::new();
    for _ in 0..10 {
        control(&pg, 1, 1);
        let t = Instant::now();
        run_rounds(&pg, 1, 1, &buckets, &reducer);
        ours.push(t.elapsed().as_secs_f64());
    }
    control(&pg, 0, 0);
    drop(pg);
    let _ = child.wait();
    ours.sort_by(f64::total_cmp);
    let ours = ours[ours.len() / 2];
    let gbs = |s: f64| bytes as f64 / s / 1e9;
    println!("allreduce 102.4 MB, 25 MB buckets, Gloo, 2 local procs (algbw = bytes / time):");
    println!(
        "  brigade raw buckets: median {:.1} ms = {:.2} GB/s",
        ours * 1e3,
        gbs(ours)
    );
    match torch_peer() {
        Some(t) => println!(
            "  torch.distributed:   median {:.1} ms = {:.2} GB/s; brigade/torch time ratio {:.2}",
            t * 1e3,
            gbs(t),
            ours / t
        ),
        None => println!("  torch.distributed peer unavailable (see the error above)"),
    }
}

fn main() {
    // One intra-op thread per rank (as the torch peer): two ranks share the
    // cores, and oversubscribed OpenMP spin-waits would dominate the copies.
    tch::set_num_threads(1);
    if let Ok(port) = std::env::var("BRIGADE_ALLREDUCE_WORKER") {
        worker(port.parse().expect("worker port"));
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}

criterion_group!(benches, bench);
