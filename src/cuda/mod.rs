//! cuda — the GPU backend: the kernel registry, the launch abstraction and the host wrappers of
//! the kernels, device discovery, the module cache, and [`CudaQuantLinear`] (a `QuantLinear`
//! resident on a GPU).
//!
//! Layers, top to bottom: `linear` (the public device layer) → `ops` (argument checks, launch
//! geometry, parameter blocks; the last safe layer) → `exec` (an executor: the CUDA driver on a
//! stream in `driver`, or in test builds the host simulation in `sim`) → `kernels/*.cu`.
//! The pure-Rust layers compile without the `cuda` feature so the simulation tests run in every
//! build.

#![cfg_attr(not(feature = "cuda"), allow(dead_code))]

pub(crate) mod exec;
pub(crate) mod ops;
pub(crate) mod params;
pub mod registry;
#[cfg(test)]
pub(crate) mod sim;
#[cfg(test)]
mod sim_tests;

pub use ops::Axis;
pub use params::Status;
