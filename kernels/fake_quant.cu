// kernels/fake_quant.cu — fake quantization for quantization-aware training (src/qat/): the
// forward y = (clamp(rhe(x / s) + zp, qmin, qmax) − zp) · s and the local partials of its
// backward (clipped straight-through estimator for x, LSQ for the scale, LSQ+ for the zero
// point), per tensor or per channel, for any 2..=8-bit range. Every value is the bits of the
// scalar definitions in src/reference.rs (section "fake quantization": `fake_quantize`,
// `fake_quantize_grad`). Host wrappers and simulation tests: src/cuda/fake_quant.rs.
#include "common.cuh"

// ---------------------------------------------------------------------------------------------
// Thread level.
// ---------------------------------------------------------------------------------------------

I8RT_INLINE int fq_channel(long long i, long long inner, int groups) {
    return groups == 1 ? 0 : (int)((i / inner) % groups);
}

I8RT_INLINE bool fq_nonfinite(float x) { return (__float_as_uint(x) & 0x7fffffffu) >= 0x7f800000u; }

// Twin of `reference::fake_quantize`: the code by the crate's quantize rule (a true division,
// ties to even, clamp after adding zp), then (code − zp) as f32 · scale.
I8RT_INLINE float fake_quantize(float x, float s, int zp, int qmin, int qmax) {
    const int q = round_shift_clamp(__fdiv_rn(x, s), zp, qmin, qmax);
    return __fmul_rn(__int2float_rn(q - zp), s);
}

// Twin of `reference::fake_quantize_grad`: u = x / s, r = rhe(u) + zp; inside (qmin ≤ r ≤ qmax)
// dx = 1, dscale = rhe(u) − u, dzp = 0; below dx = 0, dscale = qmin − zp, dzp = −s; above
// dx = 0, dscale = qmax − zp, dzp = −s. r is compared in f32 (rhe(u) is integer-valued or ±inf,
// and qmin − zp, qmax − zp are small integers, exact), which orders like the reference's i64.
I8RT_INLINE void fake_quantize_grad(float x, float s, int zp, int qmin, int qmax, float* dx, float* ds,
                                    float* dz) {
    const float u = __fdiv_rn(x, s);
    const float ru = rintf(u);
    if (ru < (float)(qmin - zp)) {
        *dx = 0.0f;
        *ds = (float)(qmin - zp);
        *dz = -s;
    } else if (ru > (float)(qmax - zp)) {
        *dx = 0.0f;
        *ds = (float)(qmax - zp);
        *dz = -s;
    } else {
        *dx = 1.0f;
        *ds = __fsub_rn(ru, u);
        *dz = 0.0f;
    }
}

// ---------------------------------------------------------------------------------------------
// Entries: grid-stride loops over any length.
// ---------------------------------------------------------------------------------------------

I8RT_ENTRY(fake_quant_f32, FakeQuantParams, 256) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < p.len; i += stride) {
        const float x = p.x[i];
        if (fq_nonfinite(x)) status_report(p.status, (unsigned long long)i);
        const int c = fq_channel(i, p.inner, p.groups);
        p.y[i] = fake_quantize(x, p.scale[c], p.zp[c], p.qmin, p.qmax);
    }
}

I8RT_ENTRY(fake_quant_grad_f32, FakeQuantParams, 256) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < p.len; i += stride) {
        const float x = p.x[i];
        if (fq_nonfinite(x)) status_report(p.status, (unsigned long long)i);
        const int c = fq_channel(i, p.inner, p.groups);
        float dx, ds, dz;
        fake_quantize_grad(x, p.scale[c], p.zp[c], p.qmin, p.qmax, &dx, &ds, &dz);
        p.dx[i] = dx;
        p.dscale[i] = ds;
        p.dzp[i] = dz;
    }
}
