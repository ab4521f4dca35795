//! calib/histogram.rs — the histogram of `|x|` that NVIDIA pytorch-quantization's
//! `HistogramCalibrator` (torch path, the default) builds, reproduced bit for bit, counting in `u64`.
//! Observers feed it batch by batch; [`super::methods`] turns it into an `amax`.
//!
//! The reference's rules (CALIBRATION-NOTES.md §1.3, checked against its own histograms in
//! `tests/data/calibration-golden/`):
//! - first batch: `hist = torch.histc(|x|, bins=2048, min=0, max=max|x|)`,
//!   `edges = torch.linspace(0, max|x|, 2049)` (float32);
//! - a later batch whose `max|x|` exceeds `edges[-1]`: `width = edges[1] - edges[0]`,
//!   `n = ceil(max|x| / width)` (f32), `edges = torch.arange(0, max|x| + width, width)`; the old counts
//!   go into the first bins of the new histogram: bins are appended, never re-binned;
//! - every batch: `torch.histc(|x|, bins=n, min=0, max=edges[-1])`, whose bin index is
//!   `trunc((x · n) / edges[-1])` computed in f32, with `x == edges[-1]` in the last bin.
//!
//! Where this differs from the reference, on purpose (each only where the reference fails):
//! counts are `u64` (torch.histc counts in f32 and stops at 2^24 per bin); a first batch of zeros
//! followed by non-zero data re-seeds the grid (the reference divides by a zero width and raises);
//! growth past [`HistogramConfig::max_bins`] coarsens by merging pairs of bins (the reference would
//! allocate without bound); a value within an ulp above `edges[-1]` after growth goes to the last
//! bin (the reference drops it).

use super::kernels::{self, BinRule};
use super::source::{add_counts, BatchSource, BatchStats, BinSpec};
use super::{no_data, scan_batch, NonFinite};
use crate::error::{Error, Result};

/// The number of bins of the reference's first batch.
pub const DEFAULT_BINS: usize = 2048;

/// Default cap on the number of bins a histogram may grow to (8 MiB of `u64` counts).
pub const DEFAULT_MAX_BINS: usize = 1 << 20;

/// How a value is assigned to a bin.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Binning {
    /// torch.histc over the current extent: `trunc((x · n) / edges[-1])` in f32. Bit-compatible
    /// with pytorch-quantization, including after growth. Merging two histograms with the same
    /// width adds their counts; it equals one histogram that saw all the data exactly when no
    /// growth happened in between (the bin of a value near a boundary depends on the extent).
    #[default]
    PytorchQuantization,
    /// Bin `k = trunc(x / width)` in f32, i.e. `[k·w, (k+1)·w)`, and the histogram grows until
    /// the bin of its largest value exists: a value's bin depends only on the width, so merging
    /// histograms with the same width is exact whatever their extents and batch order. For a
    /// power-of-two first batch (2048 bins) the width and every interior bin equal the
    /// reference's (`(x · n) / max` and `x / (max / n)` are the same rounding); the maximum itself
    /// opens one more bin instead of joining the last one.
    FixedWidth,
}

/// Histogram options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistogramConfig {
    /// Bins of the first batch (the reference's `num_bins`, 2048).
    pub bins: usize,
    /// The bin rule.
    pub binning: Binning,
    /// Drop exact zeros before binning (the reference's `skip_zeros`).
    pub skip_zeros: bool,
    /// What to do with NaN and ±inf.
    pub nonfinite: NonFinite,
    /// Growth past this many bins coarsens the histogram by merging pairs of bins.
    pub max_bins: usize,
}

impl Default for HistogramConfig {
    fn default() -> Self {
        HistogramConfig {
            bins: DEFAULT_BINS,
            binning: Binning::PytorchQuantization,
            skip_zeros: false,
            nonfinite: NonFinite::Error,
            max_bins: DEFAULT_MAX_BINS,
        }
    }
}

/// A histogram of `|x|` over `[0, edges[-1]]` with a fixed bin width.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    name: String,
    cfg: HistogramConfig,
    /// One count per bin.
    counts: Vec<u64>,
    /// The reference's edges; `edges.len() ≥ counts.len() + 1` (torch.arange may give one more).
    edges: Vec<f32>,
    /// Values binned so far.
    total: u64,
    batches: u64,
    nonfinite_skipped: u64,
    zeros_skipped: u64,
    /// Signed extremes of the finite values seen (zeros included).
    min: f32,
    max: f32,
}

/// `torch.linspace(0, end, steps)` in float32 on the CPU (torch 2.x): the step is computed in
/// double, the first half of the points count up from 0 and the second half down from `end`, so
/// the last point is `end` exactly.
pub fn torch_linspace_f32(end: f32, steps: usize) -> Vec<f32> {
    if steps == 0 {
        return Vec::new();
    }
    if steps == 1 {
        return vec![0.0];
    }
    let step = end as f64 / (steps - 1) as f64;
    let half = steps / 2;
    (0..steps)
        .map(|i| {
            if i < half {
                (step * i as f64) as f32
            } else {
                (end as f64 - step * (steps - 1 - i) as f64) as f32
            }
        })
        .collect()
}

/// `torch.arange(0, end, step)` in float32 on an x86 CPU with AVX2 (torch 2.x): the length is
/// `ceil(end / step)` in double; the kernel writes 16 values per iteration as two 8-lane vectors,
/// each lane `f32(f64(base) + k · step)` with `base = f32(idx · step)`, and the tail as
/// `f32(idx · step)`. This reproduces the reference's grown edges exactly; torch on an AVX-512
/// machine (16 lanes) differs by an ulp at some edges.
pub fn torch_arange_f32(step: f32, end: f32) -> Vec<f32> {
    let step = step as f64;
    if !(step.is_finite() && end.is_finite()) || step <= 0.0 || end <= 0.0 {
        return vec![0.0];
    }
    let n = (end as f64 / step).ceil();
    if !n.is_finite() || n < 1.0 {
        return vec![0.0];
    }
    let n = n as usize;
    const LANES: usize = 8;
    let mut out = vec![0.0f32; n];
    let mut i = 0;
    while i + 2 * LANES <= n {
        for v in 0..2 {
            let b = i + v * LANES;
            let base = (step * b as f64) as f32 as f64;
            for k in 0..LANES {
                out[b + k] = (base + k as f64 * step) as f32;
            }
        }
        i += 2 * LANES;
    }
    for (j, o) in out.iter_mut().enumerate().skip(i) {
        *o = (step * j as f64) as f32;
    }
    out
}

/// `f32(k · width)` for `k = 0..=n` (the [`Binning::FixedWidth`] grid).
fn fixed_edges(width: f32, n: usize) -> Vec<f32> {
    (0..=n).map(|k| (k as f64 * width as f64) as f32).collect()
}

/// `k ≥ 1` with `fine · 2^k == coarse` exactly, if there is one.
pub(crate) fn pow2_steps(fine: f32, coarse: f32) -> Option<u32> {
    let mut w = fine;
    for k in 1..64 {
        w *= 2.0;
        if w == coarse {
            return Some(k);
        }
        if w > coarse || !w.is_finite() {
            return None;
        }
    }
    None
}

impl Histogram {
    /// An empty histogram for the tensor `name` (named in errors).
    pub fn new(name: &str, cfg: HistogramConfig) -> Result<Self> {
        if cfg.bins == 0 || cfg.bins > cfg.max_bins {
            return Err(Error::param(
                "bins",
                format!(
                    "need 1 ≤ bins ≤ max_bins ({}), got {}",
                    cfg.max_bins, cfg.bins
                ),
            ));
        }
        Ok(Histogram {
            name: name.to_string(),
            cfg,
            counts: Vec::new(),
            edges: Vec::new(),
            total: 0,
            batches: 0,
            nonfinite_skipped: 0,
            zeros_skipped: 0,
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
        })
    }

    /// A histogram whose grid is fixed up front as if a first batch had `max|x| = amax`
    /// (`cfg.bins` bins over `[0, amax]`), with no counts. Shards seeded with the same `amax` have
    /// the same width and merge exactly (see [`Binning`]).
    pub fn with_range(name: &str, cfg: HistogramConfig, amax: f32) -> Result<Self> {
        if !(amax.is_finite() && amax > 0.0) {
            return Err(Error::param(
                "amax",
                format!("a seeded range needs a finite amax > 0, got {amax}"),
            ));
        }
        let mut h = Histogram::new(name, cfg)?;
        h.init_grid(amax);
        Ok(h)
    }

    /// Rebuild a histogram from stored counts and edges (for example the reference's own,
    /// saved as `.npy`). `edges` must start at 0, increase, and have at least `counts.len() + 1`
    /// entries.
    pub fn from_parts(
        name: &str,
        cfg: HistogramConfig,
        counts: Vec<u64>,
        edges: Vec<f32>,
    ) -> Result<Self> {
        if counts.is_empty() || edges.len() < counts.len() + 1 {
            return Err(Error::shape(
                "histogram edges (counts + 1)",
                counts.len() + 1,
                edges.len(),
            ));
        }
        if edges[0] != 0.0
            || edges.windows(2).any(|w| w[1] < w[0])
            || !edges.iter().all(|e| e.is_finite())
        {
            return Err(Error::param(
                "edges",
                "must start at 0, be finite and non-decreasing",
            ));
        }
        let mut h = Histogram::new(
            name,
            HistogramConfig {
                max_bins: cfg.max_bins.max(counts.len()),
                ..cfg
            },
        )?;
        h.total = counts.iter().sum();
        h.batches = 1;
        h.min = 0.0;
        h.max = *edges.last().unwrap_or(&0.0);
        h.counts = counts;
        h.edges = edges;
        Ok(h)
    }

    /// The tensor this histogram belongs to.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The options.
    pub fn config(&self) -> &HistogramConfig {
        &self.cfg
    }
    /// One count per bin (empty before the first batch).
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }
    /// The reference's bin edges (`counts().len() + 1` entries, or one more after some growths).
    pub fn edges(&self) -> &[f32] {
        &self.edges
    }
    /// The bin width `edges[1] - edges[0]` (0 before the first batch or for all-zero data).
    pub fn width(&self) -> f32 {
        if self.edges.len() >= 2 {
            self.edges[1] - self.edges[0]
        } else {
            0.0
        }
    }
    /// Values counted so far.
    pub fn total(&self) -> u64 {
        self.total
    }
    /// Batches observed (empty ones included).
    pub fn batches(&self) -> u64 {
        self.batches
    }
    /// NaN / ±inf values dropped under [`NonFinite::Skip`].
    pub fn nonfinite_skipped(&self) -> u64 {
        self.nonfinite_skipped
    }
    /// Exact zeros dropped under `skip_zeros`.
    pub fn zeros_skipped(&self) -> u64 {
        self.zeros_skipped
    }
    /// `(min, max)` of the signed finite values seen, if any.
    pub fn min_max(&self) -> Option<(f32, f32)> {
        (self.min <= self.max).then_some((self.min, self.max))
    }
    /// Whether no value has been counted.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Observe one batch.
    pub fn observe(&mut self, xs: &[f32]) -> Result<()> {
        let batch = scan_batch(&self.name, xs, self.cfg.nonfinite)?;
        self.nonfinite_skipped += batch.dropped;
        self.batches += 1;
        let Some((lo, hi)) = batch.range else {
            return Ok(());
        };
        let data = &batch.data[..];
        let zeros = if self.cfg.skip_zeros {
            data.iter().filter(|&&x| x == 0.0).count() as u64
        } else {
            0
        };
        if let Some(xmax) = self.begin_batch(lo, hi, data.len() as u64, zeros) {
            self.bin_values(data, xmax);
            if zeros > 0 {
                // The kernel binned the zeros into bin 0; take them out again.
                self.counts[0] -= zeros;
            }
        }
        Ok(())
    }

    /// The book-keeping of a batch of `finite` finite values spanning `[lo, hi]`, `zeros` of
    /// them skipped zeros: extremes, counters, the grid (first batch, re-seed or growth), and the
    /// all-zero case. Returns the batch's `max |x|` when its values still have to be binned on
    /// the grid as it is now (shared by [`Histogram::observe`] and the device path).
    fn begin_batch(&mut self, lo: f32, hi: f32, finite: u64, zeros: u64) -> Option<f32> {
        self.min = self.min.min(lo);
        self.max = self.max.max(hi);
        self.zeros_skipped += zeros;
        let n_values = finite - zeros;
        if n_values == 0 {
            return None;
        }
        self.total += n_values;
        let xmax = lo.abs().max(hi.abs());
        self.prepare_grid(xmax);
        if self.right() == 0.0 {
            // All values so far are 0 (xmax == 0). torch.histc widens a [0, 0] range to [-1, 1],
            // which puts every 0 in the middle bin; the reference's edges are all 0.
            let mid = self.counts.len() / 2;
            self.counts[mid] += n_values;
            return None;
        }
        Some(xmax)
    }

    /// Observe a batch that lives elsewhere (GPU memory): one reduction for its range, the grid
    /// decided here from it, the bins counted where the data are. Leaves the histogram as
    /// [`Histogram::observe`] of the same values would, and untouched when the batch is refused.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))] // the device path (`observe_cuda`)
    pub(crate) fn observe_source<S: BatchSource>(&mut self, src: &mut S) -> Result<()> {
        let st = src.stats()?;
        let dropped = st.policy(&self.name, self.cfg.nonfinite)?;
        let mut next = self.clone();
        next.observe_stats(src, &st, dropped)?;
        *self = next;
        Ok(())
    }

    /// [`Histogram::observe_source`] after the non-finite policy (`dropped` values dropped).
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))] // the device path (`observe_cuda`)
    pub(crate) fn observe_stats<S: BatchSource>(
        &mut self,
        src: &mut S,
        st: &BatchStats,
        dropped: u64,
    ) -> Result<()> {
        self.nonfinite_skipped += dropped;
        self.batches += 1;
        let Some((lo, hi)) = st.range else {
            return Ok(());
        };
        let zeros = if self.cfg.skip_zeros { st.zeros } else { 0 };
        if self.begin_batch(lo, hi, st.finite(), zeros).is_some() {
            let add = src.count_bins(self.bin_spec(), self.cfg.skip_zeros)?;
            add_counts(&mut self.counts, &add)?;
        }
        Ok(())
    }

    /// The current grid and bin rule, for a [`BatchSource`] to count into (`right > 0`).
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))] // the device path (`observe_cuda`)
    fn bin_spec(&self) -> BinSpec {
        let bins = self.counts.len();
        match self.cfg.binning {
            Binning::PytorchQuantization => BinSpec::Scaled {
                bins,
                right: self.right(),
            },
            Binning::FixedWidth => BinSpec::Width {
                bins,
                width: self.width(),
            },
        }
    }

    /// The right edge of the histogram (`edges[-1]`).
    fn right(&self) -> f32 {
        self.edges.last().copied().unwrap_or(0.0)
    }

    /// First batch, re-seed after all-zero data, or growth, so that the grid covers `xmax`.
    fn prepare_grid(&mut self, xmax: f32) {
        if self.edges.is_empty() {
            if xmax > 0.0 {
                self.init_grid(xmax);
            } else {
                self.counts = vec![0; self.cfg.bins];
                self.edges = vec![0.0; self.cfg.bins + 1];
            }
            return;
        }
        let width = self.width();
        let ratio = xmax / width;
        let covered = match self.cfg.binning {
            Binning::PytorchQuantization => xmax <= self.right(),
            Binning::FixedWidth => {
                xmax == 0.0 || (ratio.is_finite() && (ratio as usize) < self.counts.len())
            }
        };
        if covered {
            return;
        }
        if self.right() == 0.0 || width <= 0.0 || !ratio.is_finite() {
            // All data so far were 0 (or the width underflowed): start a fresh grid over
            // [0, xmax] and put the old counts where their right edge falls.
            let old_total: u64 = self.counts.iter().sum();
            let old_right = self.right();
            self.init_grid(xmax);
            let bin = self.bin_of(old_right);
            self.counts[bin] += old_total;
            return;
        }
        let mut width = width;
        let binning = self.cfg.binning;
        let needed = |w: f32| -> usize {
            match binning {
                // pytorch-quantization: n = ceil(xmax / width) in f32.
                Binning::PytorchQuantization => (xmax / w).ceil() as usize,
                // The bin of xmax must exist.
                Binning::FixedWidth => (xmax / w) as usize + 1,
            }
        };
        let mut n = needed(width).max(self.counts.len());
        while n > self.cfg.max_bins {
            self.coarsen();
            width = self.width();
            n = needed(width).max(self.counts.len());
        }
        self.counts.resize(n, 0);
        self.edges = match self.cfg.binning {
            Binning::PytorchQuantization => torch_arange_f32(width, xmax + width),
            Binning::FixedWidth => fixed_edges(width, n),
        };
        self.fix_edges();
    }

    /// The first-batch grid: `cfg.bins` bins over `[0, xmax]` with torch.linspace edges (the
    /// reference); under [`Binning::FixedWidth`] the same width, extended to hold `xmax`'s bin.
    fn init_grid(&mut self, xmax: f32) {
        self.counts = vec![0; self.cfg.bins];
        self.edges = torch_linspace_f32(xmax, self.cfg.bins + 1);
        if self.cfg.binning == Binning::FixedWidth {
            let w = self.width();
            if w > 0.0 {
                let n = ((xmax / w) as usize + 1).max(self.cfg.bins);
                self.counts.resize(n, 0);
                self.edges = fixed_edges(w, n);
            }
        }
    }

    /// Keep `edges.len() ≥ counts.len() + 1`, extending with `f32(i · width)` if torch.arange gave
    /// fewer points than bins.
    fn fix_edges(&mut self) {
        let w = self.width() as f64;
        while self.edges.len() < self.counts.len() + 1 {
            let i = self.edges.len();
            self.edges.push((i as f64 * w) as f32);
        }
    }

    /// Merge pairs of bins: twice the width, half the bins (exact with respect to the new grid).
    fn coarsen(&mut self) {
        let w = self.width();
        let counts: Vec<u64> = self.counts.chunks(2).map(|c| c.iter().sum()).collect();
        self.edges = match self.cfg.binning {
            Binning::PytorchQuantization => {
                let right = counts.len() as f32 * 2.0 * w;
                torch_arange_f32(2.0 * w, right + w)
            }
            Binning::FixedWidth => fixed_edges(2.0 * w, counts.len()),
        };
        self.counts = counts;
        self.fix_edges();
    }

    /// The bin of one value under the configured rule (`x ≥ 0`).
    fn bin_of(&self, x: f32) -> usize {
        let n = self.counts.len();
        let right = self.right();
        if n == 0 || right <= 0.0 {
            return n / 2;
        }
        let pos = match self.cfg.binning {
            Binning::PytorchQuantization => {
                let t = x * n as f32;
                if t.is_finite() {
                    t / right
                } else {
                    ((x as f64 * n as f64) / right as f64) as f32
                }
            }
            Binning::FixedWidth => x / self.width(),
        };
        (pos as usize).min(n - 1)
    }

    /// Bin finite values whose `max |x|` is `xmax ≤ right` (or within an ulp of it after growth).
    fn bin_values(&mut self, xs: &[f32], xmax: f32) {
        let n = self.counts.len();
        let right = self.right();
        let nf = n as f32;
        // The fast kernel needs every bin position finite, bins exact in f32 (n ≤ 2^24) and, for
        // torch's rule, `x ≤ right`.
        let fast = n <= 1 << 24
            && match self.cfg.binning {
                Binning::PytorchQuantization => (xmax * nf).is_finite() && xmax <= right,
                Binning::FixedWidth => (xmax / self.width()).is_finite(),
            };
        if !fast {
            for &x in xs {
                let b = self.bin_of(x.abs());
                self.counts[b] += 1;
            }
            return;
        }
        let rule = match self.cfg.binning {
            Binning::PytorchQuantization => BinRule::Scaled { n: nf, right },
            Binning::FixedWidth => BinRule::Width {
                width: self.width(),
            },
        };
        kernels::count_bins(&mut self.counts, xs, rule);
    }

    /// Add another histogram of the same tensor kind into this one. With equal widths the
    /// counts add bin by bin (exact); with different widths the other's bins are re-binned by
    /// their centres into this grid (approximate: within one bin of the coarser width). `self`
    /// is taken as the observer that saw the earlier batches.
    pub fn merge(&mut self, other: &Histogram) -> Result<()> {
        if self.cfg.skip_zeros != other.cfg.skip_zeros {
            return Err(Error::Calibration {
                tensor: self.name.clone(),
                detail: "cannot merge histograms with different skip_zeros settings".into(),
            });
        }
        self.batches += other.batches;
        self.nonfinite_skipped += other.nonfinite_skipped;
        self.zeros_skipped += other.zeros_skipped;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        if other.total == 0 {
            return Ok(());
        }
        if self.total == 0 && self.edges.is_empty() {
            self.counts = other.counts.clone();
            self.edges = other.edges.clone();
            self.total = other.total;
            return Ok(());
        }
        let other_right = other.right();
        if other_right == 0.0 {
            // The other saw only zeros.
            if self.right() == 0.0 {
                let mid = self.counts.len() / 2;
                self.counts[mid] += other.total;
            } else {
                self.counts[0] += other.total;
            }
            self.total += other.total;
            return Ok(());
        }
        if self.right() == 0.0 {
            // This one saw only zeros: take the other's grid and put the zeros in bin 0.
            let zeros = self.total;
            self.counts = other.counts.clone();
            self.edges = other.edges.clone();
            self.counts[0] += zeros;
            self.total += other.total;
            return Ok(());
        }
        // Widths a power of two apart (one side coarsened more): coarsen the finer one. Exact,
        // since every grid is anchored at 0.
        let mut other = other.clone();
        if let Some(k) = pow2_steps(self.width(), other.width()) {
            for _ in 0..k {
                self.coarsen();
            }
        } else if let Some(k) = pow2_steps(other.width(), self.width()) {
            for _ in 0..k {
                other.coarsen();
            }
        }
        let (mut sc, mut oc) = (self.counts.clone(), other.counts.clone());
        if self.width() == other.width() {
            // Same grid: align bin k with bin k.
            if oc.len() > sc.len() {
                std::mem::swap(&mut sc, &mut oc);
                self.edges = other.edges.clone();
            }
            for (a, b) in sc.iter_mut().zip(&oc) {
                *a += b;
            }
            self.counts = sc;
        } else {
            // Different widths: grow this grid to cover the other's range, then add each of the
            // other's bins at its centre.
            self.prepare_grid(other_right);
            let ow = other.width() as f64;
            for (k, &c) in other.counts.iter().enumerate() {
                if c > 0 {
                    let centre = ((k as f64 + 0.5) * ow) as f32;
                    let b = self.bin_of(centre.min(self.right()));
                    self.counts[b] += c;
                }
            }
        }
        self.total += other.total;
        Ok(())
    }

    /// Check that the histogram has data (for the range methods).
    pub(crate) fn require_data(&self) -> Result<()> {
        if self.total == 0 {
            Err(no_data(&self.name))
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(xs: &[f32]) -> Histogram {
        let mut h = Histogram::new("t", HistogramConfig::default()).unwrap();
        h.observe(xs).unwrap();
        h
    }

    #[test]
    fn linspace_ends_exactly() {
        let e = torch_linspace_f32(4.404109, 2049);
        assert_eq!(e.len(), 2049);
        assert_eq!(e[0], 0.0);
        assert_eq!(e[2048], 4.404109);
        assert!(e.windows(2).all(|w| w[1] > w[0]));
    }

    #[test]
    fn arange_length_and_tail() {
        let e = torch_arange_f32(0.25, 2.1);
        assert_eq!(e.len(), 9);
        assert_eq!(e[8], 2.0);
        let long = torch_arange_f32(0.1, 10.05);
        assert_eq!(long.len(), 101);
        for (i, v) in long.iter().enumerate() {
            assert!(
                (*v as f64 - i as f64 * 0.1f32 as f64).abs() <= 1e-6,
                "{i} {v}"
            );
        }
    }

    #[test]
    fn right_edge_goes_to_last_bin_and_zero_to_first() {
        let h = hist(&[0.0, 1.0, -1.0, 0.5]);
        assert_eq!(h.counts().len(), 2048);
        assert_eq!(h.counts()[2047], 2);
        assert_eq!(h.counts()[1024], 1);
        assert_eq!(h.counts()[0], 1);
        assert_eq!(h.total(), 4);
    }

    #[test]
    fn all_zeros_then_data_reseeds() {
        let mut h = hist(&[0.0; 10]);
        assert_eq!(h.counts()[1024], 10);
        assert!(h.edges().iter().all(|&e| e == 0.0));
        h.observe(&[2.0, -1.0]).unwrap();
        assert_eq!(h.counts()[0], 10);
        assert_eq!(h.counts()[2047], 1);
        assert_eq!(h.counts()[1024], 1);
        assert_eq!(h.total(), 12);
        assert_eq!(*h.edges().last().unwrap(), 2.0);
    }

    #[test]
    fn growth_appends_bins_with_the_same_width() {
        let mut h = hist(&[1.0]);
        let w = h.width();
        h.observe(&[2.5]).unwrap();
        assert_eq!(h.width(), w);
        assert_eq!(h.counts().len(), (2.5f32 / w).ceil() as usize);
        assert_eq!(h.counts()[2047], 1);
        assert_eq!(h.total(), 2);
        assert!(h.edges().len() > h.counts().len());
    }

    #[test]
    fn growth_is_capped_by_coarsening() {
        let cfg = HistogramConfig {
            max_bins: 4096,
            ..HistogramConfig::default()
        };
        let mut h = Histogram::new("t", cfg).unwrap();
        h.observe(&[1.0, 0.25]).unwrap();
        h.observe(&[1000.0]).unwrap();
        assert!(h.counts().len() <= 4096);
        assert_eq!(h.total(), 3);
        assert!(*h.edges().last().unwrap() >= 1000.0);
        assert_eq!(h.counts().iter().sum::<u64>(), 3);
    }

    #[test]
    fn skip_zeros_and_nonfinite() {
        let cfg = HistogramConfig {
            skip_zeros: true,
            nonfinite: NonFinite::Skip,
            ..HistogramConfig::default()
        };
        let mut h = Histogram::new("t", cfg).unwrap();
        h.observe(&[0.0, 0.0, 1.0, f32::NAN, f32::INFINITY, 0.5])
            .unwrap();
        assert_eq!(h.total(), 2);
        assert_eq!(h.zeros_skipped(), 2);
        assert_eq!(h.nonfinite_skipped(), 2);
        assert_eq!(h.counts()[0], 0);
        let mut strict = Histogram::new("act.fc1", HistogramConfig::default()).unwrap();
        let e = strict
            .observe(&[1.0, f32::NAN, 2.0, f32::NEG_INFINITY])
            .unwrap_err();
        match e {
            Error::NonFinite {
                tensor,
                count,
                first_index,
            } => {
                assert_eq!((tensor.as_str(), count, first_index), ("act.fc1", 2, 1));
            }
            other => panic!("{other}"),
        }
        assert!(strict.is_empty());
    }

    #[test]
    fn kernel_counts_equal_the_scalar_bin_rule() {
        // The vectorized counter against `bin_of`, the per-value definition, for both rules and
        // a grown (non power-of-two) extent.
        let xs: Vec<f32> = (0..20_000)
            .map(|i| ((i as u64 * 2_654_435_761) % 1_000_003) as f32 / 77_777.0 - 6.0)
            .collect();
        for binning in [Binning::PytorchQuantization, Binning::FixedWidth] {
            let cfg = HistogramConfig {
                binning,
                ..HistogramConfig::default()
            };
            let mut h = Histogram::new("t", cfg).unwrap();
            h.observe(&xs[..100]).unwrap();
            h.observe(&xs).unwrap();
            let mut want = vec![0u64; h.counts().len()];
            let mut seed = Histogram::new("t", cfg).unwrap();
            seed.observe(&xs[..100]).unwrap();
            for &x in &xs[..100] {
                want[seed.bin_of(x.abs())] += 1;
            }
            for &x in &xs {
                want[h.bin_of(x.abs())] += 1;
            }
            assert_eq!(h.counts(), &want[..], "{binning:?}");
        }
    }

    #[test]
    fn bounded_memory_over_many_batches() {
        let mut h = hist(&[1.0, -0.5]);
        for b in 0..10_000 {
            h.observe(&[(b % 7) as f32 / 7.0, -0.25]).unwrap();
        }
        assert_eq!(h.counts().len(), 2048);
        assert_eq!(h.total(), 20_002);
    }

    #[test]
    fn observers_are_send() {
        fn send<T: Send>() {}
        send::<Histogram>();
        send::<crate::calib::SignedHistogram>();
        send::<crate::calib::MaxObserver>();
        send::<crate::calib::MinMaxObserver>();
        send::<crate::calib::MovingAverageMinMaxObserver>();
        send::<crate::calib::CrossEntropyObserver>();
        send::<crate::calib::TensorObserver>();
        send::<crate::nn::CalibrationRun>();
    }

    #[test]
    fn huge_values_do_not_overflow_the_bin_rule() {
        let h = hist(&[f32::MAX, f32::MAX / 3.0, 1.0]);
        assert_eq!(h.counts()[2047], 1);
        assert_eq!(h.counts()[682], 1);
        assert_eq!(h.counts()[0], 1);
    }
}
