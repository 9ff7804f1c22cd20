//! Shared test helpers: the Python oracle.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The oracle python (`$BRIGADE_PYTHON`, else `python3`); fails clearly without torch.
pub fn python() -> String {
    let py = std::env::var("BRIGADE_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let ok = Command::new(&py)
        .args(["-c", "import torch, safetensors"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "the Python oracle `{py}` with torch + safetensors is required \
         (run the tests through scripts/with-env.sh, which sets BRIGADE_PYTHON)"
    );
    py
}

pub fn oracle_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracle/optim_oracle.py")
}

/// Runs the oracle script with `args`; panics with its stderr on failure.
pub fn run_oracle(args: &[&str]) {
    let out = Command::new(python())
        .arg(oracle_script())
        .args(args)
        .output()
        .expect("spawn the oracle python");
    assert!(
        out.status.success(),
        "oracle failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
