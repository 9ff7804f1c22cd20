//! RGB8 pixels: borrowed and owned HWC images, decoding any supported file
//! to upright RGB8, antialiased resizing, JPEG encoding.
//!
//! Seam: every data crate speaks [`ImageView`] (borrowed, RGB8, row-major
//! HWC, no padding: `data.len() == width * height * 3`). [`RgbImage`] owns
//! one and is reused as the output of [`Decoder`] and [`Resizer`].
//!
//! * [`Decoder`] (one per thread): JPEG (zune-jpeg, or libjpeg-turbo with the
//!   `turbojpeg` feature), PNG (8/16-bit, palette, alpha), WebP, GIF (first
//!   frame), BMP, TIFF. Grayscale, CMYK/YCCK, EXIF orientation handled; alpha
//!   is dropped (as Pillow's `convert("RGB")`). Failures are
//!   [`DecodeError`] values: truncated JPEGs are errors, never grey padding.
//! * [`Decoder::decode_scaled`]: DCT-domain 1/2, 1/4, 1/8 reduction (with
//!   `turbojpeg`; otherwise a full decode).
//! * [`Resizer`] / [`resize`]: antialiased bilinear or Lanczos3 (matches
//!   torchvision `antialias=True` bilinear within 1 level), plus
//!   [`resize_max_side`] / [`resize_shorter_side`].
//!
//! ```
//! use brigade_pixels::{encode_jpeg, resize_max_side, Decoder, RgbImage, Resizer};
//!
//! // a 64x32 gradient, encoded as JPEG
//! let data: Vec<u8> = (0..64 * 32).flat_map(|i| [(i % 64 * 4) as u8, 100, 50]).collect();
//! let src = RgbImage::from_raw(64, 32, data).unwrap();
//! let mut jpeg = Vec::new();
//! encode_jpeg(src.view(), 95, &mut jpeg)?;
//!
//! let mut decoder = Decoder::new();
//! let mut img = RgbImage::default();
//! decoder.decode(&jpeg, &mut img)?;
//! assert_eq!((img.width, img.height), (64, 32));
//!
//! let mut small = RgbImage::default();
//! resize_max_side(&mut Resizer::new(), img.view(), 16, &mut small)?;
//! assert_eq!((small.width, small.height), (16, 8));
//!
//! // a JPEG cut in half is an error, not a half-grey picture
//! assert!(decoder.decode(&jpeg[..jpeg.len() / 2], &mut img).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod decode;
mod encode;
mod image;
mod jpeg;
mod orient;
mod resize;
#[cfg(feature = "turbojpeg")]
mod turbo;

pub use crate::decode::{DecodeError, Decoder, Format, ImageInfo, Scale, DEFAULT_MAX_PIXELS};
pub use crate::encode::{encode_jpeg, encode_lossless, EncodeError, Lossless};
pub use crate::image::{ImageView, ImageViewMut, RgbImage};
pub use crate::orient::Orientation;
pub use crate::resize::{
    fit_longer, fit_shorter, resize, resize_max_side, resize_shorter_side, Crop, Filter,
    ResizeError, Resizer,
};
