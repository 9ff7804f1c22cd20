//! Classifier heads.

use std::fmt;
use std::str::FromStr;

use tch::nn;
use tch::Tensor;

use crate::arch::Arch;
use crate::error::ZooError;
use crate::layers::Builder;

/// Which head sits on the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HeadKind {
    /// The architecture's own torchvision classifier, its last linear sized to
    /// the class count: `fc` (ResNets), `classifier.1` after dropout
    /// (EfficientNet), `classifier.0` → Hardswish → dropout → `classifier.3`
    /// (MobileNetV3). Loads a torchvision checkpoint 1:1.
    #[default]
    Linear,
    /// fastai v1 `cnn_learner` head under `head.*`: AdaptiveConcatPool2d
    /// (max ‖ avg) → Flatten → `head.2` BN1d → Dropout(ps/2) → `head.4`
    /// Linear(2·nf, 512) → ReLU → `head.6` BN1d → Dropout(ps) → `head.8`
    /// Linear(512, C) [→ `head.9` BN1d(momentum 0.01) if `bn_final`]. Linears are
    /// Kaiming-normal initialised with zero bias, as fastai does.
    Fastai {
        /// Append a final BatchNorm1d on the logits.
        bn_final: bool,
    },
}

impl HeadKind {
    /// The name used in checkpoints and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            HeadKind::Linear => "linear",
            HeadKind::Fastai { bn_final: false } => "fastai",
            HeadKind::Fastai { bn_final: true } => "fastai-bn-final",
        }
    }
}

impl fmt::Display for HeadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for HeadKind {
    type Err = ZooError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "linear" => Ok(HeadKind::Linear),
            "fastai" => Ok(HeadKind::Fastai { bn_final: false }),
            "fastai-bn-final" => Ok(HeadKind::Fastai { bn_final: true }),
            _ => Err(ZooError::UnknownHead(s.to_string())),
        }
    }
}

fn torch_linear_init(fan_in: i64) -> nn::LinearConfig {
    let b = 1.0 / (fan_in as f64).sqrt();
    nn::LinearConfig {
        ws_init: nn::Init::Uniform { lo: -b, up: b },
        bs_init: Some(nn::Init::Uniform { lo: -b, up: b }),
        bias: true,
    }
}

// Built once per model; boxing the variants buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Head {
    Fc(nn::Linear),
    Effnet {
        dropout: f64,
        fc: nn::Linear,
    },
    Mobilenet {
        fc0: nn::Linear,
        dropout: f64,
        fc3: nn::Linear,
    },
    Fastai {
        bn2: nn::BatchNorm,
        fc4: nn::Linear,
        bn6: nn::BatchNorm,
        fc8: nn::Linear,
        bn9: Option<nn::BatchNorm>,
        ps: f64,
    },
}

impl Head {
    /// The variable-name prefix of the head (relative to the model root).
    pub fn prefix(arch: Arch, kind: HeadKind) -> &'static str {
        match (kind, arch.is_resnet()) {
            (HeadKind::Fastai { .. }, _) => "head",
            (HeadKind::Linear, true) => "fc",
            (HeadKind::Linear, false) => "classifier",
        }
    }

    /// The prefix of the final (class-count sized) linear.
    pub fn final_linear(arch: Arch, kind: HeadKind) -> &'static str {
        match (kind, arch) {
            (HeadKind::Fastai { .. }, _) => "head.8",
            (HeadKind::Linear, Arch::EfficientnetB0 | Arch::EfficientnetB2) => "classifier.1",
            (HeadKind::Linear, Arch::MobilenetV3Large) => "classifier.3",
            (HeadKind::Linear, _) => "fc",
        }
    }

    pub fn new(
        b: &mut Builder,
        p: &nn::Path<'_>,
        arch: Arch,
        kind: HeadKind,
        n: i64,
        dropout: Option<f64>,
    ) -> Self {
        let nf = arch.num_features();
        match kind {
            HeadKind::Linear => match arch {
                Arch::EfficientnetB0 | Arch::EfficientnetB2 => {
                    let d = if arch == Arch::EfficientnetB0 {
                        0.2
                    } else {
                        0.3
                    };
                    Head::Effnet {
                        dropout: dropout.unwrap_or(d),
                        fc: nn::linear(p / "classifier" / 1, nf, n, torch_linear_init(nf)),
                    }
                }
                Arch::MobilenetV3Large => {
                    let normal = nn::LinearConfig {
                        ws_init: nn::Init::Randn {
                            mean: 0.0,
                            stdev: 0.01,
                        },
                        bs_init: Some(nn::Init::Const(0.0)),
                        bias: true,
                    };
                    Head::Mobilenet {
                        fc0: nn::linear(p / "classifier" / 0, nf, 1280, normal),
                        dropout: dropout.unwrap_or(0.2),
                        fc3: nn::linear(p / "classifier" / 3, 1280, n, normal),
                    }
                }
                _ => Head::Fc(nn::linear(p / "fc", nf, n, torch_linear_init(nf))),
            },
            HeadKind::Fastai { bn_final } => {
                let h = p / "head";
                let kaiming = nn::LinearConfig {
                    ws_init: nn::init::DEFAULT_KAIMING_NORMAL,
                    bs_init: Some(nn::Init::Const(0.0)),
                    bias: true,
                };
                let bn2 = b.bn1d(&h / 2, 2 * nf, 0.1);
                let fc4 = nn::linear(&h / 4, 2 * nf, 512, kaiming);
                let bn6 = b.bn1d(&h / 6, 512, 0.1);
                let fc8 = nn::linear(&h / 8, 512, n, kaiming);
                let bn9 = bn_final.then(|| b.bn1d(&h / 9, n, 0.01));
                Head::Fastai {
                    bn2,
                    fc4,
                    bn6,
                    fc8,
                    bn9,
                    ps: dropout.unwrap_or(0.5),
                }
            }
        }
    }

    pub fn forward_t(&self, features: &Tensor, train: bool) -> Tensor {
        let pooled = || features.adaptive_avg_pool2d([1, 1]).flatten(1, -1);
        match self {
            Head::Fc(fc) => pooled().apply(fc),
            Head::Effnet { dropout, fc } => pooled().dropout(*dropout, train).apply(fc),
            Head::Mobilenet { fc0, dropout, fc3 } => pooled()
                .apply(fc0)
                .hardswish()
                .dropout(*dropout, train)
                .apply(fc3),
            Head::Fastai {
                bn2,
                fc4,
                bn6,
                fc8,
                bn9,
                ps,
            } => {
                let max = features.adaptive_max_pool2d([1, 1]).0;
                let avg = features.adaptive_avg_pool2d([1, 1]);
                let x = Tensor::cat(&[max, avg], 1).flatten(1, -1);
                let x = x
                    .apply_t(bn2, train)
                    .dropout(ps / 2.0, train)
                    .apply(fc4)
                    .relu();
                let x = x.apply_t(bn6, train).dropout(*ps, train).apply(fc8);
                match bn9 {
                    Some(bn) => x.apply_t(bn, train),
                    None => x,
                }
            }
        }
    }
}
