//! cuda/sim.rs — (test builds only) the host-simulation executor: compiles `kernels/*.cu` with
//! the host C++ compiler against `kernels/sim/sim.h` into a shared library (once per process,
//! cached on disk by a hash of the sources), loads it, and implements [`Exec`] with host memory,
//! so the host wrappers in `cuda::ops` run unchanged against the simulated kernels.
//!
//! Buffers are 256-byte aligned (as `cuMemAlloc` gives) and surrounded by 256 bytes of poison
//! on each side; [`Exec::read`] fails if a kernel wrote into them.

use std::ffi::{c_char, CString};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::exec::{Elem, Exec, Grid};
use super::params::{KernelParams, TmaMap};
use super::registry::{KernelId, Module};
use crate::error::{Error, Result};

/// sim.h's `TMA_MAGIC`: marks a tensor map the simulation wrote.
const SIM_TMA_MAGIC: u64 = 0x7a6d_5f74_7238_6931;

const SLACK: usize = 256;
const POISON: u8 = 0xA5;

type LaunchFn = unsafe extern "C" fn(
    *const c_char,
    *const u32,
    *const u32,
    u32,
    u32,
    *const u8,
    usize,
    *mut u64,
    *const u64,
    usize,
    *mut c_char,
    usize,
) -> i32;
type CountFn = unsafe extern "C" fn() -> usize;
type NameFn = unsafe extern "C" fn(usize) -> *const c_char;
type ClusterFn = unsafe extern "C" fn(usize) -> u32;

pub(crate) struct SimLib {
    _lib: libloading::Library,
    launch: LaunchFn,
    count: CountFn,
    name: NameFn,
    cluster: ClusterFn,
}

fn kernels_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels")
}

/// The host compiler's flags for the simulation library, shared with `scripts/sim-driver.sh`
/// (`kernels/sim/cxxflags`: one file, so the two builds cannot drift apart).
fn cxx_flags() -> impl Iterator<Item = &'static str> {
    include_str!("../../kernels/sim/cxxflags")
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(str::split_whitespace)
}

/// One build of the simulation's C++: every kernel module, `sim/selftest.cu`, `sim/sim_main.cpp`
/// and `extra_sources`, with `kernels/sim/cxxflags` plus `flags`, linked with `link` into a shared
/// library (or an executable). The unit tests' library, its sm_75 twin, the ThreadSanitizer
/// driver and the simulated-driver test's stand-in `libcuda` are four such builds.
pub(crate) struct CxxBuild<'a> {
    /// Compile flags beyond `cxxflags` (a variant: `-DI8RT_SIM_SM75=1`, `-fsanitize=thread`).
    pub flags: &'a [&'a str],
    /// Sources beyond the kernels, the self-tests and `sim_main.cpp`.
    pub extra_sources: &'a [PathBuf],
    /// Link arguments.
    pub link: &'a [&'a str],
    /// An executable rather than a shared library.
    pub executable: bool,
}

/// Compile `b`'s sources into objects, several compilers at once (one per core), and link them
/// into `out`. Objects are kept per flag set and source hash (`$OUT_DIR/sim/obj-…`), so builds
/// with the same flags share them: the stand-in driver's library compiles only its own source.
/// Compiling one translation unit at a time, as a single compiler command does, left the second
/// core idle for the minute each build took.
pub(crate) fn build_cxx<'a>(out: &Path, b: &CxxBuild<'a>) -> std::result::Result<(), String> {
    let dir = kernels_dir();
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".to_string());
    let compile_flags: Vec<&str> = cxx_flags()
        .filter(|f| *f != "-shared")
        .map(|f| -> &'a str { f })
        .chain(b.flags.iter().copied())
        .collect();
    let mut sources: Vec<PathBuf> = Module::ALL.iter().map(|m| dir.join(m.file())).collect();
    sources.push(dir.join("sim/selftest.cu"));
    sources.push(dir.join("sim/sim_main.cpp"));
    sources.extend(b.extra_sources.iter().cloned());
    // The objects' folder: named by the sources, the compiler and the compile flags (FNV-1a
    // over them: objects from another `$CXX` are not linked with this one's).
    let mut key = sources_hash();
    for byte in cxx
        .bytes()
        .chain([0])
        .chain(compile_flags.join(" ").bytes())
    {
        key = (key ^ byte as u64).wrapping_mul(0x100_0000_01b3);
    }
    let objs = Path::new(env!("OUT_DIR")).join(format!("sim/obj-{key:016x}"));
    std::fs::create_dir_all(&objs).map_err(|e| format!("{}: {e}", objs.display()))?;
    let object = |src: &Path| {
        let stem = src.file_name().and_then(|n| n.to_str()).unwrap_or("src");
        objs.join(format!("{stem}.o"))
    };
    let compile = |src: &Path| -> std::result::Result<(), String> {
        let obj = object(src);
        if obj.exists() {
            return Ok(());
        }
        // (written under a name of this compile's own, then renamed: concurrent builds — of
        // other test processes, or of this one's threads — of one object each end with a whole
        // file)
        static COMPILES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COMPILES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = obj.with_extension(format!("o.{}.{n}", std::process::id()));
        let mut c = std::process::Command::new(&cxx);
        c.args(&compile_flags).arg("-I").arg(&dir);
        if src.extension().is_some_and(|e| e == "cu") {
            c.args(["-x", "c++"]);
        }
        let o = c
            .arg("-c")
            .arg(src)
            .arg("-o")
            .arg(&tmp)
            .output()
            .map_err(|e| format!("running the C++ compiler {cxx}: {e}"))?;
        if !o.status.success() {
            let _ = std::fs::remove_file(&tmp);
            return Err(format!(
                "compiling {} failed:\n{}",
                src.display(),
                String::from_utf8_lossy(&o.stderr)
            ));
        }
        std::fs::rename(&tmp, &obj).map_err(|e| format!("{}: {e}", obj.display()))
    };
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let errors = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..workers.min(sources.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(src) = sources.get(i) else { break };
                if let Err(e) = compile(src) {
                    errors.lock().unwrap_or_else(|p| p.into_inner()).push(e);
                }
            });
        }
    });
    let errors = errors.into_inner().unwrap_or_else(|p| p.into_inner());
    if !errors.is_empty() {
        return Err(errors.join("\n"));
    }
    let o = std::process::Command::new(&cxx)
        .args(cxx_flags().filter(|f| !(b.executable && *f == "-shared")))
        .args(b.flags)
        .args(sources.iter().map(|s| object(s)))
        .args(b.link)
        .arg("-o")
        .arg(out)
        .output()
        .map_err(|e| format!("running the C++ compiler {cxx}: {e}"))?;
    if !o.status.success() {
        return Err(format!(
            "linking {} failed:\n{}",
            out.display(),
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    Ok(())
}

/// A hash (FNV-1a) of every file in `kernels/` and `kernels/sim/` — sources, headers, the
/// flags — so an edited kernel or header is recompiled.
pub(crate) fn sources_hash() -> u64 {
    let dir = kernels_dir();
    let mut files: Vec<PathBuf> = [dir.clone(), dir.join("sim")]
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for f in files {
        for b in std::fs::read(&f).unwrap_or_default() {
            h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
    }
    h
}

/// Builds (once per source hash) and loads the simulation library: the one for sm_80 and newer,
/// or with `sm75` the one a simulated sm_75 GPU runs (`I8RT_SIM_SM75`: common.cuh's sm_75 code —
/// synchronous copies for cp.async, four m8n8k16 per m16n8k32 — as the sm_75 CUBIN has it).
fn build_and_load(sm75: bool) -> std::result::Result<SimLib, String> {
    let dir = Path::new(env!("OUT_DIR")).join("sim");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let variant = if sm75 { "_sm75" } else { "" };
    let so = dir.join(format!("libint8rt_sim{variant}_{:016x}.so", sources_hash()));
    if !so.exists() {
        let tmp = dir.join(format!("tmp{variant}_{}.so", std::process::id()));
        // (the sm_75 library exports its entry points alone: kernels/sim/exports.map says why)
        let script = format!(
            "-Wl,--version-script={}",
            kernels_dir().join("sim/exports.map").display()
        );
        let (flags, link): (&[&str], Vec<&str>) = if sm75 {
            (&["-DI8RT_SIM_SM75=1"], vec![&script])
        } else {
            (&[], vec![])
        };
        let build = CxxBuild {
            flags,
            extra_sources: &[],
            link: &link,
            executable: false,
        };
        build_cxx(&tmp, &build)
            .map_err(|e| format!("building the kernel simulation failed:\n{e}"))?;
        std::fs::rename(&tmp, &so).map_err(|e| format!("{}: {e}", so.display()))?;
    }
    // SAFETY: the library was built from this crate's kernel sources and sim_main.cpp, whose
    // three exported functions used here have exactly the signatures declared above; it runs no code at
    // load time beyond registering kernels.
    unsafe {
        let lib =
            libloading::Library::new(&so).map_err(|e| format!("loading {}: {e}", so.display()))?;
        let launch = *lib
            .get::<LaunchFn>(b"int8rt_sim_launch_checked")
            .map_err(|e| e.to_string())?;
        let count = *lib
            .get::<CountFn>(b"int8rt_sim_kernel_count")
            .map_err(|e| e.to_string())?;
        let name = *lib
            .get::<NameFn>(b"int8rt_sim_kernel_name")
            .map_err(|e| e.to_string())?;
        let cluster = *lib
            .get::<ClusterFn>(b"int8rt_sim_kernel_cluster")
            .map_err(|e| e.to_string())?;
        Ok(SimLib {
            _lib: lib,
            launch,
            count,
            name,
            cluster,
        })
    }
}

/// The simulation library, built on first use.
pub(crate) fn lib() -> &'static SimLib {
    static LIB: OnceLock<SimLib> = OnceLock::new();
    LIB.get_or_init(|| build_and_load(false).unwrap_or_else(|e| panic!("{e}")))
}

/// The library a GPU of compute capability `arch` runs: before sm_80, the sm_75 build
/// ([`build_and_load`]), built on first use.
pub(crate) fn lib_for(arch: u32) -> &'static SimLib {
    static SM75: OnceLock<SimLib> = OnceLock::new();
    if arch >= 80 {
        return lib();
    }
    SM75.get_or_init(|| build_and_load(true).unwrap_or_else(|e| panic!("{e}")))
}

/// What simulated launches counted (`int8rt_sim_launch_ex`'s statistics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SimStats {
    /// `ldmatrix` instructions (per warp).
    pub ldmatrix: u64,
    /// Extra shared-memory wavefronts those and `lds_v4` cost: bank conflicts.
    pub smem_extra_wavefronts: u64,
    /// `mma.sync` instructions (per warp).
    pub mma: u64,
    /// `cp.async` instructions (per thread).
    pub cp_async: u64,
    /// Warp-wide 16-byte shared loads (`lds_v4`, per warp).
    pub lds_v4: u64,
    /// `wgmma.mma_async` instructions (per warpgroup).
    pub wgmma: u64,
    /// `cp.async.bulk` instructions (per thread).
    pub bulk_copies: u64,
    /// `cp.async.bulk.prefetch.L2` instructions (per thread).
    pub l2_prefetches: u64,
    /// Bytes those asked for, each prefetch counted.
    pub l2_prefetch_bytes: u64,
    /// Of them, bytes a launch asked for more than once.
    pub l2_prefetch_repeated_bytes: u64,
    /// Bytes streaming loads (`ldg_stream_v4`) read that no prefetch of their launch asked for.
    pub streamed_unprefetched_bytes: u64,
}

impl SimStats {
    fn add(&mut self, o: SimStats) {
        self.ldmatrix += o.ldmatrix;
        self.smem_extra_wavefronts += o.smem_extra_wavefronts;
        self.mma += o.mma;
        self.cp_async += o.cp_async;
        self.lds_v4 += o.lds_v4;
        self.wgmma += o.wgmma;
        self.bulk_copies += o.bulk_copies;
        self.l2_prefetches += o.l2_prefetches;
        self.l2_prefetch_bytes += o.l2_prefetch_bytes;
        self.l2_prefetch_repeated_bytes += o.l2_prefetch_repeated_bytes;
        self.streamed_unprefetched_bytes += o.streamed_unprefetched_bytes;
    }
}

/// `flags` of a simulated launch: `cp.async` copies land when issued (instead of at the wait
/// that completes them).
pub(crate) const CP_ASYNC_EARLY: u32 = 1;

impl SimLib {
    /// Launch a kernel by name with raw parameter bytes (also the simulation's self-test
    /// kernels, which are not in the registry), `smem` bytes of dynamic shared memory and
    /// `flags`; returns what the launch counted. With `check_global`, every 16-byte global load,
    /// `cp.async` source and `ld.global.cg` must lie inside a live [`SimBuf`] (the self-tests,
    /// which read plain host memory, pass `false`).
    ///
    /// # Safety
    /// `params` is the kernel's parameter block and every address in it is valid for the kernel.
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn launch_raw(
        &self,
        name: &str,
        grid: [u32; 3],
        block: [u32; 3],
        smem: u32,
        flags: u32,
        params: &[u8],
        check_global: bool,
    ) -> Result<SimStats> {
        let buffers = if check_global {
            live_buffers()
        } else {
            Vec::new()
        };
        let cname = CString::new(name).map_err(|_| Error::param("kernel name", "contains NUL"))?;
        let mut err = [0 as c_char; 512];
        let mut st = [0u64; 11];
        // SAFETY: `cname` is NUL-terminated, grid and block point at 3 u32 each, `st` holds the
        // 11 counts the library writes, `buffers` the pairs whose count is passed (u64 pairs are
        // the C side's [2 n] array), `err` has the length passed; the library checks the
        // parameter block's length against the kernel's sizeof, and the caller vouches for its
        // addresses.
        let r = unsafe {
            (self.launch)(
                cname.as_ptr(),
                grid.as_ptr(),
                block.as_ptr(),
                smem,
                flags,
                params.as_ptr(),
                params.len(),
                st.as_mut_ptr(),
                buffers.as_ptr().cast::<u64>(),
                buffers.len(),
                err.as_mut_ptr(),
                err.len(),
            )
        };
        if r != 0 {
            // SAFETY: the library wrote a NUL-terminated message into `err` (snprintf).
            let msg = unsafe { std::ffi::CStr::from_ptr(err.as_ptr()) }
                .to_string_lossy()
                .into_owned();
            return Err(Error::Cuda {
                context: format!("simulated launch of {name}"),
                detail: msg,
            });
        }
        Ok(SimStats {
            ldmatrix: st[0],
            smem_extra_wavefronts: st[1],
            mma: st[2],
            cp_async: st[3],
            lds_v4: st[4],
            wgmma: st[5],
            bulk_copies: st[6],
            l2_prefetches: st[7],
            l2_prefetch_bytes: st[8],
            l2_prefetch_repeated_bytes: st[9],
            streamed_unprefetched_bytes: st[10],
        })
    }

    /// Names of the kernels the library registered, with their cluster sizes (blocks along x;
    /// 1: launched without clusters).
    pub(crate) fn kernel_names(&self) -> Vec<(String, u32)> {
        // SAFETY: the functions come from the loaded library; indices below `count()` return
        // NUL-terminated static strings and a cluster size.
        unsafe {
            (0..(self.count)())
                .map(|i| {
                    let name = std::ffi::CStr::from_ptr((self.name)(i))
                        .to_string_lossy()
                        .into_owned();
                    (name, (self.cluster)(i))
                })
                .collect()
        }
    }
}

/// The data ranges `[begin, end)` of every live [`SimBuf`], by begin: each launch passes them to
/// the simulation, which fails a 16-byte global load, `cp.async` source or `ld.global.cg`
/// outside all of them (a read past a buffer's end, which the poison around it cannot show when
/// the bytes read are multiplied by zero).
static LIVE: std::sync::Mutex<std::collections::BTreeMap<usize, usize>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// [`LIVE`] as sorted `[begin, end]` pairs.
fn live_buffers() -> Vec<[u64; 2]> {
    LIVE.lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(&b, &e)| [b as u64, e as u64])
        .collect()
}

/// A host buffer standing in for device memory.
pub(crate) struct SimBuf<T> {
    mem: Vec<u8>,
    off: usize,
    len: usize,
    _t: PhantomData<T>,
}

impl<T> Drop for SimBuf<T> {
    fn drop(&mut self) {
        let begin = self.mem.as_ptr() as usize + self.off;
        LIVE.lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&begin);
    }
}

impl<T: Elem> SimBuf<T> {
    fn new(len: usize) -> Self {
        let bytes = len * std::mem::size_of::<T>();
        let mut mem = vec![POISON; bytes + 3 * SLACK];
        let base = mem.as_mut_ptr() as usize;
        let off = (base + SLACK).next_multiple_of(SLACK) - base;
        mem[off..off + bytes].fill(0);
        let begin = base + off;
        LIVE.lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(begin, begin + bytes);
        SimBuf {
            mem,
            off,
            len,
            _t: PhantomData,
        }
    }
    fn bytes(&self) -> usize {
        self.len * std::mem::size_of::<T>()
    }
    fn data(&self) -> &[T] {
        bytemuck::cast_slice(&self.mem[self.off..self.off + self.bytes()])
    }
    fn data_mut(&mut self) -> &mut [T] {
        let (o, b) = (self.off, self.bytes());
        bytemuck::cast_slice_mut(&mut self.mem[o..o + b])
    }
    fn poison_intact(&self) -> bool {
        self.mem[..self.off].iter().all(|&b| b == POISON)
            && self.mem[self.off + self.bytes()..]
                .iter()
                .all(|&b| b == POISON)
    }
}

/// The simulation executor: launches run to completion. It plays a GPU of compute capability
/// `arch` with `sms` multiprocessors (what the GEMM dispatch reads), lands `cp.async` copies late
/// (at the wait that completes them) unless `cp_async_early`, and sums the launches' statistics.
pub(crate) struct SimExec {
    pub arch: u32,
    pub sms: u32,
    pub cp_async_early: bool,
    stats: std::cell::Cell<SimStats>,
    overlapped: std::cell::Cell<u32>,
    allocs: std::cell::Cell<u32>,
    reads: std::cell::Cell<u32>,
    failing_writes: std::cell::Cell<u32>,
    launched: std::cell::RefCell<Vec<KernelId>>,
    reports: super::reports::ReportRings<SimExec>,
}

impl SimExec {
    /// An H100 SXM: sm_90, 132 multiprocessors.
    pub(crate) const fn new() -> Self {
        SimExec::with_arch(90, 132)
    }
    /// A GPU of compute capability `arch` (major · 10 + minor) with `sms` multiprocessors.
    pub(crate) const fn with_arch(arch: u32, sms: u32) -> Self {
        SimExec {
            arch,
            sms,
            cp_async_early: false,
            stats: std::cell::Cell::new(SimStats {
                ldmatrix: 0,
                smem_extra_wavefronts: 0,
                mma: 0,
                cp_async: 0,
                lds_v4: 0,
                wgmma: 0,
                bulk_copies: 0,
                l2_prefetches: 0,
                l2_prefetch_bytes: 0,
                l2_prefetch_repeated_bytes: 0,
                streamed_unprefetched_bytes: 0,
            }),
            overlapped: std::cell::Cell::new(0),
            allocs: std::cell::Cell::new(0),
            reads: std::cell::Cell::new(0),
            failing_writes: std::cell::Cell::new(0),
            launched: std::cell::RefCell::new(Vec::new()),
            reports: super::reports::ReportRings::new(),
        }
    }
    /// The statistics summed since the last call (then reset).
    pub(crate) fn take_stats(&self) -> SimStats {
        self.stats.take()
    }
    /// Buffers allocated or uploaded since the last call (then reset).
    pub(crate) fn take_allocs(&self) -> u32 {
        self.allocs.take()
    }
    /// Reads back to the host ([`Exec::read`], a copy and a wait on a GPU) since the last call
    /// (then reset).
    pub(crate) fn take_reads(&self) -> u32 {
        self.reads.take()
    }
    /// The next `n` host-to-device writes ([`Exec::write`]) fail, as a driver error would, and
    /// leave their buffers unchanged (the paths that must survive one: the report ring's
    /// clearing write).
    pub(crate) fn fail_next_writes(&self, n: u32) {
        self.failing_writes.set(n);
    }
    /// The non-finite report rings made so far (one per stream; the simulation has one).
    pub(crate) fn report_ring_count(&self) -> usize {
        self.reports.len()
    }
    /// The kernels launched since the last call, in order (then reset).
    pub(crate) fn take_launched(&self) -> Vec<KernelId> {
        self.launched.take()
    }
    /// Launches asked to overlap their predecessor since the last call (then reset); they run
    /// like any other here (one after another).
    pub(crate) fn take_overlapped(&self) -> u32 {
        self.overlapped.take()
    }
}

impl Exec for SimExec {
    type Buf<T: Elem> = SimBuf<T>;
    type Guard<'a> = ();

    fn alloc<T: Elem>(&self, len: usize) -> Result<SimBuf<T>> {
        self.allocs.set(self.allocs.get() + 1);
        Ok(SimBuf::new(len))
    }
    fn alloc_scratch<T: Elem>(&self, len: usize) -> Result<SimBuf<T>> {
        self.allocs.set(self.allocs.get() + 1);
        let mut b = SimBuf::<T>::new(len);
        let (o, n) = (b.off, b.bytes());
        b.mem[o..o + n].fill(0x5A);
        Ok(b)
    }
    fn upload<T: Elem>(&self, src: &[T]) -> Result<SimBuf<T>> {
        self.allocs.set(self.allocs.get() + 1);
        let mut b = SimBuf::new(src.len());
        b.data_mut().copy_from_slice(src);
        Ok(b)
    }
    fn arch(&self) -> u32 {
        self.arch
    }
    fn sm_count(&self) -> u32 {
        self.sms
    }
    fn stream_key(&self) -> usize {
        0
    }
    fn report_rings(&self) -> &super::reports::ReportRings<SimExec> {
        &self.reports
    }
    fn tensor_map(
        &self,
        addr: u64,
        rows: usize,
        cols: usize,
        ld: usize,
        box_rows: usize,
    ) -> Result<TmaMap> {
        // The limits cuTensorMapEncodeTiled checks for this use (CUDA driver API reference):
        // a 16-byte aligned base, a row stride that is a multiple of 16 below 2^40, dimensions
        // in [1, 2^32], boxes of at most 256 rows. A violation is the same kind of error.
        let (rows, cols) = (rows.max(1), cols.max(1));
        if !addr.is_multiple_of(16)
            || !ld.is_multiple_of(16)
            || (ld as u64) >= 1 << 40
            || rows as u64 > 1 << 32
            || cols as u64 > 1 << 32
            || !(1..=256).contains(&box_rows)
        {
            return Err(Error::Cuda {
                context: format!(
                    "cuTensorMapEncodeTiled ({rows} × {cols} bytes, ld {ld}, box {box_rows} × 128)"
                ),
                detail: "CUDA_ERROR_INVALID_VALUE (simulated)".into(),
            });
        }
        // sim.h's `TmaDesc`: magic, base, dim0 (bytes), dim1 (rows), row stride, box bytes,
        // box rows, swizzle (3: 128-byte).
        let mut bits = [0u64; 16];
        bits[..8].copy_from_slice(&[
            SIM_TMA_MAGIC,
            addr,
            cols as u64,
            rows as u64,
            ld as u64,
            128,
            box_rows as u64,
            3,
        ]);
        Ok(TmaMap { bits })
    }
    fn write<T: Elem>(&self, dst: &mut SimBuf<T>, src: &[T]) -> Result<()> {
        if src.len() > dst.len {
            return Err(Error::shape("device write", dst.len, src.len()));
        }
        if self.failing_writes.get() > 0 {
            self.failing_writes.set(self.failing_writes.get() - 1);
            return Err(Error::Cuda {
                context: "cuMemcpyHtoDAsync".into(),
                detail: "CUDA_ERROR_LAUNCH_FAILED (simulated)".into(),
            });
        }
        dst.data_mut()[..src.len()].copy_from_slice(src);
        Ok(())
    }
    fn read<T: Elem>(&self, src: &SimBuf<T>, dst: &mut [T]) -> Result<()> {
        if dst.len() > src.len {
            return Err(Error::shape("device read", src.len, dst.len()));
        }
        if !src.poison_intact() {
            return Err(Error::Cuda {
                context: "kernel simulation".into(),
                detail: "a kernel wrote outside its buffer (poison around the allocation changed)"
                    .into(),
            });
        }
        dst.copy_from_slice(&src.data()[..dst.len()]);
        self.reads.set(self.reads.get() + 1);
        Ok(())
    }
    fn len<T: Elem>(b: &SimBuf<T>) -> usize {
        b.len
    }
    fn addr<'a, T: Elem>(&'a self, b: &'a SimBuf<T>) -> (u64, ()) {
        (b.data().as_ptr() as u64, ())
    }
    fn addr_mut<'a, T: Elem>(&'a self, b: &'a mut SimBuf<T>) -> (u64, ()) {
        (b.data_mut().as_mut_ptr() as u64, ())
    }
    unsafe fn launch_overlapped<P: KernelParams>(&self, k: KernelId, g: Grid, p: &P) -> Result<()> {
        if !k.waits_for_predecessor() {
            // The GPU would let it race its predecessor: a defect in the caller.
            return Err(Error::Cuda {
                context: format!("overlapped launch of {}", k.name()),
                detail: "the kernel does not wait for its predecessor".into(),
            });
        }
        self.overlapped.set(self.overlapped.get() + 1);
        // SAFETY: the caller's guarantees are those of `launch`.
        unsafe { self.launch(k, g, p) }
    }
    unsafe fn launch<P: KernelParams>(&self, k: KernelId, g: Grid, p: &P) -> Result<()> {
        if k.params() != P::NAME {
            return Err(Error::Cuda {
                context: format!("launch of {}", k.name()),
                detail: format!("takes {}, given {}", k.params(), P::NAME),
            });
        }
        let flags = if self.cp_async_early {
            CP_ASYNC_EARLY
        } else {
            0
        };
        // SAFETY: the library checks the parameter block's length against the kernel's sizeof
        // (and `P` is the block `k` takes, checked above); the caller guarantees every address
        // in it is a live buffer large enough for every index the kernel forms.
        let st = lib_for(self.arch).launch_raw(
            k.name(),
            g.grid,
            g.block,
            g.smem,
            flags,
            bytemuck::bytes_of(p),
            true,
        )?;
        let mut total = self.stats.get();
        total.add(st);
        self.stats.set(total);
        self.launched.borrow_mut().push(k);
        Ok(())
    }
}
