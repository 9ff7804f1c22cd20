//! Deterministic synthetic image-classification datasets in the Food-101 layout.
//!
//! [`generate`] writes `meta/{classes,labels,train,test}.txt` and
//! `images/<class>/<id>.jpg` (JPEGs of varied size and aspect). Every class
//! has its own structure: a palette, a stripe texture with its own frequency
//! and orientation, and a shape kind drawn at random positions and scales;
//! every image adds jitter, background clutter and noise. A small CNN learns
//! it at 64 px, but positions, scales and sizes vary enough that it needs
//! augmentation to generalise.
//!
//! The bytes depend only on the [`SynthConfig`] (seed included), never on
//! thread count or scheduling; images are rendered and encoded in parallel.
//!
//! ```
//! use brigade_synth::{generate, SynthConfig};
//!
//! let dir = tempfile::tempdir()?;
//! let out = dir.path().join("synth");
//! let cfg = SynthConfig { max_side: 96, ..SynthConfig::new(3, 4, 2, 7) };
//! let summary = generate(&cfg, &out)?;
//! assert_eq!((summary.train, summary.test), (12, 6));
//! let classes = std::fs::read_to_string(out.join("meta/classes.txt"))?;
//! assert_eq!(classes.lines().count(), 3);
//! assert!(out.join("images/synth_000/000000.jpg").is_file());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthConfig {
    /// Number of classes (≥ 1).
    pub classes: u32,
    /// Training images per class (≥ 1).
    pub per_class: u32,
    /// Test images per class.
    pub test_per_class: u32,
    /// Seed of everything.
    pub seed: u64,
    /// Longest image side in pixels (≥ 16).
    pub max_side: u32,
    /// Shortest image side; 0 means `max_side / 4` (at least 8).
    pub min_side: u32,
    /// JPEG quality, 1–100.
    pub quality: u8,
}

impl SynthConfig {
    /// Defaults: sides 128–512 px, JPEG quality 90.
    pub fn new(classes: u32, per_class: u32, test_per_class: u32, seed: u64) -> Self {
        SynthConfig {
            classes,
            per_class,
            test_per_class,
            seed,
            max_side: 512,
            min_side: 0,
            quality: 90,
        }
    }

    fn min_side(&self) -> u32 {
        if self.min_side == 0 {
            (self.max_side / 4).max(8)
        } else {
            self.min_side
        }
    }

    fn validate(&self) -> Result<(), SynthError> {
        let bad = |m: String| Err(SynthError::BadConfig(m));
        if self.classes == 0 {
            return bad("classes must be at least 1".into());
        }
        if self.classes > 100_000 {
            return bad(format!("{} classes is more than 100000", self.classes));
        }
        if self.per_class == 0 {
            return bad("per_class must be at least 1".into());
        }
        if self.max_side < 16 || self.max_side > 8192 {
            return bad(format!("max_side {} is not in 16..=8192", self.max_side));
        }
        let min = self.min_side();
        if min < 8 || min > self.max_side {
            return bad(format!(
                "min_side {min} is not in 8..=max_side ({})",
                self.max_side
            ));
        }
        if self.quality == 0 || self.quality > 100 {
            return bad(format!("quality {} is not in 1..=100", self.quality));
        }
        Ok(())
    }
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthSummary {
    /// The dataset root (holds `meta/` and `images/`).
    pub root: PathBuf,
    pub classes: u32,
    pub train: usize,
    pub test: usize,
    /// Total bytes of JPEG data.
    pub bytes: u64,
}

/// Errors of [`generate`].
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("invalid synth config: {0}")]
    BadConfig(String),
    #[error("{path}: already exists and is not empty; choose a new folder")]
    OutputExists { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: cannot encode JPEG: {message}")]
    Encode { path: PathBuf, message: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SynthError + '_ {
    move |source| SynthError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Folder name of class `i` (`synth_000`, …).
pub fn class_name(i: u32, classes: u32) -> String {
    let width = classes.saturating_sub(1).to_string().len().max(3);
    format!("synth_{i:0width$}")
}

/// Image id of the `i`-th image of a class (train ids first, then test).
pub fn image_id(i: u32) -> String {
    format!("{i:06}")
}

/// Generates the dataset into `out_dir`, which must not exist or be empty.
/// Everything is written to a sibling `.partial` folder first and renamed
/// into place at the end, so a half-written dataset is never mistaken for a
/// finished one.
pub fn generate(cfg: &SynthConfig, out_dir: &Path) -> Result<SynthSummary, SynthError> {
    cfg.validate()?;
    if let Ok(mut rd) = fs::read_dir(out_dir) {
        if rd.next().is_some() {
            return Err(SynthError::OutputExists {
                path: out_dir.to_path_buf(),
            });
        }
    }
    let parent = match out_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(io_err(&parent))?;
    let name = out_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "synth".into());
    let tmp = parent.join(format!(".{name}.partial-{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
    }
    let result = write_all(cfg, &tmp).and_then(|(train, test, bytes)| {
        if out_dir.exists() {
            fs::remove_dir(out_dir).map_err(io_err(out_dir))?;
        }
        fs::rename(&tmp, out_dir).map_err(io_err(out_dir))?;
        Ok((train, test, bytes))
    });
    match result {
        Ok((train, test, bytes)) => Ok(SynthSummary {
            root: out_dir.to_path_buf(),
            classes: cfg.classes,
            train,
            test,
            bytes,
        }),
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

fn write_all(cfg: &SynthConfig, root: &Path) -> Result<(usize, usize, u64), SynthError> {
    let meta = root.join("meta");
    fs::create_dir_all(&meta).map_err(io_err(&meta))?;
    let names: Vec<String> = (0..cfg.classes)
        .map(|c| class_name(c, cfg.classes))
        .collect();
    for n in &names {
        let d = root.join("images").join(n);
        fs::create_dir_all(&d).map_err(io_err(&d))?;
    }
    let per = cfg.per_class + cfg.test_per_class;
    let jobs: Vec<(u32, u32)> = (0..cfg.classes)
        .flat_map(|c| (0..per).map(move |i| (c, i)))
        .collect();
    let sizes: Vec<u64> = jobs
        .par_iter()
        .map_init(Vec::new, |buf, &(c, i)| {
            let path = root
                .join("images")
                .join(&names[c as usize])
                .join(format!("{}.jpg", image_id(i)));
            let (w, h, pixels) = render(cfg, c, i);
            buf.clear();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut *buf, cfg.quality)
                .encode(&pixels, w, h, image::ExtendedColorType::Rgb8)
                .map_err(|e| SynthError::Encode {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
            fs::write(&path, &*buf).map_err(io_err(&path))?;
            Ok(buf.len() as u64)
        })
        .collect::<Result<_, SynthError>>()?;
    let mut train = String::new();
    let mut test = String::new();
    for n in &names {
        for i in 0..per {
            let line = format!("{n}/{}\n", image_id(i));
            if i < cfg.per_class {
                train.push_str(&line);
            } else {
                test.push_str(&line);
            }
        }
    }
    let labels: Vec<String> = (0..cfg.classes)
        .map(|c| {
            let p = class_params(cfg.seed, c);
            format!(
                "Synth {c}: {} {} stripes at {}°",
                SHAPES[p.shape],
                FREQ_NAMES[p.freq_level],
                p.orientation.to_degrees().round() as i32
            )
        })
        .collect();
    let write = |file: &str, text: String| -> Result<(), SynthError> {
        let p = meta.join(file);
        let mut f = fs::File::create(&p).map_err(io_err(&p))?;
        f.write_all(text.as_bytes()).map_err(io_err(&p))
    };
    write("classes.txt", names.join("\n") + "\n")?;
    write("labels.txt", labels.join("\n") + "\n")?;
    write("train.txt", train)?;
    write("test.txt", test)?;
    let n_train = (cfg.classes * cfg.per_class) as usize;
    let n_test = (cfg.classes * cfg.test_per_class) as usize;
    Ok((n_train, n_test, sizes.iter().sum()))
}

// ------------------------------------------------------------------ render

const SHAPES: [&str; 5] = ["circles", "squares", "triangles", "rings", "crosses"];
const FREQ_NAMES: [&str; 3] = ["wide", "medium", "fine"];
const FREQS: [f32; 3] = [2.5, 5.0, 9.0];

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

struct ClassParams {
    hue: f32,
    /// Hue offset of the second stripe colour and the shapes.
    hue2: f32,
    orientation: f32,
    freq_level: usize,
    shape: usize,
}

fn class_params(seed: u64, c: u32) -> ClassParams {
    // Attributes vary along independent axes so classes differ in several.
    let h = mix(seed ^ 0x5EED_C1A5);
    let c64 = u64::from(c);
    ClassParams {
        hue: ((c64 as f64 * 0.618_033_988_75 + (h % 1000) as f64 / 1000.0) % 1.0) as f32,
        hue2: [0.5f32, 0.33, 0.17][(c64 / 30 % 3) as usize],
        orientation: ((c64 % 6) as f32) * std::f32::consts::PI / 6.0,
        freq_level: ((c64 / 6) % 3) as usize,
        shape: ((c64 / 18 + c64) % 5) as usize,
    }
}

fn hsv(h: f32, s: f32, v: f32) -> [f32; 3] {
    let h = h.rem_euclid(1.0) * 6.0;
    let i = h.floor();
    let f = h - i;
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    match i as i32 {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

struct Shape {
    cx: f32,
    cy: f32,
    r: f32,
    sin: f32,
    cos: f32,
    color: [f32; 3],
}

fn shape(cx: f32, cy: f32, r: f32, angle: f32, color: [f32; 3]) -> Shape {
    let (sin, cos) = angle.sin_cos();
    Shape {
        cx,
        cy,
        r,
        sin,
        cos,
        color,
    }
}

fn inside(kind: usize, s: &Shape, x: f32, y: f32) -> bool {
    let (dx, dy) = (x - s.cx, y - s.cy);
    if dx.abs() > s.r * 1.5 || dy.abs() > s.r * 1.5 {
        return false;
    }
    let (sin, cos) = (s.sin, s.cos);
    let (u, v) = (dx * cos + dy * sin, -dx * sin + dy * cos);
    let r = s.r;
    match kind {
        0 => u * u + v * v <= r * r,
        1 => u.abs() <= r * 0.8 && v.abs() <= r * 0.8,
        2 => {
            // Equilateral-ish triangle pointing up in the rotated frame.
            v <= r * 0.5 && v >= -r && u.abs() <= (v + r) * 0.58
        }
        3 => {
            let d = u * u + v * v;
            d <= r * r && d >= (r * 0.55) * (r * 0.55)
        }
        _ => (u.abs() <= r * 0.25 && v.abs() <= r) || (v.abs() <= r * 0.25 && u.abs() <= r),
    }
}

/// Renders image `i` of class `c`: (width, height, RGB8 pixels).
pub fn render(cfg: &SynthConfig, c: u32, i: u32) -> (u32, u32, Vec<u8>) {
    let p = class_params(cfg.seed, c);
    let mut rng = ChaCha8Rng::seed_from_u64(mix(mix(mix(cfg.seed) ^ u64::from(c)) ^ u64::from(i)));
    let (lo, hi) = (cfg.min_side(), cfg.max_side);
    let w = rng.gen_range(lo..=hi);
    let h = rng.gen_range(lo..=hi);
    let s = w.min(h) as f32;

    let hue = p.hue + rng.gen_range(-0.03..0.03);
    let c1 = hsv(hue, rng.gen_range(0.55..0.9), rng.gen_range(0.55..0.95));
    let c2 = hsv(
        hue + p.hue2,
        rng.gen_range(0.3..0.7),
        rng.gen_range(0.25..0.6),
    );
    let theta = p.orientation + rng.gen_range(-0.17..0.17);
    let freq = FREQS[p.freq_level] * rng.gen_range(0.85..1.15);
    let phase = rng.gen_range(0.0..std::f32::consts::TAU);
    let (st, ct) = theta.sin_cos();
    let k = std::f32::consts::TAU * freq / s;

    // Shapes of the class kind, in the complementary colour.
    let n_shapes = rng.gen_range(1..=3);
    let shapes: Vec<Shape> = (0..n_shapes)
        .map(|_| {
            let cx = rng.gen_range(0.15..0.85) * w as f32;
            let cy = rng.gen_range(0.15..0.85) * h as f32;
            let r = rng.gen_range(0.1..0.28) * s;
            let angle = rng.gen_range(-0.4..0.4);
            let color = hsv(
                hue + 0.5 + rng.gen_range(-0.05..0.05),
                0.8,
                rng.gen_range(0.7..1.0),
            );
            shape(cx, cy, r, angle, color)
        })
        .collect();
    // Clutter: other shape kinds in random colours, smaller, half transparent.
    let n_clutter = rng.gen_range(2..=6);
    let clutter: Vec<(usize, Shape)> = (0..n_clutter)
        .map(|_| {
            let kind = rng.gen_range(0..SHAPES.len());
            let cx = rng.gen_range(0.0..1.0) * w as f32;
            let cy = rng.gen_range(0.0..1.0) * h as f32;
            let r = rng.gen_range(0.04..0.12) * s;
            let angle = rng.gen_range(0.0..std::f32::consts::TAU);
            let color = hsv(
                rng.gen_range(0.0..1.0),
                rng.gen_range(0.2..0.9),
                rng.gen_range(0.3..1.0),
            );
            (kind, shape(cx, cy, r, angle, color))
        })
        .collect();
    let noise = rng.gen_range(4.0f32..14.0);
    let gain = rng.gen_range(0.85f32..1.15);

    let mut out = vec![0u8; (w * h * 3) as usize];
    let mut nrng = ChaCha8Rng::seed_from_u64(rng.gen());
    for y in 0..h {
        let fy = y as f32 + 0.5;
        for x in 0..w {
            let fx = x as f32 + 0.5;
            let t = 0.5 + 0.5 * (k * (fx * ct + fy * st) + phase).sin();
            let mut px = [
                c1[0] * t + c2[0] * (1.0 - t),
                c1[1] * t + c2[1] * (1.0 - t),
                c1[2] * t + c2[2] * (1.0 - t),
            ];
            for (kind, cs) in &clutter {
                if inside(*kind, cs, fx, fy) {
                    for (v, c) in px.iter_mut().zip(cs.color) {
                        *v = 0.5 * *v + 0.5 * c;
                    }
                }
            }
            for sh in &shapes {
                if inside(p.shape, sh, fx, fy) {
                    px = sh.color;
                }
            }
            let o = ((y * w + x) * 3) as usize;
            let r: u32 = nrng.gen();
            for (ch, (dst, v)) in out[o..o + 3].iter_mut().zip(px).enumerate() {
                let n = (((r >> (ch * 8)) & 0xFF) as f32 / 255.0 - 0.5) * 2.0 * noise;
                *dst = (v * 255.0 * gain + n).clamp(0.0, 255.0) as u8;
            }
        }
    }
    (w, h, out)
}
