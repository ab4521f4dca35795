//! cuda/driver.rs — the CUDA driver side (feature `cuda`): probing for a driver without ever
//! panicking, [`CudaDevice`] (a context, its module cache, compute capability), loading each
//! kernel module from the best image this build has (CUBIN for the device's architecture, else
//! PTX for the driver to JIT, else NVRTC at run time for the exact architecture, cached), and
//! [`CudaExec`], the [`Exec`] on a CUDA stream, with its buffers ([`DevBuf`]: stream-ordered,
//! without cudarc's events) and the lending of a caller's `CudaSlice` to its launches ([`Lent`]).
//! `CudaExec::launch` is the only kernel launch site.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::driver::{
    result as cu, sys, CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr,
    DevicePtrMut, DriverError, LaunchConfig, PushKernelArg, SyncOnDrop,
};
use cudarc::nvrtc::Ptx;

use super::exec::{Elem, Exec, Grid};
use super::nvrtc_compile::{self, Target};
use super::params::{KernelParams, TmaMap};
use super::registry::{self, KernelId, Module};
use crate::error::{Error, Result};

fn drv(context: impl Into<String>, e: DriverError) -> Error {
    // The code's name only: formatting through cuGetErrorString would call into the driver.
    Error::Cuda {
        context: context.into(),
        detail: format!("{:?}", e.0),
    }
}

/// Run a driver call that may panic inside cudarc (a missing library or symbol) as a `Result`.
fn guarded<T>(
    what: &str,
    f: impl FnOnce() -> std::result::Result<T, DriverError>,
) -> std::result::Result<T, String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what} failed: {:?}", e.0)),
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into());
            Err(format!("{what} failed inside the CUDA bindings: {msg}"))
        }
    }
}

/// Whether `libcuda` can be loaded (cached; a `dlopen` of each candidate name).
pub fn driver_library_present() -> bool {
    static PRESENT: OnceLock<bool> = OnceLock::new();
    // SAFETY: `is_culib_present` only dlopens candidate names and drops the handles.
    *PRESENT.get_or_init(|| unsafe { sys::is_culib_present() })
}

/// The number of CUDA devices, or why there are none usable. Never panics: libcuda's presence is
/// probed before cudarc touches it, and the first driver calls run under `catch_unwind`.
pub fn probe() -> std::result::Result<usize, String> {
    static PROBE: OnceLock<std::result::Result<usize, String>> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            if !driver_library_present() {
                return Err("no NVIDIA driver: libcuda.so could not be loaded".into());
            }
            guarded("cuInit", cu::init)?;
            let n = guarded("cuDeviceGetCount", cu::device::get_count)?;
            if n <= 0 {
                return Err("the NVIDIA driver is present but reports no CUDA device".into());
            }
            Ok(n as usize)
        })
        .clone()
}

/// Where a module's code came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelImage {
    /// A CUBIN compiled at build time for this architecture family.
    Cubin,
    /// PTX (`compute_61`) compiled at build time, JIT-compiled by the driver.
    Ptx,
    /// The source compiled by NVRTC at run time for this exact architecture.
    Nvrtc,
    /// The source compiled by NVRTC at run time as PTX for an older architecture,
    /// `compute_<cc>`, JIT-compiled by the driver ([`KernelSource::NvrtcPtx`]).
    NvrtcPtx(u32),
}

/// Which images a device may load, in order of preference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum KernelSource {
    /// CUBIN, else PTX, else NVRTC at run time.
    #[default]
    Auto,
    /// Only the build-time CUBIN.
    Cubin,
    /// Only the build-time PTX.
    Ptx,
    /// Only NVRTC at run time.
    Nvrtc,
    /// NVRTC at run time, as PTX for `compute_<cc>` that the driver JIT-compiles for this GPU:
    /// the code an older architecture runs, on a newer card — how the tensor-core kernels'
    /// sm_75 build (synchronous copies, each m16n8k32 as four m8n8k16) is checked on an sm_80+
    /// GPU, there being no Turing card to check it on. A module that needs a newer architecture
    /// than `cc` (or runs on its own architecture alone) loads as with `Auto`.
    NvrtcPtx(u32),
}

struct Inner {
    ctx: Arc<CudaContext>,
    ordinal: usize,
    name: String,
    cc: (i32, i32),
    sms: u32,
    /// Stream-ordered allocation from memory pools is supported (cudarc asks the same).
    pools: bool,
    source: KernelSource,
    modules: Mutex<HashMap<Module, (Arc<CudaModule>, KernelImage)>>,
    /// Each loaded function, with the dynamic shared memory it has been allowed (bytes).
    functions: Mutex<HashMap<KernelId, (CudaFunction, u32)>>,
    /// Whether `kernels/gemm_wgmma.cu` loads here (asked once: `Auto`'s large tiles on sm_90).
    wgmma: OnceLock<bool>,
    /// The layers' non-finite report words, a ring per stream (`cuda/reports.rs`).
    reports: super::reports::ReportRings<CudaExec>,
}

/// One CUDA device: its primary context, name, compute capability, and the kernel modules
/// loaded into it (on first use). Cheap to clone (shared).
#[derive(Clone)]
pub struct CudaDevice {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for CudaDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CudaDevice({}: {}, sm_{}{})",
            self.inner.ordinal, self.inner.name, self.inner.cc.0, self.inner.cc.1
        )
    }
}

impl CudaDevice {
    /// Open device `ordinal`: `Err(CudaUnavailable)` with the reason when there is no driver,
    /// no such device, or the device is older than sm_61 (dp4a).
    pub fn new(ordinal: usize) -> Result<Self> {
        Self::with_source(ordinal, KernelSource::Auto)
    }

    /// [`CudaDevice::new`] restricted to one kind of kernel image (tests use this to exercise
    /// each loading path).
    pub fn with_source(ordinal: usize, source: KernelSource) -> Result<Self> {
        let count = probe().map_err(Error::CudaUnavailable)?;
        if ordinal >= count {
            return Err(Error::CudaUnavailable(format!(
                "CUDA device {ordinal} requested, {count} present"
            )));
        }
        let ctx = guarded("creating the CUDA context", || CudaContext::new(ordinal))
            .map_err(Error::CudaUnavailable)?;
        let cc = ctx
            .compute_capability()
            .map_err(|e| drv("cuDeviceGetAttribute", e))?;
        let name = ctx.name().unwrap_or_else(|_| "unknown".into());
        let sms = ctx
            .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(|e| drv("cuDeviceGetAttribute", e))?
            .max(1) as u32;
        let pools = ctx
            .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED)
            .map_err(|e| drv("cuDeviceGetAttribute", e))?
            > 0;
        if cc.0 * 10 + cc.1 < 61 {
            return Err(Error::CudaUnavailable(format!(
                "{name} has compute capability {}.{}; the dp4a kernels need 6.1 or newer",
                cc.0, cc.1
            )));
        }
        Ok(CudaDevice {
            inner: Arc::new(Inner {
                ctx,
                ordinal,
                name,
                cc,
                sms,
                pools,
                source,
                modules: Mutex::new(HashMap::new()),
                functions: Mutex::new(HashMap::new()),
                wgmma: OnceLock::new(),
                reports: super::reports::ReportRings::new(),
            }),
        })
    }

    /// The device ordinal.
    pub fn ordinal(&self) -> usize {
        self.inner.ordinal
    }
    /// The device name (`NVIDIA H100 80GB HBM3`, ...).
    pub fn name(&self) -> &str {
        &self.inner.name
    }
    /// `(major, minor)` compute capability.
    pub fn compute_capability(&self) -> (i32, i32) {
        self.inner.cc
    }
    /// Streaming multiprocessors.
    pub fn sm_count(&self) -> u32 {
        self.inner.sms
    }
    /// The primary context (to allocate buffers for [`crate::cuda::CudaQuantLinear::forward_device`]).
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.inner.ctx
    }
    /// A new stream on this device.
    pub fn new_stream(&self) -> Result<Arc<CudaStream>> {
        self.inner
            .ctx
            .new_stream()
            .map_err(|e| drv("cuStreamCreate", e))
    }
    /// The context's default stream.
    pub fn default_stream(&self) -> Arc<CudaStream> {
        self.inner.ctx.default_stream()
    }

    /// Whether the sm_90a `wgmma` kernels run on this device: it is sm_90 and their module
    /// loads from the kernel source it was opened with (there is no PTX of them, so
    /// [`KernelSource::Ptx`] leaves them out). Asked once per device; `GemmKernel::Auto`'s
    /// large tiles on Hopper depend on it.
    pub fn wgmma_available(&self) -> bool {
        let (major, minor) = self.inner.cc;
        *self
            .inner
            .wgmma
            .get_or_init(|| major * 10 + minor == 90 && self.module(Module::GemmWgmma).is_ok())
    }

    /// Load `m` (if not yet loaded) and say which image it came from.
    pub fn module_image(&self, m: Module) -> Result<KernelImage> {
        self.module(m).map(|(_, img)| img)
    }

    fn module(&self, m: Module) -> Result<(Arc<CudaModule>, KernelImage)> {
        let mut cache = self.inner.modules.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = cache.get(&m) {
            return Ok(v.clone());
        }
        let v = self.load(m)?;
        cache.insert(m, v.clone());
        Ok(v)
    }

    fn load(&self, m: Module) -> Result<(Arc<CudaModule>, KernelImage)> {
        let (maj, min) = self.inner.cc;
        let cc = (maj * 10 + min) as u32;
        if cc < m.min_arch() || (m.arch_specific() && cc != m.min_arch()) {
            return Err(Error::Cuda {
                context: format!(
                    "loading kernels/{} on {} (sm_{cc})",
                    m.file(),
                    self.inner.name
                ),
                detail: if m.arch_specific() {
                    format!(
                        "its kernels use sm_{0}a features and run on sm_{0} alone",
                        m.min_arch()
                    )
                } else {
                    format!("its kernels need sm_{} or newer", m.min_arch())
                },
            });
        }
        let mut tried = Vec::new();
        let mut src = self.inner.source;
        let load = |bytes: Vec<u8>| {
            self.inner
                .ctx
                .load_module(Ptx::from_binary(bytes))
                .map_err(|e| format!("{:?}", e.0))
        };
        if let KernelSource::NvrtcPtx(old) = src {
            if old >= m.min_arch() && !m.arch_specific() && old <= cc {
                let md = runtime_image(m, Target::Ptx(old)).and_then(|b| {
                    load(b).map_err(|e| Error::Cuda {
                        context: format!("loading kernels/{} as compute_{old} PTX", m.file()),
                        detail: e,
                    })
                })?;
                return Ok((md, KernelImage::NvrtcPtx(old)));
            }
            src = KernelSource::Auto;
        }
        if matches!(src, KernelSource::Auto | KernelSource::Cubin) {
            // A CUBIN runs on its own major architecture at the same or a later minor revision.
            let cubin = registry::CUBIN_ARCHS
                .iter()
                .rev()
                .find(|&&a| a / 10 == cc / 10 && a <= cc)
                .and_then(|&a| m.cubin(a));
            match cubin {
                Some(b) => match load(b.to_vec()) {
                    Ok(md) => return Ok((md, KernelImage::Cubin)),
                    Err(e) => tried.push(format!("CUBIN: {e}")),
                },
                None => tried.push(format!(
                    "CUBIN: none built for sm_{cc} ({})",
                    registry::BUILD_NOTE
                )),
            }
        }
        if matches!(src, KernelSource::Auto | KernelSource::Ptx) {
            match m.ptx().filter(|_| cc >= m.ptx_arch()) {
                Some(p) => match load(p.to_vec()) {
                    Ok(md) => return Ok((md, KernelImage::Ptx)),
                    // The driver refuses PTX newer than itself (CUDA_ERROR_UNSUPPORTED_PTX_VERSION).
                    Err(e) => tried.push(format!("PTX compute_{}: {e}", m.ptx_arch())),
                },
                None => tried.push(format!(
                    "PTX: none built for sm_{cc} ({})",
                    registry::BUILD_NOTE
                )),
            }
        }
        if matches!(src, KernelSource::Auto | KernelSource::Nvrtc) {
            let target = if m.arch_specific() {
                Target::CubinArchSpecific(cc)
            } else {
                Target::Cubin(cc)
            };
            match runtime_image(m, target) {
                Ok(b) => match load(b) {
                    Ok(md) => return Ok((md, KernelImage::Nvrtc)),
                    Err(e) => tried.push(format!("NVRTC sm_{cc}: loading failed: {e}")),
                },
                Err(e @ Error::Nvrtc { .. }) => return Err(e),
                Err(e) => tried.push(format!("NVRTC: {e}")),
            }
        }
        Err(Error::Cuda {
            context: format!(
                "loading kernels/{} on {} (sm_{cc})",
                m.file(),
                self.inner.name
            ),
            detail: tried.join("; "),
        })
    }

    /// Kernel `k`, allowed at least `smem` bytes of dynamic shared memory (the opt-in above the
    /// default 48 KiB is set once per function).
    fn function(&self, k: KernelId, smem: u32) -> Result<CudaFunction> {
        const DEFAULT_SMEM: u32 = 48 << 10;
        let cached = self
            .inner
            .functions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&k)
            .cloned();
        let (f, allowed) = match cached {
            Some(v) => v,
            None => {
                let (md, _) = self.module(k.module())?;
                let f = md
                    .load_function(k.name())
                    .map_err(|e| drv(format!("cuModuleGetFunction({})", k.name()), e))?;
                (f, DEFAULT_SMEM)
            }
        };
        let allowed = if smem > allowed {
            f.set_attribute(
                sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                smem as i32,
            )
            .map_err(|e| {
                drv(
                    format!("allowing {} {smem} bytes of shared memory", k.name()),
                    e,
                )
            })?;
            smem
        } else {
            allowed
        };
        self.inner
            .functions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(k, (f.clone(), allowed));
        Ok(f)
    }

    /// Wait for all work on the device's streams (errors ignored: for owners of shared
    /// [`DevBuf`]s, which free them stream-ordered on the stream that uploaded them, when
    /// dropped).
    pub(crate) fn quiesce(&self) {
        let _ = self.inner.ctx.synchronize();
    }

    /// An executor on `stream` (which must belong to this device's context).
    pub(crate) fn exec(&self, stream: &Arc<CudaStream>) -> Result<CudaExec> {
        if !Arc::ptr_eq(stream.context(), &self.inner.ctx) {
            return Err(Error::Cuda {
                context: "stream".into(),
                detail: format!(
                    "the stream belongs to another context than device {}",
                    self.inner.ordinal
                ),
            });
        }
        Ok(CudaExec {
            dev: self.clone(),
            stream: stream.clone(),
        })
    }
}

/// NVRTC at run time: `target` (a CUBIN for exactly this GPU's architecture, or PTX for an
/// older one), compiled once per process per module and target.
fn runtime_image(m: Module, target: Target) -> Result<Vec<u8>> {
    type Cache = Mutex<HashMap<(Module, Target), Vec<u8>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    static NVRTC: OnceLock<bool> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(b) = cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&(m, target))
    {
        return Ok(b.clone());
    }
    if !*NVRTC.get_or_init(nvrtc_compile::nvrtc_present) {
        return Err(Error::CudaUnavailable(
            "libnvrtc could not be loaded for the run-time kernel compile (install the CUDA toolkit's NVRTC or nvidia-cuda-nvrtc-cu12 and add it to LD_LIBRARY_PATH)".into(),
        ));
    }
    let c =
        nvrtc_compile::compile(m.file(), m.source(), registry::HEADERS, target).map_err(|f| {
            Error::Nvrtc {
                kernel: m.file().to_string(),
                options: f.options,
                log: f.log,
            }
        })?;
    cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert((m, target), c.image.clone());
    Ok(c.image)
}

/// A device buffer of the backend's own (weights, scratch, report words): its address and
/// length, and the stream it was allocated on, on which it is freed (stream-ordered) when
/// dropped. It carries none of cudarc's per-buffer events: a forward's internal buffers are used
/// on one stream — per-stream scratch on the stream it is kept for (keyed by the stream's
/// handle), weights uploaded and synchronized before any forward and freed after the owner
/// synchronized the context ([`CudaQuantLinear`](super::CudaQuantLinear) and
/// [`CudaWeights`](super::CudaWeights) do so when dropped) — so event tracking would only add
/// driver calls: with it, a forward's 1 × 4096² on the H100 took 11.6 µs longer (49.7 against
/// 38.1 µs, `bench/data/gpu-h100-2026-11-26/latency.log`), and the simulated driver counted 13
/// event records and 18 event waits per forward, all but five for internal buffers.
///
/// A caller's `CudaSlice` is lent to a launch as a [`Lent`], which keeps cudarc's record of the
/// use (its events, when tracking is on) until it is dropped, after the launches that use it.
pub(crate) struct DevBuf<T> {
    ptr: u64,
    len: usize,
    /// `Some`: allocated here, freed on this stream when dropped; `None`: a caller's buffer.
    owner: Option<Arc<CudaStream>>,
    /// Allocated from the device's memory pool (`cuMemAllocAsync`), else by `cuMemAlloc` on a
    /// device without pools (freed by `cuMemFree`, as cudarc does there).
    pooled: bool,
    _t: std::marker::PhantomData<T>,
}

impl<T> Drop for DevBuf<T> {
    fn drop(&mut self) {
        if let Some(stream) = self.owner.take() {
            // Errors cannot be returned from drop; cudarc's own buffers ignore them the same way
            // (a failed free leaks the allocation).
            if stream.context().bind_to_thread().is_ok() {
                // SAFETY: `ptr` came from the allocation call `pooled` names and is freed once
                // (owner taken); the free is ordered after every use on `stream`, the only
                // stream that used it or, for shared buffers, after the owner synchronized the
                // context.
                let _ = unsafe {
                    if self.pooled {
                        cu::free_async(self.ptr, stream.cu_stream())
                    } else {
                        cu::free_sync(self.ptr)
                    }
                };
            }
        }
    }
}

/// A caller's buffer lent to the kernel wrappers: a [`DevBuf`] that is not freed, with the
/// guard of cudarc's use record (for a read: the stream waited for the buffer's last write; when
/// dropped, the read is recorded; for a write, both), so keep it until the launches using the
/// buffer are enqueued.
pub(crate) struct Lent<'a, T> {
    buf: DevBuf<T>,
    _use: SyncOnDrop<'a>,
}

impl<T> std::ops::Deref for Lent<'_, T> {
    type Target = DevBuf<T>;
    fn deref(&self) -> &DevBuf<T> {
        &self.buf
    }
}

impl<T> std::ops::DerefMut for Lent<'_, T> {
    fn deref_mut(&mut self) -> &mut DevBuf<T> {
        &mut self.buf
    }
}

impl<'a, T> Lent<'a, T> {
    /// Lend `s` for kernels on `stream` that read it.
    pub(crate) fn read(stream: &'a CudaStream, s: &'a CudaSlice<T>) -> Self {
        let (ptr, g) = s.device_ptr(stream);
        Lent {
            buf: DevBuf::borrowed(ptr, s.len()),
            _use: g,
        }
    }
    /// Lend `s` for kernels on `stream` that write it.
    pub(crate) fn write(stream: &'a CudaStream, s: &'a mut CudaSlice<T>) -> Self {
        let len = s.len();
        let (ptr, g) = s.device_ptr_mut(stream);
        Lent {
            buf: DevBuf::borrowed(ptr, len),
            _use: g,
        }
    }
    /// The buffer and the use record apart (for a holder that keeps both, the guard dropped
    /// last).
    pub(crate) fn into_parts(self) -> (DevBuf<T>, SyncOnDrop<'a>) {
        (self.buf, self._use)
    }
}

impl<T> DevBuf<T> {
    fn borrowed(ptr: u64, len: usize) -> Self {
        DevBuf {
            ptr,
            len,
            owner: None,
            pooled: false,
            _t: std::marker::PhantomData,
        }
    }
}

/// The [`Exec`] of a CUDA stream.
pub(crate) struct CudaExec {
    dev: CudaDevice,
    stream: Arc<CudaStream>,
}

impl CudaExec {
    /// Lend `s` for kernels on this stream that read it.
    pub(crate) fn lend<'a, T>(&'a self, s: &'a CudaSlice<T>) -> Lent<'a, T> {
        Lent::read(&self.stream, s)
    }
    /// Lend `s` for kernels on this stream that write it.
    pub(crate) fn lend_mut<'a, T>(&'a self, s: &'a mut CudaSlice<T>) -> Lent<'a, T> {
        Lent::write(&self.stream, s)
    }
    /// `len` elements of device memory (one byte at least) allocated on this stream.
    fn raw_alloc<T: Elem>(&self, len: usize) -> Result<DevBuf<T>> {
        let bytes = len
            .checked_mul(std::mem::size_of::<T>())
            .ok_or_else(|| Error::param("device buffer", format!("{len} elements overflow")))?;
        self.bind()?;
        let pooled = self.dev.inner.pools;
        // SAFETY: the context is current on this thread; the size is nonzero.
        let ptr = unsafe {
            if pooled {
                cu::malloc_async(self.stream.cu_stream(), bytes.max(1))
            } else {
                cu::malloc_sync(bytes.max(1))
            }
        }
        .map_err(|e| drv("cuMemAlloc", e))?;
        Ok(DevBuf {
            ptr,
            len,
            owner: Some(self.stream.clone()),
            pooled,
            _t: std::marker::PhantomData,
        })
    }
    fn bind(&self) -> Result<()> {
        self.stream
            .context()
            .bind_to_thread()
            .map_err(|e| drv("binding the context", e))
    }
}

impl Exec for CudaExec {
    type Buf<T: Elem> = DevBuf<T>;
    type Guard<'a> = ();

    fn alloc<T: Elem>(&self, len: usize) -> Result<DevBuf<T>> {
        let b = self.raw_alloc::<T>(len)?;
        // SAFETY: `b` holds at least `len · size_of::<T>()` bytes (one at least), set in stream
        // order after the allocation.
        unsafe {
            cu::memset_d8_async(
                b.ptr,
                0,
                (len * std::mem::size_of::<T>()).max(1),
                self.stream.cu_stream(),
            )
        }
        .map_err(|e| drv("cuMemsetD8Async", e))?;
        Ok(b)
    }
    fn alloc_scratch<T: Elem>(&self, len: usize) -> Result<DevBuf<T>> {
        // Unspecified contents: `T: Elem` is plain data (`bytemuck::Pod`), every bit pattern is
        // a valid `T`; kernels write scratch before reading it.
        self.raw_alloc::<T>(len)
    }
    fn arch(&self) -> u32 {
        let (major, minor) = self.dev.inner.cc;
        (major * 10 + minor) as u32
    }
    fn sm_count(&self) -> u32 {
        self.dev.inner.sms
    }
    fn wgmma_available(&self) -> bool {
        self.dev.wgmma_available()
    }
    fn stream_key(&self) -> usize {
        // The driver's stream handle, not the `Arc` around it: cudarc's `default_stream()`
        // wraps the same null stream in a new `Arc` on every call, so keying by the `Arc` missed
        // every per-stream cache on `forward` (the simulated driver's census found a host-slice
        // forward allocating 6 buffers). A created stream's handle cannot be reused while a
        // cached buffer lives: the buffer holds its stream. The one handle that names a
        // different stream on each thread, the per-thread default stream
        // (`CU_STREAM_PER_THREAD`, 0x2, cudarc's `per_thread_stream()`), is keyed per thread: a
        // number no other thread gets, with the top bit set (no handle, a pointer, has it).
        const PER_THREAD: usize = 0x2;
        let h = self.stream.cu_stream() as usize;
        if h != PER_THREAD {
            return h;
        }
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        thread_local! {
            static THREAD: usize = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        (1 << (usize::BITS - 1)) | THREAD.with(|t| *t)
    }
    fn report_rings(&self) -> &super::reports::ReportRings<CudaExec> {
        &self.dev.inner.reports
    }
    fn tensor_map(
        &self,
        addr: u64,
        rows: usize,
        cols: usize,
        ld: usize,
        box_rows: usize,
    ) -> Result<TmaMap> {
        use sys::{
            CUtensorMapDataType, CUtensorMapFloatOOBfill, CUtensorMapInterleave,
            CUtensorMapL2promotion, CUtensorMapSwizzle,
        };
        let dims = [cols.max(1) as u64, rows.max(1) as u64];
        let strides = [ld as u64];
        let boxes = [128u32, box_rows as u32];
        let element_strides = [1u32, 1];
        let mut map = std::mem::MaybeUninit::<sys::CUtensorMap>::zeroed();
        // (under `guarded`: a driver older than CUDA 12 lacks the symbol, which cudarc's
        // dynamic loading reports by panicking; the shape is formatted only for an error)
        guarded("cuTensorMapEncodeTiled", || {
            // SAFETY: `map` is writable for one CUtensorMap; the dimension, stride, box and
            // element stride arrays hold rank (2) and rank − 1 entries as the call reads; the
            // driver validates every value (alignment, sizes) and reports a violation as an
            // error code.
            unsafe {
                sys::cuTensorMapEncodeTiled(
                    map.as_mut_ptr(),
                    CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_UINT8,
                    2,
                    addr as *mut std::ffi::c_void,
                    dims.as_ptr(),
                    strides.as_ptr(),
                    boxes.as_ptr(),
                    element_strides.as_ptr(),
                    CUtensorMapInterleave::CU_TENSOR_MAP_INTERLEAVE_NONE,
                    CUtensorMapSwizzle::CU_TENSOR_MAP_SWIZZLE_128B,
                    CUtensorMapL2promotion::CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                    CUtensorMapFloatOOBfill::CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE,
                )
            }
            .result()
        })
        .map_err(|detail| Error::Cuda {
            context: format!(
                "encoding a TMA tensor map ({rows} × {cols} bytes, ld {ld}, box {box_rows} × 128)"
            ),
            detail,
        })?;
        // SAFETY: initialized by the successful call above.
        let map = unsafe { map.assume_init() };
        Ok(TmaMap { bits: map.opaque })
    }
    fn upload<T: Elem>(&self, src: &[T]) -> Result<DevBuf<T>> {
        let mut b = self.raw_alloc::<T>(src.len())?;
        self.write(&mut b, src)?;
        Ok(b)
    }
    fn write<T: Elem>(&self, dst: &mut DevBuf<T>, src: &[T]) -> Result<()> {
        if src.len() > dst.len {
            return Err(Error::shape("device write", dst.len, src.len()));
        }
        if src.is_empty() {
            return Ok(());
        }
        self.bind()?;
        // SAFETY: `dst` holds at least `src.len()` elements; a copy from pageable memory has
        // read `src` when the call returns (the driver stages it), so `src` may be reused.
        unsafe { cu::memcpy_htod_async(dst.ptr, src, self.stream.cu_stream()) }
            .map_err(|e| drv("cuMemcpyHtoD", e))
    }
    fn read<T: Elem>(&self, src: &DevBuf<T>, dst: &mut [T]) -> Result<()> {
        if dst.len() > src.len {
            return Err(Error::shape("device read", src.len, dst.len()));
        }
        if !dst.is_empty() {
            self.bind()?;
            // SAFETY: `src` holds at least `dst.len()` elements; `dst` is written by the time the
            // stream synchronizes below, and not touched before.
            unsafe { cu::memcpy_dtoh_async(dst, src.ptr, self.stream.cu_stream()) }
                .map_err(|e| drv("cuMemcpyDtoH", e))?;
        }
        self.stream
            .synchronize()
            .map_err(|e| drv("cuStreamSynchronize", e))
    }
    fn len<T: Elem>(b: &DevBuf<T>) -> usize {
        b.len
    }
    fn addr<'a, T: Elem>(&'a self, b: &'a DevBuf<T>) -> (u64, ()) {
        (b.ptr, ())
    }
    fn addr_mut<'a, T: Elem>(&'a self, b: &'a mut DevBuf<T>) -> (u64, ()) {
        (b.ptr, ())
    }
    unsafe fn launch<P: KernelParams>(&self, k: KernelId, g: Grid, p: &P) -> Result<()> {
        if k.params() != P::NAME {
            return Err(Error::Cuda {
                context: format!("launch of {}", k.name()),
                detail: format!("takes {}, given {}", k.params(), P::NAME),
            });
        }
        let f = self.dev.function(k, g.smem)?;
        let cfg = LaunchConfig {
            grid_dim: (g.grid[0], g.grid[1], g.grid[2]),
            block_dim: (g.block[0], g.block[1], g.block[2]),
            shared_mem_bytes: g.smem,
        };
        // SAFETY: the caller (cuda::ops) guarantees that every address in `p` is a live buffer
        // of this stream's context, held by a guard until after this call, and large enough for
        // every index the kernel forms; `p` is the kernel's parameter block (checked above by
        // name against the registry), passed by value.
        unsafe { self.stream.launch_builder(&f).arg(p).launch(cfg) }
            .map(|_| ())
            .map_err(|e| drv(format!("launching {}", k.name()), e))
    }

    unsafe fn launch_overlapped<P: KernelParams>(&self, k: KernelId, g: Grid, p: &P) -> Result<()> {
        // Only a kernel that waits for its predecessor, on sm_90 or newer, from an image built
        // for its architecture: the wait is compiled in for sm_90 and up, so code JIT-compiled
        // from older PTX (the build's compute_80, or NVRTC's for an older architecture) lacks it.
        let (_, image) = self.dev.module(k.module())?;
        if !k.waits_for_predecessor()
            || self.dev.inner.cc.0 < 9
            || matches!(image, KernelImage::Ptx | KernelImage::NvrtcPtx(_))
        {
            // SAFETY: the caller's guarantees are those of `launch`.
            return unsafe { self.launch(k, g, p) };
        }
        if k.params() != P::NAME {
            return Err(Error::Cuda {
                context: format!("launch of {}", k.name()),
                detail: format!("takes {}, given {}", k.params(), P::NAME),
            });
        }
        let f = self.dev.function(k, g.smem)?;
        // SAFETY: an all-zero attribute value is valid plain data (a C union of integers).
        let mut attr = sys::CUlaunchAttribute {
            id: sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION,
            pad: [0; 4],
            value: unsafe { std::mem::zeroed() },
        };
        attr.value.programmaticStreamSerializationAllowed = 1;
        let cfg = sys::CUlaunchConfig {
            gridDimX: g.grid[0],
            gridDimY: g.grid[1],
            gridDimZ: g.grid[2],
            blockDimX: g.block[0],
            blockDimY: g.block[1],
            blockDimZ: g.block[2],
            sharedMemBytes: g.smem,
            hStream: self.stream.cu_stream(),
            attrs: &mut attr,
            numAttrs: 1,
        };
        let mut arg = (p as *const P).cast_mut().cast::<std::ffi::c_void>();
        self.stream
            .context()
            .bind_to_thread()
            .map_err(|e| drv("binding the context", e))?;
        // SAFETY: `f` is a live function of this context taking one parameter, `P` (checked by
        // name above), passed by pointer as the driver's kernelParams array of one; `cfg` names
        // this executor's stream and a valid attribute for the call's duration; the caller
        // guarantees every address inside `p` (as for `launch`).
        unsafe { sys::cuLaunchKernelEx(&cfg, f.cu_function(), &mut arg, std::ptr::null_mut()) }
            .result()
            .map_err(|e| drv(format!("launching {} overlapped", k.name()), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether libnvrtc loads here (a test that needs it is skipped, with a line, when not —
    /// unless `INT8RT_REQUIRE_NVRTC=1`, as in CI, makes that a failure).
    fn nvrtc_here() -> bool {
        if nvrtc_compile::nvrtc_present() {
            return true;
        }
        assert!(
            std::env::var("INT8RT_REQUIRE_NVRTC").as_deref() != Ok("1"),
            "INT8RT_REQUIRE_NVRTC=1 but libnvrtc cannot be loaded"
        );
        eprintln!("libnvrtc not found; run-time compile test skipped");
        false
    }

    #[test]
    fn runtime_nvrtc_compiles_every_module_from_the_embedded_sources() {
        // The run-time fallback (no CUBIN or PTX for this GPU): the embedded sources and headers
        // compile for an architecture the build did not target, and the result is a CUBIN.
        if !nvrtc_here() {
            return;
        }
        for &m in Module::ALL {
            // sm_86 for the portable modules; an architecture-specific one (sm_90a) can only
            // be compiled for its own architecture.
            let target = if m.arch_specific() {
                Target::CubinArchSpecific(m.min_arch())
            } else {
                Target::Cubin(86)
            };
            let cubin = runtime_image(m, target).unwrap_or_else(|e| panic!("{}: {e}", m.file()));
            assert!(
                cubin.starts_with(b"\x7fELF"),
                "{}: not an ELF CUBIN",
                m.file()
            );
            // Cached: the second request returns the same image.
            assert_eq!(runtime_image(m, target).unwrap(), cubin);
        }
    }

    #[test]
    fn runtime_ptx_for_sm75_is_the_turing_build_of_the_tensor_core_kernels() {
        // KernelSource::NvrtcPtx(75): the tensor-core modules as compute_75 PTX carry their sm_75
        // code — m8n8k16 (four per m16n8k32) and no cp.async — which a newer GPU JIT-compiles
        // and runs; the build's own PTX for them is sm_80's (m16n8k32, cp.async).
        if !nvrtc_here() {
            return;
        }
        for m in [Module::GemmMma, Module::GemvMma] {
            assert_eq!(m.min_arch(), 75, "{}", m.file());
            assert_eq!(m.ptx_arch(), 80, "{}", m.file());
            let ptx = runtime_image(m, Target::Ptx(75)).unwrap();
            let text = String::from_utf8_lossy(&ptx);
            assert!(text.contains(".target sm_75"), "{}", m.file());
            let m8 = text.matches("mma.sync.aligned.m8n8k16").count();
            assert!(m8 > 0, "{}: no m8n8k16", m.file());
            assert!(
                !text.contains("m16n8k32"),
                "{}: m16n8k32 in sm_75 code",
                m.file()
            );
            assert!(
                !text.contains("cp.async"),
                "{}: cp.async in sm_75 code",
                m.file()
            );
            if let Some(own) = m.ptx() {
                let own = String::from_utf8_lossy(own);
                assert!(
                    own.contains("m16n8k32") && !own.contains("m8n8k16"),
                    "{}",
                    m.file()
                );
            }
        }
    }
}
