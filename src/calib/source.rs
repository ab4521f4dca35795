//! calib/source.rs — the seam through which the observers see a batch that is not a host slice
//! (a batch in GPU memory: `cuda::calib::DevBatch`, behind the public `cuda::CudaBatch`). A
//! [`BatchSource`] answers the few questions the observers ask of a batch — its range, zeros and
//! non-finite values (one reduction), per-channel ranges, and the bin counts on a grid the
//! observer chose — so the data stay where they are and only these small results travel. Each
//! observer's `observe_source` runs the same book-keeping as its `observe` on the host (shared
//! code where the two meet), so both leave the observer in the same state, bit for bit
//! (`cuda::calib_sim_tests` checks this over the golden inputs).

// Without the `cuda` feature only the simulation tests read batches through this seam.
#![cfg_attr(not(feature = "cuda"), allow(dead_code))]

use super::NonFinite;
use crate::error::{Error, Result};

/// One reduction over a batch: what the observers need besides the bin counts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct BatchStats {
    /// Values in the batch.
    pub len: u64,
    /// NaN and ±inf values.
    pub nonfinite: u64,
    /// Flat index of the first non-finite value (meaningless when `nonfinite == 0`).
    pub first_nonfinite: u64,
    /// Finite values equal to 0 (either sign).
    pub zeros: u64,
    /// `(min, max)` of the finite values; `None` when there are none.
    pub range: Option<(f32, f32)>,
}

impl BatchStats {
    /// The statistics of an empty batch.
    pub const EMPTY: BatchStats = BatchStats {
        len: 0,
        nonfinite: 0,
        first_nonfinite: 0,
        zeros: 0,
        range: None,
    };

    /// Finite values in the batch.
    pub fn finite(&self) -> u64 {
        self.len - self.nonfinite
    }

    /// The same batch with its non-finite values dropped (what a sub-observer of a
    /// [`super::TensorObserver`] sees on the host: the filtered copy).
    pub fn finite_only(&self) -> BatchStats {
        BatchStats {
            len: self.finite(),
            nonfinite: 0,
            first_nonfinite: 0,
            ..*self
        }
    }

    /// The non-finite policy, as [`super::scan_batch`] applies it: `Err(NonFinite)` naming
    /// `tensor` under [`NonFinite::Error`], else the number of values dropped.
    pub fn policy(&self, tensor: &str, policy: NonFinite) -> Result<u64> {
        nonfinite_policy(tensor, policy, self.nonfinite, self.first_nonfinite)
    }
}

/// `Err(NonFinite)` when there are non-finite values and the policy refuses them; else the count.
pub(crate) fn nonfinite_policy(
    tensor: &str,
    policy: NonFinite,
    count: u64,
    first: u64,
) -> Result<u64> {
    if count > 0 && policy == NonFinite::Error {
        return Err(Error::NonFinite {
            tensor: tensor.to_string(),
            count: usize::try_from(count).unwrap_or(usize::MAX),
            first_index: usize::try_from(first).unwrap_or(usize::MAX),
        });
    }
    Ok(count)
}

/// Per-channel ranges of a batch viewed as `[outer, channels, inner]`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ChannelStats {
    /// `(min, max)` of each channel's finite values; `(+inf, -inf)` for a channel with none.
    pub ranges: Vec<(f32, f32)>,
    pub nonfinite: u64,
    pub first_nonfinite: u64,
}

/// A histogram grid and the rule that puts a value into one of its bins; each is the twin of a
/// host rule (named at each variant), and `kernels/calib.cu` implements the same three.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum BinSpec {
    /// `Histogram::bin_of`, [`super::Binning::PytorchQuantization`]: `trunc((|x| · n) / right)`
    /// in f32 with `n = bins as f32` (in f64 when `|x| · n` overflows), clamped to the last bin.
    Scaled { bins: usize, right: f32 },
    /// `Histogram::bin_of`, [`super::Binning::FixedWidth`]: `trunc(|x| / width)`, clamped.
    Width { bins: usize, width: f32 },
    /// `SignedHistogram`: `floor(x / width) as i64 − first`, clamped to `[0, bins − 1]`.
    Signed { bins: usize, width: f32, first: i64 },
}

impl BinSpec {
    /// The number of bins.
    pub fn bins(&self) -> usize {
        match *self {
            BinSpec::Scaled { bins, .. }
            | BinSpec::Width { bins, .. }
            | BinSpec::Signed { bins, .. } => bins,
        }
    }
}

/// A batch the observers can read without holding it as a host slice.
pub(crate) trait BatchSource {
    /// The batch's shape (C order).
    fn shape(&self) -> &[usize];
    /// The batch's [`BatchStats`] (computed once, then cached).
    fn stats(&mut self) -> Result<BatchStats>;
    /// Per-channel ranges with the batch viewed as `[outer, channels, inner]`.
    fn channel_stats(
        &mut self,
        outer: usize,
        channels: usize,
        inner: usize,
    ) -> Result<ChannelStats>;
    /// The count of each bin of `spec` over the batch's finite values (zeros left out when
    /// `skip_zeros`); `spec.bins()` counts.
    fn count_bins(&mut self, spec: BinSpec, skip_zeros: bool) -> Result<Vec<u64>>;
    /// The values themselves, copied to the host (only for the cross-entropy statistic, which
    /// needs every softmax row).
    fn download(&mut self) -> Result<Vec<f32>>;
}

/// Add bin counts from a [`BatchSource`] into an observer's counts.
pub(crate) fn add_counts(counts: &mut [u64], add: &[u64]) -> Result<()> {
    if add.len() != counts.len() {
        return Err(Error::shape("bin counts", counts.len(), add.len()));
    }
    for (c, a) in counts.iter_mut().zip(add) {
        *c += a;
    }
    Ok(())
}
