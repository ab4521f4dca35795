//! calib/observer.rs — [`TensorObserver`]: every statistic a calibration run keeps for one named
//! tensor (running min/max, the pytorch-quantization histogram of `|x|`, the signed histogram,
//! the moving average, and optionally the cross-entropy losses), and [`Method`], the choice that
//! turns them into [`QuantParams`]. [`crate::nn::calibration`] holds one per observed tensor.

use super::source::BatchSource;
use super::{
    entropy_amax, finite_values, mse_amax, percentile_amax, CrossEntropyConfig,
    CrossEntropyObserver, EntropyOptions, Histogram, HistogramConfig, MinMaxObserver,
    MovingAverageMinMaxObserver, MseOptions, NonFinite, SignedHistogram,
};
use crate::error::{Error, Result};
use crate::quant::QuantParams;

/// How an `amax` (a symmetric range `[-amax, amax]`, or `[0, amax]` for data ≥ 0) is chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AmaxMethod {
    /// `max |x|` (pytorch-quantization's `MaxCalibrator`).
    Max,
    /// The histogram percentile `p` in `(0, 100]`.
    Percentile(f64),
    /// The histogram MSE search.
    Mse,
    /// The histogram KL-divergence search.
    Entropy,
    /// The cross-entropy grid search (for logits feeding a softmax over the last axis).
    CrossEntropy,
}

/// How an asymmetric range `[lo, hi]` is chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RangeMethod {
    /// Running min and max.
    MinMax,
    /// torch.ao's moving-average min and max.
    MovingAverage,
    /// Two-sided percentile of the signed histogram.
    Percentile(f64),
    /// MSE search over clip points of the signed histogram.
    Mse,
}

/// A range method together with the integer scheme it produces.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Method {
    /// `s8` in `[-127, 127]`, `scale = amax / 127` (the crate's default scheme).
    Symmetric(AmaxMethod),
    /// `u8` in `[0, 255]` with zero point 0, `scale = amax / 255`, for data ≥ 0; MSE and entropy
    /// use their unsigned variants (255 and 256 levels).
    Unsigned(AmaxMethod),
    /// `u8` with a zero point over `[lo, hi]` widened to contain 0.
    Asymmetric(RangeMethod),
}

impl AmaxMethod {
    fn label(&self) -> String {
        match self {
            AmaxMethod::Max => "max".into(),
            AmaxMethod::Percentile(p) => format!("percentile_{p}"),
            AmaxMethod::Mse => "mse".into(),
            AmaxMethod::Entropy => "entropy".into(),
            AmaxMethod::CrossEntropy => "cross_entropy".into(),
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Method::Symmetric(m) => write!(f, "symmetric/{}", m.label()),
            Method::Unsigned(m) => write!(f, "unsigned/{}", m.label()),
            Method::Asymmetric(r) => match r {
                RangeMethod::MinMax => write!(f, "asymmetric/minmax"),
                RangeMethod::MovingAverage => write!(f, "asymmetric/moving_average"),
                RangeMethod::Percentile(p) => write!(f, "asymmetric/percentile_{p}"),
                RangeMethod::Mse => write!(f, "asymmetric/mse"),
            },
        }
    }
}

/// What a [`TensorObserver`] collects.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ObserverConfig {
    /// The histogram of `|x|` (its `nonfinite` is overridden by [`ObserverConfig::nonfinite`]).
    pub histogram: HistogramConfig,
    /// Keep a signed histogram (needed by the asymmetric percentile and MSE methods).
    pub signed_histogram: bool,
    /// Keep a moving average with this constant (torch.ao's default is 0.01).
    pub moving_average: Option<f32>,
    /// Accumulate cross-entropy losses (100 quantizations of every batch: off by default).
    pub cross_entropy: Option<CrossEntropyConfig>,
    /// What to do with NaN and ±inf, for every statistic.
    pub nonfinite: NonFinite,
}

impl Default for ObserverConfig {
    fn default() -> Self {
        ObserverConfig {
            histogram: HistogramConfig::default(),
            signed_histogram: true,
            moving_average: Some(MovingAverageMinMaxObserver::DEFAULT_CONSTANT),
            cross_entropy: None,
            nonfinite: NonFinite::Error,
        }
    }
}

/// Every statistic for one tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorObserver {
    name: String,
    cfg: ObserverConfig,
    minmax: MinMaxObserver,
    hist: Histogram,
    signed: Option<SignedHistogram>,
    ema: Option<MovingAverageMinMaxObserver>,
    ce: Option<CrossEntropyObserver>,
    nonfinite_skipped: u64,
}

impl TensorObserver {
    /// An observer for the tensor `name`.
    pub fn new(name: &str, cfg: ObserverConfig) -> Result<Self> {
        let hcfg = HistogramConfig {
            nonfinite: cfg.nonfinite,
            ..cfg.histogram
        };
        Ok(TensorObserver {
            name: name.to_string(),
            cfg,
            minmax: MinMaxObserver::new(name, cfg.nonfinite),
            hist: Histogram::new(name, hcfg)?,
            signed: if cfg.signed_histogram {
                Some(SignedHistogram::new(
                    name,
                    hcfg.bins,
                    hcfg.max_bins.max(hcfg.bins + 2),
                    cfg.nonfinite,
                )?)
            } else {
                None
            },
            ema: match cfg.moving_average {
                Some(c) => Some(MovingAverageMinMaxObserver::new(name, c, cfg.nonfinite)?),
                None => None,
            },
            ce: match cfg.cross_entropy {
                Some(c) => Some(CrossEntropyObserver::new(
                    name,
                    CrossEntropyConfig {
                        nonfinite: cfg.nonfinite,
                        ..c
                    },
                )?),
                None => None,
            },
            nonfinite_skipped: 0,
        })
    }

    /// The tensor's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Observe a batch of shape `shape` (C order). The cross-entropy statistic, if enabled, takes
    /// the last axis as the softmax (class) axis. Nothing is updated if the batch is refused.
    pub fn observe(&mut self, xs: &[f32], shape: &[usize]) -> Result<()> {
        super::check_shape(&self.name, shape, xs.len())?;
        let (data, dropped) = finite_values(&self.name, xs, self.cfg.nonfinite)?;
        if let Some(ce) = &mut self.ce {
            if !shape.is_empty() {
                ce.observe(xs, shape, shape.len() - 1)?;
            }
        }
        self.nonfinite_skipped += dropped;
        self.minmax.observe(&data)?;
        self.hist.observe(&data)?;
        if let Some(s) = &mut self.signed {
            s.observe(&data)?;
        }
        if let Some(e) = &mut self.ema {
            e.observe(&data)?;
        }
        Ok(())
    }

    /// Observe a batch that lives elsewhere (GPU memory): one reduction serves the min/max, the
    /// moving average and both histograms' grids, then each histogram is counted where the data
    /// are. The cross-entropy statistic, when enabled, needs every softmax row: only then is the
    /// batch copied to the host. Leaves the observer as [`TensorObserver::observe`] of the same
    /// values would, and untouched when the batch is refused.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))] // the device path (`observe_cuda`)
    pub(crate) fn observe_source<S: BatchSource>(&mut self, src: &mut S) -> Result<()> {
        let st = src.stats()?;
        let dropped = st.policy(&self.name, self.cfg.nonfinite)?;
        let shape = src.shape().to_vec();
        let mut next = self.clone();
        if let Some(ce) = &mut next.ce {
            if !shape.is_empty() {
                let xs = src.download()?;
                ce.observe(&xs, &shape, shape.len() - 1)?;
            }
        }
        next.nonfinite_skipped += dropped;
        // The statistics below see the finite values only, as on the host.
        let finite = st.finite_only();
        next.minmax.observe_stats(&finite, 0);
        next.hist.observe_stats(src, &finite, 0)?;
        if let Some(s) = &mut next.signed {
            s.observe_stats(src, &finite, 0)?;
        }
        if let Some(e) = &mut next.ema {
            e.observe_stats(&finite, 0);
        }
        *self = next;
        Ok(())
    }

    /// `(min, max)` of the finite values seen.
    pub fn range(&self) -> Result<(f32, f32)> {
        self.minmax.range()
    }
    /// The histogram of `|x|`.
    pub fn histogram(&self) -> &Histogram {
        &self.hist
    }
    /// The signed histogram, if kept.
    pub fn signed_histogram(&self) -> Option<&SignedHistogram> {
        self.signed.as_ref()
    }
    /// The cross-entropy statistic, if kept.
    pub fn cross_entropy(&self) -> Option<&CrossEntropyObserver> {
        self.ce.as_ref()
    }
    /// NaN / ±inf values dropped under [`NonFinite::Skip`].
    pub fn nonfinite_skipped(&self) -> u64 {
        self.nonfinite_skipped
    }

    fn not_collected(&self, what: &str) -> Error {
        Error::Calibration {
            tensor: self.name.clone(),
            detail: format!("{what} was not collected (enable it in ObserverConfig)"),
        }
    }

    /// The `amax` a method picks; `unsigned` selects the 255/256-level MSE and entropy.
    pub fn amax(&self, method: AmaxMethod, unsigned: bool) -> Result<f32> {
        let h = &self.hist;
        match method {
            AmaxMethod::Max => {
                let (lo, hi) = self.minmax.range()?;
                Ok(lo.abs().max(hi.abs()))
            }
            AmaxMethod::Percentile(p) => {
                h.require_data()?;
                percentile_amax(h.counts(), h.edges(), p)
            }
            AmaxMethod::Mse => {
                h.require_data()?;
                mse_amax(h.counts(), h.edges(), unsigned, &MseOptions::default())
            }
            AmaxMethod::Entropy => {
                h.require_data()?;
                entropy_amax(h.counts(), h.edges(), unsigned, &EntropyOptions::default())
            }
            AmaxMethod::CrossEntropy => match &self.ce {
                Some(ce) => ce.amax(),
                None => Err(self.not_collected("the cross-entropy statistic")),
            },
        }
    }

    /// The `[lo, hi]` an asymmetric method picks.
    pub fn asymmetric_range(&self, method: RangeMethod) -> Result<(f32, f32)> {
        match method {
            RangeMethod::MinMax => self.minmax.range(),
            RangeMethod::MovingAverage => match &self.ema {
                Some(e) => e.range(),
                None => Err(self.not_collected("the moving average")),
            },
            RangeMethod::Percentile(p) => match &self.signed {
                Some(s) => s.percentile_range(p),
                None => Err(self.not_collected("the signed histogram")),
            },
            RangeMethod::Mse => match &self.signed {
                Some(s) => s.mse_range(),
                None => Err(self.not_collected("the signed histogram")),
            },
        }
    }

    /// The quantization parameters a method gives.
    pub fn params(&self, method: Method) -> Result<QuantParams> {
        match method {
            Method::Symmetric(m) => QuantParams::symmetric(self.amax(m, false)?),
            Method::Unsigned(m) => {
                let (lo, _) = self.minmax.range()?;
                if lo < 0.0 {
                    return Err(Error::Calibration {
                        tensor: self.name.clone(),
                        detail: format!(
                            "the unsigned scheme needs data ≥ 0, but the minimum seen is {lo}"
                        ),
                    });
                }
                QuantParams::asymmetric(0.0, self.amax(m, true)?)
            }
            Method::Asymmetric(r) => {
                let (lo, hi) = self.asymmetric_range(r)?;
                QuantParams::asymmetric(lo, hi)
            }
        }
    }

    /// Merge an observer of the same tensor that saw other batches (taken as the later ones for
    /// the moving average). See each statistic's `merge` for when the result is exact.
    pub fn merge(&mut self, other: &TensorObserver) -> Result<()> {
        let mismatch = |what: &str| Error::Calibration {
            tensor: self.name.clone(),
            detail: format!("cannot merge: one observer keeps {what}, the other does not"),
        };
        if self.signed.is_some() != other.signed.is_some() {
            return Err(mismatch("a signed histogram"));
        }
        if self.ema.is_some() != other.ema.is_some() {
            return Err(mismatch("a moving average"));
        }
        if self.ce.is_some() != other.ce.is_some() {
            return Err(mismatch("cross-entropy losses"));
        }
        self.minmax.merge(&other.minmax)?;
        self.hist.merge(&other.hist)?;
        if let (Some(a), Some(b)) = (&mut self.signed, &other.signed) {
            a.merge(b)?;
        }
        if let (Some(a), Some(b)) = (&mut self.ema, &other.ema) {
            a.merge(b)?;
        }
        if let (Some(a), Some(b)) = (&mut self.ce, &other.ce) {
            a.merge(b)?;
        }
        self.nonfinite_skipped += other.nonfinite_skipped;
        Ok(())
    }
}
