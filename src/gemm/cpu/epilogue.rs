//! gemm/cpu/epilogue.rs — the fused epilogue of the CPU paths: a block of raw i32 accumulators
//! from a microkernel becomes output values. Applies the integer corrections (bias, zero points,
//! the +128 shift some kernels use) and then [`crate::reference::Epilogue`]'s float stage in
//! exactly its order of operations; x86 builds run the same body with AVX2 + F16C enabled.

use half::{bf16, f16};

use crate::gemm::{OutBuf, OutKind};
use crate::reference::Epilogue;

/// A raw pointer to the `[m, n]` output, shared by the worker threads. Every tile writes a
/// disjoint rectangle (the driver partitions rows × columns), which is what makes the shared
/// mutable access sound.
#[derive(Clone, Copy)]
pub(crate) struct OutPtr {
    ptr: *mut u8,
    len: usize,
    ld: usize,
}

// SAFETY: OutPtr is only dereferenced in `write_block`, on rectangles the driver hands to exactly
// one task each (see `cpu::run`), and the buffer outlives the parallel region (it borrows `out`).
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    pub(crate) fn new(out: &mut OutBuf<'_>, n: usize) -> Self {
        let (ptr, len) = match out {
            OutBuf::I32(y) => (y.as_mut_ptr() as *mut u8, y.len()),
            OutBuf::F32(y) => (y.as_mut_ptr() as *mut u8, y.len()),
            OutBuf::F16(y) => (y.as_mut_ptr() as *mut u8, y.len()),
            OutBuf::Bf16(y) => (y.as_mut_ptr() as *mut u8, y.len()),
            OutBuf::I8(y, _) => (y.as_mut_ptr() as *mut u8, y.len()),
        };
        OutPtr { ptr, len, ld: n }
    }

    /// The output row segment `[i, j0 .. j0 + cols)` as a typed slice.
    ///
    /// # Safety
    /// `T` is the element type of the buffer, the segment is in bounds, and no other live
    /// reference covers it.
    #[inline]
    unsafe fn row<'a, T>(&self, i: usize, j0: usize, cols: usize) -> &'a mut [T] {
        let off = i * self.ld + j0;
        debug_assert!(off + cols <= self.len);
        std::slice::from_raw_parts_mut((self.ptr as *mut T).add(off), cols)
    }
}

/// The per-call integer constants of the CPU epilogue.
pub(crate) struct CpuEpilogue<'a> {
    pub epi: &'a Epilogue,
    /// `bias_q[n] − (zp_x + shift) · wsum[n]` (wrapping: the true sum fits i32, proven by
    /// validation, so wrapping arithmetic gives it exactly).
    pub col_off: Vec<i32>,
    /// Per-row zero points (u8 per-row activations): `acc −= zp[m] · wsum[n]`.
    pub row_zp: Option<&'a [i32]>,
    pub wsum: &'a [i32],
}

impl CpuEpilogue<'_> {
    /// Write `rows × cols` outputs at `(i0, j0)` from `acc` (row stride `ld`).
    ///
    /// # Safety
    /// The rectangle is inside the output and owned by the calling task alone.
    pub(crate) unsafe fn write_block(
        &self,
        out: &OutPtr,
        acc: &[i32],
        ld: usize,
        i0: usize,
        rows: usize,
        j0: usize,
        cols: usize,
    ) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("f16c") {
                return self.write_block_avx2(out, acc, ld, i0, rows, j0, cols);
            }
        }
        self.write_block_body(out, acc, ld, i0, rows, j0, cols, f16::from_f32)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,f16c,fma")]
    unsafe fn write_block_avx2(
        &self,
        out: &OutPtr,
        acc: &[i32],
        ld: usize,
        i0: usize,
        rows: usize,
        j0: usize,
        cols: usize,
    ) {
        // FMA is enabled only so this body may share code generation with the kernels; Rust never
        // contracts a*b+c into an FMA without an explicit call, so the f32 order is preserved.
        self.write_block_body(out, acc, ld, i0, rows, j0, cols, f16_f16c)
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn write_block_body(
        &self,
        out: &OutPtr,
        acc: &[i32],
        ld: usize,
        i0: usize,
        rows: usize,
        j0: usize,
        cols: usize,
        to_f16: impl Fn(f32) -> f16,
    ) {
        let e = self.epi;
        let off = &self.col_off[j0..j0 + cols];
        let wsum = &self.wsum[j0..j0 + cols];
        let cs = &e.col_scale[j0..j0 + cols];
        let bias = e.bias_f32.as_ref().map(|b| &b[j0..j0 + cols]);
        let mut tmp = [0i32; 256];
        let mut val = [0f32; 256];
        for r in 0..rows {
            let i = i0 + r;
            let zp = self.row_zp.map_or(0, |z| z[i]);
            let src = &acc[r * ld..r * ld + cols];
            // Process the row in chunks that fit the stack buffers.
            let mut c0 = 0;
            while c0 < cols {
                let w = (cols - c0).min(256);
                let t = &mut tmp[..w];
                for c in 0..w {
                    t[c] = src[c0 + c]
                        .wrapping_add(off[c0 + c])
                        .wrapping_sub(zp.wrapping_mul(wsum[c0 + c]));
                }
                match e.out {
                    OutKind::I32 => out.row::<i32>(i, j0 + c0, w).copy_from_slice(t),
                    OutKind::I8(q) => {
                        let y = out.row::<i8>(i, j0 + c0, w);
                        if let Some(rq) = &e.requant {
                            let rq = &rq[j0 + c0..j0 + c0 + w];
                            for c in 0..w {
                                y[c] =
                                    round_clamp(t[c] as f32 * rq[c], q.zero_point, q.qmin, q.qmax);
                            }
                        } else {
                            let v = &mut val[..w];
                            values(
                                t,
                                v,
                                &cs[c0..c0 + w],
                                e.row_scale.as_ref().map(|s| s[i]),
                                bias.map(|b| &b[c0..c0 + w]),
                            );
                            for c in 0..w {
                                y[c] = round_clamp(v[c] / q.scale, q.zero_point, q.qmin, q.qmax);
                            }
                        }
                    }
                    kind => {
                        let v = &mut val[..w];
                        values(
                            t,
                            v,
                            &cs[c0..c0 + w],
                            e.row_scale.as_ref().map(|s| s[i]),
                            bias.map(|b| &b[c0..c0 + w]),
                        );
                        match kind {
                            OutKind::F32 => out.row::<f32>(i, j0 + c0, w).copy_from_slice(v),
                            OutKind::F16 => {
                                for (y, &x) in
                                    out.row::<f16>(i, j0 + c0, w).iter_mut().zip(v.iter())
                                {
                                    *y = to_f16(x);
                                }
                            }
                            _ => {
                                for (y, &x) in
                                    out.row::<bf16>(i, j0 + c0, w).iter_mut().zip(v.iter())
                                {
                                    *y = bf16_rne(x);
                                }
                            }
                        }
                    }
                }
                c0 += w;
            }
        }
    }
}

/// `v = f32(acc) · cs[n]` (`· rs` per row) `+ bias[n]`: [`Epilogue::value`] over a row segment.
#[inline(always)]
fn values(acc: &[i32], v: &mut [f32], cs: &[f32], rs: Option<f32>, bias: Option<&[f32]>) {
    for c in 0..acc.len() {
        v[c] = acc[c] as f32 * cs[c];
    }
    if let Some(rs) = rs {
        for x in v.iter_mut() {
            *x *= rs;
        }
    }
    if let Some(b) = bias {
        for (x, &b) in v.iter_mut().zip(b) {
            *x += b;
        }
    }
}

/// `clamp(rhe(t) + zp, qmin, qmax)` as i8, for finite or infinite `t` (the scales are finite, so
/// `t` is never NaN). Clamping `t` to ±2^30 first keeps the integer conversion in range without
/// changing the result, since `|zp| ≤ 128` and the final range is within i8.
#[inline(always)]
fn round_clamp(t: f32, zp: i32, qmin: i32, qmax: i32) -> i8 {
    let t = t.clamp(-1_073_741_824.0, 1_073_741_824.0);
    (t.round_ties_even() as i32 + zp).clamp(qmin, qmax) as i8
}

/// f32 → bf16, round to nearest even (NaN stays NaN): the same bits as `half::bf16::from_f32`.
#[inline(always)]
pub(crate) fn bf16_rne(x: f32) -> bf16 {
    let b = x.to_bits();
    if (b & 0x7fff_ffff) > 0x7f80_0000 {
        return bf16::from_bits(((b >> 16) | 0x0040) as u16);
    }
    let round = 0x7fff + ((b >> 16) & 1);
    bf16::from_bits((b.wrapping_add(round) >> 16) as u16)
}

/// f32 → f16 with the F16C instruction (round to nearest even).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn f16_f16c(x: f32) -> f16 {
    use std::arch::x86_64::*;
    // SAFETY: only called from `write_block_avx2`, which requires f16c.
    unsafe {
        let v = _mm_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm_set_ss(x));
        f16::from_bits(_mm_extract_epi16::<0>(v) as u16)
    }
}
