//! Exponential moving average of model weights (timm's `ModelEmaV2`), with warm-up.

use std::path::Path;

use serde_json::json;
use tch::Tensor;

use crate::state::{get_f64, get_u64, snapshot, OptimState, TensorMap};
use crate::{Error, Result};

/// EMA of a set of named tensors (pass every VarStore variable, buffers included, as timm
/// averages the whole state dict). Floating tensors are averaged:
/// `ema = d * ema + (1 - d) * model`; integer ones (counters) are copied.
/// With warm-up, `d = min(decay, (1 + n) / (10 + n))`, `n` the number of earlier updates.
pub struct Ema {
    decay: f64,
    warmup: bool,
    updates: u64,
    /// (name, model tensor, shadow copy)
    vars: Vec<(String, Tensor, Tensor)>,
}

impl Ema {
    /// Copies the current weights as the initial average.
    pub fn new(named: &[(String, Tensor)], decay: f64, warmup: bool) -> Result<Ema> {
        if !(0.0..=1.0).contains(&decay) {
            return Err(Error::Config(format!(
                "EMA decay = {decay}: must be in [0, 1]"
            )));
        }
        let vars = named
            .iter()
            .map(|(n, t)| Ok((n.clone(), t.shallow_clone(), snapshot(t)?)))
            .collect::<Result<_>>()?;
        Ok(Ema {
            decay,
            warmup,
            updates: 0,
            vars,
        })
    }

    /// The decay the next update will use.
    pub fn current_decay(&self) -> f64 {
        if self.warmup {
            let n = self.updates as f64;
            self.decay.min((1.0 + n) / (10.0 + n))
        } else {
            self.decay
        }
    }

    /// Number of updates so far.
    pub fn updates(&self) -> u64 {
        self.updates
    }

    /// Folds the model's current weights into the average (in place, no allocation).
    pub fn update(&mut self) -> Result<()> {
        let d = self.current_decay();
        tch::no_grad(|| -> Result<()> {
            for (_, model, shadow) in &mut self.vars {
                if shadow.is_floating_point() {
                    let _ = shadow.f_lerp_(model, 1.0 - d)?;
                } else {
                    shadow.f_copy_(model)?;
                }
            }
            Ok(())
        })?;
        self.updates += 1;
        Ok(())
    }

    /// The averaged tensors by name.
    pub fn averaged(&self) -> Vec<(&str, &Tensor)> {
        self.vars.iter().map(|(n, _, s)| (n.as_str(), s)).collect()
    }

    /// Copies the average into the model (e.g. before evaluation; keep a
    /// [`Ema::swap`] pair if training continues).
    pub fn copy_to_model(&self) -> Result<()> {
        tch::no_grad(|| {
            for (_, model, shadow) in &self.vars {
                model.shallow_clone().f_copy_(shadow)?;
            }
            Ok(())
        })
    }

    /// Swaps model and average contents (call twice to undo), for evaluating the EMA
    /// weights in the middle of training.
    pub fn swap(&mut self) -> Result<()> {
        tch::no_grad(|| {
            for (_, model, shadow) in &mut self.vars {
                let tmp = snapshot(model)?;
                model.f_copy_(shadow)?;
                shadow.f_copy_(&tmp)?;
            }
            Ok(())
        })
    }

    /// Snapshot for checkpoints: tensors `<name>.ema`, meta `{decay, warmup, updates}`.
    pub fn state_dict(&self) -> Result<OptimState> {
        let tensors = self
            .vars
            .iter()
            .map(|(n, _, s)| Ok((format!("{n}.ema"), snapshot(s)?)))
            .collect::<Result<_>>()?;
        let meta = json!({"kind": "ema", "version": 1, "decay": self.decay, "warmup": self.warmup, "updates": self.updates});
        Ok(OptimState { meta, tensors })
    }

    /// Restores a [`Ema::state_dict`].
    pub fn load_state_dict(&mut self, state: &OptimState) -> Result<()> {
        if state.meta.get("kind").and_then(|v| v.as_str()) != Some("ema") {
            return Err(Error::StateMismatch("not an EMA state".into()));
        }
        let decay = get_f64(&state.meta, "decay")?;
        let updates = get_u64(&state.meta, "updates")?;
        let warmup = state
            .meta
            .get("warmup")
            .and_then(|v| v.as_bool())
            .unwrap_or(self.warmup);
        let map = TensorMap::new(state);
        for (n, _, s) in &mut self.vars {
            map.copy_into(&format!("{n}.ema"), s)?;
        }
        self.decay = decay;
        self.updates = updates;
        self.warmup = warmup;
        Ok(())
    }

    /// [`Ema::state_dict`] to files (see [`OptimState::save`]).
    pub fn save(&self, path: &Path) -> Result<()> {
        self.state_dict()?.save(path)
    }

    /// Loads what [`Ema::save`] wrote.
    pub fn load(&mut self, path: &Path) -> Result<()> {
        self.load_state_dict(&OptimState::load(path)?)
    }
}
