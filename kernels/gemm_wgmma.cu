// kernels/gemm_wgmma.cu — the int8 GEMM on Hopper's warpgroup tensor-core instructions
// (`wgmma.mma_async`, sm_90a only) with the DESIGN.md §1 epilogue fused: Y[m, n] =
// epilogue(X[m, k] · W[n, k]ᵀ), X s8 or u8, W s8, both K-contiguous with 16-byte-aligned rows
// (the host checks). The large-shape sibling of gemm_mma.cu: `mma.sync` on sm_90 issues from the
// warps' registers at a fraction of the tensor cores' rate, `wgmma` reads both operands from
// shared memory itself and runs asynchronously while the warps issue the next stage's copies.
// I8RT_MIN_ARCH 90a
//
// Block tiles (the host's MmaTile::Wgmma…; forced-only until measured):
//   gemm_wgmma_128x256  BM 128, BN 256, 2 warpgroups (each 64 rows × 256), 4 stages, 193 KiB
//   gemm_wgmma_128x128  BM 128, BN 128, 2 warpgroups (each 64 rows × 128), 4 stages, 129 KiB
//   gemm_wgmma_64x256   BM 64,  BN 256, 1 warpgroup, 4 stages, 161 KiB
//   gemm_wgmma_64x128   BM 64,  BN 128, 1 warpgroup, 4 stages, 97 KiB (two blocks per SM)
//   gemm_wgmma_128x128_d3  BM 128, BN 128, 2 warpgroups, 3 stages, 97 KiB: two blocks per SM, so
//                       one block's epilogue and pipeline ramp overlap the other's main loop
//   gemm_wgmma_64x64    BM 64,  BN 64,  1 warpgroup, 6 stages, 97 KiB (two blocks per SM)
//   gemm_wgmma_128x64   BM 128, BN 64,  2 warpgroups, 4 stages, 97 KiB (two blocks per SM)
// each for s8 and u8 activations. The 64-row tiles are for 64 … 256 activation rows, where the
// weights stream once and twice the blocks of the 128-row tiles keep more of them in flight.
// The two 64-column tiles are the deep `mma.sync` tiles' shapes (gemm_mma.cu: those of the
// CUTLASS kernels cuBLASLt runs at 64 … 256 × 4096² on an H100) on Hopper's own instruction:
// the deep 64 × 64 `mma.sync` tile was found issue-bound there (bench/RESULTS.md, 2026-11-26,
// tenth session: 32 `mma` and 16 `ldmatrix` of a stage per warp, 182 instructions then, 80 now,
// one warp per scheduler); a `wgmma` stage is four asynchronous tensor-core instructions per
// warp, no `ldmatrix`, and its copies — whose row addresses these two hold in registers
// (Config's HOLD), as the deep tiles do, copying without predicates in the steady state.
//
// Per block:
// - the output tile comes from tile.cuh's grouped order (8 tile rows per group), so the blocks
//   resident at once share operand tiles in L2 at large shapes;
// - k advances in stages of BK = 128 bytes (one 128-byte swizzle row per operand row).
//   `cp.async` (tile.cuh's StageLoader) copies the X rows (A, BM × 128 B) and W rows (B,
//   BN × 128 B) of a stage into shared memory with chunk c of row r at c ^ (r & 7): the layout
//   wgmma's 128-byte swizzle mode reads, given operand tiles whose base is 1024-byte aligned in
//   the shared window (the block rounds its base up; the host reserves 1 KiB for that). The one
//   k tile that can reach past K is loaded first, zero-filled past K and past the M / N edges;
// - the pipeline keeps STAGES − 2 stages of copies and one stage of wgmma in flight. Step i:
//   wait for stage i's copies, `fence.proxy.async` (cp.async writes through the generic proxy,
//   wgmma reads through the async one), barrier — after which stage i is visible to every
//   warpgroup and every warpgroup has finished stage i − 2 (its wgmma_wait<1> of step i − 1) —
//   then issue the copies of stage i + STAGES − 2 into stage i − 2's buffers, and per 32 k bytes
//   one `wgmma.m64nBNk32` per warpgroup (A: the warpgroup's 64 rows, B: all BN rows), commit,
//   and wait until only this step's group is in flight;
// - the accumulators are laid out as BN / 8 `mma.m16n8k32` C fragments per warp (warp w's 16 rows
//   at 16 w of the block tile), so the block ends as gemm_mma.cu's do: tile.cuh `finish` (split-K
//   partial sums, then the epilogue through shared-memory staging rows).
#include "tile.cuh"
#include "wgmma.cuh"

namespace wg {

constexpr int BK = 128;  // k bytes per stage (one 128-byte swizzle row)
constexpr int ALIGN = 1024;  // operand tiles' alignment in the shared window (8 swizzle rows)
static_assert(BK == 128 && ALIGN == 1024, "the stage wgmma_stage128 runs (wgmma.cuh)");
constexpr int RASTER_GROUP = 8;  // tile rows per group of the block order (tile.cuh grouped_tile)

// HOLD: the copy rows' global addresses held in registers (tile::OperandLoader), one add a copy.
template <int BM_, int BN_, int STAGES_, bool HOLD_ = false>
struct Config {
    static constexpr int BM = BM_, BN = BN_, STAGES = STAGES_;
    static constexpr bool HOLD = HOLD_;
    static constexpr int WARPGROUPS = BM / 64;
    static constexpr int THREADS = 128 * WARPGROUPS;
    static constexpr int NT = BN / 8;  // 16 × 8 C fragments per warp
    static constexpr int A_BYTES = BM * BK, STAGE_BYTES = (BM + BN) * BK;
    static constexpr int SMEM = STAGES * STAGE_BYTES + ALIGN;
    static_assert(BM == 64 || BM == 128, "one or two warpgroups of 64 rows");
    static_assert(STAGES >= 3, "one stage in the tensor cores, one landing, one being copied");
    static_assert(A_BYTES % ALIGN == 0 && STAGE_BYTES % ALIGN == 0, "every operand tile 1024-byte aligned");
    static_assert(tile::FLAG_OFFSET<THREADS, BN> + 4 <= SMEM, "the epilogue's staging fits in the pipeline's memory");
};

using C128x256 = Config<128, 256, 4>;
using C128x128 = Config<128, 128, 4>;
using C64x256 = Config<64, 256, 4>;
using C64x128 = Config<64, 128, 4>;
using C128x128D3 = Config<128, 128, 3>;
using C64x64 = Config<64, 64, 6, true>;
using C128x64 = Config<128, 64, 4, true>;

// This thread's share of a stage's copies (tile.cuh), laid out as the Config says.
template <class C>
using StageLoader = tile::StageLoader<C::THREADS, C::BM, C::BN, BK, C::HOLD>;

template <class C, bool U8>
I8RT_INLINE void body(const MmaParams& q) {
    check_launch_geometry(C::THREADS, C::SMEM, "gemm_wgmma");
    const GemmParams& p = q.g;
    if (p.status && p.status->count != 0) return;  // the input had NaN/inf: the host reports it
    const int warp = (int)threadIdx.x >> 5, wgi = warp >> 2;
    const tile::TileRC rc = tile::grouped_tile<RASTER_GROUP>();
    const int bm = rc.row * C::BM, bn = rc.col * C::BN;
    const tile::KTiles kts = tile::block_k_tiles<BK>(q);
    const int kt0 = kts.first, kt1 = kts.end, nkt = kts.count;
    // The operand tiles start at the first 1024-byte boundary of the shared window.
    const unsigned base = (unsigned)(ALIGN - (int)(smem_window(0) % ALIGN)) % ALIGN;

    int acc[1][C::NT][4];
#pragma unroll
    for (int j = 0; j < C::NT; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[0][j][e] = 0;

    static_assert(StageLoader<C>::STAGE_BYTES == C::STAGE_BYTES && StageLoader<C>::A_BYTES == C::A_BYTES,
                  "one stage layout");
    StageLoader<C> ld;
    ld.init(p, bm, bn);

    // Load order as in gemm_mma.cu: the block's last k tile first (the only one that may reach
    // past K), then the others from the first: kt(0) = kt1 − 1, kt(i) = kt0 + i − 1.
    // Prologue: STAGES − 2 stages in flight (one commit group each, empty past the end).
#pragma unroll
    for (int s = 0; s < C::STAGES - 2; ++s) {
        if (s == 0 && nkt > 0) ld.template load<false>(base, 0, kt1 - 1, p.k);
        if (s > 0 && s < nkt) ld.template load<true>(base, s, kt0 + s - 1, p.k);
        cp_async_commit();
    }
    // Descriptor addresses: the warpgroup's 64 rows of A, all BN rows of B; 8-row groups 1024
    // bytes apart; + 32 bytes per k step inside the swizzle row.
    // (one warpgroup: no term of the thread index, so the compiler keeps every descriptor in
    // uniform registers instead of moving it there from per-thread ones each stage)
    const unsigned a_addr = smem_window(base) + (C::WARPGROUPS == 1 ? 0u : (unsigned)(wgi * 64 * BK));
    const unsigned b_addr = smem_window(base) + (unsigned)C::A_BYTES;

    int read_stage = 0, write_stage = C::STAGES - 2;
    for (int i = 0; i < nkt; ++i) {
        cp_async_wait<C::STAGES - 3>();
        fence_proxy_async();
        block_sync();
        if (i + C::STAGES - 2 < nkt) ld.template load<true>(base, write_stage, kt0 + i + C::STAGES - 3, p.k);
        cp_async_commit();
        write_stage = write_stage + 1 == C::STAGES ? 0 : write_stage + 1;

        const unsigned stage = (unsigned)(read_stage * C::STAGE_BYTES);
        read_stage = read_stage + 1 == C::STAGES ? 0 : read_stage + 1;
        wgmma_stage128<C::BN, U8>(acc, a_addr, b_addr, stage);
    }
    wgmma_wait<0>();
    wgmma_pin(acc);
    cp_async_wait<0>();  // (only empty groups remain)

    tile::finish<1, C::NT, C::THREADS>(q, acc, bm + warp * 16, bn);
}

}  // namespace wg

I8RT_ENTRY_MIN_BLOCKS(gemm_wgmma_128x256_s8, MmaParams, wg::C128x256::THREADS, 1) { wg::body<wg::C128x256, false>(p); }
I8RT_ENTRY_MIN_BLOCKS(gemm_wgmma_128x256_u8, MmaParams, wg::C128x256::THREADS, 1) { wg::body<wg::C128x256, true>(p); }
I8RT_ENTRY_MIN_BLOCKS(gemm_wgmma_128x128_s8, MmaParams, wg::C128x128::THREADS, 1) { wg::body<wg::C128x128, false>(p); }
I8RT_ENTRY_MIN_BLOCKS(gemm_wgmma_128x128_u8, MmaParams, wg::C128x128::THREADS, 1) { wg::body<wg::C128x128, true>(p); }
I8RT_ENTRY_MIN_BLOCKS(gemm_wgmma_64x256_s8, MmaParams, wg::C64x256::THREADS, 1) { wg::body<wg::C64x256, false>(p); }
I8RT_ENTRY_MIN_BLOCKS(gemm_wgmma_64x256_u8, MmaParams, wg::C64x256::THREADS, 1) { wg::body<wg::C64x256, true>(p); }
I8RT_ENTRY_MIN_BLOCKS(gemm_wgmma_64x128_s8, MmaParams, wg::C64x128::THREADS, 2) { wg::body<wg::C64x128, false>(p); }
I8RT_ENTRY_MIN_BLOCKS(gemm_wgmma_64x128_u8, MmaParams, wg::C64x128::THREADS, 2) { wg::body<wg::C64x128, true>(p); }
I8RT_ENTRY_MIN_BLOCKS(gemm_wgmma_128x128_d3_s8, MmaParams, wg::C128x128D3::THREADS, 2) { wg::body<wg::C128x128D3, false>(p); }
I8RT_ENTRY_MIN_BLOCKS(gemm_wgmma_128x128_d3_u8, MmaParams, wg::C128x128D3::THREADS, 2) { wg::body<wg::C128x128D3, true>(p); }
I8RT_ENTRY_MIN_BLOCKS(gemm_wgmma_64x64_s8, MmaParams, wg::C64x64::THREADS, 2) { wg::body<wg::C64x64, false>(p); }
I8RT_ENTRY_MIN_BLOCKS(gemm_wgmma_64x64_u8, MmaParams, wg::C64x64::THREADS, 2) { wg::body<wg::C64x64, true>(p); }
I8RT_ENTRY_MIN_BLOCKS(gemm_wgmma_128x64_s8, MmaParams, wg::C128x64::THREADS, 2) { wg::body<wg::C128x64, false>(p); }
I8RT_ENTRY_MIN_BLOCKS(gemm_wgmma_128x64_u8, MmaParams, wg::C128x64::THREADS, 2) { wg::body<wg::C128x64, true>(p); }
