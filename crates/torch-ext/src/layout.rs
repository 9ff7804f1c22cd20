//! Memory formats (channels-last) and pinned host memory.

use std::ffi::c_int;

use tch::{nn::VarStore, Device, Tensor};

use crate::{ffi, Error, Result};

/// libtorch's `c10::MemoryFormat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemoryFormat {
    /// Row-major NCHW strides.
    Contiguous,
    /// Keep the input's layout.
    Preserve,
    /// NHWC strides on a 4-d NCHW tensor (what cuDNN/oneDNN prefer for convs).
    ChannelsLast,
    /// NDHWC strides on a 5-d tensor.
    ChannelsLast3d,
}

impl MemoryFormat {
    fn code(self) -> c_int {
        match self {
            MemoryFormat::Contiguous => 0,
            MemoryFormat::Preserve => 1,
            MemoryFormat::ChannelsLast => 2,
            MemoryFormat::ChannelsLast3d => 3,
        }
    }
}

/// A copy of `t` laid out in `format` (`t` itself, shared, when it already is).
/// Channels-last needs a 4-d tensor, channels-last-3d a 5-d one.
pub fn to_memory_format(t: &Tensor, format: MemoryFormat) -> Result<Tensor> {
    let mut out: *mut ffi::CTensor = std::ptr::null_mut();
    // SAFETY: `t` is a live tensor; on success `out` is a new owned at::Tensor*.
    ffi::check("to_memory_format", unsafe {
        ffi::bte_contiguous(ffi::raw(t), format.code(), &mut out)
    })?;
    // SAFETY: `out` was allocated by the shim with `new at::Tensor`, as tch expects.
    Ok(unsafe { Tensor::from_ptr(out) })
}

/// Whether `t` is dense in `format` (`Preserve` asks about plain contiguity).
pub fn is_contiguous_as(t: &Tensor, format: MemoryFormat) -> bool {
    let fmt = if format == MemoryFormat::Preserve {
        MemoryFormat::Contiguous
    } else {
        format
    };
    let mut out = 0;
    // SAFETY: live tensor, valid out-pointer. The only C++ error is an unknown
    // format code, which the enum rules out, so an error reads as "no".
    let r = unsafe { ffi::bte_is_contiguous(ffi::raw(t), fmt.code(), &mut out) };
    ffi::check("is_contiguous", r).is_ok() && out != 0
}

/// Whether `t` is a 4-d tensor with channels-last strides.
pub fn is_channels_last(t: &Tensor) -> bool {
    t.dim() == 4 && is_contiguous_as(t, MemoryFormat::ChannelsLast)
}

/// The layout libtorch infers from `t`'s strides (Contiguous, ChannelsLast or ChannelsLast3d).
pub fn suggest_memory_format(t: &Tensor) -> Result<MemoryFormat> {
    let mut out = 0;
    // SAFETY: live tensor, valid out-pointer.
    ffi::check("suggest_memory_format", unsafe {
        ffi::bte_suggest_memory_format(ffi::raw(t), &mut out)
    })?;
    Ok(match out {
        2 => MemoryFormat::ChannelsLast,
        3 => MemoryFormat::ChannelsLast3d,
        _ => MemoryFormat::Contiguous,
    })
}

/// Re-lays out, in place, every variable of `vs` that the format applies to
/// (4-d for channels-last, 5-d for channels-last-3d, all for contiguous):
/// the variables keep their identity, so optimizers built on them stay valid.
/// Returns how many variables changed layout.
pub fn varstore_to_memory_format(vs: &VarStore, format: MemoryFormat) -> Result<usize> {
    let wanted_dim = match format {
        MemoryFormat::ChannelsLast => Some(4),
        MemoryFormat::ChannelsLast3d => Some(5),
        MemoryFormat::Contiguous => None,
        MemoryFormat::Preserve => return Ok(0),
    };
    let mut changed = 0;
    for (_, var) in vs.variables() {
        if wanted_dim.is_some_and(|d| var.dim() != d) || is_contiguous_as(&var, format) {
            continue;
        }
        // SAFETY: `var` is a live variable; set_data swaps its storage only.
        ffi::check("varstore_to_memory_format", unsafe {
            ffi::bte_set_data_memory_format(ffi::raw(&var), format.code())
        })?;
        changed += 1;
    }
    Ok(changed)
}

/// A page-locked (pinned) copy of a CPU tensor, for asynchronous host→GPU
/// copies (`to_device_(.., non_blocking = true)`). Needs a CUDA device: on a
/// machine without one this is an error, not a panic.
pub fn pin_memory(t: &Tensor) -> Result<Tensor> {
    if t.device() != Device::Cpu {
        return Err(Error::Invalid(format!(
            "pin_memory needs a CPU tensor, got {:?}",
            t.device()
        )));
    }
    let mut out: *mut ffi::CTensor = std::ptr::null_mut();
    // SAFETY: live tensor; on success `out` is a new owned at::Tensor*.
    ffi::check("pin_memory", unsafe {
        ffi::bte_pin_memory(ffi::raw(t), &mut out)
    })?;
    // SAFETY: allocated by the shim with `new at::Tensor`.
    Ok(unsafe { Tensor::from_ptr(out) })
}

/// Whether a CPU tensor lives in pinned memory (always false without CUDA).
pub fn is_pinned(t: &Tensor) -> Result<bool> {
    if !tch::Cuda::is_available() {
        return Ok(false);
    }
    let mut out = 0;
    // SAFETY: live tensor, valid out-pointer.
    ffi::check("is_pinned", unsafe {
        ffi::bte_is_pinned(ffi::raw(t), &mut out)
    })?;
    Ok(out != 0)
}
