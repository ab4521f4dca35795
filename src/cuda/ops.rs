//! cuda/ops.rs — the host wrappers of the kernels, written once against [`Exec`]: argument
//! checks, launch geometry, parameter blocks, and the device-resident linear layer
//! ([`DevLinear`]). This is the last layer before `unsafe`: every launch below happens only
//! after the buffer lengths its kernel can index have been checked here.
//!
//! Vocabulary: `ldq` / `lda` / `ldb` are row strides in elements; [`padded_k`] is the stride the
//! crate gives its own int8 rows (a multiple of 16 so the kernels can read 16 bytes at a time).
//! For the tensor-core GEMM: `BM × BN` is a thread block's output tile ([`MmaTile`]), `BK` = 64
//! the k bytes of one pipeline stage, a "k tile" 64 bytes of K, split-K the division of one
//! output tile's K range among `splits` blocks.

use half::{bf16, f16};

use super::exec::{Elem, Exec, Grid};
use super::params::*;
use super::registry::KernelId;
use super::reports::Report;
use crate::error::{Error, Result};
use crate::gemm::{OutBuf, OutKind, OutQuant, Path};
use crate::nn::{ActivationQuant, QuantLinear};
use crate::quant::{Granularity, QuantParams, Rule, Scheme};

/// Bytes a row stride must be a multiple of for the 16-byte kernels.
pub(crate) const ROW_ALIGN: usize = 16;
/// Rows up to which the GEMM uses the skinny (weight-streaming) kernel (`SKINNY_MAX_M`).
pub(crate) const SKINNY_MAX_M: usize = 8;
/// Output columns per block of the skinny kernel (one warp each).
const SKINNY_COLS: usize = 8;
/// The tiled kernel's block tile (`tiled::BM`, `tiled::BN`).
const TILE_M: usize = 128;
const TILE_N: usize = 128;
/// Threads per block of the elementwise and per-row kernels.
pub(crate) const THREADS: u32 = 256;
/// Threads of the 16-row dp4a GEMV's narrow block (`rows16::NARROW_THREADS`).
const DP4A16_NARROW_THREADS: u32 = 128;
/// The weight-streaming tensor-core GEMV (`kernels/gemv_mma.cu`): weight rows per block
/// (`gemv::BN`), threads per block (`gemv::THREADS`), and the most activation rows one block
/// row covers (`8 · MT` with MT = 4).
const GEMV_BN: usize = 16;
const GEMV_THREADS: u32 = 256;
const GEMV_MAX_BM: usize = 32;
/// Activation rows per block row of the GEMV's block variants ([`GemvVariant`]; their one width).
const GEMV_VARIANT_BM: usize = 8;
/// Blocks of the default 8-warp GEMVs — dp4a's 16-row `gemv_dp4a16_m1` and the tensor-core
/// `gemv_mma_m8` — one multiprocessor holds on sm_80 and sm_90: three, by registers (72 and 80
/// per thread: `gemv_blocks_per_sm_is_what_ptxas_allows` checks it against ptxas's report). The
/// narrow variants' rules ([`dp4a_narrow`], [`gemv_auto_variant`]) compare a layer's blocks with
/// one wave of these.
const GEMV_BLOCKS_PER_SM: usize = 3;
/// `GemmKernel::Auto` runs the weight-streaming tensor-core GEMV up to this many rows without
/// the `wgmma` rules ([`gemv_auto_max_m`]; H200, 4096², one run, before the streaming hint:
/// 8.5 µs against 10.1 for the dp4a GEMV at M = 1, 18.6 against 19.4 for the sweep's best
/// `mma.sync` tile at M = 64, 31.0 against 25.5 at M = 128).
pub(crate) const GEMV_AUTO_MAX_M: usize = 64;

/// The row stride the crate uses for `k` int8 values.
pub(crate) fn padded_k(k: usize) -> usize {
    k.div_ceil(ROW_ALIGN) * ROW_ALIGN
}

/// `v` as the kernels' 32-bit size, or `Err(Dimension)` naming `what`.
pub(crate) fn to_i32(what: &'static str, v: usize) -> Result<i32> {
    i32::try_from(v).map_err(|_| Error::Dimension {
        what,
        detail: format!("{v} does not fit the kernels' 32-bit sizes"),
    })
}

/// The device address of element `index` of a [`Status`] buffer at `base`.
fn status_word(base: u64, index: usize) -> u64 {
    base + (index * std::mem::size_of::<Status>()) as u64
}

/// `Err(Shape)` naming `what` unless `b` holds at least `len` elements.
pub(crate) fn need<E: Exec, T: Elem>(what: &'static str, b: &E::Buf<T>, len: usize) -> Result<()> {
    if E::len(b) < len {
        return Err(Error::shape(what, len, E::len(b)));
    }
    Ok(())
}

/// Integer activations on the device.
pub(crate) enum DevAct<'a, E: Exec> {
    S8(&'a E::Buf<i8>),
    U8(&'a E::Buf<u8>),
}

/// The bias of a device GEMM.
pub(crate) enum DevBias<'a, E: Exec> {
    None,
    I32(&'a E::Buf<i32>),
    F32(&'a E::Buf<f32>),
}

/// A device output buffer `[m, n]` and its kind.
pub(crate) enum DevOut<'a, E: Exec> {
    I32(&'a mut E::Buf<i32>),
    F32(&'a mut E::Buf<f32>),
    F16(&'a mut E::Buf<f16>),
    Bf16(&'a mut E::Buf<bf16>),
    I8(&'a mut E::Buf<i8>, OutQuant),
}

impl<E: Exec> DevOut<'_, E> {
    fn len(&self) -> usize {
        match self {
            DevOut::I32(b) => E::len(*b),
            DevOut::F32(b) => E::len(*b),
            DevOut::F16(b) => E::len(*b),
            DevOut::Bf16(b) => E::len(*b),
            DevOut::I8(b, _) => E::len(*b),
        }
    }
    fn kind(&self) -> OutKind {
        match self {
            DevOut::I32(_) => OutKind::I32,
            DevOut::F32(_) => OutKind::F32,
            DevOut::F16(_) => OutKind::F16,
            DevOut::Bf16(_) => OutKind::Bf16,
            DevOut::I8(_, q) => OutKind::I8(*q),
        }
    }
}

/// The checks `GemmArgs::validate` makes on the output kind.
fn check_out_kind(kind: OutKind, f32_bias: bool) -> Result<()> {
    match kind {
        OutKind::I32 if f32_bias => Err(Error::Unsupported(
            "a float bias cannot be added to raw i32 output".into(),
        )),
        OutKind::I8(q) => q.validate(),
        _ => Ok(()),
    }
}

/// One device GEMM: `Y[m, n] = epilogue(X[m, k] · W[n, k]ᵀ)` (DESIGN.md §1).
pub(crate) struct GemmDev<'a, E: Exec> {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub x: DevAct<'a, E>,
    pub lda: usize,
    pub w: &'a E::Buf<i8>,
    pub ldb: usize,
    /// `Σ_k w[n, k]` (read with zero points).
    pub wsum: &'a E::Buf<i32>,
    /// `[n]` weight scales.
    pub w_scale: &'a E::Buf<f32>,
    /// `[1]` (per tensor) or `[m]` (per row).
    pub act_scale: &'a E::Buf<f32>,
    pub per_row: bool,
    /// Zero points, `[1]` or `[m]` like the scales; `None` for 0.
    pub act_zp: Option<&'a E::Buf<i32>>,
    pub bias: DevBias<'a, E>,
    /// A report word, element `.1` of `.0`: when its count is non-zero the kernel writes
    /// nothing.
    pub status: Option<(&'a E::Buf<Status>, usize)>,
    /// Which kernel family runs.
    pub kernel: GemmKernel,
    /// Launch the weight-streaming GEMV or a TMA tile overlapped with the work before it on the
    /// stream ([`Exec::launch_overlapped`]); the other kernels launch normally.
    pub overlap: bool,
}

/// Which GEMM kernel family a device GEMM runs: the CUDA side of the crate's path override
/// (DESIGN.md §2, chosen per layer or per call, never by a global), reported back as the
/// [`Path`] the call returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GemmKernel {
    /// The tensor cores ([`Path::CudaMma`]) on sm_80 and newer when both operands' rows are
    /// 16-byte aligned (row strides and base addresses multiples of 16, as the crate's own
    /// buffers are): the weight-streaming GEMV up to 64 rows, above them the tile and split-K
    /// factor of the dispatch table; `dp4a` ([`Path::CudaDp4a`]) otherwise.
    #[default]
    Auto,
    /// Always the `dp4a` kernels ([`Path::CudaDp4a`]): up to 8 rows the decode GEMV — with
    /// 16-byte-aligned rows the 16-row one ([`GemmKernel::Dp4aGemv16`]; on the H200 1.2–2.3×
    /// faster than a warp per weight row at 1 … 8 × 4096² and 1 × 8192², bench/RESULTS.md), for
    /// one row of a layer too wide for one wave of its blocks in a narrow 4-warp block
    /// (`dp4a_narrow`), else a warp per weight row ([`GemmKernel::Dp4aWarpPerRow`]) — the dp4a
    /// tile above.
    Dp4a,
    /// The `dp4a` kernels with, for up to 8 rows, the decode GEMV in the tensor-core GEMV's
    /// block shape (16 weight rows per block, K across 8 warps: `gemv_dp4a16_*`), always its
    /// 8-warp block (what [`GemmKernel::Dp4a`] runs for aligned rows but the narrow case).
    /// `Err(PathUnavailable)` for unaligned rows.
    Dp4aGemv16,
    /// The `dp4a` kernels with, for up to 8 rows, the decode GEMV of a warp per weight row
    /// (`gemv_dp4a_*`: [`GemmKernel::Dp4a`]'s for unaligned rows and its only one before the
    /// ninth session) — for comparison and tuning.
    Dp4aWarpPerRow,
    /// Always the tensor cores: `Auto`'s tensor-core choice (the GEMV up to 64 rows, the
    /// dispatch table's tile above), or the given tile and split (for tuning the table).
    /// `Err(PathUnavailable)` before sm_75 (sm_75: its own build, never run on a Turing GPU,
    /// tiles within 64 KiB of shared memory) or for unaligned rows.
    Mma(Option<MmaConfig>),
    /// Always the weight-streaming tensor-core GEMV (`kernels/gemv_mma.cu`, [`Path::CudaMma`]):
    /// weights straight from memory into `mma` fragments, 8, 16 or 32 activation rows per block
    /// row (any `M`; built for few). `Err(PathUnavailable)` like [`GemmKernel::Mma`].
    MmaGemv,
    /// A block variant of the GEMV ([`GemvVariant`], 8 activation rows per block row); `Auto`
    /// runs the narrow one where it measured faster (`gemv_auto_variant`).
    /// `Err(PathUnavailable)` like [`GemmKernel::Mma`].
    MmaGemvVariant(GemvVariant),
}

impl GemmKernel {
    /// Whether every kernel this choice can launch has run on a GPU and matched the reference
    /// there (bench/RESULTS.md): all since the H200 run of 2026-11-28 (twenty-first session:
    /// the prefetching GEMV and the tiles [`MmaTile::ran_on_gpu`] names the last); the tuner
    /// tries only these unless asked. A kernel added later starts `false` here until a GPU run
    /// passes it.
    pub const fn ran_on_gpu(self) -> bool {
        // (no wildcard: a kernel added later must be classified here before the crate builds)
        match self {
            GemmKernel::Mma(Some(c)) => c.tile.ran_on_gpu(),
            GemmKernel::MmaGemvVariant(v) => match v {
                GemvVariant::Narrow
                | GemvVariant::Wide
                | GemvVariant::Bulk
                | GemvVariant::Prefetch => true,
            },
            GemmKernel::Auto
            | GemmKernel::Dp4a
            | GemmKernel::Dp4aGemv16
            | GemmKernel::Dp4aWarpPerRow
            | GemmKernel::Mma(None)
            | GemmKernel::MmaGemv => true,
        }
    }
    /// [`ran_on_gpu`](Self::ran_on_gpu) for compute capability `arch`: the tensor-core kernels'
    /// sm_75 build (its own CUBIN: synchronous copies, `m8n8k16`) has never run on a GPU.
    pub const fn ran_on_gpu_for(self, arch: u32) -> bool {
        let tensor_cores = matches!(
            self,
            GemmKernel::Mma(_) | GemmKernel::MmaGemv | GemmKernel::MmaGemvVariant(_)
        );
        self.ran_on_gpu() && !(tensor_cores && arch < MMA_ARCH)
    }
}

/// Block shapes of the weight-streaming GEMV besides its default (8 warps, 2 register steps);
/// each keeps more weight bytes in flight per SM than the default at one of the sizes it streams
/// slowest (`bench/RESULTS-gpu-static.md`). `Auto` runs the narrow one where the H200 measured
/// it faster (`gemv_auto_variant`); the others are forced or tuned only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemvVariant {
    /// 4 warps, 3 register steps (`gemv_mma_m8_narrow_*`, 4 blocks per SM): at 8192 weight
    /// rows all 512 blocks are resident at once (the default leaves a second wave).
    Narrow,
    /// 12 warps, 2 register steps (`gemv_mma_m8_wide_*`, 2 blocks per SM): at 4096 weight rows
    /// ~46 KiB of weights in flight per SM against ~31.
    Wide,
    /// 8 warps fed from a 4-stage shared-memory ring that bulk asynchronous copies fill
    /// (`gemv_mma_bulk_m8/m16/m32_*`, sm_90 and newer: `cp.async.bulk` + mbarriers): 68 KiB of
    /// weights in flight per block, whatever the registers; 8, 16 or 32 activation rows per
    /// block row as M asks, like the default. Forced or tuned only: on the H200 slower than the
    /// default at every size measured (1 × 4096²: 9.7 µs against 7.8; bench/RESULTS.md).
    Bulk,
    /// The default blocks and register batches, plus each block's weight rows requested from
    /// L2 ahead of its loads (`gemv_mma_pf_m8/m16/m32_*`, sm_90 and newer:
    /// `cp.async.bulk.prefetch.L2`, 4 KiB of every row ahead — at 1 × 4096² the whole layer at
    /// the start, before the wait for the kernel before it when launched overlapped): the
    /// bytes in flight no longer bounded by registers (Nsight Compute found the default waiting
    /// on its loads at 51 % of the H100's DRAM throughput there). 8, 16 or 32 activation rows
    /// per block row like the default. Forced or tuned only: on the H200 (2026-11-28), launched
    /// plainly, no faster than the default at 1 … 64 rows (1 × 4096²: 7.9 µs against 7.7, by
    /// criterion medians); overlapped with the call before it, faster at 1 and 8 × 4096² (5.7
    /// against 6.6 µs) but slower at 1 × 8192² (21.7 against 17.5).
    Prefetch,
}

impl GemvVariant {
    /// Threads per block (`gemv::NARROW_THREADS`, `gemv::WIDE_THREADS`, `bulk::THREADS`).
    const fn threads(self) -> u32 {
        match self {
            GemvVariant::Narrow => 128,
            GemvVariant::Wide => 384,
            GemvVariant::Bulk | GemvVariant::Prefetch => 256,
        }
    }
    /// Dynamic shared memory per block for `bm` activation rows per block row: the bulk
    /// variant's ring (`bulk::Ring<MT>::SMEM`: 4 stages of 16 rows × (1024 + 64) bytes, or for
    /// 32 rows 8 stages of 16 × (512 + 64), then two mbarriers of 8 bytes per stage), none for
    /// the others.
    const fn smem(self, bm: usize) -> usize {
        match self {
            GemvVariant::Bulk if bm == 32 => 8 * 16 * (512 + 64) + 2 * 8 * 8,
            GemvVariant::Bulk => 4 * 16 * (1024 + 64) + 2 * 4 * 8,
            _ => 0,
        }
    }
    /// The activation rows per block row and the kernel for `m` rows of s8 (`false`) or u8
    /// (`true`) activations: the narrow and wide variants' one 8-row block row (repeated over M);
    /// the bulk and prefetching ones' 8, 16 or 32 rows as M asks, like the default GEMV's
    /// (`gemv_plan`).
    const fn block_row(self, m: usize, u8_act: bool) -> (usize, KernelId) {
        use KernelId::*;
        match (self, m, u8_act) {
            (GemvVariant::Narrow, _, false) => (GEMV_VARIANT_BM, GemvMmaM8NarrowS8),
            (GemvVariant::Narrow, _, true) => (GEMV_VARIANT_BM, GemvMmaM8NarrowU8),
            (GemvVariant::Wide, _, false) => (GEMV_VARIANT_BM, GemvMmaM8WideS8),
            (GemvVariant::Wide, _, true) => (GEMV_VARIANT_BM, GemvMmaM8WideU8),
            (GemvVariant::Bulk, _, _) => by_block_row(
                m,
                u8_act,
                [
                    [GemvMmaBulkM8S8, GemvMmaBulkM8U8],
                    [GemvMmaBulkM16S8, GemvMmaBulkM16U8],
                    [GemvMmaBulkM32S8, GemvMmaBulkM32U8],
                ],
            ),
            (GemvVariant::Prefetch, _, _) => by_block_row(
                m,
                u8_act,
                [
                    [GemvMmaPfM8S8, GemvMmaPfM8U8],
                    [GemvMmaPfM16S8, GemvMmaPfM16U8],
                    [GemvMmaPfM32S8, GemvMmaPfM32U8],
                ],
            ),
        }
    }
}

/// The narrowest GEMV block row (8, 16 or 32 activation rows; 32, repeated, beyond) that covers
/// `m` rows, and its kernel among `kernels` (8-, 16-, 32-row, each for s8 then u8 activations).
const fn by_block_row(m: usize, u8_act: bool, kernels: [[KernelId; 2]; 3]) -> (usize, KernelId) {
    let (i, bm) = match m {
        0..=8 => (0, 8),
        9..=16 => (1, 16),
        _ => (2, GEMV_MAX_BM),
    };
    (bm, kernels[i][u8_act as usize])
}

/// What a GEMM launches: the dp4a kernels, a tiled tensor-core configuration, or the
/// weight-streaming tensor-core GEMV.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plan {
    /// The dp4a kernels; `gemv16`: the 16-row GEMV for few rows (aligned operands), in its
    /// narrow block for one row when `narrow` ([`dp4a_narrow`]).
    Dp4a {
        gemv16: bool,
        narrow: bool,
    },
    Tiled(MmaConfig),
    /// The GEMV, in its default blocks (`None`) or a variant.
    Gemv(Option<GemvVariant>),
}

impl Plan {
    fn path(self) -> Path {
        match self {
            Plan::Dp4a { .. } => Path::CudaDp4a,
            Plan::Tiled(_) | Plan::Gemv(_) => Path::CudaMma,
        }
    }
}

/// A tensor-core block tile: rows of X (`M`) × rows of W (`N`) per thread block, one kernel
/// pair (s8 / u8 activations) each. The `M…N…` tiles are `kernels/gemm_mma.cu`'s (both operands
/// staged through shared memory, `ldmatrix` fragments); the `Stream…` tiles are the staged
/// weight-streaming kernels of `kernels/gemv_mma.cu` (weights straight from memory into `mma`
/// fragments, activations staged in shared memory), built for 32 … 256 rows; the `Wgmma…` tiles
/// are `kernels/gemm_wgmma.cu`'s (Hopper's `wgmma.mma_async`, both operands staged; sm_90 only —
/// on any other GPU loading them fails with a typed error); the `Tma…` tiles are
/// `kernels/gemm_tma.cu`'s (the same `wgmma`, its operand tiles brought by the Tensor Memory
/// Accelerator, many stages deep; sm_90 only; forced or tuned until measured).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MmaTile {
    /// 16 × 128, 4 warps: decode shapes (`M ≤ 16`).
    M16N128,
    /// 64 × 128, 4 warps.
    M64N128,
    /// 128 × 128, 4 warps.
    M128N128,
    /// 128 × 256, 8 warps.
    M128N256,
    /// 256 × 128, 8 warps.
    M256N128,
    /// Weight-streaming, 32 activation rows × 64 weight rows, 8 warps (4 along N × 2 along K).
    Stream32x64,
    /// Weight-streaming, 64 × 64, 8 warps (4 × 2).
    Stream64x64,
    /// Weight-streaming, 128 × 64, 8 warps (4 × 2).
    Stream128x64,
    /// Weight-streaming, 64 × 128, 8 warps (8 along N).
    Stream64x128,
    /// `wgmma`, 128 × 256, 2 warpgroups (64 rows × 256 each), sm_90.
    Wgmma128x256,
    /// `wgmma`, 128 × 128, 2 warpgroups (64 rows × 128 each), sm_90.
    Wgmma128x128,
    /// `wgmma`, 64 × 256, 1 warpgroup, sm_90: for 64 … 256 rows.
    Wgmma64x256,
    /// `wgmma`, 64 × 128, 1 warpgroup (two blocks per SM), sm_90: for 64 … 256 rows.
    Wgmma64x128,
    /// `wgmma`, 128 × 128 with 3 stages instead of 4: two blocks per SM (one block's epilogue
    /// overlaps the other's main loop), sm_90.
    Wgmma128x128D3,
    /// `wgmma` on TMA-loaded tiles, 64 × 128, 1 warpgroup, 8 stages, sm_90: built for 33 … 256
    /// rows (the tuner tries it, and 64 × 128 D4, at any row count).
    Tma64x128,
    /// `wgmma` on TMA-loaded tiles, 128 × 128, 2 warpgroups, 6 stages, sm_90.
    Tma128x128,
    /// `wgmma` on TMA-loaded tiles, 64 × 256, 1 warpgroup, 5 stages, sm_90.
    Tma64x256,
    /// `wgmma` on TMA-loaded tiles, 128 × 256, 2 warpgroups, 4 stages, sm_90.
    Tma128x256,
    /// `wgmma` on TMA-loaded tiles, 64 × 128 with 4 stages: two blocks per SM, sm_90.
    Tma64x128D4,
    /// 64 × 64, 4 warps, 6 stages of 128 bytes (96 KiB), fragments double-buffered: a deep
    /// `cp.async` pipeline for 33 … 256 rows, the shape of cuBLASLt's int8 kernel there on an
    /// H100 (`kernels/gemm_mma.cu`). Hopper's table sent 65 … 256 rows here from the tenth
    /// session (H100, 128 and 256 × 4096²: 1.12–1.16× the tiles it replaced) until the H200
    /// run of 2026-11-28 measured its sliced twin and [`MmaTile::Wgmma64x64`] faster there;
    /// forced or tuned since.
    M64N64,
    /// 128 × 64, 4 warps, 3 stages of 128 bytes (72 KiB): as [`MmaTile::M64N64`], weights read
    /// once for 128 rows; forced or tuned only (H100, 256 × 4096²: 26.6 µs against the 64 × 64
    /// tile's 21.5).
    M128N64,
    /// `wgmma`, 64 × 64, 1 warpgroup, 6 stages (97 KiB, two blocks per SM), copy addresses held
    /// in registers, sm_90: [`MmaTile::M64N64`]'s shape on Hopper's own instruction (that tile
    /// was issue-bound on an H100; a `wgmma` stage is four tensor-core instructions per warp).
    /// Hopper's table sends 129 rows and more here, where K is 2048 or deeper and the layer
    /// has at most two 64 × 64 tiles per SM (H200, 256 × 4096²: 18.3 µs against 23.6 for the
    /// `mma.sync` 64 × 64 tile; bench/RESULTS.md, 2026-11-28).
    Wgmma64x64,
    /// `wgmma`, 128 × 64, 2 warpgroups, 4 stages (97 KiB, two blocks per SM), addresses held,
    /// sm_90: [`MmaTile::M128N64`]'s shape (cuBLASLt's at 256 × 4096² on an H100). Forced or
    /// tuned only (H200, 256 × 4096²: 21.7 µs split 2 against [`MmaTile::Wgmma64x64`]'s 18.3).
    Wgmma128x64,
    /// `wgmma` on TMA-loaded tiles, 64 × 64, 6 stages (97 KiB, two blocks per SM), in thread
    /// block clusters of 2 × 2 tiles that share their X and W boxes through the TMA's multicast
    /// (each box read from L2 once per cluster: at 128 × 4096², 32 MB of operand traffic
    /// instead of 64), sm_90. Forced or tuned only: on the H200 (2026-11-28) half the speed of
    /// the unclustered 64 × 64 tiles (128 × 4096²: 32.6 µs against 15.5, criterion medians).
    Tmc64x64M2N2,
    /// As [`MmaTile::Tmc64x64M2N2`] with 128 × 64 tiles (2 warpgroups, 4 stages): W read once
    /// per two tile rows, X once per two tile columns (256 rows).
    Tmc128x64M2N2,
    /// As [`MmaTile::Tmc64x64M2N2`] in clusters of 1 × 4 tiles: one X box for four tile columns
    /// (up to 64 rows, where a second tile row would be padding).
    Tmc64x64N4,
    /// [`MmaTile::Stream64x64`] (Hopper's `Auto` at 33 … 128 rows of wide layers) whose blocks
    /// also ask L2 for their weight rows ahead of their loads (`cp.async.bulk.prefetch.L2`,
    /// sm_90 and newer), as [`GemvVariant::Prefetch`] does for the GEMV: Nsight Compute found
    /// the register-fed stream tile waiting on its loads at 26 % of the H100's DRAM throughput
    /// (64 × 4096²).
    /// Forced or tuned only: slower than the plain stream tile on the H200 (64 × 4096²:
    /// 18.5 µs against 15.6, criterion medians).
    Stream64x64Pf,
    /// [`MmaTile::M64N64`] with 8 warps: two slices of 2 × 2 warps, each over two of a stage's
    /// four k steps, their partial sums added in shared memory before the epilogue ("sliced
    /// K"). The same block tile, copies, pipeline and bits,
    /// two warps per scheduler instead of one: Nsight Compute found the 4-warp tile issuing once
    /// every 3.76 cycles on an H100, stalled on its own dependencies (128 × 4096²), with no
    /// other warp to issue from. Hopper's table sends 33 … 128 rows here, and more where K is
    /// below 2048, in layers with at most two such tiles per SM (H200, 2026-11-28: 64 × 4096²
    /// 14.5 µs split 2, 128 × 4096² 16.8 whole, against 17.9 and 18.8 for the tiles it
    /// replaced, by the tuner's events).
    M64N64K2,
    /// [`MmaTile::M128N64`] in two k slices of 2 × 2 warps, as [`MmaTile::M64N64K2`]: the
    /// weights read once per 128 rows (48 MB of L2 traffic at 128 × 4096² where the 64-row tiles
    /// read 64), 8 warps per block, one block per SM (162 registers). Forced or tuned only
    /// (H200, 128 × 4096²: 24.3 µs against the 64-row sliced tile's 15.6, criterion medians).
    M128N64K2,
}

/// The kernel file of a tile, with what its launch geometry depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TileFamily {
    /// `kernels/gemm_mma.cu`: both operands staged, `ldmatrix`, `mma.sync`; `bk` k bytes per
    /// stage (`mma::Config`'s `BK`: 64, 128 for the deep tiles).
    Mma { bk: usize },
    /// `kernels/gemv_mma.cu`'s staged kernels: warps along K and 64-byte k steps per warp and
    /// batch (`Cfg<MT, WN, WK, U>`'s `WK` and `U`).
    Stream { wk: usize, u: usize },
    /// `kernels/gemm_wgmma.cu`: `wgmma.mma_async`, sm_90a.
    Wgmma,
    /// `kernels/gemm_tma.cu`: `wgmma.mma_async` on tiles the TMA loads, sm_90a.
    Tma,
}

/// One tile's row of [`MmaTile::spec`].
struct TileSpec {
    bm: usize,
    bn: usize,
    threads: usize,
    stages: usize,
    family: TileFamily,
    label: &'static str,
    /// s8, u8 activations.
    kernels: [KernelId; 2],
    /// Tiles per thread block cluster along M and N ((1, 1): launched without clusters).
    cluster: (usize, usize),
}

impl MmaTile {
    /// Every tile.
    pub const ALL: [MmaTile; 29] = [
        MmaTile::M16N128,
        MmaTile::M64N128,
        MmaTile::M128N128,
        MmaTile::M128N256,
        MmaTile::M256N128,
        MmaTile::Stream32x64,
        MmaTile::Stream64x64,
        MmaTile::Stream128x64,
        MmaTile::Stream64x128,
        MmaTile::Wgmma128x256,
        MmaTile::Wgmma128x128,
        MmaTile::Wgmma64x256,
        MmaTile::Wgmma64x128,
        MmaTile::Wgmma128x128D3,
        MmaTile::Tma64x128,
        MmaTile::Tma128x128,
        MmaTile::Tma64x256,
        MmaTile::Tma128x256,
        MmaTile::Tma64x128D4,
        MmaTile::M64N64,
        MmaTile::M128N64,
        MmaTile::Wgmma64x64,
        MmaTile::Wgmma128x64,
        MmaTile::Tmc64x64M2N2,
        MmaTile::Tmc128x64M2N2,
        MmaTile::Tmc64x64N4,
        MmaTile::Stream64x64Pf,
        MmaTile::M64N64K2,
        MmaTile::M128N64K2,
    ];
    /// Everything the host knows of a tile, written once per tile: the twin of the kernel's
    /// compile-time configuration (`mma::Config`, `staged::Cfg`, `wg::Config`, `tma::Config`).
    /// (A table: rustfmt would spread each row over nine lines.)
    #[rustfmt::skip]
    const fn spec(self) -> TileSpec {
        use KernelId::*;
        use TileFamily::{Stream, Tma, Wgmma};
        const fn t(bm: usize, bn: usize, threads: usize, stages: usize, family: TileFamily,
                   label: &'static str, kernels: [KernelId; 2]) -> TileSpec {
            TileSpec { bm, bn, threads, stages, family, label, kernels, cluster: (1, 1) }
        }
        // The TMA tiles in clusters of cm × cn tiles (`tma::ClusterConfig`).
        const fn tc(bm: usize, threads: usize, stages: usize, cluster: (usize, usize),
                    label: &'static str, kernels: [KernelId; 2]) -> TileSpec {
            TileSpec { bm, bn: 64, threads, stages, family: Tma, label, kernels, cluster }
        }
        // `mma.sync` with 64- or 128-byte k stages.
        const MMA: TileFamily = TileFamily::Mma { bk: 64 };
        const MMA128: TileFamily = TileFamily::Mma { bk: 128 };
        // Weight-streaming: stages are one activation batch in shared memory and one of
        // weights in registers, double-buffered.
        const S22: TileFamily = Stream { wk: 2, u: 2 };
        const S12: TileFamily = Stream { wk: 1, u: 2 };
        //                              bm   bn thr st family  label           kernels (s8, u8)
        match self {
            MmaTile::M16N128 =>      t( 16, 128, 128, 4, MMA,   "16x128",       [GemmMma16x128S8, GemmMma16x128U8]),
            MmaTile::M64N128 =>      t( 64, 128, 128, 4, MMA,   "64x128",       [GemmMma64x128S8, GemmMma64x128U8]),
            MmaTile::M128N128 =>     t(128, 128, 128, 4, MMA,   "128x128",      [GemmMma128x128S8, GemmMma128x128U8]),
            MmaTile::M128N256 =>     t(128, 256, 256, 3, MMA,   "128x256",      [GemmMma128x256S8, GemmMma128x256U8]),
            MmaTile::M256N128 =>     t(256, 128, 256, 3, MMA,   "256x128",      [GemmMma256x128S8, GemmMma256x128U8]),
            MmaTile::Stream32x64 =>  t( 32,  64, 256, 2, S22,   "stream32x64",  [GemmStream32x64S8, GemmStream32x64U8]),
            MmaTile::Stream64x64 =>  t( 64,  64, 256, 2, S22,   "stream64x64",  [GemmStream64x64S8, GemmStream64x64U8]),
            MmaTile::Stream128x64 => t(128,  64, 256, 2, S22,   "stream128x64", [GemmStream128x64S8, GemmStream128x64U8]),
            MmaTile::Stream64x128 => t( 64, 128, 256, 2, S12,   "stream64x128", [GemmStream64x128S8, GemmStream64x128U8]),
            MmaTile::Wgmma128x256 => t(128, 256, 256, 4, Wgmma, "wgmma128x256", [GemmWgmma128x256S8, GemmWgmma128x256U8]),
            MmaTile::Wgmma128x128 => t(128, 128, 256, 4, Wgmma, "wgmma128x128", [GemmWgmma128x128S8, GemmWgmma128x128U8]),
            MmaTile::Wgmma64x256 =>  t( 64, 256, 128, 4, Wgmma, "wgmma64x256",  [GemmWgmma64x256S8, GemmWgmma64x256U8]),
            MmaTile::Wgmma64x128 =>  t( 64, 128, 128, 4, Wgmma, "wgmma64x128",  [GemmWgmma64x128S8, GemmWgmma64x128U8]),
            MmaTile::Wgmma128x128D3 =>
                t(128, 128, 256, 3, Wgmma, "wgmma128x128d3", [GemmWgmma128x128D3S8, GemmWgmma128x128D3U8]),
            MmaTile::Tma64x128 =>    t( 64, 128, 128, 8, Tma,   "tma64x128",    [GemmTma64x128S8, GemmTma64x128U8]),
            MmaTile::Tma128x128 =>   t(128, 128, 256, 6, Tma,   "tma128x128",   [GemmTma128x128S8, GemmTma128x128U8]),
            MmaTile::Tma64x256 =>    t( 64, 256, 128, 5, Tma,   "tma64x256",    [GemmTma64x256S8, GemmTma64x256U8]),
            MmaTile::Tma128x256 =>   t(128, 256, 256, 4, Tma,   "tma128x256",   [GemmTma128x256S8, GemmTma128x256U8]),
            MmaTile::Tma64x128D4 =>  t( 64, 128, 128, 4, Tma,   "tma64x128d4",  [GemmTma64x128D4S8, GemmTma64x128D4U8]),
            MmaTile::M64N64 =>       t( 64,  64, 128, 6, MMA128, "64x64",       [GemmMma64x64S8, GemmMma64x64U8]),
            MmaTile::M128N64 =>      t(128,  64, 128, 3, MMA128, "128x64",      [GemmMma128x64S8, GemmMma128x64U8]),
            MmaTile::Wgmma64x64 =>   t( 64,  64, 128, 6, Wgmma, "wgmma64x64",   [GemmWgmma64x64S8, GemmWgmma64x64U8]),
            MmaTile::Wgmma128x64 =>  t(128,  64, 256, 4, Wgmma, "wgmma128x64",  [GemmWgmma128x64S8, GemmWgmma128x64U8]),
            //                               bm  thr st cluster
            MmaTile::Tmc64x64M2N2 =>  tc( 64, 128, 6, (2, 2), "tmc64x64m2n2",  [GemmTmc64x64M2n2S8, GemmTmc64x64M2n2U8]),
            MmaTile::Tmc128x64M2N2 => tc(128, 256, 4, (2, 2), "tmc128x64m2n2", [GemmTmc128x64M2n2S8, GemmTmc128x64M2n2U8]),
            MmaTile::Tmc64x64N4 =>    tc( 64, 128, 6, (1, 4), "tmc64x64n4",    [GemmTmc64x64N4S8, GemmTmc64x64N4U8]),
            //                              bm   bn thr st family  label           kernels (s8, u8)
            MmaTile::Stream64x64Pf => t( 64,  64, 256, 2, S22,   "stream64x64pf", [GemmStreamPf64x64S8, GemmStreamPf64x64U8]),
            MmaTile::M64N64K2 =>      t( 64,  64, 256, 6, MMA128, "64x64k2",      [GemmMma64x64k2S8, GemmMma64x64k2U8]),
            MmaTile::M128N64K2 =>     t(128,  64, 256, 3, MMA128, "128x64k2",     [GemmMma128x64k2S8, GemmMma128x64k2U8]),
        }
    }
    /// Rows of X (and Y) per block (`BM` in the kernel).
    pub const fn bm(self) -> usize {
        self.spec().bm
    }
    /// Rows of W (columns of Y) per block (`BN`).
    pub const fn bn(self) -> usize {
        self.spec().bn
    }
    /// Threads per block (`THREADS`).
    pub const fn threads(self) -> usize {
        self.spec().threads
    }
    /// Pipeline stages (`STAGES`; the weight-streaming tiles double-buffer one batch of
    /// activations in shared memory and one of weights in registers).
    pub const fn stages(self) -> usize {
        self.spec().stages
    }
    /// K bytes per pipeline stage, the unit of `MmaLaunch`'s k tiles: 128 for the `wgmma`
    /// and TMA tiles (one 128-byte swizzle row) and the deep `mma.sync` ones, 64 for the others.
    pub const fn bk(self) -> usize {
        match self.spec().family {
            TileFamily::Mma { bk } => bk,
            TileFamily::Wgmma | TileFamily::Tma => WGMMA_BK,
            TileFamily::Stream { .. } => MMA_BK,
        }
    }
    /// Whether this is a `wgmma` tile (`kernels/gemm_wgmma.cu` or, TMA-fed,
    /// `kernels/gemm_tma.cu`; sm_90 only).
    pub const fn is_wgmma(self) -> bool {
        matches!(self.spec().family, TileFamily::Wgmma | TileFamily::Tma)
    }
    /// Whether this is a TMA-fed `wgmma` tile (`kernels/gemm_tma.cu`: its launch carries
    /// tensor maps of X and W, `TmaParams`).
    pub const fn is_tma(self) -> bool {
        matches!(self.spec().family, TileFamily::Tma)
    }
    /// Whether this tile's kernels have run on a GPU and given the reference's bits there
    /// (bench/RESULTS.md): the `mma.sync`, weight-streaming and `wgmma` tiles since the H200
    /// and H100 runs of 2026-11-26 (fifth session), the TMA tiles since the H200 run of the
    /// ninth session, the deep 64 × 64 and 128 × 64 tiles since the H100 run of the tenth; the
    /// 64-column `wgmma` tiles, the clustered TMA tiles, the prefetching stream tile and the
    /// sliced deep tiles (built without a GPU on 2026-11-27) since the H200 run of 2026-11-28.
    /// Each run's GPU tests checked every tile × split-K factor, both builds (sm_90 CUBIN and
    /// the sm_75 PTX), and its tuners bit-checked every candidate. The match has no wildcard,
    /// so a tile added later does not build until it is placed here, `false` until a GPU run
    /// passes it.
    pub const fn ran_on_gpu(self) -> bool {
        match self {
            MmaTile::M16N128
            | MmaTile::M64N128
            | MmaTile::M128N128
            | MmaTile::M128N256
            | MmaTile::M256N128
            | MmaTile::Stream32x64
            | MmaTile::Stream64x64
            | MmaTile::Stream128x64
            | MmaTile::Stream64x128
            | MmaTile::Wgmma128x256
            | MmaTile::Wgmma128x128
            | MmaTile::Wgmma64x256
            | MmaTile::Wgmma64x128
            | MmaTile::Wgmma128x128D3
            | MmaTile::Tma64x128
            | MmaTile::Tma128x128
            | MmaTile::Tma64x256
            | MmaTile::Tma128x256
            | MmaTile::Tma64x128D4
            | MmaTile::M64N64
            | MmaTile::M128N64
            | MmaTile::Wgmma64x64
            | MmaTile::Wgmma128x64
            | MmaTile::Tmc64x64M2N2
            | MmaTile::Tmc128x64M2N2
            | MmaTile::Tmc64x64N4
            | MmaTile::Stream64x64Pf
            | MmaTile::M64N64K2
            | MmaTile::M128N64K2 => true,
        }
    }
    /// Output tiles per thread block cluster, along M and along N (`(1, 1)`: no clusters). A
    /// clustered tile's grid is one row of whole clusters (`tma::body_cluster` places them).
    pub const fn cluster(self) -> (usize, usize) {
        self.spec().cluster
    }
    /// Whether `m` rows fill more than all but one of the tile rows of this tile's clusters
    /// (always, without clusters): below that a cluster's last tile row would be padding only.
    /// The tuner offers a tile, and the bench times it, only then.
    pub const fn clusters_filled_by(self, m: usize) -> bool {
        m > self.bm() * (self.cluster().0 - 1)
    }
    /// Whether this is a weight-streaming tile (`kernels/gemv_mma.cu`'s staged kernels).
    pub const fn is_stream(self) -> bool {
        matches!(self.spec().family, TileFamily::Stream { .. })
    }
    /// Dynamic shared memory per block: `STAGES · (BM + BN) · BK` bytes for the tiles of
    /// `gemm_mma.cu`, `gemm_wgmma.cu` and `gemm_tma.cu` (+ 1 KiB for the latter two to align
    /// their operand tiles to the 128-byte swizzle's 1024-byte pattern, + 16 bytes per stage of
    /// mbarriers for the TMA tiles); for the weight-streaming ones the larger of
    /// two activation batches (`2 · U · WK · BM · 64`) and the accumulators' staging
    /// (`WK · BM · (BN + 4) · 4`), plus the split-K flag (`staged::Cfg::SMEM`).
    pub const fn smem_bytes(self) -> usize {
        let (bm, bn, stages) = (self.bm(), self.bn(), self.stages());
        match self.spec().family {
            TileFamily::Mma { bk } => stages * (bm + bn) * bk,
            TileFamily::Wgmma => stages * (bm + bn) * WGMMA_BK + 1024,
            // (+ two 8-byte mbarriers per stage past the tiles: `tma::Config::SMEM`)
            TileFamily::Tma => stages * (bm + bn) * WGMMA_BK + 1024 + 16 * stages,
            TileFamily::Stream { wk, u } => {
                let batches = 2 * u * wk * bm * MMA_BK;
                let staging = wk * bm * (bn + 4) * 4;
                (if batches > staging { batches } else { staging }) + 16
            }
        }
    }
    /// A short name: `16x128`, …, `stream64x128`, `wgmma64x128` (bench rows, reports, the
    /// text form of a kernel choice).
    pub const fn label(self) -> &'static str {
        self.spec().label
    }
    /// Whether the tile can run, forced or tuned, on a GPU of compute capability `arch`
    /// (major · 10 + minor): sm_75 or newer, within sm_75's 64 KiB of shared memory per block
    /// there, a `wgmma` tile on sm_90 alone — the refusals a forced kernel gets otherwise.
    pub fn runs_on(self, arch: u32) -> bool {
        arch_refusal(
            GemmKernel::Mma(Some(MmaConfig {
                tile: self,
                splits: 1,
            })),
            arch,
        )
        .is_none()
    }
    /// The kernel for s8 (`false`) or u8 (`true`) activations.
    pub(crate) const fn kernel(self, u8_act: bool) -> KernelId {
        self.spec().kernels[u8_act as usize]
    }
}

/// A tensor-core launch: the block tile and the split-K factor (blocks sharing one output
/// tile's K range; 1: none). Any split gives the same bits (the partial sums are exact i32).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmaConfig {
    pub tile: MmaTile,
    pub splits: u32,
}

/// The oldest architecture `Auto` runs the tensor-core kernels on (`mma.sync.m16n8k32`,
/// `cp.async`; the issue's "by default on sm_80+").
const MMA_ARCH: u32 = 80;
/// The oldest architecture the tensor-core kernels run on when forced or tuned: sm_75, through
/// their own sm_75 CUBIN (synchronous copies, each m16n8k32 as four m8n8k16; kernels/common.cuh).
/// Never run on a Turing GPU: `Auto` keeps dp4a there.
const MMA_MIN_ARCH: u32 = 75;
/// Dynamic shared memory a block may have on sm_75 (Turing's 64 KiB per multiprocessor).
const SM75_BLOCK_SMEM: usize = 64 << 10;
/// The one architecture the `wgmma` tiles run on (their CUBIN is sm_90a).
const WGMMA_ARCH: u32 = 90;
/// K bytes per pipeline stage of the `wgmma` tiles (`wg::BK`: one 128-byte swizzle row).
const WGMMA_BK: usize = 128;

/// Why `kernel`, forced, cannot run on a GPU of compute capability `arch` (major · 10 + minor):
/// the tensor-core kernels need sm_75 (and on sm_75 a tile within its 64 KiB of shared memory),
/// a `wgmma` tile sm_90 exactly; `None` when it can (`Auto` and dp4a always can).
/// `CudaWeights::set_kernel` asks before a kernel is kept, every launch's plan again.
pub(crate) fn arch_refusal(kernel: GemmKernel, arch: u32) -> Option<String> {
    match kernel {
        GemmKernel::Auto
        | GemmKernel::Dp4a
        | GemmKernel::Dp4aGemv16
        | GemmKernel::Dp4aWarpPerRow => None,
        _ if arch < MMA_MIN_ARCH => Some(format!(
            "the tensor-core kernels need sm_75 or newer; this GPU is sm_{arch}"
        )),
        GemmKernel::Mma(Some(c))
            if arch < MMA_ARCH && !c.tile.is_wgmma() && c.tile.smem_bytes() > SM75_BLOCK_SMEM =>
        {
            Some(format!(
                "the {} tile needs {} KiB of shared memory per block; sm_{arch} allows 64",
                c.tile.label(),
                c.tile.smem_bytes().div_ceil(1024)
            ))
        }
        GemmKernel::Mma(Some(c)) if c.tile.is_wgmma() && arch != WGMMA_ARCH => Some(format!(
            "the {} tile runs on sm_90 alone (wgmma is an sm_90a feature); this GPU is sm_{arch}",
            c.tile.label()
        )),
        GemmKernel::MmaGemvVariant(GemvVariant::Bulk) if arch < 90 => Some(format!(
            "the bulk-copy GEMV needs sm_90 or newer (cp.async.bulk); this GPU is sm_{arch}"
        )),
        GemmKernel::MmaGemvVariant(GemvVariant::Prefetch) if arch < 90 => Some(format!(
            "the prefetching GEMV needs sm_90 or newer (cp.async.bulk.prefetch); this GPU is sm_{arch}"
        )),
        GemmKernel::Mma(Some(c)) if c.tile == MmaTile::Stream64x64Pf && arch < 90 => Some(format!(
            "the {} tile needs sm_90 or newer (cp.async.bulk.prefetch); this GPU is sm_{arch}",
            c.tile.label()
        )),
        _ => None,
    }
}
/// K bytes per pipeline stage of the tensor-core kernels (`mma::BK`).
pub(crate) const MMA_BK: usize = 64;
/// Split-K: the last block of a tile reads the other splits' partial sums alone, so their size
/// (rows with data × BN × 4 bytes per split) is capped at this.
const SPLIT_READ_MAX: usize = 64 << 10;
/// Split-K: at most this many splits (16 measured slower than 8 at every design shape on an
/// H200), each of at least two 64-byte k tiles.
const MAX_SPLITS: usize = 8;

/// Shared memory per multiprocessor available to blocks, by compute capability (sm_75: 64 KiB,
/// sm_80 / sm_87: 164 KiB, sm_90 / sm_100: 228 KiB, the others (sm_86, sm_89, sm_120): 100 KiB).
/// Occupancy arithmetic for the static report (the measured dispatch no longer needs it).
#[cfg(test)]
fn smem_per_sm(arch: u32) -> usize {
    match arch {
        75 => 64 << 10,
        80 | 87 => 164 << 10,
        90 | 100 | 103 => 228 << 10,
        _ => 100 << 10,
    }
}

/// Registers per thread of a kernel as ptxas reported them at build time (the sm_90a CUBIN for
/// the architecture-specific `wgmma` modules, else sm_90 for sm_90 and newer, sm_80 before,
/// sm_75 there), or 255 when NVRTC did not run at build time.
#[cfg(test)]
fn kernel_registers(kernel: KernelId, arch: u32) -> usize {
    static REPORT: std::sync::OnceLock<Vec<super::registry::KernelResources>> =
        std::sync::OnceLock::new();
    let want = if kernel.module().arch_specific() {
        "sm_90a"
    } else if arch >= 90 {
        "sm_90"
    } else if arch >= 80 {
        "sm_80"
    } else {
        "sm_75"
    };
    let name = kernel.name();
    REPORT
        .get_or_init(super::registry::resources)
        .iter()
        .find(|r| r.kernel == name && r.arch == want)
        .map_or(255, |r| r.registers.max(1) as usize)
}

/// Blocks of `tile` one multiprocessor holds at once: limited by shared memory (1 KiB reserved
/// per block), threads (2048 per SM; 1536 on sm_86 / sm_89 / sm_120, 1024 on sm_75) and
/// registers (64 Ki per SM, allocated in units of 256 per warp).
#[cfg(test)]
pub(crate) fn resident_blocks(tile: MmaTile, arch: u32) -> usize {
    resident_blocks_of(tile.kernel(false), tile.threads(), tile.smem_bytes(), arch)
}

/// [`resident_blocks`] for any kernel: its block's threads and shared memory (dynamic and
/// static) given.
#[cfg(test)]
fn resident_blocks_of(kernel: KernelId, threads: usize, smem: usize, arch: u32) -> usize {
    let by_smem = smem_per_sm(arch) / (smem + 1024);
    let max_threads = match arch {
        75 => 1024,
        80 | 87 | 90 | 100 | 103 => 2048,
        _ => 1536,
    };
    let by_threads = max_threads / threads;
    let regs_per_warp = (kernel_registers(kernel, arch) * 32).div_ceil(256) * 256;
    let by_regs = 65536 / (regs_per_warp * threads / 32);
    by_smem.min(by_threads).min(by_regs).clamp(1, 32)
}

#[cfg(test)]
mod occupancy_tests {
    use super::*;

    #[test]
    fn gemv_blocks_per_sm_is_what_ptxas_allows() {
        if !super::super::registry::BUILT_WITH_NVRTC {
            eprintln!("no ptxas report (kernels not compiled at build time): skipped");
            return;
        }
        // The default 8-warp GEMVs, with their static shared memory (ptxas's report).
        let report = super::super::registry::resources();
        for kernel in [KernelId::GemvDp4a16M1S8, KernelId::GemvMmaM8S8] {
            for arch in [80, 90] {
                let smem = report
                    .iter()
                    .find(|r| r.kernel == kernel.name() && r.arch == format!("sm_{arch}"))
                    .map(|r| r.smem_bytes as usize)
                    .expect("a ptxas report");
                assert_eq!(
                    resident_blocks_of(kernel, THREADS as usize, smem, arch),
                    GEMV_BLOCKS_PER_SM,
                    "{} on sm_{arch}",
                    kernel.name()
                );
            }
        }
        assert_eq!(GEMV_THREADS, THREADS);
    }
}

/// The dispatch table of the tensor-core GEMM: a block tile, then a split-K factor.
///
/// On sm_90 with the `wgmma` kernels available (`hopper`), from the H200 run of 2026-11-26
/// (fifth session: the bench's tuned rows and the weight-streaming sweep, bench/RESULTS.md; the
/// H100 run after it agreed, its tuner within 0.7 % of this table at every design shape):
/// - `M ≥ 33` with at most two 64 × 64 tiles per multiprocessor, from the H200 runs of
///   2026-11-28 (twenty-first session; their tuners, events around single calls with the L2
///   flushed, bench/RESULTS.md):
///   - up to 128 rows, or K shallower than 2048, the sliced deep `mma.sync` 64 × 64 tile (two
///     warps per output slice, each summing half of every k tile): 64 × 4096² 14.5 µs split 2,
///     against 17.9 for the weight-streaming tile split 4 that this table gave before;
///     128 × 4096² 16.8 whole, against 18.8 for the unsliced deep tile and 17.2 for `wgmma`
///     64 × 64; 512 × 1024 × 1024 8.9 whole, against 9.9 for `wgmma` 64 × 64 (11.0–11.1 for
///     the 16 × 128 tile this table gave before, H200 runs of 2026-11-25 and 26); 256 rows of a
///     1000 × 1040 layer 9.1–9.5 against 10.4–10.7 for `wgmma` 64 × 64;
///   - above, the 64 × 64 `wgmma` tile: 256 × 4096² 18.3 µs whole, against 22.0 for the
///     sliced tile and 23.6 for the unsliced one (the H100's choice in the tenth session);
///     1024 × 4096 × 1024 17.6–17.7 whole, against 21.4 for the sliced tile and 23.9 for
///     `wgmma` 64 × 128 split 2 (below);
///
///   split toward one block per multiprocessor, only below half a tile per multiprocessor;
/// - other `M ≤ 128` (wider layers): the 64 × 64 weight-streaming tile (64 × 4096² on the
///   H200 of 2026-11-26: 15.7 µs against 17.6 for the GEMV, with split-K 4);
/// - `wgmma` 128 × 256 tiles enough for two per multiprocessor: that tile (8192³: 1.045 ms,
///   82 % of cuBLASLt int8, against 1.19 for the 3-stage 128 × 128 and 1.61 for `mma.sync`);
/// - `wgmma` 128 × 128 tiles enough for one per multiprocessor: the 3-stage 128 × 128 (two
///   blocks per SM; 2048³: 26.1 µs against 30.0 for 128 × 256 and 37.2 for `mma.sync`);
/// - `wgmma` 64 × 128 tiles enough for two per multiprocessor, or K deep enough (≥ 2048) for
///   split-K to fill the GPU: 64 × 128 (fifth session, before the 64 × 64 rules above took
///   these shapes: 256 × 4096² 23.7 µs against 29.7; 1024 × 4096 × 1024 22.9 against 29.7;
///   the tuner split both twice);
/// - otherwise (few tiles, shallow K) 16 × 128, as below.
///
/// Elsewhere (sm_80 and sm_90 without `wgmma`: `mma.sync` tiles; from the H200 sweep of
/// 2026-11-25, which sm_80 follows unmeasured; sm_75, forced only, the same but never the
/// 128 × 128 tile, whose 64 KiB fill Turing's shared memory):
/// - `M ≤ 128`: 16 × 128 — up to 128 rows the weights' re-reads from L2 cost less than the idle
///   multiprocessors a larger tile leaves (16-row tiles won by 1.2–1.5× at M = 2 … 64);
/// - 128 × 128 tiles enough for eight per multiprocessor: 128 × 128 (8192³: 1.63 ms, against
///   1.84 for 128 × 256, whose larger warp tiles do not pay off with `mma.sync` here);
/// - 64 × 128 tiles enough for two per multiprocessor, or K deep enough (≥ 2048) for split-K to
///   fill the GPU: 64 × 128;
/// - otherwise (few tiles, shallow K): 16 × 128 (512 × 1024 × 1024: 11.0 µs against 18.5).
///
/// Then split-K when the tiles give fewer than two blocks per multiprocessor (with Hopper's
/// rules: fewer than one; the deep tiles: fewer than half) and K has at least 32 64-byte k
/// tiles: the power of two at or below the factor that reaches two blocks per multiprocessor
/// (the deep tiles: one), at most 8, at least two k tiles each, and at most 64 KiB of partial
/// sums for the finishing block to read.
///
/// `GemmKernel::Auto` and `Mma(None)` come here only above [`gemv_auto_max_m`] rows (fewer run
/// the weight-streaming GEMV); below that the table is only what a caller who forces it gets.
pub(crate) fn mma_dispatch(
    m: usize,
    n: usize,
    k: usize,
    arch: u32,
    sms: u32,
    hopper: bool,
) -> MmaConfig {
    let hopper = hopper && arch == WGMMA_ARCH;
    let tiles = |t: MmaTile| m.div_ceil(t.bm()) * n.div_ceil(t.bn());
    let sms = sms.max(1) as usize;
    let ktiles = k.div_ceil(MMA_BK);
    let deep = hopper && m > 32 && tiles(MmaTile::M64N64) <= 2 * sms;
    let tile = if deep && (m <= 128 || ktiles < 32) {
        MmaTile::M64N64K2
    } else if deep {
        MmaTile::Wgmma64x64
    } else if hopper {
        if m <= 128 {
            MmaTile::Stream64x64
        } else if tiles(MmaTile::Wgmma128x256) >= 2 * sms {
            MmaTile::Wgmma128x256
        } else if tiles(MmaTile::Wgmma128x128D3) >= sms {
            MmaTile::Wgmma128x128D3
        } else if tiles(MmaTile::Wgmma64x128) >= 2 * sms || ktiles >= 32 {
            MmaTile::Wgmma64x128
        } else {
            MmaTile::M16N128
        }
    } else if m <= 128 {
        MmaTile::M16N128
    } else if tiles(MmaTile::M128N128) >= 8 * sms && arch >= MMA_ARCH {
        MmaTile::M128N128
    } else if tiles(MmaTile::M64N128) >= 2 * sms || ktiles >= 32 {
        MmaTile::M64N128
    } else {
        MmaTile::M16N128
    };
    let t = tiles(tile).max(1);
    // Hopper's rules split only below one tile per SM: 2048³'s 256 3-stage tiles (two resident
    // per SM) the tuner kept whole among split-K 1 … 8 (28.3 µs).
    // (the deep 64 × 64 tiles kept whole at 128 tiles on 132 SMs: 17.4 µs against 18.1 split 2
    // on the H100; split toward one block per SM below half a tile per SM: 64 × 4096²'s 64
    // tiles split twice, 14.5 µs against 15.8 split 4 and 15.5 whole on the H200)
    let full = if deep {
        sms.div_ceil(2)
    } else if hopper {
        sms
    } else {
        2 * sms
    };
    let splits = if t >= full || ktiles < 32 {
        1
    } else {
        let blocks_wanted = if deep { sms } else { 2 * sms };
        let want = blocks_wanted.div_ceil(t);
        let pow2 = 1usize << (usize::BITS - 1 - want.leading_zeros());
        let rows = tile.bm().min(m.next_multiple_of(8));
        let by_traffic = 1 + SPLIT_READ_MAX / (rows * tile.bn() * 4);
        pow2.min(by_traffic).min(ktiles / 2).clamp(1, MAX_SPLITS)
    };
    MmaConfig {
        tile,
        splits: splits as u32,
    }
}

/// Rows up to which `GemmKernel::Auto` runs the weight-streaming tensor-core GEMV: 32 where the
/// dispatch table has Hopper's rules (its 64 × 64 tiles beat it at 64 rows on the H200), else
/// [`GEMV_AUTO_MAX_M`].
pub(crate) fn gemv_auto_max_m(arch: u32, hopper: bool) -> usize {
    if hopper && arch == WGMMA_ARCH {
        GEMV_MAX_BM
    } else {
        GEMV_AUTO_MAX_M
    }
}

/// The GEMV block shape `Auto` runs for `m × n` on sm_90: the narrow variant when `m` fits its
/// one 8-row block row and the default's blocks (`⌈n / 16⌉`, three per SM by registers) would
/// need a second wave, which the narrow one's four per SM avoid or shorten (H200, 1 × 8192²:
/// 20.1 µs against 22.6, 3.34 TB/s of weights; 8 × 8192²: 20.4 against 23.2); else the default.
/// Measured on sm_90 alone, so only there.
pub(crate) fn gemv_auto_variant(m: usize, n: usize, arch: u32, sms: u32) -> Option<GemvVariant> {
    let blocks = n.div_ceil(GEMV_BN);
    (arch == WGMMA_ARCH
        && m <= GEMV_VARIANT_BM
        && blocks > GEMV_BLOCKS_PER_SM * sms.max(1) as usize)
        .then_some(GemvVariant::Narrow)
}

/// A tensor-core launch made concrete: grid, k tiles per split, and the split count that
/// actually results (no empty split).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MmaLaunch {
    pub tile: MmaTile,
    pub splits: usize,
    pub kt_per_split: usize,
    pub grid: Grid,
}

impl MmaLaunch {
    pub(crate) fn new(cfg: MmaConfig, m: usize, n: usize, k: usize) -> Result<MmaLaunch> {
        if cfg.splits == 0 {
            return Err(Error::param("split-K factor", "must be at least 1"));
        }
        let t = cfg.tile;
        let ktiles = k.div_ceil(t.bk());
        let want = (cfg.splits as usize).clamp(1, ktiles.max(1));
        let kt_per_split = ktiles.div_ceil(want).max(1);
        let splits = ktiles.div_ceil(kt_per_split).max(1);
        let mut grid = tile_grid(
            m,
            t.bm(),
            n,
            t.bn(),
            splits,
            t.threads() as u32,
            t.smem_bytes(),
        )?;
        let (cm, cn) = t.cluster();
        if (cm, cn) != (1, 1) {
            // One row of whole clusters, each CM × CN tiles (`tma::body_cluster`): the tile grid
            // padded to whole clusters along both sides.
            let (gx, gy) = (grid.grid[0] as usize, grid.grid[1] as usize);
            let blocks = gx.div_ceil(cn) * cn * gy.div_ceil(cm) * cm;
            grid.grid = [
                u32::try_from(blocks).map_err(|_| Error::Dimension {
                    what: "n",
                    detail: format!("{m} × {n} outputs exceed the grid in clusters"),
                })?,
                1,
                grid.grid[2],
            ];
            debug_assert_eq!(grid.grid[0] as usize % (cm * cn), 0);
        }
        Ok(MmaLaunch {
            tile: t,
            splits,
            kt_per_split,
            grid,
        })
    }
    /// Output tiles (blocks per split).
    pub(crate) fn tiles(&self) -> usize {
        self.grid.grid[0] as usize * self.grid.grid[1] as usize
    }
    /// i32 partial sums the split-K scratch holds (`[tiles][splits][BM · BN]`).
    pub(crate) fn partials_len(&self) -> usize {
        self.tiles() * self.splits * self.tile.bm() * self.tile.bn()
    }
}

/// The grid of a GEMM over `[m, n]` in `bm × bn` block tiles (`z` blocks deep): `⌈n / bn⌉ ×
/// ⌈m / bm⌉ × z`, or `Err(Dimension)` when a side exceeds what a launch can address (65535 row
/// blocks; u32 column blocks).
fn tile_grid(
    m: usize,
    bm: usize,
    n: usize,
    bn: usize,
    z: usize,
    threads: u32,
    smem: usize,
) -> Result<Grid> {
    let gy = m.div_ceil(bm);
    if gy > 65535 {
        return Err(Error::Dimension {
            what: "m",
            detail: format!("{m} rows exceed the grid's 65535 row blocks of {bm}"),
        });
    }
    let gx = u32::try_from(n.div_ceil(bn)).map_err(|_| Error::Dimension {
        what: "n",
        detail: format!("{n} columns exceed the grid"),
    })?;
    Ok(Grid {
        grid: [gx, gy as u32, z as u32],
        block: [threads, 1, 1],
        smem: smem as u32,
    })
}

/// The scratch of split-K launches: partial sums and per-tile counters (zero between launches:
/// each tile's finishing block re-zeroes its counter).
pub(crate) struct SplitScratch<E: Exec> {
    partials: E::Buf<i32>,
    counters: E::Buf<u32>,
}

/// Values kept per stream (by [`Exec::stream_key`]) between calls: calls on one stream run in
/// order, so what one call's launches used the next call on that stream may overwrite; calls
/// on other streams get their own. A call takes its stream's value out while it enqueues, so
/// two threads enqueuing on one stream never share. Buffers a value holds were allocated on
/// its stream (which they keep alive), so a key cannot be reused by another stream meanwhile.
pub(crate) struct StreamSlots<T> {
    slots: std::sync::Mutex<Vec<(usize, T)>>,
}

impl<T> StreamSlots<T> {
    /// Streams remembered at once (the oldest is dropped: a stream-ordered free).
    const KEEP: usize = 8;
    pub(crate) fn new() -> Self {
        StreamSlots {
            slots: std::sync::Mutex::new(Vec::new()),
        }
    }
    /// The value kept for `key`, taken out.
    pub(crate) fn take(&self, key: usize) -> Option<T> {
        let mut s = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        s.iter()
            .position(|(k, _)| *k == key)
            .map(|i| s.swap_remove(i).1)
    }
    /// Keep `v` for `key` (replacing what another thread may have put meanwhile).
    pub(crate) fn put(&self, key: usize, v: T) {
        let mut s = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        s.retain(|(k, _)| *k != key);
        if s.len() >= Self::KEEP {
            s.remove(0);
        }
        s.push((key, v));
    }
}

/// Split-K scratch kept per stream ([`StreamSlots`]).
pub(crate) struct ScratchCache<E: Exec> {
    slots: StreamSlots<SplitScratch<E>>,
}

impl<E: Exec> ScratchCache<E> {
    pub(crate) fn new() -> Self {
        ScratchCache {
            slots: StreamSlots::new(),
        }
    }
    fn take(&self, e: &E, partials: usize, counters: usize) -> Result<SplitScratch<E>> {
        match self.slots.take(e.stream_key()) {
            Some(sc) if E::len(&sc.partials) >= partials && E::len(&sc.counters) >= counters => {
                Ok(sc)
            }
            // Too small (dropped: a stream-ordered free after the work that used it) or none.
            _ => Ok(SplitScratch {
                partials: e.alloc_scratch::<i32>(partials.max(1))?,
                counters: e.alloc::<u32>(counters.max(1))?,
            }),
        }
    }
    fn put(&self, e: &E, sc: SplitScratch<E>) {
        self.slots.put(e.stream_key(), sc);
    }
}

/// Whether dp4a's 16-row GEMV runs one activation row in its narrow block (4 warps, five per
/// SM by registers on sm_80 and sm_90): when its default blocks (8 warps, [`GEMV_BLOCKS_PER_SM`]
/// per SM) would need a second wave — more than `GEMV_BLOCKS_PER_SM · sms` blocks of 16 weight
/// rows — as the tensor-core GEMV's narrow variant, which won there on the H200
/// ([`gemv_auto_variant`]). Unlike that rule it applies on every
/// architecture (dp4a's default matters most before sm_80), from the same wave arithmetic.
pub(crate) fn dp4a_narrow(m: usize, n: usize, sms: u32) -> bool {
    m <= 1 && n.div_ceil(GEMV_BN) > GEMV_BLOCKS_PER_SM * sms.max(1) as usize
}

/// The kernel and grid of the `dp4a` GEMM for an `m × n` product: the skinny kernel for
/// `m ≤ SKINNY_MAX_M` — or with `gemv16` (aligned operands) the 16-row GEMV, its M = 1 kernel
/// for one row (its narrow block with `narrow`) — else the tiled one; 16-byte loads when both
/// strides allow them.
pub(crate) fn dp4a_plan(
    m: usize,
    n: usize,
    u8_act: bool,
    aligned: bool,
    gemv16: bool,
    narrow: bool,
) -> Result<(KernelId, Grid)> {
    use KernelId::*;
    if gemv16 && aligned && m <= SKINNY_MAX_M {
        let narrow = narrow && m <= 1;
        let k = match (m <= 1, narrow, u8_act) {
            (true, true, false) => GemvDp4a16M1NarrowS8,
            (true, true, true) => GemvDp4a16M1NarrowU8,
            (true, false, false) => GemvDp4a16M1S8,
            (true, false, true) => GemvDp4a16M1U8,
            (false, _, false) => GemvDp4a16M8S8,
            (false, _, true) => GemvDp4a16M8U8,
        };
        // [⌈n / 16⌉] blocks of 8 warps (rows16::THREADS; narrow: 4, rows16::NARROW_THREADS),
        // each on 16 weight rows and all m rows.
        let threads = if narrow {
            DP4A16_NARROW_THREADS
        } else {
            THREADS
        };
        return Ok((k, tile_grid(1, 1, n, GEMV_BN, 1, threads, 0)?));
    }
    if m <= SKINNY_MAX_M {
        let k = match (u8_act, aligned) {
            (false, true) => GemvDp4aS8,
            (true, true) => GemvDp4aU8,
            (false, false) => GemvDp4aS8Unaligned,
            (true, false) => GemvDp4aU8Unaligned,
        };
        // One block row: every block serves all m rows.
        return Ok((k, tile_grid(1, 1, n, SKINNY_COLS, 1, THREADS, 0)?));
    }
    let k = match (u8_act, aligned) {
        (false, true) => GemmDp4aS8,
        (true, true) => GemmDp4aU8,
        (false, false) => GemmDp4aS8Unaligned,
        (true, false) => GemmDp4aU8Unaligned,
    };
    Ok((k, tile_grid(m, TILE_M, n, TILE_N, 1, THREADS, 0)?))
}

/// What a GEMM launches (DESIGN.md §2: chosen from the GPU's compute capability, overridable,
/// reported). `Auto` on sm_80+ with aligned rows: the weight-streaming tensor-core GEMV up to
/// [`gemv_auto_max_m`] rows (its narrow block shape where [`gemv_auto_variant`] says), the
/// dispatch table's tile above; dp4a otherwise.
fn choose_kernel(
    kernel: GemmKernel,
    arch: u32,
    aligned: bool,
    (m, n, k): (usize, usize, usize),
    (sms, hopper): (u32, bool),
) -> Result<Plan> {
    let tensor_cores = |m: usize| {
        if m <= gemv_auto_max_m(arch, hopper) {
            Plan::Gemv(gemv_auto_variant(m, n, arch, sms))
        } else {
            Plan::Tiled(mma_dispatch(m, n, k, arch, sms, hopper))
        }
    };
    let forced_ok = || {
        if let Some(reason) = arch_refusal(kernel, arch) {
            return Err(Error::PathUnavailable {
                path: Path::CudaMma,
                reason,
            });
        }
        if !aligned {
            return Err(Error::PathUnavailable {
                path: Path::CudaMma,
                reason: "the tensor-core kernels need 16-byte-aligned rows (lda, ldb and both base addresses multiples of 16)".into(),
            });
        }
        Ok(())
    };
    // dp4a as `Dp4a` and `Auto` run it: the 16-row GEMV on aligned rows, narrow where it pays.
    let dp4a_default = Plan::Dp4a {
        gemv16: aligned,
        narrow: aligned && dp4a_narrow(m, n, sms),
    };
    match kernel {
        GemmKernel::Dp4a => Ok(dp4a_default),
        GemmKernel::Dp4aWarpPerRow => Ok(Plan::Dp4a {
            gemv16: false,
            narrow: false,
        }),
        GemmKernel::Dp4aGemv16 if aligned => Ok(Plan::Dp4a {
            gemv16: true,
            narrow: false,
        }),
        GemmKernel::Dp4aGemv16 => Err(Error::PathUnavailable {
            path: Path::CudaDp4a,
            reason: "the 16-row dp4a GEMV needs 16-byte-aligned rows (lda, ldb and both base addresses multiples of 16)".into(),
        }),
        GemmKernel::Auto if arch >= MMA_ARCH && aligned => Ok(tensor_cores(m)),
        GemmKernel::Auto => Ok(dp4a_default),
        GemmKernel::Mma(cfg) => {
            forced_ok()?;
            Ok(cfg.map_or_else(|| tensor_cores(m), Plan::Tiled))
        }
        GemmKernel::MmaGemv => {
            forced_ok()?;
            Ok(Plan::Gemv(None))
        }
        GemmKernel::MmaGemvVariant(v) => {
            forced_ok()?;
            Ok(Plan::Gemv(Some(v)))
        }
    }
}

/// The kernel and grid of the weight-streaming tensor-core GEMV: the narrowest block row (8, 16
/// or 32 activation rows) that covers `m` (or 32, repeated over `⌈m / 32⌉` block rows); a
/// variant's 8-row block rows, repeated over `⌈m / 8⌉`.
fn gemv_plan(
    m: usize,
    n: usize,
    u8_act: bool,
    variant: Option<GemvVariant>,
) -> Result<(KernelId, Grid)> {
    use KernelId::*;
    let (bm, kid) = match variant {
        Some(v) => v.block_row(m, u8_act),
        None => by_block_row(
            m,
            u8_act,
            [
                [GemvMmaM8S8, GemvMmaM8U8],
                [GemvMmaM16S8, GemvMmaM16U8],
                [GemvMmaM32S8, GemvMmaM32U8],
            ],
        ),
    };
    let (threads, smem) = variant.map_or((GEMV_THREADS, 0), |v| (v.threads(), v.smem(bm)));
    Ok((kid, tile_grid(m, bm, n, GEMV_BN, 1, threads, smem)?))
}

/// Run a device GEMM. Checks every length the kernel indexes, chooses the kernel (`g.kernel`,
/// the GPU's architecture, the operands' alignment), then launches; split-K scratch comes from
/// `scratch`. Returns the path that ran. The accumulator bound (DESIGN.md §1) is the caller's:
/// layers prove it when they are built.
pub(crate) fn gemm<E: Exec>(
    e: &E,
    g: &GemmDev<'_, E>,
    out: &mut DevOut<'_, E>,
    scratch: &ScratchCache<E>,
) -> Result<Path> {
    let (m, n, k) = (g.m, g.n, g.k);
    check_out_kind(out.kind(), matches!(g.bias, DevBias::F32(_)))?;
    let (mi, ni, ki) = (to_i32("m", m)?, to_i32("n", n)?, to_i32("k", k)?);
    if g.lda < k || g.ldb < k {
        return Err(Error::Dimension {
            what: "row stride",
            detail: format!("lda {} and ldb {} must be ≥ k = {k}", g.lda, g.ldb),
        });
    }
    let span = |rows: usize, ld: usize| if rows == 0 { 0 } else { (rows - 1) * ld + k };
    match g.x {
        DevAct::S8(b) => need::<E, i8>("activations [m, lda]", b, span(m, g.lda))?,
        DevAct::U8(b) => need::<E, u8>("activations [m, lda]", b, span(m, g.lda))?,
    }
    need::<E, i8>("weights [n, ldb]", g.w, span(n, g.ldb))?;
    need::<E, i32>("wsum [n]", g.wsum, n)?;
    need::<E, f32>("weight scales [n]", g.w_scale, n)?;
    let act_len = if g.per_row { m } else { 1 };
    need::<E, f32>("activation scales", g.act_scale, act_len)?;
    if let Some(z) = g.act_zp {
        need::<E, i32>("activation zero points", z, act_len)?;
    }
    match g.bias {
        DevBias::None => {}
        DevBias::I32(b) => need::<E, i32>("bias [n]", b, n)?,
        DevBias::F32(b) => need::<E, f32>("bias [n]", b, n)?,
    }
    if let Some((s, i)) = g.status {
        need::<E, Status>("status", s, i + 1)?;
    }
    let yl = crate::error::checked_len("Y = [m, n]", m, n)?;
    if out.len() < yl {
        return Err(Error::shape("output [m, n]", yl, out.len()));
    }

    let (x, _gx) = match g.x {
        DevAct::S8(b) => e.addr(b),
        DevAct::U8(b) => e.addr(b),
    };
    let (w, _gw) = e.addr(g.w);
    // 16-byte loads (and cp.async) need 16-byte strides and base addresses (allocations are
    // 256-byte aligned, but the check costs nothing and covers any buffer).
    let u8_act = matches!(g.x, DevAct::U8(_));
    let aligned = g.lda.is_multiple_of(ROW_ALIGN)
        && g.ldb.is_multiple_of(ROW_ALIGN)
        && x.is_multiple_of(ROW_ALIGN as u64)
        && w.is_multiple_of(ROW_ALIGN as u64);
    // (`wgmma_available` is sm_90 and the module loading; the table checks the arch again)
    let hopper = e.wgmma_available();
    let plan = choose_kernel(
        g.kernel,
        e.arch(),
        aligned,
        (m, n, k),
        (e.sm_count(), hopper),
    )?;
    let path = plan.path();
    if m == 0 || n == 0 {
        return Ok(path);
    }
    let (wsum, _gs) = e.addr(g.wsum);
    let (w_scale, _gws) = e.addr(g.w_scale);
    let (act_scale, _gas) = e.addr(g.act_scale);
    let (act_zp, _gz) = match g.act_zp {
        Some(z) => {
            let (a, gd) = e.addr(z);
            (a, Some(gd))
        }
        None => (0, None),
    };
    let (bias_i32, bias_f32, _gb) = match g.bias {
        DevBias::None => (0, 0, None),
        DevBias::I32(b) => {
            let (a, gd) = e.addr(b);
            (a, 0, Some(gd))
        }
        DevBias::F32(b) => {
            let (a, gd) = e.addr(b);
            (0, a, Some(gd))
        }
    };
    let (status, _gst) = match g.status {
        Some((s, i)) => {
            let (a, gd) = e.addr(s);
            (status_word(a, i), Some(gd))
        }
        None => (0, None),
    };
    let kind = out.kind();
    let (out_kind, oq, elem_bytes) = match kind {
        OutKind::I32 => (OUT_I32, OutQuant::symmetric(1.0), 4),
        OutKind::F32 => (OUT_F32, OutQuant::symmetric(1.0), 4),
        OutKind::F16 => (OUT_F16, OutQuant::symmetric(1.0), 2),
        OutKind::Bf16 => (OUT_BF16, OutQuant::symmetric(1.0), 2),
        OutKind::I8(q) => (OUT_I8, q, 1),
    };
    let (y, _gy) = match out {
        DevOut::I32(b) => e.addr_mut(*b),
        DevOut::F32(b) => e.addr_mut(*b),
        DevOut::F16(b) => e.addr_mut(*b),
        DevOut::Bf16(b) => e.addr_mut(*b),
        DevOut::I8(b, _) => e.addr_mut(*b),
    };
    let p = GemmParams {
        x,
        w,
        y,
        bias_i32,
        act_zp,
        wsum,
        status,
        lda: g.lda as i64,
        ldb: g.ldb as i64,
        ldy: n as i64,
        m: mi,
        n: ni,
        k: ki,
        zp_stride: i32::from(g.per_row),
        epi: EpiParams {
            w_scale,
            act_scale,
            bias_f32,
            per_row: i32::from(g.per_row),
            out_kind,
            out_scale: oq.scale,
            out_zp: oq.zero_point,
            out_qmin: oq.qmin,
            out_qmax: oq.qmax,
        },
    };
    let cfg = match plan {
        Plan::Tiled(cfg) => cfg,
        Plan::Gemv(variant) => {
            let (kid, grid) = gemv_plan(m, n, u8_act, variant)?;
            // SAFETY: as for the dp4a launch below, with 16-byte reads of x rows i < m and w rows
            // j < n only at 16-byte-aligned offsets whose 16 bytes lie below k (the step that
            // crosses k is read with byte guards), which `aligned` (the plan requires it)
            // guarantees lie inside the buffers. The grid is [⌈n/16⌉, ⌈m/BM⌉] blocks of 256
            // threads (a variant's: 128 or 384) with static shared memory only. `GemmParams` is
            // its block. Overlapped, the kernel waits for its predecessor before it reads x, the
            // scales or the status word, or writes y (kernels/gemv_mma.cu).
            debug_assert!(kid.waits_for_predecessor());
            unsafe {
                if g.overlap {
                    e.launch_overlapped(kid, grid, &p)?
                } else {
                    e.launch(kid, grid, &p)?
                }
            };
            return Ok(path);
        }
        Plan::Dp4a { gemv16, narrow } => {
            let (kid, grid) = dp4a_plan(m, n, u8_act, aligned, gemv16, narrow)?;
            // SAFETY: every address comes from a buffer of `e` whose guard lives to the end of this
            // function; the lengths checked above cover every index the kernel forms: x rows
            // i < m at i·lda + [0, k), w rows j < n at j·ldb + [0, k) (16-byte reads only below
            // k rounded down to 16 — for the 16-row GEMV, which runs only when `aligned`, below k
            // rounded down to 64 and the step that crosses k by byte guards — and only when
            // strides and base addresses are multiples of 16, as checked for `aligned`), wsum /
            // w_scale / bias [0, n), act_scale / act_zp [0, m) per row or [0] per tensor, y
            // [0, m·n), status [0]. `GemmParams` is the block of every dp4a GEMM kernel.
            unsafe { e.launch(kid, grid, &p)? };
            return Ok(path);
        }
    };

    let l = MmaLaunch::new(cfg, m, n, k)?;
    let flags = if n % 2 == 0 && y.is_multiple_of(2 * elem_bytes) {
        MMA_PAIRED_STORES
    } else {
        0
    };
    let mut sc = if l.splits > 1 {
        Some(scratch.take(e, l.partials_len(), l.tiles())?)
    } else {
        None
    };
    {
        let (partials, counters, _gp, _gc) = match sc.as_mut() {
            Some(s) => {
                let (pa, gp) = e.addr_mut(&mut s.partials);
                let (ca, gc) = e.addr_mut(&mut s.counters);
                (pa, ca, Some(gp), Some(gc))
            }
            None => (0, 0, None, None),
        };
        let q = MmaParams {
            g: p,
            partials,
            counters,
            kt_per_split: l.kt_per_split as i32,
            flags,
        };
        // SAFETY: as for the dp4a launch above, with these differences: x (and, for the tiles
        // of gemm_mma.cu and gemm_wgmma.cu, w) is read by cp.async in 16-byte pieces at 16-byte-aligned offsets
        // below k of rows < m (< n) only (the rest zero-filled), the weight-streaming tiles read
        // w rows < n by 16-byte loads below k rounded down to 64 and the step that crosses k by
        // byte guards, all of which `aligned` (checked, or the path refused) guarantees lie
        // inside the buffers; y is written in pairs only when `flags` says its row stride is
        // even and its base aligned to two elements; with splits > 1, partials hold
        // tiles · splits · BM · BN i32 and counters `tiles` zeroed u32 (the cache allocates them
        // zeroed, each launch's finishing blocks re-zero them), both at least the sizes asked
        // of `scratch.take`. The grid is [⌈n/BN⌉, ⌈m/BM⌉, splits] with the tile's block size and
        // dynamic shared memory, which the kernel checks. `MmaParams` is the block of every
        // tensor-core kernel.
        if l.tile.is_tma() {
            // The TMA tiles read X and W through tensor maps of the same addresses (guards
            // held above), the same row counts, K and strides, in boxes of the tile's rows:
            // everything outside [m | n, k] arrives as zeros, so they read no byte the others
            // could not.
            let t = TmaParams {
                x: e.tensor_map(p.x, m, k, p.lda as usize, l.tile.bm())?,
                w: e.tensor_map(p.w, n, k, p.ldb as usize, l.tile.bn())?,
                q,
                pad: [0; 11],
            };
            // SAFETY: as above; `TmaParams` is the block of the TMA kernels, whose tensor maps
            // address only the X and W buffers within the bounds checked above. Overlapped, the
            // kernel reads only W before it waits for its predecessor (kernels/gemm_tma.cu).
            let kid = l.tile.kernel(u8_act);
            debug_assert!(kid.waits_for_predecessor());
            unsafe {
                if g.overlap {
                    e.launch_overlapped(kid, l.grid, &t)?
                } else {
                    e.launch(kid, l.grid, &t)?
                }
            };
        } else {
            unsafe { e.launch(l.tile.kernel(u8_act), l.grid, &q)? };
        }
    }
    if let Some(s) = sc {
        scratch.put(e, s);
    }
    Ok(path)
}

// ---------------------------------------------------------------------------------------------
// Activation quantization.
// ---------------------------------------------------------------------------------------------

/// Quantized activations produced on the device, with their scales.
pub(crate) struct DevQuantized<E: Exec> {
    pub q: DevQ<E>,
    pub ldq: usize,
    pub scales: E::Buf<f32>,
    pub zps: Option<E::Buf<i32>>,
    pub per_row: bool,
    /// The per-tensor range words the quantization used (kept with the rest for reuse).
    pub range: E::Buf<u32>,
}

/// An owned device int8 buffer.
pub(crate) enum DevQ<E: Exec> {
    S8(E::Buf<i8>),
    U8(E::Buf<u8>),
}

/// How activations are quantized on the device.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ActMode {
    Dynamic { scheme: Scheme, per_row: bool },
    Static(QuantParams),
}

/// Whether static parameters quantize into `s8` (zero point 0, range within i8) or `u8`; the
/// rule of `nn::linear::quantize_with`.
pub(crate) fn static_is_s8(p: &QuantParams) -> bool {
    p.zero_point() == 0 && p.qmin() >= -128 && p.qmax() <= 127
}

/// A static activation scale `[1]` and zero point `[1]` (absent for 0) on the device.
pub(crate) type StaticScale<E> = (<E as Exec>::Buf<f32>, Option<<E as Exec>::Buf<i32>>);
/// [`StaticScale`] borrowed.
pub(crate) type StaticScaleRef<'a, E> =
    (&'a <E as Exec>::Buf<f32>, Option<&'a <E as Exec>::Buf<i32>>);

/// Quantize `x[m, k]` (device, f32) into `q[m, padded_k(k)]`. The report word `status.1` of
/// `status.0`, [`Status::CLEAR`] on entry (a slot of the stream's report ring,
/// [`super::reports`]), counts non-finite inputs (the caller reads it); per-tensor dynamic modes
/// first launch a reset of their range words. The buffers of `reuse` (an earlier result, on
/// this executor's stream, whose readers were enqueued before this call) are written over where
/// they are large enough and of the right kind, instead of allocating: a layer's forwards keep
/// theirs per stream.
pub(crate) fn quantize_activations<E: Exec>(
    e: &E,
    x: &E::Buf<f32>,
    m: usize,
    k: usize,
    mode: ActMode,
    static_scale: Option<StaticScaleRef<'_, E>>,
    (status, status_index): (&mut E::Buf<Status>, usize),
    reuse: Option<DevQuantized<E>>,
) -> Result<DevQuantized<E>> {
    let (mi, ki) = (to_i32("m", m)?, to_i32("k", k)?);
    let xl = crate::error::checked_len("input [m, in_features]", m, k)?;
    need::<E, f32>("input [m, in_features]", x, xl)?;
    need::<E, Status>("status", status, status_index + 1)?;
    let ldq = padded_k(k);
    let ql = crate::error::checked_len("quantized input", m, ldq)?.max(1);
    let (u8_out, per_row, nscales) = match mode {
        ActMode::Dynamic { scheme, per_row } => (
            scheme == Scheme::Asymmetric,
            per_row,
            if per_row { m.max(1) } else { 1 },
        ),
        ActMode::Static(p) => (!static_is_s8(&p), false, 1),
    };
    // Written whole by the kernels before anything reads them (q's padding columns included;
    // static mode reads its own scale, not `scales`): no zero-fill per call, and a reused
    // buffer's old contents never show.
    fn fit<E: Exec, T: Elem>(e: &E, old: Option<E::Buf<T>>, len: usize) -> Result<E::Buf<T>> {
        match old {
            Some(b) if E::len(&b) >= len => Ok(b),
            _ => e.alloc_scratch::<T>(len),
        }
    }
    let (old_q, old_scales, old_zps, old_range) = match reuse {
        Some(d) => (Some(d.q), Some(d.scales), d.zps, Some(d.range)),
        None => (None, None, None, None),
    };
    let mut q = match (u8_out, old_q) {
        (true, Some(DevQ::U8(b))) => DevQ::U8(fit(e, Some(b), ql)?),
        (false, Some(DevQ::S8(b))) => DevQ::S8(fit(e, Some(b), ql)?),
        (true, _) => DevQ::U8(e.alloc_scratch::<u8>(ql)?),
        (false, _) => DevQ::S8(e.alloc_scratch::<i8>(ql)?),
    };
    let mut scales = fit(e, old_scales, nscales)?;
    let mut zps = if u8_out && !matches!(mode, ActMode::Static(_)) {
        Some(fit(e, old_zps, nscales)?)
    } else {
        None
    };
    // The per-tensor range as order-preserving words; ACT_INIT sets min to +inf and max to −inf
    // (and clears the status, already clear) on the device, so nothing is uploaded per call (a
    // pageable upload may wait for the stream).
    let mut range = fit(e, old_range, 2)?;
    let kid = if u8_out {
        KernelId::ActQuantU8
    } else {
        KernelId::ActQuantS8
    };
    if matches!(mode, ActMode::Dynamic { per_row: false, .. }) {
        let (ra, _gr) = e.addr_mut(&mut range);
        let (st, _gs) = e.addr_mut(status);
        let p = ActQuantParams {
            range: ra,
            status: status_word(st, status_index),
            mode: ACT_INIT,
            ..Default::default()
        };
        let one = Grid {
            grid: [1, 1, 1],
            block: [THREADS, 1, 1],
            smem: 0,
        };
        // SAFETY: ACT_INIT writes the report word (status[status_index]) and range[0..2] only
        // (both checked or allocated above) from one thread of one block.
        unsafe { e.launch(kid, one, &p)? };
    }
    if m == 0 {
        return Ok(DevQuantized {
            q,
            ldq,
            scales,
            zps,
            per_row,
            range,
        });
    }
    let grid = Grid {
        grid: [mi as u32, 1, 1],
        block: [THREADS, 1, 1],
        smem: 0,
    };
    let mut base = ActQuantParams {
        ldq: ldq as i64,
        m: mi,
        k: ki,
        ..Default::default()
    };
    let modes: &[i32] = match mode {
        ActMode::Dynamic { per_row: true, .. } => &[ACT_ROWS],
        ActMode::Dynamic { per_row: false, .. } => &[ACT_RANGE, ACT_TENSOR],
        ActMode::Static(_) => &[ACT_STATIC],
    };
    if let ActMode::Static(p) = mode {
        let (rule, factor) = match p.rule() {
            Rule::Divide => (RULE_DIVIDE, 0.0),
            Rule::MultiplyInverse { inv } => (RULE_MULTIPLY, inv),
            Rule::UnitScale { unit } => (RULE_MULTIPLY, unit),
        };
        base.rule = rule;
        base.factor = factor;
        base.qmin = p.qmin();
        base.qmax = p.qmax();
    }
    for &md in modes {
        let (xa, _g0) = e.addr(x);
        let (qa, _g1) = match &mut q {
            DevQ::S8(b) => e.addr_mut(b),
            DevQ::U8(b) => e.addr_mut(b),
        };
        let (sa, _g2, za, _g3) = match static_scale {
            Some((s, z)) => {
                need::<E, f32>("static scale", s, 1)?;
                let (sa, g2) = e.addr(s);
                let (za, g3) = match z {
                    Some(z) => {
                        need::<E, i32>("static zero point", z, 1)?;
                        let (a, g) = e.addr(z);
                        (a, Some(g))
                    }
                    None => (0, None),
                };
                (sa, g2, za, g3)
            }
            None => {
                let (sa, g2) = e.addr_mut(&mut scales);
                let (za, g3) = match &mut zps {
                    Some(z) => {
                        let (a, g) = e.addr_mut(z);
                        (a, Some(g))
                    }
                    None => (0, None),
                };
                (sa, g2, za, g3)
            }
        };
        let (ra, _g4) = e.addr_mut(&mut range);
        let (st, _g5) = e.addr_mut(status);
        let p = ActQuantParams {
            x: xa,
            q: qa,
            scales: sa,
            zps: za,
            range: ra,
            status: status_word(st, status_index),
            mode: md,
            ..base
        };
        // SAFETY: x holds m·k floats, q m·ldq bytes, scales / zps m (per row) or 1 entries,
        // range 2, status status_index + 1 (checked or allocated above); one block per row,
        // threads stride over columns < ldq. `ActQuantParams` is the block of both act_quant
        // kernels.
        unsafe { e.launch(kid, grid, &p)? };
    }
    Ok(DevQuantized {
        q,
        ldq,
        scales,
        zps,
        per_row,
        range,
    })
}

/// Twin of `f32_to_ordered` in kernels/common.cuh: an unsigned word with the order of the float.
pub(crate) fn f32_to_ordered(f: f32) -> u32 {
    let b = f.to_bits();
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

/// Twin of `ordered_to_f32` in kernels/common.cuh: the inverse of [`f32_to_ordered`].
pub(crate) fn ordered_to_f32(o: u32) -> f32 {
    f32::from_bits(if o & 0x8000_0000 != 0 {
        o & 0x7fff_ffff
    } else {
        !o
    })
}

/// `Err(NonFinite)` naming `tensor` when the status buffer recorded non-finite values (waits for
/// the executor).
pub(crate) fn check_status<E: Exec>(
    e: &E,
    status: &E::Buf<Status>,
    tensor: impl std::fmt::Display,
) -> Result<()> {
    let mut s = [Status::CLEAR];
    e.read(status, &mut s)?;
    status_result(s[0], tensor)
}

/// `Err(NonFinite)` naming `tensor` when report `s` counted non-finite values (the name is
/// formatted only then: this runs on every forward).
pub(crate) fn status_result(s: Status, tensor: impl std::fmt::Display) -> Result<()> {
    if s.count == 0 {
        return Ok(());
    }
    Err(Error::NonFinite {
        tensor: tensor.to_string(),
        count: s.count as usize,
        first_index: s.first as usize,
    })
}

// ---------------------------------------------------------------------------------------------
// Elementwise quantize / dequantize.
// ---------------------------------------------------------------------------------------------

/// Which axis of a `[rows, cols]` matrix carries one parameter set each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Axis {
    /// One set for the whole tensor.
    Tensor,
    /// One set per row (per token of activations; per output channel of weights `[out, in]`).
    Row,
    /// One set per column (per channel of activations `[tokens, channels]`).
    Column,
}

/// `(groups, inner)` of the kernels' channel formula for `axis`.
fn groups_of(axis: Axis, rows: usize, cols: usize) -> (usize, usize) {
    match axis {
        Axis::Tensor => (1, 1),
        Axis::Row => (rows, cols),
        Axis::Column => (cols, 1),
    }
}

/// Per-group arrays of the elementwise kernels: scales, factors, zero points, and whether the rule
/// multiplies.
type ParamArrays = (Vec<f32>, Vec<f32>, Vec<i32>, bool);

/// Per-group parameter arrays for the elementwise kernels, checked to share one rule family and
/// one integer range.
fn param_arrays(params: &[QuantParams], groups: usize) -> Result<ParamArrays> {
    if params.len() != groups {
        return Err(Error::shape(
            "quantization parameters (one per group)",
            groups,
            params.len(),
        ));
    }
    let first = params[0];
    let mul = |p: &QuantParams| !matches!(p.rule(), Rule::Divide);
    let unit = |p: &QuantParams| matches!(p.rule(), Rule::UnitScale { .. });
    if params.iter().any(|p| {
        p.qmin() != first.qmin()
            || p.qmax() != first.qmax()
            || mul(p) != mul(&first)
            || unit(p) != unit(&first)
    }) {
        return Err(Error::Unsupported(
            "all parameter sets of one tensor must share the integer range and the rule".into(),
        ));
    }
    let scale = params.iter().map(|p| p.scale()).collect();
    let factor = params
        .iter()
        .map(|p| match p.rule() {
            Rule::Divide => 0.0,
            Rule::MultiplyInverse { inv } => inv,
            Rule::UnitScale { unit } => unit,
        })
        .collect();
    let zp = params.iter().map(|p| p.zero_point()).collect();
    Ok((scale, factor, zp, mul(&first)))
}

/// Quantize `x[rows, cols]` with one parameter set per `axis` group into `q` (the range must fit
/// the output type). ±inf saturate; NaN is an error naming `tensor` (as
/// `QuantParams::quantize_to_i8`). Waits for the executor.
#[allow(clippy::too_many_arguments)]
pub(crate) fn quantize<E: Exec>(
    e: &E,
    tensor: &str,
    x: &E::Buf<f32>,
    rows: usize,
    cols: usize,
    axis: Axis,
    params: &[QuantParams],
    q: DevQRef<'_, E>,
) -> Result<()> {
    let len = crate::error::checked_len("tensor [rows, cols]", rows, cols)?;
    let (groups, inner) = groups_of(axis, rows, cols);
    if groups == 0 {
        return Ok(());
    }
    let (scale, factor, zp, mul) = param_arrays(params, groups)?;
    let (qmin, qmax) = (params[0].qmin(), params[0].qmax());
    let u8_out = matches!(q, DevQRef::U8(_));
    if u8_out && (qmin < 0 || qmax > 255) {
        return Err(Error::param("qmin/qmax", "range does not fit u8"));
    }
    if !u8_out && (qmin < -128 || qmax > 127) {
        return Err(Error::param("qmin/qmax", "range does not fit i8"));
    }
    need::<E, f32>("input", x, len)?;
    match &q {
        DevQRef::S8(b) => need::<E, i8>("quantized output", b, len)?,
        DevQRef::U8(b) => need::<E, u8>("quantized output", b, len)?,
    }
    if len == 0 {
        return Ok(());
    }
    let sb = e.upload(&scale)?;
    let fb = e.upload(&factor)?;
    let zb = e.upload(&zp)?;
    let mut status = e.upload(&[Status::CLEAR])?;
    {
        let (xa, _g0) = e.addr(x);
        let (qa, _g1) = match q {
            DevQRef::S8(b) => e.addr_mut(b),
            DevQRef::U8(b) => e.addr_mut(b),
        };
        let (sa, _g2) = e.addr(&sb);
        let (fa, _g3) = e.addr(&fb);
        let (za, _g4) = e.addr(&zb);
        let (st, _g5) = e.addr_mut(&mut status);
        let p = QuantizeParams {
            x: xa,
            q: qa,
            scale: sa,
            factor: fa,
            zp: za,
            status: st,
            len: len as i64,
            inner: inner as i64,
            groups: to_i32("groups", groups)?,
            rule: if mul { RULE_MULTIPLY } else { RULE_DIVIDE },
            qmin,
            qmax,
            allow_inf: 1,
            pad: 0,
        };
        let kid = if u8_out {
            KernelId::QuantizeF32U8
        } else {
            KernelId::QuantizeF32S8
        };
        // SAFETY: x and q hold `len` elements, the parameter arrays `groups` entries and every
        // channel index (i / inner) % groups is < groups; status holds one entry.
        unsafe { e.launch(kid, elementwise_grid(len), &p)? };
    }
    check_status(e, &status, tensor)
}

/// A borrowed device int8 buffer.
pub(crate) enum DevQRef<'a, E: Exec> {
    S8(&'a mut E::Buf<i8>),
    U8(&'a mut E::Buf<u8>),
}

/// A borrowed device int8 buffer (read only).
pub(crate) enum DevQIn<'a, E: Exec> {
    S8(&'a E::Buf<i8>),
    U8(&'a E::Buf<u8>),
}

/// Dequantize `q[rows, cols]` with one parameter set per `axis` group into `y`.
pub(crate) fn dequantize<E: Exec>(
    e: &E,
    q: DevQIn<'_, E>,
    rows: usize,
    cols: usize,
    axis: Axis,
    params: &[QuantParams],
    y: &mut E::Buf<f32>,
) -> Result<()> {
    let len = crate::error::checked_len("tensor [rows, cols]", rows, cols)?;
    let (groups, inner) = groups_of(axis, rows, cols);
    if groups == 0 {
        return Ok(());
    }
    let (scale, factor, zp, _) = param_arrays(params, groups)?;
    let unit = matches!(params[0].rule(), Rule::UnitScale { .. });
    match &q {
        DevQIn::S8(b) => need::<E, i8>("quantized input", b, len)?,
        DevQIn::U8(b) => need::<E, u8>("quantized input", b, len)?,
    }
    need::<E, f32>("output", y, len)?;
    if len == 0 {
        return Ok(());
    }
    let sb = e.upload(&scale)?;
    let fb = e.upload(&factor)?;
    let zb = e.upload(&zp)?;
    let (qa, _g0) = match q {
        DevQIn::S8(b) => e.addr(b),
        DevQIn::U8(b) => e.addr(b),
    };
    let u8_in = matches!(q, DevQIn::U8(_));
    let (ya, _g1) = e.addr_mut(y);
    let (sa, _g2) = e.addr(&sb);
    let (fa, _g3) = e.addr(&fb);
    let (za, _g4) = e.addr(&zb);
    let p = DequantizeParams {
        q: qa,
        y: ya,
        scale: sa,
        factor: fa,
        zp: za,
        len: len as i64,
        inner: inner as i64,
        groups: to_i32("groups", groups)?,
        rule: if unit { DEQ_UNIT } else { DEQ_AFFINE },
    };
    let kid = if u8_in {
        KernelId::DequantizeU8F32
    } else {
        KernelId::DequantizeS8F32
    };
    // SAFETY: q and y hold `len` elements, the parameter arrays `groups` entries, and every
    // channel index is < groups.
    unsafe { e.launch(kid, elementwise_grid(len), &p)? };
    Ok(())
}

/// A grid-stride launch over `len` elements: at most 4096 blocks of 256 threads.
fn elementwise_grid(len: usize) -> Grid {
    let blocks = len.div_ceil(THREADS as usize).clamp(1, 4096) as u32;
    Grid {
        grid: [blocks, 1, 1],
        block: [THREADS, 1, 1],
        smem: 0,
    }
}

// ---------------------------------------------------------------------------------------------
// The device-resident linear layer.
// ---------------------------------------------------------------------------------------------

/// A [`QuantLinear`]'s device twin: weights uploaded once (rows padded to [`padded_k`]), `wsum`,
/// per-column weight scales, the bias in the form the activation quantization needs, and, for a
/// static activation scale, that scale.
pub(crate) struct DevLinear<E: Exec> {
    pub name: String,
    pub n: usize,
    pub k: usize,
    pub ldb: usize,
    pub w: E::Buf<i8>,
    pub wsum: E::Buf<i32>,
    pub w_scale: E::Buf<f32>,
    pub bias_f32: Option<E::Buf<f32>>,
    pub bias_i32: Option<E::Buf<i32>>,
    pub mode: ActMode,
    pub static_scale: Option<StaticScale<E>>,
    /// Which GEMM kernel family the forward runs.
    pub kernel: GemmKernel,
    /// The measured choice `Auto` follows, if any.
    pub tuning: Option<super::tune::GemmTuning>,
    /// Launch the GEMV overlapped with the activation quantization ([`GemmDev::overlap`];
    /// default on).
    pub overlap: bool,
    /// Split-K scratch, per stream.
    pub scratch: ScratchCache<E>,
    /// The quantized activations and their scales of the last forward, per stream: the next
    /// forward on that stream writes over them instead of allocating (four allocations and
    /// frees fewer per call).
    pub act_bufs: StreamSlots<DevQuantized<E>>,
    /// The device input and output of the host-slice forwards, per stream
    /// ([`DevLinear::forward_host`]): written over instead of allocated per call.
    pub host_bufs: StreamSlots<HostBufs<E>>,
}

impl<E: Exec> DevLinear<E> {
    /// Upload `layer` (its current activation quantization is captured).
    pub fn new(e: &E, layer: &QuantLinear) -> Result<Self> {
        let (n, k) = (layer.out_features(), layer.in_features());
        let ldb = padded_k(k);
        let raw = layer.packed().raw();
        let mut wp = vec![0i8; crate::error::checked_len("padded weights", n, ldb)?.max(1)];
        for j in 0..n {
            wp[j * ldb..j * ldb + k].copy_from_slice(&raw[j * k..(j + 1) * k]);
        }
        let ws: Vec<f32> = (0..n).map(|j| layer.weights().scale(j)).collect();
        let mode = match layer.activation_quant() {
            ActivationQuant::Dynamic {
                scheme,
                granularity,
            } => ActMode::Dynamic {
                scheme,
                per_row: granularity == Granularity::PerRow,
            },
            ActivationQuant::Static(p) => ActMode::Static(p),
        };
        let (bias_f32, bias_i32) = match (mode, layer.bias(), layer.bias_i32()) {
            (ActMode::Dynamic { .. }, Some(b), _) => (Some(e.upload(b)?), None),
            (ActMode::Static(_), _, Some(bq)) => (None, Some(e.upload(bq)?)),
            _ => (None, None),
        };
        let static_scale = match mode {
            ActMode::Static(p) => {
                let zp = if p.zero_point() != 0 {
                    Some(e.upload(&[p.zero_point()])?)
                } else {
                    None
                };
                Some((e.upload(&[p.scale()])?, zp))
            }
            ActMode::Dynamic { .. } => None,
        };
        Ok(DevLinear {
            name: layer.name().to_string(),
            n,
            k,
            ldb,
            w: e.upload(&wp)?,
            wsum: e.upload(&pad1(layer.packed().wsum()))?,
            w_scale: e.upload(&pad1(&ws))?,
            bias_f32,
            bias_i32,
            mode,
            static_scale,
            kernel: GemmKernel::Auto,
            tuning: None,
            // (the GEMV waits for the quantization before it reads its output; on by default
            // for layers, whose launches before the GEMV are the crate's own)
            overlap: true,
            scratch: ScratchCache::new(),
            act_bufs: StreamSlots::new(),
            host_bufs: StreamSlots::new(),
        })
    }

    /// `out = x · Wᵀ + b` for device `x: [m, k]` into device `out: [m, n]`. Waits for the
    /// executor at the end to report non-finite input as `Err(NonFinite)` (the output is then
    /// left unwritten).
    pub fn forward(
        &self,
        e: &E,
        x: &E::Buf<f32>,
        m: usize,
        out: &mut DevOut<'_, E>,
    ) -> Result<Path> {
        let (path, report) = self.enqueue(e, x, m, out)?;
        self.check_input(e, report)?;
        Ok(path)
    }

    /// [`DevLinear::forward`] without the wait: everything is enqueued, and the returned report
    /// holds the non-finite count once the executor gets there ([`DevLinear::check_input`]
    /// reads it). Its word is a slot of the stream's report ring ([`super::reports`]), clear,
    /// so the quantization needs no launch to clear it; reading it reads every slot handed out
    /// on the stream at once. Argument errors are still returned at once.
    pub fn enqueue(
        &self,
        e: &E,
        x: &E::Buf<f32>,
        m: usize,
        out: &mut DevOut<'_, E>,
    ) -> Result<(Path, Report<E>)> {
        Report::enqueue_with(e, |words, index| {
            self.enqueue_at(e, x, m, out, (words, index))
        })
    }

    /// [`DevLinear::enqueue`] with report word `status.1` of `status.0`.
    fn enqueue_at(
        &self,
        e: &E,
        x: &E::Buf<f32>,
        m: usize,
        out: &mut DevOut<'_, E>,
        (status, index): (&mut E::Buf<Status>, usize),
    ) -> Result<Path> {
        let static_scale = self.static_scale.as_ref().map(|(s, z)| (s, z.as_ref()));
        let key = e.stream_key();
        let reuse = self.act_bufs.take(key);
        let dq = quantize_activations(
            e,
            x,
            m,
            self.k,
            self.mode,
            static_scale,
            (&mut *status, index),
            reuse,
        )?;
        let (scale_buf, zp_buf) = match &self.static_scale {
            Some((s, z)) => (s, z.as_ref()),
            None => (&dq.scales, dq.zps.as_ref()),
        };
        let bias = match (&self.bias_f32, &self.bias_i32) {
            (Some(b), _) => DevBias::F32(b),
            (None, Some(b)) => DevBias::I32(b),
            _ => DevBias::None,
        };
        let xq = match &dq.q {
            DevQ::S8(b) => DevAct::S8(b),
            DevQ::U8(b) => DevAct::U8(b),
        };
        let g = GemmDev {
            m,
            n: self.n,
            k: self.k,
            x: xq,
            lda: dq.ldq,
            w: &self.w,
            ldb: self.ldb,
            wsum: &self.wsum,
            w_scale: &self.w_scale,
            act_scale: scale_buf,
            per_row: dq.per_row,
            act_zp: zp_buf,
            bias,
            status: Some((&*status, index)),
            kernel: super::tune::resolve(self.kernel, self.tuning.as_ref(), m),
            overlap: self.overlap,
        };
        let path = gemm(e, &g, out, &self.scratch)?;
        // (after the GEMM's launch: the next forward on this stream runs after it)
        self.act_bufs.put(key, dq);
        Ok(path)
    }

    /// `Err(NonFinite)` naming `<layer>.input` when the forward that filled `report` met NaN or
    /// ±inf. Waits for the executor up to that forward, unless reading another report of the
    /// stream already settled it (then without a driver call).
    pub fn check_input(&self, e: &E, report: Report<E>) -> Result<()> {
        status_result(report.take(e)?, format_args!("{}.input", self.name))
    }

    /// [`DevLinear::forward`] on host slices: uploads `x`, downloads into `out`.
    pub fn forward_host(&self, e: &E, x: &[f32], m: usize, out: &mut OutBuf<'_>) -> Result<Path> {
        let xl = crate::error::checked_len("input [m, in_features]", m, self.k)?;
        if x.len() != xl {
            return Err(Error::shape("input [m, in_features]", xl, x.len()));
        }
        let yl = crate::error::checked_len("output [m, out_features]", m, self.n)?;
        if out.len() != yl {
            return Err(Error::shape("output [m, n]", yl, out.len()));
        }
        check_out_kind(out.kind(), self.bias_f32.is_some())?;
        // The stream's input and output buffers from the last host forward, written over where
        // large enough (device allocations are never empty: one element at least).
        let key = e.stream_key();
        let kept = self
            .host_bufs
            .take(key)
            .unwrap_or(HostBufs { x: None, y: None });
        let xd = match kept.x {
            Some(mut b) if E::len(&b) >= xl.max(1) => {
                e.write(&mut b, x)?;
                b
            }
            _ if x.is_empty() => e.upload(&[0f32])?,
            _ => e.upload(x)?,
        };
        // The forward's result, and its output buffer to keep (also after a refused input).
        fn run<E: Exec, T: YElem>(
            l: &DevLinear<E>,
            e: &E,
            xd: &E::Buf<f32>,
            m: usize,
            y: &mut [T],
            old: Option<DevY<E>>,
            wrap: impl FnOnce(&mut E::Buf<T>) -> DevOut<'_, E>,
        ) -> (Result<Path>, Option<DevY<E>>) {
            // Written whole by the GEMM before it is read (on error nothing is read).
            let mut yd = match old.and_then(T::from_y) {
                Some(b) if E::len(&b) >= y.len().max(1) => b,
                _ => match e.alloc_scratch::<T>(y.len().max(1)) {
                    Ok(b) => b,
                    Err(err) => return (Err(err), None),
                },
            };
            let r = l.forward(e, xd, m, &mut wrap(&mut yd)).and_then(|path| {
                e.read(&yd, y)?;
                Ok(path)
            });
            (r, Some(T::into_y(yd)))
        }
        let old = kept.y;
        let (r, yd) = match out {
            OutBuf::I32(y) => run(self, e, &xd, m, y, old, |b| DevOut::I32(b)),
            OutBuf::F32(y) => run(self, e, &xd, m, y, old, |b| DevOut::F32(b)),
            OutBuf::F16(y) => run(self, e, &xd, m, y, old, |b| DevOut::F16(b)),
            OutBuf::Bf16(y) => run(self, e, &xd, m, y, old, |b| DevOut::Bf16(b)),
            OutBuf::I8(y, q) => {
                let q = *q;
                run(self, e, &xd, m, y, old, move |b| DevOut::I8(b, q))
            }
        };
        // (whatever the forward enqueued on this stream comes before the next call's writes)
        self.host_bufs.put(key, HostBufs { x: Some(xd), y: yd });
        r
    }
}

/// A host-slice forward's device input and output ([`DevLinear::forward_host`]), kept per
/// stream.
pub(crate) struct HostBufs<E: Exec> {
    x: Option<E::Buf<f32>>,
    y: Option<DevY<E>>,
}

/// A device output buffer of one of the output element types.
pub(crate) enum DevY<E: Exec> {
    I32(E::Buf<i32>),
    F32(E::Buf<f32>),
    F16(E::Buf<f16>),
    Bf16(E::Buf<bf16>),
    I8(E::Buf<i8>),
}

/// The output element types, and their [`DevY`] variant.
trait YElem: Elem {
    fn from_y<E: Exec>(y: DevY<E>) -> Option<E::Buf<Self>>;
    fn into_y<E: Exec>(b: E::Buf<Self>) -> DevY<E>;
}
macro_rules! y_elem {
    ($($t:ty => $v:ident),*) => {$(
        impl YElem for $t {
            fn from_y<E: Exec>(y: DevY<E>) -> Option<E::Buf<$t>> {
                match y {
                    DevY::$v(b) => Some(b),
                    _ => None,
                }
            }
            fn into_y<E: Exec>(b: E::Buf<$t>) -> DevY<E> {
                DevY::$v(b)
            }
        }
    )*};
}
y_elem!(i32 => I32, f32 => F32, f16 => F16, bf16 => Bf16, i8 => I8);

/// `v`, or one zero element when empty (device allocations are never empty).
fn pad1<T: Copy + Default>(v: &[T]) -> Vec<T> {
    if v.is_empty() {
        vec![T::default()]
    } else {
        v.to_vec()
    }
}
