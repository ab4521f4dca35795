//! qat/linear.rs — `QatLinear`: a trainable Linear layer `y = x · Wᵀ + b` whose weights and
//! input can be fake-quantized, with three forwards and the way out to the int8 engine:
//! - the training forward (f32 products of the fake-quantized operands; the backward uses the
//!   straight-through estimator and LSQ gradients of [`super::FakeQuantizer`]);
//! - the deployable forward ([`QatLinear::forward_deploy`]): the exact integer product of the
//!   codes the fake quantizers produce, the i32 bias, then the crate's f32 epilogue
//!   ([`crate::reference::Epilogue`]) — the definition of what the integer engine computes;
//! - [`QatLinear::to_quant_linear`]: the same codes, scales and zero points as an
//!   [`nn::QuantLinear`](crate::nn::QuantLinear), whose output equals the deployable forward bit
//!   for bit on every path.
//!
//! Why two forwards: the training forward sums f32 products, and f32 sums round, so no integer
//! engine can reproduce it bit for bit; the deployable forward computes the same real number
//! `s_x · s_w[n] · (Σ (q_x − zp)·q_w + bias_q)` exactly up to the epilogue's two roundings. The two
//! differ only by f32 summation error (the `qat_conversion` test measures it).

use super::fake_quant::{FakeQuantConfig, FakeQuantizer};
use super::train::{self, Param, Rng};
use crate::error::{Error, Result};
use crate::gemm::{check_accumulator_bound, ActScales, Bias, OutKind};
use crate::nn::{ActivationQuant, QuantLinear};
use crate::quant::{check_finite, Granularity, QuantizedWeights};
use crate::reference::{self, Epilogue};

/// What the training forward keeps for the backward.
#[derive(Clone, Debug)]
struct Cache {
    m: usize,
    /// The input as given.
    x: Vec<f32>,
    /// The input as the product saw it (fake-quantized, or `x`).
    x_hat: Vec<f32>,
    /// The weights as the product saw them (fake-quantized, or the weights).
    w_hat: Vec<f32>,
}

/// A Linear layer for (quantization-aware) training. Without fake quantizers it is a plain f32
/// Linear layer.
#[derive(Clone, Debug)]
pub struct QatLinear {
    name: String,
    in_features: usize,
    out_features: usize,
    /// Weights `[out, in]`.
    pub weight: Param,
    /// Bias `[out]`.
    pub bias: Param,
    weight_fq: Option<FakeQuantizer>,
    input_fq: Option<FakeQuantizer>,
    cache: Option<Cache>,
}

impl QatLinear {
    /// A layer with weights drawn uniformly from `±sqrt(6 / in_features)` (He initialization for
    /// ReLU networks) and zero bias.
    pub fn new(name: &str, in_features: usize, out_features: usize, rng: &mut Rng) -> Result<Self> {
        let len = crate::error::checked_len("QatLinear weight", out_features, in_features)?;
        if in_features == 0 || out_features == 0 {
            return Err(Error::Dimension {
                what: "QatLinear",
                detail: format!("`{name}`: in_features {in_features} and out_features {out_features} must be > 0"),
            });
        }
        let a = (6.0 / in_features as f32).sqrt();
        let w = (0..len).map(|_| rng.uniform(-a, a)).collect();
        Self::from_f32(name, w, vec![0.0; out_features], out_features, in_features)
    }

    /// A layer holding the given f32 weights `[out, in]` and bias `[out]`.
    pub fn from_f32(
        name: &str,
        weight: Vec<f32>,
        bias: Vec<f32>,
        out_features: usize,
        in_features: usize,
    ) -> Result<Self> {
        let len = crate::error::checked_len("QatLinear weight", out_features, in_features)?;
        if weight.len() != len {
            return Err(Error::shape(
                "QatLinear weight [out, in]",
                len,
                weight.len(),
            ));
        }
        if bias.len() != out_features {
            return Err(Error::shape(
                "QatLinear bias [out]",
                out_features,
                bias.len(),
            ));
        }
        check_finite(&format!("{name}.weight"), &weight)?;
        check_finite(&format!("{name}.bias"), &bias)?;
        Ok(QatLinear {
            name: name.to_string(),
            in_features,
            out_features,
            weight: Param::new(weight, true),
            bias: Param::new(bias, true),
            weight_fq: None,
            input_fq: None,
            cache: None,
        })
    }

    /// The layer's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Input features.
    pub fn in_features(&self) -> usize {
        self.in_features
    }
    /// Output features.
    pub fn out_features(&self) -> usize {
        self.out_features
    }
    /// The weight quantizer, if fake quantization is on.
    pub fn weight_quantizer(&self) -> Option<&FakeQuantizer> {
        self.weight_fq.as_ref()
    }
    /// The input quantizer, if fake quantization is on.
    pub fn input_quantizer(&self) -> Option<&FakeQuantizer> {
        self.input_fq.as_ref()
    }
    /// Mutable access to the weight quantizer (to set or freeze its parameters).
    pub fn weight_quantizer_mut(&mut self) -> Option<&mut FakeQuantizer> {
        self.weight_fq.as_mut()
    }
    /// Mutable access to the input quantizer.
    pub fn input_quantizer_mut(&mut self) -> Option<&mut FakeQuantizer> {
        self.input_fq.as_mut()
    }

    /// Turn fake quantization on: the weights with `weights` (symmetric; per channel or per
    /// tensor; ranges initialised from the current weights, `max |w|` per channel) and the input
    /// with `input` (per tensor; range initialised from `input_range = (lo, hi)`, typically
    /// observed on calibration data).
    pub fn enable_fake_quant(
        &mut self,
        weights: FakeQuantConfig,
        input: FakeQuantConfig,
        input_range: (f32, f32),
    ) -> Result<()> {
        if !weights.symmetric {
            return Err(Error::Unsupported(format!(
                "`{}`: weights are fake-quantized symmetrically (the int8 engine's weights carry no zero point)",
                self.name
            )));
        }
        if input.granularity != Granularity::PerTensor {
            return Err(Error::Unsupported(format!(
                "`{}`: the input is fake-quantized per tensor (one static scale for the int8 engine)",
                self.name
            )));
        }
        let mut wq = FakeQuantizer::new(weights, self.out_features)?;
        let (lo, hi): (Vec<f32>, Vec<f32>) = match weights.granularity {
            Granularity::PerTensor => {
                let a = crate::quant::amax(&format!("{}.weight", self.name), &self.weight.value)?;
                (vec![-a], vec![a])
            }
            _ => {
                let mut a = vec![0f32; self.out_features];
                crate::quant::amax_rows(
                    &format!("{}.weight", self.name),
                    &self.weight.value,
                    self.out_features,
                    self.in_features,
                    &mut a,
                )?;
                (a.iter().map(|v| -v).collect(), a)
            }
        };
        wq.init_from_ranges(&lo, &hi)?;
        let mut xq = FakeQuantizer::new(input, 1)?;
        xq.init_from_ranges(&[input_range.0], &[input_range.1])?;
        self.weight_fq = Some(wq);
        self.input_fq = Some(xq);
        self.cache = None;
        Ok(())
    }

    /// Turn fake quantization off (back to a plain f32 layer).
    pub fn disable_fake_quant(&mut self) {
        self.weight_fq = None;
        self.input_fq = None;
        self.cache = None;
    }

    /// Every parameter: weight, bias, then the quantizers' scales and zero points.
    pub fn params_mut(&mut self) -> Vec<&mut Param> {
        let mut v = vec![&mut self.weight, &mut self.bias];
        for q in [&mut self.weight_fq, &mut self.input_fq]
            .into_iter()
            .flatten()
        {
            v.push(&mut q.scale);
            v.push(&mut q.zero_point);
        }
        v
    }

    /// Keep the quantizers' learnt parameters in their domain (call after each optimizer step).
    pub fn project(&mut self) {
        for q in [&mut self.weight_fq, &mut self.input_fq]
            .into_iter()
            .flatten()
        {
            q.project();
        }
    }

    fn check_input(&self, x: &[f32], m: usize) -> Result<()> {
        self.check_params()?;
        let len = crate::error::checked_len("QatLinear input [m, in]", m, self.in_features)?;
        if x.len() != len {
            return Err(Error::shape("QatLinear input [m, in]", len, x.len()));
        }
        check_finite(&format!("{}.input", self.name), x)
    }

    /// Err unless the (public) weight and bias still hold `[out, in]` and `[out]` values and
    /// gradients, and the weight quantizer one parameter set or one per output feature.
    fn check_params(&self) -> Result<()> {
        let (n, k) = (self.out_features, self.in_features);
        self.weight.check_size(&self.name, "weight", n * k)?;
        self.bias.check_size(&self.name, "bias", n)?;
        match &self.weight_fq {
            Some(wq) if wq.channels() != 1 && wq.channels() != n => Err(Error::Dimension {
                what: "weight fake quantizer",
                detail: format!(
                    "`{}`: {} channels for {n} output features",
                    self.name,
                    wq.channels()
                ),
            }),
            _ => Ok(()),
        }
    }

    /// The operands and bias the training forward multiplies: `(x̂, ŵ, b̂)`. With fake
    /// quantization on, `b̂[n] = fake_quantize_bias(b[n], s_x, s_w[n])`, the i32 bias the engine
    /// adds, in floats.
    fn operands(&self, x: &[f32]) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
        match (&self.weight_fq, &self.input_fq) {
            (Some(wq), Some(xq)) => {
                let mut x_hat = vec![0f32; x.len()];
                xq.forward(&format!("{}.input", self.name), x, &mut x_hat)?;
                let mut w_hat = vec![0f32; self.weight.len()];
                wq.forward(
                    &format!("{}.weight", self.name),
                    &self.weight.value,
                    &mut w_hat,
                )?;
                let (s_x, _) = xq.channel_params(0);
                let b_hat = (0..self.out_features)
                    .map(|n| {
                        let (s_w, _) = wq.channel_params(if wq.channels() == 1 { 0 } else { n });
                        reference::fake_quantize_bias(self.bias.value[n], s_x, s_w)
                    })
                    .collect();
                Ok((x_hat, w_hat, b_hat))
            }
            _ => Ok((
                x.to_vec(),
                self.weight.value.clone(),
                self.bias.value.clone(),
            )),
        }
    }

    /// The training forward for `x: [m, in]` → `[m, out]`, keeping what the backward needs.
    pub fn forward_train(&mut self, x: &[f32], m: usize) -> Result<Vec<f32>> {
        self.check_input(x, m)?;
        let (x_hat, w_hat, b_hat) = self.operands(x)?;
        let y = train::linear_forward(
            &x_hat,
            &w_hat,
            Some(&b_hat),
            m,
            self.out_features,
            self.in_features,
        )?;
        self.cache = Some(Cache {
            m,
            x: x.to_vec(),
            x_hat,
            w_hat,
        });
        Ok(y)
    }

    /// The training forward's result without keeping anything (evaluation).
    pub fn forward(&self, x: &[f32], m: usize) -> Result<Vec<f32>> {
        self.check_input(x, m)?;
        let (x_hat, w_hat, b_hat) = self.operands(x)?;
        train::linear_forward(
            &x_hat,
            &w_hat,
            Some(&b_hat),
            m,
            self.out_features,
            self.in_features,
        )
    }

    /// Back-propagate `dy: [m, out]` through the last [`QatLinear::forward_train`]: adds the
    /// weight, bias and quantizer-parameter gradients, and returns `dx: [m, in]` when `need_dx`.
    /// The bias gradient passes straight through the bias quantization.
    pub fn backward(&mut self, dy: &[f32], need_dx: bool) -> Result<Option<Vec<f32>>> {
        self.check_params()?;
        let cache = self.cache.take().ok_or_else(|| {
            Error::Unsupported(format!(
                "`{}`: backward without a preceding forward_train",
                self.name
            ))
        })?;
        let (m, n, k) = (cache.m, self.out_features, self.in_features);
        let dw_hat = train::linear_backward_weight(dy, &cache.x_hat, m, n, k)?;
        match &mut self.weight_fq {
            Some(wq) => {
                let mut dw = vec![0f32; dw_hat.len()];
                wq.backward(&self.weight.value, &dw_hat, &mut dw)?;
                add_into(&mut self.weight.grad, &dw);
            }
            None => add_into(&mut self.weight.grad, &dw_hat),
        }
        for i in 0..m {
            add_into(&mut self.bias.grad, &dy[i * n..(i + 1) * n]);
        }
        if !need_dx {
            return Ok(None);
        }
        let dx_hat = train::linear_backward_input(dy, &cache.w_hat, m, n, k)?;
        match &mut self.input_fq {
            Some(xq) => {
                let mut dx = vec![0f32; dx_hat.len()];
                xq.backward(&cache.x, &dx_hat, &mut dx)?;
                Ok(Some(dx))
            }
            None => Ok(Some(dx_hat)),
        }
    }

    /// Everything the integer forms need, checked: the input's `(scale, zp, qmin, qmax)`, the
    /// weight codes as `i8`, the weight scales, and the i32 bias.
    fn integer_parts(&self) -> Result<IntegerParts> {
        self.check_params()?;
        let (Some(wq), Some(xq)) = (&self.weight_fq, &self.input_fq) else {
            return Err(Error::Unsupported(format!(
                "`{}`: fake quantization is off; there is no integer form to deploy",
                self.name
            )));
        };
        let codes = wq.codes(&format!("{}.weight", self.name), &self.weight.value)?;
        // Symmetric codes of ≤ 8 bits lie in [-127, 127]: they fit i8 exactly.
        let w_codes: Vec<i8> = codes.iter().map(|&q| q as i8).collect();
        let w_scales: Vec<f32> = (0..wq.channels()).map(|c| wq.channel_params(c).0).collect();
        let x_params = xq.params(0)?;
        let bias_q = crate::quant::quantize_bias(&self.bias.value, x_params.scale(), &w_scales)?;
        Ok(IntegerParts {
            x_params,
            w_codes,
            w_scales,
            bias_q,
        })
    }

    /// The deployable forward: `q_x = clamp(rhe(x / s_x) + zp_x)`, `q_w` the weight codes,
    /// `acc[m, n] = Σ_k (q_x − zp_x)·q_w + bias_q[n]` exactly (i64, proven to fit i32), then the
    /// crate's epilogue `f32(acc) · (s_x · s_w[n])` ([`Epilogue::value`]). This is the result an
    /// [`nn::QuantLinear`](crate::nn::QuantLinear) built by [`QatLinear::to_quant_linear`] gives,
    /// bit for bit; it differs from [`QatLinear::forward`] only by the latter's f32 summation.
    pub fn forward_deploy(&self, x: &[f32], m: usize) -> Result<Vec<f32>> {
        self.check_input(x, m)?;
        let parts = self.integer_parts()?;
        let (n, k) = (self.out_features, self.in_features);
        let p = parts.x_params;
        let x_bound = (p.qmax() - p.zero_point())
            .abs()
            .max((p.qmin() - p.zero_point()).abs()) as i64;
        let w_bound = parts
            .w_codes
            .iter()
            .map(|&v| (v as i64).abs())
            .max()
            .unwrap_or(0);
        let b_bound = parts
            .bias_q
            .iter()
            .map(|&v| (v as i64).abs())
            .max()
            .unwrap_or(0);
        check_accumulator_bound(k, x_bound, w_bound, b_bound)?;
        let xc: Vec<i64> = x
            .iter()
            .map(|&v| {
                (reference::fake_quant_code(v, p.scale(), p.zero_point(), p.qmin(), p.qmax())
                    - p.zero_point()) as i64
            })
            .collect();
        let act = ActScales::PerTensor {
            scale: p.scale(),
            zero_point: p.zero_point(),
        };
        let epi = Epilogue::new(
            n,
            &act,
            &parts.w_scales,
            &Bias::I32(&parts.bias_q),
            OutKind::F32,
        );
        let mut y = vec![0f32; m * n];
        for i in 0..m {
            let xr = &xc[i * k..(i + 1) * k];
            for j in 0..n {
                let wr = &parts.w_codes[j * k..(j + 1) * k];
                let dot: i64 = xr.iter().zip(wr).map(|(&a, &b)| a * b as i64).sum();
                let acc = dot + parts.bias_q[j] as i64;
                // check_accumulator_bound proved |acc| < 2^31 above.
                y[i * n + j] = epi.value(acc as i32, i, j);
            }
        }
        Ok(y)
    }

    /// The int8 engine's layer for this trained layer: the weight codes and scales as
    /// [`QuantizedWeights`] (kept exactly), the f32 bias (the engine quantizes it to the same
    /// i32), and the input's scale, zero point and code range as a static
    /// [`ActivationQuant::Static`]. Codes of fewer than 8 bits stay in `i8` / `u8` containers.
    pub fn to_quant_linear(&self) -> Result<QuantLinear> {
        let parts = self.integer_parts()?;
        let w = QuantizedWeights::from_parts(
            parts.w_codes,
            parts.w_scales,
            self.out_features,
            self.in_features,
        )?;
        QuantLinear::from_quantized(
            &self.name,
            w,
            Some(&self.bias.value),
            ActivationQuant::Static(parts.x_params),
        )
    }
}

/// See [`QatLinear::integer_parts`].
struct IntegerParts {
    x_params: crate::quant::QuantParams,
    w_codes: Vec<i8>,
    w_scales: Vec<f32>,
    bias_q: Vec<i32>,
}

fn add_into(acc: &mut [f32], v: &[f32]) {
    for (a, &b) in acc.iter_mut().zip(v) {
        *a += b;
    }
}
