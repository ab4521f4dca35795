//! tests/qat_fake_quant.rs — fake quantization (the QAT forward and backward): the reference's
//! definitions on hand-computed cases, the CPU loops of `qat::FakeQuantizer` against the
//! reference bit for bit, the straight-through estimator against finite differences away from
//! rounding boundaries and against its definition at the clip edges, and the LSQ / LSQ+
//! gradients against the formulas of their papers.

mod common;

use common::Rng;
use int8rt::qat::{FakeQuantConfig, FakeQuantizer};
use int8rt::quant::{Granularity, QuantParams};
use int8rt::reference::{self, fake_quant_code, fake_quantize, fake_quantize_grad, FakeQuantGrad};
use int8rt::Error;

/// Every (bits, symmetric) combination.
fn schemes() -> Vec<(u32, bool)> {
    (2..=8).flat_map(|b| [(b, true), (b, false)]).collect()
}

fn range(bits: u32, symmetric: bool) -> (i32, i32) {
    reference::fake_quant_range(bits, symmetric).expect("2..=8 bits")
}

#[test]
fn ranges_per_bit_width() {
    assert_eq!(reference::fake_quant_range(8, true), Some((-127, 127)));
    assert_eq!(reference::fake_quant_range(8, false), Some((0, 255)));
    assert_eq!(reference::fake_quant_range(4, true), Some((-7, 7)));
    assert_eq!(reference::fake_quant_range(4, false), Some((0, 15)));
    assert_eq!(reference::fake_quant_range(2, true), Some((-1, 1)));
    assert_eq!(reference::fake_quant_range(2, false), Some((0, 3)));
    assert_eq!(reference::fake_quant_range(1, true), None);
    assert_eq!(reference::fake_quant_range(9, false), None);
    for bits in [0, 1, 9, 16] {
        let cfg = FakeQuantConfig::activations(bits, true);
        assert!(
            matches!(FakeQuantizer::new(cfg, 1), Err(Error::InvalidParam { .. })),
            "{bits} bits"
        );
    }
}

#[test]
fn hand_computed_forward() {
    // 4-bit symmetric, scale 0.5: codes in [-7, 7].
    let f = |x: f32| fake_quantize(x, 0.5, 0, -7, 7);
    assert_eq!(f(1.3), 1.5); // 2.6 → 3
    assert_eq!(f(1.25), 1.0); // 2.5 → 2 (ties to even)
    assert_eq!(f(1.75), 2.0); // 3.5 → 4
    assert_eq!(f(-1.25), -1.0); // -2.5 → -2
    assert_eq!(f(10.0), 3.5); // clamped to 7
    assert_eq!(f(-10.0), -3.5); // clamped to -7
                                // -0.2 / 0.5 = -0.4 rounds to -0; the code is the integer 0 and the output +0.
    assert_eq!(f(-0.2).to_bits(), 0f32.to_bits());
    // 4-bit asymmetric [0, 15], scale 0.1, zero point 3: x = -0.3 is code 0, x = 1.2 code 15.
    let g = |x: f32| fake_quant_code(x, 0.1, 3, 0, 15);
    assert_eq!(g(-0.3), 0);
    assert_eq!(g(-0.5), 0);
    assert_eq!(g(0.0), 3);
    assert_eq!(g(1.2), 15);
    assert_eq!(g(5.0), 15);
    assert_eq!(fake_quantize(5.0, 0.1, 3, 0, 15), 12.0 * 0.1);
    // 2-bit symmetric: three levels.
    assert_eq!(fake_quantize(0.6, 1.0, 0, -1, 1), 1.0);
    assert_eq!(fake_quantize(0.5, 1.0, 0, -1, 1), 0.0);
    assert_eq!(fake_quantize(-7.0, 1.0, 0, -1, 1), -1.0);
}

#[test]
fn eight_bit_definitions_match_the_crate_scheme() {
    let mut rng = Rng::new(11);
    for _ in 0..2000 {
        let amax = rng.uniform(0.0, 10.0);
        assert_eq!(
            reference::symmetric_scale_for(amax, 127).to_bits(),
            reference::symmetric_scale(amax).to_bits()
        );
        let lo = rng.uniform(-5.0, 3.0);
        let hi = lo + rng.uniform(0.0, 8.0);
        assert_eq!(
            reference::asymmetric_params_for(lo, hi, 255),
            reference::asymmetric_params(lo, hi)
        );
        let p = QuantParams::asymmetric(lo, hi).unwrap();
        let x = rng.uniform(-8.0, 8.0);
        let fq = fake_quantize(x, p.scale(), p.zero_point(), p.qmin(), p.qmax());
        assert_eq!(
            fq.to_bits(),
            p.fake_quantize(x).to_bits(),
            "x {x} params {p:?}"
        );
    }
    assert_eq!(reference::symmetric_scale_for(0.0, 7), 1.0);
    assert_eq!(reference::asymmetric_params_for(0.0, 0.0, 15), (1.0, 0));
}

/// Values that exercise every branch: exact ties `(k + 0.5)·s`, the clip edges and a step
/// beyond them, ±0, tiny negatives (which round to −0), subnormals, huge values, ±inf excluded
/// (the safe API refuses them), and ordinary random values.
fn probe_values(rng: &mut Rng, s: f32, zp: i32, qmin: i32, qmax: i32, n: usize) -> Vec<f32> {
    let mut v = vec![
        0.0,
        -0.0,
        -1e-30,
        1e-30,
        f32::MIN_POSITIVE / 4.0,
        -f32::MIN_POSITIVE / 4.0,
        3e38,
        -3e38,
    ];
    for k in (qmin - zp - 2)..=(qmax - zp + 2) {
        for off in [-0.5f32, 0.0, 0.5] {
            let x = (k as f32 + off) * s;
            v.extend([
                x,
                f32::from_bits(x.to_bits() + 1),
                f32::from_bits(x.to_bits().saturating_sub(1)),
            ]);
        }
    }
    let span = (qmax - qmin + 4) as f32 * s;
    while v.len() < n {
        v.push(rng.uniform(-span, span));
    }
    v.retain(|x| x.is_finite());
    v
}

#[test]
fn cpu_forward_matches_reference_bit_for_bit() {
    let mut rng = Rng::new(5);
    for (bits, symmetric) in schemes() {
        for granularity in [Granularity::PerTensor, Granularity::PerChannel] {
            let channels = 5;
            let cfg = FakeQuantConfig {
                bits,
                symmetric,
                granularity,
                learn_scale: true,
                learn_zero_point: !symmetric,
            };
            let mut fq = FakeQuantizer::new(cfg, channels).unwrap();
            let (qmin, qmax) = (fq.qmin(), fq.qmax());
            let n = fq.channels();
            let scales: Vec<f32> = (0..n).map(|_| rng.uniform(0.01, 2.0)).collect();
            let zps: Vec<i32> = (0..n)
                .map(|_| if symmetric { 0 } else { rng.int(qmin, qmax) })
                .collect();
            fq.set_params(&scales, &zps).unwrap();
            // One probe list per channel, all the same length, laid out [channels, inner].
            let inner = 700;
            let mut x = Vec::new();
            for c in 0..channels {
                let p = if n == 1 { 0 } else { c };
                let mut v = probe_values(&mut rng, scales[p], zps[p], qmin, qmax, inner);
                v.truncate(inner);
                while v.len() < inner {
                    v.push(rng.uniform(-1.0, 1.0));
                }
                x.extend(v);
            }
            let mut y = vec![f32::NAN; x.len()];
            fq.forward("x", &x, &mut y).unwrap();
            let codes = fq.codes("x", &x).unwrap();
            for (i, &xv) in x.iter().enumerate() {
                let c = if n == 1 { 0 } else { i / inner };
                let (s, zp) = (scales[c], zps[c]);
                let want = fake_quantize(xv, s, zp, qmin, qmax);
                assert_eq!(
                    y[i].to_bits(),
                    want.to_bits(),
                    "{bits}-bit sym={symmetric} {granularity:?}: x = {xv:e} (channel {c}, s {s}, zp {zp}): got {} want {}",
                    y[i],
                    want
                );
                assert_eq!(codes[i], fake_quant_code(xv, s, zp, qmin, qmax));
            }
        }
    }
}

#[test]
fn forward_refuses_bad_input() {
    let fq = FakeQuantizer::new(FakeQuantConfig::weights(4), 3).unwrap();
    let mut y = vec![0.0; 6];
    let x = [0.0, 1.0, f32::NAN, 2.0, f32::INFINITY, 0.0];
    match fq.forward("w", &x, &mut y) {
        Err(Error::NonFinite {
            tensor,
            count,
            first_index,
        }) => {
            assert_eq!((tensor.as_str(), count, first_index), ("w", 2, 2));
        }
        other => panic!("expected NonFinite, got {other:?}"),
    }
    // 7 elements do not split into 3 channels.
    assert!(matches!(
        fq.forward("w", &[0.0; 7], &mut [0.0; 7]),
        Err(Error::Dimension { .. })
    ));
    assert!(matches!(
        fq.forward("w", &[0.0; 6], &mut [0.0; 5]),
        Err(Error::Shape { .. })
    ));
    // Symmetric quantizers have no zero point to learn or set.
    let mut cfg = FakeQuantConfig::weights(4);
    cfg.learn_zero_point = true;
    assert!(FakeQuantizer::new(cfg, 3).is_err());
    let mut fq = FakeQuantizer::new(FakeQuantConfig::weights(4), 3).unwrap();
    assert!(fq.set_params(&[1.0, 1.0, 1.0], &[0, 1, 0]).is_err());
    assert!(fq.set_params(&[1.0, 0.0, 1.0], &[0, 0, 0]).is_err());
}

/// The STE's model of the forward, in f64: the rounding offset `δ = rhe(u₀) − u₀` is frozen at
/// the evaluation point (what autograd computes for `u + (round(u) − u).detach()`, the usual LSQ
/// implementation), the zero point is the real `z`, and everything else is differentiable:
/// `y(x, s, z) = s · (clamp(x / s + δ + z, qmin, qmax) − z)`.
fn surrogate(x: f64, s: f64, z: f64, delta: f64, qmin: i32, qmax: i32) -> f64 {
    s * ((x / s + delta + z).clamp(qmin as f64, qmax as f64) - z)
}

/// Central differences of the surrogate in x, s and z.
fn surrogate_grad(x: f32, s: f32, zp: i32, qmin: i32, qmax: i32) -> (f64, f64, f64) {
    let u0 = (x / s) as f64;
    let delta = (x / s).round_ties_even() as f64 - u0;
    let (x, s, z) = (x as f64, s as f64, zp as f64);
    let f = |x: f64, s: f64, z: f64| surrogate(x, s, z, delta, qmin, qmax);
    let hx = 1e-4 * s;
    let hs = 1e-6 * s;
    let hz = 1e-4;
    // The frozen δ belongs to u₀; moving x or s changes u but not δ, as in autograd.
    let dx = (f(x + hx, s, z) - f(x - hx, s, z)) / (2.0 * hx);
    let ds = (f(x, s + hs, z) - f(x, s - hs, z)) / (2.0 * hs);
    let dz = (f(x, s, z + hz) - f(x, s, z - hz)) / (2.0 * hz);
    (dx, ds, dz)
}

#[test]
fn ste_gradients_match_finite_differences_away_from_boundaries() {
    let mut rng = Rng::new(21);
    let mut checked = 0;
    for (bits, symmetric) in schemes() {
        let (qmin, qmax) = range(bits, symmetric);
        for _ in 0..400 {
            let s = rng.uniform(0.05, 3.0);
            let zp = if symmetric { 0 } else { rng.int(qmin, qmax) };
            let x = rng.uniform((qmin - zp - 3) as f32 * s, (qmax - zp + 3) as f32 * s);
            let u = x / s;
            // Away from rounding boundaries (|u − (k + ½)| ≥ 0.05) and from the clip edges
            // (|u + zp − qmin|, |u + zp − qmax| ≥ 0.55), so no kink lies within a step.
            let frac = u - u.floor();
            let v = u + zp as f32;
            if (frac - 0.5).abs() < 0.05
                || (v - qmin as f32).abs() < 0.55
                || (v - qmax as f32).abs() < 0.55
            {
                continue;
            }
            let g = fake_quantize_grad(x, s, zp, qmin, qmax);
            let (dx, ds, dz) = surrogate_grad(x, s, zp, qmin, qmax);
            let ctx = format!(
                "{bits}-bit sym={symmetric} x {x} s {s} zp {zp}: {g:?} vs fd ({dx}, {ds}, {dz})"
            );
            assert!((g.dx as f64 - dx).abs() < 1e-6, "dx: {ctx}");
            assert!(
                (g.dscale as f64 - ds).abs() < 1e-4 * (1.0 + ds.abs()),
                "dscale: {ctx}"
            );
            assert!(
                (g.dzero_point as f64 - dz).abs() < 1e-4 * (1.0 + s as f64),
                "dzp: {ctx}"
            );
            // Away from rounding boundaries the true forward is locally `(q − zp)·s` with q
            // fixed: its derivative in s is `q − zp`, and the STE adds `−u` through the rounding
            // inside the range (LSQ's `round(v) − v`).
            // The step moves u by at most 0.04, so no rounding boundary is crossed; the f32
            // outputs carry half an ulp of error each, which the tolerance allows for.
            let h = 0.04 * s / u.abs().max(1.0);
            let (sp, sm) = (s + h, s - h);
            let (y1, y0) = (
                fake_quantize(x, sp, zp, qmin, qmax),
                fake_quantize(x, sm, zp, qmin, qmax),
            );
            let step = sp as f64 - sm as f64;
            let fd_true = (y1 as f64 - y0 as f64) / step;
            let tol = f32::EPSILON as f64 * (y1.abs() + y0.abs()) as f64 / step + 1e-6;
            let want = fd_true - if g.dx == 1.0 { u as f64 } else { 0.0 };
            assert!(
                (g.dscale as f64 - want).abs() <= tol,
                "true-forward fd {fd_true} (tol {tol}): {ctx}"
            );
            checked += 1;
        }
    }
    assert!(
        checked > 2000,
        "only {checked} points were away from the boundaries"
    );
}

#[test]
fn ste_at_the_clip_edges_follows_the_definition() {
    // The definition: the gradient passes exactly where the clamp did not act, i.e. where the
    // code equals the code of the same quantizer with an unbounded range.
    for (bits, symmetric) in schemes() {
        let (qmin, qmax) = range(bits, symmetric);
        for &s in &[0.1f32, 0.37, 1.0, 2.5] {
            for zp in if symmetric {
                vec![0]
            } else {
                vec![qmin, (qmin + qmax) / 2, qmax]
            } {
                for edge in [qmin, qmax] {
                    for off in [-1.5f32, -0.5, 0.0, 0.5, 1.5] {
                        let x0 = ((edge - zp) as f32 + off) * s;
                        let mut x = x0.next_down().next_down().next_down().next_down();
                        for _ in 0..9 {
                            let g = fake_quantize_grad(x, s, zp, qmin, qmax);
                            let clamped = fake_quant_code(x, s, zp, qmin, qmax);
                            let free = fake_quant_code(x, s, zp, -(1 << 20), 1 << 20);
                            let ctx =
                                format!("{bits}-bit sym={symmetric} s {s} zp {zp} x {x:e}: {g:?}");
                            if clamped == free {
                                let u = x / s;
                                assert_eq!(g.dx, 1.0, "{ctx}");
                                assert_eq!(g.dscale, u.round_ties_even() - u, "{ctx}");
                                // The subtraction is exact (see the reference's doc).
                                assert_eq!(
                                    g.dscale as f64,
                                    u.round_ties_even() as f64 - u as f64,
                                    "{ctx}"
                                );
                                assert_eq!(g.dzero_point, 0.0, "{ctx}");
                            } else {
                                assert_eq!(g.dx, 0.0, "{ctx}");
                                let bound = if free < qmin { qmin } else { qmax };
                                assert_eq!(clamped, bound, "{ctx}");
                                assert_eq!(g.dscale, (bound - zp) as f32, "{ctx}");
                                assert_eq!(g.dzero_point, -s, "{ctx}");
                            }
                            x = x.next_up();
                        }
                    }
                }
            }
        }
    }
}

/// LSQ (Esser et al. 2019, eq. 3) for symmetric codes, `v = x / s`, `Q_N = Q_P = qmax`:
/// `∂ŷ/∂s = −v + ⌊v⌉` for `−Q_N < v < Q_P`, `−Q_N` for `v ≤ −Q_N`, `Q_P` for `v ≥ Q_P`.
fn lsq_formula(x: f32, s: f32, qmax: i32) -> f64 {
    let v = (x / s) as f64;
    let q = qmax as f64;
    if v <= -q {
        -q
    } else if v >= q {
        q
    } else {
        -v + v.round_ties_even()
    }
}

#[test]
fn lsq_scale_gradient_matches_its_formula() {
    let mut rng = Rng::new(33);
    for bits in 2..=8 {
        let (qmin, qmax) = range(bits, true);
        for _ in 0..3000 {
            let s = rng.uniform(0.01, 2.0);
            let x = rng.uniform(-(qmax as f32 + 3.0) * s, (qmax as f32 + 3.0) * s);
            let v = x / s;
            // LSQ clips on v, the reference on the rounded code; they differ only for
            // |v| ∈ [qmax, qmax + ½), where the forward gives ±qmax without clamping and the
            // reference keeps the gradient flowing.
            if v.abs() >= qmax as f32 && v.abs() < qmax as f32 + 0.5 {
                let g = fake_quantize_grad(x, s, 0, qmin, qmax);
                assert_eq!(g.dx, 1.0);
                assert_eq!(g.dscale, v.round_ties_even() - v);
                continue;
            }
            let g = fake_quantize_grad(x, s, 0, qmin, qmax);
            let want = lsq_formula(x, s, qmax);
            assert_eq!(g.dscale as f64, want, "{bits}-bit s {s} x {x} v {v}");
        }
    }
}

#[test]
fn quantizer_backward_accumulates_lsq_gradients_per_channel() {
    let mut rng = Rng::new(44);
    for (bits, symmetric) in [(4, true), (4, false), (3, true), (8, false), (2, true)] {
        let channels = 3;
        let inner = 257;
        let cfg = FakeQuantConfig {
            bits,
            symmetric,
            granularity: Granularity::PerChannel,
            learn_scale: true,
            learn_zero_point: !symmetric,
        };
        let mut fq = FakeQuantizer::new(cfg, channels).unwrap();
        let (qmin, qmax) = (fq.qmin(), fq.qmax());
        let scales: Vec<f32> = (0..channels).map(|_| rng.uniform(0.05, 0.5)).collect();
        let zps: Vec<i32> = (0..channels)
            .map(|_| if symmetric { 0 } else { rng.int(qmin, qmax) })
            .collect();
        fq.set_params(&scales, &zps).unwrap();
        let x: Vec<f32> = (0..channels * inner)
            .map(|_| rng.uniform(-3.0, 3.0))
            .collect();
        let dy: Vec<f32> = (0..channels * inner)
            .map(|_| rng.uniform(-1.0, 1.0))
            .collect();
        let mut dx = vec![f32::NAN; x.len()];
        fq.backward(&x, &dy, &mut dx).unwrap();
        for c in 0..channels {
            let (mut ds, mut dz) = (0f64, 0f64);
            for i in c * inner..(c + 1) * inner {
                let FakeQuantGrad {
                    dx: gx,
                    dscale,
                    dzero_point,
                } = fake_quantize_grad(x[i], scales[c], zps[c], qmin, qmax);
                assert_eq!(dx[i], dy[i] * gx, "dx at {i}");
                ds += dy[i] as f64 * dscale as f64;
                dz += dy[i] as f64 * dzero_point as f64;
            }
            // LSQ's gradient scale g = 1 / sqrt(N · Q_P), N the values sharing the scale.
            let g = 1.0 / ((inner as f64) * (qmax as f64)).sqrt();
            let got_s = fq.scale.grad[c] as f64;
            assert!(
                (got_s - g * ds).abs() <= 1e-6 * (1.0 + (g * ds).abs()),
                "channel {c}: {got_s} vs {}",
                g * ds
            );
            if symmetric {
                assert_eq!(fq.zero_point.grad[c], 0.0);
            } else {
                assert!((fq.zero_point.grad[c] as f64 - dz).abs() <= 1e-5 * (1.0 + dz.abs()));
            }
        }
        // The gradient accumulates: a second backward doubles it.
        let before = fq.scale.grad.clone();
        fq.backward(&x, &dy, &mut dx).unwrap();
        for (now, b) in fq.scale.grad.iter().zip(&before) {
            assert!((now - 2.0 * b).abs() <= 1e-6 * b.abs().max(1e-6));
        }
    }
}

#[test]
fn learnt_zero_point_rounds_and_projection_keeps_parameters_valid() {
    let mut fq = FakeQuantizer::new(FakeQuantConfig::activations(4, false), 1).unwrap();
    fq.init_from_ranges(&[-1.0], &[2.0]).unwrap();
    let (s, zp) = fq.effective(0).unwrap();
    assert_eq!((s, zp), reference::asymmetric_params_for(-1.0, 2.0, 15));
    // A real-valued zero point is used rounded (ties to even) and clamped.
    fq.zero_point.value[0] = 4.5;
    assert_eq!(fq.effective(0).unwrap().1, 4);
    fq.zero_point.value[0] = 5.5;
    assert_eq!(fq.effective(0).unwrap().1, 6);
    fq.zero_point.value[0] = 40.0;
    fq.scale.value[0] = -3.0;
    fq.project();
    assert_eq!(fq.zero_point.value[0], 15.0);
    assert_eq!(fq.scale.value[0], int8rt::qat::MIN_LEARNED_SCALE);
    assert!(fq.params(0).is_ok());
    // Past the last channel: an error, not a panic.
    assert!(fq.effective(1).is_err() && fq.params(1).is_err());
}

#[test]
fn parameters_whose_extreme_codes_overflow_are_refused_or_projected() {
    // 127 · (f32::MAX / 127) rounds past f32::MAX: a range reaching it has no scale whose every
    // code dequantizes finitely, so it is refused (a finite input keeps a finite output;
    // proptest found [0, f32::MAX] giving inf, tests/qat_props.proptest-regressions).
    let s_max = f32::MAX / 127.0;
    assert!((127.0 * s_max).is_infinite());
    let mut fq = FakeQuantizer::new(FakeQuantConfig::activations(8, true), 1).unwrap();
    let e = fq.init_from_ranges(&[0.0], &[f32::MAX]).unwrap_err();
    assert!(matches!(e, Error::InvalidParam { .. }), "{e}");
    assert!(fq.set_params(&[s_max], &[0]).is_err());
    // (the quantizer kept what it had: the forward still works)
    let mut y = [0.0f32; 3];
    fq.forward("a", &[1.0, -2.0, 0.5], &mut y).unwrap();
    // One step of scale below, the largest whose every code (±127) is finite, is accepted,
    // and f32::MAX and -f32::MAX come back finite.
    assert_eq!((fq.qmin(), fq.qmax()), (-127, 127));
    let s = s_max.next_down();
    assert!((127.0 * s).is_finite());
    fq.set_params(&[s], &[0]).unwrap();
    fq.forward("a", &[f32::MAX, -f32::MAX, 1e38], &mut y)
        .unwrap();
    assert!(y.iter().all(|v| v.is_finite()), "{y:?}");
    assert_eq!(y[0], 127.0 * s);
    // A refused channel leaves the others as they were.
    let mut fq = FakeQuantizer::new(FakeQuantConfig::weights(8), 2).unwrap();
    fq.init_from_ranges(&[-1.0, -2.0], &[1.0, 2.0]).unwrap();
    let before = (fq.effective(0).unwrap(), fq.effective(1).unwrap());
    assert!(fq.init_from_ranges(&[-3.0, 0.0], &[3.0, f32::MAX]).is_err());
    assert_eq!((fq.effective(0).unwrap(), fq.effective(1).unwrap()), before);
    // Wide asymmetric ranges: whatever is accepted keeps every code finite, and a range whose
    // scale is refused leaves an error naming the largest scale there.
    for (lo, hi) in [
        (-f32::MAX, 0.0),
        (0.0, f32::MAX),
        (-1e38, 1e38),
        (-3e38, 1e37),
    ] {
        let mut fq = FakeQuantizer::new(FakeQuantConfig::activations(8, false), 1).unwrap();
        match fq.init_from_ranges(&[lo], &[hi]) {
            Ok(()) => {
                let mut y = [0.0f32; 2];
                fq.forward("a", &[f32::MAX, -f32::MAX], &mut y).unwrap();
                assert!(y.iter().all(|v| v.is_finite()), "[{lo}, {hi}]: {y:?}");
            }
            Err(e) => assert!(e.to_string().contains("at most"), "[{lo}, {hi}]: {e}"),
        }
    }
    // A learnt scale that grew past the limit is projected back under it (the zero point's
    // codes on either side counted), as a negative one is projected up.
    let mut fq = FakeQuantizer::new(FakeQuantConfig::activations(8, false), 1).unwrap();
    fq.init_from_ranges(&[-1.0], &[3.0]).unwrap();
    fq.zero_point.value[0] = 200.0;
    fq.scale.value[0] = f32::MAX;
    fq.project();
    let (s, zp) = fq.effective(0).unwrap();
    assert_eq!(zp, 200);
    assert!(
        (-200.0 * s).is_finite() && (-200.0 * s.next_up()).is_infinite(),
        "{s}"
    );
    let mut y = [0.0f32; 2];
    fq.forward("a", &[f32::MAX, -f32::MAX], &mut y).unwrap();
    assert!(y.iter().all(|v| v.is_finite()), "{y:?}");
    assert!(fq.params(0).is_ok());
}
