//! cuda/linear.rs — [`CudaQuantLinear`]: a [`QuantLinear`] resident on a GPU (weights uploaded
//! once and kept), whose forward takes host slices or device buffers and runs on the caller's
//! stream, giving the bits of the CPU layer for every scheme and output type. Also the GPU
//! quantize / dequantize operations on [`CudaDevice`].

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream};
use half::{bf16, f16};

use super::driver::{CudaDevice, CudaExec, Lent};
use super::gemm::check_kernel;
use super::ops::{self, Axis, DevLinear, DevOut, DevQIn, DevQRef, GemmKernel};
use super::tune::{self, GemmTuning, TuneOptions, TuneReport};
use crate::error::{Error, Result};
use crate::gemm::{OutBuf, OutQuant, Path};
use crate::nn::QuantLinear;
use crate::quant::QuantParams;

/// A device output buffer `[m, out_features]` for [`CudaQuantLinear::forward_device`].
pub enum CudaOut<'a> {
    /// Raw corrected i32 accumulators.
    I32(&'a mut CudaSlice<i32>),
    F32(&'a mut CudaSlice<f32>),
    F16(&'a mut CudaSlice<f16>),
    Bf16(&'a mut CudaSlice<bf16>),
    /// i8 with a static output scale.
    I8(&'a mut CudaSlice<i8>, OutQuant),
}

impl<'a> CudaOut<'a> {
    /// Lend the buffer to the kernel wrappers on `e`'s stream (see [`Lent`]).
    pub(crate) fn lend<'e>(self, e: &'e CudaExec) -> LentOut<'e>
    where
        'a: 'e,
    {
        match self {
            CudaOut::I32(b) => LentOut::I32(e.lend_mut(b)),
            CudaOut::F32(b) => LentOut::F32(e.lend_mut(b)),
            CudaOut::F16(b) => LentOut::F16(e.lend_mut(b)),
            CudaOut::Bf16(b) => LentOut::Bf16(e.lend_mut(b)),
            CudaOut::I8(b, q) => LentOut::I8(e.lend_mut(b), q),
        }
    }
}

/// A [`CudaOut`] lent to the kernel wrappers: keep it until their launches are enqueued.
pub(crate) enum LentOut<'a> {
    I32(Lent<'a, i32>),
    F32(Lent<'a, f32>),
    F16(Lent<'a, f16>),
    Bf16(Lent<'a, bf16>),
    I8(Lent<'a, i8>, OutQuant),
}

impl LentOut<'_> {
    /// The executor-generic view the kernel wrappers take.
    pub(crate) fn dev(&mut self) -> DevOut<'_, CudaExec> {
        match self {
            LentOut::I32(b) => DevOut::I32(&mut **b),
            LentOut::F32(b) => DevOut::F32(&mut **b),
            LentOut::F16(b) => DevOut::F16(&mut **b),
            LentOut::Bf16(b) => DevOut::Bf16(&mut **b),
            LentOut::I8(b, q) => DevOut::I8(&mut **b, *q),
        }
    }
}

/// A [`QuantLinear`] on a GPU. `Send + Sync`: a forward's scratch (quantized activations,
/// split-K sums, the non-finite report) is kept per stream and taken out while the forward
/// enqueues, so threads may share one layer (each on its own stream; two on one stream get
/// scratch of their own).
pub struct CudaQuantLinear {
    dev: CudaDevice,
    layer: DevLinear<CudaExec>,
}

impl Drop for CudaQuantLinear {
    /// Waits for the device's work: forwards on any stream may still read the weights, which
    /// are then freed (stream-ordered on the stream that uploaded them).
    fn drop(&mut self) {
        self.dev.quiesce();
    }
}

impl std::fmt::Debug for CudaQuantLinear {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CudaQuantLinear({}: [{}, {}] on {:?})",
            self.layer.name, self.layer.n, self.layer.k, self.dev
        )
    }
}

impl QuantLinear {
    /// Upload this layer to `dev`: the int8 weights (rows padded to 16 bytes), their sums and
    /// scales, the bias, and the activation quantization as it is now (a later
    /// `set_activation_quant` needs a new upload).
    pub fn to_cuda(&self, dev: &CudaDevice) -> Result<CudaQuantLinear> {
        let stream = dev.default_stream();
        let e = dev.exec(&stream)?;
        let layer = DevLinear::new(&e, self)?;
        stream.synchronize().map_err(|e| Error::Cuda {
            context: "uploading a layer".into(),
            detail: format!("{:?}", e.0),
        })?;
        Ok(CudaQuantLinear {
            dev: dev.clone(),
            layer,
        })
    }
}

impl CudaQuantLinear {
    /// The device the weights live on.
    pub fn device(&self) -> &CudaDevice {
        &self.dev
    }
    /// Input features (`K`).
    pub fn in_features(&self) -> usize {
        self.layer.k
    }
    /// Output features (`N`).
    pub fn out_features(&self) -> usize {
        self.layer.n
    }

    /// The GEMM kernel family the forward runs (default [`GemmKernel::Auto`]: the tensor cores
    /// on sm_80 and newer — the layer's rows are padded to 16 bytes: the weight-streaming GEMV up
    /// to 64 rows, tiles above — and dp4a on older GPUs);
    /// every forward reports the [`Path`] that ran. `Err(PathUnavailable)` for the tensor cores
    /// on a GPU older than sm_75 (sm_75 runs them forced or tuned only, [`GemmKernel::Mma`]).
    pub fn set_kernel(&mut self, kernel: GemmKernel) -> Result<()> {
        check_kernel(&self.dev, kernel)?;
        self.layer.kernel = kernel;
        Ok(())
    }
    /// [`CudaQuantLinear::set_kernel`], by value.
    pub fn with_kernel(mut self, kernel: GemmKernel) -> Result<Self> {
        self.set_kernel(kernel)?;
        Ok(self)
    }
    /// The kernel family in use.
    pub fn kernel(&self) -> GemmKernel {
        self.layer.kernel
    }

    /// Measure on this GPU which GEMM kernel runs this layer fastest at each row count of
    /// `rows`, on `stream`, and keep the result: [`GemmKernel::Auto`] follows it from now on
    /// (see [`CudaWeights::tune`](crate::cuda::CudaWeights::tune); the GEMM is timed on
    /// synthetic `s8` activations with i32 output, the activation quantization is the same for
    /// every candidate). Save [`TuneReport::tuning`] (`to_text`) to skip the measurement at the
    /// next start and [`CudaQuantLinear::set_tuning`] it instead; layers of one shape can share one.
    pub fn tune(
        &mut self,
        stream: &Arc<CudaStream>,
        rows: &[usize],
        opts: &TuneOptions,
    ) -> Result<TuneReport> {
        let w = self.layer.tune_weights(self.dev.name());
        let report = tune::tune_on_gpu(&self.dev, stream, &w, rows, opts)?;
        self.layer.tuning = Some(report.tuning.clone());
        Ok(report)
    }
    /// Apply a tuning measured earlier (`None`: back to the static dispatch).
    /// `Err(InvalidParam)` when it was measured for another shape or GPU model.
    pub fn set_tuning(&mut self, tuning: Option<GemmTuning>) -> Result<()> {
        tune::check_tuning(&self.dev, tuning.as_ref(), self.layer.n, self.layer.k)?;
        self.layer.tuning = tuning;
        Ok(())
    }
    /// The tuning `Auto` follows, if any.
    pub fn tuning(&self) -> Option<&GemmTuning> {
        self.layer.tuning.as_ref()
    }

    /// Launch the weight-streaming GEMV (and a TMA tile, when forced or tuned) overlapped with
    /// the activation quantization before it
    /// (programmatic dependent launch, sm_90 and newer; see
    /// [`CudaWeights::set_overlapped_launch`](crate::cuda::CudaWeights::set_overlapped_launch)):
    /// at decode sizes the weights start streaming while the input is still being quantized.
    /// The same bits. On by default since the H200 run of 2026-11-26 (the GPU tests' chains
    /// kept the CPU's bits; ~2–3 µs less per forward in a chain of them, `bench/RESULTS.md`);
    /// `false` launches every kernel of the forward in plain stream order.
    pub fn set_overlapped_launch(&mut self, on: bool) {
        self.layer.overlap = on;
    }

    /// `x` holds at least `m` rows of `in_features`.
    fn check_x(&self, x: &CudaSlice<f32>, m: usize) -> Result<()> {
        let xl = crate::error::checked_len("input [m, in_features]", m, self.layer.k)?;
        if x.len() < xl {
            return Err(Error::shape("input [m, in_features]", xl, x.len()));
        }
        Ok(())
    }

    /// `out = x · Wᵀ + b` from host memory to host memory on the device's default stream.
    pub fn forward(&self, x: &[f32], m: usize, out: &mut OutBuf<'_>) -> Result<Path> {
        self.forward_on(&self.dev.default_stream(), x, m, out)
    }

    /// [`CudaQuantLinear::forward`] on `stream` (returns when the result is in `out`).
    pub fn forward_on(
        &self,
        stream: &Arc<CudaStream>,
        x: &[f32],
        m: usize,
        out: &mut OutBuf<'_>,
    ) -> Result<Path> {
        let e = self.dev.exec(stream)?;
        self.layer.forward_host(&e, x, m, out)
    }

    /// `out = x · Wᵀ + b` with `x: [m, in_features]` and `out: [m, out_features]` in device
    /// memory, enqueued on `stream`. It waits for `stream` at the end to read the 16-byte
    /// non-finite report: input the layer cannot quantize (NaN; under dynamic scales also ±inf,
    /// which a static scale saturates) is `Err(NonFinite)` naming `<layer>.input`, as on
    /// the CPU, and `out` is then left unwritten.
    pub fn forward_device(
        &self,
        stream: &Arc<CudaStream>,
        x: &CudaSlice<f32>,
        m: usize,
        out: CudaOut<'_>,
    ) -> Result<Path> {
        let e = self.dev.exec(stream)?;
        self.check_x(x, m)?;
        let (x, mut out) = (e.lend(x), out.lend(&e));
        self.layer.forward(&e, &*x, m, &mut out.dev())
    }

    /// [`CudaQuantLinear::forward_device`] without waiting for `stream`: the work is enqueued
    /// and the call returns, so consecutive layers (and calls) pipeline on the GPU instead of
    /// paying a round trip each. The non-finite check is deferred to [`PendingForward::wait`],
    /// which waits for `stream` up to this forward and returns the path or `Err(NonFinite)`
    /// naming `<layer>.input` (with `out` left unwritten, as `forward_device` leaves it). A layer
    /// fed by one whose input was refused computes on whatever its input buffer held, so wait
    /// on every pending forward of a chain; argument errors are returned at once.
    ///
    /// Every layer of a device leaves its reports in one ring of words per stream: the first
    /// `wait` of a chain copies them all back (one copy, one wait for the stream), and the
    /// chain's other waits, in any order, read what it copied without a driver call.
    pub fn forward_device_async(
        &self,
        stream: &Arc<CudaStream>,
        x: &CudaSlice<f32>,
        m: usize,
        out: CudaOut<'_>,
    ) -> Result<PendingForward<'_>> {
        let e = self.dev.exec(stream)?;
        self.check_x(x, m)?;
        let (path, report) = {
            // (lent until the launches are enqueued)
            let (x, mut out) = (e.lend(x), out.lend(&e));
            self.layer.enqueue(&e, &*x, m, &mut out.dev())?
        };
        Ok(PendingForward {
            layer: self,
            stream: stream.clone(),
            report,
            path,
        })
    }
}

/// A forward enqueued by [`CudaQuantLinear::forward_device_async`] whose non-finite report has
/// not been read yet. Dropping it without [`PendingForward::wait`] discards that report. It may
/// be waited for on another thread than the one that enqueued it — but not when its stream is
/// the per-thread default stream (cudarc's `per_thread_stream()`), which names another stream
/// on each thread: the wait would not be ordered after the forward.
#[must_use = "wait() reports NaN or infinite input; dropping it discards the report"]
pub struct PendingForward<'a> {
    layer: &'a CudaQuantLinear,
    stream: Arc<CudaStream>,
    report: super::reports::Report<CudaExec>,
    path: Path,
}

impl std::fmt::Debug for PendingForward<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PendingForward({:?}, {:?})", self.layer, self.path)
    }
}

impl PendingForward<'_> {
    /// The path the forward runs on (known when it was enqueued).
    pub fn path(&self) -> Path {
        self.path
    }
    /// Wait for the stream up to this forward; the path, or `Err(NonFinite)` naming
    /// `<layer>.input` when its input held what the layer cannot quantize (NaN; under dynamic
    /// scales also ±inf), its output then left unwritten. A wait that copies the stream's
    /// reports back brings those of every forward enqueued on the stream before it; their waits
    /// then need no driver call.
    pub fn wait(self) -> Result<Path> {
        let e = self.layer.dev.exec(&self.stream)?;
        self.layer.layer.check_input(&e, self.report)?;
        Ok(self.path)
    }
}

/// Quantized device tensors for [`CudaDevice::quantize`] / [`CudaDevice::dequantize`].
pub enum CudaQuantized<'a> {
    S8(&'a mut CudaSlice<i8>),
    U8(&'a mut CudaSlice<u8>),
}

impl<'a> CudaQuantized<'a> {
    /// Lend the buffer to the kernel wrappers on `e`'s stream (see [`Lent`]), for kernels that
    /// write it (`quantize`) or only read it (`dequantize`).
    fn lend<'e>(self, e: &'e CudaExec, write: bool) -> LentQ<'e>
    where
        'a: 'e,
    {
        match self {
            CudaQuantized::S8(b) if write => LentQ::S8(e.lend_mut(b)),
            CudaQuantized::S8(b) => LentQ::S8(e.lend(b)),
            CudaQuantized::U8(b) if write => LentQ::U8(e.lend_mut(b)),
            CudaQuantized::U8(b) => LentQ::U8(e.lend(b)),
        }
    }
}

/// A [`CudaQuantized`] lent to the kernel wrappers.
enum LentQ<'a> {
    S8(Lent<'a, i8>),
    U8(Lent<'a, u8>),
}

impl LentQ<'_> {
    fn dev(&self) -> DevQIn<'_, CudaExec> {
        match self {
            LentQ::S8(b) => DevQIn::S8(&**b),
            LentQ::U8(b) => DevQIn::U8(&**b),
        }
    }
    fn dev_mut(&mut self) -> DevQRef<'_, CudaExec> {
        match self {
            LentQ::S8(b) => DevQRef::S8(&mut **b),
            LentQ::U8(b) => DevQRef::U8(&mut **b),
        }
    }
}

impl CudaDevice {
    /// Quantize `x: [rows, cols]` on `stream` with one parameter set per `axis` group (one for
    /// [`Axis::Tensor`], `rows` for [`Axis::Row`], `cols` for [`Axis::Column`]); the bits of
    /// `QuantParams::quantize_to_i8` / `quantize_to_u8`. NaN is `Err(NonFinite)` naming `tensor`.
    #[allow(clippy::too_many_arguments)]
    pub fn quantize(
        &self,
        stream: &Arc<CudaStream>,
        tensor: &str,
        x: &CudaSlice<f32>,
        rows: usize,
        cols: usize,
        axis: Axis,
        params: &[QuantParams],
        q: CudaQuantized<'_>,
    ) -> Result<()> {
        let e = self.exec(stream)?;
        let (x, mut q) = (e.lend(x), q.lend(&e, true));
        ops::quantize(&e, tensor, &*x, rows, cols, axis, params, q.dev_mut())
    }

    /// Dequantize `q: [rows, cols]` into `y` on `stream` (the bits of `QuantParams::dequantize`).
    #[allow(clippy::too_many_arguments)]
    pub fn dequantize(
        &self,
        stream: &Arc<CudaStream>,
        q: CudaQuantized<'_>,
        rows: usize,
        cols: usize,
        axis: Axis,
        params: &[QuantParams],
        y: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let e = self.exec(stream)?;
        let (q, mut y) = (q.lend(&e, false), e.lend_mut(y));
        ops::dequantize(&e, q.dev(), rows, cols, axis, params, &mut *y)
    }
}
