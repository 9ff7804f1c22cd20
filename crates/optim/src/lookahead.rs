//! Lookahead (Zhang et al. 2019) around any optimizer, and Ranger (RAdam + Lookahead +
//! gradient centralisation, the 2020 version's defaults).

use serde_json::json;
use tch::Tensor;

use crate::group::{GroupSpec, ParamGroup};
use crate::optimizer::{zero_steps, zeros_per_param, Optimizer};
use crate::radam::{RAdam, RAdamConfig, WeightDecay};
use crate::state::{get_f64, get_u64, restore_steps, snapshot, steps_meta, OptimState, TensorMap};
use crate::{Error, Result};

/// Lookahead: every `k` inner steps of a parameter, `slow += alpha * (fast - slow)` and the
/// fast weights are reset to `slow`. The slow copy is taken at a parameter's first step
/// (as Ranger does), so weights loaded after building the optimizer are respected.
/// Counting is per parameter, so frozen parameters neither count nor sync.
pub struct Lookahead<O: Optimizer> {
    inner: O,
    k: u64,
    alpha: f64,
    slow: Vec<Vec<Tensor>>,
    counts: Vec<Vec<u64>>,
    active: Vec<Vec<bool>>,
}

const KIND: &str = "lookahead";

impl<O: Optimizer> Lookahead<O> {
    /// Wraps `inner`: sync every `k >= 1` steps with interpolation `alpha` in (0, 1].
    pub fn new(inner: O, k: u64, alpha: f64) -> Result<Self> {
        if k == 0 {
            return Err(Error::Config("lookahead k = 0: must be >= 1".into()));
        }
        if !(alpha > 0.0 && alpha <= 1.0) {
            return Err(Error::Config(format!(
                "lookahead alpha = {alpha}: must be in (0, 1]"
            )));
        }
        let groups = inner.groups();
        Ok(Lookahead {
            slow: zeros_per_param(groups)?,
            counts: zero_steps(groups),
            active: groups.iter().map(|g| vec![false; g.params.len()]).collect(),
            k,
            alpha,
            inner,
        })
    }

    /// The wrapped optimizer.
    pub fn inner(&self) -> &O {
        &self.inner
    }

    /// The wrapped optimizer, mutably (its groups' hyper-parameters are the ones used).
    pub fn inner_mut(&mut self) -> &mut O {
        &mut self.inner
    }

    /// `(k, alpha)`.
    pub fn params(&self) -> (u64, f64) {
        (self.k, self.alpha)
    }
}

impl<O: Optimizer> Optimizer for Lookahead<O> {
    fn step(&mut self) -> Result<()> {
        tch::no_grad(|| {
            // which parameters the inner step will update; first-timers get their slow copy
            for (g, group) in self.inner.groups().iter().enumerate() {
                for (i, p) in group.params.iter().enumerate() {
                    let a = p.is_active();
                    self.active[g][i] = a;
                    if a && self.counts[g][i] == 0 {
                        self.slow[g][i].f_copy_(&p.tensor)?;
                    }
                }
            }
            self.inner.step()?;
            for (g, group) in self.inner.groups().iter().enumerate() {
                for (i, p) in group.params.iter().enumerate() {
                    if !self.active[g][i] {
                        continue;
                    }
                    self.counts[g][i] += 1;
                    if self.counts[g][i].is_multiple_of(self.k) {
                        let slow = &mut self.slow[g][i];
                        let _ = slow.f_lerp_(&p.tensor, self.alpha)?;
                        p.tensor.shallow_clone().f_copy_(slow)?;
                    }
                }
            }
            Ok(())
        })
    }

    fn groups(&self) -> &[ParamGroup] {
        self.inner.groups()
    }
    fn set_lr(&mut self, group: usize, lr: f64) -> Result<()> {
        self.inner.set_lr(group, lr)
    }
    fn set_momentum(&mut self, group: usize, momentum: f64) -> Result<()> {
        self.inner.set_momentum(group, momentum)
    }
    fn set_weight_decay(&mut self, group: usize, wd: f64) -> Result<()> {
        self.inner.set_weight_decay(group, wd)
    }

    fn state_dict(&self) -> Result<OptimState> {
        let inner = self.inner.state_dict()?;
        let mut tensors = inner.tensors;
        for (g, group) in self.inner.groups().iter().enumerate() {
            for (i, p) in group.params.iter().enumerate() {
                tensors.push((format!("{}.slow", p.name), snapshot(&self.slow[g][i])?));
            }
        }
        let meta = json!({
            "kind": KIND,
            "version": 1,
            "k": self.k,
            "alpha": self.alpha,
            "counts": steps_meta(&self.counts),
            "inner": inner.meta,
        });
        Ok(OptimState { meta, tensors })
    }

    fn load_state_dict(&mut self, state: &OptimState) -> Result<()> {
        let got = state
            .meta
            .get("kind")
            .and_then(|v| v.as_str())
            .unwrap_or("?");
        if got != KIND {
            return Err(Error::StateMismatch(format!(
                "state is for `{got}`, optimizer is `{KIND}`"
            )));
        }
        let k = get_u64(&state.meta, "k")?;
        let alpha = get_f64(&state.meta, "alpha")?;
        let mut counts = self.counts.clone();
        restore_steps(&state.meta, "counts", &mut counts)?;
        let inner_meta = state
            .meta
            .get("inner")
            .cloned()
            .ok_or_else(|| Error::StateMismatch("missing `inner`".into()))?;
        let map = TensorMap::new(state);
        for (g, group) in self.inner.groups().iter().enumerate() {
            for (i, p) in group.params.iter().enumerate() {
                map.copy_into(&format!("{}.slow", p.name), &mut self.slow[g][i])?;
            }
        }
        // the inner optimizer looks its own tensors up by name; share the handles
        let tensors = state
            .tensors
            .iter()
            .map(|(n, t)| (n.clone(), t.shallow_clone()))
            .collect();
        self.inner.load_state_dict(&OptimState {
            meta: inner_meta,
            tensors,
        })?;
        self.k = k.max(1);
        self.alpha = alpha;
        self.counts = counts;
        Ok(())
    }
}

/// Ranger 2020's hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RangerConfig {
    /// Learning rate (1e-3).
    pub lr: f64,
    /// Lookahead interpolation (0.5).
    pub alpha: f64,
    /// Lookahead period (6).
    pub k: u64,
    /// (beta1, beta2) = (0.95, 0.999).
    pub betas: (f64, f64),
    /// 1e-5.
    pub eps: f64,
    /// Weight decay (0).
    pub weight_decay: f64,
    /// [`WeightDecay::Ranger`] (the published algorithm) by default.
    pub decay_mode: WeightDecay,
    /// Gradient centralisation on `dim() > 1` parameters (on).
    pub gradient_centralization: bool,
    /// 5.
    pub n_sma_threshold: f64,
}

impl Default for RangerConfig {
    fn default() -> Self {
        RangerConfig {
            lr: 1e-3,
            alpha: 0.5,
            k: 6,
            betas: (0.95, 0.999),
            eps: 1e-5,
            weight_decay: 0.0,
            decay_mode: WeightDecay::Ranger,
            gradient_centralization: true,
            n_sma_threshold: 5.0,
        }
    }
}

/// Ranger = [`Lookahead`] over [`RAdam`] with gradient centralisation.
pub type Ranger = Lookahead<RAdam>;

/// Builds a Ranger optimizer.
pub fn ranger(groups: Vec<GroupSpec>, cfg: RangerConfig) -> Result<Ranger> {
    let inner = RAdam::new(
        groups,
        RAdamConfig {
            lr: cfg.lr,
            betas: cfg.betas,
            eps: cfg.eps,
            weight_decay: cfg.weight_decay,
            decay_mode: cfg.decay_mode,
            gradient_centralization: cfg.gradient_centralization,
            n_sma_threshold: cfg.n_sma_threshold,
        },
    )?;
    Lookahead::new(inner, cfg.k, cfg.alpha)
}
