//! cuda/peak.rs — the host side of the instruction-peak microbenchmarks (`kernels/peak.cu`):
//! [`PeakKernel`] (which instruction, how many operations a launch performs), the launch wrapper
//! written once against [`Exec`] (so the host simulation test, `sim_peak_tests.rs`, runs the
//! same geometry and parameter block as the GPU), and [`CudaPeak`], what `benches/gpu_gemm.rs`
//! times to print the card's int8 tensor-core and dp4a ceilings beside the GEMM table. No
//! inference path uses any of this.

use super::exec::{Exec, Grid};
use super::params::{
    PeakParams, PEAK_DP4A_ACC, PEAK_DP4A_UNROLL, PEAK_MMA_MT, PEAK_MMA_NT, PEAK_MMA_UNROLL,
    PEAK_SEED_WORDS, PEAK_THREADS,
};
use super::registry::KernelId;
use crate::error::{Error, Result};

/// An instruction whose sustained rate `kernels/peak.cu` measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeakKernel {
    /// `mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32` (SASS `IMMA.16832.S8.S8`), one per
    /// warp, 16 · 8 · 32 = 4096 multiply-accumulates; sm_80 and newer.
    Mma,
    /// `dp4a.s32.s32` (SASS `IDP.4A.S8.S8`), one per thread, 4 multiply-accumulates.
    Dp4a,
}

impl PeakKernel {
    /// Both instructions.
    pub const ALL: [PeakKernel; 2] = [PeakKernel::Mma, PeakKernel::Dp4a];
    /// Threads per block the kernels are built for (the most a launch may use).
    pub const THREADS: u32 = PEAK_THREADS;

    /// The PTX instruction measured.
    pub const fn instruction(self) -> &'static str {
        match self {
            PeakKernel::Mma => "mma.sync.m16n8k32.s32.s8.s8.s32",
            PeakKernel::Dp4a => "dp4a.s32.s32",
        }
    }

    /// The kernel entry.
    pub const fn kernel(self) -> KernelId {
        match self {
            PeakKernel::Mma => KernelId::PeakMmaS8,
            PeakKernel::Dp4a => KernelId::PeakDp4aS8,
        }
    }

    /// Instructions one loop iteration issues: per warp (mma: 2 × 4 tiles, unrolled 4 times)
    /// or per thread (dp4a: 16 accumulators, unrolled 8 times).
    pub const fn per_iteration(self) -> u64 {
        match self {
            PeakKernel::Mma => (PEAK_MMA_MT * PEAK_MMA_NT) as u64 * PEAK_MMA_UNROLL as u64,
            PeakKernel::Dp4a => PEAK_DP4A_ACC as u64 * PEAK_DP4A_UNROLL as u64,
        }
    }

    /// Multiply-accumulates of one instruction (of one warp for mma, one thread for dp4a).
    pub const fn macs_per_instruction(self) -> u64 {
        match self {
            PeakKernel::Mma => 16 * 8 * 32,
            PeakKernel::Dp4a => 4,
        }
    }

    /// Integer operations (2 per multiply-accumulate) of the loop of one launch of `blocks`
    /// blocks of `threads` threads and `iters` iterations.
    pub fn ops(self, blocks: u32, threads: u32, iters: u32) -> f64 {
        let issuers = match self {
            PeakKernel::Mma => blocks as u64 * (threads / 32) as u64,
            PeakKernel::Dp4a => blocks as u64 * threads as u64,
        };
        2.0 * issuers as f64
            * iters as f64
            * self.per_iteration() as f64
            * self.macs_per_instruction() as f64
    }
}

/// Enqueue `k` on `blocks` blocks of `threads` threads (a multiple of 32, at most
/// [`PeakKernel::THREADS`]) for `iters` iterations: operands from `seed`
/// (≥ `PEAK_SEED_WORDS` words), one checksum per thread into `out` (≥ blocks · threads).
pub(crate) fn launch_peak<E: Exec>(
    e: &E,
    k: PeakKernel,
    seed: &E::Buf<i32>,
    out: &mut E::Buf<i32>,
    blocks: u32,
    threads: u32,
    iters: u32,
) -> Result<()> {
    if threads == 0 || !threads.is_multiple_of(32) || threads > PEAK_THREADS {
        return Err(Error::param(
            "peak threads per block",
            format!("{threads}: must be a multiple of 32 from 32 to {PEAK_THREADS}"),
        ));
    }
    if blocks == 0 || blocks > i32::MAX as u32 {
        return Err(Error::param("peak blocks", format!("{blocks}")));
    }
    let iters = i32::try_from(iters)
        .map_err(|_| Error::param("peak iterations", format!("{iters} exceeds i32")))?;
    if E::len(seed) < PEAK_SEED_WORDS {
        return Err(Error::shape("peak seed", PEAK_SEED_WORDS, E::len(seed)));
    }
    let n = blocks as usize * threads as usize;
    if E::len(out) < n {
        return Err(Error::shape("peak output", n, E::len(out)));
    }
    let (s, _gs) = e.addr(seed);
    let (o, _go) = e.addr_mut(out);
    let p = PeakParams {
        seed: s,
        out: o,
        iters,
        pad: 0,
    };
    let g = Grid {
        grid: [blocks, 1, 1],
        block: [threads, 1, 1],
        smem: 0,
    };
    // SAFETY: both addresses come from live buffers of `e` whose guards are held across the
    // launch; the kernel reads seed[0 .. PEAK_SEED_WORDS) and writes out[0 .. blocks · threads),
    // both checked above; `PeakParams` is the block `k.kernel()` takes.
    unsafe { e.launch(k.kernel(), g, &p) }
}

/// The seed words a [`CudaPeak`] uploads (any values work; these are fixed so runs compare).
fn default_seed() -> Vec<i32> {
    let mut s: u32 = 0x9e37_79b9;
    (0..PEAK_SEED_WORDS)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            s as i32
        })
        .collect()
}

/// The peak kernels on one GPU stream with their seed and output buffers, for a fixed grid of
/// `blocks` blocks of [`PeakKernel::THREADS`] threads. [`CudaPeak::launch`] only enqueues: time it
/// by synchronizing the stream.
#[cfg(feature = "cuda")]
pub struct CudaPeak {
    exec: super::driver::CudaExec,
    seed: super::driver::DevBuf<i32>,
    out: super::driver::DevBuf<i32>,
    blocks: u32,
}

#[cfg(feature = "cuda")]
impl CudaPeak {
    /// Buffers for `blocks` blocks on `stream` (which must belong to `dev`'s context).
    pub fn new(
        dev: &super::CudaDevice,
        stream: &std::sync::Arc<cudarc::driver::CudaStream>,
        blocks: u32,
    ) -> Result<Self> {
        let exec = dev.exec(stream)?;
        let seed = exec.upload(&default_seed())?;
        let out = exec.alloc::<i32>(blocks as usize * PEAK_THREADS as usize)?;
        Ok(CudaPeak {
            exec,
            seed,
            out,
            blocks,
        })
    }

    /// The grid's blocks.
    pub fn blocks(&self) -> u32 {
        self.blocks
    }

    /// Enqueue `k` for `iters` iterations on the whole grid (an error on a GPU older than the
    /// kernel's module needs: sm_80).
    pub fn launch(&mut self, k: PeakKernel, iters: u32) -> Result<()> {
        launch_peak(
            &self.exec,
            k,
            &self.seed,
            &mut self.out,
            self.blocks,
            PEAK_THREADS,
            iters,
        )
    }

    /// The per-thread checksums of the last launch (waits for the stream).
    pub fn outputs(&self) -> Result<Vec<i32>> {
        let mut v = vec![0; self.blocks as usize * PEAK_THREADS as usize];
        self.exec.read(&self.out, &mut v)?;
        Ok(v)
    }
}
