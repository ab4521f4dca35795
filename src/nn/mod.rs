//! nn — the layers serving code holds: [`QuantLinear`] (the top of the flow: f32 in, quantize,
//! integer GEMM, fused epilogue, f32/f16/bf16/i8 out).

pub mod calibration;
mod linear;

pub use calibration::{CalibrationRun, Frozen};
pub use linear::{ActivationQuant, LinearConfig, QuantLinear};
