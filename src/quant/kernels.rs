//! quant/kernels.rs — the hot loops of activation quantization (run on every dynamic forward):
//! `clamp(rhe(x / scale) + zp)` over a slice into `i8` or `u8`. One `#[inline(always)]` body,
//! compiled plainly and, on x86-64, again with AVX2 enabled (where `round_ties_even` becomes one
//! `vroundps` instead of a library call); both give the bits of [`crate::reference::quantize`].

use super::{QuantParams, Rule};

/// The per-element operation before rounding.
#[derive(Clone, Copy)]
enum Op {
    Div(f32),
    Mul(f32),
}

fn op_of(p: &QuantParams) -> Op {
    match p.rule() {
        Rule::Divide => Op::Div(p.scale()),
        Rule::MultiplyInverse { inv } => Op::Mul(inv),
        Rule::UnitScale { unit } => Op::Mul(unit),
    }
}

/// An integer type the loops can write.
pub(crate) trait QInt: Copy {
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

/// Quantize `xs` into `out` (same length; the caller checked the range fits `T`).
pub(crate) fn quantize_into<T: QInt>(xs: &[f32], p: &QuantParams, out: &mut [T]) {
    let op = op_of(p);
    let (zp, lo, hi) = (p.zero_point(), p.qmin(), p.qmax());
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 was detected on this CPU just above.
            return unsafe { quantize_avx2(xs, op, zp, lo, hi, out) };
        }
    }
    quantize_body(xs, op, zp, lo, hi, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn quantize_avx2<T: QInt>(xs: &[f32], op: Op, zp: i32, lo: i32, hi: i32, out: &mut [T]) {
    quantize_body(xs, op, zp, lo, hi, out)
}

/// `clamp(rhe(v) + zp, lo, hi)`, computed as `clamp(rhe(v), lo − zp, hi − zp) + zp` in f32 so it
/// vectorizes: for the integer-valued `rhe(v)` the two are equal, and ±inf clamp like the
/// reference's saturating conversion.
#[inline(always)]
fn quantize_body<T: QInt>(xs: &[f32], op: Op, zp: i32, lo: i32, hi: i32, out: &mut [T]) {
    let (flo, fhi) = ((lo - zp) as f32, (hi - zp) as f32);
    match op {
        Op::Div(s) => {
            for (o, &x) in out.iter_mut().zip(xs) {
                let r = (x / s).round_ties_even().max(flo).min(fhi);
                *o = T::from_i32(r as i32 + zp);
            }
        }
        Op::Mul(f) => {
            for (o, &x) in out.iter_mut().zip(xs) {
                let r = (x * f).round_ties_even().max(flo).min(fhi);
                *o = T::from_i32(r as i32 + zp);
            }
        }
    }
}
