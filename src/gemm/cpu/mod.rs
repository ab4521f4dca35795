//! gemm/cpu — the CPU GEMM driver: path detection, operand preparation, cache blocking, threads,
//! and the fused epilogue. The microkernels live one per file (`scalar`, `avx2`, `avx512`, `amx`)
//! behind the `Kernel` trait; this module owns the loops around them.
//!
//! Vocabulary, defined once here:
//! - `mr` × `nr`: the rows × columns of the output tile one microkernel call produces;
//! - panel: `nr` consecutive output columns (weight rows), packed contiguously per path;
//! - `mb` × `nb`: a task's block of rows × panels; tasks are the unit of threading;
//! - shift: a constant added to every activation by a kernel that feeds `s8` activations as `u8`
//!   (`vpdpbusd`, `tdpbusd` multiply `u8 × s8`); it is folded out through `wsum`.
//!
//! The loops, outermost first:
//! - LOOP 3: tasks over (row block, panel block), in parallel;
//! - LOOP 2: panels of the task's panel block (the packed B panel stays in L1/L2);
//! - LOOP 1: `mr`-row tiles of the task's row block (the prepared A block stays in L2);
//! - the microkernel runs the whole K for one tile, accumulators in registers, then the epilogue
//!   writes the tile.

mod epilogue;
mod scalar;
#[cfg(target_arch = "x86_64")]
mod x86;

use std::sync::{Mutex, OnceLock, PoisonError};

pub(crate) use epilogue::{Block, CpuEpilogue, OutPtr};

use super::{ActScales, Activations, Bias, Context, OutBuf, PackedWeights, Path};
use crate::error::{Error, Result};
use crate::quant::QuantParams;
use crate::quant::Scheme;
use crate::reference::Epilogue;

/// One 64-byte line: the unit of [`AlignedBuf`], so every buffer a kernel reads is aligned to a
/// cache line (and to any SIMD width).
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C, align(64))]
pub(crate) struct Line([u8; 64]);

/// A zero-initialised, 64-byte-aligned buffer viewed as any plain element type.
#[derive(Clone, Default)]
pub(crate) struct AlignedBuf {
    lines: Vec<Line>,
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AlignedBuf({} bytes)", self.lines.len() * 64)
    }
}

impl AlignedBuf {
    /// At least `bytes` zero bytes.
    pub(crate) fn zeroed(bytes: usize) -> Self {
        AlignedBuf {
            lines: vec![Line([0; 64]); bytes.div_ceil(64)],
        }
    }
    /// Capacity in bytes.
    pub(crate) fn len_bytes(&self) -> usize {
        self.lines.len() * 64
    }
    /// The buffer as `T`s (alignment is guaranteed by [`Line`], so the cast cannot fail).
    pub(crate) fn as_slice<T: bytemuck::Pod>(&self) -> &[T] {
        bytemuck::cast_slice(&self.lines)
    }
    /// The buffer as mutable `T`s.
    pub(crate) fn as_mut_slice<T: bytemuck::Pod>(&mut self) -> &mut [T] {
        bytemuck::cast_slice_mut(&mut self.lines)
    }
}

/// The element type a kernel reads its activations in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AElem {
    /// `i16` holding the integer as is (scalar and AVX2 kernels).
    I16,
    /// `u8`: `u8` activations as is, `s8` ones shifted by +128 (VNNI and AMX kernels).
    U8,
}

/// Activations prepared for one kernel: row-major, rows padded to a multiple of `mr`, row stride
/// `lda` elements (≥ k, rounded up to the kernel's k step; padding columns multiply zero weight
/// padding and padding rows are never written out, so their content is irrelevant).
pub(crate) struct PreparedA {
    pub buf: AlignedBuf,
    pub lda: usize,
}

/// Where the activations come from.
pub(crate) enum ASource<'a> {
    /// Already quantized.
    Ints(Activations<'a>),
    /// f32 `[m, k]` quantized on the fly (the layer's forward: quantization writes straight into
    /// the kernel's layout).
    Floats { x: &'a [f32], quant: FloatQuant },
}

/// How f32 activations are quantized.
#[derive(Clone, Copy)]
pub(crate) enum FloatQuant {
    /// One parameter set for the whole matrix.
    Tensor(QuantParams),
    /// Per-row parameters computed from each row (dynamic per-token quantization), in the same
    /// pass that quantizes the row while it is in L1.
    DynamicRows(Scheme),
}

/// Whether parameters quantize to `s8` (zero point 0, range within i8) rather than `u8`.
pub(crate) fn is_s8(p: &QuantParams) -> bool {
    p.zero_point() == 0 && p.qmin() >= -128 && p.qmax() <= 127
}

impl ASource<'_> {
    /// Whether the integers are `s8` (so a `u8` kernel shifts them by 128).
    pub(crate) fn signed(&self) -> bool {
        match self {
            ASource::Ints(Activations::S8(_)) => true,
            ASource::Ints(Activations::U8(_)) => false,
            ASource::Floats {
                quant: FloatQuant::Tensor(p),
                ..
            } => is_s8(p),
            ASource::Floats {
                quant: FloatQuant::DynamicRows(s),
                ..
            } => *s == Scheme::Symmetric,
        }
    }
}

/// Rows per AMX A tile.
pub(crate) const TILE_ROWS: usize = 16;

thread_local! {
    /// One quantized row before it is scattered into the tiled AMX layout.
    static TILE_ROW: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    /// The calling thread's activation buffer, reused across calls (no allocation or page faults
    /// on the hot path once warm).
    static A_SCRATCH: std::cell::RefCell<AlignedBuf> = std::cell::RefCell::new(AlignedBuf::default());
    /// The worker's two accumulator tiles (current and previous, for pipelined kernels).
    static ACC: std::cell::RefCell<Vec<i32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Quantize or copy the activations into the `elem` layout, `rows_pad × lda`, reusing `buf`.
/// `Err(buf)` when float input holds NaN.
#[allow(clippy::too_many_arguments)]
fn prepare_a(
    ctx: &Context,
    src: &ASource<'_>,
    elem: AElem,
    m: usize,
    k: usize,
    rows_pad: usize,
    lda: usize,
    tiled: bool,
    params: &mut [QuantParams],
    mut buf: AlignedBuf,
) -> Result<PreparedA, AlignedBuf> {
    use crate::quant::kernels::{quantize_into, QuantOp};
    let esize = match elem {
        AElem::I16 => 2,
        AElem::U8 => 1,
    };
    if buf.len_bytes() < rows_pad * lda * esize {
        buf = AlignedBuf::zeroed(rows_pad * lda * esize);
    }
    let shift = if elem == AElem::U8 && src.signed() {
        128
    } else {
        0
    };
    let bad = std::sync::atomic::AtomicBool::new(false);
    let flag = || bad.store(true, std::sync::atomic::Ordering::Relaxed);
    // Quantize (or copy) row i into dst; `slot` receives the row's parameters (float sources).
    let fill_row = |i: usize, dst: &mut [u8], slot: &mut QuantParams| {
        let row = i * k..(i + 1) * k;
        let (x, quant) = match src {
            ASource::Ints(ints) => {
                match (ints, elem) {
                    (Activations::S8(x), AElem::I16) => {
                        let d: &mut [i16] = bytemuck::cast_slice_mut(dst);
                        d.iter_mut().zip(&x[row]).for_each(|(o, &v)| *o = v as i16)
                    }
                    (Activations::U8(x), AElem::I16) => {
                        let d: &mut [i16] = bytemuck::cast_slice_mut(dst);
                        d.iter_mut().zip(&x[row]).for_each(|(o, &v)| *o = v as i16)
                    }
                    // s8 + 128 as u8 is the sign bit flipped.
                    (Activations::S8(x), AElem::U8) => dst
                        .iter_mut()
                        .zip(&x[row])
                        .for_each(|(o, &v)| *o = (v as u8) ^ 0x80),
                    (Activations::U8(x), AElem::U8) => dst.copy_from_slice(&x[row]),
                }
                return;
            }
            ASource::Floats { x, quant } => (&x[row], quant),
        };
        *slot = match quant {
            FloatQuant::Tensor(p) => *p,
            FloatQuant::DynamicRows(scheme) => match crate::quant::dynamic_row_params(*scheme, x) {
                Some(p) => p,
                None => return flag(),
            },
        };
        let nan = match elem {
            AElem::I16 => quantize_into(
                x,
                QuantOp::new(slot, 0),
                bytemuck::cast_slice_mut::<u8, i16>(dst),
            ),
            AElem::U8 => quantize_into(x, QuantOp::new(slot, shift), dst),
        };
        if nan {
            flag();
        }
    };
    if lda == 0 {
        // k = 0: nothing to quantize (and no NaN can hide in an empty input).
        return Ok(PreparedA { buf, lda });
    }
    {
        let bytes: &mut [u8] = buf.as_mut_slice();
        let row_bytes = lda * esize;
        // A group is a contiguous run of output bytes: one row (row-major layouts) or 16 rows
        // (the AMX layout, where each 16-row × 64-byte A tile is contiguous).
        let group = if tiled { TILE_ROWS } else { 1 };
        let groups = m.div_ceil(group);
        let group_bytes = group * row_bytes;
        let fill_group = |g: usize, dst: &mut [u8], slots: &mut [QuantParams]| {
            if !tiled {
                fill_row(g, &mut dst[..k * esize], &mut slots[0]);
                return;
            }
            TILE_ROW.with(|t| {
                let mut t = t.borrow_mut();
                t.resize(lda, 0);
                for (r, slot) in slots.iter_mut().enumerate() {
                    fill_row(g * group + r, &mut t[..k], slot);
                    for (c, chunk) in t.chunks_exact(64).enumerate() {
                        let at = c * TILE_ROWS * 64 + r * 64;
                        dst[at..at + 64].copy_from_slice(chunk);
                    }
                }
            })
        };
        let chunks = bytes[..groups * group_bytes]
            .chunks_exact_mut(group_bytes)
            .zip(params[..m].chunks_mut(group));
        if m * k >= 1 << 16 && groups > 1 && ctx.threads() > 1 {
            // Each group is one task; its (uncontended) lock hands the task its disjoint slices.
            let chunks: Vec<_> = chunks.map(Mutex::new).collect();
            ctx.for_each(chunks.len(), |g| {
                let mut c = chunks[g].lock().unwrap_or_else(PoisonError::into_inner);
                let (d, p) = &mut *c;
                fill_group(g, d, p)
            });
        } else {
            chunks
                .enumerate()
                .for_each(|(g, (d, p))| fill_group(g, d, p));
        }
    }
    if bad.into_inner() {
        Err(buf)
    } else {
        Ok(PreparedA { buf, lda })
    }
}

/// One CPU microkernel family.
pub(crate) trait Kernel: Sync {
    /// Rows of one tile.
    fn mr(&self) -> usize;
    /// Columns of one tile (= columns per packed panel).
    fn nr(&self) -> usize;
    /// The activation element type.
    fn a_elem(&self) -> AElem;
    /// The activation row stride for depth `k` (k rounded up to the kernel's k step).
    fn lda(&self, k: usize) -> usize;
    /// Whether A is stored as contiguous 16-row × 64-byte tiles (AMX) rather than row-major.
    fn a_tiled(&self) -> bool {
        false
    }
    /// Called on the worker thread before a task's first tile (AMX loads its tile configuration).
    fn begin_task(&self) {}
    /// Called on the worker thread after a task's last tile (AMX releases the tile state).
    fn end_task(&self) {}
    /// Raw accumulators `Σ_k a·b` for rows `i0 .. i0 + rows` (`rows ≤ mr`) and panel `panel`,
    /// into `acc[r * nr + c]`. Runs between `begin_task` and `end_task` on the same thread.
    fn tile(&self, a: &PreparedA, i0: usize, rows: usize, panel: usize, acc: &mut [i32]);
    /// Whether the kernel can split a tile into `start_tile` (issue the computation, results
    /// held in its own registers) and `finish_tile` (store them), so the driver can run the
    /// previous tile's epilogue on the vector units while this tile computes (AMX).
    fn pipelined(&self) -> bool {
        false
    }
    /// The first half of [`Kernel::tile`] for pipelined kernels.
    fn start_tile(&self, a: &PreparedA, i0: usize, rows: usize, panel: usize) {
        let _ = (a, i0, rows, panel);
    }
    /// The second half of [`Kernel::tile`] for pipelined kernels: store the started tile.
    fn finish_tile(&self, rows: usize, acc: &mut [i32]) {
        let _ = (rows, acc);
    }
}

/// Per-path packed weights, built on first use.
#[derive(Debug, Default)]
pub(crate) struct CpuPacks {
    #[cfg(target_arch = "x86_64")]
    pub x86: x86::X86Packs,
}

impl CpuPacks {
    /// Pack eagerly for `path` (a no-op for paths that read the raw weights).
    pub(crate) fn prepare(&self, path: Path, raw: &[i8], n: usize, k: usize) {
        #[cfg(target_arch = "x86_64")]
        self.x86.prepare(path, raw, n, k);
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (path, raw, n, k);
    }
}

fn detect() -> &'static [(Path, Result<(), String>)] {
    static DETECTED: OnceLock<Vec<(Path, Result<(), String>)>> = OnceLock::new();
    DETECTED.get_or_init(|| {
        let mut v = vec![(Path::Reference, Ok(())), (Path::Scalar, Ok(()))];
        #[cfg(target_arch = "x86_64")]
        v.extend(x86::detect());
        #[cfg(not(target_arch = "x86_64"))]
        for p in [Path::Avx2, Path::Avx512Vnni, Path::Amx] {
            v.push((p, Err("not an x86-64 build".to_string())));
        }
        v
    })
}

/// Whether `path` can run on this CPU (`Err` explains why not).
pub(crate) fn availability(path: Path) -> Result<()> {
    if !path.is_cpu() {
        return Err(Error::PathUnavailable {
            path,
            reason: "not a CPU path".into(),
        });
    }
    match detect().iter().find(|(p, _)| *p == path) {
        Some((_, Ok(()))) => Ok(()),
        Some((_, Err(why))) => Err(Error::PathUnavailable {
            path,
            reason: why.clone(),
        }),
        None => Err(Error::PathUnavailable {
            path,
            reason: "unknown path".into(),
        }),
    }
}

/// CPU paths this machine can run, slowest first.
pub fn available_paths() -> Vec<Path> {
    detect()
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(p, _)| *p)
        .collect()
}

/// The fastest CPU path this machine has.
pub(crate) fn default_path() -> Path {
    let ok = |p| availability(p).is_ok();
    [Path::Amx, Path::Avx512Vnni, Path::Avx2]
        .into_iter()
        .find(|&p| ok(p))
        .unwrap_or(Path::Scalar)
}

/// The path for an `m × n × k` GEMM when none is forced.
pub(crate) fn choose(m: usize, _n: usize, _k: usize) -> Path {
    let best = default_path();
    // Up to 8 rows (one VNNI tile) both stream the weights at memory speed and VNNI measured a
    // few percent faster; from 9 rows VNNI needs a second pass over the weights and AMX wins.
    if best == Path::Amx && m <= 8 && availability(Path::Avx512Vnni).is_ok() {
        return Path::Avx512Vnni;
    }
    best
}

/// Row × panel blocking for `threads` workers: `(mb, nb)`.
fn blocking(
    m: usize,
    n_panels: usize,
    k: usize,
    mr: usize,
    nr: usize,
    threads: usize,
) -> (usize, usize) {
    // A task's A block (mb rows, ~256 KiB) and B block (nb panels, ~1 MiB) share a 2 MiB L2:
    // every row tile of the task re-reads the B panel, every panel re-reads the A rows. (Sizes
    // chosen by measuring 1024×4096×1024 and 2048³ on AMX; the optimum is flat around them.)
    const A_SHARE: usize = 256 << 10;
    const B_SHARE: usize = 1 << 20;
    let row_bytes = k.max(64);
    let mb_cap = ((A_SHARE / row_bytes).clamp(mr, 512) / mr) * mr;
    let mb = if m <= mb_cap {
        m.div_ceil(mr) * mr
    } else {
        mb_cap
    };
    let m_blocks = m.div_ceil(mb.max(1));
    let mut nb = (B_SHARE / (nr * row_bytes)).clamp(1, n_panels.max(1));
    // Enough tasks to keep every thread busy with some balance.
    let want = 4 * threads;
    while nb > 1 && m_blocks * n_panels.div_ceil(nb) < want {
        nb = nb.div_ceil(2);
    }
    (mb.max(mr), nb)
}

/// Run the GEMM on a CPU path. Arguments were validated by the caller. `act` is `None` when the
/// source computes per-row scales itself ([`FloatQuant::DynamicRows`]). Non-finite float input
/// is reported as [`Error::NonFinite`] naming `tensor`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run(
    ctx: &Context,
    path: Path,
    w: &PackedWeights,
    m: usize,
    src: &ASource<'_>,
    act: Option<ActScales<'_>>,
    w_scales: &[f32],
    bias: &Bias<'_>,
    out: &mut OutBuf<'_>,
    tensor: &str,
) -> Result<()> {
    // A multi-threaded GEMM on rayon's pool runs entirely inside it: the preparation happens on a
    // worker, so the workers are awake (spinning) when the tile loop fans out, instead of being
    // woken from sleep after a serial preparation on the calling thread. The spinning pool
    // (`Context::with_spin`) needs no such help: its helpers are awake and the caller works.
    if ctx.threads() > 1 && !ctx.spins() && !is_small(m, w.n(), w.k()) {
        return ctx.install(|| run_inner(ctx, path, w, m, src, act, w_scales, bias, out, tensor));
    }
    run_inner(ctx, path, w, m, src, act, w_scales, bias, out, tensor)
}

/// The error for float input `x` that `quant` cannot quantize, if any: under a per-tensor scale
/// ±inf saturates and NaN has no integer ([`crate::quant::nan_error`], counting the NaN); under
/// per-row dynamic scales any non-finite value leaves its row without a range
/// ([`crate::quant::nonfinite_error`]).
fn input_error(x: &[f32], quant: &FloatQuant, tensor: &str) -> Option<Error> {
    match quant {
        FloatQuant::Tensor(_) => x
            .iter()
            .any(|v| v.is_nan())
            .then(|| crate::quant::nan_error(tensor, x)),
        FloatQuant::DynamicRows(_) => crate::quant::check_finite(tensor, x).err(),
    }
}

/// Waking the pool costs several microseconds, more than a small GEMM takes on one core
/// (2^21 MACs is about 2 µs at VNNI speed): those run on the calling thread.
fn is_small(m: usize, n: usize, k: usize) -> bool {
    (m as u128) * (n as u128) * (k.max(1) as u128) < 1 << 21
}

#[allow(clippy::too_many_arguments)]
fn run_inner(
    ctx: &Context,
    path: Path,
    w: &PackedWeights,
    m: usize,
    src: &ASource<'_>,
    act: Option<ActScales<'_>>,
    w_scales: &[f32],
    bias: &Bias<'_>,
    out: &mut OutBuf<'_>,
    tensor: &str,
) -> Result<()> {
    let (n, k) = (w.n(), w.k());
    if m == 0 || n == 0 {
        // Nothing to write, but a float input is refused where quantizing it would be, as the
        // reference path does.
        return match src {
            ASource::Floats { x, quant } => input_error(x, quant, tensor).map_or(Ok(()), Err),
            ASource::Ints(_) => Ok(()),
        };
    }
    let scalar_kernel;
    let kernel: &dyn Kernel = match path {
        Path::Scalar => {
            scalar_kernel = scalar::ScalarKernel::new(w.raw(), n, k);
            &scalar_kernel
        }
        #[cfg(target_arch = "x86_64")]
        p => match w.cpu_packs().x86.kernel(p, w.raw(), n, k) {
            Some(kern) => kern,
            None => {
                return Err(Error::PathUnavailable {
                    path: p,
                    reason: "no CPU kernel for this path".into(),
                })
            }
        },
        #[cfg(not(target_arch = "x86_64"))]
        p => {
            return Err(Error::PathUnavailable {
                path: p,
                reason: "not an x86-64 build".into(),
            })
        }
    };
    let (mr, nr) = (kernel.mr(), kernel.nr());
    let elem = kernel.a_elem();
    let shift = if elem == AElem::U8 && src.signed() {
        128
    } else {
        0
    };
    let scratch = A_SCRATCH.with(|c| std::mem::take(&mut *c.borrow_mut()));
    let mut params = vec![crate::quant::QuantParams::unit(); m];
    let a = match prepare_a(
        ctx,
        src,
        elem,
        m,
        k,
        m.div_ceil(mr) * mr,
        kernel.lda(k),
        kernel.a_tiled(),
        &mut params,
        scratch,
    ) {
        Ok(a) => a,
        Err(buf) => {
            A_SCRATCH.with(|c| *c.borrow_mut() = buf);
            return Err(match src {
                ASource::Floats { x, quant } => input_error(x, quant, tensor)
                    .unwrap_or_else(|| crate::quant::nonfinite_error(tensor, x)),
                ASource::Ints(_) => Error::Unsupported("integer input cannot be non-finite".into()),
            });
        }
    };
    // Per-row scales computed while quantizing (dynamic per-token mode).
    let (row_scales, row_zps): (Vec<f32>, Option<Vec<i32>>) = match act {
        Some(_) => (Vec::new(), None),
        None => (
            params.iter().map(|p| p.scale()).collect(),
            (!src.signed()).then(|| params.iter().map(|p| p.zero_point()).collect()),
        ),
    };
    let act = act.unwrap_or(ActScales::PerRow {
        scales: &row_scales,
        zero_points: row_zps.as_deref(),
    });
    let epi = Epilogue::new(n, &act, w_scales, bias, out.kind());
    let zp_t = match act {
        ActScales::PerTensor { zero_point, .. } => zero_point,
        ActScales::PerRow { .. } => 0,
    };
    let row_zp = match act {
        ActScales::PerRow { zero_points, .. } => zero_points,
        _ => None,
    };
    let wsum = w.wsum();
    let col_off: Vec<i32> = (0..n)
        .map(|j| {
            let b = match bias {
                Bias::I32(b) => b[j],
                _ => 0,
            };
            b.wrapping_sub(zp_t.wrapping_add(shift).wrapping_mul(wsum[j]))
        })
        .collect();
    let ce = CpuEpilogue {
        epi: &epi,
        col_off,
        row_zp,
        wsum,
    };
    let outp = OutPtr::new(out, n);
    let panels = n.div_ceil(nr);
    let (mb, nb) = blocking(m, panels, k, mr, nr, ctx.threads());
    let m_blocks = m.div_ceil(mb);
    let tasks = m_blocks * panels.div_ceil(nb);
    // SAFETY (for every call): task t alone owns rows [bi*mb, (bi+1)*mb) × panels
    // [bj*nb, (bj+1)*nb), and each block lies inside the [m, n] output (rows ≤ m − i0,
    // cols ≤ n − j0).
    let write = |acc: &[i32], (i0, rows, j0, cols): (usize, usize, usize, usize)| unsafe {
        let block = Block {
            acc,
            ld: nr,
            i0,
            rows,
            j0,
            cols,
        };
        ce.write_block(&outp, &block)
    };
    let task = |t: usize| {
        ACC.with(|cell| {
            let (bi, bj) = (t % m_blocks, t / m_blocks);
            // Two tile buffers from the worker's scratch (no allocation per call or per task); every
            // element a write reads was stored by the kernel for that tile first.
            let mut bufs = cell.borrow_mut();
            if bufs.len() < 2 * mr * nr {
                bufs.resize(2 * mr * nr, 0);
            }
            // Pipelined kernels: the previous tile's epilogue runs while this tile computes.
            let (mut acc, mut acc_prev) = bufs[..2 * mr * nr].split_at_mut(mr * nr);
            let mut prev = None;
            kernel.begin_task();
            // LOOP 2: panels of this task.
            for p in bj * nb..((bj + 1) * nb).min(panels) {
                let j0 = p * nr;
                let cols = nr.min(n - j0);
                // LOOP 1: row tiles of this task.
                let mut i0 = bi * mb;
                let i_end = ((bi + 1) * mb).min(m);
                while i0 < i_end {
                    let rows = mr.min(i_end - i0);
                    if kernel.pipelined() {
                        kernel.start_tile(&a, i0, rows, p);
                        if let Some(b) = prev.take() {
                            write(acc_prev, b);
                        }
                        kernel.finish_tile(rows, acc);
                        std::mem::swap(&mut acc, &mut acc_prev);
                        prev = Some((i0, rows, j0, cols));
                    } else {
                        kernel.tile(&a, i0, rows, p, acc);
                        write(acc, (i0, rows, j0, cols));
                    }
                    i0 += rows;
                }
            }
            if let Some(b) = prev {
                write(acc_prev, b);
            }
            kernel.end_task();
        })
    };
    // LOOP 3: tasks (small GEMMs on the calling thread, see `is_small`).
    if tasks == 1 || ctx.threads() <= 1 || is_small(m, n, k) {
        (0..tasks).for_each(task);
    } else {
        ctx.for_each(tasks, task);
    }
    A_SCRATCH.with(|c| *c.borrow_mut() = a.buf);
    Ok(())
}
