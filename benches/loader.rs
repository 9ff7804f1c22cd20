//! Loader-only throughput (RandomResizedCrop 224 + flip into u8 batches of 64,
//! 2 worker threads) from the original JPEGs, a raw store and a JPEG (q90)
//! store at max side 288, on the shared real-photo corpus
//! (`/work/shared/baselines/photo_corpus.py`, 10 classes x 50 train images).
//! Peer, measured in the same run on the same files: the PyTorch DataLoader
//! reference (`torch_loader_bench.py --backend pil|tv2`, 2 workers); the
//! ratios to the faster PyTorch backend are printed at the end.
//!
//! `scripts/with-env.sh cargo bench --bench loader`
//! (`scripts/bench-peers.sh` is the interleaved, multi-round comparison.)

use brigade_augment::Pipeline;
use brigade_index::{Index, IndexOptions, Split};
use brigade_loader::adapters::{FileSource, StoreSource};
use brigade_loader::{Loader, LoaderConfig, Source};
use brigade_store::{pack, PackOptions, Store, StoreFormat};
use criterion::{criterion_group, Criterion, Throughput};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

const BATCH: usize = 64;
const THREADS: usize = 2;
const SIZE: u32 = 224;

fn python() -> String {
    std::env::var("BRIGADE_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn baselines() -> PathBuf {
    std::env::var("BRIGADE_BASELINES")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("/work/shared/baselines"))
}

fn corpus(dir: &Path) -> PathBuf {
    let out = dir.join("corpus");
    let status = Command::new(python())
        .arg(baselines().join("photo_corpus.py"))
        .arg(&out)
        .args([
            "--classes",
            "10",
            "--per-class",
            "50",
            "--test-per-class",
            "2",
        ])
        .status()
        .expect("run photo_corpus.py with the oracle python (scripts/with-env.sh)");
    assert!(status.success(), "photo_corpus.py failed");
    out
}

/// The PyTorch reference's img/s (last line `torch_loader img/s: N`).
fn torch_peer(data: &Path, backend: &str) -> Option<f64> {
    let out = Command::new(python())
        .arg(baselines().join("torch_loader_bench.py"))
        .arg(data)
        .args([
            "--workers",
            &THREADS.to_string(),
            "--batch",
            &BATCH.to_string(),
        ])
        .args([
            "--size",
            &SIZE.to_string(),
            "--batches",
            "6",
            "--backend",
            backend,
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .last()?
        .rsplit(": ")
        .next()?
        .trim()
        .parse()
        .ok()
}

fn config() -> LoaderConfig {
    LoaderConfig {
        batch_size: BATCH,
        threads: THREADS,
        drop_last: true,
        ..LoaderConfig::default()
    }
}

/// Runs `iters` batches (after a warm-up batch) and returns their wall time.
fn bench_source<S: Source>(c: &mut Criterion, name: &str, src: S) -> f64 {
    let mut loader = Loader::new(src, Pipeline::default(), config()).expect("loader");
    let mut g = c.benchmark_group("loader");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(8));
    g.warm_up_time(Duration::from_secs(1));
    let mut rates = Vec::new();
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let m = loader.measure(SIZE, iters as usize).expect("measure");
            rates.push(m.images_per_sec());
            m.elapsed
        })
    });
    g.finish();
    rates.sort_by(f64::total_cmp);
    rates.get(rates.len() / 2).copied().unwrap_or(0.0)
}

fn loader(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = corpus(dir.path());
    let (index, _) = Index::build(&data, &IndexOptions::default()).expect("index");
    let mut stores = Vec::new();
    for (name, format) in [
        ("raw288", StoreFormat::Raw),
        ("jpg288", StoreFormat::Jpeg { quality: 90 }),
    ] {
        let path = dir.path().join(format!("{name}.store"));
        let opts = PackOptions {
            max_side: 288,
            format,
            ..PackOptions::default()
        };
        pack(&index, &path, &opts).expect("pack");
        stores.push((name, Arc::new(Store::open(&path).expect("open"))));
    }
    let peer_pil = torch_peer(&data, "pil");
    let peer_tv2 = torch_peer(&data, "tv2");
    let mut ours = vec![(
        "files",
        bench_source(
            c,
            "files_rrc224",
            FileSource::new(&index, Some(Split::Train)),
        ),
    )];
    for (name, store) in &stores {
        let src = StoreSource::new(Arc::clone(store), Some(Split::Train));
        ours.push((*name, bench_source(c, &format!("store_{name}_rrc224"), src)));
    }
    println!("\npeer PyTorch DataLoader ({THREADS} workers), same run, same files:");
    println!("  pil {peer_pil:?} img/s, tv2 {peer_tv2:?} img/s");
    let peer = peer_pil.into_iter().chain(peer_tv2).fold(0.0, f64::max);
    for (name, rate) in ours {
        if peer > 0.0 {
            println!(
                "  brigade {name}: median {rate:.0} img/s = {:.2}x the faster PyTorch",
                rate / peer
            );
        } else {
            println!("  brigade {name}: median {rate:.0} img/s (PyTorch peer did not run)");
        }
    }
}

criterion_group!(benches, loader);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
