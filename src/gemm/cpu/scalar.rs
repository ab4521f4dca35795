//! gemm/cpu/scalar.rs — the portable microkernel, always compiled: plain Rust over the raw
//! `[n, k]` weights, activations widened to i16. It is the fallback on machines without the SIMD
//! paths and the simplest fast path to read against `reference.rs`.

use super::{AElem, Kernel, PreparedA};

/// Rows per tile.
const MR: usize = 4;
/// Columns per tile.
const NR: usize = 4;

pub(crate) struct ScalarKernel<'w> {
    w: &'w [i8],
    n: usize,
    k: usize,
}

impl<'w> ScalarKernel<'w> {
    pub(crate) fn new(w: &'w [i8], n: usize, k: usize) -> Self {
        ScalarKernel { w, n, k }
    }
}

impl Kernel for ScalarKernel<'_> {
    fn mr(&self) -> usize {
        MR
    }
    fn nr(&self) -> usize {
        NR
    }
    fn a_elem(&self) -> AElem {
        AElem::I16
    }
    fn lda(&self, k: usize) -> usize {
        k
    }
    fn tile(&self, a: &PreparedA, i0: usize, rows: usize, panel: usize, acc: &mut [i32]) {
        let k = self.k;
        let a: &[i16] = a.buf.as_slice();
        let j0 = panel * NR;
        let cols = NR.min(self.n - j0);
        for r in 0..rows {
            let ar = &a[(i0 + r) * k..(i0 + r + 1) * k];
            for c in 0..NR {
                acc[r * NR + c] = if c < cols {
                    let wr = &self.w[(j0 + c) * k..(j0 + c + 1) * k];
                    ar.iter().zip(wr).map(|(&x, &w)| x as i32 * w as i32).sum()
                } else {
                    0
                };
            }
        }
    }
}
