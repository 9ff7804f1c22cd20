//! Antialiased separable resampling (the Pillow / torchvision `antialias=True`
//! bilinear algorithm) of a box of a source plane into an output buffer, with
//! coefficient tables and intermediate rows kept in reusable buffers.

/// Fixed-point precision of the filter weights (i16, so 1.0 == 1 << 14).
const PREC: u32 = 14;

/// A borrowed RGB8 plane with a row stride (in pixels), so a window of a
/// larger image can be read without copying.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plane<'a> {
    pub data: &'a [u8],
    pub width: usize,
    pub height: usize,
    /// Pixels between the starts of two rows.
    pub stride: usize,
}

impl<'a> Plane<'a> {
    /// The window `(x, y, w, h)` of this plane (must lie inside).
    pub fn window(&self, x: usize, y: usize, w: usize, h: usize) -> Plane<'a> {
        debug_assert!(x + w <= self.width && y + h <= self.height);
        let start = (y * self.stride + x) * 3;
        let end = if h == 0 {
            start
        } else {
            ((y + h - 1) * self.stride + x + w) * 3
        };
        Plane {
            data: &self.data[start..end],
            width: w,
            height: h,
            stride: self.stride,
        }
    }

    #[inline(always)]
    pub fn row(&self, y: usize) -> &'a [u8] {
        let s = y * self.stride * 3;
        &self.data[s..s + self.width * 3]
    }
}

/// Filter taps of one axis: for output `i`, `len[i]` weights starting at
/// source index `start[i]`, stored at `weights[i * ksize ..]`.
#[derive(Debug, Default, Clone)]
pub(crate) struct Coeffs {
    start: Vec<usize>,
    len: Vec<usize>,
    weights: Vec<i16>,
    tmp: Vec<f64>,
    ksize: usize,
    /// Weights as packed i16 pairs `(w[2j], w[2j + 1])`, `npairs` per output,
    /// zero past `len` (for the SIMD pass: a fixed trip count per call), each
    /// repeated over a 128-bit lane so one load yields a multiply-add operand.
    /// Outputs go in twos: pair `j` of outputs `2g` and `2g + 1` sit side by
    /// side (one 256-bit load), see [`Coeffs::pair_index`].
    pairs: Vec<[i32; 4]>,
    npairs: usize,
}

impl Coeffs {
    fn capacity_bytes(&self) -> usize {
        self.start.capacity() * 8
            + self.len.capacity() * 8
            + self.weights.capacity() * 2
            + self.tmp.capacity() * 8
            + self.pairs.capacity() * 16
    }

    /// Fills `pairs` / `npairs` from the weights.
    fn pack_pairs(&mut self) {
        let max_len = self.len.iter().copied().max().unwrap_or(0);
        let np = max_len.div_ceil(2);
        self.npairs = np;
        self.pairs.clear();
        self.pairs
            .resize(self.len.len().div_ceil(2) * 2 * np, [0; 4]);
        for (i, &l) in self.len.iter().enumerate() {
            let w = &self.weights[i * self.ksize..i * self.ksize + l];
            for j in 0..np {
                let w0 = w.get(2 * j).copied().unwrap_or(0) as u16 as u32;
                let w1 = w.get(2 * j + 1).copied().unwrap_or(0) as u16 as u32;
                self.pairs[Self::pair_index(i, j, np)] = [(w0 | (w1 << 16)) as i32; 4];
            }
        }
    }

    /// Where tap pair `j` of output `i` is in `pairs` (`np` pairs each):
    /// outputs `2g` and `2g + 1` interleave their pairs, so pair `j` of pair
    /// `j + 1` of one output is 2 entries on.
    #[inline(always)]
    fn pair_index(i: usize, j: usize, np: usize) -> usize {
        (i & !1) * np + 2 * j + (i & 1)
    }

    /// Pillow's `precompute_coeffs` for the triangle filter: output `i` is
    /// centred at `in0 + (i + 0.5) * in_len / out`, the support grows with the
    /// downscale factor, and taps are clipped to `[0, in_size)`.
    fn compute(&mut self, in_size: usize, in0: f64, in_len: f64, out: usize) {
        let scale = in_len / out as f64;
        let filterscale = scale.max(1.0);
        let support = filterscale; // bilinear: support 1 at unit scale
        let ksize = (support.ceil() as usize) * 2 + 1;
        let ss = 1.0 / filterscale;
        self.ksize = ksize;
        self.start.clear();
        self.len.clear();
        self.weights.clear();
        self.weights.resize(out * ksize, 0);
        self.tmp.clear();
        self.tmp.resize(ksize, 0.0);
        let in_max = in_size as i64;
        for i in 0..out {
            let center = in0 + (i as f64 + 0.5) * scale;
            // C casts truncate toward zero, as in Pillow and ATen.
            let mut xmin = ((center - support + 0.5) as i64).max(0);
            let xmax = ((center + support + 0.5) as i64).min(in_max);
            if xmin >= in_max {
                xmin = in_max - 1;
            }
            let mut n = (xmax - xmin).clamp(0, ksize as i64) as usize;
            let mut total = 0.0;
            for (x, t) in self.tmp.iter_mut().enumerate().take(n) {
                let arg = (x as f64 + xmin as f64 - center + 0.5) * ss;
                let w = (1.0 - arg.abs()).max(0.0);
                *t = w;
                total += w;
            }
            let row = &mut self.weights[i * ksize..(i + 1) * ksize];
            if n == 0 || total == 0.0 {
                // Degenerate (centre outside the source): nearest pixel.
                xmin = (center.floor() as i64).clamp(0, in_max - 1);
                n = 1;
                row[0] = 1 << PREC;
            } else {
                for (w, t) in row.iter_mut().zip(&self.tmp).take(n) {
                    // Weights are >= 0: truncating `v + 0.5` rounds half up
                    // like Pillow's `(int)(0.5 + v)`, without a libm call.
                    *w = (t / total * f64::from(1u32 << PREC) + 0.5) as i16;
                }
            }
            self.start.push(xmin as usize);
            self.len.push(n);
        }
    }

    /// First and one-past-last source index any output reads.
    fn span(&self) -> (usize, usize) {
        let lo = self.start.iter().copied().min().unwrap_or(0);
        let hi = self
            .start
            .iter()
            .zip(&self.len)
            .map(|(s, l)| s + l)
            .max()
            .unwrap_or(0);
        (lo, hi)
    }
}

/// Relative cost of one tap of the vertical pass on one output pixel (three
/// channel bytes, vectorised over whole rows) and of one tap pair of the
/// horizontal pass on one output pixel (gathered pixel by pixel): a
/// least-squares fit of both pass orders timed on eleven boxes (64 to 512
/// px, up- and downscaling) on AVX2, 0.22 ns and 0.82 ns.
const VERTICAL_TAP_COST: usize = 1;
const HORIZONTAL_PAIR_COST: usize = 4;

/// Reusable state of the resampler.
#[derive(Debug, Default, Clone)]
pub(crate) struct Resampler {
    horiz: Coeffs,
    vert: Coeffs,
    acc: Vec<i32>,
    tmp: Vec<u8>,
    /// One padded source row for the horizontal-first pass (see there).
    pad: Vec<u8>,
}

impl Resampler {
    pub fn capacity_bytes(&self) -> usize {
        self.horiz.capacity_bytes()
            + self.vert.capacity_bytes()
            + self.acc.capacity() * 4
            + self.tmp.capacity()
            + self.pad.capacity()
    }

    /// Resamples the box `(bx, by, bw, bh)` (source pixel units, fractional
    /// allowed) of `src` to `out_w x out_h` into `dst` (HWC, tightly packed),
    /// mirrored left-right when `flip`. Filter taps are clipped to `src`'s
    /// bounds, exactly like resizing `src` as a whole image with a box.
    ///
    /// The two separable passes run in whichever order costs less for this
    /// box: the horizontal pass gathers pixel by pixel and costs several
    /// times the vertical one per tap, so it runs on the fewer rows — the
    /// source rows the box reads when the box is shorter than the output
    /// (upscaling, as in most RandomResizedCrops; this is also Pillow's and
    /// ATen's order), the output rows otherwise. The order is a function of
    /// the geometry only, so a sample comes out the same on every run.
    #[allow(clippy::too_many_arguments)]
    pub fn resize_box(
        &mut self,
        src: Plane<'_>,
        bbox: [f64; 4],
        out_w: usize,
        out_h: usize,
        flip: bool,
        dst: &mut [u8],
    ) {
        debug_assert_eq!(dst.len(), out_w * out_h * 3);
        if out_w == 0 || out_h == 0 || src.width == 0 || src.height == 0 {
            return;
        }
        let [bx, by, bw, bh] = bbox;
        self.horiz.compute(src.width, bx, bw, out_w);
        self.vert.compute(src.height, by, bh, out_h);
        self.horiz.pack_pairs();
        let (x_lo, x_hi) = self.horiz.span();
        let (y_lo, y_hi) = self.vert.span();
        let (tw, th) = (x_hi - x_lo, y_hi - y_lo);
        let np = self.horiz.npairs;
        let vtaps = self.vert.len.iter().copied().max().unwrap_or(0);
        let vertical_first =
            out_h * tw * vtaps * VERTICAL_TAP_COST + out_h * out_w * np * HORIZONTAL_PAIR_COST;
        let horizontal_first =
            th * out_w * np * HORIZONTAL_PAIR_COST + out_h * out_w * vtaps * VERTICAL_TAP_COST;
        if horizontal_first < vertical_first {
            self.horizontal_first(src, (x_lo, tw), (y_lo, th), out_w, flip, dst);
        } else {
            self.vertical_first(src, (x_lo, tw), out_w, out_h, flip, dst);
        }
    }

    /// Vertical pass over the columns the horizontal pass reads, into `tmp`
    /// (`out_h` rows of `tw` pixels), then the horizontal pass into `dst`.
    fn vertical_first(
        &mut self,
        src: Plane<'_>,
        (x_lo, tw): (usize, usize),
        out_w: usize,
        out_h: usize,
        flip: bool,
        dst: &mut [u8],
    ) {
        let n = tw * 3;
        // Slack so the SIMD horizontal pass may read its fixed number of tap
        // pairs past the last pixel of the last row.
        let tmp = grown(&mut self.tmp, out_h * n + tmp_slack(self.horiz.npairs));
        let acc = grown(&mut self.acc, n);
        let cols = src.window(x_lo, 0, tw, src.height);
        vertical(&cols, 0, &self.vert, acc, &mut tmp[..out_h * n], n);
        let rows = HorizontalRows {
            data: tmp,
            stride: n,
            tw,
            x_lo,
            rows: out_h,
        };
        horizontal(rows, out_w, &self.horiz, flip, dst);
    }

    /// Horizontal pass straight from the source rows the vertical taps read
    /// (`th` rows from `y_lo`) into `tmp` (`th` rows of `out_w` pixels), then
    /// the vertical pass into `dst`.
    fn horizontal_first(
        &mut self,
        src: Plane<'_>,
        (x_lo, tw): (usize, usize),
        (y_lo, th): (usize, usize),
        out_w: usize,
        flip: bool,
        dst: &mut [u8],
    ) {
        let n = out_w * 3;
        let tmp = grown(&mut self.tmp, th * n);
        let stride = src.stride * 3;
        let base = (y_lo * src.stride + x_lo) * 3;
        // The SIMD pass reads up to `slack` bytes past a row's window: into
        // the next source row, except at the end of the source buffer, where
        // the last rows go through a zero-padded copy instead.
        let slack = tmp_slack(self.horiz.npairs);
        let direct = match src.data.len().checked_sub(base + tw * 3 + slack) {
            Some(room) => (room / stride.max(1) + 1).min(th),
            None => 0,
        };
        let (head, tail) = tmp.split_at_mut(direct * n);
        if direct > 0 {
            let rows = HorizontalRows {
                data: &src.data[base..],
                stride,
                tw,
                x_lo,
                rows: direct,
            };
            horizontal(rows, out_w, &self.horiz, flip, head);
        }
        for (r, out_row) in (direct..th).zip(tail.chunks_exact_mut(n)) {
            let start = base + r * stride;
            self.pad.clear();
            self.pad.extend_from_slice(&src.data[start..start + tw * 3]);
            self.pad.resize(tw * 3 + slack, 0);
            let rows = HorizontalRows {
                data: &self.pad,
                stride: tw * 3,
                tw,
                x_lo,
                rows: 1,
            };
            horizontal(rows, out_w, &self.horiz, flip, out_row);
        }
        let plane = Plane {
            data: tmp,
            width: out_w,
            height: th,
            stride: out_w,
        };
        vertical(&plane, y_lo, &self.vert, grown(&mut self.acc, n), dst, n);
    }
}

/// The first `len` entries of `buf`, grown (never shrunk or cleared: every
/// pass overwrites what it reads) to at least that length.
fn grown<T: Copy + Default>(buf: &mut Vec<T>, len: usize) -> &mut [T] {
    if buf.len() < len {
        buf.resize(len, T::default());
    }
    &mut buf[..len]
}

/// The vertical pass: output row `y` from source rows `c.start[y] - y_off ..`.
fn vertical(src: &Plane<'_>, y_off: usize, c: &Coeffs, acc: &mut [i32], out: &mut [u8], n: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            unsafe { vertical_avx2(src, y_off, c, acc, out, n) };
            return;
        }
    }
    vertical_impl(src, y_off, c, acc, out, n);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
/// The vertical pass 32 bytes at a time with the sums in registers: per tap
/// pair, the two rows' bytes are interleaved and widened to i16 pairs and
/// multiplied-added with `[w0 w1]` (`vpmaddwd`), then shifted, saturated
/// to u8 and stored once. Integer arithmetic identical to
/// [`vertical_impl`], so both give the same bytes; the last `n % 32` bytes
/// of a row are summed one by one.
///
/// # Safety
/// AVX2; `src` holds every row `c.start[y] - y_off + k` the taps name, each
/// at least `n` bytes long, and `out` is a whole number of `n`-byte rows.
unsafe fn vertical_avx2(
    src: &Plane<'_>,
    y_off: usize,
    c: &Coeffs,
    _acc: &mut [i32],
    out: &mut [u8],
    n: usize,
) {
    use std::arch::x86_64::*;
    let half = _mm256_set1_epi32(1 << (PREC - 1));
    let zero = _mm256_setzero_si256();
    // Up to 2 * ksize rows; ksize is 2 * ceil(scale) + 1, so a stack array
    // covers downscales up to 31x and larger ones fall back to the generic pass.
    const MAX_TAPS: usize = 64;
    let mut rows = [std::ptr::null::<u8>(); MAX_TAPS];
    let mut pair_weights = [0i32; MAX_TAPS / 2];
    if c.ksize > MAX_TAPS {
        vertical_impl(src, y_off, c, _acc, out, n);
        return;
    }
    for (y, out_row) in out.chunks_exact_mut(n).enumerate() {
        let start = c.start[y] - y_off;
        let w = &c.weights[y * c.ksize..y * c.ksize + c.len[y]];
        for (k, r) in rows.iter_mut().enumerate().take(w.len()) {
            *r = src.row(start + k).as_ptr();
        }
        let npairs = w.len().div_ceil(2);
        for (j, pw) in pair_weights.iter_mut().enumerate().take(npairs) {
            let w0 = w[2 * j] as u16 as u32;
            let w1 = w.get(2 * j + 1).copied().unwrap_or(0) as u16 as u32;
            *pw = (w0 | (w1 << 16)) as i32;
        }
        let odd = w.len() % 2 == 1;
        let dst = out_row.as_mut_ptr();
        let mut x = 0;
        while x + 32 <= n {
            let (mut a0, mut a1, mut a2, mut a3) = (half, half, half, half);
            for j in 0..npairs {
                let wv = _mm256_set1_epi32(pair_weights[j]);
                let p0 = _mm256_loadu_si256(rows[2 * j].add(x) as *const __m256i);
                let p1 = if odd && j + 1 == npairs {
                    zero
                } else {
                    _mm256_loadu_si256(rows[2 * j + 1].add(x) as *const __m256i)
                };
                // per 128-bit lane: bytes 0..7 and 8..15 of both rows, interleaved
                let lo = _mm256_unpacklo_epi8(p0, p1);
                let hi = _mm256_unpackhi_epi8(p0, p1);
                let madd = |v: __m256i, wv: __m256i| _mm256_madd_epi16(v, wv);
                a0 = _mm256_add_epi32(a0, madd(_mm256_unpacklo_epi8(lo, zero), wv));
                a1 = _mm256_add_epi32(a1, madd(_mm256_unpackhi_epi8(lo, zero), wv));
                a2 = _mm256_add_epi32(a2, madd(_mm256_unpacklo_epi8(hi, zero), wv));
                a3 = _mm256_add_epi32(a3, madd(_mm256_unpackhi_epi8(hi, zero), wv));
            }
            let shift = |v: __m256i| _mm256_srai_epi32(v, PREC as i32);
            // per lane: bytes 0..3, 4..7 | 8..11, 12..15 back in order;
            // signed saturation to i16, then unsigned to u8: clamp(0, 255)
            let lo = _mm256_packs_epi32(shift(a0), shift(a1));
            let hi = _mm256_packs_epi32(shift(a2), shift(a3));
            _mm256_storeu_si256(dst.add(x) as *mut __m256i, _mm256_packus_epi16(lo, hi));
            x += 32;
        }
        for i in x..n {
            let mut a = 1i32 << (PREC - 1);
            for (k, &wk) in w.iter().enumerate() {
                a += i32::from(*rows[k].add(i)) * i32::from(wk);
            }
            *dst.add(i) = (a >> PREC).clamp(0, 255) as u8;
        }
    }
}

#[inline(always)]
fn vertical_impl(
    src: &Plane<'_>,
    y_off: usize,
    c: &Coeffs,
    acc: &mut [i32],
    out: &mut [u8],
    n: usize,
) {
    let half = 1i32 << (PREC - 1);
    for (y, out_row) in out.chunks_exact_mut(n).enumerate() {
        acc.fill(half);
        let start = c.start[y] - y_off;
        let w = &c.weights[y * c.ksize..y * c.ksize + c.len[y]];
        // Two taps per pass over the accumulators: half the memory traffic,
        // and the i16 x i16 pair sums vectorise to `pmaddwd`.
        let mut k = 0;
        while k + 1 < w.len() {
            let (r0, r1) = (src.row(start + k), src.row(start + k + 1));
            let (w0, w1) = (i32::from(w[k]), i32::from(w[k + 1]));
            for ((a, &p0), &p1) in acc.iter_mut().zip(r0).zip(r1) {
                *a += i32::from(i16::from(p0)) * w0 + i32::from(i16::from(p1)) * w1;
            }
            k += 2;
        }
        if k < w.len() {
            let row = src.row(start + k);
            let wk = i32::from(w[k]);
            for (a, &p) in acc.iter_mut().zip(row) {
                *a += i32::from(p) * wk;
            }
        }
        for (o, &a) in out_row.iter_mut().zip(acc.iter()) {
            *o = (a >> PREC).clamp(0, 255) as u8;
        }
    }
}

/// Bytes past the last intermediate row that the SIMD horizontal passes may
/// read: `npairs` pairs from the last tap start, 8 bytes per pair load.
fn tmp_slack(npairs: usize) -> usize {
    npairs * 6 + 8
}

/// The rows the horizontal pass reads: `rows` rows `stride` bytes apart,
/// each starting with the `tw` source pixels from column `x_lo` on.
#[derive(Debug, Clone, Copy)]
struct HorizontalRows<'a> {
    data: &'a [u8],
    stride: usize,
    tw: usize,
    x_lo: usize,
    rows: usize,
}

impl HorizontalRows<'_> {
    /// Whether the SIMD passes may read their fixed `npairs` tap pairs from
    /// every tap start: `tmp_slack` bytes past the last row's window.
    fn simd_readable(&self, npairs: usize) -> bool {
        self.rows == 0
            || self.data.len() >= (self.rows - 1) * self.stride + self.tw * 3 + tmp_slack(npairs)
    }
}

/// Calls `$pass::<NP>` with the tap-pair count as a compile-time constant
/// for the common counts (0: read `c.npairs` at run time).
macro_rules! by_pair_count {
    ($pass:ident, $np:expr, $args:expr) => {{
        let (rows, out_w, c, flip, dst) = $args;
        match $np {
            1 => $pass::<1>(rows, out_w, c, flip, dst),
            2 => $pass::<2>(rows, out_w, c, flip, dst),
            3 => $pass::<3>(rows, out_w, c, flip, dst),
            _ => $pass::<0>(rows, out_w, c, flip, dst),
        }
    }};
}

/// The horizontal pass: `rows.rows` rows of `out_w` pixels into `dst`.
fn horizontal(rows: HorizontalRows<'_>, out_w: usize, c: &Coeffs, flip: bool, dst: &mut [u8]) {
    debug_assert!(dst.len() >= rows.rows * out_w * 3);
    #[cfg(target_arch = "x86_64")]
    {
        let sized = c.pairs.len() == out_w.div_ceil(2) * 2 * c.npairs
            && rows.simd_readable(c.npairs)
            && dst.len() >= rows.rows * out_w * 3;
        if sized && std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above), and the
            // lengths of `pairs`, the rows and `dst` are what the pass uses.
            let args = (rows, out_w, c, flip, dst);
            unsafe { by_pair_count!(horizontal_avx2, c.npairs, args) };
            return;
        }
        if sized && std::arch::is_x86_feature_detected!("ssse3") {
            // SAFETY: as above, for SSSE3.
            let args = (rows, out_w, c, flip, dst);
            unsafe { by_pair_count!(horizontal_ssse3, c.npairs, args) };
            return;
        }
    }
    horizontal_scalar(rows, out_w, c, flip, dst);
}

/// Writes the low 3 bytes of `rgb` as output pixel `x` of `drow` (mirrored
/// when `flip`).
///
/// # Safety
/// `x < out_w` and `drow` holds `out_w` pixels.
#[inline(always)]
unsafe fn put_pixel(drow: &mut [u8], out_w: usize, flip: bool, x: usize, rgb: u32) {
    let ox = if flip { out_w - 1 - x } else { x };
    drow.get_unchecked_mut(ox * 3..ox * 3 + 3)
        .copy_from_slice(&rgb.to_le_bytes()[..3]);
}

/// One output pixel, two taps at a time: the two source pixels of a tap
/// pair are shuffled to `[r0 r1 g0 g1 b0 b1 0 0]` (i16) and multiplied-added
/// with `[w0 w1]` per channel; returns the RGB bytes in the low 3 bytes.
///
/// # Safety
/// SSSE3; `px` is the output's first tap in the intermediate rows, with
/// `np` pair loads of 8 bytes readable from it; `w` points at its first
/// weight lane, the others following at every second entry.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "ssse3")]
#[inline]
unsafe fn pixel_ssse3(px: *const u8, w: *const [i32; 4], np: usize) -> u32 {
    use std::arch::x86_64::*;
    let z = -128i8; // pshufb: zero this byte
    let mask = _mm_setr_epi8(0, z, 3, z, 1, z, 4, z, 2, z, 5, z, z, z, z, z);
    let mut acc = _mm_set1_epi32(1 << (PREC - 1));
    for j in 0..np {
        // SAFETY: tap pair j starts inside the window's rows; reads past the
        // row land in the next row or the slack and meet zero weights.
        let p = _mm_shuffle_epi8(_mm_loadl_epi64(px.add(j * 6) as *const __m128i), mask);
        let wv = _mm_loadu_si128(w.add(2 * j) as *const __m128i);
        acc = _mm_add_epi32(acc, _mm_madd_epi16(p, wv));
    }
    let v = _mm_srai_epi32(acc, PREC as i32);
    // Signed saturation to i16, then unsigned to u8: clamp(0, 255).
    let v = _mm_packs_epi32(v, v);
    _mm_cvtsi128_si32(_mm_packus_epi16(v, v)) as u32
}

/// The horizontal pass one output pixel at a time ([`pixel_ssse3`]).
/// Integer arithmetic identical to [`horizontal_scalar`], so both give the
/// same bytes. `NP` is the number of tap pairs known at compile time (0:
/// read `c.npairs`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "ssse3")]
unsafe fn horizontal_ssse3<const NP: usize>(
    rows: HorizontalRows<'_>,
    out_w: usize,
    c: &Coeffs,
    flip: bool,
    dst: &mut [u8],
) {
    let np = if NP == 0 { c.npairs } else { NP };
    for y in 0..rows.rows {
        let row = rows.data.as_ptr().add(y * rows.stride);
        let drow = dst.get_unchecked_mut(y * out_w * 3..(y + 1) * out_w * 3);
        for x in 0..out_w {
            let px = row.add((*c.start.get_unchecked(x) - rows.x_lo) * 3);
            let w = c.pairs.as_ptr().add(Coeffs::pair_index(x, 0, np));
            let rgb = pixel_ssse3(px, w, np);
            put_pixel(drow, out_w, flip, x, rgb);
        }
    }
}

/// [`horizontal_ssse3`] four output pixels at a time: pixels `x` and
/// `x + 2` in the low 128-bit lanes of two multiply-adds, `x + 1` and
/// `x + 3` in the high ones, then the four RGB triples compacted to 12 bytes
/// (mirrored when `flip`) and stored with one 16-byte write whose 4 spare
/// bytes fall on pixels of the row not written yet. The last pixels of a
/// row go two at a time and one by one. Same integer arithmetic, same bytes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn horizontal_avx2<const NP: usize>(
    rows: HorizontalRows<'_>,
    out_w: usize,
    c: &Coeffs,
    flip: bool,
    dst: &mut [u8],
) {
    use std::arch::x86_64::*;
    let np = if NP == 0 { c.npairs } else { NP };
    let half = _mm256_set1_epi32(1 << (PREC - 1));
    let z = -128i8; // pshufb: zero this byte
    let mask = _mm256_broadcastsi128_si256(_mm_setr_epi8(
        0, z, 3, z, 1, z, 4, z, 2, z, 5, z, z, z, z, z,
    ));
    // dwords p0 p1 p2 p3 (each RGB + a zero byte) to 12 bytes, in order or
    // mirrored pixel by pixel behind 4 spare bytes
    let forward = _mm_setr_epi8(0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, z, z, z, z);
    let mirrored = _mm_setr_epi8(z, z, z, z, 12, 13, 14, 8, 9, 10, 4, 5, 6, 0, 1, 2);
    let compact = if flip { mirrored } else { forward };
    let gather = _mm256_setr_epi32(0, 4, 1, 5, 0, 0, 0, 0);
    let pairs = c.pairs.as_ptr();
    let start = c.start.as_ptr();
    let x_lo = rows.x_lo;
    // two output pixels' sums for tap pairs of pixels at `pa` and `pb`,
    // weights at `w` (pixel pa's lane first)
    let two = |pa: *const u8, pb: *const u8, w: *const [i32; 4]| {
        let mut acc = half;
        for j in 0..np {
            let lo = _mm_loadl_epi64(pa.add(j * 6) as *const __m128i);
            let hi = _mm_loadl_epi64(pb.add(j * 6) as *const __m128i);
            let px = _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(lo), hi);
            let px = _mm256_shuffle_epi8(px, mask);
            let wv = _mm256_loadu_si256(w.add(2 * j) as *const __m256i);
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(px, wv));
        }
        _mm256_srai_epi32(acc, PREC as i32)
    };
    for y in 0..rows.rows {
        let row = rows.data.as_ptr().add(y * rows.stride);
        let tap = |x: usize| row.add((*start.add(x) - x_lo) * 3);
        let drow = dst.get_unchecked_mut(y * out_w * 3..(y + 1) * out_w * 3);
        let d = drow.as_mut_ptr();
        let mut x = 0;
        // SAFETY (all three loops): as in pixel_ssse3, for outputs x.., and
        // x + 6 <= out_w keeps the 16-byte store inside this row.
        while x + 6 <= out_w {
            let a01 = two(tap(x), tap(x + 1), pairs.add(x * np));
            let a23 = two(tap(x + 2), tap(x + 3), pairs.add((x + 2) * np));
            // per lane: signed saturation to i16, then unsigned to u8
            let v = _mm256_packs_epi32(a01, a23);
            let v = _mm256_packus_epi16(v, v);
            let v = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(v, gather));
            let v = _mm_shuffle_epi8(v, compact);
            let at = if flip { (out_w - 4 - x) * 3 - 4 } else { x * 3 };
            _mm_storeu_si128(d.add(at) as *mut __m128i, v);
            x += 4;
        }
        while x + 2 <= out_w {
            let v = two(tap(x), tap(x + 1), pairs.add(x * np));
            let v = _mm256_packs_epi32(v, v);
            let v = _mm256_packus_epi16(v, v);
            let a = _mm_cvtsi128_si32(_mm256_castsi256_si128(v)) as u32;
            let b = _mm_cvtsi128_si32(_mm256_extracti128_si256::<1>(v)) as u32;
            put_pixel(drow, out_w, flip, x, a);
            put_pixel(drow, out_w, flip, x + 1, b);
            x += 2;
        }
        if x < out_w {
            let rgb = pixel_ssse3(tap(x), pairs.add(Coeffs::pair_index(x, 0, np)), np);
            put_pixel(drow, out_w, flip, x, rgb);
        }
    }
}

fn horizontal_scalar(
    rows: HorizontalRows<'_>,
    out_w: usize,
    c: &Coeffs,
    flip: bool,
    dst: &mut [u8],
) {
    let half = 1i32 << (PREC - 1);
    for y in 0..rows.rows {
        let row = &rows.data[y * rows.stride..y * rows.stride + rows.tw * 3];
        let drow = &mut dst[y * out_w * 3..(y + 1) * out_w * 3];
        for x in 0..out_w {
            let s = c.start[x] - rows.x_lo;
            let l = c.len[x];
            let w = &c.weights[x * c.ksize..x * c.ksize + l];
            let px = &row[s * 3..(s + l) * 3];
            let (mut r, mut g, mut b) = (half, half, half);
            for (p, &wk) in px.chunks_exact(3).zip(w) {
                let wk = i32::from(wk);
                r += i32::from(p[0]) * wk;
                g += i32::from(p[1]) * wk;
                b += i32::from(p[2]) * wk;
            }
            let ox = if flip { out_w - 1 - x } else { x };
            let o = &mut drow[ox * 3..ox * 3 + 3];
            o[0] = (r >> PREC).clamp(0, 255) as u8;
            o[1] = (g >> PREC).clamp(0, 255) as u8;
            o[2] = (b >> PREC).clamp(0, 255) as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_box_copies_and_flip_mirrors() {
        let (w, h) = (5usize, 3usize);
        let data: Vec<u8> = (0..w * h * 3).map(|i| (i * 7 % 251) as u8).collect();
        let src = Plane {
            data: &data,
            width: w,
            height: h,
            stride: w,
        };
        let mut r = Resampler::default();
        let mut out = vec![0u8; w * h * 3];
        r.resize_box(src, [0.0, 0.0, w as f64, h as f64], w, h, false, &mut out);
        assert_eq!(out, data);
        r.resize_box(src, [0.0, 0.0, w as f64, h as f64], w, h, true, &mut out);
        for y in 0..h {
            for x in 0..w {
                let a = &out[(y * w + x) * 3..(y * w + x) * 3 + 3];
                let b = &data[(y * w + (w - 1 - x)) * 3..(y * w + (w - 1 - x)) * 3 + 3];
                assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn simd_horizontal_pass_matches_scalar_bit_for_bit() {
        // Random-ish rows, every scale from 4x down to 4x up, odd and even
        // tap counts, with and without flip.
        let (tw, out_h) = (61usize, 5usize);
        let tmp: Vec<u8> = (0..tw * 3 * out_h)
            .map(|i| ((i * 2654435761usize) >> 7) as u8)
            .collect();
        for &out_w in &[7usize, 15, 16, 25, 40, 61, 97, 244] {
            let mut c = Coeffs::default();
            c.compute(tw, 0.75, tw as f64 - 1.5, out_w);
            c.pack_pairs();
            let mut tmp = tmp.clone();
            tmp.resize(tw * 3 * out_h + tmp_slack(c.npairs), 0);
            let rows = HorizontalRows {
                data: &tmp,
                stride: tw * 3,
                tw,
                x_lo: 0,
                rows: out_h,
            };
            assert!(rows.simd_readable(c.npairs));
            for flip in [false, true] {
                let mut a = vec![0u8; out_w * out_h * 3];
                let mut b = vec![1u8; out_w * out_h * 3];
                horizontal_scalar(rows, out_w, &c, flip, &mut a);
                horizontal(rows, out_w, &c, flip, &mut b);
                assert_eq!(a, b, "out_w {out_w} flip {flip}");
                #[cfg(target_arch = "x86_64")]
                if std::arch::is_x86_feature_detected!("ssse3") {
                    let mut s = vec![2u8; out_w * out_h * 3];
                    // SAFETY: SSSE3 checked; pairs and slack sized above.
                    unsafe { horizontal_ssse3::<0>(rows, out_w, &c, flip, &mut s) };
                    assert_eq!(a, s, "ssse3: out_w {out_w} flip {flip}");
                }
            }
        }
    }

    /// Both pass orders, and the horizontal-first pass reading the source's
    /// last rows through its padded copy or directly: same image within one
    /// level (the orders round the intermediate differently), same bytes
    /// (direct vs padded).
    #[test]
    fn pass_orders_agree_and_the_padded_last_rows_change_nothing() {
        let (w, h) = (97usize, 71usize);
        let data: Vec<u8> = (0..w * h * 3)
            .map(|i| (((i / 3) % w) * 2 + (i / 3 / w) * 3 + (i % 3) * 40) as u8)
            .collect();
        let mut padded = data.clone();
        padded.resize(data.len() + 4096, 0);
        fn plane(data: &[u8], width: usize, height: usize) -> Plane<'_> {
            Plane {
                data,
                width,
                height,
                stride: width,
            }
        }
        let mut r = Resampler::default();
        // boxes touching the last row and column, up- and downscaling
        for &(bx, by, bw, bh, ow, oh) in &[
            (10.0, 20.0, 87.0, 51.0, 224usize, 224usize),
            (0.0, 0.0, 97.0, 71.0, 50, 40),
            (40.5, 30.25, 56.5, 40.75, 33, 129),
        ] {
            r.horiz.compute(w, bx, bw, ow);
            r.vert.compute(h, by, bh, oh);
            r.horiz.pack_pairs();
            let (x_lo, x_hi) = r.horiz.span();
            let (y_lo, y_hi) = r.vert.span();
            let (cols, rows) = ((x_lo, x_hi - x_lo), (y_lo, y_hi - y_lo));
            assert_eq!(y_hi, h, "the box must reach the last row");
            let mut a = vec![0u8; ow * oh * 3];
            let mut b = vec![0u8; ow * oh * 3];
            let mut c = vec![0u8; ow * oh * 3];
            for flip in [false, true] {
                r.horizontal_first(plane(&data, w, h), cols, rows, ow, flip, &mut a);
                r.horizontal_first(plane(&padded, w, h), cols, rows, ow, flip, &mut b);
                r.vertical_first(plane(&data, w, h), cols, ow, oh, flip, &mut c);
                assert_eq!(a, b, "{ow}x{oh} flip {flip}: padded vs direct rows");
                let worst = a.iter().zip(&c).map(|(x, y)| x.abs_diff(*y)).max();
                assert!(
                    worst <= Some(1),
                    "{ow}x{oh} flip {flip}: orders differ by {worst:?}"
                );
            }
        }
    }

    #[test]
    fn simd_vertical_pass_matches_scalar_bit_for_bit() {
        // 4x up to 4x down (1 to 9 taps, odd and even), rows of 32k and
        // 32k + tail bytes.
        for &(w, h) in &[(32usize, 40usize), (45, 23), (7, 61)] {
            let data: Vec<u8> = (0..w * h * 3)
                .map(|i| ((i * 2654435761usize) >> 11) as u8)
                .collect();
            let src = Plane {
                data: &data,
                width: w,
                height: h,
                stride: w,
            };
            let n = w * 3;
            for &out_h in &[6usize, 11, 23, 40, 97, 160] {
                let mut c = Coeffs::default();
                c.compute(h, 0.5, h as f64 - 1.0, out_h);
                let mut acc = vec![0i32; n];
                let mut a = vec![0u8; out_h * n];
                vertical_impl(&src, 0, &c, &mut acc, &mut a, n);
                #[cfg(target_arch = "x86_64")]
                if std::arch::is_x86_feature_detected!("avx2") {
                    let mut b = vec![1u8; out_h * n];
                    // SAFETY: AVX2 checked; the coefficients index rows of src.
                    unsafe { vertical_avx2(&src, 0, &c, &mut acc, &mut b, n) };
                    assert_eq!(a, b, "{w}x{h} -> {out_h} rows");
                }
            }
        }
    }

    #[test]
    fn constant_image_stays_constant_under_any_scale() {
        let (w, h) = (37usize, 23usize);
        let data = vec![200u8; w * h * 3];
        let src = Plane {
            data: &data,
            width: w,
            height: h,
            stride: w,
        };
        let mut r = Resampler::default();
        for &(ow, oh) in &[(8usize, 5usize), (100, 61), (37, 23), (3, 40)] {
            let mut out = vec![0u8; ow * oh * 3];
            r.resize_box(src, [1.5, 2.25, 30.0, 17.5], ow, oh, false, &mut out);
            assert!(out.iter().all(|&v| v == 200), "{ow}x{oh}");
        }
    }
}
