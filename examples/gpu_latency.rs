//! examples/gpu_latency.rs — the per-call latency of a `CudaQuantLinear` forward on a GPU: 300
//! calls each from host slices (`forward`: upload, quantize, GEMM, download), on device buffers
//! (`forward_device`, which waits for its non-finite report) and enqueued with the report read
//! after all of them (`forward_device_async`, with the GEMV launched overlapped with the
//! quantization before it — a layer's default — and without, `set_overlapped_launch(false)`),
//! per shape, then the same with cudarc's event tracking off. Then the host's side of a bare
//! GEMM call (`CudaWeights::gemm`, int8 activations in, i32 out, as benches/gpu_gemm.rs calls
//! it): the time to enqueue one, 300 in a row with no wait, and the same calls waited for, per
//! shape and tracking mode — what a call adds inside the bench's CUDA-event window. Last, a
//! decode step of 8 chained 4096² layers, each waited for against all waited at the end. The
//! figures quoted in bench/RESULTS.md ("per-call fixed cost") come from this program; the GEMM
//! alone is timed by benches/gpu_gemm.rs.
//!
//!   cargo run --release --example gpu_latency        # needs a GPU; errors out without one

use std::time::Instant;

use anyhow::{anyhow, Result};
use int8rt::cuda::{CudaActScales, CudaActivations, CudaDevice, CudaOut, CudaWeights};
use int8rt::gemm::{Bias, OutBuf};
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
    gemm_enqueue(&dev)?;
    decode_step(&dev)
}

/// A decode step of a stack of layers, event tracking off: `LAYERS` layers of 4096 × 4096
/// chained on one stream (each one's output the next one's input), one row, 50 steps. Per step,
/// `forward_device` on each layer (a wait per layer) against `forward_device_async` on each
/// and every report read at the end (the chain's reports come back in one copy:
/// src/cuda/reports.rs) — what a serving loop pays per token for its Linear layers.
fn decode_step(dev: &CudaDevice) -> Result<()> {
    const LAYERS: usize = 8;
    let (m, k, steps) = (1usize, 4096usize, 50);
    println!("\n| layers × M×K×N | `forward_device` each: µs per step (per layer) | `forward_device_async` each, reports read at the end: µs per step (per layer) |");
    println!("|---|---:|---:|");
    let layers = (0..LAYERS)
        .map(|l| {
            let w: Vec<f32> = (0..k * k)
                .map(|i| (((i + l) * 37 % 101) as f32 - 50.0) * 0.0005)
                .collect();
            let layer =
                QuantLinear::from_f32(&format!("fc{l}"), &w, k, k, None, LinearConfig::default())?;
            layer.to_cuda(dev)
        })
        .collect::<int8rt::Result<Vec<_>>>()?;
    let stream = dev.new_stream()?;
    let x: Vec<f32> = (0..m * k)
        .map(|i| ((i * 13 % 29) as f32 - 14.0) * 0.1)
        .collect();
    // bufs[l] is layer l's input, bufs[l + 1] its output.
    let mut bufs = vec![stream.clone_htod(&x).map_err(|e| anyhow!("{e:?}"))?];
    for _ in 0..LAYERS {
        bufs.push(
            stream
                .alloc_zeros::<f32>(m * k)
                .map_err(|e| anyhow!("{e:?}"))?,
        );
    }
    // µs per step of `step`, after 5 steps of warm-up.
    let time = |step: &mut dyn FnMut() -> Result<()>| -> Result<f64> {
        for _ in 0..5 {
            step()?;
        }
        let t = Instant::now();
        for _ in 0..steps {
            step()?;
        }
        Ok(t.elapsed().as_secs_f64() / steps as f64 * 1e6)
    };
    let each = time(&mut || {
        for (l, g) in layers.iter().enumerate() {
            let (a, b) = bufs.split_at_mut(l + 1);
            g.forward_device(&stream, &a[l], m, CudaOut::F32(&mut b[0]))?;
        }
        Ok(())
    })?;
    let at_end = time(&mut || {
        let mut pending = Vec::with_capacity(LAYERS);
        for (l, g) in layers.iter().enumerate() {
            let (a, b) = bufs.split_at_mut(l + 1);
            pending.push(g.forward_device_async(&stream, &a[l], m, CudaOut::F32(&mut b[0]))?);
        }
        for p in pending {
            p.wait()?;
        }
        Ok(())
    })?;
    let per = |v: f64| v / LAYERS as f64;
    println!(
        "| {LAYERS} × {m}×{k}×{k} | {each:.1} ({:.1}) | {at_end:.1} ({:.1}) |",
        per(each),
        per(at_end)
    );
    Ok(())
}

/// The host's side of bare GEMM calls, event tracking off (the mode left by the table above, and
/// the bench's): per shape, µs per call to enqueue 300 with no wait, and per call with the wait
/// for all of them.
fn gemm_enqueue(dev: &CudaDevice) -> Result<()> {
    println!("\n| shape M×K×N | `CudaWeights::gemm` enqueued, host (µs per call) | the same, waited for (µs per call) |");
    println!("|---|---:|---:|");
    for &(m, k, n) in &[
        (1usize, 4096usize, 4096usize),
        (64, 4096, 4096),
        (128, 4096, 4096),
    ] {
        let wq: Vec<i8> = (0..n * k).map(|i| (i * 37 % 255) as i8).collect();
        let w = CudaWeights::new(dev, &wq, n, k, &[0.01], Bias::None)?;
        let stream = dev.new_stream()?;
        let lda = k.div_ceil(16) * 16;
        let xq: Vec<i8> = (0..m * lda).map(|i| (i * 13 % 251) as i8).collect();
        let x = stream.clone_htod(&xq).map_err(|e| anyhow!("{e:?}"))?;
        let scale = stream
            .clone_htod(&[0.02f32])
            .map_err(|e| anyhow!("{e:?}"))?;
        let mut y = stream
            .alloc_zeros::<i32>(m * n)
            .map_err(|e| anyhow!("{e:?}"))?;
        let mut call = || {
            let act = CudaActScales::PerTensor {
                scale: &scale,
                zero_point: None,
            };
            w.gemm(
                &stream,
                m,
                CudaActivations::S8 { x: &x, lda },
                act,
                CudaOut::I32(&mut y),
            )
        };
        for _ in 0..20 {
            call()?;
        }
        stream.synchronize().map_err(|e| anyhow!("{e:?}"))?;
        let calls = 300;
        let t = Instant::now();
        for _ in 0..calls {
            call()?;
        }
        let enqueue = t.elapsed().as_secs_f64() / calls as f64 * 1e6;
        stream.synchronize().map_err(|e| anyhow!("{e:?}"))?;
        let waited = t.elapsed().as_secs_f64() / calls as f64 * 1e6;
        println!("| {m}×{k}×{n} | {enqueue:.2} | {waited:.1} |");
    }
    Ok(())
}
