//! ResNets with torchvision parameter names (V1.5: the stride sits on the
//! 3x3 conv of the bottleneck), and timm's `resnet50d` (deep stem, average-pool
//! shortcut) with timm's names.

use tch::nn::{self, ModuleT};
use tch::Tensor;

use crate::layers::Builder;

const EPS: f64 = 1e-5;
const MOM: f64 = 0.1;

// Built once per model; boxing the variants buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Stem {
    /// `conv1` 7x7/2 (no bias), `bn1`.
    Plain(nn::Conv2D),
    /// timm deep stem: `conv1.0` 3x3/2 (3→32), `conv1.1` BN, ReLU, `conv1.3`
    /// 3x3 (32→32), `conv1.4` BN, ReLU, `conv1.6` 3x3 (32→64); then `bn1`.
    Deep(
        nn::Conv2D,
        nn::BatchNorm,
        nn::Conv2D,
        nn::BatchNorm,
        nn::Conv2D,
    ),
}

#[derive(Debug)]
struct Downsample {
    /// timm `avg_down`: `downsample.0` is AvgPool2d(2, stride, ceil_mode,
    /// count_include_pad=False) (identity at stride 1), conv at index 1.
    avg_stride: Option<i64>,
    conv: nn::Conv2D,
    bn: nn::BatchNorm,
}

impl Downsample {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let x = match self.avg_stride {
            Some(s) if s > 1 => xs.avg_pool2d([2, 2], [s, s], [0, 0], true, false, None::<i64>),
            _ => xs.shallow_clone(),
        };
        x.apply(&self.conv).apply_t(&self.bn, train)
    }
}

#[derive(Debug)]
struct Block {
    convs: Vec<(nn::Conv2D, nn::BatchNorm)>,
    downsample: Option<Downsample>,
}

impl ModuleT for Block {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut x = xs.shallow_clone();
        let last = self.convs.len() - 1;
        for (i, (c, b)) in self.convs.iter().enumerate() {
            x = x.apply(c).apply_t(b, train);
            if i != last {
                x = x.relu();
            }
        }
        let shortcut = match &self.downsample {
            Some(d) => d.forward_t(xs, train),
            None => xs.shallow_clone(),
        };
        (x + shortcut).relu()
    }
}

/// A ResNet body (everything before the global pool).
#[derive(Debug)]
pub(crate) struct ResNet {
    stem: Stem,
    bn1: nn::BatchNorm,
    layers: Vec<Vec<Block>>,
}

/// Which ResNet.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ResNetSpec {
    pub bottleneck: bool,
    pub blocks: [usize; 4],
    pub deep_stem: bool,
}

impl ResNet {
    pub fn new(b: &mut Builder, p: &nn::Path<'_>, spec: ResNetSpec) -> Self {
        let stem = if spec.deep_stem {
            let c1 = p / "conv1";
            Stem::Deep(
                b.conv(&c1 / "0", 3, 32, 3, 2, 1, false),
                b.bn(&c1 / "1", 32, EPS, MOM),
                b.conv(&c1 / "3", 32, 32, 3, 1, 1, false),
                b.bn(&c1 / "4", 32, EPS, MOM),
                b.conv(&c1 / "6", 32, 64, 3, 1, 1, false),
            )
        } else {
            let cfg = nn::ConvConfig {
                stride: 2,
                padding: 3,
                bias: false,
                ws_init: crate::layers::CONV_INIT,
                ..Default::default()
            };
            Stem::Plain(nn::conv2d(p / "conv1", 3, 64, 7, cfg))
        };
        let bn1 = b.bn(p / "bn1", 64, EPS, MOM);
        let expansion = if spec.bottleneck { 4 } else { 1 };
        let mut inplanes = 64;
        let mut layers = Vec::new();
        for (li, &n) in spec.blocks.iter().enumerate() {
            let planes = 64 << li;
            let stage_stride = if li == 0 { 1 } else { 2 };
            let lp = p / format!("layer{}", li + 1);
            let mut blocks = Vec::new();
            for bi in 0..n {
                let bp = &lp / bi;
                let stride = if bi == 0 { stage_stride } else { 1 };
                let out = planes * expansion;
                let convs = if spec.bottleneck {
                    vec![
                        (
                            b.conv(&bp / "conv1", inplanes, planes, 1, 1, 1, false),
                            b.bn(&bp / "bn1", planes, EPS, MOM),
                        ),
                        (
                            b.conv(&bp / "conv2", planes, planes, 3, stride, 1, false),
                            b.bn(&bp / "bn2", planes, EPS, MOM),
                        ),
                        (
                            b.conv(&bp / "conv3", planes, out, 1, 1, 1, false),
                            b.bn(&bp / "bn3", out, EPS, MOM),
                        ),
                    ]
                } else {
                    vec![
                        (
                            b.conv(&bp / "conv1", inplanes, planes, 3, stride, 1, false),
                            b.bn(&bp / "bn1", planes, EPS, MOM),
                        ),
                        (
                            b.conv(&bp / "conv2", planes, planes, 3, 1, 1, false),
                            b.bn(&bp / "bn2", planes, EPS, MOM),
                        ),
                    ]
                };
                let downsample = (stride != 1 || inplanes != out).then(|| {
                    let dp = &bp / "downsample";
                    if spec.deep_stem {
                        Downsample {
                            avg_stride: Some(stride),
                            conv: b.conv(&dp / "1", inplanes, out, 1, 1, 1, false),
                            bn: b.bn(&dp / "2", out, EPS, MOM),
                        }
                    } else {
                        Downsample {
                            avg_stride: None,
                            conv: b.conv(&dp / "0", inplanes, out, 1, stride, 1, false),
                            bn: b.bn(&dp / "1", out, EPS, MOM),
                        }
                    }
                });
                blocks.push(Block { convs, downsample });
                inplanes = out;
            }
            layers.push(blocks);
        }
        Self { stem, bn1, layers }
    }

    pub fn features_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let x = match &self.stem {
            Stem::Plain(c) => xs.apply(c),
            Stem::Deep(c0, b1, c3, b4, c6) => xs
                .apply(c0)
                .apply_t(b1, train)
                .relu()
                .apply(c3)
                .apply_t(b4, train)
                .relu()
                .apply(c6),
        };
        let mut x =
            x.apply_t(&self.bn1, train)
                .relu()
                .max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        for layer in &self.layers {
            x = crate::layers::apply_seq(&x, layer, train);
        }
        x
    }
}
