//! tests/gpu_calib.rs — calibration over activations in GPU memory (`CudaBatch` and every
//! observer's `observe_cuda`, kernels/calib.cu) on a real GPU, against the host observers bit
//! for bit: the golden inputs of `tests/data/calibration-golden/` (embedded, so the GPU bundle
//! carries them) and pytorch-quantization's own histograms of them, large batches over many
//! blocks with growth, both histogram kernel paths, per-channel reductions, non-finite values, a
//! calibration run frozen into layers, and batches written by an earlier kernel on a caller's
//! stream. Without a GPU every test returns early, unless `INT8RT_REQUIRE_CUDA=1`, which turns
//! "no GPU" into a failure.

#![cfg(feature = "cuda")]

mod common;

use common::Rng;
use int8rt::calib::{
    AmaxMethod, Binning, CrossEntropyConfig, CrossEntropyObserver, Histogram, HistogramConfig,
    MaxObserver, Method, MinMaxObserver, MovingAverageMinMaxObserver, NonFinite, ObserverConfig,
    RangeMethod, SignedHistogram, TensorObserver,
};
use int8rt::cuda::cudarc::driver::CudaSlice;
use int8rt::cuda::{Axis, CudaBatch, CudaDevice, CudaQuantized};
use int8rt::nn::{CalibrationRun, LinearConfig, QuantLinear};
use int8rt::npy::{self, NpyData};
use int8rt::quant::QuantParams;
use int8rt::Error;

// The device-against-host comparisons, shared with the simulated run
// (src/cuda/calib_sim_tests.rs).
#[path = "common/calib_eq.rs"]
mod calib_eq;
use calib_eq::{
    assert_same_hist, assert_same_observer, assert_same_ranges, assert_same_signed, bits,
    compare_ranges, golden_batches_of,
};

// Arbitrary observer configurations and batches, shared with tests/calib_api_props.rs.
#[path = "common/calib_cases.rs"]
mod calib_cases;

/// Device 0, or `None` (skip) — a failure under `INT8RT_REQUIRE_CUDA=1`.
fn gpu() -> Option<CudaDevice> {
    match CudaDevice::new(0) {
        Ok(d) => Some(d),
        Err(e) => {
            if std::env::var("INT8RT_REQUIRE_CUDA").as_deref() == Ok("1") {
                panic!("INT8RT_REQUIRE_CUDA=1 but no usable GPU: {e}");
            }
            eprintln!("no GPU, GPU test skipped: {e}");
            None
        }
    }
}

/// Upload `xs` (one element when empty) and run `f` on it as a batch of `shape`.
fn on_gpu<T>(
    dev: &CudaDevice,
    xs: &[f32],
    shape: &[usize],
    f: impl FnOnce(&mut CudaBatch<'_>) -> int8rt::Result<T>,
) -> int8rt::Result<T> {
    let s = dev.default_stream();
    let d: CudaSlice<f32> = if xs.is_empty() {
        s.clone_htod(&[0.0f32]).unwrap()
    } else {
        s.clone_htod(xs).unwrap()
    };
    let mut b = CudaBatch::new(dev, &s, &d, shape)?;
    f(&mut b)
}

macro_rules! golden {
    ($($name:literal),*) => {
        /// `(name, input .npy, reference counts .npy, reference edges .npy)`, embedded.
        const GOLDEN: &[(&str, &[u8], &[u8], &[u8])] = &[$((
            $name,
            include_bytes!(concat!("data/calibration-golden/", $name, ".npy")),
            include_bytes!(concat!("data/calibration-golden/", $name, ".hist_counts.npy")),
            include_bytes!(concat!("data/calibration-golden/", $name, ".hist_edges.npy")),
        )),*];
    };
}
golden!(
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
    "multibatch"
);

/// The batches the reference collected from an embedded input (`calib_eq::golden_batches_of`).
fn golden_batches(name: &str, bytes: &[u8]) -> Vec<(Vec<f32>, Vec<usize>)> {
    golden_batches_of(name, npy::parse(bytes, name).unwrap())
}

#[test]
fn golden_inputs_collect_identically_on_the_gpu() {
    let Some(dev) = gpu() else { return };
    for &(name, input, counts, edges) in GOLDEN {
        let cfg = ObserverConfig {
            cross_entropy: (name == "softmax_logits").then(CrossEntropyConfig::default),
            ..ObserverConfig::default()
        };
        let mut cpu = TensorObserver::new(name, cfg).unwrap();
        let mut gpu_obs = cpu.clone();
        for (x, shape) in golden_batches(name, input) {
            cpu.observe(&x, &shape).unwrap();
            on_gpu(&dev, &x, &shape, |b| gpu_obs.observe_cuda(b)).unwrap();
            assert_same_observer(&gpu_obs, &cpu, name);
        }
        assert_same_ranges(&gpu_obs, &cpu, name);
        // pytorch-quantization's own histogram of the case.
        let want: Vec<u64> = match npy::parse(counts, name).unwrap().data {
            NpyData::I64(v) => v.into_iter().map(|c| c as u64).collect(),
            other => panic!("counts dtype {other:?}"),
        };
        let want_edges = npy::parse(edges, name).unwrap().into_f32(name).unwrap();
        assert_eq!(
            gpu_obs.histogram().counts(),
            &want[..],
            "{name}: reference counts"
        );
        assert_eq!(
            bits(gpu_obs.histogram().edges()),
            bits(&want_edges),
            "{name}: reference edges"
        );
    }
}

#[test]
fn large_batches_over_many_blocks_with_growth() {
    let Some(dev) = gpu() else { return };
    let mut rng = Rng::new(21);
    // 2^24 + 3 values per batch, growing ranges, a run of zeros, one far outlier.
    let n = (1 << 24) + 3;
    let batches: Vec<Vec<f32>> = [0.5f32, 1.7, 0.2, 40.0]
        .iter()
        .enumerate()
        .map(|(b, &sd)| {
            let mut v = rng.f32s(n, sd);
            if b == 1 {
                v[1000..200_000].fill(0.0);
                v[n - 1] = 3000.0;
            }
            v
        })
        .collect();
    let d = HistogramConfig::default();
    let configs = [
        ("default", d),
        (
            "fixed width, skip zeros",
            HistogramConfig {
                binning: Binning::FixedWidth,
                skip_zeros: true,
                ..d
            },
        ),
        (
            "10000 bins (global atomics)",
            HistogramConfig { bins: 10_000, ..d },
        ),
        (
            "max_bins 4096 (coarsening)",
            HistogramConfig {
                max_bins: 4096,
                ..d
            },
        ),
    ];
    for (label, cfg) in configs {
        let mut cpu = Histogram::new("big", cfg).unwrap();
        let mut gh = cpu.clone();
        let mut scpu = SignedHistogram::new("big", cfg.bins, 1 << 20, NonFinite::Error).unwrap();
        let mut sg = scpu.clone();
        for (i, b) in batches.iter().enumerate() {
            cpu.observe(b).unwrap();
            scpu.observe(b).unwrap();
            on_gpu(&dev, b, &[b.len()], |x| {
                gh.observe_cuda(x)?;
                sg.observe_cuda(x)
            })
            .unwrap();
            assert_same_hist(&gh, &cpu, &format!("{label}: batch {i}"));
            assert_same_signed(&sg, &scpu, &format!("{label}: batch {i}"));
        }
    }
}

#[test]
fn per_channel_max_and_minmax_along_every_axis() {
    let Some(dev) = gpu() else { return };
    let mut rng = Rng::new(22);
    let shapes: &[&[usize]] = &[
        &[3, 5, 7],
        &[64, 768],
        &[768, 64],
        &[8, 1, 4099],
        &[2, 33, 40],
        &[128, 3, 1],
        &[2, 0, 3],
    ];
    for &shape in shapes {
        let len: usize = shape.iter().product();
        let mut observers = vec![(
            "tensor".to_string(),
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
        let batches: Vec<Vec<f32>> = (0..2)
            .map(|b| {
                let mut v = rng.f32s(len, 1.0 + b as f32);
                if b == 1 && len > 10 {
                    v[len / 3] = f32::NAN;
                    v[len - 2] = f32::INFINITY;
                }
                v
            })
            .collect();
        for (label, max0, mm0) in observers {
            let (mut cmax, mut cmm) = (max0.clone(), mm0.clone());
            let (mut gmax, mut gmm) = (max0, mm0);
            for b in &batches {
                cmax.observe_shaped(b, shape).unwrap();
                cmm.observe_shaped(b, shape).unwrap();
                on_gpu(&dev, b, shape, |x| {
                    gmax.observe_cuda(x)?;
                    gmm.observe_cuda(x)
                })
                .unwrap();
                assert_eq!(gmax, cmax, "{shape:?} {label}: max");
                assert_eq!(gmm, cmm, "{shape:?} {label}: minmax");
            }
        }
    }
}

#[test]
fn nonfinite_values_are_refused_or_skipped() {
    let Some(dev) = gpu() else { return };
    let mut rng = Rng::new(23);
    let mut x = rng.f32s(1 << 20, 1.0);
    x[500_000..700_000].fill(f32::NAN);
    x[123] = f32::NEG_INFINITY;
    x[900_000] = f32::INFINITY;
    let shape = [1024, 1024];
    let mut h = Histogram::new("act.fc1", HistogramConfig::default()).unwrap();
    let want = h.clone().observe(&x).unwrap_err().to_string();
    let e = on_gpu(&dev, &x, &shape, |b| h.observe_cuda(b)).unwrap_err();
    assert!(matches!(e, Error::NonFinite { .. }));
    assert_eq!(e.to_string(), want);
    assert!(h.is_empty());
    let mut c = MinMaxObserver::per_channel("act.fc1", 1, NonFinite::Error);
    let want = c
        .clone()
        .observe_shaped(&x, &shape)
        .unwrap_err()
        .to_string();
    let e = on_gpu(&dev, &x, &shape, |b| c.observe_cuda(b)).unwrap_err();
    assert_eq!(e.to_string(), want);
    let cfg = ObserverConfig {
        nonfinite: NonFinite::Skip,
        ..ObserverConfig::default()
    };
    let mut cpu = TensorObserver::new("act.fc1", cfg).unwrap();
    let mut g = cpu.clone();
    cpu.observe(&x, &shape).unwrap();
    on_gpu(&dev, &x, &shape, |b| g.observe_cuda(b)).unwrap();
    assert_same_observer(&g, &cpu, "skip");
    assert_eq!(g.nonfinite_skipped(), 200_002);
    let mut ema = MovingAverageMinMaxObserver::new("m", 0.01, NonFinite::Skip).unwrap();
    let mut ema_g = ema.clone();
    ema.observe(&x).unwrap();
    on_gpu(&dev, &x, &shape, |b| ema_g.observe_cuda(b)).unwrap();
    assert_eq!(ema_g, ema);
}

#[test]
fn arbitrary_batches_collect_identically_on_the_device() {
    // tests/calib_api_props.rs's draws on the device: observer configurations (usually valid),
    // one to three batches whose shapes usually match their lengths, values usually ordinary
    // and sometimes huge, subnormal, zero, NaN or infinite, under either non-finite policy.
    // Each batch goes to a host observer and, through a CudaBatch, to a copy of it: both accept
    // it or both refuse it with the same message, and the two observers stay equal bit for bit,
    // every method's range included.
    use calib_cases::{batch, observer_config};
    use proptest::test_runner::{Config, TestRunner};
    let Some(dev) = gpu() else { return };
    let mut runner = TestRunner::new(Config {
        cases: 128,
        failure_persistence: None,
        ..Config::default()
    });
    let cases = (observer_config(), proptest::collection::vec(batch(), 1..4));
    let r = runner.run(&cases, |(cfg, batches)| {
        let Ok(mut cpu) = TensorObserver::new("t", cfg) else {
            return Ok(());
        };
        let mut g = cpu.clone();
        for (i, (xs, shape)) in batches.iter().enumerate() {
            // A device batch is the first shape-many values of its buffer, which may be longer
            // (and is never empty: `on_gpu` uploads one 0 for no values): the host observes
            // those.
            let buf = if xs.is_empty() { vec![0.0] } else { xs.clone() };
            let need = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            let (host_xs, fits) = match need {
                Some(n) if n <= buf.len() => (&buf[..n], true),
                _ => (&buf[..], false),
            };
            let want = cpu.observe(host_xs, shape).map_err(|e| e.to_string());
            let got = on_gpu(&dev, &buf, shape, |b| g.observe_cuda(b)).map_err(|e| e.to_string());
            if fits {
                proptest::prop_assert_eq!(got, want, "batch {} of shape {:?}", i, shape);
            } else {
                // Too few values for the shape: refused on both sides (the device batch
                // names itself, not the observer's tensor).
                proptest::prop_assert!(got.is_err() && want.is_err(), "batch {}", i);
            }
        }
        assert_same_observer(&g, &cpu, "arbitrary batches");
        compare_ranges(&g, &cpu, "arbitrary batches");
        Ok(())
    });
    if let Err(e) = r {
        panic!("{e}");
    }
}

#[test]
fn cross_entropy_copies_the_batch_and_agrees() {
    let Some(dev) = gpu() else { return };
    let mut rng = Rng::new(24);
    let x = rng.f32s(64 * 50, 3.0);
    let mut cpu = CrossEntropyObserver::new("logits", CrossEntropyConfig::default()).unwrap();
    let mut g = cpu.clone();
    cpu.observe(&x, &[64, 50], 1).unwrap();
    on_gpu(&dev, &x, &[64, 50], |b| g.observe_cuda(b, 1)).unwrap();
    assert_eq!(g, cpu);
}

#[test]
fn a_calibration_run_on_device_activations_freezes_the_same_scales() {
    let Some(dev) = gpu() else { return };
    let mut rng = Rng::new(25);
    let (k, n, m) = (96, 48, 32);
    let w1 = rng.f32s(n * k, 0.3);
    let w2 = rng.f32s(n * n, 0.3);
    let layers = || {
        (
            QuantLinear::from_f32("fc1", &w1, n, k, None, LinearConfig::default()).unwrap(),
            QuantLinear::from_f32("fc2", &w2, n, n, None, LinearConfig::default()).unwrap(),
        )
    };
    let (fc1, fc2) = layers();
    let mut cpu = CalibrationRun::new(ObserverConfig::default());
    cpu.attach_layer(&fc1).unwrap();
    cpu.attach_layer(&fc2).unwrap();
    let mut g = cpu.clone();
    let s = dev.new_stream().unwrap();
    for b in 0..4 {
        let x = rng.f32s(m * k, 1.0 + b as f32 * 0.3);
        let h: Vec<f32> = x[..m * n].iter().map(|v| v.max(0.0)).collect();
        cpu.observe("fc1", &x, &[m, k]).unwrap();
        cpu.observe("fc2", &h, &[m, n]).unwrap();
        let xd = s.clone_htod(&x).unwrap();
        let hd = s.clone_htod(&h).unwrap();
        g.observe_cuda("fc1", &mut CudaBatch::new(&dev, &s, &xd, &[m, k]).unwrap())
            .unwrap();
        g.observe_cuda("fc2", &mut CudaBatch::new(&dev, &s, &hd, &[m, n]).unwrap())
            .unwrap();
    }
    for method in [
        Method::Symmetric(AmaxMethod::Percentile(99.99)),
        Method::Symmetric(AmaxMethod::Entropy),
        Method::Asymmetric(RangeMethod::MinMax),
    ] {
        let ((mut a1, mut a2), (mut b1, mut b2)) = (layers(), layers());
        let got = g.freeze(&mut [&mut a1, &mut a2], method).unwrap();
        let want = cpu.freeze(&mut [&mut b1, &mut b2], method).unwrap();
        assert_eq!(got, want, "{method}");
    }
}

#[test]
fn a_batch_written_by_an_earlier_kernel_on_the_stream() {
    // Dequantize on a caller's stream into a buffer, then observe that buffer on the same stream
    // without synchronizing in between: stream order alone must make the values visible.
    let Some(dev) = gpu() else { return };
    let s = dev.new_stream().unwrap();
    let mut rng = Rng::new(26);
    let (rows, cols) = (257, 1000);
    let q: Vec<i8> = rng.i8s(rows * cols, -127, 127);
    let p = QuantParams::symmetric(3.7).unwrap();
    let mut qd = s.clone_htod(&q).unwrap();
    let mut y: CudaSlice<f32> = s.alloc_zeros(rows * cols).unwrap();
    dev.dequantize(
        &s,
        CudaQuantized::S8(&mut qd),
        rows,
        cols,
        Axis::Tensor,
        &[p],
        &mut y,
    )
    .unwrap();
    let mut g = TensorObserver::new("y", ObserverConfig::default()).unwrap();
    g.observe_cuda(&mut CudaBatch::new(&dev, &s, &y, &[rows, cols]).unwrap())
        .unwrap();
    let yh: Vec<f32> = q.iter().map(|&v| p.dequantize(v as i32)).collect();
    let mut cpu = TensorObserver::new("y", ObserverConfig::default()).unwrap();
    cpu.observe(&yh, &[rows, cols]).unwrap();
    assert_same_observer(&g, &cpu, "dequantized batch");
}
