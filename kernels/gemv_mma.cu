// kernels/gemv_mma.cu — the weight-streaming int8 GEMM on the tensor cores for few rows (decode,
// M ≤ 32 per block row) with the DESIGN.md §1 epilogue fused: Y[m, n] = epilogue(X[m, k] · W[n, k]ᵀ),
// X s8 or u8, W s8, both K-contiguous with 16-byte-aligned rows (the host checks; other strides
// run on gemm_dp4a.cu). Chosen by the host's dispatch (src/cuda/ops.rs) for small M, where the
// tiled kernels of gemm_mma.cu stage weights through shared memory that no other row reuses.
// I8RT_MIN_ARCH 80
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
// - the 8 warps' i32 accumulators meet in shared memory and are summed in warp order (integer
//   sums are exact: the same bits as the reference for any order); the epilogue then runs on
//   every thread, one output element per thread and pass. Rows of W past N and rows of X past M
//   load nothing (zeros) and store nothing.
#include "common.cuh"

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#error "gemv_mma.cu needs sm_80 or newer (mma.sync.m16n8k32)"
#endif

namespace gemv {

constexpr int WARPS = 8;
constexpr int THREADS = 32 * WARPS;
constexpr int BN = 16;   // weight rows (columns of Y) per block
constexpr int STEP = 64; // k bytes per warp step

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

// 16 bytes at `p + o`, zero past `end` (byte guards; the K-crossing step only).
I8RT_INLINE int4 load_guarded(const unsigned char* p, long long o, long long end) {
    if (o + 16 <= end) return ldg_v4(p + o);
    int4 v;
    v.x = ld_bytes4(p, o, end);
    v.y = ld_bytes4(p, o + 4, end);
    v.z = ld_bytes4(p, o + 8, end);
    v.w = ld_bytes4(p, o + 12, end);
    return v;
}

// The two m16n8k32 of one step: bytes 0–7 of every thread's 16, then bytes 8–15.
template <int MT, bool U8>
I8RT_INLINE void step_mma(int (&acc)[1][MT][4], const int4& w0, const int4& w1, const int4 (&x)[MT]) {
    {
        const unsigned a[1][4] = {{(unsigned)w0.x, (unsigned)w1.x, (unsigned)w0.y, (unsigned)w1.y}};
        unsigned b[MT][2];
#pragma unroll
        for (int j = 0; j < MT; ++j) {
            b[j][0] = (unsigned)x[j].x;
            b[j][1] = (unsigned)x[j].y;
        }
        mma_16832<1, MT, false, U8>(acc, a, b);
    }
    {
        const unsigned a[1][4] = {{(unsigned)w0.z, (unsigned)w1.z, (unsigned)w0.w, (unsigned)w1.w}};
        unsigned b[MT][2];
#pragma unroll
        for (int j = 0; j < MT; ++j) {
            b[j][0] = (unsigned)x[j].z;
            b[j][1] = (unsigned)x[j].w;
        }
        mma_16832<1, MT, false, U8>(acc, a, b);
    }
}

template <int MT, bool U8>
I8RT_INLINE void body(const GemmParams& p) {
    using C = Cfg<MT>;
    constexpr int U = C::U;
    __shared__ int red[WARPS][MT * 4][32];

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
    const int count = warp < full ? (full - warp + WARPS - 1) / WARPS : 0;
    const int4 zero = {0, 0, 0, 0};
    // Batch starting at this warp's i-th step; steps past `count` load zeros (their mma add 0).
    auto load = [&](Batch<MT, U>& b, int i0) {
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const bool live = i0 + u < count;
            const long long o = (long long)(warp + WARPS * (i0 + u)) * STEP;
            b.w0[u] = live && w0_ok ? ldg_stream_v4(w0p + o) : zero;
            b.w1[u] = live && w1_ok ? ldg_stream_v4(w1p + o) : zero;
#pragma unroll
            for (int j = 0; j < MT; ++j) b.x[u][j] = live && x_ok[j] ? ldg_v4(xp[j] + o) : zero;
        }
    };
    if (count > 0) {
        Batch<MT, U> cur, nxt{};  // (nxt is copied even when the last batch loaded none)
        load(cur, 0);
        for (int i0 = 0; i0 < count; i0 += U) {
            if (i0 + U < count) load(nxt, i0 + U);
#pragma unroll
            for (int u = 0; u < U; ++u) step_mma<MT, U8>(acc, cur.w0[u], cur.w1[u], cur.x[u]);
            cur = nxt;
        }
    }
    // The step that crosses K, if any, by the warp whose turn it is.
    if (p.k % STEP != 0 && warp == full % WARPS) {
        const long long o = (long long)full * STEP;
        const long long end = (long long)p.k - 16 * t;  // bytes of this thread's rows below K, from o
        const int4 w0 = w0_ok ? load_guarded(w0p, o, end) : zero;
        const int4 w1 = w1_ok ? load_guarded(w1p, o, end) : zero;
        int4 x[MT];
#pragma unroll
        for (int j = 0; j < MT; ++j) x[j] = x_ok[j] ? load_guarded(xp[j], o, end) : zero;
        step_mma<MT, U8>(acc, w0, w1, x);
    }

    // The warps' partial sums meet in shared memory.
#pragma unroll
    for (int j = 0; j < MT; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) red[warp][j * 4 + e][lane] = acc[0][j][e];
    block_sync();
    if (p.status && p.status->count != 0) return;  // the input had NaN/inf: the host reports it

    // Epilogue: element (i, l) of the accumulator layout — tile j = i / 4, register e = i % 4 of
    // lane l — is Y[bm + 8 j + 2 (l % 4) + e % 2, bn + l / 4 + 8 (e / 2)].
    for (int idx = tid; idx < MT * 4 * 32; idx += THREADS) {
        const int i = idx >> 5, l = idx & 31;
        const int j = i >> 2, e = i & 3;
        const int row = bm + 8 * j + 2 * (l & 3) + (e & 1);
        const int col = bn + (l >> 2) + 8 * (e >> 1);
        if (row >= p.m || col >= p.n) continue;
        unsigned s = 0;
#pragma unroll
        for (int w = 0; w < WARPS; ++w) s += (unsigned)red[w][i][l];
        const int v = corrected_acc(p, (int)s, row, col);
        epi_store(p.epi, p.y, (long long)row * p.ldy + col, v, row, col);
    }
}

}  // namespace gemv

I8RT_ENTRY(gemv_mma_m8_s8, GemmParams, gemv::THREADS) { gemv::body<1, false>(p); }
I8RT_ENTRY(gemv_mma_m8_u8, GemmParams, gemv::THREADS) { gemv::body<1, true>(p); }
I8RT_ENTRY(gemv_mma_m16_s8, GemmParams, gemv::THREADS) { gemv::body<2, false>(p); }
I8RT_ENTRY(gemv_mma_m16_u8, GemmParams, gemv::THREADS) { gemv::body<2, true>(p); }
I8RT_ENTRY(gemv_mma_m32_s8, GemmParams, gemv::THREADS) { gemv::body<4, false>(p); }
I8RT_ENTRY(gemv_mma_m32_u8, GemmParams, gemv::THREADS) { gemv::body<4, true>(p); }
