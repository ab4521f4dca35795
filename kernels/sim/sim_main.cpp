// kernels/sim/sim_main.cpp — the C entry points of the kernel simulation library: list the
// registered kernels and launch one. Linked with every kernels/*.cu compiled as C++ (see
// sim.h); loaded by src/cuda/sim.rs.
#include "../common.cuh"

#include <algorithm>
#include <condition_variable>

#if I8RT_SIM_FIBERS
#include <sys/mman.h>
#include <unistd.h>
#if !defined(__x86_64__) || defined(I8RT_SIM_UCONTEXT)
#include <ucontext.h>
#endif
#endif

namespace {

std::mutex& launch_lock() {
    static std::mutex m;
    return m;
}

// CUDA thread `tid` of block rank `l->rank` in each cluster of the launch's order.
void run_thread(const sim::Entry* e, sim::Launch* l, unsigned tid, const void* params) {
    const dim3 b = l->block, g = l->grid;
    const unsigned cs = l->cluster->size;
    sim::t_launch = l;
    sim::t_blockDim = b;
    sim::t_gridDim = g;
    sim::t_threadIdx = uint3{tid % b.x, (tid / b.x) % b.y, tid / (b.x * b.y)};
    sim::t_lane = tid % 32;
    sim::t_warp = l->warps[tid / 32].get();
    for (unsigned long long c : l->order) {
        const unsigned long long blk = c * cs + l->rank;  // (clusters are consecutive along x)
        const unsigned x = (unsigned)(blk % g.x), y = (unsigned)(blk / g.x % g.y), z = (unsigned)(blk / g.x / g.y);
        sim::t_blockIdx = uint3{x, y, z};
        e->thunk(params);
        sim::cp_async_drain();
        sim::wgmma_check_drained();
        // Every thread of this block finishes before any starts the next block, so the
        // function-static __shared__ arrays belong to one block at a time (a kernel launched in
        // clusters keeps its shared state in dynamic shared memory: its blocks run together).
        const bool last = l->bar.arrive_and_wait(sim::BAR_BLOCK_EXIT);
        if (cs > 1) {
            // The block has ended (its last thread marks it before yielding): a peer's cluster
            // operation that reaches it from now on fails.
            if (last) l->ended.store((long long)c, std::memory_order_release);
            l->cluster->bar.arrive_and_wait(sim::BAR_BLOCK_EXIT);
        }
    }
}

#if I8RT_SIM_FIBERS
// --- fibers: a block's CUDA threads on the launching host thread ----------------------------
//
// Each CUDA thread runs `run_thread` on a stack of its own; a scheduler on the launching thread
// resumes them in rounds, each round every live fiber once in a shuffled order (a fixed function
// of the launch count: reproducible), and a fiber runs until it waits (`sim::fiber_yield`: a
// barrier or warp-level operation not yet complete, an mbarrier phase not yet done) or returns;
// one waiting at a barrier is skipped until the barrier's generation moves.
// A switch saves the callee-saved registers and the floating-point control words (x86-64; a
// ucontext elsewhere, or with I8RT_SIM_UCONTEXT) and swaps the CUDA thread's own state
// (FiberLocals). One launch runs at a time (the launch lock), so that state, the scheduler and
// the stack pool are plain globals.

// sim.h's per-CUDA-thread state (I8RT_SIM_THREAD_LOCAL), as one fiber's saved copy: `swap()`
// exchanges it with the globals (in before the fiber runs, out after it yields).
struct FiberLocals {
    uint3 thread_idx{}, block_idx{};
    dim3 block_dim{}, grid_dim{};
    sim::Launch* launch = nullptr;
    unsigned lane = 0;
    sim::Warp* warp = nullptr;
    unsigned long long unfenced_copies = 0;
    sim::CpAsyncState cp;
    sim::WgmmaState wg;
    void swap() {
        using std::swap;
        swap(thread_idx, sim::t_threadIdx);
        swap(block_idx, sim::t_blockIdx);
        swap(block_dim, sim::t_blockDim);
        swap(grid_dim, sim::t_gridDim);
        swap(launch, sim::t_launch);
        swap(lane, sim::t_lane);
        swap(warp, sim::t_warp);
        swap(unfenced_copies, sim::t_unfenced_copies);
        cp.swap(sim::t_cp);
        wg.swap(sim::t_wg);
    }
};

// A fiber's stack: mapped once and kept for later launches, with an inaccessible guard page
// below it (an overflow faults instead of writing over another fiber's stack).
constexpr size_t FIBER_STACK_BYTES = 1u << 20;
struct FiberStack {
    unsigned char* base = nullptr;  // the guard page; the stack is [base + page, base + page + FIBER_STACK_BYTES)
    size_t page = 0;
    unsigned char* top() const { return base + page + FIBER_STACK_BYTES; }
};
FiberStack map_stack() {
    FiberStack s;
    s.page = (size_t)sysconf(_SC_PAGESIZE);
    void* p = mmap(nullptr, s.page + FIBER_STACK_BYTES, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (p == MAP_FAILED) sim::fail("fiber stack: mmap failed");
    s.base = static_cast<unsigned char*>(p);
    if (mprotect(s.base, s.page, PROT_NONE) != 0) sim::fail("fiber stack: mprotect of the guard page failed");
    return s;
}
std::vector<FiberStack>& stack_pool() {  // used under the launch lock only
    static std::vector<FiberStack> pool;
    return pool;
}

struct Fiber;
extern "C" void i8rt_sim_fiber_entry(void* fiber);

#if defined(__x86_64__) && !defined(I8RT_SIM_UCONTEXT)
// i8rt_sim_fiber_switch(&save, load): pushes the callee-saved registers, rbp and the MXCSR / x87
// control words on the current stack, stores the stack pointer in *save, continues on `load`
// (a stack saved the same way, or one set up by `Context::start`) and pops them there.
extern "C" void i8rt_sim_fiber_switch(void** save, void* load);
// A new fiber's first instruction: calls r13(r12) on a 16-byte-aligned stack; never returns.
extern "C" void i8rt_sim_fiber_start();
asm(R"(
    .text
    .p2align 4
    .globl i8rt_sim_fiber_switch
    .hidden i8rt_sim_fiber_switch
    .type i8rt_sim_fiber_switch, @function
i8rt_sim_fiber_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $16, %rsp
    stmxcsr (%rsp)
    fnstcw 8(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 8(%rsp)
    addq $16, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size i8rt_sim_fiber_switch, .-i8rt_sim_fiber_switch

    .p2align 4
    .globl i8rt_sim_fiber_start
    .hidden i8rt_sim_fiber_start
    .type i8rt_sim_fiber_start, @function
i8rt_sim_fiber_start:
    movq %r12, %rdi
    andq $-16, %rsp
    call *%r13
    ud2
    .size i8rt_sim_fiber_start, .-i8rt_sim_fiber_start
)");

struct Context {
    void* sp = nullptr;
    // A stack whose first switch-in calls i8rt_sim_fiber_entry(arg), with the current
    // floating-point control words.
    void start(unsigned char* top, void* arg) {
        auto* w = reinterpret_cast<uint64_t*>(top) - 9;  // control words, 6 registers, return address
        uint32_t mxcsr;
        uint16_t fcw;
        asm volatile("stmxcsr %0" : "=m"(mxcsr));
        asm volatile("fnstcw %0" : "=m"(fcw));
        std::memset(w, 0, 9 * sizeof(uint64_t));
        std::memcpy(&w[0], &mxcsr, 4);
        std::memcpy(&w[1], &fcw, 2);
        w[4] = reinterpret_cast<uint64_t>(&i8rt_sim_fiber_entry);  // r13
        w[5] = reinterpret_cast<uint64_t>(arg);                    // r12
        w[8] = reinterpret_cast<uint64_t>(&i8rt_sim_fiber_start);  // returned to
        sp = w;
    }
    static void swap(Context& save, Context& load) { i8rt_sim_fiber_switch(&save.sp, load.sp); }
};
#else
struct Context {
    ucontext_t uc;
    void start(unsigned char* top, void* arg) {
        if (getcontext(&uc) != 0) sim::fail("fiber: getcontext failed");
        uc.uc_stack.ss_sp = top - FIBER_STACK_BYTES;
        uc.uc_stack.ss_size = FIBER_STACK_BYTES;
        uc.uc_link = nullptr;
        const uintptr_t a = reinterpret_cast<uintptr_t>(arg);
        makecontext(&uc, reinterpret_cast<void (*)()>(&trampoline), 2, (unsigned)(a >> 32), (unsigned)a);
    }
    static void trampoline(unsigned hi, unsigned lo) {
        i8rt_sim_fiber_entry(reinterpret_cast<void*>(((uintptr_t)hi << 32) | lo));
    }
    static void swap(Context& save, Context& load) {
        if (swapcontext(&save.uc, &load.uc) != 0) sim::fail("fiber: swapcontext failed");
    }
};
#endif

struct Fiber {
    Context ctx;
    FiberLocals locals;
    const sim::Entry* entry = nullptr;
    sim::Launch* launch = nullptr;  // its block (rank) of the cluster
    unsigned tid = 0;
    const void* params = nullptr;
    bool done = false;
    // Waiting for a barrier: not resumed while *wait_gen == wait_value.
    const std::atomic<unsigned>* wait_gen = nullptr;
    unsigned wait_value = 0;
};

// The scheduler of the running launch (one at a time: the launch lock).
struct Scheduler {
    Context host;
    Fiber* current = nullptr;
};
Scheduler* running_scheduler = nullptr;

extern "C" void i8rt_sim_fiber_entry(void* p) {
    Fiber* f = static_cast<Fiber*>(p);
    run_thread(f->entry, f->launch, f->tid, f->params);
    f->done = true;
    Context::swap(f->ctx, running_scheduler->host);
    sim::fail("a finished fiber was resumed");
}

// Runs the n CUDA threads of each of the cluster's blocks (`ctas`, by rank) as fibers until
// every one has returned.
void run_fibers(const sim::Entry* e, const std::vector<sim::Launch*>& ctas, unsigned n, const void* params,
                unsigned long long seed) {
    const unsigned total = n * (unsigned)ctas.size();
    std::vector<FiberStack>& pool = stack_pool();
    while (pool.size() < total) pool.push_back(map_stack());
    std::vector<Fiber> fibers(total);
    std::vector<unsigned> live(total);
    for (unsigned t = 0; t < total; ++t) {
        Fiber& f = fibers[t];
        f.entry = e;
        f.launch = ctas[t / n];
        f.tid = t % n;
        f.params = params;
        f.ctx.start(pool[t].top(), &f);
        live[t] = t;
    }
    Scheduler s;
    running_scheduler = &s;
    unsigned long long r = seed | 1u;
    // In a cluster one block (a rank chosen from the seed) runs only every fourth round, as
    // long as another can run: the others get as far ahead of it as the kernel's own waits
    // allow, so a block that ends while a slow peer still reaches it (a remote arrival, a
    // multicast) is caught (sim.h `cluster_cta`).
    const unsigned slow = ctas.size() > 1 ? (unsigned)((seed >> 17) % ctas.size()) : ~0u;
    unsigned long long round = 0;
    while (!live.empty()) {
        const bool slow_waits = ++round % 4 != 0;
        bool held = false;
        for (size_t i = live.size(); i > 1; --i) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            std::swap(live[i - 1], live[(r >> 33) % i]);
        }
        bool resumed = false;
        for (unsigned t : live) {
            Fiber& f = fibers[t];
            if (f.wait_gen) {
                if (f.wait_gen->load(std::memory_order_relaxed) == f.wait_value) continue;
                f.wait_gen = nullptr;
            }
            if (slow_waits && f.launch->rank == slow) {
                held = true;
                continue;
            }
            resumed = true;
            s.current = &f;
            f.locals.swap();
            Context::swap(s.host, f.ctx);
            f.locals.swap();
        }
        // Only another fiber's arrival completes a barrier: a round in which every live fiber
        // waits at one that has not completed can never end.
        if (!resumed && !held)
            sim::fail("every thread of the block (or cluster) waits at a barrier no other thread can complete (deadlock)");
        live.erase(std::remove_if(live.begin(), live.end(), [&](unsigned t) { return fibers[t].done; }), live.end());
    }
    running_scheduler = nullptr;
}
#endif

// Counts a launch reports (`int8rt_sim_launch_checked`'s `stats`).
constexpr int SIM_STATS = 11;

int error(char* err, size_t len, const std::string& msg) {
    if (len > 0) {
        std::snprintf(err, len, "%s", msg.c_str());
    }
    return 1;
}

}  // namespace

void sim::fiber_yield(const std::atomic<unsigned>* gen, unsigned value) {
#if I8RT_SIM_FIBERS
    Fiber* f = running_scheduler->current;
    f->wait_gen = gen;
    f->wait_value = value;
    Context::swap(f->ctx, running_scheduler->host);
#else
    (void)gen;
    (void)value;
    sim::fail("fiber_yield in a build with host threads");
#endif
}

extern "C" {

size_t int8rt_sim_kernel_count() { return sim::registry().size(); }

const char* int8rt_sim_kernel_name(size_t i) {
    return i < sim::registry().size() ? sim::registry()[i].name : nullptr;
}

// Blocks per cluster of kernel i (I8RT_ENTRY_CLUSTER; 1 for the others, 0 past the end).
unsigned int8rt_sim_kernel_cluster(size_t i) { return i < sim::registry().size() ? sim::registry()[i].cluster : 0; }

// Launch `name` on grid × block with one parameter block of `params_size` bytes and
// `dyn_smem` bytes of dynamic shared memory; runs to completion. `flags` bit 0: cp.async copies
// land at issue instead of at the wait that completes them. `stats` (or null) receives
// SIM_STATS (11) counts: ldmatrix instructions, extra shared-memory wavefronts they and lds_v4
// cost (bank conflicts), mma.sync instructions, cp.async instructions, warp-wide 16-byte shared
// loads (lds_v4), wgmma.mma_async instructions (per warpgroup), cp.async.bulk instructions (per
// thread), cp.async.bulk.prefetch.L2 instructions (per thread), then sim.h's L2 coverage: bytes
// prefetched, bytes prefetched again, streamed bytes (ldg_stream_v4) no prefetch covered.
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
    const unsigned cs = e->cluster;
    if (cs == 0 || cs > 8 || g.x % cs != 0)
        return error(err, err_len, std::string(name) + ": a grid of " + std::to_string(g.x) +
                                       " blocks along x in clusters of " + std::to_string(cs) +
                                       " (the grid's x must be a multiple of a cluster size of 1 .. 8)");
    if (stats)
        for (int i = 0; i < SIM_STATS; ++i) stats[i] = 0;
    if ((unsigned long long)g.x * g.y * g.z == 0) return 0;
    std::lock_guard<std::mutex> guard(launch_lock());
    {
        unsigned long long stale[3];  // (what a failed launch before this one left)
        sim::l2_coverage_stats(stale);
    }
    // One context per block of a cluster (a launch without clusters: one).
    sim::Cluster cluster(cs, (unsigned)n * cs);
    std::vector<std::unique_ptr<sim::Launch>> ctas;
    for (unsigned r = 0; r < cs; ++r) {
        ctas.push_back(std::make_unique<sim::Launch>(g, b, (unsigned)n, dyn_smem, (flags & 1u) != 0));
        sim::Launch& l = *ctas.back();
        l.buffers = buffers;
        l.nbuffers = nbuffers;
        l.cluster = &cluster;
        l.rank = r;
        for (unsigned w = 0; w * 32 < n; ++w)
            l.warps.push_back(std::make_unique<sim::Warp>((unsigned)std::min<unsigned long long>(32, n - w * 32)));
        cluster.ctas.push_back(&l);
    }
    unsigned long long shuffle_seed = 0;  // also the fibers' (I8RT_SIM_FIBERS)
    // Clusters (blocks) run one at a time in a shuffled order (the GPU promises none): a kernel
    // whose result depends on which block runs last — a split-K reduction that assumes the last
    // split finishes last — fails. The order is a fixed function of the launch count:
    // reproducible.
    {
        static unsigned long long launches = 0;
        const unsigned long long total = (unsigned long long)g.x * g.y * g.z / cs;
        std::vector<unsigned long long> order(total);
        for (unsigned long long i = 0; i < total; ++i) order[i] = i;
        unsigned long long s = 0x9e3779b97f4a7c15ull * ++launches;
        shuffle_seed = s;
        for (unsigned long long i = total; i > 1; --i) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            std::swap(order[i - 1], order[(s >> 33) % i]);
        }
        for (auto& l : ctas) l->order = order;
    }
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
#if I8RT_SIM_FIBERS
    run_fibers(e, cluster.ctas, (unsigned)n, params, shuffle_seed);
#else
    (void)shuffle_seed;
    std::vector<std::thread> threads;
    threads.reserve(n * cs);
    for (sim::Launch* l : cluster.ctas)
        for (unsigned t = 0; t < n; ++t) threads.emplace_back(run_thread, e, l, t, params);
    for (auto& t : threads) t.join();
#endif
    sim::mbar_check_drained();
    {
        std::lock_guard<std::mutex> lk(done_m);
        done = true;
    }
    done_cv.notify_all();
    watchdog.join();
    if (stats) {
        for (const auto& l : ctas) {
            stats[0] += l->stats.ldmatrix.load();
            stats[1] += l->stats.smem_extra_wavefronts.load();
            stats[2] += l->stats.mma.load();
            stats[3] += l->stats.cp_async.load();
            stats[4] += l->stats.lds_v4.load();
            stats[5] += l->stats.wgmma.load();
            stats[6] += l->stats.bulk_copies.load();
            stats[7] += l->stats.l2_prefetches.load();
        }
    }
    unsigned long long coverage[3];
    sim::l2_coverage_stats(coverage);
    if (stats)
        for (int i = 0; i < 3; ++i) stats[8 + i] = coverage[i];
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
