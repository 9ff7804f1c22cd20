//! End-to-end tests of `brigade synth`, `brigade index` and `brigade fetch`
//! through the built binary.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
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

fn synth(out: &Path, classes: u32, per: u32, test: u32) {
    let s = |n: u32| n.to_string();
    ok(&brigade(&[
        "synth",
        out.to_str().unwrap(),
        "--classes",
        &s(classes),
        "--per-class",
        &s(per),
        "--test-per-class",
        &s(test),
        "--seed",
        "3",
        "--max-side",
        "64",
    ]));
}

#[test]
fn synth_then_index_json() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("synth");
    synth(&data, 3, 8, 2);
    let file = dir.path().join("synth.index");
    let out = ok(&brigade(&[
        "index",
        data.to_str().unwrap(),
        "--valid-pct",
        "0.25",
        "--seed",
        "9",
        "--out",
        file.to_str().unwrap(),
        "--json",
    ]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["layout"], "food101");
    assert_eq!(v["classes"], 3);
    assert_eq!(v["splits"]["train"], 18);
    assert_eq!(v["splits"]["valid"], 6);
    assert_eq!(v["splits"]["test"], 6);
    assert_eq!(v["per_class"]["valid"], serde_json::json!([2, 2, 2]));
    assert_eq!(v["total"], 30);
    assert_eq!(v["errors"], 0);
    assert_eq!(v["problems"], serde_json::json!([]));
    let index = brigade_index::Index::load(&file).unwrap();
    assert_eq!(index.samples.len(), 30);
    assert_eq!(v["fingerprint"], format!("{:016x}", index.fingerprint()));
}

#[test]
fn index_reports_problems_in_text_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("synth");
    synth(&data, 2, 3, 1);
    fs::write(data.join("images/synth_000/000000.jpg"), b"").unwrap();
    fs::write(data.join("images/synth_001/stray.jpg"), b"not listed").unwrap();
    let text = ok(&brigade(&["index", data.to_str().unwrap()]));
    assert!(text.contains("layout:   food101"), "{text}");
    assert!(
        text.contains("images/synth_000/000000.jpg: empty file"),
        "{text}"
    );
    assert!(
        text.contains("images/synth_001/stray.jpg: present but not listed"),
        "{text}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&ok(&brigade(&["index", data.to_str().unwrap(), "--json"]))).unwrap();
    let kinds: Vec<&str> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["empty", "unlisted"]);
    assert_eq!(v["total"], 7);

    let missing = brigade(&["index", dir.path().join("nope").to_str().unwrap()]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nope"));
}

/// Serves `body` for every request, `conns` times.
fn serve(body: Vec<u8>, conns: usize) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/food-101.tar.gz", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for s in l.incoming().take(conns) {
            let Ok(mut s) = s else { continue };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            while r.read_line(&mut line).map(|n| n > 2).unwrap_or(false) {
                line.clear();
            }
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(&body);
        }
    });
    url
}

/// A small Food-101-shaped archive and a manifest describing it.
fn archive_and_manifest(
    dir: &Path,
    sha256_override: Option<&str>,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let src = dir.join("src");
    fs::create_dir_all(&src).unwrap();
    synth(&src.join("food-101"), 3, 4, 2);
    let archive = dir.join("food-101.tar.gz");
    let st = Command::new("tar")
        .arg("czf")
        .arg(&archive)
        .arg("-C")
        .arg(&src)
        .arg("food-101")
        .status()
        .expect("tar is needed to build the test archive");
    assert!(st.success());
    let d = brigade_fetch::digest_file(&archive).unwrap();
    let manifest = dir.join("tiny.toml");
    let sha = sha256_override.unwrap_or(&d.sha256);
    fs::write(
        &manifest,
        format!(
            r#"name = "tiny-food"
format_version = 1
[source]
url = "http://127.0.0.1:9/unused.tar.gz"
md5 = "{}"
sha256 = "{sha}"
archive_name = "food-101.tar.gz"
top_folder = "food-101"
[dataset]
layout = "food101"
classes = 3
train_per_class = 4
test_per_class = 2
total_images = 18
max_side = 64
"#,
            d.md5
        ),
    )
    .unwrap();
    (archive, manifest)
}

#[test]
fn fetch_downloads_verifies_extracts_and_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let (archive, manifest) = archive_and_manifest(dir.path(), None);
    let url = serve(fs::read(&archive).unwrap(), 2);
    let dest = dir.path().join("data");
    let out = ok(&brigade(&[
        "fetch",
        "food101",
        "--dest",
        dest.to_str().unwrap(),
        "--url",
        &url,
        "--manifest",
        manifest.to_str().unwrap(),
        "--quiet",
    ]));
    assert!(
        out.contains("verified against the tiny-food manifest"),
        "{out}"
    );
    assert!(dest.join("food-101/.complete").is_file());
    assert!(dest.join("food-101/meta/classes.txt").is_file());
    assert!(dest.join("food-101.tar.gz").is_file());
    let index = brigade_index::Index::load(&dest.join("food-101.index")).unwrap();
    assert_eq!(index.samples.len(), 18);
    // A second run re-indexes without downloading (the server is gone by now);
    // its step notes go to stderr, the result to stdout.
    let again = brigade(&[
        "fetch",
        "food101",
        "--dest",
        dest.to_str().unwrap(),
        "--manifest",
        manifest.to_str().unwrap(),
    ]);
    let stdout = ok(&again);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("already extracted"), "{stderr}");
    assert!(
        stdout.contains("verified against the tiny-food manifest"),
        "{stdout}"
    );
}

#[test]
fn fetch_with_archive_checks_the_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let wrong = "0".repeat(64);
    let (archive, manifest) = archive_and_manifest(dir.path(), Some(&wrong));
    let dest = dir.path().join("data");
    let out = brigade(&[
        "fetch",
        "food101",
        "--dest",
        dest.to_str().unwrap(),
        "--archive",
        archive.to_str().unwrap(),
        "--manifest",
        manifest.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("sha256 mismatch") && err.contains(&wrong),
        "{err}"
    );
    assert!(!dest.join("food-101").exists());
}

#[test]
fn fetch_offline_explains_where_to_put_the_archive() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("data");
    let out = brigade(&[
        "fetch",
        "food101",
        "--dest",
        dest.to_str().unwrap(),
        "--url",
        &format!("http://127.0.0.1:{port}/food-101.tar.gz"),
        "--quiet",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--archive PATH"), "{err}");
    assert!(err.contains("food-101.tar.gz"), "{err}");
}
