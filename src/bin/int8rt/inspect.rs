//! src/bin/int8rt/inspect.rs — `int8rt inspect FILE`: what a safetensors checkpoint holds (tensors,
//! dtypes, metadata) and which quantization it carries (the `quantization_config` of the
//! `config.json` beside it, every quantized layer loaded through the strict loader).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Args as ClapArgs;
use int8rt::io::compressed::read_config_json;
use int8rt::io::{CompressedCheckpoint, InputQuant, SafeTensors};
use int8rt::quant::Granularity;

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// A .safetensors file, or a directory holding model.safetensors (and config.json).
    file: PathBuf,
    /// The config.json to read the quantization from (default: the one beside the file).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print only the summary, not every tensor.
    #[arg(long)]
    summary: bool,
}

pub fn run(a: Args) -> Result<()> {
    let mut out = String::new();
    let r = report(&a, &mut out);
    crate::emit(&out)?;
    r
}

fn report(a: &Args, out: &mut String) -> Result<()> {
    let file = if a.file.is_dir() {
        a.file.join("model.safetensors")
    } else {
        a.file.clone()
    };
    let st = SafeTensors::open(&file)?;
    let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    let mut by_dtype: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for n in st.names() {
        let info = st.info(n).context("header entry vanished")?;
        let e = by_dtype.entry(info.dtype.to_string()).or_default();
        e.0 += 1;
        e.1 += info.numel();
    }
    writeln!(
        out,
        "{}: {} tensors, {:.1} MB",
        file.display(),
        st.len(),
        size as f64 / 1e6
    )?;
    for (d, (count, numel)) in &by_dtype {
        writeln!(out, "  {d:>7}: {count:>5} tensors, {numel:>12} values")?;
    }
    if !st.metadata().is_empty() {
        writeln!(out, "  metadata: {:?}", st.metadata())?;
    }
    if !a.summary {
        writeln!(out)?;
        let w = st.names().map(str::len).max().unwrap_or(4);
        for n in st.names() {
            let info = st.info(n).context("header entry vanished")?;
            writeln!(
                out,
                "  {n:<w$}  {:>7}  {:?}",
                info.dtype.to_string(),
                info.shape
            )?;
        }
    }

    let cfg_path = a
        .config
        .clone()
        .unwrap_or_else(|| file.with_file_name("config.json"));
    writeln!(out)?;
    let cfg = if cfg_path.exists() {
        read_config_json(&cfg_path)?
    } else {
        writeln!(
            out,
            "quantization: no config.json beside the file ({})",
            cfg_path.display()
        )?;
        return report_unconfigured(&st, out);
    };
    if cfg.get("quantization_config").is_none() {
        writeln!(
            out,
            "quantization: none ({} has no quantization_config)",
            cfg_path.display()
        )?;
        return report_unconfigured(&st, out);
    }
    writeln!(
        out,
        "quantization_config ({}):\n{}",
        cfg_path.display(),
        serde_json::to_string_pretty(&cfg["quantization_config"])?
    )?;
    let ck = CompressedCheckpoint::from_parts(st, cfg_path.display().to_string(), cfg)?;
    let layers = ck.validate()?;
    writeln!(
        out,
        "\n{} quantized Linear layers, all validated:",
        layers.len()
    )?;
    let w = layers.iter().map(String::len).max().unwrap_or(5);
    for name in &layers {
        let l = ck.linear(name)?;
        let (lo, hi) = l
            .weights
            .scales()
            .iter()
            .fold((f32::INFINITY, 0f32), |(lo, hi), &s| (lo.min(s), hi.max(s)));
        let per = if l.weights.scales().len() == 1 {
            "tensor"
        } else {
            "channel"
        };
        let input = match l.input {
            InputQuant::None => "weight-only".to_string(),
            InputQuant::Dynamic { granularity, .. } => format!(
                "inputs dynamic per {}",
                if granularity == Granularity::PerRow {
                    "token"
                } else {
                    "tensor"
                }
            ),
            InputQuant::Static(p) => format!(
                "inputs static, scale {:.4e} zp {}",
                p.scale(),
                p.zero_point()
            ),
        };
        let qmin = l.weights.data().iter().copied().min().unwrap_or(0);
        let qmax = l.weights.data().iter().copied().max().unwrap_or(0);
        writeln!(out,
            "  {name:<w$}  {}×{}  int8 [{qmin}, {qmax}]  scale per {per} ({}) {lo:.3e}…{hi:.3e}  {input}  [{}]",
            l.weights.rows(), l.weights.cols(), l.scale_dtype, l.group
        )?;
    }
    Ok(())
}

/// Without a quantization config: say whether int8 tensors are present anyway.
fn report_unconfigured(st: &SafeTensors, out: &mut String) -> Result<()> {
    let scales = st.names().filter(|n| n.ends_with(".weight_scale")).count();
    if scales > 0 {
        writeln!(out,
            "  but {scales} `*.weight_scale` tensors are present: a quantized checkpoint without its config.json (its scales cannot be interpreted safely)"
        )?;
    }
    Ok(())
}
