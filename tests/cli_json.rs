//! The `--json` outputs of `brigade lr-find`, `bench-train` and `weights
//! check` through the built binary: stdout is one JSON object and nothing
//! else (progress and notes go to stderr). lr-find runs the demo recipe on a
//! small synthetic dataset: the sweep is exponential, and the curve and table
//! files are written.

use std::process::Command;

/// The command's stdout as one JSON object (failing the test, showing the
/// stdout, when it is anything else).
fn stdout_json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

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
    let v = stdout_json(&out);
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
    let v = stdout_json(&out);
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

/// `brigade weights check FILE --json` on a raw state dict (torchvision names,
/// no brigade metadata): identified without `--arch`, every key listed.
#[test]
fn weights_check_json_lists_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("resnet18-5cls.safetensors");
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let _model = brigade_zoo::Model::new(
        &vs.root(),
        brigade_zoo::Arch::Resnet18,
        5,
        brigade_zoo::HeadKind::Linear,
    )
    .unwrap();
    let mut tensors: Vec<(String, tch::Tensor)> = vs.variables().into_iter().collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    brigade_zoo::weights::write_safetensors(&file, &tensors, Default::default()).unwrap();
    let check = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_brigade"))
            .args(["weights", "check"])
            .arg(&file)
            .args(extra)
            .arg("--json")
            .output()
            .expect("cannot run the brigade binary")
    };
    let out = check(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("identified as resnet18 with 5 classes"),
        "{stderr}"
    );
    let v = stdout_json(&out);
    assert_eq!(
        (v["arch"].as_str(), v["num_classes"].as_i64()),
        (Some("resnet18"), Some(5))
    );
    assert_eq!(v["clean"], true);
    assert_eq!(v["loaded"].as_array().unwrap().len(), tensors.len());
    // the wrong architecture: still one JSON object, listing what is missing,
    // and a failing exit status
    let out = check(&["--arch", "resnet34"]);
    assert!(!out.status.success());
    let v = stdout_json(&out);
    assert_eq!(v["clean"], false);
    assert!(!v["missing"].as_array().unwrap().is_empty(), "{v}");
}
