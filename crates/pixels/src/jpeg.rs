//! JPEG container walking (EXIF, Adobe marker, truncation check) and the
//! zune-jpeg backend.

use crate::decode::DecodeError;
use crate::orient::Orientation;
use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;

/// What the marker walk found before the first scan.
#[derive(Debug, Clone, Default)]
pub(crate) struct JpegScan<'a> {
    /// TIFF payload of the first `APP1 "Exif\0\0"` segment.
    pub exif: Option<&'a [u8]>,
    /// Image size from the SOF segment.
    pub width: u32,
    pub height: u32,
}

/// Walks the markers of `bytes` up to the first SOS, and checks that an EOI
/// marker follows it (entropy-coded data cannot contain `FF D9`, so a file
/// without one was cut short: decoders would otherwise fill the rest of the
/// picture with grey).
pub(crate) fn scan(bytes: &[u8]) -> Result<JpegScan<'_>, DecodeError> {
    if bytes.len() < 4 || bytes[0] != 0xFF || bytes[1] != 0xD8 {
        return Err(DecodeError::corrupt("JPEG", "missing SOI marker"));
    }
    let mut out = JpegScan::default();
    let mut pos = 2usize;
    let sos = loop {
        // find the next 0xFF (tolerating stray bytes between segments)
        while pos < bytes.len() && bytes[pos] != 0xFF {
            pos += 1;
        }
        while pos < bytes.len() && bytes[pos] == 0xFF {
            pos += 1;
        }
        let Some(&marker) = bytes.get(pos) else {
            return Err(DecodeError::truncated(
                "JPEG",
                "file ends before the image data (no SOS marker)",
            ));
        };
        pos += 1;
        match marker {
            0x00 | 0x01 | 0xD0..=0xD8 => continue,
            0xD9 => {
                return Err(DecodeError::corrupt(
                    "JPEG",
                    "EOI marker before any image data",
                ))
            }
            _ => {}
        }
        let Some(len_bytes) = bytes.get(pos..pos + 2) else {
            return Err(DecodeError::truncated("JPEG", "file ends inside a marker"));
        };
        let len = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
        if len < 2 {
            return Err(DecodeError::corrupt(
                "JPEG",
                format!("marker 0xFF{marker:02X} has invalid length {len}"),
            ));
        }
        let Some(seg) = bytes.get(pos + 2..pos + len) else {
            return Err(DecodeError::truncated(
                "JPEG",
                format!("file ends inside marker 0xFF{marker:02X}"),
            ));
        };
        match marker {
            0xDA => break pos + len,
            0xE1 if out.exif.is_none() && seg.starts_with(b"Exif\0\0") => {
                out.exif = Some(&seg[6..]);
            }
            // SOF0..SOF15 except DHT (C4), JPG (C8), DAC (CC)
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) && seg.len() >= 6 => {
                out.height = u32::from(u16::from_be_bytes([seg[1], seg[2]]));
                out.width = u32::from(u16::from_be_bytes([seg[3], seg[4]]));
            }
            _ => {}
        }
        pos += len;
    };
    if out.width == 0 || out.height == 0 {
        return Err(DecodeError::corrupt(
            "JPEG",
            "no frame header (SOF) with a non-zero size",
        ));
    }
    if !has_eoi_after(bytes, sos) {
        return Err(DecodeError::truncated(
            "JPEG",
            "no EOI marker after the image data: the file was cut short",
        ));
    }
    Ok(out)
}

fn has_eoi_after(bytes: &[u8], start: usize) -> bool {
    let tail = &bytes[start.min(bytes.len())..];
    // Normally the very last bytes; trailing garbage after EOI is tolerated.
    tail.windows(2).rev().any(|w| w == [0xFF, 0xD9])
}

/// Orientation from an EXIF TIFF payload; unreadable EXIF counts as upright
/// (the pixels themselves are still fine).
pub(crate) fn exif_orientation(tiff: &[u8]) -> Orientation {
    let Ok(exif) = exif::Reader::new().read_raw(tiff.to_vec()) else {
        return Orientation::Normal;
    };
    exif.get_field(exif::Tag::Orientation, exif::In::PRIMARY)
        .and_then(|f| f.value.get_uint(0))
        .and_then(Orientation::from_exif)
        .unwrap_or_default()
}

fn zune_error(e: zune_jpeg::errors::DecodeErrors) -> DecodeError {
    let msg = format!("{e:?}");
    if msg.contains("Premature end") || msg.contains("xhausted") || msg.contains("EOF") {
        DecodeError::truncated("JPEG", msg)
    } else if msg.contains("DAC") || msg.contains("rithmetic") {
        // Valid files (`cjpeg -arithmetic`, `jpegtran -arithmetic`), not corrupt ones.
        DecodeError::unsupported(
            "JPEG",
            "arithmetic-coded JPEG: the pure-Rust decoder reads Huffman-coded JPEGs only; \
             build with the `turbojpeg` feature, or re-encode the file (e.g. `jpegtran -optimize`)",
        )
    } else if msg.contains("not supported") || msg.contains("nsupported") {
        DecodeError::unsupported("JPEG", msg)
    } else {
        DecodeError::corrupt("JPEG", msg)
    }
}

/// Decodes with zune-jpeg into `out` (RGB8, stored orientation, `w*h*3`
/// bytes). Strict mode first; the lenient decoder is only accepted for the
/// harmless "extra bytes between headers" complaint, since its other
/// recoveries paint the rest of the picture grey.
pub(crate) fn decode_zune(bytes: &[u8], out: &mut Vec<u8>) -> Result<(u32, u32), DecodeError> {
    match decode_zune_mode(bytes, out, true) {
        Ok(wh) => Ok(wh),
        Err(e) if format!("{e}").contains("between headers") => decode_zune_mode(bytes, out, false),
        Err(e) => Err(e),
    }
}

fn decode_zune_mode(
    bytes: &[u8],
    out: &mut Vec<u8>,
    strict: bool,
) -> Result<(u32, u32), DecodeError> {
    let base = DecoderOptions::default()
        .set_strict_mode(strict)
        .set_max_width(usize::from(u16::MAX))
        .set_max_height(usize::from(u16::MAX));
    let mut dec = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), base);
    dec.decode_headers().map_err(zune_error)?;
    let input = dec
        .input_colorspace()
        .ok_or_else(|| DecodeError::corrupt("JPEG", "no colour space after headers"))?;
    let (w, h) = dec
        .dimensions()
        .ok_or_else(|| DecodeError::corrupt("JPEG", "no dimensions after headers"))?;
    let n = w * h;
    // CMYK is read with Adobe's inverted convention (stored = 255 - ink)
    // whether or not the APP14 marker is there, as Pillow does ("assume adobe
    // conventions"); YCCK exists only with the marker. zune-jpeg then
    // computes R = (255-C)(255-K)/255 like Pillow's cmyk2rgb.
    let out_cs = match input {
        ColorSpace::YCbCr
        | ColorSpace::RGB
        | ColorSpace::Luma
        | ColorSpace::YCCK
        | ColorSpace::CMYK => ColorSpace::RGB,
        other => {
            return Err(DecodeError::unsupported(
                "JPEG",
                format!("colour space {other:?}"),
            ))
        }
    };
    dec.set_options(base.jpeg_set_out_colorspace(out_cs));
    let len = dec
        .output_buffer_size()
        .ok_or_else(|| DecodeError::corrupt("JPEG", "no output size after headers"))?;
    if len != n * out_cs.num_components() {
        return Err(DecodeError::unsupported(
            "JPEG",
            format!("unexpected output size {len} for {w}x{h} {out_cs:?}"),
        ));
    }
    out.resize(len, 0);
    dec.decode_into(out).map_err(zune_error)?;
    let dim =
        |v: usize| u32::try_from(v).map_err(|_| DecodeError::corrupt("JPEG", "size overflow"));
    Ok((dim(w)?, dim(h)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_rejects_missing_soi_and_truncation() {
        assert!(scan(b"not a jpeg").is_err());
        // SOI then a segment whose length runs past the end
        let e = scan(&[0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x40, 1, 2]).unwrap_err();
        assert!(matches!(e, DecodeError::Truncated { .. }), "{e}");
    }
}
