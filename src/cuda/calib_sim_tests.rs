//! cuda/calib_sim_tests.rs — the calibration kernels (`kernels/calib.cu`) run in the host
//! simulation through the same wrappers and observer code a GPU run uses
//! (`cuda::calib::DevBatch` → `observe_source`), against the host observers bit for bit: the
//! observers' whole state (counts, edges, totals, extremes, counters) compared after every
//! batch, and the range of every method. Inputs: the golden cases of
//! `tests/data/calibration-golden/` (whose reference histograms the device path must also
//! reproduce), odd sizes, growth, coarsening, both histogram paths (shared memory and global
//! atomics), the bin rules at their extremes, per-channel reductions along every axis, and
//! non-finite values under both policies.

use std::path::PathBuf;

use super::calib::{self, DevBatch};
use super::exec::Exec;
use super::sim::{SimBuf, SimExec};
use crate::calib::source::BinSpec;
use crate::calib::{
    AmaxMethod, Binning, CrossEntropyConfig, CrossEntropyObserver, Histogram, HistogramConfig,
    MaxObserver, Method, MinMaxObserver, MovingAverageMinMaxObserver, NonFinite, ObserverConfig,
    RangeMethod, SignedHistogram, TensorObserver,
};
use crate::error::{Error, Result};
use crate::nn::CalibrationRun;
use crate::npy::{self, NpyData};

// The device-against-host comparisons, shared with tests/gpu_calib.rs.
#[path = "../../tests/common/calib_eq.rs"]
mod calib_eq;
use calib_eq::{
    assert_same_hist, assert_same_observer, assert_same_ranges, assert_same_signed, bits,
    golden_batches_of,
};

/// SplitMix64.
struct Rng(u64);
impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
    /// About normal, scaled by `sd`.
    fn normals(&mut self, n: usize, sd: f32) -> Vec<f32> {
        (0..n)
            .map(|_| (self.unit() + self.unit() + self.unit() + self.unit() - 2.0) * sd)
            .collect()
    }
}

/// A device copy of `xs` (one element when empty: allocations are never empty).
fn upload(xs: &[f32]) -> SimBuf<f32> {
    let e = SimExec::new();
    if xs.is_empty() {
        e.upload(&[f32::NAN]).unwrap()
    } else {
        e.upload(xs).unwrap()
    }
}

/// Run `f` on a simulated device batch holding `xs` with `shape`.
fn on_device<T>(
    xs: &[f32],
    shape: &[usize],
    f: impl FnOnce(&mut DevBatch<SimExec, &SimBuf<f32>>) -> Result<T>,
) -> Result<T> {
    let buf = upload(xs);
    let mut b = DevBatch::new(SimExec::new(), &buf, shape)?;
    f(&mut b)
}

// ---------------------------------------------------------------------------------------------
// The golden inputs.
// ---------------------------------------------------------------------------------------------

const CASES: [&str; 13] = [
    "gaussian",
    "laplace",
    "gaussian_outliers",
    "relu",
    "bimodal",
    "softmax",
    "softmax_logits",
    "tiny3",
    "constant",
    "zeros",
    "weight_64x256",
    "gelu",
    "multibatch",
];

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/calibration-golden")
}

/// The batches the reference collected, with their shapes (`calib_eq::golden_batches_of`).
fn golden_batches(name: &str) -> Vec<(Vec<f32>, Vec<usize>)> {
    golden_batches_of(
        name,
        npy::read(golden_dir().join(format!("{name}.npy"))).unwrap(),
    )
}

/// The reference's own histogram of a case (pytorch-quantization's counts and edges, as saved).
fn golden_histogram(name: &str) -> (Vec<u64>, Vec<f32>) {
    let counts = match npy::read(golden_dir().join(format!("{name}.hist_counts.npy")))
        .unwrap()
        .data
    {
        NpyData::I64(v) => v.into_iter().map(|c| c as u64).collect(),
        other => panic!("counts dtype {other:?}"),
    };
    let edges = npy::read(golden_dir().join(format!("{name}.hist_edges.npy")))
        .unwrap()
        .into_f32(name)
        .unwrap();
    (counts, edges)
}

#[test]
fn golden_inputs_collect_identically_on_the_simulated_gpu() {
    let text = std::fs::read_to_string(golden_dir().join("expected.json")).unwrap();
    let expected: serde_json::Value = serde_json::from_str(&text).unwrap();
    let skip_zeros = ObserverConfig {
        histogram: HistogramConfig {
            skip_zeros: true,
            binning: Binning::FixedWidth,
            ..HistogramConfig::default()
        },
        nonfinite: NonFinite::Skip,
        ..ObserverConfig::default()
    };
    for name in CASES {
        let batches = golden_batches(name);
        let mut configs = vec![("default", ObserverConfig::default())];
        // The variant options on the cases where they change most (zeros, growth), to keep the
        // simulation's run time down.
        if ["relu", "zeros", "tiny3", "gelu", "multibatch"].contains(&name) {
            configs.push(("skip_zeros/fixed", skip_zeros));
        }
        if name == "softmax_logits" {
            configs.push((
                "cross_entropy",
                ObserverConfig {
                    cross_entropy: Some(CrossEntropyConfig::default()),
                    ..ObserverConfig::default()
                },
            ));
        }
        for (label, cfg) in configs {
            let what = format!("{name} ({label})");
            let mut cpu = TensorObserver::new(name, cfg).unwrap();
            let mut dev = cpu.clone();
            for (x, shape) in &batches {
                cpu.observe(x, shape).unwrap();
                on_device(x, shape, |b| dev.observe_source(b)).unwrap();
                assert_same_observer(&dev, &cpu, &what);
            }
            assert_eq!(
                bits(dev.histogram().edges()),
                bits(cpu.histogram().edges()),
                "{what}: edges"
            );
            assert_same_ranges(&dev, &cpu, &what);
            if label == "default" {
                // Directly against pytorch-quantization: its own histogram and values.
                let (counts, edges) = golden_histogram(name);
                assert_eq!(
                    dev.histogram().counts(),
                    &counts[..],
                    "{what}: reference counts"
                );
                assert_eq!(
                    bits(dev.histogram().edges()),
                    bits(&edges),
                    "{what}: reference edges"
                );
                let c = &expected["cases"][name];
                let want = |v: &serde_json::Value| v.as_f64().unwrap() as f32;
                assert_eq!(
                    dev.amax(AmaxMethod::Max, false).unwrap(),
                    want(&c["pq_max"]["amax"]),
                    "{what}: max"
                );
                for p in ["99.9", "99.99"] {
                    let got = dev
                        .amax(AmaxMethod::Percentile(p.parse().unwrap()), false)
                        .unwrap();
                    assert_eq!(
                        got,
                        want(&c["pq_hist"][format!("percentile_{p}")]),
                        "{what}: p{p}"
                    );
                }
                assert_eq!(
                    dev.amax(AmaxMethod::Entropy, false).unwrap(),
                    want(&c["pq_hist"]["entropy_signed"]),
                    "{what}: entropy"
                );
            }
        }
    }
}

#[test]
fn a_calibration_run_observes_device_batches_like_host_slices() {
    let mut rng = Rng::new(7);
    let mut cpu = CalibrationRun::new(ObserverConfig::default());
    cpu.attach("fc1").unwrap();
    cpu.attach("fc2").unwrap();
    let mut dev = cpu.clone();
    for b in 0..3 {
        let x = rng.normals(6 * 40, 1.0 + b as f32);
        let y: Vec<f32> = x.iter().map(|v| v.max(0.0) * 0.5).collect();
        for (name, v) in [("fc1", &x), ("fc2", &y)] {
            cpu.observe(name, v, &[6, 40]).unwrap();
            on_device(v, &[6, 40], |s| dev.observe_source(name, s)).unwrap();
        }
    }
    for name in ["fc1", "fc2"] {
        let (d, c) = (dev.observer(name).unwrap(), cpu.observer(name).unwrap());
        assert_same_observer(d, c, name);
        assert_same_ranges(d, c, name);
    }
    let e = on_device(&[1.0], &[1], |s| dev.observe_source("nope", s)).unwrap_err();
    assert!(matches!(e, Error::Calibration { .. }), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Histograms: sizes, growth, coarsening, both kernel paths, degenerate data.
// ---------------------------------------------------------------------------------------------

/// Batch sequences that exercise the grid: first batch, growth (appending bins), re-seeding after
/// zeros, coarsening, the f64 fallback of torch's rule, subnormal ranges.
fn sequences() -> Vec<(&'static str, Vec<Vec<f32>>)> {
    let mut rng = Rng::new(42);
    let mut seqs: Vec<(&'static str, Vec<Vec<f32>>)> = Vec::new();
    for (label, n) in [
        ("n=1", 1),
        ("n=2", 2),
        ("n=3", 3),
        ("n=31", 31),
        ("n=33", 33),
        ("n=255", 255),
        ("n=257", 257),
        ("n=4097", 4097),
    ] {
        seqs.push((label, vec![rng.normals(n, 1.5)]));
    }
    seqs.push(("empty, then data", vec![vec![], rng.normals(100, 1.0)]));
    seqs.push((
        "growth",
        vec![
            rng.normals(3000, 0.5),
            rng.normals(3000, 1.3),
            rng.normals(500, 0.2),
            rng.normals(3000, 9.0),
        ],
    ));
    seqs.push((
        "zeros, then data, then zeros",
        vec![
            vec![0.0; 300],
            vec![-0.0, 0.0, 2.0, -1.0, 0.5],
            vec![0.0; 7],
        ],
    ));
    seqs.push(("constant", vec![vec![-3.25; 1000], vec![3.25; 10]]));
    seqs.push((
        "negative only",
        vec![rng
            .normals(700, 2.0)
            .iter()
            .map(|v| -v.abs() - 1.0)
            .collect()],
    ));
    seqs.push((
        "huge values (f64 path of torch's rule)",
        vec![
            vec![f32::MAX, f32::MAX / 3.0, -1.0, 0.0, f32::MAX * 0.999],
            vec![1e38, -3e38],
        ],
    ));
    seqs.push((
        "subnormal range",
        vec![vec![1e-45, 0.0, -2e-45, 1e-44], vec![3e-39, -1e-40, 1e-45]],
    ));
    seqs.push((
        "far outlier, then coarser data",
        vec![
            rng.normals(2000, 0.01),
            vec![500.0, -0.5],
            rng.normals(2000, 300.0),
        ],
    ));
    let mut big = rng.normals(300_000, 1.0);
    big[123_457] = 17.0;
    seqs.push(("300k values", vec![big, rng.normals(50_000, 2.0)]));
    seqs
}

fn histogram_configs() -> Vec<(&'static str, HistogramConfig)> {
    let d = HistogramConfig::default();
    vec![
        ("default", d),
        (
            "fixed width",
            HistogramConfig {
                binning: Binning::FixedWidth,
                ..d
            },
        ),
        (
            "skip zeros",
            HistogramConfig {
                skip_zeros: true,
                ..d
            },
        ),
        // Past HIST_SMEM_BINS: the kernel's global-atomic path.
        (
            "10000 bins",
            HistogramConfig {
                bins: calib::HIST_SMEM_BINS + 1808,
                ..d
            },
        ),
        (
            "max_bins 4096 (coarsening)",
            HistogramConfig {
                max_bins: 4096,
                ..d
            },
        ),
        ("1 bin", HistogramConfig { bins: 1, ..d }),
        (
            "3 bins, fixed width",
            HistogramConfig {
                bins: 3,
                binning: Binning::FixedWidth,
                ..d
            },
        ),
    ]
}

#[test]
fn histograms_match_the_host_observer_batch_by_batch() {
    let seqs = sequences();
    for (cl, cfg) in histogram_configs() {
        for (sl, seq) in &seqs {
            if sl.starts_with("300k") && cl != "default" && cl != "10000 bins" {
                continue; // the large case once per kernel path is enough
            }
            let mut cpu = Histogram::new("h", cfg).unwrap();
            let mut dev = cpu.clone();
            for (i, b) in seq.iter().enumerate() {
                cpu.observe(b).unwrap();
                on_device(b, &[b.len()], |s| dev.observe_source(s)).unwrap();
                assert_same_hist(&dev, &cpu, &format!("{cl} / {sl}: after batch {i}"));
            }
            assert_eq!(bits(dev.edges()), bits(cpu.edges()), "{cl} / {sl}: edges");
        }
    }
}

#[test]
fn signed_histograms_match_the_host_observer_batch_by_batch() {
    let seqs = sequences();
    for (bins, max_bins) in [
        (2048, 1 << 20),
        (256, 1 << 16),
        (64, 200),
        (10_000, 1 << 20),
    ] {
        for (sl, seq) in &seqs {
            if sl.starts_with("300k") && bins != 2048 {
                continue;
            }
            let mut cpu = SignedHistogram::new("s", bins, max_bins, NonFinite::Error).unwrap();
            let mut dev = cpu.clone();
            for (i, b) in seq.iter().enumerate() {
                cpu.observe(b).unwrap();
                on_device(b, &[b.len()], |s| dev.observe_source(s)).unwrap();
                assert_same_signed(&dev, &cpu, &format!("{bins}/{max_bins} / {sl}: batch {i}"));
            }
            if cpu.total() > 0 {
                assert_eq!(
                    dev.percentile_range(99.9).unwrap(),
                    cpu.percentile_range(99.9).unwrap()
                );
            }
        }
    }
}

/// The host rules as the observers define them (`Histogram::bin_of`, `SignedHistogram`), one
/// value at a time, in Rust's conversion semantics.
fn host_bin(spec: BinSpec, x: f32) -> usize {
    match spec {
        BinSpec::Scaled { bins, right } => {
            let t = x.abs() * bins as f32;
            let pos = if t.is_finite() {
                t / right
            } else {
                ((x.abs() as f64 * bins as f64) / right as f64) as f32
            };
            (pos as usize).min(bins - 1)
        }
        BinSpec::Width { bins, width } => ((x.abs() / width) as usize).min(bins - 1),
        BinSpec::Signed { bins, width, first } => {
            let g = (x / width).floor() as i64;
            g.saturating_sub(first).clamp(0, bins as i64 - 1) as usize
        }
    }
}

#[test]
fn bin_rules_match_their_host_definitions_at_the_extremes() {
    let mut rng = Rng::new(3);
    let mut xs = rng.normals(3000, 3.0);
    xs.extend([
        0.0,
        -0.0,
        f32::MIN_POSITIVE,
        1e-45,
        -1e-45,
        f32::MAX,
        -f32::MAX,
        1e30,
        -7.5,
        7.5,
        3.0,
        -3.0,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
    ]);
    let specs = [
        BinSpec::Scaled {
            bins: 2048,
            right: 3.0,
        },
        BinSpec::Scaled {
            bins: 5438,
            right: 7.0,
        },
        BinSpec::Scaled {
            bins: 1,
            right: 1.0,
        },
        BinSpec::Scaled {
            bins: 2048,
            right: 1e-40,
        },
        BinSpec::Scaled {
            bins: 9000,
            right: 2.5,
        },
        BinSpec::Width {
            bins: 2048,
            width: 3.0 / 2048.0,
        },
        BinSpec::Width {
            bins: 100,
            width: 0.0,
        },
        BinSpec::Width {
            bins: 20_000,
            width: 1e-3,
        },
        BinSpec::Signed {
            bins: 2048,
            width: 0.01,
            first: -1024,
        },
        BinSpec::Signed {
            bins: 7,
            width: 1.0,
            first: 2,
        },
        BinSpec::Signed {
            bins: 100,
            width: 1e-44,
            first: i64::MIN + 5,
        },
        BinSpec::Signed {
            bins: 9000,
            width: 1e-3,
            first: -4500,
        },
    ];
    for spec in specs {
        for skip_zeros in [false, true] {
            let mut want = vec![0u64; spec.bins()];
            for &x in &xs {
                if x.is_finite() && !(skip_zeros && x == 0.0) {
                    want[host_bin(spec, x)] += 1;
                }
            }
            let got = calib::histogram(&SimExec::new(), &upload(&xs), xs.len(), spec, skip_zeros)
                .unwrap();
            assert_eq!(got, want, "{spec:?}, skip_zeros {skip_zeros}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Max / MinMax / moving average, per tensor and per channel.
// ---------------------------------------------------------------------------------------------

#[test]
fn max_and_minmax_match_the_host_per_tensor_and_per_channel() {
    let mut rng = Rng::new(11);
    let shapes: &[&[usize]] = &[
        &[3, 5, 7],
        &[1, 1],
        &[2, 300],
        &[300, 2],
        &[4, 1, 33],
        &[5, 40, 1],
        &[2, 3, 64],
        &[1, 7, 40],
        &[3, 33, 7],
        &[2, 0, 3],
        &[1000],
    ];
    for &shape in shapes {
        let len: usize = shape.iter().product();
        let batches: Vec<Vec<f32>> = (0..3)
            .map(|b| {
                let mut v = rng.normals(len, 1.0 + b as f32);
                if b == 1 && len > 2 {
                    v[len / 2] = f32::NAN;
                    v[len - 1] = f32::NEG_INFINITY;
                }
                v
            })
            .collect();
        let mut observers: Vec<(String, MaxObserver, MinMaxObserver)> = vec![(
            "tensor".into(),
            MaxObserver::new("t", NonFinite::Skip),
            MinMaxObserver::new("t", NonFinite::Skip),
        )];
        for axis in 0..shape.len() {
            observers.push((
                format!("axis {axis}"),
                MaxObserver::per_channel("t", axis, NonFinite::Skip),
                MinMaxObserver::per_channel("t", axis, NonFinite::Skip),
            ));
        }
        for (label, max0, mm0) in observers {
            let (mut cmax, mut cmm) = (max0.clone(), mm0.clone());
            let (mut dmax, mut dmm) = (max0, mm0);
            for b in &batches {
                cmax.observe_shaped(b, shape).unwrap();
                cmm.observe_shaped(b, shape).unwrap();
                on_device(b, shape, |s| {
                    dmax.observe_source(s)?;
                    dmm.observe_source(s)
                })
                .unwrap();
                assert_eq!(dmax, cmax, "{shape:?} {label}: max");
                assert_eq!(dmm, cmm, "{shape:?} {label}: minmax");
            }
            if len > 0 {
                let (a, b) = (
                    dmax.amax_per_channel().unwrap(),
                    cmax.amax_per_channel().unwrap(),
                );
                assert_eq!(bits(a), bits(b), "{shape:?} {label}: amax bits");
            }
        }
    }
    // The moving average.
    let mut cpu = MovingAverageMinMaxObserver::new("m", 0.01, NonFinite::Skip).unwrap();
    let mut dev = cpu.clone();
    for b in 0..5 {
        let mut x = rng.normals(999, 1.0 + b as f32);
        x[b] = f32::NAN;
        cpu.observe(&x).unwrap();
        on_device(&x, &[999], |s| dev.observe_source(s)).unwrap();
        assert_eq!(dev, cpu);
    }
}

// ---------------------------------------------------------------------------------------------
// Non-finite values and bad arguments.
// ---------------------------------------------------------------------------------------------

fn nonfinite_of(e: Error) -> (String, usize, usize) {
    match e {
        Error::NonFinite {
            tensor,
            count,
            first_index,
        } => (tensor, count, first_index),
        other => panic!("expected NonFinite, got {other}"),
    }
}

#[test]
fn nonfinite_values_are_refused_or_skipped_like_on_the_host() {
    let mut rng = Rng::new(5);
    let mut x = rng.normals(5000, 1.0);
    for (i, v) in [
        (4321, f32::NAN),
        (77, f32::INFINITY),
        (4999, f32::NEG_INFINITY),
        (1200, f32::NAN),
    ] {
        x[i] = v;
    }
    let shape = [50, 100];
    // Refused: the same error (tensor, count, first index) and the observer unchanged.
    let mut h = Histogram::new("act.fc1", HistogramConfig::default()).unwrap();
    h.observe(&x[2000..2100]).unwrap();
    let before = h.clone();
    let want = nonfinite_of(h.clone().observe(&x).unwrap_err());
    assert_eq!(want, ("act.fc1".to_string(), 4, 77));
    let got = nonfinite_of(on_device(&x, &shape, |s| h.observe_source(s)).unwrap_err());
    assert_eq!(got, want);
    assert_same_hist(&h, &before, "refused batch");
    let mut t = TensorObserver::new("act.fc1", ObserverConfig::default()).unwrap();
    let t0 = t.clone();
    let got = nonfinite_of(on_device(&x, &shape, |s| t.observe_source(s)).unwrap_err());
    assert_eq!(got, want);
    assert_same_observer(&t, &t0, "refused batch");
    let mut s = SignedHistogram::new("act.fc1", 2048, 1 << 20, NonFinite::Error).unwrap();
    let got = nonfinite_of(on_device(&x, &shape, |b| s.observe_source(b)).unwrap_err());
    assert_eq!(got, want);
    for axis in [0, 1] {
        let mut c = MaxObserver::per_channel("act.fc1", axis, NonFinite::Error);
        let want = nonfinite_of(c.clone().observe_shaped(&x, &shape).unwrap_err());
        let got = nonfinite_of(on_device(&x, &shape, |b| c.observe_source(b)).unwrap_err());
        assert_eq!(got, want, "per channel, axis {axis}");
    }
    // A long run of non-finite values: every thread meets several, and the lowest index wins.
    let mut dense = rng.normals(30_000, 1.0);
    dense[5003..29_000].fill(f32::NAN);
    dense[29_500] = f32::INFINITY;
    let want = nonfinite_of(
        Histogram::new("d", HistogramConfig::default())
            .unwrap()
            .observe(&dense)
            .unwrap_err(),
    );
    assert_eq!(want, ("d".to_string(), 23_998, 5003));
    let mut h = Histogram::new("d", HistogramConfig::default()).unwrap();
    let got = nonfinite_of(on_device(&dense, &[30_000], |s| h.observe_source(s)).unwrap_err());
    assert_eq!(got, want);
    for (shape, axis) in [([300, 100], 0), ([300, 100], 1), ([30, 1000], 1)] {
        let mut c = MinMaxObserver::per_channel("d", axis, NonFinite::Error);
        let want = nonfinite_of(c.clone().observe_shaped(&dense, &shape).unwrap_err());
        let got = nonfinite_of(on_device(&dense, &shape, |b| c.observe_source(b)).unwrap_err());
        assert_eq!(got, want, "per channel {shape:?}, axis {axis}");
    }
    // Skipped: counted, and the rest observed identically.
    let cfg = ObserverConfig {
        nonfinite: NonFinite::Skip,
        cross_entropy: Some(CrossEntropyConfig::default()),
        ..ObserverConfig::default()
    };
    let mut cpu = TensorObserver::new("act.fc1", cfg).unwrap();
    let mut dev = cpu.clone();
    cpu.observe(&x, &shape).unwrap();
    on_device(&x, &shape, |s| dev.observe_source(s)).unwrap();
    assert_same_observer(&dev, &cpu, "skip");
    assert_eq!(dev.nonfinite_skipped(), 4);
    assert_same_ranges(&dev, &cpu, "skip");
    // All values non-finite.
    let bad = vec![f32::NAN; 300];
    let mut cpu = Histogram::new(
        "h",
        HistogramConfig {
            nonfinite: NonFinite::Skip,
            ..HistogramConfig::default()
        },
    )
    .unwrap();
    let mut dev = cpu.clone();
    cpu.observe(&bad).unwrap();
    on_device(&bad, &[300], |s| dev.observe_source(s)).unwrap();
    assert_same_hist(&dev, &cpu, "all non-finite");
    assert_eq!(dev.nonfinite_skipped(), 300);
}

#[test]
fn cross_entropy_observes_a_device_batch() {
    let mut rng = Rng::new(9);
    let mut cpu = CrossEntropyObserver::new("logits", CrossEntropyConfig::default()).unwrap();
    let mut dev = cpu.clone();
    for b in 0..2 {
        let x = rng.normals(8 * 10, 2.0 + b as f32);
        cpu.observe(&x, &[8, 10], 1).unwrap();
        on_device(&x, &[8, 10], |s| dev.observe_source(s, 1)).unwrap();
        assert_eq!(dev, cpu);
    }
    assert_eq!(dev.amax().unwrap().to_bits(), cpu.amax().unwrap().to_bits());
}

#[test]
fn bad_batches_are_errors() {
    let buf = upload(&[1.0, 2.0, 3.0]);
    // A shape larger than the buffer.
    let e = DevBatch::new(SimExec::new(), &buf, &[2, 2]).err().unwrap();
    assert!(matches!(e, Error::Shape { .. }), "{e}");
    // A shape whose element count overflows.
    let e = DevBatch::new(SimExec::new(), &buf, &[usize::MAX, 2])
        .err()
        .unwrap();
    assert!(matches!(e, Error::Dimension { .. }), "{e}");
    // A shorter shape observes a prefix.
    let mut m = MaxObserver::new("t", NonFinite::Error);
    let mut b = DevBatch::new(SimExec::new(), &buf, &[2]).unwrap();
    m.observe_source(&mut b).unwrap();
    assert_eq!(m.amax().unwrap(), 2.0);
    // A per-channel axis past the shape, and a channel count that changes.
    let mut c = MaxObserver::per_channel("t", 2, NonFinite::Error);
    let mut b = DevBatch::new(SimExec::new(), &buf, &[3, 1]).unwrap();
    assert!(matches!(
        c.observe_source(&mut b),
        Err(Error::Dimension { .. })
    ));
    let mut c = MaxObserver::per_channel("t", 0, NonFinite::Error);
    c.observe_source(&mut DevBatch::new(SimExec::new(), &buf, &[3, 1]).unwrap())
        .unwrap();
    let e = c
        .observe_source(&mut DevBatch::new(SimExec::new(), &buf, &[1, 3]).unwrap())
        .unwrap_err();
    assert!(matches!(e, Error::Calibration { .. }), "{e}");
    // Histograms need a bin.
    let spec = BinSpec::Width {
        bins: 0,
        width: 1.0,
    };
    assert!(calib::histogram(&SimExec::new(), &buf, 3, spec, false).is_err());
}
