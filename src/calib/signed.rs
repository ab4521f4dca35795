//! calib/signed.rs — a histogram of signed values for asymmetric (`u8` + zero point) ranges. Its
//! grid is anchored at 0: bin `k` covers `[k·w, (k+1)·w)` for integer `k`, the width `w` is fixed
//! by the first non-zero batch (`(max(hi,0) − min(lo,0)) / bins`), and later batches append bins on
//! either side. Two histograms with the same width therefore merge exactly, bin for bin; widths
//! that differ by a power of two merge exactly onto the coarser grid. Its range methods give a
//! `[lo, hi]` for [`crate::quant::QuantParams::asymmetric`].

use super::histogram::pow2_steps;
use super::kernels::{self, BinRule};
use super::source::{add_counts, BatchSource, BatchStats, BinSpec};
use super::{finite_values, min_max, no_data, NonFinite};
use crate::error::{Error, Result};
use crate::quant::QuantParams;

/// A histogram of `x` (not `|x|`) on a zero-anchored grid.
#[derive(Clone, Debug, PartialEq)]
pub struct SignedHistogram {
    name: String,
    bins: usize,
    max_bins: usize,
    nonfinite: NonFinite,
    /// 0 until a batch with a non-zero value fixes it.
    width: f32,
    /// Grid index of `counts[0]`.
    k0: i64,
    counts: Vec<u64>,
    /// Values seen while every value so far was 0.
    zeros_pending: u64,
    total: u64,
    min: f32,
    max: f32,
    nonfinite_skipped: u64,
    batches: u64,
}

impl SignedHistogram {
    /// An empty histogram whose first non-zero batch will be spread over about `bins` bins; growth
    /// past `max_bins` merges pairs of bins.
    pub fn new(name: &str, bins: usize, max_bins: usize, nonfinite: NonFinite) -> Result<Self> {
        if bins == 0 || bins + 2 > max_bins {
            return Err(Error::param(
                "bins",
                format!("need 1 ≤ bins ≤ max_bins − 2, got bins {bins}, max_bins {max_bins}"),
            ));
        }
        Ok(SignedHistogram {
            name: name.to_string(),
            bins,
            max_bins,
            nonfinite,
            width: 0.0,
            k0: 0,
            counts: Vec::new(),
            zeros_pending: 0,
            total: 0,
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            nonfinite_skipped: 0,
            batches: 0,
        })
    }

    /// A histogram whose grid is fixed up front as if a first batch had spanned `[lo, hi]`, with
    /// no counts: shards seeded alike share the width and merge exactly.
    pub fn with_range(
        name: &str,
        bins: usize,
        max_bins: usize,
        nonfinite: NonFinite,
        lo: f32,
        hi: f32,
    ) -> Result<Self> {
        let (lo, hi) = (lo.min(0.0), hi.max(0.0));
        if !(lo.is_finite() && hi.is_finite() && hi > lo) {
            return Err(Error::param(
                "lo/hi",
                format!("a seeded range needs finite lo < hi, got [{lo}, {hi}]"),
            ));
        }
        let mut h = SignedHistogram::new(name, bins, max_bins, nonfinite)?;
        h.init_grid(lo, hi);
        Ok(h)
    }

    /// The bin width (0 before any non-zero value).
    pub fn width(&self) -> f32 {
        self.width
    }
    /// The counts, from grid index [`SignedHistogram::first_bin`] on.
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }
    /// Grid index of the first bin: `counts()[j]` covers `[(first_bin + j)·w, (first_bin + j + 1)·w)`.
    pub fn first_bin(&self) -> i64 {
        self.k0
    }
    /// Values counted.
    pub fn total(&self) -> u64 {
        self.total
    }
    /// NaN / ±inf values dropped under [`NonFinite::Skip`].
    pub fn nonfinite_skipped(&self) -> u64 {
        self.nonfinite_skipped
    }
    /// `(min, max)` of the values seen.
    pub fn range(&self) -> Result<(f32, f32)> {
        if self.min > self.max {
            return Err(no_data(&self.name));
        }
        Ok((self.min, self.max))
    }

    /// The grid index of `x`: `floor(x / w)` in f32.
    #[inline]
    fn grid_index(&self, x: f32) -> i64 {
        (x / self.width).floor() as i64
    }

    /// The left edge of grid bin `k`.
    fn edge(&self, k: i64) -> f32 {
        (k as f64 * self.width as f64) as f32
    }

    /// Observe one batch.
    pub fn observe(&mut self, xs: &[f32]) -> Result<()> {
        let (data, dropped) = finite_values(&self.name, xs, self.nonfinite)?;
        self.nonfinite_skipped += dropped;
        self.batches += 1;
        if data.is_empty() {
            return Ok(());
        }
        let (lo, hi) = min_max(&data);
        if !self.begin_batch(lo, hi, data.len() as u64) {
            return Ok(());
        }
        let n = self.counts.len() as i64;
        const EXACT: i64 = 1 << 24;
        if self.k0.abs() < EXACT && n < EXACT {
            let rule = BinRule::Signed {
                width: self.width,
                first: self.k0 as f32,
            };
            kernels::count_bins(&mut self.counts, &data, rule);
        } else {
            for &x in data.iter() {
                let j = (self.grid_index(x) - self.k0).clamp(0, n - 1);
                self.counts[j as usize] += 1;
            }
        }
        Ok(())
    }

    /// The book-keeping of a batch of `n` finite values spanning `[lo, hi]`: extremes, total,
    /// the grid (first non-zero batch, growth). Returns whether the values are to be binned on
    /// the grid as it is now (shared by [`SignedHistogram::observe`] and the device path).
    fn begin_batch(&mut self, lo: f32, hi: f32, n: u64) -> bool {
        self.min = self.min.min(lo);
        self.max = self.max.max(hi);
        self.total += n;
        if self.width == 0.0 {
            if lo == 0.0 && hi == 0.0 {
                self.zeros_pending += n;
                return false;
            }
            self.init_grid(lo.min(0.0), hi.max(0.0));
        }
        self.cover(lo, hi);
        true
    }

    /// Observe a batch that lives elsewhere (GPU memory); see [`super::Histogram`]'s twin.
    /// Leaves the histogram as [`SignedHistogram::observe`] of the same values would, and
    /// untouched when the batch is refused.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))] // the device path (`observe_cuda`)
    pub(crate) fn observe_source<S: BatchSource>(&mut self, src: &mut S) -> Result<()> {
        let st = src.stats()?;
        let dropped = st.policy(&self.name, self.nonfinite)?;
        let mut next = self.clone();
        next.observe_stats(src, &st, dropped)?;
        *self = next;
        Ok(())
    }

    /// [`SignedHistogram::observe_source`] after the non-finite policy.
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
        if self.begin_batch(lo, hi, st.finite()) {
            let spec = BinSpec::Signed {
                bins: self.counts.len(),
                width: self.width,
                first: self.k0,
            };
            let add = src.count_bins(spec, false)?;
            add_counts(&mut self.counts, &add)?;
        }
        Ok(())
    }

    fn init_grid(&mut self, lo: f32, hi: f32) {
        let mut w = (hi - lo) / self.bins as f32;
        if !(w.is_normal()) {
            w = if w.is_finite() {
                f32::MIN_POSITIVE
            } else {
                f32::MAX / self.bins as f32
            };
        }
        self.width = w;
        self.k0 = self.grid_index(lo);
        let end = self.grid_index(hi) + 1;
        self.counts = vec![0; (end - self.k0).max(1) as usize];
        if self.zeros_pending > 0 {
            let j = (self.grid_index(0.0) - self.k0) as usize;
            self.counts[j] += self.zeros_pending;
            self.zeros_pending = 0;
        }
    }

    /// Grow the grid (same width) so that it covers `[lo, hi]`, coarsening past `max_bins`.
    fn cover(&mut self, lo: f32, hi: f32) {
        self.cover_bins(self.grid_index(lo), self.grid_index(hi) + 1);
    }

    /// Grow the grid so that it holds grid bins `kl..kh` (indices on the current grid; they are
    /// halved along with the grid when it coarsens).
    fn cover_bins(&mut self, mut kl: i64, mut kh: i64) {
        loop {
            let lo = kl.min(self.k0);
            let hi = kh.max(self.k0 + self.counts.len() as i64);
            let need = (hi - lo) as u64;
            if need <= self.max_bins as u64 {
                let mut counts = vec![0u64; need as usize];
                let off = (self.k0 - lo) as usize;
                counts[off..off + self.counts.len()].copy_from_slice(&self.counts);
                self.counts = counts;
                self.k0 = lo;
                return;
            }
            self.coarsen();
            kl = kl.div_euclid(2);
            kh = (kh - 1).div_euclid(2) + 1;
        }
    }

    /// Twice the width: grid bins `2m` and `2m + 1` become bin `m` (exact on the new grid).
    fn coarsen(&mut self) {
        let new_k0 = self.k0.div_euclid(2);
        let new_end = (self.k0 + self.counts.len() as i64 - 1).div_euclid(2) + 1;
        let mut counts = vec![0u64; (new_end - new_k0) as usize];
        for (j, &c) in self.counts.iter().enumerate() {
            let k = self.k0 + j as i64;
            counts[(k.div_euclid(2) - new_k0) as usize] += c;
        }
        self.counts = counts;
        self.k0 = new_k0;
        self.width *= 2.0;
    }

    /// Merge a histogram that saw other batches of the same tensor. Same width: exact. Widths a
    /// power of two apart: the finer is coarsened first (exact on the coarser grid). Otherwise the
    /// other's bins are added at their centres (within one bin).
    pub fn merge(&mut self, other: &SignedHistogram) -> Result<()> {
        self.batches += other.batches;
        self.nonfinite_skipped += other.nonfinite_skipped;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.total += other.total;
        self.zeros_pending += other.zeros_pending;
        if other.width == 0.0 {
            if self.width > 0.0 {
                let pending = std::mem::take(&mut self.zeros_pending);
                let j = (self.grid_index(0.0) - self.k0) as usize;
                self.counts[j] += pending;
            }
            return Ok(());
        }
        if self.width == 0.0 {
            let pending = self.zeros_pending - other.zeros_pending;
            self.width = other.width;
            self.k0 = other.k0;
            self.counts = other.counts.clone();
            self.zeros_pending = other.zeros_pending;
            self.cover(0.0, 0.0);
            let j = (self.grid_index(0.0) - self.k0) as usize;
            self.counts[j] += pending + std::mem::take(&mut self.zeros_pending);
            return Ok(());
        }
        let mut other = other.clone();
        // Bring both to the coarser width when they differ by a power of two.
        if let Some(k) = pow2_steps(self.width, other.width) {
            for _ in 0..k {
                self.coarsen();
            }
        } else if let Some(k) = pow2_steps(other.width, self.width) {
            for _ in 0..k {
                other.coarsen();
            }
        }
        if self.width == other.width {
            self.cover_bins(other.k0, other.k0 + other.counts.len() as i64);
            // The cover may have coarsened this grid; bring the other along.
            while other.width < self.width {
                other.coarsen();
            }
            for (j, &c) in other.counts.iter().enumerate() {
                let k = other.k0 + j as i64;
                self.counts[(k - self.k0) as usize] += c;
            }
        } else {
            let ow = other.width as f64;
            let centre = |k: i64| ((k as f64 + 0.5) * ow) as f32;
            let lo = centre(other.k0);
            let hi = centre(other.k0 + other.counts.len() as i64 - 1);
            self.cover(lo, hi);
            let n = self.counts.len() as i64;
            for (j, &c) in other.counts.iter().enumerate() {
                if c > 0 {
                    let x = centre(other.k0 + j as i64);
                    let b = (self.grid_index(x) - self.k0).clamp(0, n - 1);
                    self.counts[b as usize] += c;
                }
            }
        }
        if self.zeros_pending > 0 {
            let pending = std::mem::take(&mut self.zeros_pending);
            let j = (self.grid_index(0.0) - self.k0) as usize;
            self.counts[j] += pending;
        }
        Ok(())
    }

    fn require_grid(&self) -> Result<()> {
        if self.total == 0 {
            return Err(no_data(&self.name));
        }
        Ok(())
    }

    /// Two-sided percentile range: `hi` is the left edge of the bin where the CDF first reaches
    /// `p / 100` (pytorch-quantization's rule), `lo` the same rule on the mirrored histogram (the
    /// right edge of the bin where the mass from the right first reaches `p / 100`). `p` in
    /// `(0, 100]`. All-zero data give `(0, 0)`.
    pub fn percentile_range(&self, p: f64) -> Result<(f32, f32)> {
        if !(p > 0.0 && p <= 100.0) {
            return Err(Error::param(
                "percentile",
                format!("must lie in (0, 100], got {p}"),
            ));
        }
        self.require_grid()?;
        if self.width == 0.0 {
            return Ok((0.0, 0.0));
        }
        let total = self.counts.iter().sum::<u64>() as f64;
        let target = p / 100.0;
        let n = self.counts.len();
        let mut cdf = 0.0;
        let mut hi_bin = n - 1;
        for (j, &c) in self.counts.iter().enumerate() {
            cdf += c as f64 / total;
            if cdf >= target {
                hi_bin = j;
                break;
            }
        }
        let mut cdf = 0.0;
        let mut lo_bin = 0;
        for (j, &c) in self.counts.iter().enumerate().rev() {
            cdf += c as f64 / total;
            if cdf >= target {
                lo_bin = j;
                break;
            }
        }
        let hi = self.edge(self.k0 + hi_bin as i64).min(self.max);
        let lo = self.edge(self.k0 + lo_bin as i64 + 1).max(self.min);
        Ok((lo.min(hi), hi.max(lo)))
    }

    /// The asymmetric `u8` range that minimizes the count-weighted squared error of quantizing the
    /// bin centres with [`QuantParams::asymmetric`] (the crate's rule): a 32 × 32 grid of clip
    /// points between the data's extremes and 0, then a 16 × 16 grid around the best cell. Ties
    /// keep the wider range.
    pub fn mse_range(&self) -> Result<(f32, f32)> {
        self.require_grid()?;
        if self.width == 0.0 {
            return Ok((0.0, 0.0));
        }
        let (dmin, dmax) = self.range()?;
        let (lo_end, hi_end) = (dmin.min(0.0), dmax.max(0.0));
        let pts: Vec<(f32, f32)> = self
            .counts
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(j, &c)| {
                let k = self.k0 + j as i64;
                let centre = ((k as f64 + 0.5) * self.width as f64) as f32;
                (centre.clamp(dmin, dmax), c as f32)
            })
            .collect();
        let err = |lo: f32, hi: f32| -> f64 {
            let Ok(p) = QuantParams::asymmetric(lo, hi) else {
                return f64::INFINITY;
            };
            pts.iter()
                .map(|&(x, c)| {
                    let d = p.fake_quantize(x) - x;
                    (d * d) as f64 * c as f64
                })
                .sum()
        };
        // Fractions of the way from 0 to each extreme, widest first.
        let search =
            |lo_a: f64, lo_b: f64, hi_a: f64, hi_b: f64, steps: usize| -> (f64, f64, f64) {
                let mut best = (f64::INFINITY, lo_a, hi_a);
                for a in 0..steps {
                    let fl = lo_a + (lo_b - lo_a) * a as f64 / (steps - 1) as f64;
                    for b in 0..steps {
                        let fh = hi_a + (hi_b - hi_a) * b as f64 / (steps - 1) as f64;
                        let e = err((lo_end as f64 * fl) as f32, (hi_end as f64 * fh) as f32);
                        if e < best.0 {
                            best = (e, fl, fh);
                        }
                    }
                }
                best
            };
        const COARSE: usize = 32;
        let step = 1.0 / (COARSE - 1) as f64;
        let (_, fl, fh) = search(1.0, step, 1.0, step, COARSE);
        let (_, fl, fh) = search(
            (fl + step).min(1.0),
            (fl - step).max(0.0),
            (fh + step).min(1.0),
            (fh - step).max(0.0),
            16,
        );
        Ok(((lo_end as f64 * fl) as f32, (hi_end as f64 * fh) as f32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh() -> SignedHistogram {
        SignedHistogram::new("t", 256, 1 << 16, NonFinite::Error).unwrap()
    }

    #[test]
    fn grows_on_both_sides_and_keeps_width() {
        let mut h = sh();
        h.observe(&[-1.0, 0.0, 3.0]).unwrap();
        let w = h.width();
        h.observe(&[-5.0, 7.0]).unwrap();
        assert_eq!(h.width(), w);
        assert_eq!(h.total(), 5);
        assert_eq!(h.counts().iter().sum::<u64>(), 5);
        assert_eq!(h.range().unwrap(), (-5.0, 7.0));
        let (lo, hi) = h.percentile_range(100.0).unwrap();
        assert!(lo <= -5.0 + w && hi >= 7.0 - w, "{lo} {hi}");
    }

    #[test]
    fn zeros_first_then_data() {
        let mut h = sh();
        h.observe(&[0.0; 4]).unwrap();
        assert_eq!(h.percentile_range(99.0).unwrap(), (0.0, 0.0));
        h.observe(&[1.0, -1.0]).unwrap();
        assert_eq!(h.counts().iter().sum::<u64>(), 6);
        let j = (0 - h.first_bin()) as usize;
        assert_eq!(h.counts()[j], 4);
    }

    #[test]
    fn merge_same_width_is_exact() {
        let data: Vec<f32> = (0..1000)
            .map(|i| ((i * 7919) % 1000) as f32 / 100.0 - 3.0)
            .collect();
        let seed =
            SignedHistogram::with_range("t", 256, 1 << 16, NonFinite::Error, -1.0, 2.0).unwrap();
        let (mut all, mut a, mut b) = (seed.clone(), seed.clone(), seed);
        all.observe(&data).unwrap();
        a.observe(&data[..400]).unwrap();
        b.observe(&data[400..]).unwrap();
        a.merge(&b).unwrap();
        assert_eq!(a.counts(), all.counts());
        assert_eq!(a.first_bin(), all.first_bin());
        assert_eq!(a.range().unwrap(), all.range().unwrap());
    }

    #[test]
    fn mse_range_clips_a_far_outlier_when_the_bulk_pays_for_it() {
        // 1M values in [-1, 1) and one at 50: keeping the outlier costs the bulk about
        // N·(51/255)²/12 ≈ 3300, clipping it costs about 49² ≈ 2400.
        let n = 1_000_000;
        let mut data: Vec<f32> = (0..n).map(|i| (i as f32 / n as f32) * 2.0 - 1.0).collect();
        data.push(50.0);
        let mut h = SignedHistogram::new("t", 2048, 1 << 20, NonFinite::Error).unwrap();
        h.observe(&data).unwrap();
        let (lo, hi) = h.mse_range().unwrap();
        assert!(lo < -0.5 && hi < 25.0 && hi > 0.5, "{lo} {hi}");
        // With few values the outlier is kept.
        let mut small = SignedHistogram::new("t", 2048, 1 << 20, NonFinite::Error).unwrap();
        small.observe(&data[n - 10_000..]).unwrap();
        let (_, hi) = small.mse_range().unwrap();
        assert!(hi > 40.0, "{hi}");
    }
}
