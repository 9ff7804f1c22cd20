//! `Model`: body + head over a `VarStore` path, layer groups, freezing,
//! weight loading and checkpoints.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use tch::nn::{self, ModuleT, VarStore};
use tch::Tensor;

use crate::arch::Arch;
use crate::efficient::{EfficientNet, MobileNetV3};
use crate::error::{Result, ZooError};
use crate::head::{Head, HeadKind};
use crate::layers::Builder;
use crate::resnet::{ResNet, ResNetSpec};
use crate::weights::{self, StateDict};

/// Optional overrides of the regularisation built into the architectures.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ModelOptions {
    /// Dropout before the classifier: torchvision's default for the
    /// architecture's own head (0.2 B0, 0.3 B2, 0.2 MobileNetV3; ResNets have
    /// none), fastai's `ps` (0.5) for the fastai head. `Some(0.0)` disables it.
    pub dropout: Option<f64>,
    /// EfficientNet stochastic depth (torchvision's `stochastic_depth_prob`,
    /// default 0.2). Ignored by the other architectures.
    pub drop_path: Option<f64>,
}

// Built once per model; boxing the variants buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Body {
    ResNet(ResNet),
    EfficientNet(EfficientNet),
    MobileNetV3(MobileNetV3),
}

/// A classifier: an architecture's body and a head, with torchvision
/// variable names under the `VarStore` path it was built on.
#[derive(Debug)]
pub struct Model {
    arch: Arch,
    num_classes: i64,
    head_kind: HeadKind,
    prefix: String,
    body: Body,
    head: Head,
    bn_prefixes: Vec<String>,
}

/// One group of layers for discriminative learning rates: the variables
/// whose names equal a prefix or start with `prefix.`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerGroup {
    /// `body0`, `body1` or `head`.
    pub name: String,
    /// Full variable-name prefixes (including the model's path prefix).
    pub prefixes: Vec<String>,
}

impl LayerGroup {
    /// Whether the variable `name` belongs to this group.
    pub fn contains(&self, name: &str) -> bool {
        self.prefixes.iter().any(|p| has_prefix(name, p))
    }
}

fn has_prefix(name: &str, prefix: &str) -> bool {
    prefix.is_empty()
        || name == prefix
        || (name.starts_with(prefix) && name.as_bytes().get(prefix.len()) == Some(&b'.'))
}

fn is_buffer(name: &str) -> bool {
    name.ends_with(".running_mean")
        || name.ends_with(".running_var")
        || name.ends_with(".num_batches_tracked")
}

/// What [`Model::load_weights`] did, key by key (names relative to the model
/// root, i.e. torchvision names).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadReport {
    /// Keys copied into the model.
    pub loaded: Vec<String>,
    /// Model keys the file does not have (left at their initialisation).
    pub missing: Vec<String>,
    /// File keys the model does not have (ignored).
    pub unexpected: Vec<String>,
    /// Keys present in both with different shapes: (key, model shape, file shape).
    pub mismatched: Vec<(String, Vec<i64>, Vec<i64>)>,
    /// Head keys not loaded because the class count (or the head kind)
    /// differs: the head keeps its fresh initialisation.
    pub head_replaced: Vec<String>,
    /// `num_batches_tracked` buffers in the file (this implementation has no
    /// such buffer; BatchNorm uses a fixed momentum, as torchvision does).
    pub skipped_num_batches_tracked: usize,
    /// Keys renamed from timm/other conventions: (file name, model name).
    pub renamed: Vec<(String, String)>,
}

impl LoadReport {
    /// True when every body key loaded and nothing was left over.
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.mismatched.is_empty()
    }

    /// A one-paragraph human summary naming the problem keys.
    pub fn summary(&self) -> String {
        let mut s = format!("{} loaded", self.loaded.len());
        let list = |v: &[String]| {
            let mut l = v.iter().take(8).cloned().collect::<Vec<_>>().join(", ");
            if v.len() > 8 {
                l.push_str(&format!(", ... ({} more)", v.len() - 8));
            }
            l
        };
        if !self.missing.is_empty() {
            s.push_str(&format!(
                "; {} missing: {}",
                self.missing.len(),
                list(&self.missing)
            ));
        }
        if !self.unexpected.is_empty() {
            s.push_str(&format!(
                "; {} unexpected: {}",
                self.unexpected.len(),
                list(&self.unexpected)
            ));
        }
        if !self.mismatched.is_empty() {
            let m: Vec<String> = self
                .mismatched
                .iter()
                .map(|(k, a, b)| format!("{k} (model {a:?}, file {b:?})"))
                .collect();
            s.push_str(&format!("; {} shape mismatches: {}", m.len(), list(&m)));
        }
        if !self.head_replaced.is_empty() {
            s.push_str(&format!(
                "; head re-initialised: {}",
                list(&self.head_replaced)
            ));
        }
        if !self.renamed.is_empty() {
            s.push_str(&format!(
                "; {} keys renamed from timm names",
                self.renamed.len()
            ));
        }
        s
    }
}

/// How strictly [`Model::load_weights_with`] treats leftovers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// Refuse (and load nothing) when a body key is missing, unexpected or
    /// mis-shaped. Head keys are always allowed to differ.
    pub strict: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self { strict: true }
    }
}

/// What [`identify_state_dict`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identified {
    /// The architecture whose body takes the file's tensors.
    pub arch: Arch,
    /// Rows of the file's final linear layer (`None`: the file has no
    /// classifier, e.g. a headless backbone).
    pub num_classes: Option<i64>,
}

/// Which architecture a state dict is for: the one of [`Arch::ALL`] whose body
/// takes every tensor of the file (after the renames [`Model::load_state_dict`]
/// does: `module.`, timm names) with nothing missing, left over or mis-shaped,
/// and the class count of its torchvision-style linear classifier. `None`
/// when no architecture fits. Builds each candidate on the CPU in turn.
pub fn identify_state_dict(sd: &StateDict) -> Option<Identified> {
    for arch in Arch::ALL {
        let vs = VarStore::new(tch::Device::Cpu);
        let Ok(model) = Model::new(&vs.root(), arch, 2, HeadKind::Linear) else {
            continue;
        };
        let copy: StateDict = sd
            .iter()
            .map(|(k, t)| (k.clone(), t.shallow_clone()))
            .collect();
        let Ok(report) = model.load_state_dict(
            &vs,
            copy,
            Path::new("<identify>"),
            LoadOptions { strict: false },
        ) else {
            continue;
        };
        let head = Head::final_linear(arch, HeadKind::Linear);
        let body_missing = report.missing.iter().any(|k| !has_prefix(k, head));
        if body_missing || !report.unexpected.is_empty() || !report.mismatched.is_empty() {
            continue;
        }
        let weight = format!("{head}.weight");
        let file_key = report
            .renamed
            .iter()
            .find(|(_, to)| *to == weight)
            .map_or(weight.clone(), |(from, _)| from.clone());
        let num_classes = sd
            .iter()
            .find(|(k, _)| k.strip_prefix("module.").unwrap_or(k) == file_key)
            .and_then(|(_, t)| t.size().first().copied());
        return Some(Identified { arch, num_classes });
    }
    None
}

/// The metadata stored in a brigade checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointMeta {
    /// Architecture.
    pub arch: Arch,
    /// Number of classes.
    pub num_classes: i64,
    /// Head.
    pub head: HeadKind,
    /// Every other `__metadata__` entry.
    pub extra: BTreeMap<String, String>,
}

const META_ARCH: &str = "brigade.arch";
const META_CLASSES: &str = "brigade.num_classes";
const META_HEAD: &str = "brigade.head";

/// Reads the metadata of a checkpoint written by [`Model::save_safetensors`].
pub fn read_checkpoint_meta(path: &Path) -> Result<CheckpointMeta> {
    let (_, meta) = weights::read_safetensors(path)?;
    parse_meta(path, meta)
}

fn parse_meta(path: &Path, meta: HashMap<String, String>) -> Result<CheckpointMeta> {
    let get = |k: &str| {
        meta.get(k).cloned().ok_or_else(|| {
            crate::error::bad(
                path,
                format!("not a brigade checkpoint: metadata has no {k}"),
            )
        })
    };
    let arch: Arch = get(META_ARCH)?.parse()?;
    let num_classes: i64 = get(META_CLASSES)?.parse().map_err(|_| {
        crate::error::bad(path, format!("metadata {META_CLASSES} is not an integer"))
    })?;
    let head: HeadKind = get(META_HEAD)?.parse()?;
    let extra = meta
        .into_iter()
        .filter(|(k, _)| ![META_ARCH, META_CLASSES, META_HEAD].contains(&k.as_str()))
        .collect();
    Ok(CheckpointMeta {
        arch,
        num_classes,
        head,
        extra,
    })
}

impl Model {
    /// Builds `arch` with `num_classes` outputs and the given head under `p`
    /// (use `&vs.root()` to get bare torchvision names).
    pub fn new(p: &nn::Path<'_>, arch: Arch, num_classes: i64, head: HeadKind) -> Result<Model> {
        Self::with_options(p, arch, num_classes, head, ModelOptions::default())
    }

    /// [`Model::new`] with regularisation overrides.
    pub fn with_options(
        p: &nn::Path<'_>,
        arch: Arch,
        num_classes: i64,
        head_kind: HeadKind,
        opts: ModelOptions,
    ) -> Result<Model> {
        if num_classes < 1 {
            return Err(ZooError::Config(format!(
                "num_classes must be at least 1, got {num_classes}"
            )));
        }
        for (what, v) in [("dropout", opts.dropout), ("drop_path", opts.drop_path)] {
            if let Some(v) = v {
                if !(0.0..1.0).contains(&v) {
                    return Err(ZooError::Config(format!(
                        "{what} must be in [0, 1), got {v}"
                    )));
                }
            }
        }
        let mut b = Builder::default();
        let resnet = |bottleneck, blocks, deep_stem| ResNetSpec {
            bottleneck,
            blocks,
            deep_stem,
        };
        let dp = opts.drop_path.unwrap_or(0.2);
        let body = match arch {
            Arch::Resnet18 => {
                Body::ResNet(ResNet::new(&mut b, p, resnet(false, [2, 2, 2, 2], false)))
            }
            Arch::Resnet34 => {
                Body::ResNet(ResNet::new(&mut b, p, resnet(false, [3, 4, 6, 3], false)))
            }
            Arch::Resnet50 => {
                Body::ResNet(ResNet::new(&mut b, p, resnet(true, [3, 4, 6, 3], false)))
            }
            Arch::Resnet50d => {
                Body::ResNet(ResNet::new(&mut b, p, resnet(true, [3, 4, 6, 3], true)))
            }
            Arch::EfficientnetB0 => Body::EfficientNet(EfficientNet::new(&mut b, p, 1.0, 1.0, dp)),
            Arch::EfficientnetB2 => Body::EfficientNet(EfficientNet::new(&mut b, p, 1.1, 1.2, dp)),
            Arch::MobilenetV3Large => Body::MobileNetV3(MobileNetV3::new(&mut b, p)),
        };
        let head = Head::new(&mut b, p, arch, head_kind, num_classes, opts.dropout);
        let prefix = p.components().collect::<Vec<_>>().join(".");
        Ok(Model {
            arch,
            num_classes,
            head_kind,
            prefix,
            body,
            head,
            bn_prefixes: b.bn_prefixes,
        })
    }

    /// The architecture.
    pub fn arch(&self) -> Arch {
        self.arch
    }

    /// The number of classes.
    pub fn num_classes(&self) -> i64 {
        self.num_classes
    }

    /// The head kind.
    pub fn head_kind(&self) -> HeadKind {
        self.head_kind
    }

    /// The body only: NCHW features before the global pool
    /// (`arch.num_features()` channels).
    pub fn features_t(&self, xs: &Tensor, train: bool) -> Tensor {
        match &self.body {
            Body::ResNet(m) => m.features_t(xs, train),
            Body::EfficientNet(m) => m.features_t(xs, train),
            Body::MobileNetV3(m) => m.features_t(xs, train),
        }
    }

    fn full(&self, rel: &str) -> String {
        if self.prefix.is_empty() {
            rel.to_string()
        } else if rel.is_empty() {
            self.prefix.clone()
        } else {
            format!("{}.{rel}", self.prefix)
        }
    }

    fn rel<'n>(&self, full: &'n str) -> Option<&'n str> {
        if self.prefix.is_empty() {
            Some(full)
        } else {
            full.strip_prefix(&self.prefix)
                .and_then(|r| r.strip_prefix('.'))
        }
    }

    /// Three groups for discriminative learning rates (fastai's split):
    /// `body0` = stem..layer2 (up to stride 8), `body1` = layer3..layer4
    /// (stride 16 and 32), `head`. EfficientNet: `features.0-3` / `features.4-8`;
    /// MobileNetV3: `features.0-6` / `features.7-16` (the same stride-16 cut).
    pub fn layer_groups(&self) -> Vec<LayerGroup> {
        let feats = |r: std::ops::Range<usize>| {
            r.map(|i| self.full(&format!("features.{i}")))
                .collect::<Vec<_>>()
        };
        let (g0, g1) = match self.arch {
            a if a.is_resnet() => (
                ["conv1", "bn1", "layer1", "layer2"]
                    .map(|s| self.full(s))
                    .to_vec(),
                ["layer3", "layer4"].map(|s| self.full(s)).to_vec(),
            ),
            Arch::MobilenetV3Large => (feats(0..7), feats(7..17)),
            _ => (feats(0..4), feats(4..9)),
        };
        vec![
            LayerGroup {
                name: "body0".into(),
                prefixes: g0,
            },
            LayerGroup {
                name: "body1".into(),
                prefixes: g1,
            },
            LayerGroup {
                name: "head".into(),
                prefixes: vec![self.full(Head::prefix(self.arch, self.head_kind))],
            },
        ]
    }

    /// Index into [`Model::layer_groups`] of a variable, `None` if the name is
    /// not one of this model's.
    pub fn group_of(&self, var_name: &str) -> Option<usize> {
        self.layer_groups()
            .iter()
            .position(|g| g.contains(var_name))
    }

    /// The trainable parameters (BatchNorm running statistics excluded) of
    /// `vs` that belong to this model, split by layer group, names sorted.
    pub fn grouped_parameters(&self, vs: &VarStore) -> Vec<(LayerGroup, Vec<(String, Tensor)>)> {
        let groups = self.layer_groups();
        let mut out: Vec<(LayerGroup, Vec<(String, Tensor)>)> =
            groups.into_iter().map(|g| (g, Vec::new())).collect();
        let mut vars: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(n, _)| !is_buffer(n))
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, t) in vars {
            if let Some(i) = out.iter().position(|(g, _)| g.contains(&name)) {
                out[i].1.push((name, t));
            }
        }
        out
    }

    fn is_bn_param(&self, name: &str) -> bool {
        self.bn_prefixes.iter().any(|p| {
            name.strip_prefix(p.as_str())
                .is_some_and(|r| r == ".weight" || r == ".bias")
        })
    }

    /// fastai's `freeze()`: only the head trains, except that BatchNorm
    /// weights and biases stay trainable everywhere (`train_bn=True`).
    /// Returns the number of parameters (tensors) left trainable.
    pub fn freeze(&self, vs: &VarStore) -> usize {
        let head = self.full(Head::prefix(self.arch, self.head_kind));
        let mut n = 0;
        for (name, t) in vs.variables() {
            if is_buffer(&name) || self.rel(&name).is_none() {
                continue;
            }
            let trainable = has_prefix(&name, &head) || self.is_bn_param(&name);
            let _ = t.set_requires_grad(trainable);
            n += usize::from(trainable);
        }
        n
    }

    /// Makes every parameter of the model trainable again.
    pub fn unfreeze(&self, vs: &VarStore) {
        for (name, t) in vs.variables() {
            if !is_buffer(&name) && self.rel(&name).is_some() {
                let _ = t.set_requires_grad(true);
            }
        }
    }

    /// Loads pretrained weights (torchvision `.pth`, or `.safetensors`) with
    /// strict checking of the body; see [`Model::load_weights_with`].
    pub fn load_weights(&self, vs: &VarStore, path: &Path) -> Result<LoadReport> {
        self.load_weights_with(vs, path, LoadOptions::default())
    }

    /// Loads a weights file. The final classifier is re-initialised (and
    /// reported in `head_replaced`) when its shape differs (class count) or
    /// the head kind is not the architecture's own. With `strict`, any other
    /// missing / unexpected / mis-shaped key is an error naming the keys, and
    /// nothing is copied.
    pub fn load_weights_with(
        &self,
        vs: &VarStore,
        path: &Path,
        opts: LoadOptions,
    ) -> Result<LoadReport> {
        let sd = weights::read_state_dict(path)?;
        self.load_state_dict(vs, sd, path, opts)
    }

    /// [`Model::load_weights_with`] from tensors already in memory (`source`
    /// names them in errors).
    pub fn load_state_dict(
        &self,
        vs: &VarStore,
        sd: StateDict,
        source: &Path,
        opts: LoadOptions,
    ) -> Result<LoadReport> {
        let mut report = LoadReport::default();
        let timm_eff = matches!(self.arch, Arch::EfficientnetB0 | Arch::EfficientnetB2)
            && sd.iter().any(|(k, _)| k == "conv_stem.weight");
        let mut file: Vec<(String, Tensor)> = Vec::with_capacity(sd.len());
        for (k, t) in sd {
            if k.ends_with("num_batches_tracked") {
                report.skipped_num_batches_tracked += 1;
                continue;
            }
            let mut name = k.strip_prefix("module.").unwrap_or(&k).to_string();
            if timm_eff {
                if let Some(m) = crate::timm::effnet_to_torchvision(&name) {
                    report.renamed.push((k.clone(), m.clone()));
                    name = m;
                }
            }
            file.push((name, t));
        }
        let mut file_map: HashMap<String, Tensor> = HashMap::with_capacity(file.len());
        for (k, t) in file {
            file_map.insert(k, t);
        }

        let own_head = Head::prefix(self.arch, HeadKind::Linear);
        let head_prefix = Head::prefix(self.arch, self.head_kind);
        let final_linear = Head::final_linear(self.arch, self.head_kind);
        let mut vars: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter_map(|(n, t)| self.rel(&n).map(|r| (r.to_string(), t)))
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let mut used: HashSet<String> = HashSet::new();
        let mut copies: Vec<(Tensor, Tensor)> = Vec::new();
        for (name, var) in &vars {
            match file_map.get(name) {
                Some(src) => {
                    used.insert(name.clone());
                    if src.size() == var.size() {
                        copies.push((var.shallow_clone(), src.shallow_clone()));
                        report.loaded.push(name.clone());
                    } else if has_prefix(name, final_linear) {
                        report.head_replaced.push(name.clone());
                    } else {
                        report
                            .mismatched
                            .push((name.clone(), var.size(), src.size()));
                    }
                }
                None if has_prefix(name, head_prefix) && self.head_kind != HeadKind::Linear => {
                    report.head_replaced.push(name.clone());
                }
                None => report.missing.push(name.clone()),
            }
        }
        let mut unexpected: Vec<String> = file_map
            .keys()
            .filter(|k| !used.contains(*k))
            .filter(|k| {
                // A torchvision head in the file is expected when we use another head.
                !(self.head_kind != HeadKind::Linear && has_prefix(k, own_head))
            })
            .cloned()
            .collect();
        unexpected.sort();
        report.unexpected = unexpected;

        if report.loaded.is_empty() {
            // timm's EfficientNet-style names that we could not map: say what
            // is supported rather than only listing names.
            let hint = if file_map.contains_key("conv_stem.weight") {
                "; the file uses timm's EfficientNet/MobileNet names (conv_stem, blocks.*): \
                 brigade maps them for timm's efficientnet_b0/b2 only (for mobilenet_v3_large \
                 use torchvision's weights, e.g. `brigade weights fetch mobilenet_v3_large`)"
            } else {
                ""
            };
            return Err(ZooError::Mismatch {
                path: source.to_path_buf(),
                arch: self.arch.to_string(),
                summary: format!(
                    "no key matches (wrong architecture?): {}{hint}",
                    report.summary()
                ),
            });
        }
        if opts.strict && !report.is_clean() {
            return Err(ZooError::Mismatch {
                path: source.to_path_buf(),
                arch: self.arch.to_string(),
                summary: report.summary(),
            });
        }
        tch::no_grad(|| -> Result<()> {
            for (dst, src) in &copies {
                let src = src.f_to_kind(dst.kind())?.f_to_device(dst.device())?;
                dst.shallow_clone().f_copy_(&src)?;
            }
            Ok(())
        })?;
        Ok(report)
    }

    /// Saves every variable of the model (parameters and BatchNorm running
    /// statistics, names relative to the model root) as safetensors with the
    /// metadata `brigade.arch`, `brigade.num_classes`, `brigade.head` plus
    /// `extra`, atomically.
    pub fn save_safetensors(
        &self,
        vs: &VarStore,
        path: &Path,
        extra: &[(&str, &str)],
    ) -> Result<()> {
        let mut tensors: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter_map(|(n, t)| self.rel(&n).map(|r| (r.to_string(), t)))
            .collect();
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        let mut meta: HashMap<String, String> = extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        meta.insert(META_ARCH.into(), self.arch.to_string());
        meta.insert(META_CLASSES.into(), self.num_classes.to_string());
        meta.insert(META_HEAD.into(), self.head_kind.to_string());
        weights::write_safetensors(path, &tensors, meta)
    }

    /// Loads a checkpoint written by [`Model::save_safetensors`]: the
    /// metadata must name this model's architecture, class count and head,
    /// and every variable must be present with the right shape.
    pub fn load_checkpoint(&self, vs: &VarStore, path: &Path) -> Result<CheckpointMeta> {
        let (sd, meta) = weights::read_safetensors(path)?;
        let meta = parse_meta(path, meta)?;
        let checks = [
            (META_ARCH, self.arch.to_string(), meta.arch.to_string()),
            (
                META_CLASSES,
                self.num_classes.to_string(),
                meta.num_classes.to_string(),
            ),
            (META_HEAD, self.head_kind.to_string(), meta.head.to_string()),
        ];
        for (key, expected, found) in checks {
            if expected != found {
                return Err(ZooError::Metadata {
                    path: path.to_path_buf(),
                    key: key.into(),
                    expected,
                    found,
                });
            }
        }
        let report = self.load_state_dict(vs, sd, path, LoadOptions { strict: true })?;
        if !report.head_replaced.is_empty() {
            return Err(ZooError::Mismatch {
                path: path.to_path_buf(),
                arch: self.arch.to_string(),
                summary: report.summary(),
            });
        }
        Ok(meta)
    }

    /// Number of parameters (elements, running statistics excluded).
    pub fn num_parameters(&self, vs: &VarStore) -> i64 {
        vs.variables()
            .iter()
            .filter(|(n, _)| !is_buffer(n) && self.rel(n).is_some())
            .map(|(_, t)| t.numel() as i64)
            .sum()
    }
}

impl Model {
    /// Checks that `xs` is a batch the network can take: a 4-D float tensor
    /// `[N, 3, H, W]` with `N >= 1` (`N >= 2` in train mode with the fastai
    /// head, whose BatchNorm1d needs batch statistics) and `H, W >= 1`.
    pub fn check_input(&self, xs: &Tensor, train: bool) -> Result<()> {
        let bad = |problem: String| ZooError::BadInput {
            arch: self.arch.to_string(),
            problem,
        };
        let size = xs.size();
        if size.len() != 4 {
            return Err(bad(format!(
                "expected a 4-D [N, 3, H, W] batch, got shape {size:?}"
            )));
        }
        if size[1] != 3 {
            return Err(bad(format!(
                "expected 3 channels (RGB) in dimension 1, got shape {size:?}"
            )));
        }
        if size[0] < 1 || size[2] < 1 || size[3] < 1 {
            return Err(bad(format!("empty batch or image: shape {size:?}")));
        }
        if train && size[0] < 2 && self.head_kind != HeadKind::Linear {
            return Err(bad(format!(
                "train mode with the fastai head needs at least 2 images per batch (BatchNorm1d statistics), got shape {size:?}"
            )));
        }
        if !xs.is_floating_point() {
            return Err(bad(format!(
                "expected a floating-point tensor, got {:?}",
                xs.kind()
            )));
        }
        Ok(())
    }

    /// [`ModuleT::forward_t`] after [`Model::check_input`], and with libtorch
    /// failures (e.g. a device mismatch) returned as errors, not panics.
    pub fn try_forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        self.check_input(xs, train)?;
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.forward_t(xs, train)))
            .map_err(|panic| ZooError::BadInput {
                arch: self.arch.to_string(),
                problem: panic_message(panic.as_ref()),
            })
    }
}

/// The text of a caught panic (tch panics with libtorch's message).
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else {
        "libtorch failed".to_string()
    }
}

impl ModuleT for Model {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.head.forward_t(&self.features_t(xs, train), train)
    }
}
