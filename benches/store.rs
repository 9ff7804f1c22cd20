//! Store read throughput: `Store::get` alone (the pointer offset the loader
//! pays per sample) and `get` + touching every byte of the raw view, on a
//! raw store of 288-max-side images; peer: numpy `memmap` slicing of the same
//! file with the same offsets, measured in the same run.
//!
//! `scripts/with-env.sh cargo bench --bench store`

use brigade_index::{Index, Sample, Split};
use brigade_pixels::{encode_jpeg, RgbImage};
use brigade_store::{pack, PackOptions, Payload, Store};
use criterion::{criterion_group, Criterion, Throughput};
use std::hint::black_box;
use std::process::Command;
use std::time::Duration;

const N: usize = 256;

/// A dataset of N JPEGs (384x288 .. 512x384) and its index, packed raw at 288.
fn store(dir: &std::path::Path) -> Store {
    let mut samples = Vec::new();
    std::fs::create_dir_all(dir.join("c")).expect("dir");
    for i in 0..N {
        let (w, h) = if i % 2 == 0 {
            (512u32, 384u32)
        } else {
            (384, 512)
        };
        let data = (0..w * h)
            .flat_map(|p| {
                let (x, y) = (p % w, p / w);
                [(x + i as u32) as u8, (y * 2) as u8, ((x ^ y) & 0xF0) as u8]
            })
            .collect();
        let img = RgbImage::from_raw(w, h, data).expect("image");
        let mut v = Vec::new();
        encode_jpeg(img.view(), 90, &mut v).expect("jpeg");
        let rel = format!("c/{i}.jpg");
        std::fs::write(dir.join(&rel), &v).expect("write");
        samples.push(Sample {
            path: rel.into(),
            class: (i % 10) as u32,
            split: Split::Train,
            width: w,
            height: h,
            file_len: v.len() as u64,
        });
    }
    let index = Index {
        root: dir.to_path_buf(),
        classes: (0..10).map(|c| format!("class{c}")).collect(),
        samples,
    };
    let out = dir.join("bench.store");
    pack(
        &index,
        &out,
        &PackOptions {
            max_side: 288,
            ..Default::default()
        },
    )
    .expect("pack");
    Store::open_for(&out, &index).expect("open")
}

fn touch(store: &Store, i: usize) -> u64 {
    match store.get(i).expect("get").payload {
        Payload::Raw(v) => v.data.iter().map(|&b| u64::from(b)).sum(),
        Payload::Encoded(b) => b.len() as u64,
    }
}

fn peer(store: &Store) -> Option<(f64, f64)> {
    let offsets: Vec<String> = store
        .records()
        .iter()
        .map(|r| format!("{}:{}", r.offset, r.len))
        .collect();
    let script = r#"
import sys, time, statistics
import numpy as np
path, spec = sys.argv[1], sys.argv[2]
recs = [tuple(map(int, s.split(':'))) for s in spec.split(',')]
m = np.memmap(path, dtype=np.uint8, mode='r')
def run(touch):
    t = time.perf_counter(); s = 0
    for _ in range(20):
        for o, n in recs:
            v = m[o:o + n]
            if touch: s += int(v.sum(dtype=np.uint64))
    return (time.perf_counter() - t) / (20 * len(recs))
print(statistics.median(run(False) for _ in range(5)), statistics.median(run(True) for _ in range(5)))
"#;
    let py = std::env::var("BRIGADE_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(py)
        .arg("-c")
        .arg(script)
        .arg(store.path())
        .arg(offsets.join(","))
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("peer failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.split_whitespace().map(|s| s.parse::<f64>().ok());
    Some((it.next()??, it.next()??))
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = store(dir.path());
    let bytes: u64 = store.records().iter().map(|r| u64::from(r.len)).sum();
    let mut g = c.benchmark_group("store");
    g.sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("get-all-records", |b| {
        b.iter(|| {
            for i in 0..store.len() {
                black_box(store.get(i).expect("get"));
            }
        })
    });
    g.throughput(Throughput::Bytes(bytes));
    g.bench_function("get-and-sum-every-byte", |b| {
        b.iter(|| (0..store.len()).map(|i| touch(&store, i)).sum::<u64>())
    });
    g.finish();
    match peer(&store) {
        Some((get, sum)) => println!(
            "peer numpy memmap (same run): slice {:.0} ns/record ({:.0} /s); slice+sum {:.1} us/record ({:.0} img/s, {:.2} GB/s)",
            get * 1e9,
            1.0 / get,
            sum * 1e6,
            1.0 / sum,
            bytes as f64 / N as f64 / sum / 1e9
        ),
        None => println!("peer not measured (set BRIGADE_PYTHON / run through scripts/with-env.sh)"),
    }
}

criterion_group!(store_benches, benches);

fn main() {
    store_benches();
    Criterion::default().configure_from_args().final_summary();
}
