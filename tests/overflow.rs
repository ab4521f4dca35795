//! tests/overflow.rs — one test per overflow or saturation hazard of an int8 GEMM (after ruy's
//! `test_overflow_*` files): each builds the input that would break a careless kernel and checks
//! every CPU path against the reference, bit for bit, or checks the typed refusal.

mod common;
use common::*;

use int8rt::gemm::{
    check_accumulator_bound, ActScales, Activations, Bias, GemmArgs, OutBuf, OutQuant,
};
use int8rt::quant::QuantParams;
use int8rt::{reference, Context, Error};

/// Run `args` on the reference and on every CPU path; all must agree; returns the result.
fn all_agree_i32(args: &GemmArgs<'_>) -> Vec<i32> {
    let mut want = vec![0i32; args.m * args.n];
    reference::gemm(args, &mut OutBuf::I32(&mut want)).unwrap();
    for p in cpu_paths() {
        let mut got = vec![0x5a5a_5a5a; args.m * args.n];
        int8rt::gemm::gemm(
            &Context::new().with_path(p),
            args,
            &mut OutBuf::I32(&mut got),
        )
        .unwrap();
        assert_eq!(got, want, "{p:?}");
    }
    want
}

fn args<'a>(
    m: usize,
    n: usize,
    k: usize,
    x: Activations<'a>,
    zp: i32,
    w: &'a [i8],
) -> GemmArgs<'a> {
    GemmArgs {
        m,
        n,
        k,
        x,
        act: ActScales::PerTensor {
            scale: 1.0,
            zero_point: zp,
        },
        w,
        w_scales: &[1.0],
        bias: Bias::None,
    }
}

/// `vpmaddubsw` adds two u8 × s8 products into a saturating i16: 255·127 + 255·127 = 64,770.
#[test]
fn u8_times_s8_pair_sums_exceed_i16() {
    let k = 64;
    let x = vec![255u8; k];
    let w = vec![127i8; k];
    let y = all_agree_i32(&args(1, 1, k, Activations::U8(&x), 0, &w));
    assert_eq!(y[0], 255 * 127 * k as i32);
}

/// The sign trick (`|a|` × `sign(b, a)`) overflows when both are −128: −(−128) does not fit i8,
/// and a VNNI/AMX kernel shifts s8 to u8 (x + 128), which must not lose the −128 case either.
#[test]
fn minus_128_times_minus_128() {
    let k = 100;
    let x = vec![-128i8; 3 * k];
    let w = vec![-128i8; 2 * k];
    let y = all_agree_i32(&args(3, 2, k, Activations::S8(&x), 0, &w));
    assert!(y.iter().all(|&v| v == 16_384 * k as i32));
}

/// The +128 shift of s8 activations is folded out through `wsum`; with weights of one sign the
/// shifted sum (Σ (x + 128)·w) is far larger than the true one and must cancel exactly.
#[test]
fn shift_correction_cancels_exactly() {
    let k = 4000;
    let x: Vec<i8> = (0..k)
        .map(|i| if i % 2 == 0 { -128 } else { 127 })
        .collect();
    let w = vec![127i8; k];
    let y = all_agree_i32(&args(1, 1, k, Activations::S8(&x), 0, &w));
    assert_eq!(y[0], (k as i32 / 2) * (-128 + 127) * 127);
}

/// Zero point 255 with u8 zeros: every term is −255·w; the correction `zp · wsum` is the whole sum.
#[test]
fn zero_point_255_correction() {
    let k = 5000;
    let x = vec![0u8; 2 * k];
    let w: Vec<i8> = (0..3 * k)
        .map(|i| {
            if i < k {
                127
            } else if i < 2 * k {
                -127
            } else {
                1
            }
        })
        .collect();
    let y = all_agree_i32(&args(2, 3, k, Activations::U8(&x), 255, &w));
    assert_eq!(
        &y[..3],
        &[-255 * 127 * k as i32, 255 * 127 * k as i32, -255 * k as i32]
    );
}

/// The i32 accumulator bound: the worst case at the limit passes and is exact; one more is refused.
#[test]
fn accumulator_bound_at_the_limit() {
    let k = 66_311; // ⌊(2^31 − 1) / (255 · 127)⌋
    assert!(check_accumulator_bound(k, 255, 127, 0).is_ok());
    assert!(matches!(
        check_accumulator_bound(k + 1, 255, 127, 0),
        Err(Error::AccumulatorOverflow { .. })
    ));
    let x = vec![0u8; k];
    let w = vec![127i8; k];
    let y = all_agree_i32(&args(1, 1, k, Activations::U8(&x), 255, &w));
    assert_eq!(y[0] as i64, -255 * 127 * k as i64);
    let x = vec![0u8; k + 1];
    let w = vec![127i8; k + 1];
    let mut out = vec![0i32; 1];
    let e = reference::gemm(
        &args(1, 1, k + 1, Activations::U8(&x), 255, &w),
        &mut OutBuf::I32(&mut out),
    );
    assert!(matches!(e, Err(Error::AccumulatorOverflow { .. })));
}

/// A bias that saturates when quantized (tiny scales) is clamped to i32 and then refused by the
/// bound, instead of wrapping.
#[test]
fn saturating_bias_is_refused_not_wrapped() {
    assert_eq!(reference::quantize_bias(1e6, 1e-4, 1e-4), i32::MAX);
    let bq = int8rt::quant::quantize_bias(&[1e6], 1e-4, &[1e-4]).unwrap();
    let (x, w) = ([1i8], [1i8]);
    let a = GemmArgs {
        bias: Bias::I32(&bq),
        ..args(1, 1, 1, Activations::S8(&x), 0, &w)
    };
    let mut out = [0i32];
    assert!(matches!(
        reference::gemm(&a, &mut OutBuf::I32(&mut out)),
        Err(Error::AccumulatorOverflow { .. })
    ));
}

/// i8 output clamps at both ends (and the zero point shifts before the clamp).
#[test]
fn i8_output_saturates_at_both_ends() {
    let k = 16;
    let x: Vec<i8> = [vec![127i8; k], vec![-127i8; k], vec![1i8; k]].concat();
    let w = vec![127i8; k];
    let base = GemmArgs {
        w_scales: &[0.5],
        ..args(3, 1, k, Activations::S8(&x), 0, &w)
    };
    let oq = OutQuant {
        scale: 0.01,
        zero_point: 5,
        qmin: -100,
        qmax: 100,
    };
    let mut want = vec![0i8; 3];
    reference::gemm(&base, &mut OutBuf::I8(&mut want, oq)).unwrap();
    assert_eq!(want[..2], [100, -100]);
    for p in cpu_paths() {
        let mut got = vec![0x55i8; 3];
        int8rt::gemm::gemm(
            &Context::new().with_path(p),
            &base,
            &mut OutBuf::I8(&mut got, oq),
        )
        .unwrap();
        assert_eq!(got, want, "{p:?}");
    }
}

/// f16 output of values beyond 65504 overflows to ±inf exactly like `half`'s rounding.
#[test]
fn f16_output_overflows_to_infinity_like_the_reference() {
    use half::f16;
    let k = 32;
    let x: Vec<i8> = [vec![127i8; k], vec![-127i8; k]].concat();
    let w = vec![127i8; k];
    let a = GemmArgs {
        w_scales: &[200.0],
        ..args(2, 1, k, Activations::S8(&x), 0, &w)
    };
    let mut want = vec![f16::ZERO; 2];
    reference::gemm(&a, &mut OutBuf::F16(&mut want)).unwrap();
    assert_eq!(want, [f16::INFINITY, f16::NEG_INFINITY]);
    for p in cpu_paths() {
        let mut got = vec![f16::from_bits(0x7e55); 2];
        int8rt::gemm::gemm(&Context::new().with_path(p), &a, &mut OutBuf::F16(&mut got)).unwrap();
        let bits = |v: &[f16]| v.iter().map(|h| h.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(&want), "{p:?}");
    }
}

/// Quantizing values far outside the range saturates instead of wrapping (|x / scale| ≫ 2^31).
#[test]
fn quantize_saturates_huge_values() {
    let p = QuantParams::symmetric(1e-30).unwrap();
    let xs = [1e30f32, -1e30, f32::MAX, f32::MIN, 0.0];
    let mut q = [0i8; 5];
    p.quantize_to_i8(&xs, &mut q).unwrap();
    assert_eq!(q, [127, -127, 127, -127, 0]);
    let pu = QuantParams::asymmetric(-1e-30, 1e-30).unwrap();
    let mut qu = [0u8; 5];
    pu.quantize_to_u8(&xs, &mut qu).unwrap();
    assert_eq!(qu, [255, 0, 255, 0, pu.zero_point() as u8]);
    // A range wider than f32 can hold is refused rather than turned into an infinite scale.
    assert!(QuantParams::asymmetric(-3e38, 3e38).is_err());
}
