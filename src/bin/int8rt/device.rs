//! bin/int8rt/device.rs — `int8rt device --device auto|cpu|cuda|cuda:N`: which device a run
//! would use and why (the `--device` flag other subcommands take), and how the GPU kernels were
//! built and load on it.

use anyhow::Result;
use clap::Args as ClapArgs;
use int8rt::cuda::registry;
use int8rt::Device;

#[derive(ClapArgs)]
pub struct Args {
    /// `auto` (a GPU when one is usable, else the CPU), `cpu`, `cuda` or `cuda:N`.
    #[arg(long, default_value = "auto")]
    pub device: String,
}

pub fn run(args: Args) -> Result<()> {
    let device = Device::from_spec(&args.device)?;
    println!("device: {device}");
    println!("kernels: {}", registry::BUILD_NOTE);
    #[cfg(feature = "cuda")]
    if let Device::Cuda(d) = &device {
        for &m in registry::Module::ALL {
            match d.module_image(m) {
                Ok(img) => println!("  {}: loaded from {img:?}", m.file()),
                Err(e) => println!("  {}: cannot load: {e}", m.file()),
            }
        }
    }
    Ok(())
}
