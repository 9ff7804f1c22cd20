//! A small C++ shim over libtorch for what tch does not expose: bf16/fp16
//! autocast, memory formats (channels-last), pinned host memory, CUDA streams
//! and events (feature `cuda`), c10d process groups for data-parallel
//! training (Gloo on CPU, feature `gloo`, on by default; NCCL with `cuda`),
//! and libtorch's fused AdamW kernel ([`fused_adamw`]).
//!
//! Every libtorch call goes through a C ABI function that catches C++
//! exceptions: failures come back as [`Error::Torch`] carrying libtorch's
//! message, never as an abort.
//!
//! ```
//! use brigade_torch_ext::{autocast, is_channels_last, to_memory_format, DeviceType, MemoryFormat};
//! use tch::{Kind, Tensor};
//!
//! # fn main() -> Result<(), brigade_torch_ext::Error> {
//! let x = Tensor::randn([2, 3, 8, 8], (Kind::Float, tch::Device::Cpu));
//! let w = Tensor::randn([4, 3, 3, 3], (Kind::Float, tch::Device::Cpu));
//! let x = to_memory_format(&x, MemoryFormat::ChannelsLast)?;
//! assert!(is_channels_last(&x));
//! {
//!     let _bf16 = autocast(DeviceType::Cpu, Kind::BFloat16, true)?;
//!     let y = x.conv2d(&w, None::<Tensor>, [1, 1], [1, 1], [1, 1], 1);
//!     assert_eq!(y.kind(), Kind::BFloat16);
//! }
//! // The guard restored the previous state: full precision again.
//! let y = x.conv2d(&w, None::<Tensor>, [1, 1], [1, 1], [1, 1], 1);
//! assert_eq!(y.kind(), Kind::Float);
//! # Ok(())
//! # }
//! ```
//!
//! Data parallel (one process per device, see [`ProcessGroup`] and [`launch`]):
//!
//! ```no_run
//! # fn main() -> Result<(), brigade_torch_ext::Error> {
//! use brigade_torch_ext::ProcessGroup;
//! let vs = tch::nn::VarStore::new(tch::Device::Cpu);
//! let pg = ProcessGroup::from_env()?; // RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT
//! pg.broadcast_parameters(&vs, 0)?;
//! // ... loss.backward() ...
//! pg.allreduce_gradients(&vs)?; // averaged, 25 MB buckets
//! # Ok(())
//! # }
//! ```

mod autocast;
#[cfg(feature = "cuda")]
mod cuda;
mod dist;
mod ffi;
mod fused;
mod launch;
mod layout;

pub use autocast::{autocast, autocast_state, AutocastGuard};
#[cfg(feature = "cuda")]
pub use cuda::{Event, Stream, StreamGuard};
pub use dist::{
    Backend, DistConfig, GradientReducer, ProcessGroup, ReduceOp, DEFAULT_BUCKET_BYTES,
};
pub use fused::{fused_adamw, AdamWStep};
pub use launch::{free_port, launch, LaunchOptions};
pub use layout::{
    is_channels_last, is_contiguous_as, is_pinned, pin_memory, suggest_memory_format,
    to_memory_format, varstore_to_memory_format, MemoryFormat,
};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// libtorch threw; `message` is its text (without the C++ backtrace).
    #[error("libtorch error in {op}: {message}")]
    Torch {
        /// The shim operation that failed.
        op: &'static str,
        /// libtorch's message.
        message: String,
    },
    /// A tch call failed.
    #[error("tch error in {op}: {source}")]
    Tch {
        /// What was being done.
        op: &'static str,
        /// The tch error.
        #[source]
        source: tch::TchError,
    },
    /// A distributed-launch environment variable is missing or malformed.
    #[error("environment variable {var}: {problem}")]
    Env {
        /// The variable name.
        var: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// An argument is outside what the operation supports.
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// This build lacks a feature the call needs.
    #[error("not available in this build: {0}")]
    Unavailable(&'static str),
    /// Starting or waiting on a launched process failed.
    #[error("launch: {what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A launched rank exited unsuccessfully (the other ranks were killed).
    #[error("launch: rank {rank} of {program} failed: {status}")]
    RankFailed {
        /// The failing rank.
        rank: usize,
        /// The program launched.
        program: String,
        /// Its exit status.
        status: std::process::ExitStatus,
    },
    /// The launched ranks did not all finish within the timeout (all killed).
    #[error("launch: {program} did not finish within {secs:.1} s; killed ranks {unfinished:?}")]
    Timeout {
        /// The program launched.
        program: String,
        /// The timeout in seconds.
        secs: f64,
        /// Ranks that were still running.
        unfinished: Vec<usize>,
    },
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The device kinds autocast and streams distinguish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceType {
    /// The CPU.
    Cpu,
    /// CUDA GPUs.
    Cuda,
}

impl DeviceType {
    pub(crate) fn code(self) -> std::ffi::c_int {
        match self {
            DeviceType::Cpu => 0,
            DeviceType::Cuda => 1,
        }
    }

    /// The device type of a tch device (MPS and Vulkan are not supported).
    pub fn of(device: tch::Device) -> Result<Self> {
        match device {
            tch::Device::Cpu => Ok(DeviceType::Cpu),
            tch::Device::Cuda(_) => Ok(DeviceType::Cuda),
            other => Err(Error::Invalid(format!("device {other:?} is not supported"))),
        }
    }
}

/// Whether this build has Gloo process groups (feature `gloo`).
pub fn has_gloo() -> bool {
    // SAFETY: no arguments, no side effects.
    unsafe { ffi::bte_has_gloo() != 0 }
}

/// Whether this build has CUDA streams/events and NCCL (feature `cuda`).
pub fn has_cuda_support() -> bool {
    // SAFETY: no arguments, no side effects.
    unsafe { ffi::bte_has_cuda() != 0 }
}

/// c10's `ScalarType` code of a tch kind (the subset this crate passes).
pub(crate) fn kind_code(kind: tch::Kind) -> Result<std::ffi::c_int> {
    use tch::Kind::*;
    Ok(match kind {
        Uint8 => 0,
        Int8 => 1,
        Int16 => 2,
        Int => 3,
        Int64 => 4,
        Half => 5,
        Float => 6,
        Double => 7,
        Bool => 11,
        BFloat16 => 15,
        other => return Err(Error::Invalid(format!("kind {other:?} not supported here"))),
    })
}

pub(crate) fn kind_of_code(code: std::ffi::c_int) -> Result<tch::Kind> {
    use tch::Kind::*;
    Ok(match code {
        0 => Uint8,
        1 => Int8,
        2 => Int16,
        3 => Int,
        4 => Int64,
        5 => Half,
        6 => Float,
        7 => Double,
        11 => Bool,
        15 => BFloat16,
        other => {
            return Err(Error::Invalid(format!(
                "scalar type code {other} not supported here"
            )))
        }
    })
}
