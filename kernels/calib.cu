// kernels/calib.cu — calibration statistics of a batch that lives in GPU memory (DESIGN.md §3,
// "GPU collection"), so a calibration run over GPU activations never copies them to the host:
//   calib_reduce           per tensor: min and max of the finite values (→ max |x|), the number
//                          of zeros, and the non-finite values (count, first flat index);
//   calib_reduce_channels  the same min and max per channel along an axis ([outer, channels,
//                          inner] in C order), and the non-finite values;
//   calib_histogram        the bin counts of every finite value under one of the host's bin rules
//                          (the |x| histogram of pytorch-quantization, its fixed-width variant, or
//                          the signed zero-anchored grid), in u64.
// The host (src/cuda/calib.rs, feeding the observers of src/calib/) reads the small results back,
// decides the grid (first batch, growth, coarsening) from the batch's range exactly as the CPU
// observers do, and launches the histogram on that grid. Every bin index is the twin of the host
// rule named at its function, computed with the same IEEE operations; counts are integers, so the
// atomics give bit-identical histograms whatever the order. Ranges fold with fminf / fmaxf and
// meet across blocks on order-preserving words (f32_to_ordered), also order-independent.
#include "common.cuh"

#define CALIB_THREADS 256
#define CALIB_WARPS (CALIB_THREADS / 32)
// Histograms up to this many bins count in a per-block u32 shared-memory histogram (32 KiB),
// flushed into the u64 counts once per block; larger ones count with u64 atomics in global
// memory. The host keeps each block's share of a batch below 2^32 values.
#define HIST_SMEM_BINS 8192

// ---------------------------------------------------------------------------------------------
// Thread level.
// ---------------------------------------------------------------------------------------------

// Twin of Rust's `(v as usize).min(n - 1)` for a bin position (n ≥ 1): NaN and v ≤ 0 give bin 0,
// positive values truncate toward zero and saturate at the last bin.
I8RT_INLINE unsigned long long clamp_bin(float v, unsigned long long n) {
    if (!(v > 0.0f)) return 0ull;
    if (v >= 18446744073709551616.0f) return n - 1ull;  // 2^64 and above (+inf)
    const unsigned long long b = (unsigned long long)v;
    return b < n - 1ull ? b : n - 1ull;
}

// Twin of Rust's saturating `v as i64` (NaN → 0).
I8RT_INLINE long long f32_to_i64_sat(float v) {
    if (v != v) return 0ll;
    if (v >= 9223372036854775808.0f) return 0x7fffffffffffffffll;  // 2^63
    if (v < -9223372036854775808.0f) return -0x7fffffffffffffffll - 1ll;
    return (long long)v;
}

// The bin of a finite value x.
I8RT_INLINE unsigned long long hist_bin(const HistParams& p, float x) {
    if (p.rule == HIST_SIGNED) {
        // Twin of `SignedHistogram::observe` (src/calib/signed.rs): grid index floor(x / w) in
        // f32, as i64, minus the grid index of bin 0, clamped to [0, n − 1].
        const long long g = f32_to_i64_sat(floorf(__fdiv_rn(x, p.width)));
        if (g <= p.first) return 0ull;
        const unsigned long long d = (unsigned long long)g - (unsigned long long)p.first;
        return d < p.bins - 1ull ? d : p.bins - 1ull;
    }
    const float a = fabsf(x);
    float v;
    if (p.rule == HIST_SCALED) {
        // Twin of `Histogram::bin_of` (src/calib/histogram.rs), Binning::PytorchQuantization:
        // torch.histc's (|x| · n) / right in f32; in f64 when |x| · n overflows f32.
        const float t = __fmul_rn(a, p.nf);
        if (!is_nonfinite_bits(__float_as_uint(t))) {
            v = __fdiv_rn(t, p.right);
        } else {
            v = __double2float_rn(__ddiv_rn(__dmul_rn((double)a, (double)p.bins), (double)p.right));
        }
    } else {
        // Twin of `Histogram::bin_of`, Binning::FixedWidth: |x| / width.
        v = __fdiv_rn(a, p.width);
    }
    return clamp_bin(v, p.bins);
}

// Record `count` non-finite values whose lowest flat index is `first`.
I8RT_INLINE void report_nonfinite(Status* s, unsigned long long count, unsigned long long first) {
    if (count != 0ull) {
        atomicAdd(&s->count, count);
        atomicMin(&s->first, first);
    }
}

// ---------------------------------------------------------------------------------------------
// Warp and block level.
// ---------------------------------------------------------------------------------------------

I8RT_INLINE unsigned long long shfl_xor_u64(unsigned long long v, int lane_mask) {
    const unsigned lo = shfl_xor_u32((unsigned)v, lane_mask);
    const unsigned hi = shfl_xor_u32((unsigned)(v >> 32), lane_mask);
    return ((unsigned long long)hi << 32) | lo;
}

// Warp-wide min of lo, max of hi, sum of n; the result in every lane.
I8RT_INLINE void warp_reduce(float& lo, float& hi, unsigned long long& n) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        lo = fminf(lo, shfl_xor_f32(lo, o));
        hi = fmaxf(hi, shfl_xor_f32(hi, o));
        n += shfl_xor_u64(n, o);
    }
}

// Fold a (min, max) into the ordered words range[0], range[1] (nothing for an empty range).
I8RT_INLINE void fold_range(unsigned* range, float lo, float hi) {
    if (lo <= hi) {
        atomicMin(&range[0], f32_to_ordered(lo));
        atomicMax(&range[1], f32_to_ordered(hi));
    }
}

// ---------------------------------------------------------------------------------------------
// Entries.
// ---------------------------------------------------------------------------------------------

// Per tensor: a grid-stride pass over x[0 .. cols); one block reduction and one set of atomics
// per block.
I8RT_ENTRY(calib_reduce, CalibReduceParams, CALIB_THREADS) {
    __shared__ float red_lo[CALIB_WARPS];
    __shared__ float red_hi[CALIB_WARPS];
    __shared__ unsigned long long red_zeros[CALIB_WARPS];
    float lo = __uint_as_float(0x7f800000u);  // +inf
    float hi = __uint_as_float(0xff800000u);  // −inf
    unsigned long long zeros = 0ull, bad = 0ull, first = ~0ull;
    const long long stride = (long long)gridDim.x * CALIB_THREADS;
    for (long long i = (long long)blockIdx.x * CALIB_THREADS + threadIdx.x; i < p.cols; i += stride) {
        const float x = p.x[i];
        if (is_nonfinite_bits(__float_as_uint(x))) {
            if (bad == 0ull) first = (unsigned long long)i;  // indices only grow
            ++bad;
            continue;
        }
        lo = fminf(lo, x);
        hi = fmaxf(hi, x);
        zeros += x == 0.0f ? 1ull : 0ull;
    }
    report_nonfinite(p.status, bad, first);
    warp_reduce(lo, hi, zeros);
    const int warp = (int)(threadIdx.x >> 5);
    if (lane_id() == 0) {
        red_lo[warp] = lo;
        red_hi[warp] = hi;
        red_zeros[warp] = zeros;
    }
    block_sync();
    if (threadIdx.x == 0) {
        for (int w = 1; w < CALIB_WARPS; ++w) {
            lo = fminf(lo, red_lo[w]);
            hi = fmaxf(hi, red_hi[w]);
            zeros += red_zeros[w];
        }
        fold_range(p.range, lo, hi);
        if (p.zeros && zeros != 0ull) atomicAdd(p.zeros, zeros);
    }
}

// Per channel: x is [outer, cols] with channel = col / inner. Thread = column (grid.x covers the
// columns, coalesced), grid.y splits the rows. A warp whose 32 columns lie in one channel (inner
// ≥ 32, most of the time) reduces before its atomics; otherwise each column folds its own.
I8RT_ENTRY(calib_reduce_channels, CalibReduceParams, CALIB_THREADS) {
    const long long col = (long long)blockIdx.x * CALIB_THREADS + threadIdx.x;
    float lo = __uint_as_float(0x7f800000u);
    float hi = __uint_as_float(0xff800000u);
    unsigned long long bad = 0ull, first = ~0ull;
    if (col < p.cols) {
        for (long long o = blockIdx.y; o < p.outer; o += gridDim.y) {
            const long long i = o * p.cols + col;
            const float x = p.x[i];
            if (is_nonfinite_bits(__float_as_uint(x))) {
                if (bad == 0ull) first = (unsigned long long)i;
                ++bad;
                continue;
            }
            lo = fminf(lo, x);
            hi = fmaxf(hi, x);
        }
    }
    report_nonfinite(p.status, bad, first);
    // Warp-uniform from here: every lane computes the same base, last and channels.
    const long long base = col - lane_id();
    if (base >= p.cols) return;
    const long long last = base + 31 < p.cols ? base + 31 : p.cols - 1;
    const long long c0 = base / p.inner;
    if (c0 == last / p.inner) {
        unsigned long long unused = 0ull;
        warp_reduce(lo, hi, unused);
        if (lane_id() == 0) fold_range(p.range + 2 * c0, lo, hi);
    } else if (col < p.cols) {
        fold_range(p.range + 2 * (col / p.inner), lo, hi);
    }
}

// Histogram: a grid-stride pass over x[0 .. len); per-block u32 counts in shared memory for up to
// HIST_SMEM_BINS bins, else u64 atomics on the global counts.
I8RT_ENTRY(calib_histogram, HistParams, CALIB_THREADS) {
    __shared__ unsigned sh[HIST_SMEM_BINS];
    const bool smem = p.bins <= (unsigned long long)HIST_SMEM_BINS;  // uniform
    if (smem) {
        for (unsigned k = threadIdx.x; k < (unsigned)p.bins; k += CALIB_THREADS) sh[k] = 0u;
        block_sync();
    }
    const long long stride = (long long)gridDim.x * CALIB_THREADS;
    for (long long i = (long long)blockIdx.x * CALIB_THREADS + threadIdx.x; i < p.len; i += stride) {
        const float x = p.x[i];
        if (is_nonfinite_bits(__float_as_uint(x))) continue;
        if (p.skip_zeros && x == 0.0f) continue;
        const unsigned long long b = hist_bin(p, x);
        if (smem) atomicAdd(&sh[b], 1u);
        else atomicAdd(&p.counts[b], 1ull);
    }
    if (smem) {
        block_sync();
        for (unsigned k = threadIdx.x; k < (unsigned)p.bins; k += CALIB_THREADS) {
            const unsigned c = sh[k];
            if (c != 0u) atomicAdd(&p.counts[k], (unsigned long long)c);
        }
    }
}
