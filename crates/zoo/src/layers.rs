//! Building blocks shared by the architectures.

use tch::nn::{self, ModuleT};
use tch::Tensor;

/// Records the BatchNorm variable prefixes while a model is built, so that
/// `freeze` can keep them trainable (fastai's `train_bn=True`).
#[derive(Debug, Default)]
pub(crate) struct Builder {
    pub bn_prefixes: Vec<String>,
}

pub(crate) const CONV_INIT: nn::Init = nn::Init::Kaiming {
    dist: nn::init::NormalOrUniform::Normal,
    fan: nn::init::FanInOut::FanOut,
    non_linearity: nn::init::NonLinearity::ReLU,
};

impl Builder {
    #[allow(clippy::too_many_arguments)]
    pub fn conv(
        &self,
        p: nn::Path<'_>,
        cin: i64,
        cout: i64,
        k: i64,
        stride: i64,
        groups: i64,
        bias: bool,
    ) -> nn::Conv2D {
        let cfg = nn::ConvConfig {
            stride,
            padding: (k - 1) / 2,
            groups,
            bias,
            ws_init: CONV_INIT,
            bs_init: nn::Init::Const(0.),
            ..Default::default()
        };
        nn::conv2d(p, cin, cout, k, cfg)
    }

    pub fn bn(&mut self, p: nn::Path<'_>, c: i64, eps: f64, momentum: f64) -> nn::BatchNorm {
        self.bn_prefixes
            .push(p.components().collect::<Vec<_>>().join("."));
        let cfg = nn::BatchNormConfig {
            eps,
            momentum,
            ws_init: nn::Init::Const(1.),
            bs_init: nn::Init::Const(0.),
            ..Default::default()
        };
        nn::batch_norm2d(p, c, cfg)
    }

    pub fn bn1d(&mut self, p: nn::Path<'_>, c: i64, momentum: f64) -> nn::BatchNorm {
        self.bn_prefixes
            .push(p.components().collect::<Vec<_>>().join("."));
        let cfg = nn::BatchNormConfig {
            momentum,
            ws_init: nn::Init::Const(1.),
            bs_init: nn::Init::Const(0.),
            ..Default::default()
        };
        nn::batch_norm1d(p, c, cfg)
    }
}

/// Activation functions used by the networks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Act {
    None,
    Relu,
    Silu,
    Hardswish,
}

impl Act {
    pub fn apply(self, xs: Tensor) -> Tensor {
        match self {
            Act::None => xs,
            Act::Relu => xs.relu(),
            Act::Silu => xs.silu(),
            Act::Hardswish => xs.hardswish(),
        }
    }
}

/// torchvision's `Conv2dNormActivation`: `<p>.0` conv (no bias), `<p>.1` BN.
#[derive(Debug)]
pub(crate) struct ConvBnAct {
    conv: nn::Conv2D,
    bn: nn::BatchNorm,
    act: Act,
}

impl ConvBnAct {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        b: &mut Builder,
        p: nn::Path<'_>,
        cin: i64,
        cout: i64,
        k: i64,
        stride: i64,
        groups: i64,
        act: Act,
        bn_eps: f64,
        bn_momentum: f64,
    ) -> Self {
        let conv = b.conv(&p / "0", cin, cout, k, stride, groups, false);
        let bn = b.bn(&p / "1", cout, bn_eps, bn_momentum);
        Self { conv, bn, act }
    }

    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.act
            .apply(xs.apply(&self.conv).apply_t(&self.bn, train))
    }
}

/// torchvision's `SqueezeExcitation`: `fc1`, `fc2` 1x1 convs with bias.
#[derive(Debug)]
pub(crate) struct SqueezeExcite {
    fc1: nn::Conv2D,
    fc2: nn::Conv2D,
    act: Act,
    hard: bool,
}

impl SqueezeExcite {
    pub fn new(b: &Builder, p: nn::Path<'_>, c: i64, squeeze: i64, act: Act, hard: bool) -> Self {
        let fc1 = b.conv(&p / "fc1", c, squeeze, 1, 1, 1, true);
        let fc2 = b.conv(&p / "fc2", squeeze, c, 1, 1, 1, true);
        Self {
            fc1,
            fc2,
            act,
            hard,
        }
    }

    pub fn forward(&self, xs: &Tensor) -> Tensor {
        let s = xs.adaptive_avg_pool2d([1, 1]).apply(&self.fc1);
        let s = self.act.apply(s).apply(&self.fc2);
        let s = if self.hard {
            s.hardsigmoid()
        } else {
            s.sigmoid()
        };
        xs * s
    }
}

/// Stochastic depth, torchvision's `StochasticDepth(p, "row")`.
pub(crate) fn drop_path(xs: Tensor, p: f64, train: bool) -> Tensor {
    if !train || p <= 0.0 {
        return xs;
    }
    let survival = 1.0 - p;
    let n = xs.size()[0];
    let mask = Tensor::empty([n, 1, 1, 1], (xs.kind(), xs.device())).bernoulli_float_(survival);
    xs * (mask / survival)
}

/// A `ModuleT` wrapper for a closure.
pub(crate) fn apply_seq<M: ModuleT>(xs: &Tensor, layers: &[M], train: bool) -> Tensor {
    let mut x = xs.shallow_clone();
    for l in layers {
        x = l.forward_t(&x, train);
    }
    x
}
