//! quant/kernels.rs — the hot loops of activation quantization (run on every forward):
//! `clamp(rhe(x / scale) + zp)` over a slice into `i8`, `u8` or `i16`, with NaN detection folded in.
//! One `#[inline(always)]` body, compiled plainly and, on x86-64, again with AVX2 or AVX-512
//! enabled (where `round_ties_even` becomes one `vroundps`/`vrndscaleps` instead of a library
//! call); every variant gives the bits of [`crate::reference::quantize`].

use super::{QuantParams, Rule};

/// The per-element operation before rounding, and the clamp/shift after it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct QuantOp {
    /// `x / s` when `div`, else `x · s`.
    s: f32,
    div: bool,
    zp: i32,
    lo: i32,
    hi: i32,
}

impl QuantOp {
    /// The operation `p` defines, with every output shifted by `shift` (the +128 that feeds `s8`
    /// activations to `u8 × s8` instructions: zero point and range move together, so
    /// `q' = q + shift` exactly).
    pub(crate) fn new(p: &QuantParams, shift: i32) -> Self {
        let (s, div) = match p.rule() {
            Rule::Divide => (p.scale(), true),
            Rule::MultiplyInverse { inv } => (inv, false),
            Rule::UnitScale { unit } => (unit, false),
        };
        QuantOp {
            s,
            div,
            zp: p.zero_point() + shift,
            lo: p.qmin() + shift,
            hi: p.qmax() + shift,
        }
    }
}

/// An integer type the loops can write.
pub(crate) trait QInt: Copy + Send + Sync {
    fn from_i32(v: i32) -> Self;
}
impl QInt for i8 {
    #[inline(always)]
    fn from_i32(v: i32) -> Self {
        v as i8
    }
}
impl QInt for u8 {
    #[inline(always)]
    fn from_i32(v: i32) -> Self {
        v as u8
    }
}
impl QInt for i16 {
    #[inline(always)]
    fn from_i32(v: i32) -> Self {
        v as i16
    }
}

/// Quantize `xs` into `out` (same length; the caller checked that the range fits `T`). Returns
/// whether any input was NaN (those elements hold the low end of the range; callers turn the flag
/// into an error, since NaN has no integer).
pub(crate) fn quantize_into<T: QInt>(xs: &[f32], op: QuantOp, out: &mut [T]) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512bw") {
            // SAFETY: the features were detected on this CPU just above.
            return unsafe { quantize_avx512(xs, op, out) };
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 was detected on this CPU just above.
            return unsafe { quantize_avx2(xs, op, out) };
        }
    }
    quantize_body(xs, op, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn quantize_avx512<T: QInt>(xs: &[f32], op: QuantOp, out: &mut [T]) -> bool {
    quantize_body(xs, op, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn quantize_avx2<T: QInt>(xs: &[f32], op: QuantOp, out: &mut [T]) -> bool {
    quantize_body(xs, op, out)
}

/// `clamp(rhe(v) + zp, lo, hi)`, computed as `clamp(rhe(v), lo − zp, hi − zp) + zp` in f32 so it
/// vectorizes: for the integer-valued `rhe(v)` the two are equal, and ±inf clamp like the
/// reference's saturating conversion. `max`/`min` return the non-NaN operand, so the clamped
/// value is always a finite integer inside `[lo − zp, hi − zp]`.
#[inline(always)]
fn quantize_body<T: QInt>(xs: &[f32], op: QuantOp, out: &mut [T]) -> bool {
    let (flo, fhi) = ((op.lo - op.zp) as f32, (op.hi - op.zp) as f32);
    let mut nan = false;
    let n = xs.len().min(out.len());
    let (xs, out) = (&xs[..n], &mut out[..n]);
    if op.div {
        for (o, &x) in out.iter_mut().zip(xs) {
            nan |= x.is_nan();
            let r = (x / op.s).round_ties_even().max(flo).min(fhi);
            // SAFETY: r is finite and within [lo − zp, hi − zp] ⊂ i32 (see above).
            *o = T::from_i32(unsafe { r.to_int_unchecked::<i32>() } + op.zp);
        }
    } else {
        for (o, &x) in out.iter_mut().zip(xs) {
            nan |= x.is_nan();
            let r = (x * op.s).round_ties_even().max(flo).min(fhi);
            // SAFETY: as above.
            *o = T::from_i32(unsafe { r.to_int_unchecked::<i32>() } + op.zp);
        }
    }
    nan
}
