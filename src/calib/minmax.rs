//! calib/minmax.rs — the simplest observers: running `max |x|` (pytorch-quantization's
//! `MaxCalibrator`), running `(min, max)` (torch.ao's `MinMaxObserver` and
//! `PerChannelMinMaxObserver`), per tensor or per channel along any axis, and torch.ao's
//! `MovingAverageMinMaxObserver`. Their ranges feed [`crate::quant::QuantParams`] directly.

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

/// Running `max |x|`, per tensor or per channel.
#[derive(Clone, Debug, PartialEq)]
pub struct MaxObserver {
    name: String,
    channels: Option<Channels>,
    amax: Vec<f32>,
    seen: bool,
    nonfinite: NonFinite,
    nonfinite_skipped: u64,
    batches: u64,
}

impl MaxObserver {
    /// Per-tensor `max |x|` for the tensor `name`.
    pub fn new(name: &str, nonfinite: NonFinite) -> Self {
        MaxObserver {
            name: name.to_string(),
            channels: None,
            amax: vec![0.0],
            seen: false,
            nonfinite,
            nonfinite_skipped: 0,
            batches: 0,
        }
    }

    /// Per-channel `max |x|`: one value per index along `axis`, reduced over every other axis
    /// (pytorch-quantization `MaxCalibrator(axis=…)`, keeping that axis).
    pub fn per_channel(name: &str, axis: usize, nonfinite: NonFinite) -> Self {
        MaxObserver {
            channels: Some(Channels { axis, count: None }),
            amax: Vec::new(),
            ..MaxObserver::new(name, nonfinite)
        }
    }

    /// Observe a batch of a per-tensor observer (any shape).
    pub fn observe(&mut self, xs: &[f32]) -> Result<()> {
        if self.channels.is_some() {
            return Err(Error::Calibration {
                tensor: self.name.clone(),
                detail: "a per-channel observer needs the batch's shape: use observe_shaped".into(),
            });
        }
        self.observe_shaped(xs, &[xs.len()])
    }

    /// Observe a batch of shape `shape` (C order).
    pub fn observe_shaped(&mut self, xs: &[f32], shape: &[usize]) -> Result<()> {
        super::check_shape(&self.name, shape, xs.len())?;
        let policy = self.nonfinite;
        match &mut self.channels {
            None => {
                let (data, dropped) = finite_values(&self.name, xs, policy)?;
                self.nonfinite_skipped += dropped;
                if !data.is_empty() {
                    self.amax[0] = self.amax[0].max(super::max_abs(&data));
                    self.seen = true;
                }
            }
            Some(chan) => {
                let (outer, c, inner) = channel_count(&self.name, chan, shape, xs.len())?;
                if max_abs_bits(xs) >= NONFINITE_ABS_BITS && policy == NonFinite::Error {
                    return Err(super::nonfinite_error(&self.name, xs));
                }
                if self.amax.len() != c {
                    self.amax = vec![0.0; c];
                }
                let mut dropped = 0u64;
                let amax = &mut self.amax;
                for_each_run(xs, outer, c, inner, |k, run| {
                    let bits = max_abs_bits(run);
                    let m = if bits < NONFINITE_ABS_BITS {
                        f32::from_bits(bits)
                    } else {
                        dropped += run.iter().filter(|x| !x.is_finite()).count() as u64;
                        run.iter()
                            .filter(|x| x.is_finite())
                            .fold(0.0f32, |a, x| a.max(x.abs()))
                    };
                    amax[k] = amax[k].max(m);
                });
                self.nonfinite_skipped += dropped;
                self.seen |= !xs.is_empty();
            }
        }
        self.batches += 1;
        Ok(())
    }

    /// Observe a batch that lives elsewhere (GPU memory), per tensor or per channel as this
    /// observer was built; leaves it as [`MaxObserver::observe_shaped`] of the same values would.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))] // the device path (`observe_cuda`)
    pub(crate) fn observe_source<S: BatchSource>(&mut self, src: &mut S) -> Result<()> {
        let shape = src.shape().to_vec();
        let len = super::check_len(&self.name, &shape)?;
        let policy = self.nonfinite;
        match &mut self.channels {
            None => {
                let st = src.stats()?;
                let dropped = st.policy(&self.name, policy)?;
                self.observe_stats(&st, dropped);
                return Ok(());
            }
            Some(chan) => {
                let (outer, c, inner) = channel_count(&self.name, chan, &shape, len)?;
                let cs = src.channel_stats(outer, c, inner)?;
                nonfinite_policy(&self.name, policy, cs.nonfinite, cs.first_nonfinite)?;
                if self.amax.len() != c {
                    self.amax = vec![0.0; c];
                }
                for (a, &(lo, hi)) in self.amax.iter_mut().zip(&cs.ranges) {
                    let m = if lo <= hi {
                        lo.abs().max(hi.abs())
                    } else {
                        0.0
                    };
                    *a = a.max(m);
                }
                self.nonfinite_skipped += cs.nonfinite;
                self.seen |= len > 0;
            }
        }
        self.batches += 1;
        Ok(())
    }

    /// A per-tensor batch known by its statistics, after the non-finite policy.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))] // the device path (`observe_cuda`)
    fn observe_stats(&mut self, st: &BatchStats, dropped: u64) {
        self.nonfinite_skipped += dropped;
        if let Some((lo, hi)) = st.range {
            // max |x| of the finite values: the larger magnitude of the two extremes.
            self.amax[0] = self.amax[0].max(lo.abs().max(hi.abs()));
            self.seen = true;
        }
        self.batches += 1;
    }

    /// The per-tensor `max |x|` (for a per-channel observer: the max over channels).
    pub fn amax(&self) -> Result<f32> {
        if !self.seen {
            return Err(no_data(&self.name));
        }
        Ok(self.amax.iter().copied().fold(0.0, f32::max))
    }

    /// One `max |x|` per channel (a single value for a per-tensor observer).
    pub fn amax_per_channel(&self) -> Result<&[f32]> {
        if !self.seen {
            return Err(no_data(&self.name));
        }
        Ok(&self.amax)
    }

    /// The axis of a per-channel observer.
    pub fn axis(&self) -> Option<usize> {
        self.channels.as_ref().map(|c| c.axis)
    }
    /// NaN / ±inf values dropped under [`NonFinite::Skip`].
    pub fn nonfinite_skipped(&self) -> u64 {
        self.nonfinite_skipped
    }
    /// Batches observed.
    pub fn batches(&self) -> u64 {
        self.batches
    }

    /// Merge an observer that saw other batches of the same tensor: the elementwise max (exact).
    pub fn merge(&mut self, other: &MaxObserver) -> Result<()> {
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
        if other.seen {
            if !self.seen {
                self.amax = other.amax.clone();
                self.channels = other.channels.clone();
            } else if self.amax.len() != other.amax.len() {
                return Err(Error::Calibration {
                    tensor: self.name.clone(),
                    detail: format!(
                        "cannot merge {} channels with {}",
                        self.amax.len(),
                        other.amax.len()
                    ),
                });
            } else {
                for (a, b) in self.amax.iter_mut().zip(&other.amax) {
                    *a = a.max(*b);
                }
            }
            self.seen = true;
        }
        self.batches += other.batches;
        self.nonfinite_skipped += other.nonfinite_skipped;
        Ok(())
    }
}

/// Running `(min, max)`, per tensor or per channel.
#[derive(Clone, Debug, PartialEq)]
pub struct MinMaxObserver {
    name: String,
    channels: Option<Channels>,
    lo: Vec<f32>,
    hi: Vec<f32>,
    nonfinite: NonFinite,
    nonfinite_skipped: u64,
    batches: u64,
}

impl MinMaxObserver {
    /// Per-tensor running `(min, max)`.
    pub fn new(name: &str, nonfinite: NonFinite) -> Self {
        MinMaxObserver {
            name: name.to_string(),
            channels: None,
            lo: vec![f32::INFINITY],
            hi: vec![f32::NEG_INFINITY],
            nonfinite,
            nonfinite_skipped: 0,
            batches: 0,
        }
    }

    /// Per-channel running `(min, max)` along `axis` (torch.ao `PerChannelMinMaxObserver(ch_axis)`).
    pub fn per_channel(name: &str, axis: usize, nonfinite: NonFinite) -> Self {
        MinMaxObserver {
            channels: Some(Channels { axis, count: None }),
            lo: Vec::new(),
            hi: Vec::new(),
            ..MinMaxObserver::new(name, nonfinite)
        }
    }

    /// Observe a batch of a per-tensor observer.
    pub fn observe(&mut self, xs: &[f32]) -> Result<()> {
        if self.channels.is_some() {
            return Err(Error::Calibration {
                tensor: self.name.clone(),
                detail: "a per-channel observer needs the batch's shape: use observe_shaped".into(),
            });
        }
        self.observe_shaped(xs, &[xs.len()])
    }

    /// Observe a batch of shape `shape` (C order).
    pub fn observe_shaped(&mut self, xs: &[f32], shape: &[usize]) -> Result<()> {
        super::check_shape(&self.name, shape, xs.len())?;
        let policy = self.nonfinite;
        match &mut self.channels {
            None => {
                let (data, dropped) = finite_values(&self.name, xs, policy)?;
                self.nonfinite_skipped += dropped;
                if !data.is_empty() {
                    let (l, h) = min_max(&data);
                    self.lo[0] = self.lo[0].min(l);
                    self.hi[0] = self.hi[0].max(h);
                }
            }
            Some(chan) => {
                let (outer, c, inner) = channel_count(&self.name, chan, shape, xs.len())?;
                if max_abs_bits(xs) >= NONFINITE_ABS_BITS && policy == NonFinite::Error {
                    return Err(super::nonfinite_error(&self.name, xs));
                }
                if self.lo.len() != c {
                    self.lo = vec![f32::INFINITY; c];
                    self.hi = vec![f32::NEG_INFINITY; c];
                }
                let mut dropped = 0u64;
                let (lo, hi) = (&mut self.lo, &mut self.hi);
                for_each_run(xs, outer, c, inner, |k, run| {
                    let (l, h) = if max_abs_bits(run) < NONFINITE_ABS_BITS {
                        min_max(run)
                    } else {
                        dropped += run.iter().filter(|x| !x.is_finite()).count() as u64;
                        run.iter()
                            .filter(|x| x.is_finite())
                            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| {
                                (a.min(x), b.max(x))
                            })
                    };
                    lo[k] = lo[k].min(l);
                    hi[k] = hi[k].max(h);
                });
                self.nonfinite_skipped += dropped;
            }
        }
        self.batches += 1;
        Ok(())
    }

    /// Observe a batch that lives elsewhere (GPU memory), per tensor or per channel as this
    /// observer was built; leaves it as [`MinMaxObserver::observe_shaped`] of the same values
    /// would.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))] // the device path (`observe_cuda`)
    pub(crate) fn observe_source<S: BatchSource>(&mut self, src: &mut S) -> Result<()> {
        let shape = src.shape().to_vec();
        let len = super::check_len(&self.name, &shape)?;
        let policy = self.nonfinite;
        match &mut self.channels {
            None => {
                let st = src.stats()?;
                let dropped = st.policy(&self.name, policy)?;
                self.observe_stats(&st, dropped);
                return Ok(());
            }
            Some(chan) => {
                let (outer, c, inner) = channel_count(&self.name, chan, &shape, len)?;
                let cs = src.channel_stats(outer, c, inner)?;
                nonfinite_policy(&self.name, policy, cs.nonfinite, cs.first_nonfinite)?;
                if self.lo.len() != c {
                    self.lo = vec![f32::INFINITY; c];
                    self.hi = vec![f32::NEG_INFINITY; c];
                }
                for (k, &(l, h)) in cs.ranges.iter().enumerate() {
                    self.lo[k] = self.lo[k].min(l);
                    self.hi[k] = self.hi[k].max(h);
                }
                self.nonfinite_skipped += cs.nonfinite;
            }
        }
        self.batches += 1;
        Ok(())
    }

    /// A per-tensor batch known by its statistics, after the non-finite policy.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))] // the device path (`observe_cuda`)
    pub(crate) fn observe_stats(&mut self, st: &BatchStats, dropped: u64) {
        self.nonfinite_skipped += dropped;
        if let Some((l, h)) = st.range {
            self.lo[0] = self.lo[0].min(l);
            self.hi[0] = self.hi[0].max(h);
        }
        self.batches += 1;
    }

    /// The per-tensor `(min, max)` (over all channels for a per-channel observer).
    pub fn range(&self) -> Result<(f32, f32)> {
        let lo = self.lo.iter().copied().fold(f32::INFINITY, f32::min);
        let hi = self.hi.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if lo > hi {
            return Err(no_data(&self.name));
        }
        Ok((lo, hi))
    }

    /// One `(min, max)` per channel. A channel that saw no finite value reports `(0, 0)`.
    pub fn ranges_per_channel(&self) -> Result<Vec<(f32, f32)>> {
        self.range()?;
        Ok(self
            .lo
            .iter()
            .zip(&self.hi)
            .map(|(&l, &h)| if l > h { (0.0, 0.0) } else { (l, h) })
            .collect())
    }

    /// The axis of a per-channel observer.
    pub fn axis(&self) -> Option<usize> {
        self.channels.as_ref().map(|c| c.axis)
    }
    /// NaN / ±inf values dropped under [`NonFinite::Skip`].
    pub fn nonfinite_skipped(&self) -> u64 {
        self.nonfinite_skipped
    }
    /// Batches observed.
    pub fn batches(&self) -> u64 {
        self.batches
    }

    /// Merge an observer that saw other batches of the same tensor (exact).
    pub fn merge(&mut self, other: &MinMaxObserver) -> Result<()> {
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
        if !other.lo.is_empty() {
            if self.lo.is_empty() {
                self.lo = other.lo.clone();
                self.hi = other.hi.clone();
                self.channels = other.channels.clone();
            } else if self.lo.len() != other.lo.len() {
                return Err(Error::Calibration {
                    tensor: self.name.clone(),
                    detail: format!(
                        "cannot merge {} channels with {}",
                        self.lo.len(),
                        other.lo.len()
                    ),
                });
            } else {
                for k in 0..self.lo.len() {
                    self.lo[k] = self.lo[k].min(other.lo[k]);
                    self.hi[k] = self.hi[k].max(other.hi[k]);
                }
            }
        }
        self.batches += other.batches;
        self.nonfinite_skipped += other.nonfinite_skipped;
        Ok(())
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
        assert!(a1.observe_shaped(&x, &[3, 2]).is_err());
        assert!(a1.observe_shaped(&x, &[2, 2]).is_err());
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
