//! Learning-rate (and momentum) schedules driven per batch, and discriminative LRs.
//!
//! A schedule is a pure function of `(iteration, total)`, `iteration` in `0..total`:
//! resuming a run at any batch gives the same values. `at` returns the learning rate for
//! the schedule's own peak; [`apply`] scales it per group for discriminative LRs.

use std::f64::consts::PI;

use crate::optimizer::Optimizer;
use crate::{Error, Result};

/// A per-batch schedule.
pub trait Schedule {
    /// `(lr, momentum)` at batch `iteration` of `total` (momentum `None`: leave it alone).
    fn at(&self, iteration: usize, total: usize) -> (f64, Option<f64>);
    /// The learning rate the schedule is expressed against (its `lr_max`/`lr`).
    fn peak(&self) -> f64;
}

/// Cosine interpolation from `start` (pos 0) to `end` (pos 1), fastai's `SchedCos`.
pub fn cos_anneal(start: f64, end: f64, pos: f64) -> f64 {
    start + (1.0 + (PI * (1.0 - pos)).cos()) * (end - start) / 2.0
}

fn frac(iteration: usize, total: usize) -> f64 {
    if total == 0 {
        0.0
    } else {
        (iteration as f64 / total as f64).clamp(0.0, 1.0)
    }
}

/// fastai's one-cycle (`fit_one_cycle`): cosine warm-up for `pct_start` of the run from
/// `lr_max / div` to `lr_max`, then cosine down to `lr_max / div / div_final`; momentum
/// (beta1 for the Adam family) goes `moms.0 → moms.1 → moms.2` on the same phases.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OneCycle {
    /// Peak learning rate.
    pub lr_max: f64,
    /// Initial divisor (25).
    pub div: f64,
    /// Final divisor after `div` (1e4 in fastai v1; v2 uses 1e5).
    pub div_final: f64,
    /// Fraction of the run spent warming up (0.3 in fastai v1; v2 uses 0.25).
    pub pct_start: f64,
    /// Momentum (start, middle, end) = (0.95, 0.85, 0.95); `None`: no momentum schedule.
    pub moms: Option<(f64, f64, f64)>,
}

impl OneCycle {
    /// fastai's defaults around `lr_max`.
    pub fn new(lr_max: f64) -> Self {
        OneCycle {
            lr_max,
            div: 25.0,
            div_final: 1e4,
            pct_start: 0.3,
            moms: Some((0.95, 0.85, 0.95)),
        }
    }
}

fn two_phase(pct: f64, pct_start: f64, a: f64, b: f64, c: f64) -> f64 {
    if pct < pct_start {
        cos_anneal(a, b, pct / pct_start)
    } else if pct_start >= 1.0 {
        b
    } else {
        cos_anneal(b, c, (pct - pct_start) / (1.0 - pct_start))
    }
}

impl Schedule for OneCycle {
    fn at(&self, iteration: usize, total: usize) -> (f64, Option<f64>) {
        let pct = frac(iteration, total);
        let start = self.lr_max / self.div;
        let end = start / self.div_final;
        let lr = two_phase(pct, self.pct_start, start, self.lr_max, end);
        let mom = self
            .moms
            .map(|(a, b, c)| two_phase(pct, self.pct_start, a, b, c));
        (lr, mom)
    }
    fn peak(&self) -> f64 {
        self.lr_max
    }
}

/// Linear warm-up over `warmup` batches (`lr_max * (i + 1) / warmup`), then cosine from
/// `lr_max` to `lr_min` over the remaining batches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WarmupCosine {
    /// Peak learning rate.
    pub lr_max: f64,
    /// Warm-up length in batches.
    pub warmup: usize,
    /// Final learning rate.
    pub lr_min: f64,
}

impl Schedule for WarmupCosine {
    fn at(&self, iteration: usize, total: usize) -> (f64, Option<f64>) {
        if iteration < self.warmup {
            return (
                self.lr_max * (iteration + 1) as f64 / self.warmup as f64,
                None,
            );
        }
        let rest = total.saturating_sub(self.warmup);
        let pos = frac(iteration - self.warmup, rest);
        (cos_anneal(self.lr_max, self.lr_min, pos), None)
    }
    fn peak(&self) -> f64 {
        self.lr_max
    }
}

/// fastai's `fit_flat_cos`: flat at `lr` for `pct_start` of the run, then cosine down to
/// `lr / div_final`. Momentum, if given, stays constant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlatCos {
    /// Learning rate of the flat part.
    pub lr: f64,
    /// Fraction of the run that stays flat (0.72, fastai v1's `fit_fc`; v2 uses 0.75).
    pub pct_start: f64,
    /// Final divisor (1e5, fastai v2).
    pub div_final: f64,
    /// Constant momentum to write (None: leave it).
    pub mom: Option<f64>,
}

impl FlatCos {
    /// The defaults around `lr`.
    pub fn new(lr: f64) -> Self {
        FlatCos {
            lr,
            pct_start: 0.72,
            div_final: 1e5,
            mom: None,
        }
    }
}

impl Schedule for FlatCos {
    fn at(&self, iteration: usize, total: usize) -> (f64, Option<f64>) {
        let pct = frac(iteration, total);
        let lr = if pct < self.pct_start || self.pct_start >= 1.0 {
            self.lr
        } else {
            cos_anneal(
                self.lr,
                self.lr / self.div_final,
                (pct - self.pct_start) / (1.0 - self.pct_start),
            )
        };
        (lr, self.mom)
    }
    fn peak(&self) -> f64 {
        self.lr
    }
}

/// Step decay: `lr * gamma^(iteration / every)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepDecay {
    /// Initial learning rate.
    pub lr: f64,
    /// Factor per step.
    pub gamma: f64,
    /// Batches between steps (>= 1).
    pub every: usize,
}

impl Schedule for StepDecay {
    fn at(&self, iteration: usize, _total: usize) -> (f64, Option<f64>) {
        let n = iteration / self.every.max(1);
        (self.lr * self.gamma.powi(n as i32), None)
    }
    fn peak(&self) -> f64 {
        self.lr
    }
}

/// Sets every group's lr to `lr_max[g] * at(iteration, total).0 / peak()` (so a schedule
/// over group peaks `lr_max`, e.g. from [`lr_slice`]) and writes the momentum, if any, to
/// every group. `lr_max` has one entry per group, or one for all.
pub fn apply(
    opt: &mut (impl Optimizer + ?Sized),
    sched: &(impl Schedule + ?Sized),
    iteration: usize,
    total: usize,
    lr_max: &[f64],
) -> Result<()> {
    let (lr, mom) = sched.at(iteration, total);
    let peak = sched.peak();
    let scale = if peak != 0.0 { lr / peak } else { 0.0 };
    let n = opt.groups().len();
    for g in 0..n {
        let base = crate::optimizer::per_group(lr_max, g, n, "lr_max")?;
        opt.set_lr(g, base * scale)?;
        if let Some(m) = mom {
            opt.set_momentum(g, m)?;
        }
    }
    Ok(())
}

/// Learning rates spread geometrically from `lo` (first group) to `hi` (last group), as
/// fastai's `lr_range(slice(lo, hi))` / `even_mults`. One group gets `hi`.
pub fn lr_slice(lo: f64, hi: f64, n_groups: usize) -> Result<Vec<f64>> {
    if !(lo > 0.0 && hi > 0.0 && lo.is_finite() && hi.is_finite()) {
        return Err(Error::Config(format!(
            "lr_slice({lo}, {hi}): both ends must be finite and > 0"
        )));
    }
    Ok(match n_groups {
        0 => Vec::new(),
        1 => vec![hi],
        n => {
            let step = (hi / lo).powf(1.0 / (n - 1) as f64);
            (0..n).map(|i| lo * step.powi(i as i32)).collect()
        }
    })
}

/// fastai's `lr_range(slice(hi))`: `hi / 10` for every group but the last, `hi` for it.
pub fn lr_slice_hi(hi: f64, n_groups: usize) -> Vec<f64> {
    (0..n_groups)
        .map(|i| if i + 1 == n_groups { hi } else { hi / 10.0 })
        .collect()
}
