//! PNG plots (plotters, bitmap backend): losses, accuracy and learning rate of
//! a run, the confusion matrix, and a grid of mistakes.
//!
//! Text needs a TrueType font: the first of `BRIGADE_FONT`, DejaVu Sans or
//! Liberation Sans found on the system is registered with plotters'
//! `ab_glyph` backend. Without one, plots are drawn without any text (axes,
//! series and cells only) and [`font_available`] says so.

use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::metrics::{EpochRecord, StepRecord};

/// Plotting failures.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("plot {path}: {message}")]
    Draw { path: PathBuf, message: String },
}

fn draw_err<E: std::fmt::Display>(path: &Path) -> impl Fn(E) -> PlotError + '_ {
    move |e| PlotError::Draw {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

const FONT_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/Library/Fonts/Arial.ttf",
];

/// Whether a font was found and registered (text is drawn only then).
pub fn font_available() -> bool {
    static FONT: OnceLock<bool> = OnceLock::new();
    *FONT.get_or_init(|| {
        let mut candidates: Vec<PathBuf> = Vec::new();
        if let Some(p) = std::env::var_os("BRIGADE_FONT") {
            candidates.push(p.into());
        }
        candidates.extend(FONT_CANDIDATES.iter().map(PathBuf::from));
        for p in candidates {
            if let Ok(bytes) = std::fs::read(&p) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

fn ema_smooth(values: &[f64], beta: f64) -> Vec<f64> {
    let mut avg = 0.0;
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            avg = beta * avg + (1.0 - beta) * v;
            avg / (1.0 - beta.powi(i as i32 + 1))
        })
        .collect()
}

fn range(vals: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in vals.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        return (lo - 0.5, hi + 0.5);
    }
    let pad = 0.05 * (hi - lo);
    (lo - pad, hi + pad)
}

type Series<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);

/// A line chart of several series.
fn line_chart(
    path: &Path,
    caption: &str,
    x_desc: &str,
    series: &[Series<'_>],
) -> Result<(), PlotError> {
    let text = font_available();
    let root = BitMapBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_err(path))?;
    let (x0, x1) = range(series.iter().flat_map(|s| s.2.iter().map(|p| p.0)));
    let (y0, y1) = range(series.iter().flat_map(|s| s.2.iter().map(|p| p.1)));
    let mut b = ChartBuilder::on(&root);
    b.margin(15);
    if text {
        b.caption(caption, ("sans-serif", 22))
            .x_label_area_size(40)
            .y_label_area_size(70);
    }
    let mut chart = b
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(draw_err(path))?;
    let mut mesh = chart.configure_mesh();
    if text {
        mesh.x_desc(x_desc);
    } else {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw().map_err(draw_err(path))?;
    for (name, color, pts) in series {
        let c = *color;
        let s = chart
            .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2)))
            .map_err(draw_err(path))?;
        if text {
            s.label(*name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c));
        }
    }
    if text {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(draw_err(path))?;
    }
    root.present().map_err(draw_err(path))?;
    Ok(())
}

/// Writes `loss.png`, `accuracy.png` and `lr.png` into `dir`; returns their paths.
pub fn plot_run(
    steps: &[&StepRecord],
    epochs: &[&EpochRecord],
    dir: &Path,
) -> Result<Vec<PathBuf>, PlotError> {
    let mut out = Vec::new();
    let xs: Vec<f64> = steps.iter().map(|s| s.step as f64).collect();
    let raw: Vec<f64> = steps.iter().map(|s| s.loss).collect();
    let smooth = ema_smooth(&raw, 0.98);
    let loss_path = dir.join("loss.png");
    let mut loss_series: Vec<Series<'_>> = vec![
        (
            "train (batch)",
            RGBColor(180, 200, 230),
            xs.iter().copied().zip(raw.iter().copied()).collect(),
        ),
        (
            "train (smoothed)",
            BLUE,
            xs.iter().copied().zip(smooth).collect(),
        ),
    ];
    loss_series.push((
        "valid",
        RED,
        epochs
            .iter()
            .map(|e| (e.step as f64, e.valid_loss))
            .collect(),
    ));
    line_chart(&loss_path, "loss", "step", &loss_series)?;
    out.push(loss_path);

    let acc_path = dir.join("accuracy.png");
    line_chart(
        &acc_path,
        "validation accuracy",
        "epoch",
        &[
            (
                "top-1",
                BLUE,
                epochs
                    .iter()
                    .map(|e| (e.epoch as f64 + 1.0, e.valid_top1))
                    .collect(),
            ),
            (
                "top-5",
                GREEN,
                epochs
                    .iter()
                    .map(|e| (e.epoch as f64 + 1.0, e.valid_top5))
                    .collect(),
            ),
        ],
    )?;
    out.push(acc_path);

    let lr_path = dir.join("lr.png");
    line_chart(
        &lr_path,
        "learning rate (head group)",
        "step",
        &[(
            "lr",
            MAGENTA,
            steps.iter().map(|s| (s.step as f64, s.lr)).collect(),
        )],
    )?;
    out.push(lr_path);
    Ok(out)
}

/// Draws a confusion matrix (rows: true class, columns: predicted), row-normalised colours.
pub fn plot_confusion(
    matrix: &[Vec<u64>],
    classes: &[String],
    path: &Path,
) -> Result<(), PlotError> {
    let n = matrix.len().max(1);
    let text = font_available() && n <= 40;
    let cell = (800 / n).clamp(4, 60) as u32;
    let margin = if text { 140 } else { 10 };
    let side = cell * n as u32 + margin + 10;
    let root = BitMapBackend::new(path, (side, side)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_err(path))?;
    for (r, row) in matrix.iter().enumerate() {
        let total: u64 = row.iter().sum();
        for (c, &v) in row.iter().enumerate() {
            let frac = if total == 0 {
                0.0
            } else {
                v as f64 / total as f64
            };
            let shade = (255.0 * (1.0 - frac)) as u8;
            let x = margin as i32 + (c as u32 * cell) as i32;
            let y = margin as i32 + (r as u32 * cell) as i32;
            root.draw(&Rectangle::new(
                [(x, y), (x + cell as i32, y + cell as i32)],
                RGBColor(shade, shade, 255).filled(),
            ))
            .map_err(draw_err(path))?;
            if text && cell >= 18 && v > 0 {
                let color = if frac > 0.5 { WHITE } else { BLACK };
                root.draw(&Text::new(
                    v.to_string(),
                    (x + 2, y + cell as i32 / 3),
                    ("sans-serif", (cell / 3).max(8)).into_font().color(&color),
                ))
                .map_err(draw_err(path))?;
            }
        }
    }
    if text {
        for (i, name) in classes.iter().enumerate().take(n) {
            let mut name = name.clone();
            name.truncate(18);
            let y = margin as i32 + (i as u32 * cell) as i32 + cell as i32 / 3;
            root.draw(&Text::new(name.clone(), (4, y), ("sans-serif", 12)))
                .map_err(draw_err(path))?;
            let x = margin as i32 + (i as u32 * cell) as i32 + 2;
            root.draw(&Text::new(
                name,
                (x, 4),
                ("sans-serif", 12)
                    .into_font()
                    .transform(FontTransform::Rotate90),
            ))
            .map_err(draw_err(path))?;
        }
    }
    root.present().map_err(draw_err(path))?;
    Ok(())
}

/// One tile of the mistakes grid: an RGB8 HWC image with its caption.
pub struct Tile<'a> {
    pub width: u32,
    pub height: u32,
    pub rgb: &'a [u8],
    pub caption: String,
}

/// Draws tiles in a grid of `cols` columns (caption under each when a font exists).
pub fn plot_grid(tiles: &[Tile<'_>], cols: usize, path: &Path) -> Result<(), PlotError> {
    let text = font_available();
    let cols = cols.min(tiles.len()).max(1);
    let rows = tiles.len().div_ceil(cols).max(1);
    let tw = tiles.iter().map(|t| t.width).max().unwrap_or(64);
    let th = tiles.iter().map(|t| t.height).max().unwrap_or(64);
    // Small tiles (low-resolution runs) are enlarged by an integer factor,
    // and cells are wide enough for their two caption lines.
    let scale = 128u32.div_ceil(tw.max(th).max(1)).clamp(1, 8);
    let (sw, sh) = (tw * scale, th * scale);
    let cell_w = sw.max(if text { 180 } else { 0 }) + 6;
    let cap = if text { 30 } else { 0 };
    let (w, h) = (cols as u32 * cell_w, rows as u32 * (sh + 6 + cap));
    let root = BitMapBackend::new(path, (w.max(8), h.max(8))).into_drawing_area();
    root.fill(&WHITE).map_err(draw_err(path))?;
    for (i, t) in tiles.iter().enumerate() {
        let ox = (i % cols) as i32 * cell_w as i32 + 3;
        let oy = (i / cols) as i32 * (sh + 6 + cap) as i32 + 3;
        if t.rgb.len() < (t.width * t.height * 3) as usize {
            return Err(PlotError::Draw {
                path: path.to_path_buf(),
                message: format!(
                    "tile {i}: {} bytes for {}x{}",
                    t.rgb.len(),
                    t.width,
                    t.height
                ),
            });
        }
        for y in 0..t.height * scale {
            for x in 0..t.width * scale {
                let o = (((y / scale) * t.width + x / scale) * 3) as usize;
                root.draw_pixel(
                    (ox + x as i32, oy + y as i32),
                    &RGBColor(t.rgb[o], t.rgb[o + 1], t.rgb[o + 2]),
                )
                .map_err(draw_err(path))?;
            }
        }
        if text {
            // "truth → predicted (p%)" on two lines, cut by characters (not
            // bytes: labels may be any UTF-8).
            let (first, second) = match t.caption.split_once(" → ") {
                Some((a, b)) => (a.to_string(), format!("→ {b}")),
                None => (t.caption.clone(), String::new()),
            };
            for (k, line) in [first, second].into_iter().enumerate() {
                let line: String = line.chars().take(30).collect();
                root.draw(&Text::new(
                    line,
                    (ox, oy + sh as i32 + 2 + 14 * k as i32),
                    ("sans-serif", 12).into_font().color(&RED),
                ))
                .map_err(draw_err(path))?;
            }
        }
    }
    root.present().map_err(draw_err(path))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_png(p: &Path) -> bool {
        std::fs::read(p)
            .map(|b| b.starts_with(b"\x89PNG\r\n\x1a\n") && b.len() > 200)
            .unwrap_or(false)
    }

    #[test]
    fn run_plots_are_pngs() {
        let d = tempfile::tempdir().unwrap();
        let steps: Vec<StepRecord> = (1..=30)
            .map(|s| StepRecord {
                step: s,
                epoch: (s / 10) as u32,
                batch: (s % 10) as u32,
                loss: 2.0 / s as f64,
                lr: 1e-3 * s as f64,
            })
            .collect();
        let epochs: Vec<EpochRecord> = (0..3)
            .map(|e| EpochRecord {
                step: 10 * (e + 1) as u64,
                epoch: e,
                stage: "s".into(),
                size: 32,
                train_loss: 1.0,
                valid_loss: 1.0 / (e + 1) as f64,
                valid_top1: 0.3 * e as f64,
                valid_top5: 0.5,
                img_per_s: 10.0,
                stall_frac: 0.1,
                lr: 1e-3,
                secs: 1.0,
            })
            .collect();
        let s: Vec<&StepRecord> = steps.iter().collect();
        let e: Vec<&EpochRecord> = epochs.iter().collect();
        let paths = plot_run(&s, &e, d.path()).unwrap();
        assert_eq!(paths.len(), 3);
        for p in &paths {
            assert!(is_png(p), "{}", p.display());
        }
        let cm = vec![vec![5, 1], vec![0, 7]];
        let cp = d.path().join("cm.png");
        plot_confusion(&cm, &["a".into(), "b".into()], &cp).unwrap();
        assert!(is_png(&cp));
        let img = vec![128u8; 8 * 8 * 3];
        let tiles: Vec<Tile<'_>> = (0..3)
            .map(|i| Tile {
                width: 8,
                height: 8,
                rgb: &img,
                caption: format!("crème brûlée {i} → 焼き鳥 très long nom de plat ({i}0%)"),
            })
            .collect();
        let gp = d.path().join("grid.png");
        // multi-byte labels longer than the caption width must not panic
        plot_grid(&tiles, 2, &gp).unwrap();
        assert!(is_png(&gp));
        // 8 px tiles are enlarged (x8 is the cap): 2 columns of at least 64 px
        let decoded = image::open(&gp).unwrap();
        assert!(decoded.width() >= 2 * 64 && decoded.height() >= 2 * 64);
    }

    #[test]
    fn smoothing_is_bias_corrected() {
        let s = ema_smooth(&[2.0, 2.0, 2.0], 0.98);
        for v in s {
            assert!((v - 2.0).abs() < 1e-12);
        }
    }
}
