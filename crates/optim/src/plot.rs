//! PNG plots with plotters, text through `ab_glyph` with a TrueType font found at run time
//! (no fontconfig needed).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::prelude::*;

use crate::{Error, Result};

const FONT_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
    "/usr/share/fonts/noto/NotoSans-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "/Library/Fonts/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

/// The TrueType font used for plot text: `$BRIGADE_FONT` if set, else the first of a list
/// of common system locations (DejaVu Sans, Liberation Sans, FreeSans, Noto Sans, Arial).
pub fn find_font() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BRIGADE_FONT") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Some(p);
        }
    }
    FONT_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// Registers the font with plotters once per process; whether text can be drawn.
pub fn text_available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        let Some(path) = find_font() else {
            return false;
        };
        let Ok(bytes) = std::fs::read(&path) else {
            return false;
        };
        // plotters keeps `&'static` font data: leak this one buffer (once per process)
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
    })
}

fn perr(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Plot {
        path: path.to_path_buf(),
        msg: e.to_string(),
    }
}

/// Loss against learning rate (log x), vertical markers at `marks`. Returns whether text
/// was drawn.
pub(crate) fn lr_curve(
    path: &Path,
    caption: &str,
    lrs: &[f64],
    losses: &[f64],
    marks: &[Option<f64>],
) -> Result<bool> {
    let pts: Vec<(f64, f64)> = lrs
        .iter()
        .zip(losses)
        .filter(|(l, v)| **l > 0.0 && v.is_finite())
        .map(|(a, b)| (*a, *b))
        .collect();
    if pts.len() < 2 {
        return Err(perr(path, "fewer than two finite points"));
    }
    let (x0, x1) = pts.iter().fold((f64::INFINITY, 0.0f64), |(a, b), p| {
        (a.min(p.0), b.max(p.0))
    });
    let (mut y0, mut y1) = pts
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.1), b.max(p.1))
        });
    if y1 - y0 < 1e-12 {
        y0 -= 0.5;
        y1 += 0.5;
    }
    let pad = (y1 - y0) * 0.05;
    let x1 = if x1 > x0 { x1 } else { x0 * 10.0 };
    let text = text_available();
    let root = BitMapBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| perr(path, e))?;
    let mut builder = ChartBuilder::on(&root);
    builder.margin(15);
    if text {
        builder
            .caption(caption, ("sans-serif", 20))
            .x_label_area_size(45)
            .y_label_area_size(60);
    }
    let mut chart = builder
        .build_cartesian_2d((x0..x1).log_scale(), (y0 - pad)..(y1 + pad))
        .map_err(|e| perr(path, e))?;
    let mut mesh = chart.configure_mesh();
    if text {
        mesh.x_desc("learning rate (log scale)")
            .y_desc("smoothed loss")
            .x_label_formatter(&|v| format!("{v:.0e}"));
    } else {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw().map_err(|e| perr(path, e))?;
    chart
        .draw_series(LineSeries::new(pts.iter().copied(), BLUE.stroke_width(2)))
        .map_err(|e| perr(path, e))?;
    let colors = [RED, GREEN];
    for (m, c) in marks.iter().zip(colors) {
        if let Some(x) = m.filter(|x| *x >= x0 && *x <= x1) {
            chart
                .draw_series(LineSeries::new(
                    [(x, y0 - pad), (x, y1 + pad)],
                    c.stroke_width(1),
                ))
                .map_err(|e| perr(path, e))?;
        }
    }
    root.present().map_err(|e| perr(path, e))?;
    Ok(text)
}
