//! Evaluation of a trained model on a split: top-1/top-5, loss, per-class
//! accuracy, confusion matrix (CSV + PNG), most-confused pairs and a grid of
//! mistakes (PNG), written as `eval.json` + files into a folder.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::{Kind, Reduction, Tensor};

use crate::data::{DataError, DataSource, DeviceBatch, EpochIter, IMAGENET_MEAN, IMAGENET_STD};
use crate::model::Net;
use crate::plot::{self, Tile};

/// Report failures.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("evaluation: tensor: {0}")]
    Torch(#[from] tch::TchError),
    #[error(transparent)]
    Plot(#[from] plot::PlotError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Accuracy of one class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassAccuracy {
    pub class: u32,
    pub name: String,
    pub n: u64,
    pub top1: f64,
}

/// A (true, predicted) pair and how often it happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Confused {
    pub truth: String,
    pub predicted: String,
    pub count: u64,
}

/// `eval.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub split: String,
    pub n: u64,
    pub size: u32,
    /// Whether test-time augmentation was used.
    pub tta: bool,
    /// `none`, `flip`, `five-crop` or `ten-crop`.
    pub tta_mode: String,
    /// Views averaged per image (1 without TTA).
    pub tta_views: usize,
    pub top1: f64,
    pub top5: f64,
    pub loss: f64,
    pub per_class: Vec<ClassAccuracy>,
    pub most_confused: Vec<Confused>,
}

/// Per-sample outcome (for the mistakes grid).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    /// Position in the evaluated source.
    pub position: usize,
    pub truth: u32,
    pub predicted: u32,
    pub prob: f64,
}

/// Class probabilities of a batch (eval mode). TTA views, flips included,
/// come from the augmenter, one [`DataSource`] per view.
pub fn probabilities(net: &dyn Net, xs: &Tensor) -> Result<Tensor, tch::TchError> {
    net.forward_t(xs, false).f_softmax(-1, Kind::Float)
}

/// A misclassified image for the mistakes grid (pixels of the first view).
#[derive(Debug, Clone, PartialEq)]
pub struct Mistake {
    pub prediction: Prediction,
    pub width: u32,
    pub height: u32,
    /// HWC RGB8.
    pub rgb: Vec<u8>,
}

/// How many mistakes [`evaluate`] keeps for the grid.
pub const MISTAKES_KEPT: usize = 32;

/// How to evaluate: batch size, TTA, names for the report.
#[derive(Debug, Clone)]
pub struct EvalSpec<'a> {
    pub classes: &'a [String],
    pub size: u32,
    pub batch_size: usize,
    /// Reported TTA mode name.
    pub tta_mode: &'a str,
    pub split: &'a str,
}

/// Undoes the ImageNet normalisation of image `k` of a `[N, 3, H, W]` batch
/// into HWC RGB8 bytes on the CPU.
fn denormalise(images: &Tensor, k: i64) -> Result<(u32, u32, Vec<u8>), tch::TchError> {
    let x = images.f_get(k)?.f_to_device(tch::Device::Cpu)?;
    let size = x.size();
    let mean = Tensor::f_from_slice(&IMAGENET_MEAN)?.f_view([3, 1, 1])?;
    let std = Tensor::f_from_slice(&IMAGENET_STD)?.f_view([3, 1, 1])?;
    let rgb = x
        .f_to_kind(Kind::Float)?
        .f_mul(&std)?
        .f_add(&mean)?
        .f_mul_scalar(255.0)?
        .f_round()?
        .f_clamp(0.0, 255.0)?
        .f_permute([1, 2, 0])?
        .f_contiguous()?
        .f_to_kind(Kind::Uint8)?;
    let mut bytes = vec![0u8; rgb.numel()];
    rgb.f_copy_data_u8(&mut bytes, rgb.numel())?;
    Ok((size[2] as u32, size[1] as u32, bytes))
}

fn disagree(msg: String) -> ReportError {
    ReportError::Data(DataError::Msg(format!("TTA views disagree: {msg}")))
}

/// Evaluates `net` on every sample of `views` (eval mode, no grad), streaming
/// batch by batch. Each view is one TTA view of the same samples in the same
/// order; their softmax probabilities are averaged. Returns the report, one
/// prediction per sample, and the first [`MISTAKES_KEPT`] mistakes' pixels.
pub fn evaluate(
    net: &dyn Net,
    views: &mut [Box<dyn DataSource + '_>],
    spec: &EvalSpec<'_>,
) -> Result<(EvalReport, Vec<Prediction>, Vec<Mistake>), ReportError> {
    let _g = tch::no_grad_guard();
    let classes = spec.classes;
    let c = classes.len();
    if views.is_empty() {
        return Err(ReportError::Data(DataError::Msg(
            "evaluation: no data views".into(),
        )));
    }
    let mut confusion = vec![vec![0u64; c]; c];
    let mut preds = Vec::new();
    let mut mistakes = Vec::new();
    let (mut n, mut t1, mut t5, mut loss_sum) = (0u64, 0u64, 0u64, 0.0f64);
    let mut position = 0usize;
    let nviews = views.len();
    let mut iters: Vec<EpochIter<'_>> = views
        .iter_mut()
        .map(|v| v.epoch(0, spec.size, spec.batch_size, 0))
        .collect::<Result<_, _>>()?;
    loop {
        let mut first: Option<DeviceBatch> = None;
        let mut sum: Option<Tensor> = None;
        let mut ended = 0;
        for it in iters.iter_mut() {
            let Some(b) = it.next() else {
                ended += 1;
                continue;
            };
            let b = b?;
            let p = probabilities(net, &b.images)?;
            sum = Some(match sum {
                None => p,
                Some(s) => s.f_add(&p)?,
            });
            match &first {
                None => first = Some(b),
                Some(f) if f.ids != b.ids => {
                    return Err(disagree(format!(
                        "sample ids {:?}... vs {:?}...",
                        &f.ids[..f.ids.len().min(4)],
                        &b.ids[..b.ids.len().min(4)]
                    )))
                }
                Some(_) => {}
            }
        }
        if ended == nviews {
            break;
        }
        if ended > 0 {
            return Err(disagree(format!(
                "{ended} of {nviews} ended before the others"
            )));
        }
        let (Some(b), Some(sum)) = (first, sum) else {
            break;
        };
        let p = sum.f_div_scalar(nviews as f64)?;
        let loss = p
            .f_clamp_min(1e-12)?
            .f_log()?
            .f_nll_loss::<Tensor>(&b.labels, None, Reduction::Mean, -100)?
            .f_double_value(&[])?;
        let (c1, c5) = crate::metrics::topk_correct(&p, &b.labels, 5)?;
        let bn = b.labels.size()[0];
        let (best_p, best) = p.f_max_dim(1, false)?;
        for k in 0..bn {
            let truth = b.labels.f_int64_value(&[k])? as u32;
            let predicted = best.f_int64_value(&[k])? as u32;
            if (truth as usize) < c && (predicted as usize) < c {
                confusion[truth as usize][predicted as usize] += 1;
            }
            let prediction = Prediction {
                position,
                truth,
                predicted,
                prob: best_p.f_double_value(&[k])?,
            };
            if truth != predicted && mistakes.len() < MISTAKES_KEPT {
                let (width, height, rgb) = denormalise(&b.images, k)?;
                mistakes.push(Mistake {
                    prediction,
                    width,
                    height,
                    rgb,
                });
            }
            preds.push(prediction);
            position += 1;
        }
        n += bn as u64;
        t1 += c1;
        t5 += c5;
        loss_sum += loss * bn as f64;
    }
    let per_class = (0..c)
        .map(|k| {
            let row_n: u64 = confusion[k].iter().sum();
            ClassAccuracy {
                class: k as u32,
                name: classes[k].clone(),
                n: row_n,
                top1: if row_n == 0 {
                    f64::NAN
                } else {
                    confusion[k][k] as f64 / row_n as f64
                },
            }
        })
        .collect();
    let mut pairs: Vec<Confused> = Vec::new();
    for (t, row) in confusion.iter().enumerate() {
        for (p, &v) in row.iter().enumerate() {
            if t != p && v > 0 {
                pairs.push(Confused {
                    truth: classes[t].clone(),
                    predicted: classes[p].clone(),
                    count: v,
                });
            }
        }
    }
    pairs.sort_by(|a, b| b.count.cmp(&a.count).then(a.truth.cmp(&b.truth)));
    pairs.truncate(20);
    let nf = n.max(1) as f64;
    let report = EvalReport {
        split: spec.split.to_string(),
        n,
        size: spec.size,
        tta: nviews > 1,
        tta_mode: spec.tta_mode.to_string(),
        tta_views: nviews,
        top1: t1 as f64 / nf,
        top5: t5 as f64 / nf,
        loss: loss_sum / nf,
        per_class,
        most_confused: pairs,
    };
    Ok((report, preds, mistakes))
}

/// Confusion matrix of a report's predictions.
pub fn confusion_matrix(preds: &[Prediction], classes: usize) -> Vec<Vec<u64>> {
    let mut m = vec![vec![0u64; classes]; classes];
    for p in preds {
        if (p.truth as usize) < classes && (p.predicted as usize) < classes {
            m[p.truth as usize][p.predicted as usize] += 1;
        }
    }
    m
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ReportError + '_ {
    move |source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `eval.json`, `confusion.csv`, `confusion.png` and `mistakes.png` into `dir`.
pub fn write_report(
    dir: &Path,
    report: &EvalReport,
    preds: &[Prediction],
    classes: &[String],
    mistakes: &[Mistake],
) -> Result<Vec<PathBuf>, ReportError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut out = Vec::new();
    let json = dir.join("eval.json");
    let text = serde_json::to_string_pretty(report).unwrap_or_default();
    crate::checkpoint::write_atomic(&json, text.as_bytes()).map_err(io(&json))?;
    out.push(json);
    let m = confusion_matrix(preds, classes.len());
    let csv = dir.join("confusion.csv");
    let mut s = String::from("true\\pred");
    for c in classes {
        s.push(',');
        s.push_str(&csv_field(c));
    }
    s.push('\n');
    for (i, row) in m.iter().enumerate() {
        s.push_str(&csv_field(&classes[i]));
        for v in row {
            s.push_str(&format!(",{v}"));
        }
        s.push('\n');
    }
    std::fs::write(&csv, s).map_err(io(&csv))?;
    out.push(csv);
    let png = dir.join("confusion.png");
    plot::plot_confusion(&m, classes, &png)?;
    out.push(png);
    let tiles: Vec<Tile<'_>> = mistakes
        .iter()
        .map(|m| {
            let p = &m.prediction;
            Tile {
                width: m.width,
                height: m.height,
                rgb: &m.rgb,
                caption: format!(
                    "{} → {} ({:.0}%)",
                    classes.get(p.truth as usize).map_or("?", |s| s),
                    classes.get(p.predicted as usize).map_or("?", |s| s),
                    100.0 * p.prob
                ),
            }
        })
        .collect();
    let grid = dir.join("mistakes.png");
    plot::plot_grid(&tiles, 8, &grid)?;
    out.push(grid);
    Ok(out)
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
