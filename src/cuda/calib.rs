//! cuda/calib.rs — calibration over batches in GPU memory (DESIGN.md §3, "GPU collection"): the
//! host wrappers of `kernels/calib.cu`, written once against [`Exec`] so the simulation tests run
//! them unchanged; [`DevBatch`], the [`BatchSource`] through which the observers of
//! [`crate::calib`] read a device batch; and, with the `cuda` feature, the public door:
//! [`CudaBatch`] and every observer's `observe_cuda`.
//!
//! Per batch: one reduction (range of the finite values, zeros, non-finite count and first
//! index; a 32-byte read-back), from which the observer decides its histogram grid on the host
//! exactly as `observe` does on a host slice (first batch, growth by appending bins, coarsening),
//! then one counting kernel per histogram on that grid (a read-back of the counts). The values
//! themselves stay on the device; only the cross-entropy statistic copies a batch, because it
//! needs every softmax row.

use std::borrow::Borrow;

use super::exec::{Exec, Grid};
use super::ops::{f32_to_ordered, ordered_to_f32, to_i32, THREADS};
use super::params::{CalibReduceParams, HistParams, Status, HIST_SCALED, HIST_SIGNED, HIST_WIDTH};
use super::registry::KernelId;
use crate::calib::source::{BatchSource, BatchStats, BinSpec, ChannelStats};
use crate::error::{Error, Result};

/// The reduction aims at this many values per thread before it adds blocks, up to this many.
const REDUCE_PER_THREAD: usize = 8;
const REDUCE_MAX_BLOCKS: usize = 2048;
/// The histogram aims at this many values per thread (each block flushes its whole shared
/// histogram once, so fewer, fuller blocks), up to this many blocks.
const HIST_PER_THREAD: usize = 32;
const HIST_MAX_BLOCKS: usize = 512;
/// A histogram block never sees more values than this (its shared-memory counts are u32).
const HIST_BLOCK_LIMIT: usize = 1 << 31;
/// `HIST_SMEM_BINS` in kernels/calib.cu (the shared-memory path; larger grids use global
/// atomics), for the tests that exercise both.
#[cfg(test)]
pub(crate) const HIST_SMEM_BINS: usize = 8192;

/// An ordered (min, max) pair initialised to (+inf, −inf), as one little-endian u64 word: the
/// kernels address it as two u32 words, min first.
fn empty_pair() -> u64 {
    f32_to_ordered(f32::INFINITY) as u64 | (f32_to_ordered(f32::NEG_INFINITY) as u64) << 32
}

/// The `(min, max)` in an ordered pair word.
fn decode_pair(w: u64) -> (f32, f32) {
    (ordered_to_f32(w as u32), ordered_to_f32((w >> 32) as u32))
}

fn to_i64(what: &'static str, v: usize) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::Dimension {
        what,
        detail: format!("{v} does not fit the kernels' 64-bit sizes"),
    })
}

/// A grid-stride launch over `len` values: about `per_thread` values per thread, at least
/// `min_blocks` and otherwise at most `max_blocks` blocks.
fn stride_grid(
    len: usize,
    per_thread: usize,
    max_blocks: usize,
    min_blocks: usize,
) -> Result<Grid> {
    let blocks = len
        .div_ceil(THREADS as usize * per_thread)
        .clamp(1, max_blocks)
        .max(min_blocks);
    let gx = u32::try_from(blocks)
        .ok()
        .filter(|&b| b < i32::MAX as u32)
        .ok_or_else(|| Error::Dimension {
            what: "calibration batch",
            detail: format!("{len} values need more than 2^31 blocks"),
        })?;
    Ok(Grid {
        grid: [gx, 1, 1],
        block: [THREADS, 1, 1],
        smem: 0,
    })
}

/// Range, zeros and non-finite values of `x[0 .. len)` (one launch of `calib_reduce`, one
/// read-back; waits for the executor).
pub(crate) fn reduce<E: Exec>(e: &E, x: &E::Buf<f32>, len: usize) -> Result<BatchStats> {
    if E::len(x) < len {
        return Err(Error::shape("calibration batch", len, E::len(x)));
    }
    if len == 0 {
        return Ok(BatchStats::EMPTY);
    }
    let cols = to_i64("calibration batch", len)?;
    let grid = stride_grid(len, REDUCE_PER_THREAD, REDUCE_MAX_BLOCKS, 1)?;
    // One scratch block: [0] the ordered (min, max) pair, [1] the zero count, [2..4] a Status
    // (count, first), so a single read brings everything back.
    let init = [empty_pair(), 0, Status::CLEAR.count, Status::CLEAR.first];
    let mut scratch = e.upload(&init)?;
    {
        let (xa, _gx) = e.addr(x);
        let (sa, _gs) = e.addr_mut(&mut scratch);
        let p = CalibReduceParams {
            x: xa,
            range: sa,
            zeros: sa + 8,
            status: sa + 16,
            outer: 1,
            cols,
            inner: cols,
            channels: 1,
            pad: 0,
        };
        // SAFETY: x holds ≥ len floats (checked above) and the kernel reads x[0 .. cols) with
        // cols = len; `scratch` holds four u64 words, which the kernel addresses as the two u32
        // range words at byte 0, the zero count at byte 8 and the 16-byte Status at byte 16 (all
        // naturally aligned in a 256-byte-aligned allocation). The guards live to the end of
        // this block. `CalibReduceParams` is calib_reduce's block.
        unsafe { e.launch(KernelId::CalibReduce, grid, &p)? };
    }
    let mut out = [0u64; 4];
    e.read(&scratch, &mut out)?;
    let (lo, hi) = decode_pair(out[0]);
    Ok(BatchStats {
        len: len as u64,
        nonfinite: out[2],
        first_nonfinite: out[3],
        zeros: out[1],
        range: (lo <= hi).then_some((lo, hi)),
    })
}

/// Per-channel ranges of `x` viewed as `[outer, channels, inner]` (one launch of
/// `calib_reduce_channels`, one read-back; waits for the executor).
pub(crate) fn reduce_channels<E: Exec>(
    e: &E,
    x: &E::Buf<f32>,
    outer: usize,
    channels: usize,
    inner: usize,
) -> Result<ChannelStats> {
    let cols = crate::error::checked_len("calibration batch [channels, inner]", channels, inner)?;
    let len = crate::error::checked_len("calibration batch [outer, channels, inner]", outer, cols)?;
    if E::len(x) < len {
        return Err(Error::shape("calibration batch", len, E::len(x)));
    }
    let empty = (f32::INFINITY, f32::NEG_INFINITY);
    if len == 0 {
        return Ok(ChannelStats {
            ranges: vec![empty; channels],
            nonfinite: 0,
            first_nonfinite: 0,
        });
    }
    let ch = to_i32("calibration channels", channels)?;
    let _ = to_i64("calibration batch", len)?;
    let gx = u32::try_from(cols.div_ceil(THREADS as usize))
        .ok()
        .filter(|&b| b < i32::MAX as u32)
        .ok_or_else(|| Error::Dimension {
            what: "calibration batch",
            detail: format!("{cols} columns need more than 2^31 blocks"),
        })?;
    // Rows split over grid.y so that about REDUCE_MAX_BLOCKS blocks run in all.
    let gy = outer
        .min(65535)
        .min((REDUCE_MAX_BLOCKS / gx as usize).max(1)) as u32;
    let grid = Grid {
        grid: [gx, gy, 1],
        block: [THREADS, 1, 1],
        smem: 0,
    };
    // Scratch: one ordered (min, max) pair per channel, then a Status (count, first).
    let mut init = vec![empty_pair(); channels];
    init.extend([Status::CLEAR.count, Status::CLEAR.first]);
    let mut scratch = e.upload(&init)?;
    {
        let (xa, _gx) = e.addr(x);
        let (sa, _gs) = e.addr_mut(&mut scratch);
        let p = CalibReduceParams {
            x: xa,
            range: sa,
            zeros: 0,
            status: sa + 8 * channels as u64,
            outer: outer as i64,
            cols: cols as i64,
            inner: inner as i64,
            channels: ch,
            pad: 0,
        };
        // SAFETY: x holds ≥ outer · cols floats (checked above); the kernel reads x[o · cols +
        // col] for o < outer, col < cols only, and folds column col into the pair of channel
        // col / inner < channels, i.e. the u32 words at bytes 8c and 8c + 4 of `scratch`, whose
        // Status follows at byte 8 · channels (channels + 2 u64 words were uploaded). The
        // guards live to the end of this block. `CalibReduceParams` is the kernel's block.
        unsafe { e.launch(KernelId::CalibReduceChannels, grid, &p)? };
    }
    let mut out = vec![0u64; channels + 2];
    e.read(&scratch, &mut out)?;
    Ok(ChannelStats {
        ranges: out[..channels].iter().map(|&w| decode_pair(w)).collect(),
        nonfinite: out[channels],
        first_nonfinite: out[channels + 1],
    })
}

/// The bin counts of the finite values of `x[0 .. len)` on `spec` (one launch of
/// `calib_histogram`, one read-back of `spec.bins()` counts; waits for the executor).
pub(crate) fn histogram<E: Exec>(
    e: &E,
    x: &E::Buf<f32>,
    len: usize,
    spec: BinSpec,
    skip_zeros: bool,
) -> Result<Vec<u64>> {
    if E::len(x) < len {
        return Err(Error::shape("calibration batch", len, E::len(x)));
    }
    let bins = spec.bins();
    if bins == 0 {
        return Err(Error::param("bins", "a histogram needs at least one bin"));
    }
    let mut counts = e.alloc::<u64>(bins)?;
    if len > 0 {
        let n = to_i64("calibration batch", len)?;
        let min_blocks = len.div_ceil(HIST_BLOCK_LIMIT);
        let grid = stride_grid(len, HIST_PER_THREAD, HIST_MAX_BLOCKS, min_blocks)?;
        let (rule, nf, right, width, first) = match spec {
            BinSpec::Scaled { right, .. } => (HIST_SCALED, bins as f32, right, 0.0, 0),
            BinSpec::Width { width, .. } => (HIST_WIDTH, 0.0, 0.0, width, 0),
            BinSpec::Signed { width, first, .. } => (HIST_SIGNED, 0.0, 0.0, width, first),
        };
        let (xa, _gx) = e.addr(x);
        let (ca, _gc) = e.addr_mut(&mut counts);
        let p = HistParams {
            x: xa,
            counts: ca,
            len: n,
            bins: bins as u64,
            first,
            rule,
            nf,
            right,
            width,
            skip_zeros: i32::from(skip_zeros),
            pad: 0,
        };
        // SAFETY: x holds ≥ len floats (checked above) and the kernel reads x[0 .. len);
        // `counts` holds `bins` ≥ 1 u64 words and every bin index the kernel forms is clamped
        // to [0, bins − 1] whatever the rule's parameters (clamp_bin / the signed clamp); with
        // at least len / 2^31 blocks no block's u32 shared counts can wrap. The guards live to
        // the end of this block. `HistParams` is calib_histogram's block.
        unsafe { e.launch(KernelId::CalibHistogram, grid, &p)? };
    }
    let mut out = vec![0u64; bins];
    e.read(&counts, &mut out)?;
    Ok(out)
}

/// A batch of `f32` values in device memory, read by the observers through [`BatchSource`]. The
/// reduction is computed once and shared by every observer that reads the batch.
pub(crate) struct DevBatch<E: Exec, X: Borrow<E::Buf<f32>>> {
    e: E,
    x: X,
    shape: Vec<usize>,
    len: usize,
    stats: Option<BatchStats>,
}

impl<E: Exec, X: Borrow<E::Buf<f32>>> DevBatch<E, X> {
    /// The first `shape`-many values of `x` as a batch of shape `shape` (C order).
    pub fn new(e: E, x: X, shape: &[usize]) -> Result<Self> {
        let len = crate::calib::check_len("calibration batch", shape)?;
        if E::len(x.borrow()) < len {
            return Err(Error::shape(
                "calibration batch (its shape's element count)",
                len,
                E::len(x.borrow()),
            ));
        }
        to_i64("calibration batch", len)?;
        Ok(DevBatch {
            e,
            x,
            shape: shape.to_vec(),
            len,
            stats: None,
        })
    }
}

impl<E: Exec, X: Borrow<E::Buf<f32>>> BatchSource for DevBatch<E, X> {
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn stats(&mut self) -> Result<BatchStats> {
        if let Some(s) = self.stats {
            return Ok(s);
        }
        let s = reduce(&self.e, self.x.borrow(), self.len)?;
        self.stats = Some(s);
        Ok(s)
    }
    fn channel_stats(
        &mut self,
        outer: usize,
        channels: usize,
        inner: usize,
    ) -> Result<ChannelStats> {
        reduce_channels(&self.e, self.x.borrow(), outer, channels, inner)
    }
    fn count_bins(&mut self, spec: BinSpec, skip_zeros: bool) -> Result<Vec<u64>> {
        histogram(&self.e, self.x.borrow(), self.len, spec, skip_zeros)
    }
    fn download(&mut self) -> Result<Vec<f32>> {
        let mut v = vec![0.0f32; self.len];
        if self.len > 0 {
            self.e.read(self.x.borrow(), &mut v)?;
        }
        Ok(v)
    }
}

#[cfg(feature = "cuda")]
pub use public::CudaBatch;

#[cfg(feature = "cuda")]
mod public {
    use std::sync::Arc;

    use cudarc::driver::{CudaSlice, CudaStream, SyncOnDrop};

    use super::DevBatch;
    use crate::calib::{
        CrossEntropyObserver, Histogram, MaxObserver, MinMaxObserver, MovingAverageMinMaxObserver,
        SignedHistogram, TensorObserver,
    };
    use crate::cuda::driver::{CudaDevice, CudaExec, DevBuf, Lent};
    use crate::error::Result;
    use crate::nn::CalibrationRun;

    /// A batch of `f32` activations in GPU memory, for the calibration observers' `observe_cuda`
    /// ([`Histogram::observe_cuda`], [`TensorObserver::observe_cuda`],
    /// [`CalibrationRun::observe_cuda`], ...). The observers reduce and bin it with the kernels
    /// of `kernels/calib.cu` on `stream` and end in the state their host `observe` of the same
    /// values gives, bit for bit; the values are not copied to the host (except by the
    /// cross-entropy statistic). One batch may be fed to several observers: its range is
    /// computed once. The values must not change while the batch is in use (enqueue whatever
    /// writes them on `stream` before, or synchronize).
    ///
    /// Each observation waits for `stream` (the host decides the histogram grid from the
    /// batch's range), so a calibration run costs one round trip per batch and histogram.
    ///
    /// ```no_run
    /// use int8rt::calib::{AmaxMethod, Method, ObserverConfig, TensorObserver};
    /// use int8rt::cuda::{CudaBatch, CudaDevice};
    ///
    /// let dev = CudaDevice::new(0)?;
    /// let stream = dev.default_stream();
    /// // Activations already on the GPU (here uploaded; usually a layer's output).
    /// let x = stream.clone_htod(&vec![0.25f32; 32 * 128]).expect("upload");
    /// let mut obs = TensorObserver::new("fc1.input", ObserverConfig::default())?;
    /// obs.observe_cuda(&mut CudaBatch::new(&dev, &stream, &x, &[32, 128])?)?;
    /// let p = obs.params(Method::Symmetric(AmaxMethod::Percentile(99.99)))?;
    /// println!("fc1.input: scale {}", p.scale());
    /// # Ok::<(), int8rt::Error>(())
    /// ```
    pub struct CudaBatch<'a> {
        pub(crate) inner: DevBatch<CudaExec, DevBuf<f32>>,
        /// cudarc's record of the batch's use: the stream waited for the values' last write
        /// when the batch was made; the read is recorded when it is dropped (after `inner`).
        _use: SyncOnDrop<'a>,
    }

    impl<'a> CudaBatch<'a> {
        /// The first `shape`-many values of `x` (C order) as a batch of shape `shape`, observed on
        /// `stream` (which must belong to `dev`). `x` may be longer than the shape.
        pub fn new(
            dev: &CudaDevice,
            stream: &'a Arc<CudaStream>,
            x: &'a CudaSlice<f32>,
            shape: &[usize],
        ) -> Result<Self> {
            let e = dev.exec(stream)?;
            let (x, use_) = Lent::read(stream, x).into_parts();
            Ok(CudaBatch {
                inner: DevBatch::new(e, x, shape)?,
                _use: use_,
            })
        }

        /// The batch's shape.
        pub fn shape(&self) -> &[usize] {
            &self.inner.shape
        }
    }

    impl Histogram {
        /// [`Histogram::observe`] of a batch in GPU memory (see [`CudaBatch`]).
        pub fn observe_cuda(&mut self, batch: &mut CudaBatch<'_>) -> Result<()> {
            self.observe_source(&mut batch.inner)
        }
    }

    impl SignedHistogram {
        /// [`SignedHistogram::observe`] of a batch in GPU memory (see [`CudaBatch`]).
        pub fn observe_cuda(&mut self, batch: &mut CudaBatch<'_>) -> Result<()> {
            self.observe_source(&mut batch.inner)
        }
    }

    impl MaxObserver {
        /// [`MaxObserver::observe_shaped`] of a batch in GPU memory (per tensor, or per channel
        /// along the observer's axis of the batch's shape).
        pub fn observe_cuda(&mut self, batch: &mut CudaBatch<'_>) -> Result<()> {
            self.observe_source(&mut batch.inner)
        }
    }

    impl MinMaxObserver {
        /// [`MinMaxObserver::observe_shaped`] of a batch in GPU memory (per tensor, or per
        /// channel along the observer's axis of the batch's shape).
        pub fn observe_cuda(&mut self, batch: &mut CudaBatch<'_>) -> Result<()> {
            self.observe_source(&mut batch.inner)
        }
    }

    impl MovingAverageMinMaxObserver {
        /// [`MovingAverageMinMaxObserver::observe`] of a batch in GPU memory.
        pub fn observe_cuda(&mut self, batch: &mut CudaBatch<'_>) -> Result<()> {
            self.observe_source(&mut batch.inner)
        }
    }

    impl CrossEntropyObserver {
        /// [`CrossEntropyObserver::observe`] of a batch in GPU memory. The loss of every
        /// candidate range needs each softmax row, so this one copies the batch to the host.
        pub fn observe_cuda(&mut self, batch: &mut CudaBatch<'_>, class_axis: usize) -> Result<()> {
            self.observe_source(&mut batch.inner, class_axis)
        }
    }

    impl TensorObserver {
        /// [`TensorObserver::observe`] of a batch in GPU memory: one reduction, one histogram
        /// kernel per histogram; the batch is copied to the host only when the cross-entropy
        /// statistic is enabled.
        pub fn observe_cuda(&mut self, batch: &mut CudaBatch<'_>) -> Result<()> {
            self.observe_source(&mut batch.inner)
        }
    }

    impl CalibrationRun {
        /// [`CalibrationRun::observe`] of a batch in GPU memory (for example a layer's input
        /// before [`crate::cuda::CudaQuantLinear::forward_device`]).
        pub fn observe_cuda(&mut self, name: &str, batch: &mut CudaBatch<'_>) -> Result<()> {
            self.observe_source(name, &mut batch.inner)
        }
    }
}
