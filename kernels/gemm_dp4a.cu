// kernels/gemm_dp4a.cu — the int8 GEMM on `dp4a` (sm_61+) with the DESIGN.md §1 epilogue fused:
// Y[m, n] = epilogue(X[m, k] · W[n, k]ᵀ), X s8 or u8 (`dp4a.u32.s32`), W s8, any M, N, K.
//
// Two kernels:
// - tiled (M > SKINNY_MAX_M): a 128 × 128 block tile over k in 32-byte steps, staged through
//   double-buffered shared memory (one barrier per step), each of 256 threads holding an 8 × 8
//   register tile of i32 accumulators (64 dp4a per 16 shared-memory words read);
// - skinny (M ≤ SKINNY_MAX_M, the GEMV shapes of token-by-token decoding): one warp per output
//   column streams that weight row once with 16-byte loads, four in flight per lane, for all M
//   rows, and reduces across the warp with shuffles. This path is bound by weight bandwidth.
// `_unaligned` variants read bytes with guards (any stride, any base address); the default ones
// read 16 bytes at a time and need lda, ldb and both base addresses to be multiples of 16 (the
// host checks; the layer pads its rows). The K tail and the M / N edges are handled inside.
#include "common.cuh"

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

I8RT_ENTRY(gemm_dp4a_s8, GemmParams, TILE_THREADS) { tiled::body<false, true>(p); }
I8RT_ENTRY(gemm_dp4a_u8, GemmParams, TILE_THREADS) { tiled::body<true, true>(p); }
I8RT_ENTRY(gemm_dp4a_s8_unaligned, GemmParams, TILE_THREADS) { tiled::body<false, false>(p); }
I8RT_ENTRY(gemm_dp4a_u8_unaligned, GemmParams, TILE_THREADS) { tiled::body<true, false>(p); }
I8RT_ENTRY(gemv_dp4a_s8, GemmParams, SKINNY_THREADS) { skinny::body<false, true>(p); }
I8RT_ENTRY(gemv_dp4a_u8, GemmParams, SKINNY_THREADS) { skinny::body<true, true>(p); }
I8RT_ENTRY(gemv_dp4a_s8_unaligned, GemmParams, SKINNY_THREADS) { skinny::body<false, false>(p); }
I8RT_ENTRY(gemv_dp4a_u8_unaligned, GemmParams, SKINNY_THREADS) { skinny::body<true, false>(p); }
