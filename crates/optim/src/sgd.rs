//! SGD with momentum, dampening, Nesterov and (L2) weight decay, as `torch.optim.SGD`.

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::group::{resolve, GroupSpec, ParamGroup};
use crate::optimizer::{group_setters, zero_steps, zeros_per_param, Optimizer};
use crate::state::{buffers_state, config_from_meta, restore_buffers_state, OptimState};
use crate::work::{axpy, Work};
use crate::{Error, Result};

/// SGD defaults (each group may override lr, weight decay, momentum).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SgdConfig {
    /// Learning rate.
    pub lr: f64,
    /// Momentum (0: plain SGD, no buffer used).
    pub momentum: f64,
    /// Dampening of the gradient added to the momentum buffer.
    pub dampening: f64,
    /// Nesterov momentum (needs momentum > 0 and dampening 0).
    pub nesterov: bool,
    /// L2 weight decay added to the gradient (`g + wd * p`).
    pub weight_decay: f64,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig {
            lr: 0.01,
            momentum: 0.9,
            dampening: 0.0,
            nesterov: false,
            weight_decay: 0.0,
        }
    }
}

/// `torch.optim.SGD` (single-tensor algorithm, same order of operations).
pub struct Sgd {
    groups: Vec<ParamGroup>,
    cfg: SgdConfig,
    buf: Vec<Vec<Tensor>>,
    /// number of updates each parameter has had (0: momentum buffer not yet set)
    steps: Vec<Vec<u64>>,
    work: Work,
}

const KIND: &str = "sgd";

impl Sgd {
    /// An SGD optimizer; state buffers are allocated here, once.
    pub fn new(groups: Vec<GroupSpec>, cfg: SgdConfig) -> Result<Sgd> {
        if !(0.0..=1.0).contains(&cfg.dampening) {
            return Err(Error::Config(format!(
                "dampening = {}: must be in [0, 1]",
                cfg.dampening
            )));
        }
        let groups = resolve(groups, cfg.lr, cfg.weight_decay, cfg.momentum)?;
        if cfg.nesterov && (cfg.dampening != 0.0 || groups.iter().any(|g| g.momentum <= 0.0)) {
            return Err(Error::Config(
                "Nesterov momentum needs momentum > 0 and dampening 0".into(),
            ));
        }
        Ok(Sgd {
            buf: zeros_per_param(&groups)?,
            steps: zero_steps(&groups),
            work: Work::new(&groups, 1, 4)?,
            groups,
            cfg,
        })
    }

    /// The configuration (defaults) it was built with.
    pub fn config(&self) -> &SgdConfig {
        &self.cfg
    }

    fn step_inner(&mut self) -> Result<()> {
        let Sgd {
            groups,
            cfg,
            buf,
            steps,
            work,
        } = self;
        for (g, group) in groups.iter_mut().enumerate() {
            let (lr, m) = (group.lr, group.momentum);
            for (i, p) in group.params.iter_mut().enumerate() {
                if !p.is_active() {
                    continue;
                }
                let grad = p.tensor.grad();
                let wd = if p.decay { group.weight_decay } else { 0.0 };
                work.set(0, g, i, wd)?;
                work.set(1, g, i, 1.0 - cfg.dampening)?;
                work.set(2, g, i, -lr)?;
                work.set(3, g, i, m)?;
                let (views, s) = work.split(g, i);
                let d: &mut Tensor = &mut views[0];
                // d = grad + wd * p (only materialised when needed)
                let d_is_grad = wd == 0.0;
                if !d_is_grad {
                    d.f_copy_(&grad)?;
                    axpy(d, &p.tensor, &s[0])?;
                }
                if m == 0.0 {
                    axpy(&mut p.tensor, if d_is_grad { &grad } else { d }, &s[2])?;
                } else {
                    let b = &mut buf[g][i];
                    let src: &Tensor = if d_is_grad { &grad } else { d };
                    if steps[g][i] == 0 {
                        b.f_copy_(src)?;
                    } else {
                        let _ = b.f_mul_scalar_(m)?;
                        if cfg.dampening == 0.0 {
                            let _ = b.f_add_(src)?;
                        } else {
                            axpy(b, src, &s[1])?;
                        }
                    }
                    if cfg.nesterov {
                        if d_is_grad {
                            d.f_copy_(&grad)?;
                        }
                        axpy(d, b, &s[3])?;
                        axpy(&mut p.tensor, d, &s[2])?;
                    } else {
                        axpy(&mut p.tensor, b, &s[2])?;
                    }
                }
                steps[g][i] += 1;
            }
        }
        Ok(())
    }
}

impl Optimizer for Sgd {
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
            &[("momentum_buffer", &self.buf[..])],
        )
    }

    fn load_state_dict(&mut self, state: &OptimState) -> Result<()> {
        let cfg: SgdConfig = config_from_meta(&state.meta)?;
        let (groups, steps) = restore_buffers_state(
            state,
            KIND,
            &self.groups,
            &self.steps,
            &mut [("momentum_buffer", &mut self.buf[..])],
        )?;
        self.cfg = cfg;
        self.groups = groups;
        self.steps = steps;
        Ok(())
    }
}
