//! examples/minilm/model.rs — the all-MiniLM-L6-v2 sentence encoder in plain Rust: BERT
//! embeddings → LayerNorm → 6 × (12-head self-attention with the padding mask, residual +
//! LayerNorm, exact-GELU MLP, residual + LayerNorm) → masked mean pooling → L2 normalisation.
//! Weights come from `model.safetensors` through `int8rt::io`; the 36 Linear layers go through a
//! [`Linears`] implementation, so one forward serves the f32 model, int8 `QuantLinear`s, and a
//! recorder that feeds calibration observers.

use std::path::Path;

use anyhow::{bail, Context as _, Result};
use int8rt::io::SafeTensors;
use rayon::prelude::*;

/// The hyper-parameters read from `config.json`.
#[derive(Clone, Copy, Debug)]
pub struct BertConfig {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub intermediate: usize,
    pub eps: f32,
    pub max_positions: usize,
    pub vocab: usize,
}

impl BertConfig {
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let j: serde_json::Value = serde_json::from_slice(
            &std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        )?;
        let get = |k: &str| -> Result<usize> {
            j[k].as_u64()
                .map(|v| v as usize)
                .with_context(|| format!("{}: no integer `{k}`", path.display()))
        };
        if j["hidden_act"] != "gelu" {
            bail!("hidden_act {} is not the exact GELU", j["hidden_act"]);
        }
        let cfg = BertConfig {
            hidden: get("hidden_size")?,
            layers: get("num_hidden_layers")?,
            heads: get("num_attention_heads")?,
            intermediate: get("intermediate_size")?,
            eps: j["layer_norm_eps"].as_f64().unwrap_or(1e-12) as f32,
            max_positions: get("max_position_embeddings")?,
            vocab: get("vocab_size")?,
        };
        if cfg.heads == 0 || !cfg.hidden.is_multiple_of(cfg.heads) {
            bail!(
                "hidden {} is not a multiple of {} heads",
                cfg.hidden,
                cfg.heads
            );
        }
        Ok(cfg)
    }
}

/// A float Linear `y = x · Wᵀ + b` with `W: [out, in]`.
#[derive(Clone, Debug)]
pub struct Dense {
    pub name: String,
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub out_features: usize,
    pub in_features: usize,
}

struct LayerNorm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

/// The Linear layers of one encoder block, in the order [`Linears::apply`] numbers them.
const BLOCK_LINEARS: [&str; 6] = [
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
];

struct Block {
    ln_attn: LayerNorm,
    ln_out: LayerNorm,
}

/// The float model.
pub struct MiniLm {
    pub cfg: BertConfig,
    word: Vec<f32>,
    position: Vec<f32>,
    token_type0: Vec<f32>,
    ln_emb: LayerNorm,
    blocks: Vec<Block>,
    /// The 36 Linear layers, `6 per block` in [`BLOCK_LINEARS`] order.
    pub linears: Vec<Dense>,
}

fn load(st: &SafeTensors, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
    let t = st.tensor(name)?;
    if t.shape() != shape {
        bail!("{name}: shape {:?}, expected {shape:?}", t.shape());
    }
    Ok(t.to_f32()?)
}

impl MiniLm {
    /// Load `dir/config.json` and `dir/model.safetensors` (memory-mapped; each tensor is read
    /// once into f32).
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let cfg = BertConfig::from_file(dir.join("config.json"))?;
        let st = SafeTensors::open(dir.join("model.safetensors"))?;
        let (h, i) = (cfg.hidden, cfg.intermediate);
        // Checkpoints exported with and without the `bert.` prefix exist.
        let p = if st.contains("bert.embeddings.word_embeddings.weight") {
            "bert."
        } else {
            ""
        };
        let ln = |name: &str| -> Result<LayerNorm> {
            Ok(LayerNorm {
                gamma: load(&st, &format!("{p}{name}.weight"), &[h])?,
                beta: load(&st, &format!("{p}{name}.bias"), &[h])?,
            })
        };
        let mut blocks = Vec::new();
        let mut linears = Vec::new();
        for l in 0..cfg.layers {
            let pre = format!("encoder.layer.{l}");
            for (j, lin) in BLOCK_LINEARS.iter().enumerate() {
                let (out_f, in_f) = match j {
                    4 => (i, h),
                    5 => (h, i),
                    _ => (h, h),
                };
                let name = format!("{pre}.{lin}");
                linears.push(Dense {
                    weight: load(&st, &format!("{p}{name}.weight"), &[out_f, in_f])?,
                    bias: load(&st, &format!("{p}{name}.bias"), &[out_f])?,
                    name,
                    out_features: out_f,
                    in_features: in_f,
                });
            }
            blocks.push(Block {
                ln_attn: ln(&format!("{pre}.attention.output.LayerNorm"))?,
                ln_out: ln(&format!("{pre}.output.LayerNorm"))?,
            });
        }
        let tt = load(
            &st,
            &format!("{p}embeddings.token_type_embeddings.weight"),
            &[2, h],
        )?;
        Ok(MiniLm {
            word: load(
                &st,
                &format!("{p}embeddings.word_embeddings.weight"),
                &[cfg.vocab, h],
            )?,
            position: load(
                &st,
                &format!("{p}embeddings.position_embeddings.weight"),
                &[cfg.max_positions, h],
            )?,
            token_type0: tt[..h].to_vec(),
            ln_emb: ln("embeddings.LayerNorm")?,
            blocks,
            linears,
            cfg,
        })
    }

    /// Sentence embeddings `[batch, hidden]`, L2-normalised.
    pub fn encode(&self, linears: &dyn Linears, batch: &Batch) -> Result<Vec<f32>> {
        let (b, l, h) = (batch.size, batch.len, self.cfg.hidden);
        let rows = b * l;
        if l > self.cfg.max_positions {
            bail!(
                "sequence length {l} exceeds {} positions",
                self.cfg.max_positions
            );
        }
        // Embeddings: word + position + token type 0, then LayerNorm.
        let mut x = vec![0f32; rows * h];
        for (r, xr) in x.chunks_exact_mut(h).enumerate() {
            let id = batch.ids[r] as usize;
            if id >= self.cfg.vocab {
                bail!("token id {id} is outside the vocabulary");
            }
            let (w, p) = (
                &self.word[id * h..(id + 1) * h],
                &self.position[(r % l) * h..(r % l + 1) * h],
            );
            for j in 0..h {
                xr[j] = w[j] + p[j] + self.token_type0[j];
            }
        }
        layer_norm(&mut x, &self.ln_emb, self.cfg.eps);

        let ctx = LinearCtx { batch };
        for (li, block) in self.blocks.iter().enumerate() {
            let base = li * BLOCK_LINEARS.len();
            let q = linears.apply(base, &x, rows, &ctx)?;
            let k = linears.apply(base + 1, &x, rows, &ctx)?;
            let v = linears.apply(base + 2, &x, rows, &ctx)?;
            let attn = attention(&q, &k, &v, batch, self.cfg.heads, h);
            let o = linears.apply(base + 3, &attn, rows, &ctx)?;
            add_in_place(&mut x, &o);
            layer_norm(&mut x, &block.ln_attn, self.cfg.eps);
            let mut inter = linears.apply(base + 4, &x, rows, &ctx)?;
            inter.par_iter_mut().for_each(|v| *v = gelu(*v));
            let out = linears.apply(base + 5, &inter, rows, &ctx)?;
            add_in_place(&mut x, &out);
            layer_norm(&mut x, &block.ln_out, self.cfg.eps);
        }
        Ok(mean_pool_normalize(&x, batch, h))
    }
}

/// A padded batch of token ids `[size, len]` with its attention mask (1 = token, 0 = padding).
pub struct Batch {
    pub size: usize,
    pub len: usize,
    pub ids: Vec<u32>,
    pub mask: Vec<u8>,
}

impl Batch {
    /// Pad sequences on the right with id 0 (`[PAD]`) to the longest one.
    pub fn new(seqs: &[Vec<u32>]) -> Self {
        let len = seqs.iter().map(Vec::len).max().unwrap_or(0);
        let mut ids = vec![0u32; seqs.len() * len];
        let mut mask = vec![0u8; seqs.len() * len];
        for (i, s) in seqs.iter().enumerate() {
            ids[i * len..i * len + s.len()].copy_from_slice(s);
            mask[i * len..i * len + s.len()].fill(1);
        }
        Batch {
            size: seqs.len(),
            len,
            ids,
            mask,
        }
    }
    /// Whether row `r` of the flattened `[size · len]` is a real token.
    pub fn is_token(&self, r: usize) -> bool {
        self.mask[r] == 1
    }
}

/// What a Linear implementation may want to know about the rows it is given.
pub struct LinearCtx<'a> {
    pub batch: &'a Batch,
}

/// The 36 Linear layers of the model: the f32 originals, int8 layers, or an observer.
pub trait Linears: Sync {
    /// `y = x · Wᵀ + b` for Linear number `idx` (6 per block, in `BLOCK_LINEARS` order) on
    /// `x: [rows, in]`.
    fn apply(&self, idx: usize, x: &[f32], rows: usize, ctx: &LinearCtx<'_>) -> Result<Vec<f32>>;
}

/// f32 Linears: the given dense layers through an f32 GEMM (the `gemm` crate).
pub struct F32Linears<'a> {
    pub layers: &'a [Dense],
    pub threads: usize,
}

impl Linears for F32Linears<'_> {
    fn apply(&self, idx: usize, x: &[f32], rows: usize, _: &LinearCtx<'_>) -> Result<Vec<f32>> {
        let d = &self.layers[idx];
        dense_f32(d, x, rows, self.threads)
    }
}

/// `x · Wᵀ + b` in f32.
pub fn dense_f32(d: &Dense, x: &[f32], rows: usize, threads: usize) -> Result<Vec<f32>> {
    let (n, k) = (d.out_features, d.in_features);
    if x.len() != rows * k || d.weight.len() != n * k || d.bias.len() != n {
        bail!(
            "{}: shapes do not fit (x {} for [{rows}, {k}])",
            d.name,
            x.len()
        );
    }
    let mut y = Vec::with_capacity(rows * n);
    for _ in 0..rows {
        y.extend_from_slice(&d.bias);
    }
    if rows == 0 {
        return Ok(y);
    }
    let par = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: `gemm::gemm` reads `lhs` at `i·k + l` (i < rows, l < k), `rhs` at `l + j·k`
    // (l < k, j < n) and reads/writes `dst` at `i·n + j`; the checks above give `x.len() == rows·k`,
    // `weight.len() == n·k` and `y.len() == rows·n` (filled with the bias), so every access is in
    // bounds, and `y` is borrowed mutably and alone for the call.
    unsafe {
        gemm::gemm(
            rows,
            n,
            k,
            y.as_mut_ptr(),
            1,
            n as isize,
            true,
            x.as_ptr(),
            1,
            k as isize,
            d.weight.as_ptr(),
            k as isize,
            1,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            par,
        );
    }
    Ok(y)
}

fn add_in_place(x: &mut [f32], y: &[f32]) {
    x.iter_mut().zip(y).for_each(|(a, b)| *a += b);
}

/// LayerNorm over each row of `x` (statistics accumulated in f64).
fn layer_norm(x: &mut [f32], ln: &LayerNorm, eps: f32) {
    let h = ln.gamma.len();
    x.par_chunks_exact_mut(h).for_each(|row| {
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / h as f64;
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / h as f64;
        let inv = 1.0 / (var + eps as f64).sqrt();
        for (j, v) in row.iter_mut().enumerate() {
            *v = (((*v as f64 - mean) * inv) as f32) * ln.gamma[j] + ln.beta[j];
        }
    });
}

/// The exact GELU: `x · Φ(x) = 0.5 · x · (1 + erf(x / √2))`.
fn gelu(x: f32) -> f32 {
    (0.5 * x as f64 * (1.0 + libm::erf(x as f64 * std::f64::consts::FRAC_1_SQRT_2))) as f32
}

/// Multi-head self-attention on `[batch · len, hidden]` projections. Padding keys get the
/// additive mask `f32::MIN` (as the reference implementation), so their softmax weight is exactly 0.
fn attention(q: &[f32], k: &[f32], v: &[f32], batch: &Batch, heads: usize, h: usize) -> Vec<f32> {
    let (l, dh) = (batch.len, h / heads);
    let scale = 1.0 / (dh as f32).sqrt();
    let mut out = vec![0f32; q.len()];
    out.par_chunks_exact_mut(l * h)
        .enumerate()
        .for_each(|(b, ob)| {
            let base = b * l * h;
            let mask = &batch.mask[b * l..(b + 1) * l];
            let mut scores = vec![0f32; l];
            for hd in 0..heads {
                let off = hd * dh;
                for i in 0..l {
                    let qi = &q[base + i * h + off..base + i * h + off + dh];
                    let mut max = f32::NEG_INFINITY;
                    for j in 0..l {
                        let kj = &k[base + j * h + off..base + j * h + off + dh];
                        let dot: f32 = qi.iter().zip(kj).map(|(a, b)| a * b).sum();
                        let s = dot * scale + if mask[j] == 1 { 0.0 } else { f32::MIN };
                        scores[j] = s;
                        max = max.max(s);
                    }
                    let mut sum = 0f32;
                    for s in scores.iter_mut() {
                        *s = (*s - max).exp();
                        sum += *s;
                    }
                    let o = &mut ob[i * h + off..i * h + off + dh];
                    o.fill(0.0);
                    for (j, &p) in scores.iter().enumerate() {
                        let w = p / sum;
                        let vj = &v[base + j * h + off..base + j * h + off + dh];
                        o.iter_mut().zip(vj).for_each(|(a, &b)| *a += w * b);
                    }
                }
            }
        });
    out
}

/// Mean of the token rows of each sequence (padding excluded), then L2 normalisation with
/// sentence-transformers' `eps = 1e-12`.
fn mean_pool_normalize(x: &[f32], batch: &Batch, h: usize) -> Vec<f32> {
    let l = batch.len;
    let mut out = vec![0f32; batch.size * h];
    for (b, o) in out.chunks_exact_mut(h).enumerate() {
        let mut acc = vec![0f64; h];
        let mut n = 0usize;
        for t in 0..l {
            if batch.is_token(b * l + t) {
                n += 1;
                let row = &x[(b * l + t) * h..(b * l + t + 1) * h];
                acc.iter_mut().zip(row).for_each(|(a, &v)| *a += v as f64);
            }
        }
        let n = n.max(1) as f64;
        let mean: Vec<f64> = acc.iter().map(|a| a / n).collect();
        let norm = mean.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
        o.iter_mut()
            .zip(&mean)
            .for_each(|(a, v)| *a = (v / norm) as f32);
    }
    out
}
