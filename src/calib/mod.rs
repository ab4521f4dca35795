//! calib — range calibration: streaming observers that see batches one at a time in bounded
//! memory, and the range methods that turn what they saw into an `amax` or a `[lo, hi]` range
//! (DESIGN.md §3). It sits before [`crate::quant`] in the flow: a range from here becomes a
//! [`crate::quant::QuantParams`], which [`crate::nn::QuantLinear`] freezes as its static
//! activation scale (see [`crate::nn::calibration`] for whole-model calibration runs).
//!
//! - [`MaxObserver`], [`MinMaxObserver`] (per tensor, or per channel along any axis) and
//!   [`MovingAverageMinMaxObserver`] (torch.ao's exponential moving average).
//! - [`Histogram`]: the histogram of `|x|` of NVIDIA pytorch-quantization's `HistogramCalibrator`,
//!   bit for bit (2048 bins over `[0, max]`, fixed width, grown by appending bins, torch.histc's f32
//!   bin rule, torch's linspace/arange edges), counting in `u64`. Range methods on it:
//!   [`percentile_amax`], [`mse_amax`], [`entropy_amax`] (signed and unsigned variants).
//! - [`SignedHistogram`]: a histogram of `x` on a grid anchored at 0, for asymmetric ranges.
//! - [`CrossEntropyObserver`]: Qualcomm's cross-entropy range search for logits that feed a softmax.
//! - [`TensorObserver`]: everything above for one named tensor, and [`Method`] to pick a range.
//! - Batches in GPU memory: every observer above also has an `observe_cuda` (feature `cuda`,
//!   taking a [`crate::cuda::CudaBatch`]) that reduces and bins on the device
//!   (`kernels/calib.cu`) and leaves the observer in the state `observe` of the same values
//!   would, bit for bit; only the batch's range and the bin counts come to the host.
//!
//! All observers are `Send`, hold memory independent of the number of batches, and `merge` with
//! an observer that saw other data. NaN and ±inf are an [`Error::NonFinite`] naming the tensor,
//! unless [`NonFinite::Skip`] was chosen (then they are counted, see `nonfinite_skipped`).
//! Degenerate data (all zeros, a constant, one value) gives a finite range; a zero range becomes
//! scale 1 in [`crate::quant::QuantParams`], never a division by zero.

mod cross_entropy;
mod histogram;
mod kernels;
mod methods;
mod minmax;
mod observer;
mod signed;
pub(crate) mod source;

pub use cross_entropy::{CrossEntropyConfig, CrossEntropyObserver};
pub use histogram::{
    torch_arange_f32, torch_linspace_f32, Binning, Histogram, HistogramConfig, DEFAULT_BINS,
    DEFAULT_MAX_BINS,
};
pub use methods::{
    entropy_amax, entropy_amax_reference, entropy_divergences_reference, mse_amax, percentile_amax,
    EntropyOptions, MseOptions,
};
pub use minmax::{MaxObserver, MinMaxObserver, MovingAverageMinMaxObserver};
pub use observer::{AmaxMethod, Method, ObserverConfig, RangeMethod, TensorObserver};
pub use signed::SignedHistogram;

use std::borrow::Cow;

use crate::error::{Error, Result};

/// What an observer does with NaN and ±inf.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum NonFinite {
    /// Refuse the batch with [`Error::NonFinite`] (naming the tensor and counting the values).
    #[default]
    Error,
    /// Drop the non-finite values, count them, and observe the rest.
    Skip,
}

/// `|x|` bit patterns at or above this are ±inf or NaN; the SIMD scan is shared with dynamic
/// activation quantization.
pub(crate) use crate::quant::{max_abs_bits, NONFINITE_ABS_BITS};

/// `max |x|` of finite data (0 for an empty slice).
#[inline]
pub(crate) fn max_abs(xs: &[f32]) -> f32 {
    f32::from_bits(max_abs_bits(xs))
}

/// `(min, max)` of finite, non-empty data, in 8 independent lanes.
pub(crate) fn min_max(xs: &[f32]) -> (f32, f32) {
    let first = xs.first().copied().unwrap_or(0.0);
    let mut lo = [first; 8];
    let mut hi = [first; 8];
    let mut chunks = xs.chunks_exact(8);
    for c in &mut chunks {
        for i in 0..8 {
            lo[i] = if c[i] < lo[i] { c[i] } else { lo[i] };
            hi[i] = if c[i] > hi[i] { c[i] } else { hi[i] };
        }
    }
    let mut l = lo.iter().copied().fold(first, f32::min);
    let mut h = hi.iter().copied().fold(first, f32::max);
    for &x in chunks.remainder() {
        l = l.min(x);
        h = h.max(x);
    }
    (l, h)
}

/// Count and locate the non-finite values of `xs`.
pub(crate) fn nonfinite_error(tensor: &str, xs: &[f32]) -> Error {
    let count = xs.iter().filter(|x| !x.is_finite()).count();
    let first_index = xs.iter().position(|x| !x.is_finite()).unwrap_or(0);
    Error::NonFinite {
        tensor: tensor.to_string(),
        count,
        first_index,
    }
}

/// A batch after the non-finite policy: its finite values, how many were dropped, and their
/// `(min, max)` (`None` when no value is left).
pub(crate) struct Batch<'a> {
    pub data: Cow<'a, [f32]>,
    pub dropped: u64,
    pub range: Option<(f32, f32)>,
}

/// One pass over `xs` (min, max, non-finite), then `policy`: the slice itself when it is all
/// finite, a filtered copy under [`NonFinite::Skip`], or [`Error::NonFinite`].
pub(crate) fn scan_batch<'a>(tensor: &str, xs: &'a [f32], policy: NonFinite) -> Result<Batch<'a>> {
    let s = kernels::scan(xs);
    if !s.nonfinite {
        return Ok(Batch {
            data: Cow::Borrowed(xs),
            dropped: 0,
            range: (s.lo <= s.hi).then_some((s.lo, s.hi)),
        });
    }
    match policy {
        NonFinite::Error => Err(nonfinite_error(tensor, xs)),
        NonFinite::Skip => {
            let kept: Vec<f32> = xs.iter().copied().filter(|x| x.is_finite()).collect();
            let s = kernels::scan(&kept);
            Ok(Batch {
                dropped: (xs.len() - kept.len()) as u64,
                range: (s.lo <= s.hi).then_some((s.lo, s.hi)),
                data: Cow::Owned(kept),
            })
        }
    }
}

/// The finite values of a batch under `policy` and the number dropped (see [`scan_batch`]).
pub(crate) fn finite_values<'a>(
    tensor: &str,
    xs: &'a [f32],
    policy: NonFinite,
) -> Result<(Cow<'a, [f32]>, u64)> {
    let b = scan_batch(tensor, xs, policy)?;
    Ok((b.data, b.dropped))
}

/// `(outer, channels, inner)` of a C-order `shape` split at `axis`, checking that `len` matches.
pub(crate) fn split_axis(
    tensor: &str,
    shape: &[usize],
    axis: usize,
    len: usize,
) -> Result<(usize, usize, usize)> {
    check_shape(tensor, shape, len)?;
    if axis >= shape.len() {
        return Err(Error::Dimension {
            what: "calibration axis",
            detail: format!(
                "`{tensor}`: axis {axis} is out of range for shape {shape:?} ({} dims)",
                shape.len()
            ),
        });
    }
    let outer = shape[..axis].iter().product();
    let inner = shape[axis + 1..].iter().product();
    Ok((outer, shape[axis], inner))
}

/// The element count of `shape`, or an error when it overflows `usize`.
pub(crate) fn check_len(tensor: &str, shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| Error::Dimension {
            what: "tensor shape",
            detail: format!("`{tensor}`: {shape:?} overflows usize"),
        })
}

/// Check that `shape`'s element count is `len`: [`Error::Shape`] when it is not, as a device
/// batch whose shape exceeds its buffer is; [`Error::Dimension`] when it overflows.
pub(crate) fn check_shape(tensor: &str, shape: &[usize], len: usize) -> Result<()> {
    let count = check_len(tensor, shape)?;
    if count != len {
        return Err(Error::shape("calibration batch", count, len));
    }
    Ok(())
}

/// The error for an observer asked for a range before it saw any data.
pub(crate) fn no_data(tensor: &str) -> Error {
    Error::Calibration {
        tensor: tensor.to_string(),
        detail: "the observer has seen no data (feed at least one non-empty batch)".into(),
    }
}
