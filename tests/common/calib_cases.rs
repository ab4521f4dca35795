//! tests/common/calib_cases.rs — arbitrary calibration input: floats weighted towards the ones
//! that break arithmetic, observer configurations (usually valid), batches whose shape usually
//! matches their length; and `no_panic`, a call whose panic fails the case. Shared by the API
//! property tests (tests/calib_api_props.rs, tests/qat_props.rs) and the device-against-host
//! property (tests/gpu_calib.rs), each including it by path.

#![allow(dead_code)] // (each includer uses its own subset)

use int8rt::calib::{
    Binning, CrossEntropyConfig, HistogramConfig, NonFinite, ObserverConfig, DEFAULT_MAX_BINS,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// `f()`, or a failed case naming `what` if it panics.
pub fn no_panic<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, TestCaseError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .map_err(|_| TestCaseError::fail(format!("{what} panicked")))
}

/// Any float, weighted towards the ones that break arithmetic.
pub fn wild_f32() -> impl Strategy<Value = f32> {
    prop_oneof![
        6 => -4.0f32..4.0,
        1 => Just(0.0f32),
        1 => Just(-0.0f32),
        1 => Just(f32::NAN),
        1 => Just(f32::INFINITY),
        1 => Just(f32::NEG_INFINITY),
        1 => Just(f32::MAX),
        1 => Just(-f32::MAX),
        1 => Just(f32::MIN_POSITIVE / 8.0),
        1 => any::<u32>().prop_map(f32::from_bits),
    ]
}

pub fn wild_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => 0.0f64..101.0,
        1 => Just(f64::NAN),
        1 => Just(-1.0f64),
        1 => Just(f64::INFINITY),
        1 => Just(100.0f64),
    ]
}

pub fn nonfinite() -> impl Strategy<Value = NonFinite> {
    prop_oneof![Just(NonFinite::Error), Just(NonFinite::Skip)]
}

/// Observer options: usually valid, sometimes with a zero bin count, a bin cap below the bins,
/// an averaging constant outside `(0, 1]` or a cross-entropy grid that cannot work.
pub fn observer_config() -> impl Strategy<Value = ObserverConfig> {
    (
        (
            prop_oneof![6 => 1usize..300, 2 => Just(2048usize), 1 => Just(0usize)],
            prop_oneof![6 => Just(DEFAULT_MAX_BINS), 2 => 0usize..5000],
            any::<bool>(),
            any::<bool>(),
        ),
        any::<bool>(),
        prop_oneof![
            3 => Just(Some(0.01f32)),
            2 => Just(None),
            1 => wild_f32().prop_map(Some),
        ],
        prop_oneof![
            3 => Just(None),
            2 => (1usize..40, 0.0f64..1.0).prop_map(|(c, m)| Some(CrossEntropyConfig {
                candidates: c,
                range_margin: m,
                nonfinite: NonFinite::Skip,
            })),
            1 => (0usize..40, wild_f64(), nonfinite()).prop_map(|(c, m, nf)| Some(
                CrossEntropyConfig {
                    candidates: c,
                    range_margin: m - 1.0,
                    nonfinite: nf,
                }
            )),
        ],
        nonfinite(),
    )
        .prop_map(
            |((bins, max_bins, fixed, skip_zeros), signed, ma, ce, nf)| ObserverConfig {
                histogram: HistogramConfig {
                    bins,
                    binning: if fixed {
                        Binning::FixedWidth
                    } else {
                        Binning::PytorchQuantization
                    },
                    skip_zeros,
                    nonfinite: nf,
                    max_bins,
                },
                signed_histogram: signed,
                moving_average: ma,
                cross_entropy: ce,
                nonfinite: nf,
            },
        )
}

/// A batch: values and a shape that usually, not always, matches them.
pub fn batch() -> impl Strategy<Value = (Vec<f32>, Vec<usize>)> {
    (
        prop::collection::vec(prop_oneof![12 => -4.0f32..4.0, 1 => wild_f32()], 0..60),
        prop_oneof![
            4 => Just(None),
            1 => prop::collection::vec(0usize..8, 0..4).prop_map(Some),
        ],
        1usize..4,
    )
        .prop_map(|(xs, shape, rows)| {
            let shape = shape.unwrap_or_else(|| {
                if xs.len().is_multiple_of(rows) {
                    vec![rows, xs.len() / rows]
                } else {
                    vec![xs.len()]
                }
            });
            (xs, shape)
        })
}
