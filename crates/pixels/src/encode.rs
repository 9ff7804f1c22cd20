//! JPEG encoding (for stores that keep re-encoded images).

use crate::image::ImageView;

/// Why an image could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("cannot encode a {width}x{height} image with {len} bytes of pixels")]
    BadImage { width: u32, height: u32, len: usize },
    #[error("JPEG quality must be 1..=100, got {0}")]
    BadQuality(u8),
    #[error("JPEG encoder failed: {0}")]
    Backend(String),
}

/// Encodes `src` as a baseline JPEG at `quality` (1..=100) into `out`
/// (cleared first, allocation reused). Uses libjpeg-turbo (4:2:0) with the
/// `turbojpeg` feature, the pure-Rust `image` encoder otherwise.
pub fn encode_jpeg(src: ImageView<'_>, quality: u8, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    if src.width == 0
        || src.height == 0
        || src.width > 65535
        || src.height > 65535
        || !src.is_consistent()
    {
        return Err(EncodeError::BadImage {
            width: src.width,
            height: src.height,
            len: src.data.len(),
        });
    }
    if !(1..=100).contains(&quality) {
        return Err(EncodeError::BadQuality(quality));
    }
    out.clear();
    #[cfg(feature = "turbojpeg")]
    {
        if let Ok(mut c) = turbojpeg::Compressor::new() {
            c.set_quality(i32::from(quality));
            c.set_subsamp(turbojpeg::Subsamp::Sub2x2);
            let img = turbojpeg::Image {
                pixels: src.data,
                width: src.width as usize,
                pitch: src.width as usize * 3,
                height: src.height as usize,
                format: turbojpeg::PixelFormat::RGB,
            };
            if let Ok(v) = c.compress_to_vec(img) {
                *out = v;
                return Ok(());
            }
        }
    }
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut *out, quality)
        .encode(
            src.data,
            src.width,
            src.height,
            image::ExtendedColorType::Rgb8,
        )
        .map_err(|e| EncodeError::Backend(e.to_string()))
}

/// Lossless encodings (test data, benchmarks, exports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lossless {
    Png,
    WebP,
}

/// Encodes `src` losslessly as PNG or WebP into `out` (cleared first).
pub fn encode_lossless(
    src: ImageView<'_>,
    format: Lossless,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    if src.width == 0 || src.height == 0 || !src.is_consistent() {
        return Err(EncodeError::BadImage {
            width: src.width,
            height: src.height,
            len: src.data.len(),
        });
    }
    out.clear();
    let r = match format {
        Lossless::Png => image::ImageEncoder::write_image(
            image::codecs::png::PngEncoder::new(&mut *out),
            src.data,
            src.width,
            src.height,
            image::ExtendedColorType::Rgb8,
        ),
        Lossless::WebP => image::ImageEncoder::write_image(
            image::codecs::webp::WebPEncoder::new_lossless(&mut *out),
            src.data,
            src.width,
            src.height,
            image::ExtendedColorType::Rgb8,
        ),
    };
    r.map_err(|e| EncodeError::Backend(e.to_string()))
}
