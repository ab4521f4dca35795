//! examples/cuda_linear.rs — run one quantized Linear layer on the device a `--device` flag names
//! (`auto`, `cpu`, `cuda`, `cuda:N`), and check it against the CPU layer bit for bit. Without a
//! GPU, `auto` falls back to the CPU and says why.
//!
//!   cargo run --release --example cuda_linear -- --device auto

use anyhow::{bail, Result};
use int8rt::gemm::OutBuf;
use int8rt::nn::{LinearConfig, QuantLinear};
use int8rt::{Context, Device};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let spec = match args.iter().position(|a| a == "--device") {
        Some(i) => args.get(i + 1).map(String::as_str).unwrap_or("auto"),
        None => "auto",
    };
    let device = Device::from_spec(spec)?;
    println!("device: {device}");

    let (m, k, n) = (4, 512, 256);
    let w: Vec<f32> = (0..n * k)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.002)
        .collect();
    let x: Vec<f32> = (0..m * k)
        .map(|i| ((i * 13 % 29) as f32 - 14.0) * 0.1)
        .collect();
    let layer = QuantLinear::from_f32("fc", &w, n, k, None, LinearConfig::default())?;
    let mut y_cpu = vec![0f32; m * n];
    let path = layer.forward(&Context::new(), &x, m, &mut OutBuf::F32(&mut y_cpu))?;
    println!("cpu: {path:?}, y[0..4] = {:?}", &y_cpu[..4]);

    if let Device::Cuda(dev) = &device {
        let gpu = layer.to_cuda(dev)?;
        let mut y = vec![0f32; m * n];
        let path = gpu.forward(&x, m, &mut OutBuf::F32(&mut y))?;
        println!("gpu: {path:?}, y[0..4] = {:?}", &y[..4]);
        if y.iter()
            .zip(&y_cpu)
            .any(|(a, b)| a.to_bits() != b.to_bits())
        {
            bail!("GPU and CPU results differ");
        }
        println!("GPU and CPU agree bit for bit");
    }
    Ok(())
}
