//! gemm/cpu/x86 — the x86-64 SIMD paths: run-time detection, their packed weight layouts, and the
//! kernel lookup the driver uses. Each path is one file: `avx2` (exact 16-bit `vpmaddwd`),
//! `avx512` (AVX-512 VNNI `vpdpbusd`), `amx` (AMX-INT8 `tdpbusd` tiles).

mod amx;
mod avx2;
mod avx512;

use std::sync::OnceLock;

use super::Kernel;
use crate::gemm::Path;

/// Which x86 paths this CPU (and OS) can run.
pub(super) fn detect() -> Vec<(Path, Result<(), String>)> {
    let have = |f: bool, what: &str| {
        if f {
            Ok(())
        } else {
            Err(format!("CPU lacks {what}"))
        }
    };
    let avx2 = have(std::is_x86_feature_detected!("avx2"), "AVX2");
    let vnni = have(
        std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vnni"),
        "AVX-512 F/BW/VNNI",
    );
    let amx = match &vnni {
        Ok(()) => amx::enable(),
        Err(e) => Err(format!("{e} (the AMX path's edges use AVX-512)")),
    };
    vec![
        (Path::Avx2, avx2),
        (Path::Avx512Vnni, vnni),
        (Path::Amx, amx),
    ]
}

/// Packed weights of the x86 paths, built on first use.
#[derive(Debug, Default)]
pub(crate) struct X86Packs {
    avx2: OnceLock<avx2::Avx2Kernel>,
    vnni: OnceLock<avx512::VnniKernel>,
    amx: OnceLock<amx::AmxKernel>,
}

impl X86Packs {
    /// Pack for `path` now if it is an x86 path this machine has.
    pub(crate) fn prepare(&self, path: Path, raw: &[i8], n: usize, k: usize) {
        if super::availability(path).is_ok() {
            let _ = self.kernel(path, raw, n, k);
        }
    }

    /// The kernel for `path` (packing on first use); `None` for non-x86 paths. The caller has
    /// checked that the path is available.
    pub(crate) fn kernel(&self, path: Path, raw: &[i8], n: usize, k: usize) -> Option<&dyn Kernel> {
        match path {
            Path::Avx2 => Some(self.avx2.get_or_init(|| avx2::Avx2Kernel::pack(raw, n, k))),
            Path::Avx512Vnni => Some(
                self.vnni
                    .get_or_init(|| avx512::VnniKernel::pack(raw, n, k)),
            ),
            Path::Amx => Some(self.amx.get_or_init(|| amx::AmxKernel::pack(raw, n, k))),
            _ => None,
        }
    }
}
