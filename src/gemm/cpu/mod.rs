//! gemm/cpu — the CPU GEMM driver: path detection, operand preparation, cache blocking, threads,
//! and the fused epilogue. The microkernels live one per file (`scalar`, `avx2`, `avx512`, `amx`)
//! behind the [`Kernel`] trait; this module owns the loops around them.
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

use std::sync::OnceLock;

use rayon::prelude::*;

pub(crate) use epilogue::{CpuEpilogue, OutPtr};

use super::{Activations, Bias, Context, GemmArgs, OutBuf, PackedWeights, Path};
use crate::error::{Error, Result};
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
    /// The buffer as `T`s (alignment is guaranteed by [`Line`], so the cast cannot fail).
    pub(crate) fn as_slice<T: bytemuck::Pod>(&self) -> &[T] {
        bytemuck::cast_slice(&self.lines)
    }
    /// The buffer as mutable `T`s.
    pub(crate) fn as_mut_slice<T: bytemuck::Pod>(&mut self) -> &mut [T] {
        bytemuck::cast_slice_mut(&mut self.lines)
    }
}

/// Activations prepared for one kernel: row-major, rows padded with zeros to a multiple of `mr`,
/// row stride `lda` elements (≥ k, zero padded to the kernel's k step). The element type is the
/// kernel's (`i16` for scalar and AVX2, `u8` for VNNI and AMX).
pub(crate) struct PreparedA {
    pub buf: AlignedBuf,
    pub lda: usize,
}

impl PreparedA {
    /// `rows × lda` zeroed elements of `T`.
    pub(crate) fn zeroed<T: bytemuck::Pod>(rows: usize, lda: usize) -> Self {
        PreparedA {
            buf: AlignedBuf::zeroed(rows * lda * std::mem::size_of::<T>()),
            lda,
        }
    }

    /// Fill row `i` from `x` (length k) through `f`.
    pub(crate) fn fill_rows<T: bytemuck::Pod>(
        &mut self,
        x: &Activations<'_>,
        m: usize,
        k: usize,
        f8: impl Fn(i8) -> T,
        fu8: impl Fn(u8) -> T,
    ) {
        let lda = self.lda;
        let dst: &mut [T] = self.buf.as_mut_slice();
        for i in 0..m {
            let d = &mut dst[i * lda..i * lda + k];
            match x {
                Activations::S8(x) => d
                    .iter_mut()
                    .zip(&x[i * k..(i + 1) * k])
                    .for_each(|(o, &v)| *o = f8(v)),
                Activations::U8(x) => d
                    .iter_mut()
                    .zip(&x[i * k..(i + 1) * k])
                    .for_each(|(o, &v)| *o = fu8(v)),
            }
        }
    }
}

/// One CPU microkernel family.
pub(crate) trait Kernel: Sync {
    /// Rows of one tile.
    fn mr(&self) -> usize;
    /// Columns of one tile (= columns per packed panel).
    fn nr(&self) -> usize;
    /// Whether `x` is fed with a +128 shift (s8 activations into a u8 × s8 instruction).
    fn shift(&self, x: &Activations<'_>) -> i32;
    /// Copy the activations into this kernel's layout.
    fn prepare_a(&self, x: &Activations<'_>, m: usize, k: usize) -> PreparedA;
    /// Raw accumulators `Σ_k a·b` for rows `i0 .. i0 + rows` (`rows ≤ mr`) and panel `panel`,
    /// into `acc[r * nr + c]`.
    fn tile(&self, a: &PreparedA, i0: usize, rows: usize, panel: usize, acc: &mut [i32]);
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
    // AMX tiles are 16 rows tall; under that, VNNI wastes nothing and streams weights as fast.
    if best == Path::Amx && m < 16 && availability(Path::Avx512Vnni).is_ok() {
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
    let mb_max = 256usize.div_ceil(mr) * mr;
    let mb = if m <= 2 * mb_max {
        m.div_ceil(mr) * mr
    } else {
        mb_max
    };
    let m_blocks = m.div_ceil(mb.max(1));
    // A B block of about 256 KiB stays in L2 while every row tile of the task streams past it.
    let mut nb = ((256 << 10) / (nr * k.max(64))).clamp(1, n_panels.max(1));
    // Enough tasks to keep every thread busy with some balance.
    let want = 4 * threads;
    while nb > 1 && m_blocks * n_panels.div_ceil(nb) < want {
        nb = nb.div_ceil(2);
    }
    (mb.max(mr), nb)
}

/// Run the GEMM on a CPU path. Arguments were validated by the caller.
pub(crate) fn run(
    ctx: &Context,
    path: Path,
    w: &PackedWeights,
    args: &GemmArgs<'_>,
    epi: &Epilogue,
    out: &mut OutBuf<'_>,
) -> Result<()> {
    let (m, n, k) = (args.m, args.n, args.k);
    if m == 0 || n == 0 {
        return Ok(());
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
    let a = kernel.prepare_a(&args.x, m, k);
    let shift = kernel.shift(&args.x);
    let zp_t = match args.act {
        super::ActScales::PerTensor { zero_point, .. } => zero_point,
        super::ActScales::PerRow { .. } => 0,
    };
    let row_zp = match args.act {
        super::ActScales::PerRow { zero_points, .. } => zero_points,
        _ => None,
    };
    let wsum = w.wsum();
    let col_off: Vec<i32> = (0..n)
        .map(|j| {
            let b = match args.bias {
                Bias::I32(b) => b[j],
                _ => 0,
            };
            b.wrapping_sub(zp_t.wrapping_add(shift).wrapping_mul(wsum[j]))
        })
        .collect();
    let ce = CpuEpilogue {
        epi,
        col_off,
        row_zp,
        wsum,
    };
    let outp = OutPtr::new(out, n);
    let panels = n.div_ceil(nr);
    let (mb, nb) = blocking(m, panels, k, mr, nr, ctx.threads());
    let m_blocks = m.div_ceil(mb);
    let tasks = m_blocks * panels.div_ceil(nb);
    let task = |t: usize| {
        let (bi, bj) = (t % m_blocks, t / m_blocks);
        let mut acc = vec![0i32; mr * nr];
        // LOOP 2: panels of this task.
        for p in bj * nb..((bj + 1) * nb).min(panels) {
            let j0 = p * nr;
            let cols = nr.min(n - j0);
            // LOOP 1: row tiles of this task.
            let mut i0 = bi * mb;
            let i_end = ((bi + 1) * mb).min(m);
            while i0 < i_end {
                let rows = mr.min(i_end - i0);
                kernel.tile(&a, i0, rows, p, &mut acc);
                // SAFETY: task t alone owns rows [bi*mb, (bi+1)*mb) × panels [bj*nb, (bj+1)*nb),
                // and the rectangle lies inside the [m, n] output (rows ≤ m - i0, cols ≤ n - j0).
                unsafe { ce.write_block(&outp, &acc, nr, i0, rows, j0, cols) };
                i0 += rows;
            }
        }
    };
    // LOOP 3: tasks.
    if tasks == 1 || ctx.threads() <= 1 {
        (0..tasks).for_each(task);
    } else {
        ctx.install(|| (0..tasks).into_par_iter().for_each(task));
    }
    Ok(())
}
