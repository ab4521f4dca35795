//! nn/linear.rs — `QuantLinear`: an `nn.Linear` whose weights are int8 (per output channel or per
//! tensor, packed once) and whose forward quantizes its f32 input (dynamically per call, or with a
//! static scale from calibration), runs the integer GEMM on the chosen path, and writes the output
//! through the fused epilogue. Every input is validated here, before any loop runs.

use crate::error::{Error, Result};
use crate::gemm::cpu::FloatQuant;
use crate::gemm::{
    check_accumulator_bound, ActScales, Bias, Context, FloatCall, OutBuf, PackedWeights, Path,
};
use crate::quant::{self, Granularity, QuantParams, QuantizedWeights, Scheme, WeightQuantConfig};

/// How a layer quantizes its input.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ActivationQuant {
    /// Scales computed from each input: per tensor or per row (per token); symmetric (`s8`,
    /// `[-127, 127]`) or asymmetric (`u8` with a zero point). The bias is added in f32.
    Dynamic {
        scheme: Scheme,
        granularity: Granularity,
    },
    /// A fixed scale (and zero point) from calibration or a checkpoint: symmetric parameters give
    /// `s8` activations, unsigned ones `u8`. The bias is quantized to i32 once.
    Static(QuantParams),
}

impl Default for ActivationQuant {
    fn default() -> Self {
        ActivationQuant::Dynamic {
            scheme: Scheme::Symmetric,
            granularity: Granularity::PerRow,
        }
    }
}

/// How to build a [`QuantLinear`] from float weights.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LinearConfig {
    pub weights: WeightQuantConfig,
    pub activations: ActivationQuant,
}

/// A quantized Linear layer: `y = x · Wᵀ + b` with int8 weights and activations.
#[derive(Debug)]
pub struct QuantLinear {
    name: String,
    /// `<name>.input`, the tensor name errors about the input carry (built once, not per call).
    input_name: String,
    weights: QuantizedWeights,
    packed: PackedWeights,
    bias: Option<Vec<f32>>,
    act: ActivationQuant,
    /// The i32 bias for static activation scales.
    bias_q: Option<Vec<i32>>,
}

impl QuantLinear {
    /// Quantize f32 weights `[out_features, in_features]` (and keep an optional f32 bias).
    /// `name` appears in every error about this layer.
    pub fn from_f32(
        name: &str,
        weight: &[f32],
        out_features: usize,
        in_features: usize,
        bias: Option<&[f32]>,
        cfg: LinearConfig,
    ) -> Result<Self> {
        let wq = quant::quantize_weights(
            &format!("{name}.weight"),
            weight,
            out_features,
            in_features,
            cfg.weights,
        )?;
        Self::from_quantized(name, wq, bias, cfg.activations)
    }

    /// Build from already-quantized weights (for example a checkpoint), keeping their scales.
    pub fn from_quantized(
        name: &str,
        weights: QuantizedWeights,
        bias: Option<&[f32]>,
        act: ActivationQuant,
    ) -> Result<Self> {
        if let Some(b) = bias {
            if b.len() != weights.rows {
                return Err(Error::shape("bias [out_features]", weights.rows, b.len()));
            }
            quant::check_finite(&format!("{name}.bias"), b)?;
        }
        let packed = PackedWeights::new(weights.data.clone(), weights.rows, weights.cols)?;
        let mut layer = QuantLinear {
            name: name.to_string(),
            input_name: format!("{name}.input"),
            weights,
            packed,
            bias: bias.map(<[f32]>::to_vec),
            act,
            bias_q: None,
        };
        layer.set_activation_quant(act)?;
        Ok(layer)
    }

    /// Change how the input is quantized (calibration freezes a static scale this way). Requantizes
    /// the bias and re-checks the accumulator bound; on error the layer is left unchanged.
    pub fn set_activation_quant(&mut self, act: ActivationQuant) -> Result<()> {
        let x_bound: i64 = match act {
            ActivationQuant::Dynamic {
                scheme,
                granularity,
                ..
            } => {
                if granularity == Granularity::PerChannel {
                    return Err(Error::Unsupported(
                        "activations are quantized per tensor or per row, not per channel".into(),
                    ));
                }
                match scheme {
                    Scheme::Symmetric => 127,
                    Scheme::Asymmetric => 255,
                }
            }
            ActivationQuant::Static(p) => {
                if p.zero_point() == 0 && p.qmin() >= -128 && p.qmax() <= 127 {
                    128
                } else if p.qmin() >= 0 && p.qmax() <= 255 {
                    255
                } else {
                    return Err(Error::param(
                        "static activation params",
                        format!(
                            "need a symmetric s8 range (zero point 0) or a u8 range, got [{}, {}] zp {}",
                            p.qmin(),
                            p.qmax(),
                            p.zero_point()
                        ),
                    ));
                }
            }
        };
        let bias_q = match (act, &self.bias) {
            (ActivationQuant::Static(p), Some(b)) => {
                Some(quant::quantize_bias(b, p.scale(), &self.weights.scales)?)
            }
            _ => None,
        };
        let bias_bound = bias_q.as_ref().map_or(0, |b| {
            b.iter().map(|&v| (v as i64).abs()).max().unwrap_or(0)
        });
        check_accumulator_bound(
            self.in_features(),
            x_bound,
            self.packed.wmax() as i64,
            bias_bound,
        )?;
        self.act = act;
        self.bias_q = bias_q;
        Ok(())
    }

    /// The layer's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Input features (`K`).
    pub fn in_features(&self) -> usize {
        self.weights.cols
    }
    /// Output features (`N`).
    pub fn out_features(&self) -> usize {
        self.weights.rows
    }
    /// The quantized weights and their scales.
    pub fn weights(&self) -> &QuantizedWeights {
        &self.weights
    }
    /// The packed weights (raw int8, `wsum`, per-path layouts).
    pub fn packed(&self) -> &PackedWeights {
        &self.packed
    }
    /// The f32 bias.
    pub fn bias(&self) -> Option<&[f32]> {
        self.bias.as_deref()
    }
    /// The i32 bias used with a static activation scale.
    pub fn bias_i32(&self) -> Option<&[i32]> {
        self.bias_q.as_deref()
    }
    /// How the input is quantized.
    pub fn activation_quant(&self) -> ActivationQuant {
        self.act
    }

    /// `out = x · Wᵀ + b` for `x: [m, in_features]`, `out: [m, out_features]` of the buffer's type.
    /// Returns the path that ran. Dynamic quantization refuses NaN and ±inf (naming
    /// `<layer>.input`); a static scale saturates ±inf like ONNX `QuantizeLinear` and refuses NaN.
    pub fn forward(
        &self,
        ctx: &Context,
        x: &[f32],
        m: usize,
        out: &mut OutBuf<'_>,
    ) -> Result<Path> {
        let k = self.in_features();
        let xl = crate::error::checked_len("input [m, in_features]", m, k)?;
        if x.len() != xl {
            return Err(Error::shape("input [m, in_features]", xl, x.len()));
        }
        let input = self.input_name.as_str();
        let w_scales = &self.weights.scales;
        let bias = match (&self.bias_q, &self.bias) {
            (Some(b), _) => Bias::I32(b),
            (None, Some(b)) => Bias::F32(b),
            (None, None) => Bias::None,
        };
        let per_tensor = |p: QuantParams| ActScales::PerTensor {
            scale: p.scale(),
            zero_point: p.zero_point(),
        };
        let call = |quant, act| FloatCall {
            m,
            x,
            quant,
            act,
            w_scales,
            bias,
        };
        let run = |quant: FloatQuant, act: Option<ActScales<'static>>, out: &mut OutBuf<'_>| {
            self.packed
                .gemm_quantizing(ctx, call(quant, act), out, input)
        };
        match self.act {
            ActivationQuant::Static(p) => run(FloatQuant::Tensor(p), Some(per_tensor(p)), out),
            ActivationQuant::Dynamic {
                scheme,
                granularity: Granularity::PerTensor,
            } => {
                // The arguments first, as on the other modes and the device: a wrong length or
                // parameter is reported before anything about the values (a stand-in of the
                // scheme's integer type takes the place of the range-derived parameters).
                let stand_in = match scheme {
                    Scheme::Symmetric => QuantParams::symmetric(1.0)?,
                    Scheme::Asymmetric => QuantParams::asymmetric(0.0, 1.0)?,
                };
                self.packed.check_quantizing(
                    &call(FloatQuant::Tensor(stand_in), Some(per_tensor(stand_in))),
                    out,
                )?;
                let p = match scheme {
                    Scheme::Symmetric => QuantParams::symmetric(quant::amax(input, x)?)?,
                    Scheme::Asymmetric => {
                        let (lo, hi) = quant::minmax(input, x)?;
                        QuantParams::asymmetric(lo, hi)?
                    }
                };
                // Checked above with the stand-in, whose integer type `p` shares.
                self.packed.gemm_quantizing_checked(
                    ctx,
                    call(FloatQuant::Tensor(p), Some(per_tensor(p))),
                    out,
                    input,
                )
            }
            ActivationQuant::Dynamic { scheme, .. } => {
                run(FloatQuant::DynamicRows(scheme), None, out)
            }
        }
    }

    /// [`QuantLinear::forward`] into a new f32 vector `[m, out_features]`.
    pub fn forward_f32(&self, ctx: &Context, x: &[f32], m: usize) -> Result<Vec<f32>> {
        let len = crate::error::checked_len("output [m, out_features]", m, self.out_features())?;
        let mut y = vec![0.0f32; len];
        self.forward(ctx, x, m, &mut OutBuf::F32(&mut y))?;
        Ok(y)
    }
}
