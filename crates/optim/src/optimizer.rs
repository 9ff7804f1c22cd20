//! The [`Optimizer`] trait every optimizer here implements.

use std::path::Path;

use crate::group::ParamGroup;
use crate::state::OptimState;
use crate::{Error, Result};

/// An optimizer over parameter groups.
///
/// `step` updates, in place and under `no_grad`, every parameter that requires grad and
/// has a gradient; frozen parameters are skipped (their state is left as is).
pub trait Optimizer {
    /// One update from the current gradients.
    fn step(&mut self) -> Result<()>;
    /// The groups with their current hyper-parameters.
    fn groups(&self) -> &[ParamGroup];
    /// Sets group `group`'s learning rate.
    fn set_lr(&mut self, group: usize, lr: f64) -> Result<()>;
    /// Sets group `group`'s momentum (SGD) or beta1 (Adam family).
    fn set_momentum(&mut self, group: usize, momentum: f64) -> Result<()>;
    /// Sets group `group`'s weight decay.
    fn set_weight_decay(&mut self, group: usize, weight_decay: f64) -> Result<()>;
    /// A snapshot of the whole state (buffers, step counts, hyper-parameters).
    fn state_dict(&self) -> Result<OptimState>;
    /// Restores a snapshot taken from an optimizer of the same kind over the same
    /// parameters; buffers are copied into place.
    fn load_state_dict(&mut self, state: &OptimState) -> Result<()>;

    /// Zeroes every parameter's gradient (in place, where one exists).
    fn zero_grad(&mut self) {
        for g in self.groups() {
            for p in &g.params {
                let mut grad = p.tensor.grad();
                if grad.defined() {
                    let _ = grad.f_zero_();
                }
            }
        }
    }

    /// Sets every group's learning rate: `lrs` has one entry per group, or one for all.
    fn set_lrs(&mut self, lrs: &[f64]) -> Result<()> {
        for g in 0..self.groups().len() {
            let lr = per_group(lrs, g, self.groups().len(), "lrs")?;
            self.set_lr(g, lr)?;
        }
        Ok(())
    }

    /// Sets every group's momentum / beta1 to `m`.
    fn set_momentums(&mut self, m: f64) -> Result<()> {
        for g in 0..self.groups().len() {
            self.set_momentum(g, m)?;
        }
        Ok(())
    }

    /// [`Optimizer::state_dict`] written to `path` (+ `path.with_extension("json")`).
    fn save(&self, path: &Path) -> Result<()> {
        self.state_dict()?.save(path)
    }

    /// [`Optimizer::load_state_dict`] from files written by [`Optimizer::save`].
    fn load(&mut self, path: &Path) -> Result<()> {
        let s = OptimState::load(path)?;
        self.load_state_dict(&s)
    }
}

pub(crate) fn per_group(v: &[f64], g: usize, n: usize, what: &str) -> Result<f64> {
    match v.len() {
        1 => Ok(v[0]),
        l if l == n => Ok(v[g]),
        l => Err(Error::Config(format!(
            "{what}: {l} value(s) for {n} group(s)"
        ))),
    }
}

pub(crate) fn group_mut(groups: &mut [ParamGroup], g: usize) -> Result<&mut ParamGroup> {
    let len = groups.len();
    groups
        .get_mut(g)
        .ok_or(Error::NoSuchGroup { group: g, len })
}

/// Implements the group setters of [`Optimizer`] over a `groups: Vec<ParamGroup>` field.
macro_rules! group_setters {
    () => {
        fn groups(&self) -> &[$crate::group::ParamGroup] {
            &self.groups
        }
        fn set_lr(&mut self, group: usize, lr: f64) -> $crate::Result<()> {
            $crate::group::check_nonneg("lr", lr)?;
            $crate::optimizer::group_mut(&mut self.groups, group)?.lr = lr;
            Ok(())
        }
        fn set_momentum(&mut self, group: usize, momentum: f64) -> $crate::Result<()> {
            $crate::group::check_unit("momentum", momentum)?;
            $crate::optimizer::group_mut(&mut self.groups, group)?.momentum = momentum;
            Ok(())
        }
        fn set_weight_decay(&mut self, group: usize, wd: f64) -> $crate::Result<()> {
            $crate::group::check_nonneg("weight_decay", wd)?;
            $crate::optimizer::group_mut(&mut self.groups, group)?.weight_decay = wd;
            Ok(())
        }
    };
}
pub(crate) use group_setters;

/// Allocates one zero buffer per parameter (same shape, dtype, device, memory format).
pub(crate) fn zeros_per_param(groups: &[ParamGroup]) -> Result<Vec<Vec<tch::Tensor>>> {
    groups
        .iter()
        .map(|g| {
            g.params
                .iter()
                .map(|p| Ok(p.tensor.f_zeros_like()?))
                .collect()
        })
        .collect()
}

/// `[[0; n_params]; n_groups]`.
pub(crate) fn zero_steps(groups: &[ParamGroup]) -> Vec<Vec<u64>> {
    groups.iter().map(|g| vec![0; g.params.len()]).collect()
}
