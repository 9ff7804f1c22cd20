//! Pixel operations on RGB8 HWC buffers, with torchvision's uint8 semantics
//! (float32 arithmetic, truncation on the way back to u8). The pipelines use
//! them; they are public so other code (and the oracle tests) can call one
//! operation with fixed parameters.

use crate::seed::SampleRng;

/// Mirrors an RGB8 HWC image left-right in place.
pub fn hflip(img: &mut [u8], width: usize) {
    if width == 0 {
        return;
    }
    for row in img.chunks_exact_mut(width * 3) {
        let (mut a, mut b) = (0usize, width - 1);
        while a < b {
            for c in 0..3 {
                row.swap(a * 3 + c, b * 3 + c);
            }
            a += 1;
            b -= 1;
        }
    }
}

#[inline]
fn to_u8(v: f32) -> u8 {
    // clamp(0, 255) then `.to(uint8)` (truncation).
    v.clamp(0.0, 255.0) as u8
}

/// `adjust_brightness(img, f)`: `clamp(p * f)`.
pub fn adjust_brightness(img: &mut [u8], f: f64) {
    let f = f as f32;
    for p in img.iter_mut() {
        *p = to_u8(f32::from(*p) * f);
    }
}

#[inline]
fn gray_f32(p: &[u8]) -> f32 {
    let r = f32::from(p[0]) * 0.2989f32;
    let g = f32::from(p[1]).mul_add(0.587f32, r);
    f32::from(p[2]).mul_add(0.114f32, g)
}

#[inline]
fn blend(p: u8, other: f32, ratio: f32, alpha: f32) -> u8 {
    to_u8(other.mul_add(alpha, f32::from(p) * ratio))
}

/// `adjust_saturation(img, f)`: blend with the (floored) grayscale image.
pub fn adjust_saturation(img: &mut [u8], f: f64) {
    let ratio = f as f32;
    let alpha = (1.0 - f) as f32;
    for px in img.chunks_exact_mut(3) {
        let g = gray_f32(px).floor();
        for p in px.iter_mut() {
            *p = blend(*p, g, ratio, alpha);
        }
    }
}

/// `adjust_contrast(img, f)`: blend with the mean of the floored grayscale.
pub fn adjust_contrast(img: &mut [u8], f: f64) {
    let n = img.len() / 3;
    if n == 0 {
        return;
    }
    let sum: f64 = img
        .chunks_exact(3)
        .map(|px| f64::from(gray_f32(px).floor()))
        .sum();
    let mean = (sum / n as f64) as f32;
    let ratio = f as f32;
    let alpha = (1.0 - f) as f32;
    for p in img.iter_mut() {
        *p = blend(*p, mean, ratio, alpha);
    }
}

fn rgb_to_hsv(r: f32, g: f32, b: f32) -> (f32, f32, f32) {
    let maxc = r.max(g).max(b);
    let minc = r.min(g).min(b);
    let eqc = maxc == minc;
    let cr = maxc - minc;
    let s = cr / if eqc { 1.0 } else { maxc };
    let crd = if eqc { 1.0 } else { cr };
    let rc = (maxc - r) / crd;
    let gc = (maxc - g) / crd;
    let bc = (maxc - b) / crd;
    let hr = if maxc == r { bc - gc } else { 0.0 };
    let hg = if maxc == g && maxc != r {
        2.0 + rc - bc
    } else {
        0.0
    };
    let hb = if maxc != g && maxc != r {
        4.0 + gc - rc
    } else {
        0.0
    };
    let h = ((hr + hg + hb) * (1.0 / 6.0) + 1.0) % 1.0;
    (h, s, maxc)
}

fn hsv_to_rgb(h: f32, s: f32, v: f32) -> (f32, f32, f32) {
    let h6 = h * 6.0;
    let i = h6.floor();
    let f = h6 - i;
    let i = (i as i32).rem_euclid(6);
    let sxf = s * f;
    let one_minus_s = 1.0 - s;
    let q = ((1.0 - sxf) * v).clamp(0.0, 1.0);
    let t = ((sxf + one_minus_s) * v).clamp(0.0, 1.0);
    let p = (one_minus_s * v).clamp(0.0, 1.0);
    match i {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    }
}

/// `adjust_hue(img, h)` with `h` in `[-0.5, 0.5]` (HSV round trip in float32).
pub fn adjust_hue(img: &mut [u8], hue: f64) {
    let hue = hue as f32;
    let scale = 255.0f32 + 1.0 - 1e-3;
    for px in img.chunks_exact_mut(3) {
        let (h, s, v) = rgb_to_hsv(
            f32::from(px[0]) / 255.0,
            f32::from(px[1]) / 255.0,
            f32::from(px[2]) / 255.0,
        );
        let h = (h + hue).rem_euclid(1.0);
        let (r, g, b) = hsv_to_rgb(h, s, v);
        px[0] = (r * scale) as u8;
        px[1] = (g * scale) as u8;
        px[2] = (b * scale) as u8;
    }
}

/// `adjust_sharpness(img, f)`: blend the interior with a 3x3 smoothing
/// (`[1 1 1; 1 5 1; 1 1 1] / 13`, rounded); the border is kept. `tmp` is
/// reused scratch space.
pub fn adjust_sharpness(img: &mut [u8], width: usize, height: usize, f: f64, tmp: &mut Vec<u8>) {
    if width <= 2 || height <= 2 {
        return;
    }
    tmp.clear();
    tmp.extend_from_slice(img);
    let alpha = (1.0 - f) as f32;
    let stride = width * 3;
    for y in 1..height - 1 {
        for x in 1..width - 1 {
            for c in 0..3 {
                let at = |yy: usize, xx: usize| u32::from(tmp[yy * stride + xx * 3 + c]);
                let mut s = 0u32;
                for yy in y - 1..=y + 1 {
                    for xx in x - 1..=x + 1 {
                        s += at(yy, xx);
                    }
                }
                s += 4 * at(y, x);
                let blurred = (s as f32 / 13.0).round_ties_even();
                let v = f32::from(tmp[y * stride + x * 3 + c]);
                img[y * stride + x * 3 + c] = to_u8((blurred - v).mul_add(alpha, v));
            }
        }
    }
}

/// `posterize(img, bits)`: keep the top `bits` bits.
pub fn posterize(img: &mut [u8], bits: u32) {
    if bits >= 8 {
        return;
    }
    let mask = (((1u32 << bits) - 1) << (8 - bits)) as u8;
    for p in img.iter_mut() {
        *p &= mask;
    }
}

/// `solarize(img, threshold)`: invert values `>= threshold` (compared in
/// float32, as torch compares a uint8 tensor with a Python float).
pub fn solarize(img: &mut [u8], threshold: f64) {
    let t = threshold as f32;
    for p in img.iter_mut() {
        if f32::from(*p) >= t {
            *p = 255 - *p;
        }
    }
}

/// `autocontrast(img)`: stretch each channel to `[0, 255]`.
pub fn autocontrast(img: &mut [u8]) {
    let mut lo = [255u8; 3];
    let mut hi = [0u8; 3];
    for px in img.chunks_exact(3) {
        for c in 0..3 {
            lo[c] = lo[c].min(px[c]);
            hi[c] = hi[c].max(px[c]);
        }
    }
    let mut min = [0f32; 3];
    let mut inv = [1f32; 3];
    for c in 0..3 {
        if hi[c] != lo[c] {
            min[c] = f32::from(lo[c]);
            inv[c] = (f32::from(hi[c]) - f32::from(lo[c])) * (1.0 / 255.0);
        }
    }
    for px in img.chunks_exact_mut(3) {
        for c in 0..3 {
            px[c] = to_u8((f32::from(px[c]) - min[c]) / inv[c]);
        }
    }
}

/// `equalize(img)`: per-channel histogram equalisation (Pillow's LUT).
pub fn equalize(img: &mut [u8]) {
    let n = (img.len() / 3) as u64;
    for c in 0..3 {
        let mut hist = [0u64; 256];
        for px in img.chunks_exact(3) {
            hist[px[c] as usize] += 1;
        }
        let last = (0..256).rev().find(|&k| hist[k] > 0).unwrap_or(0);
        let step = (n - hist[last]) / 255;
        if step == 0 {
            continue;
        }
        let mut lut = [0u8; 256];
        let mut cum = 0u64;
        for k in 0..255 {
            cum += hist[k];
            lut[k + 1] = ((cum + step / 2) / step).min(255) as u8;
        }
        for px in img.chunks_exact_mut(3) {
            px[c] = lut[px[c] as usize];
        }
    }
}

/// Inverse affine matrix of torchvision's `_get_inverse_affine_matrix`
/// (centre relative to the image centre, angle and shear in degrees).
pub fn inverse_affine_matrix(
    center: (f64, f64),
    angle: f64,
    translate: (f64, f64),
    scale: f64,
    shear: (f64, f64),
) -> [f64; 6] {
    let rot = angle.to_radians();
    let sx = shear.0.to_radians();
    let sy = shear.1.to_radians();
    let (cx, cy) = center;
    let (tx, ty) = translate;
    let a = (rot - sy).cos() / sy.cos();
    let b = -(rot - sy).cos() * sx.tan() / sy.cos() - rot.sin();
    let c = (rot - sy).sin() / sy.cos();
    let d = -(rot - sy).sin() * sx.tan() / sy.cos() + rot.cos();
    let mut m = [d, -b, 0.0, -c, a, 0.0].map(|x| x / scale);
    m[2] += m[0] * (-cx - tx) + m[1] * (-cy - ty);
    m[5] += m[3] * (-cx - tx) + m[4] * (-cy - ty);
    m[2] += cx;
    m[5] += cy;
    m
}

/// Applies an inverse affine matrix (torchvision convention, centred
/// coordinates) with nearest sampling and zero fill, as the tensor kernel of
/// `F.affine` / `F.rotate` does. `tmp` is reused scratch space.
pub fn affine_nearest(
    img: &mut [u8],
    width: usize,
    height: usize,
    m: &[f64; 6],
    tmp: &mut Vec<u8>,
) {
    tmp.clear();
    tmp.extend_from_slice(img);
    let (w, h) = (width as f32, height as f32);
    let th = m.map(|v| v as f32);
    // rescaled theta: divide by (0.5 w, 0.5 h), then unnormalise
    // (align_corners=False): ix = ((gx + 1) * w - 1) / 2.
    for oy in 0..height {
        let y = oy as f32 - (h - 1.0) * 0.5;
        for ox in 0..width {
            let x = ox as f32 - (w - 1.0) * 0.5;
            let gx = (th[0] * x + th[1] * y + th[2]) / (0.5 * w);
            let gy = (th[3] * x + th[4] * y + th[5]) / (0.5 * h);
            let ix = (((gx + 1.0) * w - 1.0) / 2.0).round_ties_even();
            let iy = (((gy + 1.0) * h - 1.0) / 2.0).round_ties_even();
            let o = (oy * width + ox) * 3;
            if ix >= 0.0 && iy >= 0.0 && ix < w && iy < h {
                let s = (iy as usize * width + ix as usize) * 3;
                img[o..o + 3].copy_from_slice(&tmp[s..s + 3]);
            } else {
                img[o..o + 3].fill(0);
            }
        }
    }
}

/// One TrivialAugmentWide operation (torchvision's op set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaOp {
    /// No change.
    Identity,
    /// Shear along x by `atan(m)` about the top-left corner.
    ShearX,
    /// Shear along y.
    ShearY,
    /// Translate by `int(m)` pixels along x.
    TranslateX,
    /// Translate along y.
    TranslateY,
    /// Rotate by `m` degrees.
    Rotate,
    /// Brightness `1 + m`.
    Brightness,
    /// Saturation `1 + m`.
    Color,
    /// Contrast `1 + m`.
    Contrast,
    /// Sharpness `1 + m`.
    Sharpness,
    /// Keep `int(m)` bits.
    Posterize,
    /// Solarize at `255 * m`.
    Solarize,
    /// Autocontrast.
    AutoContrast,
    /// Equalize.
    Equalize,
}

/// The op set in torchvision's order.
pub const TA_OPS: [TaOp; 14] = [
    TaOp::Identity,
    TaOp::ShearX,
    TaOp::ShearY,
    TaOp::TranslateX,
    TaOp::TranslateY,
    TaOp::Rotate,
    TaOp::Brightness,
    TaOp::Color,
    TaOp::Contrast,
    TaOp::Sharpness,
    TaOp::Posterize,
    TaOp::Solarize,
    TaOp::AutoContrast,
    TaOp::Equalize,
];

impl TaOp {
    /// Magnitude of bin `k` of `num_bins` (unsigned), `None` for ops without
    /// a magnitude, and whether the op's sign is random.
    pub fn magnitude(self, k: u32, num_bins: u32) -> (Option<f64>, bool) {
        let lin = |hi: f64| {
            if num_bins <= 1 {
                0.0
            } else {
                hi * f64::from(k) / f64::from(num_bins - 1)
            }
        };
        match self {
            TaOp::Identity | TaOp::AutoContrast | TaOp::Equalize => (None, false),
            TaOp::ShearX | TaOp::ShearY => (Some(lin(0.99)), true),
            TaOp::TranslateX | TaOp::TranslateY => (Some(lin(32.0)), true),
            TaOp::Rotate => (Some(lin(135.0)), true),
            TaOp::Brightness | TaOp::Color | TaOp::Contrast | TaOp::Sharpness => {
                (Some(lin(0.99)), true)
            }
            TaOp::Posterize => {
                let div = f64::from(num_bins.max(2) - 1) / 6.0;
                (Some(8.0 - (f64::from(k) / div).round_ties_even()), false)
            }
            TaOp::Solarize => (Some(1.0 - lin(1.0)), false),
        }
    }

    /// Applies the op with signed magnitude `m` to a `width x height` image.
    pub fn apply(self, img: &mut [u8], width: usize, height: usize, m: f64, tmp: &mut Vec<u8>) {
        let (w, h) = (width as f64, height as f64);
        let corner = (-w * 0.5, -h * 0.5);
        match self {
            TaOp::Identity => {}
            TaOp::ShearX => {
                let mat = inverse_affine_matrix(
                    corner,
                    0.0,
                    (0.0, 0.0),
                    1.0,
                    (m.atan().to_degrees(), 0.0),
                );
                affine_nearest(img, width, height, &mat, tmp);
            }
            TaOp::ShearY => {
                let mat = inverse_affine_matrix(
                    corner,
                    0.0,
                    (0.0, 0.0),
                    1.0,
                    (0.0, m.atan().to_degrees()),
                );
                affine_nearest(img, width, height, &mat, tmp);
            }
            TaOp::TranslateX => {
                let mat = inverse_affine_matrix((0.0, 0.0), 0.0, (m.trunc(), 0.0), 1.0, (0.0, 0.0));
                affine_nearest(img, width, height, &mat, tmp);
            }
            TaOp::TranslateY => {
                let mat = inverse_affine_matrix((0.0, 0.0), 0.0, (0.0, m.trunc()), 1.0, (0.0, 0.0));
                affine_nearest(img, width, height, &mat, tmp);
            }
            TaOp::Rotate => {
                let a = m.rem_euclid(360.0);
                if a == 0.0 {
                    return;
                }
                let mat = inverse_affine_matrix((0.0, 0.0), -a, (0.0, 0.0), 1.0, (0.0, 0.0));
                affine_nearest(img, width, height, &mat, tmp);
            }
            TaOp::Brightness => adjust_brightness(img, 1.0 + m),
            TaOp::Color => adjust_saturation(img, 1.0 + m),
            TaOp::Contrast => adjust_contrast(img, 1.0 + m),
            TaOp::Sharpness => adjust_sharpness(img, width, height, 1.0 + m, tmp),
            TaOp::Posterize => posterize(img, m.max(0.0) as u32),
            TaOp::Solarize => solarize(img, 255.0 * m),
            TaOp::AutoContrast => autocontrast(img),
            TaOp::Equalize => equalize(img),
        }
    }
}

/// Draws one TrivialAugmentWide op and its signed magnitude.
pub fn draw_trivial_augment(rng: &mut SampleRng, num_bins: u32) -> (TaOp, f64) {
    let op = TA_OPS[rng.below(TA_OPS.len() as u64) as usize];
    let k = rng.below(u64::from(num_bins)) as u32;
    let (mag, signed) = op.magnitude(k, num_bins);
    let mut m = mag.unwrap_or(0.0);
    if mag.is_some() && signed && rng.bernoulli(0.5) {
        m = -m;
    }
    (op, m)
}

/// The 256-entry lookup table of fastai's lighting: brightness (`change`)
/// and contrast (`scale`) in logit space, `sigmoid((logit(x) + logit(change))
/// * scale)`.
pub fn fastai_lighting_lut(change: f64, scale: f64) -> [u8; 256] {
    let logit = |x: f64| {
        let x = x.clamp(1e-7, 1.0 - 1e-7);
        -(1.0 / x - 1.0).ln()
    };
    let lc = logit(change);
    let mut lut = [0u8; 256];
    for (v, o) in lut.iter_mut().enumerate() {
        let l = (logit(v as f64 / 255.0) + lc) * scale;
        let y = 1.0 / (1.0 + (-l).exp());
        *o = (y * 255.0).round().clamp(0.0, 255.0) as u8;
    }
    lut
}

/// Applies a 256-entry table to every byte.
pub fn apply_lut(img: &mut [u8], lut: &[u8; 256]) {
    for p in img.iter_mut() {
        *p = lut[*p as usize];
    }
}
