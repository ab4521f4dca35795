//! src/bin/int8rt/tune.rs — `int8rt tune CHECKPOINT -o DIR [--rows 1,8,32,128]`: measure on this
//! machine's GPU which GEMM kernel runs each Linear shape of a compressed-tensors checkpoint
//! fastest per activation row count (the library's `CudaQuantLinear::tune`: every candidate
//! checked for the default path's bits first), print the choices, and write one tuning per shape
//! (`DIR/<n>x<k>.tuning`, `GemmTuning::to_text`) for a server to load with `set_tuning`.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args as ClapArgs;
use int8rt::Device;

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// A compressed-tensors checkpoint: a directory with model.safetensors and config.json
    /// (`int8rt quantize` writes one).
    checkpoint: PathBuf,
    /// Where the tuning files go (created if missing).
    #[arg(short, long)]
    out: PathBuf,
    /// Activation row counts to measure (each covers the calls with up to that many rows).
    #[arg(long, value_delimiter = ',', default_value = "1,8,32,128")]
    rows: Vec<usize>,
    /// `auto`, `cuda` or `cuda:N` (the CPU has nothing to tune).
    #[arg(long, default_value = "auto")]
    device: String,
    /// Timed calls per candidate (the median counts).
    #[arg(long, default_value_t = 20)]
    reps: usize,
    /// Time back-to-back calls with the weights left in L2 (default: evicted before each call,
    /// as between the layers of a model).
    #[arg(long)]
    warm_l2: bool,
    /// Also try the kernels not yet run on a GPU by the project (verified for bits like the
    /// others; a kernel that faults would end the run).
    #[arg(long)]
    include_unproven: bool,
}

pub fn run(a: Args) -> Result<()> {
    let mut out = String::new();
    let r = tune(&a, &mut out);
    crate::emit(&out)?;
    r
}

fn tune(a: &Args, out: &mut String) -> Result<()> {
    let dev = match Device::from_spec(&a.device)? {
        Device::Cuda(d) => d,
        cpu => bail!("tune measures GPU kernels, and the device is {cpu}"),
    };
    measure(a, &dev, out)
}

#[cfg(not(feature = "cuda"))]
fn measure(_: &Args, _: &int8rt::cuda::CudaDevice, _: &mut String) -> Result<()> {
    bail!("this int8rt was built without its GPU backend (the `cuda` feature)")
}

#[cfg(feature = "cuda")]
fn measure(a: &Args, dev: &int8rt::cuda::CudaDevice, out: &mut String) -> Result<()> {
    use anyhow::Context as _;
    use int8rt::cuda::TuneOptions;
    use int8rt::io::CompressedCheckpoint;
    use int8rt::nn::ActivationQuant;
    use std::collections::BTreeMap;
    use std::fmt::Write as _;
    let ck = CompressedCheckpoint::open_dir(&a.checkpoint)
        .with_context(|| format!("opening {}", a.checkpoint.display()))?;
    // One measurement per weight shape: layers of a shape share its tuning.
    let mut shapes: BTreeMap<(usize, usize), Vec<String>> = BTreeMap::new();
    for name in ck.validate()? {
        let w = format!("{name}.weight");
        let info = ck
            .tensors()
            .info(&w)
            .with_context(|| format!("{w} vanished"))?;
        let &[n, k] = &info.shape[..] else {
            bail!("{w} has shape {:?}", info.shape);
        };
        shapes.entry((n, k)).or_default().push(name);
    }
    if shapes.is_empty() {
        bail!("{} has no quantized Linear layer", a.checkpoint.display());
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let opts = TuneOptions {
        reps: a.reps,
        flush_l2: !a.warm_l2,
        include_unproven: a.include_unproven,
        ..TuneOptions::default()
    };
    let stream = dev.new_stream()?;
    writeln!(out, "tuning {} shapes on {dev:?}", shapes.len())?;
    let mut rejected = 0;
    for ((n, k), names) in &shapes {
        let l = ck.linear(&names[0])?;
        // The activation scheme does not change the GEMM a tuning measures.
        let act = l.activation_quant().unwrap_or(ActivationQuant::default());
        let mut gl = l.to_quant_linear_with(act)?.to_cuda(dev)?;
        let report = gl.tune(&stream, &a.rows, &opts)?;
        let file = a.out.join(report.tuning.file_name());
        std::fs::write(&file, report.tuning.to_text())
            .with_context(|| format!("writing {}", file.display()))?;
        writeln!(
            out,
            "\n[{n}, {k}] ({} layers, e.g. {}) → {}",
            names.len(),
            names[0],
            file.display()
        )?;
        for e in report.tuning.entries() {
            writeln!(
                out,
                "  ≤ {:>5} rows: {:<24} {:>9.2} µs  (auto {:>9.2} µs, {:.2}×)",
                e.m,
                e.kernel.to_string(),
                e.seconds * 1e6,
                e.auto_seconds * 1e6,
                e.auto_seconds / e.seconds
            )?;
        }
        for (m, kernel, why) in report.rejected() {
            rejected += 1;
            writeln!(out, "  REJECTED at {m} rows: {kernel}: {why}")?;
        }
    }
    if rejected > 0 {
        bail!("{rejected} candidate kernels gave other bits than the default path on this GPU (never chosen; please report)");
    }
    Ok(())
}
