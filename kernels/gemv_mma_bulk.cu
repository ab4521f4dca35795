// kernels/gemv_mma_bulk.cu — the decode GEMV (8, 16 or 32 activation rows per block row) with its
// weights brought into shared memory by bulk asynchronous copies (sm_90: `cp.async.bulk`
// completing on an mbarrier) instead of register loads. The product, the fragment order and the
// epilogue are kernels/gemv_mma.cu's (Yᵀ = W · Xᵀ, W the mma's A operand; kernels/gemv.cuh);
// what differs is how the weights travel. Nsight Compute found the register-fed GEMV
// latency-bound on an H100 (51 % of DRAM throughput at 1 × 4096², its bytes in flight limited
// by registers and warps: bench/RESULTS.md, 2026-11-26); here the bytes in flight are a
// shared-memory ring's, independent of both. Forced (`GemvVariant::Bulk`) until measured.
// I8RT_MIN_ARCH 90
//
// Per block (8 warps, 16 weight rows, the DESIGN.md §1 epilogue fused):
// - the weights' K range goes in chunks of 1 KiB per row (512 bytes for 32 activation rows); a
//   ring of 4 stages (8) holds that many chunks of the block's 16 rows (rows at a pitch of the
//   chunk + 64 bytes, so the 16-byte reads of rows g and g + 1 fall in different bank groups:
//   no conflicts). Thread 0 is the producer: for a chunk it
//   arms the stage's `full` mbarrier with the bytes to come and issues one bulk copy per weight
//   row (rows past N are not copied; their results are never stored); the ring's first 4 chunks
//   go out before anything else, ahead of the wait for the previous kernel (overlapped launch);
// - every warp takes steps w (and w + 8) of each chunk's 64-byte steps: it waits for the
//   stage's `full` phase, reads lane (g, t)'s 16 bytes of rows g and g + 8 from the stage and 16
//   bytes of activation row g of each n8 tile from global memory (prefetched a chunk ahead; the step that
//   crosses K with byte guards, so the weight bytes past K — padding, or a stage's older
//   contents — meet zeros), runs the step's two m16n8k32, and arrives on the stage's `empty`
//   mbarrier; the producer refills a stage once all 8 warps have arrived;
// - the warps' sums meet and the epilogue runs as in the GEMV (gemv::reduce_store).
#include "gemv.cuh"

namespace bulk {

using gemv::BN;
using gemv::STEP;

constexpr int WARPS = 8;
constexpr int THREADS = 32 * WARPS;
// The ring for MT n8 tiles of activation rows: 4 stages of 1 KiB chunks (2 steps per warp and
// chunk); for MT = 4, whose activations double-buffered for 2 steps would not fit in 128
// registers, 8 stages of 512-byte chunks (1 step per warp and chunk) — the same bytes in flight.
template <int MT>
struct Ring {
    static constexpr int CHUNK = MT == 4 ? 512 : 1024;  // K bytes of each weight row per stage
    static constexpr int STAGES = MT == 4 ? 8 : 4;
    static constexpr int STEPS = CHUNK / STEP;          // warp steps per chunk
    static constexpr int SPW = STEPS / WARPS;           // of them per warp
    static constexpr int PITCH = CHUNK + 64;            // a row's place in a stage
    static constexpr int STAGE_BYTES = BN * PITCH;
    static constexpr int BARS = STAGES * STAGE_BYTES;   // the `full` mbarriers, then the `empty` ones
    static constexpr int SMEM = BARS + 2 * STAGES * 8;  // dynamic shared memory (ops.rs: bulk_smem)
    static_assert(STEPS % WARPS == 0 && CHUNK % 16 == 0 && PITCH % 128 == 64, "ring geometry");
    static I8RT_INLINE unsigned full_bar(int s) { return (unsigned)(BARS + 8 * s); }
    static I8RT_INLINE unsigned empty_bar(int s) { return (unsigned)(BARS + 8 * (STAGES + s)); }
};

// MT n8 tiles of activation rows per block row (8 MT rows: kernels m8, m16, m32).
template <int MT, bool U8>
I8RT_INLINE void body(const GemmParams& p) {
    using R = Ring<MT>;
    constexpr int CHUNK = R::CHUNK, STAGES = R::STAGES, SPW = R::SPW, PITCH = R::PITCH;
    constexpr int STAGE_BYTES = R::STAGE_BYTES;
    __shared__ int red[WARPS][MT * 4][32];
    check_launch_geometry(THREADS, R::SMEM, "gemv_mma_bulk");
    const int tid = (int)threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int bn = (int)blockIdx.x * BN, bm = (int)blockIdx.y * (8 * MT);

    // Bytes of each row to copy (K rounded up to 16: inside the row, whose stride is a multiple
    // of 16) and the chunks they make.
    const int kc = (p.k + 15) & ~15;
    const int chunks = (kc + CHUNK - 1) / CHUNK;
    const int rows = p.n - bn < BN ? p.n - bn : BN;
    const unsigned char* wb = reinterpret_cast<const unsigned char*>(p.w) + (long long)bn * p.ldb;

    auto issue = [&](int c) {
        const int s = c % STAGES;
        const int k0 = c * CHUNK;
        const unsigned len = (unsigned)(kc - k0 < CHUNK ? kc - k0 : CHUNK);
        mbar_arrive_expect_tx(R::full_bar(s), len * (unsigned)rows);
        for (int r = 0; r < rows; ++r)
            bulk_copy_g2s((unsigned)(s * STAGE_BYTES + r * PITCH), wb + (long long)r * p.ldb + k0, len, R::full_bar(s));
    };

    if (tid == 0) {
        for (int s = 0; s < STAGES; ++s) {
            mbar_init(R::full_bar(s), 1);
            mbar_init(R::empty_bar(s), WARPS);
        }
        mbar_init_fence();
    }
    block_sync();
    griddep_launch_dependents();
    if (tid == 0)
        for (int c = 0; c < chunks && c < STAGES; ++c) issue(c);
    // Launched overlapped (sm_90), this kernel may start while the one that writes X, the
    // activation scales and the status word is still running: everything below reads them, or
    // writes Y. The weights (immutable) are already on their way.
    griddep_wait();

    // Activation row g of each n8 tile j (row bm + 8 j + g), at byte 16 t of a step.
    bool x_ok[MT];
    const unsigned char* xp[MT];
#pragma unroll
    for (int j = 0; j < MT; ++j) {
        const int r = bm + 8 * j + g;
        x_ok[j] = r < p.m;
        xp[j] = static_cast<const unsigned char*>(p.x) + (long long)(x_ok[j] ? r : 0) * p.lda + 16 * t;
    }
    const long long x_end = (long long)p.k - 16 * t;  // bytes of this thread's rows below K, from xp
    const int4 zero = {0, 0, 0, 0};
    // The activations at this warp's steps of chunk c (zeros past K and for rows past M).
    auto load_x = [&](int4 (&x)[SPW][MT], int c) {
#pragma unroll
        for (int i = 0; i < SPW; ++i) {
            const long long o = (long long)c * CHUNK + (long long)(warp + WARPS * i) * STEP;
#pragma unroll
            for (int j = 0; j < MT; ++j) x[i][j] = x_ok[j] && o < p.k ? gemv::load_guarded(xp[j], o, x_end) : zero;
        }
    };

    int acc[1][MT][4];
#pragma unroll
    for (int j = 0; j < MT; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[0][j][e] = 0;
    int4 xc[SPW][MT], xn[SPW][MT] = {};
    if (chunks > 0) load_x(xc, 0);
    for (int c = 0; c < chunks; ++c) {
        const int s = c % STAGES;
        const unsigned parity = (unsigned)(c / STAGES) & 1u;
        if (c + 1 < chunks) load_x(xn, c + 1);
        mbar_wait(R::full_bar(s), parity);
        __syncwarp();  // (the lanes leave the wait's loop together: mma.sync is warp-collective)
#pragma unroll
        for (int i = 0; i < SPW; ++i) {
            const int step = warp + WARPS * i;
            if ((long long)c * CHUNK + (long long)step * STEP >= p.k) continue;  // (warp-uniform)
            const unsigned at = (unsigned)(s * STAGE_BYTES + step * STEP + 16 * t);
            const int4 w0 = lds_v4(at + (unsigned)(g * PITCH));
            const int4 w1 = lds_v4(at + (unsigned)((g + 8) * PITCH));
            gemv::step_mma<MT, U8>(acc, w0, w1, xc[i]);
        }
        // This warp is done with the stage; once all 8 are, the producer may refill it.
        __syncwarp();
        if (lane == 0) mbar_arrive(R::empty_bar(s));
        if (tid == 0 && c + STAGES < chunks) {
            mbar_wait(R::empty_bar(s), parity);
            issue(c + STAGES);
        }
        __syncwarp();  // (warp 0's lanes wait for their producer before the next mma)
#pragma unroll
        for (int i = 0; i < SPW; ++i)
#pragma unroll
            for (int j = 0; j < MT; ++j) xc[i][j] = xn[i][j];
    }
    gemv::reduce_store<MT, WARPS>(p, red, acc, bn, bm);
}

}  // namespace bulk

I8RT_ENTRY(gemv_mma_bulk_m8_s8, GemmParams, bulk::THREADS) { bulk::body<1, false>(p); }
I8RT_ENTRY(gemv_mma_bulk_m8_u8, GemmParams, bulk::THREADS) { bulk::body<1, true>(p); }
I8RT_ENTRY(gemv_mma_bulk_m16_s8, GemmParams, bulk::THREADS) { bulk::body<2, false>(p); }
I8RT_ENTRY(gemv_mma_bulk_m16_u8, GemmParams, bulk::THREADS) { bulk::body<2, true>(p); }
// (m32 held to 128 registers, two blocks per SM)
I8RT_ENTRY_MIN_BLOCKS(gemv_mma_bulk_m32_s8, GemmParams, bulk::THREADS, 2) { bulk::body<4, false>(p); }
I8RT_ENTRY_MIN_BLOCKS(gemv_mma_bulk_m32_u8, GemmParams, bulk::THREADS, 2) { bulk::body<4, true>(p); }
