// bench/probes/tma_box_align.cu — a stand-alone probe (nvcc, driver API; not part of the crate)
// of which TMA box origins the hardware accepts: the crate's TMA probe
// (src/cuda/tma_probe.rs, tests/gpu.rs) failed on an H200 with CUDA_ERROR_ILLEGAL_INSTRUCTION for
// a box whose first byte is not a multiple of 16. This loads one box of a 2-D u8 tensor map
// (the crate's encoding: 128-byte inner box, optional 128-byte swizzle) at the origin given on the
// command line and prints the bytes as they landed, or the error, so that one process per origin
// says which origins trap. Run by scripts/tma-box-align.sh on the GPU machine.
//
//   nvcc -arch=sm_90a -o tma_box_align bench/probes/tma_box_align.cu -lcuda
//   ./tma_box_align BOX_ROWS C0 C1 SWIZZLE(0|128)
#include <cuda.h>
#include <cstdio>
#include <cstdlib>
#include <vector>

#define CK(x)                                                        \
    do {                                                             \
        CUresult r_ = (x);                                           \
        if (r_ != CUDA_SUCCESS) {                                    \
            const char* s_ = nullptr;                                \
            cuGetErrorName(r_, &s_);                                 \
            printf("error %s at %s\n", s_ ? s_ : "?", #x);           \
            return 1;                                                \
        }                                                            \
    } while (0)

constexpr int ROWS = 70, COLS = 300, LD = 304;

__global__ void load_box(const __grid_constant__ CUtensorMap map, int c0, int c1, int bytes, unsigned char* out) {
    extern __shared__ __align__(1024) unsigned char smem[];
    unsigned base = (unsigned)__cvta_generic_to_shared(smem);
    base = (base + 1023u) & ~1023u;
    unsigned bar = base + (unsigned)bytes;
    if (threadIdx.x == 0) {
        asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(bar));
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(bytes) : "memory");
        asm volatile(
            "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];" ::"r"(base),
            "l"(&map), "r"(c0), "r"(c1), "r"(bar)
            : "memory");
    }
    unsigned done = 0;
    long long t0 = clock64();
    while (!done) {
        asm volatile("{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], 0; selp.u32 %0, 1, 0, p; }"
                     : "=r"(done)
                     : "r"(bar)
                     : "memory");
        if (!done && clock64() - t0 > (1ll << 32)) {
            if (threadIdx.x == 0) printf("timed out waiting for the box's bytes\n");
            __trap();
        }
    }
    const unsigned char* s = smem + (base - (unsigned)__cvta_generic_to_shared(smem));
    for (int i = threadIdx.x; i < bytes; i += blockDim.x) out[i] = s[i];
}

int main(int argc, char** argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s BOX_ROWS C0 C1 SWIZZLE(0|128)\n", argv[0]);
        return 2;
    }
    const int box_rows = atoi(argv[1]), c0 = atoi(argv[2]), c1 = atoi(argv[3]), sw = atoi(argv[4]);
    CK(cuInit(0));
    CUdevice dev;
    CK(cuDeviceGet(&dev, 0));
    CUcontext ctx;
    CK(cuDevicePrimaryCtxRetain(&ctx, dev));
    CK(cuCtxSetCurrent(ctx));
    std::vector<unsigned char> src(ROWS * LD);
    for (size_t i = 0; i < src.size(); ++i) src[i] = (unsigned char)(i * 7 % 251);
    CUdeviceptr d_src, d_out;
    const int bytes = 128 * box_rows;
    CK(cuMemAlloc(&d_src, src.size()));
    CK(cuMemAlloc(&d_out, bytes));
    CK(cuMemcpyHtoD(d_src, src.data(), src.size()));
    CK(cuMemsetD8(d_out, 0xEE, bytes));
    CUtensorMap map;
    cuuint64_t dims[2] = {COLS, ROWS}, strides[1] = {LD};
    cuuint32_t box[2] = {128, (cuuint32_t)box_rows}, es[2] = {1, 1};
    CK(cuTensorMapEncodeTiled(&map, CU_TENSOR_MAP_DATA_TYPE_UINT8, 2, (void*)d_src, dims, strides, box, es,
                              CU_TENSOR_MAP_INTERLEAVE_NONE,
                              sw == 128 ? CU_TENSOR_MAP_SWIZZLE_128B : CU_TENSOR_MAP_SWIZZLE_NONE,
                              CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE));
    load_box<<<1, 128, 1024 + bytes + 8>>>(map, c0, c1, bytes, (unsigned char*)d_out);
    std::vector<unsigned char> got(bytes);
    CK(cuMemcpyDtoH(got.data(), d_out, bytes));
    // Compare with the layout src/cuda/tma_probe.rs expects (swizzle 128: chunk j of row i at
    // 16 (j ^ (i % 8)); zeros outside the tensor).
    int wrong = 0, first = -1;
    for (int i = 0; i < box_rows; ++i)
        for (int b = 0; b < 128; ++b) {
            const int r = c1 + i, c = c0 + b;
            const unsigned char want = (r < 0 || c < 0 || r >= ROWS || c >= COLS) ? 0 : src[r * LD + c];
            const int at = 128 * i + (sw == 128 ? 16 * ((b / 16) ^ (i % 8)) : 16 * (b / 16)) + b % 16;
            if (got[at] != want) {
                if (first < 0) first = at;
                ++wrong;
            }
        }
    printf("box %d rows at (%d, %d), swizzle %d: landed; %d of %d bytes differ from the expected layout", box_rows,
           c0, c1, sw, wrong, bytes);
    if (first >= 0) printf(" (first at byte %d)", first);
    printf("; first row as landed:");
    for (int b = 0; b < 32; ++b) printf(" %d", got[b]);
    printf(" ...\n");
    return wrong ? 3 : 0;
}
