//! tests/qat_conversion.rs — a fake-quantized layer converted to the int8 engine gives what the
//! layer's deployable forward gives, bit for bit, on every CPU path: `QatLinear::forward_deploy`
//! (exact integer product of the fake quantizers' codes + the crate's epilogue) against
//! `QatLinear::to_quant_linear()` → `nn::QuantLinear::forward`, for 2..=8-bit codes, symmetric
//! and asymmetric inputs, per-channel and per-tensor weights, odd shapes and out-of-range inputs.
//! Also: the deployable forward stays within the f32 summation error of the training forward, and
//! a trained network keeps its bits through conversion.

mod common;

use common::{cpu_paths, Rng};
use int8rt::gemm::{Context, Path};
use int8rt::qat::{FakeQuantConfig, Mlp, QatLinear};
use int8rt::quant::Granularity;
use int8rt::reference;

fn bits_eq(a: &[f32], b: &[f32]) -> Option<(usize, f32, f32)> {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .enumerate()
        .find(|(_, (x, y))| x.to_bits() != y.to_bits())
        .map(|(i, (x, y))| (i, *x, *y))
}

/// A layer with random weights and bias and fake quantization on at `bits`.
fn layer(
    rng: &mut Rng,
    n: usize,
    k: usize,
    bits: u32,
    sym_input: bool,
    per_channel: bool,
) -> QatLinear {
    let w: Vec<f32> = (0..n * k).map(|_| rng.normal(0.3)).collect();
    let b: Vec<f32> = (0..n).map(|_| rng.normal(0.5)).collect();
    let mut l = QatLinear::from_f32("fc", w, b, n, k).unwrap();
    let mut wcfg = FakeQuantConfig::weights(bits);
    if !per_channel {
        wcfg.granularity = Granularity::PerTensor;
    }
    let lo = if sym_input {
        -2.0
    } else {
        rng.uniform(-1.5, 0.0)
    };
    l.enable_fake_quant(
        wcfg,
        FakeQuantConfig::activations(bits, sym_input),
        (lo, rng.uniform(0.5, 3.0)),
    )
    .unwrap();
    // Move the scales off their initial values, as training would.
    if let Some(q) = l.weight_quantizer_mut() {
        for s in &mut q.scale.value {
            *s *= rng.uniform(0.6, 1.2);
        }
    }
    l
}

#[test]
fn quant_linear_reproduces_the_deployable_forward_bit_for_bit() {
    let mut rng = Rng::new(2024);
    let mut paths = cpu_paths();
    paths.push(Path::Reference);
    let ctx = Context::new();
    let shapes = [
        (1, 1, 1),
        (3, 5, 7),
        (17, 9, 33),
        (1, 64, 64),
        (32, 10, 128),
        (5, 16, 257),
        (64, 31, 300),
    ];
    let mut cases = 0;
    for bits in 2..=8 {
        for sym_input in [true, false] {
            for per_channel in [true, false] {
                for &(m, n, k) in &shapes {
                    let l = layer(&mut rng, n, k, bits, sym_input, per_channel);
                    // Inputs reach past both ends of the input range, and include exact zeros.
                    let x: Vec<f32> = (0..m * k)
                        .map(|i| if i % 11 == 0 { 0.0 } else { rng.normal(1.5) })
                        .collect();
                    let want = l.forward_deploy(&x, m).unwrap();
                    let q = l.to_quant_linear().unwrap();
                    // The engine holds exactly the trained codes and scales.
                    let wq = l.weight_quantizer().unwrap();
                    let codes = wq.codes("w", &l.weight.value).unwrap();
                    assert!(q
                        .weights()
                        .data()
                        .iter()
                        .zip(&codes)
                        .all(|(&a, &b)| a as i32 == b));
                    let scales: Vec<f32> = (0..wq.channels())
                        .map(|c| wq.effective(c).unwrap().0)
                        .collect();
                    assert_eq!(q.weights().scales(), scales);
                    for &p in &paths {
                        let c = ctx.with_path(p);
                        let got = q.forward_f32(&c, &x, m).unwrap();
                        assert_eq!(c.last_path(), Some(p));
                        if let Some((i, a, b)) = bits_eq(&got, &want) {
                            panic!(
                                "{bits}-bit sym_input={sym_input} per_channel={per_channel} [{m}x{k}]·[{n}x{k}]ᵀ on {p:?}: \
                                 output {i} is {a} from the engine, {b} from the deployable forward"
                            );
                        }
                    }
                    cases += 1;
                }
            }
        }
    }
    assert_eq!(cases, 7 * 2 * 2 * shapes.len());
}

#[test]
fn deployable_forward_differs_from_training_forward_only_by_f32_summation() {
    // The training forward sums f32 products of the fake-quantized operands; the deployable
    // forward computes the same real number exactly and rounds it in the epilogue. Their
    // difference is bounded by the f32 summation error, γ_k·Σ|x̂·ŵ| + |b̂|, plus the epilogue's
    // and the bias's roundings (a few ulps of the result).
    let mut rng = Rng::new(7);
    let mut worst = 0f64;
    for bits in [2, 4, 8] {
        for sym_input in [true, false] {
            let (m, n, k) = (9, 12, 200);
            let l = layer(&mut rng, n, k, bits, sym_input, true);
            let x: Vec<f32> = (0..m * k).map(|_| rng.normal(1.0)).collect();
            let train = l.forward(&x, m).unwrap();
            let deploy = l.forward_deploy(&x, m).unwrap();
            let xq = l.input_quantizer().unwrap();
            let wq = l.weight_quantizer().unwrap();
            let mut xh = vec![0f32; x.len()];
            xq.forward("x", &x, &mut xh).unwrap();
            let mut wh = vec![0f32; l.weight.value.len()];
            wq.forward("w", &l.weight.value, &mut wh).unwrap();
            let gamma =
                k as f64 * f32::EPSILON as f64 / 2.0 / (1.0 - k as f64 * f32::EPSILON as f64 / 2.0);
            for i in 0..m {
                for j in 0..n {
                    let abs_sum: f64 = (0..k)
                        .map(|p| (xh[i * k + p] as f64 * wh[j * k + p] as f64).abs())
                        .sum();
                    let y = deploy[i * n + j] as f64;
                    let bound = (gamma + 4.0 * f32::EPSILON as f64)
                        * (abs_sum + y.abs() + l.bias.value[j].abs() as f64);
                    let diff = (train[i * n + j] as f64 - y).abs();
                    assert!(
                        diff <= bound,
                        "{bits}-bit ({i}, {j}): train {} deploy {y} diff {diff} > bound {bound}",
                        train[i * n + j]
                    );
                    worst = worst.max(diff / bound.max(f64::MIN_POSITIVE));
                }
            }
        }
    }
    println!("worst |train − deploy| / bound = {worst:.3}");
}

#[test]
fn conversion_refuses_layers_without_fake_quant() {
    let l = QatLinear::from_f32("plain", vec![0.5; 6], vec![0.0; 2], 2, 3).unwrap();
    assert!(l.to_quant_linear().is_err());
    assert!(l.forward_deploy(&[1.0; 3], 1).is_err());
    // Asymmetric weights have no int8-engine form.
    let mut l = l.clone();
    let mut wcfg = FakeQuantConfig::weights(4);
    wcfg.symmetric = false;
    assert!(l
        .enable_fake_quant(wcfg, FakeQuantConfig::activations(4, true), (-1.0, 1.0))
        .is_err());
    // Inputs are per tensor.
    let mut xcfg = FakeQuantConfig::activations(4, true);
    xcfg.granularity = Granularity::PerChannel;
    assert!(l
        .enable_fake_quant(FakeQuantConfig::weights(4), xcfg, (-1.0, 1.0))
        .is_err());
    // NaN input is refused by name.
    l.enable_fake_quant(
        FakeQuantConfig::weights(4),
        FakeQuantConfig::activations(4, true),
        (-1.0, 1.0),
    )
    .unwrap();
    match l.forward_deploy(&[1.0, f32::NAN, 0.0], 1) {
        Err(int8rt::Error::NonFinite { tensor, .. }) => assert_eq!(tensor, "plain.input"),
        other => panic!("expected NonFinite, got {other:?}"),
    }
}

#[test]
fn trained_network_keeps_its_bits_through_conversion() {
    // A small fixed-seed problem: three Gaussian blobs in 6 dimensions.
    let mut rng = Rng::new(99);
    let (rows, k, classes) = (300, 6, 3);
    let centers: Vec<f32> = (0..classes * k).map(|_| rng.normal(1.0)).collect();
    let mut x = Vec::with_capacity(rows * k);
    let mut labels = Vec::with_capacity(rows);
    for r in 0..rows {
        let c = r % classes;
        labels.push(c as u8);
        x.extend((0..k).map(|j| centers[c * k + j] + rng.normal(0.6)));
    }
    let mut mlp = Mlp::new(&[k, 16, 16, classes], 5).unwrap();
    let mut opt = int8rt::qat::train::Adam::new(0.01);
    let mut shuffle = int8rt::qat::train::Rng::new(1);
    for _ in 0..5 {
        mlp.train_epoch(&x, &labels, 32, &mut opt, &mut shuffle)
            .unwrap();
    }
    let ranges = mlp.input_ranges(&x, rows).unwrap();
    for (bits, sym) in [(4, false), (8, true), (3, true)] {
        let mut q = mlp.clone();
        q.enable_fake_quant(
            FakeQuantConfig::weights(bits),
            FakeQuantConfig::activations(bits, sym),
            &ranges,
        )
        .unwrap();
        for _ in 0..3 {
            q.train_epoch(&x, &labels, 32, &mut opt, &mut shuffle)
                .unwrap();
        }
        let want = q.forward_deploy(&x, rows).unwrap();
        let engine = q.to_quant_mlp().unwrap();
        for p in cpu_paths().into_iter().chain([Path::Reference]) {
            let (got, ran) = engine
                .forward(&Context::new().with_path(p), &x, rows)
                .unwrap();
            assert_eq!(ran, p);
            assert_eq!(bits_eq(&got, &want), None, "{bits}-bit on {p:?}");
        }
        // The learnt input scales moved away from their calibrated start.
        let start = reference::asymmetric_params_for(ranges[1].0, ranges[1].1, 15).0;
        let now = q.layers()[1].input_quantizer().unwrap().scale.value[0];
        if (bits, sym) == (4, false) {
            assert_ne!(now, start, "the scale was not learnt");
        }
    }
}
