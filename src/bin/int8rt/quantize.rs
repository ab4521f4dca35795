//! src/bin/int8rt/quantize.rs — `int8rt quantize`: float safetensors → compressed-tensors int8.
//!
//! Every Linear weight (a rank-2 float `*.weight` whose module is not ignored) is quantized per
//! output channel, symmetric, narrow range `[-127, 127]` with `amax / 127` by default, or
//! llm-compressor's `[-128, 127]` with `amax / 127.5` under `--full-range`; its scale is stored
//! in the weight's float dtype. For `w8a8-static` the per-tensor input scale of each layer comes
//! from `--calib-data`, a safetensors file holding sample inputs of each Linear (tensor named
//! after the module, `[rows, in_features]`), reduced by `--method`. Every other tensor is copied
//! unchanged. The output directory gets `model.safetensors` and `config.json` (the input config,
//! if any, plus `quantization_config`), and is read back and validated before the command ends.
//! An output that would replace the input checkpoint or the config carried over is refused, and
//! files already in the output directory are replaced only under `--force`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use clap::{Args as ClapArgs, ValueEnum};
use int8rt::calib::{AmaxMethod, ObserverConfig, TensorObserver};
use int8rt::io::compressed::{
    self, layer_specs, quantize_for_checkpoint, weight_error, CheckpointScheme, Pattern,
    QuantizationConfig,
};
use int8rt::io::{CompressedCheckpoint, Dtype, SafeTensors, TensorSpec};
use int8rt::quant::{Convention, Granularity, QuantParams, WeightQuantConfig};

use crate::progress::Progress;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SchemeArg {
    /// int8 weights, int8 inputs quantized per token at run time.
    W8a8Dynamic,
    /// int8 weights, int8 inputs with a calibrated per-tensor scale (needs --calib-data).
    W8a8Static,
    /// int8 weights only.
    W8Only,
}

/// How a static input range is chosen from the calibration data.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Method {
    Max,
    Percentile(f64),
    Mse,
    Entropy,
}

impl Method {
    fn name(&self) -> String {
        match self {
            Method::Max => "max".into(),
            Method::Percentile(p) => format!("percentile:{p}"),
            Method::Mse => "mse".into(),
            Method::Entropy => "entropy".into(),
        }
    }
}

fn parse_method(s: &str) -> std::result::Result<Method, String> {
    match s {
        "max" => Ok(Method::Max),
        "mse" => Ok(Method::Mse),
        "entropy" => Ok(Method::Entropy),
        _ => {
            let p = s
                .strip_prefix("percentile:")
                .ok_or_else(|| format!("`{s}`: expected percentile:P, mse, entropy or max"))?;
            let p: f64 = p.parse().map_err(|e| format!("`{s}`: {e}"))?;
            if !(p > 0.0 && p <= 100.0) {
                return Err(format!("`{s}`: the percentile must lie in (0, 100]"));
            }
            Ok(Method::Percentile(p))
        }
    }
}

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// The float checkpoint (F32, F16 or BF16 weights).
    input: PathBuf,
    /// Output directory (created): model.safetensors and config.json.
    #[arg(short, long)]
    output: PathBuf,
    /// Replace model.safetensors and config.json in an output directory that holds them already
    /// (never the input checkpoint or the config it carries over: those are always refused).
    #[arg(long)]
    force: bool,
    /// The model's config.json to carry over (default: config.json next to the input, if any).
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "w8a8-dynamic")]
    scheme: SchemeArg,
    /// Sample inputs of each Linear for w8a8-static: a safetensors file with one `[rows, in]`
    /// tensor per module, named after the module.
    #[arg(long)]
    calib_data: Option<PathBuf>,
    /// Range method for static input scales: percentile:P, mse, entropy or max.
    #[arg(long, default_value = "percentile:99.99", value_parser = parse_method)]
    method: Method,
    /// Modules to keep in float: exact names, or `re:` + a regular expression (repeatable).
    #[arg(long, num_args = 1..)]
    ignore: Vec<String>,
    /// llm-compressor's convention: `[-128, 127]` with `scale = absmax / 127.5` (default: the
    /// narrow `[-127, 127]`, `absmax / 127`).
    #[arg(long)]
    full_range: bool,
    /// One scale per weight tensor instead of one per output channel.
    #[arg(long)]
    per_tensor: bool,
}

/// One quantized layer's line of the report.
struct LayerReport {
    name: String,
    shape: [usize; 2],
    scale_min: f32,
    scale_max: f32,
    max_abs: f32,
    rel_l2: f64,
    input_scale: Option<f32>,
}

pub fn run(a: Args) -> Result<()> {
    let st = SafeTensors::open(&a.input)?;
    let base_path = a.config.clone().or_else(|| {
        let p = a.input.with_file_name("config.json");
        p.exists().then_some(p)
    });
    let out_file = a.output.join("model.safetensors");
    let out_config = a.output.join("config.json");
    check_outputs(
        &a.input,
        base_path.as_deref(),
        &out_file,
        &out_config,
        a.force,
    )?;
    // Module names, as compressed-tensors' `ignore` lists them (a `.weight` suffix is dropped).
    let ignore_names: Vec<String> = a
        .ignore
        .iter()
        .map(|s| s.strip_suffix(".weight").unwrap_or(s).to_string())
        .collect();
    let ignore: Vec<Pattern> = ignore_names
        .iter()
        .map(|s| Pattern::parse("--ignore", s))
        .collect::<int8rt::Result<_>>()?;
    let scheme = match a.scheme {
        SchemeArg::W8a8Dynamic => CheckpointScheme::W8A8Dynamic,
        SchemeArg::W8a8Static => CheckpointScheme::W8A8Static,
        SchemeArg::W8Only => CheckpointScheme::W8Only,
    };
    let granularity = if a.per_tensor {
        Granularity::PerTensor
    } else {
        Granularity::PerChannel
    };
    let wcfg = WeightQuantConfig {
        granularity,
        convention: if a.full_range {
            Convention::CompressedTensors
        } else {
            Convention::Int8rt
        },
    };

    // The Linear layers: rank-2 float `*.weight`, not ignored.
    let mut linears: BTreeMap<String, (usize, usize, Dtype)> = BTreeMap::new();
    for name in st.names() {
        let Some(module) = name.strip_suffix(".weight") else {
            continue;
        };
        let info = st.info(name).context("header entry vanished")?;
        if info.shape.len() != 2 || ignore.iter().any(|p| p.matches(module)) {
            continue;
        }
        if !info.dtype.is_supported_float() {
            if info.dtype == Dtype::I8 {
                bail!("`{name}` is already int8: quantize a float checkpoint");
            }
            continue;
        }
        if info.shape.contains(&0) {
            bail!(
                "`{name}` has shape {:?}: a Linear with an empty dimension has nothing to quantize; keep it float with --ignore {module}",
                info.shape
            );
        }
        let last = module.rsplit('.').next().unwrap_or(module);
        if module.contains("embed") || last.contains("emb") || last == "wte" || last == "wpe" {
            eprintln!(
                "warning: `{name}` looks like an embedding table, not a Linear; keep it float with --ignore {module}"
            );
        }
        linears.insert(
            module.to_string(),
            (info.shape[0], info.shape[1], info.dtype),
        );
    }
    if linears.is_empty() {
        bail!(
            "{}: no rank-2 float `*.weight` to quantize",
            a.input.display()
        );
    }
    for m in linears.keys() {
        for suffix in [
            "weight_scale",
            "weight_zero_point",
            "input_scale",
            "input_zero_point",
        ] {
            if st.contains(&format!("{m}.{suffix}")) {
                bail!("`{m}.{suffix}` already exists in the input: is it quantized already?");
            }
        }
    }

    // Static input scales from the calibration data.
    let input_scales = match scheme {
        CheckpointScheme::W8A8Static => {
            let path = a.calib_data.as_ref().context(
                "--scheme w8a8-static needs --calib-data FILE (sample inputs of each Linear)",
            )?;
            Some(calibrate(path, &linears, a.method, a.full_range)?)
        }
        _ => {
            if a.calib_data.is_some() {
                eprintln!("note: --calib-data is used by --scheme w8a8-static only; ignored");
            }
            None
        }
    };

    // Plan the output: each Linear's weight becomes weight + scale (+ input scale); everything
    // else is copied.
    let mut specs = Vec::new();
    for name in st.names() {
        let info = st.info(name).context("header entry vanished")?;
        match name
            .strip_suffix(".weight")
            .and_then(|m| linears.get(m).map(|l| (m, l)))
        {
            Some((m, &(rows, cols, dtype))) => specs.extend(layer_specs(
                m,
                rows,
                cols,
                granularity == Granularity::PerChannel,
                dtype,
                input_scales.is_some(),
            )),
            None => specs.push(TensorSpec {
                name: name.to_string(),
                dtype: info.dtype,
                shape: info.shape.clone(),
            }),
        }
    }

    // A directory this run creates is removed again if the run fails before writing into it.
    let _created = (!a.output.exists()).then(|| RemoveIfEmpty(a.output.clone()));
    std::fs::create_dir_all(&a.output)
        .with_context(|| format!("creating {}", a.output.display()))?;
    let mut pending_scales: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut reports = Vec::new();
    let mut progress = Progress::new(linears.len());
    int8rt::io::safetensors::write_streaming(&out_file, &specs, st.metadata(), |spec| {
        if let Some(m) = spec.name.strip_suffix(".weight") {
            if let Some(&(rows, cols, dtype)) = linears.get(m) {
                let w = st.tensor(&spec.name)?.to_f32()?;
                let q = quantize_for_checkpoint(&spec.name, &w, rows, cols, dtype, wcfg)?;
                let err = weight_error(&w, &q);
                let scale_bytes = int8rt::io::safetensors::encode_f32(dtype, q.scales())?;
                pending_scales.insert(format!("{m}.weight_scale"), scale_bytes);
                reports.push(LayerReport {
                    name: m.to_string(),
                    shape: [rows, cols],
                    scale_min: q.scales().iter().copied().fold(f32::INFINITY, f32::min),
                    scale_max: q.scales().iter().copied().fold(0.0, f32::max),
                    max_abs: err.max_abs,
                    rel_l2: err.rel_l2,
                    input_scale: input_scales.as_ref().and_then(|s| s.get(m).copied()),
                });
                progress.tick(m);
                return Ok(bytemuck::cast_slice::<i8, u8>(q.data()).to_vec());
            }
        }
        if let Some(b) = pending_scales.remove(&spec.name) {
            return Ok(b);
        }
        if let Some(m) = spec.name.strip_suffix(".input_scale") {
            if let (Some(s), Some(&(_, _, dtype))) =
                (input_scales.as_ref().and_then(|s| s.get(m)), linears.get(m))
            {
                return int8rt::io::safetensors::encode_f32(dtype, &[*s]);
            }
        }
        Ok(st.tensor(&spec.name)?.bytes().to_vec())
    })?;
    progress.finish();

    // config.json: the model's, plus quantization_config.
    let base = match &base_path {
        Some(p) => Some(compressed::read_config_json(p)?),
        None => None,
    };
    let qcfg = QuantizationConfig::for_scheme(scheme, granularity, &ignore_names, &a.method.name());
    let cfg = compressed::config_with_quantization(base.as_ref(), &qcfg)?;
    compressed::write_config_json(&a.output, &cfg)?;

    let mut out = table(&reports);
    // Read the result back through the strict loader.
    let ck = CompressedCheckpoint::open_dir(&a.output)?;
    let layers = ck.validate()?;
    let scheme_name = a
        .scheme
        .to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "\nwrote {} ({} int8 Linear layers, scheme {scheme_name}, {} range, scales per {}){}; read back and validated",
        a.output.display(),
        layers.len(),
        if a.full_range { "[-128, 127] amax/127.5" } else { "[-127, 127] amax/127" },
        if granularity == Granularity::PerChannel { "channel" } else { "tensor" },
        base_path
            .map(|p| format!(", config from {}", p.display()))
            .unwrap_or_default()
    );
    crate::emit(&out)
}

/// Refuse, before anything is read or written, an output that would replace the input checkpoint
/// or the config carried over (always), or files already in the output directory (unless
/// `force`): a quantization run never loses the float model.
fn check_outputs(
    input: &Path,
    config: Option<&Path>,
    out_file: &Path,
    out_config: &Path,
    force: bool,
) -> Result<()> {
    let sources = [
        (out_file, Some(input), "the input checkpoint"),
        (out_config, config, "the model config it carries over"),
    ];
    for (out, src, what) in sources {
        if let Some(src) = src.filter(|s| same_file(out, s)) {
            bail!(
                "{} would replace {what} ({}): choose another --output directory",
                out.display(),
                src.display()
            );
        }
    }
    if !force {
        if let Some(out) = [out_file, out_config].into_iter().find(|p| p.exists()) {
            bail!(
                "{} exists: pass --force to replace it, or choose another --output directory",
                out.display()
            );
        }
    }
    Ok(())
}

/// Whether two paths name one existing file (through links and `..` alike).
fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// A directory removed when dropped if it is empty (`remove_dir` refuses one that is not).
struct RemoveIfEmpty(PathBuf);

impl Drop for RemoveIfEmpty {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn table(reports: &[LayerReport]) -> String {
    let mut out = String::new();
    let w = reports
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let with_input = reports.iter().any(|r| r.input_scale.is_some());
    let _ = write!(
        out,
        "{:<w$}  {:>12}  {:>23}  {:>10}  {:>9}",
        "layer", "shape", "weight scale range", "max |Δw|", "rel err"
    );
    if with_input {
        let _ = write!(out, "  {:>11}", "input scale");
    }
    let _ = writeln!(out);
    for r in reports {
        let _ = write!(
            out,
            "{:<w$}  {:>12}  {:>10.3e} … {:>10.3e}  {:>10.3e}  {:>8.3}%",
            r.name,
            format!("{}×{}", r.shape[0], r.shape[1]),
            r.scale_min,
            r.scale_max,
            r.max_abs,
            r.rel_l2 * 100.0
        );
        if let Some(s) = r.input_scale {
            let _ = write!(out, "  {s:>11.4e}");
        }
        let _ = writeln!(out);
    }
    out
}

/// Per-layer static input scales from sample inputs: the range method reduces each layer's
/// samples to an amax, and the scale follows the weight convention's range.
fn calibrate(
    path: &PathBuf,
    linears: &BTreeMap<String, (usize, usize, Dtype)>,
    method: Method,
    full_range: bool,
) -> Result<BTreeMap<String, f32>> {
    let data = SafeTensors::open(path)?;
    let mut scales = BTreeMap::new();
    let mut progress = Progress::new(linears.len());
    for (m, &(_, cols, _)) in linears {
        let t = data.tensor(m).with_context(|| {
            format!("{}: no calibration inputs for Linear `{m}`", path.display())
        })?;
        if t.shape().len() != 2 || t.shape()[1] != cols {
            bail!(
                "{}: inputs of `{m}` have shape {:?}, expected [rows, {cols}]",
                path.display(),
                t.shape()
            );
        }
        let x = t.to_f32()?;
        let amax = range_amax(m, &x, cols, method)?;
        let p = if full_range {
            QuantParams::from_range(Convention::CompressedTensors, -amax, amax)?
        } else {
            QuantParams::symmetric(amax)?
        };
        scales.insert(m.clone(), p.scale());
        progress.tick(m);
    }
    progress.finish();
    Ok(scales)
}

/// The amax `method` picks from one layer's samples `[rows, cols]` (an observer of
/// `int8rt::calib`: min/max and the |x| histogram of pytorch-quantization).
fn range_amax(name: &str, x: &[f32], cols: usize, method: Method) -> Result<f32> {
    let cfg = ObserverConfig {
        signed_histogram: false,
        moving_average: None,
        ..ObserverConfig::default()
    };
    let mut obs = TensorObserver::new(name, cfg)?;
    obs.observe(x, &[x.len() / cols.max(1), cols])?;
    let m = match method {
        Method::Max => AmaxMethod::Max,
        Method::Percentile(p) => AmaxMethod::Percentile(p),
        Method::Mse => AmaxMethod::Mse,
        Method::Entropy => AmaxMethod::Entropy,
    };
    Ok(obs.amax(m, false)?)
}
