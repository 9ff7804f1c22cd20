//! Parity with torchvision: the Python oracle (tests/oracle.py, run with the
//! project venv's python, env `BRIGADE_PYTHON`) builds each architecture with
//! seeded random weights and randomised BatchNorm statistics, saves
//! `torch.save(model.state_dict())` and a safetensors copy, and the logits of
//! a fixed input in eval and train mode. We load both files and must match to
//! 1e-4 max abs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use brigade_zoo::{Arch, HeadKind, LoadOptions, Model, ModelOptions, ZooError};
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Tensor};

fn python() -> String {
    std::env::var("BRIGADE_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

fn oracle(args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracle.py");
    let out = Command::new(python()).arg(&script).args(args).output().unwrap_or_else(|e| {
        panic!("cannot run the oracle python {:?} ({e}); run the tests through scripts/with-env.sh", python())
    });
    assert!(
        out.status.success(),
        "oracle {args:?} failed (is torch/torchvision installed for {:?}? run through scripts/with-env.sh):\n{}",
        python(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The classes each architecture's oracle model gets (varied on purpose).
const CLASSES: [(Arch, i64); 7] = [
    (Arch::Resnet18, 10),
    (Arch::Resnet34, 7),
    (Arch::Resnet50, 101),
    (Arch::Resnet50d, 5),
    (Arch::EfficientnetB0, 10),
    (Arch::EfficientnetB2, 3),
    (Arch::MobilenetV3Large, 10),
];

/// Runs the oracle once per test binary (one torch import for every test):
/// a fixed folder under the target's tmp dir, wiped first.
fn oracle_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("zoo-oracle");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut args = vec!["all".to_string(), dir.to_str().unwrap().to_string()];
        args.extend(CLASSES.iter().map(|(a, c)| format!("{a}:{c}")));
        oracle(&args.iter().map(String::as_str).collect::<Vec<_>>());
        dir
    })
}

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

fn io_tensors(dir: &Path) -> (Tensor, Tensor, Tensor) {
    let (t, _) = brigade_zoo::weights::read_safetensors(&dir.join("io.safetensors")).unwrap();
    let get = |n: &str| {
        t.iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.shallow_clone())
            .unwrap()
    };
    (get("input"), get("eval"), get("train"))
}

fn check_arch(arch: Arch) {
    let classes = CLASSES.iter().find(|(a, _)| *a == arch).unwrap().1;
    let dir = oracle_dir().join(arch.name());
    let (x, want_eval, want_train) = io_tensors(&dir);
    let scale = want_eval.abs().max().double_value(&[]);
    assert!(
        scale > 1e-3,
        "{arch}: oracle logits are degenerate (max |y| = {scale})"
    );
    let mut files = vec!["model.pth", "model.safetensors"];
    if matches!(arch, Arch::EfficientnetB0 | Arch::EfficientnetB2) {
        files.push("model_timm.safetensors");
    }
    for file in files {
        let vs = VarStore::new(Device::Cpu);
        let opts = ModelOptions {
            dropout: Some(0.0),
            drop_path: Some(0.0),
        };
        let model = Model::with_options(&vs.root(), arch, classes, HeadKind::Linear, opts).unwrap();
        let report = model.load_weights(&vs, &dir.join(file)).unwrap();
        assert!(report.is_clean(), "{arch} {file}: {}", report.summary());
        assert!(
            report.head_replaced.is_empty(),
            "{arch} {file}: {}",
            report.summary()
        );
        assert_eq!(
            report.loaded.len(),
            vs.variables().len(),
            "{arch} {file}: {}",
            report.summary()
        );
        assert!(report.skipped_num_batches_tracked > 0);
        assert_eq!(
            report.renamed.is_empty(),
            !file.contains("timm"),
            "{arch} {file}"
        );
        let y_eval = tch::no_grad(|| model.forward_t(&x, false));
        let d_eval = max_abs(&y_eval, &want_eval);
        assert!(
            d_eval < 1e-4,
            "{arch} {file}: eval logits differ by {d_eval} (scale {scale})"
        );
        let y_train = tch::no_grad(|| model.forward_t(&x, true));
        let d_train = max_abs(&y_train, &want_train);
        assert!(
            d_train < 1e-4,
            "{arch} {file}: train-mode logits differ by {d_train}"
        );
        // The train-mode output really differs from eval (batch statistics used).
        assert!(
            max_abs(&y_train, &y_eval) > 1e-3,
            "{arch}: train and eval outputs are identical"
        );
    }
}

#[test]
fn parity_resnet18() {
    check_arch(Arch::Resnet18);
}

#[test]
fn parity_resnet34() {
    check_arch(Arch::Resnet34);
}

#[test]
fn parity_resnet50() {
    check_arch(Arch::Resnet50);
}

#[test]
fn parity_resnet50d() {
    check_arch(Arch::Resnet50d);
}

#[test]
fn parity_efficientnet_b0() {
    check_arch(Arch::EfficientnetB0);
}

#[test]
fn parity_efficientnet_b2() {
    check_arch(Arch::EfficientnetB2);
}

#[test]
fn parity_mobilenet_v3_large() {
    check_arch(Arch::MobilenetV3Large);
}

#[test]
fn parameter_counts_match_torchvision() {
    let out = std::fs::read_to_string(oracle_dir().join("params.txt")).unwrap();
    for line in out.lines() {
        let mut it = line.split_whitespace();
        let (Some(name), Some(count)) = (it.next(), it.next()) else {
            continue;
        };
        let arch: Arch = name.parse().unwrap();
        let count: i64 = count.parse().unwrap();
        let vs = VarStore::new(Device::Cpu);
        let model = Model::new(&vs.root(), arch, 1000, HeadKind::Linear).unwrap();
        assert_eq!(model.num_parameters(&vs), count, "{arch}: parameter count");
        assert_eq!(
            arch.info().num_params as i64,
            count,
            "{arch}: documented parameter count"
        );
    }
    assert_eq!(out.lines().count(), Arch::ALL.len());
}

struct BadFiles {
    root: PathBuf,
}

fn bad_files() -> BadFiles {
    BadFiles {
        root: oracle_dir().join("bad"),
    }
}

fn r18(classes: i64, head: HeadKind) -> (VarStore, Model) {
    let vs = VarStore::new(Device::Cpu);
    let m = Model::new(&vs.root(), Arch::Resnet18, classes, head).unwrap();
    (vs, m)
}

#[test]
fn bad_and_odd_files() {
    let b = bad_files();
    let f = |n: &str| b.root.join(n);

    // A pickle calling os.system is refused, naming the global.
    let (vs, m) = r18(1000, HeadKind::Linear);
    match m.load_weights(&vs, &f("forbidden.pth")) {
        Err(ZooError::ForbiddenGlobal { module, name, .. }) => {
            assert!(module == "posix" || module == "os", "{module}");
            assert_eq!(name, "system");
        }
        other => panic!("expected ForbiddenGlobal, got {other:?}"),
    }

    // Legacy non-zip format: loads, and reads exactly like the zip copy.
    let r = m.load_weights(&vs, &f("legacy.pth")).unwrap();
    assert!(r.is_clean(), "{}", r.summary());
    assert_eq!(r.loaded.len(), vs.variables().len());
    let legacy = brigade_zoo::read_state_dict(&f("legacy.pth")).unwrap();
    let zip = brigade_zoo::read_state_dict(&f("resnet18_1000.pth")).unwrap();
    assert_eq!(legacy.len(), zip.len());
    for ((k1, a), (k2, b)) in legacy.iter().zip(&zip) {
        assert_eq!(k1, k2);
        assert!(
            a.kind() == b.kind() && a.equal(b),
            "legacy.pth: {k1} differs"
        );
    }

    // Truncated zip.
    let full = std::fs::read(f("resnet18_1000.pth")).unwrap();
    std::fs::write(f("truncated.pth"), &full[..full.len() / 2]).unwrap();
    let e = m.load_weights(&vs, &f("truncated.pth")).unwrap_err();
    assert!(matches!(e, ZooError::BadFile { .. }), "{e}");
    assert!(e.to_string().contains("truncated.pth"), "{e}");

    // A text file, an empty file, a missing file.
    std::fs::write(f("notes.txt"), "these are not weights\n").unwrap();
    let e = m.load_weights(&vs, &f("notes.txt")).unwrap_err();
    assert!(
        matches!(&e, ZooError::BadFile { problem, .. } if problem.contains("not a weights file")),
        "{e}"
    );
    std::fs::write(f("empty.pth"), "").unwrap();
    assert!(matches!(
        m.load_weights(&vs, &f("empty.pth")),
        Err(ZooError::BadFile { .. })
    ));
    assert!(matches!(
        m.load_weights(&vs, &f("missing.pth")),
        Err(ZooError::Io { .. })
    ));

    // Wrong shapes: named in the error, nothing copied.
    let before = vs.variables()["layer1.0.conv1.weight"].copy();
    let e = m.load_weights(&vs, &f("wrong_shape.pth")).unwrap_err();
    assert!(matches!(e, ZooError::Mismatch { .. }), "{e}");
    assert!(e.to_string().contains("layer1.0.conv1.weight"), "{e}");
    assert_eq!(
        max_abs(&before, &vs.variables()["layer1.0.conv1.weight"]),
        0.0
    );
    // Non-strict: loads the rest and reports the key.
    let r = m
        .load_weights_with(&vs, &f("wrong_shape.pth"), LoadOptions { strict: false })
        .unwrap();
    assert_eq!(r.mismatched.len(), 1);
    assert_eq!(r.mismatched[0].0, "layer1.0.conv1.weight");

    // Wrong architecture: a resnet18 file into resnet50 / efficientnet.
    for arch in [Arch::Resnet50, Arch::EfficientnetB0] {
        let vs = VarStore::new(Device::Cpu);
        let m = Model::new(&vs.root(), arch, 1000, HeadKind::Linear).unwrap();
        let e = m.load_weights(&vs, &f("resnet18_1000.pth")).unwrap_err();
        assert!(matches!(e, ZooError::Mismatch { .. }), "{arch}: {e}");
    }
}

#[test]
fn head_replacement_nested_checkpoints_and_fastai_head() {
    let b = bad_files();
    let src = b.root.join("resnet18_1000.pth");
    let sd = brigade_zoo::read_state_dict(&src).unwrap();
    let want_conv = sd
        .iter()
        .find(|(k, _)| k == "conv1.weight")
        .unwrap()
        .1
        .shallow_clone();

    // 1000-class file into a 10-class model: fc re-initialised and reported.
    let (vs, m) = r18(10, HeadKind::Linear);
    let r = m.load_weights(&vs, &src).unwrap();
    assert_eq!(
        r.head_replaced,
        vec!["fc.bias".to_string(), "fc.weight".to_string()]
    );
    assert!(r.is_clean(), "{}", r.summary());
    assert_eq!(max_abs(&vs.variables()["conv1.weight"], &want_conv), 0.0);

    // fastai head: body loads, head.* new, the file's fc is not "unexpected".
    let (vs, m) = r18(10, HeadKind::Fastai { bn_final: true });
    let r = m.load_weights(&vs, &src).unwrap();
    assert!(r.is_clean(), "{}", r.summary());
    assert!(r.head_replaced.iter().all(|k| k.starts_with("head.")));
    assert!(r.head_replaced.contains(&"head.9.running_var".to_string()));
    let y = m.forward_t(&Tensor::randn([3, 3, 64, 64], tch::kind::FLOAT_CPU), true);
    assert_eq!(y.size(), vec![3, 10]);

    // Nested {"state_dict": ...} with a non-contiguous view and shared storage.
    let nested = brigade_zoo::read_state_dict(&b.root.join("nested.pth")).unwrap();
    let get = |n: &str| {
        nested
            .iter()
            .find(|(k, _)| k == n)
            .unwrap()
            .1
            .shallow_clone()
    };
    let want_fc = sd
        .iter()
        .find(|(k, _)| k == "fc.weight")
        .unwrap()
        .1
        .shallow_clone();
    assert_eq!(max_abs(&get("fc.weight"), &want_fc), 0.0);
    let base = Tensor::arange(128, tch::kind::FLOAT_CPU);
    assert_eq!(max_abs(&get("bn1.weight"), &base.narrow(0, 0, 64)), 0.0);
    assert_eq!(max_abs(&get("bn1.bias"), &base.narrow(0, 64, 64)), 0.0);
    // Python's safetensors of the same tensor agrees.
    let (st, _) =
        brigade_zoo::weights::read_safetensors(&b.root.join("fc_only.safetensors")).unwrap();
    assert_eq!(max_abs(&st[0].1, &want_fc), 0.0);
}
