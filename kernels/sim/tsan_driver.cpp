// kernels/sim/tsan_driver.cpp — a stand-alone program that runs the block-cooperative kernels in
// the simulation, built with -fsanitize=thread by the `kernels_are_race_free_under_tsan` test
// (src/cuda/sim_tests.rs): every CUDA thread is a host thread, so a missing __syncthreads() or
// a shared-memory race shows up as a ThreadSanitizer report. It also checks the GEMM against a
// naive loop, so a run that did nothing cannot pass.
#include <cstdio>
#include <vector>

#include "../common.cuh"

extern "C" int int8rt_sim_launch(const char* name, const unsigned* grid, const unsigned* block, const void* params,
                                 size_t params_size, char* err, size_t err_len);

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
    for (int i = 0; i < m; ++i)
        for (int j = 0; j < n; ++j) {
            int acc = 0;
            for (int t = 0; t < k; ++t) acc += x[i * ld + t] * w[j * ld + t];
            if (y[i * n + j] != acc) {
                std::fprintf(stderr, "gemm mismatch at %d,%d: %d vs %d\n", i, j, y[i * n + j], acc);
                return 1;
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
    std::printf("tsan driver ok\n");
    return 0;
}
