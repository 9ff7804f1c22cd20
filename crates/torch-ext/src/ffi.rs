//! Raw declarations of `shim.cpp`. Every `*mut c_char` return is NULL on
//! success or a malloc'ed libtorch error message (freed by [`check`]).

use std::ffi::{c_char, c_int, c_void, CStr};

use tch::Tensor;

use crate::Error;

/// The C++ side's `at::Tensor` (tch's `C_tensor`).
pub(crate) type CTensor = torch_sys::C_tensor;

#[repr(C)]
pub(crate) struct BtePg {
    _opaque: [u8; 0],
}

extern "C" {
    pub(crate) fn bte_free_string(s: *mut c_char);
    pub(crate) fn bte_has_gloo() -> c_int;
    pub(crate) fn bte_has_cuda() -> c_int;

    pub(crate) fn bte_autocast_state(
        dev: c_int,
        enabled: *mut c_int,
        dtype: *mut c_int,
    ) -> *mut c_char;
    pub(crate) fn bte_autocast_enter(dev: c_int, dtype: c_int, enabled: c_int) -> *mut c_char;
    pub(crate) fn bte_autocast_exit(
        dev: c_int,
        prev_dtype: c_int,
        prev_enabled: c_int,
    ) -> *mut c_char;

    pub(crate) fn bte_contiguous(
        t: *const CTensor,
        fmt: c_int,
        out: *mut *mut CTensor,
    ) -> *mut c_char;
    pub(crate) fn bte_is_contiguous(t: *const CTensor, fmt: c_int, out: *mut c_int) -> *mut c_char;
    pub(crate) fn bte_suggest_memory_format(t: *const CTensor, out: *mut c_int) -> *mut c_char;
    pub(crate) fn bte_set_data_memory_format(t: *mut CTensor, fmt: c_int) -> *mut c_char;
    pub(crate) fn bte_pin_memory(t: *const CTensor, out: *mut *mut CTensor) -> *mut c_char;
    pub(crate) fn bte_is_pinned(t: *const CTensor, out: *mut c_int) -> *mut c_char;
    pub(crate) fn bte_ensure_grad(t: *mut CTensor, created: *mut c_int) -> *mut c_char;

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn bte_pg_new(
        master_addr: *const c_char,
        port: c_int,
        rank: c_int,
        world: c_int,
        timeout_ms: i64,
        backend: c_int,
        iface: *const c_char,
        bind_host: *const c_char,
        out: *mut *mut BtePg,
    ) -> *mut c_char;
    pub(crate) fn bte_pg_free(pg: *mut BtePg);
    pub(crate) fn bte_pg_allreduce(
        pg: *mut BtePg,
        ts: *const *mut CTensor,
        n: usize,
        op: c_int,
    ) -> *mut c_char;
    pub(crate) fn bte_pg_broadcast(
        pg: *mut BtePg,
        ts: *const *mut CTensor,
        n: usize,
        root: c_int,
    ) -> *mut c_char;
    pub(crate) fn bte_pg_barrier(pg: *mut BtePg) -> *mut c_char;

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn bte_fused_adamw(
        params: *const *mut CTensor,
        grads: *const *mut CTensor,
        exp_avgs: *const *mut CTensor,
        exp_avg_sqs: *const *mut CTensor,
        steps: *const *mut CTensor,
        n: usize,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
    ) -> *mut c_char;
}

#[cfg(feature = "cuda")]
extern "C" {
    pub(crate) fn bte_cuda_stream_new(
        device: c_int,
        high_priority: c_int,
        out: *mut *mut c_void,
    ) -> *mut c_char;
    pub(crate) fn bte_cuda_stream_current(device: c_int, out: *mut *mut c_void) -> *mut c_char;
    pub(crate) fn bte_cuda_stream_free(s: *mut c_void);
    pub(crate) fn bte_cuda_stream_synchronize(s: *mut c_void) -> *mut c_char;
    pub(crate) fn bte_cuda_stream_query(s: *mut c_void, done: *mut c_int) -> *mut c_char;
    pub(crate) fn bte_cuda_stream_device(s: *mut c_void, device: *mut c_int) -> *mut c_char;
    pub(crate) fn bte_cuda_stream_set_current(
        s: *mut c_void,
        prev: *mut *mut c_void,
    ) -> *mut c_char;
    pub(crate) fn bte_cuda_record_stream(t: *mut CTensor, s: *mut c_void) -> *mut c_char;
    pub(crate) fn bte_cuda_event_new(enable_timing: c_int, out: *mut *mut c_void) -> *mut c_char;
    pub(crate) fn bte_cuda_event_free(e: *mut c_void);
    pub(crate) fn bte_cuda_event_record(e: *mut c_void, s: *mut c_void) -> *mut c_char;
    pub(crate) fn bte_cuda_event_wait(e: *mut c_void, s: *mut c_void) -> *mut c_char;
    pub(crate) fn bte_cuda_event_synchronize(e: *mut c_void) -> *mut c_char;
    pub(crate) fn bte_cuda_event_query(e: *mut c_void, done: *mut c_int) -> *mut c_char;
    pub(crate) fn bte_cuda_event_elapsed_ms(
        start: *mut c_void,
        end: *mut c_void,
        ms: *mut f32,
    ) -> *mut c_char;
}

#[cfg(not(feature = "cuda"))]
#[allow(dead_code)]
type _Unused = *mut c_void;

/// Turns a shim return value into a `Result`, freeing the message.
pub(crate) fn check(op: &'static str, err: *mut c_char) -> Result<(), Error> {
    if err.is_null() {
        return Ok(());
    }
    // SAFETY: a non-null return is a NUL-terminated string malloc'ed by the shim.
    let message = unsafe { CStr::from_ptr(err) }
        .to_string_lossy()
        .into_owned();
    // SAFETY: allocated by the shim with malloc, freed exactly once here.
    unsafe { bte_free_string(err) };
    Err(Error::Torch { op, message })
}

/// The raw `at::Tensor*` behind a tch tensor, for shim calls that do not
/// mutate the handle itself (libtorch tensors are reference types).
pub(crate) fn raw(t: &Tensor) -> *mut CTensor {
    t.as_ptr() as *mut CTensor
}
