//! Model zoo: architectures with torchvision parameter names, safe loading of
//! torchvision `.pth` and timm/Hugging Face `.safetensors` weights, fastai
//! heads, layer groups for discriminative learning rates, and safetensors
//! checkpoints.
//!
//! * [`Arch`]: `resnet18`, `resnet34`, `resnet50` (V1.5), `resnet50d` (timm
//!   names), `efficientnet_b0`, `efficientnet_b2`, `mobilenet_v3_large`; see
//!   [`Arch::info`] for parameter counts and published ImageNet top-1.
//! * [`Model`]: a `tch::nn::ModuleT` over a `VarStore` path whose variable
//!   names are torchvision's, so `torch.save(model.state_dict())` maps 1:1.
//! * [`Model::load_weights`]: reads `.pth` files (zip archives, and the legacy
//!   non-zip format of PyTorch < 1.6 that older published weights still use)
//!   with a whitelisting pickle reader (nothing from the file is executed) or
//!   `.safetensors`; the format is sniffed ([`weights::detect_format`]);
//!   returns a [`LoadReport`] naming loaded / missing / unexpected /
//!   mis-shaped keys and a re-initialised head when the class count differs.
//! * [`Model::layer_groups`], [`Model::freeze`], [`Model::unfreeze`]: fastai's
//!   three-way split and `freeze()` with `train_bn=True`.
//! * [`Model::save_safetensors`] / [`Model::load_checkpoint`]: checkpoints with
//!   `brigade.arch`, `brigade.num_classes`, `brigade.head` metadata, written
//!   atomically.
//! * [`known_weights`], [`resolve_weights`]: published weight names → URLs and
//!   the local cache (`${XDG_CACHE_HOME:-~/.cache}/brigade/weights`).
//!
//! ```
//! use brigade_zoo::{Arch, HeadKind, Model};
//! use tch::nn::ModuleT;
//!
//! let vs = tch::nn::VarStore::new(tch::Device::Cpu);
//! let model = Model::new(&vs.root(), "resnet18".parse()?, 10, HeadKind::Linear)?;
//! assert!(vs.variables().contains_key("layer4.1.bn2.running_var"));
//! let logits = model.forward_t(&tch::Tensor::zeros([2, 3, 32, 32], tch::kind::FLOAT_CPU), false);
//! assert_eq!(logits.size(), vec![2, 10]);
//! assert_eq!(model.layer_groups().len(), 3);
//! assert_eq!(Arch::Resnet18.num_features(), 512);
//! # Ok::<(), brigade_zoo::ZooError>(())
//! ```

mod arch;
mod efficient;
mod error;
mod head;
mod layers;
mod model;
pub mod pickle;
mod registry;
mod resnet;
pub mod timm;
pub mod weights;

pub use arch::{Arch, ArchInfo};
pub use error::{Result, ZooError};
pub use head::HeadKind;
pub use model::{
    identify_state_dict, read_checkpoint_meta, CheckpointMeta, Identified, LayerGroup, LoadOptions,
    LoadReport, Model, ModelOptions,
};
pub use registry::{
    find_known, known_weights, resolve_weights, resolve_weights_in, sha256_file, weights_cache_dir,
    KnownWeights,
};
pub use weights::{read_state_dict, StateDict};
