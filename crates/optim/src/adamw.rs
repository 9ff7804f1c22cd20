//! AdamW (decoupled weight decay), as `torch.optim.AdamW`.

use brigade_torch_ext::{fused_adamw, AdamWStep};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::group::{check_unit, resolve, GroupSpec, ParamGroup};
use crate::optimizer::{group_setters, zero_steps, zeros_per_param, Optimizer};
use crate::state::{buffers_state, config_from_meta, restore_buffers_state, OptimState};
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
///
/// Steps run libtorch's fused multi-tensor kernel (`torch.optim.AdamW(fused=True)`)
/// when every parameter is a float/half/bfloat16/double tensor on the CPU or a CUDA
/// device (the default; [`AdamW::set_fused`] switches it), else per-tensor in-place
/// kernels into preallocated buffers. Both follow torch's arithmetic; they agree to
/// float rounding.
pub struct AdamW {
    groups: Vec<ParamGroup>,
    cfg: AdamWConfig,
    exp_avg: Vec<Vec<Tensor>>,
    exp_avg_sq: Vec<Vec<Tensor>>,
    steps: Vec<Vec<u64>>,
    work: Work,
    fused: bool,
    /// One float32 0-d step count per device, filled before each fused call
    /// (stream order makes reusing it across calls safe).
    step_scalars: Vec<(Device, Tensor)>,
}

/// Parameters of one group updated by one fused call: same device, dtype,
/// weight decay and step count.
struct Bucket {
    device: Device,
    kind: Kind,
    decay: bool,
    step: u64,
    params: Vec<usize>,
}

fn fusable(t: &Tensor) -> bool {
    matches!(
        t.kind(),
        Kind::Float | Kind::Half | Kind::BFloat16 | Kind::Double
    ) && matches!(t.device(), Device::Cpu | Device::Cuda(_))
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
        let fused = groups
            .iter()
            .flat_map(|g| &g.params)
            .all(|p| fusable(&p.tensor));
        Ok(AdamW {
            exp_avg: zeros_per_param(&groups)?,
            exp_avg_sq: zeros_per_param(&groups)?,
            steps: zero_steps(&groups),
            work: Work::new(&groups, 1, 0)?,
            groups,
            cfg,
            fused,
            step_scalars: Vec::new(),
        })
    }

    /// Whether steps run the fused kernel.
    pub fn is_fused(&self) -> bool {
        self.fused
    }

    /// Chooses the fused kernel (`true`) or the per-tensor kernels; the
    /// fused one needs float/half/bfloat16/double parameters on the CPU or CUDA.
    pub fn set_fused(&mut self, fused: bool) -> Result<()> {
        if fused {
            let params = self.groups.iter().flat_map(|g| &g.params);
            if let Some(p) = params.into_iter().find(|p| !fusable(&p.tensor)) {
                return Err(Error::Config(format!(
                    "fused AdamW: parameter {} is {:?} on {:?} (needs a floating dtype on the \
                     CPU or CUDA)",
                    p.name,
                    p.tensor.kind(),
                    p.tensor.device()
                )));
            }
        }
        self.fused = fused;
        Ok(())
    }

    /// One step through `fused_adamw`, one call per bucket of parameters.
    fn step_fused(&mut self) -> Result<()> {
        let (beta2, eps) = (self.cfg.betas.1, self.cfg.eps);
        for (g, group) in self.groups.iter().enumerate() {
            let mut buckets: Vec<Bucket> = Vec::new();
            for (i, p) in group.params.iter().enumerate() {
                if !p.is_active() {
                    continue;
                }
                self.steps[g][i] += 1;
                let (device, kind, step) = (p.tensor.device(), p.tensor.kind(), self.steps[g][i]);
                let same = |b: &&mut Bucket| {
                    b.device == device && b.kind == kind && b.decay == p.decay && b.step == step
                };
                match buckets.iter_mut().find(same) {
                    Some(b) => b.params.push(i),
                    None => buckets.push(Bucket {
                        device,
                        kind,
                        decay: p.decay,
                        step,
                        params: vec![i],
                    }),
                }
            }
            for b in &buckets {
                let k = match self.step_scalars.iter().position(|(d, _)| *d == b.device) {
                    Some(k) => k,
                    None => {
                        let t = Tensor::f_zeros([], (Kind::Float, b.device))?;
                        self.step_scalars.push((b.device, t));
                        self.step_scalars.len() - 1
                    }
                };
                let scalar = &mut self.step_scalars[k].1;
                let _ = scalar.f_fill_(b.step as f64)?;
                let pick = |ts: &[Tensor]| -> Vec<Tensor> {
                    b.params.iter().map(|&i| ts[i].shallow_clone()).collect()
                };
                let params: Vec<Tensor> = b
                    .params
                    .iter()
                    .map(|&i| group.params[i].tensor.shallow_clone())
                    .collect();
                let grads: Vec<Tensor> = b
                    .params
                    .iter()
                    .map(|&i| group.params[i].tensor.grad())
                    .collect();
                let steps: Vec<Tensor> = b.params.iter().map(|_| scalar.shallow_clone()).collect();
                let hp = AdamWStep {
                    lr: group.lr,
                    beta1: group.momentum,
                    beta2,
                    weight_decay: if b.decay { group.weight_decay } else { 0.0 },
                    eps,
                };
                fused_adamw(
                    &params,
                    &grads,
                    &pick(&self.exp_avg[g]),
                    &pick(&self.exp_avg_sq[g]),
                    &steps,
                    hp,
                )?;
            }
        }
        Ok(())
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
            ..
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
        if self.fused {
            tch::no_grad(|| self.step_fused())
        } else {
            tch::no_grad(|| self.step_inner())
        }
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
