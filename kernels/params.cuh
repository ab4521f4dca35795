// kernels/params.cuh — the parameter blocks of every kernel entry point. Each entry takes exactly
// one of these structs by value. The Rust twin of each struct is in `src/cuda/params.rs`
// (`#[repr(C)]`, same field order); the host simulation checks `sizeof` at every launch.
//
// Layout rules that keep the two sides identical without a C ABI negotiation: pointers first
// (64-bit on both sides), then 64-bit integers, then 32-bit fields, and a total size that is a
// multiple of 8 (explicit `pad` fields where needed).
#pragma once

// Non-finite input report, shared by the activation quantizers and read by the GEMM: `count`
// non-finite values were seen, the first (lowest flat index) at `first`. `first` starts at
// ~0ull; the host reads both after the stream is synchronized.
struct Status {
    unsigned long long count;
    unsigned long long first;
};

// The float stage of the GEMM: twin of `reference::Epilogue` (src/reference.rs) plus the
// output quantization of `OutKind::I8`. The activation scale lives on the device (written by the
// dynamic quantizer, or uploaded once for a static scale), so the per-column constants the
// reference precomputes on the host are formed here from the same f32/f64 operations:
//   per tensor: m[n] = s_x · s_w[n] (f32 product), r[n] = f32(f64(s_x) · f64(s_w[n]) / f64(s_y));
//   per row:    (f32(acc) · s_w[n]) · s_x[m].
struct EpiParams {
    const float* w_scale;    // [n]: s_w[n] (a per-tensor weight scale is expanded to n)
    const float* act_scale;  // [1] (per tensor) or [m] (per row): s_x
    const float* bias_f32;   // [n] or null: float bias added after scaling
    int per_row;             // 1: act_scale is per row
    int out_kind;            // OUT_I32, OUT_F32, OUT_F16, OUT_BF16, OUT_I8
    float out_scale;         // s_y (i8 output)
    int out_zp;              // zp_y
    int out_qmin;
    int out_qmax;
};

#define OUT_I32 0
#define OUT_F32 1
#define OUT_F16 2
#define OUT_BF16 3
#define OUT_I8 4

// One GEMM: Y[m, n] = epilogue(X[m, k] · W[n, k]ᵀ). X is s8 or u8 (the entry point says which),
// W is s8. Strides are in elements (= bytes for X and W).
struct GemmParams {
    const void* x;          // [m, lda]
    const signed char* w;   // [n, ldb]
    void* y;                // [m, ldy], element type by epi.out_kind
    const int* bias_i32;    // [n] or null: the i32 bias, added to the accumulator
    const int* act_zp;      // or null: activation zero point of row i at act_zp[i * zp_stride]
    const int* wsum;        // [n]: Σ_k w[n, k] (read only with act_zp)
    const Status* status;   // or null: when status->count != 0 the kernel writes nothing
    long long lda;
    long long ldb;
    long long ldy;
    int m;
    int n;
    int k;
    int zp_stride;          // 0: one zero point for the tensor, 1: one per row
    EpiParams epi;
};

// A tensor-core GEMM (kernels/gemm_mma.cu): the GEMM itself plus what split-K needs.
#define MMA_PAIRED_STORES 1  // flags: y's row stride is even and its base aligned to two elements

struct MmaParams {
    GemmParams g;
    int* partials;           // gridDim.z > 1: [tiles][splits][BM · BN] i32 partial sums (scratch)
    unsigned* counters;      // gridDim.z > 1: [tiles], zero at launch; each tile's last block re-zeroes its own
    int kt_per_split;        // k tiles (the kernel's stage: 64 bytes, 128 for wgmma) per grid z (all when gridDim.z == 1)
    int flags;               // MMA_PAIRED_STORES
};

// A 2-D tensor map for the Tensor Memory Accelerator (`cp.async.bulk.tensor`, sm_90): 128 opaque
// bytes. On a GPU the driver encodes them (`cuTensorMapEncodeTiled`, src/cuda/driver.rs); in the
// host simulation src/cuda/sim.rs writes sim.h's own description (`sim::TmaDesc`) into them.
// 128-byte aligned (CUDA 13's CUtensorMap; 12's asks 64): the kernel takes its address in the
// parameter space (`__grid_constant__`).
struct alignas(128) TmaMap {
    unsigned long long bits[16];
};

// A tensor-core GEMM whose operand tiles come by TMA (kernels/gemm_tma.cu): the maps of X
// ([m, k] bytes, row stride lda) and W ([n, k], ldb), each with the kernel's box (BK bytes ×
// BM or BN rows, 128-byte swizzle, zeros outside the matrix), then the MmaParams of every
// tensor-core GEMM. 512 bytes (explicit padding: the Rust twin is plain data).
struct TmaParams {
    TmaMap x;
    TmaMap w;
    MmaParams q;
    unsigned long long pad[11];
};
static_assert(sizeof(MmaParams) == 168 && sizeof(TmaParams) == 512, "TmaParams' layout (src/cuda/params.rs)");

// The TMA probe (kernels/gemm_tma.cu `tma_probe`, src/cuda/tma_probe.rs): one box of `map` at
// (c0, c1) into shared memory, then its bytes as they landed (swizzle and zero fill included)
// to `out`. 256 bytes.
struct TmaProbeParams {
    TmaMap map;
    unsigned char* out;  // [box_bytes]
    int c0;              // the box's first byte along a row
    int c1;              // its first row
    int box_bytes;       // 128 · box rows
    int pad0;
    unsigned long long pad[13];
};
static_assert(sizeof(TmaProbeParams) == 256, "TmaProbeParams' layout (src/cuda/params.rs)");

// Elementwise quantize: q[i] = clamp(rhe(op(x[i], c)) + zp[c], qmin, qmax) with the channel
// c = (i / inner) % groups (per tensor: groups = 1; per row of [rows, cols]: inner = cols;
// per channel on the last axis: inner = 1, groups = cols).
#define RULE_DIVIDE 0    // op = x / scale[c]            (the crate's rule, __fdiv_rn)
#define RULE_MULTIPLY 1  // op = x * factor[c]           (torch.ao inverse, pytorch-quantization unit)

struct QuantizeParams {
    const float* x;
    void* q;                 // s8 or u8 by the entry point
    const float* scale;      // [groups]
    const float* factor;     // [groups] (RULE_MULTIPLY)
    const int* zp;           // [groups]
    Status* status;          // or null: NaN (and ±inf unless allow_inf) are counted here
    long long len;
    long long inner;
    int groups;
    int rule;
    int qmin;
    int qmax;
    int allow_inf;           // 1: ±inf saturate (QuantParams::quantize_to_*), 0: counted as errors
    int pad;
};

// Elementwise dequantize: y[i] = (q[i] - zp[c]) * scale[c] (DEQ_AFFINE); with DEQ_UNIT (the
// pytorch-quantization rule) y = q / factor[c], or q itself when factor[c] == 0.
#define DEQ_AFFINE 0
#define DEQ_UNIT 1

struct DequantizeParams {
    const void* q;           // s8 or u8 by the entry point
    float* y;
    const float* scale;
    const float* factor;
    const int* zp;
    long long len;
    long long inner;
    int groups;
    int rule;
};

// Activation quantization of x[m, k] (row-major, stride k) into q[m, ldq] (columns k..ldq
// zero-filled), fused with the range reduction. One block per row. Modes:
//   ACT_ROWS:   dynamic per row: reduce row i, compute its scale (and zero point), quantize it;
//   ACT_RANGE:  dynamic per tensor, pass 1: reduce row i, fold it into range[0] (min) and
//               range[1] (max) with atomics on order-preserving words (ACT_INIT initialises them
//               to +inf and −inf);
//   ACT_TENSOR: dynamic per tensor, pass 2: read range[], quantize row i; row 0 writes scales[0]
//               (and zps[0]);
//   ACT_STATIC: a fixed scales[0] (zps[0] or 0), `rule` / `factor`, `qmin` / `qmax`;
//   ACT_INIT:   launched first with one block: status ← clear (count 0, first all ones) and, when
//               `range` is set, range ← (+inf, −inf), so a forward uploads nothing per call.
// Dynamic modes use the crate's schemes: symmetric s8 [-127, 127] (scale amax / 127), asymmetric
// u8 [0, 255]. Every non-finite input is counted in `status` (always an error).
#define ACT_ROWS 0
#define ACT_RANGE 1
#define ACT_TENSOR 2
#define ACT_STATIC 3
#define ACT_INIT 4

struct ActQuantParams {
    const float* x;
    void* q;                 // s8 or u8 by the entry point
    float* scales;           // [m] (ACT_ROWS) or [1]
    int* zps;                // [m] or [1], or null (symmetric)
    unsigned* range;         // [2] (ACT_RANGE, ACT_TENSOR): ordered min, ordered max
    Status* status;
    long long ldq;
    int m;
    int k;
    int mode;
    int rule;                // ACT_STATIC: RULE_DIVIDE or RULE_MULTIPLY
    float factor;            // ACT_STATIC, RULE_MULTIPLY
    int qmin;                // ACT_STATIC
    int qmax;                // ACT_STATIC
    int pad;
};

// Calibration statistics of one batch (kernels/calib.cu), read by the observers in src/calib/
// through src/cuda/calib.rs. The batch is x[0 .. outer · cols), viewed as [outer, cols] with
// cols = channels · inner (the C-order tensor split at the calibrated axis); per tensor,
// outer = 1, cols = len, channels = 1. Only finite values enter a range; non-finite ones are
// counted in `status` (count and lowest flat index) and never binned.
struct CalibReduceParams {
    const float* x;
    unsigned* range;             // [2 · channels]: ordered min of channel c at 2c, ordered max at
                                 // 2c + 1 (f32_to_ordered; the host initialises +inf and −inf)
    unsigned long long* zeros;   // [1] or null (per tensor): finite values equal to 0 (either sign)
    Status* status;
    long long outer;
    long long cols;
    long long inner;
    int channels;
    int pad;
};

// Histogram bin rules; each is the twin of a host rule in src/calib/ (see calib.cu).
#define HIST_SCALED 0  // |x|: trunc((|x| · nf) / right) in f32 (f64 when |x| · nf overflows)
#define HIST_WIDTH 1   // |x|: trunc(|x| / width)
#define HIST_SIGNED 2  // x: floor(x / width) − first, on a grid anchored at 0

// Count the bin of every finite value of x[0 .. len) into counts[0 .. bins) (added to what is
// there). Positions past either end are clamped to the first / last bin, as the host rules do.
struct HistParams {
    const float* x;
    unsigned long long* counts;  // [bins]
    long long len;
    unsigned long long bins;
    long long first;             // HIST_SIGNED: the grid index of counts[0]
    int rule;
    float nf;                    // HIST_SCALED: bins as f32 (the host's `n as f32`)
    float right;                 // HIST_SCALED: the right edge edges[-1] (> 0)
    float width;                 // HIST_WIDTH, HIST_SIGNED: the bin width (> 0 for HIST_SIGNED)
    int skip_zeros;              // 1: values equal to 0 are not counted (`skip_zeros`)
    int pad;
};

// Fake quantization (kernels/fake_quant.cu, quantization-aware training): x[len] viewed as
// [outer, groups, inner], channel c = (i / inner) % groups (per tensor: groups = 1). The forward
// entry writes y = (clamp(rhe(x / scale[c]) + zp[c], qmin, qmax) − zp[c]) · scale[c]; the
// gradient entry writes the local partials dx, dscale, dzp of `reference::fake_quantize_grad`.
// Non-finite inputs are counted in `status` (an error for the host wrapper).
struct FakeQuantParams {
    const float* x;
    float* y;                // forward: [len]
    float* dx;               // gradient: [len] ∂y/∂x (clipped STE)
    float* dscale;           // gradient: [len] ∂y/∂scale (LSQ)
    float* dzp;              // gradient: [len] ∂y/∂zp (LSQ+)
    const float* scale;      // [groups]
    const int* zp;           // [groups]
    Status* status;
    long long len;
    long long inner;
    int groups;
    int qmin;
    int qmax;
    int pad;
};

// Instruction-peak microbenchmarks (kernels/peak.cu): every thread seeds its register operands
// from seed[0 .. PEAK_SEED_WORDS), runs `iters` iterations of a loop of independent
// `mma.sync.m16n8k32` (per warp) or `dp4a` (per thread) instructions on them, and writes the
// wrapping sum of its accumulators to out[blockIdx.x · blockDim.x + threadIdx.x]. Blocks of at
// most PEAK_THREADS threads, a multiple of 32.
#define PEAK_THREADS 256
#define PEAK_SEED_WORDS 64
#define PEAK_MMA_MT 2         // mma tiles per warp: PEAK_MMA_MT × PEAK_MMA_NT accumulator sets
#define PEAK_MMA_NT 4
#define PEAK_MMA_UNROLL 4     // mma.sync per iteration per warp: MT · NT · UNROLL = 32
#define PEAK_DP4A_ACC 16      // independent dp4a accumulators per thread
#define PEAK_DP4A_UNROLL 8    // dp4a per iteration per thread: ACC · UNROLL = 128

struct PeakParams {
    const int* seed;         // [PEAK_SEED_WORDS]
    int* out;                // [gridDim.x · blockDim.x]
    int iters;
    int pad;
};
