//! gemm/cpu/x86 — the x86-64 SIMD paths: run-time detection, their packed weight layouts, and the
//! kernel lookup the driver uses. Each path is one file: `avx2` (exact 16-bit `vpmaddwd`),
//! `avx512` (AVX-512 VNNI `vpdpbusd`), `amx` (AMX-INT8 `tdpbusd` tiles). The two broadcast kernels
//! (AVX2, VNNI) share their weight packing (`pack_k_groups`) and tile bounds checks (`tile_start`).

mod amx;
mod avx2;
mod avx512;

use std::sync::OnceLock;

use super::{AlignedBuf, Kernel, PreparedA};
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

/// Weights `w` (`[n, k]`, row-major) packed for a broadcast kernel: panels of `nr` columns, each
/// `[⌈k/g⌉][nr][g]` (the `g` consecutive k of one column together, one `nr·g`-byte row per k
/// group), zero-padded in k and n. Returns the buffer and the number of k groups.
fn pack_k_groups(w: &[i8], n: usize, k: usize, nr: usize, g: usize) -> (AlignedBuf, usize) {
    let groups = k.div_ceil(g);
    let mut b = AlignedBuf::zeroed(n.div_ceil(nr) * groups * nr * g);
    let dst: &mut [i8] = b.as_mut_slice();
    for j in 0..n {
        let (p, c) = (j / nr, j % nr);
        for kk in 0..k {
            dst[((p * groups + kk / g) * nr + c) * g + kk % g] = w[j * k + kk];
        }
    }
    (b, groups)
}

/// The start of row `i0` of A and of panel `panel` of B for a kernel of `mr × nr` tiles over
/// `groups` k groups of `g`, after checking that `rows` rows of the tile stay in bounds: `mr`
/// (padded) rows of A of `groups · g` elements from `i0`, the whole panel, `mr × nr` of `acc`.
/// The unsafe tile loops rely on these checks.
#[allow(clippy::too_many_arguments)]
#[inline]
fn tile_start<'a, T: bytemuck::Pod>(
    a: &'a PreparedA,
    i0: usize,
    rows: usize,
    (mr, nr): (usize, usize),
    (groups, g): (usize, usize),
    b: &'a AlignedBuf,
    panel: usize,
    acc: &[i32],
) -> (*const T, *const i8) {
    let av: &[T] = a.buf.as_slice();
    let bv: &[i8] = b.as_slice();
    let panel_len = groups * nr * g;
    assert!((1..=mr).contains(&rows) && a.lda == groups * g);
    assert!((i0 + mr) * a.lda <= av.len());
    assert!((panel + 1) * panel_len <= bv.len() && acc.len() >= mr * nr);
    (av[i0 * a.lda..].as_ptr(), bv[panel * panel_len..].as_ptr())
}
