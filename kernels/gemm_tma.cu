// kernels/gemm_tma.cu — the `wgmma` GEMM of kernels/gemm_wgmma.cu with its operand tiles brought
// by the Tensor Memory Accelerator (sm_90a): Y[m, n] = epilogue(X[m, k] · W[n, k]ᵀ), X s8 or u8,
// W s8, the DESIGN.md §1 epilogue fused. Built for 33 … 256 activation rows, where Nsight
// Compute found every kernel of the crate latency-bound on an H100 (`wgmma` 64 × 128 at 64 ×
// 4096²: 22 % of DRAM throughput; the 64 × 64 weight-streaming tile 26 %; bench/RESULTS.md,
// 2026-11-26): there the cp.async loaders keep two stages in flight, issued by the warps that
// also wait for them. Here one thread issues a whole stage as two tensor copies, and a block
// keeps up to STAGES stages (all its k tiles, at 64 × 4096² split 4) in flight from the start.
// Forced or tuned (`MmaTile::Tma…`) until a GPU run has measured it.
// I8RT_MIN_ARCH 90a
//
// Block tiles (the host's MmaTile::Tma…):
//   gemm_tma_64x128   BM 64,  BN 128, 1 warpgroup,  8 stages (192 KiB)
//   gemm_tma_128x128  BM 128, BN 128, 2 warpgroups, 6 stages (192 KiB)
//   gemm_tma_64x256   BM 64,  BN 256, 1 warpgroup,  5 stages (200 KiB)
//   gemm_tma_128x256  BM 128, BN 256, 2 warpgroups, 4 stages (192 KiB)
//   gemm_tma_64x128_d4  BM 64, BN 128, 1 warpgroup, 4 stages (96 KiB): two blocks per SM, for
//                     split-K grids of two blocks per SM (a block's finish overlapping the
//                     other's stream)
// each for s8 and u8 activations; one block per multiprocessor but the last. And in thread
// block clusters whose blocks share their operand boxes through the TMA's multicast (below):
//   gemm_tmc_64x64_m2n2   BM 64,  BN 64, 1 warpgroup,  6 stages (97 KiB), 2 × 2 tiles a cluster
//   gemm_tmc_128x64_m2n2  BM 128, BN 64, 2 warpgroups, 4 stages (97 KiB), 2 × 2 tiles a cluster
//   gemm_tmc_64x64_n4     BM 64,  BN 64, 1 warpgroup,  6 stages (97 KiB), 1 × 4 tiles a cluster
//
// Per block:
// - the output tile from tile.cuh's grouped order, the k tiles [first, end) of its split;
// - a stage is BK = 128 bytes of K: the X box (BM rows × 128 B) and the W box (BN rows × 128 B)
//   of the host's tensor maps (TmaParams), landing with the 128-byte swizzle that wgmma's
//   descriptors read (the operand tiles 1024-byte aligned in the shared window) — rows past M
//   or N and bytes past K arrive as zeros, so no k tile needs a guard;
// - thread 0 initializes a `full` mbarrier (1 arrival + the stage's bytes) and an `empty` one
//   (one arrival per warp) per stage, then issues the first STAGES k tiles — their W boxes
//   before the wait for the kernel ahead (griddep_wait: launched overlapped, sm_90, the weights
//   stream while the activation quantization finishes), their X boxes after it. Every warp waits for
//   step i's `full` phase, its warpgroup runs the stage's four `wgmma.m64nBNk32` (A: the
//   warpgroup's 64 rows of X, B: all BN rows of W), commits, and waits until only this step's
//   group is in flight — step i − 1's wgmma have read their stage — whereupon each warp arrives
//   on that stage's `empty` barrier and thread 0, once all have, refills it with k tile
//   i − 1 + STAGES;
// - the block ends as gemm_wgmma.cu's do: tile.cuh `finish` (split-K partial sums, then the
//   epilogue through shared-memory staging rows below the barriers).
#include "tile.cuh"
#include "wgmma.cuh"

namespace tma {

constexpr int BK = 128;          // k bytes per stage (one 128-byte swizzle row)
constexpr int ALIGN = 1024;      // operand tiles' alignment in the shared window
static_assert(BK == 128 && ALIGN == 1024, "the stage wgmma_stage128 runs (wgmma.cuh)");
constexpr int RASTER_GROUP = 8;  // tile rows per group of the block order

template <int BM_, int BN_, int STAGES_>
struct Config {
    static constexpr int BM = BM_, BN = BN_, STAGES = STAGES_;
    static constexpr int WARPGROUPS = BM / 64;
    static constexpr int THREADS = 128 * WARPGROUPS;
    static constexpr int WARPS = THREADS / 32;
    static constexpr int NT = BN / 8;  // 16 × 8 C fragments per warp
    static constexpr int A_BYTES = BM * BK, STAGE_BYTES = (BM + BN) * BK;
    // The mbarriers lie past the operand tiles wherever the aligned base falls (`full` ones,
    // then `empty` ones); the epilogue's staging rows start at offset 0, below them.
    static constexpr int BARS = ALIGN + STAGES * STAGE_BYTES;
    static constexpr int SMEM = BARS + 16 * STAGES;  // dynamic shared memory (ops.rs: smem_bytes)
    static_assert(BM == 64 || BM == 128, "one or two warpgroups of 64 rows");
    static_assert(BN == 64 || BN == 128 || BN == 256, "the crate's wgmma widths");
    static_assert(STAGES >= 2, "one stage in the tensor cores, one landing");
    static_assert(A_BYTES % ALIGN == 0 && STAGE_BYTES % ALIGN == 0, "every operand tile 1024-byte aligned");
    static_assert(tile::FLAG_OFFSET<THREADS, BN> + 4 <= STAGES * STAGE_BYTES, "the epilogue's staging below the barriers");
    static_assert(SMEM <= 227 * 1024, "an sm_90 block's dynamic shared memory");
    static I8RT_INLINE unsigned full_bar(int s) { return (unsigned)(BARS + 8 * s); }
    static I8RT_INLINE unsigned empty_bar(int s) { return (unsigned)(BARS + 8 * (STAGES + s)); }
};

using C64x128 = Config<64, 128, 8>;
using C128x128 = Config<128, 128, 6>;
using C64x256 = Config<64, 256, 5>;
using C128x256 = Config<128, 256, 4>;
using C64x128D4 = Config<64, 128, 4>;

// The operand tiles' offset in the shared window: its first 1024-byte boundary.
I8RT_INLINE unsigned aligned_base() { return (unsigned)(ALIGN - (int)(smem_window(0) % ALIGN)) % ALIGN; }

// Whether the input had NaN/inf (the status word, read after griddep_wait): then the block stores
// nothing (the host reports it), once the copies in flight to it — its first `prologue` stages'
// — have landed.
template <class C>
I8RT_INLINE bool input_flagged(const GemmParams& p, int prologue) {
    if (!p.status || p.status->count == 0) return false;
    for (int i = 0; i < prologue; ++i) mbar_wait(C::full_bar(i), 0);
    return true;
}

template <int NT>
I8RT_INLINE void zero_acc(int (&acc)[1][NT][4]) {
#pragma unroll
    for (int j = 0; j < NT; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[0][j][e] = 0;
}

// Thread 0 initializes every stage's barriers: `full` (one arrival: the thread that expects the
// stage's bytes) and `empty` (`releases` arrivals: the warps that read the stage), then fences
// them for the async proxy. The caller synchronizes the block (or cluster) after it.
template <class C>
I8RT_INLINE void init_barriers(int tid, unsigned releases) {
    if (tid != 0) return;
    for (int s = 0; s < C::STAGES; ++s) {
        mbar_init(C::full_bar(s), 1);
        mbar_init(C::empty_bar(s), releases);
    }
    mbar_init_fence();
}

// The first stages' copies (thread 0; `issue_w(i)` arms stage i's `full` barrier and sends its W
// box, `issue_x(i)` its X box): the weights (immutable) before the wait for the kernel before
// this one (overlapped launch, sm_90: the activation quantization, which writes X, the scales and
// the status word), X, the status and everything after only once it has finished. False when
// the input was flagged: the block then stores nothing.
template <class C, class IssueW, class IssueX>
I8RT_INLINE bool start_stages(const GemmParams& p, int tid, int nkt, IssueW issue_w, IssueX issue_x) {
    const int prologue = nkt < C::STAGES ? nkt : C::STAGES;
    if (tid == 0)
        for (int i = 0; i < prologue; ++i) issue_w(i);
    griddep_wait();
    if (tid == 0)
        for (int i = 0; i < prologue; ++i) issue_x(i);
    return !input_flagged<C>(p, prologue);
}

template <class C, bool U8>
I8RT_INLINE void body(const TmaParams& tp) {
    check_launch_geometry(C::THREADS, C::SMEM, "gemm_tma");
    // The next overlapped launch on the stream may begin once every block of this one runs.
    griddep_launch_dependents();
    const MmaParams& q = tp.q;
    const GemmParams& p = q.g;
    const int tid = (int)threadIdx.x, lane = tid & 31, warp = tid >> 5, wgi = warp >> 2;
    const tile::TileRC rc = tile::grouped_tile<RASTER_GROUP>();
    const int bm = rc.row * C::BM, bn = rc.col * C::BN;
    const tile::KTiles kts = tile::block_k_tiles<BK>(q);
    const int kt0 = kts.first, nkt = kts.count;
    const unsigned base = aligned_base();

    // k tile kt0 + i into stage i % STAGES (thread 0 only): arm the stage's `full` barrier
    // with the bytes of both boxes, then the W box and (`x`) the X box.
    auto issue_w = [&](int i) {
        const int s = i % C::STAGES;
        const unsigned at = base + (unsigned)(s * C::STAGE_BYTES);
        mbar_arrive_expect_tx(C::full_bar(s), (unsigned)C::STAGE_BYTES);
        tma_load_2d(at + (unsigned)C::A_BYTES, &tp.w, (kt0 + i) * BK, bn, C::full_bar(s));
    };
    auto issue_x = [&](int i) {
        const int s = i % C::STAGES;
        tma_load_2d(base + (unsigned)(s * C::STAGE_BYTES), &tp.x, (kt0 + i) * BK, bm, C::full_bar(s));
    };
    auto issue = [&](int i) {
        issue_w(i);
        issue_x(i);
    };
    init_barriers<C>(tid, C::WARPS);
    block_sync();
    if (!start_stages<C>(p, tid, nkt, issue_w, issue_x)) return;

    int acc[1][C::NT][4];
    zero_acc(acc);

    // Descriptor addresses: the warpgroup's 64 rows of A, all BN rows of B; 8-row groups 1024
    // bytes apart; + 32 bytes per k step inside the swizzle row.
    const unsigned a_addr = smem_window(base) + (unsigned)(wgi * 64 * BK);
    const unsigned b_addr = smem_window(base) + (unsigned)C::A_BYTES;
    for (int i = 0; i < nkt; ++i) {
        const int s = i % C::STAGES;
        mbar_wait(C::full_bar(s), (unsigned)(i / C::STAGES) & 1u);
        const unsigned stage = (unsigned)(s * C::STAGE_BYTES);
        wgmma_stage128<C::BN, U8>(acc, a_addr, b_addr, stage);
        if (i == 0) continue;
        // Step i − 1's wgmma are complete: this warp is done with their stage; once every warp
        // is, the producer refills it.
        const int ps = (i - 1) % C::STAGES;
        __syncwarp();
        if (lane == 0) mbar_arrive(C::empty_bar(ps));
        if (tid == 0 && i - 1 + C::STAGES < nkt) {
            mbar_wait(C::empty_bar(ps), (unsigned)((i - 1) / C::STAGES) & 1u);
            issue(i - 1 + C::STAGES);
        }
        __syncwarp();  // (warp 0's lanes wait for their producer before the next wgmma)
    }
    wgmma_wait<0>();
    wgmma_pin(acc);

    tile::finish<1, C::NT, C::THREADS>(q, acc, bm + warp * 16, bn);
}

}  // namespace tma

I8RT_ENTRY_GRID_CONST(gemm_tma_64x128_s8, TmaParams, tma::C64x128::THREADS, 1) { tma::body<tma::C64x128, false>(p); }
I8RT_ENTRY_GRID_CONST(gemm_tma_64x128_u8, TmaParams, tma::C64x128::THREADS, 1) { tma::body<tma::C64x128, true>(p); }
I8RT_ENTRY_GRID_CONST(gemm_tma_128x128_s8, TmaParams, tma::C128x128::THREADS, 1) { tma::body<tma::C128x128, false>(p); }
I8RT_ENTRY_GRID_CONST(gemm_tma_128x128_u8, TmaParams, tma::C128x128::THREADS, 1) { tma::body<tma::C128x128, true>(p); }
I8RT_ENTRY_GRID_CONST(gemm_tma_64x256_s8, TmaParams, tma::C64x256::THREADS, 1) { tma::body<tma::C64x256, false>(p); }
I8RT_ENTRY_GRID_CONST(gemm_tma_64x256_u8, TmaParams, tma::C64x256::THREADS, 1) { tma::body<tma::C64x256, true>(p); }
I8RT_ENTRY_GRID_CONST(gemm_tma_128x256_s8, TmaParams, tma::C128x256::THREADS, 1) { tma::body<tma::C128x256, false>(p); }
I8RT_ENTRY_GRID_CONST(gemm_tma_128x256_u8, TmaParams, tma::C128x256::THREADS, 1) { tma::body<tma::C128x256, true>(p); }
// (two blocks per SM: 96 KiB of shared memory each, registers held to 256 per thread pair)
I8RT_ENTRY_GRID_CONST(gemm_tma_64x128_d4_s8, TmaParams, tma::C64x128D4::THREADS, 2) { tma::body<tma::C64x128D4, false>(p); }
I8RT_ENTRY_GRID_CONST(gemm_tma_64x128_d4_u8, TmaParams, tma::C64x128D4::THREADS, 2) { tma::body<tma::C64x128D4, true>(p); }

// --- clustered tiles: each operand box read once per cluster, multicast to the blocks that share it
namespace tma {
//
// At 128 … 256 × 4096² on an H100 every kernel measured moved 46–94 MB through the L2 for 17 MB
// of weights and activations (bench/RESULTS.md, tenth session: cuBLASLt's own int8 kernel 46 MB,
// the crate's deep 64 × 64 tile 66 MB in 21.9 µs), each block reading its own copy of the X
// rows and W rows it shares with its neighbours. Here the blocks of a thread block cluster of
// CM × CN output tiles (CM along M, CN along N; launched as CM · CN consecutive blocks along x)
// share them through the TMA's multicast: the X box of a tile row is read once for the CN
// blocks of that row, the W box of a tile column once for the CM blocks of that column (64 ×
// 64 tiles in 2 × 2 clusters at 128 × 4096²: 32 MB instead of 64).
//
// Per block (rank r of its cluster: rm = r / CN, rn = r % CN):
// - its tile: cluster c = blockIdx.x / (CM · CN) covers tile rows CM · (c / ccols) … and tile
//   columns CN · (c % ccols) … (ccols = ⌈⌈N / BN⌉ / CN⌉ clusters per tile row; the host pads the
//   grid to whole clusters: a tile wholly past M or N loads the matrix's first rows instead and
//   stores nothing);
// - per stage a `full` mbarrier (1 arrival: its own thread 0, which expects the stage's bytes)
//   and an `empty` one that every warp of every block of the cluster arrives on (remote
//   arrivals), once that warp is done with the stage and a refill follows;
// - thread 0 of a block with rn = 0 issues the stage's X box to its tile row's blocks, thread 0
//   of a block with rm = 0 the W box to its tile column's blocks (a group of one: a plain
//   copy), each once its own `empty` barrier says every block of the cluster has released the
//   stage (so every receiver's `full` phase for it is done) — the stage read two steps before,
//   so that a peer a step behind does not stall it; each receiver expects the whole stage on
//   its own `full` barrier, whichever copy lands first;
// - the cluster synchronizes once, after the barriers' initialization (no copy may reach a peer
//   before its barriers exist); no block exits before its peers are done with it: every copy to
//   a block is one it waits for, and every remote arrival on it one its thread 0 waits for.
template <int BM_, int BN_, int STAGES_, int CM_, int CN_>
struct ClusterConfig : Config<BM_, BN_, STAGES_> {
    static constexpr int CM = CM_, CN = CN_, CLUSTER = CM_ * CN_;
    static_assert(CLUSTER >= 2 && CLUSTER <= 8, "a portable cluster of 2 … 8 blocks");
    static_assert(STAGES_ >= 3, "a stage refilled two steps after it was read, before it is needed");
};

template <class C, bool U8>
I8RT_INLINE void body_cluster(const TmaParams& tp) {
    check_launch_geometry(C::THREADS, C::SMEM, "gemm_tma (cluster)");
    griddep_launch_dependents();
    const MmaParams& q = tp.q;
    const GemmParams& p = q.g;
    const int tid = (int)threadIdx.x, lane = tid & 31, warp = tid >> 5, wgi = warp >> 2;
    const unsigned rank = cluster_rank();
    const int rm = (int)rank / C::CN, rn = (int)rank % C::CN;
    const int ccols = ((p.n + C::BN - 1) / C::BN + C::CN - 1) / C::CN;
    const int c = (int)blockIdx.x / C::CLUSTER;
    const int bm = (c / ccols * C::CM + rm) * C::BM, bn = (c % ccols * C::CN + rn) * C::BN;
    // The rows a padded tile (wholly past M or N: its results are never stored) loads instead:
    // the matrix's first, so that no box lies wholly outside its tensor (a case no GPU run of
    // the crate has shown the TMA's byte count for; the simulation refuses it).
    const int x_row = bm < p.m ? bm : 0, w_row = bn < p.n ? bn : 0;
    const tile::KTiles kts = tile::block_k_tiles<BK>(q);
    const int kt0 = kts.first, nkt = kts.count;
    const unsigned base = aligned_base();
    // The ranks a tile row's X box and a tile column's W box go to.
    const unsigned short x_mask = (unsigned short)(((1u << C::CN) - 1u) << (rm * C::CN));
    unsigned short w_mask = 0;
#pragma unroll
    for (int i = 0; i < C::CM; ++i) w_mask = (unsigned short)(w_mask | (1u << (i * C::CN + rn)));

    // k tile kt0 + i into stage i % STAGES (thread 0 only): `arm` expects the stage's bytes on
    // this block's `full` barrier; `issue_w` / `issue_x` send the boxes this block issues.
    auto arm = [&](int i) { mbar_arrive_expect_tx(C::full_bar(i % C::STAGES), (unsigned)C::STAGE_BYTES); };
    auto issue_w = [&](int i) {
        if (rm != 0) return;
        const int s = i % C::STAGES;
        const unsigned at = base + (unsigned)(s * C::STAGE_BYTES + C::A_BYTES);
        if (C::CM == 1) tma_load_2d(at, &tp.w, (kt0 + i) * BK, w_row, C::full_bar(s));
        else tma_load_2d_multicast(at, &tp.w, (kt0 + i) * BK, w_row, C::full_bar(s), w_mask);
    };
    auto issue_x = [&](int i) {
        if (rn != 0) return;
        const int s = i % C::STAGES;
        const unsigned at = base + (unsigned)(s * C::STAGE_BYTES);
        if (C::CN == 1) tma_load_2d(at, &tp.x, (kt0 + i) * BK, x_row, C::full_bar(s));
        else tma_load_2d_multicast(at, &tp.x, (kt0 + i) * BK, x_row, C::full_bar(s), x_mask);
    };
    // (every warp of every block of the cluster releases each stage)
    init_barriers<C>(tid, C::WARPS * C::CLUSTER);
    cluster_sync();
    // (every copy to a flagged block is a prologue's: no block issues more before the loop)
    auto arm_issue_w = [&](int i) {
        arm(i);
        issue_w(i);
    };
    if (!start_stages<C>(p, tid, nkt, arm_issue_w, issue_x)) return;

    int acc[1][C::NT][4];
    zero_acc(acc);

    const unsigned a_addr = smem_window(base) + (unsigned)(wgi * 64 * BK);
    const unsigned b_addr = smem_window(base) + (unsigned)C::A_BYTES;
    for (int i = 0; i < nkt; ++i) {
        const int s = i % C::STAGES;
        mbar_wait(C::full_bar(s), (unsigned)(i / C::STAGES) & 1u);
        wgmma_stage128<C::BN, U8>(acc, a_addr, b_addr, (unsigned)(s * C::STAGE_BYTES));
        // Step i − 1's wgmma are complete: its stage is released to the whole cluster, but only
        // when a refill follows (the same steps in every block: one split, one k range), so
        // every remote arrival is one that its block waits for. Thread 0 refills the stage of
        // step i − 2, released a step ago: a peer running up to a step behind does not hold
        // this block's warpgroup (whose wgmma wait for thread 0) at the wait.
        const bool release = i >= 1 && i - 1 + C::STAGES < nkt;
        const bool refill = i >= 2 && i - 2 + C::STAGES < nkt;
        if (!release && !refill) continue;
        __syncwarp();
        if (release && lane == 0)
#pragma unroll
            for (int r = 0; r < C::CLUSTER; ++r) mbar_arrive_cluster(C::empty_bar((i - 1) % C::STAGES), (unsigned)r);
        if (refill && tid == 0) {
            mbar_wait(C::empty_bar((i - 2) % C::STAGES), (unsigned)((i - 2) / C::STAGES) & 1u);
            arm(i - 2 + C::STAGES);
            issue_w(i - 2 + C::STAGES);
            issue_x(i - 2 + C::STAGES);
        }
        __syncwarp();
    }
    wgmma_wait<0>();
    wgmma_pin(acc);

    tile::finish<1, C::NT, C::THREADS>(q, acc, bm + warp * 16, bn);
}

// BM × BN, stages, CM × CN blocks per cluster.
using C64x64M2N2 = ClusterConfig<64, 64, 6, 2, 2>;
using C128x64M2N2 = ClusterConfig<128, 64, 4, 2, 2>;
using C64x64N4 = ClusterConfig<64, 64, 6, 1, 4>;

}  // namespace tma

// (two blocks per SM: 97 KiB of shared memory each)
I8RT_ENTRY_CLUSTER(gemm_tmc_64x64_m2n2_s8, TmaParams, tma::C64x64M2N2::THREADS, 2, 4) { tma::body_cluster<tma::C64x64M2N2, false>(p); }
I8RT_ENTRY_CLUSTER(gemm_tmc_64x64_m2n2_u8, TmaParams, tma::C64x64M2N2::THREADS, 2, 4) { tma::body_cluster<tma::C64x64M2N2, true>(p); }
I8RT_ENTRY_CLUSTER(gemm_tmc_128x64_m2n2_s8, TmaParams, tma::C128x64M2N2::THREADS, 2, 4) { tma::body_cluster<tma::C128x64M2N2, false>(p); }
I8RT_ENTRY_CLUSTER(gemm_tmc_128x64_m2n2_u8, TmaParams, tma::C128x64M2N2::THREADS, 2, 4) { tma::body_cluster<tma::C128x64M2N2, true>(p); }
I8RT_ENTRY_CLUSTER(gemm_tmc_64x64_n4_s8, TmaParams, tma::C64x64N4::THREADS, 2, 4) { tma::body_cluster<tma::C64x64N4, false>(p); }
I8RT_ENTRY_CLUSTER(gemm_tmc_64x64_n4_u8, TmaParams, tma::C64x64N4::THREADS, 2, 4) { tma::body_cluster<tma::C64x64N4, true>(p); }

// The TMA probe (src/cuda/tma_probe.rs; tests only): thread 0 loads one box of the map into
// shared memory at the 1024-byte aligned base, every thread waits for it, and the block copies
// the box's bytes as they landed to `out` — what the hardware's swizzle, zero fill and
// transaction count are, compared with the simulation's (sim.h) and the ISA's layout.
namespace tma {
constexpr int PROBE_THREADS = 128;
I8RT_INLINE void probe(const TmaProbeParams& p) {
    const unsigned base = aligned_base();
    const unsigned bar = base + (unsigned)p.box_bytes;
    const int tid = (int)threadIdx.x;
    if (tid == 0) {
        mbar_init(bar, 1);
        mbar_init_fence();
    }
    block_sync();
    if (tid == 0) {
        mbar_arrive_expect_tx(bar, (unsigned)p.box_bytes);
        tma_load_2d(base, &p.map, p.c0, p.c1, bar);
    }
    mbar_wait(bar, 0);
    const unsigned char* sm = dyn_smem() + base;
    for (int i = tid; i < p.box_bytes; i += PROBE_THREADS) p.out[i] = sm[i];
}
}  // namespace tma

I8RT_ENTRY_GRID_CONST(tma_probe, TmaProbeParams, tma::PROBE_THREADS, 1) { tma::probe(p); }
