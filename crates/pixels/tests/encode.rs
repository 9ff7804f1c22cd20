//! Encoders: lossless formats round-trip exactly; JPEG stays close (a
//! smooth picture, so 4:2:0 chroma subsampling of the turbojpeg encoder is
//! not what is measured).

use brigade_pixels::{encode_jpeg, encode_lossless, Decoder, EncodeError, Lossless, RgbImage};

fn picture() -> RgbImage {
    let (w, h) = (53u32, 31u32);
    let data = (0..w * h)
        .flat_map(|i| {
            let (x, y) = (i % w, i / w);
            [(x * 4) as u8, (y * 8) as u8, ((x + y) * 3) as u8]
        })
        .collect();
    RgbImage::from_raw(w, h, data).unwrap()
}

#[test]
fn lossless_round_trip_and_jpeg_quality() {
    let src = picture();
    let mut dec = Decoder::new();
    let mut img = RgbImage::default();
    let mut buf = Vec::new();
    for f in [Lossless::Png, Lossless::WebP] {
        encode_lossless(src.view(), f, &mut buf).unwrap();
        dec.decode(&buf, &mut img).unwrap();
        assert_eq!(img, src, "{f:?}");
    }
    encode_jpeg(src.view(), 98, &mut buf).unwrap();
    dec.decode(&buf, &mut img).unwrap();
    let mean = img
        .data
        .iter()
        .zip(&src.data)
        .map(|(&a, &b)| f64::from(a.abs_diff(b)))
        .sum::<f64>()
        / src.data.len() as f64;
    assert!(mean < 4.0, "JPEG q98 mean error {mean}");
    assert_eq!(
        encode_jpeg(src.view(), 0, &mut buf),
        Err(EncodeError::BadQuality(0))
    );
    let empty = RgbImage::default();
    assert!(encode_jpeg(empty.view(), 90, &mut buf).is_err());
}
