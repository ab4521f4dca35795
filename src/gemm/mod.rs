//! gemm — the integer GEMM with its fused epilogue: argument types, validation, the [`Path`] enum
//! and its dispatch, and [`PackedWeights`] (weights prepared once per layer). This is the layer
//! between the safe API (`nn`) and the loops (`gemm::cpu`, `cuda`).
//!
//! `X: [m, k]` activations (`s8`, or `u8` with a zero point), `W: [n, k]` `s8` weights (the
//! `nn.Linear` layout: both operands K-contiguous), `Y: [m, n]`; see DESIGN.md §1 and
//! [`crate::reference::gemm`], which defines the result.

pub mod cpu;
mod pool;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use half::{bf16, f16};

use crate::error::{Error, Result};
use crate::reference;

// ---------------------------------------------------------------------------------------------
// Arguments.
// ---------------------------------------------------------------------------------------------

/// Quantized activations, row-major `[m, k]`.
#[derive(Clone, Copy, Debug)]
pub enum Activations<'a> {
    /// Signed, symmetric (zero point 0).
    S8(&'a [i8]),
    /// Unsigned, with a zero point in [`ActScales`].
    U8(&'a [u8]),
}

impl Activations<'_> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Activations::S8(x) => x.len(),
            Activations::U8(x) => x.len(),
        }
    }
    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The largest `|x − zp|` any element of this type can give: 128 for `s8` (zero point 0),
    /// 255 for `u8` (any zero point in `[0, 255]`).
    pub fn bound(&self) -> i64 {
        match self {
            Activations::S8(_) => 128,
            Activations::U8(_) => 255,
        }
    }
}

/// Activation scales and zero points.
#[derive(Clone, Copy, Debug)]
pub enum ActScales<'a> {
    /// One scale (and zero point; 0 for `s8`) for the whole matrix.
    PerTensor { scale: f32, zero_point: i32 },
    /// One scale per row (per token); zero points per row for `u8` activations, `None` for 0.
    PerRow {
        scales: &'a [f32],
        zero_points: Option<&'a [i32]>,
    },
}

impl ActScales<'_> {
    /// The zero point of row `i < m` (the GEMM has checked the per-row lengths).
    #[inline]
    pub(crate) fn zero_point(&self, i: usize) -> i32 {
        match self {
            ActScales::PerTensor { zero_point, .. } => *zero_point,
            ActScales::PerRow { zero_points, .. } => zero_points.map_or(0, |z| z[i]),
        }
    }
}

/// The bias.
#[derive(Clone, Copy, Debug)]
pub enum Bias<'a> {
    /// No bias.
    None,
    /// Added to the accumulator, already quantized with scale `s_x · s_w[n]`
    /// ([`crate::quant::quantize_bias`]); static activation scales.
    I32(&'a [i32]),
    /// Added in f32 after scaling (dynamic activation scales, where `s_x` is known only per call).
    F32(&'a [f32]),
}

/// Static quantization of an i8 output: `q = clamp(rhe(y / scale) + zero_point, qmin, qmax)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OutQuant {
    /// Output scale `s_y`.
    pub scale: f32,
    /// Output zero point `zp_y`.
    pub zero_point: i32,
    /// Smallest output integer (≥ −128).
    pub qmin: i32,
    /// Largest output integer (≤ 127).
    pub qmax: i32,
}

impl OutQuant {
    /// Err unless the scale is finite and > 0 and the range and zero point lie within i8.
    pub fn validate(&self) -> Result<()> {
        check_scales("output scale", &[self.scale])?;
        if self.qmin < -128 || self.qmax > 127 || self.qmin > self.qmax {
            return Err(Error::param(
                "output qmin/qmax",
                format!("[{}, {}] is not within i8", self.qmin, self.qmax),
            ));
        }
        if self.zero_point < -128 || self.zero_point > 127 {
            return Err(Error::param(
                "output zero point",
                format!("{} outside [-128, 127]", self.zero_point),
            ));
        }
        Ok(())
    }

    /// Symmetric narrow-range i8 output `[-127, 127]` with scale `scale`.
    pub fn symmetric(scale: f32) -> Self {
        OutQuant {
            scale,
            zero_point: 0,
            qmin: -127,
            qmax: 127,
        }
    }
}

/// What the GEMM writes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OutKind {
    /// The raw corrected accumulator (no scales; an f32 bias is not allowed).
    I32,
    /// f32.
    F32,
    /// f16, rounded to nearest-even from the f32 result.
    F16,
    /// bf16, rounded to nearest-even from the f32 result.
    Bf16,
    /// i8 with a static output scale and zero point.
    I8(OutQuant),
}

/// An output buffer `[m, n]`, row-major.
#[derive(Debug)]
pub enum OutBuf<'a> {
    I32(&'a mut [i32]),
    F32(&'a mut [f32]),
    F16(&'a mut [f16]),
    Bf16(&'a mut [bf16]),
    I8(&'a mut [i8], OutQuant),
}

impl OutBuf<'_> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            OutBuf::I32(y) => y.len(),
            OutBuf::F32(y) => y.len(),
            OutBuf::F16(y) => y.len(),
            OutBuf::Bf16(y) => y.len(),
            OutBuf::I8(y, _) => y.len(),
        }
    }
    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The kind of output.
    pub fn kind(&self) -> OutKind {
        match self {
            OutBuf::I32(_) => OutKind::I32,
            OutBuf::F32(_) => OutKind::F32,
            OutBuf::F16(_) => OutKind::F16,
            OutBuf::Bf16(_) => OutKind::Bf16,
            OutBuf::I8(_, q) => OutKind::I8(*q),
        }
    }
}

/// One GEMM call on raw (unpacked) weights.
#[derive(Clone, Copy, Debug)]
pub struct GemmArgs<'a> {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// `[m, k]`.
    pub x: Activations<'a>,
    pub act: ActScales<'a>,
    /// `[n, k]`.
    pub w: &'a [i8],
    /// One weight scale (per tensor) or `n` (per output channel).
    pub w_scales: &'a [f32],
    pub bias: Bias<'a>,
}

impl GemmArgs<'_> {
    /// Check every shape and parameter, and that no accumulator can overflow i32. The largest
    /// `|w|` is computed from `w`.
    pub fn validate(&self, out: &OutBuf<'_>) -> Result<()> {
        let wmax = self.w.iter().map(|&v| (v as i32).abs()).max().unwrap_or(0);
        self.validate_with_wmax(out, wmax)
    }

    /// [`GemmArgs::validate`] with a precomputed `max |w|` (packed weights keep it).
    pub fn validate_with_wmax(&self, out: &OutBuf<'_>, wmax: i32) -> Result<()> {
        self.validate_parts(out, wmax, self.x.len())
    }

    /// Validation with the activation length given separately (the f32 forward validates before
    /// the integers exist; `self.x` then only carries their type).
    pub(crate) fn validate_parts(&self, out: &OutBuf<'_>, wmax: i32, x_len: usize) -> Result<()> {
        use crate::error::checked_len;
        let (m, n, k) = (self.m, self.n, self.k);
        let xl = checked_len("X = [m, k]", m, k)?;
        if x_len != xl {
            return Err(Error::shape("activations [m, k]", xl, x_len));
        }
        let wl = checked_len("W = [n, k]", n, k)?;
        if self.w.len() != wl {
            return Err(Error::shape("weights [n, k]", wl, self.w.len()));
        }
        let yl = checked_len("Y = [m, n]", m, n)?;
        if out.len() != yl {
            return Err(Error::shape("output [m, n]", yl, out.len()));
        }
        if self.w_scales.len() != 1 && self.w_scales.len() != n {
            return Err(Error::shape(
                "weight scales (1 or n)",
                n,
                self.w_scales.len(),
            ));
        }
        check_scales("weight scale", self.w_scales)?;
        let (zp_lo, zp_hi) = match self.x {
            Activations::S8(_) => (0, 0),
            Activations::U8(_) => (0, 255),
        };
        let check_zp = |zp: i32| {
            if zp < zp_lo || zp > zp_hi {
                Err(Error::param(
                    "activation zero point",
                    format!("{zp} outside [{zp_lo}, {zp_hi}] for these activations"),
                ))
            } else {
                Ok(())
            }
        };
        match self.act {
            ActScales::PerTensor { scale, zero_point } => {
                check_scales("activation scale", &[scale])?;
                check_zp(zero_point)?;
            }
            ActScales::PerRow {
                scales,
                zero_points,
            } => {
                if scales.len() != m {
                    return Err(Error::shape("per-row activation scales", m, scales.len()));
                }
                check_scales("activation scale", scales)?;
                if let Some(z) = zero_points {
                    if z.len() != m {
                        return Err(Error::shape("per-row zero points", m, z.len()));
                    }
                    z.iter().try_for_each(|&zp| check_zp(zp))?;
                }
            }
        }
        let bias_bound: i64 = match self.bias {
            Bias::None => 0,
            Bias::I32(b) => {
                if b.len() != n {
                    return Err(Error::shape("bias", n, b.len()));
                }
                b.iter().map(|&v| (v as i64).abs()).max().unwrap_or(0)
            }
            Bias::F32(b) => {
                if b.len() != n {
                    return Err(Error::shape("bias", n, b.len()));
                }
                crate::quant::check_finite("bias", b)?;
                if out.kind() == OutKind::I32 {
                    return Err(Error::Unsupported(
                        "a float bias cannot be added to raw i32 output".into(),
                    ));
                }
                0
            }
        };
        if let OutKind::I8(q) = out.kind() {
            q.validate()?;
        }
        check_accumulator_bound(k, self.x.bound(), wmax as i64, bias_bound)
    }
}

/// Err([`Error::AccumulatorOverflow`]) unless `k·x_bound·w_bound + bias_bound < 2^31`.
pub fn check_accumulator_bound(
    k: usize,
    x_bound: i64,
    w_bound: i64,
    bias_bound: i64,
) -> Result<()> {
    let worst = (k as i128) * (x_bound as i128) * (w_bound as i128) + bias_bound as i128;
    if worst > i32::MAX as i128 {
        return Err(Error::AccumulatorOverflow {
            k,
            x_bound,
            w_bound,
            bias_bound,
            worst_case: worst.min(i64::MAX as i128) as i64,
        });
    }
    Ok(())
}

fn check_scales(what: &'static str, s: &[f32]) -> Result<()> {
    // A branch-free pass first (it vectorizes; this runs on every call over the layer's n scales),
    // the search for the culprit only when something is wrong.
    if s.iter()
        .fold(true, |ok, v| ok & (v.is_finite() & (*v > 0.0)))
    {
        return Ok(());
    }
    match s.iter().find(|v| !(v.is_finite() && **v > 0.0)) {
        Some(v) => Err(Error::param(
            what,
            format!("must be finite and > 0, got {v}"),
        )),
        None => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// Paths and the execution context.
// ---------------------------------------------------------------------------------------------

/// An implementation of the GEMM. Chosen at run time, overridable per [`Context`] (never by a
/// hidden global), and reported back ([`Context::last_path`]) so tests can prove which ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Path {
    /// [`crate::reference::gemm`]: the definition; slow.
    Reference = 1,
    /// Portable blocked Rust, always compiled.
    Scalar = 2,
    /// x86-64 AVX2, exact for full-range operands (16-bit `vpmaddwd`, never saturating `vpmaddubsw`).
    Avx2 = 3,
    /// x86-64 AVX-512 VNNI (`vpdpbusd`, exact i32 accumulation).
    Avx512Vnni = 4,
    /// x86-64 AMX-INT8 tiles (`tdpbusd`), Sapphire Rapids and later.
    Amx = 5,
    /// CUDA `__dp4a` kernel.
    CudaDp4a = 6,
    /// CUDA tensor cores (`mma.sync` int8).
    CudaMma = 7,
}

impl Path {
    /// Every path, fastest CPU path last among the CPU ones.
    pub const ALL: [Path; 7] = [
        Path::Reference,
        Path::Scalar,
        Path::Avx2,
        Path::Avx512Vnni,
        Path::Amx,
        Path::CudaDp4a,
        Path::CudaMma,
    ];

    fn from_u8(v: u8) -> Option<Path> {
        Path::ALL.into_iter().find(|p| *p as u8 == v)
    }

    /// Whether this path runs on the CPU.
    pub fn is_cpu(self) -> bool {
        !matches!(self, Path::CudaDp4a | Path::CudaMma)
    }

    /// Whether this machine and build can run this CPU path (`Err` says why not). CUDA paths are
    /// reported by the CUDA backend.
    pub fn cpu_availability(self) -> Result<()> {
        cpu::availability(self)
    }
}

/// How GEMMs run: a forced path (or automatic choice), a thread count and its pool. Cloning
/// shares the pool and the last-path record; [`Context::with_path`] makes the per-call override.
#[derive(Clone, Debug)]
pub struct Context {
    path: Option<Path>,
    threads: usize,
    pool: Arc<OnceLock<Option<rayon::ThreadPool>>>,
    /// `Some` after [`Context::with_spin`]: the spin window and its pool (started on first use).
    spin: Option<Duration>,
    spin_pool: Arc<OnceLock<Option<pool::SpinPool>>>,
    last: Arc<AtomicU8>,
}

impl Default for Context {
    fn default() -> Self {
        Self::new()
    }
}

impl Context {
    /// Automatic path choice, one thread per available core.
    pub fn new() -> Self {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        Context {
            path: None,
            threads,
            pool: Arc::new(OnceLock::new()),
            spin: None,
            spin_pool: Arc::new(OnceLock::new()),
            last: Arc::new(AtomicU8::new(0)),
        }
    }

    /// Use `threads` worker threads (at least 1). Starts a fresh pool.
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self.pool = Arc::new(OnceLock::new());
        self.spin_pool = Arc::new(OnceLock::new());
        self
    }

    /// Run multi-threaded GEMMs on a pool whose `threads − 1` helper threads keep spinning for
    /// `window` after each call before they sleep, with the calling thread working beside them.
    /// Starts a fresh pool.
    ///
    /// This is for latency-bound serving, where one small GEMM follows another (a decoder's
    /// layers at batch 1): a sleeping pool takes tens of microseconds to wake, a large share of a
    /// call that streams a layer's weights in a few hundred. The price is CPU time: while the
    /// window lasts the helpers keep their cores busy. A window that covers the gap between two
    /// layers' calls is enough; `Duration::ZERO` parks the helpers at once and keeps only the
    /// caller's participation. Results are the same bits either way. When another thread is
    /// already using the pool (clones share it), a call runs on the context's rayon pool instead,
    /// as every call does if the helper threads cannot be started. Without `with_spin` (the default) the workers are rayon's and sleep between calls.
    pub fn with_spin(mut self, window: Duration) -> Self {
        self.spin = Some(window);
        self.spin_pool = Arc::new(OnceLock::new());
        self
    }

    /// The spin window set by [`Context::with_spin`], if any.
    pub fn spin(&self) -> Option<Duration> {
        self.spin
    }

    /// Force `path` for every call made with the returned context (shares this one's pool).
    pub fn with_path(&self, path: Path) -> Self {
        let mut c = self.clone();
        c.path = Some(path);
        c
    }

    /// Back to automatic path choice.
    pub fn with_auto_path(&self) -> Self {
        let mut c = self.clone();
        c.path = None;
        c
    }

    /// The forced path, if any.
    pub fn forced_path(&self) -> Option<Path> {
        self.path
    }

    /// Worker threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The path the last GEMM through this context (or a clone of it) ran.
    pub fn last_path(&self) -> Option<Path> {
        Path::from_u8(self.last.load(Ordering::Relaxed))
    }

    pub(crate) fn record(&self, p: Path) {
        self.last.store(p as u8, Ordering::Relaxed);
    }

    /// Run `f` inside this context's pool (inline when single-threaded or the pool failed to start).
    pub(crate) fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        if self.threads <= 1 {
            return f();
        }
        let pool = self.pool.get_or_init(|| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(self.threads)
                .thread_name(|i| format!("int8rt-{i}"))
                .build()
                .ok()
        });
        match pool {
            Some(p) => p.install(f),
            None => f(),
        }
    }

    /// Whether multi-threaded calls go through the spinning pool ([`Context::with_spin`]).
    pub(crate) fn spins(&self) -> bool {
        self.threads > 1 && self.spin.is_some()
    }

    /// Run `f(i)` for every `i < tasks` on this context's workers (inline for one task or one
    /// thread): on the spinning pool when there is one and it is free, else on rayon's.
    pub(crate) fn for_each(&self, tasks: usize, f: impl Fn(usize) + Sync) {
        if tasks <= 1 || self.threads <= 1 {
            (0..tasks).for_each(f);
            return;
        }
        if let Some(window) = self.spin {
            let sp = self
                .spin_pool
                .get_or_init(|| pool::SpinPool::new(self.threads - 1, window).ok());
            if let Some(sp) = sp {
                if sp.try_for_each(tasks, &f) {
                    return;
                }
            }
        }
        use rayon::prelude::*;
        self.install(|| (0..tasks).into_par_iter().for_each(&f));
    }
}

// ---------------------------------------------------------------------------------------------
// Packed weights and the entry points.
// ---------------------------------------------------------------------------------------------

/// Weights `[n, k]` prepared once: the raw matrix (for the reference, the scalar path and GPU
/// uploads), `wsum[n]`, `max |w|`, and the CPU layouts each SIMD path wants (built on first use,
/// the default path's eagerly).
#[derive(Debug)]
pub struct PackedWeights {
    raw: Vec<i8>,
    n: usize,
    k: usize,
    wsum: Vec<i32>,
    wmax: i32,
    cpu: cpu::CpuPacks,
}

impl PackedWeights {
    /// Pack `w: [n, k]`.
    pub fn new(w: Vec<i8>, n: usize, k: usize) -> Result<Self> {
        let expected = crate::error::checked_len("W = [n, k]", n, k)?;
        if w.len() != expected {
            return Err(Error::shape("weights [n, k]", expected, w.len()));
        }
        let wsum = reference::weight_row_sums(&w, n, k);
        let wmax = w.iter().map(|&v| (v as i32).abs()).max().unwrap_or(0);
        let p = PackedWeights {
            raw: w,
            n,
            k,
            wsum,
            wmax,
            cpu: cpu::CpuPacks::default(),
        };
        p.cpu.prepare(cpu::default_path(), &p.raw, n, k);
        Ok(p)
    }

    /// Output features.
    pub fn n(&self) -> usize {
        self.n
    }
    /// Input features.
    pub fn k(&self) -> usize {
        self.k
    }
    /// The raw weights `[n, k]`.
    pub fn raw(&self) -> &[i8] {
        &self.raw
    }
    /// `Σ_k w[n, k]`.
    pub fn wsum(&self) -> &[i32] {
        &self.wsum
    }
    /// `max |w|`.
    pub fn wmax(&self) -> i32 {
        self.wmax
    }

    /// `Y = epilogue(X · Wᵀ)` on the path `ctx` chooses or forces. Returns the path that ran.
    pub fn gemm(
        &self,
        ctx: &Context,
        m: usize,
        x: Activations<'_>,
        act: ActScales<'_>,
        w_scales: &[f32],
        bias: Bias<'_>,
        out: &mut OutBuf<'_>,
    ) -> Result<Path> {
        let args = GemmArgs {
            m,
            n: self.n,
            k: self.k,
            x,
            act,
            w: &self.raw,
            w_scales,
            bias,
        };
        args.validate_with_wmax(out, self.wmax)?;
        let path = match ctx.path {
            Some(p) => p,
            None => cpu::choose(m, self.n, self.k),
        };
        match path {
            Path::Reference => reference::gemm(&args, out)?,
            Path::CudaDp4a | Path::CudaMma => {
                return Err(Error::PathUnavailable {
                    path,
                    reason: "CUDA paths run on a device: upload the layer with QuantLinear::to_cuda (or the weights with cuda::CudaWeights), not through a CPU Context".into(),
                })
            }
            p => {
                cpu::availability(p)?;
                let src = cpu::ASource::Ints(x);
                cpu::run(ctx, p, self, m, &src, Some(act), w_scales, &bias, out, "activations")?;
            }
        }
        ctx.record(path);
        Ok(path)
    }

    /// The layer's forward GEMM: f32 activations `[m, k]` quantized on the fly as `call.quant`
    /// says, straight into the kernel's layout, then the same GEMM and epilogue as
    /// [`PackedWeights::gemm`] on the integers. NaN or ±inf in `x` under dynamic quantization (NaN
    /// under fixed parameters) is an error naming `tensor`.
    pub(crate) fn gemm_quantizing(
        &self,
        ctx: &Context,
        call: FloatCall<'_>,
        out: &mut OutBuf<'_>,
        tensor: &str,
    ) -> Result<Path> {
        self.check_quantizing(&call, out)?;
        self.gemm_quantizing_checked(ctx, call, out, tensor)
    }

    /// [`PackedWeights::gemm_quantizing`] for a caller that has run
    /// [`PackedWeights::check_quantizing`] on the same shapes, weight scales, bias and output, and
    /// whose activation parameters are valid by construction (a [`QuantParams`] of the same
    /// integer type): the O(n) argument checks are not repeated.
    ///
    /// [`QuantParams`]: crate::quant::QuantParams
    pub(crate) fn gemm_quantizing_checked(
        &self,
        ctx: &Context,
        call: FloatCall<'_>,
        out: &mut OutBuf<'_>,
        tensor: &str,
    ) -> Result<Path> {
        let FloatCall {
            m,
            x,
            quant,
            act,
            w_scales,
            bias,
        } = call;
        let src = cpu::ASource::Floats { x, quant };
        let path = match ctx.path {
            Some(p) => p,
            None => cpu::choose(m, self.n, self.k),
        };
        match path {
            Path::Reference => self.gemm_quantizing_reference(ctx, call, out, tensor),
            Path::CudaDp4a | Path::CudaMma => Err(Error::PathUnavailable {
                path,
                reason: "CUDA paths run on a device: upload the layer with QuantLinear::to_cuda (or the weights with cuda::CudaWeights), not through a CPU Context".into(),
            }),
            p => {
                cpu::availability(p)?;
                cpu::run(ctx, p, self, m, &src, act, w_scales, &bias, out, tensor)?;
                ctx.record(p);
                Ok(p)
            }
        }
    }

    /// Every check of [`PackedWeights::gemm_quantizing`] on its arguments, none on the values of
    /// `x`: shapes and lengths, scales, zero points, bias, output kind, the accumulator bound.
    /// The activations' integer type stands for the values (which do not exist yet) and a unit
    /// scale for dynamic per-row ones.
    pub(crate) fn check_quantizing(&self, call: &FloatCall<'_>, out: &OutBuf<'_>) -> Result<()> {
        let args = GemmArgs {
            m: call.m,
            n: self.n,
            k: self.k,
            x: if call.signed() {
                Activations::S8(&[])
            } else {
                Activations::U8(&[])
            },
            // Per-row scales and zero points computed in the quantizing pass are valid by
            // construction (m of them, finite and > 0, in the integer type's range), so one unit
            // scale stands for them instead of an m-long vector of ones on every forward.
            act: call.act.unwrap_or(ActScales::PerTensor {
                scale: 1.0,
                zero_point: 0,
            }),
            w: &self.raw,
            w_scales: call.w_scales,
            bias: call.bias,
        };
        args.validate_parts(out, self.wmax, call.x.len())
    }

    /// [`PackedWeights::gemm_quantizing`] spelled out on the reference path: quantize every row
    /// with the scalar definition, then [`reference::gemm`].
    fn gemm_quantizing_reference(
        &self,
        ctx: &Context,
        call: FloatCall<'_>,
        out: &mut OutBuf<'_>,
        tensor: &str,
    ) -> Result<Path> {
        let (m, x, quant) = (call.m, call.x, call.quant);
        let k = self.k;
        let mut params = Vec::with_capacity(m);
        for i in 0..m {
            let row = &x[i * k..(i + 1) * k];
            params.push(match quant {
                cpu::FloatQuant::Tensor(p) => p,
                cpu::FloatQuant::DynamicRows(scheme) => {
                    crate::quant::dynamic_row_params(scheme, row)
                        .ok_or_else(|| crate::quant::nonfinite_error(tensor, x))?
                }
            });
        }
        let signed = call.signed();
        let ints: Vec<i32> = (0..m * k)
            .map(|e| {
                let v = x[e];
                // (only a per-tensor scale gets here with non-finite values: ±inf saturates,
                // NaN has no integer)
                if v.is_nan() {
                    Err(crate::quant::nan_error(tensor, x))
                } else {
                    Ok(reference::quantize(v, &params[e / k]))
                }
            })
            .collect::<Result<_>>()?;
        let scales: Vec<f32> = params.iter().map(|p| p.scale()).collect();
        let zps: Vec<i32> = params.iter().map(|p| p.zero_point()).collect();
        let act = call.act.unwrap_or(ActScales::PerRow {
            scales: &scales,
            zero_points: (!signed).then_some(&zps[..]),
        });
        if signed {
            let q: Vec<i8> = ints.iter().map(|&v| v as i8).collect();
            self.gemm(
                &ctx.with_path(Path::Reference),
                m,
                Activations::S8(&q),
                act,
                call.w_scales,
                call.bias,
                out,
            )
        } else {
            let q: Vec<u8> = ints.iter().map(|&v| v as u8).collect();
            self.gemm(
                &ctx.with_path(Path::Reference),
                m,
                Activations::U8(&q),
                act,
                call.w_scales,
                call.bias,
                out,
            )
        }
    }

    pub(crate) fn cpu_packs(&self) -> &cpu::CpuPacks {
        &self.cpu
    }
}

/// One forward's float activations and how they become integers, as
/// [`PackedWeights::gemm_quantizing`] takes them: `x: [m, k]` quantized as `quant` says, with
/// the activation scales `act` (`None` for [`cpu::FloatQuant::DynamicRows`], whose per-row
/// scales come out of the quantizing pass), the weight scales and the bias.
#[derive(Clone, Copy)]
pub(crate) struct FloatCall<'a> {
    pub m: usize,
    pub x: &'a [f32],
    pub quant: cpu::FloatQuant,
    pub act: Option<ActScales<'a>>,
    pub w_scales: &'a [f32],
    pub bias: Bias<'a>,
}

impl FloatCall<'_> {
    /// Whether the activations become `s8` (else `u8`).
    fn signed(&self) -> bool {
        cpu::ASource::Floats {
            x: self.x,
            quant: self.quant,
        }
        .signed()
    }
}

/// One-shot GEMM on raw weights (packs them first; a layer should keep [`PackedWeights`]).
pub fn gemm(ctx: &Context, args: &GemmArgs<'_>, out: &mut OutBuf<'_>) -> Result<Path> {
    let w = PackedWeights::new(args.w.to_vec(), args.n, args.k)?;
    w.gemm(ctx, args.m, args.x, args.act, args.w_scales, args.bias, out)
}

#[cfg(test)]
mod tests {
    use super::Context;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    fn thread_name() -> String {
        std::thread::current().name().unwrap_or("").to_owned()
    }

    /// A spinning context's `for_each` runs on the caller and its pool's helper, not on rayon's
    /// workers (two tasks that wait for each other prove both threads ran at once); a call made
    /// while that pool is busy, here from inside a task, runs on the context's rayon workers.
    #[test]
    fn a_spinning_context_runs_on_its_pool_and_a_busy_one_on_rayon() {
        let ctx = Context::new()
            .with_threads(2)
            .with_spin(Duration::from_millis(1));
        let names = Mutex::new(Vec::new());
        let nested = Mutex::new(Vec::new());
        let entered = AtomicUsize::new(0);
        let deadline = Instant::now() + Duration::from_secs(30);
        ctx.for_each(2, |i| {
            names.lock().unwrap().push(thread_name());
            entered.fetch_add(1, Ordering::SeqCst);
            while entered.load(Ordering::SeqCst) < 2 {
                assert!(Instant::now() < deadline, "the helper never joined");
                std::hint::spin_loop();
            }
            if i == 0 {
                ctx.for_each(4, |_| nested.lock().unwrap().push(thread_name()));
            }
        });
        let mut names = names.into_inner().unwrap();
        names.sort();
        let mut want = vec![thread_name(), "int8rt-spin-0".to_owned()];
        want.sort();
        assert_eq!(names, want);
        let nested = nested.into_inner().unwrap();
        assert_eq!(nested.len(), 4);
        for n in &nested {
            let worker = n
                .strip_prefix("int8rt-")
                .and_then(|i| i.parse::<usize>().ok());
            assert!(
                worker.is_some(),
                "a nested task ran on {n:?}, not a rayon worker"
            );
        }
    }
}
