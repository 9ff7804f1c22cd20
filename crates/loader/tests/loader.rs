//! Loader behaviour: order, determinism across threads, ring reuse, failures,
//! progressive resizing, exact resume, sharding.

use brigade_loader::SlotBuf;
use brigade_loader::{
    Batch, Loader, LoaderConfig, LoaderError, NearestResize, OutSize, SampleSeed, Source,
    Transform, VecSource,
};
use brigade_pixels::RgbImage;
use std::any::Any;
use std::collections::HashSet;

/// Images of varied sizes whose pixels encode (position, x, y).
fn source(n: usize, broken: Vec<usize>) -> VecSource {
    let images = (0..n)
        .map(|i| {
            let (w, h) = (5 + (i % 7) as u32 * 3, 4 + (i % 5) as u32 * 4);
            let mut data = Vec::with_capacity((w * h * 3) as usize);
            for y in 0..h {
                for x in 0..w {
                    data.extend_from_slice(&[i as u8, (x * 13) as u8, (y * 29 + i as u32) as u8]);
                }
            }
            RgbImage {
                width: w,
                height: h,
                data,
            }
        })
        .collect();
    VecSource {
        images,
        labels: (0..n as u32).map(|i| i % 10).collect(),
        broken,
    }
}

fn config(batch: usize, threads: usize) -> LoaderConfig {
    LoaderConfig {
        batch_size: batch,
        threads,
        seed: 42,
        ..LoaderConfig::default()
    }
}

const FLIP: NearestResize = NearestResize { random_flip: true };

#[derive(Debug, PartialEq, Eq, Clone)]
struct Snap {
    index: usize,
    size: OutSize,
    images: Vec<u8>,
    labels: Vec<u32>,
    ids: Vec<u32>,
    failed: Vec<(u32, Option<u32>)>,
}

fn snap(b: &Batch) -> Snap {
    Snap {
        index: b.index,
        size: b.size,
        images: b.images().to_vec(),
        labels: b.labels().to_vec(),
        ids: b.ids().to_vec(),
        failed: b
            .failures()
            .iter()
            .map(|f| (f.sample_id, f.replaced_by))
            .collect(),
    }
}

fn run_epoch<S: Source, T: Transform>(
    l: &mut Loader<S, T>,
    epoch: u64,
    size: u32,
    start: usize,
) -> Vec<Snap> {
    l.epoch(epoch, size, start)
        .unwrap()
        .map(|b| snap(&b.unwrap()))
        .collect()
}

/// What batch contents must be, computed directly from the sampler order.
fn expected(src: &VecSource, cfg: &LoaderConfig, epoch: u64, size: u32) -> Vec<Snap> {
    let order = brigade_loader::Sampler::new(src.len(), cfg.seed, cfg.shuffle).order(epoch);
    let out = OutSize::square(size);
    order
        .chunks(cfg.batch_size)
        .enumerate()
        .map(|(k, chunk)| {
            let mut images = vec![0u8; chunk.len() * out.image_bytes()];
            for (j, &i) in chunk.iter().enumerate() {
                let im = &src.images[i as usize];
                let key = SampleSeed {
                    seed: cfg.seed,
                    epoch,
                    sample: i as u64,
                };
                let dst = &mut images[j * out.image_bytes()..(j + 1) * out.image_bytes()];
                FLIP.apply(im.view(), (im.width, im.height), out, key, &mut (), dst)
                    .unwrap();
            }
            Snap {
                index: k,
                size: out,
                images,
                labels: chunk.iter().map(|&i| src.labels[i as usize]).collect(),
                ids: chunk.to_vec(),
                failed: vec![],
            }
        })
        .collect()
}

#[test]
fn batches_match_direct_computation_for_any_thread_count() {
    let src = source(103, vec![]);
    let want = expected(&src, &config(8, 1), 3, 6);
    assert_eq!(want.len(), 13);
    assert_eq!(want.last().unwrap().labels.len(), 103 % 8);
    for (threads, ring) in [(1, 0), (2, 0), (4, 3), (3, 1), (8, 16)] {
        let cfg = LoaderConfig {
            ring_slots: ring,
            ..config(8, threads)
        };
        let mut l = Loader::new(src.clone(), FLIP, cfg).unwrap();
        assert_eq!(l.batches_per_epoch(), 13);
        let got = run_epoch(&mut l, 3, 6, 0);
        assert_eq!(got, want, "threads {threads} ring {ring}");
    }
    // another epoch is another order
    assert_ne!(expected(&src, &config(8, 1), 4, 6), want);
}

#[test]
fn drop_last_and_no_shuffle() {
    let src = source(20, vec![]);
    let cfg = LoaderConfig {
        drop_last: true,
        shuffle: false,
        ..config(6, 2)
    };
    let mut l = Loader::new(src, FLIP, cfg).unwrap();
    let got = run_epoch(&mut l, 0, 4, 0);
    assert_eq!(got.len(), 3);
    let ids: Vec<u32> = got.iter().flat_map(|s| s.ids.clone()).collect();
    assert_eq!(ids, (0..18).collect::<Vec<u32>>());
}

#[test]
fn ring_slots_recycle_and_return() {
    let src = source(64, vec![]);
    let cfg = LoaderConfig {
        ring_slots: 3,
        ..config(4, 2)
    };
    let mut l = Loader::new(src, FLIP, cfg).unwrap();
    let mut ptrs = HashSet::new();
    for epoch in 0..3 {
        // hold two batches at a time to exercise a nearly full ring
        let mut held: Vec<Batch> = Vec::new();
        for b in l.epoch(epoch, 8, 0).unwrap() {
            let b = b.unwrap();
            ptrs.insert(b.images().as_ptr() as usize);
            held.push(b);
            if held.len() == 2 {
                held.remove(0);
            }
        }
        drop(held);
        assert_eq!(l.free_slots(), 3, "every slot back after epoch {epoch}");
    }
    assert!(
        ptrs.len() <= 3,
        "{} distinct buffers for a 3-slot ring",
        ptrs.len()
    );
}

#[test]
fn failed_samples_are_replaced_counted_and_reported() {
    let broken = vec![3, 4, 17, 50];
    let src = source(60, broken.clone());
    let cfg = config(7, 2);
    let order = brigade_loader::Sampler::new(60, cfg.seed, true).order(1);
    let mut l = Loader::new(src.clone(), FLIP, cfg.clone()).unwrap();
    let mut epoch = l.epoch(1, 5, 0).unwrap();
    let mut got = Vec::new();
    for b in epoch.by_ref() {
        let b = b.unwrap();
        assert!(b.len() == 7 || b.index == 8, "batches stay full");
        got.push(snap(&b));
    }
    let stats = epoch.stats();
    let failures = epoch.failures().to_vec();
    drop(epoch);
    assert_eq!(stats.failed, 4);
    assert_eq!(stats.images, 60);
    let mut failed: Vec<u32> = failures.iter().map(|f| f.sample_id).collect();
    failed.sort();
    assert_eq!(failed, vec![3, 4, 17, 50]);
    for f in &failures {
        assert_eq!(order[f.position], f.sample_id);
        assert_eq!(f.name, format!("memory image {}", f.sample_id));
        assert!(
            f.reason.contains("synthetic decode failure"),
            "{}",
            f.reason
        );
        // replacement: the next position in epoch order that is not broken
        let next = (1..)
            .map(|k| order[(f.position + k) % 60])
            .find(|i| !broken.contains(&(*i as usize)))
            .unwrap();
        assert_eq!(f.replaced_by, Some(next));
    }
    let ids: Vec<u32> = got.iter().flat_map(|s| s.ids.clone()).collect();
    assert!(ids.iter().all(|i| !broken.contains(&(*i as usize))));
    // deterministic regardless of threads
    let mut l4 = Loader::new(src, FLIP, config(7, 4)).unwrap();
    assert_eq!(run_epoch(&mut l4, 1, 5, 0), got);
}

#[test]
fn all_broken_is_an_error_not_a_hang() {
    let src = source(5, (0..5).collect());
    let mut l = Loader::new(src, FLIP, config(2, 2)).unwrap();
    let results: Vec<_> = l.epoch(0, 4, 0).unwrap().collect();
    assert_eq!(results.len(), 3);
    for r in results {
        match r {
            Err(LoaderError::TooManyFailures { name, .. }) => {
                assert!(name.starts_with("memory image"))
            }
            other => panic!("expected TooManyFailures, got {other:?}"),
        }
    }
    assert_eq!(l.free_slots(), l.ring_slots());
}

#[test]
fn progressive_resizing_without_rebuild() {
    let src = source(30, vec![]);
    let cfg = config(8, 2);
    let mut l = Loader::new(src.clone(), FLIP, cfg.clone()).unwrap();
    for (epoch, size) in [(0u64, 4u32), (1, 12), (2, 6), (3, 12)] {
        let got = run_epoch(&mut l, epoch, size, 0);
        assert_eq!(got, expected(&src, &cfg, epoch, size), "epoch {epoch}");
        assert!(got.iter().all(|s| s.size == OutSize::square(size)));
    }
    let rect = l
        .epoch(
            5,
            OutSize {
                height: 3,
                width: 7,
            },
            0,
        )
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(rect.shape_nhwc(), [8, 3, 7, 3]);
}

#[test]
fn resume_from_start_batch_is_the_tail_of_the_epoch() {
    let src = source(50, vec![7]);
    let mut l = Loader::new(src, FLIP, config(6, 3)).unwrap();
    let full = run_epoch(&mut l, 2, 5, 0);
    for start in [0, 1, 4, 8, 9] {
        let tail = run_epoch(&mut l, 2, 5, start);
        assert_eq!(tail, full[start..], "start {start}");
    }
    match l.epoch(2, 5, 10) {
        Err(LoaderError::StartPastEnd { batches: 9, .. }) => {}
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("start past the end accepted"),
    };
}

#[test]
fn abandoning_an_epoch_midway_returns_every_slot() {
    let src = source(200, vec![]);
    let mut l = Loader::new(src, FLIP, config(4, 2)).unwrap();
    {
        let mut e = l.epoch(0, 16, 0).unwrap();
        let first = e.next().unwrap().unwrap();
        assert_eq!(first.index, 0);
        drop(e); // workers stop; `first` still valid
        assert_eq!(first.len(), 4);
    }
    assert_eq!(l.free_slots(), l.ring_slots());
    // the loader still works
    assert_eq!(run_epoch(&mut l, 1, 4, 0).len(), 50);
}

#[test]
fn shards_of_ranks_cover_the_epoch() {
    let n = 47;
    let src = source(n, vec![]);
    let world = 3;
    let mut all = Vec::new();
    for rank in 0..world {
        let cfg = LoaderConfig {
            rank,
            world_size: world,
            ..config(5, 2)
        };
        let mut l = Loader::new(src.clone(), FLIP, cfg).unwrap();
        assert_eq!(l.batches_per_epoch(), 16usize.div_ceil(5));
        let ids: Vec<u32> = run_epoch(&mut l, 0, 4, 0)
            .into_iter()
            .flat_map(|s| s.ids)
            .collect();
        assert_eq!(ids.len(), 16);
        all.extend(ids);
    }
    assert_eq!(all.len(), 48, "padded to a multiple of world size");
    let uniq: HashSet<u32> = all.iter().copied().collect();
    assert_eq!(uniq.len(), n, "union of ranks is the whole epoch");
}

#[test]
fn telemetry_counts_and_fractions() {
    let src = source(40, vec![]);
    let mut l = Loader::new(src, FLIP, config(8, 2)).unwrap();
    let mut e = l.epoch(0, 32, 0).unwrap();
    for b in e.by_ref() {
        b.unwrap();
    }
    let s = e.stats();
    assert_eq!(
        (s.batches, s.images, s.failed, s.depth_samples),
        (5, 40, 0, 5)
    );
    assert!(s.augment > std::time::Duration::ZERO);
    assert!(s.wait <= s.elapsed);
    let f = s.stall_fraction();
    assert!((0.0..=1.0).contains(&f), "{f}");
    assert!(s.images_per_sec() > 0.0);
    assert!(s.mean_free_slots() <= 6.0, "a 2-thread loader has 6 slots");
}

#[test]
fn bad_configs_are_errors() {
    let src = source(4, vec![]);
    for cfg in [
        config(0, 1),
        config(2, 0),
        LoaderConfig {
            rank: 2,
            world_size: 2,
            ..config(2, 1)
        },
    ] {
        assert!(matches!(
            Loader::new(src.clone(), FLIP, cfg),
            Err(LoaderError::Config(_))
        ));
    }
    let mut l = Loader::new(src, FLIP, config(2, 1)).unwrap();
    assert!(l.epoch(0, 0, 0).is_err());
}

/// A fixed buffer that cannot grow, standing in for pinned host memory.
struct Fixed(Box<[u8]>);

impl SlotBuf for Fixed {
    fn bytes(&self) -> &[u8] {
        &self.0
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
    fn ensure_len(&mut self, len: usize) -> Result<(), usize> {
        if len <= self.0.len() {
            Ok(())
        } else {
            Err(self.0.len())
        }
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[test]
fn caller_slots_are_used_and_too_small_is_an_error() {
    let cap = 4 * 8 * 8 * 3;
    let slots: Vec<Box<dyn SlotBuf>> = (0..3)
        .map(|_| Box::new(Fixed(vec![0u8; cap].into_boxed_slice())) as Box<dyn SlotBuf>)
        .collect();
    let cfg = LoaderConfig {
        batch_size: 4,
        threads: 2,
        ..LoaderConfig::default()
    };
    let mut l =
        Loader::with_slots(source(12, vec![]), NearestResize::default(), cfg, slots).unwrap();
    assert_eq!(l.ring_slots(), 3);
    for b in l.epoch(0, 8, 0).unwrap() {
        let b = b.unwrap();
        let fixed = b.buffer().as_any().downcast_ref::<Fixed>().unwrap();
        assert_eq!(fixed.0.as_ptr(), b.images().as_ptr());
    }
    let errs: Vec<_> = l.epoch(0, 9, 0).unwrap().collect();
    assert!(errs.iter().all(|r| matches!(
        r,
        Err(LoaderError::SlotTooSmall { have, need, .. }) if *have == cap && *need == 4 * 9 * 9 * 3
    )));
}
