// brigade-torch-ext: a thin C ABI over the parts of libtorch that tch does not
// expose (autocast state, memory formats, c10d process groups, CUDA streams,
// fused optimizer kernels).
//
// Tensors cross the boundary as tch's raw pointers (`at::Tensor*`, owned by a
// tch `Tensor`). Every function returns NULL on success or a malloc'ed error
// string (libtorch's message) that Rust frees with `bte_free_string`; nothing
// here lets a C++ exception cross into Rust.
//
// Compiled once by build.rs (one translation unit). Macros:
//   BRIGADE_GLOO  Gloo process groups (needs libgloo-dev headers)
//   BRIGADE_CUDA  CUDA streams/events and NCCL process groups

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <c10/util/Exception.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#if defined(BRIGADE_GLOO) || defined(BRIGADE_CUDA)
#define BRIGADE_C10D 1
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/Types.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>
#endif
#ifdef BRIGADE_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef BRIGADE_CUDA
#include <c10/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace {

char* dup_string(const std::string& s) {
  char* out = static_cast<char*>(std::malloc(s.size() + 1));
  if (out != nullptr) {
    std::memcpy(out, s.c_str(), s.size() + 1);
  }
  return out;
}

template <typename F>
char* guarded(F&& f) {
  try {
    f();
    return nullptr;
  } catch (const c10::Error& e) {
    return dup_string(e.what_without_backtrace());
  } catch (const std::exception& e) {
    return dup_string(e.what());
  } catch (...) {
    return dup_string("unknown C++ exception");
  }
}

at::DeviceType device_type(int d) {
  switch (d) {
    case 0:
      return at::kCPU;
    case 1:
      return at::kCUDA;
    default:
      TORCH_CHECK(false, "unknown device type code ", d);
  }
}

at::MemoryFormat memory_format(int f) {
  switch (f) {
    case 0:
      return at::MemoryFormat::Contiguous;
    case 1:
      return at::MemoryFormat::Preserve;
    case 2:
      return at::MemoryFormat::ChannelsLast;
    case 3:
      return at::MemoryFormat::ChannelsLast3d;
    default:
      TORCH_CHECK(false, "unknown memory format code ", f);
  }
}

}  // namespace

extern "C" {

void bte_free_string(char* s) { std::free(s); }

int bte_has_gloo() {
#ifdef BRIGADE_GLOO
  return 1;
#else
  return 0;
#endif
}

int bte_has_cuda() {
#ifdef BRIGADE_CUDA
  return 1;
#else
  return 0;
#endif
}

// ---------------------------------------------------------------- autocast

char* bte_autocast_state(int dev, int* enabled, int* dtype) {
  return guarded([&] {
    auto d = device_type(dev);
    *enabled = at::autocast::is_autocast_enabled(d) ? 1 : 0;
    *dtype = static_cast<int>(at::autocast::get_autocast_dtype(d));
  });
}

// Mirrors torch.autocast.__enter__: set dtype and enabled, bump the nesting.
char* bte_autocast_enter(int dev, int dtype, int enabled) {
  return guarded([&] {
    auto d = device_type(dev);
    auto st = static_cast<at::ScalarType>(dtype);
    TORCH_CHECK(st == at::kBFloat16 || st == at::kHalf,
                "autocast dtype must be bfloat16 or float16, got ", st);
    at::autocast::set_autocast_dtype(d, st);
    at::autocast::set_autocast_enabled(d, enabled != 0);
    at::autocast::increment_nesting();
  });
}

// Mirrors torch.autocast.__exit__: clear the cast cache when leaving the
// outermost region, restore the previous state.
char* bte_autocast_exit(int dev, int prev_dtype, int prev_enabled) {
  return guarded([&] {
    auto d = device_type(dev);
    if (at::autocast::decrement_nesting() == 0) {
      at::autocast::clear_cache();
    }
    at::autocast::set_autocast_enabled(d, prev_enabled != 0);
    at::autocast::set_autocast_dtype(d, static_cast<at::ScalarType>(prev_dtype));
  });
}

// ---------------------------------------------------------- memory formats

char* bte_contiguous(const at::Tensor* t, int fmt, at::Tensor** out) {
  return guarded([&] {
    *out = new at::Tensor(t->contiguous(memory_format(fmt)));
  });
}

char* bte_is_contiguous(const at::Tensor* t, int fmt, int* out) {
  return guarded([&] { *out = t->is_contiguous(memory_format(fmt)) ? 1 : 0; });
}

char* bte_suggest_memory_format(const at::Tensor* t, int* out) {
  return guarded([&] {
    switch (t->suggest_memory_format()) {
      case at::MemoryFormat::ChannelsLast:
        *out = 2;
        break;
      case at::MemoryFormat::ChannelsLast3d:
        *out = 3;
        break;
      default:
        *out = 0;
    }
  });
}

// Re-lays a variable out in place (keeps its identity, requires_grad and any
// optimizer references): var.set_data(var.contiguous(fmt)).
char* bte_set_data_memory_format(at::Tensor* t, int fmt) {
  return guarded([&] {
    auto mf = memory_format(fmt);
    if (!t->is_contiguous(mf)) {
      at::NoGradGuard no_grad;
      t->set_data(t->contiguous(mf));
    }
  });
}

// Page-locked copy for async host-to-device copies (needs an accelerator).
char* bte_pin_memory(const at::Tensor* t, at::Tensor** out) {
  return guarded([&] { *out = new at::Tensor(t->pin_memory()); });
}

char* bte_is_pinned(const at::Tensor* t, int* out) {
  return guarded([&] { *out = t->is_pinned() ? 1 : 0; });
}

// Gives a parameter without a gradient a zero gradient (so every rank
// all-reduces the same buckets).
char* bte_ensure_grad(at::Tensor* t, int* created) {
  return guarded([&] {
    *created = 0;
    if (!t->grad().defined()) {
      t->mutable_grad() = at::zeros_like(*t);
      *created = 1;
    }
  });
}

// ------------------------------------------------------------ process groups

#ifdef BRIGADE_C10D
struct bte_pg {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
};
#else
struct bte_pg {
  int unused;
};
#endif

// backend: 0 = Gloo, 1 = NCCL. iface: NULL/empty, else the network interface
// Gloo binds to (GLOO_SOCKET_IFNAME); bind_host: the address Gloo binds to when
// no interface is given (NULL/empty: this machine's hostname).
char* bte_pg_new(const char* master_addr, int port, int rank, int world, int64_t timeout_ms,
                 int backend, const char* iface, const char* bind_host, bte_pg** out) {
  return guarded([&] {
#ifndef BRIGADE_C10D
    (void)master_addr; (void)port; (void)rank; (void)world; (void)timeout_ms;
    (void)backend; (void)iface; (void)bind_host; (void)out;
    TORCH_CHECK(false, "brigade-torch-ext was built without c10d (features `gloo` and `cuda` off)");
#else
    TORCH_CHECK(port > 0 && port < 65536, "MASTER_PORT out of range: ", port);
    TORCH_CHECK(world >= 1 && rank >= 0 && rank < world, "bad rank ", rank, " for world size ", world);
    auto timeout = std::chrono::milliseconds(timeout_ms);
    c10d::TCPStoreOptions so;
    so.port = static_cast<std::uint16_t>(port);
    so.isServer = rank == 0;
    so.numWorkers = static_cast<std::size_t>(world);
    so.waitWorkers = true;
    so.timeout = timeout;
    auto pg = std::make_unique<bte_pg>();
    pg->store = c10::make_intrusive<c10d::TCPStore>(std::string(master_addr), so);
    if (backend == 0) {
#ifdef BRIGADE_GLOO
      auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
      if (iface != nullptr && iface[0] != '\0') {
        opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(iface));
      } else if (bind_host != nullptr && bind_host[0] != '\0') {
        opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(bind_host));
      } else {
        opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      }
      pg->backend = c10::make_intrusive<c10d::ProcessGroupGloo>(pg->store, rank, world, opts);
#else
      TORCH_CHECK(false, "brigade-torch-ext was built without the `gloo` feature");
#endif
    } else if (backend == 1) {
#ifdef BRIGADE_CUDA
      auto opts = c10d::ProcessGroupNCCL::Options::create();
      opts->timeout = timeout;
      pg->backend = c10::make_intrusive<c10d::ProcessGroupNCCL>(pg->store, rank, world, opts);
#else
      TORCH_CHECK(false, "brigade-torch-ext was built without the `cuda` feature (NCCL)");
#endif
    } else {
      TORCH_CHECK(false, "unknown backend code ", backend);
    }
    *out = pg.release();
#endif
  });
}

void bte_pg_free(bte_pg* pg) {
  if (pg == nullptr) return;
  try {
#ifdef BRIGADE_C10D
    if (pg->backend) pg->backend->shutdown();
#endif
    delete pg;
  } catch (...) {
    // A failing shutdown must not abort the process from a destructor.
  }
}

#ifdef BRIGADE_C10D
namespace {
c10d::ReduceOp reduce_op(int op) {
  switch (op) {
    case 0:
      return c10d::ReduceOp::SUM;
    case 1:
      return c10d::ReduceOp::PRODUCT;
    case 2:
      return c10d::ReduceOp::MIN;
    case 3:
      return c10d::ReduceOp::MAX;
    default:
      TORCH_CHECK(false, "unknown reduce op code ", op);
  }
}
void wait_all(std::vector<c10::intrusive_ptr<c10d::Work>>& works) {
  // Wait on every work even if one fails, then report the first failure.
  std::string first_error;
  for (auto& w : works) {
    try {
      w->wait();
    } catch (const c10::Error& e) {
      if (first_error.empty()) first_error = e.what_without_backtrace();
    } catch (const std::exception& e) {
      if (first_error.empty()) first_error = e.what();
    }
  }
  TORCH_CHECK(first_error.empty(), first_error);
}
}  // namespace
#endif

// In-place all-reduce of n tensors, one collective each, all in flight at once.
char* bte_pg_allreduce(bte_pg* pg, at::Tensor* const* ts, size_t n, int op) {
  return guarded([&] {
#ifdef BRIGADE_C10D
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    works.reserve(n);
    c10d::AllreduceOptions o;
    o.reduceOp = reduce_op(op);
    for (size_t i = 0; i < n; ++i) {
      std::vector<at::Tensor> one{*ts[i]};
      works.push_back(pg->backend->allreduce(one, o));
    }
    wait_all(works);
#else
    (void)pg; (void)ts; (void)n; (void)op;
    TORCH_CHECK(false, "no c10d");
#endif
  });
}

// In-place broadcast of n tensors from `root`.
char* bte_pg_broadcast(bte_pg* pg, at::Tensor* const* ts, size_t n, int root) {
  return guarded([&] {
#ifdef BRIGADE_C10D
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    works.reserve(n);
    c10d::BroadcastOptions o;
    o.rootRank = root;
    for (size_t i = 0; i < n; ++i) {
      std::vector<at::Tensor> one{*ts[i]};
      works.push_back(pg->backend->broadcast(one, o));
    }
    wait_all(works);
#else
    (void)pg; (void)ts; (void)n; (void)root;
    TORCH_CHECK(false, "no c10d");
#endif
  });
}

char* bte_pg_barrier(bte_pg* pg) {
  return guarded([&] {
#ifdef BRIGADE_C10D
    c10d::BarrierOptions o;
    auto w = pg->backend->barrier(o);
    w->wait();
#else
    (void)pg;
    TORCH_CHECK(false, "no c10d");
#endif
  });
}

// ------------------------------------------------------------------- CUDA

#ifdef BRIGADE_CUDA
char* bte_cuda_stream_new(int device, int high_priority, void** out) {
  return guarded([&] {
    auto s = c10::cuda::getStreamFromPool(high_priority != 0, static_cast<c10::DeviceIndex>(device));
    *out = new c10::cuda::CUDAStream(s);
  });
}

char* bte_cuda_stream_current(int device, void** out) {
  return guarded([&] {
    auto s = c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(device));
    *out = new c10::cuda::CUDAStream(s);
  });
}

void bte_cuda_stream_free(void* s) { delete static_cast<c10::cuda::CUDAStream*>(s); }

char* bte_cuda_stream_synchronize(void* s) {
  return guarded([&] { static_cast<c10::cuda::CUDAStream*>(s)->synchronize(); });
}

char* bte_cuda_stream_query(void* s, int* done) {
  return guarded([&] { *done = static_cast<c10::cuda::CUDAStream*>(s)->query() ? 1 : 0; });
}

char* bte_cuda_stream_device(void* s, int* device) {
  return guarded([&] { *device = static_cast<int>(static_cast<c10::cuda::CUDAStream*>(s)->device_index()); });
}

// Makes `s` current on its device; returns the previous current stream there.
char* bte_cuda_stream_set_current(void* s, void** prev) {
  return guarded([&] {
    auto* stream = static_cast<c10::cuda::CUDAStream*>(s);
    auto old = c10::cuda::getCurrentCUDAStream(stream->device_index());
    c10::cuda::setCurrentCUDAStream(*stream);
    *prev = new c10::cuda::CUDAStream(old);
  });
}

char* bte_cuda_record_stream(at::Tensor* t, void* s) {
  return guarded([&] { t->record_stream(static_cast<c10::cuda::CUDAStream*>(s)->unwrap()); });
}

char* bte_cuda_event_new(int enable_timing, void** out) {
  return guarded([&] {
    unsigned int flags = enable_timing != 0 ? cudaEventDefault : cudaEventDisableTiming;
    *out = new c10::cuda::CUDAEvent(flags);
  });
}

void bte_cuda_event_free(void* e) {
  try {
    delete static_cast<c10::cuda::CUDAEvent*>(e);
  } catch (...) {
  }
}

char* bte_cuda_event_record(void* e, void* s) {
  return guarded([&] {
    static_cast<c10::cuda::CUDAEvent*>(e)->record(*static_cast<c10::cuda::CUDAStream*>(s));
  });
}

char* bte_cuda_event_wait(void* e, void* s) {
  return guarded([&] {
    static_cast<c10::cuda::CUDAEvent*>(e)->block(*static_cast<c10::cuda::CUDAStream*>(s));
  });
}

char* bte_cuda_event_synchronize(void* e) {
  return guarded([&] { static_cast<c10::cuda::CUDAEvent*>(e)->synchronize(); });
}

char* bte_cuda_event_query(void* e, int* done) {
  return guarded([&] { *done = static_cast<c10::cuda::CUDAEvent*>(e)->query() ? 1 : 0; });
}

char* bte_cuda_event_elapsed_ms(void* start, void* end, float* ms) {
  return guarded([&] {
    *ms = static_cast<c10::cuda::CUDAEvent*>(start)->elapsed_time(*static_cast<c10::cuda::CUDAEvent*>(end));
  });
}
#endif

// ---- fused optimizer kernels ------------------------------------------------

// at::_fused_adamw_ over n parameters (amsgrad and maximize off): one
// multi-tensor kernel instead of several per-tensor ones per parameter.
char* bte_fused_adamw(at::Tensor* const* params, at::Tensor* const* grads,
                      at::Tensor* const* exp_avgs, at::Tensor* const* exp_avg_sqs,
                      at::Tensor* const* steps, size_t n, double lr, double beta1,
                      double beta2, double weight_decay, double eps) {
  return guarded([&] {
    std::vector<at::Tensor> p, g, m, v, s;
    p.reserve(n);
    g.reserve(n);
    m.reserve(n);
    v.reserve(n);
    s.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      p.push_back(*params[i]);
      g.push_back(*grads[i]);
      m.push_back(*exp_avgs[i]);
      v.push_back(*exp_avg_sqs[i]);
      s.push_back(*steps[i]);
    }
    at::_fused_adamw_(p, g, m, v, {}, s, lr, beta1, beta2, weight_decay, eps,
                      /*amsgrad=*/false, /*maximize=*/false);
  });
}

}  // extern "C"
