//! benches/gpu_calib_collect.rs — calibration collection over activations already in GPU memory
//! (DESIGN.md §3, "GPU collection"): the observers' `observe_cuda` (kernels/calib.cu: one
//! reduction, then one counting kernel per histogram, each followed by its small read-back)
//! against the path without the kernels, copying the batch to the host and observing it there
//! (single-threaded, as `benches/calib.rs` measures the host). Criterion measures wall time; every
//! `observe_cuda` waits for its stream before it returns (it reads the range and the counts back),
//! so no work is left in flight when the clock stops. Throughput is the batch's f32 bytes. Without
//! a GPU it prints why and measures nothing.
//!
//!   cargo bench --bench gpu_calib_collect
//!   cargo bench --bench gpu_calib_collect -- 'gpu_calib/16Mi'

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use int8rt::calib::{
    Histogram, HistogramConfig, MaxObserver, NonFinite, ObserverConfig, TensorObserver,
};
use int8rt::cuda::{CudaBatch, CudaDevice};

/// Approximately normal data (Irwin–Hall of 4 LCG uniforms), as `benches/calib.rs`.
fn data(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    let mut u = move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 40) as f32 / (1u64 << 24) as f32
    };
    (0..len)
        .map(|_| (u() + u() + u() + u() - 2.0) * 1.732)
        .collect()
}

fn main() {
    let dev = match CudaDevice::new(0) {
        Ok(d) => d,
        Err(e) => {
            if std::env::var("INT8RT_REQUIRE_CUDA").as_deref() == Ok("1") {
                eprintln!("gpu_calib_collect: INT8RT_REQUIRE_CUDA=1 but no usable GPU: {e}");
                std::process::exit(1);
            }
            eprintln!("gpu_calib_collect: no GPU ({e}); nothing measured");
            return;
        }
    };
    eprintln!("gpu_calib_collect on {}", dev.name());
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let s = dev.default_stream();
    for (label, len) in [
        ("1Mi", 1usize << 20),
        ("16Mi", 16 << 20),
        ("64Mi", 64 << 20),
    ] {
        let x = data(len, 7);
        let xd = s.clone_htod(&x).expect("upload");
        let shape = [len / 1024, 1024];
        let mut g = c.benchmark_group(format!("gpu_calib/{label}"));
        g.throughput(Throughput::Bytes((len * 4) as u64));
        g.sample_size(20);
        // Seed each observer with the batch once, so every measured call bins into a fixed grid.
        let mut h = Histogram::new("x", HistogramConfig::default()).unwrap();
        h.observe_cuda(&mut CudaBatch::new(&dev, &s, &xd, &shape).unwrap())
            .unwrap();
        g.bench_function(BenchmarkId::new("histogram", "observe_cuda"), |b| {
            b.iter(|| {
                let mut batch = CudaBatch::new(&dev, &s, &xd, &shape).unwrap();
                h.observe_cuda(&mut batch).unwrap();
            })
        });
        let mut m = MaxObserver::new("x", NonFinite::Error);
        g.bench_function(BenchmarkId::new("max", "observe_cuda"), |b| {
            b.iter(|| {
                let mut batch = CudaBatch::new(&dev, &s, &xd, &shape).unwrap();
                m.observe_cuda(&mut batch).unwrap();
            })
        });
        let mut per_channel = MaxObserver::per_channel("x", 1, NonFinite::Error);
        g.bench_function(
            BenchmarkId::new("max_per_channel_1024", "observe_cuda"),
            |b| {
                b.iter(|| {
                    let mut batch = CudaBatch::new(&dev, &s, &xd, &shape).unwrap();
                    per_channel.observe_cuda(&mut batch).unwrap();
                })
            },
        );
        let mut t = TensorObserver::new("x", ObserverConfig::default()).unwrap();
        g.bench_function(BenchmarkId::new("tensor_observer", "observe_cuda"), |b| {
            b.iter(|| {
                let mut batch = CudaBatch::new(&dev, &s, &xd, &shape).unwrap();
                t.observe_cuda(&mut batch).unwrap();
            })
        });
        // Without the kernels: copy the batch to the host, observe it there.
        let mut hh = Histogram::new("x", HistogramConfig::default()).unwrap();
        hh.observe(&x).unwrap();
        let mut host = vec![0.0f32; len];
        g.bench_function(BenchmarkId::new("histogram", "copy_to_host+observe"), |b| {
            b.iter(|| {
                s.memcpy_dtoh(&xd, &mut host).expect("copy");
                s.synchronize().expect("sync");
                hh.observe(&host).unwrap();
            })
        });
        g.finish();
    }
    c.final_summary();
}
