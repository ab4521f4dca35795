//! cuda/sim_peak_tests.rs — the instruction-peak kernels (`kernels/peak.cu`, launched through
//! `cuda::peak::launch_peak` as the GPU bench does) in the host simulation (test builds): every
//! thread's checksum against a scalar recomputation of what its loop must produce — the
//! operands gathered from the seed words by lane, the m16n8k32 tiles assembled from every lane's
//! registers by the PTX ISA fragment layouts (`sim_mma_tests`' independent transcription),
//! products by plain loops, `iters × unroll` repetitions added to the initial accumulators with
//! wrapping — so a wrong fragment, operand, accumulator, unroll count or output index fails. The
//! simulation's `mma.sync` count checks the instructions per iteration the bench's TOP/s uses.

use super::exec::Exec;
use super::params::{
    PEAK_DP4A_ACC, PEAK_DP4A_UNROLL, PEAK_MMA_MT as MT, PEAK_MMA_NT as NT, PEAK_MMA_UNROLL,
    PEAK_SEED_WORDS,
};
use super::peak::{launch_peak, PeakKernel};
use super::sim::SimExec;
use super::sim_mma_tests::{a_pos, b_pos, c_pos};
use super::sim_tests::Rng;

/// Signed byte `i` of a word.
fn byte(w: u32, i: usize) -> i32 {
    (w >> (8 * i)) as u8 as i8 as i32
}

/// Seed word `i` (modulo the buffer), as the kernels read it.
fn word(seed: &[i32], i: usize) -> u32 {
    seed[i % PEAK_SEED_WORDS] as u32
}

/// The checksum every thread of `peak_mma_s8` must write: register r of A_i is word
/// lane + 8 (4 i + r), of B_j word 3 lane + 8 (2 j + r) + 1; accumulator (i, j, e) starts at
/// 32 · thread + (i · NT + j) · 4 + e and gains A_i · B_j at its (row, col) once per mma.
fn mma_expected(seed: &[i32], threads_total: usize, iters: u32) -> Vec<i32> {
    let mut a = vec![[[0i32; 32]; 16]; MT];
    let mut b = vec![[[0i32; 8]; 32]; NT];
    for lane in 0..32 {
        for (i, ai) in a.iter_mut().enumerate() {
            for e in 0..16 {
                let (r, c) = a_pos(lane, e);
                ai[r][c] = byte(word(seed, lane + 8 * (4 * i + e / 4)), e % 4);
            }
        }
        for (j, bj) in b.iter_mut().enumerate() {
            for e in 0..8 {
                let (r, c) = b_pos(lane, e);
                bj[r][c] = byte(word(seed, 3 * lane + 8 * (2 * j + e / 4) + 1), e % 4);
            }
        }
    }
    let reps = iters.wrapping_mul(PEAK_MMA_UNROLL);
    (0..threads_total)
        .map(|gt| {
            let lane = gt % 32;
            let mut sum = 0u32;
            for (i, ai) in a.iter().enumerate() {
                for (j, bj) in b.iter().enumerate() {
                    for e in 0..4 {
                        let (r, c) = c_pos(lane, e);
                        let p: i32 = (0..32).map(|k| ai[r][k] * bj[k][c]).sum();
                        let init = 32 * gt as u32 + ((i * NT + j) * 4 + e) as u32;
                        sum = sum.wrapping_add(init.wrapping_add(reps.wrapping_mul(p as u32)));
                    }
                }
            }
            sum as i32
        })
        .collect()
}

/// The checksum every thread of `peak_dp4a_s8` must write: a[r] is word lane + 8 r, b[r] word
/// 3 lane + 8 r + 33; acc[i] starts at 32 · thread + i and gains dot4(a[i % 4], b[i / 4]) per dp4a.
fn dp4a_expected(seed: &[i32], threads_total: usize, iters: u32) -> Vec<i32> {
    let reps = iters.wrapping_mul(PEAK_DP4A_UNROLL);
    (0..threads_total)
        .map(|gt| {
            let lane = gt % 32;
            let a: Vec<u32> = (0..4).map(|r| word(seed, lane + 8 * r)).collect();
            let b: Vec<u32> = (0..4).map(|r| word(seed, 3 * lane + 8 * r + 33)).collect();
            let mut sum = 0u32;
            for i in 0..PEAK_DP4A_ACC {
                let dot: i32 = (0..4).map(|q| byte(a[i % 4], q) * byte(b[i / 4], q)).sum();
                let init = 32 * gt as u32 + i as u32;
                sum = sum.wrapping_add(init.wrapping_add(reps.wrapping_mul(dot as u32)));
            }
            sum as i32
        })
        .collect()
}

/// Run `k` in the simulation; (per-thread checksums, mma.sync instructions counted).
fn run(k: PeakKernel, seed: &[i32], blocks: u32, threads: u32, iters: u32) -> (Vec<i32>, u64) {
    let e = SimExec::new();
    let s = e.upload(seed).unwrap();
    let n = (blocks * threads) as usize;
    let mut out = e.alloc::<i32>(n).unwrap();
    launch_peak(&e, k, &s, &mut out, blocks, threads, iters).unwrap();
    let mut v = vec![0; n];
    e.read(&out, &mut v).unwrap();
    (v, e.take_stats().mma)
}

#[test]
fn peak_kernels_compute_what_their_loops_must_produce() {
    let mut rng = Rng::new(41);
    for (case, &(blocks, threads, iters)) in [(2u32, 64u32, 3u32), (3, 32, 1), (1, 96, 0)]
        .iter()
        .enumerate()
    {
        let seed: Vec<i32> = (0..PEAK_SEED_WORDS).map(|_| rng.next() as i32).collect();
        let n = (blocks * threads) as usize;
        let warps = (blocks * threads / 32) as u64;

        let (got, mmas) = run(PeakKernel::Mma, &seed, blocks, threads, iters);
        assert_eq!(
            got,
            mma_expected(&seed, n, iters),
            "peak_mma_s8, case {case}: {blocks} × {threads} threads, {iters} iterations"
        );
        assert_eq!(
            mmas,
            warps * iters as u64 * PeakKernel::Mma.per_iteration(),
            "mma.sync instructions issued, case {case}"
        );

        let (got, mmas) = run(PeakKernel::Dp4a, &seed, blocks, threads, iters);
        assert_eq!(
            got,
            dp4a_expected(&seed, n, iters),
            "peak_dp4a_s8, case {case}: {blocks} × {threads} threads, {iters} iterations"
        );
        assert_eq!(mmas, 0);
    }
}

#[test]
fn peak_checksums_depend_on_every_seed_word_the_loop_reads() {
    // Changing one operand word changes some thread's checksum (no operand is dead or folded in
    // the simulated kernel), for both kernels, over one warp and two iterations.
    let mut rng = Rng::new(7);
    let seed: Vec<i32> = (0..PEAK_SEED_WORDS)
        .map(|_| rng.next() as i32 | 0x0101_0101)
        .collect();
    for k in PeakKernel::ALL {
        let (base, _) = run(k, &seed, 1, 32, 2);
        for w in [1usize, 8, 33, 57] {
            let mut s = seed.clone();
            s[w] ^= 0x0203_0405;
            let (v, _) = run(k, &s, 1, 32, 2);
            assert_ne!(v, base, "{k:?}: seed word {w} did not reach the result");
        }
    }
}

#[test]
fn peak_launch_rejects_bad_geometry_and_short_buffers() {
    let e = SimExec::new();
    let seed = e.upload(&[1i32; PEAK_SEED_WORDS]).unwrap();
    let short_seed = e.upload(&[1i32; PEAK_SEED_WORDS - 1]).unwrap();
    let mut out = e.alloc::<i32>(256).unwrap();
    for k in PeakKernel::ALL {
        for threads in [0u32, 48, 288] {
            assert!(launch_peak(&e, k, &seed, &mut out, 1, threads, 1).is_err());
        }
        assert!(launch_peak(&e, k, &seed, &mut out, 0, 32, 1).is_err());
        assert!(launch_peak(&e, k, &seed, &mut out, 2, 256, 1).is_err());
        assert!(launch_peak(&e, k, &short_seed, &mut out, 1, 32, 1).is_err());
        assert!(launch_peak(&e, k, &seed, &mut out, 1, 32, u32::MAX).is_err());
    }
}

#[test]
fn peak_operation_counts() {
    // One launch's operations: 2 per multiply-accumulate; 32 mma.sync (4096 MACs) per warp and
    // 128 dp4a (4 MACs) per thread per iteration.
    assert_eq!(PeakKernel::Mma.per_iteration(), 32);
    assert_eq!(PeakKernel::Dp4a.per_iteration(), 128);
    assert_eq!(
        PeakKernel::Mma.ops(2, 64, 3),
        2.0 * 4.0 * 3.0 * 32.0 * 4096.0
    );
    assert_eq!(
        PeakKernel::Dp4a.ops(2, 64, 3),
        2.0 * 128.0 * 3.0 * 128.0 * 4.0
    );
}
