//! io/compressed.rs — int8 checkpoints in the compressed-tensors layout that vLLM and
//! llm-compressor use (`format: "int-quantized"`): reading them into [`QuantLinear`] layers with
//! strict validation, and writing them from float weights. Sits between `io::safetensors` (the
//! container) and `nn` (the layers); the `int8rt quantize` / `inspect` commands drive it.
//!
//! Per quantized Linear `P` (module name; its weight is `P.weight`):
//! - `P.weight`: I8 `[out, in]`;
//! - `P.weight_scale`: float (F32, F16 or BF16), `[out, 1]` per channel or `[1]` per tensor;
//! - `P.weight_zero_point`: only for asymmetric weights (refused here: `QuantLinear` weights are
//!   symmetric); an all-zero one next to symmetric weights is accepted, as older producers wrote it;
//! - `P.input_scale` (`[1]`) and `P.input_zero_point`: only for static activations;
//! - `P.bias`: float, unchanged.
//!
//! `config.json` carries `quantization_config` with `quant_method: "compressed-tensors"`, the
//! config groups (targets → weight / input-activation arguments) and `ignore`.
//!
//! **Scales are kept exactly as stored** — never re-derived from the weights. llm-compressor
//! writes `absmax / 127.5` over `[-128, 127]`, this crate by default `absmax / 127` over
//! `[-127, 127]`; either way the dequantized weight is `q · scale` with the stored scale. A scale
//! whose dtype, shape or value does not fit its layer is an [`Error::Tensor`] naming the tensor:
//! a loader that silently ignores a scale produces garbage, the failure users report most.

use std::collections::BTreeMap;
use std::path::Path;

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::safetensors::{round_to_dtype, Dtype, SafeTensors, TensorBuf, TensorSpec, TensorView};
use crate::error::{Error, Result};
use crate::nn::{ActivationQuant, QuantLinear};
use crate::quant::{
    self, Convention, Granularity, QuantParams, QuantizedWeights, Scheme, WeightQuantConfig,
};

/// `quantization_config.quant_method` of these checkpoints.
pub const QUANT_METHOD: &str = "compressed-tensors";
/// The compressed-tensors format of int8 weights stored as I8.
pub const FORMAT_INT_QUANTIZED: &str = "int-quantized";

fn default_bits() -> u32 {
    8
}
fn default_kind() -> String {
    "int".into()
}
fn default_true() -> bool {
    true
}

/// compressed-tensors `QuantizationArgs` (the fields this crate interprets; others are kept in
/// `extra` and written back unchanged).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuantizationArgs {
    #[serde(default = "default_bits")]
    pub num_bits: u32,
    /// `"int"` or `"float"`.
    #[serde(rename = "type", default = "default_kind")]
    pub kind: String,
    #[serde(default = "default_true")]
    pub symmetric: bool,
    /// `"tensor"`, `"channel"`, `"group"`, `"block"`, `"token"` (None: `"tensor"`).
    #[serde(default)]
    pub strategy: Option<String>,
    /// `false`, `true`, or `"local"`.
    #[serde(default)]
    pub dynamic: Value,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

impl QuantizationArgs {
    fn strategy(&self) -> &str {
        self.strategy.as_deref().unwrap_or("tensor")
    }
    fn is_dynamic(&self) -> Option<bool> {
        match &self.dynamic {
            Value::Null => Some(false),
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// int8 symmetric weights, per channel or per tensor, as this crate writes them.
    pub fn int8_weights(granularity: Granularity, observer: &str) -> Self {
        let strategy = match granularity {
            Granularity::PerTensor => "tensor",
            _ => "channel",
        };
        let mut extra = serde_json::Map::new();
        extra.insert("group_size".into(), Value::Null);
        extra.insert("block_structure".into(), Value::Null);
        extra.insert("actorder".into(), Value::Null);
        extra.insert("observer".into(), Value::String(observer.into()));
        extra.insert("observer_kwargs".into(), Value::Object(Default::default()));
        QuantizationArgs {
            num_bits: 8,
            kind: "int".into(),
            symmetric: true,
            strategy: Some(strategy.into()),
            dynamic: Value::Bool(false),
            extra,
        }
    }

    /// int8 symmetric input activations: dynamic per token, or static per tensor calibrated with
    /// `observer`.
    pub fn int8_inputs(dynamic: bool, observer: Option<&str>) -> Self {
        let mut extra = serde_json::Map::new();
        extra.insert("group_size".into(), Value::Null);
        extra.insert("block_structure".into(), Value::Null);
        extra.insert("actorder".into(), Value::Null);
        extra.insert(
            "observer".into(),
            observer.map_or(Value::Null, |o| Value::String(o.into())),
        );
        extra.insert("observer_kwargs".into(), Value::Object(Default::default()));
        QuantizationArgs {
            num_bits: 8,
            kind: "int".into(),
            symmetric: true,
            strategy: Some(if dynamic { "token" } else { "tensor" }.into()),
            dynamic: Value::Bool(dynamic),
            extra,
        }
    }
}

/// One config group: which modules, and how their weights and inputs are quantized.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConfigGroup {
    pub targets: Vec<String>,
    #[serde(default)]
    pub weights: Option<QuantizationArgs>,
    #[serde(default)]
    pub input_activations: Option<QuantizationArgs>,
    #[serde(default)]
    pub output_activations: Option<QuantizationArgs>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

/// `config.json → quantization_config`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuantizationConfig {
    pub quant_method: String,
    #[serde(default)]
    pub format: Option<String>,
    #[serde(default)]
    pub quantization_status: Option<String>,
    pub config_groups: BTreeMap<String, ConfigGroup>,
    #[serde(default)]
    pub ignore: Option<Vec<String>>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

/// The three schemes the `quantize` command writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckpointScheme {
    /// int8 weights, float activations.
    W8Only,
    /// int8 weights, int8 inputs quantized dynamically per token.
    W8A8Dynamic,
    /// int8 weights, int8 inputs with a calibrated static per-tensor scale (`P.input_scale`).
    W8A8Static,
}

impl QuantizationConfig {
    /// The config this crate writes: one group targeting every Linear, plus `ignore`.
    /// `observer` names the calibration method of static input scales (ignored otherwise).
    pub fn for_scheme(
        scheme: CheckpointScheme,
        weight_granularity: Granularity,
        ignore: &[String],
        observer: &str,
    ) -> Self {
        let inputs = match scheme {
            CheckpointScheme::W8Only => None,
            CheckpointScheme::W8A8Dynamic => Some(QuantizationArgs::int8_inputs(true, None)),
            CheckpointScheme::W8A8Static => {
                Some(QuantizationArgs::int8_inputs(false, Some(observer)))
            }
        };
        let mut extra = serde_json::Map::new();
        extra.insert("format".into(), Value::String(FORMAT_INT_QUANTIZED.into()));
        let group = ConfigGroup {
            targets: vec!["Linear".into()],
            weights: Some(QuantizationArgs::int8_weights(weight_granularity, "minmax")),
            input_activations: inputs,
            output_activations: None,
            extra,
        };
        let mut top = serde_json::Map::new();
        top.insert("kv_cache_scheme".into(), Value::Null);
        top.insert("global_compression_ratio".into(), Value::Null);
        QuantizationConfig {
            quant_method: QUANT_METHOD.into(),
            format: Some(FORMAT_INT_QUANTIZED.into()),
            quantization_status: Some("compressed".into()),
            config_groups: [("group_0".to_string(), group)].into_iter().collect(),
            ignore: Some(ignore.to_vec()),
            extra: top,
        }
    }

    /// Read `quantization_config` out of a whole `config.json` value. `file` names it in errors.
    pub fn from_config_json(file: &str, config: &Value) -> Result<Self> {
        let q = config
            .get("quantization_config")
            .ok_or_else(|| Error::Format {
                file: file.into(),
                detail: "no `quantization_config`: this is not a quantized checkpoint".into(),
            })?;
        serde_json::from_value(q.clone()).map_err(|e| Error::Format {
            file: file.into(),
            detail: format!("`quantization_config` does not parse: {e}"),
        })
    }
}

/// A target or ignore entry: an exact module name, `re:` + a regular expression (matched at the
/// start of the name, as Python's `re.match`), or a module class name (`Linear`).
#[derive(Clone, Debug)]
pub enum Pattern {
    /// An exact module name.
    Exact(String),
    /// `re:` + a regular expression, anchored at the start.
    Regex(Regex),
    /// Every quantizable layer here is a Linear: a safetensors file carries no module classes.
    Linear,
    /// Another class name (`Embedding`, `Conv2d`, ...): matches no Linear.
    OtherClass,
}

impl Pattern {
    /// Parse a `targets` / `ignore` entry; `file` names the config in errors.
    pub fn parse(file: &str, s: &str) -> Result<Self> {
        if let Some(re) = s.strip_prefix("re:") {
            return Regex::new(&format!("^(?:{re})"))
                .map(Pattern::Regex)
                .map_err(|e| Error::Format {
                    file: file.into(),
                    detail: format!("pattern `{s}` is not a valid regular expression: {e}"),
                });
        }
        if s == "Linear" {
            return Ok(Pattern::Linear);
        }
        // Module names are dotted paths or lower-case; class names start upper-case, no dot.
        if !s.contains('.') && s.starts_with(|c: char| c.is_ascii_uppercase()) {
            return Ok(Pattern::OtherClass);
        }
        Ok(Pattern::Exact(s.to_string()))
    }
    /// Whether module `name` (of a Linear) matches.
    pub fn matches(&self, name: &str) -> bool {
        self.rank(name).is_some()
    }

    /// Match priority (compressed-tensors: exact name, then regex, then class), or None.
    fn rank(&self, name: &str) -> Option<u8> {
        match self {
            Pattern::Exact(s) if s == name => Some(0),
            Pattern::Regex(r) if r.is_match(name) => Some(1),
            Pattern::Linear => Some(2),
            _ => None,
        }
    }
}

/// How a loaded layer's input is quantized.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum InputQuant {
    /// Weight-only int8: the input stays float.
    None,
    /// Computed per call (`strategy: token` → per row, `tensor` → per tensor).
    Dynamic {
        scheme: Scheme,
        granularity: Granularity,
    },
    /// A stored static scale (and zero point): compressed-tensors' int8 range `[-128, 127]`;
    /// asymmetric ranges are shifted to `u8` (`zp + 128`), which quantizes identically.
    Static(QuantParams),
}

/// A quantized Linear read from a checkpoint, validated, with its stored scales unchanged.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadedLinear {
    /// Module name `P`.
    pub name: String,
    /// `P.weight` and `P.weight_scale` exactly as stored.
    pub weights: QuantizedWeights,
    /// `P.bias` as f32.
    pub bias: Option<Vec<f32>>,
    /// How the input is quantized.
    pub input: InputQuant,
    /// The dtype `P.weight_scale` was stored in.
    pub scale_dtype: Dtype,
    /// The config group that matched.
    pub group: String,
}

impl LoadedLinear {
    /// The layer's activation quantization, `None` for weight-only checkpoints.
    pub fn activation_quant(&self) -> Option<ActivationQuant> {
        match self.input {
            InputQuant::None => None,
            InputQuant::Dynamic {
                scheme,
                granularity,
            } => Some(ActivationQuant::Dynamic {
                scheme,
                granularity,
            }),
            InputQuant::Static(p) => Some(ActivationQuant::Static(p)),
        }
    }

    /// Build the layer with the checkpoint's activation quantization. Weight-only checkpoints
    /// have no integer input: use [`LoadedLinear::to_quant_linear_with`] to choose one, or run
    /// the float path with `weights.dequantize()`.
    pub fn to_quant_linear(&self) -> Result<QuantLinear> {
        let act = self.activation_quant().ok_or_else(|| {
            Error::Unsupported(format!(
                "`{}` is weight-only int8: QuantLinear needs an activation scheme (to_quant_linear_with), or use the dequantized weights",
                self.name
            ))
        })?;
        self.to_quant_linear_with(act)
    }

    /// Build the layer with an explicit activation quantization (the stored weight scales are
    /// kept).
    pub fn to_quant_linear_with(&self, act: ActivationQuant) -> Result<QuantLinear> {
        QuantLinear::from_quantized(&self.name, self.weights.clone(), self.bias.as_deref(), act)
    }
}

struct CompiledGroup {
    name: String,
    targets: Vec<Pattern>,
    group: ConfigGroup,
}

/// A compressed-tensors int8 checkpoint: the tensors (memory-mapped) and its validated
/// `quantization_config`.
pub struct CompressedCheckpoint {
    tensors: SafeTensors,
    config_file: String,
    config_json: Value,
    config: QuantizationConfig,
    groups: Vec<CompiledGroup>,
    ignore: Vec<Pattern>,
}

impl std::fmt::Debug for CompressedCheckpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompressedCheckpoint")
            .field("tensors", &self.tensors)
            .field("config", &self.config)
            .finish()
    }
}

/// Read and parse a `config.json`.
pub fn read_config_json(path: impl AsRef<Path>) -> Result<Value> {
    let path = path.as_ref();
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: name.clone(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Format {
        file: name,
        detail: format!("not valid JSON: {e}"),
    })
}

impl CompressedCheckpoint {
    /// Open `dir/model.safetensors` with `dir/config.json`.
    pub fn open_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        Self::open(dir.join("model.safetensors"), dir.join("config.json"))
    }

    /// Open a safetensors file with its `config.json`.
    pub fn open(tensors: impl AsRef<Path>, config: impl AsRef<Path>) -> Result<Self> {
        let cfg = read_config_json(config.as_ref())?;
        Self::from_parts(
            SafeTensors::open(tensors)?,
            config.as_ref().display().to_string(),
            cfg,
        )
    }

    /// Wrap tensors and a parsed `config.json`; validates the quantization config (every group
    /// this crate cannot run is refused here, naming it).
    pub fn from_parts(
        tensors: SafeTensors,
        config_file: String,
        config_json: Value,
    ) -> Result<Self> {
        let config = QuantizationConfig::from_config_json(&config_file, &config_json)?;
        let ferr = |detail: String| Error::Format {
            file: config_file.clone(),
            detail,
        };
        if config.quant_method != QUANT_METHOD {
            return Err(ferr(format!(
                "quant_method `{}` is not `{QUANT_METHOD}`",
                config.quant_method
            )));
        }
        match config.format.as_deref() {
            Some(FORMAT_INT_QUANTIZED) => {}
            other => {
                return Err(ferr(format!(
                    "format {other:?} is not supported: this crate reads `{FORMAT_INT_QUANTIZED}` (int8 weights stored as I8)"
                )))
            }
        }
        if let Some(s) = config.quantization_status.as_deref() {
            if s != "compressed" {
                return Err(ferr(format!(
                    "quantization_status `{s}`: only `compressed` checkpoints hold int8 weights"
                )));
            }
        }
        let mut groups = Vec::new();
        for (gname, g) in &config.config_groups {
            if let Some(Value::String(f)) = g.extra.get("format") {
                if f != FORMAT_INT_QUANTIZED {
                    return Err(ferr(format!(
                        "config group `{gname}` has format `{f}`, not `{FORMAT_INT_QUANTIZED}`"
                    )));
                }
            }
            let w = g.weights.as_ref().ok_or_else(|| {
                ferr(format!("config group `{gname}` has no `weights` arguments"))
            })?;
            check_args(&config_file, gname, "weights", w, &["tensor", "channel"])?;
            if w.is_dynamic() != Some(false) {
                return Err(ferr(format!(
                    "config group `{gname}`: dynamic weights ({}) are not supported",
                    w.dynamic
                )));
            }
            if let Some(a) = &g.input_activations {
                check_args(
                    &config_file,
                    gname,
                    "input_activations",
                    a,
                    &["tensor", "token"],
                )?;
                match (a.is_dynamic(), a.strategy()) {
                    (Some(true), _) | (Some(false), "tensor") => {}
                    (Some(false), s) => {
                        return Err(ferr(format!(
                            "config group `{gname}`: static input activations with strategy `{s}` (only `tensor`)"
                        )))
                    }
                    (None, _) => {
                        return Err(ferr(format!(
                            "config group `{gname}`: input dynamic = {} is not supported",
                            a.dynamic
                        )))
                    }
                }
            }
            if g.output_activations.is_some() {
                return Err(ferr(format!(
                    "config group `{gname}`: output activation quantization is not supported"
                )));
            }
            let targets = g
                .targets
                .iter()
                .map(|t| Pattern::parse(&config_file, t))
                .collect::<Result<_>>()?;
            groups.push(CompiledGroup {
                name: gname.clone(),
                targets,
                group: g.clone(),
            });
        }
        let ignore = config
            .ignore
            .iter()
            .flatten()
            .map(|t| Pattern::parse(&config_file, t))
            .collect::<Result<_>>()?;
        Ok(CompressedCheckpoint {
            tensors,
            config_file,
            config_json,
            config,
            groups,
            ignore,
        })
    }

    /// The tensors.
    pub fn tensors(&self) -> &SafeTensors {
        &self.tensors
    }
    /// The parsed `quantization_config`.
    pub fn config(&self) -> &QuantizationConfig {
        &self.config
    }
    /// The whole `config.json`.
    pub fn config_json(&self) -> &Value {
        &self.config_json
    }

    /// Whether module `name` is in `ignore`.
    pub fn is_ignored(&self, name: &str) -> bool {
        self.ignore.iter().any(|p| p.rank(name).is_some())
    }

    /// The config group that governs module `name` (None if ignored or unmatched). Exact names
    /// win over regexes, regexes over class names; two groups matching at the same rank is an
    /// error naming both.
    pub fn group_for(&self, name: &str) -> Result<Option<&str>> {
        if self.is_ignored(name) {
            return Ok(None);
        }
        let mut best: Option<(u8, &CompiledGroup)> = None;
        for g in &self.groups {
            let Some(r) = g.targets.iter().filter_map(|p| p.rank(name)).min() else {
                continue;
            };
            match best {
                Some((br, bg)) if br == r => {
                    return Err(Error::Format {
                        file: self.config_file.clone(),
                        detail: format!(
                            "module `{name}` is targeted by config groups `{}` and `{}` alike",
                            bg.name, g.name
                        ),
                    })
                }
                Some((br, _)) if br < r => {}
                _ => best = Some((r, g)),
            }
        }
        Ok(best.map(|(_, g)| g.name.as_str()))
    }

    /// Module names of the quantized layers: every `P` with an I8 `P.weight` or a
    /// `P.weight_scale`, sorted.
    pub fn quantized_layers(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .tensors
            .names()
            .filter_map(|n| {
                if let Some(p) = n.strip_suffix(".weight_scale") {
                    return Some(p.to_string());
                }
                let p = n.strip_suffix(".weight")?;
                (self.tensors.info(n)?.dtype == Dtype::I8).then(|| p.to_string())
            })
            .collect();
        v.sort();
        v.dedup();
        v
    }

    fn terr(&self, tensor: &str, detail: impl Into<String>) -> Error {
        Error::Tensor {
            file: self.tensors.file().to_string(),
            tensor: tensor.to_string(),
            detail: detail.into(),
        }
    }

    /// A float tensor (F32/F16/BF16) as f32 — for the layers that are not quantized.
    pub fn float(&self, tensor: &str) -> Result<Vec<f32>> {
        self.tensors.tensor(tensor)?.to_f32()
    }

    /// Load and validate quantized Linear `name`: every tensor's dtype, shape and values are
    /// checked against the layer and its config group; the stored scales are kept exactly.
    pub fn linear(&self, name: &str) -> Result<LoadedLinear> {
        let wname = format!("{name}.weight");
        let w = self.tensors.tensor(&wname)?;
        if w.dtype() != Dtype::I8 {
            return Err(w.error(format!(
                "dtype {} where an int-quantized weight is I8",
                w.dtype()
            )));
        }
        let &[rows, cols] = w.shape() else {
            return Err(w.error(format!("shape {:?} is not [out, in]", w.shape())));
        };
        if rows == 0 || cols == 0 {
            return Err(w.error(format!("shape {:?} has an empty dimension", w.shape())));
        }
        let gname = self.group_for(name)?.ok_or_else(|| {
            if self.is_ignored(name) {
                w.error("is quantized (I8) but its module is in `ignore`")
            } else {
                w.error("is quantized (I8) but no config group targets its module")
            }
        })?;
        let group = &self
            .groups
            .iter()
            .find(|g| g.name == gname)
            .ok_or_else(|| w.error("config group vanished"))?
            .group;
        // Checked in from_parts: every group has weights.
        let wargs = group
            .weights
            .as_ref()
            .ok_or_else(|| w.error(format!("config group `{gname}` has no weights")))?;

        // Weight scale.
        let sname = format!("{name}.weight_scale");
        let s = self.tensors.get(&sname).ok_or_else(|| {
            self.terr(
                &sname,
                format!("missing: `{wname}` is I8 and needs its scale (refusing to guess one)"),
            )
        })?;
        let per_channel = wargs.strategy() == "channel";
        let shape_ok = if per_channel {
            s.shape() == [rows, 1]
        } else {
            is_single(s.shape())
        };
        if !shape_ok {
            return Err(s.error(format!(
                "shape {:?} does not fit `{wname}` {:?} with strategy `{}` (expected {})",
                s.shape(),
                w.shape(),
                wargs.strategy(),
                if per_channel {
                    format!("[{rows}, 1]")
                } else {
                    "[1]".into()
                }
            )));
        }
        let scales = float_values(&s, "weight scale")?;
        check_scales(&s, &scales)?;

        // Weight zero point.
        let zname = format!("{name}.weight_zero_point");
        if !wargs.symmetric {
            return Err(self.terr(
                &zname,
                format!(
                    "config group `{gname}` has asymmetric weights: QuantLinear weights are symmetric"
                ),
            ));
        }
        if let Some(z) = self.tensors.get(&zname) {
            if z.shape() != s.shape() {
                return Err(z.error(format!(
                    "shape {:?} differs from its scale's {:?}",
                    z.shape(),
                    s.shape()
                )));
            }
            let zs = int_values(&z)?;
            if let Some((i, v)) = zs.iter().enumerate().find(|(_, v)| **v != 0) {
                return Err(z.error(format!(
                    "holds {v} at index {i}, but the weights are symmetric (zero point 0)"
                )));
            }
        }
        let data = w.to_i8()?;
        let weights = QuantizedWeights::from_parts(data, scales, rows, cols)
            .map_err(|e| w.error(e.to_string()))?;

        // Bias.
        let bname = format!("{name}.bias");
        let bias = match self.tensors.get(&bname) {
            None => None,
            Some(b) => {
                if b.shape() != [rows] {
                    return Err(b.error(format!(
                        "shape {:?} does not fit {rows} output features",
                        b.shape()
                    )));
                }
                let v = float_values(&b, "bias")?;
                if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                    return Err(b.error(format!("value {} at index {i} is not finite", v[i])));
                }
                Some(v)
            }
        };

        // Inputs.
        let isname = format!("{name}.input_scale");
        let izname = format!("{name}.input_zero_point");
        let input = match &group.input_activations {
            None => {
                for t in [&isname, &izname] {
                    if self.tensors.contains(t) {
                        return Err(self.terr(
                            t,
                            format!("present, but config group `{gname}` quantizes no input"),
                        ));
                    }
                }
                InputQuant::None
            }
            Some(a) if a.is_dynamic() == Some(true) => {
                for t in [&isname, &izname] {
                    if self.tensors.contains(t) {
                        return Err(self.terr(
                            t,
                            format!(
                                "present, but config group `{gname}` quantizes inputs dynamically"
                            ),
                        ));
                    }
                }
                InputQuant::Dynamic {
                    scheme: if a.symmetric {
                        Scheme::Symmetric
                    } else {
                        Scheme::Asymmetric
                    },
                    granularity: if a.strategy() == "token" {
                        Granularity::PerRow
                    } else {
                        Granularity::PerTensor
                    },
                }
            }
            Some(a) => {
                let is = self.tensors.get(&isname).ok_or_else(|| {
                    self.terr(
                        &isname,
                        format!("missing: config group `{gname}` has static input activations"),
                    )
                })?;
                if !is_single(is.shape()) {
                    return Err(is.error(format!(
                        "shape {:?}: a per-tensor input scale has one element",
                        is.shape()
                    )));
                }
                let v = float_values(&is, "input scale")?;
                check_scales(&is, &v)?;
                let zp = match (a.symmetric, self.tensors.get(&izname)) {
                    (true, None) => 0,
                    (sym, Some(z)) => {
                        if !is_single(z.shape()) {
                            return Err(z.error(format!(
                                "shape {:?}: a per-tensor zero point has one element",
                                z.shape()
                            )));
                        }
                        let zv = int_values(&z)?[0];
                        if sym && zv != 0 {
                            return Err(z.error(format!(
                                "holds {zv}, but the input activations are symmetric"
                            )));
                        }
                        if !(-128..=127).contains(&zv) {
                            return Err(z.error(format!("{zv} lies outside the int8 range")));
                        }
                        zv as i32
                    }
                    (false, None) => {
                        return Err(
                            self.terr(&izname, "missing: the input activations are asymmetric")
                        )
                    }
                };
                let p = if a.symmetric {
                    QuantParams::new(v[0], 0, -128, 127)
                } else {
                    QuantParams::new(v[0], zp + 128, 0, 255)
                }
                .map_err(|e| is.error(e.to_string()))?;
                InputQuant::Static(p)
            }
        };
        Ok(LoadedLinear {
            name: name.to_string(),
            weights,
            bias,
            input,
            scale_dtype: s.dtype(),
            group: gname.to_string(),
        })
    }

    /// Validate the whole checkpoint: every quantized layer loads, and no quantization tensor is
    /// left without its layer. Returns the quantized layer names.
    pub fn validate(&self) -> Result<Vec<String>> {
        let layers = self.quantized_layers();
        for l in &layers {
            self.linear(l)?;
        }
        for n in self.tensors.names() {
            for suffix in [".input_scale", ".input_zero_point", ".weight_zero_point"] {
                if let Some(p) = n.strip_suffix(suffix) {
                    if layers.binary_search_by(|l| l.as_str().cmp(p)).is_err() {
                        return Err(self.terr(n, "has no quantized weight beside it"));
                    }
                }
            }
            for suffix in [".weight_g_idx", ".weight_packed", ".weight_shape"] {
                if n.ends_with(suffix) {
                    return Err(self.terr(
                        n,
                        "belongs to a packed or group-quantized format this crate does not read",
                    ));
                }
            }
        }
        Ok(layers)
    }
}

fn is_single(shape: &[usize]) -> bool {
    shape.len() <= 2 && shape.iter().all(|&d| d == 1)
}

fn check_args(
    file: &str,
    group: &str,
    what: &str,
    a: &QuantizationArgs,
    strategies: &[&str],
) -> Result<()> {
    let err = |detail: String| Error::Format {
        file: file.into(),
        detail: format!("config group `{group}` {what}: {detail}"),
    };
    if a.num_bits != 8 || a.kind != "int" {
        return Err(err(format!(
            "{}-bit {} is not supported (int8 only)",
            a.num_bits, a.kind
        )));
    }
    if !strategies.contains(&a.strategy()) {
        return Err(err(format!(
            "strategy `{}` is not supported (expected one of {strategies:?})",
            a.strategy()
        )));
    }
    Ok(())
}

fn float_values(t: &TensorView<'_>, what: &str) -> Result<Vec<f32>> {
    if !t.dtype().is_supported_float() {
        return Err(t.error(format!(
            "dtype {}: a {what} is stored as F32, F16 or BF16",
            t.dtype()
        )));
    }
    t.to_f32()
}

fn int_values(t: &TensorView<'_>) -> Result<Vec<i64>> {
    if !t.dtype().is_integer() {
        return Err(t.error(format!("dtype {}: a zero point is an integer", t.dtype())));
    }
    t.to_i64()
}

/// Scales must be finite and > 0; report the first offender with its index.
fn check_scales(t: &TensorView<'_>, v: &[f32]) -> Result<()> {
    if let Some(i) = v.iter().position(|s| !(s.is_finite() && *s > 0.0)) {
        return Err(t.error(format!(
            "value {} at index {i} is not a usable scale (finite and > 0)",
            v[i]
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Writing.
// ---------------------------------------------------------------------------------------------

/// Quantize float weights `[rows, cols]` for a checkpoint whose scales are stored in
/// `scale_dtype`. For F32 this is exactly [`quant::quantize_weights`]; for F16/BF16 each scale is
/// first rounded to the storage dtype and the weights are quantized with the rounded scale, so
/// the stored scale is the one that was used. Errors name `tensor`.
pub fn quantize_for_checkpoint(
    tensor: &str,
    w: &[f32],
    rows: usize,
    cols: usize,
    scale_dtype: Dtype,
    cfg: WeightQuantConfig,
) -> Result<QuantizedWeights> {
    let q = quant::quantize_weights(tensor, w, rows, cols, cfg)?;
    if scale_dtype == Dtype::F32 {
        return Ok(q);
    }
    if !scale_dtype.is_supported_float() {
        return Err(Error::Unsupported(format!(
            "scales of `{tensor}` stored as {scale_dtype} (F32, F16, BF16)"
        )));
    }
    let (qmin, qmax) = match cfg.convention {
        Convention::CompressedTensors => (-128, 127),
        _ => (-127, 127),
    };
    let mut data = vec![0i8; w.len()];
    let mut scales = Vec::with_capacity(q.scales.len());
    let span = if q.scales.len() == 1 { w.len() } else { cols };
    for (i, &s) in q.scales.iter().enumerate() {
        let r = round_to_dtype(scale_dtype, s);
        if !(r.is_finite() && r > 0.0) {
            return Err(Error::Tensor {
                file: String::new(),
                tensor: tensor.to_string(),
                detail: format!(
                    "scale {s} of row {i} becomes {r} in {scale_dtype}: the weights are out of that dtype's range"
                ),
            });
        }
        let p = QuantParams::new(r, 0, qmin, qmax).map_err(|e| Error::Tensor {
            file: String::new(),
            tensor: tensor.to_string(),
            detail: format!("scale {r} of row {i}: {e}"),
        })?;
        let range = i * span..(i + 1) * span;
        p.quantize_to_i8(&w[range.clone()], &mut data[range])?;
        scales.push(r);
    }
    QuantizedWeights::from_parts(data, scales, rows, cols)
}

/// Error figures of a quantized weight against its float original.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WeightError {
    /// `max |w − w'|`.
    pub max_abs: f32,
    /// `‖w − w'‖₂ / ‖w‖₂` (0 for an all-zero weight).
    pub rel_l2: f64,
}

/// Compare float weights with their quantized version.
pub fn weight_error(w: &[f32], q: &QuantizedWeights) -> WeightError {
    let dq = q.dequantize();
    let mut max_abs = 0f32;
    let (mut num, mut den) = (0f64, 0f64);
    for (&a, &b) in w.iter().zip(&dq) {
        let d = a - b;
        max_abs = max_abs.max(d.abs());
        num += (d as f64) * (d as f64);
        den += (a as f64) * (a as f64);
    }
    WeightError {
        max_abs,
        rel_l2: if den > 0.0 { (num / den).sqrt() } else { 0.0 },
    }
}

/// The tensor specs a quantized layer `name` writes: weight, weight scale, and for static inputs
/// the input scale (bias, if any, is passed through by the caller).
pub fn layer_specs(
    name: &str,
    rows: usize,
    cols: usize,
    per_channel: bool,
    scale_dtype: Dtype,
    static_input: bool,
) -> Vec<TensorSpec> {
    let mut v = vec![
        TensorSpec {
            name: format!("{name}.weight"),
            dtype: Dtype::I8,
            shape: vec![rows, cols],
        },
        TensorSpec {
            name: format!("{name}.weight_scale"),
            dtype: scale_dtype,
            shape: if per_channel { vec![rows, 1] } else { vec![1] },
        },
    ];
    if static_input {
        v.push(TensorSpec {
            name: format!("{name}.input_scale"),
            dtype: scale_dtype,
            shape: vec![1],
        });
    }
    v
}

/// The tensors of one quantized layer: `name.weight` (I8), `name.weight_scale` (`[out, 1]` per
/// channel or `[1]` per tensor, in `scale_dtype`), and `name.input_scale` for a static symmetric input scale. The
/// scales must already be representable in `scale_dtype` ([`quantize_for_checkpoint`] makes them
/// so); anything else is an error rather than a silent rounding.
pub fn layer_tensors(
    name: &str,
    q: &QuantizedWeights,
    per_channel: bool,
    scale_dtype: Dtype,
    input_scale: Option<f32>,
) -> Result<Vec<(String, TensorBuf)>> {
    let expected = if per_channel { q.rows } else { 1 };
    if q.scales.len() != expected {
        return Err(Error::shape(
            "weight scales of a checkpoint layer",
            expected,
            q.scales.len(),
        ));
    }
    let exact = |what: &str, s: f32| -> Result<()> {
        if round_to_dtype(scale_dtype, s) != s {
            return Err(Error::Tensor {
                file: String::new(),
                tensor: format!("{name}.{what}"),
                detail: format!("{s} is not representable in {scale_dtype}"),
            });
        }
        Ok(())
    };
    for &s in &q.scales {
        exact("weight_scale", s)?;
    }
    let sshape = if per_channel {
        vec![q.rows, 1]
    } else {
        vec![1]
    };
    let mut v = vec![
        (
            format!("{name}.weight"),
            TensorBuf::from_i8(vec![q.rows, q.cols], &q.data),
        ),
        (
            format!("{name}.weight_scale"),
            TensorBuf::from_f32(scale_dtype, sshape, &q.scales)?,
        ),
    ];
    if let Some(s) = input_scale {
        exact("input_scale", s)?;
        v.push((
            format!("{name}.input_scale"),
            TensorBuf::from_f32(scale_dtype, vec![1], &[s])?,
        ));
    }
    Ok(v)
}

/// `config.json` with `quantization_config` set (other keys of `base` are kept).
pub fn config_with_quantization(base: Option<&Value>, q: &QuantizationConfig) -> Result<Value> {
    let mut cfg = match base {
        Some(Value::Object(m)) => m.clone(),
        Some(_) => {
            return Err(Error::Format {
                file: "config.json".into(),
                detail: "the base config is not a JSON object".into(),
            })
        }
        None => serde_json::Map::new(),
    };
    let qv = serde_json::to_value(q).map_err(|e| Error::Format {
        file: "config.json".into(),
        detail: format!("cannot serialize quantization_config: {e}"),
    })?;
    cfg.insert("quantization_config".into(), qv);
    Ok(Value::Object(cfg))
}

/// Write `config.json` (pretty-printed) into `dir`.
pub fn write_config_json(dir: impl AsRef<Path>, config: &Value) -> Result<()> {
    let path = dir.as_ref().join("config.json");
    let name = path.display().to_string();
    let mut s = serde_json::to_string_pretty(config).map_err(|e| Error::Format {
        file: name.clone(),
        detail: e.to_string(),
    })?;
    s.push('\n');
    std::fs::write(&path, s).map_err(|source| Error::Io { path: name, source })
}

/// Save `QuantLinear` layers as a compressed-tensors checkpoint in `dir` (`model.safetensors` and
/// `config.json`): each layer's int8 weights and stored scales (in `scale_dtype`, which must
/// represent them exactly — F32 always does), its float bias, and for static activations its
/// input scale. `others` are written unchanged (embeddings, norms, layers kept in float), and
/// `base_config` (the model's `config.json`) gets the `quantization_config`; `ignore` lists the
/// float Linear modules. Biases are stored as F32, exactly as the layers hold them. Files of
/// those names already in `dir` are replaced: `model.safetensors` whole or not at all (written
/// beside it, then renamed over it), `config.json` after it. (`int8rt quantize` refuses to
/// replace its input, and replaces other files only under `--force`.)
///
/// All layers share one config group, so they must share one activation scheme: symmetric
/// dynamic per token (W8A8 dynamic) or symmetric static per tensor (W8A8 static). A static
/// input scale is read back with compressed-tensors' int8 range `[-128, 127]`: the same
/// integers as this crate's `[-127, 127]` except for inputs clipped below `-127.5 · scale`.
pub fn save_quant_linears(
    dir: impl AsRef<Path>,
    layers: &[&QuantLinear],
    scale_dtype: Dtype,
    others: &BTreeMap<String, TensorBuf>,
    base_config: Option<&Value>,
    ignore: &[String],
) -> Result<()> {
    let dir = dir.as_ref();
    let first = layers
        .first()
        .ok_or_else(|| Error::Unsupported("saving a checkpoint of no layer".into()))?;
    let scheme_of = |l: &QuantLinear| -> Result<CheckpointScheme> {
        match l.activation_quant() {
            ActivationQuant::Dynamic {
                scheme: Scheme::Symmetric,
                granularity: Granularity::PerRow,
            } => Ok(CheckpointScheme::W8A8Dynamic),
            ActivationQuant::Static(p) if p.zero_point() == 0 && p.qmin() < 0 => {
                Ok(CheckpointScheme::W8A8Static)
            }
            other => Err(Error::Unsupported(format!(
                "`{}`: activation quantization {other:?} has no compressed-tensors group this crate writes (symmetric dynamic per token, or symmetric static per tensor)",
                l.name()
            ))),
        }
    };
    let scheme = scheme_of(first)?;
    let per_channel = first.weights().scales.len() != 1 || first.out_features() == 1;
    let mut tensors = others.clone();
    for l in layers {
        if scheme_of(l)? != scheme {
            return Err(Error::Unsupported(format!(
                "`{}` and `{}` quantize their inputs differently: one checkpoint holds one scheme",
                first.name(),
                l.name()
            )));
        }
        let q = l.weights();
        let lp = q.scales.len() != 1 || q.rows == 1;
        if lp != per_channel {
            return Err(Error::Unsupported(format!(
                "`{}` and `{}` mix per-channel and per-tensor weight scales",
                first.name(),
                l.name()
            )));
        }
        let input = match l.activation_quant() {
            ActivationQuant::Static(p) => Some(p.scale()),
            _ => None,
        };
        let mut add = layer_tensors(l.name(), q, per_channel, scale_dtype, input)?;
        if let Some(b) = l.bias() {
            add.push((
                format!("{}.bias", l.name()),
                TensorBuf::from_f32(Dtype::F32, vec![b.len()], b)?,
            ));
        }
        for (n, t) in add {
            if tensors.insert(n.clone(), t).is_some() {
                return Err(Error::Tensor {
                    file: dir.join("model.safetensors").display().to_string(),
                    tensor: n,
                    detail: "written twice (a layer and `others` both hold it)".into(),
                });
            }
        }
    }
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.display().to_string(),
        source,
    })?;
    super::safetensors::write(dir.join("model.safetensors"), &tensors, &BTreeMap::new())?;
    let granularity = if per_channel {
        Granularity::PerChannel
    } else {
        Granularity::PerTensor
    };
    let q = QuantizationConfig::for_scheme(scheme, granularity, ignore, "minmax");
    write_config_json(dir, &config_with_quantization(base_config, &q)?)
}
