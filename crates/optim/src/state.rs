//! Optimizer state for checkpoints: named tensors (safetensors) + scalars (JSON).

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use tch::Tensor;

use crate::group::ParamGroup;
use crate::{Error, Result};

/// A snapshot of an optimizer: every state tensor by name, every scalar (step counts,
/// hyper-parameters, config) in `meta`.
///
/// Tensors are copies (on the optimizer's device); loading copies them back into the
/// optimizer's preallocated buffers, so a restored run continues bit-identically.
#[derive(Debug)]
pub struct OptimState {
    /// Scalars: `{"kind": .., "groups": [..], "config": {..}, ...}`.
    pub meta: Value,
    /// State tensors, named `<param name>.<buffer>`.
    pub tensors: Vec<(String, Tensor)>,
}

impl OptimState {
    /// Writes `path` (safetensors, the tensors) and `path.with_extension("json")` (the
    /// scalars), each through a temp file, fsync and rename.
    pub fn save(&self, path: &Path) -> Result<()> {
        let json_path = json_path(path);
        let tmp = tmp_path(path);
        let cpu: Vec<(String, Tensor)> = self
            .tensors
            .iter()
            .map(|(n, t)| Ok((n.clone(), t.f_to_device(tch::Device::Cpu)?.f_contiguous()?)))
            .collect::<Result<_>>()?;
        Tensor::write_safetensors(&cpu, &tmp).map_err(|e| Error::Tensors {
            path: tmp.clone(),
            msg: e.to_string(),
        })?;
        fsync_rename(&tmp, path)?;
        let text = serde_json::to_vec_pretty(&self.meta).map_err(|source| Error::Json {
            path: json_path.clone(),
            source,
        })?;
        let tmp = tmp_path(&json_path);
        let io = |source| Error::Io {
            path: tmp.clone(),
            source,
        };
        let mut f = File::create(&tmp).map_err(io)?;
        f.write_all(&text).map_err(io)?;
        drop(f);
        fsync_rename(&tmp, &json_path)
    }

    /// Reads what [`OptimState::save`] wrote (tensors land on the CPU; loading into an
    /// optimizer copies them to its device).
    pub fn load(path: &Path) -> Result<OptimState> {
        let tensors = Tensor::read_safetensors(path).map_err(|e| Error::Tensors {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        let json_path = json_path(path);
        let text = std::fs::read(&json_path).map_err(|source| Error::Io {
            path: json_path.clone(),
            source,
        })?;
        let meta = serde_json::from_slice(&text).map_err(|source| Error::Json {
            path: json_path.clone(),
            source,
        })?;
        Ok(OptimState { meta, tensors })
    }

    /// The tensor named `name`.
    pub fn tensor(&self, name: &str) -> Result<&Tensor> {
        self.tensors
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t)
            .ok_or_else(|| Error::StateMismatch(format!("missing state tensor `{name}`")))
    }
}

fn json_path(path: &Path) -> PathBuf {
    path.with_extension("json")
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

fn fsync_rename(tmp: &Path, dst: &Path) -> Result<()> {
    let io = |source| Error::Io {
        path: tmp.to_path_buf(),
        source,
    };
    File::options()
        .read(true)
        .write(true)
        .open(tmp)
        .and_then(|f| f.sync_all())
        .map_err(io)?;
    std::fs::rename(tmp, dst).map_err(|source| Error::Io {
        path: dst.to_path_buf(),
        source,
    })?;
    if let Some(dir) = dst.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Best effort: persist the rename (directories cannot be fsynced everywhere).
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// JSON description of groups: hyper-parameters and parameter names.
pub(crate) fn groups_meta(groups: &[ParamGroup]) -> Value {
    Value::Array(
        groups
            .iter()
            .map(|g| {
                json!({
                    "name": g.name,
                    "lr": g.lr,
                    "weight_decay": g.weight_decay,
                    "momentum": g.momentum,
                    "params": g.params.iter().map(|p| p.name.clone()).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

/// Checks `meta["kind"] == kind` and the groups' parameter names; restores the groups'
/// hyper-parameters.
pub(crate) fn restore_groups(meta: &Value, kind: &str, groups: &mut [ParamGroup]) -> Result<()> {
    let got = meta.get("kind").and_then(Value::as_str).unwrap_or("?");
    if got != kind {
        return Err(Error::StateMismatch(format!(
            "state is for `{got}`, optimizer is `{kind}`"
        )));
    }
    let saved = meta
        .get("groups")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::StateMismatch("no `groups` array".into()))?;
    if saved.len() != groups.len() {
        return Err(Error::StateMismatch(format!(
            "state has {} group(s), optimizer has {}",
            saved.len(),
            groups.len()
        )));
    }
    for (gi, (s, g)) in saved.iter().zip(groups.iter_mut()).enumerate() {
        let names: Vec<&str> = s
            .get("params")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let ours: Vec<&str> = g.params.iter().map(|p| p.name.as_str()).collect();
        if names != ours {
            return Err(Error::StateMismatch(format!(
                "group {gi}: saved parameters {names:?} differ from {ours:?}"
            )));
        }
        g.lr = get_f64(s, "lr")?;
        g.weight_decay = get_f64(s, "weight_decay")?;
        g.momentum = get_f64(s, "momentum")?;
    }
    Ok(())
}

pub(crate) fn get_f64(v: &Value, key: &str) -> Result<f64> {
    v.get(key)
        .and_then(Value::as_f64)
        .ok_or_else(|| Error::StateMismatch(format!("missing number `{key}`")))
}

pub(crate) fn get_u64(v: &Value, key: &str) -> Result<u64> {
    v.get(key)
        .and_then(Value::as_u64)
        .ok_or_else(|| Error::StateMismatch(format!("missing integer `{key}`")))
}

/// Per-parameter step counts, `[[u64]]` by group.
pub(crate) fn steps_meta(steps: &[Vec<u64>]) -> Value {
    json!(steps)
}

pub(crate) fn restore_steps(meta: &Value, key: &str, steps: &mut [Vec<u64>]) -> Result<()> {
    let saved: Vec<Vec<u64>> = meta
        .get(key)
        .cloned()
        .and_then(|v| serde_json::from_value(v).ok())
        .ok_or_else(|| Error::StateMismatch(format!("missing `{key}`")))?;
    let shape = |s: &[Vec<u64>]| s.iter().map(Vec::len).collect::<Vec<_>>();
    if shape(&saved) != shape(steps) {
        return Err(Error::StateMismatch(format!("`{key}` has the wrong shape")));
    }
    for (d, s) in steps.iter_mut().zip(saved) {
        d.copy_from_slice(&s);
    }
    Ok(())
}

/// Named tensor lookup over a state.
pub(crate) struct TensorMap<'a>(HashMap<&'a str, &'a Tensor>);

impl<'a> TensorMap<'a> {
    pub(crate) fn new(state: &'a OptimState) -> Self {
        TensorMap(state.tensors.iter().map(|(n, t)| (n.as_str(), t)).collect())
    }

    /// Copies the saved tensor `name` into `dst` (shape must match).
    pub(crate) fn copy_into(&self, name: &str, dst: &mut Tensor) -> Result<()> {
        let src = self
            .0
            .get(name)
            .ok_or_else(|| Error::StateMismatch(format!("missing state tensor `{name}`")))?;
        if src.size() != dst.size() {
            return Err(Error::StateMismatch(format!(
                "`{name}`: saved shape {:?}, expected {:?}",
                src.size(),
                dst.size()
            )));
        }
        tch::no_grad(|| dst.f_copy_(src))?;
        Ok(())
    }
}

/// A detached copy of a tensor, for a snapshot.
pub(crate) fn snapshot(t: &Tensor) -> Result<Tensor> {
    let mut c = t.f_zeros_like()?;
    tch::no_grad(|| c.f_copy_(t))?;
    Ok(c)
}

/// The common body of every per-parameter optimizer's `state_dict`: each buffer in
/// `buffers` saved as `<param>.<suffix>` (parameter-major order), plus the meta
/// object (kind, version, config, groups, step counts).
pub(crate) fn buffers_state(
    kind: &str,
    config: &impl Serialize,
    groups: &[ParamGroup],
    steps: &[Vec<u64>],
    buffers: &[(&str, &[Vec<Tensor>])],
) -> Result<OptimState> {
    let mut tensors = Vec::new();
    for (g, group) in groups.iter().enumerate() {
        for (i, p) in group.params.iter().enumerate() {
            for (suffix, buf) in buffers {
                tensors.push((format!("{}.{suffix}", p.name), snapshot(&buf[g][i])?));
            }
        }
    }
    let meta = json!({
        "kind": kind,
        "version": 1,
        "config": config,
        "groups": groups_meta(groups),
        "steps": steps_meta(steps),
    });
    Ok(OptimState { meta, tensors })
}

/// The saved `config` of a state, deserialised.
pub(crate) fn config_from_meta<T: DeserializeOwned>(meta: &Value) -> Result<T> {
    meta.get("config")
        .cloned()
        .and_then(|v| serde_json::from_value(v).ok())
        .ok_or_else(|| Error::StateMismatch("missing or bad `config`".into()))
}

/// The other half of [`buffers_state`]: checks `state` against this
/// optimizer (kind, groups, shape of the step counts), copies the saved
/// buffers into `buffers`, and returns the saved groups and step counts for
/// the caller to adopt, with its config, once everything succeeded.
pub(crate) fn restore_buffers_state(
    state: &OptimState,
    kind: &str,
    groups: &[ParamGroup],
    steps: &[Vec<u64>],
    buffers: &mut [(&str, &mut [Vec<Tensor>])],
) -> Result<(Vec<ParamGroup>, Vec<Vec<u64>>)> {
    let mut groups = groups.to_vec();
    restore_groups(&state.meta, kind, &mut groups)?;
    let mut steps = steps.to_vec();
    restore_steps(&state.meta, "steps", &mut steps)?;
    restore_buffers(state, &groups, buffers)?;
    Ok((groups, steps))
}

/// Copies each saved `<param>.<suffix>` tensor back into its preallocated buffer.
pub(crate) fn restore_buffers(
    state: &OptimState,
    groups: &[ParamGroup],
    buffers: &mut [(&str, &mut [Vec<Tensor>])],
) -> Result<()> {
    let map = TensorMap::new(state);
    for (g, group) in groups.iter().enumerate() {
        for (i, p) in group.params.iter().enumerate() {
            for (suffix, buf) in buffers.iter_mut() {
                map.copy_into(&format!("{}.{suffix}", p.name), &mut buf[g][i])?;
            }
        }
    }
    Ok(())
}
