// kernels/sim/libcuda_sim.cpp — a stand-in `libcuda.so.1` whose device is the host simulation:
// the part of the CUDA driver API that cudarc and src/cuda/driver.rs call, implemented over host
// memory, with every kernel launch run by sim_main.cpp's simulator. Linked with every
// kernels/*.cu compiled as C++ and sim_main.cpp (scripts/sim-driver.sh, src/cuda/sim.rs's
// `build_sim_driver`); a process loads it through LD_LIBRARY_PATH instead of NVIDIA's driver, so
// the driver-side Rust code (CudaDevice, CudaExec, the layers' device paths, tests/gpu.rs) runs
// on a machine without a GPU.
//
// What it models: one device (compute capability from INT8RT_SIMDRV_ARCH, default 90; SM count
// from INT8RT_SIMDRV_SMS, default 132; memory pools unless INT8RT_SIMDRV_POOLS=0); streams and events that complete every operation when it
// is enqueued (a legal schedule of any stream program); allocations with 256 bytes of poison on
// each side, checked when freed and when copied from; copies and memsets that must lie inside one
// allocation; launches checked as the driver checks them (a registered kernel name, block size,
// dynamic shared memory above 48 KiB only after cuFuncSetAttribute allowed it, grid limits) and
// run with global loads checked against the live allocations; tensor maps encoded in the
// simulation's own format (sim.h `TmaDesc`) after the limits cuTensorMapEncodeTiled checks.
// With INT8RT_SIMDRV_SKIP_KERNELS=1 launches are checked and counted but not run (to time the
// host side alone). Every entry point is counted by name: `int8rt_simdrv_counts`.
#include "../common.cuh"

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>

extern "C" int int8rt_sim_launch_checked(const char* name, const unsigned* grid, const unsigned* block,
                                         unsigned dyn_smem, unsigned flags, const void* params, size_t params_size,
                                         unsigned long long* stats, const unsigned long long* buffers,
                                         size_t nbuffers, char* err, size_t err_len);

namespace {

// CUresult values (cuda.h).
constexpr int OK = 0, INVALID_VALUE = 1, OUT_OF_MEMORY = 2, NOT_INITIALIZED = 3, INVALID_DEVICE = 101,
              INVALID_IMAGE = 200, INVALID_CONTEXT = 201, INVALID_HANDLE = 400, NOT_FOUND = 500,
              ILLEGAL_ADDRESS = 700, LAUNCH_OUT_OF_RESOURCES = 701, LAUNCH_FAILED = 719;

constexpr size_t SLACK = 256;
constexpr unsigned char POISON = 0xA5;
constexpr unsigned DEFAULT_DYN_SMEM = 48u << 10;

struct Alloc {
    unsigned char* raw;  // SLACK poison, size bytes, SLACK poison
    size_t size;
};

struct Function {
    const sim::Entry* entry;
    unsigned max_dyn_smem;
};

// A loaded module: the function handles taken from it, one per kernel name (as the driver hands
// out), freed when it is unloaded.
struct Module {
    std::map<std::string, std::unique_ptr<Function>> functions;
};

struct State {
    std::mutex m;
    bool init = false;
    std::map<unsigned long long, Alloc> allocs;  // keyed by device address
    std::set<Module*> modules;                   // loaded, not yet unloaded
    std::map<std::string, unsigned long long> counts;
    std::string last_error;
};

State& st() {
    static State s;
    return s;
}

void count(const char* what) {
    std::lock_guard<std::mutex> g(st().m);
    ++st().counts[what];
}

#define COUNT() count(__func__)

int env_int(const char* name, int dflt) {
    const char* v = std::getenv(name);
    return v && *v ? std::atoi(v) : dflt;
}

int arch() { return env_int("INT8RT_SIMDRV_ARCH", 90); }

// Shared memory per multiprocessor and the most one block may opt in to, by architecture
// (CUDA C++ Programming Guide, "Technical Specifications per Compute Capability"): sm_75 64 /
// 64 KiB, sm_80 / sm_87 164 / 163, sm_90 / sm_100 228 / 227, the others (sm_86, sm_89, sm_120)
// 100 / 99.
int smem_per_sm() {
    switch (arch()) {
        case 75: return 64 << 10;
        case 80: case 87: return 164 << 10;
        case 90: case 100: case 103: return 228 << 10;
        default: return 100 << 10;
    }
}
int smem_per_block_optin() { return arch() == 75 ? smem_per_sm() : smem_per_sm() - (1 << 10); }

int note(int code, const std::string& what) {
    std::fprintf(stderr, "int8rt simulated driver: %s\n", what.c_str());
    std::lock_guard<std::mutex> g(st().m);
    st().last_error = what;
    return code;
}

bool poison_intact(const Alloc& a) {
    for (size_t i = 0; i < SLACK; ++i)
        if (a.raw[i] != POISON || a.raw[SLACK + a.size + i] != POISON) return false;
    return true;
}

// The allocation holding [addr, addr + len), or null (caller holds the lock).
const Alloc* find(unsigned long long addr, size_t len) {
    auto& as = st().allocs;
    auto it = as.upper_bound(addr);
    if (it == as.begin()) return nullptr;
    --it;
    if (addr + len > it->first + it->second.size) return nullptr;
    return &it->second;
}

// Host memory or one allocation: the device side of a copy must be the latter.
int check_range(unsigned long long addr, size_t len, const char* what, bool reading) {
    std::lock_guard<std::mutex> g(st().m);
    const Alloc* a = find(addr, len);
    if (!a) {
        st().last_error = std::string(what) + ": device range outside every allocation";
        std::fprintf(stderr, "int8rt simulated driver: %s\n", st().last_error.c_str());
        return INVALID_VALUE;
    }
    if (reading && !poison_intact(*a)) {
        st().last_error = std::string(what) + ": a kernel wrote outside this allocation (poison changed)";
        std::fprintf(stderr, "int8rt simulated driver: %s\n", st().last_error.c_str());
        return ILLEGAL_ADDRESS;
    }
    return OK;
}

int alloc(unsigned long long* dptr, size_t size) {
    if (!dptr) return INVALID_VALUE;
    const size_t n = size + 2 * SLACK;
    auto* raw = static_cast<unsigned char*>(std::aligned_alloc(256, (n + 255) / 256 * 256));
    if (!raw) return OUT_OF_MEMORY;
    std::memset(raw, POISON, n);
    // Fresh device memory holds leftovers, not zeros: fill it with a pattern a kernel that reads
    // before writing would notice.
    std::memset(raw + SLACK, 0x5A, size);
    const auto addr = reinterpret_cast<unsigned long long>(raw + SLACK);
    std::lock_guard<std::mutex> g(st().m);
    st().allocs[addr] = Alloc{raw, size};
    *dptr = addr;
    return OK;
}

int release(unsigned long long dptr) {
    std::lock_guard<std::mutex> g(st().m);
    auto it = st().allocs.find(dptr);
    if (it == st().allocs.end()) return INVALID_VALUE;
    const bool intact = poison_intact(it->second);
    std::free(it->second.raw);
    st().allocs.erase(it);
    if (!intact) {
        st().last_error = "cuMemFree: a kernel wrote outside this allocation (poison changed)";
        std::fprintf(stderr, "int8rt simulated driver: %s\n", st().last_error.c_str());
        return ILLEGAL_ADDRESS;
    }
    return OK;
}

int launch(Function* f, const unsigned grid[3], const unsigned block[3], unsigned smem, void** params,
           void** extra) {
    if (!f || !f->entry) return INVALID_HANDLE;
    if (extra) return note(INVALID_VALUE, "launch: `extra` parameter buffers are not modelled");
    if (!params || !params[0]) return note(INVALID_VALUE, std::string(f->entry->name) + ": no kernel parameters");
    const unsigned long long threads = (unsigned long long)block[0] * block[1] * block[2];
    if (threads == 0 || threads > 1024 || block[2] > 64)
        return note(INVALID_VALUE, std::string(f->entry->name) + ": block of " + std::to_string(threads) +
                                       " threads");
    if (grid[0] == 0 || grid[1] == 0 || grid[2] == 0 || grid[1] > 65535 || grid[2] > 65535)
        return note(INVALID_VALUE, std::string(f->entry->name) + ": grid out of range");
    if (smem > f->max_dyn_smem)
        return note(INVALID_VALUE, std::string(f->entry->name) + ": " + std::to_string(smem) +
                                       " bytes of dynamic shared memory, " + std::to_string(f->max_dyn_smem) +
                                       " allowed (cuFuncSetAttribute raises the limit)");
    if (env_int("INT8RT_SIMDRV_SKIP_KERNELS", 0) == 1) return OK;
    // The live allocations as sorted [begin, end) pairs: global loads outside them fail.
    std::vector<unsigned long long> bufs;
    {
        std::lock_guard<std::mutex> g(st().m);
        bufs.reserve(st().allocs.size() * 2);
        for (const auto& [addr, a] : st().allocs) {
            bufs.push_back(addr);
            bufs.push_back(addr + a.size);
        }
    }
    char err[512] = {0};
    const int r = int8rt_sim_launch_checked(f->entry->name, grid, block, smem, 0, params[0], f->entry->params_size,
                                            nullptr, bufs.data(), bufs.size() / 2, err, sizeof err);
    if (r != 0) return note(LAUNCH_FAILED, std::string("launch of ") + f->entry->name + ": " + err);
    return OK;
}

// Handles: one context, streams and events as distinct non-null tokens.
int g_ctx_token;
thread_local void* t_current = nullptr;

struct Token {
    int unused;
};

const char* error_text(int e) {
    switch (e) {
        case OK: return "CUDA_SUCCESS";
        case INVALID_VALUE: return "CUDA_ERROR_INVALID_VALUE";
        case OUT_OF_MEMORY: return "CUDA_ERROR_OUT_OF_MEMORY";
        case NOT_INITIALIZED: return "CUDA_ERROR_NOT_INITIALIZED";
        case INVALID_DEVICE: return "CUDA_ERROR_INVALID_DEVICE";
        case INVALID_IMAGE: return "CUDA_ERROR_INVALID_IMAGE";
        case INVALID_CONTEXT: return "CUDA_ERROR_INVALID_CONTEXT";
        case INVALID_HANDLE: return "CUDA_ERROR_INVALID_HANDLE";
        case NOT_FOUND: return "CUDA_ERROR_NOT_FOUND";
        case ILLEGAL_ADDRESS: return "CUDA_ERROR_ILLEGAL_ADDRESS";
        case LAUNCH_OUT_OF_RESOURCES: return "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES";
        case LAUNCH_FAILED: return "CUDA_ERROR_LAUNCH_FAILED";
        default: return "CUDA_ERROR_UNKNOWN";
    }
}

// An event: its creation flags and, once recorded, the host time of the recording. Every
// operation completes when it is enqueued, so the time an event is recorded is the time the work
// before it on its stream finished — elapsed times are the simulation's own (tuning by events
// runs, and picks what simulates fastest). As the driver does, timing an event that was never
// recorded, or one created with CU_EVENT_DISABLE_TIMING, is CUDA_ERROR_INVALID_HANDLE.
struct Event {
    unsigned flags;
    bool recorded = false;
    std::chrono::steady_clock::time_point at{};
};
constexpr unsigned EVENT_DISABLE_TIMING = 0x2;

int elapsed(float* ms, void* a, void* b) {
    auto *ea = static_cast<Event*>(a), *eb = static_cast<Event*>(b);
    if (!ms) return INVALID_VALUE;
    if (!ea || !eb || !ea->recorded || !eb->recorded) return INVALID_HANDLE;
    if ((ea->flags | eb->flags) & EVENT_DISABLE_TIMING) return INVALID_HANDLE;
    *ms = std::chrono::duration<float, std::milli>(eb->at - ea->at).count();
    return OK;
}

}  // namespace

extern "C" {

// --- the census -------------------------------------------------------------------------------

// Writes "name count" lines for every entry point called so far (NUL-terminated, truncated to
// `len`); returns the bytes the whole text needs.
size_t int8rt_simdrv_counts(char* buf, size_t len) {
    std::string s;
    {
        std::lock_guard<std::mutex> g(st().m);
        for (const auto& [k, v] : st().counts) s += k + " " + std::to_string(v) + "\n";
    }
    if (len > 0) std::snprintf(buf, len, "%s", s.c_str());
    return s.size() + 1;
}

void int8rt_simdrv_reset_counts() {
    std::lock_guard<std::mutex> g(st().m);
    st().counts.clear();
}

// Live allocations (to check that a program frees what it allocates).
size_t int8rt_simdrv_live_allocations() {
    std::lock_guard<std::mutex> g(st().m);
    return st().allocs.size();
}

// --- initialization, devices, contexts --------------------------------------------------------

int cuInit(unsigned flags) {
    COUNT();
    if (flags != 0) return INVALID_VALUE;
    std::lock_guard<std::mutex> g(st().m);
    st().init = true;
    return OK;
}

int cuDriverGetVersion(int* v) {
    COUNT();
    *v = 13000;
    return OK;
}

int cuDeviceGetCount(int* n) {
    COUNT();
    *n = 1;
    return OK;
}

int cuDeviceGet(int* dev, int ordinal) {
    COUNT();
    if (ordinal != 0) return INVALID_DEVICE;
    *dev = 0;
    return OK;
}

int cuDeviceGetAttribute(int* v, int attrib, int dev) {
    COUNT();
    if (dev != 0) return INVALID_DEVICE;
    switch (attrib) {
        case 1: *v = 1024; break;                                   // max threads per block
        case 2: *v = 1024; break;                                   // max block x
        case 3: *v = 1024; break;                                   // max block y
        case 4: *v = 64; break;                                     // max block z
        case 5: *v = 2147483647; break;                             // max grid x
        case 6: case 7: *v = 65535; break;                          // max grid y, z
        case 8: *v = 48 << 10; break;                               // shared memory per block
        case 10: *v = 32; break;                                    // warp size
        case 16: *v = env_int("INT8RT_SIMDRV_SMS", 132); break;     // multiprocessors
        case 75: *v = arch() / 10; break;                           // compute capability major
        case 76: *v = arch() % 10; break;                           // compute capability minor
        case 81: *v = smem_per_sm(); break;                         // shared memory per SM
        case 97: *v = smem_per_block_optin(); break;                // opt-in shared memory per block
        case 115: *v = env_int("INT8RT_SIMDRV_POOLS", 1); break;  // memory pools supported
        default: *v = 0; break;
    }
    return OK;
}

int cuDeviceGetName(char* name, int len, int dev) {
    COUNT();
    if (dev != 0) return INVALID_DEVICE;
    std::snprintf(name, (size_t)len, "int8rt simulated sm_%d (libcuda_sim)", arch());
    return OK;
}

int cuDeviceTotalMem_v2(size_t* bytes, int dev) {
    COUNT();
    (void)dev;
    *bytes = size_t(80) << 30;
    return OK;
}

int cuDevicePrimaryCtxRetain(void** ctx, int dev) {
    COUNT();
    if (dev != 0) return INVALID_DEVICE;
    *ctx = &g_ctx_token;
    return OK;
}

int cuDevicePrimaryCtxRelease_v2(int dev) {
    COUNT();
    return dev == 0 ? OK : INVALID_DEVICE;
}

int cuCtxSetCurrent(void* ctx) {
    COUNT();
    if (ctx && ctx != &g_ctx_token) return INVALID_CONTEXT;
    t_current = ctx;
    return OK;
}

int cuCtxGetCurrent(void** ctx) {
    COUNT();
    *ctx = t_current;
    return OK;
}

int cuCtxGetDevice(int* dev) {
    COUNT();
    *dev = 0;
    return OK;
}

int cuCtxSynchronize() {
    COUNT();
    return OK;
}

int cuMemGetInfo_v2(size_t* free_bytes, size_t* total) {
    COUNT();
    *free_bytes = size_t(79) << 30;
    *total = size_t(80) << 30;
    return OK;
}

int cuGetErrorString(int e, const char** s) {
    COUNT();
    *s = error_text(e);
    return OK;
}

int cuGetErrorName(int e, const char** s) {
    COUNT();
    *s = error_text(e);
    return OK;
}

// The driver's private tables, asked for by NVRTC (which opens libcuda and calls cuInit, then
// this, while it compiles): none are offered, as the real driver answers an unknown table.
int cuGetExportTable(const void** table, const void* id) {
    COUNT();
    (void)id;
    if (table) *table = nullptr;
    return INVALID_VALUE;
}

// --- streams and events: every operation completes when enqueued ------------------------------

int cuStreamCreate(void** s, unsigned flags) {
    COUNT();
    (void)flags;
    *s = new Token{};
    return OK;
}

int cuStreamCreateWithPriority(void** s, unsigned flags, int prio) {
    COUNT();
    (void)flags;
    (void)prio;
    *s = new Token{};
    return OK;
}

int cuStreamDestroy_v2(void* s) {
    COUNT();
    delete static_cast<Token*>(s);
    return OK;
}

int cuStreamSynchronize(void* s) {
    COUNT();
    (void)s;
    return OK;
}

int cuStreamQuery(void* s) {
    COUNT();
    (void)s;
    return OK;
}

int cuStreamWaitEvent(void* s, void* e, unsigned flags) {
    COUNT();
    (void)s;
    (void)flags;
    return e ? OK : INVALID_HANDLE;
}

int cuEventCreate(void** e, unsigned flags) {
    COUNT();
    *e = new Event{flags};
    return OK;
}

int cuEventDestroy_v2(void* e) {
    COUNT();
    delete static_cast<Event*>(e);
    return OK;
}

int cuEventRecord(void* e, void* s) {
    COUNT();
    (void)s;
    if (!e) return INVALID_HANDLE;
    auto* ev = static_cast<Event*>(e);
    ev->recorded = true;
    ev->at = std::chrono::steady_clock::now();
    return OK;
}

int cuEventSynchronize(void* e) {
    COUNT();
    return e ? OK : INVALID_HANDLE;
}

int cuEventQuery(void* e) {
    COUNT();
    return e ? OK : INVALID_HANDLE;
}

int cuEventElapsedTime(float* ms, void* a, void* b) {
    COUNT();
    return elapsed(ms, a, b);
}

int cuEventElapsedTime_v2(float* ms, void* a, void* b) {
    COUNT();
    return elapsed(ms, a, b);
}

// --- memory -----------------------------------------------------------------------------------

int cuMemAlloc_v2(unsigned long long* dptr, size_t size) {
    COUNT();
    return alloc(dptr, size);
}

int cuMemAllocAsync(unsigned long long* dptr, size_t size, void* s) {
    COUNT();
    (void)s;
    return alloc(dptr, size);
}

int cuMemFree_v2(unsigned long long dptr) {
    COUNT();
    return release(dptr);
}

int cuMemFreeAsync(unsigned long long dptr, void* s) {
    COUNT();
    (void)s;
    return release(dptr);
}

int cuMemsetD8_v2(unsigned long long dptr, unsigned char v, size_t n) {
    COUNT();
    if (int r = check_range(dptr, n, "cuMemsetD8", false)) return r;
    std::memset(reinterpret_cast<void*>(dptr), v, n);
    return OK;
}

int cuMemsetD8Async(unsigned long long dptr, unsigned char v, size_t n, void* s) {
    COUNT();
    (void)s;
    if (int r = check_range(dptr, n, "cuMemsetD8Async", false)) return r;
    std::memset(reinterpret_cast<void*>(dptr), v, n);
    return OK;
}

int cuMemcpyHtoD_v2(unsigned long long dst, const void* src, size_t n) {
    COUNT();
    if (int r = check_range(dst, n, "cuMemcpyHtoD", false)) return r;
    std::memcpy(reinterpret_cast<void*>(dst), src, n);
    return OK;
}

int cuMemcpyHtoDAsync_v2(unsigned long long dst, const void* src, size_t n, void* s) {
    COUNT();
    (void)s;
    if (int r = check_range(dst, n, "cuMemcpyHtoDAsync", false)) return r;
    std::memcpy(reinterpret_cast<void*>(dst), src, n);
    return OK;
}

int cuMemcpyDtoH_v2(void* dst, unsigned long long src, size_t n) {
    COUNT();
    if (int r = check_range(src, n, "cuMemcpyDtoH", true)) return r;
    std::memcpy(dst, reinterpret_cast<const void*>(src), n);
    return OK;
}

int cuMemcpyDtoHAsync_v2(void* dst, unsigned long long src, size_t n, void* s) {
    COUNT();
    (void)s;
    if (int r = check_range(src, n, "cuMemcpyDtoHAsync", true)) return r;
    std::memcpy(dst, reinterpret_cast<const void*>(src), n);
    return OK;
}

int cuMemcpyDtoD_v2(unsigned long long dst, unsigned long long src, size_t n) {
    COUNT();
    if (int r = check_range(src, n, "cuMemcpyDtoD source", true)) return r;
    if (int r = check_range(dst, n, "cuMemcpyDtoD destination", false)) return r;
    std::memmove(reinterpret_cast<void*>(dst), reinterpret_cast<const void*>(src), n);
    return OK;
}

int cuMemcpyDtoDAsync_v2(unsigned long long dst, unsigned long long src, size_t n, void* s) {
    COUNT();
    (void)s;
    if (int r = check_range(src, n, "cuMemcpyDtoDAsync source", true)) return r;
    if (int r = check_range(dst, n, "cuMemcpyDtoDAsync destination", false)) return r;
    std::memmove(reinterpret_cast<void*>(dst), reinterpret_cast<const void*>(src), n);
    return OK;
}

// --- modules and functions --------------------------------------------------------------------

// Any image loads (the kernels are the simulation's, looked up by name).
int cuModuleLoadData(void** module, const void* image) {
    COUNT();
    if (!image) return INVALID_VALUE;
    auto* m = new Module{};
    std::lock_guard<std::mutex> g(st().m);
    st().modules.insert(m);
    *module = m;
    return OK;
}

int cuModuleUnload(void* module) {
    COUNT();
    std::lock_guard<std::mutex> g(st().m);
    auto* m = static_cast<Module*>(module);
    if (st().modules.erase(m) == 0) return INVALID_HANDLE;
    delete m;  // and its function handles
    return OK;
}

int cuModuleGetFunction(void** f, void* module, const char* name) {
    COUNT();
    if (!f || !name) return INVALID_VALUE;
    std::unique_lock<std::mutex> g(st().m);
    auto* m = static_cast<Module*>(module);
    if (st().modules.count(m) == 0) return INVALID_HANDLE;
    if (auto it = m->functions.find(name); it != m->functions.end()) {
        *f = it->second.get();
        return OK;
    }
    for (const auto& e : sim::registry())
        if (std::strcmp(e.name, name) == 0) {
            auto& slot = m->functions[name];
            slot = std::make_unique<Function>(Function{&e, DEFAULT_DYN_SMEM});
            *f = slot.get();
            return OK;
        }
    g.unlock();  // (note takes the lock)
    return note(NOT_FOUND, std::string("cuModuleGetFunction: no kernel named ") + name);
}

int cuFuncSetAttribute(void* f, int attrib, int value) {
    COUNT();
    auto* fn = static_cast<Function*>(f);
    if (!fn) return INVALID_HANDLE;
    if (attrib == 8) {  // CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
        if (value < 0 || value > smem_per_block_optin())
            return note(INVALID_VALUE, "cuFuncSetAttribute: " + std::to_string(value) +
                                           " bytes of dynamic shared memory, sm_" + std::to_string(arch()) +
                                           " allows " + std::to_string(smem_per_block_optin()));
        fn->max_dyn_smem = (unsigned)value;
    }
    return OK;
}

int cuFuncGetAttribute(int* v, int attrib, void* f) {
    COUNT();
    auto* fn = static_cast<Function*>(f);
    if (!fn) return INVALID_HANDLE;
    *v = attrib == 0 ? (int)fn->entry->max_threads : attrib == 8 ? (int)fn->max_dyn_smem : 0;
    return OK;
}

// --- launches ---------------------------------------------------------------------------------

int cuLaunchKernel(void* f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                   unsigned smem, void* stream, void** params, void** extra) {
    COUNT();
    (void)stream;
    const unsigned g[3] = {gx, gy, gz}, b[3] = {bx, by, bz};
    return launch(static_cast<Function*>(f), g, b, smem, params, extra);
}

// cuda.h's CUlaunchAttribute (an id, padding, a 64-byte value union) and CUlaunchConfig.
struct LaunchAttribute {
    int id;
    char pad[4];
    unsigned char value[64];
};
struct LaunchConfig {
    unsigned gx, gy, gz, bx, by, bz, smem;
    void* stream;
    LaunchAttribute* attrs;
    unsigned nattrs;
};

int cuLaunchKernelEx(const LaunchConfig* c, void* f, void** params, void** extra) {
    COUNT();
    if (!c || (c->nattrs > 0 && !c->attrs)) return INVALID_VALUE;
    for (unsigned i = 0; i < c->nattrs; ++i) {
        // Programmatic stream serialization (6) is the one attribute this crate sets; it needs sm_90.
        if (c->attrs[i].id == 6) {
            count("cuLaunchKernelEx(programmatic stream serialization)");
            if (arch() < 90) return note(INVALID_VALUE, "programmatic stream serialization before sm_90");
        } else {
            return note(INVALID_VALUE, "cuLaunchKernelEx: launch attribute " + std::to_string(c->attrs[i].id) +
                                           " is not modelled");
        }
    }
    const unsigned g[3] = {c->gx, c->gy, c->gz}, b[3] = {c->bx, c->by, c->bz};
    return launch(static_cast<Function*>(f), g, b, c->smem, params, extra);
}

// --- tensor maps ------------------------------------------------------------------------------

// The limits the driver API reference lists for cuTensorMapEncodeTiled, for the one use this
// crate makes of it (2-D u8, no interleave, the 128-byte swizzle), then the simulation's encoding.
int cuTensorMapEncodeTiled(void* map, int dtype, unsigned rank, void* addr, const unsigned long long* dims,
                           const unsigned long long* strides, const unsigned* box, const unsigned* estrides,
                           int interleave, int swizzle, int l2, int oob) {
    COUNT();
    (void)l2;
    if (!map || !dims || !box || !estrides || (rank > 1 && !strides)) return INVALID_VALUE;
    if (dtype != 0 || rank != 2 || interleave != 0 || swizzle != 3 || oob != 0)
        return note(INVALID_VALUE, "cuTensorMapEncodeTiled: only 2-D u8 maps, no interleave, 128-byte swizzle, "
                                   "zero fill are modelled");
    const auto a = reinterpret_cast<unsigned long long>(addr);
    if (a % 16 != 0) return note(INVALID_VALUE, "cuTensorMapEncodeTiled: base not 16-byte aligned");
    for (unsigned i = 0; i < rank; ++i) {
        if (dims[i] == 0 || dims[i] > (1ull << 32)) return note(INVALID_VALUE, "cuTensorMapEncodeTiled: dimension");
        if (box[i] == 0 || box[i] > 256) return note(INVALID_VALUE, "cuTensorMapEncodeTiled: box dimension");
        if (estrides[i] == 0 || estrides[i] > 8) return note(INVALID_VALUE, "cuTensorMapEncodeTiled: element stride");
    }
    if (strides[0] % 16 != 0 || strides[0] >= (1ull << 40))
        return note(INVALID_VALUE, "cuTensorMapEncodeTiled: row stride not a multiple of 16 below 2^40");
    // With the 128-byte swizzle the box's inner dimension is at most 128 bytes.
    if (box[0] > 128) return note(INVALID_VALUE, "cuTensorMapEncodeTiled: inner box over the 128-byte swizzle span");
    if (estrides[0] != 1 || estrides[1] != 1)
        return note(INVALID_VALUE, "cuTensorMapEncodeTiled: element strides other than 1 are not modelled");
    sim::TmaDesc d{sim::TMA_MAGIC, a, dims[0], dims[1], strides[0], box[0], box[1], 3};
    std::memset(map, 0, 128);
    std::memcpy(map, &d, sizeof d);
    return OK;
}

}  // extern "C"
