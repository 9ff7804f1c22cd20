//! End-to-end test of `brigade pack` through the built binary: a tiny
//! synthetic Food-101-layout dataset (from `brigade synth`) plus one broken
//! JPEG, packed, then read back with `brigade_store`.

use brigade_index::{Index, IndexOptions, Split};
use brigade_store::{Payload, Store, StoreFormat};
use std::path::Path;
use std::process::{Command, Output};

fn brigade(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_brigade"))
        .args(args)
        .output()
        .expect("cannot run the brigade binary")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "brigade failed:\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn synth(out: &Path) {
    ok(&brigade(&[
        "synth",
        out.to_str().unwrap(),
        "--classes",
        "3",
        "--per-class",
        "4",
        "--test-per-class",
        "2",
        "--seed",
        "5",
        "--max-side",
        "160",
    ]));
}

#[test]
fn pack_synthetic_food101_with_a_broken_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("food");
    synth(&data);
    let index = Index::build(&data, &IndexOptions::default()).unwrap().0;
    assert_eq!(index.samples.len(), 18);
    // cut one training image in half: header intact, body gone
    let victim = index.abs_path(&index.samples[0]);
    let bytes = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, &bytes[..bytes.len() / 2]).unwrap();

    let store_path = dir.path().join("food.store");
    let index_path = dir.path().join("food.index");
    let stdout = ok(&brigade(&[
        "pack",
        data.to_str().unwrap(),
        "--out",
        store_path.to_str().unwrap(),
        "--max-side",
        "64",
        "--threads",
        "2",
        "--save-index",
        index_path.to_str().unwrap(),
        "--quiet",
    ]));
    assert!(stdout.contains("packed 17 of 18"), "{stdout}");
    assert!(
        stdout.contains("skipped") && stdout.contains("truncated"),
        "{stdout}"
    );
    let listed = std::fs::read_to_string(dir.path().join("food.store.skipped.txt")).unwrap();
    assert_eq!(listed.lines().count(), 1, "{listed}");

    let index = Index::load(&index_path).unwrap();
    let store = Store::open_for(&store_path, &index).unwrap();
    assert_eq!(store.len(), 17);
    assert_eq!(store.skipped().len(), 1);
    assert_eq!(store.format(), StoreFormat::Raw);
    assert_eq!(store.classes(), index.classes.as_slice());
    assert_eq!(store.ids_in(Split::Test).len(), 6);
    for i in 0..store.len() {
        let rec = store.get(i).unwrap();
        assert_eq!(rec.label, index.samples[rec.source as usize].class);
        let Payload::Raw(v) = rec.payload else {
            panic!("raw store")
        };
        assert!(v.width.max(v.height) <= 64 && v.is_consistent());
    }

    // jpeg, shorter side, from the saved index file
    let jpeg_path = dir.path().join("food-jpeg.store");
    ok(&brigade(&[
        "pack",
        index_path.to_str().unwrap(),
        "--out",
        jpeg_path.to_str().unwrap(),
        "--max-side",
        "48",
        "--side",
        "shorter",
        "--format",
        "jpeg",
        "--quality",
        "85",
        "--quiet",
    ]));
    let store = Store::open_for(&jpeg_path, &index).unwrap();
    assert_eq!(store.format(), StoreFormat::Jpeg { quality: 85 });
    let rec = store.get(0).unwrap();
    assert!(matches!(rec.payload, Payload::Encoded(b) if b.starts_with(&[0xFF, 0xD8])));
    assert!(rec.width.min(rec.height) <= 48);

    // --json: one object on stdout, every skipped file with its reason
    let json_path = dir.path().join("food-json.store");
    let stdout = ok(&brigade(&[
        "pack",
        index_path.to_str().unwrap(),
        "--out",
        json_path.to_str().unwrap(),
        "--max-side",
        "32",
        "--json",
        "--quiet",
    ]));
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON object");
    assert_eq!(v["packed"], 17, "{v}");
    assert_eq!(v["samples"], 18, "{v}");
    assert_eq!(v["format"], "raw");
    assert_eq!(v["max_side"], 32);
    let skipped = v["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 1, "{v}");
    assert!(
        skipped[0]["reason"].as_str().unwrap().contains("truncated"),
        "{v}"
    );
    assert_eq!(
        v["bytes"].as_u64().unwrap(),
        std::fs::metadata(&json_path).unwrap().len()
    );

    // bad arguments fail with a message, and leave no store behind
    let bad = dir.path().join("bad.store");
    let out = brigade(&[
        "pack",
        data.to_str().unwrap(),
        "--out",
        bad.to_str().unwrap(),
        "--format",
        "jpeg",
        "--quality",
        "0",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("quality"));
    assert!(!bad.exists());
    // indexing flags with an index file (whose splits are fixed) are refused,
    // not ignored
    let out = brigade(&[
        "pack",
        index_path.to_str().unwrap(),
        "--out",
        bad.to_str().unwrap(),
        "--valid-pct",
        "0.2",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--valid-pct") && stderr.contains("index file"),
        "{stderr}"
    );
    assert!(!bad.exists());
}
