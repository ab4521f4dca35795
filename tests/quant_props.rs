//! tests/quant_props.rs — property tests (proptest) of quantize/dequantize: round-trip error
//! bounds, integer round trips, monotonicity, zero exactly representable, and the vectorized slice
//! kernels equal to the scalar reference on arbitrary finite floats for every rule.

use int8rt::quant::{self, Convention, Granularity, QuantParams, TorchDtype, WeightQuantConfig};
use int8rt::reference;
use proptest::prelude::*;

fn finite_f32() -> impl Strategy<Value = f32> {
    any::<u32>()
        .prop_map(f32::from_bits)
        .prop_filter("finite", |v| v.is_finite())
}

fn params_strategy() -> impl Strategy<Value = QuantParams> {
    (1e-6f32..1e3, -1e3f32..1e3, 0usize..6).prop_filter_map("valid", |(a, b, kind)| {
        let (lo, hi) = (a.min(b).min(-a), a.max(b));
        let ao = |symmetric, dtype| Convention::TorchAo {
            dtype,
            symmetric,
            reduce_range: false,
        };
        match kind {
            0 => QuantParams::symmetric(hi.abs().max(lo.abs())).ok(),
            1 => QuantParams::asymmetric(lo, hi).ok(),
            2 => QuantParams::from_range(ao(true, TorchDtype::QInt8), lo, hi).ok(),
            3 => QuantParams::from_range(ao(false, TorchDtype::QUInt8), lo, hi).ok(),
            4 => QuantParams::from_range(
                Convention::PytorchQuantization {
                    narrow_range: false,
                    unsigned: false,
                },
                lo,
                hi,
            )
            .ok(),
            _ => QuantParams::from_range(Convention::CompressedTensors, lo, hi).ok(),
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn round_trip_error_is_at_most_half_a_step(amax in 1e-3f32..1e4, t in -1.0f32..1.0) {
        let p = QuantParams::symmetric(amax).unwrap();
        let x = t * amax;
        let err = (p.fake_quantize(x) - x).abs();
        prop_assert!(err <= p.scale() * 0.5 * (1.0 + 1e-5) + amax * 1e-6, "x {x} err {err} scale {}", p.scale());
    }

    #[test]
    fn integers_round_trip(p in params_strategy(), t in 0.0f64..1.0) {
        let q = p.qmin() + ((p.qmax() - p.qmin()) as f64 * t) as i32;
        prop_assert_eq!(p.quantize(p.dequantize(q)), q);
    }

    #[test]
    fn quantize_is_monotonic(p in params_strategy(), a in finite_f32(), b in finite_f32()) {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        prop_assert!(p.quantize(lo) <= p.quantize(hi));
    }

    #[test]
    fn accepted_parameters_dequantize_every_code_to_a_finite_value(
        scale in finite_f32(),
        zp_t in 0.0f64..1.0,
        range in 0usize..3,
        code_t in 0.0f64..1.0,
    ) {
        let (qmin, qmax) = [(-127, 127), (-128, 127), (0, 255)][range];
        let zp = qmin + ((qmax - qmin) as f64 * zp_t) as i32;
        // Ends finite is exactly what decides, once the scale is positive.
        let ends_finite = [qmin, qmax]
            .iter()
            .all(|&q| ((q - zp) as f32 * scale).is_finite());
        let r = QuantParams::new(scale.abs(), zp, qmin, qmax);
        if scale > 0.0 {
            prop_assert_eq!(r.is_ok(), ends_finite, "scale {:e} zp {}", scale, zp);
        }
        if let Ok(p) = r {
            let q = qmin + ((qmax - qmin) as f64 * code_t) as i32;
            prop_assert!(p.dequantize(q).is_finite());
        }
    }

    #[test]
    fn zero_is_exact_for_affine_ranges(lo in -1e3f32..0.0, hi in 0.0f32..1e3) {
        let p = QuantParams::asymmetric(lo, hi).unwrap();
        prop_assert_eq!(p.quantize(0.0), p.zero_point());
        prop_assert_eq!(p.dequantize(p.zero_point()), 0.0);
        prop_assert!((0..=255).contains(&p.zero_point()));
    }

    #[test]
    fn slice_kernels_equal_the_scalar_reference(
        p in params_strategy(),
        xs in proptest::collection::vec(finite_f32(), 0..200),
        scale_mix in proptest::collection::vec(-3.0f32..3.0, 0..200),
    ) {
        // Mix arbitrary bit patterns with values near the range, where rounding matters.
        let mut xs = xs;
        xs.extend(scale_mix.iter().map(|t| t * p.scale() * 127.0));
        xs.extend([f32::INFINITY, f32::NEG_INFINITY]);
        let want: Vec<i32> = xs.iter().map(|&x| reference::quantize(x, &p)).collect();
        if p.qmin() >= -128 && p.qmax() <= 127 {
            let mut q = vec![0i8; xs.len()];
            p.quantize_to_i8(&xs, &mut q).unwrap();
            prop_assert_eq!(q.iter().map(|&v| v as i32).collect::<Vec<_>>(), want);
        } else {
            let mut q = vec![0u8; xs.len()];
            p.quantize_to_u8(&xs, &mut q).unwrap();
            prop_assert_eq!(q.iter().map(|&v| v as i32).collect::<Vec<_>>(), want);
        }
    }

    #[test]
    fn bias_quantization_is_the_f64_quotient(b in -1e4f32..1e4, sx in 1e-4f32..1.0, sw in 1e-4f32..1.0) {
        let q = reference::quantize_bias(b, sx, sw);
        let exact = (b as f64 / (sx * sw) as f64).round_ties_even();
        prop_assert_eq!(q as f64, exact.clamp(i32::MIN as f64, i32::MAX as f64));
        // Within i32 the product is b to half a step; beyond it (|b| / (sx·sw) up to 10^12) the
        // bias saturates, which the equality above already pins down.
        if exact.abs() <= i32::MAX as f64 {
            let err = (q as f64 * (sx * sw) as f64 - b as f64).abs();
            prop_assert!(err <= 0.5 * (sx * sw) as f64 * (1.0 + 1e-9));
        }
    }

    #[test]
    fn per_channel_weights_use_the_full_range(rows in 1usize..6, cols in 1usize..40, seed in any::<u64>()) {
        let mut s = seed;
        let w: Vec<f32> = (0..rows * cols).map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 4.0
        }).collect();
        let q = quant::quantize_weights("w", &w, rows, cols, WeightQuantConfig::default()).unwrap();
        prop_assert_eq!(q.scales().len(), rows);
        for r in 0..rows {
            let row = &q.data()[r * cols..(r + 1) * cols];
            let amax = w[r * cols..(r + 1) * cols].iter().fold(0f32, |a, v| a.max(v.abs()));
            if amax > 0.0 {
                prop_assert_eq!(row.iter().map(|v| v.unsigned_abs()).max().unwrap(), 127);
                prop_assert_eq!(q.scales()[r], amax / 127.0);
            }
        }
        let t = quant::quantize_weights("w", &w, rows, cols, WeightQuantConfig { granularity: Granularity::PerTensor, ..Default::default() }).unwrap();
        prop_assert_eq!(t.scales().len(), 1);
    }
}
