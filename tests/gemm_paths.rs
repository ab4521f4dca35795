//! tests/gemm_paths.rs — every CPU path (scalar, AVX2, AVX-512 VNNI, AMX — whichever this machine
//! has) against `reference::gemm`, bit for bit, over the DESIGN.md §5 shape table: every `M, N, K`
//! in `0..=17`, each path's tile sizes ±1, powers of two ±1, deep `K` and GEMV `M = 1`; every
//! output type and scheme; outputs pre-filled with a sentinel so unwritten tiles fail.

mod common;
use common::*;

#[test]
fn every_shape_up_to_17_cycling_configs() {
    let configs = all_configs();
    let mut rng = Rng::new(17);
    let mut t = 0;
    for m in 0..=17 {
        for n in 0..=17 {
            for k in 0..=17 {
                let cfg = configs[t % configs.len()];
                let data = if t % 7 == 3 {
                    Data::Extreme
                } else {
                    Data::Random
                };
                let case = Case::new(m, n, k, cfg, data, &mut rng);
                let want = case.expected();
                for p in cpu_paths() {
                    let ctx = int8rt::Context::new().with_path(p);
                    case.check_path(&ctx, &want, &format!("{p:?}"));
                }
                t += 1;
            }
        }
    }
}

#[test]
fn every_config_on_odd_shapes() {
    let mut rng = Rng::new(5);
    for (i, cfg) in all_configs().into_iter().enumerate() {
        for &(m, n, k) in &[
            (1, 1, 1),
            (3, 17, 5),
            (17, 33, 65),
            (33, 65, 129),
            (2, 100, 300),
        ] {
            for data in [Data::Random, Data::Extreme, Data::FullRangeWeights] {
                let case = Case::new(m, n, k, cfg, data, &mut rng);
                check_all_paths(&case, &format!("config #{i} {data:?}"));
            }
        }
    }
}

/// Tile sizes of every kernel, ±1: scalar 4×4, AVX2 4×16 (k step 2), VNNI 8×32 (k step 4),
/// AMX 32×32 (k chunk 64, A tiles of 16 rows).
#[test]
fn tile_boundaries() {
    let configs = all_configs();
    let mut rng = Rng::new(99);
    let ms = [1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65];
    let ns = [1, 3, 4, 5, 15, 16, 17, 31, 32, 33, 63, 64, 65];
    let ks = [1, 2, 3, 4, 5, 63, 64, 65, 127, 128, 129];
    let mut t = 0;
    for &m in &ms {
        for &n in &ns {
            for &k in &ks {
                let cfg = configs[(t * 7) % configs.len()];
                let case = Case::new(m, n, k, cfg, Data::Random, &mut rng);
                let want = case.expected();
                for p in cpu_paths() {
                    let ctx = int8rt::Context::new().with_path(p);
                    case.check_path(&ctx, &want, &format!("{p:?}"));
                }
                t += 1;
            }
        }
    }
}

#[test]
fn powers_of_two_plus_minus_one() {
    let configs = all_configs();
    let mut rng = Rng::new(3);
    let sizes = [127, 128, 129, 255, 256, 257];
    let mut t = 0;
    for &m in &[1, 127, 129, 257] {
        for &n in &sizes {
            for &k in &[255, 256, 257] {
                let case = Case::new(
                    m,
                    n,
                    k,
                    configs[(t * 11) % configs.len()],
                    Data::Random,
                    &mut rng,
                );
                check_all_paths(&case, "pow2±1");
                t += 1;
            }
        }
    }
}

/// Deep K (4096 and beyond) and the GEMV shape M = 1.
#[test]
fn deep_k_and_gemv() {
    let configs = all_configs();
    let mut rng = Rng::new(4096);
    let mut t = 0;
    for &k in &[4095, 4096, 4097, 8191, 16384, 33000] {
        for &m in &[1, 2, 9, 33] {
            let data = if t % 2 == 0 {
                Data::Extreme
            } else {
                Data::Random
            };
            let case = Case::new(m, 37, k, configs[(t * 5) % configs.len()], data, &mut rng);
            check_all_paths(&case, &format!("deep k={k}"));
            t += 1;
        }
    }
}

/// The largest K the i32 accumulator allows for u8 × narrow s8 (⌊(2^31 − 1) / (255·127)⌋ = 66,311):
/// all-extreme data, every path exact.
#[test]
fn largest_k_for_u8_activations() {
    let mut rng = Rng::new(66_311);
    let cfg = Config {
        x: XType::U8,
        per_row: false,
        bias: BiasKind::None,
        out: OutSel::I32,
        per_channel: true,
    };
    let mut case = Case::new(2, 33, 66_311, cfg, Data::Extreme, &mut rng);
    // x = 0 with zero point 255: every term is −255 · (±127), the worst case exactly.
    case.xu8.fill(0);
    case.zp = 255;
    let want = case.expected();
    // The extreme data reaches within 0.3% of the bound: the accumulator really is near 2^31.
    let max = want
        .iter()
        .map(|&v| (v as i32).unsigned_abs())
        .max()
        .unwrap();
    assert!(max > 2_100_000_000, "max |acc| = {max}");
    for p in cpu_paths() {
        case.check_path(
            &int8rt::Context::new().with_path(p),
            &want,
            &format!("{p:?}"),
        );
    }
}
