// kernels/gemm_mma.cu — the int8 GEMM on the tensor cores (sm_80 and newer; sm_75 through its own
// CUBIN) with the DESIGN.md §1 epilogue fused: Y[m, n] = epilogue(X[m, k] · W[n, k]ᵀ), X s8 or u8,
// W s8, both K-contiguous with 16-byte-aligned rows (the host checks; other strides run on
// gemm_dp4a.cu).
// I8RT_MIN_ARCH 75
// I8RT_PTX_ARCH 80
// (sm_75, Turing, has neither cp.async nor m16n8k32: its CUBIN, built from the same source, copies
// synchronously and runs each m16n8k32 as four m8n8k16 — common.cuh; the PTX is sm_80's.)
//
// One kernel template, several block tiles (the host's dispatch table in src/cuda/ops.rs picks one
// per M, N, K and architecture):
//   gemm_mma_16x128   BM 16,  BN 128, 4 warps (1 × 4), warp tile 16 × 32, 4 stages, 36 KiB  (M ≤ 16)
//   gemm_mma_64x128   BM 64,  BN 128, 4 warps (2 × 2), warp tile 32 × 64, 4 stages, 48 KiB
//   gemm_mma_128x128  BM 128, BN 128, 4 warps (2 × 2), warp tile 64 × 64, 4 stages, 64 KiB
//   gemm_mma_128x256  BM 128, BN 256, 8 warps (2 × 4), warp tile 64 × 64, 3 stages, 72 KiB
//   gemm_mma_256x128  BM 256, BN 128, 8 warps (4 × 2), warp tile 64 × 64, 3 stages, 72 KiB
//   gemm_mma_64x64    BM 64,  BN 64,  4 warps (2 × 2), warp tile 32 × 32, 6 stages of 128 B, 96 KiB
//   gemm_mma_128x64   BM 128, BN 64,  4 warps (2 × 2), warp tile 64 × 32, 3 stages of 128 B, 72 KiB
//   gemm_mma_64x64k2  BM 64,  BN 64,  8 warps (2 slices of 2 × 2), as gemm_mma_64x64, each slice
//                     over two of a stage's four k steps (Config's SLICES)
//   gemm_mma_128x64k2 BM 128, BN 64,  8 warps (2 slices of 2 × 2), as gemm_mma_128x64, likewise
// The last two are deep pipelines for 33 … 256 rows, the shape of the kernels cuBLASLt ran for
// torch._int_mm at 64 … 256 × 4096² on an H100 (CUTLASS's sm_80 `i16832gemm_s8_64x64_128x6` and
// `128x64_128x3`: 128-byte k stages 6 and 3 deep, one block per output tile, no split-K; Nsight
// Compute, bench/RESULTS.md 2026-11-26, tenth session), which moved 0.5–0.85× the L2 bytes of the
// crate's default kernels there and ran 1.3–1.6× faster. With 64-byte stages twice as deep and
// fragments loaded in the step that uses them, these ran 1.2× slower than the default on that
// H100 (the same session); they now take 128-byte stages and double-buffer their fragments
// across k steps (Config's DB), as a CUTLASS block does, and the 64 × 64 tile ran 1.12–1.16×
// faster than the default at 128 and 256 × 4096² there: Hopper's table (ops.rs mma_dispatch)
// sends it 65 … 256 rows; the 128 × 64 one is forced or tuned only. Nsight Compute found the
// 64 × 64 tile issue-bound there, its refill copies 102 of the 182 instructions a stage issued:
// the deep tiles now hold their copy rows' addresses in registers (tile::OperandLoader's HOLD)
// and their fragment addresses too (one add of a stage's offset), their steady-state copies
// carry no predicate and the loop keeps byte offsets and one counter: 80 instructions per stage
// (bench/RESULTS-gpu-static.md). It also issued one instruction every 3.76 cycles, stalled
// mostly on its own results (a fixed-latency dependency, 44 % of those cycles): its four warps,
// one per scheduler, leave none to issue in the meantime. The sliced tile runs the same block
// tile, copies and pipeline with two warps per scheduler (48 instructions per stage and warp,
// 16 of them mma; an H200 found it latency-bound at the 73 it had before the fragment addresses
// were held), adding the two slices' partial sums in shared memory before the epilogue.
// each for s8 and u8 activations (`mma.sync.m16n8k32.row.col.s32.{s8,u8}.s8.s32`).
//
// Per block (thread → warp → block):
// - k advances in stages of BK = 64 bytes (128 for the deep tiles). `cp.async` copies 16-byte
//   chunks of the X rows (A, BM × BK) and W rows (B, BN × BK) of STAGES − 1 stages ahead into shared memory,
//   zero-filling past K and past the M / N edges, one commit group per stage; the one k tile that
//   can reach past K is loaded first, so the steady-state loads need no K check (nor, in the deep
//   tiles, an edge check: a row past M or N copies its clamped row, bytes that reach only
//   outputs never stored — tile.cuh OperandLoader::load);
// - shared tiles are swizzled: chunk c (16 bytes) of tile row r lives at chunk c ^ ((r >> 1) & 3)
//   of that row (c ^ (r & 7) in 128-byte rows), so the 8 rows one `ldmatrix` matrix reads fall in 8 distinct bank groups (and the
//   8 chunks a quarter-warp of `cp.async` writes do too): no bank conflicts (the simulation
//   counts them and the tests require zero);
// - per 32 bytes of k, each warp loads its A fragments (one `ldmatrix.x4` per 16 rows) and B
//   fragments (one `ldmatrix.x4` per 16 columns) and issues MT × NT `mma.sync.m16n8k32` into i32
//   accumulators held in registers;
// - the end of the tile (tile.cuh `finish`, shared with gemm_wgmma.cu): split-K (gridDim.z > 1,
//   for the small-M shapes that have few tiles) with deterministic partial sums, then the
//   epilogue through shared-memory staging rows, with paired stores where the host allows them.
#include "tile.cuh"

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 750
#error "gemm_mma.cu needs sm_75 or newer (mma.sync, ldmatrix)"
#endif

namespace mma {

// A block tile configuration. MT × NT mma tiles (16 × 8 each) per warp; BK k bytes per stage
// (64, or 128 for the deep tiles); DB: the warps' fragments double-buffered across k steps (the
// next step's ldmatrix issued before this step's mma — the deep tiles, whose four warps per
// block, one per scheduler, have no other warp to hide that latency behind); SLICES: that many
// sets of WARPS_M × WARPS_N warps, each over its own k steps of every stage ("sliced K": slice s
// takes steps [s · KKS, (s + 1) · KKS)), their partial sums added in shared memory at the end —
// more warps per scheduler for the same block tile, the same copies and the same bits.
template <int BM_, int BN_, int WARPS_M_, int WARPS_N_, int STAGES_, int BK_ = 64, bool DB_ = false,
          int SLICES_ = 1>
struct Config {
    static constexpr int BM = BM_, BN = BN_, WARPS_M = WARPS_M_, WARPS_N = WARPS_N_, STAGES = STAGES_;
    static constexpr int BK = BK_;
    static constexpr bool DB = DB_;
    static constexpr int SLICES = SLICES_;
    static constexpr int SLICE_WARPS = WARPS_M * WARPS_N;
    static constexpr int THREADS = 32 * SLICE_WARPS * SLICES;
    static constexpr int WM = BM / WARPS_M, WN = BN / WARPS_N;
    static constexpr int MT = WM / 16, NT = WN / 8;
    static constexpr int KK = BK / 32;       // mma k steps per stage
    static constexpr int KKS = KK / SLICES;  // … per slice
    static constexpr int MT_OUT = MT / SLICES;  // 16-row pieces of its warp tile a warp finishes
    static constexpr int A_BYTES = BM * BK, STAGE_BYTES = (BM + BN) * BK;
    static constexpr int SMEM = STAGES * STAGE_BYTES;
    static_assert(WM % 16 == 0 && WN % 16 == 0, "warp tiles are whole 16 × 16 pieces");
    static_assert(STAGES >= 2, "a pipeline needs two stages");
    static_assert(BK == 64 || BK == 128, "tile.cuh's swizzles");
    static_assert(!DB || KKS % 2 == 0, "double-buffered fragments alternate within a stage");
    static_assert(SLICES == 1 || (SLICES == 2 && DB && MT % 2 == 0 && KK % 2 == 0),
                  "two slices of the double-buffered loop, each finishing half its warp tile");
    static_assert(SLICES == 1 || SLICES * SLICE_WARPS * MT_OUT * NT * 4 * 32 * 4 <= SMEM,
                  "the slices' hand-over (a word per lane and accumulator handed over) fits in the pipeline's shared memory");
};

using C16x128 = Config<16, 128, 1, 4, 4>;
using C64x128 = Config<64, 128, 2, 2, 4>;
using C128x128 = Config<128, 128, 2, 2, 4>;
using C128x256 = Config<128, 256, 2, 4, 3>;
using C256x128 = Config<256, 128, 4, 2, 3>;
using C64x64 = Config<64, 64, 2, 2, 6, 128, true>;
using C128x64 = Config<128, 64, 2, 2, 3, 128, true>;
// The deep tiles with 8 warps: two slices of 2 × 2, two k steps of each stage apiece.
using C64x64K2 = Config<64, 64, 2, 2, 6, 128, true, 2>;
using C128x64K2 = Config<128, 64, 2, 2, 3, 128, true, 2>;

template <class C>
constexpr bool STAGING_FITS = tile::FLAG_OFFSET<C::THREADS, C::WN> + 4 <= C::SMEM;
static_assert(STAGING_FITS<C16x128> && STAGING_FITS<C64x128> && STAGING_FITS<C128x128> && STAGING_FITS<C128x256> &&
                  STAGING_FITS<C256x128> && STAGING_FITS<C64x64> && STAGING_FITS<C128x64> &&
                  STAGING_FITS<C64x64K2> && STAGING_FITS<C128x64K2>,
              "the epilogue's staging and the split-K flag fit in the pipeline's shared memory");

// This thread's share of a stage's copies (tile.cuh), laid out as the Config says; the deep
// tiles (128-byte stages) hold their rows' addresses in registers (fewer instructions a refill).
template <class C>
using StageLoader = tile::StageLoader<C::THREADS, C::BM, C::BN, C::BK, C::BK == 128>;

template <class C, bool U8>
I8RT_INLINE void body(const MmaParams& q) {
    check_launch_geometry(C::THREADS, C::SMEM, "gemm_mma");
    const GemmParams& p = q.g;
    if (p.status && p.status->count != 0) return;  // the input had NaN/inf: the host reports it
    const int lane = (int)threadIdx.x & 31, warp = (int)threadIdx.x >> 5;
    // (unsliced: slice 0, sw = warp — written so, for the compiler does not know warp < 4)
    const int slice = C::SLICES == 1 ? 0 : warp / C::SLICE_WARPS;
    const int sw = C::SLICES == 1 ? warp : warp % C::SLICE_WARPS;
    const int wm = sw / C::WARPS_N, wn = sw % C::WARPS_N;
    const int bm = (int)blockIdx.y * C::BM, bn = (int)blockIdx.x * C::BN;
    const tile::KTiles kts = tile::block_k_tiles<C::BK>(q);
    const int kt0 = kts.first, kt1 = kts.end, nkt = kts.count;

    int acc[C::MT][C::NT][4];
#pragma unroll
    for (int i = 0; i < C::MT; ++i)
#pragma unroll
        for (int j = 0; j < C::NT; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[i][j][e] = 0;

    static_assert(StageLoader<C>::STAGE_BYTES == C::STAGE_BYTES && StageLoader<C>::A_BYTES == C::A_BYTES,
                  "one stage layout");
    StageLoader<C> ld;
    ld.init(p, bm, bn);

    // The k tiles in the order they are loaded: the block's last one first — the only one that
    // may reach past K (integer sums do not care about order), so every load after the first
    // takes the fast path — then the others from the first: kt(0) = kt1 − 1, kt(i) = kt0 + i − 1.
    // Prologue: STAGES − 1 stages in flight (one commit group each, empty past the end).
#pragma unroll
    for (int s = 0; s < C::STAGES - 1; ++s) {
        if (s == 0 && nkt > 0) ld.template load<false>(0, 0, kt1 - 1, p.k);
        if (s > 0 && s < nkt) ld.template load<true>(0, s, kt0 + s - 1, p.k);
        cp_async_commit();
    }
    // Fragment row addresses within a stage: A rows of this lane's ldmatrix matrix (lanes 0–15
    // rows 0–15 at the low 16 bytes of the 32-byte k step, lanes 16–31 the high 16 bytes); B rows
    // for a pair of n8 tiles (lanes 0–7: columns 0–7 low, 8–15: columns 0–7 high, 16–23:
    // columns 8–15 low, 24–31: columns 8–15 high).
    // The swizzle term (row >> 1) & 3 is the same for every 16-row step, so each lane's offsets
    // within a stage are a per-k-step constant plus multiples of 16 rows (computed here once).
    const int a_row = wm * C::WM + (lane & 15), a_half = lane >> 4;
    const int b_row = wn * C::WN + (lane & 7) + ((lane >> 4) << 3), b_half = (lane >> 3) & 1;
    constexpr int BK = C::BK;
    // (k step kk of this warp's slice: step slice · KKS + kk of the stage)
    unsigned a_off[C::KKS], b_off[C::KKS];
#pragma unroll
    for (int kk = 0; kk < C::KKS; ++kk) {
        const int step = slice * C::KKS + kk;
        a_off[kk] = tile::swz<BK>(a_row, step * 2 + a_half);
        b_off[kk] = (unsigned)C::A_BYTES + tile::swz<BK>(b_row, step * 2 + b_half);
        if constexpr (C::DB) {
            // The deep tiles hold them as shared-window addresses (ldsm_window), so a fragment
            // row's address is one add of the stage's offset; held (`opaque`): otherwise the
            // compiler recomputes them from the lane after every stage's barrier, just before
            // that stage's first ldmatrix.
            a_off[kk] = opaque(smem_window(a_off[kk]));
            b_off[kk] = opaque(smem_window(b_off[kk]));
        }
    }
    // One of this warp's k steps' fragments from the stage at byte `stage`: A by ldmatrix.x4 per
    // 16 rows, B per pair of n8 tiles (its four matrices: the pair's low and high 16 bytes).
    auto load_frags = [&](unsigned (&af)[C::MT][4], unsigned (&bf)[C::NT][2], unsigned stage, int kk) {
        unsigned arow[C::MT], brow[C::NT / 2];
#pragma unroll
        for (int mt = 0; mt < C::MT; ++mt) arow[mt] = stage + a_off[kk] + (unsigned)(mt * 16 * BK);
#pragma unroll
        for (int np = 0; np < C::NT / 2; ++np) brow[np] = stage + b_off[kk] + (unsigned)(np * 16 * BK);
        unsigned bq[C::NT / 2][4];
        if constexpr (C::DB) {
            ldsm_window<4, C::MT>(af, arow);
            ldsm_window<4, C::NT / 2>(bq, brow);
        } else {
            ldsm<4, C::MT>(af, arow);
            ldsm<4, C::NT / 2>(bq, brow);
        }
#pragma unroll
        for (int np = 0; np < C::NT / 2; ++np) {
            bf[2 * np][0] = bq[np][0];
            bf[2 * np][1] = bq[np][1];
            bf[2 * np + 1][0] = bq[np][2];
            bf[2 * np + 1][1] = bq[np][3];
        }
    };

    // The refill at iteration i: k tile i + STAGES − 1 of the block's order (the slot that stage
    // i − 1 used, which every thread has finished reading), one commit group even when empty.
    if constexpr (!C::DB) {
        int write_stage = C::STAGES - 1;
        auto refill = [&](int i) {
            if (i + C::STAGES - 1 < nkt) ld.template load<true>(0, write_stage, kt0 + i + C::STAGES - 2, p.k);
            cp_async_commit();
            write_stage = write_stage + 1 == C::STAGES ? 0 : write_stage + 1;
        };
        int read_stage = 0;
        for (int i = 0; i < nkt; ++i) {
            // Stage i has landed for this thread; after the barrier, for every thread — and every
            // thread has finished computing on stage i − 1, which the prefetch below overwrites.
            cp_async_wait<C::STAGES - 2>();
            block_sync();
            refill(i);

            const unsigned stage = (unsigned)(read_stage * C::STAGE_BYTES);
            read_stage = read_stage + 1 == C::STAGES ? 0 : read_stage + 1;
#pragma unroll
            for (int kk = 0; kk < C::KKS; ++kk) {
                unsigned af[C::MT][4], bf[C::NT][2];
                load_frags(af, bf, stage, kk);
                mma_16832<C::MT, C::NT, U8>(acc, af, bf);
            }
        }
    } else {
        // Fragments double-buffered: step kk's mma run on buffer kk % 2 while step kk + 1's
        // ldmatrix fill the other. The wait and barrier for stage i + 1 come before the last
        // step of stage i (whose fragments are already in registers), so stage i's reads are
        // all issued before that barrier — the refill of stage i's slot, at stage i + 1's first
        // step, is safe.
        // The loop keeps byte offsets: `rd` of stage i, `wr` of the slot the refill writes (the
        // one stage i − 1 read: the previous `rd`); and one counter, the k tile of that refill,
        // kt_fill = kt0 + i + STAGES − 2: refilled while i + STAGES − 1 < nkt (kt_fill below
        // kt1 − 1), and stage i + 1 exists while i + 1 < nkt (kt_fill below kt1 + STAGES − 3).
        unsigned af[2][C::MT][4], bf[2][C::NT][2];
        cp_async_wait<C::STAGES - 2>();
        block_sync();
        if (nkt > 0) {
            load_frags(af[0], bf[0], 0u, 0);
            constexpr unsigned LAST = (unsigned)((C::STAGES - 1) * C::STAGE_BYTES);
            unsigned rd = 0, wr = LAST;
            int kt_fill = kt0 + C::STAGES - 2;
            const int fill_end = kt1 - 1, more_end = kt1 + C::STAGES - 3;
            for (;;) {
                const unsigned next = rd == LAST ? 0u : rd + C::STAGE_BYTES;
                const bool more = kt_fill < more_end;
#pragma unroll
                for (int kk = 0; kk < C::KKS; ++kk) {
                    if (kk == 0) {
                        if (kt_fill < fill_end) ld.template load_at<true>(wr, kt_fill, p.k);
                        cp_async_commit();
                    }
                    if (kk + 1 < C::KKS) {
                        load_frags(af[(kk + 1) & 1], bf[(kk + 1) & 1], rd, kk + 1);
                    } else {
                        // Stage i + 1 has landed for this thread, then for every thread.
                        cp_async_wait<C::STAGES - 2>();
                        block_sync();
                        if (more) load_frags(af[0], bf[0], next, 0);
                    }
                    mma_16832<C::MT, C::NT, U8>(acc, af[kk & 1], bf[kk & 1]);
                }
                if (!more) break;
                wr = rd;
                rd = next;
                ++kt_fill;
            }
        }
    }
    cp_async_wait<0>();  // (only empty groups remain)

    if constexpr (C::SLICES == 1) {
        tile::finish<C::MT, C::NT, C::THREADS>(q, acc, bm + wm * C::WM, bn + wn * C::WN);
    } else {
        // Two slices: warp sw of slice s and its partner (warp sw of the other slice) hold
        // partial sums of the same warp tile over complementary k steps. Each keeps the 16-row
        // pieces [s · MT_OUT, (s + 1) · MT_OUT) of it and hands the others to its partner through
        // shared memory, laid out [giving slice][sw][piece, nt, e][lane] (a warp's stores and
        // loads: 32 consecutive words), then adds what it receives — wrapping adds, exact: the
        // same bits as one warp over every step.
        constexpr int WORDS = C::MT_OUT * C::NT * 4;  // words a lane hands over
        int kept[C::MT_OUT][C::NT][4];
        int* xchg = reinterpret_cast<int*>(dyn_smem());
        int* give = xchg + (slice * C::SLICE_WARPS + sw) * WORDS * 32 + lane;
        const int* take = xchg + ((1 - slice) * C::SLICE_WARPS + sw) * WORDS * 32 + lane;
        // (the main loop's last barrier already follows every warp's last fragment load; this one
        // keeps the exchange area's reuse independent of how that loop ends)
        block_sync();
        // (word i of a lane's hand-over: piece i / (NT · 4), n8 tile i / 4 % NT, element i % 4;
        // unrolled, so every accumulator index is a constant and they stay in registers —
        // selects, not an index by `slice`)
#pragma unroll
        for (int i = 0; i < WORDS; ++i) {
            const int mt = i / (C::NT * 4), nt = i / 4 % C::NT, e = i % 4;
            const int lo = acc[mt][nt][e], hi = acc[C::MT_OUT + mt][nt][e];
            give[i * 32] = slice == 0 ? hi : lo;
            kept[mt][nt][e] = slice == 0 ? lo : hi;
        }
        block_sync();
#pragma unroll
        for (int i = 0; i < WORDS; ++i) {
            int& v = kept[i / (C::NT * 4)][i / 4 % C::NT][i % 4];
            v = (int)((unsigned)v + (unsigned)take[i * 32]);
        }
        // (finish begins with a barrier: every lane has read its share before the staging rows
        // overwrite it)
        tile::finish<C::MT_OUT, C::NT, C::THREADS>(q, kept, bm + wm * C::WM + slice * C::MT_OUT * 16, bn + wn * C::WN);
    }
}

}  // namespace mma

I8RT_ENTRY(gemm_mma_16x128_s8, MmaParams, mma::C16x128::THREADS) { mma::body<mma::C16x128, false>(p); }
I8RT_ENTRY(gemm_mma_16x128_u8, MmaParams, mma::C16x128::THREADS) { mma::body<mma::C16x128, true>(p); }
I8RT_ENTRY(gemm_mma_64x128_s8, MmaParams, mma::C64x128::THREADS) { mma::body<mma::C64x128, false>(p); }
I8RT_ENTRY(gemm_mma_64x128_u8, MmaParams, mma::C64x128::THREADS) { mma::body<mma::C64x128, true>(p); }
I8RT_ENTRY(gemm_mma_128x128_s8, MmaParams, mma::C128x128::THREADS) { mma::body<mma::C128x128, false>(p); }
I8RT_ENTRY(gemm_mma_128x128_u8, MmaParams, mma::C128x128::THREADS) { mma::body<mma::C128x128, true>(p); }
I8RT_ENTRY(gemm_mma_128x256_s8, MmaParams, mma::C128x256::THREADS) { mma::body<mma::C128x256, false>(p); }
I8RT_ENTRY(gemm_mma_128x256_u8, MmaParams, mma::C128x256::THREADS) { mma::body<mma::C128x256, true>(p); }
I8RT_ENTRY(gemm_mma_256x128_s8, MmaParams, mma::C256x128::THREADS) { mma::body<mma::C256x128, false>(p); }
I8RT_ENTRY(gemm_mma_256x128_u8, MmaParams, mma::C256x128::THREADS) { mma::body<mma::C256x128, true>(p); }
I8RT_ENTRY(gemm_mma_64x64_s8, MmaParams, mma::C64x64::THREADS) { mma::body<mma::C64x64, false>(p); }
I8RT_ENTRY(gemm_mma_64x64_u8, MmaParams, mma::C64x64::THREADS) { mma::body<mma::C64x64, true>(p); }
I8RT_ENTRY(gemm_mma_128x64_s8, MmaParams, mma::C128x64::THREADS) { mma::body<mma::C128x64, false>(p); }
I8RT_ENTRY(gemm_mma_128x64_u8, MmaParams, mma::C128x64::THREADS) { mma::body<mma::C128x64, true>(p); }
// (two blocks per SM: 96 KiB of shared memory each, registers held to 128 a thread)
I8RT_ENTRY_MIN_BLOCKS(gemm_mma_64x64k2_s8, MmaParams, mma::C64x64K2::THREADS, 2) { mma::body<mma::C64x64K2, false>(p); }
I8RT_ENTRY_MIN_BLOCKS(gemm_mma_64x64k2_u8, MmaParams, mma::C64x64K2::THREADS, 2) { mma::body<mma::C64x64K2, true>(p); }
I8RT_ENTRY(gemm_mma_128x64k2_s8, MmaParams, mma::C128x64K2::THREADS) { mma::body<mma::C128x64K2, false>(p); }
I8RT_ENTRY(gemm_mma_128x64k2_u8, MmaParams, mma::C128x64K2::THREADS) { mma::body<mma::C128x64K2, true>(p); }
