//! Header probing: format, width and height from the first bytes of a file,
//! without decoding any pixels.
//!
//! JPEG (walks the marker segments to the first SOF), PNG (IHDR), WebP
//! (VP8/VP8L/VP8X), GIF and BMP are parsed by hand; TIFF goes through the
//! `image` crate's header reader.

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

/// A recognised image container format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ImageFormat {
    Jpeg,
    Png,
    WebP,
    Gif,
    Bmp,
    Tiff,
}

impl ImageFormat {
    /// Lower-case name, as used in reports.
    pub fn name(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "jpeg",
            ImageFormat::Png => "png",
            ImageFormat::WebP => "webp",
            ImageFormat::Gif => "gif",
            ImageFormat::Bmp => "bmp",
            ImageFormat::Tiff => "tiff",
        }
    }

    /// The format a file extension claims (case-insensitive), if any.
    pub fn from_extension(ext: &str) -> Option<ImageFormat> {
        match ext.to_ascii_lowercase().as_str() {
            "jpg" | "jpeg" | "jpe" | "jfif" => Some(ImageFormat::Jpeg),
            "png" => Some(ImageFormat::Png),
            "webp" => Some(ImageFormat::WebP),
            "gif" => Some(ImageFormat::Gif),
            "bmp" => Some(ImageFormat::Bmp),
            "tif" | "tiff" => Some(ImageFormat::Tiff),
            _ => None,
        }
    }

    /// Detects the format from the magic bytes at the start of a file.
    pub fn from_magic(head: &[u8]) -> Option<ImageFormat> {
        if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(ImageFormat::Jpeg)
        } else if head.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(ImageFormat::Png)
        } else if head.len() >= 12 && &head[0..4] == b"RIFF" && &head[8..12] == b"WEBP" {
            Some(ImageFormat::WebP)
        } else if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
            Some(ImageFormat::Gif)
        } else if head.starts_with(b"BM") && head.len() >= 14 {
            Some(ImageFormat::Bmp)
        } else if head.starts_with(b"II*\0") || head.starts_with(b"MM\0*") {
            Some(ImageFormat::Tiff)
        } else {
            None
        }
    }
}

impl fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a header probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub format: ImageFormat,
    pub width: u32,
    pub height: u32,
    /// File length in bytes.
    pub file_len: u64,
}

/// Why a probe failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeError {
    /// The file does not exist.
    Missing,
    /// The file could not be opened or read.
    Unreadable(String),
    /// The file has zero bytes.
    Empty,
    /// The first bytes are not any known image format.
    WrongMagic,
    /// The format was recognised but the header is truncated or malformed.
    BadHeader { format: ImageFormat, reason: String },
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeError::Missing => f.write_str("file is missing"),
            ProbeError::Unreadable(e) => write!(f, "file is unreadable: {e}"),
            ProbeError::Empty => f.write_str("file is empty"),
            ProbeError::WrongMagic => f.write_str("content is not a recognised image format"),
            ProbeError::BadHeader { format, reason } => write!(f, "bad {format} header: {reason}"),
        }
    }
}

impl std::error::Error for ProbeError {}

fn io_to_probe(e: io::Error) -> ProbeError {
    match e.kind() {
        io::ErrorKind::NotFound => ProbeError::Missing,
        _ => ProbeError::Unreadable(e.to_string()),
    }
}

fn bad(format: ImageFormat, reason: impl Into<String>) -> ProbeError {
    ProbeError::BadHeader {
        format,
        reason: reason.into(),
    }
}

/// Probes one file: format from the magic bytes, geometry from the header.
///
/// Never decodes pixels and never panics; every failure is a [`ProbeError`].
pub fn probe_file(path: &Path) -> Result<Probe, ProbeError> {
    let file = File::open(path).map_err(io_to_probe)?;
    let meta = file.metadata().map_err(io_to_probe)?;
    if !meta.is_file() {
        return Err(ProbeError::Unreadable("not a regular file".into()));
    }
    let file_len = meta.len();
    if file_len == 0 {
        return Err(ProbeError::Empty);
    }
    let mut r = BufReader::with_capacity(8192, file);
    let mut head = [0u8; 32];
    let n = read_up_to(&mut r, &mut head).map_err(io_to_probe)?;
    let head = &head[..n];
    let format = ImageFormat::from_magic(head).ok_or(ProbeError::WrongMagic)?;
    let (width, height) = match format {
        ImageFormat::Jpeg => {
            r.seek(SeekFrom::Start(2)).map_err(io_to_probe)?;
            jpeg_dims(&mut r)?
        }
        ImageFormat::Png => png_dims(head)?,
        ImageFormat::WebP => {
            let mut buf = [0u8; 30];
            r.seek(SeekFrom::Start(0)).map_err(io_to_probe)?;
            let n = read_up_to(&mut r, &mut buf).map_err(io_to_probe)?;
            webp_dims(&buf[..n])?
        }
        ImageFormat::Gif => gif_dims(head)?,
        ImageFormat::Bmp => bmp_dims(head)?,
        ImageFormat::Tiff => tiff_dims(path)?,
    };
    Ok(Probe {
        format,
        width,
        height,
        file_len,
    })
}

fn read_up_to<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn be16(b: &[u8]) -> u32 {
    u32::from(u16::from_be_bytes([b[0], b[1]]))
}
fn le16(b: &[u8]) -> u32 {
    u32::from(u16::from_le_bytes([b[0], b[1]]))
}

/// Walks JPEG marker segments (reader positioned just after SOI) to the first
/// start-of-frame marker.
fn jpeg_dims<R: Read + Seek>(r: &mut BufReader<R>) -> Result<(u32, u32), ProbeError> {
    let f = ImageFormat::Jpeg;
    let mut byte = [0u8; 1];
    let mut read_byte = |r: &mut BufReader<R>| -> Result<u8, ProbeError> {
        match read_up_to(r, &mut byte) {
            Ok(1) => Ok(byte[0]),
            Ok(_) => Err(bad(f, "truncated before a start-of-frame marker")),
            Err(e) => Err(ProbeError::Unreadable(e.to_string())),
        }
    };
    // Bounded: a header with more segments than this is not a real JPEG.
    for _ in 0..100_000 {
        let b = read_byte(r)?;
        if b != 0xFF {
            return Err(bad(f, format!("expected a marker, found byte 0x{b:02X}")));
        }
        let mut m = read_byte(r)?;
        while m == 0xFF {
            m = read_byte(r)?;
        }
        match m {
            0xD8 | 0x01 | 0xD0..=0xD7 => continue,
            0x00 => return Err(bad(f, "stray 0xFF00 in header")),
            0xD9 => return Err(bad(f, "end of image before a start-of-frame marker")),
            0xDA => return Err(bad(f, "scan data before a start-of-frame marker")),
            _ => {}
        }
        let mut len = [0u8; 2];
        if read_up_to(r, &mut len).map_err(io_to_probe)? != 2 {
            return Err(bad(f, "truncated segment length"));
        }
        let len = be16(&len);
        if len < 2 {
            return Err(bad(f, format!("segment length {len} < 2")));
        }
        let is_sof = matches!(m, 0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF);
        if is_sof {
            let mut sof = [0u8; 5];
            if len < 7 || read_up_to(r, &mut sof).map_err(io_to_probe)? != 5 {
                return Err(bad(f, "truncated start-of-frame segment"));
            }
            return Ok((be16(&sof[3..5]), be16(&sof[1..3])));
        }
        r.seek_relative(i64::from(len) - 2).map_err(io_to_probe)?;
    }
    Err(bad(f, "too many segments before a start-of-frame marker"))
}

fn png_dims(head: &[u8]) -> Result<(u32, u32), ProbeError> {
    let f = ImageFormat::Png;
    if head.len() < 24 {
        return Err(bad(f, "truncated before the IHDR chunk"));
    }
    if &head[12..16] != b"IHDR" {
        return Err(bad(f, "first chunk is not IHDR"));
    }
    let w = u32::from_be_bytes([head[16], head[17], head[18], head[19]]);
    let h = u32::from_be_bytes([head[20], head[21], head[22], head[23]]);
    Ok((w, h))
}

fn webp_dims(b: &[u8]) -> Result<(u32, u32), ProbeError> {
    let f = ImageFormat::WebP;
    if b.len() < 16 {
        return Err(bad(f, "truncated before the first chunk"));
    }
    match &b[12..16] {
        b"VP8 " => {
            if b.len() < 30 {
                return Err(bad(f, "truncated VP8 frame header"));
            }
            if b[23..26] != [0x9D, 0x01, 0x2A] {
                return Err(bad(f, "missing VP8 start code"));
            }
            Ok((le16(&b[26..28]) & 0x3FFF, le16(&b[28..30]) & 0x3FFF))
        }
        b"VP8L" => {
            if b.len() < 25 {
                return Err(bad(f, "truncated VP8L header"));
            }
            if b[20] != 0x2F {
                return Err(bad(f, "missing VP8L signature"));
            }
            let bits = u32::from_le_bytes([b[21], b[22], b[23], b[24]]);
            Ok(((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1))
        }
        b"VP8X" => {
            if b.len() < 30 {
                return Err(bad(f, "truncated VP8X header"));
            }
            let w = u32::from_le_bytes([b[24], b[25], b[26], 0]) + 1;
            let h = u32::from_le_bytes([b[27], b[28], b[29], 0]) + 1;
            Ok((w, h))
        }
        other => Err(bad(
            f,
            format!("unknown first chunk {:?}", String::from_utf8_lossy(other)),
        )),
    }
}

fn gif_dims(head: &[u8]) -> Result<(u32, u32), ProbeError> {
    if head.len() < 10 {
        return Err(bad(ImageFormat::Gif, "truncated logical screen descriptor"));
    }
    Ok((le16(&head[6..8]), le16(&head[8..10])))
}

fn bmp_dims(head: &[u8]) -> Result<(u32, u32), ProbeError> {
    let f = ImageFormat::Bmp;
    if head.len() < 26 {
        return Err(bad(f, "truncated DIB header"));
    }
    let dib = u32::from_le_bytes([head[14], head[15], head[16], head[17]]);
    if dib == 12 {
        return Ok((le16(&head[18..20]), le16(&head[20..22])));
    }
    if dib < 40 {
        return Err(bad(f, format!("unknown DIB header size {dib}")));
    }
    let w = i32::from_le_bytes([head[18], head[19], head[20], head[21]]);
    let h = i32::from_le_bytes([head[22], head[23], head[24], head[25]]);
    Ok((w.unsigned_abs(), h.unsigned_abs()))
}

fn tiff_dims(path: &Path) -> Result<(u32, u32), ProbeError> {
    let reader = image::ImageReader::open(path).map_err(io_to_probe)?;
    let reader = reader.with_guessed_format().map_err(io_to_probe)?;
    reader
        .into_dimensions()
        .map_err(|e| bad(ImageFormat::Tiff, e.to_string()))
}
