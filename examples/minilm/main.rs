//! examples/minilm — all-MiniLM-L6-v2 with its 36 Linear layers in int8, against the f32 model,
//! on real WordNet sentences. Fetch the model and sentences first (not committed):
//!
//! ```text
//! scripts/fetch-real-data.sh
//! cargo run --release --example minilm -- [--pairs 1000] [--calib 128] [--batch 32]
//!     [--threads N] [--checkpoint DIR]
//! ```
//!
//! Reports, for every variant, the mean and minimum cosine similarity of its embeddings to the
//! f32 ones (over `2 · pairs` sentences: a gloss and an example per WordNet synset), example →
//! gloss retrieval recall@1, and the median latency of a batch. `--checkpoint DIR` adds a row for
//! a compressed-tensors checkpoint written by `int8rt quantize` (its stored scales, its scheme).

mod eval;
mod model;
mod tokenizer;
mod wordnet;

use anyhow::{bail, Context as _, Result};
use int8rt::gemm::Context;
use int8rt::io::CompressedCheckpoint;
use int8rt::nn::ActivationQuant;
use int8rt::quant::{Granularity, QuantParams};

use eval::{Batches, CalibMethod, QuantLinears, Row};
use model::{F32Linears, MiniLm};

struct Args {
    models: String,
    wordnet: String,
    pairs: usize,
    calib: usize,
    batch: usize,
    threads: usize,
    checkpoint: Option<String>,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        models: "models/all-MiniLM-L6-v2".into(),
        wordnet: "data/fetched/wordnet".into(),
        pairs: 1000,
        calib: 128,
        batch: 32,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        checkpoint: None,
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
            "--checkpoint" => a.checkpoint = Some(v()?),
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
    let ctx = Context::new().with_threads(args.threads);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    println!(
        "all-MiniLM-L6-v2, {} eval sentences ({} WordNet pairs), {} calibration sentences, batch {}, {} threads on {cpu}",
        sentences.len(),
        pairs.len(),
        calib_sentences.len(),
        args.batch,
        args.threads
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

    let mut rows: Vec<Row> = Vec::new();
    let f32_lin = F32Linears {
        layers: &model.linears,
        threads: args.threads,
    };
    let (r, reference) = eval::evaluate("f32", &model, &f32_lin, &batches, None)?;
    let f32_batch = r.batch_s;
    rows.push(r);
    eprintln!("f32 done");

    let wo = eval::weight_only_layers(&model)?;
    let wo_lin = F32Linears {
        layers: &wo,
        threads: args.threads,
    };
    rows.push(
        eval::evaluate(
            "W8 weight-only (dequantized, f32 path)",
            &model,
            &wo_lin,
            &batches,
            Some(&reference),
        )?
        .0,
    );
    eprintln!("weight-only done");

    for (name, g) in [
        ("W8A8 dynamic per-token", Granularity::PerRow),
        ("W8A8 dynamic per-tensor", Granularity::PerTensor),
    ] {
        let lin = QuantLinears {
            layers: eval::quant_layers(&model, |_| eval::dynamic(g))?,
            ctx: ctx.clone(),
        };
        rows.push(eval::evaluate(name, &model, &lin, &batches, Some(&reference))?.0);
        eprintln!("{name} done");
    }

    let amax = eval::calibrate_max(&model, &calib_batches, args.threads)?;
    for method in [CalibMethod::Max] {
        let acts = amax
            .iter()
            .map(|&a| Ok(ActivationQuant::Static(QuantParams::symmetric(a)?)))
            .collect::<Result<Vec<_>>>()?;
        let lin = QuantLinears {
            layers: eval::quant_layers(&model, |i| acts[i])?,
            ctx: ctx.clone(),
        };
        let name = format!("W8A8 static per-tensor, {method}");
        rows.push(eval::evaluate(&name, &model, &lin, &batches, Some(&reference))?.0);
        eprintln!("{name} done");
    }

    if let Some(dir) = &args.checkpoint {
        let ck = CompressedCheckpoint::open_dir(dir)?;
        let mut layers = Vec::new();
        for d in &model.linears {
            let l = ck.linear(&d.name)?;
            layers.push(match l.activation_quant() {
                Some(_) => l.to_quant_linear()?,
                None => bail!("{dir}: weight-only checkpoints run through the f32 path; quantize with --scheme w8a8-*"),
            });
        }
        eval::check_layers(&model, &layers)?;
        let lin = QuantLinears {
            layers,
            ctx: ctx.clone(),
        };
        rows.push(
            eval::evaluate(
                &format!("checkpoint {dir}"),
                &model,
                &lin,
                &batches,
                Some(&reference),
            )?
            .0,
        );
    }

    println!();
    eval::print_table(&rows, f32_batch, sentences.len());
    println!(
        "\nlast int8 path: {:?}; f32 GEMM: the `gemm` crate; latency = median wall time of one batch of {} sentences",
        ctx.last_path(),
        args.batch
    );
    Ok(())
}
