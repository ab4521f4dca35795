//! examples/gpu_latency.rs — the per-call latency of a `CudaQuantLinear` forward on a GPU: 300
//! calls each from host slices (`forward`: upload, quantize, GEMM, download), on device buffers
//! (`forward_device`, which waits for its non-finite report) and enqueued with the report read
//! after all of them (`forward_device_async`, with the GEMV launched overlapped with the
//! quantization before it — a layer's default — and without, `set_overlapped_launch(false)`),
//! per shape, then the same with cudarc's event
//! tracking off. The figures quoted in bench/RESULTS.md ("per-call fixed cost") come from this
//! program; the GEMM alone is timed by benches/gpu_gemm.rs.
//!
//!   cargo run --release --example gpu_latency        # needs a GPU; errors out without one

use std::time::Instant;

use anyhow::{anyhow, Result};
use int8rt::cuda::{CudaDevice, CudaOut};
use int8rt::gemm::OutBuf;
use int8rt::nn::{LinearConfig, QuantLinear};

fn main() -> Result<()> {
    let dev = CudaDevice::new(0)?;
    println!("{}", dev.name());
    println!("| shape M×K×N | event tracking | forward, host slices (µs) | forward_device (µs) | forward_device_async, waited after all, GEMV not overlapped (µs) | the same, GEMV overlapped: the default (µs) |");
    println!("|---|---|---:|---:|---:|---:|");
    for tracking in [true, false] {
        if !tracking {
            // SAFETY: nothing in this program uses a buffer on a stream other than the one it
            // was written on, or reads it before that stream synchronized.
            unsafe { dev.context().disable_event_tracking() };
        }
        for &(m, k, n) in &[(1usize, 4096usize, 4096usize), (8, 4096, 4096), (1, 64, 64)] {
            let w: Vec<f32> = (0..n * k)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.002)
                .collect();
            let x: Vec<f32> = (0..m * k)
                .map(|i| ((i * 13 % 29) as f32 - 14.0) * 0.1)
                .collect();
            let layer = QuantLinear::from_f32("fc", &w, n, k, None, LinearConfig::default())?;
            let mut g = layer.to_cuda(&dev)?;
            let mut y = vec![0f32; m * n];
            let stream = dev.new_stream()?;
            let xd = stream.clone_htod(&x).map_err(|e| anyhow!("{e:?}"))?;
            let mut yd = stream
                .alloc_zeros::<f32>(m * n)
                .map_err(|e| anyhow!("{e:?}"))?;
            for _ in 0..20 {
                g.forward(&x, m, &mut OutBuf::F32(&mut y))?;
                g.forward_device(&stream, &xd, m, CudaOut::F32(&mut yd))?;
            }
            let calls = 300;
            let t = Instant::now();
            for _ in 0..calls {
                g.forward(&x, m, &mut OutBuf::F32(&mut y))?;
            }
            let host = t.elapsed().as_secs_f64() / calls as f64 * 1e6;
            let t = Instant::now();
            for _ in 0..calls {
                g.forward_device(&stream, &xd, m, CudaOut::F32(&mut yd))?;
            }
            stream.synchronize().map_err(|e| anyhow!("{e:?}"))?;
            let device = t.elapsed().as_secs_f64() / calls as f64 * 1e6;
            // Deferred checks: every call enqueued, then every report read; then the same with
            // the GEMV launched overlapped with the quantization before it (programmatic
            // dependent launch; an ordinary launch before sm_90).
            let mut deferred_us = |overlap: bool| -> Result<f64> {
                g.set_overlapped_launch(overlap);
                let t = Instant::now();
                let pending = (0..calls)
                    .map(|_| g.forward_device_async(&stream, &xd, m, CudaOut::F32(&mut yd)))
                    .collect::<int8rt::Result<Vec<_>>>()?;
                for p in pending {
                    p.wait()?;
                }
                Ok(t.elapsed().as_secs_f64() / calls as f64 * 1e6)
            };
            let deferred = deferred_us(false)?;
            let overlapped = deferred_us(true)?;
            println!(
                "| {m}×{k}×{n} | {} | {host:.1} | {device:.1} | {deferred:.1} | {overlapped:.1} |",
                if tracking { "on" } else { "off" }
            );
        }
    }
    Ok(())
}
