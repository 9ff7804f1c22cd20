//! libjpeg-turbo backend (feature `turbojpeg`): DCT-domain scaling.

use crate::decode::Scale;
use crate::jpeg::JpegScan;
use turbojpeg::{Colorspace, Decompressor, Image, PixelFormat};

pub(crate) struct Turbo {
    dec: Decompressor,
}

impl Turbo {
    /// `None` when the library cannot be initialised (the zune backend is
    /// used then).
    pub(crate) fn new() -> Option<Self> {
        Decompressor::new().ok().map(|dec| Self { dec })
    }

    /// Decodes at the largest reduction keeping the stored-orientation size
    /// at least `min_w x min_h` into `out`; returns `(w, h, scale)`.
    ///
    /// `None` means "let zune-jpeg do it": CMYK/YCCK (Pillow-compatible
    /// conversion lives there) and any error or libjpeg warning (TurboJPEG
    /// reports warnings such as "premature end of data" as failures; zune's
    /// strict mode then decides and names the problem).
    pub(crate) fn decode(
        &mut self,
        bytes: &[u8],
        scan: &JpegScan<'_>,
        min_w: u32,
        min_h: u32,
        out: &mut Vec<u8>,
    ) -> Option<(u32, u32, Scale)> {
        let header = self.dec.read_header(bytes).ok()?;
        if matches!(header.colorspace, Colorspace::CMYK | Colorspace::YCCK) {
            return None;
        }
        let (fw, fh) = (
            u32::try_from(header.width).ok()?,
            u32::try_from(header.height).ok()?,
        );
        if (fw, fh) != (scan.width, scan.height) {
            return None;
        }
        let scale = Scale::largest_keeping(fw, fh, min_w, min_h);
        let (w, h) = (scale.apply(fw), scale.apply(fh));
        let len = w as usize * h as usize * 3;
        out.resize(len, 0);
        let image = Image {
            pixels: &mut out[..],
            width: w as usize,
            pitch: w as usize * 3,
            height: h as usize,
            format: PixelFormat::RGB,
        };
        // TurboJPEG picks the largest scaling factor whose result fits in the
        // requested size: ceil(dim / denom) is exactly the 1/denom factor.
        self.dec.decompress(bytes, image).ok()?;
        Some((w, h, scale))
    }
}
