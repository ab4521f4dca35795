//! examples/minilm/eval.rs — the quantized sentence encoder against the f32 one: builds each
//! variant's Linear layers (weight-only int8, W8A8 dynamic, W8A8 static from a calibration run),
//! encodes the same sentences with each, and reports cosine similarity to the f32 embeddings,
//! gloss↔example retrieval recall@1 and latency per batch. Shared by `examples/minilm/main.rs`
//! and `tests/minilm.rs`.

use std::sync::Mutex;
use std::time::Instant;

use anyhow::{bail, Result};
use int8rt::calib::{AmaxMethod, Method, ObserverConfig};
use int8rt::gemm::Context;
use int8rt::nn::{ActivationQuant, CalibrationRun, LinearConfig, QuantLinear};
use int8rt::quant::{self, Granularity, Scheme, WeightQuantConfig};

use super::model::{Batch, Dense, F32Linears, LinearCtx, Linears, MiniLm};
use super::tokenizer::WordPiece;
use super::wordnet::Pair;

/// int8 Linears: `QuantLinear` on the crate's automatically chosen path.
pub struct QuantLinears {
    pub layers: Vec<QuantLinear>,
    pub ctx: Context,
}

impl Linears for QuantLinears {
    fn apply(&self, idx: usize, x: &[f32], rows: usize, _: &LinearCtx<'_>) -> Result<Vec<f32>> {
        Ok(self.layers[idx].forward_f32(&self.ctx, x, rows)?)
    }
}

/// int8 Linears on a GPU: `CudaQuantLinear` from host slices to host slices (copies included).
#[cfg(feature = "cuda")]
pub struct CudaLinears {
    pub layers: Vec<int8rt::cuda::CudaQuantLinear>,
}

#[cfg(feature = "cuda")]
impl Linears for CudaLinears {
    fn apply(&self, idx: usize, x: &[f32], rows: usize, _: &LinearCtx<'_>) -> Result<Vec<f32>> {
        let l = &self.layers[idx];
        let mut y = vec![0f32; rows * l.out_features()];
        l.forward(x, rows, &mut int8rt::gemm::OutBuf::F32(&mut y))?;
        Ok(y)
    }
}

/// Runs the f32 model and hands every Linear's input rows that are real tokens (padding rows
/// excluded) to `observe(layer index, rows, row-major data)`.
pub struct Recorder<'a, F: Fn(usize, usize, &[f32]) -> Result<()> + Sync> {
    pub inner: F32Linears<'a>,
    pub observe: F,
}

impl<F: Fn(usize, usize, &[f32]) -> Result<()> + Sync> Linears for Recorder<'_, F> {
    fn apply(&self, idx: usize, x: &[f32], rows: usize, ctx: &LinearCtx<'_>) -> Result<Vec<f32>> {
        let k = x.len() / rows.max(1);
        let mut tokens = Vec::with_capacity(x.len());
        let mut n = 0;
        for r in 0..rows {
            if ctx.batch.is_token(r) {
                tokens.extend_from_slice(&x[r * k..(r + 1) * k]);
                n += 1;
            }
        }
        (self.observe)(idx, n, &tokens)?;
        self.inner.apply(idx, x, rows, ctx)
    }
}

/// Quantize every Linear of the model into a `QuantLinear` (weights per channel, the crate's
/// narrow symmetric convention) with activation quantization `act(idx)`.
pub fn quant_layers(
    model: &MiniLm,
    act: impl Fn(usize) -> ActivationQuant,
) -> Result<Vec<QuantLinear>> {
    model
        .linears
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let cfg = LinearConfig {
                weights: WeightQuantConfig::default(),
                activations: act(i),
            };
            Ok(QuantLinear::from_f32(
                &d.name,
                &d.weight,
                d.out_features,
                d.in_features,
                Some(&d.bias),
                cfg,
            )?)
        })
        .collect()
}

/// Weight-only int8: each weight quantized per channel and dequantized, run by the f32 path.
/// (`QuantLinear` has no weight-only mode yet; this measures the accuracy of int8 weights, and
/// its latency is that of the f32 model.)
pub fn weight_only_layers(model: &MiniLm) -> Result<Vec<Dense>> {
    model
        .linears
        .iter()
        .map(|d| {
            let q = quant::quantize_weights(
                &d.name,
                &d.weight,
                d.out_features,
                d.in_features,
                WeightQuantConfig::default(),
            )?;
            Ok(Dense {
                weight: q.dequantize(),
                ..d.clone()
            })
        })
        .collect()
}

/// Token ids of many sentences, batched by length (sorted, so padding stays small) in batches of
/// `batch_size`; `order[i]` is the sentence index of the i-th row across batches.
pub struct Batches {
    pub batches: Vec<Batch>,
    pub order: Vec<usize>,
}

impl Batches {
    pub fn new(tok: &WordPiece, sentences: &[&str], batch_size: usize) -> Batches {
        let ids: Vec<Vec<u32>> = sentences.iter().map(|s| tok.encode(s)).collect();
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| (ids[i].len(), i));
        let batches = order
            .chunks(batch_size.max(1))
            .map(|c| Batch::new(&c.iter().map(|&i| ids[i].clone()).collect::<Vec<_>>()))
            .collect();
        Batches { batches, order }
    }
}

/// Embeddings of all sentences (in their original order) and the wall time of each batch.
pub fn encode_all(
    model: &MiniLm,
    lin: &dyn Linears,
    b: &Batches,
) -> Result<(Vec<Vec<f32>>, Vec<f64>)> {
    let h = model.cfg.hidden;
    let mut out = vec![Vec::new(); b.order.len()];
    let mut times = Vec::with_capacity(b.batches.len());
    let mut row = 0;
    for batch in &b.batches {
        let t = Instant::now();
        let e = model.encode(lin, batch)?;
        times.push(t.elapsed().as_secs_f64());
        for emb in e.chunks_exact(h) {
            out[b.order[row]] = emb.to_vec();
            row += 1;
        }
    }
    Ok((out, times))
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

/// Cosine similarity.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    dot(a, b) / (dot(a, a).sqrt() * dot(b, b).sqrt()).max(1e-30)
}

/// Example → gloss retrieval recall@1: embeddings are `[gloss_0, example_0, gloss_1, ...]`.
pub fn recall_at_1(emb: &[Vec<f32>]) -> f64 {
    let n = emb.len() / 2;
    let hits = (0..n)
        .filter(|&i| {
            let e = &emb[2 * i + 1];
            let best = (0..n)
                .max_by(|&a, &b| dot(e, &emb[2 * a]).total_cmp(&dot(e, &emb[2 * b])))
                .unwrap_or(usize::MAX);
            best == i
        })
        .count();
    hits as f64 / n.max(1) as f64
}

/// One row of the report.
#[derive(Clone, Debug)]
pub struct Row {
    pub name: String,
    pub mean_cos: f64,
    pub min_cos: f64,
    pub recall: f64,
    /// Median seconds per batch.
    pub batch_s: f64,
    /// Total encoding seconds over all batches.
    pub total_s: f64,
    /// Median over batches of (f32 time / this variant's time), when timed side by side.
    pub speedup: f64,
}

/// Evaluate one variant against the f32 embeddings.
pub fn evaluate(
    name: &str,
    model: &MiniLm,
    lin: &dyn Linears,
    batches: &Batches,
    reference: Option<&[Vec<f32>]>,
) -> Result<(Row, Vec<Vec<f32>>)> {
    let (emb, mut times) = encode_all(model, lin, batches)?;
    let (mut mean, mut min) = (1.0, 1.0);
    if let Some(r) = reference {
        let cos: Vec<f64> = emb.iter().zip(r).map(|(a, b)| cosine(a, b)).collect();
        mean = cos.iter().sum::<f64>() / cos.len().max(1) as f64;
        min = cos.iter().copied().fold(f64::INFINITY, f64::min);
    }
    let total_s = times.iter().sum();
    times.sort_by(f64::total_cmp);
    let row = Row {
        name: name.to_string(),
        mean_cos: mean,
        min_cos: min,
        recall: recall_at_1(&emb),
        batch_s: times.get(times.len() / 2).copied().unwrap_or(0.0),
        total_s,
        speedup: f64::NAN,
    };
    Ok((row, emb))
}

/// Sentences of `pairs` as `[gloss_0, example_0, gloss_1, example_1, ...]`.
pub fn sentences(pairs: &[Pair]) -> Vec<&str> {
    pairs
        .iter()
        .flat_map(|p| [p.gloss.as_str(), p.example.as_str()])
        .collect()
}

/// How a static per-tensor input range is chosen from the calibration run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CalibMethod {
    Max,
    Percentile(f64),
    Mse,
    Entropy,
}

impl CalibMethod {
    /// The report's methods: min-max and the three histogram methods.
    pub const ALL: [CalibMethod; 4] = [
        CalibMethod::Max,
        CalibMethod::Percentile(99.99),
        CalibMethod::Mse,
        CalibMethod::Entropy,
    ];

    fn amax_method(self) -> AmaxMethod {
        match self {
            CalibMethod::Max => AmaxMethod::Max,
            CalibMethod::Percentile(p) => AmaxMethod::Percentile(p),
            CalibMethod::Mse => AmaxMethod::Mse,
            CalibMethod::Entropy => AmaxMethod::Entropy,
        }
    }
}

impl std::fmt::Display for CalibMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CalibMethod::Max => write!(f, "min-max"),
            CalibMethod::Percentile(p) => write!(f, "percentile {p}"),
            CalibMethod::Mse => write!(f, "MSE"),
            CalibMethod::Entropy => write!(f, "entropy"),
        }
    }
}

/// A calibration run over `batches`: the f32 model runs, and every Linear's input rows that are
/// real tokens (padding excluded) feed that layer's observer (`int8rt::nn::CalibrationRun`:
/// min/max and the |x| histogram).
pub fn calibrate(model: &MiniLm, batches: &Batches, threads: usize) -> Result<CalibrationRun> {
    let cfg = ObserverConfig {
        signed_histogram: false,
        moving_average: None,
        ..ObserverConfig::default()
    };
    let mut run = CalibrationRun::new(cfg);
    for d in &model.linears {
        run.attach(&d.name)?;
    }
    let run = Mutex::new(run);
    let rec = Recorder {
        inner: F32Linears {
            layers: &model.linears,
            threads,
        },
        observe: |idx: usize, rows: usize, x: &[f32]| -> Result<()> {
            let d = &model.linears[idx];
            let mut g = run.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            g.observe(&d.name, x, &[rows, d.in_features])?;
            Ok(())
        },
    };
    for b in &batches.batches {
        model.encode(&rec, b)?;
    }
    run.into_inner().map_err(|_| anyhow::anyhow!("poisoned"))
}

/// Static per-tensor activation quantization of every Linear, from a calibration run.
pub fn static_acts(
    model: &MiniLm,
    run: &CalibrationRun,
    method: CalibMethod,
) -> Result<Vec<ActivationQuant>> {
    model
        .linears
        .iter()
        .map(|d| {
            let p = run.params(&d.name, Method::Symmetric(method.amax_method()))?;
            Ok(ActivationQuant::Static(p))
        })
        .collect()
}

/// Print, per Linear, the input amax each calibration method picks.
pub fn print_ranges(model: &MiniLm, run: &CalibrationRun) -> Result<()> {
    print!("{:<42}", "layer input amax");
    for m in CalibMethod::ALL {
        print!(" {:>15}", m.to_string());
    }
    println!();
    for d in &model.linears {
        print!("{:<42}", d.name);
        for m in CalibMethod::ALL {
            let p = run.params(&d.name, Method::Symmetric(m.amax_method()))?;
            print!(" {:>15.4}", p.scale() * 127.0);
        }
        println!();
    }
    Ok(())
}

/// The dynamic activation schemes of the report.
pub fn dynamic(granularity: Granularity) -> ActivationQuant {
    ActivationQuant::Dynamic {
        scheme: Scheme::Symmetric,
        granularity,
    }
}

/// Check a layer list against the model (for layers loaded from a checkpoint).
pub fn check_layers(model: &MiniLm, layers: &[QuantLinear]) -> Result<()> {
    if layers.len() != model.linears.len() {
        bail!(
            "{} layers for {} Linears",
            layers.len(),
            model.linears.len()
        );
    }
    for (l, d) in layers.iter().zip(&model.linears) {
        if (l.out_features(), l.in_features()) != (d.out_features, d.in_features) {
            bail!("{}: shape does not fit the model", d.name);
        }
    }
    Ok(())
}

/// Time every variant on every batch, `reps` times, interleaved (variant after variant on the
/// same batch), and fill `rows[i]`: the median seconds per batch, the median of the per-batch
/// speed-ups over variant 0 (f32), and the total.
pub fn time_interleaved(
    model: &MiniLm,
    lins: &[&dyn Linears],
    b: &Batches,
    reps: usize,
    rows: &mut [Row],
) -> Result<()> {
    let mut t = vec![Vec::new(); lins.len()];
    for _ in 0..reps.max(1) {
        for batch in &b.batches {
            for (i, l) in lins.iter().enumerate() {
                let s = Instant::now();
                model.encode(*l, batch)?;
                t[i].push(s.elapsed().as_secs_f64());
            }
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    for (i, row) in rows.iter_mut().enumerate().take(lins.len()) {
        row.total_s = t[i].iter().sum::<f64>() / reps.max(1) as f64;
        row.batch_s = median(t[i].clone());
        row.speedup = median(
            t[0].iter()
                .zip(&t[i])
                .map(|(a, b)| a / b.max(1e-12))
                .collect(),
        );
    }
    Ok(())
}

/// Print the report as a Markdown table.
pub fn print_table(rows: &[Row], sentences: usize) {
    println!("| variant | mean cos | min cos | recall@1 | ms / batch (median) | speed-up vs f32 | sentences / s |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {:.5} | {:.5} | {:.3} | {:.2} | {:.2}× | {:.0} |",
            r.name,
            r.mean_cos,
            r.min_cos,
            r.recall,
            r.batch_s * 1e3,
            r.speedup,
            sentences as f64 / r.total_s.max(1e-12)
        );
    }
}
