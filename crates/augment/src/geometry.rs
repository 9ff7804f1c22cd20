//! Geometric plans: which source box or warp a sample uses, drawn from its
//! seed before any pixel is read (so the loader can ask for the region first).

use crate::config::{CropPos, FastaiConfig, RrcConfig, TtaVariant};
use crate::rect::Rect;
use crate::seed::SampleRng;

/// Python's `int(round(x))` (round half to even), as torchvision uses it.
pub(crate) fn py_round(x: f64) -> i64 {
    x.round_ties_even() as i64
}

/// A crop `(top, left, height, width)` as torchvision returns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropParams {
    /// First row.
    pub top: u32,
    /// First column.
    pub left: u32,
    /// Rows.
    pub height: u32,
    /// Columns.
    pub width: u32,
}

impl CropParams {
    /// The crop as a [`Rect`].
    pub fn rect(&self) -> Rect {
        Rect::new(self.left, self.top, self.width, self.height)
    }
}

/// `torchvision.transforms.RandomResizedCrop.get_params` for a `(width,
/// height)` image: 10 attempts at a random area fraction in `scale` and a
/// log-uniform aspect ratio in `ratio`, then the centre fallback.
pub fn random_resized_crop_params(
    rng: &mut SampleRng,
    full: (u32, u32),
    scale: (f64, f64),
    ratio: (f64, f64),
) -> CropParams {
    let (width, height) = (f64::from(full.0), f64::from(full.1));
    let area = width * height;
    let (lr0, lr1) = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..10 {
        let target_area = area * rng.uniform(scale.0, scale.1);
        let aspect = rng.uniform(lr0, lr1).exp();
        let w = py_round((target_area * aspect).sqrt());
        let h = py_round((target_area / aspect).sqrt());
        if 0 < w && w <= i64::from(full.0) && 0 < h && h <= i64::from(full.1) {
            let (w, h) = (w as u32, h as u32);
            let top = rng.below(u64::from(full.1 - h) + 1) as u32;
            let left = rng.below(u64::from(full.0 - w) + 1) as u32;
            return CropParams {
                top,
                left,
                height: h,
                width: w,
            };
        }
    }
    // Fallback to central crop.
    let in_ratio = width / height;
    let (w, h) = if in_ratio < ratio.0.min(ratio.1) {
        let w = full.0;
        (
            w,
            (py_round(f64::from(w) / ratio.0.min(ratio.1)).max(1) as u32).min(full.1),
        )
    } else if in_ratio > ratio.0.max(ratio.1) {
        let h = full.1;
        (
            (py_round(f64::from(h) * ratio.0.max(ratio.1)).max(1) as u32).min(full.0),
            h,
        )
    } else {
        (full.0, full.1)
    };
    CropParams {
        top: (full.1 - h) / 2,
        left: (full.0 - w) / 2,
        height: h,
        width: w,
    }
}

/// What the geometric stage of a sample does.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Geo {
    /// Resample `bbox` (full-image pixels, fractional) into the output with
    /// taps clipped to `clip`, which is also the region read.
    Resize {
        bbox: [f64; 4],
        clip: Rect,
        flip: bool,
    },
    /// One projective resampling pass with reflection padding (fastai).
    Warp(Warp),
}

impl Geo {
    pub(crate) fn region(&self) -> Rect {
        match self {
            Geo::Resize { clip, .. } => *clip,
            Geo::Warp(w) => w.region,
        }
    }
}

/// A composed fastai warp: `t` maps output pixel `(x, y, 1)` to homogeneous
/// full-image pixel coordinates (`align_corners=True` convention), which are
/// then projected, reflected into the image and sampled bilinearly.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Warp {
    pub t: [[f64; 3]; 3],
    /// Downscale factor of fastai's pre-sampling area interpolation
    /// (`<= 1`: none).
    pub prescale: f64,
    pub region: Rect,
}

/// The RRC plan (crop then resize, taps clipped to the crop, as torchvision).
pub(crate) fn plan_rrc(rng: &mut SampleRng, cfg: &RrcConfig, full: (u32, u32)) -> Geo {
    let c = random_resized_crop_params(rng, full, cfg.scale, cfg.ratio);
    let flip = rng.bernoulli(cfg.hflip);
    let r = c.rect();
    Geo::Resize {
        bbox: [
            f64::from(r.x),
            f64::from(r.y),
            f64::from(r.w),
            f64::from(r.h),
        ],
        clip: r,
        flip,
    }
}

/// The eval / TTA plan: torchvision `Resize(S)` (shorter side to `S = round(
/// max(out) * resize_ratio)`) followed by a crop of `out` at `variant.pos`,
/// done as one resampling of the matching source box.
pub(crate) fn plan_eval(full: (u32, u32), out: (u32, u32), ratio: f64, v: TtaVariant) -> Geo {
    let (fw, fh) = (full.0, full.1);
    let s = (py_round(f64::from(out.0.max(out.1)) * ratio).max(1) as u32).max(out.0.max(out.1));
    // torchvision `_compute_resized_output_size`.
    let (new_w, new_h) = if fw <= fh {
        (
            s,
            ((f64::from(s) * f64::from(fh) / f64::from(fw)) as u32).max(s),
        )
    } else {
        (
            ((f64::from(s) * f64::from(fw) / f64::from(fh)) as u32).max(s),
            s,
        )
    };
    let (dw, dh) = (new_w - out.0.min(new_w), new_h - out.1.min(new_h));
    let (top, left) = match v.pos {
        CropPos::Center => (
            py_round(f64::from(dh) / 2.0) as u32,
            py_round(f64::from(dw) / 2.0) as u32,
        ),
        CropPos::TopLeft => (0, 0),
        CropPos::TopRight => (0, dw),
        CropPos::BottomLeft => (dh, 0),
        CropPos::BottomRight => (dh, dw),
    };
    let sx = f64::from(fw) / f64::from(new_w);
    let sy = f64::from(fh) / f64::from(new_h);
    let bbox = [
        f64::from(left) * sx,
        f64::from(top) * sy,
        f64::from(out.0) * sx,
        f64::from(out.1) * sy,
    ];
    let mx = sx.max(1.0).ceil() + 1.0;
    let my = sy.max(1.0).ceil() + 1.0;
    let clip = Rect::covering(
        bbox[0] - mx,
        bbox[1] - my,
        bbox[0] + bbox[2] + mx,
        bbox[1] + bbox[3] + my,
        full,
    );
    Geo::Resize {
        bbox,
        clip,
        flip: v.flip,
    }
}

/// Parameters of one fastai v1 `get_transforms` draw (exposed for tests).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FastaiParams {
    /// `flip_lr` applied.
    pub flip: bool,
    /// `symmetric_warp` magnitudes (zero when not applied).
    pub warp: [f64; 4],
    /// `rotate` degrees (zero when not applied).
    pub rotate_deg: f64,
    /// `rand_zoom` scale, row_pct, col_pct (scale 1 when not applied).
    pub zoom: (f64, f64, f64),
    /// `rand_crop` row_pct, col_pct.
    pub crop_pct: (f64, f64),
}

/// Draws fastai's affine/coord parameters in a fixed order.
pub(crate) fn draw_fastai(rng: &mut SampleRng, cfg: &FastaiConfig) -> FastaiParams {
    let crop_pct = (rng.unit(), rng.unit());
    let flip = cfg.do_flip && rng.bernoulli(0.5);
    let mut warp = [0.0; 4];
    if cfg.max_warp > 0.0 && rng.bernoulli(cfg.p_affine) {
        for m in &mut warp {
            *m = rng.uniform(-cfg.max_warp, cfg.max_warp);
        }
    }
    let rotate_deg = if cfg.max_rotate > 0.0 && rng.bernoulli(cfg.p_affine) {
        rng.uniform(-cfg.max_rotate, cfg.max_rotate)
    } else {
        0.0
    };
    let zoom = if cfg.max_zoom > 1.0 && rng.bernoulli(cfg.p_affine) {
        (rng.uniform(1.0, cfg.max_zoom), rng.unit(), rng.unit())
    } else {
        (1.0, 0.5, 0.5)
    };
    FastaiParams {
        flip,
        warp,
        rotate_deg,
        zoom,
        crop_pct,
    }
}

type M3 = [[f64; 3]; 3];

fn mul(a: &M3, b: &M3) -> M3 {
    let mut r = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            r[i][j] = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    r
}

fn apply(m: &M3, x: f64, y: f64) -> (f64, f64, f64) {
    (
        m[0][0] * x + m[0][1] * y + m[0][2],
        m[1][0] * x + m[1][1] * y + m[1][2],
        m[2][0] * x + m[2][1] * y + m[2][2],
    )
}

#[allow(clippy::needless_range_loop)]
/// Solves the 8x8 system of fastai's `_find_coeffs` (targ -> orig) by
/// Gaussian elimination with partial pivoting; `None` when singular.
fn find_coeffs(orig: &[[f64; 2]; 4], targ: &[[f64; 2]; 4]) -> Option<M3> {
    let mut a = [[0.0f64; 9]; 8];
    for (k, (p1, p2)) in targ.iter().zip(orig.iter()).enumerate() {
        a[2 * k] = [
            p1[0],
            p1[1],
            1.0,
            0.0,
            0.0,
            0.0,
            -p2[0] * p1[0],
            -p2[0] * p1[1],
            p2[0],
        ];
        a[2 * k + 1] = [
            0.0,
            0.0,
            0.0,
            p1[0],
            p1[1],
            1.0,
            -p2[1] * p1[0],
            -p2[1] * p1[1],
            p2[1],
        ];
    }
    for col in 0..8 {
        let piv = (col..8).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[piv][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, piv);
        for row in 0..8 {
            if row != col {
                let f = a[row][col] / a[col][col];
                if f != 0.0 {
                    for k in col..9 {
                        a[row][k] -= f * a[col][k];
                    }
                }
            }
        }
    }
    let x: [f64; 8] = std::array::from_fn(|i| a[i][8] / a[i][i]);
    Some([[x[0], x[1], x[2]], [x[3], x[4], x[5]], [x[6], x[7], 1.0]])
}

/// fastai's `_symmetric_warp` homography for magnitudes `m`.
pub(crate) fn symmetric_warp_matrix(m: [f64; 4]) -> M3 {
    let orig = [[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]];
    let targ = [
        [-1.0 - m[3], -1.0 - m[1]],
        [-1.0 - m[2], 1.0 + m[1]],
        [1.0 + m[3], -1.0 - m[0]],
        [1.0 + m[2], 1.0 + m[0]],
    ];
    find_coeffs(&orig, &targ).unwrap_or([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
}

/// Reflection of `x` into `[0, n - 1]` (torch `reflect_coordinates` with
/// `align_corners=True`, then clipped).
#[inline]
pub(crate) fn reflect(x: f64, n: u32) -> f64 {
    let hi = f64::from(n.saturating_sub(1));
    if n <= 1 {
        return 0.0;
    }
    if (0.0..=hi).contains(&x) {
        return x;
    }
    let a = x.abs();
    let flips = (a / hi).floor();
    let extra = a % hi;
    let r = if (flips as i64) % 2 == 0 {
        extra
    } else {
        hi - extra
    };
    r.clamp(0.0, hi)
}

/// The range covered by `reflect` over `[a, b]`.
fn reflected_range(a: f64, b: f64, n: u32) -> (f64, f64) {
    let hi = f64::from(n.saturating_sub(1));
    if n <= 1 {
        return (0.0, 0.0);
    }
    if !(a.is_finite() && b.is_finite()) || b - a >= 2.0 * hi {
        return (0.0, hi);
    }
    let (ra, rb) = (reflect(a, n), reflect(b, n));
    let (mut lo, mut up) = (ra.min(rb), ra.max(rb));
    let k0 = (a / hi).floor() as i64 + 1;
    let k1 = (b / hi).ceil() as i64 - 1;
    for k in k0..=k1 {
        if k % 2 == 0 {
            lo = 0.0;
        } else {
            up = hi;
        }
    }
    (lo, up)
}

/// Composes fastai's transforms for an `out` sample of a `full` image.
pub(crate) fn plan_fastai(p: &FastaiParams, full: (u32, u32), out: (u32, u32)) -> Geo {
    let (fw, fh) = (f64::from(full.0), f64::from(full.1));
    let (ow, oh) = (f64::from(out.0), f64::from(out.1));
    // `_get_resize_target` with do_crop: the grid keeps the aspect, shorter side fits.
    let ratio = (fh / oh).min(fw / ow);
    let gh = (py_round(fh / ratio).max(1) as u32).max(out.1);
    let gw = (py_round(fw / ratio).max(1) as u32).max(out.0);
    // `_crop_px`: row = int((rows - target + 1) * pct).
    let row = ((f64::from(gh - out.1) + 1.0) * p.crop_pct.0)
        .floor()
        .min(f64::from(gh - out.1));
    let col = ((f64::from(gw - out.0) + 1.0) * p.crop_pct.1)
        .floor()
        .min(f64::from(gw - out.0));
    let step_u = if gw > 1 { 2.0 / f64::from(gw - 1) } else { 0.0 };
    let step_v = if gh > 1 { 2.0 / f64::from(gh - 1) } else { 0.0 };
    let sgn = if p.flip { -1.0 } else { 1.0 };
    // output pixel (x, y) -> grid (u, v): u = sgn * (-1 + (col + x) * step_u).
    let g: M3 = [
        [sgn * step_u, 0.0, sgn * (-1.0 + col * step_u)],
        [0.0, step_v, -1.0 + row * step_v],
        [0.0, 0.0, 1.0],
    ];
    let h = symmetric_warp_matrix(p.warp);
    let a = p.rotate_deg.to_radians();
    let rot: M3 = [
        [a.cos(), -a.sin(), 0.0],
        [a.sin(), a.cos(), 0.0],
        [0.0, 0.0, 1.0],
    ];
    let (scale, rp, cp) = p.zoom;
    let s = 1.0 - 1.0 / scale;
    let zoom: M3 = [
        [1.0 / scale, 0.0, s * (2.0 * cp - 1.0)],
        [0.0, 1.0 / scale, s * (2.0 * rp - 1.0)],
        [0.0, 0.0, 1.0],
    ];
    let mut m = mul(&rot, &zoom);
    // `_affine_mult` aspect correction for the (gh, gw) grid.
    m[0][1] *= f64::from(gh) / f64::from(gw);
    m[1][0] *= f64::from(gw) / f64::from(gh);
    // normalised (align_corners=True) -> pixel coordinates.
    let px: M3 = [
        [(fw - 1.0) / 2.0, 0.0, (fw - 1.0) / 2.0],
        [0.0, (fh - 1.0) / 2.0, (fh - 1.0) / 2.0],
        [0.0, 0.0, 1.0],
    ];
    let flow = mul(&m, &h); // grid -> normalised source
    let t = mul(&px, &mul(&flow, &g));

    // fastai `_grid_sample`: area pre-downscale when resizing down > 2x.
    let mut mn = f64::INFINITY;
    let mut mxv = f64::NEG_INFINITY;
    for (u, v) in [(-1.0, -1.0), (1.0, -1.0), (-1.0, 1.0), (1.0, 1.0)] {
        let (x, y, z) = apply(&flow, u, v);
        for c in [x / z, y / z] {
            mn = mn.min(c);
            mxv = mxv.max(c);
        }
    }
    let zf = if mxv > mn {
        2.0 / (mxv - mn)
    } else {
        f64::INFINITY
    };
    let d = (fh / f64::from(gh)).min(fw / f64::from(gw)) / 2.0;
    let prescale = if d > 1.0 && d > zf { d } else { 1.0 };

    // Region: bbox of the reflected sample coordinates over the crop corners.
    let corners = [
        (0.0, 0.0),
        (ow - 1.0, 0.0),
        (0.0, oh - 1.0),
        (ow - 1.0, oh - 1.0),
    ];
    let mut ok = true;
    let (mut x0, mut x1, mut y0, mut y1) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    for (cx, cy) in corners {
        let (x, y, z) = apply(&t, cx, cy);
        if z <= 1e-9 {
            ok = false;
        }
        x0 = x0.min(x / z);
        x1 = x1.max(x / z);
        y0 = y0.min(y / z);
        y1 = y1.max(y / z);
    }
    let region = if ok {
        let (rx0, rx1) = reflected_range(x0, x1, full.0);
        let (ry0, ry1) = reflected_range(y0, y1, full.1);
        let m = if prescale > 1.0 {
            prescale.ceil() + 2.0
        } else {
            1.0
        };
        Rect::covering(rx0 - m, ry0 - m, rx1 + 1.0 + m, ry1 + 1.0 + m, full)
    } else {
        Rect::full(full)
    };
    Geo::Warp(Warp {
        t,
        prescale,
        region,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflect_matches_torch_semantics() {
        // n = 5: valid [0, 4]; -1 -> 1, 5 -> 3, 9 -> 1 (two folds), -4.5 -> 3.5
        assert_eq!(reflect(-1.0, 5), 1.0);
        assert_eq!(reflect(5.0, 5), 3.0);
        assert_eq!(reflect(9.0, 5), 1.0);
        assert_eq!(reflect(-4.5, 5), 3.5);
        assert_eq!(reflect(2.25, 5), 2.25);
        let (lo, hi) = reflected_range(-1.0, 2.0, 5);
        assert_eq!((lo, hi), (0.0, 2.0));
        let (lo, hi) = reflected_range(3.0, 6.0, 5);
        assert_eq!((lo, hi), (2.0, 4.0));
    }

    #[test]
    fn zero_warp_is_identity_homography() {
        let h = symmetric_warp_matrix([0.0; 4]);
        for (i, row) in h.iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((v - want).abs() < 1e-12, "{h:?}");
            }
        }
    }
}
