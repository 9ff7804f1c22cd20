//! Gradient clipping, as `torch.nn.utils.clip_grad_norm_` / `clip_grad_value_`.

use tch::Tensor;

use crate::group::ParamGroup;
use crate::Result;

/// Which norm [`clip_grad_norm`] measures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Norm {
    /// Euclidean (2-norm over all gradients together).
    L2,
    /// Largest absolute value.
    Inf,
}

fn grads<'a>(params: impl IntoIterator<Item = &'a Tensor>) -> Vec<Tensor> {
    params
        .into_iter()
        .map(|p| p.grad())
        .filter(|g| g.defined())
        .collect()
}

/// Every parameter tensor of some groups (for the clipping functions).
pub fn group_tensors(groups: &[ParamGroup]) -> Vec<&Tensor> {
    groups
        .iter()
        .flat_map(|g| g.params.iter().map(|p| &p.tensor))
        .collect()
}

/// Scales all gradients so their joint norm is at most `max_norm`
/// (`coef = min(1, max_norm / (total + 1e-6))`), without a host sync. Returns the total
/// norm before clipping as a 0-d tensor (`f64::try_from` it to log; that syncs). Parameters
/// without a gradient are ignored; `None` if none has one.
pub fn clip_grad_norm<'a>(
    params: impl IntoIterator<Item = &'a Tensor>,
    max_norm: f64,
    norm: Norm,
) -> Result<Option<Tensor>> {
    let gs = grads(params);
    if gs.is_empty() {
        return Ok(None);
    }
    tch::no_grad(|| {
        let norms: Vec<Tensor> = gs
            .iter()
            .map(|g| match norm {
                Norm::L2 => g.f_norm(),
                Norm::Inf => g.f_abs()?.f_max(),
            })
            .collect::<Result<_, _>>()?;
        let stacked = Tensor::f_stack(&norms, 0)?;
        let total = match norm {
            Norm::L2 => stacked.f_norm()?,
            Norm::Inf => stacked.f_max()?,
        };
        let num = Tensor::f_full([], max_norm, (total.kind(), total.device()))?;
        let coef = num.f_div(&total.f_add_scalar(1e-6)?)?.f_clamp_max(1.0)?;
        for g in &gs {
            let _ = g.shallow_clone().f_mul_(&coef.f_to_kind(g.kind())?)?;
        }
        Ok(Some(total))
    })
}

/// Clamps every gradient element to `[-clip, clip]`.
pub fn clip_grad_value<'a>(params: impl IntoIterator<Item = &'a Tensor>, clip: f64) -> Result<()> {
    tch::no_grad(|| {
        for g in grads(params) {
            let _ = g.shallow_clone().f_clamp_(-clip, clip)?;
        }
        Ok(())
    })
}
