//! Decode (JPEG 256/512, PNG, WebP; zune-jpeg and, with the `turbojpeg`
//! feature, libjpeg-turbo incl. DCT-scaled decode) and resize 512->224,
//! with Pillow / torchvision measured in the same run as the peer.
//!
//! `scripts/with-env.sh cargo bench --bench decode`
//! `scripts/with-env.sh cargo bench --bench decode --features brigade-pixels/turbojpeg`
//!
//! Inputs: scikit-learn's `china.jpg` (a real photograph) resized by us to a
//! longer side of 256 and 512 and re-encoded (JPEG q90, PNG, lossless WebP).

use brigade_pixels::{
    encode_jpeg, encode_lossless, fit_longer, Crop, Decoder, Filter, ImageViewMut, Lossless,
    Resizer, RgbImage,
};
use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn python() -> String {
    std::env::var("BRIGADE_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// sklearn's china.jpg, decoded; a synthetic picture if scikit-learn is missing.
fn photo() -> RgbImage {
    let out = Command::new(python())
        .args(["-c", "import sklearn, os; print(os.path.join(os.path.dirname(sklearn.__file__), 'datasets', 'images', 'china.jpg'))"])
        .output();
    if let Ok(o) = out {
        let p = String::from_utf8_lossy(&o.stdout).trim().to_string();
        if let Ok(bytes) = std::fs::read(&p) {
            let mut img = RgbImage::default();
            if Decoder::new().decode(&bytes, &mut img).is_ok() {
                return img;
            }
        }
    }
    eprintln!("scikit-learn's china.jpg not found: using a synthetic picture");
    let (w, h) = (640u32, 427u32);
    let data = (0..w * h)
        .flat_map(|i| {
            let (x, y) = (i % w, i / w);
            [(x ^ y) as u8, (x * 2) as u8, (y * 3) as u8]
        })
        .collect();
    RgbImage::from_raw(w, h, data).expect("synthetic picture")
}

struct Inputs {
    dir: tempfile::TempDir,
    files: Vec<(String, PathBuf, Vec<u8>)>,
    square512: RgbImage,
}

fn inputs() -> Inputs {
    let src = photo();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rs = Resizer::new();
    let mut files = Vec::new();
    let mut add = |name: &str, bytes: Vec<u8>| {
        let p = dir.path().join(name);
        std::fs::write(&p, &bytes).expect("write input");
        files.push((name.to_string(), p, bytes));
    };
    let mut img = RgbImage::default();
    for side in [256u32, 512] {
        // upscale china (640 wide) is never needed: 256 and 512 are reductions
        let (w, h) = fit_longer(src.width, src.height, side);
        rs.resize(src.view(), w, h, Filter::Bilinear, &mut img)
            .expect("resize");
        let mut v = Vec::new();
        encode_jpeg(img.view(), 90, &mut v).expect("jpeg");
        add(&format!("jpeg{side}.jpg"), v);
        if side == 512 {
            let mut v = Vec::new();
            encode_lossless(img.view(), Lossless::Png, &mut v).expect("png");
            add("png512.png", v);
            let mut v = Vec::new();
            encode_lossless(img.view(), Lossless::WebP, &mut v).expect("webp");
            add("webp512.webp", v);
        }
    }
    let mut square512 = RgbImage::default();
    let side = src.width.min(src.height);
    let crop = Crop {
        left: 0.0,
        top: 0.0,
        width: f64::from(side),
        height: f64::from(side),
    };
    square512.set_size(512, 512);
    rs.resize_crop_into(src.view(), crop, square512.view_mut(), Filter::Bilinear)
        .expect("square");
    Inputs {
        dir,
        files,
        square512,
    }
}

/// Pillow / torchvision: median seconds per call over 5 timed passes.
fn peer(dir: &Path, square: &Path) -> Option<String> {
    let script = r#"
import sys, time, io, statistics, glob, os
import numpy as np
from PIL import Image
import torch, torchvision
from torchvision.io import decode_jpeg
from torchvision.transforms.v2 import functional as F, InterpolationMode
torch.set_num_threads(1)
d, square = sys.argv[1], sys.argv[2]
def med(fn, n):
    ts = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(n): fn()
        ts.append((time.perf_counter() - t) / n)
    return statistics.median(ts)
for p in sorted(glob.glob(os.path.join(d, '*.*'))):
    name = os.path.basename(p)
    if name.endswith('.rgb'): continue
    data = open(p, 'rb').read()
    def pil():
        with Image.open(io.BytesIO(data)) as im:
            np.asarray(im.convert('RGB'))
    print(f"PIL {name} {med(pil, 30):.9f}")
    if name.endswith('.jpg'):
        t = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        print(f"torchvision.decode_jpeg {name} {med(lambda: decode_jpeg(t), 30):.9f}")
        def draft():
            with Image.open(io.BytesIO(data)) as im:
                im.draft('RGB', (im.width // 2, im.height // 2)); np.asarray(im.convert('RGB'))
        print(f"PIL-draft-1/2 {name} {med(draft, 30):.9f}")
a = np.fromfile(square, dtype=np.uint8).reshape(512, 512, 3)
t = torch.from_numpy(a).permute(2, 0, 1).contiguous()
print(f"torchvision.resize-antialias 512to224 {med(lambda: F.resize(t, [224, 224], interpolation=InterpolationMode.BILINEAR, antialias=True), 50):.9f}")
im = Image.fromarray(a)
print(f"PIL.resize-BILINEAR 512to224 {med(lambda: im.resize((224, 224), Image.BILINEAR), 50):.9f}")
"#;
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .arg(dir)
        .arg(square)
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("peer failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn benches(c: &mut Criterion) {
    let inp = inputs();
    let mut g = c.benchmark_group("decode");
    g.sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    let backends: &[(&str, bool)] = if Decoder::new().uses_turbojpeg() {
        &[("zune", false), ("turbojpeg", true)]
    } else {
        &[("zune", false)]
    };
    let mut img = RgbImage::default();
    for (name, _, bytes) in &inp.files {
        for &(backend, turbo) in backends {
            if !name.ends_with(".jpg") && turbo {
                continue;
            }
            let mut dec = Decoder::new().with_turbojpeg(turbo);
            let label = if name.ends_with(".jpg") {
                format!("{name}/{backend}")
            } else {
                name.clone()
            };
            g.throughput(Throughput::Elements(1));
            g.bench_function(BenchmarkId::from_parameter(label), |b| {
                b.iter(|| dec.decode(bytes, &mut img).expect("decode"))
            });
            if turbo && name == "jpeg512.jpg" {
                g.bench_function(
                    BenchmarkId::from_parameter(format!("{name}/turbojpeg-scaled-1-2")),
                    |b| {
                        b.iter(|| {
                            dec.decode_scaled(bytes, 200, 130, &mut img)
                                .expect("decode")
                        })
                    },
                );
            }
        }
    }
    g.finish();

    let mut g = c.benchmark_group("resize");
    g.sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    let mut rs = Resizer::new();
    let mut slot = vec![0u8; 224 * 224 * 3];
    for (name, f) in [
        ("bilinear-antialias", Filter::Bilinear),
        ("lanczos3", Filter::Lanczos3),
    ] {
        g.bench_function(BenchmarkId::new("512to224", name), |b| {
            b.iter(|| {
                let dst = ImageViewMut::new(224, 224, &mut slot).expect("slot");
                rs.resize_into(inp.square512.view(), dst, f)
                    .expect("resize")
            })
        });
    }
    g.finish();

    let square = inp.dir.path().join("square512.rgb");
    std::fs::write(&square, &inp.square512.data).expect("write square");
    match peer(inp.dir.path(), &square) {
        Some(text) => {
            println!("peer (same run, 1 thread, median of 5 passes):");
            for line in text.lines() {
                let mut it = line.split_whitespace();
                if let (Some(who), Some(what), Some(secs)) = (it.next(), it.next(), it.next()) {
                    let s: f64 = secs.parse().unwrap_or(f64::NAN);
                    println!(
                        "  {who:32} {what:14} {:9.1} us  ({:6.0} /s)",
                        s * 1e6,
                        1.0 / s
                    );
                }
            }
        }
        None => {
            println!("peer not measured (set BRIGADE_PYTHON / run through scripts/with-env.sh)")
        }
    }
}

criterion_group!(decode, benches);

fn main() {
    decode();
    Criterion::default().configure_from_args().final_summary();
}
