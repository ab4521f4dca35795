//! bin/int8rt — the `int8rt` command line: a dispatcher over one subcommand per file
//! (`calibrate.rs`, …). It sits on top of the library: it reads files, calls the safe API, and
//! prints results; every number it prints comes from the library.

mod calibrate;

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
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Calibrate(args) => calibrate::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
