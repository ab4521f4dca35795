//! examples/gpu_profile.rs — one forced GEMM kernel at one shape, run a few times, for a kernel
//! profiler to look at (`scripts/gpu-run.sh` runs it under Nsight Compute when `ncu` is on the
//! GPU host and `INT8RT_NCU=1`): `M×K×N=KERNEL`, with `KERNEL` in `GemmKernel`'s text form
//! (`auto`, `gemv`, `gemv:narrow`, `mma:stream64x64:4`, `mma:wgmma64x128:2`, …). It runs
//! `warmup` calls, synchronizes, then one more call — the one a profiler is told to keep (with
//! `--launch-skip <warmup> --launch-count 1`; a GEMM call is one kernel launch) — and prints its
//! time by CUDA events, with the L2 written over before it, so that the figure is comparable to
//! the tuner's.
//!
//!   cargo run --release --features cuda --example gpu_profile -- 64x4096x4096=mma:stream64x64:4
//!   ncu --launch-skip 3 --launch-count 1 --section SpeedOfLight … target/release/examples/gpu_profile 64x4096x4096=gemv

use anyhow::{anyhow, bail, Context, Result};
use int8rt::cuda::cudarc::driver::sys::CUevent_flags;
use int8rt::cuda::cudarc::driver::{CudaSlice, CudaStream};
use int8rt::cuda::{CudaActScales, CudaActivations, CudaDevice, CudaOut, CudaWeights, GemmKernel};
use int8rt::gemm::Bias;
use std::sync::Arc;

/// Warm-up calls before the one that is profiled and timed.
const WARMUP: usize = 3;

fn parse(spec: &str) -> Result<(usize, usize, usize, GemmKernel)> {
    let (shape, kernel) = spec
        .split_once('=')
        .ok_or_else(|| anyhow!("{spec:?}: expected MxKxN=KERNEL"))?;
    let dims: Vec<usize> = shape
        .split('x')
        .map(|d| d.parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .with_context(|| format!("{shape:?}: expected MxKxN"))?;
    let [m, k, n] = dims[..] else {
        bail!("{shape:?}: expected three sizes MxKxN");
    };
    let kernel = kernel
        .parse::<GemmKernel>()
        .map_err(|e| anyhow!("{kernel:?}: {e}"))?;
    Ok((m, k, n, kernel))
}

fn dev_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("{e:?}")
}

/// Write over the L2 (twice its usual size on the cards we run: 2 × 60 MiB).
fn flush_l2(stream: &Arc<CudaStream>, junk: &mut CudaSlice<u8>) -> Result<()> {
    stream.memset_zeros(junk).map_err(dev_err)
}

fn main() -> Result<()> {
    let specs: Vec<String> = std::env::args().skip(1).collect();
    if specs.is_empty() {
        bail!("usage: gpu_profile MxKxN=KERNEL [MxKxN=KERNEL …]");
    }
    let dev = CudaDevice::new(0)?;
    let stream = dev.new_stream()?;
    let mut junk = stream.alloc_zeros::<u8>(120 << 20).map_err(dev_err)?;
    let flags = Some(CUevent_flags::CU_EVENT_DEFAULT);
    let start = dev.context().new_event(flags).map_err(dev_err)?;
    let end = dev.context().new_event(flags).map_err(dev_err)?;
    let (major, minor) = dev.compute_capability();
    println!("{} (sm_{major}{minor}, {} SMs)", dev.name(), dev.sm_count());
    for spec in &specs {
        let (m, k, n, kernel) = parse(spec)?;
        let w: Vec<i8> = (0..n * k)
            .map(|i| ((i * 37 % 255) as i32 - 127) as i8)
            .collect();
        let mut weights = CudaWeights::new(&dev, &w, n, k, &[0.01], Bias::None)?;
        weights.set_kernel(kernel)?;
        let x: Vec<i8> = (0..m * k)
            .map(|i| ((i * 13 % 255) as i32 - 127) as i8)
            .collect();
        let xd = stream.clone_htod(&x).map_err(dev_err)?;
        let scale = stream.clone_htod(&[0.02f32]).map_err(dev_err)?;
        let mut y = stream.alloc_zeros::<i32>(m * n).map_err(dev_err)?;
        let call = |y: &mut CudaSlice<i32>| {
            weights.gemm(
                &stream,
                m,
                CudaActivations::S8 { x: &xd, lda: k },
                CudaActScales::PerTensor {
                    scale: &scale,
                    zero_point: None,
                },
                CudaOut::I32(y),
            )
        };
        for _ in 0..WARMUP {
            call(&mut y)?;
        }
        flush_l2(&stream, &mut junk)?;
        start.record(&stream).map_err(dev_err)?;
        let path = call(&mut y)?;
        end.record(&stream).map_err(dev_err)?;
        let ms = start.elapsed_ms(&end).map_err(dev_err)?;
        println!(
            "{m}x{k}x{n} {kernel}: {:.1} µs by events (L2 flushed), {:.0} GB/s of weights, path {path:?}",
            ms * 1e3,
            (n * k) as f64 / (ms as f64 * 1e-3) / 1e9
        );
    }
    Ok(())
}
