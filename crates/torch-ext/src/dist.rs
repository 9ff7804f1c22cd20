//! c10d process groups: TCPStore rendezvous, Gloo (CPU) or NCCL (CUDA)
//! collectives, parameter broadcast and bucketed gradient averaging.

use std::ffi::{c_int, CString};
use std::ptr::NonNull;
use std::time::Duration;

use tch::{nn::VarStore, Device, Kind, Tensor};

use crate::{ffi, Error, Result};

/// Gradient bucket size of [`ProcessGroup::allreduce_gradients`] (as PyTorch DDP).
pub const DEFAULT_BUCKET_BYTES: usize = 25 * 1024 * 1024;

/// The collective backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Gloo: CPU tensors (feature `gloo`).
    Gloo,
    /// NCCL: CUDA tensors (feature `cuda`).
    Nccl,
}

/// A reduction for [`ProcessGroup::allreduce`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    /// Sum over ranks.
    Sum,
    /// Mean over ranks (a sum divided by the world size; floating tensors only).
    Avg,
    /// Product over ranks.
    Product,
    /// Minimum over ranks.
    Min,
    /// Maximum over ranks.
    Max,
}

impl ReduceOp {
    fn code(self) -> c_int {
        match self {
            ReduceOp::Sum | ReduceOp::Avg => 0,
            ReduceOp::Product => 1,
            ReduceOp::Min => 2,
            ReduceOp::Max => 3,
        }
    }
}

/// Where this process sits in a job, as torchrun describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistConfig {
    /// This process's rank, `0..world_size`.
    pub rank: usize,
    /// Number of processes.
    pub world_size: usize,
    /// Rank on this machine (picks the GPU).
    pub local_rank: usize,
    /// Address of rank 0's TCPStore.
    pub master_addr: String,
    /// Port of rank 0's TCPStore.
    pub master_port: u16,
    /// Rendezvous and collective timeout.
    pub timeout: Duration,
    /// The collective backend.
    pub backend: Backend,
    /// Network interface Gloo binds to (`GLOO_SOCKET_IFNAME`); `None`: the
    /// loopback address when `master_addr` is local, else this host's name.
    pub gloo_interface: Option<String>,
}

impl DistConfig {
    /// Reads `RANK`, `WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT` (required),
    /// `LOCAL_RANK` (default: `RANK`), `GLOO_SOCKET_IFNAME` and
    /// `BRIGADE_DIST_TIMEOUT_S` (default 300). The backend is NCCL when built
    /// with `cuda` and a GPU is present, else Gloo.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// [`from_env`](Self::from_env) over any variable source (for tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let required = |var: &'static str| {
            get(var)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| Error::Env {
                    var,
                    problem: "not set".into(),
                })
        };
        fn parse<T: std::str::FromStr>(var: &'static str, v: &str) -> Result<T>
        where
            T::Err: std::fmt::Display,
        {
            v.trim().parse().map_err(|e| Error::Env {
                var,
                problem: format!("{v:?}: {e}"),
            })
        }
        let rank: usize = parse("RANK", &required("RANK")?)?;
        let world_size: usize = parse("WORLD_SIZE", &required("WORLD_SIZE")?)?;
        if world_size == 0 {
            return Err(Error::Env {
                var: "WORLD_SIZE",
                problem: "must be at least 1".into(),
            });
        }
        if rank >= world_size {
            return Err(Error::Env {
                var: "RANK",
                problem: format!("{rank} is not below WORLD_SIZE {world_size}"),
            });
        }
        let master_addr = required("MASTER_ADDR")?;
        let master_port: u16 = parse("MASTER_PORT", &required("MASTER_PORT")?)?;
        if master_port == 0 {
            return Err(Error::Env {
                var: "MASTER_PORT",
                problem: "0 is not a port".into(),
            });
        }
        let local_rank = match get("LOCAL_RANK").filter(|v| !v.is_empty()) {
            Some(v) => parse("LOCAL_RANK", &v)?,
            None => rank,
        };
        let timeout_s: f64 = match get("BRIGADE_DIST_TIMEOUT_S").filter(|v| !v.is_empty()) {
            Some(v) => parse("BRIGADE_DIST_TIMEOUT_S", &v)?,
            None => 300.0,
        };
        if !(timeout_s.is_finite() && timeout_s > 0.0) {
            return Err(Error::Env {
                var: "BRIGADE_DIST_TIMEOUT_S",
                problem: format!("{timeout_s} is not a positive number"),
            });
        }
        let backend = if cfg!(feature = "cuda") && tch::Cuda::is_available() {
            Backend::Nccl
        } else {
            Backend::Gloo
        };
        Ok(DistConfig {
            rank,
            world_size,
            local_rank,
            master_addr,
            master_port,
            timeout: Duration::from_secs_f64(timeout_s),
            backend,
            gloo_interface: get("GLOO_SOCKET_IFNAME").filter(|v| !v.is_empty()),
        })
    }
}

/// A c10d process group (one per process). Collectives are blocking: they
/// return when the result is in place. Dropping it shuts the backend down.
pub struct ProcessGroup {
    raw: NonNull<ffi::BtePg>,
    config: DistConfig,
    device: Device,
}

// SAFETY: c10d backends are used from one thread at a time here (`&self`
// collectives are not `Sync`-shared: the type is not `Sync`), and may move
// between threads.
unsafe impl Send for ProcessGroup {}

impl std::fmt::Debug for ProcessGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessGroup")
            .field("config", &self.config)
            .field("device", &self.device)
            .finish()
    }
}

fn is_loopback(addr: &str) -> bool {
    addr == "localhost" || addr.starts_with("127.") || addr == "::1"
}

impl ProcessGroup {
    /// Joins the job described by the torchrun environment ([`DistConfig::from_env`]).
    pub fn from_env() -> Result<Self> {
        Self::new(DistConfig::from_env()?)
    }

    /// Rendezvous at rank 0's TCPStore and builds the backend. Blocks until
    /// all `world_size` ranks joined or the timeout passed.
    pub fn new(config: DistConfig) -> Result<Self> {
        if config.world_size == 0 || config.rank >= config.world_size {
            return Err(Error::Invalid(format!(
                "rank {} of world size {}",
                config.rank, config.world_size
            )));
        }
        let (backend, device) = match config.backend {
            Backend::Gloo => (0, Device::Cpu),
            Backend::Nccl => (1, Device::Cuda(config.local_rank)),
        };
        let cstr = |what: &str, s: &str| {
            CString::new(s)
                .map_err(|_| Error::Invalid(format!("{what} contains a NUL byte: {s:?}")))
        };
        let addr = cstr("MASTER_ADDR", &config.master_addr)?;
        let iface = cstr(
            "GLOO_SOCKET_IFNAME",
            config.gloo_interface.as_deref().unwrap_or(""),
        )?;
        let bind = if is_loopback(&config.master_addr) {
            "127.0.0.1"
        } else {
            ""
        };
        let bind = cstr("bind host", bind)?;
        let timeout_ms = i64::try_from(config.timeout.as_millis()).unwrap_or(i64::MAX);
        let world = c_int::try_from(config.world_size)
            .map_err(|_| Error::Invalid("world size too large".into()))?;
        let mut out: *mut ffi::BtePg = std::ptr::null_mut();
        // SAFETY: valid C strings and out-pointer for the duration of the call.
        let r = unsafe {
            ffi::bte_pg_new(
                addr.as_ptr(),
                c_int::from(config.master_port),
                config.rank as c_int,
                world,
                timeout_ms,
                backend,
                iface.as_ptr(),
                bind.as_ptr(),
                &mut out,
            )
        };
        ffi::check("process_group_new", r)?;
        let raw =
            NonNull::new(out).ok_or(Error::Unavailable("process group creation returned null"))?;
        Ok(ProcessGroup {
            raw,
            config,
            device,
        })
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.config.rank
    }

    /// Number of processes.
    pub fn world_size(&self) -> usize {
        self.config.world_size
    }

    /// Rank on this machine.
    pub fn local_rank(&self) -> usize {
        self.config.local_rank
    }

    /// Whether this is rank 0 (the one that logs and saves).
    pub fn is_main(&self) -> bool {
        self.config.rank == 0
    }

    /// The device this rank's tensors live on (CPU for Gloo, `cuda:LOCAL_RANK` for NCCL).
    pub fn device(&self) -> Device {
        self.device
    }

    /// The configuration it was built from.
    pub fn config(&self) -> &DistConfig {
        &self.config
    }

    /// In-place all-reduce of every tensor (one collective each, all in flight together).
    /// Tensors must be dense and contiguous; `Avg` divides floating tensors by the world size.
    pub fn allreduce(&self, tensors: &[&Tensor], op: ReduceOp) -> Result<()> {
        if tensors.is_empty() {
            return Ok(());
        }
        for t in tensors {
            if !t.is_contiguous() {
                return Err(Error::Invalid("allreduce needs contiguous tensors".into()));
            }
            if op == ReduceOp::Avg && !t.is_floating_point() {
                return Err(Error::Invalid(format!(
                    "ReduceOp::Avg needs a floating tensor, got {:?}",
                    t.kind()
                )));
            }
        }
        let ptrs: Vec<*mut ffi::CTensor> = tensors.iter().map(|t| ffi::raw(t)).collect();
        // SAFETY: live process group and tensors; the shim only reads the array.
        let r = unsafe {
            ffi::bte_pg_allreduce(self.raw.as_ptr(), ptrs.as_ptr(), ptrs.len(), op.code())
        };
        ffi::check("allreduce", r)?;
        if op == ReduceOp::Avg && self.world_size() > 1 {
            let n = self.world_size() as f64;
            for t in tensors {
                let mut t = t.shallow_clone();
                let _ = tch::no_grad(|| t.f_div_scalar_(n)).map_err(|source| Error::Tch {
                    op: "allreduce avg",
                    source,
                })?;
            }
        }
        Ok(())
    }

    /// In-place broadcast of every tensor from rank `root`.
    pub fn broadcast(&self, tensors: &[&Tensor], root: usize) -> Result<()> {
        if root >= self.world_size() {
            return Err(Error::Invalid(format!(
                "broadcast root {root} >= world size {}",
                self.world_size()
            )));
        }
        if tensors.iter().any(|t| !t.is_contiguous()) {
            return Err(Error::Invalid("broadcast needs contiguous tensors".into()));
        }
        if tensors.is_empty() {
            return Ok(());
        }
        let ptrs: Vec<*mut ffi::CTensor> = tensors.iter().map(|t| ffi::raw(t)).collect();
        // SAFETY: as in `allreduce`.
        let r = unsafe {
            ffi::bte_pg_broadcast(self.raw.as_ptr(), ptrs.as_ptr(), ptrs.len(), root as c_int)
        };
        ffi::check("broadcast", r)
    }

    /// A reduced copy of a metric (loss sum, correct count, ...), moved to this
    /// group's device for the collective and returned there.
    pub fn allreduce_metric(&self, t: &Tensor, op: ReduceOp) -> Result<Tensor> {
        let copy = t
            .f_to_device(self.device)
            .and_then(|c| c.f_contiguous())
            .and_then(|c| c.f_detach_copy())
            .map_err(|source| Error::Tch {
                op: "allreduce_metric",
                source,
            })?;
        self.allreduce(&[&copy], op)?;
        Ok(copy)
    }

    /// Blocks until every rank reached the barrier.
    pub fn barrier(&self) -> Result<()> {
        // SAFETY: live process group.
        ffi::check("barrier", unsafe { ffi::bte_pg_barrier(self.raw.as_ptr()) })
    }

    /// Copies every variable of `vs` (parameters and buffers, in name order)
    /// from rank `root`, in flattened buckets, so all ranks start identical.
    pub fn broadcast_parameters(&self, vs: &VarStore, root: usize) -> Result<()> {
        let vars = sorted_variables(vs, false);
        let buckets = plan_buckets(&vars, DEFAULT_BUCKET_BYTES);
        for b in &buckets {
            let flat = b.new_flat()?;
            b.pack(&vars, &flat, |t| Ok(t.shallow_clone()))?;
            self.broadcast(&[&flat], root)?;
            b.unpack(&vars, &flat, |t| Ok(t.shallow_clone()))?;
        }
        Ok(())
    }

    /// Averages the gradients of `vs`'s trainable variables over all ranks,
    /// in flattened buckets of [`DEFAULT_BUCKET_BYTES`]. A parameter without a
    /// gradient gets a zero one first, so every rank reduces the same buckets.
    /// For a training loop prefer a [`GradientReducer`] (reuses its buffers).
    pub fn allreduce_gradients(&self, vs: &VarStore) -> Result<()> {
        GradientReducer::new(vs, DEFAULT_BUCKET_BYTES)?.reduce(self)
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: created by bte_pg_new, freed once; the shim swallows C++ errors.
        unsafe { ffi::bte_pg_free(self.raw.as_ptr()) }
    }
}

/// Variables in name order (identical on every rank); trainable only if asked.
fn sorted_variables(vs: &VarStore, trainable_only: bool) -> Vec<Tensor> {
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named
        .into_iter()
        .filter(|(_, t)| !trainable_only || t.requires_grad())
        .map(|(_, t)| t)
        .collect()
}

#[derive(Debug)]
struct Bucket {
    kind: Kind,
    device: Device,
    /// (variable index, offset, numel)
    members: Vec<(usize, i64, i64)>,
    numel: i64,
}

fn plan_buckets(vars: &[Tensor], bucket_bytes: usize) -> Vec<Bucket> {
    let mut buckets: Vec<Bucket> = Vec::new();
    let mut open: Vec<usize> = Vec::new(); // indices into `buckets` still filling, one per (kind, device)
    for (i, v) in vars.iter().enumerate() {
        let (kind, device, numel) = (v.kind(), v.device(), v.numel() as i64);
        let elt = kind.elt_size_in_bytes() as i64;
        let slot = open
            .iter()
            .position(|&b| buckets[b].kind == kind && buckets[b].device == device);
        let b = match slot {
            Some(s)
                if buckets[open[s]].numel == 0
                    || (buckets[open[s]].numel + numel) * elt <= bucket_bytes as i64 =>
            {
                open[s]
            }
            _ => {
                buckets.push(Bucket {
                    kind,
                    device,
                    members: Vec::new(),
                    numel: 0,
                });
                let b = buckets.len() - 1;
                match slot {
                    Some(s) => open[s] = b,
                    None => open.push(b),
                }
                b
            }
        };
        let bucket = &mut buckets[b];
        bucket.members.push((i, bucket.numel, numel));
        bucket.numel += numel;
    }
    buckets
}

fn tch_err(op: &'static str) -> impl Fn(tch::TchError) -> Error {
    move |source| Error::Tch { op, source }
}

impl Bucket {
    fn new_flat(&self) -> Result<Tensor> {
        Tensor::f_empty([self.numel], (self.kind, self.device)).map_err(tch_err("bucket alloc"))
    }

    /// Copies `select(var)` of each member into its slice of `flat`.
    fn pack(
        &self,
        vars: &[Tensor],
        flat: &Tensor,
        select: impl Fn(&Tensor) -> Result<Tensor>,
    ) -> Result<()> {
        tch::no_grad(|| {
            for &(i, off, n) in &self.members {
                let src = select(&vars[i])?;
                let mut dst = flat
                    .f_narrow(0, off, n)
                    .and_then(|s| s.f_view_(src.size()))
                    .map_err(tch_err("bucket pack"))?;
                dst.f_copy_(&src).map_err(tch_err("bucket pack"))?;
            }
            Ok(())
        })
    }

    /// Copies each member's slice of `flat` back into `select(var)`.
    fn unpack(
        &self,
        vars: &[Tensor],
        flat: &Tensor,
        select: impl Fn(&Tensor) -> Result<Tensor>,
    ) -> Result<()> {
        tch::no_grad(|| {
            for &(i, off, n) in &self.members {
                let mut dst = select(&vars[i])?;
                let src = flat
                    .f_narrow(0, off, n)
                    .and_then(|s| s.f_view_(dst.size()))
                    .map_err(tch_err("bucket unpack"))?;
                dst.f_copy_(&src).map_err(tch_err("bucket unpack"))?;
            }
            Ok(())
        })
    }
}

/// Averages gradients over ranks in flattened buckets, reusing its bucket
/// buffers across steps. Build it once after the model (and after any dtype
/// or layout conversion of `vs`), call [`reduce`](Self::reduce) after each
/// backward pass, before the optimizer step.
#[derive(Debug)]
pub struct GradientReducer {
    params: Vec<Tensor>,
    buckets: Vec<Bucket>,
    flats: Vec<Tensor>,
}

impl GradientReducer {
    /// Plans buckets of about `bucket_bytes` over `vs`'s trainable variables (name order).
    pub fn new(vs: &VarStore, bucket_bytes: usize) -> Result<Self> {
        if bucket_bytes == 0 {
            return Err(Error::Invalid("bucket size must be positive".into()));
        }
        let params = sorted_variables(vs, true);
        let buckets = plan_buckets(&params, bucket_bytes);
        let flats = buckets
            .iter()
            .map(Bucket::new_flat)
            .collect::<Result<Vec<_>>>()?;
        Ok(GradientReducer {
            params,
            buckets,
            flats,
        })
    }

    /// Number of buckets.
    pub fn num_buckets(&self) -> usize {
        self.buckets.len()
    }

    /// Total gradient bytes reduced per call.
    pub fn total_bytes(&self) -> usize {
        self.buckets
            .iter()
            .map(|b| b.numel as usize * b.kind.elt_size_in_bytes())
            .sum()
    }

    /// All-reduces (averages) every trainable variable's gradient in place.
    pub fn reduce(&self, pg: &ProcessGroup) -> Result<()> {
        for p in &self.params {
            let mut created = 0;
            // SAFETY: live variable; the shim only sets an undefined grad.
            ffi::check("ensure_grad", unsafe {
                ffi::bte_ensure_grad(ffi::raw(p), &mut created)
            })?;
        }
        let grad = |t: &Tensor| Ok(t.grad());
        for (b, flat) in self.buckets.iter().zip(&self.flats) {
            b.pack(&self.params, flat, grad)?;
        }
        let flats: Vec<&Tensor> = self.flats.iter().collect();
        let floating: Vec<&Tensor> = flats
            .iter()
            .copied()
            .filter(|t| t.is_floating_point())
            .collect();
        let other: Vec<&Tensor> = flats
            .iter()
            .copied()
            .filter(|t| !t.is_floating_point())
            .collect();
        pg.allreduce(&floating, ReduceOp::Avg)?;
        pg.allreduce(&other, ReduceOp::Sum)?;
        for (b, flat) in self.buckets.iter().zip(&self.flats) {
            b.unpack(&self.params, flat, grad)?;
        }
        Ok(())
    }
}
