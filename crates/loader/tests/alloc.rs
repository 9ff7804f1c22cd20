//! Steady-state loading allocates nothing: a counting global allocator sees no
//! allocation while batches flow (after a warm-up epoch sized the ring).
//! The only test in this binary, so no other test allocates meanwhile.

use brigade_loader::{Loader, LoaderConfig, NearestResize, VecSource};
use brigade_pixels::RgbImage;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;
static ALLOCS: AtomicUsize = AtomicUsize::new(0);
static BYTES: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn source(n: usize) -> VecSource {
    VecSource {
        images: (0..n)
            .map(|i| RgbImage {
                width: 20,
                height: 16,
                data: vec![i as u8; 20 * 16 * 3],
            })
            .collect(),
        labels: (0..n as u32).collect(),
        broken: vec![],
    }
}

#[test]
fn steady_state_allocates_nothing() {
    let cfg = LoaderConfig {
        batch_size: 16,
        threads: 2,
        ..LoaderConfig::default()
    };
    let mut l = Loader::new(source(2000), NearestResize { random_flip: true }, cfg).unwrap();
    // warm-up epoch at the largest size: grows every slot once
    for b in l.epoch(0, 32, 0).unwrap() {
        b.unwrap();
    }
    let mut e = l.epoch(1, 32, 0).unwrap();
    for b in e.by_ref().take(10) {
        b.unwrap(); // threads started, channels and wakers set up
    }
    let (before, bytes) = (
        ALLOCS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    );
    let mut n = 0;
    for b in e.by_ref().take(100) {
        n += b.unwrap().len();
    }
    let during = ALLOCS.load(Ordering::Relaxed) - before;
    let bytes = BYTES.load(Ordering::Relaxed) - bytes;
    assert_eq!(n, 1600);
    // Usually 0. The only allocations seen are crossbeam's waiter lists
    // growing to a new high-water mark of blocked threads (a few dozen bytes,
    // once); anything per batch or per image would be >= 100 here.
    assert!(
        during <= 4 && bytes < 1024,
        "{during} allocations ({bytes} bytes) while 100 batches flowed"
    );
    drop(e);

    // A larger size (progressive resizing) grows the ring when the epoch
    // starts, on this thread: its batches then allocate no pixel buffers.
    let size = 48;
    let batch_bytes = 16 * size * size * 3;
    let mut e = l.epoch(2, size as u32, 0).unwrap();
    let bytes = BYTES.load(Ordering::Relaxed);
    for b in e.by_ref().take(8) {
        assert_eq!(b.unwrap().images().len(), batch_bytes);
    }
    let bytes = BYTES.load(Ordering::Relaxed) - bytes;
    assert!(
        bytes < batch_bytes / 2,
        "{bytes} bytes allocated by the first batches at a new size"
    );
}
