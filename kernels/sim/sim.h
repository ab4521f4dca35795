// kernels/sim/sim.h — the host simulation of the CUDA execution model (DESIGN.md §2), included
// by common.cuh when the kernels are compiled by the host C++ compiler (`g++ -std=c++20
// -pthread -x c++ kernels/*.cu sim/sim_main.cpp`). The Rust side (src/cuda/sim.rs, test
// builds) loads the resulting shared library and launches kernels by their registry names.
//
// The model, and why each piece is faithful enough to catch kernel bugs:
// - every CUDA thread of a block has a stack and registers of its own: under ThreadSanitizer it
//   is a host thread, so data races are real races (the sanitizer reports a missing barrier);
//   otherwise it is a fiber on the launching host thread (sim_main.cpp's scheduler), switched
//   only where a CUDA thread waits — a barrier, a warp-level operation, an mbarrier wait — to a
//   fiber of the block picked in a shuffled order: no futex wake-up and kernel scheduling per
//   warp-level operation (about half of a simulated launch's CPU time with host threads);
// - `__syncthreads()` is a real barrier across the block's threads; the end of the kernel is a
//   barrier of its own kind, and a phase in which some threads sit in `__syncthreads()` while
//   others have returned aborts with "divergent barrier" (undefined behaviour on the GPU);
// - `__shared__` variables are function statics: blocks run one at a time (every thread of the
//   block finishes before the next block starts), in a shuffled order (the GPU promises no
//   order), and launches are serialized, so each block sees its own shared memory, as on the
//   GPU; its initial contents are unspecified there, too;
// - thread block clusters (sm_90, `I8RT_ENTRY_CLUSTER`: consecutive blocks along x) run their
//   blocks together, each with its own barrier, warps and dynamic shared memory (the kernels
//   launched in clusters keep no function-static `__shared__` state); `barrier.cluster` spans
//   the cluster's threads, remote mbarrier arrivals and multicast tensor copies reach the
//   peers' shared memory, and one that reaches a block after it has ended fails;
// - warp-level operations run on a per-warp barrier and a per-warp scratch buffer
//   (`WarpOp`): a lane publishes its operands, the warp synchronizes once, each lane reads the
//   lanes that the PTX ISA definition of the instruction names. Consecutive operations use
//   alternate halves of the scratch, so one barrier per operation suffices (a lane can only
//   start writing the half of operation i + 2 after every lane has read operation i: they all
//   reached operation i + 1's barrier first). `shfl.sync` follows the ISA pseudo-code (modes
//   up/down/bfly/idx, the c operand's clamp and segment mask); `ldmatrix` and
//   `mma.sync.m16n8k32` follow the fragment layouts of the PTX ISA ("Warp-level matrix load
//   instruction: ldmatrix", "Matrix Fragments for mma.m16n8k32"), computed from the ISA's
//   formulas in one place (`frag::`) — a batch of such instructions shares one exchange, which
//   changes the cost of the simulation, not what each instruction computes;
// - `cp.async` (+ commit / wait_group) keeps per-thread groups of pending copies and performs
//   them at the latest moment the ISA allows (the `wait_group` that completes their group), or,
//   in the launch's `early` mode, at issue: a kernel that reads a stage before waiting for it
//   fails in the first mode, one that overwrites a stage still being read fails (or is reported
//   by ThreadSanitizer) in either; the zero fill of `src-size < 16` is exact;
// - mbarrier objects and `cp.async.bulk` (sm_90) keep their phase, pending arrivals and
//   transaction count beside the launch; a bulk copy lands from the issuing thread when its phase
//   could otherwise complete, waits spin until their phase has, so a read before the wait reads
//   old bytes and a refill racing a reader is a ThreadSanitizer report (see "mbarrier and bulk
//   copies" below);
// - dynamic shared memory (`extern __shared__`) is one buffer per launch, filled with 0xCD so a
//   read of bytes never written shows; `ldmatrix` and `cp.async` check that their shared
//   addresses lie inside it and are 16-byte aligned, and `ldmatrix` counts the extra shared-memory
//   wavefronts its row addresses cost (bank conflicts: rows of one 8 × 8 matrix that fall in the
//   same 16-byte bank group), reported per launch;
// - 16-byte vector loads check their alignment (a misaligned vector load faults on the GPU),
//   and, when the host lists its live device buffers at launch (src/cuda/sim.rs does), 16-byte
//   global loads, cp.async sources and ld.global.cg must each lie inside one of them: a read
//   past a buffer's end fails even where the bytes read would not change the result;
// - a launch whose barriers make no progress for 30 s aborts (deadlock), so a broken kernel
//   fails a test instead of hanging CI.
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
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

// Fibers (above) unless the build runs under ThreadSanitizer or asks for host threads.
#if defined(I8RT_SIM_OS_THREADS) || defined(__SANITIZE_THREAD__)
#define I8RT_SIM_FIBERS 0
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define I8RT_SIM_FIBERS 0
#endif
#endif
#ifndef I8RT_SIM_FIBERS
#define I8RT_SIM_FIBERS 1
#endif
// A CUDA thread's own state: per host thread with host threads; with fibers (all on the host
// thread that holds sim_main.cpp's launch lock) plain globals, swapped per fiber — a
// thread_local in a dlopen'ed library costs a __tls_get_addr call per access.
#if I8RT_SIM_FIBERS
#define I8RT_SIM_THREAD_LOCAL
#else
#define I8RT_SIM_THREAD_LOCAL thread_local
#endif

namespace sim {

[[noreturn]] inline void fail(const std::string& what) {
    std::fprintf(stderr, "int8rt kernel simulation: %s\n", what.c_str());
    std::fflush(stderr);
    std::abort();
}

// Barrier phases are tagged with what the threads are waiting at; every thread of a phase must
// be at the same kind of point.
enum BarrierKind { BAR_SYNCTHREADS = 0, BAR_BLOCK_EXIT = 1, BAR_WARP = 2, BAR_CLUSTER = 3 };

// Progress of the running launch (barrier phases completed): a watchdog in sim_main.cpp aborts a
// launch that makes none for 30 s (a deadlock), so a broken kernel fails a test instead of
// hanging it.
inline std::atomic<unsigned long long>& progress() {
    static std::atomic<unsigned long long> p{0};
    return p;
}

// Hands the host thread to another fiber of the block (sim_main.cpp); a fiber build calls it
// wherever a CUDA thread waits, a host-thread build never does. With `gen`, the fiber is not
// resumed while *gen still equals `value` (a barrier's generation: nothing but another fiber's
// arrival can change it).
void fiber_yield(const std::atomic<unsigned>* gen = nullptr, unsigned value = 0);

// A barrier of n threads on atomics: the waiters yield their fiber, or, with host threads, wait
// on a futex (C++20 wait / notify_all).
class Barrier {
  public:
    explicit Barrier(unsigned n, const char* what) : n_(n), what_(what) {}
    // Returns whether this thread was the last to arrive (it completed the phase without waiting).
    bool arrive_and_wait(int kind) {
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
            if (!I8RT_SIM_FIBERS) gen_.notify_all();
            progress().fetch_add(1, std::memory_order_relaxed);
            return true;
        }
        while (gen_.load(std::memory_order_acquire) == g) {
            if (I8RT_SIM_FIBERS) {
                fiber_yield(&gen_, g);
            } else {
                gen_.wait(g, std::memory_order_acquire);
            }
        }
        return false;
    }

  private:
    static const char* name(int k) {
        return k == BAR_SYNCTHREADS  ? "__syncthreads()"
               : k == BAR_BLOCK_EXIT ? "kernel exit"
               : k == BAR_CLUSTER    ? "barrier.cluster"
                                     : "a warp operation";
    }
    const unsigned n_;
    const char* what_;
    std::atomic<unsigned> arrived_{0};
    std::atomic<unsigned> gen_{0};
    std::atomic<int> kind_{-1};
};

// Bytes one lane may publish in one warp-level operation (a batch of mma.sync operands: 4 A
// fragments of 16 bytes + 8 B fragments of 8 bytes = 128; 32 ldmatrix row addresses = 256).
constexpr unsigned WARP_SLOT_BYTES = 256;

struct Warp {
    Warp(unsigned lanes) : bar(lanes, "a warp"), lanes(lanes) {}
    Barrier bar;
    unsigned lanes;
    unsigned parity[32] = {};  // per lane (written only by its lane): the half its next operation uses
    alignas(16) unsigned char scratch[2][32][WARP_SLOT_BYTES];
};

// What a launch counts (read by the host after it; see `int8rt_sim_launch_ex`).
struct Stats {
    std::atomic<unsigned long long> ldmatrix{0};          // ldmatrix instructions (per warp)
    std::atomic<unsigned long long> smem_extra_wavefronts{0};  // their bank-conflict wavefronts (and lds_v4's)
    std::atomic<unsigned long long> mma{0};               // mma.sync instructions (per warp)
    std::atomic<unsigned long long> cp_async{0};          // cp.async instructions (per thread)
    std::atomic<unsigned long long> lds_v4{0};            // warp-wide 16-byte shared loads (per warp)
    std::atomic<unsigned long long> wgmma{0};             // wgmma.mma_async instructions (per warpgroup)
    std::atomic<unsigned long long> bulk_copies{0};       // cp.async.bulk instructions (per thread)
    std::atomic<unsigned long long> l2_prefetches{0};     // cp.async.bulk.prefetch.L2 instructions (per thread)
};

struct Launch;

// The thread blocks of one cluster (sm_90 thread block clusters, one-dimensional along x: the
// kernel's I8RT_ENTRY_CLUSTER size): they run at the same time, each with its own `Launch`
// (barrier, warps, shared memory), and reach one another's shared memory only through the
// cluster operations below (remote mbarrier arrivals, multicast tensor copies). `bar` spans
// every thread of the cluster (`barrier.cluster`, and the end of a cluster's blocks). A launch
// without clusters has clusters of one block.
struct Cluster {
    Cluster(unsigned size, unsigned threads) : size(size), bar(threads, "a cluster") {}
    unsigned size;
    std::vector<Launch*> ctas;  // by rank (%cluster_ctarank = blockIdx.x % size)
    Barrier bar;
};

// One block's context (one per rank of a cluster; the launch's grid, order and buffers are
// repeated in each).
struct Launch {
    Launch(dim3 g, dim3 b, unsigned nthreads, size_t dyn_bytes, bool cp_async_early)
        : grid(g), block(b), bar(nthreads, "a thread block"), dyn(dyn_bytes + 16, 0xCD),
          dyn_bytes(dyn_bytes), cp_async_early(cp_async_early) {}
    dim3 grid, block;
    Barrier bar;
    Cluster* cluster = nullptr;
    unsigned rank = 0;  // in the cluster
    // The linear index of the last cluster whose run of this block has ended (-1: none): a
    // cluster operation that reaches this block after its end fails (on the GPU the block's
    // shared memory is gone; a kernel must keep its blocks alive until its peers are done).
    std::atomic<long long> ended{-1};
    std::vector<std::unique_ptr<Warp>> warps;
    std::vector<unsigned long long> order;  // linear cluster indices in the order they run
    std::vector<unsigned char> dyn;  // dynamic shared memory (+ slack for 16-byte alignment)
    size_t dyn_bytes;
    bool cp_async_early;
    Stats stats;
    const unsigned long long* buffers = nullptr;  // sorted [begin, end) pairs of live device buffers
    size_t nbuffers = 0;
    unsigned char* dyn_base() {
        uintptr_t a = reinterpret_cast<uintptr_t>(dyn.data());
        return dyn.data() + ((16 - a % 16) % 16);
    }
};

// A CUDA thread's own state. Every I8RT_SIM_THREAD_LOCAL of this file is one (a fiber build
// swaps each of them in and out with its fiber: sim_main.cpp's `FiberLocals` lists them all).
inline I8RT_SIM_THREAD_LOCAL uint3 t_threadIdx;
inline I8RT_SIM_THREAD_LOCAL uint3 t_blockIdx;
inline I8RT_SIM_THREAD_LOCAL dim3 t_blockDim;
inline I8RT_SIM_THREAD_LOCAL dim3 t_gridDim;
inline I8RT_SIM_THREAD_LOCAL Launch* t_launch = nullptr;
inline I8RT_SIM_THREAD_LOCAL unsigned t_lane = 0;
inline I8RT_SIM_THREAD_LOCAL Warp* t_warp = nullptr;

// --- warp level ------------------------------------------------------------------------------

// Synchronize the lanes of the calling thread's warp (`__syncwarp()` with a full mask).
inline void warp_sync() { t_warp->bar.arrive_and_wait(BAR_WARP); }

// One warp-level operation's exchange: `mine()` is this lane's slot (WARP_SLOT_BYTES, 16-byte
// aligned) in this operation's half of the scratch; `exchange()` synchronizes the warp once;
// `lane(j)` is lane j's slot afterwards. Every lane of a warp executes the same sequence of
// warp-level operations (they are `.aligned`), so the per-lane parities agree.
class WarpOp {
  public:
    WarpOp() : half_(t_warp->parity[t_lane]) { t_warp->parity[t_lane] ^= 1u; }
    unsigned char* mine() { return t_warp->scratch[half_][t_lane]; }
    void exchange() { warp_sync(); }
    const unsigned char* lane(unsigned j) {
        if (j >= t_warp->lanes) fail("a warp-level operation reads an inactive lane");
        return t_warp->scratch[half_][j];
    }

  private:
    unsigned half_;
};

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
    WarpOp op;
    std::memcpy(op.mine(), &a, 4);
    op.exchange();
    if ((unsigned)j >= t_warp->lanes) fail("shfl.sync reads an inactive lane");
    unsigned d;
    std::memcpy(&d, op.lane((unsigned)j), 4);
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

// Fail unless [p, p + bytes) lies inside one of the launch's device buffers (when the host
// listed them; launches without a list, such as the self-tests', are not checked).
inline void check_global(const void* p, size_t bytes, const char* what) {
    if (!t_launch || t_launch->nbuffers == 0) return;
    const unsigned long long a = (unsigned long long)reinterpret_cast<uintptr_t>(p);
    size_t lo = 0, hi = t_launch->nbuffers;  // the last buffer beginning at or below a
    while (hi - lo > 1) {
        const size_t mid = (lo + hi) / 2;
        if (t_launch->buffers[2 * mid] <= a) lo = mid; else hi = mid;
    }
    const unsigned long long b0 = t_launch->buffers[2 * lo], b1 = t_launch->buffers[2 * lo + 1];
    if (a < b0 || a + bytes > b1) {
        char msg[160];
        std::snprintf(msg, sizeof msg, "%s of %zu bytes at %#llx lies outside every device buffer", what, bytes, a);
        fail(msg);
    }
}

inline int4 load_v4(const void* p) {
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) fail("misaligned 16-byte global load");
    check_global(p, 16, "a 16-byte global load");
    int4 v;
    std::memcpy(&v, p, 16);
    return v;
}

// --- L2 prefetches and the weight stream they serve ---------------------------------------------
//
// A prefetch into L2 changes no value, so the simulation checks what it can of one — its operands
// (a positive multiple of 16 bytes from a 16-byte-aligned address inside a device buffer) — and
// records where it reached, beside where the streaming loads (`ldg_stream_v4`) of the same launch
// read. At the launch's end (`l2_coverage_stats`) the two meet: bytes prefetched, bytes
// prefetched more than once, and streamed bytes that no prefetch of the launch covered. Order
// within the launch is not checked (a prefetch is a hint; a warp may run ahead of the one that
// issues it), only coverage. Launches run one at a time (sim_main.cpp's launch lock).
struct L2Coverage {
    std::mutex m;
    std::vector<std::pair<unsigned long long, unsigned long long>> prefetched, streamed;  // [begin, end)
};
inline L2Coverage& l2_coverage() {
    static L2Coverage c;
    return c;
}

// `cp.async.bulk.prefetch.L2.global [src], bytes`.
inline void prefetch_l2(const void* src, unsigned bytes) {
    if (bytes == 0 || bytes % 16 != 0) fail("cp.async.bulk.prefetch: size not a positive multiple of 16");
    if (reinterpret_cast<uintptr_t>(src) % 16 != 0) fail("cp.async.bulk.prefetch: global address not 16-byte aligned");
    check_global(src, bytes, "a cp.async.bulk.prefetch.L2 source");
    t_launch->stats.l2_prefetches.fetch_add(1, std::memory_order_relaxed);
    const unsigned long long a = (unsigned long long)reinterpret_cast<uintptr_t>(src);
    std::lock_guard<std::mutex> g(l2_coverage().m);
    l2_coverage().prefetched.emplace_back(a, a + bytes);
}

// `ld.global.nc.L1::no_allocate.L2::256B.v4`: load_v4, its bytes recorded as streamed.
inline int4 load_stream_v4(const void* p) {
    const int4 v = load_v4(p);
    const unsigned long long a = (unsigned long long)reinterpret_cast<uintptr_t>(p);
    std::lock_guard<std::mutex> g(l2_coverage().m);
    l2_coverage().streamed.emplace_back(a, a + 16);
    return v;
}

// The launch's coverage, then cleared: {bytes prefetched, of them prefetched again (the sum of
// the prefetches' sizes less the size of their union), streamed bytes outside that union}.
inline void l2_coverage_stats(unsigned long long (&out)[3]) {
    L2Coverage& c = l2_coverage();
    std::lock_guard<std::mutex> g(c.m);
    using Ranges = std::vector<std::pair<unsigned long long, unsigned long long>>;
    auto merged = [](Ranges r) {
        std::sort(r.begin(), r.end());
        Ranges u;
        for (const auto& x : r)
            if (!u.empty() && x.first <= u.back().second)
                u.back().second = std::max(u.back().second, x.second);
            else
                u.push_back(x);
        return u;
    };
    unsigned long long total = 0, in_union = 0, outside = 0;
    for (const auto& x : c.prefetched) total += x.second - x.first;
    const Ranges pf = merged(c.prefetched);
    for (const auto& x : pf) in_union += x.second - x.first;
    const Ranges st = merged(c.streamed);
    // Streamed bytes outside the prefetched union: walk both sorted, disjoint lists.
    size_t j = 0;
    for (const auto& x : st) {
        unsigned long long at = x.first;
        while (at < x.second) {
            while (j < pf.size() && pf[j].second <= at) ++j;
            if (j == pf.size() || pf[j].first >= x.second) {
                outside += x.second - at;
                break;
            }
            if (pf[j].first > at) outside += pf[j].first - at;
            at = pf[j].second;
        }
    }
    out[0] = total;
    out[1] = total - in_union;
    out[2] = outside;
    c.prefetched.clear();
    c.streamed.clear();
}

// --- dynamic shared memory, fences -------------------------------------------------------------

// The launch's dynamic shared memory (`extern __shared__`), 16-byte aligned.
inline unsigned char* dyn_smem() { return t_launch->dyn_base(); }

// Fail unless [p, p + bytes) lies inside the dynamic shared memory and p is `align`-aligned.
inline void check_smem(const void* p, size_t bytes, size_t align, const char* what) {
    const unsigned char* b = t_launch->dyn_base();
    const unsigned char* q = static_cast<const unsigned char*>(p);
    if (q < b || q + bytes > b + t_launch->dyn_bytes)
        fail(std::string(what) + ": shared address outside the " + std::to_string(t_launch->dyn_bytes) +
             "-byte dynamic shared memory (offset " + std::to_string((long long)(q - b)) + ")");
    if (reinterpret_cast<uintptr_t>(q) % align != 0)
        fail(std::string(what) + ": shared address not " + std::to_string(align) + "-byte aligned");
}

// --- clusters (sm_90) ----------------------------------------------------------------------------

// The running block's linear index in the grid (x fastest), and its cluster's: a cluster is
// `size` consecutive blocks along x (the grid's x a multiple of it, checked at launch).
inline unsigned long long block_linear() {
    return ((unsigned long long)t_blockIdx.z * t_gridDim.y + t_blockIdx.y) * t_gridDim.x + t_blockIdx.x;
}
inline unsigned long long cluster_linear() { return block_linear() / t_launch->cluster->size; }

// `%cluster_ctarank`.
inline unsigned cluster_rank() { return t_launch->rank; }

// The block of rank `rank` in the running thread's cluster, for a cluster operation `what`
// that reaches it: fails when there is no such rank or that block has already ended.
inline Launch* cluster_cta(unsigned rank, const char* what) {
    Cluster* c = t_launch->cluster;
    if (rank >= c->size)
        fail(std::string(what) + ": rank " + std::to_string(rank) + " outside a cluster of " + std::to_string(c->size));
    Launch* l = c->ctas[rank];
    if (l != t_launch && l->ended.load(std::memory_order_acquire) == (long long)cluster_linear())
        fail(std::string(what) + ": reaches block rank " + std::to_string(rank) +
             " of the cluster after that block has ended");
    return l;
}

// The block of the running thread's cluster whose dynamic shared memory holds [p, p + bytes)
// (null: none).
inline Launch* cta_of(const void* p, size_t bytes) {
    const unsigned char* q = static_cast<const unsigned char*>(p);
    auto holds = [&](Launch* l) { return q >= l->dyn_base() && q + bytes <= l->dyn_base() + l->dyn_bytes; };
    if (holds(t_launch)) return t_launch;
    for (Launch* l : t_launch->cluster->ctas)
        if (l != t_launch && holds(l)) return l;
    return nullptr;
}

// `barrier.cluster.arrive.release` + `barrier.cluster.wait.acquire`: every thread of the
// cluster (a launch without clusters: of the block).
inline void cluster_sync() { t_launch->cluster->bar.arrive_and_wait(BAR_CLUSTER); }

// --- fragment layouts (PTX ISA) ----------------------------------------------------------------

namespace frag {

struct RC {
    int row, col;
};

// "Matrix Fragments for mma.m16n8k32", .s8 / .u8 multiplicands, .s32 accumulators. groupID =
// %laneid >> 2, threadID_in_group = %laneid % 4; element i of a lane's fragment is byte i % 4
// (low to high) of register i / 4. These three functions are the ISA's formulas, verbatim.
inline RC a_16832(int lane, int i) {  // A: 16 × 32, .row; a0 .. a15 in four .b32 registers
    const int groupID = lane >> 2, threadID_in_group = lane % 4;
    const int row = ((0 <= i && i < 4) || (8 <= i && i < 12)) ? groupID : groupID + 8;
    const int col = i < 8 ? (threadID_in_group * 4) + (i & 0x3) : (threadID_in_group * 4) + (i & 0x3) + 16;
    return {row, col};
}
inline RC b_16832(int lane, int i) {  // B: 32 × 8, .col; b0 .. b7 in two .b32 registers
    const int groupID = lane >> 2, threadID_in_group = lane % 4;
    const int row = i < 4 ? (threadID_in_group * 4) + (i & 0x3) : (threadID_in_group * 4) + (i & 0x3) + 16;
    return {row, groupID};
}
inline RC c_16832(int lane, int i) {  // C / D: 16 × 8; c0 .. c3 in four .s32 registers
    const int groupID = lane >> 2, threadID_in_group = lane % 4;
    return {i < 2 ? groupID : groupID + 8, (threadID_in_group * 2) + (i & 0x1)};
}

// "Matrix Fragments for mma.m8n8k16" (sm_75), .s8 / .u8 multiplicands, .s32 accumulators: A 8 ×
// 16 .row, B 16 × 8 .col, one .b32 register of four elements each; C / D 8 × 8 in two .s32.
inline RC a_8816(int lane, int i) {  // a0 .. a3
    const int groupID = lane >> 2, threadID_in_group = lane % 4;
    return {groupID, (threadID_in_group * 4) + i};
}
inline RC b_8816(int lane, int i) {  // b0 .. b3
    const int groupID = lane >> 2, threadID_in_group = lane % 4;
    return {(threadID_in_group * 4) + i, groupID};
}
inline RC c_8816(int lane, int i) {  // c0, c1
    const int groupID = lane >> 2, threadID_in_group = lane % 4;
    return {groupID, (threadID_in_group * 2) + i};
}

// Which lane and element hold A[row][col] and B[row][col]: the formulas above inverted once, with
// a check that they place every element exactly once.
struct Where {
    unsigned char lane, elem;
};
struct Inverse {
    Where a[16][32];
    Where b[32][8];
};
inline const Inverse& inverse() {
    static const Inverse inv = [] {
        Inverse v{};
        bool seen_a[16][32] = {}, seen_b[32][8] = {};
        for (int lane = 0; lane < 32; ++lane) {
            for (int i = 0; i < 16; ++i) {
                RC p = a_16832(lane, i);
                if (seen_a[p.row][p.col]) fail("mma A fragment layout places an element twice");
                seen_a[p.row][p.col] = true;
                v.a[p.row][p.col] = Where{(unsigned char)lane, (unsigned char)i};
            }
            for (int i = 0; i < 8; ++i) {
                RC p = b_16832(lane, i);
                if (seen_b[p.row][p.col]) fail("mma B fragment layout places an element twice");
                seen_b[p.row][p.col] = true;
                v.b[p.row][p.col] = Where{(unsigned char)lane, (unsigned char)i};
            }
        }
        return v;
    }();
    return inv;
}

// "Warp-level matrix load instruction: ldmatrix", .m8n8 with 16-bit elements: the address of row
// r of matrix m (m = 0 .. num - 1) comes from thread 8 m + r; "a group of four threads loads an
// entire row": thread L receives in register m the two elements 2 (L % 4), 2 (L % 4) + 1 of row
// L / 4 of matrix m, i.e. bytes 4 (L % 4) .. 4 (L % 4) + 3 of that 16-byte row.
inline int ldsm_address_lane(int m, int r) { return 8 * m + r; }
inline int ldsm_row_of(int lane) { return lane / 4; }
inline int ldsm_byte_of(int lane) { return 4 * (lane % 4); }

}  // namespace frag

// Byte `b` of a 32-bit register, zero- or sign-extended.
inline int reg_byte(unsigned reg, int b, bool is_signed) {
    unsigned v = (reg >> (8 * b)) & 0xffu;
    return is_signed ? (int)(signed char)(unsigned char)v : (int)v;
}

// Extra shared-memory wavefronts of one phase of 8 lanes each reading 16 bytes at a[0..8): shared
// memory serves 32 banks of 4 bytes per wavefront; 16 bytes occupy the four banks of their bank
// group (address / 16) % 8; reads of one group at different addresses cost one extra wavefront
// each (equal addresses are a broadcast). An ldmatrix matrix and a quarter-warp of 16-byte
// loads are such phases.
inline unsigned long long extra_wavefronts(const uintptr_t (&a)[8]) {
    int worst = 1;
    for (int grp = 0; grp < 8; ++grp) {
        int distinct = 0;
        for (int i = 0; i < 8; ++i) {
            if ((a[i] / 16) % 8 != (uintptr_t)grp) continue;
            bool dup = false;
            for (int j = 0; j < i; ++j) dup = dup || a[j] / 16 == a[i] / 16;
            distinct += dup ? 0 : 1;
        }
        worst = distinct > worst ? distinct : worst;
    }
    return (unsigned long long)(worst - 1);
}

// `N` instructions `ldmatrix.sync.aligned.m8n8.x<X>.shared.b16 r[n], [rows[n]]` (rows[n] is this
// lane's row address for instruction n; only lanes 0 .. 8 X - 1 supply addresses).
template <int X, int N>
inline void ldmatrix(unsigned (*r)[X], const void* const* rows) {
    static_assert(X == 1 || X == 2 || X == 4, "ldmatrix .num is .x1, .x2 or .x4");
    static_assert(N * sizeof(void*) <= WARP_SLOT_BYTES, "too many ldmatrix in one batch");
    WarpOp op;
    std::memcpy(op.mine(), rows, N * sizeof(void*));
    op.exchange();
    const int lane = (int)t_lane;
    for (int n = 0; n < N; ++n) {
        for (int m = 0; m < X; ++m) {
            const unsigned char* row;
            std::memcpy(&row, op.lane((unsigned)frag::ldsm_address_lane(m, frag::ldsm_row_of(lane))) + n * sizeof(void*),
                        sizeof(void*));
            check_smem(row, 16, 16, "ldmatrix");
            std::memcpy(&r[n][m], row + frag::ldsm_byte_of(lane), 4);
        }
    }
    if (lane == 0) {
        unsigned long long extra = 0;
        for (int n = 0; n < N; ++n) {
            for (int m = 0; m < X; ++m) {
                uintptr_t a[8];
                for (int rr = 0; rr < 8; ++rr)
                    std::memcpy(&a[rr], op.lane((unsigned)frag::ldsm_address_lane(m, rr)) + n * sizeof(void*),
                                sizeof(void*));
                extra += extra_wavefronts(a);
            }
        }
        t_launch->stats.ldmatrix.fetch_add(N, std::memory_order_relaxed);
        t_launch->stats.smem_extra_wavefronts.fetch_add(extra, std::memory_order_relaxed);
    }
}

// `ld.shared.v4.b32 d, [p]` executed by every lane of the warp together (the kernels that use it
// keep it warp-uniform): this lane's 16 bytes at p, and the warp's bank conflicts counted the
// way the hardware serves a 16-byte access, a quarter-warp (8 lanes, 128 bytes) per phase.
inline int4 lds_v4(const void* p) {
    check_smem(p, 16, 16, "ld.shared.v4");
    WarpOp op;
    std::memcpy(op.mine(), &p, sizeof(void*));
    op.exchange();
    int4 v;
    std::memcpy(&v, p, 16);
    if (t_lane == 0) {
        if (t_warp->lanes != 32) fail("ld.shared.v4 (warp-wide) in a partial warp");
        unsigned long long extra = 0;
        for (int q = 0; q < 4; ++q) {
            uintptr_t a[8];
            for (int i = 0; i < 8; ++i) std::memcpy(&a[i], op.lane((unsigned)(8 * q + i)), sizeof(void*));
            extra += extra_wavefronts(a);
        }
        t_launch->stats.lds_v4.fetch_add(1, std::memory_order_relaxed);
        t_launch->stats.smem_extra_wavefronts.fetch_add(extra, std::memory_order_relaxed);
    }
    return v;
}

// MT × NT instructions `mma.sync.aligned.m16n8k32.row.col.s32.<atype>.<btype>.s32 acc[i][j], a[i],
// b[j], acc[i][j]` (types u8 or s8 each; no .satfinite: the s32 sums wrap). Each lane's D elements
// are computed from the A and B elements the ISA layouts place in the other lanes' registers.
template <int MT, int NT>
inline void mma_16832(int (*acc)[NT][4], const unsigned (*a)[4], const unsigned (*b)[2], bool a_unsigned,
                      bool b_unsigned = false) {
    static_assert(MT * 16 + NT * 8 <= (int)WARP_SLOT_BYTES, "too many mma operands in one batch");
    WarpOp op;
    std::memcpy(op.mine(), a, MT * 16);
    std::memcpy(op.mine() + MT * 16, b, NT * 8);
    op.exchange();
    const frag::Inverse& inv = frag::inverse();
    // Every lane's operands (a partial warp fails here: an mma.sync reads all 32 lanes). Byte e
    // of a lane's fragment (register e / 4, byte e % 4 from the low end) lies at offset e of its
    // slot: the registers were copied in as little-endian words.
    static_assert(std::endian::native == std::endian::little, "fragment bytes as stored on a little-endian host");
    const unsigned char* from[32];
    for (unsigned j = 0; j < 32; ++j) from[j] = op.lane(j);
    const int lane = (int)t_lane;
    // The A rows and B columns this lane's accumulators e = 0 .. 3 need (two of each), gathered
    // once per batch from the lanes the fragment layouts name; then plain dot products.
    int rows[4], cols[4], a_of[4], b_of[4], na = 0, nb = 0;
    for (int e = 0; e < 4; ++e) {
        const frag::RC c = frag::c_16832(lane, e);
        a_of[e] = (int)(std::find(rows, rows + na, c.row) - rows);
        if (a_of[e] == na) rows[na++] = c.row;
        b_of[e] = (int)(std::find(cols, cols + nb, c.col) - cols);
        if (b_of[e] == nb) cols[nb++] = c.col;
    }
    auto byte = [](unsigned char v, bool is_signed) { return is_signed ? (int)(signed char)v : (int)v; };
    int a_row[MT][4][32], b_col[NT][4][32];
    for (int r = 0; r < na; ++r) {
        for (int k = 0; k < 32; ++k) {
            const frag::Where w = inv.a[rows[r]][k];
            for (int i = 0; i < MT; ++i) a_row[i][r][k] = byte(from[w.lane][i * 16 + w.elem], !a_unsigned);
        }
    }
    for (int c = 0; c < nb; ++c) {
        for (int k = 0; k < 32; ++k) {
            const frag::Where w = inv.b[k][cols[c]];
            for (int j = 0; j < NT; ++j) b_col[j][c][k] = byte(from[w.lane][MT * 16 + j * 8 + w.elem], !b_unsigned);
        }
    }
    for (int i = 0; i < MT; ++i) {
        for (int j = 0; j < NT; ++j) {
            for (int e = 0; e < 4; ++e) {
                const int* av = a_row[i][a_of[e]];
                const int* bv = b_col[j][b_of[e]];
                unsigned sum = (unsigned)acc[i][j][e];
                for (int k = 0; k < 32; ++k) sum += (unsigned)(av[k] * bv[k]);
                acc[i][j][e] = (int)sum;
            }
        }
    }
    if (lane == 0) t_launch->stats.mma.fetch_add((unsigned long long)MT * NT, std::memory_order_relaxed);
}

// `mma.sync.aligned.m8n8k16.row.col.s32.<atype>.<btype>.s32 c, a, b, c` (sm_75; types u8 or s8
// each; the s32 sums wrap), from the m8n8k16 layouts above — independent of the m16n8k32
// emulation, which the decomposition of common.cuh (`mma_16832_by_8816`) is checked against.
inline void mma_8816(int (&c)[2], unsigned a, unsigned b, bool a_unsigned, bool b_unsigned) {
    WarpOp op;
    std::memcpy(op.mine(), &a, 4);
    std::memcpy(op.mine() + 4, &b, 4);
    op.exchange();
    // Where A[row][k] and B[k][col] lie: searched from the layouts (8 × 16 elements each).
    int a_at[8][16][2], b_at[16][8][2];
    for (int lane = 0; lane < 32; ++lane) {
        for (int i = 0; i < 4; ++i) {
            const frag::RC pa = frag::a_8816(lane, i), pb = frag::b_8816(lane, i);
            a_at[pa.row][pa.col][0] = lane;
            a_at[pa.row][pa.col][1] = i;
            b_at[pb.row][pb.col][0] = lane;
            b_at[pb.row][pb.col][1] = i;
        }
    }
    auto byte = [&](int lane, int offset, int i, bool is_signed) {
        unsigned v;
        std::memcpy(&v, op.lane((unsigned)lane) + offset, 4);
        return reg_byte(v, i, is_signed);
    };
    for (int e = 0; e < 2; ++e) {
        const frag::RC d = frag::c_8816((int)t_lane, e);
        unsigned sum = (unsigned)c[e];
        for (int k = 0; k < 16; ++k) {
            const int av = byte(a_at[d.row][k][0], 0, a_at[d.row][k][1], !a_unsigned);
            const int bv = byte(b_at[k][d.col][0], 4, b_at[k][d.col][1], !b_unsigned);
            sum += (unsigned)(av * bv);
        }
        c[e] = (int)sum;
    }
    if (t_lane == 0) t_launch->stats.mma.fetch_add(1, std::memory_order_relaxed);
}

// --- cp.async ------------------------------------------------------------------------------------

// Bytes of shared memory this thread's cp.async copies wrote (landed, in the deferred mode)
// since its last `fence.proxy.async.shared::cta`: `wgmma` reads shared memory through the async
// proxy, which sees generic-proxy writes (cp.async's included) only after such a fence, so a
// wgmma issued with this non-zero fails (see `wgmma` below).
inline I8RT_SIM_THREAD_LOCAL unsigned long long t_unfenced_copies = 0;

struct PendingCopy {
    unsigned char* dst;
    const unsigned char* src;
    int src_bytes;
};
struct CpAsyncState {
    std::vector<PendingCopy> open;                 // issued since the last commit_group
    std::deque<std::vector<PendingCopy>> groups;   // committed, oldest first
    // Every member, by the containers' own swaps (a fiber switch; std::swap of the struct would
    // move-construct a deque, which allocates).
    void swap(CpAsyncState& o) {
        open.swap(o.open);
        groups.swap(o.groups);
    }
};
inline I8RT_SIM_THREAD_LOCAL CpAsyncState t_cp;

inline void perform(const PendingCopy& c) {
    if (c.src_bytes > 0) std::memcpy(c.dst, c.src, (size_t)c.src_bytes);
    std::memset(c.dst + c.src_bytes, 0, (size_t)(16 - c.src_bytes));
}

// `cp.async.cg.shared.global [dst], [src], 16, src_bytes`: the first src_bytes bytes from src,
// zeros for the rest. Both addresses must be 16-byte aligned (the cp-size).
inline void cp_async_16(void* dst, const void* src, int src_bytes) {
    if (src_bytes < 0 || src_bytes > 16) fail("cp.async: src-size outside [0, 16]");
    check_smem(dst, 16, 16, "cp.async");
    if (src_bytes > 0 && reinterpret_cast<uintptr_t>(src) % 16 != 0) fail("cp.async: global address not 16-byte aligned");
    if (src_bytes > 0) check_global(src, (size_t)src_bytes, "a cp.async source");
    t_launch->stats.cp_async.fetch_add(1, std::memory_order_relaxed);
    PendingCopy c{static_cast<unsigned char*>(dst), static_cast<const unsigned char*>(src), src_bytes};
    if (t_launch->cp_async_early) {
        perform(c);
    } else {
        t_cp.open.push_back(c);
    }
}

// `cp.async.commit_group` (an empty group is allowed and trivially complete).
inline void cp_async_commit() {
    t_cp.groups.push_back(std::move(t_cp.open));
    t_cp.open.clear();
}

// `cp.async.wait_group n`: every group but the n most recent is complete.
inline void cp_async_wait(int n) {
    while (t_cp.groups.size() > (size_t)n) {
        for (const PendingCopy& c : t_cp.groups.front()) perform(c);
        t_unfenced_copies += t_cp.groups.front().size();
        t_cp.groups.pop_front();
    }
}

// At the end of a block: what is still in flight lands (in its own block's shared memory).
inline void cp_async_drain() {
    cp_async_commit();
    cp_async_wait(0);
}

// --- mbarrier and bulk copies (sm_90) ------------------------------------------------------------
//
// An mbarrier object (8 bytes of shared memory) as the PTX ISA defines it: a phase completes
// when its pending arrival count and its transaction count (tx-count) both reach zero; then the
// next phase begins with the init count pending. `mbarrier.arrive.expect_tx` adds to tx-count
// and arrives; `cp.async.bulk … mbarrier::complete_tx::bytes` copies `size` bytes from global to
// shared memory asynchronously and, when they have landed, subtracts `size` from tx-count;
// `mbarrier.try_wait.parity p` succeeds once the phase of parity p has completed. Emulated:
// the state lives beside the launch, keyed by block and shared offset (a block that uses an
// object it did not `mbarrier.init` fails, as does a launch that ends with copies in flight);
// a bulk copy lands at the latest moment the ISA allows — when its phase could otherwise
// complete (every arrival in, the copy the last thing outstanding) — so a thread that reads a
// stage before waiting for its phase reads what was there before. Waits spin (yielding); one
// that never succeeds is a deadlock the launch's watchdog reports.
struct BulkCopy {
    unsigned char* dst;
    const unsigned char* src;
    unsigned bytes;
    // A tensor copy (TMA): the box's bytes gathered at issue (zeros outside the tensor), landed
    // 16 bytes at a time at chunk_dst[j] (the swizzled places); dst and src unused.
    std::vector<unsigned char> gathered;
    std::vector<unsigned char*> chunk_dst;
    void land() const {
        if (chunk_dst.empty()) {
            std::memcpy(dst, src, bytes);
            return;
        }
        for (size_t j = 0; j < chunk_dst.size(); ++j) std::memcpy(chunk_dst[j], gathered.data() + 16 * j, 16);
    }
};
struct MBarrier {
    unsigned count = 0;    // arrivals per phase (the init count)
    unsigned pending = 0;  // arrivals still missing in the current phase
    long long tx = 0;      // expected transaction bytes not yet completed
    unsigned phase = 0;    // phases completed
    std::vector<BulkCopy> copies;  // issued in the current phase, not landed
};
// The launch's objects, by (linear block index, shared offset): keying by block makes a block
// that uses an object it did not initialize fail. Objects of another block of the cluster are
// reached through its shared memory (`mbar_arrive_cluster`).
struct MBarriers {
    std::mutex m;
    std::map<std::pair<unsigned long long, size_t>, MBarrier> bars;
};
inline MBarriers& mbarriers() {
    static MBarriers b;
    return b;
}

// The key of the object at `addr`, in the shared memory of `l` (a block of the running
// thread's cluster).
inline std::pair<unsigned long long, size_t> mbar_key(Launch* l, const void* addr) {
    const unsigned long long block = cluster_linear() * t_launch->cluster->size + l->rank;
    return {block, (size_t)(static_cast<const unsigned char*>(addr) - l->dyn_base())};
}

// The object at `addr`: in this block's shared memory, or (a remote arrival) another block's of
// the cluster that has not ended.
inline MBarrier& mbar_at(const void* addr, const char* what) {
    Launch* l = cta_of(addr, 8);
    if (!l) {
        check_smem(addr, 8, 8, what);  // (fails, naming the offset in this block)
        fail(std::string(what) + ": shared address outside the cluster's shared memory");
    }
    if (reinterpret_cast<uintptr_t>(addr) % 8 != 0) fail(std::string(what) + ": shared address not 8-byte aligned");
    if (l != t_launch) cluster_cta(l->rank, what);
    const auto key = mbar_key(l, addr);
    auto it = mbarriers().bars.find(key);
    if (it == mbarriers().bars.end())
        fail(std::string(what) + ": no mbarrier.init at shared offset " + std::to_string(key.second) +
             (l == t_launch ? std::string(" in this block") : " in block rank " + std::to_string(l->rank)));
    return it->second;
}

// With the lock held: land the copies when nothing else is outstanding, then complete the phase.
inline void mbar_progress(MBarrier& b) {
    if (b.pending != 0) return;
    for (const BulkCopy& c : b.copies) {
        c.land();
        b.tx -= (long long)c.bytes;
    }
    b.copies.clear();
    if (b.tx == 0) {
        b.phase += 1;
        b.pending = b.count;
        progress().fetch_add(1, std::memory_order_relaxed);
    }
}

// `mbarrier.init.shared::cta.b64 [addr], count`.
inline void mbar_init(void* addr, unsigned count) {
    check_smem(addr, 8, 8, "mbarrier.init");
    if (count == 0) fail("mbarrier.init with count 0");
    std::lock_guard<std::mutex> g(mbarriers().m);
    MBarrier& b = mbarriers().bars[mbar_key(t_launch, addr)];
    if (!b.copies.empty()) fail("mbarrier.init of an object with bulk copies in flight");
    b = MBarrier{count, count, 0, 0, {}};
}

// `mbarrier.arrive.expect_tx.shared::cta.b64 _, [addr], tx` (tx = 0: a plain arrive).
inline void mbar_arrive(void* addr, unsigned tx) {
    std::lock_guard<std::mutex> g(mbarriers().m);
    MBarrier& b = mbar_at(addr, "mbarrier.arrive");
    if (b.pending == 0) fail("mbarrier.arrive on a phase that has all its arrivals");
    b.tx += (long long)tx;
    b.pending -= 1;
    mbar_progress(b);
}

// `mapa.shared::cluster` + `mbarrier.arrive.shared::cluster.b64 _, [addr]`: one arrival on the
// object at shared offset `off` of the cluster's block `rank`.
inline void mbar_arrive_cluster(size_t off, unsigned rank) {
    Launch* l = cluster_cta(rank, "a remote mbarrier.arrive");
    mbar_arrive(l->dyn_base() + off, 0);
}

// `mbarrier.try_wait.parity.shared::cta.b64 p, [addr], parity`, repeated until it succeeds.
inline void mbar_wait(void* addr, unsigned parity) {
    for (;;) {
        {
            std::lock_guard<std::mutex> g(mbarriers().m);
            MBarrier& b = mbar_at(addr, "mbarrier.try_wait");
            if ((b.phase & 1u) != (parity & 1u)) return;
        }
        if (I8RT_SIM_FIBERS) {
            fiber_yield();
        } else {
            std::this_thread::yield();
        }
    }
}

// `cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [dst], [src], bytes, [bar]`.
inline void bulk_copy_g2s(void* dst, const void* src, unsigned bytes, void* bar) {
    if (bytes == 0 || bytes % 16 != 0) fail("cp.async.bulk: size not a positive multiple of 16");
    check_smem(dst, bytes, 16, "cp.async.bulk destination");
    if (reinterpret_cast<uintptr_t>(src) % 16 != 0) fail("cp.async.bulk: global address not 16-byte aligned");
    check_global(src, bytes, "a cp.async.bulk source");
    t_launch->stats.bulk_copies.fetch_add(1, std::memory_order_relaxed);
    std::lock_guard<std::mutex> g(mbarriers().m);
    MBarrier& b = mbar_at(bar, "cp.async.bulk's mbarrier");
    b.copies.push_back(BulkCopy{static_cast<unsigned char*>(dst), static_cast<const unsigned char*>(src), bytes, {}, {}});
    mbar_progress(b);
}

// At the end of a launch: no bulk copy may be in flight (in any block); the objects end.
inline void mbar_check_drained() {
    std::lock_guard<std::mutex> g(mbarriers().m);
    for (const auto& b : mbarriers().bars)
        if (!b.second.copies.empty()) fail("a block exited with cp.async.bulk copies in flight");
    mbarriers().bars.clear();
}

// --- wgmma (sm_90a) ------------------------------------------------------------------------------
//
// `wgmma.mma_async.sync.aligned.m64nNk32.s32.<u8|s8>.s8 d, a-desc, b-desc, scale-d` with both
// operands in shared memory, K-major, described by 64-bit matrix descriptors ("Matrix Descriptor
// Format" of the PTX ISA: start address >> 4 in bits 0–13, leading-dimension byte offset >> 4 in
// 16–29, stride-dimension byte offset >> 4 in 32–45, base offset in 49–51, swizzle mode in 62–63).
// Emulated: the 128-byte swizzle (mode 1) with base offset 0 — row r, k byte b of a 64 × 32 (A)
// or N × 32 (B) operand lives at the shared address a = start + (r / 8) · SBO + (r % 8) · 128 + b
// with bits 4–6 of a exclusive-ored with bits 7–9 (the leading-dimension offset plays no part:
// one instruction's 32 k bytes lie inside a 128-byte swizzle row). The swizzle acts on the
// address, so the emulation models the shared window too: dynamic shared memory starts at
// window address SMEM_WINDOW (16-byte aligned, deliberately not 1024-byte aligned, so a kernel
// that assumes an aligned base fails here). The accumulators follow the ISA's D fragment layout
// for m64nNk32 .s32: warp w % 4 of the warpgroup holds rows 16 (w % 4) + lane / 4 (+ 8 for
// elements i with i % 4 ≥ 2), columns 8 (i / 4) + 2 (lane % 4) + i % 2 — per 8 columns the
// `mma.m16n8k32` C layout.
//
// Asynchrony as the ISA allows at its latest: an instruction only records its operands; the
// `wgmma.wait_group` that completes its group reads shared memory and updates the accumulators.
// So a kernel that reads its accumulators before waiting, or overwrites a stage that an
// instruction in flight still reads, computes a wrong result here. Checked at issue: a
// `wgmma.fence` since the thread's last commit (before the first wgmma of every group, the
// crate's discipline: the accumulators were last touched by other instructions), no cp.async
// writes since the last `fence.proxy.async` (see t_unfenced_copies), whole warpgroups (the block
// a multiple of 128 threads), and the same descriptors and scale-d across the warp. A block that
// exits with instructions in flight fails.
constexpr unsigned SMEM_WINDOW = 0x490;

// A K-major operand with 128-byte swizzle, from its descriptor (checked when decoded).
struct Sw128Operand {
    unsigned start, sbo;  // shared-window address of row 0, byte 0; bytes between 8-row groups
};
inline Sw128Operand decode_sw128(unsigned long long desc) {
    if ((desc >> 62) != 1) fail("wgmma: only the 128-byte swizzle mode is emulated");
    if (((desc >> 49) & 7u) != 0) fail("wgmma: a non-zero matrix base offset is not emulated");
    return Sw128Operand{(unsigned)(desc & 0x3fffu) << 4, (unsigned)((desc >> 32) & 0x3fffu) << 4};
}

struct PendingWgmma {
    int* d;          // the issuing thread's N / 2 accumulators
    int n;           // N
    Sw128Operand a, b;
    bool accumulate, a_u8;
};
struct WgmmaState {
    std::vector<PendingWgmma> open;                 // issued since the last commit_group
    std::deque<std::vector<PendingWgmma>> groups;   // committed, oldest first
    bool fenced = false;                            // a wgmma.fence since the last commit
    // Every member (as CpAsyncState::swap).
    void swap(WgmmaState& o) {
        open.swap(o.open);
        groups.swap(o.groups);
        std::swap(fenced, o.fenced);
    }
};
inline I8RT_SIM_THREAD_LOCAL WgmmaState t_wg;

// Row `r` of a K-major operand with 128-byte swizzle: its 32 bytes (k = 0 .. 31) into `out`, the
// addresses checked once for the row.
inline void wgmma_operand_row(const Sw128Operand& o, int r, bool is_signed, int out[32]) {
    unsigned addr[32];
    unsigned lo = ~0u, hi = 0;
    for (int b = 0; b < 32; ++b) {
        unsigned a = o.start + (unsigned)(r / 8) * o.sbo + (unsigned)(r % 8) * 128u + (unsigned)b;
        a ^= ((a >> 7) & 7u) << 4;
        addr[b] = a;
        lo = std::min(lo, a);
        hi = std::max(hi, a);
    }
    if (lo < SMEM_WINDOW) fail("wgmma: operand address below the dynamic shared memory");
    const unsigned char* base = t_launch->dyn_base();
    check_smem(base + (lo - SMEM_WINDOW), hi - lo + 1, 1, "wgmma operand");
    for (int b = 0; b < 32; ++b) {
        const unsigned char v = base[addr[b] - SMEM_WINDOW];
        out[b] = is_signed ? (int)(signed char)v : (int)v;
    }
}

// The issuing thread's accumulators: element i = 4c + 2h + e is row 16 · (warp in the group) +
// lane / 4 + 8h, column 8c + 2 · (lane % 4) + e (the wgmma D fragment layout); each A row and
// B column is read once.
inline void perform(const PendingWgmma& w) {
    const int warp_in_group = (int)((t_threadIdx.x / 32) % 4), lane = (int)t_lane;
    int a_rows[2][32], b_col[32];
    for (int h = 0; h < 2; ++h) wgmma_operand_row(w.a, 16 * warp_in_group + lane / 4 + 8 * h, !w.a_u8, a_rows[h]);
    for (int c = 0; c < w.n / 8; ++c) {
        for (int e = 0; e < 2; ++e) {
            wgmma_operand_row(w.b, 8 * c + 2 * (lane % 4) + e, true, b_col);
            for (int h = 0; h < 2; ++h) {
                const int i = 4 * c + 2 * h + e;
                unsigned sum = w.accumulate ? (unsigned)w.d[i] : 0u;
                for (int k = 0; k < 32; ++k) sum += (unsigned)(a_rows[h][k] * b_col[k]);
                w.d[i] = (int)sum;
            }
        }
    }
}

// `wgmma.mma_async` m64nNk32 into this thread's N / 2 accumulators `d`.
inline void wgmma(int* d, int n, unsigned long long da, unsigned long long db, int accumulate, bool a_u8) {
    if (t_blockDim.x % 128 != 0 || t_blockDim.y != 1 || t_blockDim.z != 1)
        fail("wgmma in a block that is not whole warpgroups along x");
    if (!t_wg.fenced) fail("wgmma.mma_async without a wgmma.fence since the last commit_group");
    if (t_unfenced_copies != 0)
        fail("wgmma.mma_async reads shared memory written by cp.async without a fence.proxy.async since");
    WarpOp op;
    const unsigned long long mine[3] = {da, db, (unsigned long long)(accumulate != 0)};
    std::memcpy(op.mine(), mine, sizeof mine);
    op.exchange();
    if (t_lane == 0) {
        for (unsigned j = 1; j < t_warp->lanes; ++j)
            if (std::memcmp(op.lane(j), mine, sizeof mine) != 0) fail("wgmma: operands differ across the warp");
        if (t_threadIdx.x % 128 == 0) t_launch->stats.wgmma.fetch_add(1, std::memory_order_relaxed);
    }
    t_wg.open.push_back(PendingWgmma{d, n, decode_sw128(da), decode_sw128(db), accumulate != 0, a_u8});
}

inline void wgmma_fence() { t_wg.fenced = true; }

inline void wgmma_commit() {
    t_wg.groups.push_back(std::move(t_wg.open));
    t_wg.open.clear();
    t_wg.fenced = false;
}

// `wgmma.wait_group n`: every group but the n most recent is complete.
inline void wgmma_wait(int n) {
    while (t_wg.groups.size() > (size_t)n) {
        for (const PendingWgmma& w : t_wg.groups.front()) perform(w);
        t_wg.groups.pop_front();
    }
}

inline void fence_proxy_async() { t_unfenced_copies = 0; }

// --- TMA tensor copies (sm_90) -------------------------------------------------------------------
//
// `cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [dst],
// [map, {c0, c1}], [bar]`: the box of box1 rows × box0 bytes at element (c0, c1) of a 2-D u8
// tensor, elements outside the tensor read as zeros, into shared memory — with the 128-byte
// swizzle, box row i's 16-byte chunk j lands at window address a = dst + 128 i + 16 j with bits
// 4–6 of a exclusive-ored with bits 7–9 (the pattern wgmma's 128-byte swizzle mode reads; the
// hardware asks a 1024-byte aligned destination for it) — completing the whole box's bytes on
// the mbarrier (the filled zeros count). The tensor map is the simulation's own description
// (`TmaDesc`, written by src/cuda/sim.rs into the kernel's 128-byte TmaMap); the box is read
// from global memory at issue (the kernels' operands do not change during a launch) and lands
// like any bulk copy, when its phase could otherwise complete. Counted with the bulk copies.
struct TmaDesc {
    unsigned long long magic;    // TMA_MAGIC
    unsigned long long base;     // address of element (0, 0)
    unsigned long long dim0;     // elements (bytes) along the contiguous dimension
    unsigned long long dim1;     // rows
    unsigned long long stride1;  // bytes from one row to the next
    unsigned long long box0;     // box: bytes per row
    unsigned long long box1;     // box: rows
    unsigned long long swizzle;  // 3: 128-byte (the CU_TENSOR_MAP_SWIZZLE_128B value)
};
constexpr unsigned long long TMA_MAGIC = 0x7a6d5f7472386931ull;

// The box of tensor map `map` at (c0, c1), gathered, with the 128-byte swizzle's order of its
// 16-byte chunks: chunk j lands at shared offset `chunk_off[j]` of the destination's block,
// for a box whose destination is at shared offset `dst_off` (checked against this block's
// shared memory: a multicast lands at the same offsets in every block it reaches).
struct TmaBox {
    std::vector<unsigned char> gathered;
    std::vector<size_t> chunk_off;
};
inline TmaBox tma_gather(size_t dst_off, const unsigned long long* map, int c0, int c1) {
    TmaDesc d;
    std::memcpy(&d, map, sizeof d);
    if (d.magic != TMA_MAGIC) fail("cp.async.bulk.tensor: the tensor map was not written by the simulation's host");
    if (d.swizzle != 3 || d.box0 != 128) fail("cp.async.bulk.tensor: only 128-byte rows with the 128-byte swizzle are emulated");
    if (d.box1 == 0 || d.box1 > 256 || d.dim0 == 0 || d.dim1 == 0 || d.stride1 % 16 != 0 || d.base % 16 != 0)
        fail("cp.async.bulk.tensor: an invalid tensor map");
    // The box's first byte along the row at a multiple of 16 (u8 elements: c0 itself): the H200
    // trapped on every other origin tried (bench/probes/tma_box_align.cu).
    if (c0 % 16 != 0) fail("cp.async.bulk.tensor: a box whose first byte is not at a multiple of 16 (the hardware traps)");
    // A box wholly outside the tensor: the TMA's handling of it (zero fill, and whether the
    // whole box's bytes still complete) has not been seen on a GPU run of the crate; the
    // kernels avoid it, and the simulation holds them to that.
    if ((long long)c0 >= (long long)d.dim0 || (long long)c0 + (long long)d.box0 <= 0 || (long long)c1 >= (long long)d.dim1 ||
        (long long)c1 + (long long)d.box1 <= 0)
        fail("cp.async.bulk.tensor: a box wholly outside the tensor (not verified on a GPU; the kernels avoid it)");
    const unsigned bytes = (unsigned)(d.box0 * d.box1);
    check_smem(t_launch->dyn_base() + dst_off, bytes, 16, "cp.async.bulk.tensor destination");
    const unsigned long long at = SMEM_WINDOW + (unsigned long long)dst_off;
    if (at % 1024 != 0) fail("cp.async.bulk.tensor: a 128-byte-swizzled destination not 1024-byte aligned");
    TmaBox box{std::vector<unsigned char>(bytes, 0), {}};
    box.chunk_off.reserve(bytes / 16);
    for (unsigned long long i = 0; i < d.box1; ++i) {
        const long long row = (long long)c1 + (long long)i;
        if (row >= 0 && row < (long long)d.dim1) {
            // The row's bytes inside the tensor: columns [max(c0, 0), min(c0 + box0, dim0)).
            const long long lo = c0 < 0 ? 0 : c0;
            const long long hi = (long long)c0 + (long long)d.box0 < (long long)d.dim0 ? (long long)c0 + (long long)d.box0
                                                                                        : (long long)d.dim0;
            if (hi > lo) {
                const unsigned char* src = reinterpret_cast<const unsigned char*>(d.base + (unsigned long long)row * d.stride1) + lo;
                check_global(src, (size_t)(hi - lo), "a cp.async.bulk.tensor box");
                std::memcpy(box.gathered.data() + i * d.box0 + (lo - c0), src, (size_t)(hi - lo));
            }
        }
        for (unsigned j = 0; j < d.box0 / 16; ++j) {
            const unsigned long long a = at + i * 128 + 16 * j;
            const unsigned long long sw = a ^ (((a >> 7) & 7ull) << 4);
            box.chunk_off.push_back((size_t)(sw - SMEM_WINDOW));
        }
    }
    return box;
}

// With the lock held: a box's bytes (`gathered`, chunks at `chunk_off`) land in block `l`'s
// shared memory, completing them on the object at shared offset `bar_off` there — when its
// phase could otherwise complete, or (`now`) at once, the bytes counted on the current phase.
inline void tma_deliver(Launch* l, const std::vector<size_t>& chunk_off, size_t bar_off,
                        std::vector<unsigned char> gathered, bool now = false) {
    BulkCopy c{nullptr, nullptr, (unsigned)gathered.size(), std::move(gathered), {}};
    c.chunk_dst.reserve(chunk_off.size());
    for (size_t off : chunk_off) c.chunk_dst.push_back(l->dyn_base() + off);
    MBarrier& b = mbar_at(l->dyn_base() + bar_off, "cp.async.bulk.tensor's mbarrier");
    if (now) {
        c.land();
        b.tx -= (long long)c.bytes;
    } else {
        b.copies.push_back(std::move(c));
    }
    mbar_progress(b);
}

inline void tma_load_2d(size_t dst_off, const unsigned long long* map, int c0, int c1, size_t bar_off) {
    TmaBox box = tma_gather(dst_off, map, c0, c1);
    t_launch->stats.bulk_copies.fetch_add(1, std::memory_order_relaxed);
    std::lock_guard<std::mutex> g(mbarriers().m);
    tma_deliver(t_launch, box.chunk_off, bar_off, std::move(box.gathered));
}

// `cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes
// .multicast::cluster [dst], [map, {c0, c1}], [bar], mask`: the same box lands at shared offset
// `dst_off` of every block of the cluster whose rank is a bit of `mask`, completing its bytes on
// the object at `bar_off` of that block. One instruction (counted once). The ISA lets a copy
// land any time from its issue until its phase completes, so the emulation takes both ends: in
// the issuing block at the latest moment (as tma_load_2d: a read before the wait sees old
// bytes), in every other block at once, from the issuing thread (its bytes counted on the
// object's current phase, which may then go negative until that block expects them) — so a
// refill that does not wait for the peers' release overwrites a stage a peer still reads: wrong
// bits, or a ThreadSanitizer report.
inline void tma_load_2d_multicast(size_t dst_off, const unsigned long long* map, int c0, int c1, size_t bar_off,
                                  unsigned mask) {
    if (mask == 0 || mask >> 16 != 0) fail("cp.async.bulk.tensor multicast: a mask outside 1 .. 0xffff");
    const TmaBox box = tma_gather(dst_off, map, c0, c1);
    std::vector<Launch*> to;
    for (unsigned r = 0; r < 16; ++r)
        if (mask >> r & 1u) to.push_back(cluster_cta(r, "cp.async.bulk.tensor multicast"));
    t_launch->stats.bulk_copies.fetch_add(1, std::memory_order_relaxed);
    std::lock_guard<std::mutex> g(mbarriers().m);
    for (Launch* l : to) tma_deliver(l, box.chunk_off, bar_off, box.gathered, l != t_launch);
}

// At the end of a block: nothing may be in flight (its accumulators are gone).
inline void wgmma_check_drained() {
    if (!t_wg.open.empty() || !t_wg.groups.empty()) fail("a block exits with wgmma.mma_async in flight");
    t_wg.fenced = false;
    t_unfenced_copies = 0;
}

// --- kernels and launches --------------------------------------------------------------------

struct Entry {
    const char* name;
    size_t params_size;
    unsigned max_threads;
    void (*thunk)(const void*);
    unsigned cluster;  // blocks per cluster along x (1: no clusters)
};

inline std::vector<Entry>& registry() {
    static std::vector<Entry> r;
    return r;
}

struct Registrar {
    Registrar(const char* name, size_t params_size, unsigned max_threads, void (*thunk)(const void*),
              unsigned cluster = 1) {
        registry().push_back(Entry{name, params_size, max_threads, thunk, cluster});
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
// A load cached in L2 only (`ld.global.cg`): on the host, a plain load (checked against the
// launch's device buffers).
template <class T>
inline T __ldcg(const T* p) {
    sim::check_global(p, sizeof(T), "an ld.global.cg");
    return *p;
}
// Every memory operation of this thread before the fence is seen before any after it. Under
// ThreadSanitizer (which does not model fences) it is left out: the kernels' cross-block
// protocols then have to be ordered by their barriers and atomic read-modify-writes alone, which
// the sanitizer does check.
inline void __threadfence() {
#ifndef __SANITIZE_THREAD__
    std::atomic_thread_fence(std::memory_order_seq_cst);
#endif
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
