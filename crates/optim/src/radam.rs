//! RAdam (rectified Adam), as `torch.optim.RAdam`, plus the options Ranger needs:
//! gradient centralisation and Ranger-2020-style weight decay.

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::group::{check_unit, resolve, GroupSpec, ParamGroup};
use crate::optimizer::{group_setters, zero_steps, zeros_per_param, Optimizer};
use crate::state::{buffers_state, config_from_meta, restore_buffers_state, OptimState};
use crate::work::{axpy, Work};
use crate::{Error, Result};

/// How weight decay enters the update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WeightDecay {
    /// Added to the gradient before the moments: `g + wd * p` (torch RAdam's default).
    L2,
    /// Decoupled: `p *= 1 - lr * wd` before the update (torch `decoupled_weight_decay=True`,
    /// AdamW, fastai's `true_wd`).
    Decoupled,
    /// Ranger 2020: added to the update direction, `p -= lr * step_size * (u + wd * p)`,
    /// where `u` is the (rectified) Adam direction — computed without touching the
    /// first-moment buffer (the published code aliased it during warm-up).
    Ranger,
}

/// RAdam defaults (`torch.optim.RAdam`'s). Group `momentum` is beta1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RAdamConfig {
    /// Learning rate.
    pub lr: f64,
    /// (beta1, beta2).
    pub betas: (f64, f64),
    /// Added to `sqrt(v)` (before the bias correction, as torch and Ranger do).
    pub eps: f64,
    /// Weight decay strength.
    pub weight_decay: f64,
    /// How weight decay is applied.
    pub decay_mode: WeightDecay,
    /// Gradient centralisation (subtract the mean over all but dim 0) on parameters with
    /// `dim() > 1` (conv and linear weights), before the moments.
    pub gradient_centralization: bool,
    /// Rectify only when the SMA length exceeds this (5, as torch and Ranger).
    pub n_sma_threshold: f64,
}

impl Default for RAdamConfig {
    fn default() -> Self {
        RAdamConfig {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            decay_mode: WeightDecay::L2,
            gradient_centralization: false,
            n_sma_threshold: 5.0,
        }
    }
}

/// `torch.optim.RAdam` (single-tensor algorithm) with optional gradient centralisation.
pub struct RAdam {
    groups: Vec<ParamGroup>,
    cfg: RAdamConfig,
    exp_avg: Vec<Vec<Tensor>>,
    exp_avg_sq: Vec<Vec<Tensor>>,
    /// per-parameter `(mean buffer, reduced dims)` for gradient centralisation
    gc: Vec<Vec<Option<GcBuf>>>,
    steps: Vec<Vec<u64>>,
    work: Work,
}

const KIND: &str = "radam";

/// Gradient-centralisation buffer: the mean over dims 1.. (shape `[d0, 1, ..]`) and
/// those dims.
type GcBuf = (Tensor, Vec<i64>);

impl RAdam {
    /// A RAdam optimizer; all buffers are allocated here, once.
    pub fn new(groups: Vec<GroupSpec>, cfg: RAdamConfig) -> Result<RAdam> {
        check_unit("beta2", cfg.betas.1)?;
        if cfg.eps.is_nan() || cfg.eps <= 0.0 {
            return Err(Error::Config(format!("eps = {}: must be > 0", cfg.eps)));
        }
        let groups = resolve(groups, cfg.lr, cfg.weight_decay, cfg.betas.0)?;
        let gc = groups
            .iter()
            .map(|g| {
                g.params
                    .iter()
                    .map(|p| {
                        let t = &p.tensor;
                        if !cfg.gradient_centralization || t.dim() <= 1 {
                            return Ok(None);
                        }
                        let mut shape = vec![1i64; t.dim()];
                        shape[0] = t.size()[0];
                        let dims: Vec<i64> = (1..t.dim() as i64).collect();
                        Ok(Some((
                            Tensor::f_empty(shape.as_slice(), (t.kind(), t.device()))?,
                            dims,
                        )))
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(RAdam {
            exp_avg: zeros_per_param(&groups)?,
            exp_avg_sq: zeros_per_param(&groups)?,
            steps: zero_steps(&groups),
            work: Work::new(&groups, 2, 2)?,
            gc,
            groups,
            cfg,
        })
    }

    /// The configuration (defaults) it was built with.
    pub fn config(&self) -> &RAdamConfig {
        &self.cfg
    }

    fn step_inner(&mut self) -> Result<()> {
        let RAdam {
            groups,
            cfg,
            exp_avg,
            exp_avg_sq,
            gc,
            steps,
            work,
        } = self;
        let (beta2, eps) = (cfg.betas.1, cfg.eps);
        let rho_inf = 2.0 / (1.0 - beta2) - 1.0;
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
                work.set(0, g, i, wd)?;
                let (views, s) = work.split(g, i);
                let (gbuf, tmp) = match views {
                    [a, b] => (a, b),
                    _ => unreachable!("two scratch views per parameter"),
                };
                // g' = centred gradient (+ wd * p for L2), in gbuf when it differs from grad
                let mut in_buf = false;
                if let Some((mean, dims)) = &gc[g][i] {
                    let _ = grad.f_mean_out(mean, dims, true, None)?;
                    let _ = grad.f_sub_out(gbuf, mean)?;
                    in_buf = true;
                }
                if wd != 0.0 {
                    match cfg.decay_mode {
                        WeightDecay::Decoupled => {
                            let _ = p.tensor.f_mul_scalar_(1.0 - lr * wd)?;
                        }
                        WeightDecay::L2 => {
                            if !in_buf {
                                gbuf.f_copy_(&grad)?;
                                in_buf = true;
                            }
                            axpy(gbuf, &p.tensor, &s[0])?;
                        }
                        WeightDecay::Ranger => {}
                    }
                }
                let gr: &Tensor = if in_buf { gbuf } else { &grad };
                let (m, v) = (&mut exp_avg[g][i], &mut exp_avg_sq[g][i]);
                let _ = m.f_lerp_(gr, 1.0 - beta1)?;
                let _ = v.f_mul_scalar_(beta2)?;
                let _ = gr.f_mul_scalar_out(tmp, 1.0 - beta2)?;
                let _ = v.f_addcmul_(gr, tmp)?;
                let bc1 = 1.0 - beta1.powf(step);
                let bc2 = 1.0 - beta2.powf(step);
                let rho_t = rho_inf - 2.0 * step * beta2.powf(step) / bc2;
                let ranger_wd = wd != 0.0 && cfg.decay_mode == WeightDecay::Ranger;
                if rho_t > cfg.n_sma_threshold {
                    let rect = ((rho_t - 4.0) * (rho_t - 2.0) * rho_inf
                        / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))
                        .sqrt();
                    let c = lr * rect * bc2.sqrt() / bc1;
                    if ranger_wd {
                        let _ = p.tensor.f_mul_scalar_(1.0 - c * wd)?;
                    }
                    // p -= c * m / (sqrt(v) + eps), -1/c folded into the denominator
                    let _ = v.f_sqrt_out(tmp)?;
                    let _ = tmp.f_add_scalar_(eps)?;
                    let _ = tmp.f_mul_scalar_(-1.0 / c)?;
                    let _ = p.tensor.f_addcdiv_(m, tmp)?;
                } else {
                    // warm-up: un-rectified momentum step; `m` is only read
                    let c = lr / bc1;
                    if ranger_wd {
                        let _ = p.tensor.f_mul_scalar_(1.0 - c * wd)?;
                    }
                    work.set(1, g, i, -c)?;
                    let (_, s) = work.split(g, i);
                    axpy(&mut p.tensor, m, &s[1])?;
                }
            }
        }
        Ok(())
    }
}

impl Optimizer for RAdam {
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
        let cfg: RAdamConfig = config_from_meta(&state.meta)?;
        if cfg.gradient_centralization != self.cfg.gradient_centralization {
            return Err(Error::StateMismatch(
                "gradient centralisation setting differs".into(),
            ));
        }
        let (groups, steps) = restore_buffers_state(
            state,
            KIND,
            &self.groups,
            &self.steps,
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
