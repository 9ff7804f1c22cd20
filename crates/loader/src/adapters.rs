//! Adapters from the other data crates to [`Source`] and [`Transform`]:
//! [`StoreSource`] (the packed store: zero-copy raw views, or JPEG payloads
//! decoded per worker), [`FileSource`] (original files through the index and
//! `brigade_pixels::Decoder`), and `Transform for brigade_augment::Pipeline`.
//!
//! JPEG decoding asks `Decoder::decode_scaled` for the smallest whole image
//! that keeps the transform's source region at least the output size; with
//! the `turbojpeg` feature that is a DCT-domain 1/2, 1/4 or 1/8 decode when
//! the region is at least twice the output (see [`crate::dct_hint`]).

use crate::source::{LoadTimes, Loaded, OutSize, Rect, SampleError, SampleSeed, Source, Transform};
use brigade_augment::Pipeline;
use brigade_index::{Index, SampleId, Split};
use brigade_pixels::{Decoder, ImageView, RgbImage, Scale};
use brigade_store::{Payload, Store};
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// Per-worker decode state: decoder, file bytes, decoded image (all reused).
#[derive(Debug, Default)]
pub struct DecodeScratch {
    decoder: Decoder,
    bytes: Vec<u8>,
    image: RgbImage,
}

impl DecodeScratch {
    /// Decodes `bytes` (or `self.bytes` when `None`) into `self.image`, at a
    /// DCT scale when `min_size` allows. Returns the full upright geometry.
    fn decode(
        &mut self,
        external: Option<&[u8]>,
        known: Option<(u32, u32)>,
        min_size: Option<(u32, u32)>,
        times: &mut LoadTimes,
    ) -> Result<(u32, u32), SampleError> {
        let t = Instant::now();
        let bytes = external.unwrap_or(&self.bytes);
        let (mw, mh) = min_size.unwrap_or((u32::MAX, u32::MAX));
        let scale = self
            .decoder
            .decode_scaled(bytes, mw, mh, &mut self.image)
            .map_err(|e| SampleError(e.to_string()));
        times.decode += t.elapsed();
        let got = (self.image.width, self.image.height);
        Ok(full_geometry(scale?, got, known))
    }
}

/// The full-resolution geometry of an image decoded at `scale` to `got`:
/// the known (indexed) size when it is consistent with `got` (either
/// orientation: EXIF may swap the axes), else `got` scaled back up.
fn full_geometry(scale: Scale, got: (u32, u32), known: Option<(u32, u32)>) -> (u32, u32) {
    if scale == Scale::One {
        return got;
    }
    let fits = |(w, h): (u32, u32)| scale.apply(w) == got.0 && scale.apply(h) == got.1;
    match known {
        Some(k) if fits(k) => k,
        Some((w, h)) if fits((h, w)) => (h, w),
        _ => (got.0 * scale.denom(), got.1 * scale.denom()),
    }
}

/// Records of a packed store (all of them, or one split's).
#[derive(Debug, Clone)]
pub struct StoreSource {
    store: Arc<Store>,
    records: Vec<usize>,
}

impl StoreSource {
    /// Every record of `store`, or those of `split`.
    pub fn new(store: Arc<Store>, split: Option<Split>) -> Self {
        let records = match split {
            Some(s) => store.ids_in(s),
            None => (0..store.len()).collect(),
        };
        StoreSource { store, records }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }
}

impl Source for StoreSource {
    type Scratch = DecodeScratch;

    fn len(&self) -> usize {
        self.records.len()
    }
    fn label(&self, i: usize) -> u32 {
        self.store.records()[self.records[i]].label
    }
    fn sample_id(&self, i: usize) -> u32 {
        self.store.records()[self.records[i]].source
    }
    fn name(&self, i: usize) -> String {
        let r = self.records[i];
        format!(
            "{} record {r} (sample {})",
            self.store.path().display(),
            self.sample_id(i)
        )
    }
    fn full_size(&self, i: usize) -> Option<(u32, u32)> {
        let r = &self.store.records()[self.records[i]];
        Some((r.width, r.height))
    }
    fn load<'s>(
        &'s self,
        i: usize,
        min_size: Option<(u32, u32)>,
        scratch: &'s mut DecodeScratch,
        times: &mut LoadTimes,
    ) -> Result<Loaded<'s>, SampleError> {
        let t = Instant::now();
        let got = self.store.get(self.records[i]);
        times.read += t.elapsed();
        let rec = got.map_err(|e| SampleError(e.to_string()))?;
        match rec.payload {
            Payload::Raw(view) => Ok(Loaded {
                view,
                full: (view.width, view.height),
            }),
            Payload::Encoded(bytes) => {
                let known = Some((rec.width, rec.height));
                let full = scratch.decode(Some(bytes), known, min_size, times)?;
                Ok(Loaded {
                    view: scratch.image.view(),
                    full,
                })
            }
        }
    }
}

#[derive(Debug, Clone)]
struct FileItem {
    path: PathBuf,
    label: u32,
    id: SampleId,
    size: (u32, u32),
}

/// Original image files listed by an index (all samples, or one split's).
#[derive(Debug, Clone)]
pub struct FileSource {
    items: Vec<FileItem>,
}

impl FileSource {
    /// Samples of `index`, optionally only `split`'s, in index order.
    pub fn new(index: &Index, split: Option<Split>) -> Self {
        let items = index
            .samples
            .iter()
            .enumerate()
            .filter(|(_, s)| split.is_none_or(|sp| s.split == sp))
            .map(|(id, s)| FileItem {
                path: index.abs_path(s),
                label: s.class,
                id: id as SampleId,
                size: (s.width, s.height),
            })
            .collect();
        FileSource { items }
    }
}

impl Source for FileSource {
    type Scratch = DecodeScratch;

    fn len(&self) -> usize {
        self.items.len()
    }
    fn label(&self, i: usize) -> u32 {
        self.items[i].label
    }
    fn sample_id(&self, i: usize) -> u32 {
        self.items[i].id
    }
    fn name(&self, i: usize) -> String {
        self.items[i].path.display().to_string()
    }
    fn full_size(&self, i: usize) -> Option<(u32, u32)> {
        Some(self.items[i].size)
    }
    fn load<'s>(
        &'s self,
        i: usize,
        min_size: Option<(u32, u32)>,
        scratch: &'s mut DecodeScratch,
        times: &mut LoadTimes,
    ) -> Result<Loaded<'s>, SampleError> {
        let item = &self.items[i];
        let t = Instant::now();
        scratch.bytes.clear();
        let read =
            std::fs::File::open(&item.path).and_then(|mut f| f.read_to_end(&mut scratch.bytes));
        times.read += t.elapsed();
        read.map_err(|e| SampleError(format!("cannot read the file: {e}")))?;
        let full = scratch.decode(None, Some(item.size), min_size, times)?;
        Ok(Loaded {
            view: scratch.image.view(),
            full,
        })
    }
}

impl Transform for Pipeline {
    type Scratch = brigade_augment::Scratch;

    fn source_region(&self, full: (u32, u32), out: OutSize, key: SampleSeed) -> Rect {
        Pipeline::source_region(self, full, out.wh(), key)
    }

    fn apply(
        &self,
        src: ImageView<'_>,
        full: (u32, u32),
        out: OutSize,
        key: SampleSeed,
        scratch: &mut brigade_augment::Scratch,
        dst: &mut [u8],
    ) -> Result<(), SampleError> {
        Pipeline::apply(
            self,
            src,
            Rect::full(full),
            full,
            out.wh(),
            key,
            scratch,
            dst,
        )
        .map_err(|e| SampleError(e.to_string()))
    }
}

/// One test-time-augmentation view of an eval [`Pipeline`] as a
/// [`Transform`]: [`Pipeline::apply_tta`] with variant `variant` (see
/// [`Pipeline::tta_variants`]). A variant the pipeline lacks fails every
/// sample with a message saying so.
#[derive(Debug, Clone)]
pub struct TtaView {
    /// An eval pipeline.
    pub pipeline: Pipeline,
    /// Index into its TTA variants.
    pub variant: usize,
}

impl Transform for TtaView {
    type Scratch = brigade_augment::Scratch;

    fn source_region(&self, full: (u32, u32), out: OutSize, _key: SampleSeed) -> Rect {
        self.pipeline
            .source_region_tta(self.variant, full, out.wh())
            .unwrap_or_else(|_| Rect::full(full))
    }

    fn apply(
        &self,
        src: ImageView<'_>,
        full: (u32, u32),
        out: OutSize,
        _key: SampleSeed,
        scratch: &mut brigade_augment::Scratch,
        dst: &mut [u8],
    ) -> Result<(), SampleError> {
        self.pipeline
            .apply_tta(
                self.variant,
                src,
                Rect::full(full),
                full,
                out.wh(),
                scratch,
                dst,
            )
            .map_err(|e| SampleError(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tta_views_are_the_pipeline_variants() {
        let (w, h) = (40u32, 30u32);
        let data: Vec<u8> = (0..w * h * 3).map(|i| (i * 13 % 251) as u8).collect();
        let src = ImageView {
            width: w,
            height: h,
            data: &data,
        };
        let out = OutSize::square(16);
        let view = |variant| TtaView {
            pipeline: Pipeline::eval(),
            variant,
        };
        let mut scratch = brigade_augment::Scratch::new();
        let run = |t: &TtaView, scratch: &mut brigade_augment::Scratch| {
            let mut dst = vec![0u8; out.image_bytes()];
            t.apply(src, (w, h), out, SampleSeed::default(), scratch, &mut dst)
                .map(|()| dst)
        };
        let plain = run(&view(0), &mut scratch).unwrap();
        let flipped = run(&view(1), &mut scratch).unwrap();
        assert_ne!(plain, flipped);
        for y in 0..16 {
            for x in 0..16 {
                let a = (y * 16 + x) * 3;
                let b = (y * 16 + 15 - x) * 3;
                assert_eq!(plain[a..a + 3], flipped[b..b + 3]);
            }
        }
        let err = run(&view(7), &mut scratch).unwrap_err();
        assert!(err.0.contains('7'), "{}", err.0);
    }

    #[test]
    fn full_geometry_undoes_the_scale() {
        assert_eq!(
            full_geometry(Scale::One, (37, 20), Some((99, 99))),
            (37, 20)
        );
        assert_eq!(
            full_geometry(Scale::Half, (19, 10), Some((37, 20))),
            (37, 20)
        );
        // EXIF-rotated: the index has the stored (sideways) geometry
        assert_eq!(
            full_geometry(Scale::Half, (10, 19), Some((37, 20))),
            (20, 37)
        );
        assert_eq!(full_geometry(Scale::Quarter, (10, 5), None), (40, 20));
    }
}
