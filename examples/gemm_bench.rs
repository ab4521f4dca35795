//! examples/gemm_bench.rs — the CPU GEMM timed the way `../shared/bench/cpu-peers.sh` times its
//! peers, so int8rt joins their table: one JSON line per shape with median and best time and GOP/s
//! (`2·M·N·K / time`). Measures `QuantLinear::forward` (dynamic activation quantization included,
//! f32 out) on the automatically chosen path unless `--path` forces one.
//!
//!   cargo run --release --example gemm_bench -- --threads 2 --json
//!   cargo run --release --example gemm_bench -- --threads 2 --spin-us 500   (Context::with_spin)
//!   PROJECT_BENCH='target/release/examples/gemm_bench --threads $T --json' bash ../shared/bench/cpu-peers.sh

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use int8rt::gemm::{Context, Path};
use int8rt::nn::{ActivationQuant, LinearConfig, QuantLinear};
use int8rt::quant::{Granularity, Scheme};

const USAGE: &str =
    "usage: gemm_bench [--threads N] [--json] [--per-tensor] [--seconds S | --iters N]
                  [--path scalar|avx2|vnni|amx|reference] [--shapes M,K,N;M,K,N...]
                  [--spin-us US]
  Times QuantLinear::forward (dynamic int8 activations, f32 out) per shape: median and best call.
  --spin-us runs on the spinning pool (Context::with_spin) with a window of US microseconds.";

const SHAPES: [(usize, usize, usize); 7] = [
    (1, 4096, 4096),
    (8, 4096, 4096),
    (32, 4096, 4096),
    (128, 4096, 4096),
    (512, 1024, 1024),
    (1024, 4096, 1024),
    (2048, 2048, 2048),
];

fn main() -> Result<()> {
    let mut threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut json = false;
    let mut path: Option<Path> = None;
    let mut per_tensor = false;
    let mut target_s = 1.0f64;
    let mut iters: Option<usize> = None;
    let mut spin_us: Option<u64> = None;
    let mut shapes: Vec<(usize, usize, usize)> = SHAPES.to_vec();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            "--threads" => threads = args.next().context("--threads N")?.parse()?,
            "--json" => json = true,
            "--spin-us" => spin_us = Some(args.next().context("--spin-us US")?.parse()?),
            "--per-tensor" => per_tensor = true,
            "--seconds" => target_s = args.next().context("--seconds S")?.parse()?,
            // Exactly N timed calls after one warm-up call (for `perf stat` cycle counts).
            "--iters" => iters = Some(args.next().context("--iters N")?.parse()?),
            "--path" => {
                let p = args.next().context("--path NAME")?;
                path = Some(match p.to_ascii_lowercase().as_str() {
                    "scalar" => Path::Scalar,
                    "avx2" => Path::Avx2,
                    "avx512vnni" | "vnni" => Path::Avx512Vnni,
                    "amx" => Path::Amx,
                    "reference" => Path::Reference,
                    _ => bail!("unknown path {p}"),
                })
            }
            "--shapes" => {
                shapes = args
                    .next()
                    .context("--shapes M,K,N;M,K,N")?
                    .split(';')
                    .map(|s| {
                        let v: Vec<usize> = s
                            .split(',')
                            .map(|t| t.trim().parse())
                            .collect::<Result<_, _>>()?;
                        anyhow::ensure!(v.len() == 3, "shape {s} is not M,K,N");
                        Ok((v[0], v[1], v[2]))
                    })
                    .collect::<Result<_>>()?
            }
            other => bail!("unknown argument {other}\n{USAGE}"),
        }
    }
    let mut ctx = Context::new().with_threads(threads);
    if let Some(p) = path {
        ctx = ctx.with_path(p);
    }
    if let Some(us) = spin_us {
        ctx = ctx.with_spin(Duration::from_micros(us));
    }
    let peer = format!(
        "int8rt{}{}",
        if per_tensor { "_per_tensor" } else { "" },
        if spin_us.is_some() { "_spin" } else { "" }
    );
    let granularity = if per_tensor {
        Granularity::PerTensor
    } else {
        Granularity::PerRow
    };
    let cfg = LinearConfig {
        activations: ActivationQuant::Dynamic {
            scheme: Scheme::Symmetric,
            granularity,
        },
        ..Default::default()
    };
    for &(m, k, n) in &shapes {
        let mut seed = 0x1234_5678_u64 ^ (m * 31 + k * 7 + n) as u64;
        let mut rnd = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        let w: Vec<f32> = (0..n * k).map(|_| rnd() * 0.05).collect();
        let b: Vec<f32> = (0..n).map(|_| rnd()).collect();
        let x: Vec<f32> = (0..m * k).map(|_| rnd()).collect();
        let layer = QuantLinear::from_f32("bench", &w, n, k, Some(&b), cfg)?;
        let mut y = vec![0f32; m * n];
        let mut run = || layer.forward(&ctx, &x, m, &mut int8rt::gemm::OutBuf::F32(&mut y));
        let t0 = Instant::now();
        run()?;
        while iters.is_none() && t0.elapsed().as_secs_f64() < 0.3 {
            run()?;
        }
        let mut times = Vec::new();
        let t1 = Instant::now();
        let more = |n: usize| match iters {
            Some(it) => n < it,
            None => n < 10 || (t1.elapsed().as_secs_f64() < target_s && n < 5000),
        };
        while more(times.len()) {
            let s = Instant::now();
            run()?;
            times.push(s.elapsed().as_secs_f64());
        }
        times.sort_by(|a, b| a.total_cmp(b));
        let med = times[times.len() / 2];
        let best = times[0];
        let ops = 2.0 * (m * n * k) as f64;
        let ran = ctx.last_path();
        if json {
            println!(
                "{{\"peer\":\"{peer}\",\"threads\":{threads},\"M\":{m},\"K\":{k},\"N\":{n},\"median_ms\":{:.6},\"min_ms\":{:.6},\"gops_median\":{:.3},\"gops_best\":{:.3},\"path\":\"{:?}\",\"act\":\"{}\"}}",
                med * 1e3,
                best * 1e3,
                ops / med / 1e9,
                ops / best / 1e9,
                ran.unwrap_or(Path::Reference),
                if per_tensor { "per_tensor" } else { "per_row" }
            );
        } else {
            println!(
                "M={m:5} K={k:5} N={n:5} threads={threads} {peer} path={:?}: median {:.3} ms ({:.1} GOP/s), best {:.3} ms",
                ran,
                med * 1e3,
                ops / med / 1e9,
                best * 1e3
            );
        }
    }
    Ok(())
}
