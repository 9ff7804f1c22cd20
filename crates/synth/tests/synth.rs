//! Determinism, layout and geometry of generated datasets.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use brigade_index::{Index, IndexOptions, Layout, Split};
use brigade_synth::{generate, SynthConfig, SynthError};

/// Every file under `root` (relative path → bytes).
fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                out.insert(rel, fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn small(seed: u64) -> SynthConfig {
    SynthConfig {
        max_side: 120,
        ..SynthConfig::new(4, 3, 2, seed)
    }
}

#[test]
fn same_seed_same_bytes_regardless_of_threads() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    let c = dir.path().join("c");
    generate(&small(5), &a).unwrap();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    pool.install(|| generate(&small(5), &b)).unwrap();
    generate(&small(6), &c).unwrap();
    let (ta, tb, tc) = (tree(&a), tree(&b), tree(&c));
    assert_eq!(ta.len(), 4 + 4 * 5);
    assert!(ta == tb, "same seed must give identical files");
    let differing = ta.iter().filter(|(k, v)| tc.get(*k) != Some(v)).count();
    assert!(
        differing >= 20,
        "another seed changes the images ({differing} differ)"
    );
    // No temp folder left next to the output.
    let mut names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["a", "b", "c"]);
}

#[test]
fn output_is_a_clean_food101_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("synth");
    let cfg = SynthConfig {
        max_side: 200,
        ..SynthConfig::new(5, 6, 3, 11)
    };
    let summary = generate(&cfg, &out).unwrap();
    assert_eq!((summary.classes, summary.train, summary.test), (5, 30, 15));
    let (index, report) = Index::build(&out, &IndexOptions::default()).unwrap();
    assert_eq!(report.layout, Layout::Food101);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(index.class_counts(Split::Train), [6; 5]);
    assert_eq!(index.class_counts(Split::Test), [3; 5]);
    assert_eq!(report.labels.len(), 5);
    let total: u64 = index.samples.iter().map(|s| s.file_len).sum();
    assert_eq!(total, summary.bytes);
    // Sides between max_side / 4 and max_side, varied aspect.
    for s in &index.samples {
        assert!(
            (50..=200).contains(&s.width) && (50..=200).contains(&s.height),
            "{s:?}"
        );
    }
    let aspects: std::collections::BTreeSet<_> =
        index.samples.iter().map(|s| (s.width, s.height)).collect();
    assert!(aspects.len() > 30, "sizes vary");
    // Decodable JPEGs with the probed size.
    let s = &index.samples[7];
    let img = image::open(index.abs_path(s)).unwrap();
    assert_eq!((img.width(), img.height()), (s.width, s.height));
}

#[test]
fn classes_differ_more_than_images_within_a_class() {
    // Mean colour of each image at 8x8: images of one class are closer to
    // their class mean than to other classes' means (a sanity check that
    // there is class structure to learn; the CNN target is checked by hand).
    let cfg = SynthConfig {
        max_side: 96,
        ..SynthConfig::new(6, 8, 0, 3)
    };
    let feats: Vec<Vec<Vec<f32>>> = (0..6)
        .map(|c| {
            (0..8)
                .map(|i| {
                    let (w, h, px) = brigade_synth::render(&cfg, c, i);
                    let img = image::RgbImage::from_raw(w, h, px).unwrap();
                    let small =
                        image::imageops::resize(&img, 4, 4, image::imageops::FilterType::Triangle);
                    small.as_raw().iter().map(|&v| v as f32).collect()
                })
                .collect()
        })
        .collect();
    let mean = |v: &[Vec<f32>]| -> Vec<f32> {
        (0..v[0].len())
            .map(|j| v.iter().map(|x| x[j]).sum::<f32>() / v.len() as f32)
            .collect()
    };
    let means: Vec<Vec<f32>> = feats.iter().map(|f| mean(f)).collect();
    let dist = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f32>();
    let mut correct = 0;
    for (c, f) in feats.iter().enumerate() {
        for x in f {
            let best = (0..6)
                .min_by(|&i, &j| dist(x, &means[i]).total_cmp(&dist(x, &means[j])))
                .unwrap();
            correct += usize::from(best == c);
        }
    }
    // Chance is 8/48; colour alone must not solve it either (measured: 37/48).
    assert!(correct >= 30, "nearest class mean classifies {correct}/48");
}

#[test]
fn bad_configs_and_non_empty_output_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    for cfg in [
        SynthConfig::new(0, 1, 1, 0),
        SynthConfig::new(1, 0, 1, 0),
        SynthConfig {
            max_side: 8,
            ..SynthConfig::new(1, 1, 1, 0)
        },
        SynthConfig {
            min_side: 600,
            ..SynthConfig::new(1, 1, 1, 0)
        },
        SynthConfig {
            quality: 0,
            ..SynthConfig::new(1, 1, 1, 0)
        },
    ] {
        assert!(
            matches!(
                generate(&cfg, &dir.path().join("x")),
                Err(SynthError::BadConfig(_))
            ),
            "{cfg:?}"
        );
    }
    fs::write(dir.path().join("file"), "x").unwrap();
    let err = generate(&small(1), dir.path()).unwrap_err();
    assert!(matches!(err, SynthError::OutputExists { .. }), "{err}");
}

const CNN: &str = r#"
import os, sys, time, random
import numpy as np, torch, torch.nn as nn, torch.nn.functional as F
from PIL import Image
torch.manual_seed(0); random.seed(0); np.random.seed(0)
torch.set_num_threads(2)
root = sys.argv[1]
classes = open(os.path.join(root, "meta/classes.txt")).read().split()
def load(split, side):
    xs, ys = [], []
    for line in open(os.path.join(root, "meta", split + ".txt")).read().split():
        c = classes.index(line.split("/")[0])
        im = Image.open(os.path.join(root, "images", line + ".jpg")).convert("RGB").resize((side, side), Image.BILINEAR)
        xs.append(np.asarray(im)); ys.append(c)
    x = torch.tensor(np.stack(xs)).permute(0, 3, 1, 2).float() / 255.0
    return (x - 0.5) / 0.25, torch.tensor(ys)
t0 = time.time()
xtr, ytr = load("train", 72)
xte, yte = load("test", 72)
xte = xte[:, :, 4:68, 4:68]
def block(i, o): return nn.Sequential(nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2))
net = nn.Sequential(block(3, 16), block(16, 32), block(32, 48), block(48, 64), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, len(classes)))
epochs = 14
opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-3)
steps = epochs * ((len(xtr) + 63) // 64)
sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
for ep in range(epochs):
    net.train()
    perm = torch.randperm(len(xtr))
    for i in range(0, len(xtr), 64):
        idx = perm[i:i + 64]
        ox, oy = random.randint(0, 8), random.randint(0, 8)
        xb = xtr[idx][:, :, oy:oy + 64, ox:ox + 64]
        if random.random() < 0.5: xb = xb.flip(3)
        loss = F.cross_entropy(net(xb), ytr[idx])
        opt.zero_grad(); loss.backward(); opt.step(); sched.step()
    print(f"epoch {ep} loss {loss.item():.3f} {time.time() - t0:.0f}s", file=sys.stderr, flush=True)
net.eval()
with torch.no_grad():
    acc = (net(xte).argmax(1) == yte).float().mean().item()
print(f"{acc:.4f} {time.time() - t0:.1f}")
"#;

/// The target: a tiny CNN at 64 px (torch, CPU, 2 threads, random crop +
/// flip) reaches >= 90 % on the held-out test split. Slow (CPU minutes), so
/// ignored by default; `nearest class mean` above is the fast check.
/// `scripts/with-env.sh cargo test -p brigade-synth --test synth -- --ignored --nocapture`
#[test]
#[ignore]
fn tiny_cnn_learns_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("synth");
    let cfg = SynthConfig {
        max_side: 160,
        ..SynthConfig::new(10, 80, 20, 2024)
    };
    generate(&cfg, &out).unwrap();
    let py = std::env::var("BRIGADE_PYTHON").unwrap_or_else(|_| "python3".into());
    let res = std::process::Command::new(&py)
        .arg("-c")
        .arg(CNN)
        .arg(&out)
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "oracle python (torch) failed (see stderr above)"
    );
    let text = String::from_utf8_lossy(&res.stdout);
    let mut it = text.split_whitespace();
    let acc: f64 = it.next().unwrap().parse().unwrap();
    let secs: f64 = it.next().unwrap().parse().unwrap();
    println!("tiny CNN at 64 px: test accuracy {acc:.4} in {secs:.1} s (10 classes x 80 train / 20 test)");
    assert!(acc >= 0.90, "tiny CNN reached only {acc}");
}
