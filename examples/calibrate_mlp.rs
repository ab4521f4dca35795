//! examples/calibrate_mlp.rs — a calibration run on a small multi-layer model: a 3-layer MLP
//! (64 → 256 → 256 → 10, ReLU between) whose activations have heavy tails. The example feeds
//! representative batches through its own forward code with a [`CalibrationRun`] watching each
//! layer's input, then freezes every range method in turn into the layers' static activation
//! scales and prints, for each, the output error of the int8 model against the f32 model on
//! held-out data (relative RMS error, max abs error, top-1 agreement of the 10 logits).
//!
//!   cargo run --release --example calibrate_mlp

use anyhow::Result;
use int8rt::calib::{AmaxMethod, CrossEntropyConfig, Method, ObserverConfig, RangeMethod};
use int8rt::gemm::Context;
use int8rt::nn::{ActivationQuant, CalibrationRun, LinearConfig, QuantLinear};

/// SplitMix64, so the example needs no dependency and prints the same table every run.
struct Rng(u64);
impl Rng {
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
    /// Approximately normal (Irwin–Hall of 4), standard deviation `sd`.
    fn normal(&mut self, sd: f32) -> f32 {
        ((0..4).map(|_| self.unit()).sum::<f32>() - 2.0) * sd * 1.732
    }
}

/// One f32 layer: weights `[out, in]`, bias `[out]`.
struct Dense {
    name: &'static str,
    w: Vec<f32>,
    b: Vec<f32>,
    n_in: usize,
    n_out: usize,
}

impl Dense {
    fn new(name: &'static str, n_in: usize, n_out: usize, rng: &mut Rng) -> Self {
        let sd = (2.0 / n_in as f32).sqrt();
        Dense {
            name,
            w: (0..n_in * n_out).map(|_| rng.normal(sd)).collect(),
            b: (0..n_out).map(|_| rng.normal(0.05)).collect(),
            n_in,
            n_out,
        }
    }
    fn forward(&self, x: &[f32], m: usize) -> Vec<f32> {
        let mut y = vec![0.0; m * self.n_out];
        for i in 0..m {
            for j in 0..self.n_out {
                let row = &self.w[j * self.n_in..(j + 1) * self.n_in];
                let xi = &x[i * self.n_in..(i + 1) * self.n_in];
                y[i * self.n_out + j] =
                    row.iter().zip(xi).map(|(a, b)| a * b).sum::<f32>() + self.b[j];
            }
        }
        y
    }
    fn quantized(&self) -> Result<QuantLinear> {
        Ok(QuantLinear::from_f32(
            self.name,
            &self.w,
            self.n_out,
            self.n_in,
            Some(&self.b),
            LinearConfig::default(),
        )?)
    }
}

fn relu(v: &mut [f32]) {
    for x in v {
        *x = x.max(0.0);
    }
}

/// Inputs with heavy tails: mostly N(0, 1), one value in 200 scaled by 12.
fn batch(rng: &mut Rng, m: usize, k: usize) -> Vec<f32> {
    (0..m * k)
        .map(|_| {
            let v = rng.normal(1.0);
            if rng.next().is_multiple_of(200) {
                v * 12.0
            } else {
                v
            }
        })
        .collect()
}

fn f32_model(layers: &[Dense], x: &[f32], m: usize) -> Vec<f32> {
    let mut h = x.to_vec();
    for (i, l) in layers.iter().enumerate() {
        h = l.forward(&h, m);
        if i + 1 < layers.len() {
            relu(&mut h);
        }
    }
    h
}

fn main() -> Result<()> {
    let mut rng = Rng(2024);
    let dims = [64, 256, 256, 10];
    let names = ["fc1", "fc2", "fc3"];
    let reference: Vec<Dense> = (0..3)
        .map(|i| Dense::new(names[i], dims[i], dims[i + 1], &mut rng))
        .collect();
    let mut layers: Vec<QuantLinear> = reference
        .iter()
        .map(Dense::quantized)
        .collect::<Result<_>>()?;
    let ctx = Context::new();
    let m = 64;

    // 1. Calibration: the model's own forward code, with the run watching each layer's input.
    let cfg = ObserverConfig {
        cross_entropy: Some(CrossEntropyConfig::default()),
        ..ObserverConfig::default()
    };
    let mut run = CalibrationRun::new(cfg);
    for l in &layers {
        run.attach_layer(l)?;
    }
    for _ in 0..32 {
        let x = batch(&mut rng, m, dims[0]);
        let mut h = x;
        for (i, l) in layers.iter().enumerate() {
            h = run.forward(l, &ctx, &h, m)?;
            if i + 1 < layers.len() {
                relu(&mut h);
            }
        }
    }
    for name in run.names() {
        let o = run.observer(name).expect("attached");
        let (lo, hi) = o.range()?;
        println!(
            "{name}: input range [{lo:.3}, {hi:.3}], {} values in {} histogram bins",
            o.histogram().total(),
            o.histogram().counts().len()
        );
    }

    // 2. Held-out data and the f32 model's logits.
    let evals: Vec<Vec<f32>> = (0..8).map(|_| batch(&mut rng, m, dims[0])).collect();
    let want: Vec<Vec<f32>> = evals.iter().map(|x| f32_model(&reference, x, m)).collect();

    let evaluate = |layers: &[QuantLinear]| -> Result<(f64, f32, f64)> {
        let (mut num, mut den, mut max_err, mut agree) = (0.0f64, 0.0f64, 0.0f32, 0usize);
        for (x, y_ref) in evals.iter().zip(&want) {
            let mut h = x.clone();
            for (i, l) in layers.iter().enumerate() {
                h = l.forward_f32(&ctx, &h, m)?;
                if i + 1 < layers.len() {
                    relu(&mut h);
                }
            }
            for (a, b) in h.iter().zip(y_ref) {
                num += ((a - b) as f64).powi(2);
                den += (*b as f64).powi(2);
                max_err = max_err.max((a - b).abs());
            }
            let argmax = |r: &[f32]| {
                r.iter()
                    .enumerate()
                    .fold(0, |bi, (i, v)| if *v > r[bi] { i } else { bi })
            };
            for (r, rr) in h.chunks(10).zip(y_ref.chunks(10)) {
                agree += (argmax(r) == argmax(rr)) as usize;
            }
        }
        Ok((
            (num / den).sqrt(),
            max_err,
            agree as f64 / (evals.len() * m) as f64,
        ))
    };

    // 3. Every method, frozen into every layer. The unsigned scheme needs inputs ≥ 0, which holds
    //    after a ReLU (fc2, fc3); fc1 sees signed inputs and keeps the symmetric variant.
    let methods = [
        Method::Symmetric(AmaxMethod::Max),
        Method::Symmetric(AmaxMethod::Percentile(99.9)),
        Method::Symmetric(AmaxMethod::Percentile(99.99)),
        Method::Symmetric(AmaxMethod::Percentile(99.999)),
        Method::Symmetric(AmaxMethod::Mse),
        Method::Symmetric(AmaxMethod::Entropy),
        Method::Symmetric(AmaxMethod::CrossEntropy),
        Method::Unsigned(AmaxMethod::Max),
        Method::Unsigned(AmaxMethod::Percentile(99.99)),
        Method::Unsigned(AmaxMethod::Mse),
        Method::Unsigned(AmaxMethod::Entropy),
        Method::Asymmetric(RangeMethod::MinMax),
        Method::Asymmetric(RangeMethod::MovingAverage),
        Method::Asymmetric(RangeMethod::Percentile(99.99)),
        Method::Asymmetric(RangeMethod::Mse),
    ];
    println!();
    println!(
        "{:<34} {:>12} {:>12} {:>8}   scales (fc1, fc2, fc3)",
        "method", "rel. RMS", "max |err|", "top-1"
    );
    let (rms, max_err, top1) = evaluate(&layers)?;
    println!(
        "{:<34} {:>12.5} {:>12.5} {:>7.1}%   per row, computed on the fly",
        "dynamic per-token (no calibration)",
        rms,
        max_err,
        top1 * 100.0
    );
    for method in methods {
        let choose = |name: &str| match (method, name) {
            (Method::Unsigned(a), "fc1") => Method::Symmetric(a),
            _ => method,
        };
        let mut refs: Vec<&mut QuantLinear> = layers.iter_mut().collect();
        let frozen = run.freeze_with(&mut refs, choose)?;
        let (rms, max_err, top1) = evaluate(&layers)?;
        let scales: Vec<String> = frozen
            .iter()
            .map(|f| format!("{:.4}", f.params.scale()))
            .collect();
        println!(
            "{:<34} {:>12.5} {:>12.5} {:>7.1}%   {}",
            method.to_string(),
            rms,
            max_err,
            top1 * 100.0,
            scales.join(", ")
        );
    }
    // Back to dynamic quantization, to show the layers are still ordinary layers.
    for l in &mut layers {
        l.set_activation_quant(ActivationQuant::default())?;
    }
    Ok(())
}
