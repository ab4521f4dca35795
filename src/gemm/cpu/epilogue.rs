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

/// One block of raw accumulators from a microkernel: `rows × cols` values at row stride `ld`,
/// destined for output rows `i0..` and columns `j0..`.
#[derive(Clone, Copy)]
pub(crate) struct Block<'a> {
    pub acc: &'a [i32],
    pub ld: usize,
    pub i0: usize,
    pub rows: usize,
    pub j0: usize,
    pub cols: usize,
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
    pub(crate) unsafe fn write_block(&self, out: &OutPtr, block: &Block<'_>) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512bw")
            {
                return self.write_block_avx512(out, block);
            }
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("f16c") {
                return self.write_block_avx2(out, block);
            }
        }
        self.write_block_body(out, block, f16::from_f32)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,f16c,fma")]
    unsafe fn write_block_avx2(&self, out: &OutPtr, block: &Block<'_>) {
        // FMA is enabled only so this body may share code generation with the kernels; Rust never
        // contracts a*b+c into an FMA without an explicit call, so the f32 order is preserved.
        self.write_block_body(out, block, f16_f16c)
    }

    /// The epilogue with explicit AVX-512 intrinsics, 16 columns per step (masked tails), the same
    /// operations in the same order as [`Epilogue::value`] / [`Epilogue::to_i8`]. The output
    /// kind is matched once, outside the loops.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn write_block_avx512(&self, out: &OutPtr, block: &Block<'_>) {
        let Block {
            acc,
            ld,
            rows,
            j0,
            cols,
            ..
        } = *block;
        use std::arch::x86_64::*;
        let e = self.epi;
        debug_assert!(
            acc.len() >= (rows.max(1) - 1) * ld + cols && j0 + cols <= self.col_off.len()
        );
        let cs = e.col_scale.as_ptr().add(j0);
        let bias = e.bias_f32.as_ref().map(|b| b.as_ptr().add(j0));
        let has_rs = e.row_scale.is_some();
        // f32(t) · cs (· rs) (+ bias): Epilogue::value on 16 lanes.
        let value = |t: __m512i, c: usize, mask: __mmask16, rs: __m512| {
            let mut v = _mm512_mul_ps(
                _mm512_cvtepi32_ps(t),
                _mm512_maskz_loadu_ps(mask, cs.add(c)),
            );
            if has_rs {
                v = _mm512_mul_ps(v, rs);
            }
            if let Some(b) = bias {
                v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, b.add(c)));
            }
            v
        };
        match e.out {
            OutKind::I32 => self.rows_avx512(out, block, 4, |dst, _c, mask, t, _rs| {
                _mm512_mask_storeu_epi32(dst as *mut i32, mask, t)
            }),
            OutKind::F32 => self.rows_avx512(out, block, 4, |dst, c, mask, t, rs| {
                _mm512_mask_storeu_ps(dst as *mut f32, mask, value(t, c, mask, rs))
            }),
            OutKind::F16 => self.rows_avx512(out, block, 2, |dst, c, mask, t, rs| {
                let h = _mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(value(t, c, mask, rs));
                _mm256_mask_storeu_epi16(dst as *mut i16, mask, h)
            }),
            OutKind::Bf16 => self.rows_avx512(out, block, 2, |dst, c, mask, t, rs| {
                let h = _mm512_cvtepi32_epi16(bf16_rne_512(value(t, c, mask, rs)));
                _mm256_mask_storeu_epi16(dst as *mut i16, mask, h)
            }),
            OutKind::I8(q) => {
                // rhe, then clamp to [qmin − zp, qmax − zp] in f32 (an integer range, so equal to
                // clamping after adding zp; max/min drop NaN), then add zp.
                let lo = _mm512_set1_ps((q.qmin - q.zero_point) as f32);
                let hi = _mm512_set1_ps((q.qmax - q.zero_point) as f32);
                let zp = _mm512_set1_epi32(q.zero_point);
                let sy = _mm512_set1_ps(q.scale);
                let finish = |y: __m512| {
                    let y = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
                        y,
                    );
                    let y = _mm512_min_ps(_mm512_max_ps(y, lo), hi);
                    _mm512_cvtepi32_epi8(_mm512_add_epi32(_mm512_cvtps_epi32(y), zp))
                };
                match &e.requant {
                    Some(rq) => {
                        let rq = rq.as_ptr().add(j0);
                        self.rows_avx512(out, block, 1, |dst, c, mask, t, _rs| {
                            let y = _mm512_mul_ps(
                                _mm512_cvtepi32_ps(t),
                                _mm512_maskz_loadu_ps(mask, rq.add(c)),
                            );
                            _mm_mask_storeu_epi8(dst as *mut i8, mask, finish(y))
                        })
                    }
                    None => self.rows_avx512(out, block, 1, |dst, c, mask, t, rs| {
                        let y = _mm512_div_ps(value(t, c, mask, rs), sy);
                        _mm_mask_storeu_epi8(dst as *mut i8, mask, finish(y))
                    }),
                }
            }
        }
    }

    /// The row/column loops of the AVX-512 epilogue: the integer corrections, then `store` with
    /// the destination of lane 0, the column offset within the block, the lane mask, the
    /// corrected accumulators and the row's activation scale.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn rows_avx512(
        &self,
        out: &OutPtr,
        block: &Block<'_>,
        esize: usize,
        store: impl Fn(
            *mut u8,
            usize,
            std::arch::x86_64::__mmask16,
            std::arch::x86_64::__m512i,
            std::arch::x86_64::__m512,
        ),
    ) {
        let Block {
            acc,
            ld,
            i0,
            rows,
            j0,
            cols,
        } = *block;
        use std::arch::x86_64::*;
        let off = self.col_off.as_ptr().add(j0);
        let wsum = self.wsum.as_ptr().add(j0);
        for r in 0..rows {
            let i = i0 + r;
            let zp = self.row_zp.map_or(0, |z| z[i]);
            let rs = _mm512_set1_ps(self.epi.row_scale.as_ref().map_or(1.0, |s| s[i]));
            let src = acc.as_ptr().add(r * ld);
            let dst = out.ptr.add((i * out.ld + j0) * esize);
            let mut c = 0;
            while c < cols {
                let mask: __mmask16 = if cols - c >= 16 {
                    0xffff
                } else {
                    (1u16 << (cols - c)) - 1
                };
                let mut t = _mm512_add_epi32(
                    _mm512_maskz_loadu_epi32(mask, src.add(c)),
                    _mm512_maskz_loadu_epi32(mask, off.add(c)),
                );
                if zp != 0 {
                    let ws = _mm512_maskz_loadu_epi32(mask, wsum.add(c));
                    t = _mm512_sub_epi32(t, _mm512_mullo_epi32(_mm512_set1_epi32(zp), ws));
                }
                store(dst.add(c * esize), c, mask, t, rs);
                c += 16;
            }
        }
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn write_block_body(
        &self,
        out: &OutPtr,
        block: &Block<'_>,
        to_f16: impl Fn(f32) -> f16,
    ) {
        let Block {
            acc,
            ld,
            i0,
            rows,
            j0,
            cols,
        } = *block;
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

/// `clamp(rhe(t) + zp, qmin, qmax)` as i8, computed as `clamp(rhe(t), qmin − zp, qmax − zp) + zp`
/// (equal for the integer-valued `rhe(t)`; ±inf clamp to the ends). `t` is never NaN: it is a
/// product of finite scales and an integer, plus a finite bias.
#[inline(always)]
fn round_clamp(t: f32, zp: i32, qmin: i32, qmax: i32) -> i8 {
    let t = t
        .round_ties_even()
        .max((qmin - zp) as f32)
        .min((qmax - zp) as f32);
    // SAFETY: after the clamp, t is a finite integer within [qmin − zp, qmax − zp] ⊂ i32.
    (unsafe { t.to_int_unchecked::<i32>() } + zp) as i8
}

/// [`bf16_rne`] on 16 lanes: the bf16 bit patterns in the low halves of i32 lanes.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn bf16_rne_512(v: std::arch::x86_64::__m512) -> std::arch::x86_64::__m512i {
    use std::arch::x86_64::*;
    let b = _mm512_castps_si512(v);
    let lsb = _mm512_and_si512(_mm512_srli_epi32::<16>(b), _mm512_set1_epi32(1));
    let rounded = _mm512_srli_epi32::<16>(_mm512_add_epi32(
        b,
        _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)),
    ));
    let quiet = _mm512_or_si512(_mm512_srli_epi32::<16>(b), _mm512_set1_epi32(0x40));
    let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
    _mm512_mask_blend_epi32(nan, rounded, quiet)
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
