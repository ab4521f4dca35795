//! tests/qat_gpu.rs — the fake-quantization kernels (`kernels/fake_quant.cu`) on a real GPU, bit
//! for bit against `reference::fake_quantize` / `reference::fake_quantize_grad` and the CPU
//! loops of `qat::FakeQuantizer`, for 2..=8 bits, symmetric and asymmetric, per tensor and per
//! channel, on ties, clip edges, ±0 and huge values. Without a GPU every test returns early,
//! unless `INT8RT_REQUIRE_CUDA=1`, which turns "no GPU" into a failure. (The same kernels run in
//! the host simulation in every build: `cuda::fake_quant` unit tests.)

#![cfg(feature = "cuda")]

mod common;

use common::Rng;
use int8rt::cuda::CudaDevice;
use int8rt::qat::{FakeQuantConfig, FakeQuantizer};
use int8rt::quant::Granularity;
use int8rt::reference;

/// Device 0, or `None` (skip) — a failure under `INT8RT_REQUIRE_CUDA=1`.
fn gpu() -> Option<CudaDevice> {
    match CudaDevice::new(0) {
        Ok(d) => Some(d),
        Err(e) => {
            if std::env::var("INT8RT_REQUIRE_CUDA").as_deref() == Ok("1") {
                panic!("INT8RT_REQUIRE_CUDA=1 but no usable GPU: {e}");
            }
            eprintln!("no GPU, GPU test skipped: {e}");
            None
        }
    }
}

#[test]
fn fake_quant_kernels_match_reference_and_cpu_on_the_gpu() {
    let Some(dev) = gpu() else { return };
    let mut rng = Rng::new(31);
    for bits in 2..=8 {
        for symmetric in [true, false] {
            for granularity in [Granularity::PerTensor, Granularity::PerChannel] {
                let channels = 4;
                let cfg = FakeQuantConfig {
                    bits,
                    symmetric,
                    granularity,
                    learn_scale: true,
                    learn_zero_point: !symmetric,
                };
                let mut fq = FakeQuantizer::new(cfg, channels).unwrap();
                let (qmin, qmax) = (fq.qmin(), fq.qmax());
                let n = fq.channels();
                let scales: Vec<f32> = (0..n).map(|_| rng.uniform(0.01, 2.0)).collect();
                let zps: Vec<i32> = (0..n)
                    .map(|_| if symmetric { 0 } else { rng.int(qmin, qmax) })
                    .collect();
                fq.set_params(&scales, &zps).unwrap();
                let inner = 3001;
                let mut x = Vec::new();
                for c in 0..channels {
                    let (s, zp) = fq.effective(if n == 1 { 0 } else { c }).unwrap();
                    let mut v = vec![0.0f32, -0.0, -1e-30, 1e-40, 3e38, -3e38];
                    for k in (qmin - zp - 2)..=(qmax - zp + 2) {
                        for off in [-0.5f32, 0.0, 0.5] {
                            let t = (k as f32 + off) * s;
                            v.extend([t, t.next_up(), t.next_down()]);
                        }
                    }
                    let span = (qmax - qmin + 4) as f32 * s;
                    while v.len() < inner {
                        v.push(rng.uniform(-span, span));
                    }
                    v.truncate(inner);
                    x.extend(v);
                }
                let y = fq.forward_cuda_host(&dev, "x", &x).unwrap();
                let (dx, ds, dz) = fq.grad_cuda_host(&dev, "x", &x).unwrap();
                let mut cpu = vec![f32::NAN; x.len()];
                fq.forward("x", &x, &mut cpu).unwrap();
                for i in 0..x.len() {
                    let (s, zp) = fq.effective(if n == 1 { 0 } else { i / inner }).unwrap();
                    let want = reference::fake_quantize(x[i], s, zp, qmin, qmax);
                    let ctx = format!(
                        "{bits}-bit sym={symmetric} {granularity:?} x[{i}] = {:e}",
                        x[i]
                    );
                    assert_eq!(
                        y[i].to_bits(),
                        want.to_bits(),
                        "forward {ctx}: gpu {} reference {want}",
                        y[i]
                    );
                    assert_eq!(cpu[i].to_bits(), want.to_bits(), "cpu {ctx}");
                    let g = reference::fake_quantize_grad(x[i], s, zp, qmin, qmax);
                    assert_eq!(
                        (dx[i].to_bits(), ds[i].to_bits(), dz[i].to_bits()),
                        (g.dx.to_bits(), g.dscale.to_bits(), g.dzero_point.to_bits()),
                        "gradient {ctx}"
                    );
                }
            }
        }
    }
}

#[test]
fn fake_quant_on_the_gpu_refuses_non_finite_input() {
    let Some(dev) = gpu() else { return };
    let fq = FakeQuantizer::new(FakeQuantConfig::activations(4, false), 1).unwrap();
    match fq.forward_cuda_host(&dev, "fc2.input", &[1.0, 2.0, f32::INFINITY, f32::NAN]) {
        Err(int8rt::Error::NonFinite {
            tensor,
            count,
            first_index,
        }) => assert_eq!((tensor.as_str(), count, first_index), ("fc2.input", 2, 2)),
        other => panic!("expected NonFinite, got {other:?}"),
    }
}
