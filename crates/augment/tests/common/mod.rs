//! Shared helpers: test images and the Python oracle.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// A deterministic test image: smooth gradients, edges and some noise.
pub fn test_image(w: u32, h: u32, salt: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity((w * h * 3) as usize);
    let mut s = 0x9E37_79B9u32 ^ salt.wrapping_mul(0x85EB_CA6B);
    for y in 0..h {
        for x in 0..w {
            for c in 0..3u32 {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                let fx = x as f32 / w as f32;
                let fy = y as f32 / h as f32;
                let base = 128.0
                    + 90.0 * ((fx * (3.0 + c as f32) + fy * 2.0) * std::f32::consts::PI).sin()
                    + if (x / 9 + y / 7 + c) % 2 == 0 {
                        20.0
                    } else {
                        -20.0
                    };
                let noise = (s % 17) as f32 - 8.0;
                v.push((base + noise).clamp(0.0, 255.0) as u8);
            }
        }
    }
    v
}

pub fn python() -> String {
    std::env::var("BRIGADE_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oracle/oracle.py")
}

/// Runs one oracle job (`args`, a JSON object) on `img`.
pub fn oracle(args: serde_json::Value, img: &[u8]) -> Vec<u8> {
    oracle_many(vec![(args, img.to_vec())]).remove(0)
}

/// Runs many oracle jobs in one Python process.
pub fn oracle_many(jobs: Vec<(serde_json::Value, Vec<u8>)>) -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let mut args = Vec::new();
    for (k, (a, img)) in jobs.iter().enumerate() {
        std::fs::write(dir.path().join(format!("in{k}.bin")), img).unwrap();
        args.push(a.clone());
    }
    std::fs::write(
        dir.path().join("args.json"),
        serde_json::Value::Array(args).to_string(),
    )
    .unwrap();
    let out = Command::new(python())
        .arg(script())
        .arg(dir.path())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run the oracle python `{}`: {e} (run through scripts/with-env.sh)",
                python()
            )
        });
    assert!(
        out.status.success(),
        "oracle failed (is torch/torchvision installed for `{}`? run through scripts/with-env.sh):\n{}",
        python(),
        String::from_utf8_lossy(&out.stderr)
    );
    (0..jobs.len())
        .map(|k| std::fs::read(dir.path().join(format!("out{k}.bin"))).unwrap())
        .collect()
}

/// (mean abs diff, max abs diff) of two byte buffers of equal length.
pub fn diff(a: &[u8], b: &[u8]) -> (f64, u8) {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let mut sum = 0u64;
    let mut max = 0u8;
    for (&x, &y) in a.iter().zip(b) {
        let d = x.abs_diff(y);
        sum += u64::from(d);
        max = max.max(d);
    }
    (sum as f64 / a.len().max(1) as f64, max)
}
