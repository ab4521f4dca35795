// kernels/sim/sim.h — the host simulation of the CUDA execution model (DESIGN.md §2), included
// by common.cuh when the kernels are compiled by the host C++ compiler (`g++ -std=c++20
// -pthread -x c++ kernels/*.cu sim/sim_main.cpp`). The Rust side (src/cuda/sim.rs, test
// builds) loads the resulting shared library and launches kernels by their registry names.
//
// The model, and why each piece is faithful enough to catch kernel bugs:
// - every CUDA thread of a block is a host thread, so data races are real races (a build under
//   -fsanitize=thread reports a missing barrier);
// - `__syncthreads()` is a real barrier across the block's threads; the end of the kernel is a
//   barrier of its own kind, and a phase in which some threads sit in `__syncthreads()` while
//   others have returned aborts with "divergent barrier" (undefined behaviour on the GPU);
// - `__shared__` variables are function statics: blocks run one at a time (every thread of the
//   block finishes before the next block starts) and launches are serialized, so each block sees
//   its own shared memory, as on the GPU; its initial contents are unspecified there, too;
// - warp-level operations run on a per-warp barrier and a per-warp scratch buffer: a lane
//   publishes its operand, the warp synchronizes, each lane reads the lane that the PTX ISA
//   definition of the instruction names, the warp synchronizes again. `shfl.sync` follows the
//   ISA pseudo-code (modes up/down/bfly/idx, the c operand's clamp and segment mask); later
//   fragment operations (ldmatrix, mma.sync) use `sim::warp_scratch()` + `sim::warp_sync()`;
// - 16-byte vector loads check their alignment (a misaligned vector load faults on the GPU);
// - a launch whose barriers make no progress for 30 s aborts (deadlock), so a broken kernel
//   fails a test instead of hanging CI.
#pragma once

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __restrict__ __restrict
#define __shared__ static

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};
struct uint3 {
    unsigned x, y, z;
};
struct alignas(16) int4 {
    int x, y, z, w;
};

namespace sim {

[[noreturn]] inline void fail(const std::string& what) {
    std::fprintf(stderr, "int8rt kernel simulation: %s\n", what.c_str());
    std::fflush(stderr);
    std::abort();
}

// Barrier phases are tagged with what the threads are waiting at; every thread of a phase must
// be at the same kind of point.
enum BarrierKind { BAR_SYNCTHREADS = 0, BAR_BLOCK_EXIT = 1, BAR_WARP = 2 };

// Progress of the running launch (barrier phases completed): a watchdog in sim_main.cpp aborts a
// launch that makes none for 30 s (a deadlock), so a broken kernel fails a test instead of
// hanging it.
inline std::atomic<unsigned long long>& progress() {
    static std::atomic<unsigned long long> p{0};
    return p;
}

// A barrier of n threads on atomics and futex waits (C++20 wait / notify_all).
class Barrier {
  public:
    explicit Barrier(unsigned n, const char* what) : n_(n), what_(what) {}
    void arrive_and_wait(int kind) {
        int expected = -1;
        if (!kind_.compare_exchange_strong(expected, kind) && expected != kind) {
            fail(std::string("divergent barrier in ") + what_ + ": some threads wait at " + name(expected) +
                 ", another at " + name(kind));
        }
        // Read the generation before arriving: it cannot change until this thread has arrived.
        const unsigned g = gen_.load(std::memory_order_acquire);
        if (arrived_.fetch_add(1, std::memory_order_acq_rel) + 1 == n_) {
            arrived_.store(0, std::memory_order_relaxed);
            kind_.store(-1, std::memory_order_relaxed);
            gen_.fetch_add(1, std::memory_order_release);
            gen_.notify_all();
            progress().fetch_add(1, std::memory_order_relaxed);
            return;
        }
        while (gen_.load(std::memory_order_acquire) == g) gen_.wait(g, std::memory_order_acquire);
    }

  private:
    static const char* name(int k) {
        return k == BAR_SYNCTHREADS ? "__syncthreads()" : k == BAR_BLOCK_EXIT ? "kernel exit" : "a warp operation";
    }
    const unsigned n_;
    const char* what_;
    std::atomic<unsigned> arrived_{0};
    std::atomic<unsigned> gen_{0};
    std::atomic<int> kind_{-1};
};

// Bytes of per-warp scratch: 32 lanes × 64 bytes (enough for an mma.sync fragment per lane).
constexpr unsigned WARP_SCRATCH_BYTES = 32 * 64;

struct Warp {
    Warp(unsigned lanes) : bar(lanes, "a warp"), lanes(lanes) {}
    Barrier bar;
    unsigned lanes;
    alignas(16) unsigned char scratch[WARP_SCRATCH_BYTES];
};

struct Launch {
    Launch(dim3 g, dim3 b, unsigned nthreads) : grid(g), block(b), bar(nthreads, "a thread block") {}
    dim3 grid, block;
    Barrier bar;
    std::vector<std::unique_ptr<Warp>> warps;
};

inline thread_local uint3 t_threadIdx;
inline thread_local uint3 t_blockIdx;
inline thread_local dim3 t_blockDim;
inline thread_local dim3 t_gridDim;
inline thread_local Launch* t_launch = nullptr;
inline thread_local unsigned t_lane = 0;
inline thread_local Warp* t_warp = nullptr;

// --- warp level ------------------------------------------------------------------------------

// Synchronize the lanes of the calling thread's warp (`__syncwarp()` with a full mask).
inline void warp_sync() { t_warp->bar.arrive_and_wait(BAR_WARP); }

// The calling warp's scratch buffer (WARP_SCRATCH_BYTES, 16-byte aligned).
inline unsigned char* warp_scratch() { return t_warp->scratch; }

inline unsigned lane_id() { return t_lane; }

inline unsigned active_mask() {
    return t_warp->lanes == 32 ? 0xffffffffu : ((1u << t_warp->lanes) - 1u);
}

enum ShflMode { SHFL_UP, SHFL_DOWN, SHFL_BFLY, SHFL_IDX };

// `shfl.sync.mode.b32 d, a, b, c, membermask` as the PTX ISA defines it.
inline unsigned shfl_sync(ShflMode mode, unsigned membermask, unsigned a, unsigned b, unsigned c) {
    if (membermask != active_mask()) fail("shfl.sync with a membermask other than the full warp is not emulated");
    int lane = (int)t_lane;
    int bval = (int)(b & 0x1f);
    int cval = (int)(c & 0x1f);
    int segmask = (int)((c >> 8) & 0x1f);
    int max_lane = (lane & segmask) | (cval & ~segmask);
    int min_lane = lane & segmask;
    int j = lane;
    bool pval = false;
    switch (mode) {
        case SHFL_UP: j = lane - bval; pval = (j >= max_lane); break;
        case SHFL_DOWN: j = lane + bval; pval = (j <= max_lane); break;
        case SHFL_BFLY: j = lane ^ bval; pval = (j <= max_lane); break;
        case SHFL_IDX: j = min_lane | (bval & ~segmask); pval = (j <= max_lane); break;
    }
    if (!pval) j = lane;
    unsigned* s = reinterpret_cast<unsigned*>(warp_scratch());
    s[lane] = a;
    warp_sync();
    if ((unsigned)j >= t_warp->lanes) fail("shfl.sync reads an inactive lane");
    unsigned d = s[j];
    warp_sync();
    return d;
}

// --- thread level ----------------------------------------------------------------------------

// dp4a: Σ_i a.byte[i] · b.byte[i] + c, a's bytes signed (`a_signed`) or unsigned, b's signed.
inline int dp4a(int a, int b, int c, bool a_signed) {
    unsigned ua = (unsigned)a, ub = (unsigned)b;
    unsigned acc = (unsigned)c;
    for (int i = 0; i < 4; ++i) {
        int ab = a_signed ? (int)(signed char)(ua >> (8 * i)) : (int)(unsigned char)(ua >> (8 * i));
        int bb = (int)(signed char)(ub >> (8 * i));
        acc += (unsigned)(ab * bb);
    }
    return (int)acc;
}

// f32 → f16 bits, IEEE round to nearest even, overflow to ±inf, subnormals kept; NaN → quiet NaN
// keeping the top payload bits (half::f16::from_f32's choice; PTX cvt.rn.f16.f32 gives the
// canonical NaN — no contract result is NaN).
inline unsigned short f32_to_f16_rn(float f) {
    uint32_t x;
    std::memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t exp = (x >> 23) & 0xffu;
    uint32_t man = x & 0x7fffffu;
    if (exp == 0xffu) return (unsigned short)(sign | 0x7c00u | (man ? 0x0200u | (man >> 13) : 0u));
    int e = (int)exp - 127 + 15;  // the f16 biased exponent
    if (e >= 0x1f) return (unsigned short)(sign | 0x7c00u);
    if (e <= 0) {
        // f16 subnormal (or zero): shift the full significand right, round to nearest even.
        int shift = 14 - e;  // ≥ 14
        if (shift > 24) return (unsigned short)sign;
        uint32_t m = man | 0x800000u;
        uint32_t q = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1u);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1u))) ++q;
        return (unsigned short)(sign | q);
    }
    uint32_t q = ((uint32_t)e << 10) | (man >> 13);
    uint32_t rem = man & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (q & 1u))) ++q;  // a carry into the exponent is right
    return (unsigned short)(sign | q);
}

inline int4 load_v4(const void* p) {
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) fail("misaligned 16-byte global load");
    int4 v;
    std::memcpy(&v, p, 16);
    return v;
}

// --- kernels and launches --------------------------------------------------------------------

struct Entry {
    const char* name;
    size_t params_size;
    unsigned max_threads;
    void (*thunk)(const void*);
};

inline std::vector<Entry>& registry() {
    static std::vector<Entry> r;
    return r;
}

struct Registrar {
    Registrar(const char* name, size_t params_size, unsigned max_threads, void (*thunk)(const void*)) {
        registry().push_back(Entry{name, params_size, max_threads, thunk});
    }
};

}  // namespace sim

#define threadIdx (::sim::t_threadIdx)
#define blockIdx (::sim::t_blockIdx)
#define blockDim (::sim::t_blockDim)
#define gridDim (::sim::t_gridDim)
#define warpSize 32

inline void __syncthreads() { ::sim::t_launch->bar.arrive_and_wait(::sim::BAR_SYNCTHREADS); }
inline void __syncwarp(unsigned mask = 0xffffffffu) {
    if (mask != ::sim::active_mask()) ::sim::fail("__syncwarp with a partial mask is not emulated");
    ::sim::warp_sync();
}

// CUDA's shuffle intrinsics, in terms of shfl.sync (sm_30_intrinsics.hpp's c operands).
inline unsigned __shfl_sync(unsigned mask, unsigned v, int src, int width = 32) {
    return ::sim::shfl_sync(::sim::SHFL_IDX, mask, v, (unsigned)src, ((32u - width) << 8) | 0x1fu);
}
inline unsigned __shfl_xor_sync(unsigned mask, unsigned v, int lane_mask, int width = 32) {
    return ::sim::shfl_sync(::sim::SHFL_BFLY, mask, v, (unsigned)lane_mask, ((32u - width) << 8) | 0x1fu);
}
inline unsigned __shfl_down_sync(unsigned mask, unsigned v, unsigned delta, int width = 32) {
    return ::sim::shfl_sync(::sim::SHFL_DOWN, mask, v, delta, ((32u - width) << 8) | 0x1fu);
}
inline unsigned __shfl_up_sync(unsigned mask, unsigned v, unsigned delta, int width = 32) {
    return ::sim::shfl_sync(::sim::SHFL_UP, mask, v, delta, (32u - width) << 8);
}

// Exactly rounded f32 arithmetic: the host compiler is run with -ffp-contract=off and SSE
// arithmetic (round to nearest even), so each is one IEEE operation.
inline float __int2float_rn(int v) { return (float)v; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
inline float __double2float_rn(double v) { return (float)v; }
inline int __float2int_rn(float v) {
    if (v != v) return 0;
    float r = std::nearbyint(v);
    if (r >= 2147483648.0f) return 2147483647;
    if (r < -2147483648.0f) return (-2147483647 - 1);
    return (int)r;
}
inline unsigned __float_as_uint(float f) {
    unsigned u;
    std::memcpy(&u, &f, 4);
    return u;
}
inline float __uint_as_float(unsigned u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
template <class T>
inline T __ldg(const T* p) {
    return *p;
}

inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) {
    return std::atomic_ref<unsigned long long>(*p).fetch_add(v);
}
inline unsigned long long atomicMin(unsigned long long* p, unsigned long long v) {
    std::atomic_ref<unsigned long long> a(*p);
    unsigned long long cur = a.load();
    while (v < cur && !a.compare_exchange_weak(cur, v)) {
    }
    return cur;
}
inline unsigned atomicAdd(unsigned* p, unsigned v) { return std::atomic_ref<unsigned>(*p).fetch_add(v); }
inline unsigned atomicMin(unsigned* p, unsigned v) {
    std::atomic_ref<unsigned> a(*p);
    unsigned cur = a.load();
    while (v < cur && !a.compare_exchange_weak(cur, v)) {
    }
    return cur;
}
inline unsigned atomicMax(unsigned* p, unsigned v) {
    std::atomic_ref<unsigned> a(*p);
    unsigned cur = a.load();
    while (v > cur && !a.compare_exchange_weak(cur, v)) {
    }
    return cur;
}
