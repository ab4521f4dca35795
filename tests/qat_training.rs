//! tests/qat_training.rs — the training toolkit and quantization-aware training end to end:
//! back-propagation through the f32 MLP against finite differences of its loss, and a fixed-seed
//! QAT run on the committed scikit-learn digits whose 4-bit accuracy (measured through the int8
//! engine) ends above post-training 4-bit accuracy.

mod common;

#[path = "../examples/end_to_end/data.rs"]
mod data;

use int8rt::gemm::Context;
use int8rt::qat::train::{accuracy, softmax_cross_entropy, Adam, Rng, Sgd};
use int8rt::qat::{FakeQuantConfig, Mlp};

#[test]
fn mlp_backward_matches_finite_differences() {
    let mut rng = common::Rng::new(8);
    let (m, k, classes) = (6, 5, 4);
    let x: Vec<f32> = (0..m * k).map(|_| rng.normal(1.0)).collect();
    let labels: Vec<u8> = (0..m).map(|i| (i % classes) as u8).collect();
    let mut mlp = Mlp::new(&[k, 7, 6, classes], 3).unwrap();
    // Biases start at 0; give them values so their gradients are exercised away from 0.
    for l in mlp.layers_mut() {
        for b in &mut l.bias.value {
            *b = rng.normal(0.1);
        }
    }
    let loss = |mlp: &Mlp| -> f64 {
        let logits = mlp.forward(&x, m).unwrap();
        softmax_cross_entropy(&logits, &labels, classes).unwrap().0 as f64
    };
    // A step with learning rate 0 leaves the parameters and keeps the gradients.
    let mut sgd = Sgd {
        lr: 0.0,
        momentum: 0.0,
    };
    mlp.train_step(&x, &labels, &mut sgd).unwrap();
    let grads: Vec<Vec<f32>> = mlp.params_mut().iter().map(|p| p.grad.clone()).collect();
    let mut checked = 0;
    for (pi, g) in grads.iter().enumerate() {
        for e in (0..g.len()).step_by(3) {
            let h = 1e-2f32;
            let orig = mlp.params_mut()[pi].value[e];
            mlp.params_mut()[pi].value[e] = orig + h;
            let up = loss(&mlp);
            mlp.params_mut()[pi].value[e] = orig - h;
            let down = loss(&mlp);
            mlp.params_mut()[pi].value[e] = orig;
            let fd = (up - down) / (2.0 * h as f64);
            // Central differences of an f32 loss: truncation O(h²) plus rounding ~ε·loss/h.
            // A ReLU kink inside the step would break the comparison; the seed avoids one.
            assert!(
                (g[e] as f64 - fd).abs() <= 2e-3 + 2e-2 * fd.abs(),
                "param {pi}[{e}]: backward {} vs fd {fd}",
                g[e]
            );
            checked += 1;
        }
    }
    assert!(checked > 40);
}

#[test]
fn softmax_cross_entropy_refuses_bad_labels() {
    assert!(softmax_cross_entropy(&[0.0; 6], &[0, 3], 3).is_err());
    assert!(softmax_cross_entropy(&[0.0; 5], &[0, 1], 3).is_err());
    let (loss, g) = softmax_cross_entropy(&[0.0; 6], &[0, 2], 3).unwrap();
    assert!((loss - 3f32.ln()).abs() < 1e-6);
    assert!((g[0] - (1.0 / 3.0 - 1.0) / 2.0).abs() < 1e-7);
}

/// Engine accuracy of a fake-quantized model: converted to `nn::QuantLinear` layers and run on
/// the automatically chosen CPU path; also checks the engine's logits are the deployable
/// forward's bits.
fn engine_accuracy(mlp: &Mlp, x: &[f32], labels: &[u8]) -> f32 {
    let m = labels.len();
    let (logits, _) = mlp
        .to_quant_mlp()
        .unwrap()
        .forward(&Context::new(), x, m)
        .unwrap();
    let deploy = mlp.forward_deploy(x, m).unwrap();
    assert!(logits
        .iter()
        .zip(&deploy)
        .all(|(a, b)| a.to_bits() == b.to_bits()));
    accuracy(&logits, labels, 10)
}

#[test]
fn qat_at_4_bits_beats_post_training_4_bits_on_digits() {
    let d = data::load_digits().unwrap();
    let mut idx: Vec<usize> = (0..d.rows()).collect();
    Rng::new(1).shuffle(&mut idx);
    let (train, test) = (d.select(&idx[..1347]), d.select(&idx[1347..]));

    // A narrow f32 network (64-16-10), trained with a fixed seed.
    let mut mlp = Mlp::new(&[64, 16, 10], 42).unwrap();
    let mut opt = Adam::new(1e-3);
    let mut rng = Rng::new(3);
    for _ in 0..40 {
        mlp.train_epoch(&train.x, &train.labels, 32, &mut opt, &mut rng)
            .unwrap();
    }
    let f32_acc = accuracy(
        &mlp.forward(&test.x, test.rows()).unwrap(),
        &test.labels,
        10,
    );

    // Post-training 4-bit: per-channel weights (max |w| / 7), unsigned 4-bit inputs over the
    // ranges a max observer sees on the training set.
    let ranges = mlp.input_ranges(&train.x, train.rows()).unwrap();
    let mut q = mlp.clone();
    q.enable_fake_quant(
        FakeQuantConfig::weights(4),
        FakeQuantConfig::activations(4, false),
        &ranges,
    )
    .unwrap();
    let ptq = engine_accuracy(&q, &test.x, &test.labels);

    // QAT from there: 10 epochs, learnt scales and zero points.
    let mut opt = Adam::new(1e-4);
    for _ in 0..10 {
        q.train_epoch(&train.x, &train.labels, 32, &mut opt, &mut rng)
            .unwrap();
    }
    let qat = engine_accuracy(&q, &test.x, &test.labels);
    println!("digits 64-16-10: f32 {f32_acc:.4}, 4-bit post-training {ptq:.4}, 4-bit QAT {qat:.4}");
    assert!(f32_acc > 0.9, "the f32 model did not train: {f32_acc}");
    assert!(qat > ptq, "QAT {qat} did not beat post-training {ptq}");
}

#[test]
fn training_does_not_depend_on_the_thread_count() {
    // The products are large enough to run in parallel (m·n·k ≥ 2^16); every output element is
    // summed in a fixed order, so one thread and four give the same bits.
    let mut rng = common::Rng::new(17);
    let (m, k, classes) = (128, 64, 10);
    let x: Vec<f32> = (0..m * k).map(|_| rng.normal(1.0)).collect();
    let labels: Vec<u8> = (0..m).map(|i| (i * 7 % classes) as u8).collect();
    let train = |threads: usize| -> Vec<u32> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut mlp = Mlp::new(&[k, 48, classes], 9).unwrap();
            let ranges = mlp.input_ranges(&x, m).unwrap();
            let mut opt = Adam::new(1e-3);
            let mut shuffle = Rng::new(4);
            mlp.train_epoch(&x, &labels, 64, &mut opt, &mut shuffle)
                .unwrap();
            mlp.enable_fake_quant(
                FakeQuantConfig::weights(4),
                FakeQuantConfig::activations(4, false),
                &ranges,
            )
            .unwrap();
            mlp.train_epoch(&x, &labels, 64, &mut opt, &mut shuffle)
                .unwrap();
            mlp.params_mut()
                .iter()
                .flat_map(|p| p.value.iter().map(|v| v.to_bits()))
                .collect()
        })
    };
    assert_eq!(train(1), train(4));
}
