// kernels/gemv_mma.cu — the weight-streaming int8 GEMM on the tensor cores for few rows (decode,
// M ≤ 32 per block row) with the DESIGN.md §1 epilogue fused: Y[m, n] = epilogue(X[m, k] · W[n, k]ᵀ),
// X s8 or u8, W s8, both K-contiguous with 16-byte-aligned rows (the host checks; other strides
// run on gemm_dp4a.cu). Chosen by the host's dispatch (src/cuda/ops.rs) for small M, where the
// tiled kernels of gemm_mma.cu stage weights through shared memory that no other row reuses.
// Two families: the GEMV (gemv_mma_m8 / m16 / m32, activations read from global memory; its
// block variants narrow, wide and, on sm_90, prefetching — gemv_mma_pf_*, the block's weight
// rows also requested from L2 ahead of its loads) and, at the end of the file, its staged
// variant for 32 … 256 rows (gemm_stream_*, activations staged in shared memory).
// I8RT_MIN_ARCH 75
// I8RT_PTX_ARCH 80
// (sm_75, Turing, has neither cp.async nor m16n8k32: its CUBIN, built from the same source, copies
// synchronously and runs each m16n8k32 as four m8n8k16 — common.cuh; the PTX is sm_80's.)
//
// The product is computed transposed, Yᵀ = W · Xᵀ: W is the mma's A operand (16 weight rows × 32
// k) and X its B operand (32 k × 8 activation rows), so up to 8 rows of X ride in one n8 tile and
// MT tiles cover 8 · MT rows (kernels gemv_mma_m8 / m16 / m32; larger M loops over block rows,
// blockIdx.y). Neither operand touches shared memory:
// - a block is 8 warps on the same 16 weight rows (columns of Y); k advances in 64-byte steps and
//   warp w takes steps w, w + 8, w + 16, …, so together the warps read 512 contiguous bytes of
//   every row per round;
// - in a step, lane (g, t) (g = lane / 4, t = lane % 4) loads 16 bytes of weight rows g and g + 8
//   and 16 bytes of activation row g of each n8 tile, all at byte 16 t of the step, straight into
//   registers (the weights with a streaming hint: no L1 allocation, 256-byte L2 fetches). A dot product does not care in which order k is summed, only that both operands use
//   the same order: the first 8 of those bytes are the thread's fragment of one m16n8k32 (A's a0/a2
//   = row g bytes 0–3 / 4–7, a1/a3 = row g + 8, B's b0/b1 = bytes 0–3 / 4–7), the last 8 the next
//   one's. Every fragment element lands where the PTX ISA layout wants the same logical k in both
//   operands, so no shuffle or ldmatrix is needed;
// - batches of U steps are double-buffered in registers (the next batch's loads are in flight
//   while this one's mma run); the one step that can reach past K (K % 64 ≠ 0) is loaded with
//   byte guards after the main loop;
// - launched overlapped (the host's choice, sm_90), the kernel issues its first batch of weights,
//   then waits for the kernel before it (griddep_wait) and only then reads activations, scales
//   or the status word, or writes Y: the weight stream starts while the activation quantization
//   (or the previous layer) finishes;
// - the 8 warps' i32 accumulators meet in shared memory and are summed in warp order (integer
//   sums are exact: the same bits as the reference for any order); the epilogue then runs on
//   every thread, one output element per thread and pass. Rows of W past N and rows of X past M
//   load nothing (zeros) and store nothing.
#include "gemv.cuh"

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 750
#error "gemv_mma.cu needs sm_75 or newer (mma.sync, ldmatrix)"
#endif

namespace gemv {

constexpr int WARPS = 8;
constexpr int THREADS = 32 * WARPS;
constexpr int NARROW_THREADS = 128;  // the narrow variant's block: 4 warps
constexpr int WIDE_THREADS = 384;    // the wide variant's block: 12 warps

// MT n8 tiles of activation rows per block row; U steps per register batch, as many as keep a
// thread under 128 registers (two blocks, 16 warps, per multiprocessor: 64 KiB of weights in
// flight, above the ~50 KiB that HBM's bandwidth × latency asks of one SM's share).
template <int MT>
struct Cfg {
    static constexpr int BM = 8 * MT;
    static constexpr int U = MT == 4 ? 1 : 2;
};

// One batch of U steps in registers: weight rows g and g + 8, activation row g of each tile.
template <int MT, int U>
struct Batch {
    int4 w0[U], w1[U];
    int4 x[U][MT];
};

// Bytes of each weight row the prefetching variant (PF) keeps requested ahead of its warps'
// batches: at 1 × 4096² a block's whole slice (64 KiB; the launch's 16 MiB at once, a third of
// an H100's L2), at longer rows a window of 64 KiB per block.
constexpr int PF_AHEAD = 4096;

// W warps per block (8; 4 for the narrow variant, 12 for the wide one), U steps per register
// batch; PF: the prefetching variant (sm_90, `gemv_mma_pf_*`), which also asks L2 for the
// block's weight rows ahead of its loads (below).
template <int MT, bool U8, int W = WARPS, int U = Cfg<MT>::U, bool PF = false>
I8RT_INLINE void body(const GemmParams& p) {
    using C = Cfg<MT>;
    __shared__ int red[W][MT * 4][32];
    // The next overlapped launch on the stream may begin once every block of this one is running
    // (its own griddep_wait still waits for all of this grid).
    griddep_launch_dependents();

    const int tid = (int)threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int bn = (int)blockIdx.x * BN, bm = (int)blockIdx.y * C::BM;

    // This thread's rows: weights g and g + 8 (when below N), activations g of each tile (when
    // below M), each at byte 16 t of a step.
    const bool w0_ok = bn + g < p.n, w1_ok = bn + g + 8 < p.n;
    const unsigned char* wb = reinterpret_cast<const unsigned char*>(p.w);
    const unsigned char* xb = static_cast<const unsigned char*>(p.x);
    const unsigned char* w0p = wb + (long long)(w0_ok ? bn + g : 0) * p.ldb + 16 * t;
    const unsigned char* w1p = wb + (long long)(w1_ok ? bn + g + 8 : 0) * p.ldb + 16 * t;
    const unsigned char* xp[MT];
    bool x_ok[MT];
#pragma unroll
    for (int j = 0; j < MT; ++j) {
        const int r = bm + 8 * j + g;
        x_ok[j] = r < p.m;
        xp[j] = xb + (long long)(x_ok[j] ? r : 0) * p.lda + 16 * t;
    }

    int acc[1][MT][4];
#pragma unroll
    for (int j = 0; j < MT; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[0][j][e] = 0;

    // Whole steps below K: warp w owns steps w + 8 i, i < count.
    const int full = p.k / STEP;
    const int count = warp < full ? (full - warp + W - 1) / W : 0;
    const int4 zero = {0, 0, 0, 0};
    // Batch starting at this warp's i-th step; steps past `count` load zeros (their mma add 0).
    // The weights and the activations of a batch load separately: the first batch's weights are
    // in flight before the wait for the kernel that writes the activations (griddep_wait).
    auto load_w = [&](Batch<MT, U>& b, int i0) {
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const bool live = i0 + u < count;
            const long long o = (long long)(warp + W * (i0 + u)) * STEP;
            b.w0[u] = live && w0_ok ? ldg_stream_v4(w0p + o) : zero;
            b.w1[u] = live && w1_ok ? ldg_stream_v4(w1p + o) : zero;
        }
    };
    auto load_x = [&](Batch<MT, U>& b, int i0) {
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const bool live = i0 + u < count;
            const long long o = (long long)(warp + W * (i0 + u)) * STEP;
#pragma unroll
            for (int j = 0; j < MT; ++j) b.x[u][j] = live && x_ok[j] ? ldg_v4(xp[j] + o) : zero;
        }
    };
    // The prefetching variant: besides its own loads (in flight only as far as registers hold
    // them: ~31 KiB per SM at 1 × 4096², where Nsight Compute found the GEMV waiting on them),
    // lane 0 of warp w asks L2 for the block's weight rows r ≡ w (mod W), whole rows of K
    // rounded up to 16 (inside the row: its stride is a multiple of 16) in contiguous pieces,
    // each byte once: PF_AHEAD bytes before the first batch — before the wait for the previous
    // kernel, so under an overlapped launch they stream while it finishes — then at each batch
    // up to PF_AHEAD past that batch's last round. That reaches the row's end (K rounded up to
    // 16) even for a warp with one batch fewer than warp 0, or none: a warp's last batch ends
    // at most W steps short of K's last whole step, within PF_AHEAD. Block row 0 only
    // (blockIdx.y): the others read the same weights.
    static_assert(!PF || PF_AHEAD >= (W + 1) * STEP, "the prefetch window reaches the row's end");
    const long long kc = ((long long)p.k + 15) & ~15ll;
    const bool pf_lane = PF && lane == 0 && blockIdx.y == 0;
    long long pf_done = 0;
    auto prefetch_to = [&](long long to) {
        to = to < kc ? to : kc;
        if (!pf_lane || to <= pf_done) return;
#pragma unroll
        for (int i = 0; i < (BN + W - 1) / W; ++i) {
            const int r = warp + W * i;
            if (r < BN && bn + r < p.n) prefetch_l2(wb + (long long)(bn + r) * p.ldb + pf_done, (unsigned)(to - pf_done));
        }
        pf_done = to;
    };
    if (PF) prefetch_to(PF_AHEAD);

    Batch<MT, U> cur, nxt{};  // (nxt is copied even when the last batch loaded none)
    if (count > 0) load_w(cur, 0);
    // Launched overlapped (sm_90), this kernel may start while the one that writes X, the
    // activation scales and the status word is still running: everything below reads them, or
    // writes Y, which that kernel's predecessors may read.
    griddep_wait();
    if (count > 0) {
        load_x(cur, 0);
        for (int i0 = 0; i0 < count; i0 += U) {
            if (PF) prefetch_to(PF_AHEAD + (long long)(i0 + U) * W * STEP);
            if (i0 + U < count) {
                load_w(nxt, i0 + U);
                load_x(nxt, i0 + U);
            }
#pragma unroll
            for (int u = 0; u < U; ++u) step_mma<MT, U8>(acc, cur.w0[u], cur.w1[u], cur.x[u]);
            cur = nxt;
        }
    }
    // The step that crosses K, if any, by the warp whose turn it is.
    if (p.k % STEP != 0 && warp == full % W) {
        const long long o = (long long)full * STEP;
        const long long end = (long long)p.k - 16 * t;  // bytes of this thread's rows below K, from o
        const int4 w0 = w0_ok ? load_guarded(w0p, o, end) : zero;
        const int4 w1 = w1_ok ? load_guarded(w1p, o, end) : zero;
        int4 x[MT];
#pragma unroll
        for (int j = 0; j < MT; ++j) x[j] = x_ok[j] ? load_guarded(xp[j], o, end) : zero;
        step_mma<MT, U8>(acc, w0, w1, x);
    }

    reduce_store<MT, W>(p, red, acc, bn, bm);
}

}  // namespace gemv

I8RT_ENTRY(gemv_mma_m8_s8, GemmParams, gemv::THREADS) { gemv::body<1, false>(p); }
I8RT_ENTRY(gemv_mma_m8_u8, GemmParams, gemv::THREADS) { gemv::body<1, true>(p); }
I8RT_ENTRY(gemv_mma_m16_s8, GemmParams, gemv::THREADS) { gemv::body<2, false>(p); }
I8RT_ENTRY(gemv_mma_m16_u8, GemmParams, gemv::THREADS) { gemv::body<2, true>(p); }
I8RT_ENTRY(gemv_mma_m32_s8, GemmParams, gemv::THREADS) { gemv::body<4, false>(p); }
I8RT_ENTRY(gemv_mma_m32_u8, GemmParams, gemv::THREADS) { gemv::body<4, true>(p); }
// The narrow variant for up to 8 rows: 4 warps per block, 3 steps per register batch (forced
// only until measured). Four blocks fit per multiprocessor (104 registers), 12 KiB of weights in
// flight each — the same 48 KiB per SM as three 8-warp blocks — but 528 blocks at once on 132 SMs:
// at 8192 weight rows all 512 blocks are resident in one wave, where the 8-warp blocks (396 at
// once) leave a second wave of 116 streaming with one block, 16 KiB in flight, per SM.
I8RT_ENTRY_MIN_BLOCKS(gemv_mma_m8_narrow_s8, GemmParams, gemv::NARROW_THREADS, 4) { gemv::body<1, false, 4, 3>(p); }
I8RT_ENTRY_MIN_BLOCKS(gemv_mma_m8_narrow_u8, GemmParams, gemv::NARROW_THREADS, 4) { gemv::body<1, true, 4, 3>(p); }
// The wide variant for up to 8 rows: 12 warps per block, 2 steps per batch, registers held to two
// blocks per SM (forced only until measured). At 4096 weight rows the 256 blocks fit at once either
// way (~1.9 per SM), and a wide block keeps 24 KiB of weights in flight against the 8-warp
// block's 16: ~46 KiB per SM instead of ~31.
I8RT_ENTRY_MIN_BLOCKS(gemv_mma_m8_wide_s8, GemmParams, gemv::WIDE_THREADS, 2) { gemv::body<1, false, 12, 2>(p); }
I8RT_ENTRY_MIN_BLOCKS(gemv_mma_m8_wide_u8, GemmParams, gemv::WIDE_THREADS, 2) { gemv::body<1, true, 12, 2>(p); }
// The prefetching variant (sm_90: `cp.async.bulk.prefetch.L2`; forced or tuned only until
// measured): the default blocks and register batches, plus each block's weight rows requested
// from L2 ahead of its loads (PF in body), 8, 16 or 32 activation rows per block row like the
// default. Below sm_90 the prefetch is nothing and the host refuses the variant.
// (m8 held to three blocks per SM, as the default's 80 registers allow: under an overlapped
// launch at 1 × 4096² the third block's place is where the next call's blocks start early)
I8RT_ENTRY_MIN_BLOCKS(gemv_mma_pf_m8_s8, GemmParams, gemv::THREADS, 3) { gemv::body<1, false, gemv::WARPS, gemv::Cfg<1>::U, true>(p); }
I8RT_ENTRY_MIN_BLOCKS(gemv_mma_pf_m8_u8, GemmParams, gemv::THREADS, 3) { gemv::body<1, true, gemv::WARPS, gemv::Cfg<1>::U, true>(p); }
I8RT_ENTRY(gemv_mma_pf_m16_s8, GemmParams, gemv::THREADS) { gemv::body<2, false, gemv::WARPS, gemv::Cfg<2>::U, true>(p); }
I8RT_ENTRY(gemv_mma_pf_m16_u8, GemmParams, gemv::THREADS) { gemv::body<2, true, gemv::WARPS, gemv::Cfg<2>::U, true>(p); }
I8RT_ENTRY(gemv_mma_pf_m32_s8, GemmParams, gemv::THREADS) { gemv::body<4, false, gemv::WARPS, gemv::Cfg<4>::U, true>(p); }
I8RT_ENTRY(gemv_mma_pf_m32_u8, GemmParams, gemv::THREADS) { gemv::body<4, true, gemv::WARPS, gemv::Cfg<4>::U, true>(p); }

// ---------------------------------------------------------------------------------------------
// The staged variant (kernels gemm_stream_*): weights streamed the same way, activations staged
// in shared memory, for 32 … 256 rows, where the GEMV above would re-read every activation row
// from L2 once per 16 weight rows. Launched with MmaParams like the tiled kernels (dynamic shared
// memory, split-K scratch); the host treats each configuration as a tile (MmaTile::Stream*).
//
// Per block (Cfg<MT, WN, WK, U>; BM = 8 MT activation rows, BN = 16 WN weight rows, 8 warps):
// - warp (wn, wk) = (warp % WN, warp / WN) owns weight rows bn + 16 wn … + 15 and, of every
//   round of WK 64-byte k steps, step wk; a batch is U rounds (STEPS = U · WK steps);
// - per batch, `cp.async` copies the block's BM activation rows × STEPS steps into shared memory
//   as [step][row][64 bytes] (chunk c of the batch at byte 16 c: a quarter-warp's copies fill 128
//   contiguous bytes), double-buffered with the next batch's copies in flight; rows past M, steps
//   past the block's K range and bytes past K are zero-filled;
// - each warp streams its weight fragments into registers exactly as the GEMV does (U steps per
//   batch, double-buffered, streaming hint; the step that crosses K with byte guards), and for
//   each n8 tile j of activation rows reads lane (g, t)'s 16 bytes, row 8 j + g at byte 16 t of
//   the step, with one warp-wide 16-byte shared load (a quarter-warp reads rows 2 q, 2 q + 1:
//   128 contiguous bytes, no bank conflict) — the B fragments of the step's two m16n8k32;
// - after the loop the warps' accumulators meet in shared memory ([wk][row][BN + 4 words]: the
//   stores of a warp hit 32 distinct banks) and every thread sums the WK slices in order for
//   adjacent column pairs of whole rows (coalesced from here on);
// - split-K (gridDim.z > 1): as in gemm_mma.cu — each block stores its sums as partials
//   ([tile][split][BM · BN / 2] column pairs, rows past M skipped), the last block of the tile
//   to count adds the others' in split order and runs the epilogue (exact integer sums: the
//   same bits for every split), resetting the tile's counter;
// - the epilogue writes adjacent column pairs (one store each when the host says `paired`).
namespace staged {

using gemv::STEP;

template <int MT_, int WN_, int WK_, int U_>
struct Cfg {
    static constexpr int MT = MT_, WN = WN_, WK = WK_, U = U_;
    static constexpr int THREADS = 32 * WN * WK;
    static constexpr int BM = 8 * MT, BN = 16 * WN;
    static constexpr int STEPS = U * WK;            // 64-byte k steps per batch
    static constexpr int XBUF = STEPS * BM * STEP;  // bytes of one batch of activations
    static constexpr int CHUNKS = XBUF / 16 / THREADS;  // cp.async per thread and batch
    static constexpr int PITCH = BN + 4;            // staging row pitch, words
    static constexpr int STAGING = WK * BM * PITCH * 4;
    static constexpr int FLAG = 2 * XBUF > STAGING ? 2 * XBUF : STAGING;  // split-K flag word
    static constexpr int SMEM = FLAG + 16;
    static constexpr int PAIR_COLS = BN / 2;                   // column pairs per row
    static constexpr int PAIRS = BM * PAIR_COLS / THREADS;     // output pairs per thread
    static_assert(THREADS == 256, "8 warps");
    static_assert(XBUF % (16 * THREADS) == 0 && (BM * PAIR_COLS) % THREADS == 0, "whole passes");
};

// Host twins: MmaTile::Stream32x64 / Stream64x64 / Stream128x64 / Stream64x128 in src/cuda/ops.rs.
using S32x64 = Cfg<4, 4, 2, 2>;
using S64x64 = Cfg<8, 4, 2, 2>;
using S128x64 = Cfg<16, 4, 2, 2>;
using S64x128 = Cfg<8, 8, 1, 2>;

template <int U>
struct WBatch {
    int4 w0[U], w1[U];
};

// step_mma for one n8 tile (its four accumulators).
template <bool U8>
I8RT_INLINE void step_mma_tile(int (&acc)[4], const int4& w0, const int4& w1, const int4& x) {
    int c[1][1][4] = {{{acc[0], acc[1], acc[2], acc[3]}}};
    const int4 xs[1] = {x};
    gemv::step_mma<1, U8>(c, w0, w1, xs);
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[e] = c[0][0][e];
}

// PF: the prefetching tile (sm_90, `gemm_stream_pf_*`), which also asks L2 for the block's
// weight rows ahead of its loads (below).
template <class C, bool U8, bool PF = false>
I8RT_INLINE void body(const MmaParams& q) {
    check_launch_geometry(C::THREADS, C::SMEM, "gemm_stream");
    const GemmParams& p = q.g;
    const int tid = (int)threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int wn = warp % C::WN, wk = warp / C::WN;
    const int bn = (int)blockIdx.x * C::BN, bm = (int)blockIdx.y * C::BM;

    // This block's k steps [s0, s1) (the last of the matrix may cross K).
    const int total = (p.k + STEP - 1) / STEP, full = p.k / STEP;
    const int s0 = (int)blockIdx.z * q.kt_per_split;
    const int s1 = s0 + q.kt_per_split < total ? s0 + q.kt_per_split : total;
    const int batches = s1 > s0 ? (s1 - s0 + C::STEPS - 1) / C::STEPS : 0;

    // Weight rows g and g + 8 of this warp's 16 (when below N), at byte 16 t of a step.
    const int wr = bn + 16 * wn + g;
    const bool w0_ok = wr < p.n, w1_ok = wr + 8 < p.n;
    const unsigned char* wb = reinterpret_cast<const unsigned char*>(p.w);
    const unsigned char* xb = static_cast<const unsigned char*>(p.x);
    const unsigned char* w0p = wb + (long long)(w0_ok ? wr : 0) * p.ldb + 16 * t;
    const unsigned char* w1p = wb + (long long)(w1_ok ? wr + 8 : 0) * p.ldb + 16 * t;
    const int4 zero = {0, 0, 0, 0};

    // The weights of batch b: this warp's step of each round; steps past the block's range
    // load zeros (their mma add 0).
    auto load_w = [&](WBatch<C::U>& wbt, int b) {
#pragma unroll
        for (int u = 0; u < C::U; ++u) {
            const int ks = s0 + b * C::STEPS + u * C::WK + wk;
            const long long o = (long long)ks * STEP;
            if (ks < s1 && ks < full) {
                wbt.w0[u] = w0_ok ? ldg_stream_v4(w0p + o) : zero;
                wbt.w1[u] = w1_ok ? ldg_stream_v4(w1p + o) : zero;
            } else if (ks < s1) {  // the step that crosses K
                const long long end = (long long)p.k - 16 * t;
                wbt.w0[u] = w0_ok ? gemv::load_guarded(w0p, o, end) : zero;
                wbt.w1[u] = w1_ok ? gemv::load_guarded(w1p, o, end) : zero;
            } else {
                wbt.w0[u] = zero;
                wbt.w1[u] = zero;
            }
        }
    };
    // The activations of batch b into the buffer at `buf`: chunk c = tid + THREADS i is piece
    // c % 4 of row (c / 4) % BM of step c / (4 BM), at byte 16 c.
    auto load_x = [&](unsigned buf, int b) {
        const int ks0 = s0 + b * C::STEPS;
        const bool inside = ks0 + C::STEPS <= s1 && (long long)(ks0 + C::STEPS) * STEP <= p.k;
#pragma unroll
        for (int i = 0; i < C::CHUNKS; ++i) {
            const int c = tid + C::THREADS * i;
            const int piece = c & 3, r = (c >> 2) % C::BM, s = (c >> 2) / C::BM;
            const bool row_ok = bm + r < p.m;
            const long long off = (long long)(ks0 + s) * STEP + 16 * piece;
            const unsigned char* src = xb + (long long)(row_ok ? bm + r : 0) * p.lda + off;
            if (inside) {
                cp_async_16_or_zero(buf + 16u * (unsigned)c, row_ok ? src : xb, !row_ok);
            } else {
                const long long left = ks0 + s < s1 ? (long long)p.k - off : 0;
                const int bytes = row_ok ? (left >= 16 ? 16 : (left > 0 ? (int)left : 0)) : 0;
                cp_async_16(buf + 16u * (unsigned)c, bytes > 0 ? src : xb, bytes);
            }
        }
    };

    // The prefetching tile: as the prefetching GEMV (gemv::body), the block's weight rows are
    // asked of L2 ahead of the warps' loads — lane 0 of warp w the block's rows PF_ROWS w …
    // PF_ROWS w + PF_ROWS − 1, bytes [lo, hi) of its k range (the last split's up to K rounded
    // up to 16), in contiguous pieces, each byte once: gemv::PF_AHEAD bytes before the first
    // loads, then every PF_EVERY batches (2 KiB of each row) up to gemv::PF_AHEAD past the
    // batches that follow. Batches are the block's (every warp runs them all), so the last
    // advance reaches hi. Block row 0 only (blockIdx.y): the others read the same weights.
    constexpr int PF_ROWS = C::BN / (C::THREADS / 32);
    constexpr int BATCH_BYTES = C::STEPS * STEP;  // of each weight row per batch
    constexpr int PF_EVERY = 2048 / BATCH_BYTES;
    static_assert(C::BN % (C::THREADS / 32) == 0 && 2048 % BATCH_BYTES == 0, "prefetch geometry");
    const long long pf_lo = (long long)s0 * STEP;
    const long long pf_kc = ((long long)p.k + 15) & ~15ll;
    const long long pf_hi = (long long)s1 * STEP < pf_kc ? (long long)s1 * STEP : pf_kc;
    const bool pf_lane = PF && lane == 0 && blockIdx.y == 0;
    long long pf_done = pf_lo;
    auto prefetch_to = [&](long long to) {
        to = to < pf_hi ? to : pf_hi;
        if (!pf_lane || to <= pf_done) return;
#pragma unroll
        for (int i = 0; i < PF_ROWS; ++i) {
            const int r = bn + PF_ROWS * warp + i;
            if (r < p.n) prefetch_l2(wb + (long long)r * p.ldb + pf_done, (unsigned)(to - pf_done));
        }
        pf_done = to;
    };

    int acc[C::MT][4];
#pragma unroll
    for (int j = 0; j < C::MT; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[j][e] = 0;

    if (batches > 0) {
        WBatch<C::U> cur, nxt{};  // (nxt is copied even when the last batch loaded none)
        if (PF) prefetch_to(pf_lo + gemv::PF_AHEAD);
        load_x(0, 0);
        cp_async_commit();
        load_w(cur, 0);
        for (int b = 0; b < batches; ++b) {
            // Batch b has landed for every thread, and every warp is done with batch b − 1,
            // whose buffer the copies below overwrite.
            cp_async_wait<0>();
            block_sync();
            if (PF && b % PF_EVERY == 0) prefetch_to(pf_lo + gemv::PF_AHEAD + (long long)(b + PF_EVERY) * BATCH_BYTES);
            if (b + 1 < batches) {
                load_x((unsigned)(((b + 1) & 1) * C::XBUF), b + 1);
                load_w(nxt, b + 1);
            }
            cp_async_commit();
            const unsigned xs = (unsigned)((b & 1) * C::XBUF);
#pragma unroll
            for (int u = 0; u < C::U; ++u) {
                const unsigned row0 = xs + (unsigned)(((u * C::WK + wk) * C::BM + g) * STEP + 16 * t);
#pragma unroll
                for (int j = 0; j < C::MT; ++j)
                    step_mma_tile<U8>(acc[j], cur.w0[u], cur.w1[u], lds_v4(row0 + (unsigned)(j * 8 * STEP)));
            }
            cur = nxt;
        }
    }
    cp_async_wait<0>();  // (only empty groups remain)
    block_sync();        // every warp is done with the buffers the staging below reuses
    if (p.status && p.status->count != 0) return;  // the input had NaN/inf: the host reports it

    // The warps' accumulators meet in shared memory: element (j, e) of lane (g, t) is row
    // 8 j + 2 t + e % 2, column 16 wn + g + 8 (e / 2) of the block's tile.
    int* stg = reinterpret_cast<int*>(dyn_smem());
#pragma unroll
    for (int j = 0; j < C::MT; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e)
            stg[(wk * C::BM + 8 * j + 2 * t + (e & 1)) * C::PITCH + 16 * wn + g + 8 * (e >> 1)] = acc[j][e];
    block_sync();

    // From here each thread owns column pairs: pair i = tid + THREADS i' is row i / PAIR_COLS,
    // columns 2 (i % PAIR_COLS) and + 1; the WK slices summed in order.
    unsigned v[C::PAIRS][2];
#pragma unroll
    for (int i = 0; i < C::PAIRS; ++i) {
        const int pi = tid + C::THREADS * i;
        const int r = pi / C::PAIR_COLS, c = (pi % C::PAIR_COLS) * 2;
        v[i][0] = v[i][1] = 0;
#pragma unroll
        for (int w = 0; w < C::WK; ++w) {
            const unsigned long long s =
                *reinterpret_cast<const unsigned long long*>(stg + (w * C::BM + r) * C::PITCH + c);
            v[i][0] += (unsigned)s;
            v[i][1] += (unsigned)(s >> 32);
        }
    }

    if (gridDim.z > 1) {
        const int splits = (int)gridDim.z;
        const int tile = (int)(blockIdx.y * gridDim.x + blockIdx.x);
        constexpr long long PER_BLOCK = (long long)C::BM * C::PAIR_COLS;  // pairs per block
        unsigned long long* part =
            reinterpret_cast<unsigned long long*>(q.partials) + ((long long)tile * splits + blockIdx.z) * PER_BLOCK;
#pragma unroll
        for (int i = 0; i < C::PAIRS; ++i) {
            const int pi = tid + C::THREADS * i;
            if (bm + pi / C::PAIR_COLS < p.m) part[pi] = (unsigned long long)v[i][0] | ((unsigned long long)v[i][1] << 32);
        }
        if (!split_k_last_to_arrive(q.counters, tile, splits, reinterpret_cast<int*>(dyn_smem() + C::FLAG))) return;
        for (int s = 0; s < splits; ++s) {
            if (s == (int)blockIdx.z) continue;
            const unsigned long long* other =
                reinterpret_cast<const unsigned long long*>(q.partials) + ((long long)tile * splits + s) * PER_BLOCK;
#pragma unroll
            for (int i = 0; i < C::PAIRS; ++i) {
                const int pi = tid + C::THREADS * i;
                if (bm + pi / C::PAIR_COLS >= p.m) continue;
                // Wrapping adds: every partial sum is bounded like the whole (the host proved it).
                const unsigned long long o = ldcg_u64(other + pi);
                v[i][0] += (unsigned)o;
                v[i][1] += (unsigned)(o >> 32);
            }
        }
    }

    // The sums go back to slice 0 (each thread rewrites only the pairs it read), and the
    // epilogue (DESIGN.md §1 steps 1–3) reads them from there in a loop kept rolled: its
    // per-output-kind stores would otherwise be copied PAIRS times. A warp's pairs cover
    // contiguous row segments.
#pragma unroll
    for (int i = 0; i < C::PAIRS; ++i) {
        const int pi = tid + C::THREADS * i;
        *reinterpret_cast<unsigned long long*>(stg + (pi / C::PAIR_COLS) * C::PITCH + (pi % C::PAIR_COLS) * 2) =
            (unsigned long long)v[i][0] | ((unsigned long long)v[i][1] << 32);
    }
    const bool paired = (q.flags & MMA_PAIRED_STORES) != 0;
#pragma unroll 1
    for (int pi = tid; pi < C::BM * C::PAIR_COLS; pi += C::THREADS) {
        const int r = pi / C::PAIR_COLS, c = (pi % C::PAIR_COLS) * 2;
        const int row = bm + r, col = bn + c;
        if (row >= p.m || col >= p.n) continue;
        epi_store_acc_pair(p, *reinterpret_cast<const unsigned long long*>(stg + r * C::PITCH + c), row, col, paired);
    }
}

}  // namespace staged

// Two blocks per multiprocessor (ptxas keeps the registers at 128) — not on sm_75, whose 64 KiB of
// shared memory per multiprocessor holds one block of most of these tiles anyway, and where
// the register cap would spill (gemm_stream_64x64: 4 bytes).
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#define STREAM_MIN_BLOCKS 1
#else
#define STREAM_MIN_BLOCKS 2
#endif

I8RT_ENTRY_MIN_BLOCKS(gemm_stream_32x64_s8, MmaParams, staged::S32x64::THREADS, STREAM_MIN_BLOCKS) { staged::body<staged::S32x64, false>(p); }
I8RT_ENTRY_MIN_BLOCKS(gemm_stream_32x64_u8, MmaParams, staged::S32x64::THREADS, STREAM_MIN_BLOCKS) { staged::body<staged::S32x64, true>(p); }
I8RT_ENTRY_MIN_BLOCKS(gemm_stream_64x64_s8, MmaParams, staged::S64x64::THREADS, STREAM_MIN_BLOCKS) { staged::body<staged::S64x64, false>(p); }
I8RT_ENTRY_MIN_BLOCKS(gemm_stream_64x64_u8, MmaParams, staged::S64x64::THREADS, STREAM_MIN_BLOCKS) { staged::body<staged::S64x64, true>(p); }
// The 64 × 64 tile prefetching its weight rows into L2 (sm_90: `cp.async.bulk.prefetch.L2`;
// below sm_90 the prefetch is nothing and the host refuses the tile): MmaTile::Stream64x64Pf,
// forced or tuned only until measured.
I8RT_ENTRY_MIN_BLOCKS(gemm_stream_pf_64x64_s8, MmaParams, staged::S64x64::THREADS, STREAM_MIN_BLOCKS) { staged::body<staged::S64x64, false, true>(p); }
I8RT_ENTRY_MIN_BLOCKS(gemm_stream_pf_64x64_u8, MmaParams, staged::S64x64::THREADS, STREAM_MIN_BLOCKS) { staged::body<staged::S64x64, true, true>(p); }
I8RT_ENTRY(gemm_stream_128x64_s8, MmaParams, staged::S128x64::THREADS) { staged::body<staged::S128x64, false>(p); }
I8RT_ENTRY(gemm_stream_128x64_u8, MmaParams, staged::S128x64::THREADS) { staged::body<staged::S128x64, true>(p); }
I8RT_ENTRY_MIN_BLOCKS(gemm_stream_64x128_s8, MmaParams, staged::S64x128::THREADS, STREAM_MIN_BLOCKS) { staged::body<staged::S64x128, false>(p); }
I8RT_ENTRY_MIN_BLOCKS(gemm_stream_64x128_u8, MmaParams, staged::S64x128::THREADS, STREAM_MIN_BLOCKS) { staged::body<staged::S64x128, true>(p); }
