//! Header probing throughput (files/s) on a generated 5,000-file tree, with
//! PIL's `Image.open(path).size` (lazy: reads the header only) measured in
//! the same run as the peer.
//!
//! `scripts/with-env.sh cargo bench -p brigade --bench index`

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use brigade_index::{probe_file, Index, IndexOptions};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rayon::prelude::*;

const CLASSES: u32 = 50;
const PER_CLASS: u32 = 100;

fn tree() -> (tempfile::TempDir, PathBuf, Vec<PathBuf>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("food-101");
    let cfg = brigade_synth::SynthConfig {
        max_side: 96,
        quality: 80,
        ..brigade_synth::SynthConfig::new(CLASSES, PER_CLASS - 20, 20, 1)
    };
    brigade_synth::generate(&cfg, &root).expect("generate the bench tree");
    let (index, _) = Index::build(&root, &IndexOptions::default()).expect("index");
    let files: Vec<PathBuf> = index.samples.iter().map(|s| index.abs_path(s)).collect();
    assert_eq!(files.len(), (CLASSES * PER_CLASS) as usize);
    (dir, root, files)
}

/// Median files/s of PIL over `reps` passes (warm page cache).
fn pil_files_per_s(list: &std::path::Path, reps: usize) -> Option<f64> {
    let py = std::env::var("BRIGADE_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = r#"
import sys, time, statistics
from PIL import Image
paths = open(sys.argv[1]).read().split("\n")
rates = []
for _ in range(int(sys.argv[2])):
    t = time.perf_counter()
    for p in paths:
        with Image.open(p) as im:
            im.size
    rates.append(len(paths) / (time.perf_counter() - t))
print(statistics.median(rates))
"#;
    let out = Command::new(py)
        .arg("-c")
        .arg(script)
        .arg(list)
        .arg(reps.to_string())
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("PIL peer failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

fn bench(c: &mut Criterion) {
    let (_dir, root, files) = tree();
    let list = root.parent().unwrap().join("files.txt");
    let text: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    std::fs::write(&list, text.join("\n")).expect("write list");

    let mut g = c.benchmark_group("probe_5000");
    g.throughput(Throughput::Elements(files.len() as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("brigade_serial", |b| {
        b.iter(|| files.iter().filter(|p| probe_file(p).is_ok()).count())
    });
    g.bench_function("brigade_rayon", |b| {
        b.iter(|| files.par_iter().filter(|p| probe_file(p).is_ok()).count())
    });
    g.bench_function("index_build", |b| {
        b.iter(|| Index::build(&root, &IndexOptions::default()).map(|(i, _)| i.samples.len()))
    });
    g.finish();

    match pil_files_per_s(&list, 5) {
        Some(r) => println!(
            "peer PIL Image.open().size (serial, 1 thread): median {r:.0} files/s over 5 passes"
        ),
        None => {
            println!("peer PIL not measured (set BRIGADE_PYTHON / run through scripts/with-env.sh)")
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
