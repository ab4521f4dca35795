//! cuda/params.rs — the Rust twins of `kernels/params.cuh`: one `#[repr(C)]` struct per kernel
//! parameter block, field for field (pointers as `u64` device addresses). The host simulation
//! compares `size_of` with the kernel's `sizeof` at every launch; the GPU tests and the
//! simulation tests check the values end to end.

use bytemuck::{Pod, Zeroable};

/// `OUT_*` in params.cuh.
pub(crate) const OUT_I32: i32 = 0;
pub(crate) const OUT_F32: i32 = 1;
pub(crate) const OUT_F16: i32 = 2;
pub(crate) const OUT_BF16: i32 = 3;
pub(crate) const OUT_I8: i32 = 4;

/// `RULE_*` (quantize) and `DEQ_*` (dequantize).
pub(crate) const RULE_DIVIDE: i32 = 0;
pub(crate) const RULE_MULTIPLY: i32 = 1;
pub(crate) const DEQ_AFFINE: i32 = 0;
pub(crate) const DEQ_UNIT: i32 = 1;

/// `ACT_*`.
pub(crate) const ACT_ROWS: i32 = 0;
pub(crate) const ACT_RANGE: i32 = 1;
pub(crate) const ACT_TENSOR: i32 = 2;
pub(crate) const ACT_STATIC: i32 = 3;
pub(crate) const ACT_INIT: i32 = 4;

/// `struct Status`: non-finite input count and first flat index (`u64::MAX` when none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct Status {
    pub count: u64,
    pub first: u64,
}

impl Status {
    /// The state before a kernel runs.
    pub const CLEAR: Status = Status {
        count: 0,
        first: u64::MAX,
    };
}

/// `struct EpiParams`.
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
#[repr(C)]
pub(crate) struct EpiParams {
    pub w_scale: u64,
    pub act_scale: u64,
    pub bias_f32: u64,
    pub per_row: i32,
    pub out_kind: i32,
    pub out_scale: f32,
    pub out_zp: i32,
    pub out_qmin: i32,
    pub out_qmax: i32,
}

/// `struct GemmParams`.
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
#[repr(C)]
pub(crate) struct GemmParams {
    pub x: u64,
    pub w: u64,
    pub y: u64,
    pub bias_i32: u64,
    pub act_zp: u64,
    pub wsum: u64,
    pub status: u64,
    pub lda: i64,
    pub ldb: i64,
    pub ldy: i64,
    pub m: i32,
    pub n: i32,
    pub k: i32,
    pub zp_stride: i32,
    pub epi: EpiParams,
}

/// `MMA_PAIRED_STORES` (a flag of [`MmaParams`]).
pub(crate) const MMA_PAIRED_STORES: i32 = 1;

/// `struct MmaParams`.
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
#[repr(C)]
pub(crate) struct MmaParams {
    pub g: GemmParams,
    pub partials: u64,
    pub counters: u64,
    pub kt_per_split: i32,
    pub flags: i32,
}

/// `struct TmaMap`: a 2-D tensor map's 128 opaque bytes (encoded by the driver on a GPU, by
/// the simulation's own format in tests; [`super::exec::Exec::tensor_map`]).
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
#[repr(C, align(128))]
pub(crate) struct TmaMap {
    pub bits: [u64; 16],
}

/// `struct TmaParams` (kernels/gemm_tma.cu): X's and W's tensor maps, then the GEMM.
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
#[repr(C)]
pub(crate) struct TmaParams {
    pub x: TmaMap,
    pub w: TmaMap,
    pub q: MmaParams,
    pub pad: [u64; 11],
}

const _: () =
    assert!(std::mem::size_of::<MmaParams>() == 168 && std::mem::size_of::<TmaParams>() == 512);

/// `struct TmaProbeParams` (kernels/gemm_tma.cu `tma_probe`).
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
#[repr(C)]
pub(crate) struct TmaProbeParams {
    pub map: TmaMap,
    pub out: u64,
    pub c0: i32,
    pub c1: i32,
    pub box_bytes: i32,
    pub pad0: i32,
    pub pad: [u64; 13],
}

const _: () = assert!(std::mem::size_of::<TmaProbeParams>() == 256);

/// `struct QuantizeParams`.
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
#[repr(C)]
pub(crate) struct QuantizeParams {
    pub x: u64,
    pub q: u64,
    pub scale: u64,
    pub factor: u64,
    pub zp: u64,
    pub status: u64,
    pub len: i64,
    pub inner: i64,
    pub groups: i32,
    pub rule: i32,
    pub qmin: i32,
    pub qmax: i32,
    pub allow_inf: i32,
    pub pad: i32,
}

/// `struct DequantizeParams`.
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
#[repr(C)]
pub(crate) struct DequantizeParams {
    pub q: u64,
    pub y: u64,
    pub scale: u64,
    pub factor: u64,
    pub zp: u64,
    pub len: i64,
    pub inner: i64,
    pub groups: i32,
    pub rule: i32,
}

/// `struct ActQuantParams`.
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
#[repr(C)]
pub(crate) struct ActQuantParams {
    pub x: u64,
    pub q: u64,
    pub scales: u64,
    pub zps: u64,
    pub range: u64,
    pub status: u64,
    pub ldq: i64,
    pub m: i32,
    pub k: i32,
    pub mode: i32,
    pub rule: i32,
    pub factor: f32,
    pub qmin: i32,
    pub qmax: i32,
    pub pad: i32,
}

/// `HIST_*`.
pub(crate) const HIST_SCALED: i32 = 0;
pub(crate) const HIST_WIDTH: i32 = 1;
pub(crate) const HIST_SIGNED: i32 = 2;

/// `struct CalibReduceParams`.
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
#[repr(C)]
pub(crate) struct CalibReduceParams {
    pub x: u64,
    pub range: u64,
    pub zeros: u64,
    pub status: u64,
    pub outer: i64,
    pub cols: i64,
    pub inner: i64,
    pub channels: i32,
    pub pad: i32,
}

/// `struct HistParams`.
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
#[repr(C)]
pub(crate) struct HistParams {
    pub x: u64,
    pub counts: u64,
    pub len: i64,
    pub bins: u64,
    pub first: i64,
    pub rule: i32,
    pub nf: f32,
    pub right: f32,
    pub width: f32,
    pub skip_zeros: i32,
    pub pad: i32,
}

/// `PEAK_*` (kernels/peak.cu, the instruction-peak microbenchmarks).
pub(crate) const PEAK_THREADS: u32 = 256;
pub(crate) const PEAK_SEED_WORDS: usize = 64;
pub(crate) const PEAK_MMA_MT: usize = 2;
pub(crate) const PEAK_MMA_NT: usize = 4;
pub(crate) const PEAK_MMA_UNROLL: u32 = 4;
pub(crate) const PEAK_DP4A_ACC: usize = 16;
pub(crate) const PEAK_DP4A_UNROLL: u32 = 8;

/// `struct PeakParams`.
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
#[repr(C)]
pub(crate) struct PeakParams {
    pub seed: u64,
    pub out: u64,
    pub iters: i32,
    pub pad: i32,
}

/// A parameter block a kernel takes by value; `NAME` is the C struct's name, which the registry
/// records per kernel ([`super::registry::KernelId::params`]), so a launch with the wrong block
/// is caught before it reaches a kernel.
#[cfg(feature = "cuda")]
pub(crate) trait KernelParams: Pod + cudarc::driver::DeviceRepr {
    const NAME: &'static str;
}
/// A parameter block a kernel takes by value (see above).
#[cfg(not(feature = "cuda"))]
pub(crate) trait KernelParams: Pod {
    const NAME: &'static str;
}

// SAFETY: each struct is `#[repr(C)]` plain data (integers, floats, u64 device addresses) laid
// out exactly as its twin in kernels/params.cuh, which the kernel reads by value.
#[cfg(feature = "cuda")]
mod device_repr {
    use super::*;
    use cudarc::driver::{DeviceRepr, ValidAsZeroBits};
    unsafe impl DeviceRepr for GemmParams {}
    unsafe impl DeviceRepr for MmaParams {}
    unsafe impl DeviceRepr for TmaParams {}
    unsafe impl DeviceRepr for TmaProbeParams {}
    unsafe impl DeviceRepr for QuantizeParams {}
    unsafe impl DeviceRepr for DequantizeParams {}
    unsafe impl DeviceRepr for ActQuantParams {}
    unsafe impl DeviceRepr for CalibReduceParams {}
    unsafe impl DeviceRepr for HistParams {}
    unsafe impl DeviceRepr for PeakParams {}
    unsafe impl DeviceRepr for Status {}
    unsafe impl ValidAsZeroBits for Status {}
}

impl KernelParams for GemmParams {
    const NAME: &'static str = "GemmParams";
}
impl KernelParams for MmaParams {
    const NAME: &'static str = "MmaParams";
}
impl KernelParams for TmaParams {
    const NAME: &'static str = "TmaParams";
}
impl KernelParams for TmaProbeParams {
    const NAME: &'static str = "TmaProbeParams";
}
impl KernelParams for QuantizeParams {
    const NAME: &'static str = "QuantizeParams";
}
impl KernelParams for DequantizeParams {
    const NAME: &'static str = "DequantizeParams";
}
impl KernelParams for ActQuantParams {
    const NAME: &'static str = "ActQuantParams";
}
impl KernelParams for CalibReduceParams {
    const NAME: &'static str = "CalibReduceParams";
}
impl KernelParams for HistParams {
    const NAME: &'static str = "HistParams";
}
impl KernelParams for PeakParams {
    const NAME: &'static str = "PeakParams";
}

/// `struct FakeQuantParams` (kernels/fake_quant.cu, quantization-aware training).
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
#[repr(C)]
pub(crate) struct FakeQuantParams {
    pub x: u64,
    pub y: u64,
    pub dx: u64,
    pub dscale: u64,
    pub dzp: u64,
    pub scale: u64,
    pub zp: u64,
    pub status: u64,
    pub len: i64,
    pub inner: i64,
    pub groups: i32,
    pub qmin: i32,
    pub qmax: i32,
    pub pad: i32,
}

// SAFETY: `#[repr(C)]` plain data (u64 device addresses, integers) laid out exactly as its twin
// in kernels/params.cuh (pointers, then 64-bit, then 32-bit fields; 96 bytes), read by value.
#[cfg(feature = "cuda")]
unsafe impl cudarc::driver::DeviceRepr for FakeQuantParams {}

impl KernelParams for FakeQuantParams {
    const NAME: &'static str = "FakeQuantParams";
}
