// kernels/peak.cu — instruction-peak microbenchmarks: how many int8 tensor-core
// (`mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32`) and `dp4a` operations per second the GPU
// sustains when nothing else limits it. Not part of any inference path: the host side is
// src/cuda/peak.rs, run by benches/gpu_gemm.rs next to the GEMM table (the ceiling the GEMM
// kernels are measured against), and checked in the host simulation by src/cuda/sim_peak_tests.rs.
// I8RT_MIN_ARCH 80
//
// Both entries keep everything in registers: the operands are read once from a small seed
// buffer (so the compiler cannot fold them), the loop issues only the measured instruction (plus
// the loop counter), and each thread writes the wrapping sum of its accumulators at the end (so
// nothing is dead). Per iteration (params.cuh):
//   peak_mma_s8:  PEAK_MMA_UNROLL rounds of PEAK_MMA_MT × PEAK_MMA_NT = 8 independent
//                 m16n8k32 tiles per warp (A_i · B_j into acc[i][j], the same register fragments
//                 every time): 32 mma.sync per warp, 32 × 4096 multiply-accumulates;
//   peak_dp4a_s8: PEAK_DP4A_UNROLL rounds of PEAK_DP4A_ACC = 16 independent accumulators per
//                 thread (acc[i] = dp4a(a[i % 4], b[i / 4], acc[i])): 128 dp4a per thread, 512
//                 multiply-accumulates.
// After `iters` iterations acc = init + iters · UNROLL · (the product), wrapping: what the
// simulation test recomputes from the PTX ISA fragment layouts.
#include "common.cuh"

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#error "peak.cu needs sm_80 or newer (mma.sync.m16n8k32)"
#endif

namespace peak {

constexpr int MT = PEAK_MMA_MT, NT = PEAK_MMA_NT;

// Seed word i (modulo the buffer).
I8RT_INLINE unsigned seed_word(const PeakParams& p, int i) { return (unsigned)p.seed[i & (PEAK_SEED_WORDS - 1)]; }

I8RT_INLINE unsigned global_thread() { return blockIdx.x * blockDim.x + threadIdx.x; }

// The operands, by lane only (every warp runs the same fragments): A_i register r from word
// lane + 8 (4 i + r), B_j register r from word 3 lane + 8 (2 j + r) + 1. Accumulators start at
// 32 · (global thread) + their index.
I8RT_INLINE void mma_body(const PeakParams& p) {
    const int lane = lane_id();
    const unsigned gt = global_thread();
    unsigned a[MT][4], b[NT][2];
    int acc[MT][NT][4];
#pragma unroll
    for (int i = 0; i < MT; ++i)
#pragma unroll
        for (int r = 0; r < 4; ++r) a[i][r] = seed_word(p, lane + 8 * (4 * i + r));
#pragma unroll
    for (int j = 0; j < NT; ++j)
#pragma unroll
        for (int r = 0; r < 2; ++r) b[j][r] = seed_word(p, 3 * lane + 8 * (2 * j + r) + 1);
#pragma unroll
    for (int i = 0; i < MT; ++i)
#pragma unroll
        for (int j = 0; j < NT; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[i][j][e] = (int)(32u * gt + (unsigned)((i * NT + j) * 4 + e));

#pragma unroll 1
    for (int it = 0; it < p.iters; ++it) {
#pragma unroll
        for (int u = 0; u < PEAK_MMA_UNROLL; ++u) mma_16832<MT, NT, false>(acc, a, b);
    }

    unsigned s = 0;
#pragma unroll
    for (int i = 0; i < MT; ++i)
#pragma unroll
        for (int j = 0; j < NT; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) s += (unsigned)acc[i][j][e];
    p.out[gt] = (int)s;
}

// a[r] from word lane + 8 r, b[r] from word 3 lane + 8 r + 33; acc[i] starts at 32 · (global
// thread) + i.
I8RT_INLINE void dp4a_body(const PeakParams& p) {
    const int lane = lane_id();
    const unsigned gt = global_thread();
    int a[4], b[4], acc[PEAK_DP4A_ACC];
#pragma unroll
    for (int r = 0; r < 4; ++r) {
        a[r] = (int)seed_word(p, lane + 8 * r);
        b[r] = (int)seed_word(p, 3 * lane + 8 * r + 33);
    }
#pragma unroll
    for (int i = 0; i < PEAK_DP4A_ACC; ++i) acc[i] = (int)(32u * gt + (unsigned)i);

#pragma unroll 1
    for (int it = 0; it < p.iters; ++it) {
#pragma unroll
        for (int u = 0; u < PEAK_DP4A_UNROLL; ++u)
#pragma unroll
            for (int i = 0; i < PEAK_DP4A_ACC; ++i) acc[i] = dp4a_s8(a[i % 4], b[i / 4], acc[i]);
    }

    unsigned s = 0;
#pragma unroll
    for (int i = 0; i < PEAK_DP4A_ACC; ++i) s += (unsigned)acc[i];
    p.out[gt] = (int)s;
}

static_assert(PEAK_DP4A_ACC == 16, "the dp4a operand pairs (a[i % 4], b[i / 4]) cover 16 accumulators");

}  // namespace peak

I8RT_ENTRY(peak_mma_s8, PeakParams, PEAK_THREADS) { peak::mma_body(p); }
I8RT_ENTRY(peak_dp4a_s8, PeakParams, PEAK_THREADS) { peak::dp4a_body(p); }
