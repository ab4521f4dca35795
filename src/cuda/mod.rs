//! cuda — the GPU backend: the kernel registry, the launch abstraction and the host wrappers of
//! the kernels, device discovery, the module cache, [`CudaQuantLinear`] (a `QuantLinear`
//! resident on a GPU), and [`CudaBatch`] (calibration over activations in GPU memory).
//!
//! Layers, top to bottom: `linear` and `calib`'s `CudaBatch` (the public device layer) → `ops`
//! and `calib`'s wrappers (argument checks, launch geometry, parameter blocks; the last safe
//! layer) → `exec` (an executor: the CUDA driver on a stream in `driver`, or in test builds the
//! host simulation in `sim`) → `kernels/*.cu`.
//! The pure-Rust layers compile without the `cuda` feature so the simulation tests run in every
//! build; without it, [`CudaDevice`] exists but cannot be constructed.

#![cfg_attr(not(feature = "cuda"), allow(dead_code))]

pub(crate) mod calib;
#[cfg(test)]
mod calib_sim_tests;
#[cfg(feature = "cuda")]
mod driver;
pub(crate) mod exec;
pub(crate) mod fake_quant;
#[cfg(feature = "cuda")]
mod gemm;
#[cfg(feature = "cuda")]
mod linear;
#[cfg(feature = "cuda")]
pub(crate) mod nvrtc_compile;
pub(crate) mod ops;
pub(crate) mod params;
mod peak;
pub mod registry;
pub(crate) mod reports;
#[cfg(test)]
pub(crate) mod sim;
#[cfg(all(test, feature = "cuda"))]
mod sim_driver_tests;
#[cfg(test)]
mod sim_mma_tests;
#[cfg(test)]
mod sim_peak_tests;
#[cfg(test)]
mod sim_tests;
#[cfg(not(feature = "cuda"))]
mod stub;
mod tma_probe;
pub(crate) mod tune;
#[cfg(test)]
mod tune_sim_tests;

#[cfg(feature = "cuda")]
pub use calib::CudaBatch;
/// The cudarc version this crate is built against, for buffers and streams passed to it.
#[cfg(feature = "cuda")]
pub use cudarc;
#[cfg(feature = "cuda")]
pub use driver::{driver_library_present, probe, CudaDevice, KernelImage, KernelSource};
#[cfg(feature = "cuda")]
pub use gemm::{CudaActScales, CudaActivations, CudaWeights};
#[cfg(feature = "cuda")]
pub use linear::{CudaOut, CudaQuantLinear, CudaQuantized, PendingForward};
pub use ops::{Axis, GemmKernel, GemvVariant, MmaConfig, MmaTile};
pub use params::Status;
#[cfg(feature = "cuda")]
pub use peak::CudaPeak;
pub use peak::PeakKernel;
#[cfg(not(feature = "cuda"))]
pub use stub::{driver_library_present, probe, CudaDevice};
#[cfg(feature = "cuda")]
pub use tma_probe::tma_box_on_gpu;
pub use tma_probe::{tma_box_expected, tma_probe_source, TMA_PROBE_BOXES, TMA_PROBE_MATRIX};
pub use tune::{GemmTuning, Outcome, TuneOptions, TuneReport, TunedKernel};
