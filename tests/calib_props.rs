//! tests/calib_props.rs — property tests for the calibration observers: merging two observers
//! that saw parts of the data equals one observer that saw all of it (exactly where the contract
//! says so), range methods are monotone and stay inside the data, and the fast entropy search
//! picks the same bin as the naive port of the reference on arbitrary histograms.

use int8rt::calib::{
    entropy_amax, entropy_amax_reference, mse_amax, percentile_amax, Binning, EntropyOptions,
    Histogram, HistogramConfig, MaxObserver, MinMaxObserver, MseOptions, NonFinite,
    SignedHistogram,
};
use proptest::prelude::*;

/// Batches of mixed-scale data (zeros included), so later batches grow the histogram.
fn batches() -> impl Strategy<Value = Vec<Vec<f32>>> {
    let value = prop_oneof![
        3 => -1.0f32..1.0,
        1 => -40.0f32..40.0,
        1 => Just(0.0f32),
        1 => -1e-3f32..1e-3,
    ];
    prop::collection::vec(prop::collection::vec(value, 0..300), 1..6)
}

/// Feed `bs` to `a` or `b` according to `mask` (cycled), and all of them to `all`.
fn split<T>(
    bs: &[Vec<f32>],
    mask: &[bool],
    all: &mut T,
    a: &mut T,
    b: &mut T,
    mut feed: impl FnMut(&mut T, &[f32]),
) {
    for (i, x) in bs.iter().enumerate() {
        feed(all, x);
        if mask[i % mask.len()] {
            feed(a, x);
        } else {
            feed(b, x);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn max_and_minmax_merge_exactly(bs in batches(), mask in prop::collection::vec(any::<bool>(), 1..6)) {
        let mut all = MaxObserver::new("t", NonFinite::Error);
        let (mut a, mut b) = (all.clone(), all.clone());
        split(&bs, &mask, &mut all, &mut a, &mut b, |o, x| o.observe(x).unwrap());
        a.merge(&b).unwrap();
        prop_assert_eq!(a.amax().ok(), all.amax().ok());

        let mut all = MinMaxObserver::new("t", NonFinite::Error);
        let (mut a, mut b) = (all.clone(), all.clone());
        split(&bs, &mask, &mut all, &mut a, &mut b, |o, x| o.observe(x).unwrap());
        a.merge(&b).unwrap();
        prop_assert_eq!(a.range().ok(), all.range().ok());
    }

    #[test]
    fn fixed_width_histograms_merge_exactly(
        bs in batches(),
        mask in prop::collection::vec(any::<bool>(), 1..6),
        seed in 0.01f32..5.0,
    ) {
        let cfg = HistogramConfig { binning: Binning::FixedWidth, ..HistogramConfig::default() };
        let mut all = Histogram::with_range("t", cfg, seed).unwrap();
        let (mut a, mut b) = (all.clone(), all.clone());
        split(&bs, &mask, &mut all, &mut a, &mut b, |o, x| o.observe(x).unwrap());
        a.merge(&b).unwrap();
        prop_assert_eq!(a.counts(), all.counts());
        prop_assert_eq!(a.edges(), all.edges());
        prop_assert_eq!(a.total(), all.total());
        if !all.is_empty() {
            for p in [50.0, 99.9, 100.0] {
                prop_assert_eq!(
                    percentile_amax(a.counts(), a.edges(), p).unwrap(),
                    percentile_amax(all.counts(), all.edges(), p).unwrap()
                );
            }
            let o = EntropyOptions::default();
            prop_assert_eq!(
                entropy_amax(a.counts(), a.edges(), false, &o).unwrap(),
                entropy_amax(all.counts(), all.edges(), false, &o).unwrap()
            );
            prop_assert_eq!(
                mse_amax(a.counts(), a.edges(), false, &MseOptions::default()).unwrap(),
                mse_amax(all.counts(), all.edges(), false, &MseOptions::default()).unwrap()
            );
        }
    }

    #[test]
    fn reference_binning_merges_exactly_within_the_seeded_range(
        bs in batches(),
        mask in prop::collection::vec(any::<bool>(), 1..6),
    ) {
        // No growth (every |x| ≤ the seed): pytorch-quantization's rule bins every value the same
        // way in every shard.
        let mut all = Histogram::with_range("t", HistogramConfig::default(), 40.0).unwrap();
        let (mut a, mut b) = (all.clone(), all.clone());
        split(&bs, &mask, &mut all, &mut a, &mut b, |o, x| o.observe(x).unwrap());
        a.merge(&b).unwrap();
        prop_assert_eq!(a.counts(), all.counts());
        prop_assert_eq!(a.edges(), all.edges());
    }

    #[test]
    fn signed_histograms_merge_exactly(
        bs in batches(),
        mask in prop::collection::vec(any::<bool>(), 1..6),
        lo in -3.0f32..-0.01,
        hi in 0.01f32..3.0,
    ) {
        let mut all = SignedHistogram::with_range("t", 512, 1 << 20, NonFinite::Error, lo, hi).unwrap();
        let (mut a, mut b) = (all.clone(), all.clone());
        split(&bs, &mask, &mut all, &mut a, &mut b, |o, x| o.observe(x).unwrap());
        a.merge(&b).unwrap();
        prop_assert_eq!(a.counts(), all.counts());
        prop_assert_eq!(a.first_bin(), all.first_bin());
        prop_assert_eq!(a.total(), all.total());
        if all.total() > 0 {
            prop_assert_eq!(a.percentile_range(99.0).unwrap(), all.percentile_range(99.0).unwrap());
        }
    }

    #[test]
    fn percentile_is_monotone_and_methods_stay_in_range(
        bs in batches(),
        p in 0.001f64..100.0,
        q in 0.001f64..100.0,
    ) {
        let mut h = Histogram::new("t", HistogramConfig::default()).unwrap();
        for x in &bs {
            h.observe(x).unwrap();
        }
        prop_assume!(!h.is_empty());
        let (p, q) = if p <= q { (p, q) } else { (q, p) };
        let ap = percentile_amax(h.counts(), h.edges(), p).unwrap();
        let aq = percentile_amax(h.counts(), h.edges(), q).unwrap();
        prop_assert!(ap <= aq, "p={} -> {}, q={} -> {}", p, ap, q, aq);
        let top = *h.edges().last().unwrap();
        let (lo, hi) = h.min_max().unwrap();
        let max_abs = lo.abs().max(hi.abs());
        for unsigned in [false, true] {
            let m = mse_amax(h.counts(), h.edges(), unsigned, &MseOptions::default()).unwrap();
            let e = entropy_amax(h.counts(), h.edges(), unsigned, &EntropyOptions::default()).unwrap();
            for v in [m, e, aq] {
                prop_assert!(v.is_finite() && v >= 0.0 && v <= top && v <= max_abs.max(top), "{}", v);
            }
        }
    }

    #[test]
    fn fast_entropy_equals_the_naive_reference_port(
        counts in prop::collection::vec(prop_oneof![2 => Just(0u64), 3 => 0u64..50, 1 => 0u64..100_000], 1..700),
        unsigned in any::<bool>(),
        nan_is_minimum in any::<bool>(),
        width in 0.001f32..10.0,
    ) {
        prop_assume!(counts.iter().any(|&c| c > 0));
        let edges: Vec<f32> = (0..=counts.len()).map(|i| i as f32 * width).collect();
        let o = EntropyOptions { nan_is_minimum, ..EntropyOptions::default() };
        let fast = entropy_amax(&counts, &edges, unsigned, &o);
        let slow = entropy_amax_reference(&counts, &edges, unsigned, &o);
        match (fast, slow) {
            (Ok(f), Ok(s)) => prop_assert_eq!(f.to_bits(), s.to_bits()),
            (f, s) => prop_assert_eq!(f.is_err(), s.is_err()),
        }
    }
}
