//! Layout and normalisation of batch tensors, against a direct computation and
//! against torchvision's `to_dtype(scale=True)` + `normalize` (the oracle).

use brigade_loader::{Batch, Loader, LoaderConfig, NearestResize, VecSource};
use brigade_pixels::RgbImage;
use brigade_tensor::{to_tensor, TensorError, ToTensor, IMAGENET_MEAN, IMAGENET_STD};
use std::process::Command;
use tch::{Device, Kind, Tensor};

const N: usize = 5;
const H: usize = 6;
const W: usize = 7;

/// A batch of pseudo-random pixels (no shuffle, identity-size transform so
/// the batch bytes are the source bytes).
fn with_batch<R>(f: impl FnOnce(&Batch) -> R) -> R {
    let mut state = 0x1234_5678u32;
    let images = (0..N)
        .map(|_| RgbImage {
            width: W as u32,
            height: H as u32,
            data: (0..H * W * 3)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    (state >> 8) as u8
                })
                .collect(),
        })
        .collect();
    let source = VecSource {
        images,
        labels: (0..N as u32).map(|i| i * 3).collect(),
        broken: vec![],
    };
    let cfg = LoaderConfig {
        batch_size: N,
        threads: 1,
        shuffle: false,
        ..LoaderConfig::default()
    };
    let mut l = Loader::new(source, NearestResize::default(), cfg).unwrap();
    let mut e = l
        .epoch(
            0,
            brigade_loader::OutSize {
                height: H as u32,
                width: W as u32,
            },
            0,
        )
        .unwrap();
    let b = e.next().unwrap().unwrap();
    f(&b)
}

fn values(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.to_kind(Kind::Float).contiguous().view(-1)).unwrap()
}

fn direct(b: &Batch) -> Vec<f32> {
    let px = b.images();
    let mut out = vec![0f32; N * 3 * H * W];
    for n in 0..N {
        for c in 0..3 {
            for y in 0..H {
                for x in 0..W {
                    let v = px[((n * H + y) * W + x) * 3 + c] as f32 / 255.0;
                    out[((n * 3 + c) * H + y) * W + x] = (v - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
                }
            }
        }
    }
    out
}

#[test]
fn float_layout_and_values_match_direct_computation() {
    with_batch(|b| {
        let t = to_tensor(b, Device::Cpu, IMAGENET_MEAN, IMAGENET_STD, Kind::Float).unwrap();
        assert_eq!(t.size(), [N as i64, 3, H as i64, W as i64]);
        assert_eq!(t.kind(), Kind::Float);
        let (h, w) = (H as i64, W as i64);
        assert_eq!(
            t.stride(),
            [h * w * 3, 1, w * 3, 3],
            "channels-last strides"
        );
        let got = values(&t);
        let want = direct(b);
        let max = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(max < 1e-5, "max abs diff {max}");
    });
}

#[test]
fn output_owns_its_memory() {
    let t = with_batch(|b| {
        let to = ToTensor::new(Device::Cpu, IMAGENET_MEAN, IMAGENET_STD, Kind::Float).unwrap();
        let u8s = to.images_u8(b).unwrap();
        assert_eq!(u8s.stride(), [(H * W * 3) as i64, 1, (W * 3) as i64, 3]);
        assert_ne!(u8s.data_ptr() as usize, b.images().as_ptr() as usize);
        (to.images(b).unwrap(), u8s, direct(b), b.images().to_vec())
    });
    // the batch (and its ring slot, and the loader) are gone now
    let (x, u8s, want, bytes) = t;
    // Same tolerance as the direct-computation test: the device-side
    // normalisation rounds differently from the host reference by an ulp.
    let got_x = values(&x);
    assert_eq!(got_x.len(), want.len());
    let max = got_x
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(max < 1e-5, "max abs diff {max} after the batch was dropped");
    let got: Vec<u8> =
        Vec::<u8>::try_from(u8s.permute([0, 2, 3, 1]).contiguous().view(-1)).unwrap();
    assert_eq!(got, bytes);
}

#[test]
fn bf16_and_half_are_rounded_float() {
    with_batch(|b| {
        let want = direct(b);
        for kind in [Kind::BFloat16, Kind::Half] {
            let t = to_tensor(b, Device::Cpu, IMAGENET_MEAN, IMAGENET_STD, kind).unwrap();
            assert_eq!(t.kind(), kind);
            assert_eq!(t.stride()[1], 1, "channels-last kept for {kind:?}");
            let tol = if kind == Kind::BFloat16 {
                1.0 / 128.0
            } else {
                1.0 / 1024.0
            };
            for (g, w) in values(&t).iter().zip(&want) {
                assert!(
                    (g - w).abs() <= tol * w.abs().max(1.0),
                    "{kind:?}: {g} vs {w}"
                );
            }
        }
    });
}

#[test]
fn labels_and_bad_arguments() {
    with_batch(|b| {
        let to = ToTensor::new(Device::Cpu, IMAGENET_MEAN, IMAGENET_STD, Kind::Float).unwrap();
        let l = to.labels(b).unwrap();
        assert_eq!(l.kind(), Kind::Int64);
        assert_eq!(Vec::<i64>::try_from(l).unwrap(), [0, 3, 6, 9, 12]);
    });
    assert!(matches!(
        ToTensor::new(Device::Cpu, IMAGENET_MEAN, IMAGENET_STD, Kind::Uint8),
        Err(TensorError::Kind(Kind::Uint8))
    ));
    assert!(matches!(
        ToTensor::new(Device::Cpu, IMAGENET_MEAN, [0.2, 0.0, 0.2], Kind::Float),
        Err(TensorError::Std(_))
    ));
}

#[test]
fn matches_torchvision_normalize() {
    let python = std::env::var("BRIGADE_PYTHON").unwrap_or_else(|_| "python3".into());
    let dir = tempfile::tempdir().unwrap();
    let (input, ours) = with_batch(|b| {
        let t = to_tensor(b, Device::Cpu, IMAGENET_MEAN, IMAGENET_STD, Kind::Float).unwrap();
        (b.images().to_vec(), values(&t))
    });
    let inp = dir.path().join("in.u8");
    let outp = dir.path().join("out.f32");
    std::fs::write(&inp, &input).unwrap();
    let script = format!(
        r#"
import numpy as np, torch
from torchvision.transforms.v2 import functional as F
x = torch.from_numpy(np.fromfile(r"{inp}", dtype=np.uint8).reshape({N}, {H}, {W}, 3)).permute(0, 3, 1, 2)
y = F.normalize(F.to_dtype(x, torch.float32, scale=True), {mean:?}, {std:?})
y.contiguous().numpy().astype(np.float32).tofile(r"{outp}")
"#,
        inp = inp.display(),
        outp = outp.display(),
        mean = IMAGENET_MEAN,
        std = IMAGENET_STD,
    );
    let out = Command::new(&python)
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "the oracle python {python} could not run ({e}); run through scripts/with-env.sh"
            )
        });
    assert!(
        out.status.success(),
        "oracle python {python} with torch+torchvision failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let raw = std::fs::read(&outp).unwrap();
    let theirs: Vec<f32> = raw
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(theirs.len(), ours.len());
    let max = ours
        .iter()
        .zip(&theirs)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(max < 1e-5, "max abs diff vs torchvision {max}");
}
