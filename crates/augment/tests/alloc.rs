//! Steady-state `apply` allocates nothing (counting global allocator).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use brigade_augment::{
    ColorJitterConfig, EvalConfig, FastaiConfig, Geometry, Pipeline, PipelineConfig,
    RandomErasingConfig, Rect, SampleSeed, Scratch, TrainConfig, TrivialAugmentConfig,
};
use brigade_pixels::ImageView;

struct Counting;
static COUNT: AtomicUsize = AtomicUsize::new(0);
static ON: AtomicBool = AtomicBool::new(false);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if ON.load(Ordering::Relaxed) {
            COUNT.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        if ON.load(Ordering::Relaxed) {
            COUNT.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

#[test]
fn second_apply_allocates_nothing() {
    let (w, h) = (512u32, 384u32);
    let img: Vec<u8> = (0..w * h * 3).map(|i| (i * 31 % 253) as u8).collect();
    let full = ImageView {
        width: w,
        height: h,
        data: &img,
    };
    let train = TrainConfig {
        trivial_augment: Some(TrivialAugmentConfig::default()),
        color_jitter: Some(ColorJitterConfig {
            hue: 0.1,
            ..Default::default()
        }),
        random_erasing: Some(RandomErasingConfig {
            p: 1.0,
            ..Default::default()
        }),
        ..Default::default()
    };
    let fastai = TrainConfig {
        geometry: Geometry::Fastai(FastaiConfig::default()),
        ..Default::default()
    };
    let pipes = [
        Pipeline::new(PipelineConfig::Train(train)).unwrap(),
        Pipeline::new(PipelineConfig::Train(fastai)).unwrap(),
        Pipeline::new(PipelineConfig::Eval(EvalConfig::default())).unwrap(),
    ];
    let mut scratch = Scratch::new();
    let mut d = vec![0u8; 224 * 224 * 3];
    // warm up on the largest case: full-image crops at the biggest output.
    for pipe in &pipes {
        for s in 0..64 {
            pipe.apply(
                full,
                Rect::full((w, h)),
                (w, h),
                (224, 224),
                SampleSeed::new(0, 0, s),
                &mut scratch,
                &mut d,
            )
            .unwrap();
        }
    }
    let cap = scratch.capacity_bytes();
    COUNT.store(0, Ordering::SeqCst);
    ON.store(true, Ordering::SeqCst);
    for pipe in &pipes {
        for s in 0..64 {
            pipe.apply(
                full,
                Rect::full((w, h)),
                (w, h),
                (224, 224),
                SampleSeed::new(0, 0, s),
                &mut scratch,
                &mut d,
            )
            .unwrap();
        }
    }
    ON.store(false, Ordering::SeqCst);
    let n = COUNT.load(Ordering::SeqCst);
    assert_eq!(scratch.capacity_bytes(), cap);
    assert_eq!(n, 0, "{n} allocations in steady state");
}
