// kernels/tile.cuh — the pieces the two staged tensor-core GEMMs share: gemm_mma.cu (`mma.sync`,
// sm_80+) and gemm_wgmma.cu (`wgmma.mma_async`, sm_90a). Both copy K-contiguous operand tiles
// into swizzled shared memory with `cp.async` (`OperandLoader`), multiply them on the tensor
// cores into i32 accumulators laid out as `mma.m16n8k32` C fragments (16 rows per warp), and
// finish the same way (`finish`: split-K's deterministic partial sums, then the DESIGN.md §1
// epilogue through shared-memory staging rows).
#pragma once

#include "common.cuh"

namespace tile {

// Byte offset of 16-byte chunk `chunk` of row `row` in a [rows][BK] operand tile:
// - BK = 64 (gemm_mma.cu): chunk c of row r at c ^ ((r >> 1) & 3), so the 8 rows one `ldmatrix`
//   matrix reads fall in 8 distinct bank groups;
// - BK = 128 (gemm_wgmma.cu): chunk c of row r at c ^ (r & 7) — the 128-byte swizzle that
//   `wgmma` applies to shared-memory addresses itself (bits 4–6 ^= bits 7–9; the tile's base
//   1024-byte aligned).
// Either way the swizzle term is the same for rows 8 apart.
template <int BK>
I8RT_INLINE unsigned swz(int row, int chunk) {
    static_assert(BK == 64 || BK == 128, "operand tiles are 64 or 128 bytes deep");
    if constexpr (BK == 64) {
        return (unsigned)(row * BK + ((chunk ^ ((row >> 1) & 3)) << 4));
    } else {
        return (unsigned)(row * BK + ((chunk ^ (row & 7)) << 4));
    }
}

// Two i32 as one 64-bit word (the first in the low half, as in memory).
I8RT_INLINE unsigned long long pack2(int lo, int hi) {
    return (unsigned long long)(unsigned)lo | ((unsigned long long)(unsigned)hi << 32);
}

// The output tile (row and column of tiles) a block computes, in grouped order. Blocks start in
// launch order (x fastest); taken as launched, a wave of resident blocks covers a row or two of
// output tiles and so every column of B (at 8192³ the whole 64 MiB weight matrix per wave). In
// grouped order, consecutive blocks walk GROUP tile rows down one tile column before moving to
// the next column: a wave shares GROUP row blocks of A and ~wave / GROUP column blocks of B in L2.
// A bijection of the grid (the last group has the remaining rows); every split-K block (z) of one
// (x, y) gets the same tile, and the split-K scratch keeps indexing tiles by the launch position.
struct TileRC {
    int row, col;
};
template <int GROUP>
I8RT_INLINE TileRC grouped_tile() {
    const int gx = (int)gridDim.x, gy = (int)gridDim.y;
    const int id = (int)blockIdx.y * gx + (int)blockIdx.x;
    const int per_group = GROUP * gx;
    const int first = id / per_group * GROUP;
    const int rows = gy - first < GROUP ? gy - first : GROUP;
    const int in = id - id / per_group * per_group;
    return TileRC{first + in % rows, in / rows};
}

// This block's k tiles under split-K: [first, end) of the ⌈K / BK⌉ tiles, `kt_per_split` per
// grid z; count 0 for a block whose split lies wholly past K.
struct KTiles {
    int first, end, count;
};
template <int BK>
I8RT_INLINE KTiles block_k_tiles(const MmaParams& q) {
    const int total = (q.g.k + BK - 1) / BK;
    const int first = (int)blockIdx.z * q.kt_per_split;
    const int end = first + q.kt_per_split < total ? first + q.kt_per_split : total;
    return KTiles{first, end, end > first ? end - first : 0};
}

// One operand's share of the pipeline's copies for this thread. A stage holds ROWS rows of BK
// bytes as CHUNKS 16-byte chunks; thread t copies chunk t % CHUNKS of rows t / CHUNKS + j · RPP
// (RPP = THREADS / CHUNKS rows per pass): a warp's copy instruction fills whole 128-byte (or
// 64-byte) row segments. Everything that does not depend on k is computed once: which rows exist
// (rows past the edge copy nothing, src-size 0, but keep a valid address: their own clamped into
// the matrix), the shared offset (the swizzle term is the same for all of the thread's rows, RPP
// being a multiple of 8), and the global addresses, two ways:
// - HOLD = false: the first row's address and the stride between rows; each copy recomputes its
//   row's address (a 64-bit multiply-add and a select) — few registers;
// - HOLD = true: every row's address held in registers (kept there: `opaque`), so a copy's
//   address is one add of the k offset, and the steady-state copies (FULL) copy every row,
//   those past the edge their clamped row, with no predicate (see `load`). The deep `mma.sync`
//   tiles, which Nsight Compute found issue-bound on an H100 (bench/RESULTS.md, 2026-11-26):
//   their 8 copies per stage had taken a 102-instruction block beside an 80-instruction loop;
//   80 instructions per stage in all now, at 96 registers (with gemm_mma.cu's held fragment
//   addresses; bench/RESULTS-gpu-static.md). The 64-column `wgmma` tiles in their shapes hold
//   theirs too (gemm_wgmma.cu's Config HOLD).
template <int THREADS, int ROWS, int BK, bool HOLD = false>
struct OperandLoader {
    static constexpr int CHUNKS = BK / 16;
    static constexpr int RPP = THREADS / CHUNKS;
    static constexpr int ITERS = (ROWS + RPP - 1) / RPP;
    const unsigned char* src;  // !HOLD: row r0 (clamped), byte chunk · 16
    long long step;            // !HOLD: bytes from one of this thread's rows to the next (RPP · ld)
    const unsigned char* row[HOLD ? ITERS : 1];  // HOLD: row r0 + j · RPP (clamped), byte chunk · 16
    unsigned valid;            // bit j: row r0 + j · RPP lies inside the matrix
    unsigned smem;             // shared offset of row r0's chunk within an operand tile
    int chunk, r0;

    I8RT_INLINE void init(const unsigned char* base, long long ld, int rows, int first_row) {
        static_assert(RPP % 8 == 0 && ITERS <= 32, "loader geometry");
        const int tid = (int)threadIdx.x;
        chunk = tid % CHUNKS;
        r0 = tid / CHUNKS;
        valid = 0;
#pragma unroll
        for (int j = 0; j < ITERS; ++j)
            if (r0 + j * RPP < ROWS && first_row + r0 + j * RPP < rows) valid |= 1u << j;
        if constexpr (HOLD) {
#pragma unroll
            for (int j = 0; j < ITERS; ++j) {
                const int r = first_row + r0 + j * RPP;
                row[j] = opaque(base + (long long)(r < rows ? r : rows - 1) * ld + chunk * 16);
            }
        } else {
            const int gr = first_row + r0 < rows ? first_row + r0 : rows - 1;
            src = base + (long long)gr * ld + chunk * 16;
            step = (long long)RPP * ld;
        }
        smem = swz<BK>(r0, chunk);
    }

    // The global address of this thread's chunk of row j at byte k0.
    I8RT_INLINE const unsigned char* at(int j, long long k0) const {
        if constexpr (HOLD) {
            return row[j] + k0;
        } else {
            return (valid >> j) & 1u ? src + k0 + j * step : src;
        }
    }

    // Copies of the k tile at byte k0 (k0 .. k0 + BK) into the operand tile at shared offset
    // `tile`. When the tile lies below K (FULL: the caller knows it) only rows are checked;
    // otherwise the chunks that cross or pass K copy what is left of them and zero-fill the rest.
    // HOLD and FULL (the steady state of the held loader): every row copies all 16 bytes, a row
    // past the edge those of its clamped row — real bytes that only reach accumulator rows (A,
    // past M) or columns (B, past N), which no output takes: `finish` neither publishes nor reads
    // split-K partial sums of rows past M, and its epilogue skips rows past M and columns past N
    // (the integer corrections and scales are looked up by stored row and column); gemm_mma.cu's
    // slice hand-over adds accumulators position by position. So no predicate per copy. The
    // K-edge tile (FULL false) still zero-fills past K and past the edges.
    template <bool FULL>
    I8RT_INLINE void load(unsigned tile, long long k0, int k) const {
        if constexpr (HOLD && FULL) {
#pragma unroll
            for (int j = 0; j < ITERS; ++j) {
                if (ROWS % RPP != 0 && r0 + j * RPP >= ROWS) break;
                cp_async_16_full(tile + smem + (unsigned)(j * RPP * BK), row[j] + k0);
            }
        } else if (FULL || k0 + BK <= k) {
#pragma unroll
            for (int j = 0; j < ITERS; ++j) {
                if (ROWS % RPP != 0 && r0 + j * RPP >= ROWS) break;  // threads past a short tile
                const bool row_ok = (valid >> j) & 1u;
                cp_async_16_or_zero(tile + smem + (unsigned)(j * RPP * BK), at(j, k0), !row_ok);
            }
        } else {
            const int left = k - (int)k0 - chunk * 16;  // bytes of this chunk below K
            const int bytes = left >= 16 ? 16 : (left > 0 ? left : 0);
#pragma unroll
            for (int j = 0; j < ITERS; ++j) {
                if (ROWS % RPP != 0 && r0 + j * RPP >= ROWS) break;
                const bool row_ok = (valid >> j) & 1u;
                cp_async_16(tile + smem + (unsigned)(j * RPP * BK), at(j, k0), row_ok ? bytes : 0);
            }
        }
    }
};

// Both operands' share of a pipeline stage's copies for this thread: A = X rows [bm, bm + BM),
// B = W rows [bn, bn + BN), BK bytes each; a stage holds A's rows, then B's (A_BYTES later).
// HOLD: the row addresses held in registers (OperandLoader).
template <int THREADS, int BM, int BN, int BK, bool HOLD = false>
struct StageLoader {
    static constexpr int A_BYTES = BM * BK, STAGE_BYTES = (BM + BN) * BK;
    OperandLoader<THREADS, BM, BK, HOLD> a;
    OperandLoader<THREADS, BN, BK, HOLD> b;

    I8RT_INLINE void init(const GemmParams& p, int bm, int bn) {
        a.init(static_cast<const unsigned char*>(p.x), p.lda, p.m, bm);
        b.init(reinterpret_cast<const unsigned char*>(p.w), p.ldb, p.n, bn);
    }
    // Stage `stage` (at shared offset `base` + stage · STAGE_BYTES) ← k tile `kt` of both
    // operands. FULL: the caller knows the tile lies below K.
    template <bool FULL>
    I8RT_INLINE void load(unsigned base, int stage, int kt, int k) const {
        load_at<FULL>(base + (unsigned)(stage * STAGE_BYTES), kt, k);
    }
    // The same into the stage at shared offset `s` (a caller that keeps stages' byte offsets).
    template <bool FULL>
    I8RT_INLINE void load_at(unsigned s, int kt, int k) const {
        const long long k0 = (long long)kt * BK;
        a.template load<FULL>(s, k0, k);
        b.template load<FULL>(s + (unsigned)A_BYTES, k0, k);
    }
};

// The epilogue's per-warp staging rows (16 rows of WN words, pitch WN + 8) and, after them, the
// split-K flag: both in the pipeline's shared memory once the main loop is done.
template <int WN>
constexpr int STAGING_PITCH = WN + 8;
template <int WN>
constexpr int STAGING_WORDS = 16 * STAGING_PITCH<WN>;
template <int THREADS, int WN>
constexpr int FLAG_OFFSET = THREADS / 32 * STAGING_WORDS<WN> * 4;

// The end of a block tile, after its main loop. Each warp holds the accumulators of a warp tile
// of MT · 16 rows from `wrow` × WN = NT · 8 columns from `wcol` (acc[mt][nt] a 16 × 8 C fragment
// of `mma.m16n8k32`: c0, c1 at row g, columns 8 nt + 2 t, + 1; c2, c3 at row g + 8, with
// g = lane / 4, t = lane % 4).
// - split-K (gridDim.z > 1): block z stores its accumulators to `partials` (rows ≥ M skipped),
//   the last block of the tile to arrive (a per-tile counter) adds the other splits' partials to
//   its own and runs the epilogue. Integer sums are exact, so the result has the same bits for
//   every split count; the counter is reset by that block, ready for the next launch;
// - epilogue: 16 rows of a warp's accumulators at a time go through shared memory (staging rows
//   padded against bank conflicts) so that each lane then handles adjacent column pairs of whole
//   rows: the integer corrections (zero point · wsum, i32 bias), the float stage and the output
//   conversion, and one 2-element store per pair when the host says the output's rows and base
//   are aligned for it; a warp's stores cover contiguous row segments.
template <int MT, int NT, int THREADS>
I8RT_INLINE void finish(const MmaParams& q, int (&acc)[MT][NT][4], int wrow, int wcol) {
    constexpr int WN = NT * 8;
    const GemmParams& p = q.g;
    const int tid = (int)threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int row0 = wrow + g;  // + mt · 16 (+ 8): the rows of this thread's accumulators

    // From here on the pipeline's shared memory is reused (the epilogue's staging area and the
    // split-K flag): every warp must have finished reading its operand tiles.
    block_sync();
    if (gridDim.z > 1) {
        // Split-K: publish this block's partial sums, count the tile, and let the last block of
        // the tile finish it. Layout: [tile][split][(mt · NT + nt) · 2 + h][thread] of 8-byte
        // pairs (c0, c1 of row g when h = 0, c2, c3 of row g + 8 when h = 1), so a warp's store or
        // load covers 256 contiguous bytes; pairs of rows past M are neither written nor read.
        const int splits = (int)gridDim.z;
        const int tile = (int)(blockIdx.y * gridDim.x + blockIdx.x);
        constexpr long long PER_BLOCK = (long long)MT * NT * 2 * THREADS;  // pairs per block
        unsigned long long* part =
            reinterpret_cast<unsigned long long*>(q.partials) + ((long long)tile * splits + blockIdx.z) * PER_BLOCK;
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                if (row0 + mt * 16 + 8 * h >= p.m) continue;
#pragma unroll
                for (int nt = 0; nt < NT; ++nt)
                    part[((mt * NT + nt) * 2 + h) * THREADS + tid] = pack2(acc[mt][nt][2 * h], acc[mt][nt][2 * h + 1]);
            }
        }
        if (!split_k_last_to_arrive(q.counters, tile, splits,
                                    reinterpret_cast<int*>(dyn_smem() + FLAG_OFFSET<THREADS, WN>)))
            return;
        for (int s = 0; s < splits; ++s) {
            if (s == (int)blockIdx.z) continue;
            const unsigned long long* other =
                reinterpret_cast<const unsigned long long*>(q.partials) + ((long long)tile * splits + s) * PER_BLOCK;
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
                for (int h = 0; h < 2; ++h) {
                    if (row0 + mt * 16 + 8 * h >= p.m) continue;
#pragma unroll
                    for (int nt = 0; nt < NT; ++nt) {
                        const unsigned long long v = ldcg_u64(other + ((mt * NT + nt) * 2 + h) * THREADS + tid);
                        // Wrapping adds: each partial and every running sum is a sum over a subset
                        // of k, bounded like the whole (the host proved the bound): no step overflows.
                        acc[mt][nt][2 * h] = (int)((unsigned)acc[mt][nt][2 * h] + (unsigned)v);
                        acc[mt][nt][2 * h + 1] = (int)((unsigned)acc[mt][nt][2 * h + 1] + (unsigned)(v >> 32));
                    }
                }
            }
        }
    }

    // Epilogue (DESIGN.md §1 steps 1–3), 16 rows of the warp tile at a time: the accumulators
    // go to the warp's staging rows in shared memory (c0, c1 at (g, 8 nt + 2 t), c2, c3 at
    // (g + 8, …); a row pitch of WN + 8 words makes each half-warp's 8-byte stores hit 32
    // distinct banks), then each lane takes adjacent column pairs of whole rows, so a warp's
    // global stores cover contiguous row segments, two elements per store when `paired`.
    const bool paired = (q.flags & MMA_PAIRED_STORES) != 0;
    int* stage = reinterpret_cast<int*>(dyn_smem()) + warp * STAGING_WORDS<WN>;
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
        if (wrow + mt * 16 >= p.m) break;  // (warp-uniform)
        __syncwarp();  // the previous slice has been read
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                // 8-byte stores (offsets even, so aligned): a half-warp's 16 cover 32 banks.
                *reinterpret_cast<unsigned long long*>(stage + (g + 8 * h) * STAGING_PITCH<WN> + nt * 8 + 2 * t) =
                    pack2(acc[mt][nt][2 * h], acc[mt][nt][2 * h + 1]);
            }
        }
        __syncwarp();
        constexpr int PAIRS = WN / 2;  // column pairs per staged row
#pragma unroll 1
        for (int i = lane; i < 16 * PAIRS; i += 32) {
            const int r = i / PAIRS, c = (i % PAIRS) * 2;
            const int row = wrow + mt * 16 + r;
            const int col = wcol + c;
            if (row >= p.m || col >= p.n) continue;
            epi_store_acc_pair(p, *reinterpret_cast<const unsigned long long*>(stage + r * STAGING_PITCH<WN> + c), row,
                               col, paired);
        }
    }
}

}  // namespace tile
