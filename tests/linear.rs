//! tests/linear.rs — `QuantLinear` end to end: every activation mode, weight granularity, bias and
//! output type on every CPU path, bit for bit against the reference path; the reference path
//! against an explicit composition of the scalar definitions; accuracy against f32; and the typed
//! errors for every kind of bad input.

mod common;
use common::*;

use half::{bf16, f16};
use int8rt::gemm::{ActScales, Activations, Bias, GemmArgs, OutBuf, OutQuant, Path};
use int8rt::nn::{ActivationQuant, LinearConfig, QuantLinear};
use int8rt::quant::{Convention, Granularity, QuantParams, Scheme, WeightQuantConfig};
use int8rt::{reference, Context, Error};

fn modes() -> Vec<ActivationQuant> {
    let mut v = Vec::new();
    for scheme in [Scheme::Symmetric, Scheme::Asymmetric] {
        for granularity in [Granularity::PerTensor, Granularity::PerRow] {
            v.push(ActivationQuant::Dynamic {
                scheme,
                granularity,
            });
        }
    }
    v.push(ActivationQuant::Static(
        QuantParams::symmetric(2.5).unwrap(),
    ));
    v.push(ActivationQuant::Static(
        QuantParams::asymmetric(-1.0, 3.0).unwrap(),
    ));
    v.push(ActivationQuant::Static(
        QuantParams::from_range(Convention::CompressedTensors, -2.0, 2.0).unwrap(),
    ));
    v
}

fn layer(
    rng: &mut Rng,
    out_f: usize,
    in_f: usize,
    bias: bool,
    per_channel: bool,
    act: ActivationQuant,
) -> QuantLinear {
    let w = rng.f32s(out_f * in_f, 0.05);
    let b = rng.f32s(out_f, 0.5);
    let cfg = LinearConfig {
        weights: WeightQuantConfig {
            granularity: if per_channel {
                Granularity::PerChannel
            } else {
                Granularity::PerTensor
            },
            convention: Convention::Int8rt,
        },
        activations: act,
    };
    QuantLinear::from_f32("fc", &w, out_f, in_f, bias.then_some(&b[..]), cfg).unwrap()
}

/// Output bits of `layer.forward` for one output kind.
fn forward_bits(l: &QuantLinear, ctx: &Context, x: &[f32], m: usize, kind: usize) -> Vec<u32> {
    let len = m * l.out_features();
    match kind {
        0 => {
            let mut y = vec![f32::from_bits(0x7fc0_beef); len];
            l.forward(ctx, x, m, &mut OutBuf::F32(&mut y)).unwrap();
            y.iter().map(|v| v.to_bits()).collect()
        }
        1 => {
            let mut y = vec![f16::from_bits(0x7e55); len];
            l.forward(ctx, x, m, &mut OutBuf::F16(&mut y)).unwrap();
            y.iter().map(|v| v.to_bits() as u32).collect()
        }
        2 => {
            let mut y = vec![bf16::from_bits(0x7fd5); len];
            l.forward(ctx, x, m, &mut OutBuf::Bf16(&mut y)).unwrap();
            y.iter().map(|v| v.to_bits() as u32).collect()
        }
        _ => {
            let mut y = vec![0x55i8; len];
            let oq = OutQuant {
                scale: 0.05,
                zero_point: 3,
                qmin: -128,
                qmax: 127,
            };
            l.forward(ctx, x, m, &mut OutBuf::I8(&mut y, oq)).unwrap();
            y.iter().map(|&v| v as u8 as u32).collect()
        }
    }
}

#[test]
fn every_mode_and_output_on_every_path_matches_the_reference_path() {
    let mut rng = Rng::new(8);
    let reference = Context::new().with_path(Path::Reference);
    let mut t = 0;
    for act in modes() {
        for &(m, out_f, in_f) in &[(1, 7, 5), (5, 33, 70), (37, 65, 129), (64, 40, 300)] {
            for bias in [false, true] {
                let l = layer(&mut rng, out_f, in_f, bias, t % 3 != 0, act);
                let x = rng.f32s(m * in_f, 1.0);
                for kind in 0..4 {
                    let want = forward_bits(&l, &reference, &x, m, kind);
                    for p in cpu_paths() {
                        for threads in [1, 2] {
                            let ctx = Context::new().with_threads(threads).with_path(p);
                            let got = forward_bits(&l, &ctx, &x, m, kind);
                            assert_eq!(ctx.last_path(), Some(p));
                            assert!(got == want, "{act:?} {m}x{out_f}x{in_f} bias={bias} out#{kind} {p:?} threads={threads}");
                        }
                    }
                }
                t += 1;
            }
        }
    }
}

/// Finite inputs at the edge of f32 (rows whose `max |x|` is `f32::MAX`) quantize dynamically
/// on every path — they are data, not non-finite values — and every CPU path gives the reference
/// path's bits (the output may overflow to ±inf; that is the f32 product `acc · s_x · s_w`).
#[test]
fn dynamic_quantization_takes_rows_at_the_edge_of_f32() {
    let mut rng = Rng::new(81);
    let (m, out_f, in_f) = (3, 9, 40);
    let reference = Context::new().with_path(Path::Reference);
    for scheme in [Scheme::Symmetric, Scheme::Asymmetric] {
        for granularity in [Granularity::PerTensor, Granularity::PerRow] {
            let act = ActivationQuant::Dynamic {
                scheme,
                granularity,
            };
            let l = layer(&mut rng, out_f, in_f, true, true, act);
            // (asymmetric ranges must span at most f32::MAX: wider ones are refused, as a
            // typed error, by QuantParams::asymmetric)
            let edge = match scheme {
                Scheme::Symmetric => f32::MAX,
                Scheme::Asymmetric => f32::MAX / 2.0,
            };
            let mut x = rng.f32s(m * in_f, 1.0);
            x[5] = edge;
            x[in_f + 7] = -edge;
            x[2 * in_f + 1] = edge;
            x[2 * in_f + 2] = -edge;
            for kind in 0..4 {
                let want = forward_bits(&l, &reference, &x, m, kind);
                for p in cpu_paths() {
                    let got = forward_bits(&l, &Context::new().with_path(p), &x, m, kind);
                    assert!(got == want, "{act:?} out#{kind} {p:?}");
                }
            }
        }
    }
}

/// Layers big enough that both the activation quantization and the tile loop fan out (m·k ≥ 2^16,
/// m·n·k ≥ 2^21), on the spinning pool (`Context::with_spin`) and on rayon's, against the
/// reference path; then four threads sharing one spinning context at once, so calls that find the
/// pool busy take rayon's, and every result keeps the reference's bits.
#[test]
fn the_spinning_pool_gives_the_reference_bits_alone_and_under_concurrent_callers() {
    use std::time::Duration;
    let mut rng = Rng::new(2611);
    let reference = Context::new().with_path(Path::Reference);
    let (m, out_f, in_f) = (96, 160, 1024);
    let mut cases = Vec::new();
    for (i, act) in modes().into_iter().enumerate() {
        let l = layer(&mut rng, out_f, in_f, i % 2 == 0, i % 3 != 0, act);
        let x = rng.f32s(m * in_f, 1.0);
        let want = forward_bits(&l, &reference, &x, m, i % 4);
        for window in [Duration::ZERO, Duration::from_millis(2)] {
            for p in cpu_paths() {
                let ctx = Context::new()
                    .with_threads(3)
                    .with_spin(window)
                    .with_path(p);
                assert_eq!(ctx.spin(), Some(window));
                for _ in 0..3 {
                    let got = forward_bits(&l, &ctx, &x, m, i % 4);
                    assert!(got == want, "{act:?} {p:?} spin {window:?}");
                }
            }
        }
        cases.push((l, x, want, i % 4));
    }
    let shared = Context::new()
        .with_threads(2)
        .with_spin(Duration::from_millis(1));
    std::thread::scope(|s| {
        for t in 0..4 {
            let (cases, shared) = (&cases, &shared);
            s.spawn(move || {
                let ctx = shared.clone();
                for round in 0..12 {
                    let (l, x, want, kind) = &cases[(t + round) % cases.len()];
                    let got = forward_bits(l, &ctx, x, m, *kind);
                    assert!(got == *want, "thread {t} round {round}");
                }
            });
        }
    });
}

/// The reference path of the layer, spelled out with the scalar definitions: quantize each row
/// with its own scale (`amax / 127`), run `reference::gemm` with per-row scales and the f32 bias.
#[test]
fn reference_path_is_the_composition_of_the_definitions() {
    let mut rng = Rng::new(9);
    let (m, out_f, in_f) = (6, 11, 40);
    let act = ActivationQuant::Dynamic {
        scheme: Scheme::Symmetric,
        granularity: Granularity::PerRow,
    };
    let l = layer(&mut rng, out_f, in_f, true, true, act);
    let x = rng.f32s(m * in_f, 2.0);
    let mut scales = Vec::new();
    let mut q = Vec::new();
    for r in x.chunks(in_f) {
        let amax = r.iter().fold(0f32, |a, v| a.max(v.abs()));
        let p = QuantParams::symmetric(amax).unwrap();
        assert_eq!(p.scale(), amax / 127.0);
        scales.push(p.scale());
        q.extend(r.iter().map(|&v| reference::quantize(v, &p) as i8));
    }
    let args = GemmArgs {
        m,
        n: out_f,
        k: in_f,
        x: Activations::S8(&q),
        act: ActScales::PerRow {
            scales: &scales,
            zero_points: None,
        },
        w: l.weights().data(),
        w_scales: l.weights().scales(),
        bias: Bias::F32(l.bias().unwrap()),
    };
    let mut want = vec![0f32; m * out_f];
    reference::gemm(&args, &mut OutBuf::F32(&mut want)).unwrap();
    let got = l
        .forward_f32(&Context::new().with_path(Path::Reference), &x, m)
        .unwrap();
    assert_eq!(got, want);
    // And the static mode uses the i32 bias quantized with s_x · s_w.
    let p = QuantParams::symmetric(3.0).unwrap();
    let mut l2 = layer(&mut rng, out_f, in_f, true, true, act);
    l2.set_activation_quant(ActivationQuant::Static(p)).unwrap();
    let bq = l2.bias_i32().unwrap();
    for (n, &b) in l2.bias().unwrap().iter().enumerate() {
        assert_eq!(
            bq[n],
            reference::quantize_bias(b, p.scale(), l2.weights().scales()[n])
        );
    }
}

#[test]
fn close_to_f32() {
    let mut rng = Rng::new(10);
    let (m, out_f, in_f) = (16, 64, 256);
    let w = rng.f32s(out_f * in_f, 0.05);
    let b = rng.f32s(out_f, 0.1);
    let x = rng.f32s(m * in_f, 1.0);
    let mut y32 = vec![0f32; m * out_f];
    for i in 0..m {
        for j in 0..out_f {
            let dot: f64 = (0..in_f)
                .map(|p| x[i * in_f + p] as f64 * w[j * in_f + p] as f64)
                .sum();
            y32[i * out_f + j] = (dot + b[j] as f64) as f32;
        }
    }
    let norm = y32.iter().map(|v| v * v).sum::<f32>().sqrt();
    for act in modes().into_iter().take(4) {
        let l = QuantLinear::from_f32(
            "fc",
            &w,
            out_f,
            in_f,
            Some(&b),
            LinearConfig {
                activations: act,
                ..Default::default()
            },
        )
        .unwrap();
        let y = l.forward_f32(&Context::new(), &x, m).unwrap();
        let err = y
            .iter()
            .zip(&y32)
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f32>()
            .sqrt()
            / norm;
        assert!(err < 0.02, "{act:?}: relative error {err}");
        assert!(
            err > 0.0,
            "{act:?}: quantization should not be exact on random data"
        );
    }
}

#[test]
fn bad_shapes_are_typed_errors() {
    let mut rng = Rng::new(11);
    let l = layer(&mut rng, 4, 8, true, true, ActivationQuant::default());
    let ctx = Context::new();
    let x = vec![0.5f32; 3 * 8];
    let mut y = vec![0f32; 3 * 4];
    assert!(matches!(
        l.forward(&ctx, &x[..23], 3, &mut OutBuf::F32(&mut y)),
        Err(Error::Shape { .. })
    ));
    assert!(matches!(
        l.forward(&ctx, &x, 3, &mut OutBuf::F32(&mut y[..11])),
        Err(Error::Shape { .. })
    ));
    assert!(matches!(
        l.forward(&ctx, &x, usize::MAX, &mut OutBuf::F32(&mut y)),
        Err(Error::Dimension { .. })
    ));
    // m = 0 is a valid empty call.
    assert!(l.forward(&ctx, &[], 0, &mut OutBuf::F32(&mut [])).is_ok());
    // The arguments are checked before the values, in every activation mode (per-tensor dynamic
    // scales, which read the input's range first, included): a NaN input with a wrong output
    // length is a shape error, as on the device.
    let mut xn = x.clone();
    xn[5] = f32::NAN;
    for act in modes() {
        let l = layer(&mut rng, 4, 8, true, true, act);
        for p in cpu_paths().into_iter().chain([Path::Reference]) {
            let e = l
                .forward(&ctx.with_path(p), &xn, 3, &mut OutBuf::F32(&mut y[..11]))
                .unwrap_err();
            assert!(matches!(e, Error::Shape { .. }), "{act:?} {p:?}: {e}");
        }
    }
    // Bias of the wrong length, weights of the wrong length.
    let w = vec![0.1f32; 32];
    let err = QuantLinear::from_f32("fc", &w, 4, 8, Some(&[0.0; 3]), LinearConfig::default())
        .unwrap_err();
    assert!(matches!(err, Error::Shape { .. }), "{err}");
    let err =
        QuantLinear::from_f32("fc", &w[..31], 4, 8, None, LinearConfig::default()).unwrap_err();
    assert!(matches!(err, Error::Dimension { .. }), "{err}");
    // A float bias cannot go with raw i32 output.
    let mut yi = vec![0i32; 12];
    assert!(matches!(
        l.forward(&ctx, &x, 3, &mut OutBuf::I32(&mut yi)),
        Err(Error::Unsupported(_))
    ));
}

#[test]
fn non_finite_inputs_name_the_tensor_and_count() {
    let mut rng = Rng::new(12);
    let mut x = vec![0.25f32; 2 * 8];
    x[3] = f32::NAN;
    x[9] = f32::INFINITY;
    // Also with no outputs (n = 0): nothing is written, but the input is refused all the same.
    for (n, act) in [4, 0]
        .into_iter()
        .flat_map(|n| modes().into_iter().map(move |act| (n, act)))
    {
        let l = layer(&mut rng, n, 8, false, true, act);
        for p in cpu_paths().into_iter().chain([Path::Reference]) {
            let ctx = Context::new().with_path(p);
            let err = l.forward_f32(&ctx, &x, 2).unwrap_err();
            match (&act, err) {
                (
                    ActivationQuant::Dynamic { .. },
                    Error::NonFinite {
                        tensor,
                        count,
                        first_index,
                    },
                ) => {
                    assert_eq!(
                        (tensor.as_str(), count, first_index),
                        ("fc.input", 2, 3),
                        "n = {n}, {act:?} {p:?}"
                    );
                }
                // A static scale saturates ±inf (like ONNX QuantizeLinear) but has no integer for NaN.
                (ActivationQuant::Static(_), Error::NonFinite { tensor, .. }) => {
                    assert_eq!(tensor, "fc.input")
                }
                (_, e) => panic!("n = {n}, {act:?} {p:?}: unexpected {e}"),
            }
        }
    }
    // ±inf alone under a static scale saturate to the range ends.
    let l = layer(
        &mut rng,
        4,
        8,
        false,
        true,
        ActivationQuant::Static(QuantParams::symmetric(1.0).unwrap()),
    );
    let mut xi = vec![0.0f32; 8];
    xi[0] = f32::INFINITY;
    let mut xs = xi.clone();
    xs[0] = 1.0;
    assert_eq!(
        l.forward_f32(&Context::new(), &xi, 1).unwrap(),
        l.forward_f32(&Context::new(), &xs, 1).unwrap()
    );
    // Non-finite weights and bias are refused when the layer is built.
    let mut w = vec![0.1f32; 32];
    w[5] = f32::NAN;
    let err = QuantLinear::from_f32("proj", &w, 4, 8, None, LinearConfig::default()).unwrap_err();
    assert!(
        matches!(&err, Error::NonFinite { tensor, count: 1, first_index: 5 } if tensor == "proj.weight"),
        "{err}"
    );
    let err = QuantLinear::from_f32(
        "proj",
        &[0.1; 32],
        4,
        8,
        Some(&[0.0, f32::NEG_INFINITY, 0.0, 0.0]),
        LinearConfig::default(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::NonFinite { tensor, .. } if tensor == "proj.bias"),
        "{err}"
    );
}

#[test]
fn k_too_large_for_exact_accumulation_is_refused() {
    // Symmetric dynamic activations (|x| ≤ 127) with weights at 127: K · 127 · 127 < 2^31 needs
    // K ≤ 133,144; asymmetric u8 (|x − zp| ≤ 255): K ≤ 66,311.
    let k_ok = 133_144;
    let w = vec![1.0f32; k_ok + 1];
    let sym = LinearConfig::default();
    assert!(QuantLinear::from_f32("big", &w[..k_ok], 1, k_ok, None, sym).is_ok());
    let err = QuantLinear::from_f32("big", &w, 1, k_ok + 1, None, sym).unwrap_err();
    assert!(
        matches!(err, Error::AccumulatorOverflow { k: 133_145, .. }),
        "{err}"
    );
    let asym = LinearConfig {
        activations: ActivationQuant::Dynamic {
            scheme: Scheme::Asymmetric,
            granularity: Granularity::PerRow,
        },
        ..Default::default()
    };
    assert!(QuantLinear::from_f32("big", &w[..66_311], 1, 66_311, None, asym).is_ok());
    let err = QuantLinear::from_f32("big", &w[..66_312], 1, 66_312, None, asym).unwrap_err();
    assert!(matches!(err, Error::AccumulatorOverflow { .. }), "{err}");
    // Switching a valid layer to a mode it cannot hold fails and leaves the layer unchanged.
    let mut l = QuantLinear::from_f32("big", &w[..k_ok], 1, k_ok, None, sym).unwrap();
    assert!(l.set_activation_quant(asym.activations).is_err());
    assert_eq!(l.activation_quant(), sym.activations);
}

#[test]
fn invalid_static_parameters_are_refused() {
    let mut rng = Rng::new(13);
    let mut l = layer(&mut rng, 4, 8, true, true, ActivationQuant::default());
    let bad = QuantParams::new(0.1, 5, -128, 300).unwrap();
    assert!(matches!(
        l.set_activation_quant(ActivationQuant::Static(bad)),
        Err(Error::InvalidParam { .. })
    ));
    assert!(QuantParams::new(0.0, 0, -127, 127).is_err());
    assert!(QuantParams::new(f32::NAN, 0, -127, 127).is_err());
    assert!(QuantParams::new(1.0, 200, -127, 127).is_err());
}

#[test]
fn layers_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<QuantLinear>();
    check::<Context>();
}
