//! `brigade predict` on raw weights files exactly as torchvision and timm
//! users have them (`torch.save(model.state_dict())` `.pth`, `.safetensors`)
//! and a real photo (the JPEG that ships inside scikit-learn's wheel), against
//! torchvision itself: the same weights through `Resize(256)` →
//! `CenterCrop(224)` → `ToTensor` → `Normalize` in PyTorch (the oracle: the
//! project venv's python, env `BRIGADE_PYTHON`).

use brigade_train::cli::predict;
use std::path::Path;
use std::process::Command;

const ORACLE: &str = r#"
import json, os, sys
import torch, torchvision
import torchvision.transforms as T
from PIL import Image
from safetensors.torch import save_file
import sklearn.datasets
out = sys.argv[1]
photo = os.path.join(os.path.dirname(sklearn.datasets.__file__), "images", "china.jpg")
torch.manual_seed(3)
m = torchvision.models.resnet18(weights=None, num_classes=3)
with torch.no_grad():
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 1.5)
            mod.weight.uniform_(0.5, 1.5)
            mod.bias.uniform_(-0.2, 0.2)
    m.fc.weight.mul_(0.1)  # distinct, unsaturated probabilities (about 0.51 / 0.26 / 0.23)
m.eval()
torch.save(m.state_dict(), os.path.join(out, "resnet18-3cls.pth"))
save_file({k: v.contiguous() for k, v in m.state_dict().items()}, os.path.join(out, "model.safetensors"))
tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(),
                T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
x = tf(Image.open(photo).convert("RGB")).unsqueeze(0)
with torch.no_grad():
    p = torch.softmax(m(x), -1)[0].tolist()
print(json.dumps({"photo": photo, "probs": p}))
"#;

/// Runs a Python oracle script (the project venv's python, env
/// `BRIGADE_PYTHON`) with `args`; returns its stdout, failing the test with
/// its stderr when it fails.
fn run_oracle(script: &str, args: &[&str]) -> Vec<u8> {
    let py = std::env::var("BRIGADE_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(&py)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {py} ({e}): run through scripts/with-env.sh"));
    assert!(
        out.status.success(),
        "oracle failed (its packages come with scripts/setup.sh):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn raw_torchvision_and_safetensors_weights_predict_like_torchvision() {
    let d = tempfile::tempdir().unwrap();
    let stdout = run_oracle(ORACLE, &[d.path().to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&stdout).unwrap();
    let photo = Path::new(v["photo"].as_str().unwrap()).to_path_buf();
    let want: Vec<f64> = v["probs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_f64().unwrap())
        .collect();
    let classes = d.path().join("classes.txt");
    std::fs::write(&classes, "apple_pie\nbibimbap\ncaesar_salad\n").unwrap();
    for file in ["resnet18-3cls.pth", "model.safetensors"] {
        let preds = predict::predict(&predict::Args {
            weights: d.path().join(file),
            images: vec![photo.clone()],
            json: true,
            arch: Some("resnet18".into()),
            num_classes: Some(3),
            classes: Some(classes.clone()),
            size: None,
            top: 5,
            device: brigade_train::config::DeviceChoice::Cpu,
        })
        .unwrap_or_else(|e| panic!("{file}: {e:#}"));
        assert_eq!(preds.len(), 1);
        let top = &preds[0].top;
        assert_eq!(top.len(), 3, "top-5 clamped to the 3 classes");
        for g in top {
            let w = want[g.class as usize];
            assert!(
                (g.prob - w).abs() < 0.01,
                "{file}: class {} prob {} vs torchvision {w} (all: {want:?})",
                g.class,
                g.prob
            );
        }
        let names = ["apple_pie", "bibimbap", "caesar_salad"];
        assert_eq!(top[0].label, names[top[0].class as usize]);
        let best = (0..3).max_by(|&a, &b| want[a].total_cmp(&want[b])).unwrap();
        if want[best]
            - want
                .iter()
                .filter(|&&p| p != want[best])
                .fold(0.0f64, |a, &b| a.max(b))
            > 0.05
        {
            assert_eq!(
                top[0].class as usize, best,
                "{file}: top-1 differs from torchvision"
            );
        }
    }
}

/// A folder among the images: every image file under it, sorted; a broken
/// one gets its error, the others are still classified.
#[test]
fn predict_takes_folders_and_reports_bad_images_one_by_one() {
    let d = tempfile::tempdir().unwrap();
    let stdout = run_oracle(ORACLE, &[d.path().to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&stdout).unwrap();
    let photo = Path::new(v["photo"].as_str().unwrap()).to_path_buf();
    let imgs = d.path().join("imgs");
    std::fs::create_dir_all(imgs.join("sub")).unwrap();
    std::fs::copy(&photo, imgs.join("b.jpg")).unwrap();
    std::fs::copy(&photo, imgs.join("sub/a.JPG")).unwrap();
    std::fs::write(imgs.join("broken.jpg"), b"<html>not found</html>").unwrap();
    std::fs::write(imgs.join("notes.txt"), b"not an image, not listed").unwrap();
    std::fs::write(imgs.join(".hidden.jpg"), b"skipped").unwrap();
    let predict_in = |folder: &Path| {
        predict::predict(&predict::Args {
            weights: d.path().join("resnet18-3cls.pth"),
            images: vec![folder.to_path_buf()],
            json: true,
            arch: Some("resnet18".into()),
            num_classes: Some(3),
            classes: None,
            size: None,
            top: 2,
            device: brigade_train::config::DeviceChoice::Cpu,
        })
    };
    let preds = predict_in(&imgs).unwrap();
    let names: Vec<String> = preds
        .iter()
        .map(|p| {
            Path::new(&p.image)
                .strip_prefix(&imgs)
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    assert_eq!(names, ["b.jpg", "broken.jpg", "sub/a.JPG"]);
    assert_eq!(preds[0].top.len(), 2);
    assert_eq!(preds[0].top, preds[2].top, "the same photo twice");
    assert!(preds[1].top.is_empty());
    let err = preds[1].error.as_deref().unwrap();
    assert!(err.contains("broken.jpg"), "{err}");
    assert!(preds[0].error.is_none() && preds[2].error.is_none());
    // an empty folder is an error, not an empty answer
    std::fs::create_dir_all(d.path().join("empty")).unwrap();
    let e = predict_in(&d.path().join("empty")).unwrap_err();
    assert!(format!("{e:#}").contains("no image files"), "{e:#}");
}

/// timm's own publishing code (`timm.models.save_for_hf`, what the Hugging
/// Face `timm/*` repos hold: `model.safetensors` and `pytorch_model.bin`, timm
/// key names) for the timm architectures the zoo reads, against timm's own
/// forward pass on the same photo and preprocessing.
const TIMM_ORACLE: &str = r#"
import json, os, sys
import torch, timm
import torchvision.transforms as T
from PIL import Image
import sklearn.datasets
out = sys.argv[1]
# A 256 x 256 PNG of the photo, so both sides see the same pixels: Resize(256)
# is then the identity and CenterCrop(224) an exact copy. Untrained networks
# are not smooth: last-bit pixel differences (JPEG decoders, resampler
# rounding; tested on their own elsewhere) move their probabilities by up to
# 0.1, which would hide what this test checks (weights and architecture).
photo = os.path.join(out, "china-256.png")
src = os.path.join(os.path.dirname(sklearn.datasets.__file__), "images", "china.jpg")
T.CenterCrop(256)(T.Resize(256)(Image.open(src).convert("RGB"))).save(photo)
tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(),
                T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
x = tf(Image.open(photo).convert("RGB")).unsqueeze(0)
images = os.path.join(os.path.dirname(sklearn.datasets.__file__), "images")
calib = [Image.open(os.path.join(images, f)).convert("RGB") for f in ("china.jpg", "flower.jpg")]
torch.manual_seed(11)
crops = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(),
                   T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
res = {"photo": photo, "models": {}}
for name in sys.argv[2:]:
    torch.manual_seed(7)
    m = timm.create_model(name, pretrained=False, num_classes=4)
    # Calibrate the BatchNorm statistics on crops of real photos, as training
    # would: eval-mode activations are then neither zero nor exploding.
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.momentum = None
            torch.nn.init.uniform_(mod.weight, 0.5, 1.5)
    m.train()
    with torch.no_grad():
        for _ in range(2):
            m(torch.stack([crops(calib[i % 2]) for i in range(8)]))
    m.eval()
    with torch.no_grad():
        logits = m(x)[0]
        head = m.get_classifier()
        s = 1.5 / float(logits.std())
        head.weight.mul_(s)
        head.bias.mul_(s)
        p = torch.softmax(m(x)[0], -1).tolist()
    timm.models.save_for_hf(m, os.path.join(out, name), safe_serialization="both")
    res["models"][name] = p
print(json.dumps(res))
"#;

#[test]
fn timm_published_weights_predict_like_timm() {
    let d = tempfile::tempdir().unwrap();
    // timm name -> brigade arch
    let archs = [
        ("resnet18", "resnet18"),
        ("resnet50d", "resnet50d"),
        ("efficientnet_b0", "efficientnet_b0"),
    ];
    let mut args = vec![d.path().to_str().unwrap()];
    args.extend(archs.iter().map(|a| a.0));
    let v: serde_json::Value = serde_json::from_slice(&run_oracle(TIMM_ORACLE, &args)).unwrap();
    let photo = Path::new(v["photo"].as_str().unwrap()).to_path_buf();
    for (timm_name, arch) in archs {
        let want: Vec<f64> = v["models"][timm_name]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_f64().unwrap())
            .collect();
        assert_eq!(want.len(), 4);
        // the oracle's probabilities are spread, so the comparison means something
        let max = want.iter().cloned().fold(0.0, f64::max);
        assert!(max < 0.97, "{timm_name}: saturated oracle {want:?}");
        // the bin with the flags; the safetensors without: architecture and
        // class count identified from its tensors
        for (file, given) in [("model.safetensors", false), ("pytorch_model.bin", true)] {
            let preds = predict::predict(&predict::Args {
                weights: d.path().join(timm_name).join(file),
                images: vec![photo.clone()],
                json: true,
                arch: given.then(|| arch.to_string()),
                num_classes: given.then_some(4),
                classes: None,
                size: None,
                top: 4,
                device: brigade_train::config::DeviceChoice::Cpu,
            })
            .unwrap_or_else(|e| panic!("{timm_name}/{file}: {e:#}"));
            let top = &preds[0].top;
            assert_eq!(top.len(), 4);
            for g in top {
                let w = want[g.class as usize];
                assert!(
                    (g.prob - w).abs() < 1e-3,
                    "{timm_name}/{file}: class {} prob {} vs timm {w} (all: {want:?})",
                    g.class,
                    g.prob
                );
            }
        }
    }
}

/// `decode_eval` (what `predict` and the in-memory eval split see) against
/// torchvision's `Resize(256)` + `CenterCrop(224)` on a 640 x 427 photo: the
/// size and crop-offset rounding must be torchvision's (a 384-wide resize
/// instead of 383 shifts every pixel by half a column).
#[test]
fn eval_preprocessing_matches_torchvision() {
    let d = tempfile::tempdir().unwrap();
    let script = r#"
import os, sys
import numpy as np
import torchvision.transforms as T
from PIL import Image
import sklearn.datasets
out = sys.argv[1]
src = os.path.join(os.path.dirname(sklearn.datasets.__file__), "images", "china.jpg")
img = Image.open(src).convert("RGB")
img.save(os.path.join(out, "china.png"))
want = np.asarray(T.CenterCrop(224)(T.Resize(256)(img)))
open(os.path.join(out, "want.rgb"), "wb").write(want.tobytes())
"#;
    run_oracle(script, &[d.path().to_str().unwrap()]);
    let want = std::fs::read(d.path().join("want.rgb")).unwrap();
    let got = brigade_train::pipeline::decode_eval(&d.path().join("china.png"), 224, 256.0 / 224.0)
        .unwrap();
    assert_eq!(got.len(), want.len());
    let diffs: Vec<i32> = got
        .iter()
        .zip(&want)
        .map(|(&a, &b)| (i32::from(a) - i32::from(b)).abs())
        .collect();
    let max = diffs.iter().copied().max().unwrap();
    let mean = diffs.iter().map(|&x| f64::from(x)).sum::<f64>() / diffs.len() as f64;
    assert!(max <= 2 && mean < 0.2, "max {max}, mean {mean:.3}");
}
