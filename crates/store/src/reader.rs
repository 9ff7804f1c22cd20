//! Opening a store: validate once, then every `get` is a slice of the map.

use crate::error::StoreError;
use crate::format::{
    decode_meta, Header, Record, Skipped, HEADER_LEN, MAGIC, PAGE, TABLE_ALIGN, VERSION,
};
use brigade_index::{ClassId, Index, SampleId, Split};
use brigade_pixels::ImageView;
use memmap2::Mmap;
use std::fs::File;
use std::path::{Path, PathBuf};

/// How payloads are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreFormat {
    /// Decoded RGB8 HWC pixels: reads are zero-copy views.
    Raw,
    /// Re-encoded JPEG at this quality: smaller, decoded by the reader.
    Jpeg { quality: u8 },
}

/// Which side `max_side` bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Side {
    /// The longer side is at most `max_side` (the whole image fits a square).
    #[default]
    Longer,
    /// The shorter side is at most `max_side` (as torchvision `Resize(int)`).
    Shorter,
}

/// The pixels of one record, borrowed from the map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload<'a> {
    /// RGB8 HWC, `width * height * 3` bytes.
    Raw(ImageView<'a>),
    /// An encoded file (JPEG) to hand to `brigade_pixels::Decoder`.
    Encoded(&'a [u8]),
}

/// One record of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredImage<'a> {
    pub label: ClassId,
    pub split: Split,
    /// Sample id in the index the store was packed from.
    pub source: SampleId,
    /// Stored geometry (after resizing), also for encoded payloads.
    pub width: u32,
    pub height: u32,
    pub payload: Payload<'a>,
}

/// A memory-mapped store. `Send + Sync`: share one behind an `Arc`.
///
/// The map assumes nobody rewrites the file while it is open (`brigade
/// pack` never does: it writes a new file and renames it over the old one).
pub struct Store {
    path: PathBuf,
    map: Mmap,
    header: Header,
    records: Vec<Record>,
    labels: Vec<ClassId>,
    classes: Vec<String>,
    skipped: Vec<Skipped>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("len", &self.records.len())
            .field("format", &self.format())
            .field("max_side", &self.header.max_side)
            .finish()
    }
}

pub(crate) fn split_from(v: u8) -> Option<Split> {
    match v {
        0 => Some(Split::Train),
        1 => Some(Split::Valid),
        2 => Some(Split::Test),
        _ => None,
    }
}

pub(crate) fn split_to(s: Split) -> u8 {
    match s {
        Split::Train => 0,
        Split::Valid => 1,
        Split::Test => 2,
    }
}

impl Store {
    /// Maps `path` and validates the header, checksums and every record's
    /// bounds (once; `get` then does no checking beyond a range test).
    pub fn open(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(StoreError::io(&path))?;
        let len = file.metadata().map_err(StoreError::io(&path))?.len();
        if len < HEADER_LEN as u64 {
            let mut head = [0u8; 8];
            let n = std::fs::read(&path)
                .map_err(StoreError::io(&path))?
                .iter()
                .take(8)
                .enumerate()
                .map(|(i, &b)| head[i] = b)
                .count();
            if n == 0 || MAGIC.starts_with(&head[..n]) {
                return Err(StoreError::Truncated {
                    path,
                    len,
                    expected: HEADER_LEN as u64,
                });
            }
            return Err(StoreError::NotAStore { path });
        }
        // SAFETY: the file is opened read-only and stores are never modified
        // in place (writers create a new file and rename it).
        let map = unsafe { Mmap::map(&file) }.map_err(StoreError::io(&path))?;
        let header: Header = bytemuck::pod_read_unaligned(&map[..HEADER_LEN]);
        let corrupt = |detail: String| StoreError::Corrupt {
            path: path.clone(),
            detail,
        };
        if header.magic != MAGIC {
            if map[..HEADER_LEN].iter().all(|&b| b == 0) {
                return Err(StoreError::Unfinished { path });
            }
            return Err(StoreError::NotAStore { path });
        }
        if header.compute_crc() != header.header_crc {
            return Err(corrupt("header checksum mismatch".into()));
        }
        if header.version != VERSION {
            return Err(StoreError::UnsupportedVersion {
                path,
                found: header.version,
                supported: VERSION,
            });
        }
        if header.file_len != len {
            return Err(StoreError::Truncated {
                path,
                len,
                expected: header.file_len,
            });
        }
        let format = match (header.format, header.quality) {
            (0, _) => StoreFormat::Raw,
            (1, q @ 1..=100) => StoreFormat::Jpeg { quality: q as u8 },
            (f, q) => return Err(corrupt(format!("unknown format {f} (quality {q})"))),
        };
        if header.side > 1 {
            return Err(corrupt(format!("unknown side {}", header.side)));
        }
        let rec_size = std::mem::size_of::<Record>() as u64;
        let table_ok = header.table_offset.is_multiple_of(TABLE_ALIGN)
            && header.table_offset >= PAGE
            && header.count.checked_mul(rec_size) == Some(header.table_len)
            && header
                .table_offset
                .checked_add(header.table_len)
                .is_some_and(|e| e <= header.meta_offset)
            && header
                .meta_offset
                .checked_add(header.meta_len)
                .is_some_and(|e| e <= len);
        if !table_ok {
            return Err(corrupt("record table or meta block out of bounds".into()));
        }
        let table =
            &map[header.table_offset as usize..(header.table_offset + header.table_len) as usize];
        if crc32fast::hash(table) != header.table_crc {
            return Err(corrupt("record table checksum mismatch".into()));
        }
        let meta =
            &map[header.meta_offset as usize..(header.meta_offset + header.meta_len) as usize];
        if crc32fast::hash(meta) != header.meta_crc {
            return Err(corrupt("meta block checksum mismatch".into()));
        }
        let (classes, skipped) = decode_meta(meta).map_err(&corrupt)?;
        if skipped.len() as u64 != header.skipped {
            return Err(corrupt(
                "skipped count disagrees with the skipped list".into(),
            ));
        }
        let records: Vec<Record> = bytemuck::try_cast_slice::<u8, Record>(table)
            .map(<[Record]>::to_vec)
            .or_else(|_| {
                // unaligned map (cannot happen with page-aligned maps): copy
                Ok::<_, StoreError>(
                    table
                        .chunks_exact(rec_size as usize)
                        .map(bytemuck::pod_read_unaligned)
                        .collect(),
                )
            })?;
        let mut prev_end = PAGE;
        for (i, r) in records.iter().enumerate() {
            let bad = |what: &str| corrupt(format!("record {i}: {what}"));
            if r.offset % PAGE != 0 || r.offset < prev_end {
                return Err(bad("payload offset misaligned or overlapping"));
            }
            let end = r.offset + u64::from(r.len);
            if end > header.table_offset {
                return Err(bad("payload runs past the payload area"));
            }
            prev_end = end;
            if r.width == 0 || r.height == 0 || r.len == 0 {
                return Err(bad("empty image"));
            }
            if format == StoreFormat::Raw
                && u64::from(r.len) != u64::from(r.width) * u64::from(r.height) * 3
            {
                return Err(bad("raw payload length is not width*height*3"));
            }
            if split_from(r.split).is_none() {
                return Err(bad("unknown split"));
            }
            if r.label as usize >= classes.len() {
                return Err(bad("label outside the class list"));
            }
            if u64::from(r.source) >= header.source_count {
                return Err(bad("source id outside the index"));
            }
        }
        let labels = records.iter().map(|r| r.label).collect();
        Ok(Store {
            path,
            map,
            header,
            records,
            labels,
            classes,
            skipped,
        })
    }

    /// Like [`open`](Self::open), and refuses a store packed from another
    /// version of the dataset than `index`.
    pub fn open_for(path: impl AsRef<Path>, index: &Index) -> Result<Store, StoreError> {
        let store = Self::open(path)?;
        let fp = index.fingerprint();
        if store.header.fingerprint != fp || store.header.source_count != index.samples.len() as u64
        {
            return Err(StoreError::FingerprintMismatch {
                path: store.path,
                store: store.header.fingerprint,
                index: fp,
            });
        }
        Ok(store)
    }

    /// Record `i` (0-based position in the store, not the sample id).
    #[inline]
    pub fn get(&self, i: usize) -> Result<StoredImage<'_>, StoreError> {
        let out_of_range = || StoreError::OutOfRange {
            path: self.path.clone(),
            index: i,
            len: self.records.len(),
        };
        let r = self.records.get(i).ok_or_else(out_of_range)?;
        let start = r.offset as usize;
        let data = self
            .map
            .get(start..start + r.len as usize)
            .ok_or_else(out_of_range)?;
        let payload = if self.header.format == 0 {
            Payload::Raw(ImageView {
                width: r.width,
                height: r.height,
                data,
            })
        } else {
            Payload::Encoded(data)
        };
        Ok(StoredImage {
            label: r.label,
            split: split_from(r.split).unwrap_or(Split::Train),
            source: r.source,
            width: r.width,
            height: r.height,
            payload,
        })
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Label of every record, in order.
    pub fn labels(&self) -> &[ClassId] {
        &self.labels
    }

    /// Positions (for [`get`](Self::get)) of the records in `split`.
    pub fn ids_in(&self, split: Split) -> Vec<usize> {
        let s = split_to(split);
        self.records
            .iter()
            .enumerate()
            .filter(|(_, r)| r.split == s)
            .map(|(i, _)| i)
            .collect()
    }

    /// Class names (label `i` is `classes()[i]`).
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    pub fn max_side(&self) -> u32 {
        self.header.max_side
    }

    pub fn side(&self) -> Side {
        if self.header.side == 1 {
            Side::Shorter
        } else {
            Side::Longer
        }
    }

    pub fn format(&self) -> StoreFormat {
        match self.header.format {
            0 => StoreFormat::Raw,
            _ => StoreFormat::Jpeg {
                quality: self.header.quality as u8,
            },
        }
    }

    /// `Index::fingerprint()` of the index the store was packed from.
    pub fn fingerprint(&self) -> u64 {
        self.header.fingerprint
    }

    /// Samples of the index that could not be packed, with reasons.
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }

    /// Number of samples in the source index.
    pub fn source_count(&self) -> usize {
        self.header.source_count as usize
    }

    /// The raw record table.
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Total bytes of the file.
    pub fn file_len(&self) -> u64 {
        self.header.file_len
    }

    /// Tells the kernel reads will be random (no read-ahead), as in a
    /// shuffled epoch over a store larger than memory.
    pub fn advise_random(&self) -> Result<(), StoreError> {
        self.map
            .advise(memmap2::Advice::Random)
            .map_err(StoreError::io(&self.path))
    }

    /// Asks the kernel to page the whole store in ahead of use.
    pub fn advise_willneed(&self) -> Result<(), StoreError> {
        self.map
            .advise(memmap2::Advice::WillNeed)
            .map_err(StoreError::io(&self.path))
    }
}
