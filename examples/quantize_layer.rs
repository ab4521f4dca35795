//! examples/quantize_layer.rs — quantize one Linear layer and report what it costs and what it
//! buys: the output error of each activation mode against f32, and the latency of the int8
//! forward against an f32 GEMM (the `gemm` crate) on this machine, at a decode shape (M = 1)
//! and a prefill shape (M = 128).
//!
//!   cargo run --release --example quantize_layer

use std::time::Instant;

use anyhow::Result;
use int8rt::gemm::OutBuf;
use int8rt::nn::{ActivationQuant, LinearConfig, QuantLinear};
use int8rt::quant::{Granularity, Scheme};
use int8rt::Context;

const IN: usize = 4096;
const OUT: usize = 4096;

/// Deterministic, roughly Gaussian data (sum of uniforms) with a few outliers per row, like real
/// activations.
fn data(len: usize, seed: u64, sd: f32, outliers: bool) -> Vec<f32> {
    let mut s = seed;
    let mut u = move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 40) as f32 / (1u64 << 24) as f32
    };
    (0..len)
        .map(|i| {
            let g = (u() + u() + u() + u() - 2.0) * 1.73 * sd;
            if outliers && i % 997 == 0 {
                g * 8.0
            } else {
                g
            }
        })
        .collect()
}

fn f32_gemm(x: &[f32], w: &[f32], b: &[f32], m: usize, y: &mut [f32], threads: usize) {
    let par = if threads <= 1 {
        gemm::Parallelism::None
    } else {
        gemm::Parallelism::Rayon(threads)
    };
    for row in y.chunks_mut(OUT) {
        row.copy_from_slice(b);
    }
    // SAFETY: y [m, OUT], x [m, IN] and w [OUT, IN] are row-major with exactly these sizes; the
    // right operand Wᵀ is read with row stride 1 and column stride IN.
    unsafe {
        gemm::gemm(
            m,
            OUT,
            IN,
            y.as_mut_ptr(),
            1,
            OUT as isize,
            true,
            x.as_ptr(),
            1,
            IN as isize,
            w.as_ptr(),
            IN as isize,
            1,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            par,
        )
    }
}

fn time(mut f: impl FnMut()) -> f64 {
    f();
    let mut best = f64::MAX;
    let start = Instant::now();
    let mut n = 0;
    while n < 5 || (start.elapsed().as_secs_f64() < 0.5 && n < 1000) {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
        n += 1;
    }
    best
}

fn main() -> Result<()> {
    let w = data(OUT * IN, 1, 0.02, false);
    let b = data(OUT, 2, 0.1, false);
    let ctx = Context::new();
    println!(
        "int8rt: one {OUT}x{IN} Linear layer, {} threads",
        ctx.threads()
    );
    println!(
        "CPU paths available: {:?}\n",
        int8rt::gemm::cpu::available_paths()
    );

    let m = 128;
    let x = data(m * IN, 3, 1.0, true);
    let mut y32 = vec![0f32; m * OUT];
    f32_gemm(&x, &w, &b, m, &mut y32, ctx.threads());
    let norm = y32.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();

    println!(
        "{:<34} {:>12} {:>10}",
        "activation mode", "rel. error", "path"
    );
    let modes = [
        (
            "dynamic, per token, symmetric",
            Scheme::Symmetric,
            Granularity::PerRow,
        ),
        (
            "dynamic, per token, asymmetric",
            Scheme::Asymmetric,
            Granularity::PerRow,
        ),
        (
            "dynamic, per tensor, symmetric",
            Scheme::Symmetric,
            Granularity::PerTensor,
        ),
        (
            "dynamic, per tensor, asymmetric",
            Scheme::Asymmetric,
            Granularity::PerTensor,
        ),
    ];
    for (name, scheme, granularity) in modes {
        let cfg = LinearConfig {
            activations: ActivationQuant::Dynamic {
                scheme,
                granularity,
            },
            ..Default::default()
        };
        let layer = QuantLinear::from_f32("fc", &w, OUT, IN, Some(&b), cfg)?;
        let y = layer.forward_f32(&ctx, &x, m)?;
        let err = y
            .iter()
            .zip(&y32)
            .map(|(a, b)| ((a - b) as f64).powi(2))
            .sum::<f64>()
            .sqrt()
            / norm;
        println!("{name:<34} {err:>12.2e} {:>10?}", ctx.last_path().unwrap());
    }

    let layer = QuantLinear::from_f32("fc", &w, OUT, IN, Some(&b), LinearConfig::default())?;
    println!(
        "\n{:<10} {:>12} {:>12} {:>9}   (best of repeated calls)",
        "shape", "int8 ms", "f32 ms", "speedup"
    );
    for m in [1usize, 128] {
        let x = data(m * IN, 4, 1.0, true);
        let mut y = vec![0f32; m * OUT];
        let t8 = time(|| {
            layer
                .forward(&ctx, &x, m, &mut OutBuf::F32(&mut y))
                .unwrap();
        });
        let path = ctx.last_path().unwrap();
        let t32 = time(|| f32_gemm(&x, &w, &b, m, &mut y, ctx.threads()));
        println!(
            "M={m:<8} {:>12.3} {:>12.3} {:>8.1}x   int8 path {path:?}",
            t8 * 1e3,
            t32 * 1e3,
            t32 / t8
        );
    }
    Ok(())
}
