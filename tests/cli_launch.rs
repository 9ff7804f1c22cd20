//! Data-parallel training through the built binary: `brigade launch --nproc 2
//! -- train ...` on the demo recipe (shrunk), against the same run on one
//! process. Two ranks over Gloo on loopback must finish, write one set of
//! files (rank 0 only), and take half the steps per epoch (the sampler shards
//! the training split by rank), with accuracy in the same range.

use std::path::Path;
use std::process::Command;

fn recipe() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("recipes/demo.toml")
        .display()
        .to_string()
}

fn train(nproc: Option<usize>, out: &Path) -> serde_json::Value {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_brigade"));
    if let Some(n) = nproc {
        cmd.args(["launch", "--nproc", &n.to_string(), "--"]);
    }
    let out_s = out.display().to_string();
    let overrides = [
        format!("run.out_dir={:?}", format!("{out_s}/runs")),
        format!("data.path={:?}", format!("{out_s}/data")),
        "data.synth.per_class=40".into(),
        "data.synth.test_per_class=4".into(),
        "train.batch_size=32".into(),
        "stage.0.epochs=1".into(),
        "stage.1.epochs=1".into(),
        "eval.tta=false".into(),
    ];
    cmd.args(["train", "--config", &recipe(), "--quiet"])
        .args(&overrides);
    let res = cmd.output().expect("cannot run the brigade binary");
    assert!(
        res.status.success(),
        "brigade failed ({nproc:?} procs):\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&res.stdout),
        String::from_utf8_lossy(&res.stderr)
    );
    let runs: Vec<_> = std::fs::read_dir(out.join("runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(runs.len(), 1, "one run folder, written by rank 0: {runs:?}");
    let metrics = std::fs::read_to_string(runs[0].join("metrics.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let steps: Vec<u64> = lines
        .iter()
        .filter(|v| v.get("batch").is_some() && v.get("valid_top1").is_none())
        .map(|v| v["step"].as_u64().unwrap())
        .collect();
    let epochs: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|v| v.get("valid_top1").is_some())
        .collect();
    let mut unique = steps.clone();
    unique.dedup();
    assert_eq!(unique, steps, "every step logged once");
    serde_json::json!({
        "steps": steps.len(),
        "epochs": epochs.len(),
        "last_valid_top1": epochs.last().map(|e| e["valid_top1"].as_f64().unwrap()),
    })
}

#[test]
fn two_ranks_over_gloo_shard_the_epoch_and_write_once() {
    let one_dir = tempfile::tempdir().unwrap();
    let two_dir = tempfile::tempdir().unwrap();
    let one = train(None, one_dir.path());
    let two = train(Some(2), two_dir.path());
    assert_eq!(one["epochs"], 2);
    assert_eq!(two["epochs"], 2);
    let (s1, s2) = (
        one["steps"].as_u64().unwrap(),
        two["steps"].as_u64().unwrap(),
    );
    assert!(s1 >= 8, "one process: {s1} steps");
    assert!(
        s2 * 2 >= s1 - 2 && s2 * 2 <= s1 + 2,
        "two ranks take half the steps per epoch: {s2} vs {s1}"
    );
    let (a1, a2) = (
        one["last_valid_top1"].as_f64().unwrap(),
        two["last_valid_top1"].as_f64().unwrap(),
    );
    assert!(
        a2 > 0.2,
        "two ranks learn something: valid top-1 {a2} (one: {a1})"
    );
}
