//! libjpeg-turbo backend (feature `turbojpeg`): DCT-scaled decodes match
//! Pillow's `Image.draft` (also libjpeg scaling) within 2 levels, and the
//! scale chosen is the largest keeping the requested size.
#![cfg(feature = "turbojpeg")]

mod common;

use brigade_pixels::{Decoder, RgbImage, Scale};

#[test]
fn scaled_decode_matches_pillow_draft() {
    let dir = tempfile::tempdir().unwrap();
    common::run_oracle("scaled_oracle.py", &[dir.path().to_str().unwrap()]);
    let bytes = std::fs::read(dir.path().join("big.jpg")).unwrap();
    let mut dec = Decoder::new();
    assert!(dec.uses_turbojpeg(), "libjpeg-turbo failed to initialise");
    let mut img = RgbImage::default();
    // (min_w, min_h) -> expected scale
    for (min, want) in [
        ((803, 601), Scale::One),
        ((402, 301), Scale::Half),
        ((403, 301), Scale::One),
        ((201, 150), Scale::Quarter),
        ((101, 76), Scale::Eighth),
        ((1, 1), Scale::Eighth),
    ] {
        let got = dec.decode_scaled(&bytes, min.0, min.1, &mut img).unwrap();
        assert_eq!(got, want, "request {min:?}");
        assert_eq!((img.width, img.height), (want.apply(803), want.apply(601)));
        assert!(img.width >= min.0.min(803) && img.height >= min.1.min(601));
        if want != Scale::One {
            let d = want.denom();
            let wh = std::fs::read_to_string(dir.path().join(format!("draft_{d}.txt"))).unwrap();
            assert_eq!(
                wh,
                format!("{} {}", img.width, img.height),
                "Pillow's size for 1/{d}"
            );
            let ref_px = std::fs::read(dir.path().join(format!("draft_{d}.rgb"))).unwrap();
            let (max, mean) = common::diff(&img.data, &ref_px);
            println!("1/{d}: max {max} mean {mean:.4}");
            assert!(max <= 2 && mean < 0.1, "1/{d}: max {max} mean {mean}");
        }
    }
    // the zune fallback decodes the same file at full size
    let mut zune = Decoder::new().with_turbojpeg(false);
    assert!(!zune.uses_turbojpeg());
    assert_eq!(
        zune.decode_scaled(&bytes, 10, 10, &mut img).unwrap(),
        Scale::One
    );
    assert_eq!((img.width, img.height), (803, 601));
}
