//! Device plumbing of the loop through `brigade-torch-ext`: bf16 autocast and
//! channels-last inputs ([`TorchAccel`], an [`Accel`]), and data-parallel
//! training over a c10d process group ([`Ddp`], a [`GradSync`]: Gloo on CPU,
//! NCCL on CUDA when built with the `cuda` feature of torch-ext).

use brigade_torch_ext::{
    autocast, to_memory_format, varstore_to_memory_format, DeviceType, GradientReducer,
    MemoryFormat, ProcessGroup, ReduceOp, DEFAULT_BUCKET_BYTES,
};
use tch::{nn::VarStore, Device, Kind, Tensor};

use crate::learner::{Accel, GradSync, TrainError};

/// Autocast (bf16) around forward + loss and channels-last inputs, as configured.
pub struct TorchAccel {
    pub device: DeviceType,
    pub bf16: bool,
    pub channels_last: bool,
}

fn ext(e: brigade_torch_ext::Error) -> TrainError {
    TrainError::Dist(e.to_string())
}

impl TorchAccel {
    /// Resolves the recipe's switches for `device`; converts the model's
    /// weights to channels-last when that is on.
    pub fn new(
        device: Device,
        bf16: bool,
        channels_last: bool,
        vs: &VarStore,
    ) -> Result<TorchAccel, TrainError> {
        let dt = DeviceType::of(device).map_err(ext)?;
        if channels_last {
            varstore_to_memory_format(vs, MemoryFormat::ChannelsLast).map_err(ext)?;
        }
        if device.is_cuda() {
            tch::Cuda::cudnn_set_benchmark(true);
        }
        Ok(TorchAccel {
            device: dt,
            bf16,
            channels_last,
        })
    }
}

impl Accel for TorchAccel {
    fn forward(
        &self,
        f: &mut dyn FnMut() -> Result<Tensor, TrainError>,
    ) -> Result<Tensor, TrainError> {
        if !self.bf16 {
            return f();
        }
        let _guard = autocast(self.device, Kind::BFloat16, true).map_err(ext)?;
        f()
    }

    fn prepare(&self, xs: Tensor) -> Result<Tensor, tch::TchError> {
        if !self.channels_last {
            return Ok(xs);
        }
        to_memory_format(&xs, MemoryFormat::ChannelsLast)
            .map_err(|e| tch::TchError::Torch(e.to_string()))
    }
}

/// Data-parallel gradient averaging over a process group.
pub struct Ddp {
    pub pg: ProcessGroup,
    reducer: GradientReducer,
}

impl Ddp {
    /// Joins the job described by torchrun's variables (`RANK`, `WORLD_SIZE`,
    /// `MASTER_ADDR`, `MASTER_PORT`), broadcasts rank 0's weights, plans gradient buckets.
    pub fn from_env(vs: &VarStore) -> Result<Ddp, TrainError> {
        let pg = ProcessGroup::from_env().map_err(ext)?;
        pg.broadcast_parameters(vs, 0).map_err(ext)?;
        let reducer = GradientReducer::new(vs, DEFAULT_BUCKET_BYTES).map_err(ext)?;
        Ok(Ddp { pg, reducer })
    }
}

impl GradSync for Ddp {
    fn rank(&self) -> usize {
        self.pg.rank()
    }
    fn world_size(&self) -> usize {
        self.pg.world_size()
    }
    fn allreduce_grads(&self, _vs: &VarStore) -> Result<(), String> {
        self.reducer.reduce(&self.pg).map_err(|e| e.to_string())
    }
    fn allreduce_sum(&self, values: &mut [f64]) -> Result<(), String> {
        let t = Tensor::f_from_slice(values)
            .and_then(|t| t.f_to_device(self.pg.device()))
            .map_err(|e| e.to_string())?;
        self.pg
            .allreduce(&[&t], ReduceOp::Sum)
            .map_err(|e| e.to_string())?;
        let back = t.f_to_device(Device::Cpu).map_err(|e| e.to_string())?;
        for (i, v) in values.iter_mut().enumerate() {
            *v = back
                .f_double_value(&[i as i64])
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// This process's rank under a launcher (`RANK`, as torchrun sets it); 0
/// when run alone. Readable before the process group exists.
pub fn launcher_rank() -> usize {
    std::env::var("RANK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Whether this process runs under a launcher with more than one rank.
pub fn distributed() -> bool {
    std::env::var("WORLD_SIZE")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|w| w > 1)
}
