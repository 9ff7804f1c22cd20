//! The LR range test (fastai's `lr_find`): an exponential LR sweep with a smoothed loss,
//! stopping when the loss diverges, restoring weights and optimizer state afterwards.

use std::fmt::Write as _;
use std::path::Path;

use tch::Tensor;

use crate::optimizer::Optimizer;
use crate::state::snapshot;
use crate::{Error, Result};

/// Sweep settings (fastai's defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrFinderConfig {
    /// First learning rate (1e-7).
    pub start_lr: f64,
    /// Last learning rate (10).
    pub end_lr: f64,
    /// Number of batches (100).
    pub num_iter: usize,
    /// Loss smoothing (0.98), bias-corrected.
    pub beta: f64,
    /// Stop when the smoothed loss exceeds `div_factor` times the best one (4).
    pub div_factor: f64,
}

impl Default for LrFinderConfig {
    fn default() -> Self {
        LrFinderConfig {
            start_lr: 1e-7,
            end_lr: 10.0,
            num_iter: 100,
            beta: 0.98,
            div_factor: 4.0,
        }
    }
}

impl LrFinderConfig {
    /// Learning rate of iteration `i`: `start * (end / start)^(i / (num_iter - 1))`.
    pub fn lr_at(&self, i: usize) -> f64 {
        let n = self.num_iter.saturating_sub(1).max(1) as f64;
        self.start_lr * (self.end_lr / self.start_lr).powf(i as f64 / n)
    }
}

/// What the sweep saw.
#[derive(Debug, Clone, PartialEq)]
pub struct LrFindResult {
    /// Learning rate of each completed iteration.
    pub lrs: Vec<f64>,
    /// Raw loss of each iteration.
    pub losses: Vec<f64>,
    /// Bias-corrected exponentially smoothed loss.
    pub smoothed: Vec<f64>,
    /// Why the sweep ended early, if it did (`"diverged"` or `"nan"`).
    pub stopped: Option<&'static str>,
    /// LR at the steepest descent of the smoothed loss against log(lr).
    pub steepest: Option<f64>,
    /// LR of the minimum smoothed loss, divided by 10.
    pub min_div10: Option<f64>,
    /// The sweep length asked for (`LrFinderConfig::num_iter`).
    pub num_iter: usize,
}

/// The points the suggestions look at: fastai drops the first 10 % and the last 5 points
/// (start-up noise and divergence) when enough remain.
fn suggestion_window(n: usize, num_iter: usize) -> std::ops::Range<usize> {
    let skip_start = num_iter / 10;
    if n >= skip_start + 5 + 3 {
        skip_start..n - 5
    } else {
        0..n
    }
}

/// Steepest descent and min/10 over `(lrs, smoothed)` restricted to `window`.
pub fn suggest(
    lrs: &[f64],
    smoothed: &[f64],
    window: std::ops::Range<usize>,
) -> (Option<f64>, Option<f64>) {
    let (l, s) = (&lrs[window.clone()], &smoothed[window]);
    let mut steep: Option<(f64, f64)> = None;
    for i in 1..l.len() {
        let d = (s[i] - s[i - 1]) / (l[i].ln() - l[i - 1].ln());
        if d.is_finite() && steep.is_none_or(|(b, _)| d < b) {
            steep = Some((d, l[i - 1]));
        }
    }
    let mut min: Option<(f64, f64)> = None;
    for (lr, v) in l.iter().zip(s) {
        if v.is_finite() && min.is_none_or(|(b, _)| *v < b) {
            min = Some((*v, *lr));
        }
    }
    (steep.map(|x| x.1), min.map(|x| x.1 / 10.0))
}

/// Runs the sweep.
///
/// Before each batch every group's lr is set to the sweep's lr; `step(opt, lr)` then runs
/// one training step (forward, backward, `opt.step()`) and returns the loss. Afterwards
/// the optimizer's parameters, the tensors in `restore` (pass the model's buffers, e.g.
/// BatchNorm running stats, or simply every VarStore variable) and the optimizer state are
/// put back as they were, also when `step` fails.
pub fn lr_find<O, F, E>(
    opt: &mut O,
    restore: &[Tensor],
    cfg: &LrFinderConfig,
    mut step: F,
) -> Result<LrFindResult>
where
    O: Optimizer + ?Sized,
    F: FnMut(&mut O, f64) -> std::result::Result<f64, E>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if !(cfg.start_lr > 0.0 && cfg.end_lr > cfg.start_lr && cfg.num_iter >= 2) {
        return Err(Error::Config(format!(
            "lr finder: need 0 < start_lr < end_lr and num_iter >= 2, got {cfg:?}"
        )));
    }
    if !(0.0..1.0).contains(&cfg.beta) {
        return Err(Error::Config(format!(
            "lr finder: beta = {} not in [0, 1)",
            cfg.beta
        )));
    }
    let mut saved_tensors: Vec<(Tensor, Tensor)> = Vec::new();
    for g in opt.groups() {
        for p in &g.params {
            saved_tensors.push((p.tensor.shallow_clone(), snapshot(&p.tensor)?));
        }
    }
    for t in restore {
        saved_tensors.push((t.shallow_clone(), snapshot(t)?));
    }
    let saved_state = opt.state_dict()?;
    let lrs_before: Vec<f64> = opt.groups().iter().map(|g| g.lr).collect();

    let outcome = sweep(opt, cfg, &mut step);

    // restore, whatever happened
    let restored = (|| -> Result<()> {
        tch::no_grad(|| -> Result<()> {
            for (dst, src) in &mut saved_tensors {
                dst.f_copy_(src)?;
            }
            Ok(())
        })?;
        opt.load_state_dict(&saved_state)?;
        opt.set_lrs(&lrs_before)?;
        opt.zero_grad();
        Ok(())
    })();
    let res = outcome?;
    restored?;
    Ok(res)
}

fn sweep<O, F, E>(opt: &mut O, cfg: &LrFinderConfig, step: &mut F) -> Result<LrFindResult>
where
    O: Optimizer + ?Sized,
    F: FnMut(&mut O, f64) -> std::result::Result<f64, E>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut res = LrFindResult {
        lrs: Vec::new(),
        losses: Vec::new(),
        smoothed: Vec::new(),
        stopped: None,
        steepest: None,
        min_div10: None,
        num_iter: cfg.num_iter,
    };
    let mut avg = 0.0;
    let mut best = f64::INFINITY;
    for i in 0..cfg.num_iter {
        let lr = cfg.lr_at(i);
        opt.set_lrs(&[lr])?;
        let loss = step(opt, lr).map_err(|e| Error::Step {
            iteration: i,
            lr,
            source: e.into(),
        })?;
        avg = cfg.beta * avg + (1.0 - cfg.beta) * loss;
        let smooth = avg / (1.0 - cfg.beta.powi(i as i32 + 1));
        res.lrs.push(lr);
        res.losses.push(loss);
        res.smoothed.push(smooth);
        if !smooth.is_finite() {
            res.stopped = Some("nan");
            break;
        }
        if smooth < best {
            best = smooth;
        }
        if smooth > cfg.div_factor * best {
            res.stopped = Some("diverged");
            break;
        }
    }
    let w = suggestion_window(res.lrs.len(), cfg.num_iter);
    (res.steepest, res.min_div10) = suggest(&res.lrs, &res.smoothed, w);
    Ok(res)
}

impl LrFindResult {
    /// A text table: iteration, lr, loss, smoothed loss, then the suggestions.
    pub fn table(&self) -> String {
        let mut s = String::from("  iter          lr        loss    smoothed\n");
        for (i, ((lr, l), sm)) in self
            .lrs
            .iter()
            .zip(&self.losses)
            .zip(&self.smoothed)
            .enumerate()
        {
            let _ = writeln!(s, "{i:>6} {lr:>11.3e} {l:>11.5} {sm:>11.5}");
        }
        if let Some(why) = self.stopped {
            let _ = writeln!(s, "stopped early: {why}");
        }
        let fmt = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.3e}"));
        let _ = writeln!(s, "suggested lr (steepest descent): {}", fmt(self.steepest));
        let _ = writeln!(
            s,
            "suggested lr (min loss / 10):    {}",
            fmt(self.min_div10)
        );
        s
    }

    /// Draws the smoothed loss against lr (log x axis) to a PNG, marking the suggestions
    /// (red: steepest descent, green: min/10). Like fastai's plot it leaves out the first
    /// 10 % and the last 5 points when there are enough (they dwarf the useful part). Returns whether text (axis labels, caption) could be drawn: that needs a TrueType
    /// font found on the system (see [`crate::plot::find_font`]); without one the curve
    /// is drawn without text.
    pub fn plot(&self, path: &Path) -> Result<bool> {
        let w = suggestion_window(self.lrs.len(), self.num_iter);
        let fmt = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.1e}"));
        let caption = format!(
            "LR finder: steepest {} (red), min/10 {} (green)",
            fmt(self.steepest),
            fmt(self.min_div10)
        );
        crate::plot::lr_curve(
            path,
            &caption,
            &self.lrs[w.clone()],
            &self.smoothed[w],
            &[self.steepest, self.min_div10],
        )
    }
}
