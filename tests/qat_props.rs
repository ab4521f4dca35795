//! tests/qat_props.rs — property tests (proptest) of the quantization-aware-training API on
//! arbitrary, often wrong, input: fake quantizers of any bit width, granularity and channel
//! count, initialised from any ranges or parameters, run forward and backward on slices of any
//! length holding any floats; layers and small MLPs built, fake-quantized, stepped and converted
//! in any order, with labels past the classes and NaN in their batches. No call may panic; what
//! a quantizer accepts keeps its codes in range and its output finite on finite input.

use int8rt::qat::train::{Adam, Sgd};
use int8rt::qat::{FakeQuantConfig, FakeQuantizer, Mlp};
use int8rt::quant::Granularity;
use proptest::prelude::*;

// (the floats that break arithmetic, shared with the calibration properties)
#[path = "common/calib_cases.rs"]
mod calib_cases;
use calib_cases::{no_panic, wild_f32};

/// A quantizer configuration: usually one of the presets, sometimes anything (a width outside
/// 2..=8, per-row granularity, a learnt zero point on a symmetric scheme).
fn config() -> impl Strategy<Value = FakeQuantConfig> {
    let any_config = (
        0u32..40,
        any::<bool>(),
        prop_oneof![
            Just(Granularity::PerTensor),
            Just(Granularity::PerChannel),
            Just(Granularity::PerRow),
        ],
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(bits, symmetric, granularity, learn_scale, learn_zero_point)| FakeQuantConfig {
                bits,
                symmetric,
                granularity,
                learn_scale,
                learn_zero_point,
            },
        );
    prop_oneof![
        3 => (2u32..=8).prop_map(FakeQuantConfig::weights),
        3 => (2u32..=8, any::<bool>()).prop_map(|(b, s)| FakeQuantConfig::activations(b, s)),
        1 => any_config,
    ]
}

/// `(lo, hi)` pairs: usually ordered ranges, sometimes wild values.
fn ranges(n: std::ops::Range<usize>) -> impl Strategy<Value = Vec<(f32, f32)>> {
    prop::collection::vec(
        prop_oneof![
            6 => (-4.0f32..0.0, 0.0f32..4.0),
            1 => (wild_f32(), wild_f32()),
        ],
        n,
    )
}

/// A length that is usually `want` and sometimes one off or zero.
fn near(want: usize, pick: u8) -> usize {
    match pick % 12 {
        0 => want + 1,
        1 => want.saturating_sub(1),
        2 => 0,
        _ => want,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn fake_quantizers_take_any_input_without_panicking(
        cfg in config(),
        channels in 0usize..4,
        inner in 0usize..9,
        ranges in ranges(1..4),
        params in prop::collection::vec(
            prop_oneof![4 => (0.01f32..2.0, -10i32..10), 1 => (wild_f32(), -300i32..300)],
            1..4,
        ),
        use_params in any::<bool>(),
        xs in prop::collection::vec(prop_oneof![12 => -4.0f32..4.0, 1 => wild_f32()], 1..40),
        picks in any::<[u8; 4]>(),
    ) {
        let Ok(mut fq) = no_panic("new", || FakeQuantizer::new(cfg, channels))? else {
            return Ok(());
        };
        // One set per channel, usually (the draws are cycled to the quantizer's count).
        let sets = near(fq.channels(), picks[3]);
        let init = if use_params {
            let (s, z): (Vec<f32>, Vec<i32>) = params.iter().copied().cycle().take(sets).unzip();
            no_panic("set_params", || fq.set_params(&s, &z))?
        } else {
            let (lo, hi): (Vec<f32>, Vec<f32>) = ranges.iter().copied().cycle().take(sets).unzip();
            no_panic("init_from_ranges", || fq.init_from_ranges(&lo, &hi))?
        };
        let len = near(channels.max(1) * inner, picks[0]);
        let x: Vec<f32> = xs.iter().copied().cycle().take(len).collect();
        let mut y = vec![0f32; near(len, picks[1])];
        let fwd = no_panic("forward", || fq.forward("t", &x, &mut y))?;
        if init.is_ok() && fwd.is_ok() && x.iter().all(|v| v.is_finite()) {
            prop_assert!(y.iter().all(|v| v.is_finite()), "{cfg:?}: {x:?} -> {y:?}");
        }
        if let Ok(codes) = no_panic("codes", || fq.codes("t", &x))? {
            prop_assert!(
                codes.iter().all(|&q| fq.qmin() <= q && q <= fq.qmax()),
                "codes {codes:?} outside [{}, {}]", fq.qmin(), fq.qmax()
            );
        }
        let dy: Vec<f32> = x.iter().map(|v| v * 0.5).collect();
        let mut dx = vec![0f32; near(len, picks[2])];
        let _ = no_panic("backward", || fq.backward(&x, &dy, &mut dx))?;
        no_panic("project", || fq.project())?;
        for c in 0..channels + 1 {
            let _ = no_panic("params", || fq.params(c))?;
        }
    }

    #[test]
    fn mlps_take_any_sequence_of_calls_without_panicking(
        sizes in prop::collection::vec(prop_oneof![8 => 1usize..6, 1 => Just(0usize)], 1..4),
        (weights, input) in (config(), config()),
        own_ranges in prop_oneof![3 => Just(None), 1 => ranges(0..4).prop_map(Some)],
        xs in prop::collection::vec(prop_oneof![12 => -4.0f32..4.0, 1 => wild_f32()], 1..40),
        labels in prop::collection::vec(prop_oneof![6 => 0u8..2, 1 => 0u8..8], 0..5),
        (adam, steps, convert_first) in (any::<bool>(), 0usize..3, any::<bool>()),
        seed in any::<u64>(),
    ) {
        let Ok(mut net) = no_panic("Mlp::new", || Mlp::new(&sizes, seed))? else {
            return Ok(());
        };
        let m = labels.len();
        let x: Vec<f32> = xs.iter().copied().cycle().take(m * sizes[0]).collect();
        if convert_first {
            let _ = no_panic("to_quant_linear", || {
                net.layers().iter().map(|l| l.to_quant_linear()).collect::<Vec<_>>()
            })?;
        }
        let observed = no_panic("input_ranges", || net.input_ranges(&x, m))?;
        // The observed input ranges, usually; drawn ones (any count, maybe wild) otherwise.
        let ranges = match (observed, own_ranges) {
            (Ok(r), None) => r,
            (_, r) => r.unwrap_or_default(),
        };
        let _ = no_panic("enable_fake_quant", || net.enable_fake_quant(weights, input, &ranges))?;
        let (mut sgd, mut adam_opt) = (Sgd { lr: 0.05, momentum: 0.9 }, Adam::new(1e-3));
        for _ in 0..steps {
            let _ = no_panic("train_step", || {
                if adam {
                    net.train_step(&x, &labels, &mut adam_opt)
                } else {
                    net.train_step(&x, &labels, &mut sgd)
                }
            })?;
        }
        let _ = no_panic("forward", || net.forward(&x, m))?;
        let _ = no_panic("forward_deploy", || net.forward_deploy(&x, m))?;
        for l in net.layers() {
            let _ = no_panic("to_quant_linear", || l.to_quant_linear())?;
        }
    }
}

#[test]
fn resized_public_parameters_are_refused_not_indexed() {
    // `Param`'s value and gradient vectors are public (optimizers and tests write them): a
    // caller that changes their length gets an error from the next call, never a panic.
    use int8rt::qat::QatLinear;
    let cfg = FakeQuantConfig::activations(8, false);
    let shrink_zp = |fq: &mut FakeQuantizer| {
        fq.zero_point.value.pop();
    };
    let grow_scale_grad = |fq: &mut FakeQuantizer| fq.scale.grad.push(0.0);
    for change in [&shrink_zp as &dyn Fn(&mut FakeQuantizer), &grow_scale_grad] {
        let mut fq = FakeQuantizer::new(cfg, 1).unwrap();
        fq.init_from_ranges(&[-1.0], &[2.0]).unwrap();
        change(&mut fq);
        let x = [0.5f32, -0.25];
        let (mut y, mut dx) = ([0f32; 2], [0f32; 2]);
        assert!(fq.forward("t", &x, &mut y).is_err());
        assert!(fq.codes("t", &x).is_err());
        assert!(fq.backward(&x, &x, &mut dx).is_err());
        assert!(fq.effective(0).is_err() && fq.params(0).is_err());
    }
    let layer = || {
        let mut l = QatLinear::from_f32("fc", vec![0.1; 6], vec![0.0; 3], 3, 2).unwrap();
        l.enable_fake_quant(FakeQuantConfig::weights(8), cfg, (-1.0, 1.0))
            .unwrap();
        l
    };
    let x = [0.5f32, -0.5];
    let mut l = layer();
    l.weight.value.pop();
    assert!(l.forward(&x, 1).is_err() && l.forward_train(&x, 1).is_err());
    let mut l = layer();
    l.forward_train(&x, 1).unwrap();
    l.bias.grad.clear();
    assert!(l.backward(&[1.0; 3], true).is_err());
    let mut l = layer();
    let wq = l.weight_quantizer_mut().unwrap();
    wq.scale.value.truncate(2);
    wq.scale.grad.truncate(2);
    wq.zero_point.value.truncate(2);
    wq.zero_point.grad.truncate(2);
    assert!(l.forward(&x, 1).is_err() && l.to_quant_linear().is_err());
    assert!(l.forward_deploy(&x, 1).is_err());
}
