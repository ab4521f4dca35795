//! cuda/gemm.rs — the raw int8 GEMM on a GPU: [`CudaWeights`] (an `s8` weight matrix `[n, k]`
//! uploaded once with its row sums, scales and bias, its accumulator bound proven on upload) and
//! [`CudaWeights::gemm`] on device activations, with the DESIGN.md §1 epilogue fused. The layer
//! API (`CudaQuantLinear`) is built on the same host wrapper; this one serves callers that
//! quantize activations themselves, and the GPU benchmarks. The kernel family (tensor cores or
//! dp4a, [`GemmKernel`]) is chosen per `CudaWeights` and reported per call.

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream};

use super::driver::{CudaDevice, CudaExec, DevBuf, Lent};
use super::exec::Exec;
use super::linear::CudaOut;
use super::ops::{self, DevAct, DevBias, GemmDev, GemmKernel, ScratchCache};
use super::tune::{self, GemmTuning, TuneOptions, TuneReport, TuneWeights};
use crate::error::{Error, Result};
use crate::gemm::{check_accumulator_bound, Bias, Path};

/// Device activations `[m, k]` with row stride `lda ≥ k` (16-byte multiples enable the fast
/// loads).
pub enum CudaActivations<'a> {
    /// Symmetric `s8`.
    S8 { x: &'a CudaSlice<i8>, lda: usize },
    /// `u8` with zero points in `[0, 255]` (given in [`CudaActScales`]).
    U8 { x: &'a CudaSlice<u8>, lda: usize },
}

/// Device activation scales (and zero points for `u8`).
pub enum CudaActScales<'a> {
    /// `scale[0]`, `zero_point[0]`.
    PerTensor {
        scale: &'a CudaSlice<f32>,
        zero_point: Option<&'a CudaSlice<i32>>,
    },
    /// `scales[i]`, `zero_points[i]` for row `i`.
    PerRow {
        scales: &'a CudaSlice<f32>,
        zero_points: Option<&'a CudaSlice<i32>>,
    },
}

/// An `s8` weight matrix `[n, k]` resident on a GPU, with everything the GEMM epilogue needs.
pub struct CudaWeights {
    dev: CudaDevice,
    n: usize,
    k: usize,
    ldb: usize,
    w: DevBuf<i8>,
    wsum: DevBuf<i32>,
    w_scale: DevBuf<f32>,
    bias_i32: Option<DevBuf<i32>>,
    bias_f32: Option<DevBuf<f32>>,
    wmax: i64,
    bias_bound: i64,
    kernel: GemmKernel,
    tuning: Option<GemmTuning>,
    overlap: bool,
    scratch: ScratchCache<CudaExec>,
}

impl Drop for CudaWeights {
    /// Waits for the device's work: GEMMs on any stream may still read the weights, which are
    /// then freed (stream-ordered on the stream that uploaded them).
    fn drop(&mut self) {
        self.dev.quiesce();
    }
}

impl CudaWeights {
    /// Upload `w: [n, k]` with one weight scale (per tensor) or `n` (per output channel) and a
    /// bias (`I32` for static activation scales, `F32` for dynamic ones).
    pub fn new(
        dev: &CudaDevice,
        w: &[i8],
        n: usize,
        k: usize,
        w_scales: &[f32],
        bias: Bias<'_>,
    ) -> Result<Self> {
        let expected = crate::error::checked_len("W = [n, k]", n, k)?;
        if w.len() != expected {
            return Err(Error::shape("weights [n, k]", expected, w.len()));
        }
        if w_scales.len() != 1 && w_scales.len() != n {
            return Err(Error::shape("weight scales (1 or n)", n, w_scales.len()));
        }
        if let Some(s) = w_scales.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(Error::param(
                "weight scale",
                format!("must be finite and > 0, got {s}"),
            ));
        }
        let bias_bound = match bias {
            Bias::None => 0,
            Bias::I32(_) | Bias::F32(_) if bias_len(&bias) != n => {
                return Err(Error::shape("bias", n, bias_len(&bias)))
            }
            Bias::I32(b) => b.iter().map(|&v| (v as i64).abs()).max().unwrap_or(0),
            Bias::F32(b) => {
                crate::quant::check_finite("bias", b)?;
                0
            }
        };
        let ldb = ops::padded_k(k);
        let mut wp = vec![0i8; (n * ldb).max(1)];
        for j in 0..n {
            wp[j * ldb..j * ldb + k].copy_from_slice(&w[j * k..(j + 1) * k]);
        }
        let mut wsum = crate::reference::weight_row_sums(w, n, k);
        wsum.resize(n.max(1), 0);
        let mut ws: Vec<f32> = (0..n)
            .map(|j| w_scales[if w_scales.len() == 1 { 0 } else { j }])
            .collect();
        ws.resize(n.max(1), 1.0);
        let stream = dev.default_stream();
        let e = dev.exec(&stream)?;
        let cw = CudaWeights {
            dev: dev.clone(),
            n,
            k,
            ldb,
            w: e.upload(&wp)?,
            wsum: e.upload(&wsum)?,
            w_scale: e.upload(&ws)?,
            bias_i32: match bias {
                Bias::I32(b) => Some(e.upload(b)?),
                _ => None,
            },
            bias_f32: match bias {
                Bias::F32(b) => Some(e.upload(b)?),
                _ => None,
            },
            wmax: w.iter().map(|&v| (v as i64).abs()).max().unwrap_or(0),
            bias_bound,
            kernel: GemmKernel::Auto,
            tuning: None,
            overlap: false,
            scratch: ScratchCache::new(),
        };
        stream.synchronize().map_err(|e| Error::Cuda {
            context: "uploading weights".into(),
            detail: format!("{:?}", e.0),
        })?;
        Ok(cw)
    }

    /// Output features `n`.
    pub fn n(&self) -> usize {
        self.n
    }
    /// Input features `k`.
    pub fn k(&self) -> usize {
        self.k
    }

    /// The GEMM kernel family [`CudaWeights::gemm`] runs (default [`GemmKernel::Auto`]: the
    /// tensor cores on sm_80 and newer for 16-byte-aligned activation rows — the weight-streaming
    /// GEMV up to 64 rows, tiles above — and dp4a otherwise).
    /// `Err(PathUnavailable)` for the tensor cores on a GPU older than sm_75 (sm_75 runs them
    /// forced or tuned only, [`GemmKernel::Mma`]).
    pub fn set_kernel(&mut self, kernel: GemmKernel) -> Result<()> {
        check_kernel(&self.dev, kernel)?;
        self.kernel = kernel;
        Ok(())
    }
    /// The kernel family in use.
    pub fn kernel(&self) -> GemmKernel {
        self.kernel
    }

    /// Measure on this GPU which kernel runs these weights fastest at each row count of `rows`
    /// ([`GemmTuning`]: every candidate first checked to give `Auto`'s bits here), on `stream`,
    /// and keep the result: from now on [`GemmKernel::Auto`] follows it (a forced kernel still
    /// wins). Synchronizes `stream`; takes from milliseconds to seconds per row count.
    pub fn tune(
        &mut self,
        stream: &Arc<CudaStream>,
        rows: &[usize],
        opts: &TuneOptions,
    ) -> Result<TuneReport> {
        check_accumulator_bound(self.k, 128, self.wmax, 0)?;
        let w = TuneWeights {
            device: self.dev.name(),
            n: self.n,
            k: self.k,
            ldb: self.ldb,
            w: &self.w,
            wsum: &self.wsum,
            w_scale: &self.w_scale,
            scratch: &self.scratch,
        };
        let report = tune::tune_on_gpu(&self.dev, stream, &w, rows, opts)?;
        self.tuning = Some(report.tuning.clone());
        Ok(report)
    }
    /// Apply a tuning measured earlier (`None`: back to the static dispatch).
    /// `Err(InvalidParam)` when it was measured for another shape or GPU model.
    pub fn set_tuning(&mut self, tuning: Option<GemmTuning>) -> Result<()> {
        tune::check_tuning(&self.dev, tuning.as_ref(), self.n, self.k)?;
        self.tuning = tuning;
        Ok(())
    }
    /// The tuning `Auto` follows, if any.
    pub fn tuning(&self) -> Option<&GemmTuning> {
        self.tuning.as_ref()
    }

    /// Launch the weight-streaming GEMV (the tensor-core path for few rows) and the TMA tiles
    /// (`MmaTile::Tma…`) overlapped with the kernel before it on the stream (programmatic
    /// dependent launch, sm_90 and newer): they start streaming the weights while that kernel
    /// finishes and wait for it before reading the activations. The same bits. Off by default here, where the kernel before it is the
    /// caller's (a layer, whose kernel before the GEMV is its own quantization, turns it on by
    /// default). Elsewhere, and for the other kernels, launches stay ordinary.
    pub fn set_overlapped_launch(&mut self, on: bool) {
        self.overlap = on;
    }

    /// `out[m, n] = epilogue(x[m, k] · Wᵀ)` enqueued on `stream` (no synchronization); returns
    /// the path that ran ([`Path::CudaMma`] or [`Path::CudaDp4a`]). Refuses
    /// shapes whose worst-case accumulator could overflow i32 (`k · max|x − zp| · max|w| +
    /// max|bias|`, with `max|x − zp|` = 128 for `s8` and 255 for `u8`, whose zero points must lie
    /// in `[0, 255]`). Scales and zero points are read on the device and not validated here.
    pub fn gemm(
        &self,
        stream: &Arc<CudaStream>,
        m: usize,
        x: CudaActivations<'_>,
        act: CudaActScales<'_>,
        out: CudaOut<'_>,
    ) -> Result<Path> {
        let x_bound = match x {
            CudaActivations::S8 { .. } => 128,
            CudaActivations::U8 { .. } => 255,
        };
        check_accumulator_bound(self.k, x_bound, self.wmax, self.bias_bound)?;
        let e = self.dev.exec(stream)?;
        // The caller's buffers, lent until the launches are enqueued.
        enum LentAct<'a> {
            S8(Lent<'a, i8>),
            U8(Lent<'a, u8>),
        }
        let (lx, lda) = match x {
            CudaActivations::S8 { x, lda } => (LentAct::S8(e.lend(x)), lda),
            CudaActivations::U8 { x, lda } => (LentAct::U8(e.lend(x)), lda),
        };
        let xa = match &lx {
            LentAct::S8(x) => DevAct::S8(&**x),
            LentAct::U8(x) => DevAct::U8(&**x),
        };
        let (act_scale, act_zp, per_row) = match act {
            CudaActScales::PerTensor { scale, zero_point } => (scale, zero_point, false),
            CudaActScales::PerRow {
                scales,
                zero_points,
            } => (scales, zero_points, true),
        };
        let (act_scale, act_zp) = (e.lend(act_scale), act_zp.map(|z| e.lend(z)));
        let mut out = out.lend(&e);
        let g = GemmDev {
            m,
            n: self.n,
            k: self.k,
            x: xa,
            lda,
            w: &self.w,
            ldb: self.ldb,
            wsum: &self.wsum,
            w_scale: &self.w_scale,
            act_scale: &*act_scale,
            per_row,
            act_zp: act_zp.as_deref(),
            bias: match (&self.bias_i32, &self.bias_f32) {
                (Some(b), _) => DevBias::I32(b),
                (None, Some(b)) => DevBias::F32(b),
                _ => DevBias::None,
            },
            status: None,
            kernel: tune::resolve(self.kernel, self.tuning.as_ref(), m),
            overlap: self.overlap,
        };
        ops::gemm::<CudaExec>(&e, &g, &mut out.dev(), &self.scratch)
    }
}

/// `Err(PathUnavailable)` when `kernel` forces the tensor cores on a GPU older than sm_75 (or a
/// tile over sm_75's 64 KiB of shared memory there), or a `wgmma` tile on any GPU but sm_90
/// ([`ops::arch_refusal`]).
pub(crate) fn check_kernel(dev: &CudaDevice, kernel: GemmKernel) -> Result<()> {
    match ops::arch_refusal(kernel, arch(dev)) {
        Some(reason) => Err(Error::PathUnavailable {
            path: Path::CudaMma,
            reason: format!("{}: {reason}", dev.name()),
        }),
        None => Ok(()),
    }
}

/// `dev`'s compute capability as `major · 10 + minor`.
pub(crate) fn arch(dev: &CudaDevice) -> u32 {
    let (major, minor) = dev.compute_capability();
    (major * 10 + minor) as u32
}

fn bias_len(b: &Bias<'_>) -> usize {
    match b {
        Bias::None => 0,
        Bias::I32(v) => v.len(),
        Bias::F32(v) => v.len(),
    }
}
