//! tests/common/outputs.rs — GEMM output buffers for bit-exact comparisons, shared by the GPU
//! integration tests (`tests/gpu.rs`) and the host-simulation unit tests (`src/cuda/sim_tests.rs`),
//! each of which includes it with `#[path]`. It names `OutBuf`, `OutKind`, `OutQuant`, `f16` and
//! `bf16` through `super::`, so the including module imports them (from `int8rt::` or `crate::`).

use super::{bf16, f16, OutBuf, OutKind, OutQuant};

/// The output kinds every GEMM test covers: i32, the three float types, and i8 with a symmetric
/// and an asymmetric output scale.
pub fn out_kinds() -> Vec<OutKind> {
    vec![
        OutKind::I32,
        OutKind::F32,
        OutKind::F16,
        OutKind::Bf16,
        OutKind::I8(OutQuant::symmetric(0.37)),
        OutKind::I8(OutQuant {
            scale: 0.05,
            zero_point: -3,
            qmin: -128,
            qmax: 127,
        }),
    ]
}

/// A host output of one kind pre-filled with a sentinel (NaN for floats), compared by bits.
pub enum HostOut {
    I32(Vec<i32>),
    F32(Vec<f32>),
    F16(Vec<f16>),
    Bf16(Vec<bf16>),
    I8(Vec<i8>, OutQuant),
}

impl HostOut {
    pub fn new(kind: OutKind, len: usize) -> Self {
        match kind {
            OutKind::I32 => HostOut::I32(vec![i32::MIN + 7; len]),
            OutKind::F32 => HostOut::F32(vec![f32::NAN; len]),
            OutKind::F16 => HostOut::F16(vec![f16::NAN; len]),
            OutKind::Bf16 => HostOut::Bf16(vec![bf16::NAN; len]),
            OutKind::I8(q) => HostOut::I8(vec![-101; len], q),
        }
    }
    pub fn as_buf(&mut self) -> OutBuf<'_> {
        match self {
            HostOut::I32(v) => OutBuf::I32(v),
            HostOut::F32(v) => OutBuf::F32(v),
            HostOut::F16(v) => OutBuf::F16(v),
            HostOut::Bf16(v) => OutBuf::Bf16(v),
            HostOut::I8(v, q) => OutBuf::I8(v, *q),
        }
    }
    /// Bits of every element, for exact comparison (NaN sentinels included).
    pub fn bits(&self) -> Vec<u32> {
        match self {
            HostOut::I32(v) => v.iter().map(|&x| x as u32).collect(),
            HostOut::F32(v) => v.iter().map(|x| x.to_bits()).collect(),
            HostOut::F16(v) => v.iter().map(|x| x.to_bits() as u32).collect(),
            HostOut::Bf16(v) => v.iter().map(|x| x.to_bits() as u32).collect(),
            HostOut::I8(v, _) => v.iter().map(|&x| x as u8 as u32).collect(),
        }
    }
}
