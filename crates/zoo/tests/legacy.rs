//! The legacy (pre-1.6, non-zip) `torch.save` format: files written by the
//! Python oracle (`tests/oracle.py legacy`, run with the project venv's
//! python, env `BRIGADE_PYTHON`) with `_use_new_zipfile_serialization=False`
//! must read exactly like the zip copies (and the safetensors copies torch
//! wrote), load into a `Model` with the same forward output, and damaged
//! copies must be errors naming the file and the problem.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use brigade_zoo::weights::{self, Format};
use brigade_zoo::{Arch, HeadKind, Model, StateDict, ZooError};
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Kind, Tensor};

fn python() -> String {
    std::env::var("BRIGADE_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// Runs `oracle.py legacy` once per test binary into a fixed folder under
/// the target's tmp dir (wiped first).
fn dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("zoo-legacy");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracle.py");
        let out = Command::new(python())
            .arg(&script)
            .arg("legacy")
            .arg(&dir)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run the oracle python {:?} ({e}); run the tests through scripts/with-env.sh",
                    python()
                )
            });
        assert!(
            out.status.success(),
            "oracle legacy failed (is torch/torchvision installed for {:?}? run through scripts/with-env.sh):\n{}",
            python(),
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

fn f(name: &str) -> PathBuf {
    dir().join(name)
}

fn get<'a>(sd: &'a StateDict, name: &str) -> &'a Tensor {
    &sd.iter()
        .find(|(k, _)| k == name)
        .unwrap_or_else(|| panic!("no tensor {name}"))
        .1
}

/// Same names in the same order, and every tensor of the same kind, shape
/// and values (bit-exact: `torch.equal`).
fn assert_same(got: &StateDict, want: &StateDict, what: &str) {
    let names = |sd: &StateDict| sd.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    assert_eq!(names(got), names(want), "{what}: names");
    for ((k, a), (_, b)) in got.iter().zip(want) {
        assert_eq!(a.kind(), b.kind(), "{what}: {k} kind");
        assert_eq!(a.size(), b.size(), "{what}: {k} shape");
        assert!(a.equal(b), "{what}: {k} values differ:\n{a}\n{b}");
    }
}

#[test]
fn formats_are_detected() {
    assert_eq!(
        weights::detect_format(&f("dtypes_legacy.pth")).unwrap(),
        Format::TorchLegacy
    );
    assert_eq!(
        weights::detect_format(&f("dtypes_legacy_p4.pth")).unwrap(),
        Format::TorchLegacy
    );
    assert_eq!(
        weights::detect_format(&f("dtypes_zip.pth")).unwrap(),
        Format::TorchZip
    );
    assert_eq!(
        weights::detect_format(&f("dtypes.safetensors")).unwrap(),
        Format::Safetensors
    );
    // A (fake) tar archive: the PyTorch 0.1 format, refused by name.
    let mut tar = vec![0u8; 1024];
    tar[..5].copy_from_slice(b"pickl");
    tar[257..263].copy_from_slice(b"ustar\0");
    std::fs::write(f("old.tar.pth"), &tar).unwrap();
    let e = weights::detect_format(&f("old.tar.pth")).unwrap_err();
    assert!(
        matches!(&e, ZooError::BadFile { problem, .. } if problem.contains("tar")),
        "{e}"
    );
    assert!(e.to_string().contains("old.tar.pth"), "{e}");
}

#[test]
fn every_dtype_and_layout_reads_like_the_zip_and_safetensors_copies() {
    let zip = weights::read_state_dict(&f("dtypes_zip.pth")).unwrap();
    // Torch's own contiguous copies (names sorted, so compare by name).
    let (st, _) = weights::read_safetensors(&f("dtypes.safetensors")).unwrap();
    assert_eq!(st.len(), zip.len());
    for (k, want) in &st {
        let got = get(&zip, k);
        assert_eq!(got.kind(), want.kind(), "zip {k}");
        assert!(got.equal(want), "zip {k} differs from safetensors");
    }
    for file in ["dtypes_legacy.pth", "dtypes_legacy_p4.pth"] {
        let sd = weights::read_state_dict(&f(file)).unwrap();
        assert_same(&sd, &zip, file);
        for (k, want) in &st {
            assert!(
                get(&sd, k).equal(want),
                "{file}: {k} differs from safetensors"
            );
        }
        // The cases this file is about are really there.
        let kind = |k: &str| get(&sd, k).kind();
        assert_eq!(kind("f16"), Kind::Half);
        assert_eq!(kind("bf16"), Kind::BFloat16);
        assert_eq!(kind("f64"), Kind::Double);
        assert_eq!(kind("bool"), Kind::Bool);
        assert_eq!(kind("u8"), Kind::Uint8);
        let nbt = get(&sd, "bn.num_batches_tracked");
        assert_eq!((nbt.kind(), nbt.dim()), (Kind::Int64, 0));
        assert_eq!(nbt.int64_value(&[]), 7);
        assert_eq!(get(&sd, "scalar").double_value(&[]), 2.5);
        assert_eq!(get(&sd, "empty").size(), [0, 3]);
        assert_eq!(get(&sd, "transposed").size(), [5, 6]);
        assert_eq!(get(&sd, "stepped").size(), [3, 3]);
        // base = arange(40) * 0.5: shared_b starts at element 16, shared_c
        // is rows 1..4, columns 2..7 of base.view(5, 8).
        let base = Tensor::arange(40, (Kind::Float, Device::Cpu)) * 0.5;
        assert!(get(&sd, "shared_a").equal(&base.narrow(0, 0, 16)));
        assert!(get(&sd, "shared_b").equal(&base.narrow(0, 16, 24)));
        let c = base.view([5, 8]).narrow(0, 1, 3).narrow(1, 2, 5);
        assert!(get(&sd, "shared_c").equal(&c));
    }
}

#[test]
fn nested_checkpoint_skips_the_other_storages() {
    let zip = weights::read_state_dict(&f("dtypes_zip.pth")).unwrap();
    let sd = weights::read_state_dict(&f("checkpoint_legacy.pth")).unwrap();
    assert_same(&sd, &zip, "checkpoint_legacy.pth");
}

#[test]
fn forbidden_global_in_a_legacy_file_is_refused() {
    match weights::read_state_dict(&f("args_legacy.pth")) {
        Err(ZooError::ForbiddenGlobal {
            path, module, name, ..
        }) => {
            assert_eq!(path, f("args_legacy.pth"));
            assert_eq!((module.as_str(), name.as_str()), ("argparse", "Namespace"));
        }
        other => panic!("expected ForbiddenGlobal, got {other:?}"),
    }
}

#[test]
fn legacy_mobilenet_loads_like_the_zip_copy() {
    let (io, _) = weights::read_safetensors(&f("mnv3_io.safetensors")).unwrap();
    let (x, want) = (get(&io, "input"), get(&io, "eval"));
    let mut outputs = Vec::new();
    for file in ["mnv3_legacy.pth", "mnv3_zip.pth"] {
        let vs = VarStore::new(Device::Cpu);
        let m = Model::new(&vs.root(), Arch::MobilenetV3Large, 1000, HeadKind::Linear).unwrap();
        let report = m.load_weights(&vs, &f(file)).unwrap();
        assert!(report.is_clean(), "{file}: {}", report.summary());
        assert!(
            report.head_replaced.is_empty(),
            "{file}: {}",
            report.summary()
        );
        assert_eq!(report.loaded.len(), vs.variables().len(), "{file}");
        assert!(report.skipped_num_batches_tracked > 0, "{file}");
        let y = tch::no_grad(|| m.forward_t(x, false));
        let d = (&y - want).abs().max().double_value(&[]);
        assert!(d < 1e-4, "{file}: eval logits differ from torch's by {d}");
        outputs.push(y);
    }
    assert!(
        outputs[0].equal(&outputs[1]),
        "legacy and zip outputs differ"
    );
    assert_same(
        &weights::read_state_dict(&f("mnv3_legacy.pth")).unwrap(),
        &weights::read_state_dict(&f("mnv3_zip.pth")).unwrap(),
        "mnv3",
    );
}

/// Byte offsets of mnv3_legacy.pth from the oracle: the ends of its five
/// pickles (by pickletools) and its length.
fn layout() -> (Vec<usize>, usize) {
    let text = std::fs::read_to_string(f("mnv3_layout.txt")).unwrap();
    let mut ends = Vec::new();
    let mut len = 0;
    for line in text.lines() {
        let (k, v) = line.split_once(' ').unwrap();
        let v: usize = v.parse().unwrap();
        match k {
            "pickle_end" => ends.push(v),
            "len" => len = v,
            other => panic!("bad layout line {other}"),
        }
    }
    assert_eq!(ends.len(), 5);
    (ends, len)
}

/// Writes `bytes` as `name`, reads it, and returns the problem of the
/// `BadFile` error (which must name the file); loading it into a model is the
/// same error.
fn damaged(name: &str, bytes: &[u8]) -> String {
    let path = f(name);
    std::fs::write(&path, bytes).unwrap();
    let e = match weights::read_state_dict(&path) {
        Err(e) => e,
        Ok(sd) => panic!("{name}: read {} tensors from a damaged file", sd.len()),
    };
    assert!(
        e.to_string().contains(name),
        "{name}: error does not name the file: {e}"
    );
    let ZooError::BadFile { path: p, problem } = e else {
        panic!("{name}: expected BadFile, got {e:?}");
    };
    assert_eq!(p, path);
    let vs = VarStore::new(Device::Cpu);
    let m = Model::new(&vs.root(), Arch::MobilenetV3Large, 1000, HeadKind::Linear).unwrap();
    match m.load_weights(&vs, &path) {
        Err(ZooError::BadFile { problem: p2, .. }) => assert_eq!(p2, problem),
        other => panic!("{name}: load_weights gave {other:?}"),
    }
    problem
}

#[test]
fn damaged_legacy_files_are_errors_naming_the_problem() {
    let full = std::fs::read(f("mnv3_legacy.pth")).unwrap();
    let (ends, len) = layout();
    assert_eq!(full.len(), len);
    let data = ends[4];
    let has = |p: &str, words: &[&str]| {
        for w in words {
            assert!(p.contains(w), "{w:?} not in {p:?}");
        }
    };

    // Cut in the middle of the storage data.
    let p = damaged("cut_data.pth", &full[..(data + len) / 2]);
    has(
        &p,
        &[
            "truncated",
            "storage",
            &format!("only {} bytes", (data + len) / 2),
        ],
    );
    // Cut right after the pickles: the first storage's count is missing.
    let p = damaged("cut_at_data.pth", &full[..data]);
    has(
        &p,
        &["truncated", "storage", "1 of", "8-byte element count"],
    );
    // Cut inside each pickle.
    let p = damaged("cut_magic.pth", &full[..10]);
    has(&p, &["truncated", "magic-number pickle"]);
    let p = damaged("cut_sysinfo.pth", &full[..(ends[1] + ends[2]) / 2]);
    has(&p, &["truncated", "system-info pickle"]);
    let p = damaged("cut_object.pth", &full[..(ends[2] + ends[3]) / 2]);
    has(&p, &["truncated", "pickle of the saved object"]);
    let p = damaged("cut_list.pth", &full[..ends[4] - 3]);
    has(&p, &["truncated", "storage-list pickle"]);

    // The first storage's element count patched: past the end of the file,
    // negative, and one more than the pickle says.
    let count = i64::from_le_bytes(full[data..data + 8].try_into().unwrap());
    assert!(count > 0);
    let patched = |c: i64| {
        let mut b = full.clone();
        b[data..data + 8].copy_from_slice(&c.to_le_bytes());
        b
    };
    let p = damaged("huge_count.pth", &patched(1 << 40));
    has(
        &p,
        &["truncated or damaged", "1099511627776 elements", "1 of"],
    );
    let p = damaged("negative_count.pth", &patched(-5));
    has(&p, &["damaged", "impossible element count -5"]);
    let p = damaged("wrong_count.pth", &patched(count + 1));
    has(
        &p,
        &[&format!(
            "holds {} elements, the pickle says {count}",
            count + 1
        )],
    );

    // A wrong magic number, a wrong protocol version (BININT2 at bytes 18..20).
    let mut b = full.clone();
    b[9] ^= 0xff;
    let p = damaged("bad_magic.pth", &b);
    has(&p, &["not torch's magic number"]);
    let mut b = full.clone();
    assert_eq!(&b[17..20], b"M\xe9\x03");
    b[18] = 0xea;
    let p = damaged("bad_version.pth", &b);
    has(&p, &["unsupported legacy protocol version", "1002"]);
}
