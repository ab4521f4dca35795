//! qat/fake_quant.rs — fake quantization of a tensor with (learnable) ranges: the forward
//! `y = dequant(quant(x))` over whole slices, per tensor or per channel, and the backward (clipped
//! straight-through estimator for the input, LSQ / LSQ+ gradients for the scale and zero point).
//! The scalar definitions live in [`crate::reference`] (section "fake quantization"); the loops
//! here are tested against them bit for bit. Used by [`super::QatLinear`] on its weights and input.
//!
//! Layout: a tensor is viewed as `[channels, inner]`, row-major; per-channel parameters belong to
//! the rows (for weights `[out, in]`: one per output channel, as `nn::QuantLinear` wants them).

use super::train::Param;
use crate::error::{Error, Result};
use crate::quant::{check_finite, Granularity, QuantParams};
use crate::reference::{self, FAKE_QUANT_MAX_BITS, FAKE_QUANT_MIN_BITS};

/// How a tensor is fake-quantized.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FakeQuantConfig {
    /// Code width, 2..=8 bits (held in `i8` / `u8` containers when converted).
    pub bits: u32,
    /// Symmetric (narrow signed range, zero point 0) or asymmetric (unsigned, with a zero point).
    pub symmetric: bool,
    /// [`Granularity::PerTensor`] or [`Granularity::PerChannel`] (one set per row of the
    /// `[channels, inner]` view).
    pub granularity: Granularity,
    /// Learn the scale (LSQ) rather than keep it frozen at its initial value.
    pub learn_scale: bool,
    /// Learn the zero point (LSQ+; asymmetric only) rather than keep it frozen.
    pub learn_zero_point: bool,
}

impl FakeQuantConfig {
    /// Symmetric per-output-channel weights with a learnable scale (the weight quantizer of a
    /// [`super::QatLinear`]).
    pub fn weights(bits: u32) -> Self {
        FakeQuantConfig {
            bits,
            symmetric: true,
            granularity: Granularity::PerChannel,
            learn_scale: true,
            learn_zero_point: false,
        }
    }

    /// Per-tensor activations with a learnable scale (and zero point when asymmetric).
    pub fn activations(bits: u32, symmetric: bool) -> Self {
        FakeQuantConfig {
            bits,
            symmetric,
            granularity: Granularity::PerTensor,
            learn_scale: true,
            learn_zero_point: !symmetric,
        }
    }

    /// `(qmin, qmax)` of this width and scheme, or an error naming the bad width.
    pub fn range(&self) -> Result<(i32, i32)> {
        reference::fake_quant_range(self.bits, self.symmetric).ok_or_else(|| {
            Error::param(
                "bits",
                format!(
                    "fake quantization supports {FAKE_QUANT_MIN_BITS}..={FAKE_QUANT_MAX_BITS} bits, got {}",
                    self.bits
                ),
            )
        })
    }
}

/// The smallest scale learning may leave: a learnt scale is clamped up to this after every
/// optimizer step (see [`FakeQuantizer::project`]), so a step can never make it 0 or negative.
pub const MIN_LEARNED_SCALE: f32 = 1e-8;

/// The integer zero point the forward uses for a learnt real `z`: rounded (ties to even) and
/// clamped into `[qmin, qmax]`.
#[inline]
fn zero_point_code(z: f32, qmin: i32, qmax: i32) -> i32 {
    reference::round_to_i64(z).clamp(qmin as i64, qmax as i64) as i32
}

/// Whether codes `qmin` and `qmax` (so every code between) dequantize to finite values at
/// `scale` and `zp`, in the reference's arithmetic (`(q − zp) as f32 · scale`).
fn dequantizes_finitely(scale: f32, zp: i32, qmin: i32, qmax: i32) -> bool {
    ((qmax - zp) as f32 * scale).is_finite() && ((qmin - zp) as f32 * scale).is_finite()
}

/// The largest scale at which every code of `[qmin, qmax]` dequantizes to a finite value with
/// zero point `zp` ([`dequantizes_finitely`]).
fn largest_finite_scale(zp: i32, qmin: i32, qmax: i32) -> f32 {
    let span = (qmax - zp).abs().max((qmin - zp).abs()).max(1) as f32;
    let mut s = f32::MAX / span;
    // (f32::MAX / span rounds to nearest, and span · s can round past f32::MAX: one step
    // down, at most a few, ends that)
    while !dequantizes_finitely(s, zp, qmin, qmax) {
        s = s.next_down();
    }
    s
}

/// A fake quantizer: its configuration and its parameters (one scale and one real-valued zero
/// point per channel), with their gradients and optimizer state.
///
/// The zero point is learnt as a real number `z`; the forward uses the integer
/// `zp = clamp(rhe(z), qmin, qmax)` and the gradient passes straight through that rounding.
#[derive(Clone, Debug)]
pub struct FakeQuantizer {
    cfg: FakeQuantConfig,
    qmin: i32,
    qmax: i32,
    /// Scales, one per channel (one for per tensor).
    pub scale: Param,
    /// Real-valued zero points, one per channel; 0 and frozen when symmetric.
    pub zero_point: Param,
}

impl FakeQuantizer {
    /// A quantizer for a tensor with `channels` rows (ignored, taken as 1, per tensor), every
    /// scale 1 and every zero point 0 until [`FakeQuantizer::init_from_ranges`] sets them.
    pub fn new(cfg: FakeQuantConfig, channels: usize) -> Result<Self> {
        let (qmin, qmax) = cfg.range()?;
        let n = match cfg.granularity {
            Granularity::PerTensor => 1,
            Granularity::PerChannel if channels > 0 => channels,
            Granularity::PerChannel => {
                return Err(Error::Dimension {
                    what: "fake-quant channels",
                    detail: "per-channel fake quantization needs at least one channel".into(),
                })
            }
            Granularity::PerRow => {
                return Err(Error::Unsupported(
                    "fake quantization is per tensor or per channel (rows of [channels, inner]), not per row".into(),
                ))
            }
        };
        if cfg.symmetric && cfg.learn_zero_point {
            return Err(Error::Unsupported(
                "a symmetric fake quantizer has zero point 0; it cannot be learnt".into(),
            ));
        }
        Ok(FakeQuantizer {
            cfg,
            qmin,
            qmax,
            scale: Param::new(vec![1.0; n], cfg.learn_scale),
            zero_point: Param::new(vec![0.0; n], cfg.learn_zero_point),
        })
    }

    /// The configuration.
    pub fn config(&self) -> FakeQuantConfig {
        self.cfg
    }
    /// Smallest code.
    pub fn qmin(&self) -> i32 {
        self.qmin
    }
    /// Largest code.
    pub fn qmax(&self) -> i32 {
        self.qmax
    }
    /// Number of parameter sets (1 per tensor).
    pub fn channels(&self) -> usize {
        self.scale.value.len()
    }

    /// Set every channel's parameters from an observed float range `[lo[c], hi[c]]` with the
    /// crate's rules at this width: symmetric `scale = max(|lo|, |hi|) / qmax`; asymmetric
    /// `scale = (hi − lo) / qmax` on the range widened to contain 0, `zp = rhe(−lo / scale)`.
    /// A range whose scale would dequantize a code past f32::MAX (one reaching f32's limits) is
    /// refused, and a refusal leaves every channel as it was.
    pub fn init_from_ranges(&mut self, lo: &[f32], hi: &[f32]) -> Result<()> {
        let n = self.channels();
        if lo.len() != n || hi.len() != n {
            return Err(Error::shape(
                "fake-quant init ranges",
                n,
                lo.len().min(hi.len()),
            ));
        }
        check_finite("fake-quant init lo", lo)?;
        check_finite("fake-quant init hi", hi)?;
        // (every channel's parameters first: a refused channel leaves the quantizer as it was)
        let mut params = Vec::with_capacity(n);
        for c in 0..n {
            if lo[c] > hi[c] {
                return Err(Error::param(
                    "lo/hi",
                    format!("channel {c}: lo {} > hi {}", lo[c], hi[c]),
                ));
            }
            let (s, zp) = if self.cfg.symmetric {
                let amax = lo[c].abs().max(hi[c].abs());
                (reference::symmetric_scale_for(amax, self.qmax), 0)
            } else {
                reference::asymmetric_params_for(lo[c], hi[c], self.qmax)
            };
            self.check_finite_codes(c, s, zp)?;
            params.push((s, zp));
        }
        for (c, (s, zp)) in params.into_iter().enumerate() {
            self.scale.value[c] = s;
            self.zero_point.value[c] = zp as f32;
        }
        Ok(())
    }

    /// Err unless every code of `[qmin, qmax]` dequantizes to a finite value at scale `s` and
    /// zero point `zp` (`(q − zp) · s`, [`reference::fake_quantize`]), so that a finite input
    /// has a finite output: a range reaching f32::MAX can give a scale whose extreme codes do
    /// not (`127 · (f32::MAX / 127)` rounds past it).
    fn check_finite_codes(&self, c: usize, s: f32, zp: i32) -> Result<()> {
        if dequantizes_finitely(s, zp, self.qmin, self.qmax) {
            return Ok(());
        }
        Err(Error::param(
            "scale",
            format!(
                "channel {c}: scale {s:?} with zero point {zp} dequantizes the codes of [{}, {}] \
                 past f32::MAX (at most {:?} here)",
                self.qmin,
                self.qmax,
                largest_finite_scale(zp, self.qmin, self.qmax)
            ),
        ))
    }

    /// Set explicit parameters (scales > 0 and finite, no code dequantizing past f32::MAX; zero
    /// points inside `[qmin, qmax]`, 0 when symmetric), one per channel: each is checked as
    /// [`QuantParams::new`] checks explicit parameters.
    pub fn set_params(&mut self, scales: &[f32], zero_points: &[i32]) -> Result<()> {
        let n = self.channels();
        if scales.len() != n || zero_points.len() != n {
            return Err(Error::shape(
                "fake-quant params",
                n,
                scales.len().min(zero_points.len()),
            ));
        }
        for c in 0..n {
            QuantParams::new(scales[c], zero_points[c], self.qmin, self.qmax)?;
            if self.cfg.symmetric && zero_points[c] != 0 {
                return Err(Error::param(
                    "zero_point",
                    "a symmetric fake quantizer has zero point 0",
                ));
            }
        }
        self.scale.value.copy_from_slice(scales);
        for (z, &zp) in self.zero_point.value.iter_mut().zip(zero_points) {
            *z = zp as f32;
        }
        Ok(())
    }

    /// The scale and integer zero point the forward uses for channel `c`; an error past the last
    /// channel.
    pub fn effective(&self, c: usize) -> Result<(f32, i32)> {
        self.check_params()?;
        if c >= self.channels() {
            return Err(Error::Dimension {
                what: "fake-quant channel",
                detail: format!("channel {c} of a quantizer with {}", self.channels()),
            });
        }
        Ok(self.channel_params(c))
    }

    /// [`FakeQuantizer::effective`] for a channel the caller knows exists (the kernels' loops).
    #[inline]
    pub(crate) fn channel_params(&self, c: usize) -> (f32, i32) {
        let z = self.zero_point.value[c];
        (
            self.scale.value[c],
            zero_point_code(z, self.qmin, self.qmax),
        )
    }

    /// The forward's parameters of channel `c` as [`QuantParams`] (the crate's divide rule).
    pub fn params(&self, c: usize) -> Result<QuantParams> {
        let (s, zp) = self.effective(c)?;
        QuantParams::new(s, zp, self.qmin, self.qmax)
    }

    /// Keep learnt parameters in their domain after an optimizer step: zero points within
    /// `[qmin, qmax]`, scales ≥ [`MIN_LEARNED_SCALE`] and small enough that every code
    /// dequantizes to a finite value with the channel's zero point (a finite input keeps a
    /// finite output).
    pub fn project(&mut self) {
        for z in &mut self.zero_point.value {
            *z = if z.is_nan() {
                0.0
            } else {
                z.clamp(self.qmin as f32, self.qmax as f32)
            };
        }
        for (c, s) in self.scale.value.iter_mut().enumerate() {
            // (the zero point the forward rounds to; 0 for a scale the public fields left
            // without one, which `forward` refuses anyway)
            let z = self.zero_point.value.get(c).copied().unwrap_or(0.0);
            let (qmin, qmax) = (self.qmin, self.qmax);
            let cap = largest_finite_scale(zero_point_code(z, qmin, qmax), qmin, qmax);
            *s = if s.is_nan() {
                MIN_LEARNED_SCALE
            } else {
                s.clamp(MIN_LEARNED_SCALE, cap)
            };
        }
    }

    /// Err unless the (public) scale and zero-point parameters still hold one value and one
    /// gradient per channel.
    fn check_params(&self) -> Result<()> {
        let n = self.channels();
        self.scale.check_size("fake-quant", "scale", n)?;
        self.zero_point.check_size("fake-quant", "zero_point", n)
    }

    /// `inner` for a tensor of `len` elements: `len / channels`, an error when it does not divide
    /// (or when the parameters no longer match the channels, see `check_params`).
    fn inner(&self, what: &'static str, len: usize) -> Result<usize> {
        self.check_params()?;
        let n = self.channels();
        if self.cfg.granularity == Granularity::PerTensor {
            return Ok(len);
        }
        if !len.is_multiple_of(n) {
            return Err(Error::Dimension {
                what,
                detail: format!("{len} elements do not split into {n} channels"),
            });
        }
        Ok(len / n)
    }

    /// `out = fake_quantize(x)` element-wise ([`reference::fake_quantize`], bit for bit). `x` is
    /// `[channels, inner]` for per-channel parameters; NaN or ±inf in `x` is an error naming
    /// `tensor`.
    pub fn forward(&self, tensor: &str, x: &[f32], out: &mut [f32]) -> Result<()> {
        if x.len() != out.len() {
            return Err(Error::shape("fake-quant output", x.len(), out.len()));
        }
        check_finite(tensor, x)?;
        let inner = self.inner("fake-quant input", x.len())?;
        if inner == 0 {
            return Ok(());
        }
        for (c, (xs, ys)) in x.chunks(inner).zip(out.chunks_mut(inner)).enumerate() {
            let (s, zp) = self.channel_params(c);
            fake_quantize_slice(xs, s, zp, self.qmin, self.qmax, ys);
        }
        Ok(())
    }

    /// The integer codes `clamp(rhe(x / scale) + zp, qmin, qmax)` ([`reference::fake_quant_code`]).
    pub fn codes(&self, tensor: &str, x: &[f32]) -> Result<Vec<i32>> {
        check_finite(tensor, x)?;
        let inner = self.inner("fake-quant input", x.len())?;
        let mut q = vec![0i32; x.len()];
        if inner == 0 {
            return Ok(q);
        }
        for (c, (xs, qs)) in x.chunks(inner).zip(q.chunks_mut(inner)).enumerate() {
            let (s, zp) = self.channel_params(c);
            for (o, &v) in qs.iter_mut().zip(xs) {
                *o = reference::fake_quant_code(v, s, zp, self.qmin, self.qmax);
            }
        }
        Ok(q)
    }

    /// Back-propagate `dy` (the gradient of the loss with respect to this quantizer's output)
    /// through the forward at `x`: writes `dx = dy · ∂y/∂x` (clipped STE) and, where learnt, adds
    /// `g · Σ dy · ∂y/∂scale` to the scale's gradient and `Σ dy · ∂y/∂zp` to the zero point's,
    /// per channel, with LSQ's `g = 1 / sqrt(inner · qmax)` ([`reference::lsq_grad_scale`]).
    /// Sums run in f64, in element order.
    pub fn backward(&mut self, x: &[f32], dy: &[f32], dx: &mut [f32]) -> Result<()> {
        if dy.len() != x.len() || dx.len() != x.len() {
            return Err(Error::shape(
                "fake-quant gradient",
                x.len(),
                dy.len().min(dx.len()),
            ));
        }
        let inner = self.inner("fake-quant input", x.len())?;
        if inner == 0 {
            return Ok(());
        }
        let g = reference::lsq_grad_scale(inner, self.qmax) as f64;
        for c in 0..x.len() / inner {
            let (s, zp) = self.channel_params(c);
            let r = c * inner..(c + 1) * inner;
            let (mut ds, mut dz) = (0f64, 0f64);
            for ((&xv, &d), o) in x[r.clone()].iter().zip(&dy[r.clone()]).zip(&mut dx[r]) {
                let gr = reference::fake_quantize_grad(xv, s, zp, self.qmin, self.qmax);
                *o = d * gr.dx;
                ds += d as f64 * gr.dscale as f64;
                dz += d as f64 * gr.dzero_point as f64;
            }
            if self.scale.trainable {
                self.scale.grad[c] += (g * ds) as f32;
            }
            if self.zero_point.trainable {
                self.zero_point.grad[c] += dz as f32;
            }
        }
        Ok(())
    }
}

/// `ys[i] = fake_quantize(xs[i])` for finite `xs` (the caller checked), in a form that
/// vectorizes: `(clamp(rhe(x / s), qmin − zp, qmax − zp) + 0) · s` in f32, which equals the
/// reference's `(clamp(rhe(x / s) + zp, qmin, qmax) − zp) as f32 · s` because `rhe(x / s)` is
/// integer-valued and the bounds are exact in f32; the `+ 0` turns the `−0` that `rhe` gives for
/// small negative `x` into the `+0` of the reference's integer (so `y` is `+0`, not `−0`). On x86-64 the same body is compiled again with AVX2 (one `vroundps`
/// instead of a library call per element) and chosen at run time.
pub(crate) fn fake_quantize_slice(
    xs: &[f32],
    s: f32,
    zp: i32,
    qmin: i32,
    qmax: i32,
    ys: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 was detected on this CPU just above; the body only needs AVX2.
            return unsafe { fake_quantize_avx2(xs, s, zp, qmin, qmax, ys) };
        }
    }
    fake_quantize_body(xs, s, zp, qmin, qmax, ys)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn fake_quantize_avx2(xs: &[f32], s: f32, zp: i32, qmin: i32, qmax: i32, ys: &mut [f32]) {
    fake_quantize_body(xs, s, zp, qmin, qmax, ys)
}

#[inline(always)]
fn fake_quantize_body(xs: &[f32], s: f32, zp: i32, qmin: i32, qmax: i32, ys: &mut [f32]) {
    let (lo, hi) = ((qmin - zp) as f32, (qmax - zp) as f32);
    for (y, &x) in ys.iter_mut().zip(xs) {
        *y = ((x / s).round_ties_even().max(lo).min(hi) + 0.0) * s;
    }
}
