// kernels/sim/selftest.cu — kernels that test the simulation itself (compiled into the
// simulation library only, not by NVRTC): the warp shuffles against the CUDA programming guide's
// description of __shfl_sync / __shfl_up_sync / __shfl_down_sync / __shfl_xor_sync, including
// sub-warp widths. src/cuda/sim_tests.rs computes the expected lanes independently.
#include "../common.cuh"

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
