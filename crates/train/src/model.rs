//! Models as the loop sees them: a [`Net`] (forward, layer groups as name
//! prefixes), the built-in `tiny_cnn` for CPU demos and tests, and
//! freeze/unfreeze of everything but the head.

use tch::nn::{self, ModuleT};
use tch::Tensor;

/// Model construction failures.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("unknown architecture `{0}` (known: {1})")]
    UnknownArch(String, String),
    #[error("model: {0}")]
    Other(String),
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    #[error(transparent)]
    Zoo(#[from] brigade_zoo::ZooError),
    #[error("pretrained weights {name}: download to {}: {message}", path.display())]
    Download {
        name: String,
        path: std::path::PathBuf,
        message: String,
    },
}

/// What the loop needs from a model.
pub trait Net {
    /// Logits `[N, classes]` from normalised images `[N, 3, H, W]`.
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor;
    /// Layer groups for discriminative learning rates, as variable-name
    /// prefixes (`layer1` covers `layer1.*`), body first, head last; every
    /// parameter must fall in one.
    fn layer_groups(&self) -> Vec<Vec<String>>;
    /// Freezes everything but the head (BatchNorm stays trainable), or unfreezes.
    fn set_frozen(&self, vs: &nn::VarStore, frozen: bool) {
        set_frozen(vs, &self.layer_groups(), frozen);
    }
    /// Loads pretrained weights from a file; returns a one-line report.
    fn load_pretrained(
        &self,
        _vs: &nn::VarStore,
        path: &std::path::Path,
    ) -> Result<String, ModelError> {
        Err(ModelError::Other(format!(
            "{}: this architecture has no pretrained weights loader",
            path.display()
        )))
    }
}

/// Architectures built into the trainer (the zoo adds torchvision's).
pub const BUILTIN: &[&str] = &["tiny_cnn"];

fn conv_bn(p: &nn::Path<'_>, cin: i64, cout: i64, stride: i64) -> (nn::Conv2D, nn::BatchNorm) {
    let cfg = nn::ConvConfig {
        stride,
        padding: 1,
        bias: false,
        ..Default::default()
    };
    (
        nn::conv2d(p / "conv", cin, cout, 3, cfg),
        nn::batch_norm2d(p / "bn", cout, Default::default()),
    )
}

/// A small plain CNN: a stride-2 stem and three stages of (stride-2 conv,
/// conv), each conv 3x3 + BatchNorm + ReLU, channels w, 2w, 4w, 8w, global
/// average pool, dropout-free linear head. About 1.2 M parameters at w = 32;
/// at 64 px a forward is ~40 MFLOP per image, so it trains on CPU in minutes.
pub struct TinyCnn {
    layers: Vec<(String, nn::Conv2D, nn::BatchNorm)>,
    fc: nn::Linear,
}

impl TinyCnn {
    pub fn new(p: &nn::Path<'_>, width: i64, num_classes: i64) -> TinyCnn {
        let w = width;
        let spec: [(&str, i64, i64, i64); 7] = [
            ("stem", 3, w, 2),
            ("layer1.0", w, 2 * w, 2),
            ("layer1.1", 2 * w, 2 * w, 1),
            ("layer2.0", 2 * w, 4 * w, 2),
            ("layer2.1", 4 * w, 4 * w, 1),
            ("layer3.0", 4 * w, 8 * w, 2),
            ("layer3.1", 8 * w, 8 * w, 1),
        ];
        let layers = spec
            .iter()
            .map(|(name, cin, cout, s)| {
                let mut q = p.clone();
                for part in name.split('.') {
                    q = q / part;
                }
                let (c, b) = conv_bn(&q, *cin, *cout, *s);
                (name.to_string(), c, b)
            })
            .collect();
        let fc = nn::linear(p / "fc", 8 * w, num_classes, Default::default());
        TinyCnn { layers, fc }
    }
}

impl Net for TinyCnn {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut x = xs.shallow_clone();
        for (_, c, b) in &self.layers {
            x = x.apply(c).apply_t(b, train).relu();
        }
        x.adaptive_avg_pool2d([1, 1]).flatten(1, -1).apply(&self.fc)
    }

    fn layer_groups(&self) -> Vec<Vec<String>> {
        vec![
            vec!["stem".into(), "layer1".into()],
            vec!["layer2".into(), "layer3".into()],
            vec!["fc".into()],
        ]
    }
}

/// A `brigade-zoo` model (torchvision names, layer groups, freeze, weights).
pub struct ZooNet {
    pub model: brigade_zoo::Model,
}

impl Net for ZooNet {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.model.forward_t(xs, train)
    }
    fn layer_groups(&self) -> Vec<Vec<String>> {
        self.model
            .layer_groups()
            .into_iter()
            .map(|g| g.prefixes)
            .collect()
    }
    fn set_frozen(&self, vs: &nn::VarStore, frozen: bool) {
        if frozen {
            self.model.freeze(vs);
        } else {
            self.model.unfreeze(vs);
        }
    }
    fn load_pretrained(
        &self,
        vs: &nn::VarStore,
        path: &std::path::Path,
    ) -> Result<String, ModelError> {
        Ok(self.model.load_weights(vs, path)?.summary())
    }
}

fn zoo_head(head: crate::config::HeadChoice) -> brigade_zoo::HeadKind {
    match head {
        crate::config::HeadChoice::Linear => brigade_zoo::HeadKind::Linear,
        crate::config::HeadChoice::Fastai => brigade_zoo::HeadKind::Fastai { bn_final: false },
    }
}

/// Builds a model by name under `p`: `tiny_cnn` or any `brigade-zoo` architecture.
pub fn build(
    p: &nn::Path<'_>,
    arch: &str,
    width: u32,
    num_classes: u32,
    head: crate::config::HeadChoice,
) -> Result<Box<dyn Net>, ModelError> {
    match arch {
        "tiny_cnn" => Ok(Box::new(TinyCnn::new(p, width as i64, num_classes as i64))),
        other => {
            let a: brigade_zoo::Arch = other.parse().map_err(|_| {
                ModelError::UnknownArch(
                    other.to_string(),
                    format!("{}, resnet18, resnet34, resnet50, resnet50d, efficientnet_b0, efficientnet_b2, mobilenet_v3_large", BUILTIN.join(", ")),
                )
            })?;
            let model = brigade_zoo::Model::new(p, a, i64::from(num_classes), zoo_head(head))?;
            Ok(Box::new(ZooNet { model }))
        }
    }
}

/// Resolves pretrained weights (a known name or a file path), downloading a
/// known file into the weights cache when it is missing.
pub fn resolve_pretrained(name_or_path: &str) -> Result<std::path::PathBuf, ModelError> {
    match brigade_zoo::resolve_weights(name_or_path) {
        Ok(p) => Ok(p),
        Err(brigade_zoo::ZooError::NotDownloaded { name, path }) => {
            let known = brigade_zoo::find_known(&name).ok_or_else(|| ModelError::Download {
                name: name.clone(),
                path: path.clone(),
                message: "not a known weights name".into(),
            })?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| ModelError::Download {
                    name: name.clone(),
                    path: path.clone(),
                    message: e.to_string(),
                })?;
            }
            let expected = brigade_fetch::Expected {
                sha256_prefix: known.sha256_prefix.map(str::to_string),
                ..Default::default()
            };
            brigade_fetch::download(known.url, &path, &expected, brigade_fetch::Progress::Auto)
                .map_err(|e| ModelError::Download {
                    name,
                    path: path.clone(),
                    message: e.to_string(),
                })
        }
        Err(e) => Err(e.into()),
    }
}

/// Rebuilds a model from a checkpoint folder (`meta.json` + `model.safetensors`).
pub fn from_checkpoint(
    dir: &std::path::Path,
    device: tch::Device,
) -> Result<(nn::VarStore, Box<dyn Net>, crate::checkpoint::ModelMeta), ModelError> {
    let meta: crate::checkpoint::ModelMeta = crate::checkpoint::read_json(&dir.join("meta.json"))?;
    let mut vs = nn::VarStore::new(device);
    let net = build(
        &vs.root(),
        &meta.arch,
        meta.width,
        meta.num_classes,
        meta.head,
    )?;
    crate::checkpoint::load_vars(&mut vs, &dir.join("model.safetensors"))?;
    Ok((vs, net, meta))
}

/// Freezes (or unfreezes) every variable outside the last layer group.
/// As fastai's `train_bn = True`, 1-d tensors (BatchNorm weights and biases)
/// stay trainable. Variables created non-trainable (running stats) are never touched.
pub fn set_frozen(vs: &nn::VarStore, groups: &[Vec<String>], frozen: bool) {
    let head: &[String] = groups.last().map_or(&[], |g| g.as_slice());
    let trainable: std::collections::HashSet<usize> = vs
        .trainable_variables()
        .iter()
        .map(|t| t.data_ptr() as usize)
        .collect();
    for (name, t) in vs.variables() {
        if !trainable.contains(&(t.data_ptr() as usize)) {
            continue;
        }
        let in_head = head.iter().any(|p| brigade_optim::has_prefix(&name, p));
        let train = !frozen || in_head || t.dim() <= 1;
        let _ = t.set_requires_grad(train);
    }
}

/// Counts `(trainable now, total)` parameters.
pub fn count_params(vs: &nn::VarStore) -> (i64, i64) {
    let mut on = 0;
    let mut all = 0;
    for t in vs.trainable_variables() {
        let n = t.numel() as i64;
        all += n;
        if t.requires_grad() {
            on += n;
        }
    }
    (on, all)
}

/// Adapter so any `ModuleT` with explicit groups is a [`Net`].
pub struct ModuleNet<M: ModuleT> {
    pub module: M,
    pub groups: Vec<Vec<String>>,
}

impl<M: ModuleT> Net for ModuleNet<M> {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.module.forward_t(xs, train)
    }
    fn layer_groups(&self) -> Vec<Vec<String>> {
        self.groups.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_cnn_shapes_groups_freeze() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let net = build(
            &vs.root(),
            "tiny_cnn",
            8,
            5,
            crate::config::HeadChoice::Linear,
        )
        .unwrap();
        let y = net.forward_t(&Tensor::zeros([2, 3, 32, 32], tch::kind::FLOAT_CPU), false);
        assert_eq!(y.size(), vec![2, 5]);
        let groups = net.layer_groups();
        let (on, all) = count_params(&vs);
        assert_eq!(on, all);
        set_frozen(&vs, &groups, true);
        let vars = vs.variables();
        assert!(!vars["stem.conv.weight"].requires_grad());
        assert!(vars["stem.bn.weight"].requires_grad(), "BN stays trainable");
        assert!(vars["fc.weight"].requires_grad());
        let (on_frozen, _) = count_params(&vs);
        assert!(on_frozen < all);
        set_frozen(&vs, &groups, false);
        assert_eq!(count_params(&vs).0, all);
        assert!(build(&vs.root(), "nope", 8, 5, crate::config::HeadChoice::Linear).is_err());
        let vs2 = nn::VarStore::new(tch::Device::Cpu);
        let r18 = build(
            &vs2.root(),
            "resnet18",
            8,
            3,
            crate::config::HeadChoice::Fastai,
        )
        .unwrap();
        assert_eq!(
            r18.forward_t(&Tensor::zeros([2, 3, 32, 32], tch::kind::FLOAT_CPU), false)
                .size(),
            vec![2, 3]
        );
        let g = r18.layer_groups();
        assert_eq!(g.len(), 3);
        // every parameter falls in a group: the optimizer can be built
        let s = crate::config::StageConfig::default();
        assert!(crate::opt::make_optimizer(&vs2, &s, &g).is_ok());
        r18.set_frozen(&vs2, true);
        assert!(!vs2.variables()["layer1.0.conv1.weight"].requires_grad());
        assert!(vs2.variables()["layer1.0.bn1.weight"].requires_grad());
    }
}
