//! Shared helpers: the Python oracle.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The oracle interpreter: `$BRIGADE_PYTHON` (set by scripts/with-env.sh) or `python3`.
pub fn python() -> String {
    std::env::var("BRIGADE_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

pub fn oracle_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/oracle")
        .join(name)
}

/// Runs an oracle script; panics with a clear message when Python, numpy,
/// Pillow or torch are missing (never skips).
pub fn run_oracle(script: &str, args: &[&str]) {
    let py = python();
    let out = Command::new(&py)
        .arg(oracle_script(script))
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run the Python oracle `{py}` ({e}): run through scripts/with-env.sh or set BRIGADE_PYTHON")
        });
    assert!(
        out.status.success(),
        "oracle {script} failed (needs numpy, Pillow, torch, torchvision, scikit-image, scikit-learn in `{py}`):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// (max abs difference, mean abs difference)
pub fn diff(a: &[u8], b: &[u8]) -> (u8, f64) {
    assert_eq!(a.len(), b.len());
    let mut max = 0u8;
    let mut sum = 0u64;
    for (&x, &y) in a.iter().zip(b) {
        let d = x.abs_diff(y);
        max = max.max(d);
        sum += u64::from(d);
    }
    (max, sum as f64 / a.len().max(1) as f64)
}
