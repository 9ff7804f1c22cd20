//! Preallocated working memory for optimizer steps (private tch helpers).
//!
//! tch 0.24 does not expose libtorch's `_foreach_*` / `_fused_*` optimizer kernels (its
//! generator excludes those prefixes), and its `add_`/`addcdiv_` have no `alpha`/`value`
//! argument. So each step runs per-tensor in-place kernels (AdamW's fused kernel comes
//! through `brigade-torch-ext` instead), and the scaled forms are built
//! from what is there without allocating:
//!
//! * `y += a * x` is `y.addcmul_(x, s)` with `s` a 0-d tensor holding `a`, filled in place;
//! * temporaries (denominators, centred gradients) go to *scratch views*: a few flat
//!   buffers per (device, dtype), sized for the largest parameter, viewed once per
//!   parameter at construction.

use tch::{Device, Kind, Tensor};

use crate::group::ParamGroup;
use crate::Result;

/// Scratch views and scalar tensors for every parameter of a set of groups.
pub(crate) struct Work {
    /// `views[group][param][slot]`: a tensor shaped like the parameter.
    views: Vec<Vec<Vec<Tensor>>>,
    /// `scalars[key][slot]`: 0-d tensors on that key's device/dtype.
    scalars: Vec<Vec<Tensor>>,
    /// `key[group][param]`: index into `scalars`.
    key: Vec<Vec<usize>>,
}

impl Work {
    /// `n_views` scratch tensors and `n_scalars` scalars per parameter.
    pub(crate) fn new(groups: &[ParamGroup], n_views: usize, n_scalars: usize) -> Result<Work> {
        let mut keys: Vec<(Device, Kind, i64)> = Vec::new();
        let mut key = Vec::with_capacity(groups.len());
        for g in groups {
            let mut kg = Vec::with_capacity(g.params.len());
            for p in &g.params {
                let (d, k) = (p.tensor.device(), p.tensor.kind());
                let n = p.tensor.numel() as i64;
                let idx = match keys.iter().position(|(kd, kk, _)| *kd == d && *kk == k) {
                    Some(i) => {
                        keys[i].2 = keys[i].2.max(n);
                        i
                    }
                    None => {
                        keys.push((d, k, n));
                        keys.len() - 1
                    }
                };
                kg.push(idx);
            }
            key.push(kg);
        }
        let mut flats: Vec<Vec<Tensor>> = Vec::with_capacity(n_views);
        for _ in 0..n_views {
            flats.push(
                keys.iter()
                    .map(|&(d, k, n)| Tensor::f_empty([n], (k, d)))
                    .collect::<Result<_, _>>()?,
            );
        }
        let mut views = Vec::with_capacity(groups.len());
        for (g, kg) in groups.iter().zip(&key) {
            let mut pv = Vec::with_capacity(g.params.len());
            for (p, &ki) in g.params.iter().zip(kg) {
                let t = &p.tensor;
                let mut slots = Vec::with_capacity(n_views);
                for f in &flats {
                    slots.push(if t.is_contiguous() {
                        f[ki]
                            .f_narrow(0, 0, t.numel() as i64)?
                            .f_view(t.size().as_slice())?
                    } else {
                        // channels-last etc.: an own buffer with the parameter's strides
                        t.f_empty_like()?
                    });
                }
                pv.push(slots);
            }
            views.push(pv);
        }
        let scalars = keys
            .iter()
            .map(|&(d, k, _)| {
                (0..n_scalars)
                    .map(|_| Tensor::f_zeros([], (k, d)))
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<_, _>>()?;
        Ok(Work {
            views,
            scalars,
            key,
        })
    }

    /// Fills scalar `slot` of parameter `(g, i)`'s device/dtype with `v`.
    pub(crate) fn set(&mut self, slot: usize, g: usize, i: usize, v: f64) -> Result<()> {
        let _ = self.scalars[self.key[g][i]][slot].f_fill_(v)?;
        Ok(())
    }

    /// Parameter `(g, i)`'s scratch views (mutable) and scalars (as last set).
    pub(crate) fn split(&mut self, g: usize, i: usize) -> (&mut [Tensor], &[Tensor]) {
        (&mut self.views[g][i], &self.scalars[self.key[g][i]])
    }
}

/// `y += a * x` in one pass (through a 0-d scalar tensor).
pub(crate) fn axpy(y: &mut Tensor, x: &Tensor, a: &Tensor) -> Result<()> {
    let _ = y.f_addcmul_(x, a)?;
    Ok(())
}
