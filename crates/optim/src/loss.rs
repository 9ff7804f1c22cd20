//! Losses: label-smoothing cross-entropy, and mixup / cutmix batch mixing with the mixed
//! loss.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Beta, Distribution};
use tch::{Kind, Reduction, Tensor};

use crate::{Error, Result};

/// Mean cross-entropy of `logits` `[N, C]` against class indices `targets` `[N]` with
/// label smoothing `eps`: `(1 - eps) * nll + eps * mean_c(-log p_c)`, as
/// `torch.nn.functional.cross_entropy(label_smoothing=eps)`. Differentiable.
pub fn label_smoothing_ce(logits: &Tensor, targets: &Tensor, eps: f64) -> Result<Tensor> {
    if !(0.0..=1.0).contains(&eps) {
        return Err(Error::Config(format!(
            "label smoothing = {eps}: must be in [0, 1]"
        )));
    }
    if logits.dim() != 2 || targets.dim() != 1 || logits.size()[0] != targets.size()[0] {
        return Err(Error::Config(format!(
            "label_smoothing_ce: logits {:?} and targets {:?} must be [N, C] and [N]",
            logits.size(),
            targets.size()
        )));
    }
    let logp = logits.f_log_softmax(-1, Kind::Float)?;
    let nll = logp.f_nll_loss::<Tensor>(targets, None, Reduction::Mean, -100)?;
    if eps == 0.0 {
        return Ok(nll);
    }
    let smooth = logp
        .f_mean_dim(-1, false, Kind::Float)?
        .f_mean(Kind::Float)?
        .f_neg()?;
    Ok(nll
        .f_mul_scalar(1.0 - eps)?
        .f_add(&smooth.f_mul_scalar(eps)?)?)
}

/// Mixup / cutmix settings (timm's `Mixup` names).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MixConfig {
    /// Beta(alpha, alpha) for mixup; 0: off.
    pub mixup_alpha: f64,
    /// Beta(alpha, alpha) for cutmix; 0: off.
    pub cutmix_alpha: f64,
    /// Probability of mixing a batch at all.
    pub prob: f64,
    /// With both on: probability of cutmix rather than mixup.
    pub switch_prob: f64,
}

impl Default for MixConfig {
    fn default() -> Self {
        MixConfig {
            mixup_alpha: 0.8,
            cutmix_alpha: 1.0,
            prob: 1.0,
            switch_prob: 0.5,
        }
    }
}

/// What [`Mixer::mix`] did to a batch.
#[derive(Debug)]
pub struct Mixed {
    /// The mixed images (same shape as the input).
    pub images: Tensor,
    /// Original labels.
    pub labels_a: Tensor,
    /// Labels of the partner images.
    pub labels_b: Tensor,
    /// Weight of `labels_a` (1: not mixed).
    pub lam: f64,
    /// The cutmix box `(y0, y1, x0, x1)` if cutmix was used.
    pub cut_box: Option<(i64, i64, i64, i64)>,
}

impl Mixed {
    /// `lam * ce(labels_a) + (1 - lam) * ce(labels_b)`, both with label smoothing `eps`.
    pub fn loss(&self, logits: &Tensor, eps: f64) -> Result<Tensor> {
        let a = label_smoothing_ce(logits, &self.labels_a, eps)?;
        if self.lam >= 1.0 {
            return Ok(a);
        }
        let b = label_smoothing_ce(logits, &self.labels_b, eps)?;
        Ok(a.f_mul_scalar(self.lam)?
            .f_add(&b.f_mul_scalar(1.0 - self.lam)?)?)
    }
}

/// Deterministic batch mixing: every random choice comes from `(seed, step)`, so a resumed
/// run mixes batch `step` the same way.
#[derive(Debug, Clone)]
pub struct Mixer {
    cfg: MixConfig,
    seed: u64,
}

impl Mixer {
    /// A mixer; errors on negative alphas or probabilities outside [0, 1].
    pub fn new(cfg: MixConfig, seed: u64) -> Result<Mixer> {
        let ok = cfg.mixup_alpha >= 0.0
            && cfg.cutmix_alpha >= 0.0
            && (0.0..=1.0).contains(&cfg.prob)
            && (0.0..=1.0).contains(&cfg.switch_prob);
        if !ok {
            return Err(Error::Config(format!("bad mix config {cfg:?}")));
        }
        Ok(Mixer { cfg, seed })
    }

    /// Mixes `images` `[N, C, H, W]` (any memory format) with a permutation of itself;
    /// `labels` `[N]` are class indices.
    pub fn mix(&self, step: u64, images: &Tensor, labels: &Tensor) -> Result<Mixed> {
        if images.dim() != 4 || labels.dim() != 1 || images.size()[0] != labels.size()[0] {
            return Err(Error::Config(format!(
                "mix: images {:?} / labels {:?} must be [N, C, H, W] / [N]",
                images.size(),
                labels.size()
            )));
        }
        let mut rng =
            ChaCha8Rng::seed_from_u64(self.seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let n = images.size()[0];
        let unmixed = || Mixed {
            images: images.shallow_clone(),
            labels_a: labels.shallow_clone(),
            labels_b: labels.shallow_clone(),
            lam: 1.0,
            cut_box: None,
        };
        let (mu, cu) = (self.cfg.mixup_alpha > 0.0, self.cfg.cutmix_alpha > 0.0);
        if !(mu || cu) || n < 2 || rng.gen::<f64>() >= self.cfg.prob {
            return Ok(unmixed());
        }
        let use_cutmix = cu && (!mu || rng.gen::<f64>() < self.cfg.switch_prob);
        let alpha = if use_cutmix {
            self.cfg.cutmix_alpha
        } else {
            self.cfg.mixup_alpha
        };
        let beta = Beta::new(alpha, alpha)
            .map_err(|e| Error::Config(format!("mix Beta({alpha}): {e}")))?;
        let mut lam: f64 = beta.sample(&mut rng);
        // a random permutation (Fisher-Yates)
        let mut perm: Vec<i64> = (0..n).collect();
        for i in (1..perm.len()).rev() {
            let j = rng.gen_range(0..=i);
            perm.swap(i, j);
        }
        let perm_t = Tensor::f_from_slice(&perm)?.f_to_device(images.device())?;
        let partner = images.f_index_select(0, &perm_t)?;
        let labels_b = labels.f_index_select(0, &perm_t.f_to_device(labels.device())?)?;
        if !use_cutmix {
            let mixed = images.f_lerp(&partner, 1.0 - lam)?;
            return Ok(Mixed {
                images: mixed,
                labels_a: labels.shallow_clone(),
                labels_b,
                lam,
                cut_box: None,
            });
        }
        let (h, w) = (images.size()[2], images.size()[3]);
        let cut = (1.0 - lam).sqrt();
        let (ch, cw) = ((h as f64 * cut) as i64, (w as f64 * cut) as i64);
        let cy = rng.gen_range(0..h);
        let cx = rng.gen_range(0..w);
        let y0 = (cy - ch / 2).clamp(0, h);
        let y1 = (cy + ch / 2).clamp(0, h);
        let x0 = (cx - cw / 2).clamp(0, w);
        let x1 = (cx + cw / 2).clamp(0, w);
        let mixed = images.f_zeros_like()?;
        let mut m = mixed.shallow_clone();
        m.f_copy_(images)?;
        if y1 > y0 && x1 > x0 {
            let mut dst = mixed.f_narrow(2, y0, y1 - y0)?.f_narrow(3, x0, x1 - x0)?;
            dst.f_copy_(&partner.f_narrow(2, y0, y1 - y0)?.f_narrow(3, x0, x1 - x0)?)?;
        }
        lam = 1.0 - ((y1 - y0) * (x1 - x0)) as f64 / (h * w) as f64;
        Ok(Mixed {
            images: mixed,
            labels_a: labels.shallow_clone(),
            labels_b,
            lam,
            cut_box: Some((y0, y1, x0, x1)),
        })
    }
}
