//! quant/tensor.rs — range reductions (amax, min/max, per row) with the non-finite check, and
//! weight quantization per tensor or per output channel. Used when a layer is built and by
//! dynamic activation quantization on every forward.

use super::{Convention, Granularity, QuantParams};
use crate::error::{Error, Result};

/// Bits of `|x|` for a finite x compare like the values; anything ≥ this is ±inf or NaN.
pub(crate) const NONFINITE_ABS_BITS: u32 = 0x7f80_0000;

/// Max of the `|x|` bit patterns. Finite values order like their magnitudes; the result is
/// ≥ [`NONFINITE_ABS_BITS`] iff a NaN or ±inf is present. This scan reads every activation once
/// per forward, usually from memory, so x86 runs explicit AVX-512 / AVX2 loops (`vpmaxud`, four
/// independent accumulators): left to itself the compiler turned the portable body into gathers,
/// which made this scan a sixth of a 2048³ forward.
pub(crate) fn max_abs_bits(xs: &[f32]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512F was detected on this CPU just above.
            return unsafe { max_abs_bits_avx512(xs) };
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 was detected on this CPU just above.
            return unsafe { max_abs_bits_avx2(xs) };
        }
    }
    max_abs_bits_tail(xs, 0)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn max_abs_bits_avx512(xs: &[f32]) -> u32 {
    use std::arch::x86_64::*;
    let mask = _mm512_set1_epi32(0x7fff_ffff);
    let mut acc = [_mm512_setzero_si512(); 4];
    let mut blocks = xs.chunks_exact(64);
    for b in &mut blocks {
        for (j, a) in acc.iter_mut().enumerate() {
            // SAFETY: b holds 64 f32s, so lanes 16j .. 16j + 16 are in bounds (unaligned load).
            let v = unsafe { _mm512_loadu_si512(b.as_ptr().add(16 * j).cast()) };
            *a = _mm512_max_epu32(*a, _mm512_and_si512(v, mask));
        }
    }
    let m = _mm512_max_epu32(
        _mm512_max_epu32(acc[0], acc[1]),
        _mm512_max_epu32(acc[2], acc[3]),
    );
    _mm512_reduce_max_epu32(m).max(max_abs_bits_tail(blocks.remainder(), 0))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn max_abs_bits_avx2(xs: &[f32]) -> u32 {
    use std::arch::x86_64::*;
    let mask = _mm256_set1_epi32(0x7fff_ffff);
    let mut acc = [_mm256_setzero_si256(); 4];
    let mut blocks = xs.chunks_exact(32);
    for b in &mut blocks {
        for (j, a) in acc.iter_mut().enumerate() {
            // SAFETY: b holds 32 f32s, so lanes 8j .. 8j + 8 are in bounds (unaligned load).
            let v = unsafe { _mm256_loadu_si256(b.as_ptr().add(8 * j).cast()) };
            *a = _mm256_max_epu32(*a, _mm256_and_si256(v, mask));
        }
    }
    let m = _mm256_max_epu32(
        _mm256_max_epu32(acc[0], acc[1]),
        _mm256_max_epu32(acc[2], acc[3]),
    );
    let mut lanes = [0u32; 8];
    // SAFETY: lanes is 32 bytes, the size of one __m256i (unaligned store).
    unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), m) };
    lanes
        .into_iter()
        .fold(max_abs_bits_tail(blocks.remainder(), 0), u32::max)
}

/// The portable scan (also the tail of the SIMD ones), starting from `m`.
fn max_abs_bits_tail(xs: &[f32], m: u32) -> u32 {
    xs.iter().fold(m, |m, x| m.max(x.to_bits() & 0x7fff_ffff))
}

/// The error for non-finite values in `xs`: how many, and the first.
pub(crate) fn nonfinite_error(tensor: &str, xs: &[f32]) -> Error {
    let mut count = 0;
    let mut first = usize::MAX;
    for (i, x) in xs.iter().enumerate() {
        if !x.is_finite() {
            count += 1;
            first = first.min(i);
        }
    }
    Error::NonFinite {
        tensor: tensor.to_string(),
        count,
        first_index: first,
    }
}

/// `max |x|`; Err naming `tensor` if any value is NaN or ±inf. 0 for an empty slice.
pub fn amax(tensor: &str, xs: &[f32]) -> Result<f32> {
    let bits = max_abs_bits(xs);
    if bits >= NONFINITE_ABS_BITS {
        return Err(nonfinite_error(tensor, xs));
    }
    Ok(f32::from_bits(bits))
}

/// `max |x|` of each row of a `[rows, cols]` matrix.
pub fn amax_rows(
    tensor: &str,
    xs: &[f32],
    rows: usize,
    cols: usize,
    out: &mut [f32],
) -> Result<()> {
    check_matrix(tensor, xs, rows, cols)?;
    if out.len() != rows {
        return Err(Error::shape("amax_rows output", rows, out.len()));
    }
    if cols == 0 {
        out.fill(0.0);
        return Ok(());
    }
    for (row, o) in xs.chunks_exact(cols).zip(out.iter_mut()) {
        let bits = max_abs_bits(row);
        if bits >= NONFINITE_ABS_BITS {
            return Err(nonfinite_error(tensor, xs));
        }
        *o = f32::from_bits(bits);
    }
    Ok(())
}

/// `(min, max)` of the data; Err naming `tensor` on NaN or ±inf. `(0, 0)` for an empty slice.
pub fn minmax(tensor: &str, xs: &[f32]) -> Result<(f32, f32)> {
    if max_abs_bits(xs) >= NONFINITE_ABS_BITS {
        return Err(nonfinite_error(tensor, xs));
    }
    Ok(minmax_finite(xs))
}

/// Row-wise `(min, max)` of a `[rows, cols]` matrix into `lo` and `hi`.
pub fn minmax_rows(
    tensor: &str,
    xs: &[f32],
    rows: usize,
    cols: usize,
    lo: &mut [f32],
    hi: &mut [f32],
) -> Result<()> {
    check_matrix(tensor, xs, rows, cols)?;
    if lo.len() != rows || hi.len() != rows {
        return Err(Error::shape(
            "minmax_rows output",
            rows,
            lo.len().min(hi.len()),
        ));
    }
    if max_abs_bits(xs) >= NONFINITE_ABS_BITS {
        return Err(nonfinite_error(tensor, xs));
    }
    for r in 0..rows {
        let (a, b) = minmax_finite(&xs[r * cols..(r + 1) * cols]);
        lo[r] = a;
        hi[r] = b;
    }
    Ok(())
}

/// The crate's dynamic parameters for one row (symmetric from `max |x|`, asymmetric from the
/// row's min and max); `None` if the row holds NaN or ±inf or its range overflows f32.
pub(crate) fn dynamic_row_params(scheme: super::Scheme, row: &[f32]) -> Option<QuantParams> {
    let bits = max_abs_bits(row);
    if bits >= NONFINITE_ABS_BITS {
        return None;
    }
    match scheme {
        super::Scheme::Symmetric => QuantParams::symmetric(f32::from_bits(bits)).ok(),
        super::Scheme::Asymmetric => {
            let (lo, hi) = minmax_finite(row);
            QuantParams::asymmetric(lo, hi).ok()
        }
    }
}

/// Min and max of finite data (no NaN handling needed), in 8 independent lanes.
fn minmax_finite(xs: &[f32]) -> (f32, f32) {
    if xs.is_empty() {
        return (0.0, 0.0);
    }
    let mut lo = [xs[0]; 8];
    let mut hi = [xs[0]; 8];
    let mut chunks = xs.chunks_exact(8);
    for c in &mut chunks {
        for i in 0..8 {
            lo[i] = if c[i] < lo[i] { c[i] } else { lo[i] };
            hi[i] = if c[i] > hi[i] { c[i] } else { hi[i] };
        }
    }
    let mut l = lo.iter().copied().fold(f32::INFINITY, f32::min);
    let mut h = hi.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for &x in chunks.remainder() {
        l = l.min(x);
        h = h.max(x);
    }
    (l, h)
}

fn check_matrix(tensor: &str, xs: &[f32], rows: usize, cols: usize) -> Result<()> {
    let expected = crate::error::checked_len("matrix", rows, cols)?;
    if xs.len() != expected {
        return Err(Error::Dimension {
            what: "matrix",
            detail: format!(
                "`{tensor}`: [{rows}, {cols}] needs {expected} values, got {}",
                xs.len()
            ),
        });
    }
    Ok(())
}

/// How to quantize a weight matrix `[out, in]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WeightQuantConfig {
    /// [`Granularity::PerChannel`] (one scale per output row, the default) or
    /// [`Granularity::PerTensor`].
    pub granularity: Granularity,
    /// [`Convention::Int8rt`] (narrow `[-127, 127]`, `amax/127`, the default) or
    /// [`Convention::CompressedTensors`] (`[-128, 127]`, `amax/127.5`).
    pub convention: Convention,
}

impl Default for WeightQuantConfig {
    fn default() -> Self {
        WeightQuantConfig {
            granularity: Granularity::PerChannel,
            convention: Convention::Int8rt,
        }
    }
}

/// A quantized weight matrix `[rows = out, cols = in]`, symmetric, with one scale per tensor or per
/// output channel.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedWeights {
    // (private outside the crate: `from_parts` and `quantize_weights` keep them consistent)
    pub(crate) data: Vec<i8>,
    pub(crate) scales: Vec<f32>,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
}

impl QuantizedWeights {
    /// Wrap already-quantized weights (for example loaded from a checkpoint), validating shapes
    /// and scales. The scales are kept exactly as given.
    pub fn from_parts(data: Vec<i8>, scales: Vec<f32>, rows: usize, cols: usize) -> Result<Self> {
        let expected = crate::error::checked_len("weights", rows, cols)?;
        if data.len() != expected {
            return Err(Error::shape("quantized weights", expected, data.len()));
        }
        if scales.len() != 1 && scales.len() != rows {
            return Err(Error::shape(
                "weight scales (1 or rows)",
                rows,
                scales.len(),
            ));
        }
        if let Some(s) = scales.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(Error::param(
                "weight scale",
                format!("must be finite and > 0, got {s}"),
            ));
        }
        Ok(QuantizedWeights {
            data,
            scales,
            rows,
            cols,
        })
    }

    /// Row-major `i8` values `[rows, cols]`.
    pub fn data(&self) -> &[i8] {
        &self.data
    }

    /// One scale (per tensor) or one per row.
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }

    /// Output features.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input features.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The values and scales, by value.
    pub fn into_parts(self) -> (Vec<i8>, Vec<f32>) {
        (self.data, self.scales)
    }

    /// The scale of output channel `n < rows` (the only one, per tensor).
    pub(crate) fn scale(&self, n: usize) -> f32 {
        if self.scales.len() == 1 {
            self.scales[0]
        } else {
            self.scales[n]
        }
    }

    /// Dequantized weights, row-major.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.data.len()];
        if self.cols == 0 {
            return out;
        }
        for (n, (row, o)) in self
            .data
            .chunks_exact(self.cols)
            .zip(out.chunks_exact_mut(self.cols))
            .enumerate()
        {
            let s = self.scale(n);
            for (o, &q) in o.iter_mut().zip(row) {
                *o = q as f32 * s;
            }
        }
        out
    }
}

/// Quantize a weight matrix `[rows, cols]` symmetrically, per tensor or per output channel.
/// Non-finite weights are an error naming `tensor`.
pub fn quantize_weights(
    tensor: &str,
    w: &[f32],
    rows: usize,
    cols: usize,
    cfg: WeightQuantConfig,
) -> Result<QuantizedWeights> {
    check_matrix(tensor, w, rows, cols)?;
    let params_for = |amax: f32| -> Result<QuantParams> {
        match cfg.convention {
            Convention::Int8rt => QuantParams::symmetric(amax),
            Convention::CompressedTensors => {
                QuantParams::from_range(Convention::CompressedTensors, -amax, amax)
            }
            other => Err(Error::Unsupported(format!(
                "weight quantization supports the Int8rt and CompressedTensors conventions, not {other:?}"
            ))),
        }
    };
    let mut data = vec![0i8; w.len()];
    let scales =
        match cfg.granularity {
            Granularity::PerTensor => {
                let p = params_for(amax(tensor, w)?)?;
                p.quantize_to_i8(w, &mut data)?;
                vec![p.scale()]
            }
            Granularity::PerChannel => {
                let mut amaxes = vec![0.0; rows];
                amax_rows(tensor, w, rows, cols, &mut amaxes)?;
                let mut scales = Vec::with_capacity(rows);
                for (r, &a) in amaxes.iter().enumerate() {
                    let p = params_for(a)?;
                    p.quantize_to_i8(
                        &w[r * cols..(r + 1) * cols],
                        &mut data[r * cols..(r + 1) * cols],
                    )?;
                    scales.push(p.scale());
                }
                scales
            }
            Granularity::PerRow => return Err(Error::Unsupported(
                "weights are quantized per tensor or per output channel (PerChannel), not PerRow"
                    .into(),
            )),
        };
    Ok(QuantizedWeights {
        data,
        scales,
        rows,
        cols,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SIMD scans against the portable one: every length around the 32- and 64-lane block
    /// sizes, the largest magnitude (or a NaN / ±inf) planted in the blocks and in the tail.
    #[test]
    fn simd_max_abs_matches_the_portable_scan() {
        let mut seed = 7u32;
        let mut rnd = || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1 << 24) as f32 - 0.5
        };
        for len in (0usize..200).chain([255, 256, 257, 1023, 1024, 1025]) {
            let base: Vec<f32> = (0..len).map(|_| rnd()).collect();
            let check = |xs: &[f32]| {
                let want = max_abs_bits_tail(xs, 0);
                assert_eq!(max_abs_bits(xs), want, "len {}", xs.len());
                #[cfg(target_arch = "x86_64")]
                {
                    if std::is_x86_feature_detected!("avx512f") {
                        // SAFETY: AVX-512F detected just above.
                        assert_eq!(unsafe { max_abs_bits_avx512(xs) }, want);
                    }
                    if std::is_x86_feature_detected!("avx2") {
                        // SAFETY: AVX2 detected just above.
                        assert_eq!(unsafe { max_abs_bits_avx2(xs) }, want);
                    }
                }
            };
            check(&base);
            for at in [0, len / 3, len.saturating_sub(1)] {
                for v in [
                    -7.5f32,
                    3.0,
                    f32::NAN,
                    f32::INFINITY,
                    f32::NEG_INFINITY,
                    -0.0,
                ] {
                    if at < len {
                        let mut xs = base.clone();
                        xs[at] = v;
                        check(&xs);
                    }
                }
            }
        }
        assert!(max_abs_bits(&[1.0, f32::NAN]) >= NONFINITE_ABS_BITS);
        assert_eq!(f32::from_bits(max_abs_bits(&[-2.5, 1.0])), 2.5);
    }
}
