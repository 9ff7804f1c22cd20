//! Optimizers (SGD, AdamW, RAdam, Lookahead, Ranger), parameter groups, per-batch
//! schedules, the LR finder, gradient clipping, EMA of weights and the training losses
//! (label smoothing, mixup, cutmix) — over tch tensors.
//!
//! * Every optimizer implements [`Optimizer`]: `step`, `zero_grad`, per-group `set_lr` /
//!   `set_momentum` (beta1 for the Adam family), `state_dict` / `load_state_dict`
//!   (safetensors + JSON via [`OptimState::save`]).
//! * State buffers are allocated once, at construction; `step` runs in place under
//!   `no_grad` and skips parameters that are frozen (`requires_grad == false`) or have no
//!   gradient, so freezing/unfreezing needs no new optimizer.
//! * Parameter groups come from a VarStore and layer-group name prefixes
//!   ([`groups_from_prefixes`]); weight decay is off for `dim() <= 1` tensors (biases,
//!   BatchNorm).
//! * Numerics follow `torch.optim` (SGD, AdamW, RAdam), checked against the Python oracle in
//!   the tests.
//!
//! ```
//! use brigade_optim::{groups_from_prefixes, schedule::{apply, lr_slice, OneCycle}, AdamW, AdamWConfig, Optimizer};
//! use tch::{nn, nn::Module, Device, Kind, Tensor};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let vs = nn::VarStore::new(Device::Cpu);
//! let body = nn::linear(vs.root() / "body", 4, 8, Default::default());
//! let head = nn::linear(vs.root() / "head", 8, 2, Default::default());
//! let prefixes = vec![vec!["body".to_string()], vec!["head".to_string()]];
//! let mut opt = AdamW::new(groups_from_prefixes(&vs, &prefixes)?, AdamWConfig::default())?;
//! let sched = OneCycle::new(1e-3);
//! let lrs = lr_slice(1e-4, 1e-3, 2)?; // discriminative: body 1e-4, head 1e-3
//! let x = Tensor::randn([16, 4], (Kind::Float, Device::Cpu));
//! for it in 0..10 {
//!     apply(&mut opt, &sched, it, 10, &lrs)?; // lr and beta1 for this batch
//!     opt.zero_grad();
//!     let loss = head.forward(&body.forward(&x).relu()).pow_tensor_scalar(2).mean(Kind::Float);
//!     loss.backward();
//!     opt.step()?;
//! }
//! assert_eq!(opt.groups().len(), 2);
//! assert_eq!(opt.groups()[0].params.len(), 2); // body.weight, body.bias
//! # Ok(()) }
//! ```

mod adamw;
pub mod clip;
mod ema;
mod error;
mod group;
mod lookahead;
pub mod loss;
pub mod lr_find;
mod optimizer;
pub mod plot;
mod radam;
pub mod schedule;
mod sgd;
mod state;
mod work;

pub use adamw::{AdamW, AdamWConfig};
pub use ema::Ema;
pub use error::{Error, Result};
pub use group::{
    groups_by, groups_from_prefixes, has_prefix, named_parameters, named_variables, single_group,
    GroupSpec, Param, ParamGroup,
};
pub use lookahead::{ranger, Lookahead, Ranger, RangerConfig};
pub use lr_find::{lr_find, LrFindResult, LrFinderConfig};
pub use optimizer::Optimizer;
pub use radam::{RAdam, RAdamConfig, WeightDecay};
pub use sgd::{Sgd, SgdConfig};
pub use state::OptimState;
