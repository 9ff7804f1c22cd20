//! Decoding odd files and real photographs, compared with Pillow's
//! `ImageOps.exif_transpose(img).convert("RGB")` (tolerances in
//! tests/oracle/gen_images.py: exact for lossless formats; JPEG max 6 /
//! mean 0.6 levels, as zune-jpeg and libjpeg-turbo round IDCT and chroma
//! upsampling differently; lossy WebP max 4 / mean 0.5).

mod common;

use brigade_pixels::{DecodeError, Decoder, RgbImage};
use serde_json::Value;

struct Case {
    name: String,
    file: String,
    ok: bool,
    width: u32,
    height: u32,
    tol_max: u8,
    tol_mean: f64,
}

fn cases(dir: &std::path::Path) -> Vec<Case> {
    let text = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            name: c["name"].as_str().unwrap().to_string(),
            file: c["file"].as_str().unwrap().to_string(),
            ok: c["expect"] == "ok",
            width: c["width"].as_u64().unwrap_or(0) as u32,
            height: c["height"].as_u64().unwrap_or(0) as u32,
            tol_max: c["tol_max"].as_u64().unwrap_or(0) as u8,
            tol_mean: c["tol_mean"].as_f64().unwrap_or(0.0),
        })
        .collect()
}

#[test]
fn decodes_like_pillow_and_rejects_broken_files() {
    let dir = tempfile::tempdir().unwrap();
    common::run_oracle("gen_images.py", &[dir.path().to_str().unwrap()]);
    let cases = cases(dir.path());
    assert!(cases.len() > 40, "oracle wrote only {} cases", cases.len());
    let mut dec = Decoder::new();
    let mut img = RgbImage::default();
    let mut failures = Vec::new();
    for c in &cases {
        let bytes = std::fs::read(dir.path().join(&c.file)).unwrap();
        let got = dec.decode(&bytes, &mut img);
        if !c.ok {
            match got {
                Err(e) => println!("{:28} rejected: {e}", c.name),
                Ok(()) => failures.push(format!("{}: decoded, but must be an error", c.name)),
            }
            continue;
        }
        if let Err(e) = got {
            failures.push(format!("{}: {e}", c.name));
            continue;
        }
        if (img.width, img.height) != (c.width, c.height) {
            failures.push(format!(
                "{}: size {}x{}, Pillow {}x{}",
                c.name, img.width, img.height, c.width, c.height
            ));
            continue;
        }
        let want = std::fs::read(dir.path().join(format!("{}.rgb", c.name))).unwrap();
        let (max, mean) = common::diff(&img.data, &want);
        println!(
            "{:28} {}x{} max {max:3} mean {mean:.3}",
            c.name, img.width, img.height
        );
        if max > c.tol_max || mean > c.tol_mean {
            failures.push(format!(
                "{}: max diff {max} (tol {}), mean {mean:.3} (tol {})",
                c.name, c.tol_max, c.tol_mean
            ));
        }
        // the header probe agrees with the decode
        let info = dec.probe(&bytes).unwrap();
        if (info.width, info.height) != (img.width, img.height) {
            failures.push(format!(
                "{}: probe says {}x{}",
                c.name, info.width, info.height
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn truncation_is_reported_as_such() {
    let dir = tempfile::tempdir().unwrap();
    common::run_oracle("gen_images.py", &[dir.path().to_str().unwrap()]);
    let bytes = std::fs::read(dir.path().join("jpeg_truncated_half.jpg")).unwrap();
    let e = Decoder::new()
        .decode(&bytes, &mut RgbImage::default())
        .unwrap_err();
    assert!(matches!(e, DecodeError::Truncated { .. }), "{e}");
    // every prefix of a JPEG is rejected, none panics
    let full = std::fs::read(dir.path().join("jpeg_420.jpg")).unwrap();
    let mut dec = Decoder::new();
    let mut img = RgbImage::default();
    for cut in (0..full.len() - 2).step_by(97) {
        assert!(dec.decode(&full[..cut], &mut img).is_err(), "prefix {cut}");
    }
    // and a decoder reused after errors still works
    dec.decode(&full, &mut img).unwrap();
    assert_eq!((img.width, img.height), (97, 61));
}

#[test]
fn pixel_limit_is_enforced() {
    let dir = tempfile::tempdir().unwrap();
    common::run_oracle("gen_images.py", &[dir.path().to_str().unwrap()]);
    let mut dec = Decoder::new().with_max_pixels(1000);
    for f in ["jpeg_420.jpg", "png_rgb.png"] {
        let bytes = std::fs::read(dir.path().join(f)).unwrap();
        let e = dec.decode(&bytes, &mut RgbImage::default()).unwrap_err();
        assert!(matches!(e, DecodeError::TooLarge { .. }), "{f}: {e}");
    }
}

/// An 8x8 JPEG written by `cjpeg -arithmetic` (libjpeg-turbo 2.1): valid,
/// but arithmetic-coded.
const ARITHMETIC_JPEG: &[u8] = &[
    0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0x00, 0x01, 0x01, 0x00, 0x00, 0x01,
    0x00, 0x01, 0x00, 0x00, 0xff, 0xdb, 0x00, 0x43, 0x00, 0x10, 0x0b, 0x0c, 0x0e, 0x0c, 0x0a, 0x10,
    0x0e, 0x0d, 0x0e, 0x12, 0x11, 0x10, 0x13, 0x18, 0x28, 0x1a, 0x18, 0x16, 0x16, 0x18, 0x31, 0x23,
    0x25, 0x1d, 0x28, 0x3a, 0x33, 0x3d, 0x3c, 0x39, 0x33, 0x38, 0x37, 0x40, 0x48, 0x5c, 0x4e, 0x40,
    0x44, 0x57, 0x45, 0x37, 0x38, 0x50, 0x6d, 0x51, 0x57, 0x5f, 0x62, 0x67, 0x68, 0x67, 0x3e, 0x4d,
    0x71, 0x79, 0x70, 0x64, 0x78, 0x5c, 0x65, 0x67, 0x63, 0xff, 0xdb, 0x00, 0x43, 0x01, 0x11, 0x12,
    0x12, 0x18, 0x15, 0x18, 0x2f, 0x1a, 0x1a, 0x2f, 0x63, 0x42, 0x38, 0x42, 0x63, 0x63, 0x63, 0x63,
    0x63, 0x63, 0x63, 0x63, 0x63, 0x63, 0x63, 0x63, 0x63, 0x63, 0x63, 0x63, 0x63, 0x63, 0x63, 0x63,
    0x63, 0x63, 0x63, 0x63, 0x63, 0x63, 0x63, 0x63, 0x63, 0x63, 0x63, 0x63, 0x63, 0x63, 0x63, 0x63,
    0x63, 0x63, 0x63, 0x63, 0x63, 0x63, 0x63, 0x63, 0x63, 0x63, 0x63, 0x63, 0x63, 0x63, 0xff, 0xc9,
    0x00, 0x11, 0x08, 0x00, 0x08, 0x00, 0x08, 0x03, 0x01, 0x22, 0x00, 0x02, 0x11, 0x01, 0x03, 0x11,
    0x01, 0xff, 0xcc, 0x00, 0x0a, 0x00, 0x10, 0x10, 0x05, 0x01, 0x10, 0x11, 0x05, 0xff, 0xda, 0x00,
    0x0c, 0x03, 0x01, 0x00, 0x02, 0x11, 0x03, 0x11, 0x00, 0x3f, 0x00, 0xfe, 0xd1, 0xcd, 0xb8, 0x38,
    0xff, 0xd9,
];

#[test]
fn arithmetic_coded_jpeg_is_unsupported_not_corrupt() {
    let mut img = RgbImage::default();
    let got = Decoder::new()
        .with_turbojpeg(false)
        .decode(ARITHMETIC_JPEG, &mut img);
    match got {
        Err(DecodeError::Unsupported { format, detail }) => {
            assert_eq!(format, "JPEG");
            assert!(detail.contains("arithmetic"), "{detail}");
        }
        other => panic!("expected Unsupported, got {other:?}"),
    }
}

/// libjpeg-turbo decodes arithmetic coding: with the feature the file reads.
#[cfg(feature = "turbojpeg")]
#[test]
fn arithmetic_coded_jpeg_decodes_with_turbojpeg() {
    let mut img = RgbImage::default();
    let mut dec = Decoder::new();
    assert!(dec.uses_turbojpeg(), "libturbojpeg did not initialise");
    dec.decode(ARITHMETIC_JPEG, &mut img).unwrap();
    assert_eq!((img.width, img.height), (8, 8));
    for px in img.data.chunks(3) {
        let want = [200i32, 30, 90];
        for (g, w) in px.iter().zip(want) {
            assert!((i32::from(*g) - w).abs() <= 6, "{px:?}");
        }
    }
}
