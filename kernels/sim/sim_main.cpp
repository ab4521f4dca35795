// kernels/sim/sim_main.cpp — the C entry points of the kernel simulation library: list the
// registered kernels and launch one. Linked with every kernels/*.cu compiled as C++ (see
// sim.h); loaded by src/cuda/sim.rs.
#include "../common.cuh"

#include <condition_variable>

namespace {

std::mutex& launch_lock() {
    static std::mutex m;
    return m;
}

void run_thread(const sim::Entry* e, sim::Launch* l, unsigned tid, const void* params) {
    const dim3 b = l->block, g = l->grid;
    sim::t_launch = l;
    sim::t_blockDim = b;
    sim::t_gridDim = g;
    sim::t_threadIdx = uint3{tid % b.x, (tid / b.x) % b.y, tid / (b.x * b.y)};
    sim::t_lane = tid % 32;
    sim::t_warp = l->warps[tid / 32].get();
    for (unsigned long long b : l->order) {
        const unsigned x = (unsigned)(b % g.x), y = (unsigned)(b / g.x % g.y), z = (unsigned)(b / g.x / g.y);
        sim::t_blockIdx = uint3{x, y, z};
        e->thunk(params);
        sim::cp_async_drain();
        sim::wgmma_check_drained();
        // Every thread of this block finishes before any starts the next block, so the
        // function-static __shared__ arrays belong to one block at a time.
        l->bar.arrive_and_wait(sim::BAR_BLOCK_EXIT);
    }
}

int error(char* err, size_t len, const std::string& msg) {
    if (len > 0) {
        std::snprintf(err, len, "%s", msg.c_str());
    }
    return 1;
}

}  // namespace

extern "C" {

size_t int8rt_sim_kernel_count() { return sim::registry().size(); }

const char* int8rt_sim_kernel_name(size_t i) {
    return i < sim::registry().size() ? sim::registry()[i].name : nullptr;
}

// Launch `name` on grid × block with one parameter block of `params_size` bytes and
// `dyn_smem` bytes of dynamic shared memory; runs to completion. `flags` bit 0: cp.async copies
// land at issue instead of at the wait that completes them. `stats` (or null) receives 7 counts:
// ldmatrix instructions, extra shared-memory wavefronts they and lds_v4 cost (bank conflicts),
// mma.sync instructions, cp.async instructions, warp-wide 16-byte shared loads (lds_v4),
// wgmma.mma_async instructions (per warpgroup), cp.async.bulk instructions (per thread).
// `buffers` (or null) lists the live device buffers as `nbuffers` sorted [begin, end) address
// pairs: the 16-byte global loads, cp.async sources and ld.global.cg of the launch must each lie
// inside one of them (a read past a buffer's end is a failure, not a silent read of the host's
// neighbouring bytes). Returns 0, or 1 with a message in `err`.
int int8rt_sim_launch_checked(const char* name, const unsigned* grid, const unsigned* block, unsigned dyn_smem,
                              unsigned flags, const void* params, size_t params_size, unsigned long long* stats,
                              const unsigned long long* buffers, size_t nbuffers, char* err, size_t err_len) {
    const sim::Entry* e = nullptr;
    for (const auto& r : sim::registry())
        if (std::strcmp(r.name, name) == 0) e = &r;
    if (!e) return error(err, err_len, std::string("no kernel named ") + name);
    if (e->params_size != params_size)
        return error(err, err_len, std::string(name) + ": parameter block is " + std::to_string(params_size) +
                                       " bytes on the host, " + std::to_string(e->params_size) + " in the kernel");
    dim3 g{grid[0], grid[1], grid[2]}, b{block[0], block[1], block[2]};
    unsigned long long n = (unsigned long long)b.x * b.y * b.z;
    if (n == 0 || n > e->max_threads)
        return error(err, err_len, std::string(name) + ": block of " + std::to_string(n) +
                                       " threads (launch bounds " + std::to_string(e->max_threads) + ")");
    if (dyn_smem > 227u * 1024u)
        return error(err, err_len, std::string(name) + ": " + std::to_string(dyn_smem) +
                                       " bytes of dynamic shared memory exceed any GPU's 227 KiB");
    if (stats)
        for (int i = 0; i < 7; ++i) stats[i] = 0;
    if ((unsigned long long)g.x * g.y * g.z == 0) return 0;
    std::lock_guard<std::mutex> guard(launch_lock());
    sim::Launch l(g, b, (unsigned)n, dyn_smem, (flags & 1u) != 0);
    l.buffers = buffers;
    l.nbuffers = nbuffers;
    // Blocks run one at a time in a shuffled order (the GPU promises none): a kernel whose
    // result depends on which block runs last — a split-K reduction that assumes the last split
    // finishes last — fails. The order is a fixed function of the launch count: reproducible.
    {
        static unsigned long long launches = 0;
        const unsigned long long total = (unsigned long long)g.x * g.y * g.z;
        l.order.resize(total);
        for (unsigned long long i = 0; i < total; ++i) l.order[i] = i;
        unsigned long long s = 0x9e3779b97f4a7c15ull * ++launches;
        for (unsigned long long i = total; i > 1; --i) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            std::swap(l.order[i - 1], l.order[(s >> 33) % i]);
        }
    }
    for (unsigned w = 0; w * 32 < n; ++w)
        l.warps.push_back(std::make_unique<sim::Warp>((unsigned)std::min<unsigned long long>(32, n - w * 32)));
    bool done = false;
    std::mutex done_m;
    std::condition_variable done_cv;
    std::thread watchdog([&] {
        unsigned long long last = sim::progress().load();
        auto since = std::chrono::steady_clock::now();
        std::unique_lock<std::mutex> lk(done_m);
        while (!done) {
            done_cv.wait_for(lk, std::chrono::milliseconds(100));
            const unsigned long long now = sim::progress().load();
            if (now != last) {
                last = now;
                since = std::chrono::steady_clock::now();
            } else if (std::chrono::steady_clock::now() - since > std::chrono::seconds(30)) {
                sim::fail(std::string(name) + ": no barrier completed for 30 s (deadlock)");
            }
        }
    });
    std::vector<std::thread> threads;
    threads.reserve(n);
    for (unsigned t = 0; t < n; ++t) threads.emplace_back(run_thread, e, &l, t, params);
    for (auto& t : threads) t.join();
    sim::mbar_check_drained();
    {
        std::lock_guard<std::mutex> lk(done_m);
        done = true;
    }
    done_cv.notify_all();
    watchdog.join();
    if (stats) {
        stats[0] = l.stats.ldmatrix.load();
        stats[1] = l.stats.smem_extra_wavefronts.load();
        stats[2] = l.stats.mma.load();
        stats[3] = l.stats.cp_async.load();
        stats[4] = l.stats.lds_v4.load();
        stats[5] = l.stats.wgmma.load();
        stats[6] = l.stats.bulk_copies.load();
    }
    return 0;
}

// `int8rt_sim_launch_checked` without the table of device buffers (global loads unchecked).
int int8rt_sim_launch_ex(const char* name, const unsigned* grid, const unsigned* block, unsigned dyn_smem,
                         unsigned flags, const void* params, size_t params_size, unsigned long long* stats,
                         char* err, size_t err_len) {
    return int8rt_sim_launch_checked(name, grid, block, dyn_smem, flags, params, params_size, stats, nullptr, 0, err,
                                     err_len);
}

// `int8rt_sim_launch_ex` without dynamic shared memory, flags or statistics.
int int8rt_sim_launch(const char* name, const unsigned* grid, const unsigned* block, const void* params,
                      size_t params_size, char* err, size_t err_len) {
    return int8rt_sim_launch_ex(name, grid, block, 0, 0, params, params_size, nullptr, err, err_len);
}
}
