//! CUDA streams, events and a current-stream guard (feature `cuda`).

use std::ffi::{c_int, c_void};
use std::marker::PhantomData;
use std::ptr::NonNull;

use tch::Tensor;

use crate::{ffi, Error, Result};

fn non_null(p: *mut c_void, what: &'static str) -> Result<NonNull<c_void>> {
    NonNull::new(p).ok_or(Error::Unavailable(what))
}

/// A CUDA stream (a handle on one of libtorch's pooled or current streams).
#[derive(Debug)]
pub struct Stream {
    raw: NonNull<c_void>,
}

// SAFETY: a c10 CUDAStream is a plain (device, id) value usable from any thread.
unsafe impl Send for Stream {}
// SAFETY: its methods only read the handle.
unsafe impl Sync for Stream {}

impl Stream {
    /// A stream from libtorch's pool on `device` (an index, as in `Device::Cuda(i)`).
    pub fn new(device: usize, high_priority: bool) -> Result<Self> {
        let mut out = std::ptr::null_mut();
        // SAFETY: valid out-pointer.
        ffi::check("cuda_stream_new", unsafe {
            ffi::bte_cuda_stream_new(device as c_int, high_priority as c_int, &mut out)
        })?;
        Ok(Stream {
            raw: non_null(out, "cuda stream")?,
        })
    }

    /// The current stream of `device` on this thread.
    pub fn current(device: usize) -> Result<Self> {
        let mut out = std::ptr::null_mut();
        // SAFETY: valid out-pointer.
        ffi::check("cuda_stream_current", unsafe {
            ffi::bte_cuda_stream_current(device as c_int, &mut out)
        })?;
        Ok(Stream {
            raw: non_null(out, "cuda stream")?,
        })
    }

    /// Blocks until all work queued on the stream finished.
    pub fn synchronize(&self) -> Result<()> {
        // SAFETY: live handle.
        ffi::check("cuda_stream_synchronize", unsafe {
            ffi::bte_cuda_stream_synchronize(self.raw.as_ptr())
        })
    }

    /// Whether all work queued on the stream finished.
    pub fn query(&self) -> Result<bool> {
        let mut done = 0;
        // SAFETY: live handle, valid out-pointer.
        ffi::check("cuda_stream_query", unsafe {
            ffi::bte_cuda_stream_query(self.raw.as_ptr(), &mut done)
        })?;
        Ok(done != 0)
    }

    /// The device index of the stream.
    pub fn device(&self) -> Result<usize> {
        let mut d = 0;
        // SAFETY: live handle, valid out-pointer.
        ffi::check("cuda_stream_device", unsafe {
            ffi::bte_cuda_stream_device(self.raw.as_ptr(), &mut d)
        })?;
        Ok(d as usize)
    }

    /// Makes this the current stream of its device until the guard drops.
    pub fn make_current(&self) -> Result<StreamGuard> {
        let mut prev = std::ptr::null_mut();
        // SAFETY: live handle, valid out-pointer.
        ffi::check("cuda_stream_set_current", unsafe {
            ffi::bte_cuda_stream_set_current(self.raw.as_ptr(), &mut prev)
        })?;
        Ok(StreamGuard {
            prev: Stream {
                raw: non_null(prev, "cuda stream")?,
            },
            _thread_bound: PhantomData,
        })
    }

    /// Tells the caching allocator that `t` is used on this stream (so its
    /// memory is not reused before the stream's work on it finished).
    pub fn record_tensor(&self, t: &Tensor) -> Result<()> {
        // SAFETY: live tensor and handle.
        ffi::check("record_stream", unsafe {
            ffi::bte_cuda_record_stream(ffi::raw(t), self.raw.as_ptr())
        })
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        // SAFETY: allocated by the shim, freed once (streams are pooled, not destroyed).
        unsafe { ffi::bte_cuda_stream_free(self.raw.as_ptr()) }
    }
}

/// Restores the previous current stream when dropped (thread-bound).
#[must_use = "the stream stops being current when the guard is dropped"]
#[derive(Debug)]
pub struct StreamGuard {
    prev: Stream,
    _thread_bound: PhantomData<*const ()>,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let mut old = std::ptr::null_mut();
        // SAFETY: live handle; the returned previous stream is freed right away.
        let r = unsafe { ffi::bte_cuda_stream_set_current(self.prev.raw.as_ptr(), &mut old) };
        match ffi::check("cuda_stream_restore", r) {
            // SAFETY: allocated by the shim.
            Ok(()) => unsafe { ffi::bte_cuda_stream_free(old) },
            Err(e) => eprintln!("brigade-torch-ext: {e}"),
        }
    }
}

/// A CUDA event: record on one stream, wait on another, or time a region.
#[derive(Debug)]
pub struct Event {
    raw: NonNull<c_void>,
}

// SAFETY: CUDA events may be used from any thread.
unsafe impl Send for Event {}

impl Event {
    /// A new event (created lazily on first record); `timing` enables [`elapsed_ms`](Self::elapsed_ms).
    pub fn new(timing: bool) -> Result<Self> {
        let mut out = std::ptr::null_mut();
        // SAFETY: valid out-pointer.
        ffi::check("cuda_event_new", unsafe {
            ffi::bte_cuda_event_new(timing as c_int, &mut out)
        })?;
        Ok(Event {
            raw: non_null(out, "cuda event")?,
        })
    }

    /// Records the event on `stream` (captures the work queued so far).
    pub fn record(&mut self, stream: &Stream) -> Result<()> {
        // SAFETY: live handles.
        ffi::check("cuda_event_record", unsafe {
            ffi::bte_cuda_event_record(self.raw.as_ptr(), stream.raw.as_ptr())
        })
    }

    /// Makes future work on `stream` wait for the recorded work (no host block).
    pub fn wait(&self, stream: &Stream) -> Result<()> {
        // SAFETY: live handles.
        ffi::check("cuda_event_wait", unsafe {
            ffi::bte_cuda_event_wait(self.raw.as_ptr(), stream.raw.as_ptr())
        })
    }

    /// Blocks the host until the recorded work finished.
    pub fn synchronize(&self) -> Result<()> {
        // SAFETY: live handle.
        ffi::check("cuda_event_synchronize", unsafe {
            ffi::bte_cuda_event_synchronize(self.raw.as_ptr())
        })
    }

    /// Whether the recorded work finished.
    pub fn query(&self) -> Result<bool> {
        let mut done = 0;
        // SAFETY: live handle, valid out-pointer.
        ffi::check("cuda_event_query", unsafe {
            ffi::bte_cuda_event_query(self.raw.as_ptr(), &mut done)
        })?;
        Ok(done != 0)
    }

    /// Milliseconds between this event and a later one (both recorded, timing enabled).
    pub fn elapsed_ms(&self, end: &Event) -> Result<f32> {
        let mut ms = 0.0;
        // SAFETY: live handles, valid out-pointer.
        ffi::check("cuda_event_elapsed", unsafe {
            ffi::bte_cuda_event_elapsed_ms(self.raw.as_ptr(), end.raw.as_ptr(), &mut ms)
        })?;
        Ok(ms)
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: allocated by the shim, freed once.
        unsafe { ffi::bte_cuda_event_free(self.raw.as_ptr()) }
    }
}
