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

/// One R-row × 16-column loop over `steps` k steps of `per_step` k each: A's `per_step` values of a
/// row broadcast as one i32, B's two 32-byte halves loaded per step (`$load`), and the two
/// products of a row (`$prod`) added into its two i32 accumulators.
// The helpers below carry no target feature of their own: `#[inline(always)]` puts them inside
// the AVX2 loops.
macro_rules! panel_loop {
    ($(#[$doc:meta])* $name:ident, $a:ty, $b:ty, $per_step:expr, $load:expr, $prod:expr) => {
        $(#[$doc])*
        #[target_feature(enable = "avx2")]
        unsafe fn $name<const R: usize>(a: *const $a, lda: usize, b: *const $b, steps: usize) -> [[__m256i; 2]; R] {
            let mut c = [[_mm256_setzero_si256(); 2]; R];
            for s in 0..steps {
                let (b0, b1): (__m256i, __m256i) = $load(b.add(s * NR * $per_step));
                for (r, cr) in c.iter_mut().enumerate() {
                    let av = _mm256_set1_epi32((a.add(r * lda + $per_step * s) as *const i32).read_unaligned());
                    let (p0, p1): (__m256i, __m256i) = $prod(av, b0, b1);
                    cr[0] = _mm256_add_epi32(cr[0], p0);
                    cr[1] = _mm256_add_epi32(cr[1], p1);
                }
            }
            c
        }
    };
}

#[inline(always)]
unsafe fn widen_i8(bq: *const i8) -> (__m256i, __m256i) {
    let lo = _mm256_cvtepi8_epi16(_mm_loadu_si128(bq as *const __m128i));
    (lo, _mm256_cvtepi8_epi16(_mm_loadu_si128(bq.add(16) as *const __m128i)))
}
#[inline(always)]
unsafe fn load_i16(bq: *const i16) -> (__m256i, __m256i) {
    (_mm256_loadu_si256(bq as *const __m256i), _mm256_loadu_si256(bq.add(16) as *const __m256i))
}
#[inline(always)]
unsafe fn load_i8(bq: *const i8) -> (__m256i, __m256i) {
    (_mm256_loadu_si256(bq as *const __m256i), _mm256_loadu_si256(bq.add(32) as *const __m256i))
}
#[inline(always)]
unsafe fn madd(av: __m256i, b0: __m256i, b1: __m256i) -> (__m256i, __m256i) {
    (_mm256_madd_epi16(av, b0), _mm256_madd_epi16(av, b1))
}
#[inline(always)]
unsafe fn by_signs(av: __m256i, b0: __m256i, b1: __m256i) -> (__m256i, __m256i) {
    let (ones, aa) = (_mm256_set1_epi16(1), _mm256_abs_epi8(av));
    let p = |b| _mm256_madd_epi16(_mm256_maddubs_epi16(aa, _mm256_sign_epi8(b, av)), ones);
    (p(b0), p(b1))
}
#[inline(always)]
unsafe fn saturating_pairs(av: __m256i, b0: __m256i, b1: __m256i) -> (__m256i, __m256i) {
    let ones = _mm256_set1_epi16(1);
    let p = |b| _mm256_madd_epi16(_mm256_maddubs_epi16(av, b), ones);
    (p(b0), p(b1))
}

panel_loop!(
    /// The crate's kernel: A i16 pairs broadcast, B i8 `[k/2][16][2]` widened with `vpmovsxbw`.
    exact_i8, i16, i8, 2, widen_i8, madd
);
panel_loop!(
    /// The same with B stored already widened to i16 (no `vpmovsxbw`, twice the weight bytes).
    exact_i16, i16, i16, 2, load_i16, madd
);
panel_loop!(
    /// Exact `vpmaddubsw` by signs (DESIGN.md §1): |a| unsigned, `vpsignb(b, a)` signed — one more
    /// µop per product vector (and wrong for a = w = -128, which the crate's weights may hold).
    exact_sign, i8, i8, 4, load_i8, by_signs
);
panel_loop!(
    /// The peers' loop (inexact: `vpmaddubsw` saturates): u8 A quads broadcast, B s8 `[k/4][16][4]`.
    saturating, u8, i8, 4, load_i8, saturating_pairs
);

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
