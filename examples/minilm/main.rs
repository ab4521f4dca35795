//! examples/minilm — all-MiniLM-L6-v2 with its 36 Linear layers in int8, against the f32 model,
//! on real WordNet sentences. Fetch the model and sentences first (not committed):
//!
//! ```text
//! scripts/fetch-real-data.sh
//! cargo run --release --example minilm -- [--pairs 1000] [--calib 128] [--batch 32]
//!     [--threads N] [--spin-us US] [--reps 3] [--checkpoint DIR] [--ranges]
//!     [--device auto|cpu|cuda[:N]]
//! ```
//!
//! Reports, for every variant, the mean and minimum cosine similarity of its embeddings to the
//! f32 ones (over `2 · pairs` sentences: a gloss and an example per WordNet synset), example →
//! gloss retrieval recall@1, and the median latency of a batch. `--checkpoint DIR` adds a row for
//! a compressed-tensors checkpoint written by `int8rt quantize` (its stored scales, its scheme);
//! `--ranges` prints the input range each calibration method picks for each layer. On a machine
//! with a GPU (`--device auto`, the default, finds one), a GPU row runs the per-token W8A8 layers
//! through `CudaQuantLinear` (host slices in and out, copies included), and its embeddings are
//! checked bit for bit against the CPU's. `--spin-us US` runs the CPU layers on the spinning pool
//! (`Context::with_spin`, a window of US microseconds) instead of rayon's.

mod eval;
mod model;
mod tokenizer;
mod wordnet;

use anyhow::{bail, Context as _, Result};
use int8rt::gemm::Context;
use int8rt::io::CompressedCheckpoint;
use int8rt::quant::Granularity;

use eval::{Batches, CalibMethod, QuantLinears, Row};
use model::{F32Linears, Linears, MiniLm};

struct Args {
    models: String,
    wordnet: String,
    pairs: usize,
    calib: usize,
    batch: usize,
    threads: usize,
    spin_us: Option<u64>,
    checkpoint: Option<String>,
    ranges: bool,
    reps: usize,
    device: String,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        models: "models/all-MiniLM-L6-v2".into(),
        wordnet: "data/fetched/wordnet".into(),
        pairs: 1000,
        calib: 128,
        batch: 32,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        spin_us: None,
        checkpoint: None,
        ranges: false,
        reps: 3,
        device: "auto".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().with_context(|| format!("{k} needs a value"));
        match k.as_str() {
            "--models" => a.models = v()?,
            "--wordnet" => a.wordnet = v()?,
            "--pairs" => a.pairs = v()?.parse()?,
            "--calib" => a.calib = v()?.parse()?,
            "--batch" => a.batch = v()?.parse()?,
            "--threads" => a.threads = v()?.parse()?,
            "--spin-us" => a.spin_us = Some(v()?.parse()?),
            "--checkpoint" => a.checkpoint = Some(v()?),
            "--ranges" => a.ranges = true,
            "--reps" => a.reps = v()?.parse()?,
            "--device" => a.device = v()?,
            "-h" | "--help" => {
                println!("see the header of examples/minilm/main.rs");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(a)
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let model = MiniLm::load(&args.models)
        .with_context(|| format!("loading {} (run scripts/fetch-real-data.sh)", args.models))?;
    let tok = tokenizer::WordPiece::from_file(format!("{}/tokenizer.json", args.models))?;
    let all = wordnet::load_pairs(&args.wordnet)
        .with_context(|| format!("reading {} (run scripts/fetch-real-data.sh)", args.wordnet))?;
    let (pairs, calib_pairs) = wordnet::split(&all, args.pairs, args.calib);
    let sentences = eval::sentences(&pairs);
    let calib_sentences = eval::sentences(&calib_pairs);
    let batches = Batches::new(&tok, &sentences, args.batch);
    let calib_batches = Batches::new(&tok, &calib_sentences, args.batch);
    let mut ctx = Context::new().with_threads(args.threads);
    if let Some(us) = args.spin_us {
        ctx = ctx.with_spin(std::time::Duration::from_micros(us));
    }
    let device = int8rt::Device::from_spec(&args.device)?;
    println!("device: {device}");
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    println!(
        "all-MiniLM-L6-v2, {} eval sentences ({} WordNet pairs), {} calibration sentences, batch {}, {} threads{} on {cpu}",
        sentences.len(),
        pairs.len(),
        calib_sentences.len(),
        args.batch,
        args.threads,
        args.spin_us
            .map_or(String::new(), |us| format!(" (spinning pool, {us} µs window)"))
    );
    let tokens: usize = batches
        .batches
        .iter()
        .map(|b| b.mask.iter().filter(|&&m| m == 1).count())
        .sum();
    println!(
        "{tokens} tokens ({:.1} per sentence)",
        tokens as f64 / sentences.len().max(1) as f64
    );

    // A checkpoint written by `int8rt quantize`: its int8 layers with their stored scales, or
    // for a weight-only checkpoint its dequantized weights on the f32 path.
    let (mut ck_int8, mut ck_dense) = (None, Vec::new());
    if let Some(dir) = &args.checkpoint {
        let ck = CompressedCheckpoint::open_dir(dir)?;
        let loaded = model
            .linears
            .iter()
            .map(|d| Ok(ck.linear(&d.name)?))
            .collect::<Result<Vec<_>>>()?;
        if loaded.iter().all(|l| l.activation_quant().is_none()) {
            for (l, d) in loaded.iter().zip(&model.linears) {
                ck_dense.push(model::Dense {
                    weight: l.weights.dequantize(),
                    bias: l.bias.clone().unwrap_or_else(|| d.bias.clone()),
                    ..d.clone()
                });
            }
        } else {
            let layers = loaded
                .iter()
                .map(|l| Ok(l.to_quant_linear()?))
                .collect::<Result<Vec<_>>>()?;
            eval::check_layers(&model, &layers)?;
            ck_int8 = Some(layers);
        }
    }

    // Every variant's 36 Linear layers.
    let wo = eval::weight_only_layers(&model)?;
    let mut variants: Vec<(String, Box<dyn Linears + '_>)> = vec![
        (
            "f32".into(),
            Box::new(F32Linears {
                layers: &model.linears,
                threads: args.threads,
            }),
        ),
        (
            "W8 weight-only (dequantized, f32 path)".into(),
            Box::new(F32Linears {
                layers: &wo,
                threads: args.threads,
            }),
        ),
    ];
    for (name, g) in [
        ("W8A8 dynamic per-token", Granularity::PerRow),
        ("W8A8 dynamic per-tensor", Granularity::PerTensor),
    ] {
        let layers = eval::quant_layers(&model, |_| eval::dynamic(g))?;
        variants.push((
            name.into(),
            Box::new(QuantLinears {
                layers,
                ctx: ctx.clone(),
            }),
        ));
    }
    // On a GPU: the per-token layers again, uploaded once, run through `CudaQuantLinear`.
    #[allow(unused_mut)] // assigned only with the `cuda` feature
    let mut gpu_row: Option<usize> = None;
    #[cfg(feature = "cuda")]
    if let int8rt::Device::Cuda(dev) = &device {
        let layers = eval::quant_layers(&model, |_| eval::dynamic(Granularity::PerRow))?
            .iter()
            .map(|l| Ok(l.to_cuda(dev)?))
            .collect::<Result<Vec<_>>>()?;
        gpu_row = Some(variants.len());
        variants.push((
            format!("W8A8 dynamic per-token, GPU ({})", dev.name()),
            Box::new(eval::CudaLinears { layers }),
        ));
    }
    let run = eval::calibrate(&model, &calib_batches, args.threads)?;
    if args.ranges {
        eval::print_ranges(&model, &run)?;
    }
    for method in CalibMethod::ALL {
        let acts = eval::static_acts(&model, &run, method)?;
        let layers = eval::quant_layers(&model, |i| acts[i])?;
        let name = format!("W8A8 static per-tensor, {method}");
        variants.push((
            name,
            Box::new(QuantLinears {
                layers,
                ctx: ctx.clone(),
            }),
        ));
    }
    if let Some(layers) = ck_int8 {
        let name = format!("checkpoint {}", args.checkpoint.as_deref().unwrap_or(""));
        variants.push((
            name,
            Box::new(QuantLinears {
                layers,
                ctx: ctx.clone(),
            }),
        ));
    } else if !ck_dense.is_empty() {
        let name = format!(
            "checkpoint {} (weight-only, dequantized)",
            args.checkpoint.as_deref().unwrap_or("")
        );
        variants.push((
            name,
            Box::new(F32Linears {
                layers: &ck_dense,
                threads: args.threads,
            }),
        ));
    }

    // Accuracy: every variant against the f32 embeddings.
    let lins: Vec<&dyn Linears> = variants.iter().map(|(_, l)| l.as_ref()).collect();
    let (reference, _) = eval::encode_all(&model, lins[0], &batches)?;
    // The GPU's embeddings must be the CPU per-token layers' bits: keep those two rows' outputs.
    let cpu_row = (variants.iter()).position(|(n, _)| n == "W8A8 dynamic per-token");
    let mut kept: Vec<(usize, Vec<Vec<f32>>)> = Vec::new();
    let mut rows: Vec<Row> = Vec::new();
    for (i, (name, lin)) in variants.iter().enumerate() {
        let (row, emb) = eval::evaluate(name, &model, lin.as_ref(), &batches, Some(&reference))?;
        rows.push(row);
        if gpu_row.is_some() && (Some(i) == gpu_row || Some(i) == cpu_row) {
            kept.push((i, emb));
        }
        eprintln!("{name}: accuracy done");
    }
    if gpu_row.is_some() {
        let [(_, cpu_emb), (_, gpu_emb)] = &kept[..] else {
            bail!("the CPU per-token row is missing");
        };
        let (cpu_v, gpu_v) = (cpu_emb.concat(), gpu_emb.concat());
        let same = cpu_v.len() == gpu_v.len()
            && cpu_v
                .iter()
                .zip(&gpu_v)
                .all(|(a, b)| a.to_bits() == b.to_bits());
        if !same {
            bail!("GPU per-token embeddings differ from the CPU's");
        }
        println!(
            "GPU per-token embeddings == CPU per-token embeddings, bit for bit ({} sentences, {} values)",
            gpu_emb.len(),
            gpu_v.len()
        );
    }
    // Latency: the variants interleaved batch by batch, so load from other processes falls on
    // all of them alike; the speed-up is the median of per-batch ratios.
    eprintln!(
        "timing {} repetitions of {} batches per variant ...",
        args.reps,
        batches.batches.len()
    );
    eval::time_interleaved(&model, &lins, &batches, args.reps, &mut rows)?;

    println!();
    eval::print_table(&rows, sentences.len());
    println!(
        "\nint8 path: {:?}; f32 GEMM: the `gemm` crate; ms / batch = median wall time of one batch of {} sentences over {} interleaved repetitions",
        ctx.last_path(),
        args.batch,
        args.reps
    );
    Ok(())
}
