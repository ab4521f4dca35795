//! device.rs — where work runs: [`Device::auto`] picks CUDA when a driver and a GPU are present
//! and the CPU otherwise, saying why, and never panics (libcuda is probed before any driver
//! call). Serving code picks a device with these constructors; a command line with
//! [`Device::from_spec`] (`--device auto|cpu|cuda|cuda:N`).

use std::fmt;

use crate::cuda::CudaDevice;
use crate::error::{Error, Result};

/// A device to run layers on.
#[derive(Clone, Debug)]
pub enum Device {
    /// The CPU; `reason` says why no GPU is used when one was looked for.
    Cpu { reason: Option<String> },
    /// A CUDA GPU.
    Cuda(CudaDevice),
}

impl Device {
    /// The CPU, by request.
    pub fn cpu() -> Self {
        Device::Cpu { reason: None }
    }

    /// CUDA device 0 when a driver and a device are present (and the device can run the
    /// kernels), else the CPU with the reason. Never panics.
    pub fn auto() -> Self {
        match CudaDevice::new(0) {
            Ok(d) => Device::Cuda(d),
            Err(e) => Device::Cpu {
                reason: Some(match e {
                    Error::CudaUnavailable(why) => why,
                    other => other.to_string(),
                }),
            },
        }
    }

    /// CUDA device `ordinal`; `Err(CudaUnavailable)` with the reason when there is none.
    pub fn cuda(ordinal: usize) -> Result<Self> {
        CudaDevice::new(ordinal).map(Device::Cuda)
    }

    /// Parse a device spec: `auto`, `cpu`, `cuda` (device 0) or `cuda:N`.
    pub fn from_spec(spec: &str) -> Result<Self> {
        match spec.trim() {
            "auto" => Ok(Device::auto()),
            "cpu" => Ok(Device::cpu()),
            "cuda" | "gpu" => Device::cuda(0),
            s => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(i)) => Device::cuda(i),
                _ => Err(Error::param(
                    "device",
                    format!("`{s}`: expected auto, cpu, cuda or cuda:N"),
                )),
            },
        }
    }

    /// Whether this is a GPU.
    pub fn is_cuda(&self) -> bool {
        matches!(self, Device::Cuda(_))
    }

    /// Why the CPU was chosen, when a GPU was looked for.
    pub fn cpu_reason(&self) -> Option<&str> {
        match self {
            Device::Cpu { reason } => reason.as_deref(),
            Device::Cuda(_) => None,
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu { reason: None } => write!(f, "cpu"),
            Device::Cpu { reason: Some(r) } => write!(f, "cpu ({r})"),
            Device::Cuda(d) => {
                let (a, b) = d.compute_capability();
                write!(f, "cuda:{} ({}, sm_{a}{b})", d.ordinal(), d.name())
            }
        }
    }
}
