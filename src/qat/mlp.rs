//! qat/mlp.rs — a multi-layer perceptron of [`QatLinear`] layers with ReLU between them (none
//! after the last): f32 training, range observation, fake quantization on, quantization-aware
//! training, and conversion to the int8 engine ([`QuantMlp`], a stack of `nn::QuantLinear`).
//! This is the model of the end-to-end example and of the QAT tests.

use super::fake_quant::FakeQuantConfig;
use super::linear::QatLinear;
use super::train::{self, Optimizer, Param, Rng};
use crate::error::{Error, Result};
use crate::gemm::{Context, Path};
use crate::nn::QuantLinear;

/// `Linear → ReLU → … → Linear`.
#[derive(Clone, Debug)]
pub struct Mlp {
    layers: Vec<QatLinear>,
    /// Each layer's output after its ReLU, from the last `forward_train` (for the backward).
    relu_out: Vec<Vec<f32>>,
}

impl Mlp {
    /// A network with layer widths `sizes` (`[in, hidden…, out]`, at least two), layers named
    /// `fc1`, `fc2`, …, initialised from `seed`.
    pub fn new(sizes: &[usize], seed: u64) -> Result<Self> {
        if sizes.len() < 2 {
            return Err(Error::Dimension {
                what: "Mlp sizes",
                detail: format!("need at least [in, out], got {sizes:?}"),
            });
        }
        let mut rng = Rng::new(seed);
        let layers = sizes
            .windows(2)
            .enumerate()
            .map(|(i, w)| QatLinear::new(&format!("fc{}", i + 1), w[0], w[1], &mut rng))
            .collect::<Result<Vec<_>>>()?;
        Ok(Mlp {
            layers,
            relu_out: Vec::new(),
        })
    }

    /// The layers, first to last.
    pub fn layers(&self) -> &[QatLinear] {
        &self.layers
    }
    /// Mutable layers.
    pub fn layers_mut(&mut self) -> &mut [QatLinear] {
        &mut self.layers
    }
    /// Input features.
    pub fn in_features(&self) -> usize {
        self.layers[0].in_features()
    }
    /// Output features (classes).
    pub fn out_features(&self) -> usize {
        self.layers[self.layers.len() - 1].out_features()
    }

    /// Logits for `x: [m, in]` with the training forward (f32, or fake-quantized floats).
    pub fn forward(&self, x: &[f32], m: usize) -> Result<Vec<f32>> {
        self.run(x, |l, h| l.forward(h, m))
    }

    /// Logits with each layer's deployable forward (the integer result; see
    /// [`QatLinear::forward_deploy`]).
    pub fn forward_deploy(&self, x: &[f32], m: usize) -> Result<Vec<f32>> {
        self.run(x, |l, h| l.forward_deploy(h, m))
    }

    fn run(
        &self,
        x: &[f32],
        f: impl Fn(&QatLinear, &[f32]) -> Result<Vec<f32>>,
    ) -> Result<Vec<f32>> {
        let mut h = x.to_vec();
        let last = self.layers.len() - 1;
        for (i, l) in self.layers.iter().enumerate() {
            h = f(l, &h)?;
            if i < last {
                train::relu(&mut h);
            }
        }
        Ok(h)
    }

    /// The `(min, max)` of each layer's input over `x: [m, in]`, with the current forward (run it
    /// on the f32 model to calibrate fake quantization, as a max observer would).
    pub fn input_ranges(&self, x: &[f32], m: usize) -> Result<Vec<(f32, f32)>> {
        let mut h = x.to_vec();
        let mut ranges = Vec::with_capacity(self.layers.len());
        let last = self.layers.len() - 1;
        for (i, l) in self.layers.iter().enumerate() {
            ranges.push(crate::quant::minmax(&format!("{}.input", l.name()), &h)?);
            if i < last {
                h = l.forward(&h, m)?;
                train::relu(&mut h);
            }
        }
        Ok(ranges)
    }

    /// Turn fake quantization on in every layer: weights with `weights`, inputs with `input`,
    /// each input's range initialised from `ranges[i]` (see [`Mlp::input_ranges`]).
    pub fn enable_fake_quant(
        &mut self,
        weights: FakeQuantConfig,
        input: FakeQuantConfig,
        ranges: &[(f32, f32)],
    ) -> Result<()> {
        if ranges.len() != self.layers.len() {
            return Err(Error::shape(
                "input ranges (one per layer)",
                self.layers.len(),
                ranges.len(),
            ));
        }
        for (l, &r) in self.layers.iter_mut().zip(ranges) {
            l.enable_fake_quant(weights, input, r)?;
        }
        Ok(())
    }

    /// One optimization step on the batch `x: [m, in]`, `labels: [m]`: forward, softmax
    /// cross-entropy, backward, optimizer update, then the quantizers' projection. Returns the
    /// batch's mean loss.
    pub fn train_step(&mut self, x: &[f32], labels: &[u8], opt: &mut dyn Optimizer) -> Result<f32> {
        let m = labels.len();
        let classes = self.out_features();
        let last = self.layers.len() - 1;
        self.relu_out.clear();
        let mut h = x.to_vec();
        for i in 0..self.layers.len() {
            h = self.layers[i].forward_train(&h, m)?;
            if i < last {
                train::relu(&mut h);
                self.relu_out.push(h.clone());
            }
        }
        let (loss, mut d) = train::softmax_cross_entropy(&h, labels, classes)?;
        for p in self.params_mut() {
            p.zero_grad();
        }
        for i in (0..self.layers.len()).rev() {
            let dx = self.layers[i].backward(&d, i > 0)?;
            if let Some(mut dx) = dx {
                train::relu_backward(&self.relu_out[i - 1], &mut dx);
                d = dx;
            }
        }
        opt.step(&mut self.params_mut());
        for l in &mut self.layers {
            l.project();
        }
        Ok(loss)
    }

    /// One epoch of minibatch training over `x: [rows, in]` in an order shuffled by `rng`.
    /// Returns the mean batch loss.
    pub fn train_epoch(
        &mut self,
        x: &[f32],
        labels: &[u8],
        batch: usize,
        opt: &mut dyn Optimizer,
        rng: &mut Rng,
    ) -> Result<f32> {
        let k = self.in_features();
        let rows = labels.len();
        let expected = crate::error::checked_len("training data [rows, in]", rows, k)?;
        if x.len() != expected {
            return Err(Error::shape("training data [rows, in]", expected, x.len()));
        }
        if batch == 0 {
            return Err(Error::param("batch", "must be > 0"));
        }
        let mut order: Vec<usize> = (0..rows).collect();
        rng.shuffle(&mut order);
        let (mut total, mut batches) = (0f64, 0usize);
        for idx in order.chunks(batch) {
            let mut xb = Vec::with_capacity(idx.len() * k);
            let mut yb = Vec::with_capacity(idx.len());
            for &r in idx {
                xb.extend_from_slice(&x[r * k..(r + 1) * k]);
                yb.push(labels[r]);
            }
            total += self.train_step(&xb, &yb, opt)? as f64;
            batches += 1;
        }
        Ok((total / batches.max(1) as f64) as f32)
    }

    /// Every parameter of every layer.
    pub fn params_mut(&mut self) -> Vec<&mut Param> {
        self.layers
            .iter_mut()
            .flat_map(|l| l.params_mut())
            .collect()
    }

    /// The int8 engine's model: each layer converted with [`QatLinear::to_quant_linear`].
    pub fn to_quant_mlp(&self) -> Result<QuantMlp> {
        Ok(QuantMlp {
            layers: self
                .layers
                .iter()
                .map(QatLinear::to_quant_linear)
                .collect::<Result<_>>()?,
        })
    }
}

/// A stack of [`QuantLinear`] layers with ReLU between them: the deployed form of an [`Mlp`].
#[derive(Debug)]
pub struct QuantMlp {
    /// The layers, first to last.
    pub layers: Vec<QuantLinear>,
}

impl QuantMlp {
    /// Logits for `x: [m, in]` through the int8 engine on the context's path. Returns the logits
    /// and the path the last layer ran.
    pub fn forward(&self, ctx: &Context, x: &[f32], m: usize) -> Result<(Vec<f32>, Path)> {
        let mut h = x.to_vec();
        let mut path = Path::Reference;
        let last = self.layers.len().saturating_sub(1);
        for (i, l) in self.layers.iter().enumerate() {
            let mut y = vec![0f32; crate::error::checked_len("layer output", m, l.out_features())?];
            path = l.forward(ctx, &h, m, &mut crate::gemm::OutBuf::F32(&mut y))?;
            if i < last {
                train::relu(&mut y);
            }
            h = y;
        }
        Ok((h, path))
    }
}
