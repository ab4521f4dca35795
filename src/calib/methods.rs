//! calib/methods.rs — the range methods on a histogram of `|x|`: percentile, MSE and entropy
//! (KL divergence), each as NVIDIA pytorch-quantization computes it (`calib/histogram.py`,
//! CALIBRATION-NOTES.md §1.4–1.6), in signed (127 / 128 levels) and unsigned (255 / 256 levels)
//! variants. They take the counts and edges directly, so they run on a [`super::Histogram`] or on
//! a histogram the reference saved. Their result is an `amax` for [`crate::quant::QuantParams`].
//!
//! - Percentile: the left edge of the bin where the f64 CDF, accumulated as `Σ count/total`,
//!   first reaches `p / 100` — exactly the reference.
//! - MSE: the bin centre from bin 128 on that minimizes the count-weighted squared error of
//!   pytorch-quantization's fake quantization of the centres, first minimum. The terms are the
//!   reference's f32 terms; the sum is f64 in a fixed order (the reference's is torch's f32 mean),
//!   so a near-tie may pick a neighbouring centre.
//! - Entropy: the reference's KL search, exactly: `bins[0] = bins[1]`, candidates
//!   `i = 128..=n`, 128 (256 unsigned) levels spread over non-empty bins, the last minimum, a NaN
//!   divergence counting as the minimum (numpy's `argmin`), `amax = edges[i*]`. The reference takes
//!   about 2.5 s at 2048 bins; here every candidate's divergence is first computed in O(levels)
//!   from prefix sums, and the few candidates within rounding distance of the minimum are then
//!   recomputed with the reference's exact float64 operation order (numpy's pairwise sums, scipy's
//!   `rel_entr`), so the choice is the reference's, bit for bit.

use crate::error::{Error, Result};
use crate::reference;

/// MSE options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MseOptions {
    /// First candidate centre (the reference's `start_bin`, 128).
    pub start_bin: usize,
    /// Candidate stride (the reference's `stride`, 1).
    pub stride: usize,
}

impl Default for MseOptions {
    fn default() -> Self {
        MseOptions {
            start_bin: 128,
            stride: 1,
        }
    }
}

/// Entropy options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntropyOptions {
    /// First candidate (the reference's `start_bin`, 128).
    pub start_bin: usize,
    /// Candidate stride (the reference's `stride`, 1).
    pub stride: usize,
    /// `true` (the reference): a NaN divergence — a candidate whose kept bins are all empty —
    /// counts as the minimum, so on degenerate data the range can end before the data (the
    /// three-value tensor `[0.5, -1.25, 2.0]` gives 0.5). `false`: such candidates are skipped.
    pub nan_is_minimum: bool,
}

impl Default for EntropyOptions {
    fn default() -> Self {
        EntropyOptions {
            start_bin: 128,
            stride: 1,
            nan_is_minimum: true,
        }
    }
}

fn check_hist(counts: &[u64], edges: &[f32]) -> Result<u64> {
    if counts.is_empty() {
        return Err(Error::param("counts", "the histogram has no bins"));
    }
    if edges.len() < counts.len() + 1 {
        return Err(Error::shape(
            "histogram edges (counts + 1)",
            counts.len() + 1,
            edges.len(),
        ));
    }
    // A histogram of |x|: finite edges from 0 upwards (the searches return an edge or a centre).
    let edges = &edges[..counts.len() + 1];
    if !(edges[0] >= 0.0 && edges.iter().all(|e| e.is_finite()))
        || edges.windows(2).any(|w| w[1] < w[0])
    {
        return Err(Error::param(
            "histogram edges",
            "must be finite, ≥ 0 and non-decreasing (a histogram of |x|)",
        ));
    }
    let total = counts
        .iter()
        .try_fold(0u64, |t, &c| t.checked_add(c))
        .ok_or_else(|| Error::param("counts", "their total overflows u64"))?;
    if total == 0 {
        return Err(Error::param("counts", "the histogram is empty"));
    }
    Ok(total)
}

/// pytorch-quantization's percentile: `edges[searchsorted(cumsum(hist / total), p / 100)]`.
/// `p` must lie in `(0, 100]`.
pub fn percentile_amax(counts: &[u64], edges: &[f32], p: f64) -> Result<f32> {
    if !(p > 0.0 && p <= 100.0) {
        return Err(Error::param(
            "percentile",
            format!("must lie in (0, 100], got {p}"),
        ));
    }
    let total = check_hist(counts, edges)? as f64;
    let target = p / 100.0;
    let mut cdf = 0.0f64;
    for (i, &c) in counts.iter().enumerate() {
        cdf += c as f64 / total;
        if cdf >= target {
            return Ok(edges[i]);
        }
    }
    // Rounding left the CDF below p/100: numpy's searchsorted returns len(hist).
    Ok(edges[counts.len()])
}

/// The bin centres `(edges[i] + edges[i + 1]) / 2` in f32.
fn centers(edges: &[f32], n: usize) -> Vec<f32> {
    (0..n).map(|i| (edges[i + 1] + edges[i]) / 2.0).collect()
}

/// pytorch-quantization's MSE: the centre `c_i` (`i ≥ start_bin`) minimizing
/// `Σ_j count_j · (fq(c_j; amax = c_i) − c_j)²`, where `fq` is `fake_tensor_quant` with
/// `unit = 127 / amax` (255 unsigned): `clamp(rhe(c · unit)) / unit`, and 0 when `amax ≤ 2^-24`.
/// Each term is computed in f32 as the reference does; the terms are summed in f64.
pub fn mse_amax(counts: &[u64], edges: &[f32], unsigned: bool, opts: &MseOptions) -> Result<f32> {
    check_hist(counts, edges)?;
    let n = counts.len();
    let c = centers(edges, n);
    // Empty bins add exactly 0 to every sum: keep only the others.
    let (xs, ws): (Vec<f32>, Vec<f32>) = c
        .iter()
        .zip(counts)
        .filter(|(_, &k)| k > 0)
        .map(|(&x, &k)| (x, k as f32))
        .unzip();
    let start = opts.start_bin.min(n - 1);
    let stride = opts.stride.max(1);
    let mut best = (f64::INFINITY, start);
    for i in (start..n).step_by(stride) {
        let (unit, qmin, qmax) = reference::pytorch_quantization_unit(c[i], true, unsigned);
        let err = super::kernels::weighted_sq_error(&xs, &ws, unit, qmin as f32, qmax as f32);
        if err < best.0 {
            best = (err, i);
        }
    }
    Ok(c[best.1])
}

/// pytorch-quantization's entropy calibration (see the module notes): `amax = edges[i*]`.
pub fn entropy_amax(
    counts: &[u64],
    edges: &[f32],
    unsigned: bool,
    opts: &EntropyOptions,
) -> Result<f32> {
    check_hist(counts, edges)?;
    let bins = entropy_bins(counts);
    let nq = if unsigned { 256 } else { 128 };
    let cands = candidates(bins.len(), opts);
    let fast = FastKl::new(&bins);
    let divs: Vec<f64> = cands.iter().map(|&i| fast.divergence(i, nq)).collect();
    if opts.nan_is_minimum {
        // numpy's argmin returns the first NaN; on the reversed array that is the last one.
        if let Some(pos) = divs.iter().rposition(|d| d.is_nan()) {
            return Ok(edges[cands[pos]]);
        }
    }
    let fmin = divs
        .iter()
        .copied()
        .filter(|d| !d.is_nan())
        .fold(f64::INFINITY, f64::min);
    // The prefix-sum divergences agree with the reference's to ~1e-14; everything within this
    // window of the minimum is recomputed with the reference's exact operation order.
    let window = 1e-10 + 1e-8 * fmin.abs();
    let mut scratch = ExactScratch::default();
    let mut best: Option<(f64, usize)> = None;
    for (&i, &d) in cands.iter().zip(&divs) {
        let near = if fmin.is_finite() {
            d <= fmin + window
        } else {
            d == fmin
        };
        if !near {
            continue;
        }
        let exact = fast.divergence_exact(i, nq, &mut scratch);
        if exact.is_nan() {
            continue;
        }
        // Last minimum: a later candidate wins ties.
        if best.is_none_or(|(b, _)| exact <= b) {
            best = Some((exact, i));
        }
    }
    // No defined divergence at all (every kept range empty, NaN skipped): the full range.
    let i = best.map_or(bins.len(), |(_, i)| i);
    Ok(edges[i])
}

/// The reference algorithm computed naively for every candidate (slow: O(n²)); used by the tests
/// to prove [`entropy_amax`] picks the same bin, and by the benchmark as the baseline.
pub fn entropy_amax_reference(
    counts: &[u64],
    edges: &[f32],
    unsigned: bool,
    opts: &EntropyOptions,
) -> Result<f32> {
    let (cands, divs) = entropy_divergences_reference(counts, edges, unsigned, opts)?;
    if opts.nan_is_minimum {
        if let Some(pos) = divs.iter().rposition(|d| d.is_nan()) {
            return Ok(edges[cands[pos]]);
        }
    }
    let mut best: Option<(f64, usize)> = None;
    for (&i, &d) in cands.iter().zip(&divs) {
        if !d.is_nan() && best.is_none_or(|(b, _)| d <= b) {
            best = Some((d, i));
        }
    }
    let i = best.map_or(counts.len(), |(_, i)| i);
    Ok(edges[i])
}

/// Every candidate `i` and its divergence, in the reference's exact float64 operation order.
pub fn entropy_divergences_reference(
    counts: &[u64],
    edges: &[f32],
    unsigned: bool,
    opts: &EntropyOptions,
) -> Result<(Vec<usize>, Vec<f64>)> {
    check_hist(counts, edges)?;
    let bins = entropy_bins(counts);
    let nq = if unsigned { 256 } else { 128 };
    let cands = candidates(bins.len(), opts);
    let mut scratch = ExactScratch::default();
    let divs = cands
        .iter()
        .map(|&i| divergence_exact(&bins, i, nq, &mut scratch))
        .collect();
    Ok((cands, divs))
}

/// The histogram as the reference's entropy sees it: `bins[0] = bins[1]`.
fn entropy_bins(counts: &[u64]) -> Vec<u64> {
    let mut bins = counts.to_vec();
    if bins.len() > 1 {
        bins[0] = bins[1];
    }
    bins
}

/// Candidates `start_bin, start_bin + stride, …, ≤ n` (a start past `n` is clamped to `n`).
fn candidates(n: usize, opts: &EntropyOptions) -> Vec<usize> {
    let start = opts.start_bin.clamp(1, n);
    (start..=n).step_by(opts.stride.max(1)).collect()
}

/// Prefix sums for the O(levels) divergence of every candidate.
struct FastKl {
    /// `Σ_{t<j} b_t`
    sum: Vec<u64>,
    /// number of non-empty bins before `j`
    nonzero: Vec<u64>,
    /// `Σ_{t<j} b_t ln b_t`
    blnb: Vec<f64>,
    bins: Vec<u64>,
    /// The non-empty bins, ascending.
    filled: Vec<usize>,
}

impl FastKl {
    fn new(bins: &[u64]) -> Self {
        let n = bins.len();
        let mut sum = Vec::with_capacity(n + 1);
        let mut nonzero = Vec::with_capacity(n + 1);
        let mut blnb = Vec::with_capacity(n + 1);
        let (mut s, mut z, mut l) = (0u64, 0u64, 0.0f64);
        for &b in bins {
            sum.push(s);
            nonzero.push(z);
            blnb.push(l);
            s += b;
            z += (b > 0) as u64;
            if b > 0 {
                l += b as f64 * (b as f64).ln();
            }
        }
        sum.push(s);
        nonzero.push(z);
        blnb.push(l);
        FastKl {
            sum,
            nonzero,
            blnb,
            bins: bins.to_vec(),
            filled: (0..n).filter(|&j| bins[j] > 0).collect(),
        }
    }

    /// [`divergence_exact`] of candidate `i`, bit for bit, over the non-empty bins only. Every
    /// operation it leaves out adds +0.0: an empty bin adds nothing to its level, a zero to Q,
    /// and a `rel_entr(0, 0) = 0` term. No value here is −0.0, so adding +0.0 changes no bits,
    /// and the pairwise sums keep numpy's tree over the full length (`pairwise_sparse`). The cost
    /// is O(non-empty bins below `i` + levels) rather than O(i): a histogram grown to a million
    /// bins with its data in a few of them, whose candidates all tie within the window of
    /// [`entropy_amax`], took O(n²) to check them.
    fn divergence_exact(&self, i: usize, nq: usize, s: &mut ExactScratch) -> f64 {
        let filled = &self.filled[..self.filled.partition_point(|&j| j < i)];
        if filled.is_empty() {
            // ΣQ = 0: every qk is 0 / 0, every term NaN.
            return f64::NAN;
        }
        s.level_sum.clear();
        s.level_sum.resize(nq, 0.0);
        s.level_cnt.clear();
        s.level_cnt.resize(nq, 0);
        for &j in filled {
            let k = j * nq / i;
            s.level_sum[k] += self.bins[j] as f64;
            s.level_cnt[k] += 1;
        }
        for (v, &c) in s.level_sum.iter_mut().zip(&s.level_cnt) {
            if c > 0 {
                *v /= c as f64;
            }
        }
        s.sparse_q.clear();
        s.sparse_q
            .extend(filled.iter().map(|&j| (j, s.level_sum[j * nq / i])));
        let total = self.sum[self.bins.len()];
        let outliers = total - self.sum[i];
        let sum_q = 0.0 + pairwise_sparse(0, i, &s.sparse_q);
        let t = total as f64;
        s.sparse_terms.clear();
        for &(j, qj) in &s.sparse_q {
            let pj = if j == i - 1 {
                self.bins[j] + outliers
            } else {
                self.bins[j]
            };
            s.sparse_terms
                .push((j, rel_entr(pj as f64 / t, qj / sum_q)));
        }
        if self.bins[i - 1] == 0 {
            // The last kept bin takes the outliers even when it counts nothing itself.
            s.sparse_terms
                .push((i - 1, rel_entr(outliers as f64 / t, 0.0 / sum_q)));
        }
        0.0 + pairwise_sparse(0, i, &s.sparse_terms)
    }

    /// `KL(P‖Q)` for candidate `i` with `nq` levels, up to rounding:
    /// `(Σ P ln P − Σ P ln Q) / T − ln T + ln Σ_{j<i} b_j`.
    fn divergence(&self, i: usize, nq: usize) -> f64 {
        let n = self.bins.len();
        let total = self.sum[n];
        let kept = self.sum[i];
        if kept == 0 {
            return f64::NAN;
        }
        let outliers = total - kept;
        let last = i - 1;
        let b_last = self.bins[last];
        if b_last == 0 && outliers > 0 {
            return f64::INFINITY;
        }
        let p_last = (b_last + outliers) as f64;
        let mut plnp = self.blnb[last];
        if p_last > 0.0 {
            plnp += p_last * p_last.ln();
        }
        let mut plnq = 0.0f64;
        // Source bin j goes to level floor(j·nq / i): level k holds j in [ceil(k·i/nq), ceil((k+1)·i/nq)).
        let mut lo = 0usize;
        for k in 0..nq {
            let hi = ((k + 1) * i).div_ceil(nq);
            if hi > lo {
                let c = self.nonzero[hi] - self.nonzero[lo];
                if c > 0 {
                    let s = self.sum[hi] - self.sum[lo];
                    let mut w = s as f64;
                    if (lo..hi).contains(&last) {
                        w += outliers as f64;
                    }
                    plnq += w * (s as f64 / c as f64).ln();
                }
            }
            lo = hi;
        }
        let t = total as f64;
        (plnp - plnq) / t - t.ln() + (kept as f64).ln()
    }
}

#[derive(Default)]
struct ExactScratch {
    level_sum: Vec<f64>,
    level_cnt: Vec<u64>,
    q: Vec<f64>,
    terms: Vec<f64>,
    /// `(bin, value)` of the non-zero entries of Q and of the terms (`FastKl::divergence_exact`).
    sparse_q: Vec<(usize, f64)>,
    sparse_terms: Vec<(usize, f64)>,
}

/// One candidate's divergence with the reference's float64 operations in its order:
/// `Qc[k] = (Σ b_j, sequential) / count`, `pk = P / ΣP` (integer sum), `qk = Q / pairwise_sum(Q)`,
/// `scipy.special.rel_entr`, then numpy's pairwise sum.
fn divergence_exact(bins: &[u64], i: usize, nq: usize, s: &mut ExactScratch) -> f64 {
    s.level_sum.clear();
    s.level_sum.resize(nq, 0.0);
    s.level_cnt.clear();
    s.level_cnt.resize(nq, 0);
    for (j, &b) in bins[..i].iter().enumerate() {
        if b != 0 {
            let k = j * nq / i;
            s.level_sum[k] += b as f64;
            s.level_cnt[k] += 1;
        }
    }
    for (v, &c) in s.level_sum.iter_mut().zip(&s.level_cnt) {
        if c > 0 {
            *v /= c as f64;
        }
    }
    s.q.clear();
    s.q.extend(bins[..i].iter().enumerate().map(|(j, &b)| {
        if b != 0 {
            s.level_sum[j * nq / i]
        } else {
            0.0
        }
    }));
    let outliers: u64 = bins[i..].iter().sum();
    let total: u64 = bins.iter().sum();
    let sum_q = numpy_pairwise_sum(&s.q);
    let t = total as f64;
    s.terms.clear();
    for (j, &qj) in s.q.iter().enumerate() {
        let pj = if j == i - 1 {
            bins[j] + outliers
        } else {
            bins[j]
        };
        s.terms.push(rel_entr(pj as f64 / t, qj / sum_q));
    }
    numpy_pairwise_sum(&s.terms)
}

/// `scipy.special.rel_entr(x, y)`: `x · ln(x / y)` for `x, y > 0`, 0 for `x = 0, y ≥ 0`, NaN if
/// either is NaN, +inf otherwise.
#[inline]
fn rel_entr(x: f64, y: f64) -> f64 {
    if x.is_nan() || y.is_nan() {
        f64::NAN
    } else if x > 0.0 && y > 0.0 {
        x * (x / y).ln()
    } else if x == 0.0 && y >= 0.0 {
        0.0
    } else {
        f64::INFINITY
    }
}

/// numpy's `np.sum` of a contiguous float64 array (`pairwise_sum` in `loops_utils.h.src`, added to
/// the reduction's initial 0): 8 accumulators over blocks of up to 128, halves (rounded to a
/// multiple of 8) above that.
pub(crate) fn numpy_pairwise_sum(a: &[f64]) -> f64 {
    0.0 + pairwise(a)
}

/// [`pairwise`] of the array of length `n` starting at index `lo` that holds `entries` (`(index,
/// value)`, ascending) and +0.0 everywhere else, computed over the entries only: the same tree
/// and, per leaf, the same eight lanes, with the +0.0 additions (which change no bits, as no
/// entry is −0.0) left out.
fn pairwise_sparse(lo: usize, n: usize, entries: &[(usize, f64)]) -> f64 {
    if entries.is_empty() {
        return 0.0;
    }
    if n < 8 {
        let mut res = 0.0;
        for &(_, x) in entries {
            res += x;
        }
        res
    } else if n <= 128 {
        let main = lo + n - n % 8;
        let split = entries.partition_point(|&(j, _)| j < main);
        let mut r = [0.0f64; 8];
        for &(j, x) in &entries[..split] {
            r[(j - lo) % 8] += x;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for &(_, x) in &entries[split..] {
            res += x;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        let split = entries.partition_point(|&(j, _)| j < lo + n2);
        pairwise_sparse(lo, n2, &entries[..split])
            + pairwise_sparse(lo + n2, n - n2, &entries[split..])
    }
}

fn pairwise(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        let mut res = 0.0;
        for &x in a {
            res += x;
        }
        res
    } else if n <= 128 {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&a[..8]);
        let mut i = 8;
        while i < n - (n % 8) {
            for k in 0..8 {
                r[k] += a[i + k];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for &x in &a[i..] {
            res += x;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        pairwise(&a[..n2]) + pairwise(&a[n2..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edges(n: usize, w: f32) -> Vec<f32> {
        (0..=n).map(|i| i as f32 * w).collect()
    }

    #[test]
    fn percentile_is_the_left_edge_of_the_crossing_bin() {
        let mut counts = vec![0u64; 10];
        counts[2] = 50;
        counts[7] = 50;
        let e = edges(10, 0.5);
        assert_eq!(percentile_amax(&counts, &e, 50.0).unwrap(), 1.0);
        assert_eq!(percentile_amax(&counts, &e, 50.1).unwrap(), 3.5);
        assert_eq!(percentile_amax(&counts, &e, 100.0).unwrap(), 3.5);
        assert!(percentile_amax(&counts, &e, 0.0).is_err());
        assert!(percentile_amax(&counts, &e, 100.5).is_err());
        assert!(percentile_amax(&[0, 0], &edges(2, 1.0), 50.0).is_err());
    }

    #[test]
    fn histograms_that_are_not_of_abs_x_are_refused() {
        let opts = (MseOptions::default(), EntropyOptions::default());
        let searches = |c: &[u64], e: &[f32]| {
            [
                percentile_amax(c, e, 50.0).is_err(),
                mse_amax(c, e, false, &opts.0).is_err(),
                entropy_amax(c, e, false, &opts.1).is_err(),
            ]
        };
        let counts = [3u64, 1, 4];
        assert_eq!(searches(&counts, &edges(3, 0.5)), [false; 3]);
        for bad in [
            vec![-0.5, 0.0, 0.5, 1.0],     // below 0
            vec![0.0, 1.0, 0.5, 1.5],      // decreasing
            vec![0.0, 0.5, f32::NAN, 1.5], // not finite
        ] {
            assert_eq!(searches(&counts, &bad), [true; 3], "{bad:?}");
        }
        // Counts whose total overflows u64.
        assert_eq!(searches(&[u64::MAX, 2, 0], &edges(3, 0.5)), [true; 3]);
    }

    #[test]
    fn pairwise_sum_matches_its_definition() {
        let a: Vec<f64> = (0..1000).map(|i| 1.0 / (i as f64 + 1.0)).collect();
        // Small: sequential.
        assert_eq!(
            numpy_pairwise_sum(&a[..5]),
            (((a[0] + a[1]) + a[2]) + a[3]) + a[4]
        );
        // One block of 10: eight lanes, then the rest.
        let r: Vec<f64> = (0..8).collect::<Vec<_>>().iter().map(|&k| a[k]).collect();
        let want =
            (((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7])) + a[8]) + a[9];
        assert_eq!(numpy_pairwise_sum(&a[..10]), want);
        // Large: split at a multiple of 8.
        assert_eq!(
            numpy_pairwise_sum(&a),
            pairwise(&a[..496]) + pairwise(&a[496..])
        );
        let s = numpy_pairwise_sum(&a);
        assert!((s - a.iter().sum::<f64>()).abs() < 1e-12);
    }

    #[test]
    fn fast_divergence_agrees_with_exact() {
        // A lumpy histogram with gaps.
        let mut bins = vec![0u64; 700];
        for (j, b) in bins.iter_mut().enumerate() {
            *b = if j % 7 == 3 {
                0
            } else {
                ((j * 37) % 101) as u64 + (j < 300) as u64 * 500
            };
        }
        bins[0] = bins[1];
        let fast = FastKl::new(&bins);
        let mut s = ExactScratch::default();
        for nq in [128, 256] {
            for i in (128..=700).step_by(3) {
                let a = fast.divergence(i, nq);
                let b = divergence_exact(&bins, i, nq, &mut s);
                if b.is_infinite() {
                    assert!(a.is_infinite());
                } else {
                    assert!((a - b).abs() < 1e-12, "i={i} nq={nq}: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn sparse_exact_divergence_is_the_dense_one_bit_for_bit() {
        // Histograms from dense to nearly empty (runs of empty bins, an empty last kept bin
        // taking outliers, candidates below every count), every candidate, both level counts;
        // and the sparse pairwise sum against the dense one on the same arrays.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |m: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % m
        };
        for case in 0..24 {
            let n = [129, 300, 1031, 2048][case % 4];
            let keep = [2, 5, 40, 100][case / 6]; // percent of bins filled
            let mut bins: Vec<u64> = (0..n)
                .map(|_| if next(100) < keep { 1 + next(1000) } else { 0 })
                .collect();
            if case % 3 == 0 {
                bins[n - 1] = 7; // a far outlier
            }
            let fast = FastKl::new(&bins);
            let (mut sd, mut ss) = (ExactScratch::default(), ExactScratch::default());
            for nq in [128, 256] {
                for i in 1..=n {
                    let dense = divergence_exact(&bins, i, nq, &mut sd);
                    let sparse = fast.divergence_exact(i, nq, &mut ss);
                    assert!(
                        dense.to_bits() == sparse.to_bits() || (dense.is_nan() && sparse.is_nan()),
                        "case {case} i={i} nq={nq}: dense {dense:e}, sparse {sparse:e}"
                    );
                }
            }
            let a: Vec<f64> = bins.iter().map(|&b| b as f64 / 3.0).collect();
            let entries: Vec<(usize, f64)> =
                (0..n).filter(|&j| a[j] != 0.0).map(|j| (j, a[j])).collect();
            for len in [1, 7, 8, 9, 127, 128, 129, 300, n] {
                let len = len.min(n);
                let e = &entries[..entries.partition_point(|&(j, _)| j < len)];
                assert_eq!(
                    pairwise(&a[..len]).to_bits(),
                    pairwise_sparse(0, len, e).to_bits(),
                    "len {len}"
                );
            }
        }
    }

    #[test]
    fn entropy_on_a_grown_histogram_with_two_filled_bins_returns() {
        // A histogram grown (and coarsened) to 2^20 bins by one value near f32::MAX: the data in
        // bin 0, the outlier in the last. Every candidate's divergence ties; checking them all
        // exactly over every bin visits Σ i ≈ 5.5·10^11 bins, over the filled ones about
        // 2^20 · (2 + levels).
        let n = 1 << 20;
        let mut counts = vec![0u64; n];
        counts[0] = 500;
        counts[1] = 3;
        counts[n - 1] = 1;
        let e = edges(n, 3.2e32);
        let a = entropy_amax(&counts, &e, false, &EntropyOptions::default()).unwrap();
        assert!(a.is_finite() && a > 0.0, "{a}");
    }

    #[test]
    fn mse_picks_a_centre_at_or_past_start_bin() {
        let mut counts = vec![0u64; 2048];
        for (j, c) in counts.iter_mut().enumerate().take(1000) {
            *c = 1000 - j as u64;
        }
        counts[2047] = 1;
        let e = edges(2048, 1.0 / 2048.0);
        let a = mse_amax(&counts, &e, false, &MseOptions::default()).unwrap();
        assert!(((128.5 / 2048.0)..1.0).contains(&a), "{a}");
    }
}
