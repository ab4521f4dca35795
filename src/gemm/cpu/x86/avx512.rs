//! gemm/cpu/x86/avx512.rs — the AVX-512 VNNI microkernel: `vpdpbusd` multiplies `u8 × s8` and adds
//! each group of four products to an i32 lane without saturation, so it is exact for every input.
//! `s8` activations are fed as `x + 128` (u8) and the shift is removed through `wsum` in the
//! epilogue. This is the decode (small `m`) path on AMX machines and the main path without AMX.
//!
//! Layouts: A is u8 `[m, lda]`, `lda = 4·⌈k/4⌉`; a weight panel is `NR = 32` columns stored as
//! `[k/4][32][4]` (128 contiguous bytes per k step, a pure stream for the prefetchers). The tile
//! is up to `MR = 8` rows × 32 columns (16 zmm accumulators); one or two rows run two k steps
//! in flight to hide `vpdpbusd`'s latency.

use std::arch::x86_64::*;

use crate::gemm::cpu::{AElem, AlignedBuf, Kernel, PreparedA};

const MR: usize = 8;
const NR: usize = 32;

#[derive(Debug)]
pub(crate) struct VnniKernel {
    b: AlignedBuf,
    k4: usize,
}

impl VnniKernel {
    pub(crate) fn pack(w: &[i8], n: usize, k: usize) -> Self {
        let (b, k4) = super::pack_k_groups(w, n, k, NR, 4);
        VnniKernel { b, k4 }
    }
}

impl Kernel for VnniKernel {
    fn mr(&self) -> usize {
        MR
    }
    fn nr(&self) -> usize {
        NR
    }
    fn a_elem(&self) -> AElem {
        AElem::U8
    }
    fn lda(&self, k: usize) -> usize {
        let _ = k;
        self.k4 * 4
    }
    fn tile(&self, a: &PreparedA, i0: usize, rows: usize, panel: usize, acc: &mut [i32]) {
        let (ap, bp) =
            super::tile_start::<u8>(a, i0, rows, (MR, NR), (self.k4, 4), &self.b, panel, acc);
        let cp = acc.as_mut_ptr();
        // SAFETY: `tile_start` checked every read and write as in the AVX2 kernel; this kernel
        // is only built after `detect` confirmed AVX-512 F/BW/VNNI.
        unsafe {
            match rows {
                1 => tile_rows_2k::<1>(ap, a.lda, bp, self.k4, cp),
                2 => tile_rows_2k::<2>(ap, a.lda, bp, self.k4, cp),
                3 => tile_rows::<3>(ap, a.lda, bp, self.k4, cp),
                4 => tile_rows::<4>(ap, a.lda, bp, self.k4, cp),
                5 => tile_rows::<5>(ap, a.lda, bp, self.k4, cp),
                6 => tile_rows::<6>(ap, a.lda, bp, self.k4, cp),
                7 => tile_rows::<7>(ap, a.lda, bp, self.k4, cp),
                _ => tile_rows::<8>(ap, a.lda, bp, self.k4, cp),
            }
        }
    }
}

#[inline(always)]
unsafe fn bcast(a: *const u8) -> __m512i {
    _mm512_set1_epi32((a as *const i32).read_unaligned())
}

/// `R` rows × 32 columns over `k4` steps of four.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn tile_rows<const R: usize>(
    a: *const u8,
    lda: usize,
    b: *const i8,
    k4: usize,
    acc: *mut i32,
) {
    let mut c = [[_mm512_setzero_si512(); 2]; R];
    for q in 0..k4 {
        let bq = b.add(q * NR * 4);
        // The panel streams from memory at decode shapes: ask for it 1 KiB ahead.
        _mm_prefetch::<_MM_HINT_T0>(bq.wrapping_add(1024));
        _mm_prefetch::<_MM_HINT_T0>(bq.wrapping_add(1088));
        let b0 = _mm512_loadu_si512(bq as *const _);
        let b1 = _mm512_loadu_si512(bq.add(64) as *const _);
        for (r, cr) in c.iter_mut().enumerate() {
            let av = bcast(a.add(r * lda + 4 * q));
            cr[0] = _mm512_dpbusd_epi32(cr[0], av, b0);
            cr[1] = _mm512_dpbusd_epi32(cr[1], av, b1);
        }
    }
    for (r, cr) in c.iter().enumerate() {
        _mm512_storeu_si512(acc.add(r * NR) as *mut _, cr[0]);
        _mm512_storeu_si512(acc.add(r * NR + 16) as *mut _, cr[1]);
    }
}

/// One or two rows: two independent accumulator sets (even and odd k steps) so four or eight
/// `vpdpbusd` chains are in flight; summed at the end (exact integer adds).
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn tile_rows_2k<const R: usize>(
    a: *const u8,
    lda: usize,
    b: *const i8,
    k4: usize,
    acc: *mut i32,
) {
    let mut c = [[_mm512_setzero_si512(); 4]; R];
    let mut q = 0;
    while q + 2 <= k4 {
        let bq = b.add(q * NR * 4);
        _mm_prefetch::<_MM_HINT_T0>(bq.wrapping_add(1024));
        let b0 = _mm512_loadu_si512(bq as *const _);
        let b1 = _mm512_loadu_si512(bq.add(64) as *const _);
        let b2 = _mm512_loadu_si512(bq.add(128) as *const _);
        let b3 = _mm512_loadu_si512(bq.add(192) as *const _);
        for (r, cr) in c.iter_mut().enumerate() {
            let a0 = bcast(a.add(r * lda + 4 * q));
            let a1 = bcast(a.add(r * lda + 4 * q + 4));
            cr[0] = _mm512_dpbusd_epi32(cr[0], a0, b0);
            cr[1] = _mm512_dpbusd_epi32(cr[1], a0, b1);
            cr[2] = _mm512_dpbusd_epi32(cr[2], a1, b2);
            cr[3] = _mm512_dpbusd_epi32(cr[3], a1, b3);
        }
        q += 2;
    }
    if q < k4 {
        let bq = b.add(q * NR * 4);
        let b0 = _mm512_loadu_si512(bq as *const _);
        let b1 = _mm512_loadu_si512(bq.add(64) as *const _);
        for (r, cr) in c.iter_mut().enumerate() {
            let a0 = bcast(a.add(r * lda + 4 * q));
            cr[0] = _mm512_dpbusd_epi32(cr[0], a0, b0);
            cr[1] = _mm512_dpbusd_epi32(cr[1], a0, b1);
        }
    }
    for (r, cr) in c.iter().enumerate() {
        _mm512_storeu_si512(acc.add(r * NR) as *mut _, _mm512_add_epi32(cr[0], cr[2]));
        _mm512_storeu_si512(
            acc.add(r * NR + 16) as *mut _,
            _mm512_add_epi32(cr[1], cr[3]),
        );
    }
}
