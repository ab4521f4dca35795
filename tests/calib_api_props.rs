//! tests/calib_api_props.rs — property tests (proptest) of the calibration and quantization API
//! on arbitrary, often wrong, input: observer configurations with zero or huge bin counts and
//! out-of-range constants, batches whose shapes disagree with their lengths, values that are
//! huge, subnormal, zero, NaN or infinite, every range method with out-of-range percentiles,
//! the histogram searches on counts and edges that do not fit together, and `QuantParams`
//! from any pair of floats. No call may panic; what is accepted must be usable (finite scales
//! > 0, zero points inside their integer range).

use int8rt::calib::{
    entropy_amax, mse_amax, percentile_amax, AmaxMethod, EntropyOptions, Method, MseOptions,
    ObserverConfig, RangeMethod, TensorObserver,
};
use int8rt::quant::{Convention, QuantParams, TorchDtype};
use proptest::prelude::*;

#[path = "common/calib_cases.rs"]
mod calib_cases;
use calib_cases::{batch, no_panic, observer_config, wild_f32, wild_f64};

fn amax_method() -> impl Strategy<Value = AmaxMethod> {
    prop_oneof![
        Just(AmaxMethod::Max),
        wild_f64().prop_map(AmaxMethod::Percentile),
        Just(AmaxMethod::Mse),
        Just(AmaxMethod::Entropy),
        Just(AmaxMethod::CrossEntropy),
    ]
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        amax_method().prop_map(Method::Symmetric),
        amax_method().prop_map(Method::Unsigned),
        prop_oneof![
            Just(RangeMethod::MinMax),
            Just(RangeMethod::MovingAverage),
            wild_f64().prop_map(RangeMethod::Percentile),
            Just(RangeMethod::Mse),
        ]
        .prop_map(Method::Asymmetric),
    ]
}

/// Err unless the parameters can quantize: a finite scale > 0 and the zero point in range.
fn usable(p: &QuantParams) -> Result<(), String> {
    let ok = p.scale().is_finite()
        && p.scale() > 0.0
        && p.qmin() <= p.zero_point()
        && p.zero_point() <= p.qmax();
    if ok {
        Ok(())
    } else {
        Err(format!("unusable parameters {p:?}"))
    }
}

/// Build an observer, feed it the batches, ask it for every method's parameters, merge another
/// observer into it and ask again; fail on a panic or on unusable parameters. Returns whether
/// the observer was built and how many parameter requests succeeded.
fn observe_all(
    cfg: ObserverConfig,
    other_cfg: ObserverConfig,
    batches: &[(Vec<f32>, Vec<usize>)],
    methods: &[Method],
) -> Result<(bool, usize), TestCaseError> {
    let built = no_panic("TensorObserver::new", || TensorObserver::new("t", cfg))?;
    let Ok(mut obs) = built else {
        return Ok((false, 0));
    };
    for (xs, shape) in batches {
        let _ = no_panic("observe", || obs.observe(xs, shape))?;
    }
    let mut usable_params = 0;
    let mut ask = |obs: &TensorObserver, when: &str| -> Result<(), TestCaseError> {
        for m in methods {
            if let Ok(p) = no_panic(when, || obs.params(*m))? {
                prop_assert!(usable(&p).is_ok(), "{m} {when}: {:?}", usable(&p));
                usable_params += 1;
            }
            if let Method::Symmetric(a) | Method::Unsigned(a) = m {
                let _ = no_panic("amax", || obs.amax(*a, false))?;
            }
        }
        Ok(())
    };
    ask(&obs, "params")?;
    if let Ok(mut other) = TensorObserver::new("t", other_cfg) {
        if let Some((xs, shape)) = batches.first() {
            let _ = other.observe(xs, shape);
        }
        let _ = no_panic("merge", || obs.merge(&other))?;
        ask(&obs, "params after merge")?;
    }
    Ok((true, usable_params))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn observers_take_any_input_without_panicking(
        cfg in observer_config(),
        other_cfg in observer_config(),
        batches in prop::collection::vec(batch(), 1..4),
        methods in prop::collection::vec(method(), 1..6),
    ) {
        observe_all(cfg, other_cfg, &batches, &methods)?;
    }

    #[test]
    fn histogram_searches_take_any_counts_and_edges(
        counts in prop::collection::vec(
            prop_oneof![4 => 0u64..1000, 1 => Just(u64::MAX), 1 => Just(0u64)], 0..300),
        edges in prop::collection::vec(wild_f32(), 0..301),
        edges_sorted in any::<bool>(),
        p in wild_f64(),
        (start_bin, stride) in (prop_oneof![0usize..300, Just(128usize)], 0usize..4),
        (unsigned, nan_is_minimum) in (any::<bool>(), any::<bool>()),
    ) {
        let mut edges = edges;
        if edges_sorted {
            edges.sort_by(|a, b| a.total_cmp(b));
        }
        let r = no_panic("percentile_amax", || percentile_amax(&counts, &edges, p))?;
        if let Ok(a) = r {
            prop_assert!(a.is_finite() && a >= 0.0, "percentile amax {a}");
        }
        let mse = MseOptions { start_bin, stride };
        let _ = no_panic("mse_amax", || mse_amax(&counts, &edges, unsigned, &mse))?;
        let ent = EntropyOptions { start_bin, stride, nan_is_minimum };
        let _ = no_panic("entropy_amax", || entropy_amax(&counts, &edges, unsigned, &ent))?;
    }

    #[test]
    fn quant_params_from_any_range_are_usable_or_refused(
        lo in wild_f32(),
        hi in wild_f32(),
        kind in 0usize..8,
        (scale, zp, qmin, qmax) in (wild_f32(), -300i32..300, -300i32..300, -300i32..300),
    ) {
        let ao = |dtype, symmetric, reduce_range| Convention::TorchAo { dtype, symmetric, reduce_range };
        let conv = [
            Convention::Int8rt,
            Convention::PytorchQuantization { narrow_range: true, unsigned: false },
            Convention::PytorchQuantization { narrow_range: false, unsigned: true },
            ao(TorchDtype::QInt8, true, false),
            ao(TorchDtype::QUInt8, false, true),
            ao(TorchDtype::QInt8, false, false),
            Convention::CompressedTensors,
            Convention::Int8rt,
        ][kind];
        for p in [
            no_panic("from_range", || QuantParams::from_range(conv, lo, hi))?,
            no_panic("symmetric", || QuantParams::symmetric(hi))?,
            no_panic("asymmetric", || QuantParams::asymmetric(lo, hi))?,
            no_panic("new", || QuantParams::new(scale, zp, qmin, qmax))?,
        ]
        .into_iter()
        .flatten()
        {
            prop_assert!(usable(&p).is_ok(), "{:?}", usable(&p));
            // Quantizing anything stays inside the range.
            for x in [lo, hi, scale, 0.0, f32::INFINITY, f32::NEG_INFINITY] {
                let q = no_panic("quantize", || p.quantize(x))?;
                prop_assert!(p.qmin() <= q && q <= p.qmax(), "{x} -> {q} for {p:?}");
            }
        }
    }
}

#[test]
fn the_observer_draws_mostly_build_and_answer() {
    // The observer property is only worth its cases if most observers build and many parameter
    // requests succeed: count them over a fixed sample of the same strategies.
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut built, mut answered, mut asked) = (0, 0, 0);
    for _ in 0..200 {
        let (cfg, other, batches, methods) = (
            observer_config(),
            observer_config(),
            prop::collection::vec(batch(), 1..4),
            prop::collection::vec(method(), 1..6),
        )
            .new_tree(&mut runner)
            .unwrap()
            .current();
        let (b, n) = observe_all(cfg, other, &batches, &methods).unwrap();
        built += b as usize;
        answered += n;
        asked += if b { 2 * methods.len() } else { 0 };
    }
    eprintln!("{built} of 200 built; {answered} of {asked} parameter requests answered");
    assert!(
        built >= 100 && 4 * answered >= asked,
        "{built} built, {answered}/{asked}"
    );
}
