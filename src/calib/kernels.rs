//! calib/kernels.rs — the lowest layer of calibration: the loops that touch every value of a
//! batch (one scan for min / max / non-finite, the histogram bin counter) and the MSE inner loop,
//! each written once as an `#[inline(always)]` body and compiled twice: for the baseline x86-64
//! target and for AVX2, chosen at run time. Both compilations perform the same IEEE operations in
//! the same order (no fused multiply-add, fixed reduction order), so they give the same bits; the
//! tests in `calib::histogram` and the golden tests run whichever this machine picks.

/// One pass over a batch: signed extremes and whether any value is NaN or ±inf.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Scan {
    /// Smallest value (`+inf` for an empty batch; meaningless if `nonfinite`).
    pub lo: f32,
    /// Largest value (`-inf` for an empty batch; meaningless if `nonfinite`).
    pub hi: f32,
    /// Some value is NaN or ±inf.
    pub nonfinite: bool,
}

// `x - x` is deliberate: it is the cheapest vectorizable test for NaN and ±inf.
#[allow(clippy::eq_op)]
#[inline(always)]
fn scan_body(xs: &[f32]) -> Scan {
    const L: usize = 16;
    let mut lo = [f32::INFINITY; L];
    let mut hi = [f32::NEG_INFINITY; L];
    // `x - x` is 0 for finite x and NaN for NaN and ±inf; NaN sticks in the sum.
    let mut bad = [0.0f32; L];
    let mut chunks = xs.chunks_exact(L);
    for c in &mut chunks {
        let c: &[f32; L] = c.try_into().expect("chunks_exact yields L values");
        for i in 0..L {
            // f32::min / max ignore NaN, which `bad` catches; this form vectorizes cleanly.
            lo[i] = lo[i].min(c[i]);
            hi[i] = hi[i].max(c[i]);
            bad[i] += c[i] - c[i];
        }
    }
    let mut s = Scan {
        lo: f32::INFINITY,
        hi: f32::NEG_INFINITY,
        nonfinite: false,
    };
    for i in 0..L {
        s.lo = s.lo.min(lo[i]);
        s.hi = s.hi.max(hi[i]);
        s.nonfinite |= bad[i].is_nan();
    }
    for &x in chunks.remainder() {
        s.lo = s.lo.min(x);
        s.hi = s.hi.max(x);
        s.nonfinite |= !x.is_finite();
    }
    s
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn scan_avx2(xs: &[f32]) -> Scan {
    scan_body(xs)
}

/// Min, max and the non-finite flag of a batch in one pass.
pub(crate) fn scan(xs: &[f32]) -> Scan {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: `scan_avx2` only requires AVX2, which the CPU reports (checked on the line above).
        return unsafe { scan_avx2(xs) };
    }
    scan_body(xs)
}

/// How a bin position is computed from `|x|`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum BinRule {
    /// `(|x| · n) / right` (torch.histc in f32).
    Scaled { n: f32, right: f32 },
    /// `|x| / width`.
    Width { width: f32 },
    /// `floor(x / width) − first` on a signed grid whose bin 0 is grid bin `first` (both exact
    /// integers in f32: the caller keeps `|first|` and the bin count below 2^24).
    Signed { width: f32, first: f32 },
}

/// Count the bin of every value of `xs` into `counts`. Preconditions (checked by the caller,
/// `Histogram::bin_values`): every value is finite and its bin position is finite and
/// non-negative; positions past the last bin are clamped to it.
#[inline(always)]
fn count_body(counts: &mut [u64], xs: &[f32], rule: BinRule) {
    const BLOCK: usize = 1024;
    // Flush the u32 sub-histograms well before any could reach 2^32.
    const FLUSH: usize = 1 << 30;
    let n = counts.len();
    if n == 0 {
        return;
    }
    let last = (n - 1) as f32;
    let mut sub = vec![0u32; 4 * n];
    let mut idx = [0u32; BLOCK];
    for big in xs.chunks(FLUSH) {
        for block in big.chunks(BLOCK) {
            let ids = &mut idx[..block.len()];
            match rule {
                BinRule::Scaled { n: nf, right } => {
                    for (o, &x) in ids.iter_mut().zip(block) {
                        // Clamped in float first (a select: vminps), so the conversion of a
                        // value in [0, last] never saturates.
                        let v = (x.abs() * nf) / right;
                        *o = (if v < last { v } else { last }) as i32 as u32;
                    }
                }
                BinRule::Signed { width, first } => {
                    for (o, &x) in ids.iter_mut().zip(block) {
                        let v = (x / width).floor() - first;
                        let v = if v > 0.0 { v } else { 0.0 };
                        *o = (if v < last { v } else { last }) as i32 as u32;
                    }
                }
                BinRule::Width { width } => {
                    for (o, &x) in ids.iter_mut().zip(block) {
                        let v = x.abs() / width;
                        *o = (if v < last { v } else { last }) as i32 as u32;
                    }
                }
            }
            // Four interleaved sub-histograms, so that runs of equal bins do not serialize on
            // one memory location.
            let mut quads = ids.chunks_exact(4);
            for q in &mut quads {
                sub[q[0] as usize] += 1;
                sub[n + q[1] as usize] += 1;
                sub[2 * n + q[2] as usize] += 1;
                sub[3 * n + q[3] as usize] += 1;
            }
            for &i in quads.remainder() {
                sub[i as usize] += 1;
            }
        }
        for (k, c) in counts.iter_mut().enumerate() {
            *c += sub[k] as u64 + sub[n + k] as u64 + sub[2 * n + k] as u64 + sub[3 * n + k] as u64;
        }
        sub.fill(0);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn count_avx2(counts: &mut [u64], xs: &[f32], rule: BinRule) {
    count_body(counts, xs, rule)
}

/// Count the bins of finite values (see [`count_body`] for the preconditions).
pub(crate) fn count_bins(counts: &mut [u64], xs: &[f32], rule: BinRule) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: `count_avx2` only requires AVX2, which the CPU reports (checked on the line above).
        return unsafe { count_avx2(counts, xs, rule) };
    }
    count_body(counts, xs, rule)
}

/// Round half to even for `|v| < 2^22` in f32: adding and removing 1.5·2^23 leaves the integer
/// that IEEE round-to-nearest-even picks (exact, and it vectorizes without SSE4.1's `roundps`).
#[inline(always)]
fn rhe_small(v: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    (v + MAGIC) - MAGIC
}

/// `Σ w · (fq(x) − x)²` with pytorch-quantization's fake quantization
/// `fq(x) = clamp(rhe(x · unit), qmin, qmax) / unit` (`q` itself when `unit` is 0), each term in
/// f32 as the reference computes it, summed in f64 over 4 lanes in a fixed order.
#[inline(always)]
fn sq_error_body(xs: &[f32], ws: &[f32], unit: f32, qmin: f32, qmax: f32) -> f64 {
    let inv = if unit == 0.0 { 1.0 } else { unit };
    let term = |x: f32, w: f32| -> f32 {
        // `clamp(rhe(v))` equals `rhe(clamp(v))` for integer bounds.
        let q = rhe_small((x * unit).clamp(qmin, qmax));
        let d = q / inv - x;
        d * d * w
    };
    let mut acc = [0.0f64; 4];
    let mut xc = xs.chunks_exact(4);
    let mut wc = ws.chunks_exact(4);
    for (x4, w4) in (&mut xc).zip(&mut wc) {
        for l in 0..4 {
            acc[l] += term(x4[l], w4[l]) as f64;
        }
    }
    for (&x, &w) in xc.remainder().iter().zip(wc.remainder()) {
        acc[0] += term(x, w) as f64;
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3])
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn sq_error_avx2(xs: &[f32], ws: &[f32], unit: f32, qmin: f32, qmax: f32) -> f64 {
    sq_error_body(xs, ws, unit, qmin, qmax)
}

/// The MSE candidate's weighted squared error (see [`sq_error_body`]).
pub(crate) fn weighted_sq_error(xs: &[f32], ws: &[f32], unit: f32, qmin: f32, qmax: f32) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: `sq_error_avx2` only requires AVX2, which the CPU reports (checked on the line above).
        return unsafe { sq_error_avx2(xs, ws, unit, qmin, qmax) };
    }
    sq_error_body(xs, ws, unit, qmin, qmax)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_compilations_agree() {
        let xs: Vec<f32> = (0..5000)
            .map(|i| ((i * 7919) % 4001) as f32 * 0.013 - 20.0)
            .collect();
        assert_eq!(scan(&xs), scan_body(&xs));
        let s = scan(&xs);
        assert_eq!(s.lo, xs.iter().copied().fold(f32::INFINITY, f32::min));
        assert_eq!(s.hi, xs.iter().copied().fold(f32::NEG_INFINITY, f32::max));
        assert!(!s.nonfinite);
        let mut with_nan = xs.clone();
        with_nan[4321] = f32::NAN;
        assert!(scan(&with_nan).nonfinite && scan_body(&with_nan).nonfinite);
        with_nan[4321] = f32::NEG_INFINITY;
        assert!(scan(&with_nan).nonfinite);
        with_nan.truncate(3);
        with_nan[2] = f32::INFINITY;
        assert!(scan(&with_nan).nonfinite);

        for rule in [
            BinRule::Scaled {
                n: 2048.0,
                right: 20.0,
            },
            BinRule::Width {
                width: 20.0 / 2048.0,
            },
        ] {
            let (mut a, mut b) = (vec![0u64; 2048], vec![0u64; 2048]);
            count_bins(&mut a, &xs, rule);
            count_body(&mut b, &xs, rule);
            assert_eq!(a, b);
            assert_eq!(a.iter().sum::<u64>(), xs.len() as u64);
        }
        let ws: Vec<f32> = xs.iter().map(|x| x.abs().floor()).collect();
        let cs: Vec<f32> = xs.iter().map(|x| x.abs()).collect();
        for unit in [0.0, 127.0 / 3.0, 255.0 / 19.0] {
            let a = weighted_sq_error(&cs, &ws, unit, -127.0, 127.0);
            let b = sq_error_body(&cs, &ws, unit, -127.0, 127.0);
            assert_eq!(a.to_bits(), b.to_bits());
        }
    }

    #[test]
    fn magic_rounding_is_round_half_even() {
        for v in [
            -2.5f32, -1.5, -0.5, 0.5, 1.5, 2.5, 126.5, 127.49, -126.5, 3.4999998,
        ] {
            assert_eq!(rhe_small(v), v.round_ties_even(), "{v}");
        }
    }
}
