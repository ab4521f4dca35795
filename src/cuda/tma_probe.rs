//! cuda/tma_probe.rs — a probe of the Tensor Memory Accelerator's box copy, the one piece of the
//! TMA tiles (`kernels/gemm_tma.cu`) whose semantics the host simulation assumes rather than
//! runs: `tma_probe` loads one box of a 2-D u8 tensor map into shared memory and writes its
//! bytes back as they landed. [`tma_box_expected`] is the layout the PTX ISA and the driver's
//! documentation give (128-byte swizzle: 16-byte chunk `j` of box row `i` at byte
//! `128 i + 16 (j ⊕ (i mod 8))` of a 1024-byte aligned destination; zeros outside the tensor);
//! the simulation test checks the emulation against it, `tests/gpu.rs` the hardware. No inference
//! path uses this.
//!
//! A box's first byte must lie at a multiple of 16 bytes along the row (its innermost coordinate
//! × the element size): on the H200 a box at byte 172, 8, 4, 1 or −4 trapped
//! (`CUDA_ERROR_ILLEGAL_INSTRUCTION`), with or without the swizzle, while 0, 16, 128, 160 and −16
//! landed byte for byte as [`tma_box_expected`] lays them out (`bench/probes/tma_box_align.cu`,
//! ninth session). The TMA tiles' boxes start at multiples of 128; [`run`] refuses other origins
//! with a typed error and the simulation fails such a copy as the hardware does.

use super::exec::{Exec, Grid};
use super::params::TmaProbeParams;
use super::registry::KernelId;
use crate::error::{Error, Result};

/// Threads of the probe's one block (`tma::PROBE_THREADS`).
const PROBE_THREADS: u32 = 128;

/// The probe's matrix (rows, bytes per row, row stride) and its boxes (rows, byte and row of the
/// first element, the byte a multiple of 16): inside the matrix, across its right edge (K) and its
/// last row, at negative coordinates, of 1 to 256 rows — for the simulation test and
/// `tests/gpu.rs` alike.
pub const TMA_PROBE_MATRIX: (usize, usize, usize) = (70, 300, 304);
/// See [`TMA_PROBE_MATRIX`].
pub const TMA_PROBE_BOXES: [(usize, i32, i32); 6] = [
    (8, 0, 0),
    (13, 128, 5),
    (64, 256, 30),
    (1, 176, 69),
    (16, -16, -3),
    (256, 128, 0),
];

/// The probe matrix's bytes (a fixed pattern).
pub fn tma_probe_source() -> Vec<u8> {
    let (rows, _, ld) = TMA_PROBE_MATRIX;
    (0..rows * ld).map(|i| (i * 7 % 251) as u8).collect()
}

/// A box as `tma_probe` must return it: `box_rows` rows of 128 bytes of the `rows × cols` u8
/// matrix `src` (row stride `ld`) from byte `c0` of row `c1`, zeros outside the matrix, each
/// row's 16-byte chunks placed by the 128-byte swizzle.
pub fn tma_box_expected(
    src: &[u8],
    (rows, cols, ld): (usize, usize, usize),
    box_rows: usize,
    (c0, c1): (i64, i64),
) -> Vec<u8> {
    let mut out = vec![0u8; 128 * box_rows];
    for i in 0..box_rows {
        for b in 0..128usize {
            let (r, c) = (c1 + i as i64, c0 + b as i64);
            if r < 0 || c < 0 || r >= rows as i64 || c >= cols as i64 {
                continue;
            }
            let (j, within) = (b / 16, b % 16);
            out[128 * i + 16 * (j ^ (i % 8)) + within] = src[r as usize * ld + c as usize];
        }
    }
    out
}

/// Run `tma_probe` on `e`: the box of `box_rows` rows (1 … 256) at (`c0`, `c1`) of the tensor
/// map of `src` (`rows × cols` bytes, row stride `ld`, a multiple of 16); `c0` a multiple of 16
/// (the hardware traps on others).
pub(crate) fn run<E: Exec>(
    e: &E,
    src: &E::Buf<u8>,
    (rows, cols, ld): (usize, usize, usize),
    box_rows: usize,
    (c0, c1): (i32, i32),
) -> Result<Vec<u8>> {
    if !(1..=256).contains(&box_rows) || rows == 0 || cols == 0 || cols > ld {
        return Err(Error::param(
            "TMA probe box",
            format!("1 … 256 rows of a non-empty matrix (rows {rows}, cols {cols}, ld {ld}, box {box_rows})"),
        ));
    }
    if c0 % 16 != 0 {
        return Err(Error::param(
            "TMA probe box",
            format!(
                "its first byte along the row ({c0}) must be a multiple of 16: the TMA traps on \
                 others"
            ),
        ));
    }
    let need = crate::error::checked_len("TMA probe source", rows, ld)?;
    if E::len(src) < need {
        return Err(Error::shape("TMA probe source", need, E::len(src)));
    }
    let bytes = 128 * box_rows;
    let mut out = e.alloc::<u8>(bytes)?;
    // SAFETY: `src` holds rows × ld bytes (checked above) and `out` the box's bytes.
    unsafe { launch(e, src, &mut out, (rows, cols, ld), box_rows, (c0, c1))? };
    let mut v = vec![0u8; bytes];
    e.read(&out, &mut v)?;
    Ok(v)
}

/// Launch `tma_probe` for the box of `box_rows` rows at (`c0`, `c1`) into `out`, without
/// [`run`]'s checks of the box.
///
/// # Safety
/// `src` holds at least `rows × ld` bytes and `out` at least `128 · box_rows`.
unsafe fn launch<E: Exec>(
    e: &E,
    src: &E::Buf<u8>,
    out: &mut E::Buf<u8>,
    (rows, cols, ld): (usize, usize, usize),
    box_rows: usize,
    (c0, c1): (i32, i32),
) -> Result<()> {
    let bytes = 128 * box_rows;
    let (sa, _gs) = e.addr(src);
    let (oa, _go) = e.addr_mut(out);
    let p = TmaProbeParams {
        map: e.tensor_map(sa, rows, cols, ld, box_rows)?,
        out: oa,
        c0,
        c1,
        box_bytes: bytes as i32,
        ..Default::default()
    };
    let g = Grid {
        grid: [1, 1, 1],
        block: [PROBE_THREADS, 1, 1],
        // the box at the first 1024-byte boundary, then its mbarrier
        smem: (1024 + bytes + 8) as u32,
    };
    // SAFETY: the map addresses `src` within rows × ld bytes (the caller's promise), read only
    // inside [0, rows) × [0, cols); the kernel writes out[0, bytes) (the caller's promise); one
    // block of PROBE_THREADS with the dynamic shared memory its box and mbarrier take.
    unsafe { e.launch(KernelId::TmaProbe, g, &p) }
}

/// `run` on a GPU (sm_90): the box as the hardware's TMA lands it, for `tests/gpu.rs` to
/// compare with [`tma_box_expected`].
#[cfg(feature = "cuda")]
pub fn tma_box_on_gpu(
    dev: &super::CudaDevice,
    stream: &std::sync::Arc<cudarc::driver::CudaStream>,
    src: &[u8],
    shape: (usize, usize, usize),
    box_rows: usize,
    at: (i32, i32),
) -> Result<Vec<u8>> {
    let e = dev.exec(stream)?;
    let buf = e.upload(src)?;
    run(&e, &buf, shape, box_rows, at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cuda::sim::SimExec;

    #[test]
    fn simulated_tma_box_lands_as_the_isa_lays_it_out() {
        // The probe's boxes (inside, across the right edge and the last row, at negative
        // coordinates, 1 … 256 rows): the emulation's gather, zero fill and swizzle against the
        // layout written from the ISA text.
        let (rows, cols, ld) = TMA_PROBE_MATRIX;
        let src = tma_probe_source();
        let e = SimExec::new();
        let buf = e.upload(&src).unwrap();
        for &(box_rows, c0, c1) in &TMA_PROBE_BOXES {
            let got = run(&e, &buf, (rows, cols, ld), box_rows, (c0, c1)).unwrap();
            let want = tma_box_expected(&src, (rows, cols, ld), box_rows, (c0 as i64, c1 as i64));
            assert_eq!(got, want, "box {box_rows} at ({c0}, {c1})");
        }
        let st = e.take_stats();
        assert_eq!(st.bulk_copies, 6, "{st:?}");
        assert_eq!(e.take_launched(), vec![KernelId::TmaProbe; 6]);
        // Refused before a launch: a box of 0 or 257 rows, a stride below the row, a first byte
        // off the 16-byte grid (the origins the H200 trapped on).
        for (shape, box_rows, c0) in [
            ((rows, cols, ld), 0, 0),
            ((rows, cols, ld), 257, 0),
            ((rows, 310, ld), 8, 0),
            ((rows, cols, ld), 1, 172),
            ((rows, cols, ld), 8, -4),
            ((rows, cols, ld), 8, 1),
        ] {
            let r = run(&e, &buf, shape, box_rows, (c0, 0));
            assert!(matches!(r, Err(Error::InvalidParam { .. })), "{r:?}");
        }
        assert!(e.take_launched().is_empty());
    }

    #[test]
    fn simulated_tma_copy_from_an_unaligned_byte_fails_as_the_hardware_traps() {
        // The probe kernel launched directly (past `run`'s check) with a box at byte 8 or −4:
        // the emulated copy aborts the launch, as the H200's TMA trapped on those origins; at
        // byte 16 it lands. The simulation aborts its process on a kernel fault, so each case
        // runs in a child process (this test binary, this test alone).
        const CHILD: &str = "INT8RT_SIM_TMA_ORIGIN_CHILD";
        const NAME: &str = "cuda::tma_probe::tests::simulated_tma_copy_from_an_unaligned_byte_fails_as_the_hardware_traps";
        let (rows, cols, ld) = TMA_PROBE_MATRIX;
        let launch_at = |c0: i32| {
            let e = SimExec::new();
            let src = e.upload(&tma_probe_source()).unwrap();
            let mut out = e.alloc::<u8>(128 * 8).unwrap();
            // SAFETY: the source is the probe matrix, `out` one 8-row box.
            unsafe { launch(&e, &src, &mut out, (rows, cols, ld), 8, (c0, 0)) }
        };
        if let Ok(c0) = std::env::var(CHILD) {
            let r = launch_at(c0.parse().unwrap());
            eprintln!("the launch returned: {r:?}");
            std::process::exit(0);
        }
        for c0 in [8, -4] {
            let (ok, err) =
                crate::cuda::sim_mma_tests::run_test_in_child(NAME, CHILD, &c0.to_string());
            assert!(
                !ok && err.contains("not at a multiple of 16"),
                "box at byte {c0}: {err}"
            );
        }
        launch_at(16).unwrap();
    }
}
