// kernels/common.cuh — the device helper layer every kernel is written against, and the device
// twin of the epilogue. Compiled by NVRTC these helpers are CUDA intrinsics and inline PTX;
// compiled by the host C++ compiler (`I8RT_SIM`, see sim/sim.h) the same names run on the CPU,
// one host thread per CUDA thread, with the warp-level operations emulated from their PTX ISA
// definitions. A kernel that only uses what is declared here (plus plain C++, `__shared__`
// arrays and `__syncthreads()`) runs unchanged in both worlds.
//
// Helper layer (thread → warp → block, CUTLASS order):
//   thread:  dp4a_s8 / dp4a_u8, f32_to_f16_rn / f32_to_bf16_rn, round_shift_clamp, ldg_v4
//   warp:    lane_id, shfl_xor_u32 / shfl_xor_f32 (and, in the simulation, sim::warp_sync() +
//            sim::warp_scratch() for fragment exchanges such as ldmatrix / mma.sync: a lane
//            writes its registers to the per-warp scratch, warp_sync(), reads the lanes the PTX
//            fragment layout names, warp_sync())
//   block:   block_sync
//   status:  status_report (non-finite input counting)
//   entries: I8RT_ENTRY(name, Params, threads) { ... } declares an extern "C" __global__ entry
//            taking one Params by value; build.rs reads these lines to make the KernelId registry.
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

#ifdef I8RT_DEVICE_BUILD
#define I8RT_ENTRY(name, Params, threads) \
    extern "C" __global__ void __launch_bounds__(threads) name(const Params p)
#else
#define I8RT_ENTRY(name, Params, threads)                                           \
    extern "C" void name(const Params p);                                           \
    static ::sim::Registrar name##_registrar(#name, sizeof(Params), (threads),      \
        [](const void* a) { name(*static_cast<const Params*>(a)); });              \
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

// One 16-byte global load (the address must be 16-byte aligned; the simulation checks).
I8RT_INLINE int4 ldg_v4(const void* p) {
#ifdef I8RT_DEVICE_BUILD
    return __ldg(static_cast<const int4*>(p));
#else
    return sim::load_v4(p);
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

I8RT_INLINE void block_sync() { __syncthreads(); }

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

// The integer corrections before the epilogue (DESIGN.md §1 steps 1–2): acc − zp_x · wsum[n]
// + bias_q[n]. Wrapping arithmetic: the true sum fits i32 (the host proved the bound), so
// modular arithmetic gives it exactly.
I8RT_INLINE int corrected_acc(const GemmParams& p, int acc, int row, int col) {
    unsigned v = (unsigned)acc;
    if (p.act_zp) v -= (unsigned)p.act_zp[(long long)row * p.zp_stride] * (unsigned)p.wsum[col];
    if (p.bias_i32) v += (unsigned)p.bias_i32[col];
    return (int)v;
}
