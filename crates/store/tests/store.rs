//! Pack -> open -> read round trips, skipped files, refusals, resume.

use brigade_index::{Index, IndexOptions, Split};
use brigade_pixels::{encode_jpeg, resize_max_side, Decoder, Resizer, RgbImage};
use brigade_store::{
    pack, partial_path, skipped_path, PackOptions, Payload, Side, Store, StoreError, StoreFormat,
};
use std::path::{Path, PathBuf};

/// A picture with structure (so resizing errors would show).
fn picture(w: u32, h: u32, seed: u32) -> RgbImage {
    let mut data = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            data.push(((x * 3 + seed * 17) % 256) as u8);
            data.push(((y * 5 + seed * 29) % 256) as u8);
            data.push((((x / 8 + y / 8 + seed) % 2) * 200 + 20) as u8);
        }
    }
    RgbImage::from_raw(w, h, data).unwrap()
}

fn write_jpeg(path: &Path, img: &RgbImage) {
    let mut v = Vec::new();
    encode_jpeg(img.view(), 92, &mut v).unwrap();
    std::fs::write(path, v).unwrap();
}

struct Data {
    dir: tempfile::TempDir,
    index: Index,
}

/// ImageFolder with train/ and valid/, 3 classes, assorted sizes, one
/// truncated JPEG (indexable header, undecodable body).
fn dataset() -> Data {
    let dir = tempfile::tempdir().unwrap();
    let sizes = [
        (600, 400),
        (100, 80),
        (300, 500),
        (289, 288),
        (288, 100),
        (1000, 30),
    ];
    let mut n = 0;
    for split in ["train", "valid"] {
        for (c, class) in ["apple_pie", "bibimbap", "churros"].iter().enumerate() {
            let d = dir.path().join(split).join(class);
            std::fs::create_dir_all(&d).unwrap();
            for k in 0..2 {
                let (w, h) = sizes[(c * 2 + k + split.len()) % sizes.len()];
                write_jpeg(&d.join(format!("{k}.jpg")), &picture(w, h, n));
                n += 1;
            }
        }
    }
    // a JPEG cut in half: the header probes fine, the decode must fail
    let bad = dir.path().join("train/bibimbap/broken.jpg");
    write_jpeg(&bad, &picture(400, 300, 99));
    let bytes = std::fs::read(&bad).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();
    let (index, _) = Index::build(dir.path(), &IndexOptions::default()).unwrap();
    assert_eq!(index.samples.len(), 13, "{:?}", index.samples);
    Data { dir, index }
}

fn opts(max_side: u32) -> PackOptions {
    PackOptions {
        max_side,
        threads: 2,
        chunk: 3,
        ..Default::default()
    }
}

fn out_path(d: &Data, name: &str) -> PathBuf {
    d.dir.path().join(name)
}

#[test]
fn raw_round_trip_equals_decode_then_resize() {
    let d = dataset();
    let out = out_path(&d, "s.store");
    let report = pack(&d.index, &out, &opts(288)).unwrap();
    assert_eq!(report.packed, 12);
    assert_eq!(report.skipped.len(), 1);
    assert!(report.skipped[0].path.ends_with("broken.jpg"));
    assert!(
        report.skipped[0].reason.contains("truncated"),
        "{}",
        report.skipped[0].reason
    );
    assert!(!partial_path(&out).exists());
    let listed = std::fs::read_to_string(skipped_path(&out)).unwrap();
    assert!(
        listed.contains("broken.jpg") && listed.contains("truncated"),
        "{listed}"
    );

    let store = Store::open_for(&out, &d.index).unwrap();
    assert_eq!(store.len(), 12);
    assert_eq!(store.classes(), d.index.classes.as_slice());
    assert_eq!(store.format(), StoreFormat::Raw);
    assert_eq!((store.max_side(), store.side()), (288, Side::Longer));
    assert_eq!(store.skipped().len(), 1);
    assert_eq!(store.fingerprint(), d.index.fingerprint());
    assert_eq!(
        store.ids_in(Split::Train).len() + store.ids_in(Split::Valid).len(),
        12
    );
    assert_eq!(store.ids_in(Split::Test).len(), 0);

    let mut dec = Decoder::new();
    let mut rs = Resizer::new();
    let (mut full, mut want) = (RgbImage::default(), RgbImage::default());
    for i in 0..store.len() {
        let rec = store.get(i).unwrap();
        let sample = &d.index.samples[rec.source as usize];
        assert_eq!(rec.label, sample.class);
        assert_eq!(rec.split, sample.split);
        assert_eq!(store.labels()[i], sample.class);
        let bytes = std::fs::read(d.index.abs_path(sample)).unwrap();
        dec.decode(&bytes, &mut full).unwrap();
        resize_max_side(&mut rs, full.view(), 288, &mut want).unwrap();
        let Payload::Raw(view) = rec.payload else {
            panic!("raw store gave an encoded payload")
        };
        assert_eq!(
            (view.width, view.height),
            (want.width, want.height),
            "record {i}"
        );
        assert!(view.width.max(view.height) <= 288);
        assert_eq!(view.data, want.data.as_slice(), "record {i} pixels");
        // zero copy: the view points into the map, page-aligned
        assert_eq!(view.data.as_ptr() as usize % 4096, 0);
    }
    assert!(matches!(store.get(12), Err(StoreError::OutOfRange { .. })));
}

#[test]
fn jpeg_format_and_shorter_side() {
    let d = dataset();
    let out = out_path(&d, "j.store");
    let o = PackOptions {
        format: StoreFormat::Jpeg { quality: 90 },
        side: Side::Shorter,
        ..opts(64)
    };
    pack(&d.index, &out, &o).unwrap();
    let raw_out = out_path(&d, "r.store");
    pack(
        &d.index,
        &raw_out,
        &PackOptions {
            side: Side::Shorter,
            ..opts(64)
        },
    )
    .unwrap();
    let store = Store::open(&out).unwrap();
    let raw = Store::open(&raw_out).unwrap();
    assert_eq!(store.format(), StoreFormat::Jpeg { quality: 90 });
    assert!(store.file_len() < raw.file_len());
    let mut dec = Decoder::new();
    let mut img = RgbImage::default();
    for i in 0..store.len() {
        let (a, b) = (store.get(i).unwrap(), raw.get(i).unwrap());
        let (Payload::Encoded(bytes), Payload::Raw(view)) = (a.payload, b.payload) else {
            panic!("wrong payload kinds")
        };
        assert!(a.width.min(a.height) <= 64);
        dec.decode(bytes, &mut img).unwrap();
        assert_eq!((img.width, img.height), (a.width, a.height));
        assert_eq!((view.width, view.height), (a.width, a.height));
        let mean = img
            .data
            .iter()
            .zip(view.data)
            .map(|(&x, &y)| f64::from(x.abs_diff(y)))
            .sum::<f64>()
            / img.data.len() as f64;
        assert!(
            mean < 6.0,
            "record {i}: JPEG q90 differs from raw by {mean}"
        );
    }
}

#[test]
fn changed_dataset_is_refused() {
    let d = dataset();
    let out = out_path(&d, "s.store");
    pack(&d.index, &out, &opts(128)).unwrap();
    let mut changed = d.index.clone();
    changed.samples.pop();
    let e = Store::open_for(&out, &changed).unwrap_err();
    assert!(matches!(e, StoreError::FingerprintMismatch { .. }), "{e}");
    assert!(e.to_string().contains("brigade pack"), "{e}");
    let mut changed = d.index.clone();
    changed.samples[0].file_len += 1;
    assert!(Store::open_for(&out, &changed).is_err());
}

#[test]
fn file_changed_after_indexing_is_skipped() {
    let d = dataset();
    let victim = d.index.abs_path(&d.index.samples[0]);
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes.extend_from_slice(b"extra");
    std::fs::write(&victim, bytes).unwrap();
    let out = out_path(&d, "s.store");
    let report = pack(&d.index, &out, &opts(128)).unwrap();
    assert_eq!(report.skipped.len(), 2);
    assert!(report
        .skipped
        .iter()
        .any(|s| s.source == 0 && s.reason.contains("changed")));
}

#[test]
fn damaged_stores_are_refused_without_panicking() {
    let d = dataset();
    let out = out_path(&d, "s.store");
    pack(&d.index, &out, &opts(96)).unwrap();
    let good = std::fs::read(&out).unwrap();
    let bad = out_path(&d, "bad.store");
    let len = good.len();
    for cut in [0, 1, 7, 100, 128, 4096, len / 2, len - 1] {
        std::fs::write(&bad, &good[..cut]).unwrap();
        let e = Store::open(&bad).unwrap_err();
        assert!(
            matches!(e, StoreError::Truncated { .. }),
            "cut at {cut}: {e}"
        );
    }
    // one flipped byte anywhere in header, table or meta
    let store = Store::open(&out).unwrap();
    let table_at = store.records()[0].offset as usize; // a payload byte: not checked
    drop(store);
    for pos in [0usize, 9, 60, 100, len - 1, len - 40] {
        let mut b = good.clone();
        b[pos] ^= 0x55;
        std::fs::write(&bad, &b).unwrap();
        assert!(Store::open(&bad).is_err(), "flipped byte {pos} accepted");
    }
    let mut b = good.clone();
    b[table_at] ^= 1;
    std::fs::write(&bad, &b).unwrap();
    assert!(
        Store::open(&bad).is_ok(),
        "payload bytes are not checksummed"
    );
    std::fs::write(&bad, b"definitely not a store, but long enough to have a header........................................................................").unwrap();
    assert!(matches!(
        Store::open(&bad),
        Err(StoreError::NotAStore { .. })
    ));
    assert!(matches!(
        Store::open(out_path(&d, "missing")),
        Err(StoreError::Io { .. })
    ));
}

#[test]
fn interrupted_pack_resumes_to_the_same_bytes() {
    let d = dataset();
    let reference = out_path(&d, "ref.store");
    pack(&d.index, &reference, &opts(80)).unwrap();

    let out = out_path(&d, "s.store");
    let stop = PackOptions {
        stop_after: Some(5),
        checkpoint_every: std::time::Duration::ZERO,
        ..opts(80)
    };
    let e = pack(&d.index, &out, &stop).unwrap_err();
    assert!(matches!(e, StoreError::Interrupted { done: 6, .. }), "{e}");
    assert!(
        !out.exists(),
        "an interrupted pack left a complete-looking store"
    );
    let partial = partial_path(&out);
    assert!(matches!(
        Store::open(&partial),
        Err(StoreError::Unfinished { .. })
    ));
    // garbage appended after the checkpoint (a kill mid-write) is cut off
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&partial)
        .unwrap();
    std::io::Write::write_all(&mut f, &[7u8; 5000]).unwrap();
    drop(f);

    let report = pack(&d.index, &out, &opts(80)).unwrap();
    assert_eq!(report.resumed_at, Some(6));
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(&reference).unwrap()
    );

    // other options: the checkpoint does not apply, the pack starts over
    let e = pack(&d.index, &out, &stop).unwrap_err();
    assert!(matches!(e, StoreError::Interrupted { .. }));
    let report = pack(&d.index, &out, &opts(81)).unwrap();
    assert_eq!(report.resumed_at, None);
    assert_eq!(Store::open(&out).unwrap().max_side(), 81);
}

#[test]
fn bad_options_are_errors() {
    let d = dataset();
    let out = out_path(&d, "s.store");
    assert!(matches!(
        pack(&d.index, &out, &opts(0)),
        Err(StoreError::Options(_))
    ));
    let o = PackOptions {
        format: StoreFormat::Jpeg { quality: 0 },
        ..opts(64)
    };
    assert!(matches!(
        pack(&d.index, &out, &o),
        Err(StoreError::Options(_))
    ));
}
