//! libtorch's fused multi-tensor optimizer kernels (tch's generator skips the
//! `_fused_*` ops).

use tch::Tensor;

use crate::{ffi, Error, Result};

/// Hyper-parameters of one [`fused_adamw`] call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWStep {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub weight_decay: f64,
    pub eps: f64,
}

/// One AdamW step (`torch.optim.AdamW(fused=True)`, amsgrad off) over a list
/// of parameters, in place: `p *= 1 - lr * wd`, the moment updates, and the
/// bias-corrected update, in one multi-tensor kernel per device and dtype.
/// `steps[i]` is parameter `i`'s step count *after* this step (float32, 0-d,
/// on the parameter's device; the kernel reads it and does not change it).
/// Every list must be as long as `params`; parameters, gradients and moments
/// of one call share a device and a floating dtype.
///
/// ```
/// use brigade_torch_ext::{fused_adamw, AdamWStep};
/// use tch::{Kind, Tensor};
/// # fn main() -> Result<(), brigade_torch_ext::Error> {
/// let p = Tensor::ones([3], (Kind::Float, tch::Device::Cpu));
/// let g = Tensor::ones([3], (Kind::Float, tch::Device::Cpu));
/// let (m, v) = (p.zeros_like(), p.zeros_like());
/// let step = Tensor::from(1.0f32);
/// let hp = AdamWStep { lr: 0.1, beta1: 0.9, beta2: 0.999, weight_decay: 0.0, eps: 1e-8 };
/// fused_adamw(&[p.shallow_clone()], &[g], &[m], &[v], &[step], hp)?;
/// // the first Adam step moves each weight by lr against the gradient's sign
/// assert!((p.double_value(&[0]) - 0.9).abs() < 1e-6);
/// # Ok(())
/// # }
/// ```
pub fn fused_adamw(
    params: &[Tensor],
    grads: &[Tensor],
    exp_avgs: &[Tensor],
    exp_avg_sqs: &[Tensor],
    steps: &[Tensor],
    hp: AdamWStep,
) -> Result<()> {
    let n = params.len();
    if [grads.len(), exp_avgs.len(), exp_avg_sqs.len(), steps.len()] != [n; 4] {
        return Err(Error::Invalid(format!(
            "fused_adamw: {n} parameters but {} gradients, {} first and {} second moments, \
             {} step counts",
            grads.len(),
            exp_avgs.len(),
            exp_avg_sqs.len(),
            steps.len()
        )));
    }
    if n == 0 {
        return Ok(());
    }
    let raw = |ts: &[Tensor]| ts.iter().map(ffi::raw).collect::<Vec<_>>();
    let (p, g, m, v, s) = (
        raw(params),
        raw(grads),
        raw(exp_avgs),
        raw(exp_avg_sqs),
        raw(steps),
    );
    // SAFETY: five arrays of n live tensor pointers (borrowed for the call);
    // the kernel mutates the tensors' data in place, not the handles.
    ffi::check("fused_adamw", unsafe {
        ffi::bte_fused_adamw(
            p.as_ptr(),
            g.as_ptr(),
            m.as_ptr(),
            v.as_ptr(),
            s.as_ptr(),
            n,
            hp.lr,
            hp.beta1,
            hp.beta2,
            hp.weight_decay,
            hp.eps,
        )
    })
}
