//! Packing: decode + resize (+ encode) in parallel, one ordered writer,
//! checkpoints for resuming, atomic rename at the end.

use crate::error::StoreError;
use crate::format::{
    align_up, encode_meta, Header, Record, Skipped, FLAG_RESIZED, HEADER_LEN, MAGIC, PAGE,
    TABLE_ALIGN, VERSION,
};
use crate::reader::{split_to, Side, StoreFormat};
use brigade_index::{Index, Sample};
use brigade_pixels::{encode_jpeg, fit_longer, fit_shorter, Decoder, Filter, Resizer, RgbImage};
use rayon::prelude::*;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How to pack.
#[derive(Debug, Clone)]
pub struct PackOptions {
    /// Bound on the longer (or shorter, see `side`) side; images are shrunk
    /// (antialiased bilinear), never enlarged.
    pub max_side: u32,
    pub side: Side,
    pub format: StoreFormat,
    /// Worker threads (0 = one per core).
    pub threads: usize,
    /// Samples decoded in parallel before the writer takes them, in order.
    pub chunk: usize,
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// Minimum time between checkpoints of the `.partial` file.
    pub checkpoint_every: Duration,
    /// Set to stop at the next chunk boundary (Ctrl-C): the partial store is
    /// checkpointed and the call returns [`StoreError::Interrupted`].
    pub cancel: Option<Arc<AtomicBool>>,
    /// Stop as if interrupted once at least this many samples are done
    /// (time-boxed packing in several runs; tests).
    pub stop_after: Option<usize>,
}

impl Default for PackOptions {
    fn default() -> Self {
        PackOptions {
            max_side: 288,
            side: Side::Longer,
            format: StoreFormat::Raw,
            threads: 0,
            chunk: 256,
            progress: false,
            checkpoint_every: Duration::from_secs(20),
            cancel: None,
            stop_after: None,
        }
    }
}

/// What a finished pack did.
#[derive(Debug, Clone)]
pub struct PackReport {
    pub path: PathBuf,
    /// Records written.
    pub packed: usize,
    /// Samples left out, with reasons (also in the store and in
    /// `STORE.skipped.txt`).
    pub skipped: Vec<Skipped>,
    /// Size of the store file.
    pub bytes: u64,
    /// Sample the run resumed at (`None`: started from scratch).
    pub resumed_at: Option<usize>,
    pub elapsed: Duration,
}

/// `STORE.partial`: where a pack in progress writes.
pub fn partial_path(out: &Path) -> PathBuf {
    suffixed(out, ".partial")
}

/// `STORE.skipped.txt`: the skipped list of the last pack.
pub fn skipped_path(out: &Path) -> PathBuf {
    suffixed(out, ".skipped.txt")
}

fn checkpoint_path(out: &Path) -> PathBuf {
    suffixed(out, ".partial.ckpt")
}

fn suffixed(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// One prepared sample, ready for the writer.
struct Prepared {
    width: u32,
    height: u32,
    flags: u8,
    payload: Vec<u8>,
}

#[derive(Default)]
struct Worker {
    decoder: Decoder,
    resizer: Resizer,
    file: Vec<u8>,
    decoded: RgbImage,
    resized: RgbImage,
}

/// Decodes and resizes one image exactly as [`pack`] does: upright RGB8,
/// shrunk so `opts.side` is at most `opts.max_side` (sizes from
/// [`fit_longer`]/[`fit_shorter`]). Returns whether it was shrunk.
pub fn prepare_image(
    decoder: &mut Decoder,
    resizer: &mut Resizer,
    bytes: &[u8],
    max_side: u32,
    side: Side,
    scratch: &mut RgbImage,
    out: &mut RgbImage,
) -> Result<bool, String> {
    let info = decoder.probe(bytes).map_err(|e| e.to_string())?;
    let fit = match side {
        Side::Longer => fit_longer,
        Side::Shorter => fit_shorter,
    };
    let (w, h) = fit(info.width, info.height, max_side);
    decoder
        .decode_scaled(bytes, w, h, scratch)
        .map_err(|e| e.to_string())?;
    if (scratch.width, scratch.height) == (w, h) {
        std::mem::swap(scratch, out);
    } else {
        resizer
            .resize(scratch.view(), w, h, Filter::Bilinear, out)
            .map_err(|e| e.to_string())?;
    }
    Ok((w, h) != (info.width, info.height))
}

fn prepare(
    index: &Index,
    sample: &Sample,
    opts: &PackOptions,
    w: &mut Worker,
) -> Result<Prepared, String> {
    let path = index.abs_path(sample);
    w.file.clear();
    File::open(&path)
        .and_then(|mut f| f.read_to_end(&mut w.file))
        .map_err(|e| format!("cannot read: {e}"))?;
    if w.file.len() as u64 != sample.file_len {
        return Err(format!(
            "file changed since indexing ({} bytes, the index says {}); re-index",
            w.file.len(),
            sample.file_len
        ));
    }
    let resized = prepare_image(
        &mut w.decoder,
        &mut w.resizer,
        &w.file,
        opts.max_side,
        opts.side,
        &mut w.decoded,
        &mut w.resized,
    )?;
    let payload = match opts.format {
        StoreFormat::Raw => w.resized.data.clone(),
        StoreFormat::Jpeg { quality } => {
            let mut v = Vec::new();
            encode_jpeg(w.resized.view(), quality, &mut v).map_err(|e| e.to_string())?;
            v
        }
    };
    Ok(Prepared {
        width: w.resized.width,
        height: w.resized.height,
        flags: if resized { FLAG_RESIZED } else { 0 },
        payload,
    })
}

/// Parameters a checkpoint must match to be resumed.
fn params_key(index: &Index, opts: &PackOptions) -> u64 {
    let (format, quality) = match opts.format {
        StoreFormat::Raw => (0u64, 0u64),
        StoreFormat::Jpeg { quality } => (1, u64::from(quality)),
    };
    let mut h = crc32fast::Hasher::new();
    for v in [
        index.fingerprint(),
        index.samples.len() as u64,
        u64::from(opts.max_side),
        opts.side as u64,
        format,
        quality,
        u64::from(VERSION),
    ] {
        h.update(&v.to_le_bytes());
    }
    (u64::from(h.finalize()) << 32) ^ index.fingerprint().rotate_left(17)
}

const CKPT_MAGIC: [u8; 8] = *b"BRGCKPT1";

struct Checkpoint {
    next: usize,
    data_end: u64,
    records: Vec<Record>,
    skipped: Vec<Skipped>,
}

fn write_checkpoint(path: &Path, key: u64, c: &Checkpoint) -> Result<(), StoreError> {
    let meta = encode_meta(&[], &c.skipped);
    let mut body = Vec::new();
    body.extend_from_slice(&key.to_le_bytes());
    body.extend_from_slice(&(c.next as u64).to_le_bytes());
    body.extend_from_slice(&c.data_end.to_le_bytes());
    body.extend_from_slice(&(c.records.len() as u64).to_le_bytes());
    body.extend_from_slice(bytemuck::cast_slice(&c.records));
    body.extend_from_slice(&meta);
    let mut bytes = CKPT_MAGIC.to_vec();
    bytes.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    bytes.extend_from_slice(&body);
    let tmp = suffixed(path, ".tmp");
    (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })()
    .map_err(StoreError::io(path))
}

fn read_checkpoint(path: &Path, key: u64) -> Option<Checkpoint> {
    let bytes = std::fs::read(path).ok()?;
    let rest = bytes.strip_prefix(&CKPT_MAGIC)?;
    let (crc, body) = rest.split_first_chunk::<4>()?;
    if crc32fast::hash(body) != u32::from_le_bytes(*crc) {
        return None;
    }
    let u64_at = |o: usize| {
        body.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
    };
    if u64_at(0)? != key {
        return None;
    }
    let next = usize::try_from(u64_at(8)?).ok()?;
    let data_end = u64_at(16)?;
    let n = usize::try_from(u64_at(24)?).ok()?;
    let rec_bytes = n.checked_mul(std::mem::size_of::<Record>())?;
    let table = body.get(32..32 + rec_bytes)?;
    let records: Vec<Record> = table
        .chunks_exact(std::mem::size_of::<Record>())
        .map(bytemuck::pod_read_unaligned)
        .collect();
    let (_, skipped) = crate::format::decode_meta(body.get(32 + rec_bytes..)?).ok()?;
    Some(Checkpoint {
        next,
        data_end,
        records,
        skipped,
    })
}

struct Out {
    file: File,
    path: PathBuf,
    pos: u64,
}

impl Out {
    fn pad_to(&mut self, target: u64) -> Result<(), StoreError> {
        const ZEROS: [u8; PAGE as usize] = [0; PAGE as usize];
        while self.pos < target {
            let n = ((target - self.pos) as usize).min(ZEROS.len());
            self.write(&ZEROS[..n])?;
        }
        Ok(())
    }
    fn write(&mut self, b: &[u8]) -> Result<(), StoreError> {
        self.file.write_all(b).map_err(StoreError::io(&self.path))?;
        self.pos += b.len() as u64;
        Ok(())
    }
}

/// Packs every sample of `index` into one store file at `out`.
///
/// Writes `out.partial` (checkpointed every `checkpoint_every`; a rerun after
/// a kill or [`StoreError::Interrupted`] resumes from the last checkpoint
/// when dataset and options are unchanged, otherwise starts over), then
/// fsyncs and renames it to `out`: a file at `out` is always complete.
/// Samples that cannot be read or decoded are skipped and listed.
pub fn pack(index: &Index, out: &Path, opts: &PackOptions) -> Result<PackReport, StoreError> {
    let start = Instant::now();
    if opts.max_side == 0 {
        return Err(StoreError::Options("max_side must be at least 1".into()));
    }
    if let StoreFormat::Jpeg { quality } = opts.format {
        if !(1..=100).contains(&quality) {
            return Err(StoreError::Options(format!(
                "JPEG quality {quality} is not in 1..=100"
            )));
        }
    }
    if index.samples.len() > u32::MAX as usize {
        return Err(StoreError::Options("more than 2^32 samples".into()));
    }
    let total = index.samples.len();
    let partial = partial_path(out);
    let ckpt_path = checkpoint_path(out);
    let key = params_key(index, opts);

    // resume or start over
    let resume = read_checkpoint(&ckpt_path, key).and_then(|c| {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&partial)
            .ok()?;
        let len = f.metadata().ok()?.len();
        (c.data_end <= len && c.next <= total && c.data_end >= PAGE).then_some((f, c))
    });
    let (mut w, mut records, mut skipped, first, resumed_at) = match resume {
        Some((file, c)) => {
            file.set_len(c.data_end).map_err(StoreError::io(&partial))?;
            let mut o = Out {
                file,
                path: partial.clone(),
                pos: c.data_end,
            };
            o.file
                .seek(SeekFrom::Start(c.data_end))
                .map_err(StoreError::io(&partial))?;
            (o, c.records, c.skipped, c.next, Some(c.next))
        }
        None => {
            let _ = std::fs::remove_file(&ckpt_path);
            let file = File::create(&partial).map_err(StoreError::io(&partial))?;
            let mut o = Out {
                file,
                path: partial.clone(),
                pos: 0,
            };
            o.pad_to(PAGE)?; // zero header page: never opens as a store
            (o, Vec::new(), Vec::new(), 0, None)
        }
    };

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads)
        .thread_name(|i| format!("brigade-pack-{i}"))
        .build()
        .map_err(|e| StoreError::Options(format!("cannot start worker threads: {e}")))?;
    let bar = if opts.progress {
        let b = indicatif::ProgressBar::new(total as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} packing [{bar:40}] {pos}/{len} {per_sec} eta {eta} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_position(first as u64);
    let mut last_ckpt = Instant::now();
    let chunk = opts.chunk.max(1);
    let mut next = first;
    while next < total {
        let stop_requested = opts
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
            || opts.stop_after.is_some_and(|n| next >= n && next > first);
        if stop_requested {
            w.file.sync_all().map_err(StoreError::io(&partial))?;
            write_checkpoint(
                &ckpt_path,
                key,
                &Checkpoint {
                    next,
                    data_end: w.pos,
                    records,
                    skipped,
                },
            )?;
            bar.abandon();
            return Err(StoreError::Interrupted {
                path: out.to_path_buf(),
                partial,
                done: next,
                total,
            });
        }
        let end = (next + chunk).min(total);
        let ids: Vec<usize> = (next..end).collect();
        let prepared: Vec<Result<Prepared, String>> = pool.install(|| {
            ids.par_iter()
                .map_init(Worker::default, |wk, &i| {
                    prepare(index, &index.samples[i], opts, wk)
                })
                .collect()
        });
        for (i, p) in ids.iter().copied().zip(prepared) {
            let s = &index.samples[i];
            match p {
                Ok(p) => {
                    let len = u32::try_from(p.payload.len()).map_err(|_| StoreError::Encode {
                        path: out.to_path_buf(),
                        sample: i as u32,
                        detail: "payload over 4 GiB".into(),
                    })?;
                    let offset = align_up(w.pos, PAGE);
                    w.pad_to(offset)?;
                    w.write(&p.payload)?;
                    records.push(Record {
                        offset,
                        len,
                        width: p.width,
                        height: p.height,
                        label: s.class,
                        source: i as u32,
                        split: split_to(s.split),
                        flags: p.flags,
                        reserved: [0; 2],
                    });
                }
                Err(reason) => {
                    skipped.push(Skipped {
                        source: i as u32,
                        path: s.path.to_string_lossy().into_owned(),
                        reason,
                    });
                }
            }
        }
        next = end;
        bar.set_position(next as u64);
        if !skipped.is_empty() {
            bar.set_message(format!("({} skipped)", skipped.len()));
        }
        if next < total && last_ckpt.elapsed() >= opts.checkpoint_every {
            w.file.sync_data().map_err(StoreError::io(&partial))?;
            write_checkpoint(
                &ckpt_path,
                key,
                &Checkpoint {
                    next,
                    data_end: w.pos,
                    records: records.clone(),
                    skipped: skipped.clone(),
                },
            )?;
            last_ckpt = Instant::now();
        }
    }
    bar.finish_and_clear();

    // table, meta, header
    let table_offset = align_up(w.pos.max(PAGE), TABLE_ALIGN);
    w.pad_to(table_offset)?;
    let table: &[u8] = bytemuck::cast_slice(&records);
    w.write(table)?;
    let meta = encode_meta(&index.classes, &skipped);
    let meta_offset = w.pos;
    w.write(&meta)?;
    let (format, quality) = match opts.format {
        StoreFormat::Raw => (0, 0),
        StoreFormat::Jpeg { quality } => (1, u32::from(quality)),
    };
    let mut header = Header {
        magic: MAGIC,
        count: records.len() as u64,
        skipped: skipped.len() as u64,
        source_count: total as u64,
        fingerprint: index.fingerprint(),
        table_offset,
        table_len: table.len() as u64,
        meta_offset,
        meta_len: meta.len() as u64,
        file_len: w.pos,
        version: VERSION,
        format,
        max_side: opts.max_side,
        side: opts.side as u32,
        quality,
        table_crc: crc32fast::hash(table),
        meta_crc: crc32fast::hash(&meta),
        header_crc: 0,
        reserved: [0; 4],
    };
    header.header_crc = header.compute_crc();
    let file_len = w.pos;
    w.file.sync_data().map_err(StoreError::io(&partial))?;
    // the header goes last: until it is on disk the file has no magic
    w.file
        .seek(SeekFrom::Start(0))
        .and_then(|_| w.file.write_all(&bytemuck::bytes_of(&header)[..HEADER_LEN]))
        .and_then(|_| w.file.sync_all())
        .map_err(StoreError::io(&partial))?;
    drop(w);
    std::fs::rename(&partial, out).map_err(StoreError::io(out))?;
    if let Some(dir) = out.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all(); // durability of the rename; not fatal
        }
    }
    let _ = std::fs::remove_file(&ckpt_path);
    write_skipped_list(out, &skipped)?;
    Ok(PackReport {
        path: out.to_path_buf(),
        packed: records.len(),
        skipped,
        bytes: file_len,
        resumed_at,
        elapsed: start.elapsed(),
    })
}

/// Writes (or, when nothing was skipped, removes) `STORE.skipped.txt`:
/// one `sample_id<TAB>path<TAB>reason` line per skipped sample.
fn write_skipped_list(out: &Path, skipped: &[Skipped]) -> Result<(), StoreError> {
    let p = skipped_path(out);
    if skipped.is_empty() {
        return match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StoreError::io(&p)(e)),
            _ => Ok(()),
        };
    }
    let mut text = String::new();
    for s in skipped {
        let reason = s.reason.replace(['\n', '\t'], " ");
        text.push_str(&format!("{}\t{}\t{}\n", s.source, s.path, reason));
    }
    std::fs::write(&p, text).map_err(StoreError::io(&p))
}
