//! error.rs — the crate's one error type. Every fallible public function returns [`Result`];
//! variants carry the context a caller needs to act (shapes, names, counts, logs), so no safe
//! function has to panic on user input.

use thiserror::Error;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `int8rt`.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// A buffer does not have the length its shape implies.
    #[error("shape mismatch for {what}: expected {expected} elements, got {got}")]
    Shape {
        what: &'static str,
        expected: usize,
        got: usize,
    },

    /// A dimension is invalid (zero where a size is required, or a product that overflows `usize`).
    #[error("invalid dimension for {what}: {detail}")]
    Dimension { what: &'static str, detail: String },

    /// Data handed to a quantizer or a calibrator contains NaN or ±inf.
    #[error("tensor `{tensor}` holds {count} non-finite value(s) (NaN or ±inf); first at index {first_index}")]
    NonFinite {
        tensor: String,
        count: usize,
        first_index: usize,
    },

    /// A quantization parameter is out of its domain (negative or non-finite scale, zero point
    /// outside the integer range, an empty integer range, ...).
    #[error("invalid quantization parameter `{param}`: {detail}")]
    InvalidParam { param: &'static str, detail: String },

    /// The worst-case i32 accumulator for this shape could overflow (DESIGN.md §1 "Accumulation
    /// bounds"): `k · max|x| · max|w| + max|bias| ≥ 2^31`.
    #[error("K = {k} is too large for exact i32 accumulation: worst case {worst_case} ≥ 2^31 (max |x| = {x_bound}, max |w| = {w_bound}, max |bias| = {bias_bound})")]
    AccumulatorOverflow {
        k: usize,
        x_bound: i64,
        w_bound: i64,
        bias_bound: i64,
        worst_case: i64,
    },

    /// A combination of options that has no meaning (for example a float bias with raw i32 output).
    #[error("unsupported combination: {0}")]
    Unsupported(String),

    /// A path was forced that this machine or build cannot run.
    #[error("path {path:?} is not available: {reason}")]
    PathUnavailable {
        path: crate::gemm::Path,
        reason: String,
    },

    /// No CUDA device could be used.
    #[error("CUDA is not available: {0}")]
    CudaUnavailable(String),

    /// A CUDA driver or kernel-launch failure.
    #[error("CUDA error in {context}: {detail}")]
    Cuda { context: String, detail: String },

    /// NVRTC failed to compile a kernel; `log` is NVRTC's program log.
    #[error("NVRTC failed to compile `{kernel}` with options {options:?}:\n{log}")]
    Nvrtc {
        kernel: String,
        options: Vec<String>,
        log: String,
    },

    /// Reading or writing a file failed.
    #[error("I/O error on `{path}`: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },

    /// A calibration observer cannot give a range: it saw no data, two observers that cannot be
    /// merged, or a method that does not apply to what it saw.
    #[error("calibration of `{tensor}`: {detail}")]
    Calibration { tensor: String, detail: String },

    /// A file exists but its content does not fit what was expected (header, dtype, shape, config).
    #[error("format error in `{file}`: {detail}")]
    Format { file: String, detail: String },

    /// One tensor of a checkpoint is missing, or its dtype, shape or values do not fit the layer
    /// it belongs to (a quantization scale of the wrong shape, a zero or NaN scale, ...).
    #[error("tensor `{tensor}` in `{file}`: {detail}")]
    Tensor {
        file: String,
        tensor: String,
        detail: String,
    },
}

impl Error {
    /// Shorthand for [`Error::Shape`].
    pub(crate) fn shape(what: &'static str, expected: usize, got: usize) -> Self {
        Error::Shape {
            what,
            expected,
            got,
        }
    }

    /// Shorthand for [`Error::InvalidParam`].
    pub(crate) fn param(param: &'static str, detail: impl Into<String>) -> Self {
        Error::InvalidParam {
            param,
            detail: detail.into(),
        }
    }
}

/// Checked `a * b` for shapes, with an error that names what overflowed.
pub(crate) fn checked_len(what: &'static str, a: usize, b: usize) -> Result<usize> {
    a.checked_mul(b).ok_or_else(|| Error::Dimension {
        what,
        detail: format!("{a} × {b} overflows usize"),
    })
}
