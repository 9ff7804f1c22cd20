//! `brigade lr-find --json` and `brigade bench-train --json` through the built binary, on the demo recipe with
//! a small synthetic dataset: stdout is one JSON object (nothing else), the
//! sweep is exponential, and the curve and table files are written.

use std::process::Command;

#[test]
fn lr_find_json_is_the_only_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("lr");
    let quote = |p: &std::path::Path| format!("{:?}", p.display().to_string());
    let out = Command::new(env!("CARGO_BIN_EXE_brigade"))
        .args([
            "lr-find",
            "--config",
            "recipes/demo.toml",
            "--num-iter",
            "6",
        ])
        .args(["--start-lr", "1e-5", "--end-lr", "1", "--json", "--out"])
        .arg(&out_dir)
        .arg(format!("data.path={}", quote(&dir.path().join("data"))))
        .arg(format!("run.out_dir={}", quote(&dir.path().join("runs"))))
        .args([
            "data.synth.classes=3",
            "data.synth.per_class=24",
            "data.synth.test_per_class=4",
            "train.batch_size=16",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cannot run the brigade binary");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "lr-find failed:\n{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    let lrs: Vec<f64> = v["lrs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    let losses = v["losses"].as_array().unwrap();
    assert!(!lrs.is_empty() && lrs.len() <= 6, "{lrs:?}");
    assert_eq!(lrs.len(), losses.len());
    assert!((lrs[0] - 1e-5).abs() < 1e-12, "{lrs:?}");
    // exponential: a constant ratio between successive rates
    let ratio = lrs[1] / lrs[0];
    for w in lrs.windows(2) {
        assert!(((w[1] / w[0]) / ratio - 1.0).abs() < 1e-9, "{lrs:?}");
    }
    assert_eq!(v["stage"], 0);
    for f in ["lr_find.json", "lr_find.txt", "lr_find.png"] {
        assert!(out_dir.join(f).is_file(), "{f} missing");
    }
    // the dataset generation note went to stderr, not stdout
    assert!(stderr.contains("generated a synthetic dataset"), "{stderr}");
}

/// `brigade bench-train --json` (ours only, a tiny model and batch): one
/// JSON object on stdout with the per-round and overall medians.
#[test]
fn bench_train_json_reports_the_medians() {
    let out = Command::new(env!("CARGO_BIN_EXE_brigade"))
        .args(["bench-train", "--arch", "resnet18", "--size", "32"])
        .args(["--batch", "2", "--steps", "2", "--rounds", "2"])
        .args(["--classes", "3", "--no-peer", "--json"])
        .output()
        .expect("cannot run the brigade binary");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench-train failed:\n{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    let rounds = v["brigade_round_ms"].as_array().unwrap();
    assert_eq!(rounds.len(), 2, "{v}");
    let median = v["brigade_median_ms"].as_f64().unwrap();
    assert!(median > 0.0 && median.is_finite(), "{v}");
    assert_eq!(v["fed_by"], "loader");
    assert!(
        v["ratio"].is_null() && v["pytorch_median_ms"].is_null(),
        "{v}"
    );
    assert!(stderr.contains("round 1: brigade median"), "{stderr}");
}
