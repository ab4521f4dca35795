// bench/probes/avx2_ceiling.rs — the throw-away loops behind bench/RESULTS.md's AVX2 ceilings on an
// AVX2-only core (AMD EPYC Zen 3, 2026-11-27): how many GOP/s an *exact* int8 microkernel can issue
// (`vpmaddwd` on i16 operands, the crate's `gemm/cpu/x86/avx2.rs` shape and variants of it) against
// the *inexact* `vpmaddubsw` + `vpmaddwd(1)` loop ONNX Runtime and fbgemm use on AVX2 (DESIGN.md §1:
// it saturates on full-range activations). Every loop runs a 16-column panel over `rows` rows
// (tiles of R rows) and `panels` panels of depth `k`; a call's best time of 3,000 is reported, so
// a noisy shared VM still gives the machine's ceiling. Not part of the crate's build: put it in a
// fresh cargo project as src/main.rs and run `cargo run --release -- K PANELS ROWS` (defaults
// 2048 2 24: everything in L2; `4096 256 1` streams 16 MiB of weights for one row).
use std::arch::x86_64::*;
use std::time::Instant;

const NR: usize = 16;

/// The crate's kernel: A i16 pairs broadcast, B i8 `[k/2][16][2]` widened with `vpmovsxbw`.
#[target_feature(enable = "avx2")]
unsafe fn exact_i8<const R: usize>(a: *const i16, lda: usize, b: *const i8, steps: usize) -> [[__m256i; 2]; R] {
    let mut c = [[_mm256_setzero_si256(); 2]; R];
    for s in 0..steps {
        let bq = b.add(s * NR * 2);
        let b0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(bq as *const __m128i));
        let b1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(bq.add(16) as *const __m128i));
        for (r, cr) in c.iter_mut().enumerate() {
            let av = _mm256_set1_epi32((a.add(r * lda + 2 * s) as *const i32).read_unaligned());
            cr[0] = _mm256_add_epi32(cr[0], _mm256_madd_epi16(av, b0));
            cr[1] = _mm256_add_epi32(cr[1], _mm256_madd_epi16(av, b1));
        }
    }
    c
}

/// The same with B stored already widened to i16 (no `vpmovsxbw`, twice the weight bytes).
#[target_feature(enable = "avx2")]
unsafe fn exact_i16<const R: usize>(a: *const i16, lda: usize, b: *const i16, steps: usize) -> [[__m256i; 2]; R] {
    let mut c = [[_mm256_setzero_si256(); 2]; R];
    for s in 0..steps {
        let bq = b.add(s * NR * 2);
        let b0 = _mm256_loadu_si256(bq as *const __m256i);
        let b1 = _mm256_loadu_si256(bq.add(16) as *const __m256i);
        for (r, cr) in c.iter_mut().enumerate() {
            let av = _mm256_set1_epi32((a.add(r * lda + 2 * s) as *const i32).read_unaligned());
            cr[0] = _mm256_add_epi32(cr[0], _mm256_madd_epi16(av, b0));
            cr[1] = _mm256_add_epi32(cr[1], _mm256_madd_epi16(av, b1));
        }
    }
    c
}

/// Exact `vpmaddubsw` by signs (DESIGN.md §1): |a| unsigned, `vpsignb(b, a)` signed — one more
/// µop per product vector (and wrong for a = w = -128, which the crate's weights may hold).
#[target_feature(enable = "avx2")]
unsafe fn exact_sign<const R: usize>(a: *const i8, lda: usize, b: *const i8, steps: usize) -> [[__m256i; 2]; R] {
    let ones = _mm256_set1_epi16(1);
    let mut c = [[_mm256_setzero_si256(); 2]; R];
    for s in 0..steps {
        let bq = b.add(s * NR * 4);
        let b0 = _mm256_loadu_si256(bq as *const __m256i);
        let b1 = _mm256_loadu_si256(bq.add(32) as *const __m256i);
        for (r, cr) in c.iter_mut().enumerate() {
            let av = _mm256_set1_epi32((a.add(r * lda + 4 * s) as *const i32).read_unaligned());
            let aa = _mm256_abs_epi8(av);
            let p0 = _mm256_maddubs_epi16(aa, _mm256_sign_epi8(b0, av));
            let p1 = _mm256_maddubs_epi16(aa, _mm256_sign_epi8(b1, av));
            cr[0] = _mm256_add_epi32(cr[0], _mm256_madd_epi16(p0, ones));
            cr[1] = _mm256_add_epi32(cr[1], _mm256_madd_epi16(p1, ones));
        }
    }
    c
}

/// The peers' loop (inexact: `vpmaddubsw` saturates): u8 A quads broadcast, B s8 `[k/4][16][4]`.
#[target_feature(enable = "avx2")]
unsafe fn saturating<const R: usize>(a: *const u8, lda: usize, b: *const i8, steps: usize) -> [[__m256i; 2]; R] {
    let ones = _mm256_set1_epi16(1);
    let mut c = [[_mm256_setzero_si256(); 2]; R];
    for s in 0..steps {
        let bq = b.add(s * NR * 4);
        let b0 = _mm256_loadu_si256(bq as *const __m256i);
        let b1 = _mm256_loadu_si256(bq.add(32) as *const __m256i);
        for (r, cr) in c.iter_mut().enumerate() {
            let av = _mm256_set1_epi32((a.add(r * lda + 4 * s) as *const i32).read_unaligned());
            cr[0] = _mm256_add_epi32(cr[0], _mm256_madd_epi16(_mm256_maddubs_epi16(av, b0), ones));
            cr[1] = _mm256_add_epi32(cr[1], _mm256_madd_epi16(_mm256_maddubs_epi16(av, b1), ones));
        }
    }
    c
}

fn best_gops(macs: usize, mut f: impl FnMut()) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..3000 {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    2.0 * macs as f64 / best / 1e9
}

fn main() {
    let arg = |i: usize, d: usize| std::env::args().nth(i).map_or(d, |s| s.parse().unwrap());
    let (k, panels, rows) = (arg(1, 2048), arg(2, 2), arg(3, 24));
    assert!(is_x86_feature_detected!("avx2") && k % 4 == 0);
    let (a16, a8) = (vec![1i16; rows * k], vec![1u8; rows * k]);
    let (b8, b16) = (vec![1i8; panels * NR * k], vec![1i16; panels * NR * k]);
    // SAFETY: AVX2 was checked above.
    let mut sink = unsafe { _mm256_setzero_si256() };
    macro_rules! probe {
        ($name:expr, $r:literal, $f:ident, $a:expr, $b:expr, $per_step:expr) => {
            // One pass; `break` skips tile heights taller than `rows`.
            #[allow(clippy::never_loop)]
            loop {
            let tiles = rows / $r;
            if tiles == 0 {
                break;
            }
            let gops = best_gops(tiles * $r * NR * panels * k, || unsafe {
                for p in 0..panels {
                    for t in 0..tiles {
                        let c = $f::<$r>($a.as_ptr().add(t * $r * k) as _, k, $b.as_ptr().add(p * NR * k), k / $per_step);
                        sink = _mm256_xor_si256(sink, c[0][0]);
                    }
                }
            });
            println!("{:44} R={} {:7.1} GOP/s", $name, $r, gops);
            break;
            }
        };
    }
    println!("k {k}, {panels} panels of 16 columns, {rows} rows");
    probe!("exact: vpmaddwd, i8 weights (the crate's)", 1, exact_i8, a16, b8, 2);
    probe!("exact: vpmaddwd, i8 weights (the crate's)", 4, exact_i8, a16, b8, 2);
    probe!("exact: vpmaddwd, i8 weights", 6, exact_i8, a16, b8, 2);
    probe!("exact: vpmaddwd, i16 weights", 4, exact_i16, a16, b16, 2);
    probe!("exact: vpmaddwd, i16 weights", 6, exact_i16, a16, b16, 2);
    probe!("exact: vpsignb + vpmaddubsw + vpmaddwd(1)", 4, exact_sign, a8, b8, 4);
    probe!("exact: vpsignb + vpmaddubsw + vpmaddwd(1)", 6, exact_sign, a8, b8, 4);
    probe!("inexact: vpmaddubsw + vpmaddwd(1) (peers)", 1, saturating, a8, b8, 4);
    probe!("inexact: vpmaddubsw + vpmaddwd(1) (peers)", 4, saturating, a8, b8, 4);
    probe!("inexact: vpmaddubsw + vpmaddwd(1) (peers)", 6, saturating, a8, b8, 4);
    println!("(sink {})", unsafe { _mm256_extract_epi32::<0>(sink) });
}
