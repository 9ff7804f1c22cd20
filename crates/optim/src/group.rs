//! Parameter groups: which tensors an optimizer updates, with per-group hyper-parameters.
//!
//! The builders turn a [`tch::nn::VarStore`] into [`GroupSpec`]s (hyper-parameters optional;
//! the optimizer fills what is unset from its config and keeps resolved [`ParamGroup`]s).
//! Weight decay is off by default for every parameter with `dim() <= 1` (biases and
//! BatchNorm weights/biases), as fastai and timm do.

use std::collections::HashSet;

use tch::{nn::VarStore, Tensor};

use crate::{Error, Result};

/// One parameter tensor in a group.
#[derive(Debug)]
pub struct Param {
    /// Unique name (the VarStore variable name when built from one); keys the saved state.
    pub name: String,
    /// The parameter itself (a shallow handle: updates land in the model).
    pub tensor: Tensor,
    /// Whether the group's weight decay applies to it (default: `dim() > 1`).
    pub decay: bool,
}

impl Param {
    /// A parameter with the default decay rule (`dim() > 1`).
    pub fn new(name: impl Into<String>, tensor: &Tensor) -> Self {
        Param {
            name: name.into(),
            decay: tensor.dim() > 1,
            tensor: tensor.shallow_clone(),
        }
    }

    /// Whether the optimizer updates it at this step: it requires grad and has a gradient.
    /// Frozen parameters (`requires_grad == false`) are skipped, so freezing and unfreezing
    /// a model needs no new optimizer.
    pub fn is_active(&self) -> bool {
        self.tensor.requires_grad() && self.tensor.grad().defined()
    }
}

impl Clone for Param {
    fn clone(&self) -> Self {
        Param {
            name: self.name.clone(),
            tensor: self.tensor.shallow_clone(),
            decay: self.decay,
        }
    }
}

/// A group as the user specifies it: parameters plus optional hyper-parameter overrides.
#[derive(Debug, Clone, Default)]
pub struct GroupSpec {
    /// Display name (e.g. the layer-group name).
    pub name: String,
    /// The parameters.
    pub params: Vec<Param>,
    /// Learning rate; `None`: the optimizer's default.
    pub lr: Option<f64>,
    /// Weight decay; `None`: the optimizer's default.
    pub weight_decay: Option<f64>,
    /// SGD momentum or Adam-family beta1; `None`: the optimizer's default.
    pub momentum: Option<f64>,
}

impl GroupSpec {
    /// A group over `params` with every hyper-parameter left to the optimizer.
    pub fn new(name: impl Into<String>, params: Vec<Param>) -> Self {
        GroupSpec {
            name: name.into(),
            params,
            ..Default::default()
        }
    }
    /// Sets the learning rate.
    pub fn lr(mut self, lr: f64) -> Self {
        self.lr = Some(lr);
        self
    }
    /// Sets the weight decay.
    pub fn weight_decay(mut self, wd: f64) -> Self {
        self.weight_decay = Some(wd);
        self
    }
    /// Sets momentum / beta1.
    pub fn momentum(mut self, m: f64) -> Self {
        self.momentum = Some(m);
        self
    }
}

/// A resolved group, as the optimizer holds it.
#[derive(Debug, Clone)]
pub struct ParamGroup {
    /// Display name.
    pub name: String,
    /// The parameters.
    pub params: Vec<Param>,
    /// Learning rate.
    pub lr: f64,
    /// Weight decay (applied to parameters with `decay == true`).
    pub weight_decay: f64,
    /// SGD momentum or Adam-family beta1.
    pub momentum: f64,
}

/// Resolves specs against defaults; checks names are unique and values finite.
pub(crate) fn resolve(
    specs: Vec<GroupSpec>,
    lr: f64,
    weight_decay: f64,
    momentum: f64,
) -> Result<Vec<ParamGroup>> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(specs.len());
    for s in specs {
        for p in &s.params {
            if !seen.insert(p.name.clone()) {
                return Err(Error::DuplicateParam(p.name.clone()));
            }
        }
        let g = ParamGroup {
            lr: s.lr.unwrap_or(lr),
            weight_decay: s.weight_decay.unwrap_or(weight_decay),
            momentum: s.momentum.unwrap_or(momentum),
            name: s.name,
            params: s.params,
        };
        check_nonneg("lr", g.lr)?;
        check_nonneg("weight_decay", g.weight_decay)?;
        check_unit("momentum", g.momentum)?;
        out.push(g);
    }
    Ok(out)
}

pub(crate) fn check_nonneg(what: &str, v: f64) -> Result<()> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "{what} = {v}: must be finite and >= 0"
        )))
    }
}

pub(crate) fn check_unit(what: &str, v: f64) -> Result<()> {
    if (0.0..1.0).contains(&v) {
        Ok(())
    } else {
        Err(Error::Config(format!("{what} = {v}: must be in [0, 1)")))
    }
}

/// All variables of a VarStore as `(name, tensor)`, sorted by name (deterministic order).
/// Includes non-trainable variables (BatchNorm running stats).
pub fn named_variables(vs: &VarStore) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Whether `name` lies under `prefix` (equal, or `prefix` + `.` + more). An empty prefix
/// matches everything.
pub fn has_prefix(name: &str, prefix: &str) -> bool {
    prefix.is_empty()
        || name == prefix
        || (name.len() > prefix.len()
            && name.starts_with(prefix)
            && name.as_bytes()[prefix.len()] == b'.')
}

/// The VarStore's parameters (trainable variables, frozen or not) as `(name, tensor)`,
/// sorted by name. Buffers (BatchNorm running stats, added with `*_no_train`) are left out:
/// a variable is a parameter when its storage is one of `vs.trainable_variables()`.
pub fn named_parameters(vs: &VarStore) -> Vec<(String, Tensor)> {
    let trainable: HashSet<usize> = vs
        .trainable_variables()
        .iter()
        .map(|t| t.data_ptr() as usize)
        .collect();
    named_variables(vs)
        .into_iter()
        .filter(|(_, t)| t.numel() > 0 && trainable.contains(&(t.data_ptr() as usize)))
        .collect()
}

/// Groups a VarStore's parameters with a function from variable name to group index
/// (`None`: not optimised). Returns `n_groups` specs named `group0..`; an index
/// `>= n_groups` is an error. Buffers (running stats) are left out.
pub fn groups_by<F>(vs: &VarStore, n_groups: usize, mut f: F) -> Result<Vec<GroupSpec>>
where
    F: FnMut(&str) -> Option<usize>,
{
    let mut specs: Vec<GroupSpec> = (0..n_groups)
        .map(|i| GroupSpec::new(format!("group{i}"), Vec::new()))
        .collect();
    for (name, t) in named_parameters(vs) {
        if let Some(g) = f(&name) {
            let len = specs.len();
            let spec = specs
                .get_mut(g)
                .ok_or(Error::NoSuchGroup { group: g, len })?;
            spec.params.push(Param::new(name, &t));
        }
    }
    Ok(specs)
}

/// Groups a VarStore's parameters by layer-group name prefixes (as the zoo crate gives
/// them: `prefixes[g]` lists the prefixes of group `g`). The first group with a matching
/// prefix wins. A parameter that matches no prefix is an error ([`Error::Unassigned`]).
pub fn groups_from_prefixes(vs: &VarStore, prefixes: &[Vec<String>]) -> Result<Vec<GroupSpec>> {
    let mut unassigned = Vec::new();
    let specs = groups_by(vs, prefixes.len(), |name| {
        let g = prefixes
            .iter()
            .position(|ps| ps.iter().any(|p| has_prefix(name, p)));
        if g.is_none() {
            unassigned.push(name.to_string());
        }
        g
    })?;
    if !unassigned.is_empty() {
        return Err(Error::Unassigned { names: unassigned });
    }
    Ok(specs)
}

/// Every parameter of a VarStore in one group.
pub fn single_group(vs: &VarStore) -> Vec<GroupSpec> {
    let params = named_parameters(vs)
        .into_iter()
        .map(|(n, t)| Param::new(n, &t))
        .collect();
    vec![GroupSpec::new("all", params)]
}
