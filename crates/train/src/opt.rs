//! A recipe stage → `brigade-optim` objects: the optimizer over the model's
//! layer groups, the per-batch schedule and the per-group peak learning rates.

use brigade_optim::schedule::{FlatCos, OneCycle, Schedule};
use brigade_optim::{
    groups_from_prefixes, ranger, AdamW, AdamWConfig, Optimizer, RangerConfig, Sgd, SgdConfig,
};
use tch::nn::VarStore;

use crate::config::{OptimizerChoice, ScheduleChoice, StageConfig};

pub use brigade_optim::Error as OptError;

/// Builds a stage's optimizer over `groups` (name prefixes, body first, head
/// last). Weight decay is off for 1-d tensors (BatchNorm, biases); frozen
/// parameters are skipped at step time, so one optimizer serves a stage.
pub fn make_optimizer(
    vs: &VarStore,
    stage: &StageConfig,
    groups: &[Vec<String>],
) -> Result<Box<dyn Optimizer>, OptError> {
    let specs = groups_from_prefixes(vs, groups)?;
    Ok(match stage.optimizer {
        OptimizerChoice::Adamw => Box::new(AdamW::new(
            specs,
            AdamWConfig {
                lr: stage.lr,
                betas: (stage.momentum, 0.99),
                eps: 1e-6,
                weight_decay: stage.weight_decay,
            },
        )?),
        OptimizerChoice::Ranger => Box::new(ranger(
            specs,
            RangerConfig {
                lr: stage.lr,
                betas: (stage.momentum, 0.999),
                weight_decay: stage.weight_decay,
                ..RangerConfig::default()
            },
        )?),
        OptimizerChoice::Sgd => Box::new(Sgd::new(
            specs,
            SgdConfig {
                lr: stage.lr,
                momentum: stage.momentum,
                weight_decay: stage.weight_decay,
                ..SgdConfig::default()
            },
        )?),
    })
}

/// The stage's per-batch schedule (peak = `stage.lr`).
pub fn make_schedule(stage: &StageConfig) -> Box<dyn Schedule> {
    let m = stage.momentum;
    match stage.schedule {
        ScheduleChoice::OneCycle => Box::new(OneCycle {
            pct_start: stage.pct_start,
            moms: Some((m, (m - 0.1).max(0.0), m)),
            ..OneCycle::new(stage.lr)
        }),
        ScheduleChoice::FlatCos => Box::new(FlatCos {
            pct_start: stage.pct_start,
            mom: Some(m),
            ..FlatCos::new(stage.lr)
        }),
        ScheduleChoice::Constant => Box::new(FlatCos {
            pct_start: 1.0,
            mom: Some(m),
            ..FlatCos::new(stage.lr)
        }),
    }
}

/// Peak learning rate of each of `n` layer groups: geometric from `lr_lo` to
/// `lr` (fastai `slice(lr_lo, lr)`), or `lr` everywhere when `lr_lo` is 0.
pub fn stage_lrs(stage: &StageConfig, n: usize) -> Result<Vec<f64>, OptError> {
    if stage.lr_lo > 0.0 {
        brigade_optim::schedule::lr_slice(stage.lr_lo, stage.lr, n)
    } else {
        Ok(vec![stage.lr; n.max(1)])
    }
}

/// A detached copy of a tensor (new storage, no autograd history).
pub fn deep_copy(t: &tch::Tensor) -> Result<tch::Tensor, tch::TchError> {
    tch::no_grad(|| {
        let mut r = t.f_zeros_like()?;
        r.f_copy_(t)?;
        Ok(r)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_to_schedule_and_lrs() {
        let s = StageConfig {
            lr: 1e-3,
            lr_lo: 1e-5,
            pct_start: 0.25,
            momentum: 0.9,
            ..StageConfig::default()
        };
        let sched = make_schedule(&s);
        let (lr, mom) = sched.at(25, 100);
        assert!((lr - 1e-3).abs() < 1e-15, "peak at pct_start");
        assert!((mom.unwrap() - 0.8).abs() < 1e-12);
        assert!((sched.at(0, 100).0 - 1e-3 / 25.0).abs() < 1e-15);
        let lrs = stage_lrs(&s, 3).unwrap();
        assert!((lrs[1] - 1e-4).abs() < 1e-15 && (lrs[2] - 1e-3).abs() < 1e-15);
        let flat = make_schedule(&StageConfig {
            schedule: ScheduleChoice::Constant,
            ..s.clone()
        });
        assert_eq!(flat.at(99, 100).0, 1e-3);
        assert_eq!(
            stage_lrs(&StageConfig { lr_lo: 0.0, ..s }, 3).unwrap(),
            vec![1e-3; 3]
        );
    }

    #[test]
    fn every_optimizer_builds_over_tiny_cnn_groups() {
        let vs = VarStore::new(tch::Device::Cpu);
        let net = crate::model::build(
            &vs.root(),
            "tiny_cnn",
            4,
            3,
            crate::config::HeadChoice::Linear,
        )
        .unwrap();
        for o in [
            OptimizerChoice::Sgd,
            OptimizerChoice::Adamw,
            OptimizerChoice::Ranger,
        ] {
            let s = StageConfig {
                optimizer: o,
                ..StageConfig::default()
            };
            let opt = make_optimizer(&vs, &s, &net.layer_groups()).unwrap();
            assert_eq!(opt.groups().len(), 3);
            let n: usize = opt.groups().iter().map(|g| g.params.len()).sum();
            assert_eq!(
                n,
                vs.trainable_variables().len(),
                "{o:?}: every parameter in a group"
            );
        }
    }
}
