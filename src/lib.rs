//! # int8rt — exact int8 inference for Linear layers
//!
//! `int8rt` quantizes the weights of Linear layers to int8 (per output channel or per tensor),
//! quantizes their inputs (dynamically per call, or with a calibrated static scale), and runs an
//! integer GEMM with the requantization fused into its epilogue: on NVIDIA GPUs (`dp4a` and
//! tensor-core kernels, feature `cuda`) or on the CPU (AMX, AVX-512 VNNI, AVX2 or portable Rust,
//! chosen at run time). **Every path gives the same bits**: the scalar code in [`reference`](mod@reference) is the
//! definition, and the fast paths are tested against it exactly.
//!
//! ## The numeric contract in brief (DESIGN.md §1)
//! - Symmetric: `[-127, 127]`, `scale = amax / 127`; asymmetric: `u8` with a zero point, the range
//!   widened to contain 0. Quantize `q = clamp(rhe(x / scale) + zp)` with a true division and ties
//!   to even; a zero range gives scale 1; NaN/inf is an error naming the tensor.
//! - GEMM: `acc = Σ x·w` in exact i32, `− zp_x · wsum[n]`, `+ bias_q[n]`; then in f32, in this
//!   order and without FMA: `f32(acc) · (s_x · s_w[n])` (per-row: `(f32(acc) · s_w[n]) · s_x[m]`),
//!   `+ bias[n]` for dynamic scales, rounded to f16/bf16 or requantized to i8.
//! - Shapes whose worst-case accumulator could overflow i32 are refused with a typed error.
//!
//! ## Example
//! ```
//! use int8rt::{gemm::Context, nn::{LinearConfig, QuantLinear}};
//!
//! let (out_f, in_f, m) = (3, 4, 2);
//! let w: Vec<f32> = (0..out_f * in_f).map(|i| (i as f32 - 5.0) * 0.1).collect();
//! let bias = [0.5f32, -0.25, 0.0];
//! let layer = QuantLinear::from_f32("fc1", &w, out_f, in_f, Some(&bias), LinearConfig::default())?;
//!
//! let ctx = Context::new(); // automatic path choice, all cores
//! let x = [1.0f32, -2.0, 0.5, 3.0, 0.0, 1.5, -1.0, 2.0];
//! let y = layer.forward_f32(&ctx, &x, m)?;
//! assert_eq!(y.len(), m * out_f);
//! println!("{y:?} via {:?}", ctx.last_path());
//! # Ok::<(), int8rt::Error>(())
//! ```
//!
//! ## Features
//! - `cuda` (default): the GPU backend through cudarc with dynamic loading; the crate builds and
//!   runs without CUDA installed and falls back to the CPU.

pub mod calib;
pub mod cuda;
pub mod device;
pub mod error;
pub mod gemm;
pub mod io;
pub mod nn;
pub mod npy;
pub mod qat;
pub mod quant;
pub mod reference;

pub use device::Device;
pub use error::{Error, Result};
pub use gemm::{Context, Path};
pub use nn::QuantLinear;

/// The README's example, compiled and run as a doctest so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
