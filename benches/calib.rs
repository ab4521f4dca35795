//! benches/calib.rs — calibration speed (issue targets: histogram collection ≥ 1 GB/s per core,
//! entropy over 2048 bins ≤ 20 ms, MSE ≤ 5 ms). Single-threaded throughout, so the figures are
//! per core. Inputs: 4 Mi f32 values (16 MiB) of approximately normal data for collection; the
//! reference's own 2048-bin histogram of the golden `gaussian` case for the range methods, where
//! the naive port of the reference's entropy loop is measured alongside as the baseline.
//!
//!   cargo bench --bench calib
//!   cargo bench --bench calib -- 'calib/entropy'     # one group

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use int8rt::calib::{
    entropy_amax, entropy_amax_reference, mse_amax, percentile_amax, Binning, CrossEntropyConfig,
    CrossEntropyObserver, EntropyOptions, Histogram, HistogramConfig, MseOptions, NonFinite,
    SignedHistogram,
};
use int8rt::npy::{self, NpyData};

/// Approximately normal data (Irwin–Hall of 4 LCG uniforms).
fn data(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    let mut u = move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 40) as f32 / (1u64 << 24) as f32
    };
    (0..len)
        .map(|_| (u() + u() + u() + u() - 2.0) * 1.732)
        .collect()
}

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/calibration-golden")
        .join(name)
}

/// The reference's own histogram of the golden `gaussian` case (2048 bins).
fn gaussian_hist() -> (Vec<u64>, Vec<f32>) {
    let counts = match npy::read(golden("gaussian.hist_counts.npy")).unwrap().data {
        NpyData::I64(v) => v.into_iter().map(|c| c as u64).collect(),
        other => panic!("{other:?}"),
    };
    let edges = npy::read(golden("gaussian.hist_edges.npy"))
        .unwrap()
        .into_f32("edges")
        .unwrap();
    (counts, edges)
}

fn collection(c: &mut Criterion) {
    let x = data(4 << 20, 7);
    let mut g = c.benchmark_group("calib/collect");
    g.throughput(Throughput::Bytes((x.len() * 4) as u64));
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(3));
    g.sample_size(20);
    let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    for (label, binning) in [
        ("pytorch_quantization", Binning::PytorchQuantization),
        ("fixed_width", Binning::FixedWidth),
    ] {
        let cfg = HistogramConfig {
            binning,
            ..HistogramConfig::default()
        };
        // Seeded with the data's range so every iteration is a steady-state batch (no growth).
        let mut h = Histogram::with_range("x", cfg, amax).unwrap();
        g.bench_function(BenchmarkId::new("histogram_abs", label), |b| {
            b.iter(|| h.observe(black_box(&x)).unwrap())
        });
    }
    let mut s = SignedHistogram::new("x", 2048, 1 << 20, NonFinite::Error).unwrap();
    s.observe(&x).unwrap();
    g.bench_function("histogram_signed", |b| {
        b.iter(|| s.observe(black_box(&x)).unwrap())
    });
    g.finish();
}

fn methods(c: &mut Criterion) {
    let (counts, edges) = gaussian_hist();
    assert_eq!(counts.len(), 2048);
    let mut g = c.benchmark_group("calib/methods_2048_bins");
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(3));
    g.sample_size(30);
    g.bench_function("percentile", |b| {
        b.iter(|| percentile_amax(black_box(&counts), &edges, 99.99).unwrap())
    });
    g.bench_function("mse", |b| {
        b.iter(|| mse_amax(black_box(&counts), &edges, false, &MseOptions::default()).unwrap())
    });
    g.bench_function("entropy", |b| {
        b.iter(|| {
            entropy_amax(
                black_box(&counts),
                &edges,
                false,
                &EntropyOptions::default(),
            )
            .unwrap()
        })
    });
    g.bench_function("entropy_unsigned", |b| {
        b.iter(|| {
            entropy_amax(black_box(&counts), &edges, true, &EntropyOptions::default()).unwrap()
        })
    });
    g.sample_size(10);
    g.bench_function("entropy_naive_reference_port", |b| {
        b.iter(|| {
            entropy_amax_reference(
                black_box(&counts),
                &edges,
                false,
                &EntropyOptions::default(),
            )
            .unwrap()
        })
    });
    g.finish();
}

fn cross_entropy(c: &mut Criterion) {
    let a = npy::read(golden("softmax_logits.npy")).unwrap();
    let shape = a.shape.clone();
    let x = a.into_f32("logits").unwrap();
    let mut g = c.benchmark_group("calib/cross_entropy");
    g.throughput(Throughput::Elements(x.len() as u64));
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(3));
    g.sample_size(10);
    g.bench_function("logits_512x100_100_candidates", |b| {
        b.iter(|| {
            let mut o = CrossEntropyObserver::new("logits", CrossEntropyConfig::default()).unwrap();
            o.observe(black_box(&x), &shape, 1).unwrap();
            o.amax().unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, collection, methods, cross_entropy);
criterion_main!(benches);
