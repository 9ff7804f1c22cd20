//! [`Pipeline`]: a validated config turned into `source_region` + `apply`.

use brigade_pixels::ImageView;

use crate::config::{
    ColorJitterConfig, EraseValue, EvalConfig, Geometry, PipelineConfig, RandomErasingConfig,
    TrainConfig, TtaVariant,
};
use crate::geometry::{self, Geo, Warp};
use crate::ops;
use crate::rect::Rect;
use crate::resample::{Plane, Resampler};
use crate::seed::{SampleRng, SampleSeed};
use crate::AugmentError;

/// Reusable per-thread buffers. Create one per worker thread and pass it to
/// every [`Pipeline::apply`]; once it has seen the largest image/output size
/// it never grows again (steady state allocates nothing).
#[derive(Debug, Default, Clone)]
pub struct Scratch {
    resampler: Resampler,
    pre: Vec<u8>,
    tmp: Vec<u8>,
}

impl Scratch {
    /// An empty scratch space.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes currently reserved by all buffers.
    pub fn capacity_bytes(&self) -> usize {
        self.resampler.capacity_bytes() + self.pre.capacity() + self.tmp.capacity()
    }
}

/// A train or eval augmentation pipeline. Cheap to share between threads
/// (`&Pipeline` is all `apply` needs; state lives in [`Scratch`]).
#[derive(Debug, Clone)]
pub struct Pipeline {
    cfg: PipelineConfig,
}

impl Pipeline {
    /// Validates `cfg` and builds the pipeline.
    pub fn new(cfg: PipelineConfig) -> Result<Self, AugmentError> {
        cfg.validate()?;
        Ok(Self { cfg })
    }

    /// The configuration this pipeline runs.
    pub fn config(&self) -> &PipelineConfig {
        &self.cfg
    }

    /// The rectangle of the full image (pixel coordinates) that
    /// [`Pipeline::apply`] reads for this sample at this output size, computed
    /// from the seed alone. Passing exactly this region (or anything
    /// containing it) to `apply` gives the same bytes as passing the full image.
    pub fn source_region(&self, full: (u32, u32), out: (u32, u32), seed: SampleSeed) -> Rect {
        if full.0 == 0 || full.1 == 0 || out.0 == 0 || out.1 == 0 {
            return Rect::full(full);
        }
        let mut rng = seed.rng();
        self.plan(&mut rng, full, out, TtaVariant::IDENTITY)
            .region()
    }

    /// Runs the pipeline for one sample: `src` holds the pixels of `src_rect`
    /// of a `full`-sized image (possibly downscaled: `src.width` may be smaller
    /// than `src_rect.w`), and `out.0 * out.1 * 3` bytes (HWC) are written to
    /// `dst`. Eval pipelines ignore the seed and produce TTA variant 0.
    #[allow(clippy::too_many_arguments)]
    pub fn apply(
        &self,
        src: ImageView<'_>,
        src_rect: Rect,
        full: (u32, u32),
        out: (u32, u32),
        seed: SampleSeed,
        scratch: &mut Scratch,
        dst: &mut [u8],
    ) -> Result<(), AugmentError> {
        self.run(
            src,
            src_rect,
            full,
            out,
            seed,
            TtaVariant::IDENTITY,
            scratch,
            dst,
        )
    }

    /// The test-time-augmentation views of an eval pipeline (empty for a
    /// train pipeline).
    pub fn tta_variants(&self) -> &[TtaVariant] {
        match &self.cfg {
            PipelineConfig::Eval(e) => &e.tta,
            PipelineConfig::Train(_) => &[],
        }
    }

    fn variant(&self, k: usize) -> Result<TtaVariant, AugmentError> {
        let v = self.tta_variants();
        v.get(k)
            .copied()
            .ok_or(AugmentError::NoSuchVariant { k, n: v.len() })
    }

    /// [`Pipeline::source_region`] of TTA variant `k`.
    pub fn source_region_tta(
        &self,
        k: usize,
        full: (u32, u32),
        out: (u32, u32),
    ) -> Result<Rect, AugmentError> {
        let v = self.variant(k)?;
        if full.0 == 0 || full.1 == 0 || out.0 == 0 || out.1 == 0 {
            return Ok(Rect::full(full));
        }
        let mut rng = SampleSeed::default().rng();
        Ok(self.plan(&mut rng, full, out, v).region())
    }

    /// Writes TTA variant `k` (see [`Pipeline::tta_variants`]) into `dst`.
    #[allow(clippy::too_many_arguments)]
    pub fn apply_tta(
        &self,
        k: usize,
        src: ImageView<'_>,
        src_rect: Rect,
        full: (u32, u32),
        out: (u32, u32),
        scratch: &mut Scratch,
        dst: &mut [u8],
    ) -> Result<(), AugmentError> {
        let v = self.variant(k)?;
        self.run(
            src,
            src_rect,
            full,
            out,
            SampleSeed::default(),
            v,
            scratch,
            dst,
        )
    }

    fn plan(&self, rng: &mut SampleRng, full: (u32, u32), out: (u32, u32), v: TtaVariant) -> Geo {
        match &self.cfg {
            PipelineConfig::Train(t) => match &t.geometry {
                Geometry::RandomResizedCrop(r) => geometry::plan_rrc(rng, r, full),
                Geometry::Fastai(f) => {
                    let p = geometry::draw_fastai(rng, f);
                    geometry::plan_fastai(&p, full, out)
                }
            },
            PipelineConfig::Eval(e) => geometry::plan_eval(full, out, e.resize_ratio, v),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        src: ImageView<'_>,
        src_rect: Rect,
        full: (u32, u32),
        out: (u32, u32),
        seed: SampleSeed,
        v: TtaVariant,
        scratch: &mut Scratch,
        dst: &mut [u8],
    ) -> Result<(), AugmentError> {
        check_inputs(&src, src_rect, full, out, dst)?;
        let mut rng = seed.rng();
        let geo = self.plan(&mut rng, full, out, v);
        let region = geo.region();
        if !src_rect.contains(&region) {
            return Err(AugmentError::RegionNotCovered {
                given: src_rect,
                needed: region,
            });
        }
        let plane = Plane {
            data: src.data,
            width: src.width as usize,
            height: src.height as usize,
            stride: src.width as usize,
        };
        let (ow, oh) = (out.0 as usize, out.1 as usize);
        match geo {
            Geo::Resize { bbox, clip, flip } => {
                resize_stage(plane, src_rect, bbox, clip, ow, oh, flip, scratch, dst)
            }
            Geo::Warp(w) => warp_stage(plane, src_rect, full, &w, ow, oh, scratch, dst),
        }
        if let PipelineConfig::Train(t) = &self.cfg {
            pixel_stages(t, &mut rng, ow, oh, scratch, dst);
        }
        Ok(())
    }
}

fn check_inputs(
    src: &ImageView<'_>,
    src_rect: Rect,
    full: (u32, u32),
    out: (u32, u32),
    dst: &[u8],
) -> Result<(), AugmentError> {
    if full.0 == 0 || full.1 == 0 || out.0 == 0 || out.1 == 0 || src.width == 0 || src.height == 0 {
        return Err(AugmentError::Empty {
            full,
            out,
            src: (src.width, src.height),
        });
    }
    let want = src.width as usize * src.height as usize * 3;
    if src.data.len() != want {
        return Err(AugmentError::SourceSize {
            width: src.width,
            height: src.height,
            got: src.data.len(),
            want,
        });
    }
    let want = out.0 as usize * out.1 as usize * 3;
    if dst.len() != want {
        return Err(AugmentError::DestSize {
            out,
            got: dst.len(),
            want,
        });
    }
    if !src_rect.fits_in(full) || src_rect.w == 0 || src_rect.h == 0 {
        return Err(AugmentError::RectOutside {
            rect: src_rect,
            full,
        });
    }
    if src.width > src_rect.w || src.height > src_rect.h {
        return Err(AugmentError::Upscaled {
            rect: src_rect,
            src: (src.width, src.height),
        });
    }
    Ok(())
}

/// Maps a full-image rectangle to the window of `src` holding it.
fn src_window(src: &Plane<'_>, src_rect: Rect, r: Rect) -> (Rect, f64, f64) {
    let sx = src.width as f64 / f64::from(src_rect.w);
    let sy = src.height as f64 / f64::from(src_rect.h);
    if src.width as u32 == src_rect.w && src.height as u32 == src_rect.h {
        (
            Rect::new(r.x - src_rect.x, r.y - src_rect.y, r.w, r.h),
            1.0,
            1.0,
        )
    } else {
        let x0 = f64::from(r.x - src_rect.x) * sx;
        let y0 = f64::from(r.y - src_rect.y) * sy;
        let x1 = (r.right() - u64::from(src_rect.x)) as f64 * sx;
        let y1 = (r.bottom() - u64::from(src_rect.y)) as f64 * sy;
        let win = Rect::covering(x0, y0, x1, y1, (src.width as u32, src.height as u32));
        (win, sx, sy)
    }
}

fn plane_window<'a>(p: &Plane<'a>, r: Rect) -> Plane<'a> {
    p.window(r.x as usize, r.y as usize, r.w as usize, r.h as usize)
}

#[allow(clippy::too_many_arguments)]
fn resize_stage(
    plane: Plane<'_>,
    src_rect: Rect,
    bbox: [f64; 4],
    clip: Rect,
    ow: usize,
    oh: usize,
    flip: bool,
    scratch: &mut Scratch,
    dst: &mut [u8],
) {
    let (win, sx, sy) = src_window(&plane, src_rect, clip);
    let b = if sx == 1.0 && sy == 1.0 {
        [
            bbox[0] - f64::from(clip.x),
            bbox[1] - f64::from(clip.y),
            bbox[2],
            bbox[3],
        ]
    } else {
        [
            (bbox[0] - f64::from(src_rect.x)) * sx - f64::from(win.x),
            (bbox[1] - f64::from(src_rect.y)) * sy - f64::from(win.y),
            bbox[2] * sx,
            bbox[3] * sy,
        ]
    };
    scratch
        .resampler
        .resize_box(plane_window(&plane, win), b, ow, oh, flip, dst);
}

#[allow(clippy::too_many_arguments)]
fn warp_stage(
    plane: Plane<'_>,
    src_rect: Rect,
    full: (u32, u32),
    w: &Warp,
    ow: usize,
    oh: usize,
    scratch: &mut Scratch,
    dst: &mut [u8],
) {
    let (rx, ry) = (f64::from(src_rect.x), f64::from(src_rect.y));
    let sx = plane.width as f64 / f64::from(src_rect.w);
    let sy = plane.height as f64 / f64::from(src_rect.h);
    // full-image pixel -> src pixel: q = p * a + b
    let (mut ax, mut bx, mut ay, mut by) = if sx == 1.0 && sy == 1.0 {
        (1.0, -rx, 1.0, -ry)
    } else {
        (sx, (-rx + 0.5) * sx - 0.5, sy, (-ry + 0.5) * sy - 0.5)
    };
    let f_eff = w.prescale * sx.min(sy);
    let Scratch { resampler, pre, .. } = scratch;
    let sample: Plane<'_> = if f_eff > 1.0 {
        let (win, _, _) = src_window(&plane, src_rect, w.region);
        let pw = ((f64::from(win.w) / f_eff).round() as usize).max(1);
        let ph = ((f64::from(win.h) / f_eff).round() as usize).max(1);
        pre.clear();
        pre.resize(pw * ph * 3, 0);
        let wp = plane_window(&plane, win);
        resampler.resize_box(
            wp,
            [0.0, 0.0, wp.width as f64, wp.height as f64],
            pw,
            ph,
            false,
            pre,
        );
        let kx = pw as f64 / f64::from(win.w);
        let ky = ph as f64 / f64::from(win.h);
        bx = (bx - f64::from(win.x) + 0.5) * kx - 0.5;
        by = (by - f64::from(win.y) + 0.5) * ky - 0.5;
        ax *= kx;
        ay *= ky;
        Plane {
            data: pre,
            width: pw,
            height: ph,
            stride: pw,
        }
    } else {
        plane
    };
    let t = &w.t;
    let (sw, sh) = (sample.width as i64, sample.height as i64);
    let data = sample.data;
    let px_at =
        |x: i64, y: i64| -> usize { ((y.clamp(0, sh - 1) * sw) + x.clamp(0, sw - 1)) as usize * 3 };
    for oy in 0..oh {
        let yf = oy as f64;
        for ox in 0..ow {
            let xf = ox as f64;
            let z = t[2][0] * xf + t[2][1] * yf + t[2][2];
            let (mut px, mut py) = (0.0, 0.0);
            if z > 1e-12 {
                px = (t[0][0] * xf + t[0][1] * yf + t[0][2]) / z;
                py = (t[1][0] * xf + t[1][1] * yf + t[1][2]) / z;
            }
            let qx = geometry::reflect(px, full.0) * ax + bx;
            let qy = geometry::reflect(py, full.1) * ay + by;
            let x0 = qx.floor();
            let y0 = qy.floor();
            let (fx, fy) = (qx - x0, qy - y0);
            let (x0, y0) = (x0 as i64, y0 as i64);
            let nw = (1.0 - fx) * (1.0 - fy);
            let ne = fx * (1.0 - fy);
            let swt = (1.0 - fx) * fy;
            let se = fx * fy;
            let (a, b, c, d) = (
                px_at(x0, y0),
                px_at(x0 + 1, y0),
                px_at(x0, y0 + 1),
                px_at(x0 + 1, y0 + 1),
            );
            let o = (oy * ow + ox) * 3;
            for ch in 0..3 {
                let v = nw * f64::from(data[a + ch])
                    + ne * f64::from(data[b + ch])
                    + swt * f64::from(data[c + ch])
                    + se * f64::from(data[d + ch]);
                dst[o + ch] = v.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
}

fn pixel_stages(
    t: &TrainConfig,
    rng: &mut SampleRng,
    ow: usize,
    oh: usize,
    scratch: &mut Scratch,
    dst: &mut [u8],
) {
    if let Geometry::Fastai(f) = &t.geometry {
        let ml = f.max_lighting;
        if ml > 0.0 {
            let change = if rng.bernoulli(f.p_lighting) {
                Some(rng.uniform(0.5 * (1.0 - ml), 0.5 * (1.0 + ml)))
            } else {
                None
            };
            let scale = if rng.bernoulli(f.p_lighting) {
                Some(rng.log_uniform(1.0 - ml, 1.0 / (1.0 - ml)))
            } else {
                None
            };
            if change.is_some() || scale.is_some() {
                let lut = ops::fastai_lighting_lut(change.unwrap_or(0.5), scale.unwrap_or(1.0));
                ops::apply_lut(dst, &lut);
            }
        }
    }
    if let Some(ta) = &t.trivial_augment {
        let (op, m) = ops::draw_trivial_augment(rng, ta.num_bins);
        op.apply(dst, ow, oh, m, &mut scratch.tmp);
    }
    if let Some(cj) = &t.color_jitter {
        color_jitter(cj, rng, dst);
    }
    if let Some(re) = &t.random_erasing {
        random_erasing(re, rng, ow, oh, dst);
    }
}

fn color_jitter(cj: &ColorJitterConfig, rng: &mut SampleRng, dst: &mut [u8]) {
    if !rng.bernoulli(cj.p) {
        return;
    }
    // torchvision: permutation first, then the four factors.
    let mut order = [0usize, 1, 2, 3];
    for i in (1..4).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        order.swap(i, j);
    }
    let factor =
        |rng: &mut SampleRng, x: f64| (x > 0.0).then(|| rng.uniform((1.0 - x).max(0.0), 1.0 + x));
    let b = factor(rng, cj.brightness);
    let c = factor(rng, cj.contrast);
    let s = factor(rng, cj.saturation);
    let h = (cj.hue > 0.0).then(|| rng.uniform(-cj.hue, cj.hue));
    for k in order {
        match (k, b, c, s, h) {
            (0, Some(f), _, _, _) => ops::adjust_brightness(dst, f),
            (1, _, Some(f), _, _) => ops::adjust_contrast(dst, f),
            (2, _, _, Some(f), _) => ops::adjust_saturation(dst, f),
            (3, _, _, _, Some(f)) => ops::adjust_hue(dst, f),
            _ => {}
        }
    }
}

/// torchvision `RandomErasing.get_params` on the output image.
fn random_erasing(
    re: &RandomErasingConfig,
    rng: &mut SampleRng,
    ow: usize,
    oh: usize,
    dst: &mut [u8],
) {
    if !rng.bernoulli(re.p) {
        return;
    }
    let area = (ow * oh) as f64;
    let (lr0, lr1) = (re.ratio.0.ln(), re.ratio.1.ln());
    for _ in 0..10 {
        let erase_area = area * rng.uniform(re.scale.0, re.scale.1);
        let aspect = rng.uniform(lr0, lr1).exp();
        let h = geometry::py_round((erase_area * aspect).sqrt());
        let w = geometry::py_round((erase_area / aspect).sqrt());
        if !(h < oh as i64 && w < ow as i64) || h <= 0 || w <= 0 {
            continue;
        }
        let (h, w) = (h as usize, w as usize);
        let top = rng.below((oh - h + 1) as u64) as usize;
        let left = rng.below((ow - w + 1) as u64) as usize;
        for y in top..top + h {
            let row = &mut dst[(y * ow + left) * 3..(y * ow + left + w) * 3];
            match re.value {
                EraseValue::Zero => {
                    for px in row.chunks_exact_mut(3) {
                        px.copy_from_slice(&[124, 116, 104]);
                    }
                }
                EraseValue::Black => row.fill(0),
                EraseValue::Random => {
                    for chunk in row.chunks_mut(8) {
                        let bytes = rng.next_u64().to_le_bytes();
                        chunk.copy_from_slice(&bytes[..chunk.len()]);
                    }
                }
            }
        }
        return;
    }
}

impl Default for Pipeline {
    /// The default train pipeline (RRC + flip).
    fn default() -> Self {
        Self {
            cfg: PipelineConfig::Train(TrainConfig::default()),
        }
    }
}

impl Pipeline {
    /// The default eval pipeline (resize 8/7, centre crop; TTA: identity and flip).
    pub fn eval() -> Self {
        Self {
            cfg: PipelineConfig::Eval(EvalConfig::default()),
        }
    }
}

/// Crop `crop` of `src` (a whole image) and resize it to `out` with
/// antialiased bilinear filtering, mirrored when `flip`: torchvision's
/// `resized_crop(..., antialias=True)` (+ `horizontal_flip`) in one pass.
pub fn resized_crop(
    src: ImageView<'_>,
    crop: crate::CropParams,
    out: (u32, u32),
    flip: bool,
    scratch: &mut Scratch,
    dst: &mut [u8],
) -> Result<(), AugmentError> {
    let full = (src.width, src.height);
    check_inputs(&src, Rect::full(full), full, out, dst)?;
    let r = crop.rect();
    if !r.fits_in(full) || r.w == 0 || r.h == 0 {
        return Err(AugmentError::RectOutside { rect: r, full });
    }
    let plane = Plane {
        data: src.data,
        width: src.width as usize,
        height: src.height as usize,
        stride: src.width as usize,
    };
    let bbox = [
        f64::from(r.x),
        f64::from(r.y),
        f64::from(r.w),
        f64::from(r.h),
    ];
    resize_stage(
        plane,
        Rect::full(full),
        bbox,
        r,
        out.0 as usize,
        out.1 as usize,
        flip,
        scratch,
        dst,
    );
    Ok(())
}

/// The fastai geometric pass for fixed parameters on a whole image (what a
/// fastai [`crate::Geometry::Fastai`] pipeline does after drawing them).
pub fn fastai_warp(
    src: ImageView<'_>,
    params: &crate::FastaiParams,
    out: (u32, u32),
    scratch: &mut Scratch,
    dst: &mut [u8],
) -> Result<(), AugmentError> {
    let full = (src.width, src.height);
    check_inputs(&src, Rect::full(full), full, out, dst)?;
    let plane = Plane {
        data: src.data,
        width: src.width as usize,
        height: src.height as usize,
        stride: src.width as usize,
    };
    if let Geo::Warp(w) = geometry::plan_fastai(params, full, out) {
        warp_stage(
            plane,
            Rect::full(full),
            full,
            &w,
            out.0 as usize,
            out.1 as usize,
            scratch,
            dst,
        );
    }
    Ok(())
}
