// kernels/gemm_dp4a.cu — the int8 GEMM on `dp4a` (sm_61+) with the DESIGN.md §1 epilogue fused:
// Y[m, n] = epilogue(X[m, k] · W[n, k]ᵀ), X s8 or u8 (`dp4a.u32.s32`), W s8, any M, N, K.
//
// Three kernels:
// - tiled (M > SKINNY_MAX_M): a 128 × 128 block tile over k in 32-byte steps, staged through
//   double-buffered shared memory (one barrier per step), each of 256 threads holding an 8 × 8
//   register tile of i32 accumulators (64 dp4a per 16 shared-memory words read);
// - skinny (M ≤ SKINNY_MAX_M, the GEMV shapes of token-by-token decoding): one warp per output
//   column streams that weight row once with 16-byte loads, four in flight per lane, for all M
//   rows, and reduces across the warp with shuffles. This path is bound by weight bandwidth;
// - rows16 (M ≤ SKINNY_MAX_M, aligned, forced or tuned: `gemv_dp4a16_*`): the same GEMV in the
//   tensor-core GEMV's block shape and accumulator layout (kernels/gemv.cuh), described below.
// `_unaligned` variants read bytes with guards (any stride, any base address); the default ones
// read 16 bytes at a time and need lda, ldb and both base addresses to be multiples of 16 (the
// host checks; the layer pads its rows). The K tail and the M / N edges are handled inside.
#include "gemv.cuh"

#define TILE_THREADS 256
#define SKINNY_THREADS 256
#define SKINNY_MAX_M 8

namespace tiled {
constexpr int BM = 128;        // block tile rows (of X and Y)
constexpr int BN = 128;        // block tile columns (rows of W)
constexpr int BK = 32;         // k bytes per step
constexpr int KW = BK / 4;     // k words per step
constexpr int PAD = 4;         // words of padding per shared row: conflict-free transposed stores

// Shared memory: [buffer][k word][row], so a thread reads its rows' words for one k word with
// two 16-byte loads.
struct alignas(16) Smem {
    int a[2][KW][BM + PAD];
    int b[2][KW][BN + PAD];
};

// 16 bytes of row `row` of a [rows, ld] byte matrix, bytes k0 .. k0 + 16, zero outside
// [0, rows) × [0, k).
template <bool VEC>
I8RT_INLINE int4 load16(const unsigned char* base, long long ld, int row, int rows, long long k0, int k) {
    int4 v = {0, 0, 0, 0};
    if (row < rows) {
        const unsigned char* r = base + (long long)row * ld;
        if (VEC && k0 + 16 <= k) {
            v = ldg_v4(r + k0);
        } else {
            v.x = ld_bytes4(r, k0, k);
            v.y = ld_bytes4(r, k0 + 4, k);
            v.z = ld_bytes4(r, k0 + 8, k);
            v.w = ld_bytes4(r, k0 + 12, k);
        }
    }
    return v;
}

// Store a loaded piece transposed: words k w0 .. w0 + 4 of tile row r.
I8RT_INLINE void store16(int (*s)[BM + PAD], int w0, int r, int4 v) {
    s[w0 + 0][r] = v.x;
    s[w0 + 1][r] = v.y;
    s[w0 + 2][r] = v.z;
    s[w0 + 3][r] = v.w;
}

template <bool U8, bool VEC>
I8RT_INLINE void body(const GemmParams& p) {
    __shared__ Smem sm;
    if (p.status && p.status->count != 0) return;  // the input had NaN/inf: the host reports it
    const int tid = (int)threadIdx.x;
    const int bm = (int)blockIdx.y * BM, bn = (int)blockIdx.x * BN;
    // Loading role: tile row lr, bytes lk .. lk + 16 of the step.
    const int lr = tid >> 1, lk = (tid & 1) * 16;
    // Computing role: rows ty·4 + {0..3} and 64 + ty·4 + {0..3}; columns likewise with tx.
    const int tx = tid & 15, ty = tid >> 4;
    const unsigned char* xa = static_cast<const unsigned char*>(p.x);
    const unsigned char* wb = reinterpret_cast<const unsigned char*>(p.w);

    int acc[8][8];
#pragma unroll
    for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = 0;

    const int steps = (p.k + BK - 1) / BK;
    int4 ra = load16<VEC>(xa, p.lda, bm + lr, p.m, lk, p.k);
    int4 rb = load16<VEC>(wb, p.ldb, bn + lr, p.n, lk, p.k);
    store16(sm.a[0], lk / 4, lr, ra);
    store16(sm.b[0], lk / 4, lr, rb);
    block_sync();
    for (int s = 0; s < steps; ++s) {
        const int cur = s & 1;
        // Prefetch the next step into registers while this one is computed.
        if (s + 1 < steps) {
            const long long k0 = (long long)(s + 1) * BK + lk;
            ra = load16<VEC>(xa, p.lda, bm + lr, p.m, k0, p.k);
            rb = load16<VEC>(wb, p.ldb, bn + lr, p.n, k0, p.k);
        }
#pragma unroll
        for (int kw = 0; kw < KW; ++kw) {
            const int4 a0 = *reinterpret_cast<const int4*>(&sm.a[cur][kw][ty * 4]);
            const int4 a1 = *reinterpret_cast<const int4*>(&sm.a[cur][kw][64 + ty * 4]);
            const int4 b0 = *reinterpret_cast<const int4*>(&sm.b[cur][kw][tx * 4]);
            const int4 b1 = *reinterpret_cast<const int4*>(&sm.b[cur][kw][64 + tx * 4]);
            const int av[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
            const int bv[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
            for (int i = 0; i < 8; ++i)
#pragma unroll
                for (int j = 0; j < 8; ++j) acc[i][j] = dp4a<U8>(av[i], bv[j], acc[i][j]);
        }
        if (s + 1 < steps) {
            // The other buffer was last read in step s − 1, which every thread finished before
            // the barrier that ended it.
            store16(sm.a[cur ^ 1], lk / 4, lr, ra);
            store16(sm.b[cur ^ 1], lk / 4, lr, rb);
        }
        block_sync();
    }

    // Epilogue: integer corrections, then the float stage, straight from registers.
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        const int row = bm + (i < 4 ? ty * 4 + i : 64 + ty * 4 + (i - 4));
        if (row >= p.m) continue;
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            const int col = bn + (j < 4 ? tx * 4 + j : 64 + tx * 4 + (j - 4));
            if (col >= p.n) continue;
            const int v = corrected_acc(p, acc[i][j], row, col);
            epi_store(p.epi, p.y, (long long)row * p.ldy + col, v, row, col);
        }
    }
}
}  // namespace tiled

namespace skinny {
constexpr int COLS = SKINNY_THREADS / 32;  // output columns per block (one per warp)
constexpr int STEP = 32 * 16;              // bytes of a weight row one warp-wide load covers
constexpr int UNROLL = 4;                  // independent 16-byte weight loads in flight per lane

template <bool U8>
I8RT_INLINE void dot16(int (&acc)[SKINNY_MAX_M], const GemmParams& p, const unsigned char* x, long long k0, int4 w) {
#pragma unroll
    for (int i = 0; i < SKINNY_MAX_M; ++i) {
        if (i < p.m) {
            const int4 xv = ldg_v4(x + (long long)i * p.lda + k0);
            acc[i] = dp4a<U8>(xv.x, w.x, acc[i]);
            acc[i] = dp4a<U8>(xv.y, w.y, acc[i]);
            acc[i] = dp4a<U8>(xv.z, w.z, acc[i]);
            acc[i] = dp4a<U8>(xv.w, w.w, acc[i]);
        }
    }
}

template <bool U8, bool VEC>
I8RT_INLINE void body(const GemmParams& p) {
    const int warp = (int)(threadIdx.x >> 5), lane = lane_id();
    const int col = (int)blockIdx.x * COLS + warp;
    if (col >= p.n) return;  // whole warps leave together; no block barrier follows
    const unsigned char* x = static_cast<const unsigned char*>(p.x);
    const unsigned char* w = reinterpret_cast<const unsigned char*>(p.w) + (long long)col * p.ldb;
    int acc[SKINNY_MAX_M];
#pragma unroll
    for (int i = 0; i < SKINNY_MAX_M; ++i) acc[i] = 0;

    long long kt = 0;  // start of the guarded tail
    if (VEC) {
        const long long kv = p.k & ~15ll;  // the part covered by whole 16-byte pieces
        long long k0 = (long long)lane * 16;
        for (; k0 + (UNROLL - 1) * STEP < kv; k0 += UNROLL * STEP) {
            int4 wv[UNROLL];
#pragma unroll
            for (int u = 0; u < UNROLL; ++u) wv[u] = ldg_v4(w + k0 + u * STEP);
#pragma unroll
            for (int u = 0; u < UNROLL; ++u) dot16<U8>(acc, p, x, k0 + u * STEP, wv[u]);
        }
        for (; k0 < kv; k0 += STEP) dot16<U8>(acc, p, x, k0, ldg_v4(w + k0));
        kt = kv;
    }
    for (long long k0 = kt + (long long)lane * 4; k0 < p.k; k0 += 32 * 4) {
        const int wv = ld_bytes4(w, k0, p.k);
#pragma unroll
        for (int i = 0; i < SKINNY_MAX_M; ++i) {
            if (i < p.m) acc[i] = dp4a<U8>(ld_bytes4(x + (long long)i * p.lda, k0, p.k), wv, acc[i]);
        }
    }
#pragma unroll
    for (int i = 0; i < SKINNY_MAX_M; ++i) {
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) acc[i] += (int)shfl_xor_u32((unsigned)acc[i], o);
    }
    // The status is read only now, so its load does not delay the weight stream's first loads.
    if (lane == 0 && !(p.status && p.status->count != 0)) {
#pragma unroll
        for (int i = 0; i < SKINNY_MAX_M; ++i) {
            if (i < p.m) {
                const int v = corrected_acc(p, acc[i], i, col);
                epi_store(p.epi, p.y, (long long)i * p.ldy + col, v, i, col);
            }
        }
    }
}
}  // namespace skinny

// The decode GEMV on dp4a in the tensor-core GEMV's block shape (what GemmKernel::Dp4a runs for
// up to 8 aligned rows; GemmKernel::Dp4aGemv16 forces it): the weight-streaming pattern that
// reached 74 % of an H100's memory bandwidth at 1 × 8192² on the tensor cores (gemv_mma_m8), where
// the skinny kernel above (a warp per weight row, the whole row in four rounds of loads) reached
// 64 %; on the H200 1.2–2.3× the skinny kernel at 1 … 8 × 4096² and 1 × 8192² (bench/RESULTS.md,
// 2026-11-26, ninth session).
// - a block is 8 warps (the narrow M = 1 block: 4) on 16 weight rows; k advances in 64-byte
//   steps, warp w taking steps w, w + 8, … (w + 4, … in the narrow block); lane (g, t) loads 16
//   bytes of weight rows g and g + 8 at byte 16 t of the step (streaming hint) and the same 16 bytes of each activation row below M (≤ MR rows: 1 for
//   the M = 1 kernels, 8 for the others), batches of U steps double-buffered in registers; the
//   step that crosses K with byte guards;
// - per step 4 dp4a per weight row and activation row; the four lanes t of a row group then sum
//   their k quarters with two shuffles, and lane (g, t) keeps the sums of activation rows 2 t and
//   2 t + 1 — the tensor-core GEMV's accumulator layout — so the warps' sums meet and the
//   epilogue runs exactly as there (gemv::reduce_store). Aligned operands only (16-byte rows).
namespace rows16 {

using gemv::BN;
using gemv::STEP;
constexpr int WARPS = 8;
constexpr int THREADS = 32 * WARPS;
// The narrow block for one activation row of a layer too wide for one wave of 8-warp blocks
// (more than three per SM): 4 warps, four blocks per SM, so every block of an 8192-row layer is
// resident at once (the tensor-core GEMV's narrow variant, which won there on the H200).
constexpr int NARROW_WARPS = 4;
constexpr int NARROW_THREADS = 32 * NARROW_WARPS;

template <int MR, int U>
struct Batch {
    int4 w0[U], w1[U];
    int4 x[U][MR];
};

// acc[h][i] += weight row (g + 8 h) · activation row i over this thread's 16 bytes.
template <int MR, bool U8>
I8RT_INLINE void dot_step(int (&acc)[2][MR], const int4& w0, const int4& w1, const int4 (&x)[MR], int m) {
#pragma unroll
    for (int i = 0; i < MR; ++i) {
        if (i >= m) break;  // (uniform)
        acc[0][i] = dp4a<U8>(x[i].x, w0.x, acc[0][i]);
        acc[0][i] = dp4a<U8>(x[i].y, w0.y, acc[0][i]);
        acc[0][i] = dp4a<U8>(x[i].z, w0.z, acc[0][i]);
        acc[0][i] = dp4a<U8>(x[i].w, w0.w, acc[0][i]);
        acc[1][i] = dp4a<U8>(x[i].x, w1.x, acc[1][i]);
        acc[1][i] = dp4a<U8>(x[i].y, w1.y, acc[1][i]);
        acc[1][i] = dp4a<U8>(x[i].z, w1.z, acc[1][i]);
        acc[1][i] = dp4a<U8>(x[i].w, w1.w, acc[1][i]);
    }
}

// W warps per block (WARPS, or NARROW_WARPS) split K between them.
template <int MR, bool U8, int U, int W = WARPS>
I8RT_INLINE void body(const GemmParams& p) {
    __shared__ int red[W][4][32];
    const int tid = (int)threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int bn = (int)blockIdx.x * BN;
    const int m = p.m < MR ? p.m : MR;  // (the host launches M ≤ MR)

    const bool w0_ok = bn + g < p.n, w1_ok = bn + g + 8 < p.n;
    const unsigned char* wb = reinterpret_cast<const unsigned char*>(p.w);
    const unsigned char* w0p = wb + (long long)(w0_ok ? bn + g : 0) * p.ldb + 16 * t;
    const unsigned char* w1p = wb + (long long)(w1_ok ? bn + g + 8 : 0) * p.ldb + 16 * t;
    const unsigned char* xp = static_cast<const unsigned char*>(p.x) + 16 * t;

    int acc[2][MR];
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
        for (int i = 0; i < MR; ++i) acc[h][i] = 0;

    // Whole steps below K: warp w owns steps w + W j, j < count.
    const int full = p.k / STEP;
    const int count = warp < full ? (full - warp + W - 1) / W : 0;
    const int4 zero = {0, 0, 0, 0};
    auto load = [&](Batch<MR, U>& b, int j0) {
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const bool live = j0 + u < count;
            const long long o = (long long)(warp + W * (j0 + u)) * STEP;
            b.w0[u] = live && w0_ok ? ldg_stream_v4(w0p + o) : zero;
            b.w1[u] = live && w1_ok ? ldg_stream_v4(w1p + o) : zero;
#pragma unroll
            for (int i = 0; i < MR; ++i) b.x[u][i] = live && i < m ? ldg_v4(xp + (long long)i * p.lda + o) : zero;
        }
    };
    Batch<MR, U> cur, nxt{};
    if (count > 0) {
        load(cur, 0);
        for (int j0 = 0; j0 < count; j0 += U) {
            if (j0 + U < count) load(nxt, j0 + U);
#pragma unroll
            for (int u = 0; u < U; ++u) dot_step<MR, U8>(acc, cur.w0[u], cur.w1[u], cur.x[u], m);
            cur = nxt;
        }
    }
    // The step that crosses K, if any, by the warp whose turn it is.
    if (p.k % STEP != 0 && warp == full % W) {
        const long long o = (long long)full * STEP;
        const long long end = (long long)p.k - 16 * t;  // bytes of this thread's rows below K, from o
        const int4 w0 = w0_ok ? gemv::load_guarded(w0p, o, end) : zero;
        const int4 w1 = w1_ok ? gemv::load_guarded(w1p, o, end) : zero;
        int4 x[MR];
#pragma unroll
        for (int i = 0; i < MR; ++i) x[i] = i < m ? gemv::load_guarded(xp + (long long)i * p.lda, o, end) : zero;
        dot_step<MR, U8>(acc, w0, w1, x, m);
    }

    // The row group's four k quarters (lanes 4 g … 4 g + 3) summed; then lane (g, t) keeps
    // activation rows 2 t, 2 t + 1 of weight rows g, g + 8 — the m16n8 C fragment's places.
    int c[1][1][4] = {{{0, 0, 0, 0}}};
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
        for (int i = 0; i < MR; ++i) {
            int v = acc[h][i];
            v += (int)shfl_xor_u32((unsigned)v, 1);
            v += (int)shfl_xor_u32((unsigned)v, 2);
            // (selects by t, so the accumulators stay in registers)
            if (i == 2 * t) c[0][0][2 * h] = v;
            if (i == 2 * t + 1) c[0][0][2 * h + 1] = v;
        }
    gemv::reduce_store<1, W>(p, red, c, bn, 0);
}

}  // namespace rows16

I8RT_ENTRY(gemm_dp4a_s8, GemmParams, TILE_THREADS) { tiled::body<false, true>(p); }
I8RT_ENTRY(gemm_dp4a_u8, GemmParams, TILE_THREADS) { tiled::body<true, true>(p); }
I8RT_ENTRY(gemm_dp4a_s8_unaligned, GemmParams, TILE_THREADS) { tiled::body<false, false>(p); }
I8RT_ENTRY(gemm_dp4a_u8_unaligned, GemmParams, TILE_THREADS) { tiled::body<true, false>(p); }
I8RT_ENTRY(gemv_dp4a_s8, GemmParams, SKINNY_THREADS) { skinny::body<false, true>(p); }
I8RT_ENTRY(gemv_dp4a_u8, GemmParams, SKINNY_THREADS) { skinny::body<true, true>(p); }
I8RT_ENTRY(gemv_dp4a_s8_unaligned, GemmParams, SKINNY_THREADS) { skinny::body<false, false>(p); }
I8RT_ENTRY(gemv_dp4a_u8_unaligned, GemmParams, SKINNY_THREADS) { skinny::body<true, false>(p); }
// (M = 1: two steps per register batch, held to 128 registers — left to itself ptxas spilled
// at 64; M ≤ 8: one step, the eight activation rows' 16 bytes each)
I8RT_ENTRY_MIN_BLOCKS(gemv_dp4a16_m1_s8, GemmParams, rows16::THREADS, 2) { rows16::body<1, false, 2>(p); }
I8RT_ENTRY_MIN_BLOCKS(gemv_dp4a16_m1_u8, GemmParams, rows16::THREADS, 2) { rows16::body<1, true, 2>(p); }
I8RT_ENTRY(gemv_dp4a16_m8_s8, GemmParams, rows16::THREADS) { rows16::body<8, false, 1>(p); }
I8RT_ENTRY(gemv_dp4a16_m8_u8, GemmParams, rows16::THREADS) { rows16::body<8, true, 1>(p); }
// (M = 1, the narrow block: three steps per register batch, four blocks per SM)
I8RT_ENTRY_MIN_BLOCKS(gemv_dp4a16_m1_narrow_s8, GemmParams, rows16::NARROW_THREADS, 4) {
    rows16::body<1, false, 3, rows16::NARROW_WARPS>(p);
}
I8RT_ENTRY_MIN_BLOCKS(gemv_dp4a16_m1_narrow_u8, GemmParams, rows16::NARROW_THREADS, 4) {
    rows16::body<1, true, 3, rows16::NARROW_WARPS>(p);
}
