// kernels/common.cuh — the device helper layer every kernel is written against, and the device
// twin of the epilogue. Compiled by NVRTC these helpers are CUDA intrinsics and inline PTX;
// compiled by the host C++ compiler (`I8RT_SIM`, see sim/sim.h) the same names run on the CPU,
// one fiber per CUDA thread (a host thread each under ThreadSanitizer), with the warp-level
// operations emulated from their PTX ISA definitions. A kernel that only uses what is declared here (plus plain C++, `__shared__`
// arrays and `__syncthreads()`) runs unchanged in both worlds.
//
// Helper layer (thread → warp → block, CUTLASS order):
//   thread:  dp4a_s8 / dp4a_u8, f32_to_f16_rn / f32_to_bf16_rn, round_shift_clamp, ldg_v4, ldg_stream_v4,
//            prefetch_l2 (sm_90),
//            is_nan_bits / is_nonfinite_bits, f32_to_ordered / ordered_to_f32, ldcg_u64,
//            cp_async_16 / cp_async_16_or_zero / cp_async_16_full / cp_async_commit /
//            cp_async_wait<N> (sm_80; synchronous copies on sm_75),
//            mbar_init / mbar_init_fence / mbar_arrive(_expect_tx) / mbar_wait, bulk_copy_g2s,
//            tma_load_2d (sm_90), dyn_smem
//   cluster: cluster_rank, cluster_sync, mbar_arrive_cluster, tma_load_2d_multicast (sm_90)
//   warp:    lane_id, shfl_xor_u32 / shfl_xor_f32, ldsm<X, N> (N `ldmatrix .x<X>`), ldsm_window
//            (the same at shared-window addresses, smem_window), lds_v4,
//            mma_16832<MT, NT, U8, B_U8> (MT × NT `mma.sync.m16n8k32`; on sm_75 each four
//            `m8n8k16`: mma_8816, mma_16832_by_8816) — in the simulation each a
//            fragment exchange through the per-warp scratch (sim::WarpOp) following the PTX ISA
//            layouts
//   block:   block_sync, threadfence, check_launch_geometry, split_k_last_to_arrive
//   status:  status_report (non-finite input counting)
//   entries: I8RT_ENTRY(name, Params, threads) { ... } declares an extern "C" __global__ entry
//            taking one Params by value; build.rs reads these lines to make the KernelId registry.
//            I8RT_ENTRY_MIN_BLOCKS(name, Params, threads, min_blocks): the same, and ptxas keeps
//            the registers low enough for `min_blocks` blocks per multiprocessor.
//            I8RT_ENTRY_GRID_CONST(name, Params, threads, min_blocks): I8RT_ENTRY_MIN_BLOCKS with
//            the block `__grid_constant__`, so the kernel may take the address of its fields
//            (the TMA's tensor maps must be addressed where they lie, in the parameter space).
//            I8RT_ENTRY_CLUSTER(name, Params, threads, min_blocks, cluster): I8RT_ENTRY_GRID_CONST
//            launched in thread block clusters of `cluster` consecutive blocks along x
//            (`__cluster_dims__`; the grid's x a multiple of it).
#pragma once

#if defined(__CUDACC_RTC__) || defined(__CUDACC__)
#define I8RT_DEVICE_BUILD 1
#else
#ifndef I8RT_SIM
#define I8RT_SIM 1
#endif
#include "sim/sim.h"
#endif

#include "params.cuh"

#define I8RT_INLINE __device__ __forceinline__

// `p` unchanged, but opaque to the compiler's arithmetic: a value computed once stays in its
// register instead of being recomputed from its inputs where it is used (tile.cuh's held row
// addresses). A no-op in the simulation.
template <class T>
I8RT_INLINE T* opaque(T* p) {
#ifdef I8RT_DEVICE_BUILD
    asm("" : "+l"(p));
#endif
    return p;
}
// The same for a 32-bit offset (gemm_mma.cu's held fragment offsets).
I8RT_INLINE unsigned opaque(unsigned v) {
#ifdef I8RT_DEVICE_BUILD
    asm("" : "+r"(v));
#endif
    return v;
}

// sm_75 code (Turing has neither cp.async nor mma.m16n8k32): the device build for an
// architecture before sm_80 — the tensor-core modules' sm_75 CUBIN, or compute_75 PTX — and the
// simulation built with I8RT_SIM_SM75 (what a simulated sm_75 GPU runs: src/cuda/sim.rs).
#if (defined(I8RT_DEVICE_BUILD) && __CUDA_ARCH__ < 800) || (!defined(I8RT_DEVICE_BUILD) && defined(I8RT_SIM_SM75))
#define I8RT_SM75_CODE 1
#endif

// A wide store's address must be aligned to its size: a fault on the GPU, a failure in the
// simulation (where the host CPU would not fault).
#ifdef I8RT_DEVICE_BUILD
#define I8RT_CHECK_ALIGNED(ptr, bytes) ((void)0)
#else
#define I8RT_CHECK_ALIGNED(ptr, bytes)                                                   \
    do {                                                                                 \
        if (reinterpret_cast<uintptr_t>(ptr) % (bytes) != 0) ::sim::fail("misaligned wide store"); \
    } while (0)
#endif

#ifdef I8RT_DEVICE_BUILD
#define I8RT_ENTRY(name, Params, threads) \
    extern "C" __global__ void __launch_bounds__(threads) name(const Params p)
#define I8RT_ENTRY_MIN_BLOCKS(name, Params, threads, min_blocks) \
    extern "C" __global__ void __launch_bounds__(threads, min_blocks) name(const Params p)
#define I8RT_ENTRY_GRID_CONST(name, Params, threads, min_blocks) \
    extern "C" __global__ void __launch_bounds__(threads, min_blocks) name(const __grid_constant__ Params p)
#define I8RT_ENTRY_CLUSTER(name, Params, threads, min_blocks, cluster)                          \
    extern "C" __global__ void __cluster_dims__(cluster, 1, 1) __launch_bounds__(threads, min_blocks) \
        name(const __grid_constant__ Params p)
#else
#define I8RT_ENTRY_MIN_BLOCKS(name, Params, threads, min_blocks) I8RT_ENTRY(name, Params, threads)
#define I8RT_ENTRY_GRID_CONST(name, Params, threads, min_blocks) I8RT_ENTRY(name, Params, threads)
#define I8RT_ENTRY(name, Params, threads) I8RT_ENTRY_CLUSTER(name, Params, threads, 1, 1)
#define I8RT_ENTRY_CLUSTER(name, Params, threads, min_blocks, cluster)              \
    extern "C" void name(const Params p);                                           \
    static ::sim::Registrar name##_registrar(#name, sizeof(Params), (threads),      \
        [](const void* a) { name(*static_cast<const Params*>(a)); }, (cluster));    \
    extern "C" void name(const Params p)
#endif

// ---------------------------------------------------------------------------------------------
// Thread level.
// ---------------------------------------------------------------------------------------------

// Σ of four s8 × s8 byte products, plus c (dp4a.s32.s32).
I8RT_INLINE int dp4a_s8(int a, int b, int c) {
#ifdef I8RT_DEVICE_BUILD
    return __dp4a(a, b, c);
#else
    return sim::dp4a(a, b, c, true);
#endif
}

// Σ of four u8 × s8 byte products, plus c (dp4a.u32.s32): u8 activations × s8 weights.
I8RT_INLINE int dp4a_u8(int a, int b, int c) {
#ifdef I8RT_DEVICE_BUILD
    int d;
    asm("dp4a.u32.s32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    return d;
#else
    return sim::dp4a(a, b, c, false);
#endif
}

template <bool U8>
I8RT_INLINE int dp4a(int a, int b, int c) {
    return U8 ? dp4a_u8(a, b, c) : dp4a_s8(a, b, c);
}

// f32 → f16 bits, round to nearest even (`__float2half_rn`; `half::f16::from_f32` on the CPU).
I8RT_INLINE unsigned short f32_to_f16_rn(float x) {
#ifdef I8RT_DEVICE_BUILD
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(x));
    return h;
#else
    return sim::f32_to_f16_rn(x);
#endif
}

// f32 → bf16 bits, round to nearest even; NaN stays NaN (quiet bit set). Integer arithmetic, so
// it runs on every architecture and gives the bits of `gemm::cpu::epilogue::bf16_rne`
// (= `half::bf16::from_f32`) and of `__float2bfloat16_rn` for every non-NaN input.
I8RT_INLINE unsigned short f32_to_bf16_rn(float x) {
    unsigned b = __float_as_uint(x);
    if ((b & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((b >> 16) | 0x0040u);
    return (unsigned short)((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
}

// Twin of `reference::round_shift_clamp`: clamp(rhe(v) + zp, qmin, qmax), NaN rounding to 0 (as
// Rust's saturating `as i64`). Clamped in f32 first (qmin - zp, qmax - zp are small integers,
// exact in f32) so the conversion never saturates and ±inf land on the bounds.
I8RT_INLINE int round_shift_clamp(float v, int zp, int qmin, int qmax) {
    float r = rintf(v);
    if (r != r) r = 0.0f;
    r = fminf(fmaxf(r, (float)(qmin - zp)), (float)(qmax - zp));
    return __float2int_rn(r) + zp;
}

// NaN, and NaN or ±inf, from the bits of an f32.
I8RT_INLINE bool is_nan_bits(unsigned b) { return (b & 0x7fffffffu) > 0x7f800000u; }
I8RT_INLINE bool is_nonfinite_bits(unsigned b) { return (b & 0x7fffffffu) >= 0x7f800000u; }

// A float as an unsigned integer with the same order (finite values and ±inf; never NaN), so a
// range reduces across blocks with integer atomics (atomicMin / atomicMax on the words). −0
// orders just below +0. Host twins: `f32_to_ordered` / `ordered_to_f32` in src/cuda/ops.rs.
I8RT_INLINE unsigned f32_to_ordered(float f) {
    const unsigned b = __float_as_uint(f);
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
I8RT_INLINE float ordered_to_f32(unsigned o) {
    return __uint_as_float((o & 0x80000000u) ? (o & 0x7fffffffu) : ~o);
}

// One 16-byte global load (the address must be 16-byte aligned; the simulation checks).
I8RT_INLINE int4 ldg_v4(const void* p) {
#ifdef I8RT_DEVICE_BUILD
    return __ldg(static_cast<const int4*>(p));
#else
    return sim::load_v4(p);
#endif
}

// ldg_v4 for data read once (a weight stream): `ld.global.nc.L1::no_allocate.L2::256B` on sm_80+
// — not kept in L1 (which then holds what is reused), and a miss fetches the whole 256-byte L2
// block around the address, which the neighbouring warps read next. The same value as ldg_v4.
I8RT_INLINE int4 ldg_stream_v4(const void* p) {
#if defined(I8RT_DEVICE_BUILD) && __CUDA_ARCH__ >= 800
    int4 v;
    asm("ld.global.nc.L1::no_allocate.L2::256B.v4.s32 {%0, %1, %2, %3}, [%4];\n"
        : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
        : "l"(p));
    return v;
#elif defined(I8RT_DEVICE_BUILD)
    return ldg_v4(p);
#else
    return sim::load_stream_v4(p);  // (its bytes recorded against the launch's L2 prefetches)
#endif
}

// `cp.async.bulk.prefetch.L2.global`: ask for `bytes` (a positive multiple of 16) of global
// memory from `src` (16-byte aligned) to be brought into L2, without waiting and without a
// destination — the whole range in one instruction, so a thread can put a weight slice's bytes
// in flight without holding them in registers or shared memory. A hint: it changes no value.
// sm_90; earlier builds emit nothing (the host runs no kernel that uses it there). The
// simulation checks its operands and records its range (sim.h, `prefetch_l2`).
I8RT_INLINE void prefetch_l2(const void* src, unsigned bytes) {
#if defined(I8RT_DEVICE_BUILD) && __CUDA_ARCH__ >= 900
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;\n" ::"l"(src), "r"(bytes) : "memory");
#elif defined(I8RT_DEVICE_BUILD)
    (void)src;
    (void)bytes;
#else
    sim::prefetch_l2(src, bytes);
#endif
}

// Four bytes of a row, zero beyond `end` (guarded byte loads: any alignment, any length).
I8RT_INLINE int ld_bytes4(const unsigned char* p, long long i, long long end) {
    unsigned v = 0;
#pragma unroll
    for (int t = 0; t < 4; ++t) {
        if (i + t < end) v |= (unsigned)p[i + t] << (8 * t);
    }
    return (int)v;
}

// One 8-byte global load cached in L2 only (`ld.global.cg`): data another block wrote during
// this kernel (split-K partial sums), which this SM's L1 must not serve stale.
I8RT_INLINE unsigned long long ldcg_u64(const unsigned long long* p) { return __ldcg(p); }

// Shared memory is addressed by byte offsets into the launch's dynamic shared memory
// (`extern __shared__`, sized by the host at launch): the device converts them to shared-window
// addresses, the simulation to pointers it checks against the buffer's bounds.
I8RT_INLINE unsigned char* dyn_smem() {
#ifdef I8RT_DEVICE_BUILD
    extern __shared__ __align__(128) unsigned char i8rt_dyn_smem[];
    return i8rt_dyn_smem;
#else
    return sim::dyn_smem();
#endif
}

#ifdef I8RT_DEVICE_BUILD
I8RT_INLINE unsigned smem_addr(unsigned off) {
    return static_cast<unsigned>(__cvta_generic_to_shared(dyn_smem())) + off;
}
#endif

// `cp.async.cg.shared.global [smem + off], [src], 16, src_bytes` (sm_80): copies src_bytes
// (0..16) bytes and zero-fills the rest of the 16; both addresses 16-byte aligned.
//
// sm_75 has no cp.async: there (I8RT_SM75_CODE: the tensor-core kernels' sm_75 CUBIN, compute_75
// PTX, a simulated sm_75 GPU) the copy is a synchronous 16-byte load and shared store, so a stage
// has landed when its copies return and commit / wait are empty — the pipelines' structure (a stage is
// refilled only after a block_sync that follows its last read, read only after a block_sync
// that follows its copies) keeps them correct; only the overlap of copies with the mma is lost.
#ifdef I8RT_SM75_CODE
I8RT_INLINE void copy_16_sync(unsigned off, const void* src, int src_bytes) {
    int4 v;
    if (src_bytes >= 16) {
        v = ldg_v4(src);
    } else {
        const auto* b = static_cast<const unsigned char*>(src);
        v.x = ld_bytes4(b, 0, src_bytes);
        v.y = ld_bytes4(b, 4, src_bytes);
        v.z = ld_bytes4(b, 8, src_bytes);
        v.w = ld_bytes4(b, 12, src_bytes);
    }
    unsigned char* dst = dyn_smem() + off;
#ifndef I8RT_DEVICE_BUILD
    sim::check_smem(dst, 16, 16, "st.shared.v4 (sm_75 copy)");
#endif
    *reinterpret_cast<int4*>(dst) = v;
}
#endif

I8RT_INLINE void cp_async_16(unsigned off, const void* src, int src_bytes) {
#if defined(I8RT_SM75_CODE)
    copy_16_sync(off, src, src_bytes);
#elif defined(I8RT_DEVICE_BUILD)
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(off)), "l"(src), "r"(src_bytes));
#else
    sim::cp_async_16(sim::dyn_smem() + off, src, src_bytes);
#endif
}

// `cp.async.cg.shared.global [smem + off], [src], 16`: all 16 bytes, no source size and no
// predicate to compute (tile.cuh's held loader in its steady state).
I8RT_INLINE void cp_async_16_full(unsigned off, const void* src) {
#if defined(I8RT_SM75_CODE)
    copy_16_sync(off, src, 16);
#elif defined(I8RT_DEVICE_BUILD)
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_addr(off)), "l"(src));
#else
    sim::cp_async_16(sim::dyn_smem() + off, src, 16);
#endif
}

// `cp.async.cg.shared.global [smem + off], [src], 16, ignore-src`: 16 bytes, or 16 zeros when
// `zero` (src is then not read). Cheaper to issue than a variable src-size.
I8RT_INLINE void cp_async_16_or_zero(unsigned off, const void* src, bool zero) {
#if defined(I8RT_SM75_CODE)
    copy_16_sync(off, src, zero ? 0 : 16);
#elif defined(I8RT_DEVICE_BUILD)
    asm volatile(
        "{\n .reg .pred p;\n setp.ne.b32 p, %2, 0;\n cp.async.cg.shared.global [%0], [%1], 16, p;\n}\n" ::"r"(
            smem_addr(off)),
        "l"(src), "r"((int)zero));
#else
    sim::cp_async_16(sim::dyn_smem() + off, src, zero ? 0 : 16);
#endif
}

// `cp.async.commit_group`: the copies issued since the last commit form one group.
I8RT_INLINE void cp_async_commit() {
#if defined(I8RT_SM75_CODE)
#elif defined(I8RT_DEVICE_BUILD)
    asm volatile("cp.async.commit_group;\n" ::: "memory");
#else
    sim::cp_async_commit();
#endif
}

// `cp.async.wait_group N`: all but the N most recent groups have landed (for this thread; other
// threads' copies are visible after a block_sync that follows their wait).
template <int N>
I8RT_INLINE void cp_async_wait() {
#if defined(I8RT_SM75_CODE)
#elif defined(I8RT_DEVICE_BUILD)
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#else
    sim::cp_async_wait(N);
#endif
}

// mbarrier objects and bulk asynchronous copies (sm_90; the simulation emulates them, sim.h).
// `off` is a byte offset into the dynamic shared memory: 8-byte aligned for an mbarrier object,
// 16-byte aligned for a copy's destination. Use: one thread `mbar_init`s each object with the
// arrivals a phase takes, then `mbar_init_fence()` and a block_sync; a producer
// `mbar_arrive_expect_tx`s the bytes its `bulk_copy_g2s` copies will deliver; consumers
// `mbar_wait` for the phase's parity, after which the copied bytes are visible to them.
I8RT_INLINE void mbar_init(unsigned off, unsigned count) {
#if defined(I8RT_DEVICE_BUILD) && __CUDA_ARCH__ >= 900
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_addr(off)), "r"(count) : "memory");
#elif defined(I8RT_DEVICE_BUILD)
    __trap();
#else
    sim::mbar_init(sim::dyn_smem() + off, count);
#endif
}

// Orders the objects' initialization before their use by the bulk copies (async proxy).
I8RT_INLINE void mbar_init_fence() {
#if defined(I8RT_DEVICE_BUILD) && __CUDA_ARCH__ >= 900
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
#endif
}

// `mbarrier.arrive.expect_tx`: expect `tx` more bytes in the current phase, and arrive.
I8RT_INLINE void mbar_arrive_expect_tx(unsigned off, unsigned tx) {
#if defined(I8RT_DEVICE_BUILD) && __CUDA_ARCH__ >= 900
    asm volatile("{\n .reg .b64 state;\n mbarrier.arrive.expect_tx.shared::cta.b64 state, [%0], %1;\n}\n" ::"r"(
                     smem_addr(off)),
                 "r"(tx)
                 : "memory");
#elif defined(I8RT_DEVICE_BUILD)
    __trap();
#else
    sim::mbar_arrive(sim::dyn_smem() + off, tx);
#endif
}

// `mbarrier.arrive`: one arrival on the current phase.
I8RT_INLINE void mbar_arrive(unsigned off) {
#if defined(I8RT_DEVICE_BUILD) && __CUDA_ARCH__ >= 900
    asm volatile("{\n .reg .b64 state;\n mbarrier.arrive.shared::cta.b64 state, [%0];\n}\n" ::"r"(smem_addr(off))
                 : "memory");
#elif defined(I8RT_DEVICE_BUILD)
    __trap();
#else
    sim::mbar_arrive(sim::dyn_smem() + off, 0);
#endif
}

// Wait until the phase of parity `parity` (0 or 1) has completed (`mbarrier.try_wait.parity`,
// retried). A phase still incomplete after ~2^32 clocks (about two seconds) is a kernel defect —
// copies that never deliver the bytes a producer announced, a release that never comes — and
// traps: the launch fails with an error instead of hanging the GPU (the simulation's watchdog
// reports the same defect as a deadlock).
I8RT_INLINE void mbar_wait(unsigned off, unsigned parity) {
#if defined(I8RT_DEVICE_BUILD) && __CUDA_ARCH__ >= 900
    const unsigned a = smem_addr(off);
    unsigned done = 0;
    const long long t0 = clock64();
    while (!done) {
        asm volatile("{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}\n"
                     : "=r"(done)
                     : "r"(a), "r"(parity)
                     : "memory");
        if (!done && clock64() - t0 > (1ll << 32)) __trap();
    }
#elif defined(I8RT_DEVICE_BUILD)
    __trap();
#else
    sim::mbar_wait(sim::dyn_smem() + off, parity);
#endif
}

// `cp.async.bulk` of `bytes` (a multiple of 16) from global `src` (16-byte aligned) to shared
// `dst_off`, completing `bytes` transactions on the mbarrier at `bar_off` when it lands.
I8RT_INLINE void bulk_copy_g2s(unsigned dst_off, const void* src, unsigned bytes, unsigned bar_off) {
#if defined(I8RT_DEVICE_BUILD) && __CUDA_ARCH__ >= 900
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(
                     smem_addr(dst_off)),
                 "l"(src), "r"(bytes), "r"(smem_addr(bar_off))
                 : "memory");
#elif defined(I8RT_DEVICE_BUILD)
    __trap();
#else
    sim::bulk_copy_g2s(sim::dyn_smem() + dst_off, src, bytes, sim::dyn_smem() + bar_off);
#endif
}

// `cp.async.bulk.tensor.2d … .tile.mbarrier::complete_tx::bytes`: the box of tensor map `map`
// (a TmaParams field, addressed in the parameter space) at element coordinates (c0 innermost,
// c1) into shared `dst_off` (1024-byte aligned in the shared window for the 128-byte swizzle),
// completing the box's bytes — all of them, the zeros filled in outside the tensor included —
// on the mbarrier at `bar_off`.
I8RT_INLINE void tma_load_2d(unsigned dst_off, const TmaMap* map, int c0, int c1, unsigned bar_off) {
#if defined(I8RT_DEVICE_BUILD) && __CUDA_ARCH__ >= 900
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n" ::"r"(
            smem_addr(dst_off)),
        "l"(reinterpret_cast<unsigned long long>(map)), "r"(c0), "r"(c1), "r"(smem_addr(bar_off))
        : "memory");
#elif defined(I8RT_DEVICE_BUILD)
    __trap();
#else
    sim::tma_load_2d(dst_off, map->bits, c0, c1, bar_off);
#endif
}

// Thread block clusters (sm_90; kernels declared with I8RT_ENTRY_CLUSTER, clusters of
// consecutive blocks along x). cluster_rank() is `%cluster_ctarank` (blockIdx.x modulo the
// cluster size); cluster_sync() is `barrier.cluster` arrive (release) + wait (acquire) by every
// thread of the cluster — it also orders the block's own threads as block_sync does.
I8RT_INLINE unsigned cluster_rank() {
#if defined(I8RT_DEVICE_BUILD) && __CUDA_ARCH__ >= 900
    unsigned r;
    asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(r));
    return r;
#elif defined(I8RT_DEVICE_BUILD)
    return 0;
#else
    return sim::cluster_rank();
#endif
}

I8RT_INLINE void cluster_sync() {
#if defined(I8RT_DEVICE_BUILD) && __CUDA_ARCH__ >= 900
    asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;\n" ::: "memory");
#elif defined(I8RT_DEVICE_BUILD)
    __syncthreads();
#else
    sim::cluster_sync();
#endif
}

// One arrival on the mbarrier at shared offset `off` of the cluster's block `rank` (`mapa` of
// this block's address, then `mbarrier.arrive.shared::cluster` with the default semantics,
// release at CTA scope, as CUTLASS's cluster barrier arrives: what it orders here are the
// caller's completed wgmma reads of a stage before the peer's tensor copy refills it; an
// explicit `.release.cluster` costs a MEMBAR per arrival in the SASS).
I8RT_INLINE void mbar_arrive_cluster(unsigned off, unsigned rank) {
#if defined(I8RT_DEVICE_BUILD) && __CUDA_ARCH__ >= 900
    asm volatile(
        "{\n .reg .b32 remote;\n mapa.shared::cluster.u32 remote, %0, %1;\n"
        " mbarrier.arrive.shared::cluster.b64 _, [remote];\n}\n" ::"r"(smem_addr(off)),
        "r"(rank)
        : "memory");
#elif defined(I8RT_DEVICE_BUILD)
    __trap();
#else
    sim::mbar_arrive_cluster(off, rank);
#endif
}

// tma_load_2d to every block of the cluster whose rank is a bit of `mask`: the box lands at
// shared offset `dst_off` of each, its bytes completing on each one's mbarrier at `bar_off`
// (`.multicast::cluster`: one read of the box from L2 for all of them).
I8RT_INLINE void tma_load_2d_multicast(unsigned dst_off, const TmaMap* map, int c0, int c1, unsigned bar_off,
                                       unsigned short mask) {
#if defined(I8RT_DEVICE_BUILD) && __CUDA_ARCH__ >= 900
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes.multicast::cluster"
        " [%0], [%1, {%2, %3}], [%4], %5;\n" ::"r"(smem_addr(dst_off)),
        "l"(reinterpret_cast<unsigned long long>(map)), "r"(c0), "r"(c1), "r"(smem_addr(bar_off)), "h"(mask)
        : "memory");
#elif defined(I8RT_DEVICE_BUILD)
    __trap();
#else
    sim::tma_load_2d_multicast(dst_off, map->bits, c0, c1, bar_off, mask);
#endif
}

// ---------------------------------------------------------------------------------------------
// Warp and block level.
// ---------------------------------------------------------------------------------------------

I8RT_INLINE int lane_id() { return (int)(threadIdx.x & 31u); }

I8RT_INLINE unsigned shfl_xor_u32(unsigned v, int lane_mask) {
    return __shfl_xor_sync(0xffffffffu, v, lane_mask);
}

I8RT_INLINE float shfl_xor_f32(float v, int lane_mask) {
    return __uint_as_float(__shfl_xor_sync(0xffffffffu, __float_as_uint(v), lane_mask));
}

// N instructions `ldmatrix.sync.aligned.m8n8.x<X>.shared.b16 r[n], [smem + rows[n]]`: this
// lane supplies the row address `rows[n]` (a byte offset, 16-byte aligned) of row lane % 8 of
// matrix lane / 8 (lanes 0 .. 8 X - 1 are read); register r[n][m] receives bytes 4 (lane % 4)
// .. + 3 of row lane / 4 of matrix m. All lanes of the warp execute it together.
// ldsm_window: the same with the rows given as shared-window addresses, smem_window(byte
// offset) — for a caller that folds the base into offsets it holds (gemm_mma.cu's deep
// tiles: then a row's address is one add of a stage's offset). The simulation's window starts
// at sim::SMEM_WINDOW (smem_window, below).
#ifdef I8RT_DEVICE_BUILD
template <int X>
I8RT_INLINE void ldsm_addr(unsigned (&r)[X], unsigned a) {
    if constexpr (X == 4) {
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                     : "r"(a));
    } else if constexpr (X == 2) {
        asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];\n" : "=r"(r[0]), "=r"(r[1]) : "r"(a));
    } else {
        asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];\n" : "=r"(r[0]) : "r"(a));
    }
}
#endif

template <int X, int N>
I8RT_INLINE void ldsm(unsigned (&r)[N][X], const unsigned (&rows)[N]) {
#ifdef I8RT_DEVICE_BUILD
#pragma unroll
    for (int n = 0; n < N; ++n) ldsm_addr<X>(r[n], smem_addr(rows[n]));
#else
    const void* p[N];
    for (int n = 0; n < N; ++n) p[n] = sim::dyn_smem() + rows[n];
    sim::ldmatrix<X, N>(r, p);
#endif
}

// The shared-window address of dynamic shared memory byte `off` (what `ldmatrix` and the
// `wgmma` descriptors take; the simulation's window starts at sim::SMEM_WINDOW).
I8RT_INLINE unsigned smem_window(unsigned off) {
#ifdef I8RT_DEVICE_BUILD
    return smem_addr(off);
#else
    return sim::SMEM_WINDOW + off;
#endif
}

template <int X, int N>
I8RT_INLINE void ldsm_window(unsigned (&r)[N][X], const unsigned (&addr)[N]) {
#ifdef I8RT_DEVICE_BUILD
#pragma unroll
    for (int n = 0; n < N; ++n) ldsm_addr<X>(r[n], addr[n]);
#else
    unsigned rows[N];
    for (int n = 0; n < N; ++n) rows[n] = addr[n] - sim::SMEM_WINDOW;
    ldsm<X, N>(r, rows);
#endif
}

// `ld.shared.v4.b32` of the 16 bytes at byte offset `off` (16-byte aligned) of the dynamic shared
// memory, executed by every lane of the warp together (the simulation counts the warp's bank
// conflicts, a quarter-warp per phase, so callers keep it warp-uniform).
I8RT_INLINE int4 lds_v4(unsigned off) {
#ifdef I8RT_DEVICE_BUILD
    int4 v;
    asm volatile("ld.shared.v4.b32 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "r"(smem_addr(off)));
    return v;
#else
    return sim::lds_v4(sim::dyn_smem() + off);
#endif
}

// `mma.sync.aligned.m8n8k16.row.col.s32.<atype>.<btype>.s32 c, a, b, c` (sm_75): c (8 × 8,
// s32, wrapping) += A (8 × 16, u8 when U8 else s8) · B (16 × 8, u8 when B_U8 else s8), fragments
// in the PTX ISA layouts ("Matrix Fragments for mma.m8n8k16"): lane (g, t) = (lane / 4,
// lane % 4) holds A row g, k 4t … 4t + 3 in `a`; B k 4t … 4t + 3, column g in `b`; C row g,
// columns 2t, 2t + 1 in c[0], c[1].
template <bool U8, bool B_U8>
I8RT_INLINE void mma_8816(int (&c)[2], unsigned a, unsigned b) {
    static_assert(!(U8 && B_U8), "u8 × u8 is not a GEMM of this crate");
#ifdef I8RT_DEVICE_BUILD
    if constexpr (U8) {
        asm("mma.sync.aligned.m8n8k16.row.col.s32.u8.s8.s32 {%0, %1}, {%2}, {%3}, {%0, %1};\n"
            : "+r"(c[0]), "+r"(c[1])
            : "r"(a), "r"(b));
    } else if constexpr (B_U8) {
        asm("mma.sync.aligned.m8n8k16.row.col.s32.s8.u8.s32 {%0, %1}, {%2}, {%3}, {%0, %1};\n"
            : "+r"(c[0]), "+r"(c[1])
            : "r"(a), "r"(b));
    } else {
        asm("mma.sync.aligned.m8n8k16.row.col.s32.s8.s8.s32 {%0, %1}, {%2}, {%3}, {%0, %1};\n"
            : "+r"(c[0]), "+r"(c[1])
            : "r"(a), "r"(b));
    }
#else
    sim::mma_8816(c, a, b, U8, B_U8);
#endif
}

// One m16n8k32 product as four m8n8k16 ones, on the same registers — how sm_75, which lacks
// m16n8k32, runs the tensor-core kernels. The m16n8k32 fragments split exactly along the
// m8n8k16 ones (PTX ISA layouts, lane (g, t)): a0 holds A row g, k 4t … 4t + 3; a1 row g + 8, the
// same k; a2 / a3 rows g / g + 8, k 16 + 4t …; b0 k 4t …, column g; b1 k 16 + 4t …; c0, c1 row g,
// columns 2t, 2t + 1; c2, c3 row g + 8. So rows g … of D take a0 · b0 + a2 · b1 and rows g + 8 …
// take a1 · b0 + a3 · b1, each an m8n8k16 of exactly its fragment layout; s32 sums wrap, so
// the order of the adds does not change the bits. The simulation checks this against the
// m16n8k32 emulation (selftest.cu, `sim_selftest_mma`, mode bit 0), and runs whole kernels this
// way as a simulated sm_75 GPU.
template <int MT, int NT, bool U8, bool B_U8 = false>
I8RT_INLINE void mma_16832_by_8816(int (&acc)[MT][NT][4], const unsigned (&a)[MT][4], const unsigned (&b)[NT][2]) {
#pragma unroll
    for (int i = 0; i < MT; ++i) {
#pragma unroll
        for (int j = 0; j < NT; ++j) {
            int lo[2] = {acc[i][j][0], acc[i][j][1]}, hi[2] = {acc[i][j][2], acc[i][j][3]};
            mma_8816<U8, B_U8>(lo, a[i][0], b[j][0]);
            mma_8816<U8, B_U8>(lo, a[i][2], b[j][1]);
            mma_8816<U8, B_U8>(hi, a[i][1], b[j][0]);
            mma_8816<U8, B_U8>(hi, a[i][3], b[j][1]);
            acc[i][j][0] = lo[0];
            acc[i][j][1] = lo[1];
            acc[i][j][2] = hi[0];
            acc[i][j][3] = hi[1];
        }
    }
}

// MT × NT instructions `mma.sync.aligned.m16n8k32.row.col.s32.<atype>.<btype>.s32 acc[i][j],
// a[i], b[j], acc[i][j]`: acc[i][j] (16 × 8, s32, wrapping) += A_i (16 × 32, u8 when U8 else s8)
// · B_j (32 × 8, u8 when B_U8 else s8), fragments in the PTX ISA layouts ("Matrix Fragments for
// mma.m16n8k32"). The tiled GEMM puts the activations in A (U8), the weight-streaming GEMV in B
// (B_U8); no kernel multiplies two unsigned operands.
template <int MT, int NT, bool U8, bool B_U8 = false>
I8RT_INLINE void mma_16832(int (&acc)[MT][NT][4], const unsigned (&a)[MT][4], const unsigned (&b)[NT][2]) {
    static_assert(!(U8 && B_U8), "u8 × u8 is not a GEMM of this crate");
#if defined(I8RT_SM75_CODE)
    mma_16832_by_8816<MT, NT, U8, B_U8>(acc, a, b);
#elif defined(I8RT_DEVICE_BUILD)
#pragma unroll
    for (int i = 0; i < MT; ++i) {
#pragma unroll
        for (int j = 0; j < NT; ++j) {
            if constexpr (U8) {
                asm("mma.sync.aligned.m16n8k32.row.col.s32.u8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
                    "{%0, %1, %2, %3};\n"
                    : "+r"(acc[i][j][0]), "+r"(acc[i][j][1]), "+r"(acc[i][j][2]), "+r"(acc[i][j][3])
                    : "r"(a[i][0]), "r"(a[i][1]), "r"(a[i][2]), "r"(a[i][3]), "r"(b[j][0]), "r"(b[j][1]));
            } else if constexpr (B_U8) {
                asm("mma.sync.aligned.m16n8k32.row.col.s32.s8.u8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
                    "{%0, %1, %2, %3};\n"
                    : "+r"(acc[i][j][0]), "+r"(acc[i][j][1]), "+r"(acc[i][j][2]), "+r"(acc[i][j][3])
                    : "r"(a[i][0]), "r"(a[i][1]), "r"(a[i][2]), "r"(a[i][3]), "r"(b[j][0]), "r"(b[j][1]));
            } else {
                asm("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
                    "{%0, %1, %2, %3};\n"
                    : "+r"(acc[i][j][0]), "+r"(acc[i][j][1]), "+r"(acc[i][j][2]), "+r"(acc[i][j][3])
                    : "r"(a[i][0]), "r"(a[i][1]), "r"(a[i][2]), "r"(a[i][3]), "r"(b[j][0]), "r"(b[j][1]));
            }
        }
    }
#else
    sim::mma_16832<MT, NT>(acc, a, b, U8, B_U8);
#endif
}

I8RT_INLINE void block_sync() { __syncthreads(); }

// Programmatic dependent launch (sm_90+). A kernel the host may launch before its predecessor on
// the stream has finished (`Exec::launch_overlapped`) calls griddep_wait() before it reads
// anything the predecessor may write or writes anything the predecessor may read: it returns
// once every grid this one depends on has completed and its memory is visible (at once when the
// launch was an ordinary one). griddep_launch_dependents() lets the next such kernel on the
// stream start launching now (its own wait still waits for all of this grid). Below sm_90, and
// in the simulation (launches run one after another), both are nothing.
I8RT_INLINE void griddep_wait() {
#if defined(I8RT_DEVICE_BUILD) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}
I8RT_INLINE void griddep_launch_dependents() {
#if defined(I8RT_DEVICE_BUILD) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

// Order this thread's earlier global writes before its later ones for every observer on the GPU
// (release side of the split-K counter; acquire side after reading it).
I8RT_INLINE void threadfence() { __threadfence(); }

// Split-K: this block of `splits` sharing output tile `tile` has written its partial sums; count
// it, and return whether it is the tile's last to arrive (the one that adds the others' partials
// and runs the epilogue), for every thread of the block. Release before the count, acquire after
// it for the last block; the last block re-zeroes the tile's counter for the next launch on the
// stream. `flag` is a word of shared memory the block does not otherwise use here.
I8RT_INLINE bool split_k_last_to_arrive(unsigned* counters, int tile, int splits, int* flag) {
    threadfence();  // release: the partials before the counter
    block_sync();
    if (threadIdx.x == 0) {
        const unsigned arrived = atomicAdd(&counters[tile], 1u);
        *flag = arrived == (unsigned)(splits - 1);
        if (*flag) counters[tile] = 0u;  // every split has counted: ready for the next launch
    }
    block_sync();
    if (!*flag) return false;
    threadfence();  // acquire: the other blocks' partials after their counts
    return true;
}

// Stop on a launch geometry other than the one a kernel configuration was compiled for (a host
// bug): `threads` per block and at least `smem` bytes of dynamic shared memory reserved.
I8RT_INLINE void check_launch_geometry(int threads, int smem, const char* kernel) {
#ifdef I8RT_DEVICE_BUILD
    (void)kernel;
    unsigned dyn;
    asm("mov.u32 %0, %%dynamic_smem_size;" : "=r"(dyn));
    if (blockDim.x != (unsigned)threads || dyn < (unsigned)smem) __trap();
#else
    if (blockDim.x != (unsigned)threads || sim::t_launch->dyn_bytes < (size_t)smem)
        sim::fail(std::string(kernel) + ": launched with a block size or shared memory other than its configuration's");
#endif
}

// Count a non-finite input at flat index `i` (atomics; reports are rare).
I8RT_INLINE void status_report(Status* s, unsigned long long i) {
    atomicAdd(&s->count, 1ull);
    atomicMin(&s->first, i);
}

// ---------------------------------------------------------------------------------------------
// The epilogue: device twin of `reference::Epilogue` (src/reference.rs), line for line.
// ---------------------------------------------------------------------------------------------

// Twin of `Epilogue::value`: f32(acc) · m[n] with m[n] = s_x · s_w[n] (per tensor), or
// (f32(acc) · s_w[n]) · s_x[m] (per row); then + bias[n]. Every step an exactly rounded IEEE
// operation in this order, no FMA.
I8RT_INLINE float epi_value(const EpiParams& e, int acc, int row, int col) {
    float a = __int2float_rn(acc);
    float v;
    if (e.per_row) {
        v = __fmul_rn(a, e.w_scale[col]);
        v = __fmul_rn(v, e.act_scale[row]);
    } else {
        v = __fmul_rn(a, __fmul_rn(e.act_scale[0], e.w_scale[col]));  // m[n], as Epilogue::new
    }
    if (e.bias_f32) v = __fadd_rn(v, e.bias_f32[col]);
    return v;
}

// Twin of `Epilogue::to_i8`: per-tensor scales without a float bias use
// r[n] = f32(f64(s_x) · f64(s_w[n]) / f64(s_y)) (as Epilogue::new) and clamp(rhe(f32(acc) · r[n])
// + zp_y); otherwise clamp(rhe(value / s_y) + zp_y) with a true division.
I8RT_INLINE int epi_to_i8(const EpiParams& e, int acc, int row, int col) {
    float t;
    if (!e.per_row && !e.bias_f32) {
        double r = __dmul_rn((double)e.act_scale[0], (double)e.w_scale[col]);
        r = __ddiv_rn(r, (double)e.out_scale);
        t = __fmul_rn(__int2float_rn(acc), __double2float_rn(r));
    } else {
        t = __fdiv_rn(epi_value(e, acc, row, col), e.out_scale);
    }
    return round_shift_clamp(t, e.out_zp, e.out_qmin, e.out_qmax);
}

// Write output element `idx` (= row · ldy + col) of the kind the epilogue names; twin of the
// `match out` at the end of `reference::gemm`.
I8RT_INLINE void epi_store(const EpiParams& e, void* y, long long idx, int acc, int row, int col) {
    switch (e.out_kind) {
        case OUT_I32: static_cast<int*>(y)[idx] = acc; break;
        case OUT_F32: static_cast<float*>(y)[idx] = epi_value(e, acc, row, col); break;
        case OUT_F16: static_cast<unsigned short*>(y)[idx] = f32_to_f16_rn(epi_value(e, acc, row, col)); break;
        case OUT_BF16: static_cast<unsigned short*>(y)[idx] = f32_to_bf16_rn(epi_value(e, acc, row, col)); break;
        default: static_cast<signed char*>(y)[idx] = (signed char)epi_to_i8(e, acc, row, col); break;
    }
}

// Outputs (row, col) and (row, col + 1), at idx and idx + 1: one store of both when `paired`
// (the host checked that the row stride is even and the base address aligned to two elements,
// and col is even, so y + idx is aligned for the pair), else two. The same bits as two
// `epi_store` calls.
I8RT_INLINE void epi_store2(const EpiParams& e, void* y, long long idx, int acc0, int acc1, int row, int col,
                            bool paired) {
    if (!paired) {
        epi_store(e, y, idx, acc0, row, col);
        epi_store(e, y, idx + 1, acc1, row, col + 1);
        return;
    }
    switch (e.out_kind) {
        case OUT_I32: {
            unsigned long long* d = reinterpret_cast<unsigned long long*>(static_cast<int*>(y) + idx);
            I8RT_CHECK_ALIGNED(d, 8);
            *d = (unsigned long long)(unsigned)acc0 | ((unsigned long long)(unsigned)acc1 << 32);
            break;
        }
        case OUT_F32: {
            unsigned long long* d = reinterpret_cast<unsigned long long*>(static_cast<float*>(y) + idx);
            I8RT_CHECK_ALIGNED(d, 8);
            *d = (unsigned long long)__float_as_uint(epi_value(e, acc0, row, col)) |
                 ((unsigned long long)__float_as_uint(epi_value(e, acc1, row, col + 1)) << 32);
            break;
        }
        case OUT_F16: {
            unsigned* d = reinterpret_cast<unsigned*>(static_cast<unsigned short*>(y) + idx);
            I8RT_CHECK_ALIGNED(d, 4);
            *d = (unsigned)f32_to_f16_rn(epi_value(e, acc0, row, col)) |
                 ((unsigned)f32_to_f16_rn(epi_value(e, acc1, row, col + 1)) << 16);
            break;
        }
        case OUT_BF16: {
            unsigned* d = reinterpret_cast<unsigned*>(static_cast<unsigned short*>(y) + idx);
            I8RT_CHECK_ALIGNED(d, 4);
            *d = (unsigned)f32_to_bf16_rn(epi_value(e, acc0, row, col)) |
                 ((unsigned)f32_to_bf16_rn(epi_value(e, acc1, row, col + 1)) << 16);
            break;
        }
        default: {
            unsigned short* d = reinterpret_cast<unsigned short*>(static_cast<signed char*>(y) + idx);
            I8RT_CHECK_ALIGNED(d, 2);
            *d = (unsigned short)((unsigned)(unsigned char)epi_to_i8(e, acc0, row, col) |
                                  ((unsigned)(unsigned char)epi_to_i8(e, acc1, row, col + 1) << 8));
            break;
        }
    }
}

// The integer corrections before the epilogue (DESIGN.md §1 steps 1–2): acc − zp_x · wsum[n]
// + bias_q[n]. Wrapping arithmetic: the true sum fits i32 (the host proved the bound), so
// modular arithmetic gives it exactly.
I8RT_INLINE int corrected_acc(const GemmParams& p, int acc, int row, int col) {
    unsigned v = (unsigned)acc;
    if (p.act_zp) v -= (unsigned)p.act_zp[(long long)row * p.zp_stride] * (unsigned)p.wsum[col];
    if (p.bias_i32) v += (unsigned)p.bias_i32[col];
    return (int)v;
}

// Outputs (row, col) and (row, col + 1) of Y from their accumulators, the low and high words of
// `acc2` (as two adjacent i32 in shared memory read as one 8-byte word): the corrections, the
// epilogue and one paired store (`epi_store2`), or only the first when col + 1 is past N.
I8RT_INLINE void epi_store_acc_pair(const GemmParams& p, unsigned long long acc2, int row, int col, bool paired) {
    const long long idx = (long long)row * p.ldy + col;
    const int v0 = corrected_acc(p, (int)(unsigned)acc2, row, col);
    if (col + 1 < p.n) {
        epi_store2(p.epi, p.y, idx, v0, corrected_acc(p, (int)(unsigned)(acc2 >> 32), row, col + 1), row, col, paired);
    } else {
        epi_store(p.epi, p.y, idx, v0, row, col);
    }
}
