// kernels/sim/tsan_driver.cpp — a stand-alone program that runs the block-cooperative kernels in
// the simulation, built with -fsanitize=thread by the `kernels_are_race_free_under_tsan` test
// (src/cuda/sim_tests.rs): every CUDA thread is a host thread here (sim.h: a build under the
// sanitizer runs no fibers), so a missing __syncthreads() or a shared-memory race shows up as a
// ThreadSanitizer report — for the tensor-core GEMM also a stage overwritten by cp.async while
// another warp still reads it, a staging row read before its warp wrote it, or split-K partial
// sums read before their block counted them. It also
// checks the GEMMs and the calibration statistics against naive loops, so a run that did nothing
// cannot pass.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <vector>

#include "../common.cuh"

extern "C" int int8rt_sim_launch(const char* name, const unsigned* grid, const unsigned* block, const void* params,
                                 size_t params_size, char* err, size_t err_len);
extern "C" int int8rt_sim_launch_ex(const char* name, const unsigned* grid, const unsigned* block, unsigned dyn_smem,
                                    unsigned flags, const void* params, size_t params_size, unsigned long long* stats,
                                    char* err, size_t err_len);

template <class P>
static bool launch(const char* name, unsigned gx, unsigned gy, const P& p) {
    unsigned grid[3] = {gx, gy, 1}, block[3] = {256, 1, 1};
    char err[512] = {0};
    if (int8rt_sim_launch(name, grid, block, &p, sizeof(P), err, sizeof err) != 0) {
        std::fprintf(stderr, "%s: %s\n", name, err);
        return false;
    }
    return true;
}

// y (rows × cols, i32, row stride cols) against the naive product of x and w (rows of ld
// bytes, K = k); a mismatch is printed under `name`.
static bool check_product(const char* name, const std::vector<int>& y, const std::vector<signed char>& x,
                          const std::vector<signed char>& w, int rows, int cols, int k, int ld) {
    for (int i = 0; i < rows; ++i)
        for (int j = 0; j < cols; ++j) {
            int acc = 0;
            for (int u = 0; u < k; ++u) acc += x[i * ld + u] * w[j * ld + u];
            if (y[i * cols + j] != acc) {
                std::fprintf(stderr, "%s mismatch at %d,%d: %d vs %d\n", name, i, j, y[i * cols + j], acc);
                return false;
            }
        }
    return true;
}

// Every split-K counter back at zero (the tiles' finishing blocks re-zero theirs).
static bool counters_reset(const char* name, const std::vector<unsigned>& counters) {
    for (unsigned c : counters)
        if (c != 0) {
            std::fprintf(stderr, "%s left a split-K counter at %u\n", name, c);
            return false;
        }
    return true;
}

// One launch of a tiled GEMM kernel (its parameter block P: MmaParams, TmaParams or GemmParams,
// writing y), checked: no launch error, y the naive product of x and w (rows × cols, K = k, rows
// of ld bytes), and, given `counters`, every split-K counter back at zero. y is poisoned first.
template <class P>
static bool run_gemm(const char* name, const unsigned (&grid)[3], unsigned threads, unsigned smem, unsigned flags,
                     const P& params, std::vector<int>& y, const std::vector<signed char>& x,
                     const std::vector<signed char>& w, int rows, int cols, int k, int ld,
                     const std::vector<unsigned>* counters) {
    std::fill(y.begin(), y.end(), 0x7f7f7f7f);
    unsigned block[3] = {threads, 1, 1};
    char err[512] = {0};
    if (int8rt_sim_launch_ex(name, grid, block, smem, flags, &params, sizeof params, nullptr, err, sizeof err) != 0) {
        std::fprintf(stderr, "%s: %s\n", name, err);
        return false;
    }
    return check_product(name, y, x, w, rows, cols, k, ld) && (!counters || counters_reset(name, *counters));
}

int main() {
    // GEMM: m = 130, n = 129 (2 × 2 tiles of 128), k = 70 (3 k steps), rows padded to 80.
    const int m = 130, n = 129, k = 70, ld = 80;
    std::vector<signed char> x(m * ld, 0), w(n * ld, 0);
    for (int i = 0; i < m; ++i)
        for (int j = 0; j < k; ++j) x[i * ld + j] = (signed char)((i * 7 + j * 3) % 255 - 127);
    for (int i = 0; i < n; ++i)
        for (int j = 0; j < k; ++j) w[i * ld + j] = (signed char)((i * 5 + j * 11) % 253 - 126);
    std::vector<int> y(m * n, 0), wsum(n, 0);
    std::vector<float> ws(n, 1.0f), as(1, 1.0f);
    GemmParams p{};
    p.x = x.data();
    p.w = w.data();
    p.y = y.data();
    p.wsum = wsum.data();
    p.lda = p.ldb = ld;
    p.ldy = n;
    p.m = m;
    p.n = n;
    p.k = k;
    p.epi.w_scale = ws.data();
    p.epi.act_scale = as.data();
    p.epi.out_kind = OUT_I32;
    if (!launch("gemm_dp4a_s8", (n + 127) / 128, (m + 127) / 128, p)) return 1;
    if (!check_product("gemm", y, x, w, m, n, k, ld)) return 1;
    // The tensor-core GEMM: the 128 × 128 tile (4 warps) over 2 × 2 blocks and 2 k tiles, then
    // the 16 × 128 tile with K split 3 ways (partial sums, counters, the finishing block), then
    // the weight-streaming 64 × 64 tile (activation batches double-buffered, the warps'
    // accumulators meeting in shared memory) with K split 2 ways, each with cp.async landing
    // late (at the wait) and early (at issue).
    std::vector<unsigned> counters(16, 0u);
    std::vector<int> partials(4 * 2 * 128 * 128, 0);  // the largest: the wgmma run below
    struct Run {
        const char* name;
        unsigned threads, smem, gx, gy, gz;
        int rows, kt_per_split;
    };
    const Run runs[] = {{"gemm_mma_128x128_s8", 128, 4 * 256 * 64, 2, 2, 1, m, 2},
                        {"gemm_mma_16x128_s8", 128, 4 * 144 * 64, 2, 2, 3, 20, 1},
                        {"gemm_stream_64x64_s8", 256, 34832, 3, 3, 2, m, 1}};
    // A tensor-core launch's parameters: the GEMM above on operands xs, ws (rows of `l` bytes,
    // K = kk), `kt` k tiles per split.
    auto mma_params = [&](const std::vector<signed char>& xs, const std::vector<signed char>& ws_, int l, int kk,
                          int kt) {
        MmaParams q{};
        q.g = p;
        q.g.x = xs.data();
        q.g.w = ws_.data();
        q.g.lda = q.g.ldb = l;
        q.g.k = kk;
        q.partials = partials.data();
        q.counters = counters.data();
        q.kt_per_split = kt;
        return q;
    };
    // Three repetitions: ThreadSanitizer sees a race only when the interleaving leaves both
    // accesses in its shadow memory (a removed barrier was reported in about 2 runs of 3).
    for (int rep = 0; rep < 3; ++rep)
        for (const Run& r : runs)
            for (unsigned flags : {0u, 1u}) {
                MmaParams q = mma_params(x, w, ld, k, r.kt_per_split);
                q.g.m = r.rows;
                const unsigned grid[3] = {r.gx, r.gy, r.gz};
                if (!run_gemm(r.name, grid, r.threads, r.smem, flags, q, y, x, w, r.rows, n, k, ld, &counters))
                    return 1;
            }
    // The wgmma tiles 128 × 128 (2 warpgroups; 4 and 3 stages) and 64 × 128 (1 warpgroup) over
    // K = 600 (5 k tiles of 128 bytes: more than their stages, so buffers are refilled while the
    // next stage is in the tensor cores), with K split 1 and 2 ways, cp.async late and early: the emulated
    // wgmma reads its stage at the wait that completes it, so a refill racing that read is a
    // reported race.
    {
        const int wk = 600, wld = 608;
        std::vector<signed char> wx(m * wld, 0), ww(n * wld, 0);
        for (int i = 0; i < m; ++i)
            for (int j = 0; j < wk; ++j) wx[i * wld + j] = (signed char)((i * 13 + j * 5) % 251 - 125);
        for (int i = 0; i < n; ++i)
            for (int j = 0; j < wk; ++j) ww[i * wld + j] = (signed char)((i * 3 + j * 17) % 247 - 123);
        struct WgTile {
            const char* name;
            int bm, stages;
        };
        for (WgTile t : {WgTile{"gemm_wgmma_128x128_s8", 128, 4}, WgTile{"gemm_wgmma_64x128_s8", 64, 4},
                         WgTile{"gemm_wgmma_128x128_d3_s8", 128, 3}})
            for (int splits : {1, 2})
                for (unsigned flags : {0u, 1u}) {
                    // `stages` stages of (BM + 128) × 128 bytes, + 1 KiB to align them; a
                    // warpgroup per 64 rows.
                    const unsigned grid[3] = {2, (unsigned)((m + t.bm - 1) / t.bm), (unsigned)splits};
                    if (!run_gemm(t.name, grid, 2 * t.bm, t.stages * (t.bm + 128) * 128 + 1024, flags,
                                  mma_params(wx, ww, wld, wk, splits == 1 ? 5 : 3), y, wx, ww, m, n, wk, wld,
                                  &counters))
                        return 1;
                }
    }
    // The TMA tiles 64 × 128 (1 warpgroup, 8 stages) and 128 × 128 (2 warpgroups, 6 stages)
    // over K = 13 · 128 + 40 (14 k tiles: every stage of the ring refilled while the next is in
    // the tensor cores), K split 1 and 2 ways: a tensor copy's bytes land from the producer's
    // thread, the emulated wgmma reads them at the wait that completes it, so a refill that does
    // not wait for every warp's release on the stage's `empty` mbarrier is a reported race.
    {
        const int tk = 13 * 128 + 40, tld = tk + 8;
        std::vector<signed char> tx(m * tld, 0), tw(n * tld, 0);
        for (int i = 0; i < m; ++i)
            for (int j = 0; j < tk; ++j) tx[i * tld + j] = (signed char)((i * 19 + j * 7) % 253 - 126);
        for (int i = 0; i < n; ++i)
            for (int j = 0; j < tk; ++j) tw[i * tld + j] = (signed char)((i * 23 + j * 3) % 241 - 120);
        // The simulation's tensor map (sim.h TmaDesc), as src/cuda/sim.rs writes it.
        auto map = [](const signed char* base, int rows, int ld, int box_rows) {
            TmaMap t{};
            const sim::TmaDesc d{sim::TMA_MAGIC, (unsigned long long)(uintptr_t)base, (unsigned long long)tk,
                                 (unsigned long long)rows, (unsigned long long)ld, 128, (unsigned long long)box_rows, 3};
            std::memcpy(t.bits, &d, sizeof d);
            return t;
        };
        struct TmaTile {
            const char* name;
            int bm, stages;
        };
        for (TmaTile t : {TmaTile{"gemm_tma_64x128_s8", 64, 8}, TmaTile{"gemm_tma_128x128_s8", 128, 6}})
            for (int splits : {1, 2}) {
                TmaParams tp{};
                tp.x = map(tx.data(), m, tld, t.bm);
                tp.w = map(tw.data(), n, tld, 128);
                tp.q = mma_params(tx, tw, tld, tk, splits == 1 ? 14 : 7);
                // `stages` stages of (BM + 128) × 128 bytes, + 1 KiB to align them, + two
                // mbarriers per stage (tma::Config::SMEM); a warpgroup per 64 rows.
                const unsigned grid[3] = {2, (unsigned)((m + t.bm - 1) / t.bm), (unsigned)splits};
                if (!run_gemm(t.name, grid, 2 * t.bm, t.stages * (t.bm + 128) * 128 + 1024 + 16 * t.stages, 0, tp,
                              y, tx, tw, m, n, tk, tld, &counters))
                    return 1;
            }
        // The clustered TMA tile 64 × 64 in 2 × 2 tiles a cluster (tma::body_cluster) on the
        // first 128 rows × 128 columns, K split 1 and 2 ways: the four blocks of a cluster are
        // host threads at once here, so a multicast box landing in a peer's stage while that
        // peer's warpgroup still reads it (a refill before the whole cluster's release on the
        // `empty` barriers) is a reported race.
        for (int splits : {1, 2}) {
            TmaParams tp{};
            tp.x = map(tx.data(), m, tld, 64);
            tp.w = map(tw.data(), n, tld, 64);
            tp.q = mma_params(tx, tw, tld, tk, splits == 1 ? 14 : 7);
            tp.q.g.m = 128;
            tp.q.g.n = tp.q.g.ldy = 128;
            // 6 stages of (64 + 64) × 128 bytes + 1 KiB + two mbarriers per stage; 4 blocks.
            const unsigned grid[3] = {4, 1, (unsigned)splits};
            if (!run_gemm("gemm_tmc_64x64_m2n2_s8", grid, 128, 6 * 128 * 128 + 1024 + 16 * 6, 0, tp, y, tx, tw, 128,
                          128, tk, tld, &counters))
                return 1;
        }
        // The deep 64 × 64 mma.sync tile over the same operands (14 k tiles of 128 bytes in 6
        // stages: its slots refilled while the warps' double-buffered fragments still come from
        // the stage before), K split 1 and 2 ways, cp.async late and early, three times: a refill
        // issued before every warp has passed the barrier that follows its last ldmatrix of that
        // slot is a reported race. On the first 70 rows × 70 columns (2 × 2 tiles, the last
        // ones ragged): blocks run one at a time, so the races sought lie within a block, and
        // the 3 × 3 tiles of the whole product cost 2.25 times as long under ThreadSanitizer.
        const int dm = 70, dn = 70;
        for (int rep = 0; rep < 3; ++rep)
            for (int splits : {1, 2})
                for (unsigned flags : {0u, 1u}) {
                    // 6 stages of (64 + 64) × 128 bytes (mma::C64x64), 4 warps.
                    MmaParams q = mma_params(tx, tw, tld, tk, splits == 1 ? 14 : 7);
                    q.g.m = dm;
                    q.g.n = q.g.ldy = dn;
                    const unsigned grid[3] = {(unsigned)((dn + 63) / 64), (unsigned)((dm + 63) / 64), (unsigned)splits};
                    if (!run_gemm("gemm_mma_64x64_s8", grid, 128, 6 * 128 * 128, flags, q, y, tx, tw, dm, dn, tk, tld,
                                  &counters))
                        return 1;
                }
    }
    // The bulk-copy GEMV over K = 5 · 1024 + 48 (its 4-stage ring of 1 KiB chunks refilled
    // twice; the 32-row kernel's 8-stage ring of 512-byte chunks once), two blocks of 16 weight
    // rows, 5 and 20 activation rows, three times each: a stage refilled while a warp still
    // reads it (a producer that does not wait for the stage's `empty` mbarrier) is a reported
    // race — the bulk copy's bytes land from the producer's thread, the reads are the consumers'.
    {
        const int bk = 5 * 1024 + 48, bn_rows = 20;
        struct BulkRun {
            const char* name;
            int rows;
            unsigned smem;  // bulk::Ring<MT>::SMEM
        };
        for (BulkRun r : {BulkRun{"gemv_mma_bulk_m8_s8", 5, 4 * 16 * (1024 + 64) + 2 * 4 * 8},
                          BulkRun{"gemv_mma_bulk_m32_s8", 20, 8 * 16 * (512 + 64) + 2 * 8 * 8}}) {
            std::vector<signed char> bx(r.rows * bk), bw(bn_rows * bk);
            for (int i = 0; i < r.rows; ++i)
                for (int j = 0; j < bk; ++j) bx[i * bk + j] = (signed char)((i * 29 + j * 7) % 251 - 125);
            for (int i = 0; i < bn_rows; ++i)
                for (int j = 0; j < bk; ++j) bw[i * bk + j] = (signed char)((i * 11 + j * 13) % 249 - 124);
            std::vector<int> by(r.rows * bn_rows);
            GemmParams q = p;
            q.x = bx.data();
            q.w = bw.data();
            q.y = by.data();
            q.lda = q.ldb = bk;
            q.ldy = bn_rows;
            q.m = r.rows;
            q.n = bn_rows;
            q.k = bk;
            const unsigned grid[3] = {2, 1, 1};
            for (int rep = 0; rep < 3; ++rep)
                if (!run_gemm(r.name, grid, 256, r.smem, 0, q, by, bx, bw, r.rows, bn_rows, bk, bk, nullptr)) return 1;
        }
    }
    // The skinny kernel (warp shuffles), m = 5.
    p.m = 5;
    if (!launch("gemv_dp4a_s8", (n + 7) / 8, 1, p)) return 1;
    // Per-row activation quantization (block reductions through shared memory).
    std::vector<float> xf(m * k);
    for (int i = 0; i < m * k; ++i) xf[i] = (float)((i * 37) % 101 - 50) * 0.01f;
    std::vector<signed char> q(m * ld);
    std::vector<float> scales(m);
    std::vector<unsigned> range = {0xff800000u, 0x007fffffu};  // ordered +inf (min), −inf (max)
    Status st{0, ~0ull};
    ActQuantParams a{};
    a.x = xf.data();
    a.q = q.data();
    a.scales = scales.data();
    a.range = range.data();
    a.status = &st;
    a.ldq = ld;
    a.m = m;
    a.k = k;
    a.mode = ACT_ROWS;
    if (!launch("act_quant_s8", m, 1, a)) return 1;
    a.mode = ACT_RANGE;
    if (!launch("act_quant_s8", m, 1, a)) return 1;
    a.mode = ACT_TENSOR;
    if (!launch("act_quant_s8", m, 1, a)) return 1;
    // Calibration statistics (kernels/calib.cu): the block reduction through shared memory, the
    // per-channel warp reductions, and the histogram's shared-memory and global counting paths,
    // each checked against a plain loop.
    const long long len = 5000;
    std::vector<float> cx(len);
    for (long long i = 0; i < len; ++i) cx[i] = (float)((i * 7919) % 2001 - 1000) * 0.001f;
    cx[1234] = __uint_as_float(0x7fc00000u);  // NaN
    std::vector<unsigned long long> scratch = {0x007fffffff800000ull, 0ull, 0ull, ~0ull};
    CalibReduceParams r{};
    r.x = cx.data();
    r.range = reinterpret_cast<unsigned*>(&scratch[0]);
    r.zeros = &scratch[1];
    r.status = reinterpret_cast<Status*>(&scratch[2]);
    r.outer = 1;
    r.cols = r.inner = len;
    r.channels = 1;
    if (!launch("calib_reduce", 2, 1, r)) return 1;
    const float lo = ordered_to_f32(r.range[0]), hi = ordered_to_f32(r.range[1]);
    if (lo != -1.0f || hi != 1.0f || scratch[1] != 2 || scratch[2] != 1 || scratch[3] != 1234) {
        std::fprintf(stderr, "calib_reduce: [%g, %g], %llu zeros, %llu non-finite at %llu\n", lo, hi, scratch[1],
                     scratch[2], scratch[3]);
        return 1;
    }
    // Per channel: [50, 20, 5] → channels of 5 columns (warps span several channels).
    std::vector<unsigned long long> ch(20 + 2, 0x007fffffff800000ull);
    ch[20] = 0ull;
    ch[21] = ~0ull;
    r.range = reinterpret_cast<unsigned*>(ch.data());
    r.zeros = nullptr;
    r.status = reinterpret_cast<Status*>(&ch[20]);
    r.outer = 50;
    r.cols = 100;
    r.inner = 5;
    r.channels = 20;
    if (!launch("calib_reduce_channels", 1, 3, r)) return 1;
    for (int c = 0; c < 20; ++c) {
        float l = 1e30f, h = -1e30f;
        for (int o = 0; o < 50; ++o)
            for (int j = 0; j < 5; ++j) {
                const float v = cx[o * 100 + c * 5 + j];
                if (v == v) l = std::min(l, v), h = std::max(h, v);
            }
        if (ordered_to_f32(r.range[2 * c]) != l || ordered_to_f32(r.range[2 * c + 1]) != h) {
            std::fprintf(stderr, "calib_reduce_channels: channel %d\n", c);
            return 1;
        }
    }
    // Histograms of |x| over [0, 1]: 2048 bins (shared memory) and 9000 bins (global atomics).
    for (unsigned long long bins : {2048ull, 9000ull}) {
        std::vector<unsigned long long> counts(bins, 0), want(bins, 0);
        HistParams h{};
        h.x = cx.data();
        h.counts = counts.data();
        h.len = len;
        h.bins = bins;
        h.rule = HIST_SCALED;
        h.nf = (float)bins;
        h.right = 1.0f;
        if (!launch("calib_histogram", 3, 1, h)) return 1;
        for (long long i = 0; i < len; ++i) {
            if (cx[i] != cx[i]) continue;
            const unsigned long long b = (unsigned long long)((std::fabs(cx[i]) * (float)bins) / 1.0f);
            ++want[std::min(b, bins - 1)];
        }
        if (counts != want) {
            std::fprintf(stderr, "calib_histogram: %llu bins differ\n", bins);
            return 1;
        }
    }
    std::printf("tsan driver ok\n");
    return 0;
}
