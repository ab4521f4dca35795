//! reference.rs — the normative scalar implementation of every numeric result in the crate
//! (DESIGN.md §1). Nothing here is fast; everything here is the definition. Every other path —
//! scalar, AVX2, AVX-512 VNNI, AMX, CUDA dp4a, CUDA mma, the host simulation of the kernels — is
//! tested against these functions bit for bit. `kernels/common.cuh` mirrors [`Epilogue::value`]
//! and [`Epilogue::to_i8`] line for line.
//!
//! Conventions fixed here:
//! - ties round to even (`f32::round_ties_even`) everywhere;
//! - quantization divides (`x / scale`, IEEE), except where a [`Rule`] of a compatibility preset
//!   says otherwise;
//! - the GEMM accumulates exactly (`i64` here, `i32` in fast paths after the shape has been proven
//!   safe), subtracts `zp_x · wsum[n]`, adds the i32 bias, then runs the f32 epilogue in the exact
//!   order written in [`Epilogue`].

use half::{bf16, f16};

use crate::error::Result;
use crate::gemm::{ActScales, Activations, Bias, GemmArgs, OutBuf, OutKind};
use crate::quant::{QuantParams, Rule};

// ---------------------------------------------------------------------------------------------
// Scalars: scales, zero points, quantize, dequantize, bias.
// ---------------------------------------------------------------------------------------------

/// `rhe(v)` as an integer, saturated to `i64` (NaN maps to 0; callers never pass NaN).
#[inline]
pub fn round_to_i64(v: f32) -> i64 {
    v.round_ties_even() as i64
}

/// `clamp(rhe(v) + zp, qmin, qmax)` with exact integer arithmetic.
#[inline]
pub fn round_shift_clamp(v: f32, zp: i32, qmin: i32, qmax: i32) -> i32 {
    round_to_i64(v)
        .saturating_add(zp as i64)
        .clamp(qmin as i64, qmax as i64) as i32
}

/// Symmetric scale for `|x| ≤ amax`: `amax / 127`; 1 when that is 0 (amax 0, or so small the
/// quotient underflows), so nothing ever divides by zero.
#[inline]
pub fn symmetric_scale(amax: f32) -> f32 {
    let s = amax / 127.0;
    if s > 0.0 {
        s
    } else {
        1.0
    }
}

/// Asymmetric u8 `(scale, zero_point)` for `[lo, hi]`: the range is widened to contain 0,
/// `scale = (hi - lo) / 255` (1 when 0), `zp = clamp(rhe(-lo / scale), 0, 255)`.
#[inline]
pub fn asymmetric_params(lo: f32, hi: f32) -> (f32, i32) {
    let lo = lo.min(0.0);
    let hi = hi.max(0.0);
    let s = (hi - lo) / 255.0;
    let scale = if s > 0.0 && s.is_finite() { s } else { 1.0 };
    let zp = round_shift_clamp(-lo / scale, 0, 0, 255);
    (scale, zp)
}

/// pytorch-quantization `_tensor_quant`: `(unit, qmin, qmax)` with `unit = max_bound / amax` in
/// f32, and `unit = 0` when `amax ≤ 2^-24` (everything quantizes to 0).
pub fn pytorch_quantization_unit(amax: f32, narrow_range: bool, unsigned: bool) -> (f32, i32, i32) {
    let max_bound: i32 = if unsigned { 255 } else { 127 };
    let min_bound = if unsigned {
        0
    } else if narrow_range {
        -max_bound
    } else {
        -max_bound - 1
    };
    let unit = if amax <= f32::powi(2.0, -24) {
        0.0
    } else {
        max_bound as f32 / amax
    };
    (unit, min_bound, max_bound)
}

/// torch.ao `_calculate_qparams` for per-tensor min/max, in f32 with the eps floor.
pub fn torch_ao_qparams(
    lo: f32,
    hi: f32,
    qmin: i32,
    qmax: i32,
    symmetric: bool,
    is_quint8: bool,
) -> (f32, i32) {
    let eps = crate::quant::TORCH_AO_EPS;
    let min_neg = lo.min(0.0);
    let max_pos = hi.max(0.0);
    if symmetric {
        let max_pos = (-min_neg).max(max_pos);
        let scale = (max_pos / ((qmax - qmin) as f32 / 2.0)).max(eps);
        let zp = if is_quint8 { 128 } else { 0 };
        (scale, zp)
    } else {
        let scale = ((max_pos - min_neg) / (qmax - qmin) as f32).max(eps);
        let zp = (qmin as i64 - round_to_i64(min_neg / scale)).clamp(qmin as i64, qmax as i64);
        (scale, zp as i32)
    }
}

/// Quantize one value: `clamp(rhe(x / scale) + zp, qmin, qmax)` (or the preset's rule).
#[inline]
pub fn quantize(x: f32, p: &QuantParams) -> i32 {
    let v = match p.rule() {
        Rule::Divide => x / p.scale(),
        Rule::MultiplyInverse { inv } => x * inv,
        Rule::UnitScale { unit } => x * unit,
    };
    round_shift_clamp(v, p.zero_point(), p.qmin(), p.qmax())
}

/// Dequantize one integer: `(q - zp) · scale` (pytorch-quantization: `q / unit`).
#[inline]
pub fn dequantize(q: i32, p: &QuantParams) -> f32 {
    match p.rule() {
        Rule::UnitScale { unit: 0.0 } => q as f32,
        Rule::UnitScale { unit } => q as f32 / unit,
        _ => (q - p.zero_point()) as f32 * p.scale(),
    }
}

/// The i32 bias for one output channel: `sat_i32(rhe(f64(b) / f64(s_x · s_w)))`, where the
/// product `s_x · s_w` is the same f32 product as the epilogue's `m[n]`.
#[inline]
pub fn quantize_bias(b: f32, s_x: f32, s_w: f32) -> i32 {
    let s = (s_x * s_w) as f64;
    let q = (b as f64 / s).round_ties_even();
    q.clamp(i32::MIN as f64, i32::MAX as f64) as i32
}

/// `wsum[n] = Σ_k w[n, k]`, the zero-point correction term, for `w: [n, k]`.
pub fn weight_row_sums(w: &[i8], n: usize, k: usize) -> Vec<i32> {
    (0..n)
        .map(|j| w[j * k..(j + 1) * k].iter().map(|&v| v as i32).sum())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The epilogue: one typed struct, one scalar function per output kind.
// ---------------------------------------------------------------------------------------------

/// The float stage of the GEMM (DESIGN.md §1 step 3), with every per-column and per-row constant
/// computed once on the host. `acc` given to its functions is the corrected accumulator
/// (`Σ x·w − zp_x·wsum[n] + bias_q[n]`).
#[derive(Clone, Debug, PartialEq)]
pub struct Epilogue {
    /// The output kind.
    pub out: OutKind,
    /// Per-column multiplier: `m[n] = s_x · s_w[n]` (f32 product) with a per-tensor activation
    /// scale; `s_w[n]` with per-row activation scales.
    pub col_scale: Vec<f32>,
    /// Per-row activation scales `s_x[m]` (per-row mode only).
    pub row_scale: Option<Vec<f32>>,
    /// Float bias added after scaling (dynamic modes).
    pub bias_f32: Option<Vec<f32>>,
    /// i8 output, per-tensor activations, no float bias: `r[n] = f32(f64(s_x)·f64(s_w[n]) / f64(s_y))`.
    pub requant: Option<Vec<f32>>,
}

impl Epilogue {
    /// Build the epilogue constants for `n` output columns. Inputs must have been validated
    /// ([`GemmArgs::validate`]).
    pub fn new(
        n: usize,
        act: &ActScales<'_>,
        w_scales: &[f32],
        bias: &Bias<'_>,
        out: OutKind,
    ) -> Self {
        let sw = |j: usize| {
            if w_scales.len() == 1 {
                w_scales[0]
            } else {
                w_scales[j]
            }
        };
        let (col_scale, row_scale) = match act {
            ActScales::PerTensor { scale, .. } => ((0..n).map(|j| scale * sw(j)).collect(), None),
            ActScales::PerRow { scales, .. } => ((0..n).map(sw).collect(), Some(scales.to_vec())),
        };
        let bias_f32 = match bias {
            Bias::F32(b) => Some(b.to_vec()),
            _ => None,
        };
        let requant = match (out, act, bias) {
            (OutKind::I8(q), ActScales::PerTensor { scale, .. }, Bias::None | Bias::I32(_)) => {
                Some(
                    (0..n)
                        .map(|j| ((*scale as f64 * sw(j) as f64) / q.scale as f64) as f32)
                        .collect(),
                )
            }
            _ => None,
        };
        Epilogue {
            out,
            col_scale,
            row_scale,
            bias_f32,
            requant,
        }
    }

    /// The f32 result: `f32(acc) · m[n]` (per tensor) or `(f32(acc) · s_w[n]) · s_x[m]` (per row),
    /// then `+ bias[n]` when the bias is float. No fused multiply-add, no reassociation.
    #[inline]
    pub fn value(&self, acc: i32, row: usize, col: usize) -> f32 {
        let a = acc as f32;
        let mut v = a * self.col_scale[col];
        if let Some(rs) = &self.row_scale {
            v *= rs[row];
        }
        if let Some(b) = &self.bias_f32 {
            v += b[col];
        }
        v
    }

    /// The i8 result for [`OutKind::I8`]: `clamp(rhe(f32(acc) · r[n]) + zp_y)` when `r` exists,
    /// else `clamp(rhe(value / s_y) + zp_y)` (a true division, as in quantize).
    #[inline]
    pub fn to_i8(&self, acc: i32, row: usize, col: usize) -> i8 {
        let OutKind::I8(q) = self.out else {
            return 0;
        };
        let t = match &self.requant {
            Some(r) => acc as f32 * r[col],
            None => self.value(acc, row, col) / q.scale,
        };
        round_shift_clamp(t, q.zero_point, q.qmin, q.qmax) as i8
    }
}

// ---------------------------------------------------------------------------------------------
// The GEMM.
// ---------------------------------------------------------------------------------------------

/// `Y = epilogue(X · Wᵀ)` exactly as DESIGN.md §1 defines it. `X: [m, k]`, `W: [n, k]`,
/// `Y: [m, n]`, all row-major. Validates its arguments like every other path.
pub fn gemm(args: &GemmArgs<'_>, out: &mut OutBuf<'_>) -> Result<()> {
    args.validate(out)?;
    let (m, n, k) = (args.m, args.n, args.k);
    let wsum = weight_row_sums(args.w, n, k);
    let epi = Epilogue::new(n, &args.act, args.w_scales, &args.bias, out.kind());
    for i in 0..m {
        let zp = args.act.zero_point(i) as i64;
        for j in 0..n {
            // Step 1: exact integer dot product, then the zero-point correction.
            let mut acc: i64 = 0;
            for p in 0..k {
                let x = match args.x {
                    Activations::S8(x) => x[i * k + p] as i64,
                    Activations::U8(x) => x[i * k + p] as i64,
                };
                acc += x * args.w[j * k + p] as i64;
            }
            acc -= zp * wsum[j] as i64;
            // Step 2: the i32 bias.
            if let Bias::I32(b) = args.bias {
                acc += b[j] as i64;
            }
            // validate() proved |acc| < 2^31 for every input of this shape.
            debug_assert!(i32::try_from(acc).is_ok());
            let acc = acc as i32;
            // Step 3: the epilogue.
            let o = i * n + j;
            match out {
                OutBuf::I32(y) => y[o] = acc,
                OutBuf::F32(y) => y[o] = epi.value(acc, i, j),
                OutBuf::F16(y) => y[o] = f16::from_f32(epi.value(acc, i, j)),
                OutBuf::Bf16(y) => y[o] = bf16::from_f32(epi.value(acc, i, j)),
                OutBuf::I8(y, _) => y[o] = epi.to_i8(acc, i, j),
            }
        }
    }
    Ok(())
}

// =============================================================================================
// BEGIN fake quantization (quantization-aware training, `src/qat/`, issue 5).
//
// This section is appended by the QAT work and owned by it; the rest of the file is unchanged.
// It is the scalar definition that the CPU loops in `qat::fake_quant`, the CUDA kernel
// `kernels/fake_quant.cu` and its host simulation are tested against bit for bit, and that the
// conversion of a fake-quantized layer to `nn::QuantLinear` is tested against.
//
// Forward: `y = dequant(quant(x))` with the crate's rule (a true division, ties to even, clamp
// after adding the zero point), for any integer range of 2..=8 bits.
// Backward: the clipped straight-through estimator for `x` and the LSQ / LSQ+ partials for the
// scale and the zero point (Esser et al. 2019, "Learned Step Size Quantization"; Bhalgat et al.
// 2020, "LSQ+"), i.e. the exact derivative of the forward's computation graph with the rounding
// step `rhe(u)` given derivative 1 and every other step (division, clamp, subtraction,
// multiplication) differentiated exactly. "Inside" means the clamp did not act: the unclamped
// code `rhe(x / scale) + zp` lies in `[qmin, qmax]` — the same integer the forward computes, so
// the gradient passes exactly where the forward is `(rhe(x / scale)) · scale`.
// =============================================================================================

/// The fewest bits a fake-quantized code may have.
pub const FAKE_QUANT_MIN_BITS: u32 = 2;
/// The most bits a fake-quantized code may have (codes are held in `i8` / `u8` containers).
pub const FAKE_QUANT_MAX_BITS: u32 = 8;

/// The integer range of a `bits`-bit code. Symmetric: the narrow signed range
/// `[-(2^(bits-1) - 1), 2^(bits-1) - 1]` (`[-127, 127]` at 8 bits, `[-7, 7]` at 4, `[-1, 1]` at
/// 2), zero point 0. Asymmetric: the unsigned `[0, 2^bits - 1]`. `None` outside
/// `FAKE_QUANT_MIN_BITS..=FAKE_QUANT_MAX_BITS`.
pub fn fake_quant_range(bits: u32, symmetric: bool) -> Option<(i32, i32)> {
    if !(FAKE_QUANT_MIN_BITS..=FAKE_QUANT_MAX_BITS).contains(&bits) {
        return None;
    }
    Some(if symmetric {
        let qmax = (1i32 << (bits - 1)) - 1;
        (-qmax, qmax)
    } else {
        (0, (1i32 << bits) - 1)
    })
}

/// Symmetric scale for `|x| ≤ amax` over `[-qmax, qmax]`: `amax / qmax`, and 1 when that is 0
/// (as [`symmetric_scale`], which is this function at `qmax = 127`).
#[inline]
pub fn symmetric_scale_for(amax: f32, qmax: i32) -> f32 {
    let s = amax / qmax as f32;
    if s > 0.0 {
        s
    } else {
        1.0
    }
}

/// Asymmetric `(scale, zero_point)` for `[lo, hi]` over `[0, qmax]`: the range is widened to
/// contain 0, `scale = (hi - lo) / qmax` (1 when 0), `zp = clamp(rhe(-lo / scale), 0, qmax)`
/// (as [`asymmetric_params`], which is this function at `qmax = 255`).
#[inline]
pub fn asymmetric_params_for(lo: f32, hi: f32, qmax: i32) -> (f32, i32) {
    let lo = lo.min(0.0);
    let hi = hi.max(0.0);
    let s = (hi - lo) / qmax as f32;
    let scale = if s > 0.0 && s.is_finite() { s } else { 1.0 };
    let zp = round_shift_clamp(-lo / scale, 0, 0, qmax);
    (scale, zp)
}

/// The fake-quantization code of one value: `clamp(rhe(x / scale) + zp, qmin, qmax)` (the
/// crate's quantize rule, [`quantize`] with [`Rule::Divide`]).
#[inline]
pub fn fake_quant_code(x: f32, scale: f32, zp: i32, qmin: i32, qmax: i32) -> i32 {
    round_shift_clamp(x / scale, zp, qmin, qmax)
}

/// Fake quantization of one value: `(code − zp) as f32 · scale`, one f32 multiplication of an
/// exactly representable integer (the crate's dequantize rule).
#[inline]
pub fn fake_quantize(x: f32, scale: f32, zp: i32, qmin: i32, qmax: i32) -> f32 {
    (fake_quant_code(x, scale, zp, qmin, qmax) - zp) as f32 * scale
}

/// The local partial derivatives of [`fake_quantize`] at one point (multiply by the upstream
/// gradient to back-propagate).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FakeQuantGrad {
    /// `∂y/∂x`: 1 inside the representable range, 0 where the clamp acted (clipped STE).
    pub dx: f32,
    /// `∂y/∂scale` (LSQ): `rhe(u) − u` inside (`u = x / scale`), `qmin − zp` below, `qmax − zp`
    /// above.
    pub dscale: f32,
    /// `∂y/∂zp` (LSQ+): 0 inside, `−scale` where the clamp acted.
    pub dzero_point: f32,
}

/// The partials of [`fake_quantize`] at `x`: with `u = x / scale` (the forward's IEEE quotient)
/// and the unclamped code `r = rhe(u) + zp` (exact integer arithmetic):
/// - inside, `qmin ≤ r ≤ qmax`: `dx = 1`, `dscale = rhe(u) − u` (an exact f32 subtraction: the
///   operands are within a factor 2 of each other or `rhe(u)` is 0), `dzero_point = 0`;
/// - below, `r < qmin`: `dx = 0`, `dscale = (qmin − zp) as f32`, `dzero_point = −scale`;
/// - above, `r > qmax`: `dx = 0`, `dscale = (qmax − zp) as f32`, `dzero_point = −scale`.
#[inline]
pub fn fake_quantize_grad(x: f32, scale: f32, zp: i32, qmin: i32, qmax: i32) -> FakeQuantGrad {
    let u = x / scale;
    let ru = u.round_ties_even();
    let r = round_to_i64(u).saturating_add(zp as i64);
    if r < qmin as i64 {
        FakeQuantGrad {
            dx: 0.0,
            dscale: (qmin - zp) as f32,
            dzero_point: -scale,
        }
    } else if r > qmax as i64 {
        FakeQuantGrad {
            dx: 0.0,
            dscale: (qmax - zp) as f32,
            dzero_point: -scale,
        }
    } else {
        FakeQuantGrad {
            dx: 1.0,
            dscale: ru - u,
            dzero_point: 0.0,
        }
    }
}

/// LSQ's gradient scale for a step size shared by `count` values over a range whose largest
/// positive code is `qmax`: `g = 1 / sqrt(count · qmax)` (computed in f64, rounded to f32; 1 when
/// `count` or `qmax` is 0). The scale's gradient is `g · Σ dy · dscale`.
pub fn lsq_grad_scale(count: usize, qmax: i32) -> f32 {
    let d = count as f64 * qmax.max(0) as f64;
    if d > 0.0 {
        (1.0 / d.sqrt()) as f32
    } else {
        1.0
    }
}

/// The bias as a fake-quantized layer sees it: the i32 bias the integer engine adds
/// ([`quantize_bias`] with scale `s_x · s_w`) times that f32 scale.
#[inline]
pub fn fake_quantize_bias(b: f32, s_x: f32, s_w: f32) -> f32 {
    quantize_bias(b, s_x, s_w) as f32 * (s_x * s_w)
}

// END fake quantization.
