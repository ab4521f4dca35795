//! nn — the layers serving code holds: [`QuantLinear`] (the top of the flow: f32 in, quantize,
//! integer GEMM, fused epilogue, f32/f16/bf16/i8 out).

mod linear;

pub use linear::{ActivationQuant, LinearConfig, QuantLinear};
