// kernels/quant.cu — quantization kernels: elementwise quantize / dequantize (per tensor, per
// row, per channel; symmetric s8 and asymmetric u8; the crate's division rule and the presets'
// multiply rule) and dynamic activation quantization fused with its range reduction (per row,
// or per tensor in two passes). Every result is the bits of the scalar code in
// src/reference.rs (`quantize`, `dequantize`, `symmetric_scale`, `asymmetric_params`).
#include "common.cuh"

// ---------------------------------------------------------------------------------------------
// Thread level.
// ---------------------------------------------------------------------------------------------

// The channel of flat index i in a tensor viewed as [outer, groups, inner].
I8RT_INLINE int channel_of(long long i, long long inner, int groups) {
    return groups == 1 ? 0 : (int)((i / inner) % groups);
}

// Twin of `reference::symmetric_scale`: amax / 127, or 1 when that is not > 0.
I8RT_INLINE float symmetric_scale(float amax) {
    float s = __fdiv_rn(amax, 127.0f);
    return s > 0.0f ? s : 1.0f;
}

// Twin of `reference::asymmetric_params`: the range widened to contain 0, scale (hi − lo) / 255
// (1 unless finite and > 0), zero point clamp(rhe(−lo / scale), 0, 255).
I8RT_INLINE void asymmetric_params(float lo, float hi, float* scale, int* zp) {
    lo = fminf(lo, 0.0f);
    hi = fmaxf(hi, 0.0f);
    float s = __fdiv_rn(__fsub_rn(hi, lo), 255.0f);
    bool ok = s > 0.0f && !is_nonfinite_bits(__float_as_uint(s));
    float sc = ok ? s : 1.0f;
    *scale = sc;
    *zp = round_shift_clamp(__fdiv_rn(-lo, sc), 0, 0, 255);
}

// ---------------------------------------------------------------------------------------------
// Elementwise quantize / dequantize (grid-stride loops, any length).
// ---------------------------------------------------------------------------------------------

template <bool U8>
I8RT_INLINE void quantize_body(const QuantizeParams& p) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < p.len; i += stride) {
        const float x = p.x[i];
        const unsigned b = __float_as_uint(x);
        if (p.status && (is_nan_bits(b) || (!p.allow_inf && is_nonfinite_bits(b)))) status_report(p.status, (unsigned long long)i);
        const int c = channel_of(i, p.inner, p.groups);
        // Twin of `reference::quantize`: Rule::Divide → x / scale; the multiply rules → x · factor.
        const float v = p.rule == RULE_DIVIDE ? __fdiv_rn(x, p.scale[c]) : __fmul_rn(x, p.factor[c]);
        const int q = round_shift_clamp(v, p.zp[c], p.qmin, p.qmax);
        if (U8) static_cast<unsigned char*>(p.q)[i] = (unsigned char)q;
        else static_cast<signed char*>(p.q)[i] = (signed char)q;
    }
}

template <bool U8>
I8RT_INLINE void dequantize_body(const DequantizeParams& p) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < p.len; i += stride) {
        const int q = U8 ? (int)static_cast<const unsigned char*>(p.q)[i] : (int)static_cast<const signed char*>(p.q)[i];
        const int c = channel_of(i, p.inner, p.groups);
        // Twin of `reference::dequantize`.
        float y;
        if (p.rule == DEQ_UNIT) {
            y = p.factor[c] == 0.0f ? __int2float_rn(q) : __fdiv_rn(__int2float_rn(q), p.factor[c]);
        } else {
            y = __fmul_rn(__int2float_rn(q - p.zp[c]), p.scale[c]);
        }
        p.y[i] = y;
    }
}

I8RT_ENTRY(quantize_f32_s8, QuantizeParams, 256) { quantize_body<false>(p); }
I8RT_ENTRY(quantize_f32_u8, QuantizeParams, 256) { quantize_body<true>(p); }
I8RT_ENTRY(dequantize_s8_f32, DequantizeParams, 256) { dequantize_body<false>(p); }
I8RT_ENTRY(dequantize_u8_f32, DequantizeParams, 256) { dequantize_body<true>(p); }

// ---------------------------------------------------------------------------------------------
// Dynamic activation quantization: one block of ACT_THREADS per row.
// ---------------------------------------------------------------------------------------------

#define ACT_THREADS 256

// f32_to_ordered / ordered_to_f32 (common.cuh) carry the per-tensor range across blocks; −0
// orders below +0, and either gives the same scale and zero point.

// Block-wide (min, max) of (a, b) per thread: fminf over a, fmaxf over b. Result in every thread.
I8RT_INLINE void block_minmax(float& a, float& b, float* red_a, float* red_b) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        a = fminf(a, shfl_xor_f32(a, o));
        b = fmaxf(b, shfl_xor_f32(b, o));
    }
    const int warp = (int)(threadIdx.x >> 5);
    if (lane_id() == 0) {
        red_a[warp] = a;
        red_b[warp] = b;
    }
    block_sync();
    a = red_a[0];
    b = red_b[0];
    for (int w = 1; w < ACT_THREADS / 32; ++w) {
        a = fminf(a, red_a[w]);
        b = fmaxf(b, red_b[w]);
    }
    block_sync();  // red_* may be reused
}

// The range of row `row`: symmetric → (−amax, amax) in (a, b) with amax = max |x|; asymmetric →
// (min, max), (+inf, −inf) for an empty row. Non-finite values are reported and skipped.
template <bool ASYM>
I8RT_INLINE void row_range(const ActQuantParams& p, int row, float& a, float& b) {
    const float* xr = p.x + (long long)row * p.k;
    a = ASYM ? __uint_as_float(0x7f800000u) : 0.0f;
    b = ASYM ? __uint_as_float(0xff800000u) : 0.0f;
    for (int j = (int)threadIdx.x; j < p.k; j += ACT_THREADS) {
        const float x = xr[j];
        const unsigned bits = __float_as_uint(x);
        if (is_nonfinite_bits(bits)) {
            status_report(p.status, (unsigned long long)row * (unsigned long long)p.k + (unsigned long long)j);
            continue;
        }
        if (ASYM) {
            a = fminf(a, x);
            b = fmaxf(b, x);
        } else {
            b = fmaxf(b, fabsf(x));
        }
    }
    if (!ASYM) a = -b;
}

// Quantize row `row` into q[row, 0 .. ldq) with the given parameters (zeros past k); `check`
// (static scales) reports NaN inputs.
template <bool U8>
I8RT_INLINE void quantize_row(const ActQuantParams& p, int row, bool multiply, float s, int zp, int qmin, int qmax,
                              bool check) {
    const float* xr = p.x + (long long)row * p.k;
    for (long long j = threadIdx.x; j < p.ldq; j += ACT_THREADS) {
        int q = 0;  // padding columns k..ldq hold 0 (their weights are 0 too)
        if (j < p.k) {
            const float x = xr[j];
            // (a static scale saturates ±inf, as on the CPU and in ONNX QuantizeLinear; NaN
            // has no integer)
            if (check && is_nan_bits(__float_as_uint(x)))
                status_report(p.status, (unsigned long long)row * (unsigned long long)p.k + (unsigned long long)j);
            q = round_shift_clamp(multiply ? __fmul_rn(x, s) : __fdiv_rn(x, s), zp, qmin, qmax);
        }
        const long long o = (long long)row * p.ldq + j;
        if (U8) static_cast<unsigned char*>(p.q)[o] = (unsigned char)q;
        else static_cast<signed char*>(p.q)[o] = (signed char)q;
    }
}

// U8: u8 output (asymmetric when dynamic).
template <bool U8>
I8RT_INLINE void act_quant_body(const ActQuantParams& p) {
    __shared__ float red_a[ACT_THREADS / 32];
    __shared__ float red_b[ACT_THREADS / 32];
    // A GEMV launched overlapped after this kernel (the host's choice, sm_90) may begin once
    // every block of this one runs: it streams its weights meanwhile and waits for this grid's
    // end before it reads what this kernel writes.
    griddep_launch_dependents();
    const int row = (int)blockIdx.x;
    if (p.mode == ACT_INIT) {
        if (row == 0 && threadIdx.x == 0) {
            p.status->count = 0ull;
            p.status->first = ~0ull;
            if (p.range) {
                p.range[0] = f32_to_ordered(__uint_as_float(0x7f800000u));
                p.range[1] = f32_to_ordered(__uint_as_float(0xff800000u));
            }
        }
        return;
    }
    if (p.mode == ACT_STATIC) {
        const bool mul = p.rule == RULE_MULTIPLY;
        quantize_row<U8>(p, row, mul, mul ? p.factor : p.scales[0], p.zps ? p.zps[0] : 0, p.qmin, p.qmax, true);
        return;
    }
    float a, b;
    if (p.mode == ACT_TENSOR) {
        // Pass 2: the tensor's range, reduced by pass 1 into two order-preserving words.
        a = ordered_to_f32(p.range[0]);
        b = ordered_to_f32(p.range[1]);
    } else {
        row_range<U8>(p, row, a, b);  // symmetric: a = −amax, so min(a) = −max(b) below
        block_minmax(a, b, red_a, red_b);
    }
    if (p.mode == ACT_RANGE) {
        if (threadIdx.x == 0) {
            atomicMin(&p.range[0], f32_to_ordered(a));
            atomicMax(&p.range[1], f32_to_ordered(b));
        }
        return;
    }
    float scale;
    int zp = 0;
    if (U8) asymmetric_params(a, b, &scale, &zp);
    else scale = symmetric_scale(b);
    if (threadIdx.x == 0 && (p.mode == ACT_ROWS || row == 0)) {
        const int slot = p.mode == ACT_ROWS ? row : 0;
        p.scales[slot] = scale;
        if (U8) p.zps[slot] = zp;
    }
    quantize_row<U8>(p, row, false, scale, zp, U8 ? 0 : -127, U8 ? 255 : 127, false);
}

I8RT_ENTRY(act_quant_s8, ActQuantParams, ACT_THREADS) { act_quant_body<false>(p); }
I8RT_ENTRY(act_quant_u8, ActQuantParams, ACT_THREADS) { act_quant_body<true>(p); }
