//! calib/minmax.rs — the simplest observers: running `max |x|` (pytorch-quantization's
//! `MaxCalibrator`), running `(min, max)` (torch.ao's `MinMaxObserver` and
//! `PerChannelMinMaxObserver`), per tensor or per channel along any axis, and torch.ao's
//! `MovingAverageMinMaxObserver`. Their ranges feed [`crate::quant::QuantParams`] directly.
//!
//! `MaxObserver` and `MinMaxObserver` are one bookkeeping (`Running`: channels, the non-finite
//! policy, batches, merging) over two per-channel statistics (`AbsMax`, `Extremes`).

use std::fmt::Debug;

use super::source::{nonfinite_policy, BatchSource, BatchStats};
use super::{
    finite_values, max_abs_bits, min_max, no_data, split_axis, NonFinite, NONFINITE_ABS_BITS,
};
use crate::error::{Error, Result};

/// Per-channel bookkeeping: which axis, and the channel count fixed by the first batch.
#[derive(Clone, Debug, PartialEq)]
struct Channels {
    axis: usize,
    count: Option<usize>,
}

fn channel_count(
    name: &str,
    ch: &mut Channels,
    shape: &[usize],
    len: usize,
) -> Result<(usize, usize, usize)> {
    let (outer, c, inner) = split_axis(name, shape, ch.axis, len)?;
    match ch.count {
        Some(k) if k != c => Err(Error::Calibration {
            tensor: name.to_string(),
            detail: format!(
                "axis {} had {k} channels in earlier batches, this batch has {c} (shape {shape:?})",
                ch.axis
            ),
        }),
        _ => {
            ch.count = Some(c);
            Ok((outer, c, inner))
        }
    }
}

/// Iterate the `(channel, contiguous run)` pieces of a C-order tensor split at an axis.
fn for_each_run(
    xs: &[f32],
    outer: usize,
    ch: usize,
    inner: usize,
    mut f: impl FnMut(usize, &[f32]),
) {
    if inner == 0 {
        return;
    }
    for o in 0..outer {
        for c in 0..ch {
            let start = (o * ch + c) * inner;
            f(c, &xs[start..start + inner]);
        }
    }
}

/// What a running observer keeps per channel, and how it folds values in.
trait Stat: Copy + Debug + PartialEq {
    /// Nothing seen yet (the identity of [`Stat::join`]).
    const NONE: Self;
    /// The statistic of non-empty, all-finite values.
    fn of_finite(xs: &[f32]) -> Self;
    /// The statistic of values whose `(min, max)` is `(lo, hi)`; `lo > hi` means none.
    fn of_range(lo: f32, hi: f32) -> Self;
    /// The statistic of one finite value.
    fn of_value(x: f32) -> Self;
    /// Both statistics together.
    fn join(self, other: Self) -> Self;
}

/// `max |x|` (0 when nothing was seen). Transparent, so the per-channel values read as `&[f32]`.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
struct AbsMax(f32);

impl Stat for AbsMax {
    const NONE: Self = AbsMax(0.0);
    fn of_finite(xs: &[f32]) -> Self {
        AbsMax(super::max_abs(xs))
    }
    fn of_range(lo: f32, hi: f32) -> Self {
        // max |x| of finite values: the larger magnitude of the two extremes.
        AbsMax(if lo <= hi {
            lo.abs().max(hi.abs())
        } else {
            0.0
        })
    }
    fn of_value(x: f32) -> Self {
        AbsMax(x.abs())
    }
    fn join(self, other: Self) -> Self {
        AbsMax(self.0.max(other.0))
    }
}

/// `(min, max)` (`(+inf, −inf)` when nothing was seen).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Extremes(f32, f32);

impl Stat for Extremes {
    const NONE: Self = Extremes(f32::INFINITY, f32::NEG_INFINITY);
    fn of_finite(xs: &[f32]) -> Self {
        let (l, h) = min_max(xs);
        Extremes(l, h)
    }
    fn of_range(lo: f32, hi: f32) -> Self {
        Extremes(lo, hi)
    }
    fn of_value(x: f32) -> Self {
        Extremes(x, x)
    }
    fn join(self, other: Self) -> Self {
        Extremes(self.0.min(other.0), self.1.max(other.1))
    }
}

/// A running statistic per tensor or per channel, under a non-finite policy.
#[derive(Clone, Debug, PartialEq)]
struct Running<S: Stat> {
    name: String,
    channels: Option<Channels>,
    /// One statistic per channel (one for a per-tensor observer; none before a per-channel
    /// observer's first batch).
    vals: Vec<S>,
    /// Per tensor: some finite value was seen. Per channel: some non-empty batch was seen.
    seen: bool,
    nonfinite: NonFinite,
    nonfinite_skipped: u64,
    batches: u64,
}

impl<S: Stat> Running<S> {
    fn new(name: &str, nonfinite: NonFinite) -> Self {
        Running {
            name: name.to_string(),
            channels: None,
            vals: vec![S::NONE],
            seen: false,
            nonfinite,
            nonfinite_skipped: 0,
            batches: 0,
        }
    }

    fn per_channel(name: &str, axis: usize, nonfinite: NonFinite) -> Self {
        Running {
            channels: Some(Channels { axis, count: None }),
            vals: Vec::new(),
            ..Running::new(name, nonfinite)
        }
    }

    fn observe(&mut self, xs: &[f32]) -> Result<()> {
        if self.channels.is_some() {
            return Err(Error::Calibration {
                tensor: self.name.clone(),
                detail: "a per-channel observer needs the batch's shape: use observe_shaped".into(),
            });
        }
        self.observe_shaped(xs, &[xs.len()])
    }

    /// Size the per-channel statistics for `c` channels (kept while the count stays).
    fn channel_vals(&mut self, c: usize) -> &mut [S] {
        if self.vals.len() != c {
            self.vals = vec![S::NONE; c];
        }
        &mut self.vals
    }

    fn observe_shaped(&mut self, xs: &[f32], shape: &[usize]) -> Result<()> {
        super::check_shape(&self.name, shape, xs.len())?;
        let policy = self.nonfinite;
        match &mut self.channels {
            None => {
                let (data, dropped) = finite_values(&self.name, xs, policy)?;
                self.nonfinite_skipped += dropped;
                if !data.is_empty() {
                    self.vals[0] = self.vals[0].join(S::of_finite(&data));
                    self.seen = true;
                }
            }
            Some(chan) => {
                let (outer, c, inner) = channel_count(&self.name, chan, shape, xs.len())?;
                if max_abs_bits(xs) >= NONFINITE_ABS_BITS && policy == NonFinite::Error {
                    return Err(super::nonfinite_error(&self.name, xs));
                }
                let mut dropped = 0u64;
                let vals = self.channel_vals(c);
                for_each_run(xs, outer, c, inner, |k, run| {
                    let s = if max_abs_bits(run) < NONFINITE_ABS_BITS {
                        S::of_finite(run)
                    } else {
                        dropped += run.iter().filter(|x| !x.is_finite()).count() as u64;
                        run.iter()
                            .filter(|x| x.is_finite())
                            .fold(S::NONE, |a, &x| a.join(S::of_value(x)))
                    };
                    vals[k] = vals[k].join(s);
                });
                self.nonfinite_skipped += dropped;
                self.seen |= !xs.is_empty();
            }
        }
        self.batches += 1;
        Ok(())
    }

    fn observe_source<B: BatchSource>(&mut self, src: &mut B) -> Result<()> {
        let shape = src.shape().to_vec();
        let len = super::check_len(&self.name, &shape)?;
        let policy = self.nonfinite;
        match &mut self.channels {
            None => {
                let st = src.stats()?;
                let dropped = st.policy(&self.name, policy)?;
                self.observe_stats(&st, dropped);
            }
            Some(chan) => {
                let (outer, c, inner) = channel_count(&self.name, chan, &shape, len)?;
                let cs = src.channel_stats(outer, c, inner)?;
                nonfinite_policy(&self.name, policy, cs.nonfinite, cs.first_nonfinite)?;
                for (v, &(lo, hi)) in self.channel_vals(c).iter_mut().zip(&cs.ranges) {
                    *v = v.join(S::of_range(lo, hi));
                }
                self.nonfinite_skipped += cs.nonfinite;
                self.seen |= len > 0;
                self.batches += 1;
            }
        }
        Ok(())
    }

    /// A per-tensor batch known by its statistics, after the non-finite policy.
    fn observe_stats(&mut self, st: &BatchStats, dropped: u64) {
        self.nonfinite_skipped += dropped;
        if let Some((lo, hi)) = st.range {
            self.vals[0] = self.vals[0].join(S::of_range(lo, hi));
            self.seen = true;
        }
        self.batches += 1;
    }

    fn axis(&self) -> Option<usize> {
        self.channels.as_ref().map(|c| c.axis)
    }

    /// Merge a running statistic of other batches of the same tensor (exact).
    fn merge(&mut self, other: &Running<S>) -> Result<()> {
        if self.axis() != other.axis() {
            return Err(Error::Calibration {
                tensor: self.name.clone(),
                detail: format!(
                    "cannot merge observers over axis {:?} and {:?}",
                    self.axis(),
                    other.axis()
                ),
            });
        }
        if !other.vals.is_empty() {
            if self.vals.is_empty() {
                self.vals = other.vals.clone();
                self.channels = other.channels.clone();
            } else if self.vals.len() != other.vals.len() {
                return Err(Error::Calibration {
                    tensor: self.name.clone(),
                    detail: format!(
                        "cannot merge {} channels with {}",
                        self.vals.len(),
                        other.vals.len()
                    ),
                });
            } else {
                for (a, b) in self.vals.iter_mut().zip(&other.vals) {
                    *a = a.join(*b);
                }
            }
        }
        self.seen |= other.seen;
        self.batches += other.batches;
        self.nonfinite_skipped += other.nonfinite_skipped;
        Ok(())
    }
}

/// The methods `MaxObserver` and `MinMaxObserver` share, each a call into their `Running`.
macro_rules! running_observer_api {
    ($ty:ident, $new_doc:expr, $per_channel_doc:expr, $merge_doc:expr) => {
        #[doc = $new_doc]
        pub fn new(name: &str, nonfinite: NonFinite) -> Self {
            $ty {
                run: Running::new(name, nonfinite),
            }
        }

        #[doc = $per_channel_doc]
        pub fn per_channel(name: &str, axis: usize, nonfinite: NonFinite) -> Self {
            $ty {
                run: Running::per_channel(name, axis, nonfinite),
            }
        }

        /// Observe a batch of a per-tensor observer (any shape).
        pub fn observe(&mut self, xs: &[f32]) -> Result<()> {
            self.run.observe(xs)
        }

        /// Observe a batch of shape `shape` (C order).
        pub fn observe_shaped(&mut self, xs: &[f32], shape: &[usize]) -> Result<()> {
            self.run.observe_shaped(xs, shape)
        }

        /// Observe a batch that lives elsewhere (GPU memory), per tensor or per channel as this
        /// observer was built; leaves it as `observe_shaped` of the same values would.
        #[cfg_attr(not(feature = "cuda"), allow(dead_code))] // the device path (`observe_cuda`)
        pub(crate) fn observe_source<S: BatchSource>(&mut self, src: &mut S) -> Result<()> {
            self.run.observe_source(src)
        }

        /// The axis of a per-channel observer.
        pub fn axis(&self) -> Option<usize> {
            self.run.axis()
        }

        /// NaN / ±inf values dropped under [`NonFinite::Skip`].
        pub fn nonfinite_skipped(&self) -> u64 {
            self.run.nonfinite_skipped
        }

        /// Batches observed.
        pub fn batches(&self) -> u64 {
            self.run.batches
        }

        #[doc = $merge_doc]
        pub fn merge(&mut self, other: &$ty) -> Result<()> {
            self.run.merge(&other.run)
        }
    };
}

/// Running `max |x|`, per tensor or per channel.
#[derive(Clone, Debug, PartialEq)]
pub struct MaxObserver {
    run: Running<AbsMax>,
}

impl MaxObserver {
    running_observer_api!(
        MaxObserver,
        "Per-tensor `max |x|` for the tensor `name`.",
        "Per-channel `max |x|`: one value per index along `axis`, reduced over every other axis (pytorch-quantization `MaxCalibrator(axis=…)`, keeping that axis).",
        "Merge an observer that saw other batches of the same tensor: the elementwise max (exact)."
    );

    /// The per-tensor `max |x|` (for a per-channel observer: the max over channels).
    pub fn amax(&self) -> Result<f32> {
        Ok(self.amax_per_channel()?.iter().fold(0.0, |a, m| a.max(*m)))
    }

    /// One `max |x|` per channel (a single value for a per-tensor observer). A per-channel
    /// observer that saw values, all of them skipped as non-finite, reports 0.
    pub fn amax_per_channel(&self) -> Result<&[f32]> {
        if !self.run.seen {
            return Err(no_data(&self.run.name));
        }
        Ok(bytemuck::cast_slice(&self.run.vals))
    }
}

/// Running `(min, max)`, per tensor or per channel.
#[derive(Clone, Debug, PartialEq)]
pub struct MinMaxObserver {
    run: Running<Extremes>,
}

impl MinMaxObserver {
    running_observer_api!(
        MinMaxObserver,
        "Per-tensor running `(min, max)`.",
        "Per-channel running `(min, max)` along `axis` (torch.ao `PerChannelMinMaxObserver(ch_axis)`).",
        "Merge an observer that saw other batches of the same tensor (exact)."
    );

    /// A per-tensor batch known by its statistics, after the non-finite policy.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))] // the device path (`observe_cuda`)
    pub(crate) fn observe_stats(&mut self, st: &BatchStats, dropped: u64) {
        self.run.observe_stats(st, dropped)
    }

    /// The per-tensor `(min, max)` (over all channels for a per-channel observer).
    pub fn range(&self) -> Result<(f32, f32)> {
        let all = self.run.vals.iter().fold(Extremes::NONE, |a, b| a.join(*b));
        if all.0 > all.1 {
            return Err(no_data(&self.run.name));
        }
        Ok((all.0, all.1))
    }

    /// One `(min, max)` per channel. A channel that saw no finite value reports `(0, 0)`.
    pub fn ranges_per_channel(&self) -> Result<Vec<(f32, f32)>> {
        self.range()?;
        Ok(self
            .run
            .vals
            .iter()
            .map(|&Extremes(l, h)| if l > h { (0.0, 0.0) } else { (l, h) })
            .collect())
    }
}

/// torch.ao's `MovingAverageMinMaxObserver`: the first batch sets `(min, max)`; each later batch
/// moves them by `c · (batch − running)` in f32 (`c = 0.01` by default).
#[derive(Clone, Debug, PartialEq)]
pub struct MovingAverageMinMaxObserver {
    name: String,
    c: f32,
    state: Option<EmaState>,
    nonfinite: NonFinite,
    nonfinite_skipped: u64,
    batches: u64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct EmaState {
    lo: f32,
    hi: f32,
    /// The first batch's `(min, max)` and the number of non-empty batches, for [`MovingAverageMinMaxObserver::merge`].
    first: (f32, f32),
    updates: u64,
}

impl MovingAverageMinMaxObserver {
    /// torch.ao's default averaging constant.
    pub const DEFAULT_CONSTANT: f32 = 0.01;

    /// A moving-average observer with averaging constant `c` in `(0, 1]`.
    pub fn new(name: &str, c: f32, nonfinite: NonFinite) -> Result<Self> {
        if !(c > 0.0 && c <= 1.0) {
            return Err(Error::param(
                "averaging_constant",
                format!("must lie in (0, 1], got {c}"),
            ));
        }
        Ok(MovingAverageMinMaxObserver {
            name: name.to_string(),
            c,
            state: None,
            nonfinite,
            nonfinite_skipped: 0,
            batches: 0,
        })
    }

    /// Observe a batch.
    pub fn observe(&mut self, xs: &[f32]) -> Result<()> {
        let (data, dropped) = finite_values(&self.name, xs, self.nonfinite)?;
        self.nonfinite_skipped += dropped;
        self.batches += 1;
        if data.is_empty() {
            return Ok(());
        }
        let (l, h) = min_max(&data);
        self.update(l, h);
        Ok(())
    }

    /// Observe a batch that lives elsewhere (GPU memory); leaves the observer as
    /// [`MovingAverageMinMaxObserver::observe`] of the same values would.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))] // the device path (`observe_cuda`)
    pub(crate) fn observe_source<S: BatchSource>(&mut self, src: &mut S) -> Result<()> {
        let st = src.stats()?;
        let dropped = st.policy(&self.name, self.nonfinite)?;
        self.observe_stats(&st, dropped);
        Ok(())
    }

    /// A batch known by its statistics, after the non-finite policy.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))] // the device path (`observe_cuda`)
    pub(crate) fn observe_stats(&mut self, st: &BatchStats, dropped: u64) {
        self.nonfinite_skipped += dropped;
        self.batches += 1;
        if let Some((l, h)) = st.range {
            self.update(l, h);
        }
    }

    /// Move the averages towards a batch's `(min, max)`.
    fn update(&mut self, l: f32, h: f32) {
        let c = self.c;
        self.state = Some(match self.state {
            None => EmaState {
                lo: l,
                hi: h,
                first: (l, h),
                updates: 1,
            },
            Some(s) => EmaState {
                lo: s.lo + c * (l - s.lo),
                hi: s.hi + c * (h - s.hi),
                updates: s.updates + 1,
                ..s
            },
        });
    }

    /// The averaged `(min, max)`.
    pub fn range(&self) -> Result<(f32, f32)> {
        self.state
            .map(|s| (s.lo, s.hi))
            .ok_or_else(|| no_data(&self.name))
    }
    /// NaN / ±inf values dropped under [`NonFinite::Skip`].
    pub fn nonfinite_skipped(&self) -> u64 {
        self.nonfinite_skipped
    }

    /// Merge an observer that saw the batches that came *after* this one's. A moving average
    /// depends on order: the result is what one observer that saw this one's batches and then the
    /// other's would hold (`other + (1 − c)^n · (self − other's first batch)`, n = the other's
    /// batches), up to f32 rounding.
    pub fn merge(&mut self, other: &MovingAverageMinMaxObserver) -> Result<()> {
        if self.c != other.c {
            return Err(Error::Calibration {
                tensor: self.name.clone(),
                detail: format!(
                    "cannot merge averaging constants {} and {}",
                    self.c, other.c
                ),
            });
        }
        self.state = match (self.state, other.state) {
            (s, None) => s,
            (None, o) => o,
            (Some(a), Some(b)) => {
                let decay = (1.0 - self.c as f64).powi(b.updates.min(i32::MAX as u64) as i32);
                let mv = |run: f32, first: f32, prev: f32| {
                    (run as f64 + decay * (prev as f64 - first as f64)) as f32
                };
                Some(EmaState {
                    lo: mv(b.lo, b.first.0, a.lo),
                    hi: mv(b.hi, b.first.1, a.hi),
                    first: a.first,
                    updates: a.updates + b.updates,
                })
            }
        };
        self.batches += other.batches;
        self.nonfinite_skipped += other.nonfinite_skipped;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_channel_max_along_each_axis() {
        // shape [2, 3]: rows are axis 0, columns axis 1.
        let x = [1.0, -5.0, 2.0, -3.0, 4.0, 0.5];
        let mut a0 = MaxObserver::per_channel("w", 0, NonFinite::Error);
        a0.observe_shaped(&x, &[2, 3]).unwrap();
        assert_eq!(a0.amax_per_channel().unwrap(), &[5.0, 4.0]);
        let mut a1 = MaxObserver::per_channel("w", 1, NonFinite::Error);
        a1.observe_shaped(&x, &[2, 3]).unwrap();
        assert_eq!(a1.amax_per_channel().unwrap(), &[3.0, 5.0, 2.0]);
        // A channel count that changes, a shape that does not hold the values (as a device
        // batch's shape past its buffer), a shape whose count overflows.
        let e = a1.observe_shaped(&x, &[3, 2]).unwrap_err();
        assert!(matches!(e, Error::Calibration { .. }), "{e}");
        let e = a1.observe_shaped(&x, &[2, 2]).unwrap_err();
        assert!(
            matches!(
                e,
                Error::Shape {
                    expected: 4,
                    got: 6,
                    ..
                }
            ),
            "{e}"
        );
        let e = a1.observe_shaped(&x, &[usize::MAX, 3]).unwrap_err();
        assert!(matches!(e, Error::Dimension { .. }), "{e}");
        assert_eq!(a1.amax_per_channel().unwrap(), &[3.0, 5.0, 2.0]);
        let mut mm = MinMaxObserver::per_channel("w", 1, NonFinite::Error);
        mm.observe_shaped(&x, &[2, 3]).unwrap();
        assert_eq!(
            mm.ranges_per_channel().unwrap(),
            vec![(-3.0, 1.0), (-5.0, 4.0), (0.5, 2.0)]
        );
    }

    #[test]
    fn empty_observers_error() {
        assert!(MaxObserver::new("t", NonFinite::Error).amax().is_err());
        assert!(MinMaxObserver::new("t", NonFinite::Error).range().is_err());
        let mut m = MinMaxObserver::new("t", NonFinite::Skip);
        m.observe(&[f32::NAN]).unwrap();
        assert!(m.range().is_err());
        assert_eq!(m.nonfinite_skipped(), 1);
    }

    #[test]
    fn skipped_channels_and_merges() {
        // A per-channel batch whose values were all skipped: max |x| reports 0 per channel (the
        // batch was seen), (min, max) has no range.
        let nan = [f32::NAN; 4];
        let mut m = MaxObserver::per_channel("t", 0, NonFinite::Skip);
        m.observe_shaped(&nan, &[2, 2]).unwrap();
        assert_eq!(m.amax_per_channel().unwrap(), &[0.0, 0.0]);
        let mut mm = MinMaxObserver::per_channel("t", 0, NonFinite::Skip);
        mm.observe_shaped(&nan, &[2, 2]).unwrap();
        assert!(mm.range().is_err());
        assert_eq!((m.nonfinite_skipped(), mm.nonfinite_skipped()), (4, 4));
        // Merging: the elementwise statistic, batches and skips add up; channel counts must agree.
        let mut a = MinMaxObserver::per_channel("t", 1, NonFinite::Skip);
        a.observe_shaped(&[1.0, -2.0, f32::INFINITY, 4.0], &[2, 2])
            .unwrap();
        let mut b = MinMaxObserver::per_channel("t", 1, NonFinite::Skip);
        b.observe_shaped(&[-3.0, 5.0], &[1, 2]).unwrap();
        a.merge(&b).unwrap();
        assert_eq!(
            a.ranges_per_channel().unwrap(),
            vec![(-3.0, 1.0), (-2.0, 5.0)]
        );
        assert_eq!((a.batches(), a.nonfinite_skipped()), (2, 1));
        let mut three = MinMaxObserver::per_channel("t", 1, NonFinite::Skip);
        three.observe_shaped(&[0.0; 3], &[1, 3]).unwrap();
        assert!(a.merge(&three).is_err());
        let mut x = MaxObserver::per_channel("t", 1, NonFinite::Error);
        x.observe_shaped(&[1.0, -2.0], &[1, 2]).unwrap();
        let mut y = MaxObserver::per_channel("t", 1, NonFinite::Error);
        y.observe_shaped(&[-3.0, 0.5], &[1, 2]).unwrap();
        x.merge(&y).unwrap();
        assert_eq!(x.amax_per_channel().unwrap(), &[3.0, 2.0]);
        assert_eq!(x.amax().unwrap(), 3.0);
        assert!(x.merge(&MaxObserver::new("t", NonFinite::Error)).is_err());
        // An unseen per-tensor observer merges as a no-op.
        let mut p = MaxObserver::new("t", NonFinite::Error);
        p.observe(&[-7.0]).unwrap();
        p.merge(&MaxObserver::new("t", NonFinite::Error)).unwrap();
        assert_eq!((p.amax().unwrap(), p.batches()), (7.0, 1));
    }

    #[test]
    fn moving_average_follows_torch_and_merges_in_order() {
        let batches: Vec<Vec<f32>> = (0..6)
            .map(|b| vec![-(b as f32) - 1.0, 0.5 * b as f32 + 2.0])
            .collect();
        let mut all = MovingAverageMinMaxObserver::new("t", 0.01, NonFinite::Error).unwrap();
        for b in &batches {
            all.observe(b).unwrap();
        }
        // Hand-computed f32 recurrence.
        let mut lo = -1.0f32;
        for b in 1..6 {
            lo += 0.01 * ((-(b as f32) - 1.0) - lo);
        }
        assert_eq!(all.range().unwrap().0, lo);
        let mut first = MovingAverageMinMaxObserver::new("t", 0.01, NonFinite::Error).unwrap();
        let mut second = first.clone();
        for b in &batches[..2] {
            first.observe(b).unwrap();
        }
        for b in &batches[2..] {
            second.observe(b).unwrap();
        }
        first.merge(&second).unwrap();
        let (l, h) = first.range().unwrap();
        let (wl, wh) = all.range().unwrap();
        assert!((l - wl).abs() <= 2.0 * f32::EPSILON * wl.abs(), "{l} {wl}");
        assert!((h - wh).abs() <= 2.0 * f32::EPSILON * wh.abs(), "{h} {wh}");
    }
}
