//! cuda/tune_sim_tests.rs — the kernel tuning (`cuda::tune`) run end to end in the host
//! simulation: every candidate of a shape verified against `Auto`'s bits (s8 and u8 activations)
//! by the real kernels, chosen by a scripted clock, and the resulting tuning followed by a
//! device layer's forward (the path that ran, the CPU layer's bits).

use super::exec::Exec;
use super::ops::{DevLinear, GemmKernel};
use super::sim::SimExec;
use super::sim_tests::Rng;
use super::tune::{self, GemmTuning, Outcome, TuneOptions, TuneReport, TuneWeights};
use crate::gemm::{Context, OutBuf, Path};
use crate::nn::{LinearConfig, QuantLinear};

fn layer(n: usize, k: usize, seed: u64) -> QuantLinear {
    let mut r = Rng::new(seed);
    let w = r.f32s(n * k, 0.5);
    QuantLinear::from_f32("fc", &w, n, k, None, LinearConfig::default()).unwrap()
}

fn weights(l: &DevLinear<SimExec>) -> TuneWeights<'_, SimExec> {
    l.tune_weights("simulated GPU")
}

/// The kernels a tuning tried at `m` rows, in order.
fn tried(report: &TuneReport, m: usize) -> Vec<GemmKernel> {
    report
        .candidates
        .iter()
        .filter(|c| c.0 == m)
        .map(|c| c.1)
        .collect()
}

#[test]
fn tuning_verifies_every_candidate_and_keeps_the_fastest_per_row_count() {
    // Odd K (row padding, a k tile crossing K), N not a multiple of any tile.
    let (n, k) = (40, 200);
    let rows = [3usize, 20, 70];
    for (arch, sms) in [(90u32, 132u32), (80, 108)] {
        let e = SimExec::with_arch(arch, sms);
        let l = DevLinear::new(&e, &layer(n, k, 7)).unwrap();
        let w = weights(&l);
        let lists: Vec<Vec<GemmKernel>> = rows
            .iter()
            .map(|&m| tune::candidates(m, k, arch, true))
            .collect();
        // At row count j, the candidate at index 2 + j is the fastest (1/4 of Auto's time);
        // the others take Auto's time or slightly more.
        let fast = |j: usize| 2 + j;
        let (mut j, mut i) = (0usize, 0usize);
        let mut clock = move |call: &mut dyn FnMut() -> crate::Result<()>, _: &TuneOptions| {
            call()?;
            let t = if i == fast(j) {
                0.25e-3
            } else {
                1e-3 + i as f64 * 1e-6
            };
            i += 1;
            if i == tune::candidates(rows[j], k, arch, true).len() {
                j += 1;
                i = 0;
            }
            Ok(t)
        };
        let all = TuneOptions {
            include_unproven: true,
            ..TuneOptions::default()
        };
        let report = tune::tune(&e, &w, &rows, &all, &mut clock).unwrap();
        // Every candidate gave Auto's bits in the simulation, for s8 and u8 activations.
        assert_eq!(
            report.rejected().count(),
            0,
            "{:?}",
            report.rejected().collect::<Vec<_>>()
        );
        for (j, &m) in rows.iter().enumerate() {
            let tried = tried(&report, m);
            assert_eq!(tried, lists[j], "sm_{arch} m={m}");
            assert!(report
                .candidates
                .iter()
                .filter(|c| c.0 == m)
                .all(|c| matches!(c.2, Outcome::Timed(t) if t > 0.0)));
            let entry = report.tuning.entries()[j];
            assert_eq!(entry.m, m);
            assert_eq!(entry.kernel, lists[j][fast(j)], "sm_{arch} m={m}");
            assert_eq!((entry.seconds, entry.auto_seconds), (0.25e-3, 1e-3));
        }
        assert!(
            lists
                .iter()
                .flatten()
                .any(|c| matches!(c, GemmKernel::Mma(Some(t)) if t.tile.is_wgmma()))
                == (arch == 90)
        );
        assert_eq!(report.tuning.shape(), (n, k));
        assert_eq!(report.tuning.arch(), arch);

        // By default only the kernels that have run on a GPU are tried (not the bulk-copy GEMV).
        let mut plain = |call: &mut dyn FnMut() -> crate::Result<()>, _: &TuneOptions| {
            call()?;
            Ok(1e-3)
        };
        let report = tune::tune(&e, &w, &rows, &TuneOptions::default(), &mut plain).unwrap();
        for &m in &rows {
            let tried = tried(&report, m);
            assert_eq!(
                tried,
                tune::candidates(m, k, arch, false),
                "sm_{arch} m={m}"
            );
            assert!(
                tried.iter().all(|c| c.ran_on_gpu()),
                "sm_{arch} m={m}: {tried:?}"
            );
        }
    }
}

#[test]
fn tuning_keeps_auto_unless_a_candidate_is_clearly_faster() {
    let e = SimExec::new();
    let l = DevLinear::new(&e, &layer(24, 72, 9)).unwrap();
    let w = weights(&l);
    // Auto first at 1.0 s, every other candidate 2 % faster.
    let auto_then_faster = || {
        let mut first = true;
        move |call: &mut dyn FnMut() -> crate::Result<()>, _: &TuneOptions| {
            call()?;
            let t = if first { 1.0 } else { 0.98 };
            first = false;
            Ok(t)
        }
    };
    // Under the 3 % guard: Auto stays.
    let report = tune::tune(
        &e,
        &w,
        &[5],
        &TuneOptions::default(),
        &mut auto_then_faster(),
    )
    .unwrap();
    let entry = report.tuning.entries()[0];
    assert_eq!(entry.kernel, GemmKernel::Auto);
    assert_eq!((entry.seconds, entry.auto_seconds), (1.0, 1.0));
    // With no guard the first of the faster ones wins.
    let opts = TuneOptions {
        min_gain: 0.0,
        include_unproven: true,
        ..TuneOptions::default()
    };
    let report = tune::tune(&e, &w, &[5], &opts, &mut auto_then_faster()).unwrap();
    assert_eq!(
        report.tuning.entries()[0].kernel,
        tune::candidates(5, 72, 90, true)[1]
    );
    // Bad options and rows are typed errors, before anything runs.
    let mut never = |_: &mut dyn FnMut() -> crate::Result<()>,
                     _: &TuneOptions|
     -> crate::Result<f64> { panic!("nothing may be timed") };
    for (rows, opts) in [
        (&[][..], TuneOptions::default()),
        (&[0, 4][..], TuneOptions::default()),
        (
            &[4][..],
            TuneOptions {
                reps: 0,
                ..TuneOptions::default()
            },
        ),
        (
            &[4][..],
            TuneOptions {
                min_gain: 1.0,
                ..TuneOptions::default()
            },
        ),
    ] {
        let err = tune::tune(&e, &w, rows, &opts, &mut never).unwrap_err();
        assert!(matches!(err, crate::Error::InvalidParam { .. }), "{err:?}");
    }
}

#[test]
fn a_tuned_layer_runs_the_tuned_kernel_per_row_bucket_with_the_cpu_bits() {
    let (n, k) = (24, 72);
    let host = layer(n, k, 11);
    let e = SimExec::new();
    let mut dev = DevLinear::new(&e, &host).unwrap();
    // Up to 4 rows dp4a, up to 16 Auto, then (above the last bucket) Auto again.
    let text = format!(
        "int8rt-gemm-tuning 1\ndevice simulated GPU\narch 90\nshape {n} {k}\n\
         m 4 dp4a 1e-6 2e-6\nm 16 auto 2e-6 2e-6\n"
    );
    let t = GemmTuning::from_text(&text).unwrap();
    t.check_applies("simulated GPU", e.arch(), n, k).unwrap();
    dev.tuning = Some(t);
    let ctx = Context::new().with_path(Path::Reference).with_threads(1);
    let mut r = Rng::new(3);
    for (m, want) in [
        (1, Path::CudaDp4a),
        (4, Path::CudaDp4a),
        (5, Path::CudaMma),
        (16, Path::CudaMma),
        (40, Path::CudaMma),
    ] {
        let x = r.f32s(m * k, 1.0);
        let mut cpu = vec![0f32; m * n];
        layer_forward(&host, &ctx, &x, m, &mut cpu);
        let mut gpu = vec![f32::NAN; m * n];
        let path = dev
            .forward_host(&e, &x, m, &mut OutBuf::F32(&mut gpu))
            .unwrap();
        assert_eq!(path, want, "m={m}");
        assert!(
            cpu.iter()
                .zip(&gpu)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "m={m}: the tuned kernel's bits differ from the CPU layer's"
        );
    }
    // A forced kernel wins over the tuning.
    dev.kernel = GemmKernel::MmaGemv;
    let x = r.f32s(2 * k, 1.0);
    let mut y = vec![0f32; 2 * n];
    assert_eq!(
        dev.forward_host(&e, &x, 2, &mut OutBuf::F32(&mut y))
            .unwrap(),
        Path::CudaMma
    );
}

fn layer_forward(l: &QuantLinear, ctx: &Context, x: &[f32], m: usize, y: &mut [f32]) {
    l.forward(ctx, x, m, &mut OutBuf::F32(y)).unwrap();
}
