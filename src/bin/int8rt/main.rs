//! bin/int8rt — the `int8rt` command line: a dispatcher over one subcommand per file
//! (`calibrate.rs`, `quantize.rs`, `inspect.rs`, `device.rs`, `tune.rs`). It sits on top of the library: it reads files,
//! calls the safe API, and prints results; every number it prints comes from the library.

mod calibrate;
mod device;
mod inspect;
mod progress;
mod quantize;
mod tune;

use clap::{Parser, Subcommand};

/// int8 inference tools: calibration, quantization and inspection of Linear layers.
#[derive(Parser)]
#[command(name = "int8rt", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Calibrate the range of a float32 `.npy` tensor with every method and print the results.
    Calibrate(calibrate::Args),
    /// Convert every Linear weight of a safetensors checkpoint to int8 (compressed-tensors layout).
    Quantize(quantize::Args),
    /// Print the tensors of a checkpoint and the quantization it carries.
    Inspect(inspect::Args),
    /// Show the device a run would use (`--device auto|cpu|cuda|cuda:N`) and why.
    Device(device::Args),
    /// Measure on this GPU the fastest GEMM kernel per Linear shape of a checkpoint and row
    /// count; write the tunings for `set_tuning`.
    Tune(tune::Args),
}

/// Write a command's report to stdout; a closed pipe (`| head`) ends the output quietly.
pub fn emit(s: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    match o.write_all(s.as_bytes()).and_then(|_| o.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Calibrate(args) => calibrate::run(args),
        Command::Quantize(args) => quantize::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Device(args) => device::run(args),
        Command::Tune(args) => tune::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", report(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, `outer: inner: …`, leaving out a cause whose text the
/// message already holds (the library's errors quote their source, as in `I/O error on `x`: No
/// such file or directory`, and also return it from `source()`, so anyhow's `{:#}` said it twice).
fn report(e: &anyhow::Error) -> String {
    let mut s = String::new();
    for cause in e.chain() {
        let c = cause.to_string();
        if !s.contains(&c) {
            if !s.is_empty() {
                s.push_str(": ");
            }
            s.push_str(&c);
        }
    }
    s
}
