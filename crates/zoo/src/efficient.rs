//! EfficientNet-B0/B2 and MobileNetV3-Large with torchvision parameter names.

use tch::nn;
use tch::Tensor;

use crate::layers::{drop_path, Act, Builder, ConvBnAct, SqueezeExcite};

/// torchvision's `_make_divisible(v, 8)`.
pub(crate) fn make_divisible(v: f64, divisor: i64) -> i64 {
    let d = divisor as f64;
    let mut new_v = divisor.max(((v + d / 2.0) as i64) / divisor * divisor);
    if (new_v as f64) < 0.9 * v {
        new_v += divisor;
    }
    new_v
}

#[derive(Debug)]
struct MbConv {
    expand: Option<ConvBnAct>,
    dw: ConvBnAct,
    se: SqueezeExcite,
    project: ConvBnAct,
    residual: bool,
    drop_path: f64,
}

/// An EfficientNet (V1) body: `features.0` ..= `features.8`.
#[derive(Debug)]
pub(crate) struct EfficientNet {
    stem: ConvBnAct,
    stages: Vec<Vec<MbConv>>,
    head: ConvBnAct,
}

impl EfficientNet {
    /// `drop_path` is torchvision's `stochastic_depth_prob` (0.2), scaled
    /// linearly with the block index.
    pub fn new(b: &mut Builder, p: &nn::Path<'_>, width: f64, depth: f64, drop_path: f64) -> Self {
        const EPS: f64 = 1e-5;
        const MOM: f64 = 0.1;
        // expand, kernel, stride, in, out, layers (EfficientNet paper, table 1)
        let setting: [(i64, i64, i64, i64, i64, i64); 7] = [
            (1, 3, 1, 32, 16, 1),
            (6, 3, 2, 16, 24, 2),
            (6, 5, 2, 24, 40, 2),
            (6, 3, 2, 40, 80, 3),
            (6, 5, 1, 80, 112, 3),
            (6, 5, 2, 112, 192, 4),
            (6, 3, 1, 192, 320, 1),
        ];
        let ch = |c: i64| make_divisible(c as f64 * width, 8);
        let layers = |n: i64| (n as f64 * depth).ceil() as i64;
        let f = p / "features";
        let stem_out = ch(32);
        let stem = ConvBnAct::new(b, &f / 0, 3, stem_out, 3, 2, 1, Act::Silu, EPS, MOM);
        let total: i64 = setting.iter().map(|s| layers(s.5)).sum();
        let mut block_id = 0;
        let mut stages = Vec::new();
        let mut last_out = stem_out;
        for (si, &(e, k, s, cin, cout, n)) in setting.iter().enumerate() {
            let sp = &f / (si + 1);
            let mut stage = Vec::new();
            for bi in 0..layers(n) {
                let (cin, stride) = if bi == 0 { (ch(cin), s) } else { (ch(cout), 1) };
                let cout = ch(cout);
                let exp = make_divisible(cin as f64 * e as f64, 8);
                let bp = &sp / bi / "block";
                let mut idx = 0;
                let expand = (exp != cin).then(|| {
                    idx += 1;
                    ConvBnAct::new(b, &bp / 0, cin, exp, 1, 1, 1, Act::Silu, EPS, MOM)
                });
                let dw =
                    ConvBnAct::new(b, &bp / idx, exp, exp, k, stride, exp, Act::Silu, EPS, MOM);
                let se =
                    SqueezeExcite::new(b, &bp / (idx + 1), exp, (cin / 4).max(1), Act::Silu, false);
                let project =
                    ConvBnAct::new(b, &bp / (idx + 2), exp, cout, 1, 1, 1, Act::None, EPS, MOM);
                let dp = drop_path * block_id as f64 / total as f64;
                stage.push(MbConv {
                    expand,
                    dw,
                    se,
                    project,
                    residual: stride == 1 && cin == cout,
                    drop_path: dp,
                });
                block_id += 1;
                last_out = cout;
            }
            stages.push(stage);
        }
        let head = ConvBnAct::new(
            b,
            &f / 8,
            last_out,
            4 * last_out,
            1,
            1,
            1,
            Act::Silu,
            EPS,
            MOM,
        );
        Self { stem, stages, head }
    }

    pub fn features_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut x = self.stem.forward_t(xs, train);
        for stage in &self.stages {
            for blk in stage {
                let mut y = match &blk.expand {
                    Some(e) => e.forward_t(&x, train),
                    None => x.shallow_clone(),
                };
                y = blk.dw.forward_t(&y, train);
                y = blk.se.forward(&y);
                y = blk.project.forward_t(&y, train);
                x = if blk.residual {
                    drop_path(y, blk.drop_path, train) + &x
                } else {
                    y
                };
            }
        }
        self.head.forward_t(&x, train)
    }
}

#[derive(Debug)]
struct InvertedResidual {
    expand: Option<ConvBnAct>,
    dw: ConvBnAct,
    se: Option<SqueezeExcite>,
    project: ConvBnAct,
    residual: bool,
}

/// A MobileNetV3-Large body: `features.0` ..= `features.16`.
#[derive(Debug)]
pub(crate) struct MobileNetV3 {
    stem: ConvBnAct,
    blocks: Vec<InvertedResidual>,
    head: ConvBnAct,
}

impl MobileNetV3 {
    pub fn new(b: &mut Builder, p: &nn::Path<'_>) -> Self {
        const EPS: f64 = 1e-3;
        const MOM: f64 = 0.01;
        // in, kernel, expanded, out, SE, hardswish, stride
        let setting: [(i64, i64, i64, i64, bool, bool, i64); 15] = [
            (16, 3, 16, 16, false, false, 1),
            (16, 3, 64, 24, false, false, 2),
            (24, 3, 72, 24, false, false, 1),
            (24, 5, 72, 40, true, false, 2),
            (40, 5, 120, 40, true, false, 1),
            (40, 5, 120, 40, true, false, 1),
            (40, 3, 240, 80, false, true, 2),
            (80, 3, 200, 80, false, true, 1),
            (80, 3, 184, 80, false, true, 1),
            (80, 3, 184, 80, false, true, 1),
            (80, 3, 480, 112, true, true, 1),
            (112, 3, 672, 112, true, true, 1),
            (112, 5, 672, 160, true, true, 2),
            (160, 5, 960, 160, true, true, 1),
            (160, 5, 960, 160, true, true, 1),
        ];
        let f = p / "features";
        let stem = ConvBnAct::new(b, &f / 0, 3, 16, 3, 2, 1, Act::Hardswish, EPS, MOM);
        let mut blocks = Vec::new();
        for (i, &(cin, k, exp, cout, use_se, hs, stride)) in setting.iter().enumerate() {
            let act = if hs { Act::Hardswish } else { Act::Relu };
            let bp = &f / (i + 1) / "block";
            let mut idx = 0;
            let expand = (exp != cin).then(|| {
                idx += 1;
                ConvBnAct::new(b, &bp / 0, cin, exp, 1, 1, 1, act, EPS, MOM)
            });
            let dw = ConvBnAct::new(b, &bp / idx, exp, exp, k, stride, exp, act, EPS, MOM);
            idx += 1;
            let se = use_se.then(|| {
                let s = SqueezeExcite::new(
                    b,
                    &bp / idx,
                    exp,
                    make_divisible((exp / 4) as f64, 8),
                    Act::Relu,
                    true,
                );
                idx += 1;
                s
            });
            let project = ConvBnAct::new(b, &bp / idx, exp, cout, 1, 1, 1, Act::None, EPS, MOM);
            blocks.push(InvertedResidual {
                expand,
                dw,
                se,
                project,
                residual: stride == 1 && cin == cout,
            });
        }
        let head = ConvBnAct::new(b, &f / 16, 160, 960, 1, 1, 1, Act::Hardswish, EPS, MOM);
        Self { stem, blocks, head }
    }

    pub fn features_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut x = self.stem.forward_t(xs, train);
        for blk in &self.blocks {
            let mut y = match &blk.expand {
                Some(e) => e.forward_t(&x, train),
                None => x.shallow_clone(),
            };
            y = blk.dw.forward_t(&y, train);
            if let Some(se) = &blk.se {
                y = se.forward(&y);
            }
            y = blk.project.forward_t(&y, train);
            x = if blk.residual { y + &x } else { y };
        }
        self.head.forward_t(&x, train)
    }
}
