// kernels/wgmma.cuh — the warpgroup-level tensor-core layer (sm_90a) that gemm_wgmma.cu is written
// against, on top of common.cuh: shared-memory matrix descriptors, the async-proxy fence, and
// `wgmma.mma_async` m64nNk32 with its fence / commit / wait. Compiled by NVRTC (for `sm_90a`
// only: wgmma is an architecture-specific feature) these are inline PTX; in the host simulation
// (I8RT_SIM) they run sim/sim.h's emulation, which follows the PTX ISA's descriptor format,
// 128-byte swizzle and accumulator layout, and performs each instruction at the wait that
// completes it.
//
// Helpers (warpgroup = 4 consecutive warps, 128 threads, all executing each call together):
//   (smem_window(off), a byte's shared-window address: common.cuh)
//   smem_desc_sw128(addr, sbo)  descriptor of a K-major operand with 128-byte swizzle at window
//                               address `addr` (1024-byte aligned row group), 8-row groups `sbo`
//                               bytes apart
//   desc_advance(desc, offset)  the same descriptor `offset` bytes further into shared memory
//   fence_proxy_async()         `fence.proxy.async.shared::cta`: this thread's earlier shared
//                               writes (cp.async's included) visible to wgmma's reads
//   wgmma_fence / wgmma_commit / wgmma_wait<N>
//   wgmma_m64k32<N, U8>(d, da, db, accumulate)
//                               d (64 × N, i32, this thread's N / 2 in the layout of N / 8
//                               `mma.m16n8k32` C fragments) += A (64 × 32, u8 when U8 else s8)
//                               · B (N × 32, s8)ᵀ; d = A · Bᵀ when !accumulate
//   wgmma_pin(d)                keeps the compiler from moving the accumulators' registers
//                               across an asynchronous instruction (empty asm that "writes" each)
//   wgmma_stage128<N, U8>(d, a, b, stage)
//                               one 128-byte k stage (four m64nNk32) as a commit group, then
//                               wait until only it is in flight
#pragma once

#include "common.cuh"

#if defined(I8RT_DEVICE_BUILD) && defined(__CUDA_ARCH__) && !defined(__CUDA_ARCH_FEAT_SM90_ALL)
#error "wgmma.cuh needs sm_90a (compile with --gpu-architecture=sm_90a)"
#endif

// Matrix descriptor (PTX ISA "Matrix Descriptor Format", sm_90): start address, leading- and
// stride-dimension byte offsets, each >> 4 in 14 bits; base offset 0; swizzle mode 1 (128 B).
// The leading-dimension offset is unused for K-major operands whose k extent per instruction
// fits one swizzle row (32 bytes here); the ISA's "assumed 1" is encoded.
I8RT_INLINE unsigned long long smem_desc_sw128(unsigned addr, unsigned sbo) {
    return (unsigned long long)((addr & 0x3ffffu) >> 4) | (1ull << 16) |
           ((unsigned long long)((sbo & 0x3ffffu) >> 4) << 32) | (1ull << 62);
}

// The descriptor `desc` with its start address `offset` bytes further: the start-address field
// (bits 0–13: address >> 4) advanced, the others unchanged. Shared-window addresses stay below
// 256 KiB (228 KiB of shared memory per SM at most), so the field cannot carry into bit 14.
// A stage's descriptors are its operands' base descriptors (computed once, outside the main
// loop) plus one 32-bit add each, instead of a mask, a shift and an or per instruction.
I8RT_INLINE unsigned long long desc_advance(unsigned long long desc, unsigned offset) {
    const unsigned lo = (unsigned)desc + (offset >> 4), hi = (unsigned)(desc >> 32);
    return ((unsigned long long)hi << 32) | lo;
}

I8RT_INLINE void fence_proxy_async() {
#ifdef I8RT_DEVICE_BUILD
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#else
    sim::fence_proxy_async();
#endif
}

I8RT_INLINE void wgmma_fence() {
#ifdef I8RT_DEVICE_BUILD
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#else
    sim::wgmma_fence();
#endif
}

I8RT_INLINE void wgmma_commit() {
#ifdef I8RT_DEVICE_BUILD
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#else
    sim::wgmma_commit();
#endif
}

template <int N>
I8RT_INLINE void wgmma_wait() {
#ifdef I8RT_DEVICE_BUILD
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
#else
    sim::wgmma_wait(N);
#endif
}

template <int NT>
I8RT_INLINE void wgmma_pin(int (&d)[1][NT][4]) {
#ifdef I8RT_DEVICE_BUILD
#pragma unroll
    for (int j = 0; j < NT; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) asm volatile("" : "+r"(d[0][j][e])::"memory");
#else
    (void)d;
#endif
}

#ifdef I8RT_DEVICE_BUILD
// The accumulator operands of one wgmma: d[0][j][0..3] of n8 blocks j .. j + 3 (16 registers)
// and j .. j + 15 (64), and their numbered placeholders in the instruction's register list
// (32, 64 and 128 accumulators: N = 64, 128, 256).
#define I8RT_WG_D1(j) "+r"(d[0][j][0]), "+r"(d[0][j][1]), "+r"(d[0][j][2]), "+r"(d[0][j][3])
#define I8RT_WG_D4(j) I8RT_WG_D1(j), I8RT_WG_D1(j + 1), I8RT_WG_D1(j + 2), I8RT_WG_D1(j + 3)
#define I8RT_WG_D16(j) I8RT_WG_D4(j), I8RT_WG_D4(j + 4), I8RT_WG_D4(j + 8), I8RT_WG_D4(j + 12)
#define I8RT_WG_R0_31                                                                             \
    "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, " \
    "%21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
#define I8RT_WG_R0_63                                                                               \
    "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, " \
    "%21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, " \
    "%40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, " \
    "%59, %60, %61, %62, %63"
#define I8RT_WG_R64_127                                                                             \
    "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, " \
    "%83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, "      \
    "%101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, %112, %113, %114, %115, %116, " \
    "%117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127"
// `wgmma.mma_async.sync.aligned.m64n<N>k32.s32.<ATYPE>.s8 {REGS}, DA, DB, p` with p =
// accumulate != 0; DA, DB, SC: the placeholders of the operands after the accumulators.
#define I8RT_WGMMA(N, ATYPE, REGS, DA, DB, SC, ...)                                                  \
    asm volatile("{\n .reg .pred p;\n setp.ne.b32 p, " SC ", 0;\n"                                   \
                 "wgmma.mma_async.sync.aligned.m64n" N "k32.s32." ATYPE ".s8 {" REGS "}, " DA ", " DB \
                 ", p;\n}\n"                                                                         \
                 : __VA_ARGS__                                                                       \
                 : "l"(da), "l"(db), "r"(accumulate)                                                 \
                 : "memory")

template <bool U8>
I8RT_INLINE void wgmma_m64n64k32_asm(int (&d)[1][8][4], unsigned long long da, unsigned long long db, int accumulate) {
    if constexpr (U8) {
        I8RT_WGMMA("64", "u8", I8RT_WG_R0_31, "%32", "%33", "%34", I8RT_WG_D4(0), I8RT_WG_D4(4));
    } else {
        I8RT_WGMMA("64", "s8", I8RT_WG_R0_31, "%32", "%33", "%34", I8RT_WG_D4(0), I8RT_WG_D4(4));
    }
}

template <bool U8>
I8RT_INLINE void wgmma_m64n128k32_asm(int (&d)[1][16][4], unsigned long long da, unsigned long long db, int accumulate) {
    if constexpr (U8) {
        I8RT_WGMMA("128", "u8", I8RT_WG_R0_63, "%64", "%65", "%66", I8RT_WG_D16(0));
    } else {
        I8RT_WGMMA("128", "s8", I8RT_WG_R0_63, "%64", "%65", "%66", I8RT_WG_D16(0));
    }
}

template <bool U8>
I8RT_INLINE void wgmma_m64n256k32_asm(int (&d)[1][32][4], unsigned long long da, unsigned long long db, int accumulate) {
    if constexpr (U8) {
        I8RT_WGMMA("256", "u8", I8RT_WG_R0_63 ", " I8RT_WG_R64_127, "%128", "%129", "%130", I8RT_WG_D16(0),
                   I8RT_WG_D16(16));
    } else {
        I8RT_WGMMA("256", "s8", I8RT_WG_R0_63 ", " I8RT_WG_R64_127, "%128", "%129", "%130", I8RT_WG_D16(0),
                   I8RT_WG_D16(16));
    }
}

#undef I8RT_WGMMA
#undef I8RT_WG_R64_127
#undef I8RT_WG_R0_63
#undef I8RT_WG_R0_31
#undef I8RT_WG_D16
#undef I8RT_WG_D4
#undef I8RT_WG_D1
#endif  // I8RT_DEVICE_BUILD

template <int N, bool U8>
I8RT_INLINE void wgmma_m64k32(int (&d)[1][N / 8][4], unsigned long long da, unsigned long long db, int accumulate) {
    static_assert(N == 64 || N == 128 || N == 256, "the crate's wgmma widths are 64, 128 and 256");
#ifdef I8RT_DEVICE_BUILD
    if constexpr (N == 64) {
        wgmma_m64n64k32_asm<U8>(d, da, db, accumulate);
    } else if constexpr (N == 128) {
        wgmma_m64n128k32_asm<U8>(d, da, db, accumulate);
    } else {
        wgmma_m64n256k32_asm<U8>(d, da, db, accumulate);
    }
#else
    sim::wgmma(&d[0][0][0], N, da, db, accumulate, U8);
#endif
}

// One 128-byte k stage of a warpgroup's tile in the tensor cores (gemm_wgmma.cu, gemm_tma.cu):
// the stage's four m64nNk32 at byte offset `stage` of the warpgroup's A rows (`a_addr`) and the
// N rows of B (`b_addr`), both K-major with the 128-byte swizzle and 1024-byte row groups, as one
// commit group; returns once only this group may still be in flight (the previous stage's
// instructions have read their operands).
template <int N, bool U8>
I8RT_INLINE void wgmma_stage128(int (&acc)[1][N / 8][4], unsigned a_addr, unsigned b_addr, unsigned stage) {
    wgmma_pin(acc);
    wgmma_fence();
    // (the operands' base descriptors depend on neither the stage nor the step: hoisted)
    const unsigned long long a0 = smem_desc_sw128(a_addr, 1024), b0 = smem_desc_sw128(b_addr, 1024);
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
        const unsigned long long da = desc_advance(a0, stage + (unsigned)(kk * 32));
        const unsigned long long db = desc_advance(b0, stage + (unsigned)(kk * 32));
        wgmma_m64k32<N, U8>(acc, da, db, 1);
    }
    wgmma_commit();
    wgmma_pin(acc);
    wgmma_wait<1>();
}
