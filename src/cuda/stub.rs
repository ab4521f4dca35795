//! cuda/stub.rs — the CUDA API in builds without the `cuda` feature: the same names, no values
//! (every constructor returns `Err(CudaUnavailable)`), so code using them compiles either way.

use crate::error::{Error, Result};

/// A CUDA device (this build has no CUDA backend; no value of this type can exist).
#[derive(Clone, Debug)]
pub struct CudaDevice {
    never: std::convert::Infallible,
}

impl CudaDevice {
    /// Always `Err`: built without the `cuda` feature.
    pub fn new(_ordinal: usize) -> Result<Self> {
        Err(Error::CudaUnavailable(
            "int8rt was built without the `cuda` feature".into(),
        ))
    }
    /// The device ordinal.
    pub fn ordinal(&self) -> usize {
        match self.never {}
    }
    /// The device name.
    pub fn name(&self) -> &str {
        match self.never {}
    }
    /// `(major, minor)` compute capability.
    pub fn compute_capability(&self) -> (i32, i32) {
        match self.never {}
    }
}

/// Whether `libcuda` can be loaded: never, in this build.
pub fn driver_library_present() -> bool {
    false
}

/// Why there is no CUDA device: this build has no CUDA backend.
pub fn probe() -> std::result::Result<usize, String> {
    Err("int8rt was built without the `cuda` feature".into())
}
