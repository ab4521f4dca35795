//! tests/common/calib_eq.rs — a device-side calibration observer against the host's, bit for bit:
//! histograms, signed histograms, whole observers and every method's range, reporting the first
//! difference rather than the whole state; and how a golden case splits into batches. Shared by
//! the simulated run (`src/cuda/calib_sim_tests.rs`) and the GPU run (`tests/gpu_calib.rs`), each
//! of which includes this file by path as a module, with the calibration types and `npy` in its
//! own scope (`use super::…` below).

#![allow(dead_code)] // (each includer uses its own subset)

use super::{npy, AmaxMethod, Histogram, Method, RangeMethod, SignedHistogram, TensorObserver};

/// The batches the reference collected from a golden case's input, with their shapes: rows for
/// `multibatch`, the whole tensor otherwise.
pub fn golden_batches_of(name: &str, a: npy::NpyArray) -> Vec<(Vec<f32>, Vec<usize>)> {
    let shape = a.shape.clone();
    let x = a.into_f32(name).unwrap();
    if name == "multibatch" {
        x.chunks(shape[1])
            .map(|r| (r.to_vec(), vec![1, shape[1]]))
            .collect()
    } else {
        vec![(x, shape)]
    }
}

pub fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// The first index where two slices differ (or where one ends), with both values.
pub fn first_diff<T: PartialEq + std::fmt::Debug>(a: &[T], b: &[T]) -> Option<String> {
    if let Some(i) = a.iter().zip(b).position(|(x, y)| x != y) {
        return Some(format!("index {i}: device {:?}, host {:?}", a[i], b[i]));
    }
    (a.len() != b.len()).then(|| format!("lengths: device {}, host {}", a.len(), b.len()))
}

/// Equal histograms (every field), reporting the first differing bin or edge rather than the
/// whole state.
pub fn assert_same_hist(dev: &Histogram, cpu: &Histogram, what: &str) {
    if let Some(d) = first_diff(dev.counts(), cpu.counts()) {
        panic!("{what}: histogram counts differ at {d}");
    }
    if let Some(d) = first_diff(&bits(dev.edges()), &bits(cpu.edges())) {
        panic!("{what}: histogram edge bits differ at {d}");
    }
    if dev != cpu {
        panic!(
            "{what}: histograms differ: total {} / {}, batches {} / {}, min/max {:?} / {:?}, skipped non-finite {} / {}, zeros {} / {}",
            dev.total(), cpu.total(), dev.batches(), cpu.batches(), dev.min_max(), cpu.min_max(),
            dev.nonfinite_skipped(), cpu.nonfinite_skipped(), dev.zeros_skipped(), cpu.zeros_skipped()
        );
    }
}

/// Equal signed histograms, reporting the first differing bin.
pub fn assert_same_signed(dev: &SignedHistogram, cpu: &SignedHistogram, what: &str) {
    if let Some(d) = first_diff(dev.counts(), cpu.counts()) {
        panic!(
            "{what}: signed counts differ at {d} (first bin {} / {}, width {} / {})",
            dev.first_bin(),
            cpu.first_bin(),
            dev.width(),
            cpu.width()
        );
    }
    if dev != cpu {
        panic!(
            "{what}: signed histograms differ: first bin {} / {}, width {} / {}, total {} / {}, range {:?} / {:?}",
            dev.first_bin(), cpu.first_bin(), dev.width(), cpu.width(), dev.total(), cpu.total(),
            dev.range().ok(), cpu.range().ok()
        );
    }
}

/// Equal tensor observers: the histograms first (concise), then every other field.
pub fn assert_same_observer(dev: &TensorObserver, cpu: &TensorObserver, what: &str) {
    assert_same_hist(dev.histogram(), cpu.histogram(), what);
    if let (Some(a), Some(b)) = (dev.signed_histogram(), cpu.signed_histogram()) {
        assert_same_signed(a, b, what);
    }
    // (Compared through Debug, which prints every f32 exactly: a NaN cross-entropy loss, from
    // values near f32::MAX, equals itself there and not under `==`.)
    if format!("{dev:?}") != format!("{cpu:?}") {
        panic!(
            "{what}: observers differ: range {:?} / {:?}, skipped {} / {}, moving average {:?} / {:?}, cross-entropy {:?} / {:?}",
            dev.range().ok(), cpu.range().ok(), dev.nonfinite_skipped(), cpu.nonfinite_skipped(),
            dev.asymmetric_range(RangeMethod::MovingAverage).ok(),
            cpu.asymmetric_range(RangeMethod::MovingAverage).ok(),
            dev.cross_entropy().map(|c| c.losses().to_vec()),
            cpu.cross_entropy().map(|c| c.losses().to_vec()),
        );
    }
}

/// Every method: the symmetric, unsigned and asymmetric ones, cross-entropy included (those
/// that do not apply to an observer are errors on both sides).
pub fn methods() -> Vec<Method> {
    use AmaxMethod as A;
    vec![
        Method::Symmetric(A::Max),
        Method::Symmetric(A::Percentile(99.9)),
        Method::Symmetric(A::Percentile(99.99)),
        Method::Symmetric(A::Percentile(100.0)),
        Method::Symmetric(A::Mse),
        Method::Symmetric(A::Entropy),
        Method::Symmetric(A::CrossEntropy),
        Method::Unsigned(A::Max),
        Method::Unsigned(A::Percentile(99.99)),
        Method::Unsigned(A::Mse),
        Method::Unsigned(A::Entropy),
        Method::Asymmetric(RangeMethod::MinMax),
        Method::Asymmetric(RangeMethod::MovingAverage),
        Method::Asymmetric(RangeMethod::Percentile(99.9)),
        Method::Asymmetric(RangeMethod::Mse),
    ]
}

/// Every method gives the same parameters (scale bits and zero point), or both an error; at
/// least one gives parameters.
pub fn assert_same_ranges(dev: &TensorObserver, cpu: &TensorObserver, what: &str) {
    let compared = compare_ranges(dev, cpu, what);
    assert!(compared > 0, "{what}: no method gave a range");
}

/// [`assert_same_ranges`] without requiring a range: how many methods gave one.
pub fn compare_ranges(dev: &TensorObserver, cpu: &TensorObserver, what: &str) -> usize {
    let mut compared = 0;
    for m in methods() {
        match (dev.params(m), cpu.params(m)) {
            (Ok(a), Ok(b)) => {
                assert_eq!(
                    (a.scale().to_bits(), a.zero_point()),
                    (b.scale().to_bits(), b.zero_point()),
                    "{what}: {m}: device {a:?}, host {b:?}"
                );
                compared += 1;
            }
            (Err(_), Err(_)) => {}
            (a, b) => panic!("{what}: {m}: device {a:?}, host {b:?}"),
        }
    }
    compared
}
