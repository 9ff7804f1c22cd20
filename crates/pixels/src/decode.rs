//! Decoding any supported file format to RGB8.

use crate::image::RgbImage;
use crate::jpeg;
use crate::orient::{self, Orientation};
use image::ImageDecoder;
use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Why an image could not be decoded. Decoding works on bytes: callers add
/// the file name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Zero bytes of input.
    #[error("empty file")]
    Empty,
    /// The first bytes match no supported format.
    #[error("unrecognised image format (first bytes {0:02x?})")]
    UnknownFormat(Vec<u8>),
    /// The data stops before the image is complete.
    #[error("truncated {format} data: {detail}")]
    Truncated {
        format: &'static str,
        detail: String,
    },
    /// The data is malformed.
    #[error("corrupt {format} data: {detail}")]
    Corrupt {
        format: &'static str,
        detail: String,
    },
    /// A valid file using something this crate does not decode.
    #[error("unsupported {format} image: {detail}")]
    Unsupported {
        format: &'static str,
        detail: String,
    },
    /// Larger than [`Decoder::max_pixels`].
    #[error("image is {width}x{height}, over the limit of {max_pixels} pixels")]
    TooLarge {
        width: u32,
        height: u32,
        max_pixels: u64,
    },
}

impl DecodeError {
    pub(crate) fn truncated(format: &'static str, detail: impl Into<String>) -> Self {
        Self::Truncated {
            format,
            detail: detail.into(),
        }
    }
    pub(crate) fn corrupt(format: &'static str, detail: impl Into<String>) -> Self {
        Self::Corrupt {
            format,
            detail: detail.into(),
        }
    }
    pub(crate) fn unsupported(format: &'static str, detail: impl Into<String>) -> Self {
        Self::Unsupported {
            format,
            detail: detail.into(),
        }
    }
}

/// File formats the decoder recognises (by content, never by file name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Jpeg,
    Png,
    WebP,
    Gif,
    Bmp,
    Tiff,
}

impl Format {
    /// Sniffs the format from the first bytes.
    pub fn detect(bytes: &[u8]) -> Option<Self> {
        match bytes {
            [0xFF, 0xD8, 0xFF, ..] => Some(Self::Jpeg),
            [0x89, b'P', b'N', b'G', ..] => Some(Self::Png),
            [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => Some(Self::WebP),
            [b'G', b'I', b'F', b'8', ..] => Some(Self::Gif),
            [b'B', b'M', ..] => Some(Self::Bmp),
            [b'I', b'I', 42, 0, ..] | [b'M', b'M', 0, 42, ..] => Some(Self::Tiff),
            _ => None,
        }
    }

    /// Short upper-case name used in messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Jpeg => "JPEG",
            Self::Png => "PNG",
            Self::WebP => "WebP",
            Self::Gif => "GIF",
            Self::Bmp => "BMP",
            Self::Tiff => "TIFF",
        }
    }

    fn image_format(self) -> image::ImageFormat {
        match self {
            Self::Jpeg => image::ImageFormat::Jpeg,
            Self::Png => image::ImageFormat::Png,
            Self::WebP => image::ImageFormat::WebP,
            Self::Gif => image::ImageFormat::Gif,
            Self::Bmp => image::ImageFormat::Bmp,
            Self::Tiff => image::ImageFormat::Tiff,
        }
    }
}

/// DCT-domain reduction applied by [`Decoder::decode_scaled`]: the result is
/// `ceil(size / denom)` on each side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub enum Scale {
    #[default]
    One,
    Half,
    Quarter,
    Eighth,
}

impl Scale {
    /// 1, 2, 4 or 8.
    pub fn denom(self) -> u32 {
        match self {
            Self::One => 1,
            Self::Half => 2,
            Self::Quarter => 4,
            Self::Eighth => 8,
        }
    }

    /// `ceil(dim / denom)`.
    pub fn apply(self, dim: u32) -> u32 {
        dim.div_ceil(self.denom())
    }

    /// The largest reduction keeping `full_w x full_h` at least `min_w x min_h`.
    pub fn largest_keeping(full_w: u32, full_h: u32, min_w: u32, min_h: u32) -> Self {
        [Self::Eighth, Self::Quarter, Self::Half]
            .into_iter()
            .find(|s| s.apply(full_w) >= min_w && s.apply(full_h) >= min_h)
            .unwrap_or(Self::One)
    }
}

/// What [`Decoder::probe`] reads from headers alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageInfo {
    pub format: Format,
    /// Upright size (after EXIF orientation).
    pub width: u32,
    pub height: u32,
    pub orientation: Orientation,
}

/// Default pixel limit: 20k x 20k.
pub const DEFAULT_MAX_PIXELS: u64 = 400_000_000;

/// Decodes image files to upright RGB8. Keep one per thread: it reuses its
/// scratch buffers between calls.
///
/// Conversions: grayscale is replicated to RGB; 16-bit samples are rounded to
/// 8 bits (`v / 257`); palettes are expanded; **alpha is dropped** (like
/// Pillow's `convert("RGB")`, which is what torchvision's loader does);
/// CMYK/YCCK JPEGs are read with Adobe's inverted convention (with or without
/// the APP14 marker, as Pillow does) and converted as `(255-C)(255-K)/255`;
/// EXIF orientation (all 8 values) is applied for JPEG, PNG, WebP and TIFF;
/// GIF gives its first frame.
///
/// Failure is always a [`DecodeError`]: a JPEG cut short is reported as
/// [`DecodeError::Truncated`] rather than painted grey.
pub struct Decoder {
    scratch: Vec<u8>,
    scratch2: Vec<u8>,
    max_pixels: u64,
    #[cfg(feature = "turbojpeg")]
    turbo: Option<crate::turbo::Turbo>,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("max_pixels", &self.max_pixels)
            .field("turbojpeg", &cfg!(feature = "turbojpeg"))
            .finish()
    }
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// A decoder with [`DEFAULT_MAX_PIXELS`].
    pub fn new() -> Self {
        Self {
            scratch: Vec::new(),
            scratch2: Vec::new(),
            max_pixels: DEFAULT_MAX_PIXELS,
            #[cfg(feature = "turbojpeg")]
            turbo: crate::turbo::Turbo::new(),
        }
    }

    /// Sets the largest `width * height` accepted (protects against
    /// decompression bombs).
    pub fn with_max_pixels(mut self, max_pixels: u64) -> Self {
        self.max_pixels = max_pixels;
        self
    }

    /// With the `turbojpeg` feature, `false` routes JPEGs through zune-jpeg
    /// instead (benchmarks, comparisons). No effect without the feature.
    pub fn with_turbojpeg(self, on: bool) -> Self {
        #[cfg(feature = "turbojpeg")]
        let out = Self {
            turbo: if on { crate::turbo::Turbo::new() } else { None },
            ..self
        };
        #[cfg(not(feature = "turbojpeg"))]
        let out = {
            let _ = on;
            self
        };
        out
    }

    /// The pixel limit.
    pub fn max_pixels(&self) -> u64 {
        self.max_pixels
    }

    /// True when JPEGs go through libjpeg-turbo (feature `turbojpeg` and the
    /// library initialised).
    pub fn uses_turbojpeg(&self) -> bool {
        #[cfg(feature = "turbojpeg")]
        {
            self.turbo.is_some()
        }
        #[cfg(not(feature = "turbojpeg"))]
        {
            false
        }
    }

    fn check_size(&self, width: u32, height: u32) -> Result<(), DecodeError> {
        if u64::from(width) * u64::from(height) > self.max_pixels {
            return Err(DecodeError::TooLarge {
                width,
                height,
                max_pixels: self.max_pixels,
            });
        }
        if width == 0 || height == 0 {
            return Err(DecodeError::corrupt("image", "zero width or height"));
        }
        Ok(())
    }

    /// Reads format, upright size and orientation from the headers.
    pub fn probe(&mut self, bytes: &[u8]) -> Result<ImageInfo, DecodeError> {
        let format = detect(bytes)?;
        if format == Format::Jpeg {
            let scan = jpeg::scan(bytes)?;
            let orientation = scan.exif.map(jpeg::exif_orientation).unwrap_or_default();
            let (width, height) = orientation.upright_size(scan.width, scan.height);
            return Ok(ImageInfo {
                format,
                width,
                height,
                orientation,
            });
        }
        let mut dec = image_decoder(bytes, format)?;
        let orientation = image_orientation(&mut dec);
        let (w, h) = dec.dimensions();
        let (width, height) = orientation.upright_size(w, h);
        Ok(ImageInfo {
            format,
            width,
            height,
            orientation,
        })
    }

    /// Decodes `bytes` (any supported format) into `out` as upright RGB8.
    pub fn decode(&mut self, bytes: &[u8], out: &mut RgbImage) -> Result<(), DecodeError> {
        self.decode_scaled(bytes, u32::MAX, u32::MAX, out)
            .map(|_| ())
    }

    /// Like [`decode`](Self::decode) but, for JPEG with the `turbojpeg`
    /// feature, decodes at the largest DCT reduction (1/2, 1/4, 1/8) that
    /// keeps the upright result at least `min_w x min_h`. Other formats, and
    /// builds without the feature, decode at full size ([`Scale::One`]).
    pub fn decode_scaled(
        &mut self,
        bytes: &[u8],
        min_w: u32,
        min_h: u32,
        out: &mut RgbImage,
    ) -> Result<Scale, DecodeError> {
        let format = detect(bytes)?;
        let guarded = catch_unwind(AssertUnwindSafe(|| {
            if format == Format::Jpeg {
                self.decode_jpeg(bytes, min_w, min_h, out)
            } else {
                self.decode_other(bytes, format, out).map(|()| Scale::One)
            }
        }));
        match guarded {
            Ok(r) => r,
            Err(_) => Err(DecodeError::corrupt(
                format.name(),
                "the decoder panicked on this input",
            )),
        }
    }

    fn decode_jpeg(
        &mut self,
        bytes: &[u8],
        min_w: u32,
        min_h: u32,
        out: &mut RgbImage,
    ) -> Result<Scale, DecodeError> {
        let scan = jpeg::scan(bytes)?;
        self.check_size(scan.width, scan.height)?;
        let orientation = scan.exif.map(jpeg::exif_orientation).unwrap_or_default();
        // the request is for the upright image; the scale applies to stored axes
        let (min_w, min_h) = if orientation.swaps_axes() {
            (min_h, min_w)
        } else {
            (min_w, min_h)
        };
        #[cfg(feature = "turbojpeg")]
        if let Some(turbo) = self.turbo.as_mut() {
            let target: &mut Vec<u8> = if orientation == Orientation::Normal {
                &mut out.data
            } else {
                &mut self.scratch
            };
            if let Some((w, h, scale)) = turbo.decode(bytes, &scan, min_w, min_h, target) {
                finish(orientation, w, h, &self.scratch, out);
                return Ok(scale);
            }
        }
        #[cfg(not(feature = "turbojpeg"))]
        let _ = (min_w, min_h);
        let (w, h) = if orientation == Orientation::Normal {
            jpeg::decode_zune(bytes, &mut out.data)?
        } else {
            jpeg::decode_zune(bytes, &mut self.scratch)?
        };
        finish(orientation, w, h, &self.scratch, out);
        Ok(Scale::One)
    }

    fn decode_other(
        &mut self,
        bytes: &[u8],
        format: Format,
        out: &mut RgbImage,
    ) -> Result<(), DecodeError> {
        let name = format.name();
        let mut dec = image_decoder(bytes, format)?;
        let orientation = image_orientation(&mut dec);
        let (w, h) = dec.dimensions();
        self.check_size(w, h)?;
        let color = dec.color_type();
        let total = usize::try_from(dec.total_bytes())
            .map_err(|_| DecodeError::unsupported(name, "image too large for memory"))?;
        self.scratch.resize(total, 0);
        dec.read_image(&mut self.scratch)
            .map_err(|e| image_error(name, e))?;
        let n = w as usize * h as usize;
        let target: &mut Vec<u8> = if orientation == Orientation::Normal {
            &mut out.data
        } else {
            &mut self.scratch2
        };
        target.resize(n * 3, 0);
        to_rgb8(&self.scratch, color, target)
            .map_err(|c| DecodeError::unsupported(name, format!("pixel type {c:?}")))?;
        if orientation == Orientation::Normal {
            out.width = w;
            out.height = h;
        } else {
            orient::apply(orientation, &self.scratch2, w, h, out);
        }
        Ok(())
    }
}

/// Sets `out`'s geometry after a decode of a `w x h` stored image whose
/// pixels are in `out.data` (upright case) or `stored` (otherwise).
fn finish(orientation: Orientation, w: u32, h: u32, stored: &[u8], out: &mut RgbImage) {
    if orientation == Orientation::Normal {
        out.width = w;
        out.height = h;
    } else {
        orient::apply(orientation, stored, w, h, out);
    }
}

fn detect(bytes: &[u8]) -> Result<Format, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    Format::detect(bytes)
        .ok_or_else(|| DecodeError::UnknownFormat(bytes[..bytes.len().min(8)].to_vec()))
}

fn image_error(format: &'static str, e: image::ImageError) -> DecodeError {
    use image::ImageError as E;
    match e {
        E::Unsupported(u) => DecodeError::unsupported(format, u.to_string()),
        E::Limits(l) => DecodeError::unsupported(format, l.to_string()),
        E::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            DecodeError::truncated(format, io.to_string())
        }
        other => {
            let msg = other.to_string();
            let lower = msg.to_ascii_lowercase();
            if lower.contains("eof") || lower.contains("end of") || lower.contains("truncat") {
                DecodeError::truncated(format, msg)
            } else {
                DecodeError::corrupt(format, msg)
            }
        }
    }
}

fn image_decoder(bytes: &[u8], format: Format) -> Result<impl ImageDecoder + '_, DecodeError> {
    image::ImageReader::with_format(Cursor::new(bytes), format.image_format())
        .into_decoder()
        .map_err(|e| image_error(format.name(), e))
}

fn image_orientation(dec: &mut impl ImageDecoder) -> Orientation {
    dec.orientation()
        .ok()
        .and_then(|o| Orientation::from_exif(u32::from(o.to_exif())))
        .unwrap_or_default()
}

fn to_rgb8(src: &[u8], color: image::ColorType, dst: &mut [u8]) -> Result<(), image::ColorType> {
    use image::ColorType as C;
    fn u16_to_u8(v: u16) -> u8 {
        ((u32::from(v) * 255 + 32767) / 65535) as u8
    }
    fn f32_to_u8(v: f32) -> u8 {
        (v.clamp(0.0, 1.0) * 255.0).round() as u8
    }
    let px = dst.chunks_exact_mut(3);
    match color {
        C::Rgb8 => dst.copy_from_slice(&src[..dst.len()]),
        C::Rgba8 => px
            .zip(src.chunks_exact(4))
            .for_each(|(d, s)| d.copy_from_slice(&s[..3])),
        C::L8 => px.zip(src).for_each(|(d, &s)| d.fill(s)),
        C::La8 => px.zip(src.chunks_exact(2)).for_each(|(d, s)| d.fill(s[0])),
        C::L16 | C::La16 | C::Rgb16 | C::Rgba16 => {
            let ch = usize::from(color.channel_count());
            for (d, s) in px.zip(src.chunks_exact(2 * ch)) {
                let v = |i: usize| u16_to_u8(u16::from_ne_bytes([s[2 * i], s[2 * i + 1]]));
                if ch >= 3 {
                    d.copy_from_slice(&[v(0), v(1), v(2)]);
                } else {
                    d.fill(v(0));
                }
            }
        }
        C::Rgb32F | C::Rgba32F => {
            let ch = usize::from(color.channel_count());
            for (d, s) in px.zip(src.chunks_exact(4 * ch)) {
                for (i, o) in d.iter_mut().enumerate() {
                    let b = [s[4 * i], s[4 * i + 1], s[4 * i + 2], s[4 * i + 3]];
                    *o = f32_to_u8(f32::from_ne_bytes(b));
                }
            }
        }
        other => return Err(other),
    }
    Ok(())
}
