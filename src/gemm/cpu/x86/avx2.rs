//! gemm/cpu/x86/avx2.rs — the AVX2 microkernel, exact for every `s8`/`u8` × `s8` input.
//!
//! AVX2's usual int8 instruction, `vpmaddubsw`, sums two `u8 × s8` products into a *saturating*
//! i16 (255·127·2 overflows it), which is why ONNX Runtime's and fbgemm's AVX2 paths are inexact
//! on full-range activations (DESIGN.md §1). This kernel widens both operands to i16 and uses
//! `vpmaddwd` (two i16 products summed into an i32: at most 2·255·128, far from overflow), which
//! costs the same number of multiply-port µops per MAC as `vpmaddubsw` + `vpmaddwd` but one more
//! vector µop per 32 MACs (4 against 3). Measured on an AVX2-only Zen 3 core
//! (`bench/probes/avx2_ceiling.rs`, bench/RESULTS.md): this loop issues ~160 GOP/s against ~200
//! for the saturating one; six-row tiles, i16-stored weights and the exact sign recipe
//! (`vpabsb`/`vpsignb` + `vpmaddubsw`, 137 GOP/s, and wrong when an activation and a weight are
//! both −128) were no faster.
//!
//! Layouts: A is i16 `[m, lda]` with `lda = 2·⌈k/2⌉`; a weight panel is `NR = 16` columns stored as
//! i8 `[k/2][16][2]` (one 32-byte row per k pair), widened to i16 in registers with `vpmovsxbw`.
//! The tile is `MR = 4` rows × 16 columns: 8 ymm accumulators.

use std::arch::x86_64::*;

use crate::gemm::cpu::{AElem, AlignedBuf, Kernel, PreparedA};

const MR: usize = 4;
const NR: usize = 16;

#[derive(Debug)]
pub(crate) struct Avx2Kernel {
    b: AlignedBuf,
    kpairs: usize,
}

impl Avx2Kernel {
    pub(crate) fn pack(w: &[i8], n: usize, k: usize) -> Self {
        let (b, kpairs) = super::pack_k_groups(w, n, k, NR, 2);
        Avx2Kernel { b, kpairs }
    }
}

impl Kernel for Avx2Kernel {
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
        let _ = k;
        self.kpairs * 2
    }
    fn tile(&self, a: &PreparedA, i0: usize, rows: usize, panel: usize, acc: &mut [i32]) {
        let (ap, bp) =
            super::tile_start::<i16>(a, i0, rows, (MR, NR), (self.kpairs, 2), &self.b, panel, acc);
        let cp = acc.as_mut_ptr();
        // SAFETY: `tile_start` checked every read (rows × lda of A from ap, one panel from bp)
        // and write (rows × NR i32 at cp); the kernel path was selected only after `detect`
        // confirmed AVX2.
        unsafe {
            match rows {
                1 => tile_rows::<1>(ap, a.lda, bp, self.kpairs, cp),
                2 => tile_rows::<2>(ap, a.lda, bp, self.kpairs, cp),
                3 => tile_rows::<3>(ap, a.lda, bp, self.kpairs, cp),
                _ => tile_rows::<4>(ap, a.lda, bp, self.kpairs, cp),
            }
        }
    }
}

/// `R` rows × 16 columns over `kpairs` k pairs.
#[target_feature(enable = "avx2")]
unsafe fn tile_rows<const R: usize>(
    a: *const i16,
    lda: usize,
    b: *const i8,
    kpairs: usize,
    acc: *mut i32,
) {
    let mut c = [[_mm256_setzero_si256(); 2]; R];
    for kp in 0..kpairs {
        let bq = b.add(kp * NR * 2);
        let b0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(bq as *const __m128i));
        let b1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(bq.add(16) as *const __m128i));
        for (r, cr) in c.iter_mut().enumerate() {
            let pair = (a.add(r * lda + 2 * kp) as *const i32).read_unaligned();
            let av = _mm256_set1_epi32(pair);
            cr[0] = _mm256_add_epi32(cr[0], _mm256_madd_epi16(av, b0));
            cr[1] = _mm256_add_epi32(cr[1], _mm256_madd_epi16(av, b1));
        }
    }
    for (r, cr) in c.iter().enumerate() {
        _mm256_storeu_si256(acc.add(r * NR) as *mut __m256i, cr[0]);
        _mm256_storeu_si256(acc.add(r * NR + 8) as *mut __m256i, cr[1]);
    }
}
