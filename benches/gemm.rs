//! benches/gemm.rs — the CPU GEMM benchmark of DESIGN.md §6: `QuantLinear::forward` (dynamic
//! per-token activation quantization included, f32 out) against an f32 GEMM baseline (the `gemm`
//! crate) measured in the same run, at 1 and 2 threads, reported as `2·M·N·K` elements per second
//! (criterion prints them as elem/s: read Gelem/s as GOP/s).
//!
//!   cargo bench --bench gemm
//!   cargo bench --bench gemm -- 'cpu/1x4096x4096'     # one shape

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use int8rt::gemm::OutBuf;
use int8rt::nn::{LinearConfig, QuantLinear};
use int8rt::Context;

/// `(M, K, N)`.
const SHAPES: [(usize, usize, usize); 7] = [
    (1, 4096, 4096),
    (8, 4096, 4096),
    (32, 4096, 4096),
    (128, 4096, 4096),
    (512, 1024, 1024),
    (1024, 4096, 1024),
    (2048, 2048, 2048),
];

fn data(len: usize, seed: u64, amp: f32) -> Vec<f32> {
    let mut s = seed;
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * amp
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    for &(m, k, n) in &SHAPES {
        let mut g = c.benchmark_group(format!("cpu/{m}x{k}x{n}"));
        g.throughput(Throughput::Elements(2 * (m * n * k) as u64));
        g.warm_up_time(Duration::from_millis(500));
        g.measurement_time(Duration::from_secs(2));
        g.sample_size(20);
        let w = data(n * k, 1, 0.05);
        let b = data(n, 2, 1.0);
        let x = data(m * k, 3, 1.0);
        let layer =
            QuantLinear::from_f32("bench", &w, n, k, Some(&b), LinearConfig::default()).unwrap();
        let mut y = vec![0f32; m * n];
        for threads in [1usize, 2] {
            let ctx = Context::new().with_threads(threads);
            g.bench_function(
                BenchmarkId::new("int8rt_quantlinear", format!("t{threads}")),
                |bench| {
                    bench.iter(|| {
                        layer
                            .forward(&ctx, black_box(&x), m, &mut OutBuf::F32(&mut y))
                            .unwrap()
                    })
                },
            );
            let par = if threads == 1 {
                gemm::Parallelism::None
            } else {
                gemm::Parallelism::Rayon(threads)
            };
            g.bench_function(
                BenchmarkId::new("gemm_crate_f32", format!("t{threads}")),
                |bench| {
                    bench.iter(|| {
                        // SAFETY: y is [m, n] row-major (column stride 1, row stride n); x is [m, k]
                        // row-major; the right operand is Wᵀ read from W [n, k] (row stride 1, column
                        // stride k). All three buffers have exactly these sizes.
                        unsafe {
                            gemm::gemm(
                                m,
                                n,
                                k,
                                y.as_mut_ptr(),
                                1,
                                n as isize,
                                false,
                                black_box(x.as_ptr()),
                                1,
                                k as isize,
                                w.as_ptr(),
                                k as isize,
                                1,
                                0.0f32,
                                1.0f32,
                                false,
                                false,
                                false,
                                par,
                            )
                        }
                    })
                },
            );
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
