//! calib/cross_entropy.rs — cross-entropy range setting for logits that feed a softmax (Nagel et
//! al., "A White Paper on Neural Network Quantization", §3.1), as Qualcomm's reference
//! `CrossEntropyEstimator` (`transformer-quantization/quantization/range_estimators.py`) computes
//! it: a grid of symmetric ranges `c · step` (`c = 1..=100`, `step = (max(|min|, max) + 0.5) / 100`,
//! fixed by the first batch), each scored by `−Σ softmax(x) · log_softmax(q(x))` over the class
//! axis and summed over batches; the first minimum wins. `q` is the reference's
//! `SymmetricUniformQuantizer`: `[-128, 127]` with `scale = amax / 127` for two-sided data,
//! `[0, 255]` with `amax / 255` when the first batch had no negative value, `rhe(x / scale)` in
//! f32. The softmaxes and the sum are f64 (the reference's numpy port, which picks the same
//! candidate as torch's f32 on logits; on probabilities the loss is flat and the argmin is noise).

use super::source::BatchSource;
use super::{no_data, split_axis, NonFinite};
use crate::error::{Error, Result};

/// Cross-entropy search options.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CrossEntropyConfig {
    /// Grid size (the reference's `num_candidates`, 100).
    pub candidates: usize,
    /// Absolute margin added to the first batch's `max |x|` (the reference's `range_margin`, 0.5).
    pub range_margin: f64,
    /// What to do with NaN and ±inf (under `Skip`, a softmax row holding one is dropped whole).
    pub nonfinite: NonFinite,
}

impl Default for CrossEntropyConfig {
    fn default() -> Self {
        CrossEntropyConfig {
            candidates: 100,
            range_margin: 0.5,
            nonfinite: NonFinite::Error,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Grid {
    one_sided: bool,
    step: f64,
}

/// Accumulated cross-entropy losses over a fixed grid of ranges.
#[derive(Clone, Debug, PartialEq)]
pub struct CrossEntropyObserver {
    name: String,
    cfg: CrossEntropyConfig,
    grid: Option<Grid>,
    /// `losses[c]` for candidate `c`; `losses[0] = +inf` (the empty range).
    losses: Vec<f64>,
    rows: u64,
    nonfinite_skipped: u64,
    batches: u64,
}

/// The reference quantizer for candidate range `[neg, pos]` (already f32): `(scale, qmin, qmax)`.
fn quantizer(neg: f32, pos: f32) -> (f32, f32, f32) {
    const EPS: f32 = 1e-8;
    let x_min = neg.min(0.0);
    let x_max = pos.max(EPS);
    let signed = x_min < 0.0;
    let absmax = x_min.abs().max(x_max);
    let (int_min, int_max) = if signed {
        (-128.0, 127.0)
    } else {
        (0.0, 255.0)
    };
    let scale = (absmax / int_max).max(EPS);
    (scale, int_min, int_max)
}

impl CrossEntropyObserver {
    /// An observer whose grid the first batch will fix.
    pub fn new(name: &str, cfg: CrossEntropyConfig) -> Result<Self> {
        if cfg.candidates == 0 || !(cfg.range_margin.is_finite() && cfg.range_margin >= 0.0) {
            return Err(Error::param(
                "cross-entropy config",
                format!(
                    "need candidates ≥ 1 and a finite margin ≥ 0, got {} and {}",
                    cfg.candidates, cfg.range_margin
                ),
            ));
        }
        let mut losses = vec![0.0; cfg.candidates + 1];
        losses[0] = f64::INFINITY;
        Ok(CrossEntropyObserver {
            name: name.to_string(),
            cfg,
            grid: None,
            losses,
            rows: 0,
            nonfinite_skipped: 0,
            batches: 0,
        })
    }

    /// An observer with its grid fixed up front (`max_abs + margin` over `candidates` steps;
    /// `one_sided` for data ≥ 0), so that shards can be merged.
    pub fn with_grid(
        name: &str,
        cfg: CrossEntropyConfig,
        max_abs: f32,
        one_sided: bool,
    ) -> Result<Self> {
        if !(max_abs.is_finite() && max_abs >= 0.0) {
            return Err(Error::param(
                "max_abs",
                format!("must be finite and ≥ 0, got {max_abs}"),
            ));
        }
        let mut o = CrossEntropyObserver::new(name, cfg)?;
        o.grid = Some(Grid {
            one_sided,
            step: (max_abs as f64 + cfg.range_margin) / cfg.candidates as f64,
        });
        Ok(o)
    }

    /// Observe a batch of shape `shape` whose softmax runs along `class_axis`.
    pub fn observe(&mut self, xs: &[f32], shape: &[usize], class_axis: usize) -> Result<()> {
        let (outer, k, inner) = split_axis(&self.name, shape, class_axis, xs.len())?;
        self.batches += 1;
        if xs.is_empty() {
            return Ok(());
        }
        // Gather each softmax row (all indices but the class axis) contiguously, dropping rows with
        // non-finite values under Skip.
        let mut rows: Vec<f32> = Vec::with_capacity(xs.len());
        let mut bad = 0usize;
        let mut first_bad = usize::MAX;
        for o in 0..outer {
            for i in 0..inner {
                let start = rows.len();
                let mut ok = true;
                for c in 0..k {
                    let idx = (o * k + c) * inner + i;
                    let v = xs[idx];
                    if !v.is_finite() {
                        ok = false;
                        bad += 1;
                        first_bad = first_bad.min(idx);
                    }
                    rows.push(v);
                }
                if !ok {
                    rows.truncate(start);
                }
            }
        }
        if bad > 0 {
            match self.cfg.nonfinite {
                NonFinite::Error => {
                    return Err(Error::NonFinite {
                        tensor: self.name.clone(),
                        count: bad,
                        first_index: first_bad,
                    })
                }
                NonFinite::Skip => self.nonfinite_skipped += bad as u64,
            }
        }
        if rows.is_empty() {
            return Ok(());
        }
        let grid = *self.grid.get_or_insert_with(|| {
            let (lo, hi) = super::min_max(&rows);
            Grid {
                one_sided: lo >= 0.0,
                step: ((lo.abs() as f64).max(hi as f64) + self.cfg.range_margin)
                    / self.cfg.candidates as f64,
            }
        });
        // softmax(x) per row, in f64.
        let mut p = vec![0.0f64; rows.len()];
        for (row, pr) in rows.chunks_exact(k).zip(p.chunks_exact_mut(k)) {
            let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let mut s = 0.0;
            for (pv, &x) in pr.iter_mut().zip(row) {
                *pv = (x as f64 - m).exp();
                s += *pv;
            }
            for pv in pr.iter_mut() {
                *pv /= s;
            }
        }
        let mut q = vec![0.0f32; k];
        for c in 1..=self.cfg.candidates {
            let pos = grid.step * c as f64;
            let neg = if grid.one_sided {
                0.0
            } else {
                -grid.step * c as f64
            };
            let (scale, qmin, qmax) = quantizer(neg as f32, pos as f32);
            let mut loss = 0.0f64;
            for (row, pr) in rows.chunks_exact(k).zip(p.chunks_exact(k)) {
                let mut mq = f32::NEG_INFINITY;
                for (qv, &x) in q.iter_mut().zip(row) {
                    *qv = scale * (x / scale).round_ties_even().clamp(qmin, qmax);
                    mq = mq.max(*qv);
                }
                let mq = mq as f64;
                let s: f64 = q.iter().map(|&v| (v as f64 - mq).exp()).sum();
                let lse = mq + s.ln();
                loss += q
                    .iter()
                    .zip(pr)
                    .map(|(&v, &pv)| pv * (lse - v as f64))
                    .sum::<f64>();
            }
            self.losses[c] += loss;
        }
        self.rows += (rows.len() / k.max(1)) as u64;
        Ok(())
    }

    /// Observe a batch that lives elsewhere (GPU memory): the softmax of every row along
    /// `class_axis` needs the values themselves, so the batch is copied to the host and observed
    /// there (the only statistic that copies a batch).
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))] // the device path (`observe_cuda`)
    pub(crate) fn observe_source<S: BatchSource>(
        &mut self,
        src: &mut S,
        class_axis: usize,
    ) -> Result<()> {
        let shape = src.shape().to_vec();
        let xs = src.download()?;
        self.observe(&xs, &shape, class_axis)
    }

    /// The winning candidate (1-based grid index).
    pub fn best_candidate(&self) -> Result<usize> {
        if self.rows == 0 {
            return Err(no_data(&self.name));
        }
        let mut best = 0;
        for (c, &l) in self.losses.iter().enumerate() {
            if l < self.losses[best] {
                best = c;
            }
        }
        Ok(best)
    }

    /// The grid step (`(max|x| + margin) / candidates`).
    pub fn step(&self) -> Option<f64> {
        self.grid.map(|g| g.step)
    }

    /// Whether the first batch was ≥ 0 (then the range is `[0, amax]` on `[0, 255]`).
    pub fn one_sided(&self) -> Option<bool> {
        self.grid.map(|g| g.one_sided)
    }

    /// The accumulated loss per candidate (`[0]` is `+inf`).
    pub fn losses(&self) -> &[f64] {
        &self.losses
    }

    /// The chosen `amax`: `f32(step · best)`.
    pub fn amax(&self) -> Result<f32> {
        let best = self.best_candidate()?;
        let g = self.grid.ok_or_else(|| no_data(&self.name))?;
        Ok((g.step * best as f64) as f32)
    }

    /// The chosen range: `(−amax, amax)`, or `(0, amax)` for one-sided data.
    pub fn range(&self) -> Result<(f32, f32)> {
        let a = self.amax()?;
        Ok(if self.one_sided() == Some(true) {
            (0.0, a)
        } else {
            (-a, a)
        })
    }

    /// NaN / ±inf values dropped under [`NonFinite::Skip`].
    pub fn nonfinite_skipped(&self) -> u64 {
        self.nonfinite_skipped
    }

    /// Merge an observer that saw other batches: the losses add when both grids are the same
    /// (seed shards with [`CrossEntropyObserver::with_grid`]); the sum is exact up to f64
    /// rounding.
    pub fn merge(&mut self, other: &CrossEntropyObserver) -> Result<()> {
        if other.rows > 0 || other.grid.is_some() {
            match (self.grid, other.grid) {
                (None, _) if self.rows == 0 => {
                    self.grid = other.grid;
                }
                (Some(a), Some(b)) if a == b && self.losses.len() == other.losses.len() => {}
                _ => {
                    return Err(Error::Calibration {
                        tensor: self.name.clone(),
                        detail: "cannot merge cross-entropy observers with different grids (seed them with with_grid)".into(),
                    })
                }
            }
            for (a, b) in self.losses.iter_mut().zip(&other.losses).skip(1) {
                *a += b;
            }
        }
        self.rows += other.rows;
        self.batches += other.batches;
        self.nonfinite_skipped += other.nonfinite_skipped;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_quantizer() {
        // Two-sided: [-128, 127] with amax / 127.
        assert_eq!(quantizer(-2.54, 2.54), (2.54f32 / 127.0, -128.0, 127.0));
        // One-sided: [0, 255] with amax / 255.
        assert_eq!(quantizer(0.0, 5.1), (5.1f32 / 255.0, 0.0, 255.0));
    }

    #[test]
    fn a_clear_minimum_on_logits_and_a_finite_range_on_degenerate_input() {
        // Logits where the largest class matters: a wide range wastes resolution, a narrow one
        // clips the winner.
        let mut x = Vec::new();
        for r in 0..64 {
            for c in 0..10 {
                x.push(
                    ((r * 7 + c * 13) % 17) as f32 * 0.3 - 2.0
                        + if c == r % 10 { 4.0 } else { 0.0 },
                );
            }
        }
        let mut o = CrossEntropyObserver::new("logits", CrossEntropyConfig::default()).unwrap();
        o.observe(&x, &[64, 10], 1).unwrap();
        let best = o.best_candidate().unwrap();
        assert!((1..=100).contains(&best));
        assert!(o.losses()[best].is_finite());
        let a = o.amax().unwrap();
        assert!(a > 0.0 && a.is_finite());
        let mut z = CrossEntropyObserver::new("zeros", CrossEntropyConfig::default()).unwrap();
        z.observe(&[0.0; 12], &[3, 4], 1).unwrap();
        assert!(z.amax().unwrap().is_finite());
        assert_eq!(z.one_sided(), Some(true));
    }
}
