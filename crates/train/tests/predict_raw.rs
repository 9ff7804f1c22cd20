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

#[test]
fn raw_torchvision_and_safetensors_weights_predict_like_torchvision() {
    let d = tempfile::tempdir().unwrap();
    let py = std::env::var("BRIGADE_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(&py)
        .args(["-c", ORACLE, d.path().to_str().unwrap()])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {py} ({e}): run through scripts/with-env.sh"));
    assert!(
        out.status.success(),
        "oracle failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
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
