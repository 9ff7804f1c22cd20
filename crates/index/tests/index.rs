//! Layouts, splits, problem reports, the index file and manifests.

use std::fs;
use std::path::{Path, PathBuf};

use brigade_index::{
    verify_against, Index, IndexError, IndexFileError, IndexOptions, Layout, Manifest, Mismatch,
    ProblemKind, Report, Split,
};

fn write_img(path: &Path, w: u32, h: u32) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 7) as u8, (y * 3) as u8, 90]));
    img.save(path).unwrap();
}

/// Official Food-101 layout under `base` (the `food-101` folder itself):
/// classes × (train + test) JPEGs named images/<class>/<id>.jpg.
fn make_food(base: &Path, classes: &[&str], train: usize, test: usize, meta: &str) {
    let mut train_lines = String::new();
    let mut test_lines = String::new();
    for (c, class) in classes.iter().enumerate() {
        for i in 0..train + test {
            let id = format!("{}", 1000 + i);
            write_img(
                &base.join(format!("images/{class}/{id}.jpg")),
                16 + c as u32,
                12 + i as u32 % 5,
            );
            let line = format!("{class}/{id}\n");
            if i < train {
                train_lines.push_str(&line);
            } else {
                test_lines.push_str(&line);
            }
        }
    }
    let m = base.join(meta);
    fs::create_dir_all(&m).unwrap();
    let names: Vec<String> = classes.iter().map(|c| c.to_string()).collect();
    fs::write(m.join("classes.txt"), names.join("\n") + "\n").unwrap();
    let labels: Vec<String> = classes
        .iter()
        .map(|c| c.replace('_', " ").to_uppercase())
        .collect();
    fs::write(m.join("labels.txt"), labels.join("\n") + "\n").unwrap();
    fs::write(m.join("train.txt"), train_lines).unwrap();
    fs::write(m.join("test.txt"), test_lines).unwrap();
}

fn build(root: &Path, opts: &IndexOptions) -> (Index, Report) {
    Index::build(root, opts).unwrap()
}

#[test]
fn food101_layout_from_folder_and_parent() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("food-101");
    make_food(&base, &["apple_pie", "baklava", "pho"], 4, 2, "meta");
    for root in [base.clone(), dir.path().to_path_buf()] {
        let (index, report) = build(&root, &IndexOptions::default());
        assert_eq!(report.layout, Layout::Food101);
        assert_eq!(report.root, base);
        assert_eq!(index.root, base);
        assert_eq!(index.classes, ["apple_pie", "baklava", "pho"]);
        assert_eq!(report.labels, ["APPLE PIE", "BAKLAVA", "PHO"]);
        assert_eq!(index.class_counts(Split::Train), [4, 4, 4]);
        assert_eq!(index.class_counts(Split::Test), [2, 2, 2]);
        assert_eq!(index.class_counts(Split::Valid), [0, 0, 0]);
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        let s = &index.samples[0];
        assert_eq!(s.path, PathBuf::from("images/apple_pie/1000.jpg"));
        assert_eq!((s.width, s.height), (16, 12));
        assert_eq!(s.file_len, fs::metadata(index.abs_path(s)).unwrap().len());
        let b = index
            .samples
            .iter()
            .find(|s| s.path.ends_with("baklava/1003.jpg"))
            .unwrap();
        assert_eq!((b.class, b.width, b.height), (1, 17, 15));
    }
}

#[test]
fn the_images_folder_of_a_listed_dataset_is_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let food = dir.path().join("food-101");
    make_food(&food, &["apple_pie", "bibimbap"], 2, 1, "meta");
    // given food-101/images: an ImageFolder with everything in train, said so
    let (index, report) = build(&food.join("images"), &IndexOptions::default());
    assert_eq!(report.layout, Layout::ImageFolder);
    assert_eq!(index.class_counts(Split::Train), [3, 3]);
    let hint: Vec<_> = report
        .problems
        .iter()
        .filter(|p| matches!(p.kind, ProblemKind::InsideListedDataset { .. }))
        .collect();
    assert_eq!(hint.len(), 1, "{:?}", report.problems);
    assert_eq!(
        hint[0].kind,
        ProblemKind::InsideListedDataset {
            parent: food.clone(),
            layout: Layout::Food101
        }
    );
    assert!(hint[0]
        .to_string()
        .contains("official test list is ignored"));
    assert_eq!(report.excluded().count(), 0);
    // the dataset itself: no such warning
    let (_, report) = build(&food, &IndexOptions::default());
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[test]
fn fastai_layout() {
    let dir = tempfile::tempdir().unwrap();
    make_food(dir.path(), &["a", "b"], 3, 1, "");
    let (index, report) = build(dir.path(), &IndexOptions::default());
    assert_eq!(report.layout, Layout::Fastai);
    assert_eq!(index.classes, ["a", "b"]);
    assert_eq!(index.split_ids(Split::Train).len(), 6);
    assert_eq!(index.split_ids(Split::Test).len(), 2);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[test]
fn image_folder_flat_and_split_dirs() {
    let dir = tempfile::tempdir().unwrap();
    let flat = dir.path().join("flat");
    write_img(&flat.join("cat/1.jpg"), 10, 8);
    write_img(&flat.join("cat/sub/2.png"), 9, 9);
    write_img(&flat.join("dog/3.jpeg"), 20, 4);
    // torchvision's other decodable extensions, any case
    write_img(&flat.join("dog/4.BMP"), 6, 5);
    write_img(&flat.join("dog/5.tiff"), 7, 5);
    write_img(&flat.join("dog/6.tif"), 8, 5);
    fs::write(flat.join("dog/notes.txt"), "hi").unwrap();
    fs::write(flat.join("README"), "top-level file").unwrap();
    fs::write(flat.join(".complete"), "").unwrap();
    let (index, report) = build(&flat, &IndexOptions::default());
    assert_eq!(report.layout, Layout::ImageFolder);
    assert_eq!(index.classes, ["cat", "dog"]);
    assert_eq!(index.class_counts(Split::Train), [2, 4]);
    assert_eq!(report.hidden_skipped, 1);
    let kinds: Vec<(String, &str)> = report
        .problems
        .iter()
        .map(|p| (p.path.display().to_string(), p.kind.name()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("README".to_string(), "outside_class_folder"),
            ("dog/notes.txt".to_string(), "not_an_image")
        ]
    );

    let split = dir.path().join("split");
    write_img(&split.join("train/cat/1.jpg"), 10, 8);
    write_img(&split.join("train/dog/2.jpg"), 10, 8);
    write_img(&split.join("valid/cat/3.jpg"), 10, 8);
    write_img(&split.join("test/dog/4.webp_is_png.png"), 10, 8);
    write_img(&split.join("test/bird/5.jpg"), 10, 8);
    let (index, report) = build(&split, &IndexOptions::default());
    assert_eq!(index.classes, ["bird", "cat", "dog"]);
    assert_eq!(index.class_counts(Split::Train), [0, 1, 1]);
    assert_eq!(index.class_counts(Split::Valid), [0, 1, 0]);
    assert_eq!(index.class_counts(Split::Test), [1, 0, 1]);
    // each class missing from a split that exists is a warning, not an error
    let missing: Vec<(String, &str)> = report
        .problems
        .iter()
        .map(|p| match p.kind {
            ProblemKind::ClassWithoutImages { split } => {
                (p.path.display().to_string(), split.name())
            }
            ref other => panic!("unexpected problem {other:?}"),
        })
        .collect();
    assert_eq!(
        missing,
        [
            ("bird".to_string(), "train"),
            ("bird".to_string(), "valid"),
            ("cat".to_string(), "test"),
            ("dog".to_string(), "valid"),
        ]
    );
    assert_eq!(report.excluded().count(), 0);
    assert!(report
        .problems
        .iter()
        .all(|p| p.kind.severity() == brigade_index::Severity::Warning));
    assert_eq!(
        report.problems[0].to_string(),
        "warning: bird: class has no images in the train split"
    );
    // Hugging Face exports name it `validation`
    let hf = dir.path().join("hf");
    write_img(&hf.join("train/cat/1.jpg"), 10, 8);
    write_img(&hf.join("validation/cat/2.jpg"), 10, 8);
    write_img(&hf.join("validation/dog/3.jpg"), 10, 8);
    let (hf_index, hf_report) = build(&hf, &IndexOptions::default());
    assert_eq!(hf_index.class_counts(Split::Valid), [1, 1]);
    assert_eq!(hf_index.class_counts(Split::Train), [1, 0]);
    let kinds: Vec<_> = hf_report.problems.iter().map(|p| &p.kind).collect();
    assert_eq!(
        kinds,
        [&ProblemKind::ClassWithoutImages {
            split: Split::Train
        }]
    );
    // an empty class folder keeps its class id and is reported
    fs::create_dir_all(flat.join("emu")).unwrap();
    let (index, report) = build(&flat, &IndexOptions::default());
    assert_eq!(index.classes, ["cat", "dog", "emu"]);
    assert!(report.problems.iter().any(|p| p.path == Path::new("emu")
        && p.kind
            == ProblemKind::ClassWithoutImages {
                split: Split::Train
            }));
    // A validation folder and a hold-out do not mix.
    let err = Index::build(
        &split,
        &IndexOptions {
            valid_pct: 0.2,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            IndexError::BadOption {
                option: "valid_pct",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn no_layout_and_bad_options_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let err = Index::build(dir.path(), &IndexOptions::default()).unwrap_err();
    assert!(matches!(err, IndexError::NoLayout { .. }), "{err}");
    let err = Index::build(&dir.path().join("nope"), &IndexOptions::default()).unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
    for opts in [
        IndexOptions {
            valid_pct: 1.0,
            ..Default::default()
        },
        IndexOptions {
            valid_pct: -0.1,
            ..Default::default()
        },
        IndexOptions {
            sample_frac: 0.0,
            ..Default::default()
        },
        IndexOptions {
            sample_frac: 1.5,
            ..Default::default()
        },
    ] {
        assert!(matches!(
            Index::build(dir.path(), &opts),
            Err(IndexError::BadOption { .. })
        ));
    }
}

fn split_of(index: &Index) -> Vec<(PathBuf, Split)> {
    index
        .samples
        .iter()
        .map(|s| (s.path.clone(), s.split))
        .collect()
}

#[test]
fn splits_are_deterministic_and_stratified() {
    let dir = tempfile::tempdir().unwrap();
    let classes = ["a", "b", "c", "d"];
    make_food(dir.path(), &classes, 20, 10, "meta");
    // Class "d" gets extra training images to make classes unequal.
    let mut train = fs::read_to_string(dir.path().join("meta/train.txt")).unwrap();
    for i in 0..13 {
        write_img(&dir.path().join(format!("images/d/x{i}.jpg")), 8, 8);
        train.push_str(&format!("d/x{i}\n"));
    }
    fs::write(dir.path().join("meta/train.txt"), train).unwrap();

    let opts = IndexOptions {
        valid_pct: 0.2,
        seed: 42,
        sample_frac: 1.0,
    };
    let (a, _) = build(dir.path(), &opts);
    let (b, _) = build(dir.path(), &opts);
    assert_eq!(split_of(&a), split_of(&b), "same seed, same split");
    assert_eq!(a.fingerprint(), b.fingerprint());
    let (c, _) = build(
        dir.path(),
        &IndexOptions {
            seed: 43,
            ..opts.clone()
        },
    );
    assert_ne!(split_of(&a), split_of(&c), "another seed, another split");
    assert_ne!(a.fingerprint(), c.fingerprint());

    // Stratified: round(n × pct) of every class, test untouched.
    assert_eq!(a.class_counts(Split::Valid), [4, 4, 4, 7]);
    assert_eq!(a.class_counts(Split::Train), [16, 16, 16, 26]);
    assert_eq!(a.class_counts(Split::Test), [10, 10, 10, 10]);
    assert_eq!(c.class_counts(Split::Valid), [4, 4, 4, 7]);

    // 25 % sample per class and split, then the hold-out from what is left.
    let s_opts = IndexOptions {
        valid_pct: 0.25,
        seed: 1,
        sample_frac: 0.25,
    };
    let (s, report) = build(dir.path(), &s_opts);
    assert_eq!(s.class_counts(Split::Test), [3, 3, 3, 3]); // round(2.5) = 3
    let train_valid: Vec<usize> = s
        .class_counts(Split::Train)
        .iter()
        .zip(s.class_counts(Split::Valid))
        .map(|(t, v)| t + v)
        .collect();
    assert_eq!(train_valid, [5, 5, 5, 8]);
    assert_eq!(s.class_counts(Split::Valid), [1, 1, 1, 2]);
    assert_eq!(report.sampled_out, 4 * 30 + 13 - s.samples.len());
    let (s2, _) = build(dir.path(), &s_opts);
    assert_eq!(split_of(&s), split_of(&s2));
    let (s3, _) = build(dir.path(), &IndexOptions { seed: 2, ..s_opts });
    assert_ne!(split_of(&s), split_of(&s3));
}

/// A PNG header with arbitrary IHDR dimensions (no pixel data).
fn png_header(w: u32, h: u32) -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec();
    v.extend_from_slice(&w.to_be_bytes());
    v.extend_from_slice(&h.to_be_bytes());
    v.extend_from_slice(&[8, 2, 0, 0, 0, 0, 0, 0, 0]);
    v
}

#[test]
fn bad_files_produce_a_report_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("food-101");
    make_food(&root, &["a", "b"], 2, 1, "meta");
    let img = root.join("images");
    fs::write(img.join("a/empty.jpg"), b"").unwrap();
    fs::write(img.join("a/trunc.jpg"), [0xFF, 0xD8, 0xFF, 0xE0, 0x00]).unwrap();
    fs::write(img.join("a/text.jpg"), b"<html>not an image</html>").unwrap();
    write_img(&img.join("b/real.png"), 13, 7);
    fs::rename(img.join("b/real.png"), img.join("b/png.jpg")).unwrap();
    fs::write(img.join("b/zero.jpg"), png_header(0, 10)).unwrap();
    fs::write(img.join("b/huge.jpg"), png_header(20000, 100)).unwrap();
    fs::write(img.join("b/huge_area.jpg"), png_header(12000, 12000)).unwrap();
    write_img(&img.join("b/unlisted.jpg"), 8, 8);
    let mut train = fs::read_to_string(root.join("meta/train.txt")).unwrap();
    for l in [
        "a/empty",
        "a/trunc",
        "a/text",
        "b/png",
        "b/zero",
        "b/huge",
        "b/huge_area",
        "a/missing",
        "zzz/1",
        "nonsense",
    ] {
        train.push_str(l);
        train.push('\n');
    }
    train.push_str("a/1000\n"); // duplicate of the first line
    fs::write(root.join("meta/train.txt"), &train).unwrap();
    let mut test = fs::read_to_string(root.join("meta/test.txt")).unwrap();
    test.push_str("a/1001\n"); // listed in train too
    fs::write(root.join("meta/test.txt"), test).unwrap();

    let (index, report) = build(&root, &IndexOptions::default());
    let got: Vec<(String, String)> = report
        .problems
        .iter()
        .map(|p| (p.path.display().to_string(), p.kind.name().to_string()))
        .collect();
    let want = [
        ("images/a/1000.jpg", "duplicate"),
        ("images/a/1001.jpg", "duplicate"),
        ("images/a/empty.jpg", "empty"),
        ("images/a/missing.jpg", "missing"),
        ("images/a/text.jpg", "wrong_magic"),
        ("images/a/trunc.jpg", "bad_header"),
        ("images/b/huge.jpg", "huge_dimension"),
        ("images/b/huge_area.jpg", "huge_dimension"),
        ("images/b/png.jpg", "extension_mismatch"),
        ("images/b/unlisted.jpg", "unlisted"),
        ("images/b/zero.jpg", "zero_dimension"),
        ("images/zzz/1.jpg", "unknown_class"),
        ("meta/train.txt", "bad_list_line"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(got, want);
    // The PNG named .jpg is indexed with its real geometry; every other
    // problem file is left out; the duplicates are indexed once.
    let png = index
        .samples
        .iter()
        .find(|s| s.path.ends_with("b/png.jpg"))
        .unwrap();
    assert_eq!((png.width, png.height), (13, 7));
    assert_eq!(index.samples.len(), 2 * 3 + 1);
    assert_eq!(
        index
            .samples
            .iter()
            .filter(|s| s.path.ends_with("a/1001.jpg"))
            .map(|s| s.split)
            .collect::<Vec<_>>(),
        [Split::Train]
    );
    assert_eq!(index.class_counts(Split::Train), [2, 3]);
    assert_eq!(report.excluded().count(), want.len() - 1);
    let dup = report
        .problems
        .iter()
        .find(|p| p.path.ends_with("a/1001.jpg"))
        .unwrap();
    assert_eq!(
        dup.kind,
        ProblemKind::Duplicate {
            first: Split::Train,
            again: Split::Test
        }
    );
    assert!(report.problems.iter().all(|p| !p.to_string().is_empty()));
}

#[test]
fn index_file_round_trip_and_corruption() {
    let dir = tempfile::tempdir().unwrap();
    make_food(&dir.path().join("food-101"), &["a", "b"], 3, 2, "meta");
    let (index, _) = build(
        dir.path(),
        &IndexOptions {
            valid_pct: 0.34,
            seed: 3,
            sample_frac: 1.0,
        },
    );
    let file = dir.path().join("out/x.index");
    fs::create_dir_all(file.parent().unwrap()).unwrap();
    index.save(&file).unwrap();
    assert_eq!(Index::load(&file).unwrap(), index);
    let leftovers: Vec<_> = fs::read_dir(file.parent().unwrap()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no temp file left behind");

    let bytes = fs::read(&file).unwrap();
    let corrupt = |b: Vec<u8>| {
        let p = dir.path().join("bad.index");
        fs::write(&p, b).unwrap();
        Index::load(&p).unwrap_err()
    };
    let mut flipped = bytes.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    assert!(matches!(corrupt(flipped), IndexFileError::Checksum { .. }));
    assert!(matches!(
        corrupt(bytes[..bytes.len() - 3].to_vec()),
        IndexFileError::Truncated { .. }
    ));
    assert!(matches!(
        corrupt(bytes[..10].to_vec()),
        IndexFileError::Truncated { .. }
    ));
    assert!(matches!(
        corrupt(b"hello world, not an index".to_vec()),
        IndexFileError::BadMagic { .. }
    ));
    let mut v2 = bytes.clone();
    v2[8] = 2;
    let err = corrupt(v2);
    assert!(
        matches!(err, IndexFileError::UnsupportedVersion { found: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("bad.index"));
}

#[test]
fn fingerprint_tracks_samples_classes_and_lengths() {
    let dir = tempfile::tempdir().unwrap();
    make_food(dir.path(), &["a", "b"], 2, 1, "meta");
    let (index, _) = build(dir.path(), &IndexOptions::default());
    let fp = index.fingerprint();
    let mut moved = index.clone();
    moved.root = PathBuf::from("/elsewhere");
    assert_eq!(moved.fingerprint(), fp, "the root is not part of it");
    let mut m = index.clone();
    m.samples[0].file_len += 1;
    assert_ne!(m.fingerprint(), fp);
    let mut m = index.clone();
    m.classes[1] = "c".into();
    assert_ne!(m.fingerprint(), fp);
    let mut m = index.clone();
    m.samples[0].split = Split::Valid;
    assert_ne!(m.fingerprint(), fp);
    let mut m = index.clone();
    m.samples.swap(0, 1);
    assert_ne!(m.fingerprint(), fp);
    // A file rewritten with another length changes the rebuilt fingerprint.
    write_img(&dir.path().join("images/a/1000.jpg"), 40, 40);
    let (again, _) = build(dir.path(), &IndexOptions::default());
    assert_ne!(again.fingerprint(), fp);
}

#[test]
fn manifests_parse_validate_and_verify() {
    let food = Manifest::food101().unwrap();
    assert_eq!(food.dataset.classes, 101);
    assert_eq!(food.dataset.class_names.as_ref().unwrap().len(), 101);
    assert_eq!(food.dataset.total_images, 101_000);
    assert_eq!(
        food.source.md5.as_deref(),
        Some("85eeb15f3717b99a5da872d97d918f87")
    );
    assert_eq!(
        food.source.url,
        "http://data.vision.ee.ethz.ch/cvl/food-101.tar.gz"
    );
    // The repository file and the embedded copy agree.
    let on_disk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data-manifests/food-101.toml");
    assert_eq!(Manifest::from_file(&on_disk).unwrap(), food);

    let text = brigade_index::manifest::FOOD101_TOML;
    let unknown = text.replace("max_side = 512", "max_side = 512\nmax_sidee = 3");
    let err = Manifest::parse(&unknown, "x.toml").unwrap_err();
    assert!(err.to_string().contains("max_sidee"), "{err}");
    assert!(err.to_string().contains("x.toml"), "{err}");
    let bad_md5 = text.replace("85eeb15f3717b99a5da872d97d918f87", "85eeb15f");
    let err = Manifest::parse(&bad_md5, "x.toml").unwrap_err();
    assert!(err.to_string().contains("source.md5"), "{err}");
    let bad_total = text.replace("total_images = 101000", "total_images = 100000");
    let err = Manifest::parse(&bad_total, "x.toml").unwrap_err();
    assert!(err.to_string().contains("total_images"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    make_food(dir.path(), &["a", "b", "x"], 3, 2, "meta");
    fs::remove_file(dir.path().join("images/b/1001.jpg")).unwrap();
    write_img(&dir.path().join("images/a/1000.jpg"), 600, 20);
    let (index, _) = build(
        dir.path(),
        &IndexOptions {
            valid_pct: 0.34,
            ..Default::default()
        },
    );
    let m = Manifest::parse(
        r#"
name = "tiny"
format_version = 1
[source]
url = "http://127.0.0.1/tiny.tar.gz"
archive_name = "tiny.tar.gz"
[dataset]
layout = "food101"
classes = 3
train_per_class = 3
test_per_class = 2
total_images = 15
max_side = 512
class_names = ["a", "b", "c"]
"#,
        "tiny",
    )
    .unwrap();
    let v = verify_against(&index, &m);
    assert!(!v.is_ok());
    assert_eq!(
        v.mismatches,
        [
            Mismatch::MissingClasses {
                classes: vec!["c".into()]
            },
            Mismatch::ExtraClasses {
                classes: vec!["x".into()]
            },
            Mismatch::PerClassCount {
                class: "b".into(),
                split: "train",
                expected: 3,
                found: 2
            },
            Mismatch::Total {
                expected: 15,
                found: 14
            },
            Mismatch::Oversized {
                max_side: 512,
                count: 1,
                examples: vec![PathBuf::from("images/a/1000.jpg")]
            },
        ]
    );
    assert!(
        v.to_string()
            .contains("class b: expected 3 train images, found 2"),
        "{v}"
    );
}
