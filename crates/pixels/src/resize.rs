//! Antialiased resizing (fast_image_resize convolution: the filter support
//! grows with the reduction factor, as in Pillow and torchvision's
//! `antialias=True`).

use crate::image::{ImageView, ImageViewMut, RgbImage};
use fast_image_resize as fir;

/// Interpolation filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Filter {
    /// Triangle filter; matches torchvision `resize(..., BILINEAR, antialias=True)`.
    #[default]
    Bilinear,
    /// Lanczos with 3 lobes (sharper, slower).
    Lanczos3,
}

impl Filter {
    fn alg(self) -> fir::ResizeAlg {
        fir::ResizeAlg::Convolution(match self {
            Self::Bilinear => fir::FilterType::Bilinear,
            Self::Lanczos3 => fir::FilterType::Lanczos3,
        })
    }
}

/// A source region in pixels (fractional coordinates allowed).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Crop {
    pub left: f64,
    pub top: f64,
    pub width: f64,
    pub height: f64,
}

/// Why a resize failed (only on inconsistent arguments, never on pixel values).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResizeError {
    #[error("cannot resize {what}: zero width or height")]
    ZeroSize { what: &'static str },
    #[error("{what} buffer holds {len} bytes, expected {width}x{height}x3")]
    BadBuffer {
        what: &'static str,
        width: u32,
        height: u32,
        len: usize,
    },
    #[error("crop {0:?} is empty or outside the {1}x{2} source")]
    BadCrop(String, u32, u32),
    #[error("resize failed: {0}")]
    Backend(String),
}

/// A reusable resizer (keeps its convolution buffers): one per thread.
#[derive(Default)]
pub struct Resizer {
    inner: fir::Resizer,
}

impl std::fmt::Debug for Resizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resizer")
    }
}

fn check(what: &'static str, w: u32, h: u32, len: usize) -> Result<(), ResizeError> {
    if w == 0 || h == 0 {
        return Err(ResizeError::ZeroSize { what });
    }
    if len as u64 != u64::from(w) * u64::from(h) * 3 {
        return Err(ResizeError::BadBuffer {
            what,
            width: w,
            height: h,
            len,
        });
    }
    Ok(())
}

impl Resizer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Resizes `src` to `dst_w x dst_h` into `dst` (reusing its allocation).
    pub fn resize(
        &mut self,
        src: ImageView<'_>,
        dst_w: u32,
        dst_h: u32,
        filter: Filter,
        dst: &mut RgbImage,
    ) -> Result<(), ResizeError> {
        check(
            "destination",
            dst_w,
            dst_h,
            (dst_w as usize) * (dst_h as usize) * 3,
        )?;
        dst.set_size(dst_w, dst_h);
        self.resize_into(src, dst.view_mut(), filter)
    }

    /// Resizes all of `src` into `dst` (e.g. a batch slot).
    pub fn resize_into(
        &mut self,
        src: ImageView<'_>,
        dst: ImageViewMut<'_>,
        filter: Filter,
    ) -> Result<(), ResizeError> {
        self.run(src, None, dst, filter)
    }

    /// Resizes the region `crop` of `src` into `dst` in one pass.
    pub fn resize_crop_into(
        &mut self,
        src: ImageView<'_>,
        crop: Crop,
        dst: ImageViewMut<'_>,
        filter: Filter,
    ) -> Result<(), ResizeError> {
        let ok = crop.width > 0.0
            && crop.height > 0.0
            && crop.left >= 0.0
            && crop.top >= 0.0
            && crop.left + crop.width <= f64::from(src.width) + 1e-9
            && crop.top + crop.height <= f64::from(src.height) + 1e-9;
        if !ok {
            return Err(ResizeError::BadCrop(
                format!("{crop:?}"),
                src.width,
                src.height,
            ));
        }
        self.run(src, Some(crop), dst, filter)
    }

    fn run(
        &mut self,
        src: ImageView<'_>,
        crop: Option<Crop>,
        dst: ImageViewMut<'_>,
        filter: Filter,
    ) -> Result<(), ResizeError> {
        check("source", src.width, src.height, src.data.len())?;
        check("destination", dst.width, dst.height, dst.data.len())?;
        let s = fir::images::ImageRef::new(src.width, src.height, src.data, fir::PixelType::U8x3)
            .map_err(|e| ResizeError::Backend(e.to_string()))?;
        let mut d = fir::images::Image::from_slice_u8(
            dst.width,
            dst.height,
            dst.data,
            fir::PixelType::U8x3,
        )
        .map_err(|e| ResizeError::Backend(e.to_string()))?;
        let mut opts = fir::ResizeOptions::new().resize_alg(filter.alg());
        if let Some(c) = crop {
            opts = opts.crop(c.left, c.top, c.width, c.height);
        }
        self.inner
            .resize(&s, &mut d, &opts)
            .map_err(|e| ResizeError::Backend(e.to_string()))
    }
}

/// Resizes `src` to `dst_w x dst_h` with antialiased bilinear filtering.
/// Allocates a [`Resizer`]; hot loops should keep their own.
pub fn resize(
    src: ImageView<'_>,
    dst_w: u32,
    dst_h: u32,
    dst: &mut RgbImage,
) -> Result<(), ResizeError> {
    Resizer::new().resize(src, dst_w, dst_h, Filter::Bilinear, dst)
}

/// `other * target / side`, rounded, at least 1.
fn scale_dim(other: u32, target: u32, side: u32) -> u32 {
    let v = (u64::from(other) * u64::from(target) * 2 + u64::from(side)) / (2 * u64::from(side));
    v.clamp(1, u64::from(u32::MAX)) as u32
}

/// Size after shrinking so the longer side is at most `max_side` (aspect
/// kept, the other side rounded, never upscaled).
pub fn fit_longer(width: u32, height: u32, max_side: u32) -> (u32, u32) {
    let long = width.max(height);
    if long <= max_side || max_side == 0 {
        return (width, height);
    }
    if width >= height {
        (max_side, scale_dim(height, max_side, width))
    } else {
        (scale_dim(width, max_side, height), max_side)
    }
}

/// Size after shrinking so the shorter side is at most `max_side` (aspect
/// kept, the other side rounded, never upscaled).
pub fn fit_shorter(width: u32, height: u32, max_side: u32) -> (u32, u32) {
    let short = width.min(height);
    if short <= max_side || max_side == 0 {
        return (width, height);
    }
    if width <= height {
        (max_side, scale_dim(height, max_side, width))
    } else {
        (scale_dim(width, max_side, height), max_side)
    }
}

/// Shrinks so the longer side is at most `max_side` (copies when already
/// small enough).
pub fn resize_max_side(
    resizer: &mut Resizer,
    src: ImageView<'_>,
    max_side: u32,
    dst: &mut RgbImage,
) -> Result<(), ResizeError> {
    let (w, h) = fit_longer(src.width, src.height, max_side);
    resize_or_copy(resizer, src, w, h, dst)
}

/// Shrinks so the shorter side is at most `max_side` (copies when already
/// small enough).
pub fn resize_shorter_side(
    resizer: &mut Resizer,
    src: ImageView<'_>,
    max_side: u32,
    dst: &mut RgbImage,
) -> Result<(), ResizeError> {
    let (w, h) = fit_shorter(src.width, src.height, max_side);
    resize_or_copy(resizer, src, w, h, dst)
}

fn resize_or_copy(
    resizer: &mut Resizer,
    src: ImageView<'_>,
    w: u32,
    h: u32,
    dst: &mut RgbImage,
) -> Result<(), ResizeError> {
    if (w, h) == (src.width, src.height) {
        check("source", src.width, src.height, src.data.len())?;
        dst.set_size(w, h);
        dst.data.copy_from_slice(src.data);
        return Ok(());
    }
    resizer.resize(src, w, h, Filter::Bilinear, dst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_sizes() {
        assert_eq!(fit_longer(1000, 500, 288), (288, 144));
        assert_eq!(fit_longer(500, 1000, 288), (144, 288));
        assert_eq!(fit_longer(200, 100, 288), (200, 100));
        assert_eq!(fit_shorter(1000, 500, 288), (576, 288));
        assert_eq!(fit_shorter(500, 1001, 288), (288, 577));
        assert_eq!(fit_longer(10000, 1, 100), (100, 1));
    }

    #[test]
    fn constant_image_stays_constant() {
        let src = RgbImage::from_raw(40, 30, [10u8, 200, 77].repeat(40 * 30)).unwrap();
        let mut out = RgbImage::default();
        let mut r = Resizer::new();
        for f in [Filter::Bilinear, Filter::Lanczos3] {
            r.resize(src.view(), 13, 7, f, &mut out).unwrap();
            assert_eq!((out.width, out.height), (13, 7));
            assert!(out.data.chunks(3).all(|p| p == [10, 200, 77]), "{f:?}");
        }
    }

    #[test]
    fn bad_arguments_are_errors() {
        let src = RgbImage::new(4, 4);
        let mut out = RgbImage::default();
        assert!(resize(src.view(), 0, 3, &mut out).is_err());
        let bad = ImageView {
            width: 5,
            height: 4,
            data: &src.data,
        };
        assert!(resize(bad, 2, 2, &mut out).is_err());
        let mut slot = vec![0u8; 2 * 2 * 3];
        let crop = Crop {
            left: 3.0,
            top: 0.0,
            width: 2.0,
            height: 2.0,
        };
        let dst = ImageViewMut::new(2, 2, &mut slot).unwrap();
        assert!(Resizer::new()
            .resize_crop_into(src.view(), crop, dst, Filter::Bilinear)
            .is_err());
    }
}
