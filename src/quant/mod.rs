//! quant — quantization schemes and parameters: the first stage of the flow (floats → integers).
//!
//! A [`QuantParams`] is one (scale, zero point, integer range, arithmetic rule) tuple; tensors carry
//! one per tensor, per output channel or per row ([`Granularity`]). The arithmetic itself is the
//! normative scalar code in [`crate::reference`]; this module builds parameters, validates them,
//! and applies them to slices (the loops here are checked against the reference by the tests).
//!
//! Conventions ([`Convention`]): the crate's default is the narrow symmetric range `[-127, 127]`
//! with `scale = amax / 127` and a true IEEE division `x / scale` (ONNX `QuantizeLinear`); the
//! pytorch-quantization and torch.ao conventions are named presets that reproduce those libraries
//! bit for bit (their rounding rule multiplies instead of dividing), and compressed-tensors
//! checkpoints (`absmax / 127.5` over `[-128, 127]`) keep the scale they stored.

pub(crate) mod kernels;
mod tensor;

pub use tensor::{
    amax, amax_rows, minmax, minmax_rows, quantize_weights, QuantizedWeights, WeightQuantConfig,
};
pub(crate) use tensor::{dynamic_row_params, max_abs_bits, nonfinite_error, NONFINITE_ABS_BITS};

use crate::error::{Error, Result};
use crate::reference;

/// Symmetric (zero point 0, signed integers) or asymmetric (unsigned integers with a zero point).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `s8` in the narrow range `[-127, 127]`, `scale = amax / 127`, zero point 0.
    Symmetric,
    /// `u8` in `[0, 255]` with a zero point; the float range is widened to contain 0.
    Asymmetric,
}

/// How many parameter sets a tensor carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Granularity {
    /// One scale for the whole tensor.
    PerTensor,
    /// One scale per output channel (weights `[out, in]`: one per row of the weight matrix).
    PerChannel,
    /// One scale per row of an activation matrix (per token).
    PerRow,
}

/// The arithmetic a [`QuantParams`] uses to map floats to integers and back.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rule {
    /// `q = clamp(rhe(x / scale) + zp)`, `x' = (q - zp) · scale` — the crate's rule (ONNX, ORT,
    /// compressed-tensors).
    Divide,
    /// torch.ao: `q = clamp(rhe(x · inv) + zp)` with `inv = 1 / scale` in f32;
    /// `x' = (q - zp) · scale`.
    MultiplyInverse { inv: f32 },
    /// pytorch-quantization: `q = clamp(rhe(x · unit))` with `unit = max_bound / amax` in f32
    /// ("integers per unit", 0 when `amax ≤ 2^-24`); `x' = q / unit` (`q` itself when unit is 0,
    /// which is then 0).
    UnitScale { unit: f32 },
}

/// Named conventions for building parameters from a range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Convention {
    /// The crate's default: narrow symmetric `[-127, 127]`, `amax / 127`; asymmetric u8
    /// `(hi - lo) / 255`. True division.
    Int8rt,
    /// NVIDIA pytorch-quantization `tensor_quant`: `unit = 127 / amax` (255 when unsigned),
    /// multiply, narrow range unless `narrow_range = false` was asked for (then `[-128, 127]`).
    PytorchQuantization { narrow_range: bool, unsigned: bool },
    /// torch.ao observers (`MinMaxObserver._calculate_qparams`): f32 arithmetic with the
    /// `eps = 1.1920929e-07` floor; `qint8` is `[-128, 127]`, `quint8` `[0, 255]`; symmetric
    /// divides by `(qmax - qmin) / 2 = 127.5`.
    TorchAo {
        dtype: TorchDtype,
        symmetric: bool,
        reduce_range: bool,
    },
    /// compressed-tensors / llm-compressor int8: `scale = absmax / 127.5` over `[-128, 127]`,
    /// true division.
    CompressedTensors,
}

/// The torch.ao integer dtypes the presets cover.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TorchDtype {
    /// `torch.qint8`: `[-128, 127]` (`[-64, 63]` with reduce_range).
    QInt8,
    /// `torch.quint8`: `[0, 255]` (`[0, 127]` with reduce_range).
    QUInt8,
}

/// torch.ao's `eps` floor on scales: `torch.finfo(torch.float32).eps`.
pub const TORCH_AO_EPS: f32 = 1.192_092_9e-7;

/// One set of quantization parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuantParams {
    scale: f32,
    zero_point: i32,
    qmin: i32,
    qmax: i32,
    rule: Rule,
}

impl QuantParams {
    /// Validated explicit parameters with the crate's [`Rule::Divide`] (for example a scale read
    /// from a checkpoint, which is kept as stored). Refused, besides out-of-domain values, when
    /// an end of `[qmin, qmax]` would dequantize to ±inf.
    pub fn new(scale: f32, zero_point: i32, qmin: i32, qmax: i32) -> Result<Self> {
        Self::with_rule(scale, zero_point, qmin, qmax, Rule::Divide)
    }

    /// Validated explicit parameters with an explicit rule.
    pub fn with_rule(
        scale: f32,
        zero_point: i32,
        qmin: i32,
        qmax: i32,
        rule: Rule,
    ) -> Result<Self> {
        if !(scale.is_finite() && scale > 0.0) {
            return Err(Error::param(
                "scale",
                format!("must be finite and > 0, got {scale}"),
            ));
        }
        if qmin >= qmax || qmin < -(1 << 15) || qmax > (1 << 16) {
            return Err(Error::param(
                "qmin/qmax",
                format!("[{qmin}, {qmax}] is not a usable integer range"),
            ));
        }
        if zero_point < qmin || zero_point > qmax {
            return Err(Error::param(
                "zero_point",
                format!("{zero_point} lies outside [{qmin}, {qmax}]"),
            ));
        }
        match rule {
            Rule::Divide => {}
            Rule::MultiplyInverse { inv } if inv.is_finite() && inv > 0.0 => {}
            Rule::UnitScale { unit } if unit.is_finite() && unit >= 0.0 => {}
            _ => {
                return Err(Error::param(
                    "rule",
                    format!("{rule:?} has an invalid factor"),
                ))
            }
        }
        QuantParams {
            scale,
            zero_point,
            qmin,
            qmax,
            rule,
        }
        .with_finite_ends()
    }

    /// `self` if the range's end codes dequantize to finite values. A scale near
    /// `f32::MAX / 127`, or a subnormal unit, would turn them into ±inf: every value quantized to
    /// an end would come back as infinity, so such explicit parameters (a checkpoint's, a
    /// convention's) are refused. (Dequantizing is monotone in the code, so the two ends bound
    /// every code.) The data-derived [`QuantParams::symmetric`] and [`QuantParams::asymmetric`]
    /// are not checked: they must stay what the device derives.
    fn with_finite_ends(self) -> Result<Self> {
        for q in [self.qmin, self.qmax] {
            let v = reference::dequantize(q, &self);
            if !v.is_finite() {
                let param = match self.rule {
                    Rule::UnitScale { .. } => "rule",
                    _ => "scale",
                };
                return Err(Error::param(
                    param,
                    format!(
                        "code {q} would dequantize to {v} (scale {:e}, zero point {}, {:?})",
                        self.scale, self.zero_point, self.rule
                    ),
                ));
            }
        }
        Ok(self)
    }

    /// The crate's symmetric parameters for `|x| ≤ amax`: `[-127, 127]`, `scale = amax / 127`
    /// (scale 1 when `amax == 0`). Data-derived, as every path derives them (the CPU kernels and
    /// the device's dynamic quantization alike), so not refused as [`QuantParams::new`] refuses
    /// explicit parameters whose end codes dequantize to ±inf: with `amax` within a rounding of
    /// `f32::MAX`, `dequantize(±127)` is ±inf, while quantizing, and a GEMM's `acc · s_x · s_w`,
    /// are unaffected.
    pub fn symmetric(amax: f32) -> Result<Self> {
        check_range_value("amax", amax)?;
        if amax < 0.0 {
            return Err(Error::param("amax", format!("must be ≥ 0, got {amax}")));
        }
        Ok(QuantParams {
            scale: reference::symmetric_scale(amax),
            zero_point: 0,
            qmin: -127,
            qmax: 127,
            rule: Rule::Divide,
        })
    }

    /// The crate's asymmetric `u8` parameters for data in `[lo, hi]` (widened to contain 0).
    pub fn asymmetric(lo: f32, hi: f32) -> Result<Self> {
        check_range_value("lo", lo)?;
        check_range_value("hi", hi)?;
        if lo > hi {
            return Err(Error::param("lo/hi", format!("lo {lo:?} > hi {hi:?}")));
        }
        if !(hi.max(0.0) - lo.min(0.0)).is_finite() {
            return Err(Error::param(
                "lo/hi",
                format!("the range [{lo:?}, {hi:?}] is wider than f32 can represent"),
            ));
        }
        let (scale, zero_point) = reference::asymmetric_params(lo, hi);
        Ok(QuantParams {
            scale,
            zero_point,
            qmin: 0,
            qmax: 255,
            rule: Rule::Divide,
        })
    }

    /// Parameters for `[lo, hi]` in a named convention (`lo` is ignored by symmetric
    /// conventions except through `max(|lo|, hi)`).
    pub fn from_range(convention: Convention, lo: f32, hi: f32) -> Result<Self> {
        check_range_value("lo", lo)?;
        check_range_value("hi", hi)?;
        if lo > hi {
            return Err(Error::param("lo/hi", format!("lo {lo:?} > hi {hi:?}")));
        }
        let amax = lo.abs().max(hi.abs());
        let (scale, zero_point, qmin, qmax, rule) = match convention {
            Convention::Int8rt => return Self::symmetric(amax),
            Convention::PytorchQuantization {
                narrow_range,
                unsigned,
            } => {
                if unsigned && lo < 0.0 {
                    return Err(Error::param(
                        "lo",
                        "pytorch-quantization's unsigned mode needs data ≥ 0",
                    ));
                }
                let (unit, qmin, qmax) =
                    reference::pytorch_quantization_unit(amax, narrow_range, unsigned);
                let scale = if unit == 0.0 { 1.0 } else { 1.0 / unit };
                (scale, 0, qmin, qmax, Rule::UnitScale { unit })
            }
            Convention::TorchAo {
                dtype,
                symmetric,
                reduce_range,
            } => {
                if symmetric && reduce_range && dtype == TorchDtype::QUInt8 {
                    return Err(Error::Unsupported(
                        "torch.ao has no symmetric quint8 with reduce_range (it raises NotImplementedError)".into(),
                    ));
                }
                let (qmin, qmax) = match (dtype, reduce_range) {
                    (TorchDtype::QInt8, false) => (-128, 127),
                    (TorchDtype::QInt8, true) => (-64, 63),
                    (TorchDtype::QUInt8, false) => (0, 255),
                    (TorchDtype::QUInt8, true) => (0, 127),
                };
                let (scale, zero_point) = reference::torch_ao_qparams(
                    lo,
                    hi,
                    qmin,
                    qmax,
                    symmetric,
                    dtype == TorchDtype::QUInt8,
                );
                let rule = Rule::MultiplyInverse { inv: 1.0 / scale };
                (scale, zero_point, qmin, qmax, rule)
            }
            Convention::CompressedTensors => {
                let scale = if amax == 0.0 { 1.0 } else { amax / 127.5 };
                (scale, 0, -128, 127, Rule::Divide)
            }
        };
        // A range near f32's limits can overflow the convention's arithmetic (a span past
        // f32::MAX, a unit of 127 / subnormal): refuse it rather than return unusable parameters.
        Self::with_rule(scale, zero_point, qmin, qmax, rule).map_err(|e| {
            Error::param(
                "lo/hi",
                format!("[{lo:?}, {hi:?}] has no usable parameters in {convention:?}: {e}"),
            )
        })
    }

    /// Scale 1, zero point 0, `[-127, 127]`: a placeholder for buffers about to be filled.
    pub(crate) fn unit() -> Self {
        QuantParams {
            scale: 1.0,
            zero_point: 0,
            qmin: -127,
            qmax: 127,
            rule: Rule::Divide,
        }
    }

    /// The float step between adjacent integers.
    pub fn scale(&self) -> f32 {
        self.scale
    }
    /// The integer that represents 0.0.
    pub fn zero_point(&self) -> i32 {
        self.zero_point
    }
    /// Smallest integer.
    pub fn qmin(&self) -> i32 {
        self.qmin
    }
    /// Largest integer.
    pub fn qmax(&self) -> i32 {
        self.qmax
    }
    /// The arithmetic rule.
    pub fn rule(&self) -> Rule {
        self.rule
    }
    /// Whether the integers are symmetric around 0 (zero point 0, signed range).
    pub fn is_symmetric(&self) -> bool {
        self.zero_point == 0 && self.qmin < 0
    }

    /// Quantize one value (see [`reference::quantize`]).
    #[inline]
    pub fn quantize(&self, x: f32) -> i32 {
        reference::quantize(x, self)
    }

    /// Dequantize one integer (see [`reference::dequantize`]).
    #[inline]
    pub fn dequantize(&self, q: i32) -> f32 {
        reference::dequantize(q, self)
    }

    /// `dequantize(quantize(x))`.
    #[inline]
    pub fn fake_quantize(&self, x: f32) -> f32 {
        self.dequantize(self.quantize(x))
    }

    /// Quantize a slice into `i8` (the range must fit `i8`). ±inf saturate to the range ends;
    /// NaN has no integer and is an error.
    pub fn quantize_to_i8(&self, xs: &[f32], out: &mut [i8]) -> Result<()> {
        if self.qmin < -128 || self.qmax > 127 {
            return Err(Error::param("qmin/qmax", "range does not fit i8"));
        }
        if xs.len() != out.len() {
            return Err(Error::shape("quantize_to_i8 output", xs.len(), out.len()));
        }
        if kernels::quantize_into(xs, kernels::QuantOp::new(self, 0), out) {
            return Err(nan_error("input", xs));
        }
        Ok(())
    }

    /// Quantize a slice into `u8` (the range must fit `u8`). ±inf saturate; NaN is an error.
    pub fn quantize_to_u8(&self, xs: &[f32], out: &mut [u8]) -> Result<()> {
        if self.qmin < 0 || self.qmax > 255 {
            return Err(Error::param("qmin/qmax", "range does not fit u8"));
        }
        if xs.len() != out.len() {
            return Err(Error::shape("quantize_to_u8 output", xs.len(), out.len()));
        }
        if kernels::quantize_into(xs, kernels::QuantOp::new(self, 0), out) {
            return Err(nan_error("input", xs));
        }
        Ok(())
    }

    /// Dequantize a slice of integers.
    pub fn dequantize_slice<T: Copy + Into<i32>>(&self, qs: &[T], out: &mut [f32]) -> Result<()> {
        if qs.len() != out.len() {
            return Err(Error::shape("dequantize output", qs.len(), out.len()));
        }
        for (o, &q) in out.iter_mut().zip(qs) {
            *o = self.dequantize(q.into());
        }
        Ok(())
    }
}

/// Quantize a bias to i32 with scale `s_x · s_w[n]` (DESIGN.md §1 step 2): the product is taken in
/// f32, the division in f64, rounded half to even and saturated to i32. `w_scales` has one entry
/// (per-tensor weights) or one per bias element.
pub fn quantize_bias(bias: &[f32], s_x: f32, w_scales: &[f32]) -> Result<Vec<i32>> {
    if !(s_x.is_finite() && s_x > 0.0) {
        return Err(Error::param(
            "s_x",
            format!("must be finite and > 0, got {s_x}"),
        ));
    }
    if w_scales.len() != 1 && w_scales.len() != bias.len() {
        return Err(Error::shape(
            "weight scales for bias",
            bias.len(),
            w_scales.len(),
        ));
    }
    check_finite("bias", bias)?;
    Ok(bias
        .iter()
        .enumerate()
        .map(|(n, &b)| {
            let s_w = if w_scales.len() == 1 {
                w_scales[0]
            } else {
                w_scales[n]
            };
            reference::quantize_bias(b, s_x, s_w)
        })
        .collect())
}

fn check_range_value(name: &'static str, v: f32) -> Result<()> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(Error::param(name, format!("must be finite, got {v}")))
    }
}

/// The error for NaN found while quantizing `xs`.
pub(crate) fn nan_error(tensor: &str, xs: &[f32]) -> Error {
    Error::NonFinite {
        tensor: tensor.to_string(),
        count: xs.iter().filter(|x| x.is_nan()).count(),
        first_index: xs.iter().position(|x| x.is_nan()).unwrap_or(0),
    }
}

/// Err([`Error::NonFinite`]) naming `tensor` when `xs` holds NaN or ±inf.
pub fn check_finite(tensor: &str, xs: &[f32]) -> Result<()> {
    // The SIMD max-|x| scan answers "all finite?"; count and locate only on failure.
    if max_abs_bits(xs) < NONFINITE_ABS_BITS {
        return Ok(());
    }
    let mut count = 0usize;
    let mut first = usize::MAX;
    for (i, x) in xs.iter().enumerate() {
        if !x.is_finite() {
            count += 1;
            first = first.min(i);
        }
    }
    if count == 0 {
        Ok(())
    } else {
        Err(Error::NonFinite {
            tensor: tensor.to_string(),
            count,
            first_index: first,
        })
    }
}
