//! AdamW (decoupled weight decay), as `torch.optim.AdamW`.

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::group::{check_unit, resolve, GroupSpec, ParamGroup};
use crate::optimizer::{group_setters, zero_steps, zeros_per_param, Optimizer};
use crate::state::{
    buffers_state, config_from_meta, restore_buffers, restore_groups, restore_steps, OptimState,
};
use crate::work::Work;
use crate::{Error, Result};

/// AdamW defaults (`torch.optim.AdamW`'s). Group `momentum` is beta1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    /// Learning rate.
    pub lr: f64,
    /// (beta1, beta2).
    pub betas: (f64, f64),
    /// Added to the denominator.
    pub eps: f64,
    /// Decoupled weight decay: `p *= 1 - lr * wd` before the Adam update.
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 1e-2,
        }
    }
}

/// `torch.optim.AdamW` (amsgrad off), per-parameter step counts as torch keeps them.
pub struct AdamW {
    groups: Vec<ParamGroup>,
    cfg: AdamWConfig,
    exp_avg: Vec<Vec<Tensor>>,
    exp_avg_sq: Vec<Vec<Tensor>>,
    steps: Vec<Vec<u64>>,
    work: Work,
}

const KIND: &str = "adamw";

impl AdamW {
    /// An AdamW optimizer; both moment buffers are allocated here, once.
    pub fn new(groups: Vec<GroupSpec>, cfg: AdamWConfig) -> Result<AdamW> {
        check_unit("beta2", cfg.betas.1)?;
        if cfg.eps.is_nan() || cfg.eps <= 0.0 {
            return Err(Error::Config(format!("eps = {}: must be > 0", cfg.eps)));
        }
        let groups = resolve(groups, cfg.lr, cfg.weight_decay, cfg.betas.0)?;
        Ok(AdamW {
            exp_avg: zeros_per_param(&groups)?,
            exp_avg_sq: zeros_per_param(&groups)?,
            steps: zero_steps(&groups),
            work: Work::new(&groups, 1, 0)?,
            groups,
            cfg,
        })
    }

    /// The configuration (defaults) it was built with.
    pub fn config(&self) -> &AdamWConfig {
        &self.cfg
    }

    fn step_inner(&mut self) -> Result<()> {
        let AdamW {
            groups,
            cfg,
            exp_avg,
            exp_avg_sq,
            steps,
            work,
        } = self;
        let (beta2, eps) = (cfg.betas.1, cfg.eps);
        for (g, group) in groups.iter_mut().enumerate() {
            let (lr, beta1) = (group.lr, group.momentum);
            for (i, p) in group.params.iter_mut().enumerate() {
                if !p.is_active() {
                    continue;
                }
                let grad = p.tensor.grad();
                steps[g][i] += 1;
                let step = steps[g][i] as f64;
                let wd = if p.decay { group.weight_decay } else { 0.0 };
                if wd != 0.0 {
                    let _ = p.tensor.f_mul_scalar_(1.0 - lr * wd)?;
                }
                let (m, v) = (&mut exp_avg[g][i], &mut exp_avg_sq[g][i]);
                let (views, _) = work.split(g, i);
                let tmp = &mut views[0];
                let _ = m.f_lerp_(&grad, 1.0 - beta1)?;
                // v = beta2 * v + (1 - beta2) * g^2
                let _ = v.f_mul_scalar_(beta2)?;
                let _ = grad.f_mul_scalar_out(tmp, 1.0 - beta2)?;
                let _ = v.f_addcmul_(&grad, tmp)?;
                let bc1 = 1.0 - beta1.powf(step);
                let bc2_sqrt = (1.0 - beta2.powf(step)).sqrt();
                let step_size = lr / bc1;
                // p -= step_size * m / (sqrt(v) / bc2_sqrt + eps), with -1/step_size folded
                // into the denominator (addcdiv_ has no `value` in tch)
                let _ = v.f_sqrt_out(tmp)?;
                let _ = tmp.f_mul_scalar_(-1.0 / (step_size * bc2_sqrt))?;
                let _ = tmp.f_add_scalar_(-eps / step_size)?;
                let _ = p.tensor.f_addcdiv_(m, tmp)?;
            }
        }
        Ok(())
    }
}

impl Optimizer for AdamW {
    fn step(&mut self) -> Result<()> {
        tch::no_grad(|| self.step_inner())
    }

    group_setters!();

    fn state_dict(&self) -> Result<OptimState> {
        buffers_state(
            KIND,
            &self.cfg,
            &self.groups,
            &self.steps,
            &[
                ("exp_avg", &self.exp_avg[..]),
                ("exp_avg_sq", &self.exp_avg_sq[..]),
            ],
        )
    }

    fn load_state_dict(&mut self, state: &OptimState) -> Result<()> {
        let cfg: AdamWConfig = config_from_meta(&state.meta)?;
        let mut groups = self.groups.clone();
        restore_groups(&state.meta, KIND, &mut groups)?;
        let mut steps = self.steps.clone();
        restore_steps(&state.meta, "steps", &mut steps)?;
        restore_buffers(
            state,
            &groups,
            &mut [
                ("exp_avg", &mut self.exp_avg[..]),
                ("exp_avg_sq", &mut self.exp_avg_sq[..]),
            ],
        )?;
        self.cfg = cfg;
        self.groups = groups;
        self.steps = steps;
        Ok(())
    }
}
