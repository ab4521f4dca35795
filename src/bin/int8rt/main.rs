//! src/bin/int8rt/main.rs — the `int8rt` command line: a clap-derive dispatcher with one file per
//! subcommand. It sits on top of the library: `quantize` turns a float safetensors checkpoint
//! into a compressed-tensors int8 one (`int8rt::io`), `inspect` shows what a checkpoint holds.

mod inspect;
mod progress;
mod quantize;

use clap::{Parser, Subcommand};

/// int8 inference tools: quantize checkpoints, inspect them.
#[derive(Parser, Debug)]
#[command(name = "int8rt", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Convert every Linear weight of a safetensors checkpoint to int8 (compressed-tensors layout).
    Quantize(quantize::Args),
    /// Print the tensors of a checkpoint and the quantization it carries.
    Inspect(inspect::Args),
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

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Quantize(a) => quantize::run(a),
        Command::Inspect(a) => inspect::run(a),
    }
}
