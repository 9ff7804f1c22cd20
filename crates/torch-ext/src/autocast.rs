//! Autocast (automatic mixed precision) regions, like `torch.autocast`.

use std::ffi::c_int;
use std::marker::PhantomData;

use tch::Kind;

use crate::{ffi, kind_code, kind_of_code, DeviceType, Result};

/// Restores the previous autocast state of its device type when dropped.
///
/// Autocast state is thread-local in libtorch, so the guard is neither `Send`
/// nor `Sync`: drop it on the thread that created it. Guards nest.
#[must_use = "autocast ends when the guard is dropped"]
#[derive(Debug)]
pub struct AutocastGuard {
    device: DeviceType,
    prev_enabled: c_int,
    prev_dtype: c_int,
    _thread_bound: PhantomData<*const ()>,
}

/// Enters an autocast region on `device` computing eligible ops (conv,
/// matmul, linear, ...) in `dtype` (`Kind::BFloat16` or `Kind::Half`);
/// `enabled = false` makes a region that turns autocast off.
pub fn autocast(device: DeviceType, dtype: Kind, enabled: bool) -> Result<AutocastGuard> {
    let (prev_enabled, prev_dtype) = raw_state(device)?;
    let code = kind_code(dtype)?;
    // SAFETY: plain ints; the shim validates them and catches exceptions.
    ffi::check("autocast_enter", unsafe {
        ffi::bte_autocast_enter(device.code(), code, enabled as c_int)
    })?;
    Ok(AutocastGuard {
        device,
        prev_enabled,
        prev_dtype,
        _thread_bound: PhantomData,
    })
}

/// The current thread's autocast state for `device`: (enabled, dtype).
pub fn autocast_state(device: DeviceType) -> Result<(bool, Kind)> {
    let (enabled, dtype) = raw_state(device)?;
    Ok((enabled != 0, kind_of_code(dtype)?))
}

fn raw_state(device: DeviceType) -> Result<(c_int, c_int)> {
    let (mut enabled, mut dtype) = (0, 0);
    // SAFETY: the out-pointers are valid for the call.
    ffi::check("autocast_state", unsafe {
        ffi::bte_autocast_state(device.code(), &mut enabled, &mut dtype)
    })?;
    Ok((enabled, dtype))
}

impl Drop for AutocastGuard {
    fn drop(&mut self) {
        // SAFETY: restores values read from libtorch in `autocast`.
        let r = unsafe {
            ffi::bte_autocast_exit(self.device.code(), self.prev_dtype, self.prev_enabled)
        };
        if let Err(e) = ffi::check("autocast_exit", r) {
            // Cannot return an error from drop; the values came from libtorch
            // itself, so this is unreachable short of a libtorch bug.
            eprintln!("brigade-torch-ext: {e}");
        }
    }
}
