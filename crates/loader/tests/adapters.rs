//! The real data crates behind the loader: original JPEG files through the
//! index, and a packed store (raw and JPEG), with the augment pipeline. The
//! oracle is the same crates called directly, sample by sample.

use brigade_augment::{Pipeline, Rect, SampleSeed};
use brigade_index::{Index, IndexOptions, Split};
use brigade_loader::adapters::{FileSource, StoreSource};
use brigade_loader::{dct_hint, Loader, LoaderConfig, OutSize, Source};
use brigade_pixels::{encode_jpeg, Decoder, RgbImage};
use brigade_store::{pack, PackOptions, Store, StoreFormat};
use std::path::Path;
use std::sync::Arc;

/// A tiny Food-101-layout dataset of smooth synthetic JPEGs.
fn dataset(root: &Path) {
    let classes = ["apple_pie", "baklava"];
    std::fs::create_dir_all(root.join("meta")).unwrap();
    let (mut train, mut test) = (String::new(), String::new());
    let mut jpeg = Vec::new();
    for (c, name) in classes.iter().enumerate() {
        std::fs::create_dir_all(root.join("images").join(name)).unwrap();
        for k in 0..6u32 {
            let (w, h) = (120 + 17 * k, 90 + 23 * ((k + c as u32) % 3));
            let mut data = Vec::with_capacity((w * h * 3) as usize);
            for y in 0..h {
                for x in 0..w {
                    data.extend_from_slice(&[
                        (x * 2) as u8,
                        (y * 2 + 40 * c as u32) as u8,
                        ((x + y) * k) as u8,
                    ]);
                }
            }
            let im = RgbImage::from_raw(w, h, data).unwrap();
            encode_jpeg(im.view(), 90, &mut jpeg).unwrap();
            let id = format!("{}", 1000 + 10 * c as u32 + k);
            std::fs::write(
                root.join("images").join(name).join(format!("{id}.jpg")),
                &jpeg,
            )
            .unwrap();
            let list = if k < 5 { &mut train } else { &mut test };
            list.push_str(&format!("{name}/{id}\n"));
        }
    }
    std::fs::write(root.join("meta/classes.txt"), classes.join("\n") + "\n").unwrap();
    std::fs::write(root.join("meta/labels.txt"), "Apple pie\nBaklava\n").unwrap();
    std::fs::write(root.join("meta/train.txt"), train).unwrap();
    std::fs::write(root.join("meta/test.txt"), test).unwrap();
}

fn config(threads: usize) -> LoaderConfig {
    LoaderConfig {
        batch_size: 4,
        threads,
        seed: 9,
        ..LoaderConfig::default()
    }
}

/// Each image of each batch equals decode + `Pipeline::apply` called directly.
fn check_against_direct<S: Source>(
    loader: &mut Loader<S, Pipeline>,
    pixels_of: impl Fn(usize, Option<(u32, u32)>) -> (RgbImage, (u32, u32)),
    position_of: impl Fn(u32) -> usize,
) -> usize {
    let out = OutSize::square(32);
    let mut scratch = brigade_augment::Scratch::default();
    let mut want = vec![0u8; out.image_bytes()];
    let mut n = 0;
    let pipeline = loader.transform().clone();
    let src = loader.source();
    let known: Vec<(u32, u32)> = (0..src.len()).map(|i| src.full_size(i).unwrap()).collect();
    for b in loader.epoch(1, out, 0).unwrap() {
        let b = b.unwrap();
        for (k, &id) in b.ids().iter().enumerate() {
            let seed = SampleSeed::new(9, 1, id as u64);
            let pos = position_of(id);
            let known = known[pos];
            let region = pipeline.source_region(known, out.wh(), seed);
            // the same DCT-scale request the loader makes (a no-op without turbojpeg)
            let (im, full) = pixels_of(pos, dct_hint(region, known, out));
            pipeline
                .apply(
                    im.view(),
                    Rect::full(full),
                    full,
                    out.wh(),
                    seed,
                    &mut scratch,
                    &mut want,
                )
                .unwrap();
            assert_eq!(b.image(k), &want[..], "sample {id}");
            n += 1;
        }
    }
    n
}

#[test]
fn original_files_through_the_index() {
    let dir = tempfile::tempdir().unwrap();
    dataset(dir.path());
    let (index, _) = Index::build(dir.path(), &IndexOptions::default()).unwrap();
    let src = FileSource::new(&index, Some(Split::Train));
    assert_eq!(src.len(), 10);
    let paths: Vec<_> = (0..src.len()).map(|i| src.name(i)).collect();
    let ids: Vec<u32> = (0..src.len()).map(|i| src.sample_id(i)).collect();
    let sizes: Vec<(u32, u32)> = (0..src.len()).map(|i| src.full_size(i).unwrap()).collect();
    let mut loader = Loader::new(src, Pipeline::default(), config(2)).unwrap();
    let decode = |i: usize, min: Option<(u32, u32)>| {
        let mut im = RgbImage::default();
        let (w, h) = min.unwrap_or((u32::MAX, u32::MAX));
        let scale = Decoder::new()
            .decode_scaled(&std::fs::read(&paths[i]).unwrap(), w, h, &mut im)
            .unwrap();
        let full = (im.width * scale.denom(), im.height * scale.denom());
        (im, if scale.denom() == 1 { full } else { sizes[i] })
    };
    let pos = |id: u32| ids.iter().position(|&x| x == id).unwrap();
    assert_eq!(check_against_direct(&mut loader, decode, pos), 10);

    // a file that went bad after indexing: counted, reported by path, replaced
    let victim = &paths[3];
    let bytes = std::fs::read(victim).unwrap();
    std::fs::write(victim, &bytes[..bytes.len() / 3]).unwrap();
    let mut e = loader.epoch(0, 16, 0).unwrap();
    let mut images = 0;
    for b in e.by_ref() {
        images += b.unwrap().len();
    }
    assert_eq!(images, 10, "batches stay full");
    let f = e.failures();
    assert_eq!(f.len(), 1);
    assert_eq!(&f[0].name, victim);
    assert!(f[0].replaced_by.is_some());
    assert!(!f[0].reason.is_empty());
    assert_eq!(e.stats().failed, 1);
}

#[test]
fn packed_store_raw_and_jpeg() {
    let dir = tempfile::tempdir().unwrap();
    dataset(dir.path());
    let (index, _) = Index::build(dir.path(), &IndexOptions::default()).unwrap();
    for format in [StoreFormat::Raw, StoreFormat::Jpeg { quality: 90 }] {
        let path = dir.path().join("store.bin");
        let opts = PackOptions {
            max_side: 100,
            format,
            threads: 1,
            ..PackOptions::default()
        };
        pack(&index, &path, &opts).unwrap();
        let store = Arc::new(Store::open(&path).unwrap());
        let src = StoreSource::new(Arc::clone(&store), Some(Split::Train));
        assert_eq!(src.len(), 10);
        let records: Vec<usize> = store.ids_in(Split::Train);
        let ids: Vec<u32> = (0..src.len()).map(|i| src.sample_id(i)).collect();
        for (i, &r) in records.iter().enumerate() {
            assert_eq!(ids[i], store.records()[r].source);
            assert_eq!(src.label(i), store.records()[r].label);
        }
        let pixels = |i: usize, min: Option<(u32, u32)>| {
            let rec = store.get(records[i]).unwrap();
            match rec.payload {
                brigade_store::Payload::Raw(v) => (v.to_owned_image(), (v.width, v.height)),
                brigade_store::Payload::Encoded(b) => {
                    let mut im = RgbImage::default();
                    let (w, h) = min.unwrap_or((u32::MAX, u32::MAX));
                    Decoder::new().decode_scaled(b, w, h, &mut im).unwrap();
                    (im, (rec.width, rec.height))
                }
            }
        };
        let pos = |id: u32| ids.iter().position(|&x| x == id).unwrap();
        for threads in [1, 3] {
            let mut loader =
                Loader::new(src.clone(), Pipeline::default(), config(threads)).unwrap();
            assert_eq!(
                check_against_direct(&mut loader, pixels, pos),
                10,
                "{format:?}"
            );
        }
    }
}
