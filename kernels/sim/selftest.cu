// kernels/sim/selftest.cu — kernels that test the simulation itself (compiled into the
// simulation library only, not by NVRTC): the warp shuffles against the CUDA programming guide's
// description of __shfl_sync / __shfl_up_sync / __shfl_down_sync / __shfl_xor_sync, including
// sub-warp widths; ldmatrix, mma.sync, cp.async and wgmma against the PTX ISA's layouts.
// src/cuda/sim_tests.rs and sim_mma_tests.rs compute the expected values independently.
#include "../common.cuh"
#include "../wgmma.cuh"

struct ShflTestParams {
    unsigned* out;  // [threads][4]: idx, up, down, xor
    int width;
    int delta;
};

I8RT_ENTRY(sim_selftest_shfl, ShflTestParams, 64) {
    const unsigned tid = threadIdx.x;
    const unsigned v = 1000u * (tid / 32) + 10u * (tid % 32) + 1u;
    const unsigned full = 0xffffffffu;
    p.out[tid * 4 + 0] = __shfl_sync(full, v, (int)((tid % 32) * 3 + p.delta), p.width);
    p.out[tid * 4 + 1] = __shfl_up_sync(full, v, (unsigned)p.delta, p.width);
    p.out[tid * 4 + 2] = __shfl_down_sync(full, v, (unsigned)p.delta, p.width);
    p.out[tid * 4 + 3] = __shfl_xor_sync(full, v, p.delta, p.width);
}

// Barriers: 64 threads. mode 0 — every thread shuffles within its warp, then __syncthreads(),
// then writes out[tid] = the value from the lane above + 1; mode 1 — thread 0 shuffles while
// the others wait at __syncthreads() (a deadlock: the shuffle waits for 31 lanes that never
// come); mode 2 — thread 0 waits at __syncthreads() while the others return (divergent).
struct BarrierTestParams {
    unsigned* out;  // [64]
    int mode;
};

I8RT_ENTRY(sim_selftest_barriers, BarrierTestParams, 64) {
    const unsigned tid = threadIdx.x;
    if (p.mode == 1) {
        if (tid == 0) (void)__shfl_sync(0xffffffffu, tid, 1);
        __syncthreads();
        return;
    }
    if (p.mode == 2) {
        if (tid == 0) __syncthreads();
        return;
    }
    const unsigned v = __shfl_sync(0xffffffffu, tid, (int)((tid + 1) % 32));
    __syncthreads();
    p.out[tid] = v + 1;
}

// ldmatrix: the dynamic shared memory is filled from `init` (`bytes` bytes), each lane supplies
// the row offset `rows[lane]`, and `num` (1, 2 or 4) selects .x1 / .x2 / .x4; the registers go
// to out[lane * 4 + m]. Two instructions are issued in one batch (the second with the row
// offsets rotated by one lane) to exercise batching: out2 receives the second's registers.
struct LdsmTestParams {
    const unsigned char* init;
    const unsigned* rows;  // [32]
    unsigned* out;         // [32][4]
    unsigned* out2;        // [32][4]
    int bytes;
    int num;
};

template <int X>
static void ldsm_selftest(const LdsmTestParams& p) {
    const unsigned lane = threadIdx.x;
    unsigned r[2][X];
    const unsigned rows[2] = {p.rows[lane], p.rows[(lane + 1) % 32]};
    ldsm<X, 2>(r, rows);
    for (int m = 0; m < X; ++m) {
        p.out[lane * 4 + m] = r[0][m];
        p.out2[lane * 4 + m] = r[1][m];
    }
}

I8RT_ENTRY(sim_selftest_ldmatrix, LdsmTestParams, 32) {
    unsigned char* s = dyn_smem();
    for (int i = (int)threadIdx.x; i < p.bytes; i += 32) s[i] = p.init[i];
    __syncthreads();
    if (p.num == 1) ldsm_selftest<1>(p);
    if (p.num == 2) ldsm_selftest<2>(p);
    if (p.num == 4) ldsm_selftest<4>(p);
}

// mma.sync.m16n8k32: lane L's fragment registers come from the host in the layout the host
// computed from the PTX ISA (a[L][4], b[L][2], c[L][4]); d[L][4] receives D. `tiles` = 1 runs one
// instruction, 6 runs a batch of 2 × 3 (A fragments i, B fragments j: a[L][i], b[L][j], c / d
// [L][i][j]), which must equal six separate instructions. `mode` bit 0: through sm_75's four
// m8n8k16 (common.cuh `mma_16832_by_8816`) instead; bit 1: B unsigned (A is then signed).
struct MmaTestParams {
    const unsigned* a;  // [32][2][4]
    const unsigned* b;  // [32][3][2]
    const int* c;       // [32][2][3][4]
    int* d;             // [32][2][3][4]
    int u8;
    int tiles;
    int mode;
};

template <int MT, int NT, bool U8, bool B_U8, bool VIA_8816>
static void mma_selftest(const MmaTestParams& p) {
    const unsigned lane = threadIdx.x;
    unsigned a[MT][4], b[NT][2];
    int acc[MT][NT][4];
    for (int i = 0; i < MT; ++i)
        for (int r = 0; r < 4; ++r) a[i][r] = p.a[(lane * 2 + i) * 4 + r];
    for (int j = 0; j < NT; ++j)
        for (int r = 0; r < 2; ++r) b[j][r] = p.b[(lane * 3 + j) * 2 + r];
    for (int i = 0; i < MT; ++i)
        for (int j = 0; j < NT; ++j)
            for (int e = 0; e < 4; ++e) acc[i][j][e] = p.c[((lane * 2 + i) * 3 + j) * 4 + e];
    if constexpr (VIA_8816) {
        mma_16832_by_8816<MT, NT, U8, B_U8>(acc, a, b);
    } else {
        mma_16832<MT, NT, U8, B_U8>(acc, a, b);
    }
    for (int i = 0; i < MT; ++i)
        for (int j = 0; j < NT; ++j)
            for (int e = 0; e < 4; ++e) p.d[((lane * 2 + i) * 3 + j) * 4 + e] = acc[i][j][e];
}

template <int MT, int NT>
static void mma_selftest_types(const MmaTestParams& p) {
    const bool via = p.mode & 1, b_u8 = p.mode & 2;
    if (p.u8 && via) mma_selftest<MT, NT, true, false, true>(p);
    else if (p.u8) mma_selftest<MT, NT, true, false, false>(p);
    else if (b_u8 && via) mma_selftest<MT, NT, false, true, true>(p);
    else if (b_u8) mma_selftest<MT, NT, false, true, false>(p);
    else if (via) mma_selftest<MT, NT, false, false, true>(p);
    else mma_selftest<MT, NT, false, false, false>(p);
}

I8RT_ENTRY(sim_selftest_mma, MmaTestParams, 32) {
    if (p.tiles == 1) mma_selftest_types<1, 1>(p);
    else mma_selftest_types<2, 3>(p);
}

// cp.async: three commit groups, each copying 16 bytes per lane from src into its own slot of
// shared memory ([group][lane][16]); group 0 with src_bytes[lane] (0..16, the rest zero-filled).
// After wait_group 2, 1 and 0 each lane copies its three slots to out[step][group][lane][16], so
// the host sees which groups had landed when (the simulation's late mode lands them exactly at
// the wait that completes them; untouched shared memory reads 0xCD).
struct CpAsyncTestParams {
    const unsigned char* src;  // [3][32][16]
    const int* src_bytes;      // [32]
    unsigned char* out;        // [3][3][32][16]
};

I8RT_ENTRY(sim_selftest_cp_async, CpAsyncTestParams, 32) {
    const unsigned lane = threadIdx.x;
    for (int grp = 0; grp < 3; ++grp) {
        cp_async_16((unsigned)((grp * 32 + lane) * 16), p.src + (grp * 32 + lane) * 16, grp == 0 ? p.src_bytes[lane] : 16);
        cp_async_commit();
    }
    const unsigned char* s = dyn_smem();
    auto snapshot = [&](int step) {
        for (int grp = 0; grp < 3; ++grp)
            for (int b = 0; b < 16; ++b)
                p.out[((step * 3 + grp) * 32 + lane) * 16 + b] = s[(grp * 32 + lane) * 16 + b];
    };
    cp_async_wait<2>();
    snapshot(0);
    cp_async_wait<1>();
    snapshot(1);
    cp_async_wait<0>();
    snapshot(2);
}

// wgmma.mma_async m64n128k32 (u8 × s8 when `a_u8`): one warpgroup copies `bytes` bytes of
// `init` (16-byte aligned) into dynamic shared memory at offset `at` with cp.async, and issues
// one instruction with the host's raw descriptors; out[tid * 64 + i] receives accumulator i
// (which starts at `c0`, or is overwritten when !accumulate). `mode` leaves one step out, to
// show that the emulation refuses it: 1 the wgmma.fence, 2 the fence.proxy.async, 3 the
// wait_group (the block exits with the instruction in flight).

struct WgmmaTestParams {
    const unsigned char* init;
    int* out;  // [128][64]
    unsigned long long da, db;
    int bytes, at, c0, accumulate, a_u8, mode;
};

template <bool U8>
static void wgmma_selftest(const WgmmaTestParams& p) {
    int d[1][16][4];
    for (int j = 0; j < 16; ++j)
        for (int e = 0; e < 4; ++e) d[0][j][e] = p.c0;
    if (p.mode != 1) wgmma_fence();
    wgmma_m64k32<128, U8>(d, p.da, p.db, p.accumulate);
    wgmma_commit();
    if (p.mode == 3) return;
    wgmma_wait<0>();
    for (int j = 0; j < 16; ++j)
        for (int e = 0; e < 4; ++e) p.out[threadIdx.x * 64 + 4 * j + e] = d[0][j][e];
}

I8RT_ENTRY(sim_selftest_wgmma, WgmmaTestParams, 128) {
    for (int i = 16 * (int)threadIdx.x; i < p.bytes; i += 16 * 128) cp_async_16((unsigned)(p.at + i), p.init + i, 16);
    cp_async_commit();
    cp_async_wait<0>();
    if (p.mode != 2) fence_proxy_async();
    __syncthreads();
    if (p.a_u8) {
        wgmma_selftest<true>(p);
    } else {
        wgmma_selftest<false>(p);
    }
}

// Thread block clusters: clusters of 4 blocks along x. Every block's thread 0 initializes three
// mbarriers past a 1024-byte aligned box area (`full`: 1 arrival; `done`: one arrival per block
// of the cluster; `go`: 1 arrival), then the cluster synchronizes (`cluster_sync`).
// - mode 0: each block whose rank is in `mask` expects one box; rank 0's thread 0 multicasts the
//   box of `map` at (c0, c1) to `mask`; those blocks copy what landed to out[blockIdx.x]. Then
//   every block's thread 0 arrives on `done` of every block of the cluster (remote arrivals),
//   each block waits for its own `done` and writes done[blockIdx.x] = 1 + rank;
// - mode 1: rank 0 arrives on rank 1's `go` and ends; rank 1 waits for `go`, then arrives on
//   rank 0's `done` — after rank 0 has ended (with one thread per block, rank 0's last thread
//   marks it ended before rank 1 can run again), which the simulation refuses;
// - mode 2: rank 0 multicasts to a mask naming rank 4 (outside the cluster);
// - mode 3: rank 0 arrives at an offset of rank 1 holding no mbarrier.
struct ClusterTestParams {
    TmaMap map;
    unsigned char* out;  // [grid x][box_rows · 128]
    unsigned* done;      // [grid x]
    int c0, c1;
    int box_rows;
    unsigned mask;
    int mode;
    int pad[55];  // (384 bytes: TmaMap's 128-byte alignment)
};

I8RT_ENTRY_CLUSTER(sim_selftest_cluster, ClusterTestParams, 64, 1, 4) {
    const unsigned tid = threadIdx.x, rank = cluster_rank();
    const unsigned base = (unsigned)(1024 - (int)(smem_window(0) % 1024)) % 1024;
    const unsigned box = (unsigned)p.box_rows * 128u;
    const unsigned full = base + box, done = full + 8, go = full + 16;
    if (tid == 0) {
        mbar_init(full, 1);
        mbar_init(done, 4);
        mbar_init(go, 1);
        mbar_init_fence();
    }
    cluster_sync();
    if (p.mode == 1) {
        if (rank == 0 && tid == 0) mbar_arrive_cluster(go, 1);
        if (rank == 1) {
            mbar_wait(go, 0);
            if (tid == 0) mbar_arrive_cluster(done, 0);
        }
        return;
    }
    if (p.mode == 2 || p.mode == 3) {
        if (rank == 0 && tid == 0) {
            if (p.mode == 2) tma_load_2d_multicast(base, &p.map, p.c0, p.c1, full, 0x11);
            else mbar_arrive_cluster(full + 64, 1);
        }
        cluster_sync();
        return;
    }
    const bool mine = (p.mask >> rank & 1u) != 0;
    if (tid == 0 && mine) mbar_arrive_expect_tx(full, box);
    if (tid == 0 && rank == 0) tma_load_2d_multicast(base, &p.map, p.c0, p.c1, full, (unsigned short)p.mask);
    if (mine) {
        mbar_wait(full, 0);
        for (unsigned i = tid; i < box; i += blockDim.x) p.out[(size_t)blockIdx.x * box + i] = dyn_smem()[base + i];
    }
    if (tid == 0)
        for (unsigned r = 0; r < 4; ++r) mbar_arrive_cluster(done, r);
    mbar_wait(done, 0);
    if (tid == 0) p.done[blockIdx.x] = 1 + rank;
}
