//! The on-disk layout (version 1). All integers little-endian.
//!
//! ```text
//! 0       header (128 bytes, `Header`), rest of the first page zero
//! 4096    payloads, each starting on a 4096-byte boundary, in record order
//! T       record table: `count` x 32-byte `Record` (T is 64-byte aligned)
//! M       meta: class names and the skipped list (right after the table)
//! ```
//! The header holds crc32s of itself, the table and the meta block, and the
//! file length, so a truncated or damaged store is refused at open.

use bytemuck::{Pod, Zeroable};

/// First 8 bytes of every store.
pub const MAGIC: [u8; 8] = *b"BRGSTORE";
/// Layout version this build writes and reads.
pub const VERSION: u32 = 1;
/// Payload alignment (one page).
pub const PAGE: u64 = 4096;
pub(crate) const TABLE_ALIGN: u64 = 64;

/// Store header (first 128 bytes of the file).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
pub struct Header {
    pub magic: [u8; 8],
    /// Number of records.
    pub count: u64,
    /// Indexed samples that could not be packed (listed in the meta block).
    pub skipped: u64,
    /// Number of samples in the index the store was packed from.
    pub source_count: u64,
    /// `Index::fingerprint()` of that index.
    pub fingerprint: u64,
    pub table_offset: u64,
    pub table_len: u64,
    pub meta_offset: u64,
    pub meta_len: u64,
    /// Total file length.
    pub file_len: u64,
    pub version: u32,
    /// 0 = raw RGB8, 1 = JPEG.
    pub format: u32,
    pub max_side: u32,
    /// 0 = longer side bounded, 1 = shorter side bounded.
    pub side: u32,
    /// JPEG quality (0 for raw).
    pub quality: u32,
    pub table_crc: u32,
    pub meta_crc: u32,
    /// crc32 of these 128 bytes with this field zero.
    pub header_crc: u32,
    pub reserved: [u32; 4],
}

pub(crate) const HEADER_LEN: usize = std::mem::size_of::<Header>();
const _: () = assert!(HEADER_LEN == 128);

impl Header {
    pub(crate) fn compute_crc(&self) -> u32 {
        let mut h = *self;
        h.header_crc = 0;
        crc32fast::hash(bytemuck::bytes_of(&h))
    }
}

/// One record of the table (32 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
pub struct Record {
    /// Byte offset of the payload (a multiple of 4096).
    pub offset: u64,
    /// Payload length in bytes (`width * height * 3` for raw).
    pub len: u32,
    /// Stored (resized, upright) geometry.
    pub width: u32,
    pub height: u32,
    /// Class id.
    pub label: u32,
    /// `SampleId` in the index the store was packed from.
    pub source: u32,
    /// 0 train, 1 valid, 2 test.
    pub split: u8,
    /// [`FLAG_RESIZED`] and reserved bits.
    pub flags: u8,
    pub reserved: [u8; 2],
}

const _: () = assert!(std::mem::size_of::<Record>() == 32);

/// The source image was larger than `max_side` and was shrunk.
pub const FLAG_RESIZED: u8 = 1;

pub(crate) fn align_up(v: u64, a: u64) -> u64 {
    v.div_ceil(a) * a
}

/// An indexed sample that was not packed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// `SampleId` in the index.
    pub source: u32,
    /// Path relative to the dataset root.
    pub path: String,
    pub reason: String,
}

/// Meta block: `u32 n` + n x (`u32 len`, UTF-8) class names, then `u32 m` +
/// m x (`u32 source`, `u32 len`, path, `u32 len`, reason).
pub(crate) fn encode_meta(classes: &[String], skipped: &[Skipped]) -> Vec<u8> {
    let mut out = Vec::new();
    let str_ = |out: &mut Vec<u8>, s: &str| {
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    };
    out.extend_from_slice(&(classes.len() as u32).to_le_bytes());
    for c in classes {
        str_(&mut out, c);
    }
    out.extend_from_slice(&(skipped.len() as u32).to_le_bytes());
    for s in skipped {
        out.extend_from_slice(&s.source.to_le_bytes());
        str_(&mut out, &s.path);
        str_(&mut out, &s.reason);
    }
    out
}

pub(crate) fn decode_meta(mut b: &[u8]) -> Result<(Vec<String>, Vec<Skipped>), String> {
    fn u32_(b: &mut &[u8]) -> Result<u32, String> {
        let (head, rest) = b
            .split_first_chunk::<4>()
            .ok_or_else(|| "meta block ends early".to_string())?;
        *b = rest;
        Ok(u32::from_le_bytes(*head))
    }
    fn str_(b: &mut &[u8]) -> Result<String, String> {
        let n = u32_(b)? as usize;
        if b.len() < n {
            return Err("meta block ends inside a string".into());
        }
        let (s, rest) = b.split_at(n);
        *b = rest;
        String::from_utf8(s.to_vec()).map_err(|_| "meta string is not UTF-8".to_string())
    }
    let n = u32_(&mut b)? as usize;
    let mut classes = Vec::with_capacity(n.min(1 << 16));
    for _ in 0..n {
        classes.push(str_(&mut b)?);
    }
    let m = u32_(&mut b)? as usize;
    let mut skipped = Vec::with_capacity(m.min(1 << 16));
    for _ in 0..m {
        let source = u32_(&mut b)?;
        let path = str_(&mut b)?;
        let reason = str_(&mut b)?;
        skipped.push(Skipped {
            source,
            path,
            reason,
        });
    }
    if !b.is_empty() {
        return Err(format!("{} unexpected bytes after the meta block", b.len()));
    }
    Ok((classes, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trip_and_truncation() {
        let classes = vec!["apple_pie".to_string(), "ramen".to_string()];
        let skipped = vec![Skipped {
            source: 7,
            path: "images/ramen/1.jpg".into(),
            reason: "truncated JPEG data".into(),
        }];
        let m = encode_meta(&classes, &skipped);
        assert_eq!(decode_meta(&m).unwrap(), (classes, skipped));
        for cut in 0..m.len() {
            assert!(decode_meta(&m[..cut]).is_err(), "cut {cut}");
        }
    }
}
