//! tests/reference.rs — the reference itself, checked by hand-computed cases and algebraic
//! identities (DESIGN.md §5: the reference is tested by cases a person can verify, not by itself).

use half::{bf16, f16};
use int8rt::gemm::{ActScales, Activations, Bias, GemmArgs, OutBuf, OutQuant};
use int8rt::quant::{Convention, QuantParams, TorchDtype};
use int8rt::reference;

#[test]
fn symmetric_quantize_rounds_ties_to_even_and_clamps() {
    let p = QuantParams::symmetric(127.0).unwrap();
    assert_eq!(p.scale(), 1.0);
    let cases = [
        (2.5, 2),
        (3.5, 4),
        (-2.5, -2),
        (-3.5, -4),
        (0.49, 0),
        (126.6, 127),
        (200.0, 127),
        (-200.0, -127),
    ];
    for (x, q) in cases {
        assert_eq!(p.quantize(x), q, "x = {x}");
    }
    assert_eq!(p.quantize(f32::INFINITY), 127);
    assert_eq!(p.quantize(f32::NEG_INFINITY), -127);
    assert_eq!(p.dequantize(-127), -127.0);
}

#[test]
fn degenerate_ranges_give_scale_one() {
    let p = QuantParams::symmetric(0.0).unwrap();
    assert_eq!((p.scale(), p.quantize(0.0), p.dequantize(0)), (1.0, 0, 0.0));
    // So small that amax / 127 underflows to 0: still scale 1, never a division by zero.
    let p = QuantParams::symmetric(f32::from_bits(1)).unwrap();
    assert_eq!(p.scale(), 1.0);
    let p = QuantParams::asymmetric(0.0, 0.0).unwrap();
    assert_eq!((p.scale(), p.zero_point()), (1.0, 0));
    assert!(QuantParams::symmetric(f32::NAN).is_err());
    assert!(QuantParams::symmetric(-1.0).is_err());
    assert!(QuantParams::asymmetric(1.0, 0.0).is_err());
    // A span past f32::MAX overflows torch.ao's (hi − lo) / (qmax − qmin) to inf: refused, in
    // every torch.ao preset that divides the span, rather than a scale of inf.
    for (dtype, reduce_range) in [(TorchDtype::QUInt8, true), (TorchDtype::QInt8, false)] {
        let ao = Convention::TorchAo {
            dtype,
            symmetric: false,
            reduce_range,
        };
        assert!(QuantParams::from_range(ao, -f32::MAX, f32::MAX).is_err());
        assert!(QuantParams::from_range(ao, -1.0, 2.0).is_ok());
    }
}

#[test]
fn parameters_whose_end_codes_dequantize_to_inf_are_refused() {
    use int8rt::quant::Rule;
    use int8rt::Error;
    let refused = |r: int8rt::Result<QuantParams>, param: &str| match r {
        Err(Error::InvalidParam { param: p, detail }) => {
            assert_eq!(p, param);
            assert!(detail.contains("dequantize to"), "{detail}");
        }
        other => panic!("expected InvalidParam `{param}`, got {other:?}"),
    };
    // scale = MAX / 127 rounds so that 127 · scale is past MAX: refused as explicit parameters
    // (a checkpoint's) and through a convention …
    let s = f32::MAX / 127.0;
    assert!((127.0 * s).is_infinite() && (s * 126.0).is_finite());
    refused(QuantParams::new(s, 0, -127, 127), "scale");
    let ct = QuantParams::from_range(Convention::CompressedTensors, -f32::MAX, f32::MAX);
    assert!(
        matches!(ct, Err(Error::InvalidParam { param: "lo/hi", ref detail }) if detail.contains("dequantize to")),
        "{ct:?}"
    );
    // … but kept when derived from data (amax = f32::MAX), as the device's dynamic quantization
    // derives it: quantizing stays exact, only dequantize(±127) overflows.
    let p = QuantParams::symmetric(f32::MAX).unwrap();
    assert_eq!(
        (p.scale(), p.quantize(f32::MAX), p.quantize(-f32::MAX)),
        (s, 127, -127)
    );
    assert!(p.dequantize(127).is_infinite());
    // The largest scale whose ends stay finite is accepted, and its ends are what the reference
    // makes of them.
    let mut ok = s;
    while (127.0 * ok).is_infinite() {
        ok = f32::from_bits(ok.to_bits() - 1);
    }
    let p = QuantParams::new(ok, 0, -127, 127).unwrap();
    assert_eq!(p.dequantize(127), 127.0 * ok);
    assert!(p.dequantize(-127).is_finite());
    // The end far from the zero point decides: at scale MAX / 200 over [-128, 127], zero point
    // 127 puts q = -128 255 steps away (past MAX), zero point 0 keeps both ends within 128.
    refused(QuantParams::new(f32::MAX / 200.0, 127, -128, 127), "scale");
    assert!(QuantParams::new(f32::MAX / 200.0, 0, -128, 127).is_ok());
    // A subnormal unit (pytorch-quantization's rule) divides the ends past MAX.
    let tiny = f32::from_bits(1);
    refused(
        QuantParams::with_rule(1.0, 0, -127, 127, Rule::UnitScale { unit: tiny }),
        "rule",
    );
    assert!(QuantParams::with_rule(1.0, 0, -127, 127, Rule::UnitScale { unit: 1e-30 }).is_ok());
    // The asymmetric u8 preset spans at most f32::MAX, and its ends stay finite up to there.
    let p = QuantParams::asymmetric(-f32::MAX / 2.0, f32::MAX / 2.0).unwrap();
    assert!(p.dequantize(0).is_finite() && p.dequantize(255).is_finite());
}

#[test]
fn asymmetric_params_by_hand() {
    // [-1, 3]: scale = 4/255, zp = rhe(1 / (4/255)) = rhe(63.75) = 64.
    let p = QuantParams::asymmetric(-1.0, 3.0).unwrap();
    assert_eq!(p.scale(), 4.0f32 / 255.0);
    assert_eq!(p.zero_point(), 64);
    assert_eq!(p.quantize(0.0), 64);
    assert_eq!(p.quantize(-1.0), 0);
    assert_eq!(p.quantize(3.0), 255);
    // The range is widened to contain 0: [2, 5] behaves as [0, 5].
    let p = QuantParams::asymmetric(2.0, 5.0).unwrap();
    assert_eq!((p.scale(), p.zero_point()), (5.0f32 / 255.0, 0));
    // All-negative data: zp = 255.
    let p = QuantParams::asymmetric(-4.0, -1.0).unwrap();
    assert_eq!(p.zero_point(), 255);
}

#[test]
fn presets_match_their_libraries_formulas() {
    // pytorch-quantization: unit = 127 / amax, q = rhe(x · unit), dequant q / unit.
    let p = QuantParams::from_range(
        Convention::PytorchQuantization {
            narrow_range: true,
            unsigned: false,
        },
        -2.0,
        2.0,
    )
    .unwrap();
    assert_eq!(
        p.quantize(1.0),
        (1.0f32 * (127.0f32 / 2.0)).round_ties_even() as i32
    );
    assert_eq!(p.dequantize(64), 64.0 / (127.0f32 / 2.0));
    // amax ≤ 2^-24 quantizes everything to 0.
    let p = QuantParams::from_range(
        Convention::PytorchQuantization {
            narrow_range: false,
            unsigned: false,
        },
        -1e-8,
        1e-8,
    )
    .unwrap();
    assert_eq!((p.quantize(5.0), p.dequantize(0), p.qmin()), (0, 0.0, -128));
    // torch.ao symmetric qint8: scale = amax / 127.5, zp 0; affine quint8: /255 and zp.
    let ao = |symmetric, dtype| Convention::TorchAo {
        dtype,
        symmetric,
        reduce_range: false,
    };
    let p = QuantParams::from_range(ao(true, TorchDtype::QInt8), -1.0, 2.0).unwrap();
    assert_eq!(
        (p.scale(), p.zero_point(), p.qmin(), p.qmax()),
        (2.0f32 / 127.5, 0, -128, 127)
    );
    let p = QuantParams::from_range(ao(false, TorchDtype::QUInt8), 0.5, 2.0).unwrap();
    assert_eq!(p.scale(), 2.0f32 / 255.0);
    // The table in CALIBRATION-NOTES.md §1.8: [0.5, -1.25, 2.0] → affine scale 3.25/255, zp 98.
    let p = QuantParams::from_range(ao(false, TorchDtype::QUInt8), -1.25, 2.0).unwrap();
    assert_eq!((p.scale(), p.zero_point()), (3.25f32 / 255.0, 98));
    // All zeros: the eps floor.
    let p = QuantParams::from_range(ao(false, TorchDtype::QUInt8), 0.0, 0.0).unwrap();
    assert_eq!(p.scale(), 1.192_092_9e-7);
    // torch.ao multiplies by a reciprocal: q = rhe(x · (1/scale)).
    let p = QuantParams::from_range(ao(true, TorchDtype::QInt8), -0.75, 0.75).unwrap();
    let inv = 1.0f32 / p.scale();
    assert_eq!(p.quantize(0.3), (0.3f32 * inv).round_ties_even() as i32);
    // compressed-tensors: absmax / 127.5 over [-128, 127].
    let p = QuantParams::from_range(Convention::CompressedTensors, -3.0, 1.0).unwrap();
    assert_eq!((p.scale(), p.qmin(), p.qmax()), (3.0f32 / 127.5, -128, 127));
    assert_eq!(p.quantize(-3.0), -128);
}

#[test]
fn bias_quantization_by_hand() {
    // s_x · s_w = 0.5 · 0.25 = 0.125: 1.0 → 8, 0.0625 → 0.5 → 0 (tie to even), 0.1875 → 1.5 → 2.
    assert_eq!(reference::quantize_bias(1.0, 0.5, 0.25), 8);
    assert_eq!(reference::quantize_bias(0.0625, 0.5, 0.25), 0);
    assert_eq!(reference::quantize_bias(0.1875, 0.5, 0.25), 2);
    assert_eq!(reference::quantize_bias(-0.1875, 0.5, 0.25), -2);
    // Saturation.
    assert_eq!(reference::quantize_bias(1e30, 1e-3, 1e-3), i32::MAX);
    assert_eq!(reference::quantize_bias(-1e30, 1e-3, 1e-3), i32::MIN);
}

/// X = [[1, 2], [3, 4]], W = [[1, 0], [0, 1], [1, 1]] → X·Wᵀ = [[1, 2, 3], [3, 4, 7]].
#[test]
fn gemm_by_hand_all_outputs() {
    let x = [1i8, 2, 3, 4];
    let w = [1i8, 0, 0, 1, 1, 1];
    let base = GemmArgs {
        m: 2,
        n: 3,
        k: 2,
        x: Activations::S8(&x),
        act: ActScales::PerTensor {
            scale: 0.5,
            zero_point: 0,
        },
        w: &w,
        w_scales: &[0.25],
        bias: Bias::None,
    };
    let mut y = [0i32; 6];
    reference::gemm(&base, &mut OutBuf::I32(&mut y)).unwrap();
    assert_eq!(y, [1, 2, 3, 3, 4, 7]);
    // i32 bias adds to the accumulator.
    let args = GemmArgs {
        bias: Bias::I32(&[10, -20, 0]),
        ..base
    };
    reference::gemm(&args, &mut OutBuf::I32(&mut y)).unwrap();
    assert_eq!(y, [11, -18, 3, 13, -16, 7]);
    // f32: acc · (0.5 · 0.25).
    let mut f = [0f32; 6];
    reference::gemm(&base, &mut OutBuf::F32(&mut f)).unwrap();
    assert_eq!(f, [0.125, 0.25, 0.375, 0.375, 0.5, 0.875]);
    // Float bias after scaling.
    let args = GemmArgs {
        bias: Bias::F32(&[1.0, 0.0, -1.0]),
        ..base
    };
    reference::gemm(&args, &mut OutBuf::F32(&mut f)).unwrap();
    assert_eq!(f, [1.125, 0.25, -0.625, 1.375, 0.5, -0.125]);
    // Per-row scales: (acc · s_w) · s_x[m].
    let args = GemmArgs {
        act: ActScales::PerRow {
            scales: &[1.0, 2.0],
            zero_points: None,
        },
        ..base
    };
    reference::gemm(&args, &mut OutBuf::F32(&mut f)).unwrap();
    assert_eq!(f, [0.25, 0.5, 0.75, 1.5, 2.0, 3.5]);
    // f16 / bf16 round the f32 value.
    let mut h = [f16::ZERO; 6];
    reference::gemm(&base, &mut OutBuf::F16(&mut h)).unwrap();
    assert_eq!(h.map(f16::to_f32), [0.125, 0.25, 0.375, 0.375, 0.5, 0.875]);
    let mut b = [bf16::ZERO; 6];
    reference::gemm(&base, &mut OutBuf::Bf16(&mut b)).unwrap();
    assert_eq!(b.map(bf16::to_f32), [0.125, 0.25, 0.375, 0.375, 0.5, 0.875]);
    // i8 out with s_y = 0.125: r = 0.125/0.125 = 1 → q = acc; zp_y = -3 shifts; clamp at 2.
    let mut q = [0i8; 6];
    let oq = OutQuant {
        scale: 0.125,
        zero_point: -3,
        qmin: -128,
        qmax: 2,
    };
    reference::gemm(&base, &mut OutBuf::I8(&mut q, oq)).unwrap();
    assert_eq!(q, [-2, -1, 0, 0, 1, 2]);
}

#[test]
fn zero_point_correction_equals_shifting_the_data() {
    // u8 x with zp 5 must equal s8 (x − 5).
    let xs: Vec<u8> = (0..24).map(|i| (i * 11 % 256) as u8).collect();
    let xs8: Vec<i8> = xs.iter().map(|&v| (v as i32 - 128) as i8).collect();
    let w: Vec<i8> = (0..36).map(|i| ((i * 37) % 255 - 127) as i8).collect();
    let (m, n, k) = (4, 6, 6);
    let mut a = vec![0i32; m * n];
    let mut b = vec![0i32; m * n];
    let u = GemmArgs {
        m,
        n,
        k,
        x: Activations::U8(&xs),
        act: ActScales::PerTensor {
            scale: 1.0,
            zero_point: 128,
        },
        w: &w,
        w_scales: &[1.0],
        bias: Bias::None,
    };
    reference::gemm(&u, &mut OutBuf::I32(&mut a)).unwrap();
    let s = GemmArgs {
        x: Activations::S8(&xs8),
        act: ActScales::PerTensor {
            scale: 1.0,
            zero_point: 0,
        },
        ..u
    };
    reference::gemm(&s, &mut OutBuf::I32(&mut b)).unwrap();
    assert_eq!(a, b);
    // And by hand for one element.
    let want: i32 = (0..k).map(|p| (xs[p] as i32 - 128) * w[p] as i32).sum();
    assert_eq!(a[0], want);
}

#[test]
fn i8_output_matches_quantizing_the_f32_value_when_no_requant_shortcut() {
    // With a float bias, i8 = clamp(rhe(value / s_y) + zp): the same as quantizing the f32 output.
    let x = [3i8, -7, 12, 5, 100, -128];
    let w = [1i8, 2, 3, -4, 5, 6, 127, -127, 7];
    let args = GemmArgs {
        m: 2,
        n: 3,
        k: 3,
        x: Activations::S8(&x),
        act: ActScales::PerRow {
            scales: &[0.01, 0.02],
            zero_points: None,
        },
        w: &w,
        w_scales: &[0.5, 0.25, 0.125],
        bias: Bias::F32(&[0.1, -0.2, 0.3]),
    };
    let mut f = [0f32; 6];
    reference::gemm(&args, &mut OutBuf::F32(&mut f)).unwrap();
    let oq = OutQuant {
        scale: 0.03,
        zero_point: 4,
        qmin: -127,
        qmax: 127,
    };
    let mut q = [0i8; 6];
    reference::gemm(&args, &mut OutBuf::I8(&mut q, oq)).unwrap();
    let p = QuantParams::new(0.03, 4, -127, 127).unwrap();
    let want: Vec<i8> = f.iter().map(|&v| p.quantize(v) as i8).collect();
    assert_eq!(q.to_vec(), want);
}
