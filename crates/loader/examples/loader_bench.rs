//! A standalone stand-in for the two `brigade` subcommands that
//! `scripts/bench-peers.sh` uses (`pack` and `bench-loader`, same flags), built
//! from the data crates alone (no libtorch), so loader throughput can be
//! measured while the trainer does not build:
//!
//! ```text
//! cargo run --release -p brigade-loader --example loader_bench -- \
//!     bench-loader --data DIR --size 224 --batch 64 --batches 30 --threads 2
//! BRIGADE_BIN=target/release/examples/loader_bench scripts/bench-peers.sh
//! ```

use brigade_augment::Pipeline;
use brigade_index::{Index, IndexOptions, Split};
use brigade_loader::adapters::{FileSource, StoreSource};
use brigade_loader::{Loader, LoaderConfig, Measurement, Source};
use brigade_store::{pack, PackOptions, Store, StoreFormat};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, rest) = args
        .split_first()
        .ok_or("usage: loader_bench pack|bench-loader ...")?;
    let mut pos = Vec::new();
    let mut flags = HashMap::new();
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        match a.strip_prefix("--") {
            Some(k @ ("json" | "quiet")) => {
                flags.insert(k.to_string(), String::new());
            }
            Some(k) => {
                let v = it.next().ok_or_else(|| format!("--{k} needs a value"))?;
                flags.insert(k.to_string(), v.clone());
            }
            None => pos.push(a.clone()),
        }
    }
    let get = |k: &str, d: &str| flags.get(k).cloned().unwrap_or_else(|| d.to_string());
    match cmd.as_str() {
        "pack" => {
            let data = PathBuf::from(pos.first().ok_or("pack DATA --out FILE")?);
            let (index, _) = Index::build(&data, &IndexOptions::default())?;
            let format = match get("format", "raw").as_str() {
                "raw" => StoreFormat::Raw,
                "jpeg" => StoreFormat::Jpeg {
                    quality: get("quality", "90").parse()?,
                },
                f => return Err(format!("unknown format {f}").into()),
            };
            let opts = PackOptions {
                max_side: get("max-side", "288").parse()?,
                format,
                ..PackOptions::default()
            };
            let out = PathBuf::from(flags.get("out").ok_or("--out FILE")?);
            pack(&index, &out, &opts)?;
        }
        "bench-loader" => {
            let config = LoaderConfig {
                batch_size: get("batch", "64").parse()?,
                threads: get("threads", "2").parse()?,
                seed: get("seed", "0").parse()?,
                drop_last: true,
                ..LoaderConfig::default()
            };
            let pipeline = match get("augment", "train").as_str() {
                "train" => Pipeline::default(),
                "eval" => Pipeline::eval(),
                a => return Err(format!("unknown --augment {a}").into()),
            };
            let size: u32 = get("size", "224").parse()?;
            let batches: usize = get("batches", "30").parse()?;
            let m = if let Some(store) = flags.get("store") {
                let st = Arc::new(Store::open(store)?);
                run(
                    StoreSource::new(st, Some(Split::Train)),
                    pipeline,
                    config,
                    size,
                    batches,
                )?
            } else {
                let data = flags.get("data").ok_or("--data DIR or --store FILE")?;
                let (index, _) = Index::build(data.as_ref(), &IndexOptions::default())?;
                run(
                    FileSource::new(&index, Some(Split::Train)),
                    pipeline,
                    config,
                    size,
                    batches,
                )?
            };
            let s = &m.stats;
            println!(
                "stages: read {:.3} decode {:.3} augment {:.3} ms/img; stall {:.1} %; failed {}",
                m.ms_per_image(s.read),
                m.ms_per_image(s.decode),
                m.ms_per_image(s.augment),
                100.0 * s.stall_fraction(),
                s.failed
            );
            if let Some(mem) = brigade_loader::ProcessMemory::current() {
                let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
                println!(
                    "memory: peak RSS {:.1} MiB (mapped store pages included); loader's anonymous memory at most {:.1} MiB while running",
                    mib(mem.peak_rss),
                    mib(m.peak_rss_anon.unwrap_or(0)),
                );
            }
            println!("loader img/s: {:.1}", m.images_per_sec());
        }
        c => return Err(format!("unknown command {c}").into()),
    }
    Ok(())
}

fn run<S: Source>(
    src: S,
    pipeline: Pipeline,
    config: LoaderConfig,
    size: u32,
    batches: usize,
) -> Res<Measurement> {
    let mut loader = Loader::new(src, pipeline, config)?;
    Ok(loader.measure(size, batches)?)
}
