// kernels/gemv.cuh — what the weight-streaming GEMV kernels share: kernels/gemv_mma.cu (whose
// header explains the transposed product Yᵀ = W · Xᵀ and why a thread's 16-byte loads already are
// its mma fragments) and kernels/gemv_mma_bulk.cu (the same product with the weights brought
// into shared memory by bulk copies). Here: the block's weight rows and the warp step, the
// guarded load of the step that crosses K, the step's two m16n8k32, and the warps' reduction
// with the fused epilogue.
#pragma once

#include "common.cuh"

namespace gemv {

constexpr int BN = 16;    // weight rows (columns of Y) per block
constexpr int STEP = 64;  // k bytes per warp step

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

// The W warps' partial sums (`acc`: per n8 tile j, mma's C fragment — lane l holds rows
// 2 (l % 4) + e % 2, columns l / 4 + 8 (e / 2)) meet in `red` and are summed in warp order
// (integer sums: the reference's bits for any order); then the epilogue, one output element per
// thread and pass. Rows past M and columns past N store nothing; a status that counted
// non-finite input stores nothing at all (the host reports it).
template <int MT, int W>
I8RT_INLINE void reduce_store(const GemmParams& p, int (&red)[W][MT * 4][32], const int (&acc)[1][MT][4], int bn,
                              int bm) {
    const int tid = (int)threadIdx.x, lane = tid & 31, warp = tid >> 5;
#pragma unroll
    for (int j = 0; j < MT; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) red[warp][j * 4 + e][lane] = acc[0][j][e];
    block_sync();
    if (p.status && p.status->count != 0) return;  // the input had NaN/inf: the host reports it

    // Epilogue: element (i, l) of the accumulator layout — tile j = i / 4, register e = i % 4 of
    // lane l — is Y[bm + 8 j + 2 (l % 4) + e % 2, bn + l / 4 + 8 (e / 2)].
    for (int idx = tid; idx < MT * 4 * 32; idx += 32 * W) {
        const int i = idx >> 5, l = idx & 31;
        const int j = i >> 2, e = i & 3;
        const int row = bm + 8 * j + 2 * (l & 3) + (e & 1);
        const int col = bn + (l >> 2) + 8 * (e >> 1);
        if (row >= p.m || col >= p.n) continue;
        unsigned s = 0;
#pragma unroll
        for (int w = 0; w < W; ++w) s += (unsigned)red[w][i][l];
        const int v = corrected_acc(p, (int)s, row, col);
        epi_store(p.epi, p.y, (long long)row * p.ldy + col, v, row, col);
    }
}

}  // namespace gemv
