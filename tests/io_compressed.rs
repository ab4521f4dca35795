//! tests/io_compressed.rs — compressed-tensors int8 checkpoints: a checkpoint produced outside
//! this crate with llm-compressor's conventions (scripts/make-ct-fixture.py) loads with its stored
//! scales and computes what an independent float64 computation gives; our own checkpoints round
//! trip bit for bit; every checkpoint whose scales or config do not fit is refused with an error
//! naming the tensor.

use std::collections::BTreeMap;

use int8rt::gemm::Context;
use int8rt::io::compressed::{
    layer_tensors, quantize_for_checkpoint, CheckpointScheme, CompressedCheckpoint, InputQuant,
    QuantizationConfig,
};
use int8rt::io::safetensors::{self, Dtype, SafeTensors, TensorBuf};
use int8rt::nn::{ActivationQuant, LinearConfig, QuantLinear};
use int8rt::quant::{Convention, Granularity, QuantParams, Scheme, WeightQuantConfig};
use int8rt::Error;
use serde_json::{json, Value};

mod common;
use common::Rng;

const FIXTURE: &str = "tests/data/ct-llmcompressor";

#[test]
fn llm_compressor_checkpoint_loads_with_its_stored_scales() {
    let ck = CompressedCheckpoint::open_dir(FIXTURE).unwrap();
    let layers = ck.validate().unwrap();
    assert_eq!(
        layers,
        [
            "model.layers.0.mlp.down_proj",
            "model.layers.0.mlp.up_proj",
            "model.layers.0.self_attn.o_proj"
        ]
    );
    assert!(ck.is_ignored("lm_head"));
    assert_eq!(ck.group_for("lm_head").unwrap(), None);
    // The regex group wins over the class-name group for the MLP.
    assert_eq!(
        ck.group_for("model.layers.0.mlp.up_proj").unwrap(),
        Some("W8A8")
    );
    assert_eq!(
        ck.group_for("model.layers.0.self_attn.o_proj").unwrap(),
        Some("static")
    );

    let st = SafeTensors::open(format!("{FIXTURE}/model.safetensors")).unwrap();
    for name in &layers {
        let l = ck.linear(name).unwrap();
        let stored_q = st
            .tensor(&format!("{name}.weight"))
            .unwrap()
            .to_i8()
            .unwrap();
        let stored_s = st
            .tensor(&format!("{name}.weight_scale"))
            .unwrap()
            .to_f32()
            .unwrap();
        assert_eq!(l.weights.data(), stored_q, "{name}: weights as stored");
        // Bit for bit: the stored f16 scales, widened to f32, never re-derived.
        let got: Vec<u32> = l.weights.scales().iter().map(|s| s.to_bits()).collect();
        let want: Vec<u32> = stored_s.iter().map(|s| s.to_bits()).collect();
        assert_eq!(got, want, "{name}: scales as stored");
        assert_eq!(l.scale_dtype, Dtype::F16);
        // llm-compressor's full range: some weight sits at -128 or 127 only because its divisor
        // is 127.5 — the narrow-range re-derivation `amax / 127` would not reproduce these scales.
        let rederived: Vec<f32> = (0..l.weights.rows())
            .map(|r| {
                let row = &l.weights.dequantize()[r * l.weights.cols()..(r + 1) * l.weights.cols()];
                row.iter().fold(0f32, |a, &x| a.max(x.abs())) / 127.0
            })
            .collect();
        assert_ne!(rederived, l.weights.scales(), "{name}");
    }
    let up = ck.linear("model.layers.0.mlp.up_proj").unwrap();
    assert_eq!(
        up.input,
        InputQuant::Dynamic {
            scheme: Scheme::Symmetric,
            granularity: Granularity::PerRow
        }
    );
    let o = ck.linear("model.layers.0.self_attn.o_proj").unwrap();
    let stored_in = st
        .tensor("model.layers.0.self_attn.o_proj.input_scale")
        .unwrap()
        .to_f32()
        .unwrap()[0];
    assert_eq!(
        o.input,
        InputQuant::Static(QuantParams::new(stored_in, 0, -128, 127).unwrap())
    );
    // The ignored head stays float.
    assert_eq!(ck.float("lm_head.weight").unwrap().len(), 8 * 16);
}

#[test]
fn llm_compressor_checkpoint_computes_what_numpy_computes() {
    let ck = CompressedCheckpoint::open_dir(FIXTURE).unwrap();
    let expected = SafeTensors::open(format!("{FIXTURE}/expected.safetensors")).unwrap();
    let ctx = Context::new();
    for name in ck.validate().unwrap() {
        let l = ck.linear(&name).unwrap();
        let layer = l.to_quant_linear().unwrap();
        let x = expected
            .tensor(&format!("{name}.x"))
            .unwrap()
            .to_f32()
            .unwrap();
        let want = expected
            .tensor(&format!("{name}.y"))
            .unwrap()
            .to_f32()
            .unwrap();
        let m = x.len() / layer.in_features();
        let y = layer.forward_f32(&ctx, &x, m).unwrap();
        let ymax = want.iter().fold(0f32, |a, &v| a.max(v.abs()));
        // The integer part is exact; numpy's float64 epilogue differs from the f32 one by a few
        // ulps of |y|, and a static layer's i32 bias is off by at most half a step s_x · s_w.
        let bias_step = match l.input {
            InputQuant::Static(p) => {
                0.5 * p.scale() * l.weights.scales().iter().fold(0f32, |a, &s| a.max(s))
            }
            _ => 0.0,
        };
        let tol = 4e-6 * ymax + bias_step;
        for (i, (a, b)) in y.iter().zip(&want).enumerate() {
            assert!(
                (a - b).abs() <= tol,
                "{name}[{i}]: {a} vs numpy {b} (tol {tol})"
            );
        }
    }
}

fn random_weights(rng: &mut Rng, rows: usize, cols: usize) -> Vec<f32> {
    let mut w = rng.f32s(rows * cols, 0.05);
    w[cols + 1] = 0.9; // an outlier channel
    w
}

/// A valid in-memory checkpoint with two layers: `a` (per channel) and `b` (per channel, bias).
fn base_checkpoint(scheme: CheckpointScheme) -> (BTreeMap<String, TensorBuf>, Value) {
    let mut rng = Rng::new(7);
    let mut t = BTreeMap::new();
    for (name, rows, cols) in [("enc.a", 6, 8), ("enc.b", 4, 6)] {
        let w = random_weights(&mut rng, rows, cols);
        let q = quantize_for_checkpoint(
            name,
            &w,
            rows,
            cols,
            Dtype::F32,
            WeightQuantConfig::default(),
        )
        .unwrap();
        let input = (scheme == CheckpointScheme::W8A8Static).then_some(0.02f32);
        for (n, buf) in layer_tensors(name, &q, true, Dtype::F32, input).unwrap() {
            t.insert(n, buf);
        }
    }
    t.insert(
        "enc.b.bias".into(),
        TensorBuf::from_f32(Dtype::F32, vec![4], &[0.1, -0.2, 0.3, 0.0]).unwrap(),
    );
    t.insert(
        "emb.weight".into(),
        TensorBuf::from_f32(Dtype::F32, vec![3, 8], &[0.5; 24]).unwrap(),
    );
    let q =
        QuantizationConfig::for_scheme(scheme, Granularity::PerChannel, &["emb".into()], "minmax");
    let cfg =
        json!({"model_type": "test", "quantization_config": serde_json::to_value(q).unwrap()});
    (t, cfg)
}

fn open_mem(t: &BTreeMap<String, TensorBuf>, cfg: Value) -> int8rt::Result<CompressedCheckpoint> {
    let bytes = safetensors::to_bytes(t, &BTreeMap::new())?;
    let st = SafeTensors::from_bytes("mem.safetensors", bytes)?;
    CompressedCheckpoint::from_parts(st, "config.json".into(), cfg)
}

#[test]
fn own_checkpoint_round_trips_through_files_bit_for_bit() {
    let dir = std::env::temp_dir().join(format!("int8rt-ct-rt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut rng = Rng::new(11);
    let (rows, cols, m) = (24, 40, 7);
    let w = random_weights(&mut rng, rows, cols);
    let bias: Vec<f32> = rng.f32s(rows, 0.1);
    let x = rng.f32s(m * cols, 1.0);
    let ctx = Context::new();
    for (convention, scale_dtype) in [
        (Convention::Int8rt, Dtype::F32),
        (Convention::CompressedTensors, Dtype::F32),
        (Convention::Int8rt, Dtype::F16),
        (Convention::CompressedTensors, Dtype::BF16),
    ] {
        let cfg = WeightQuantConfig {
            granularity: Granularity::PerChannel,
            convention,
        };
        let q = quantize_for_checkpoint("l", &w, rows, cols, scale_dtype, cfg).unwrap();
        if scale_dtype == Dtype::F32 {
            // Exactly the crate's weight quantizer.
            let direct = int8rt::quant::quantize_weights("l", &w, rows, cols, cfg).unwrap();
            assert_eq!(q, direct);
        } else {
            // Each stored scale is the one the weights were quantized with.
            let qmin = if convention == Convention::CompressedTensors {
                -128
            } else {
                -127
            };
            for r in 0..rows {
                let p = QuantParams::new(q.scales()[r], 0, qmin, 127).unwrap();
                for c in 0..cols {
                    assert_eq!(q.data()[r * cols + c] as i32, p.quantize(w[r * cols + c]));
                }
            }
        }
        let mut t: BTreeMap<String, TensorBuf> = layer_tensors("l", &q, true, scale_dtype, None)
            .unwrap()
            .into_iter()
            .collect();
        t.insert(
            "l.bias".into(),
            TensorBuf::from_f32(Dtype::F32, vec![rows], &bias).unwrap(),
        );
        safetensors::write(dir.join("model.safetensors"), &t, &BTreeMap::new()).unwrap();
        let qc = QuantizationConfig::for_scheme(
            CheckpointScheme::W8A8Dynamic,
            Granularity::PerChannel,
            &[],
            "minmax",
        );
        let cfg_json =
            int8rt::io::compressed::config_with_quantization(Some(&json!({"a": 1})), &qc).unwrap();
        int8rt::io::compressed::write_config_json(&dir, &cfg_json).unwrap();

        let ck = CompressedCheckpoint::open_dir(&dir).unwrap();
        assert_eq!(ck.config_json()["a"], 1, "other config keys are kept");
        let l = ck.linear("l").unwrap();
        assert_eq!(l.weights, q, "{convention:?} {scale_dtype}");
        assert_eq!(l.bias.as_deref(), Some(&bias[..]));
        assert_eq!(l.scale_dtype, scale_dtype);
        let loaded = l.to_quant_linear().unwrap();
        let direct =
            QuantLinear::from_quantized("l", q, Some(&bias), ActivationQuant::default()).unwrap();
        let (a, b) = (
            loaded.forward_f32(&ctx, &x, m).unwrap(),
            direct.forward_f32(&ctx, &x, m).unwrap(),
        );
        assert_eq!(
            a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        if convention == Convention::Int8rt && scale_dtype == Dtype::F32 {
            // ... and the same bits as a layer built from the float weights.
            let lc = LinearConfig::default();
            let f = QuantLinear::from_f32("l", &w, rows, cols, Some(&bias), lc).unwrap();
            assert_eq!(f.forward_f32(&ctx, &x, m).unwrap(), a);
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn base_checkpoints_of_every_scheme_are_valid() {
    for scheme in [
        CheckpointScheme::W8Only,
        CheckpointScheme::W8A8Dynamic,
        CheckpointScheme::W8A8Static,
    ] {
        let (t, cfg) = base_checkpoint(scheme);
        let ck = open_mem(&t, cfg).unwrap();
        assert_eq!(ck.validate().unwrap(), ["enc.a", "enc.b"]);
        let b = ck.linear("enc.b").unwrap();
        match scheme {
            CheckpointScheme::W8Only => {
                assert_eq!(b.input, InputQuant::None);
                assert!(matches!(b.to_quant_linear(), Err(Error::Unsupported(_))));
                b.to_quant_linear_with(ActivationQuant::default()).unwrap();
            }
            CheckpointScheme::W8A8Dynamic => assert!(matches!(b.input, InputQuant::Dynamic { .. })),
            CheckpointScheme::W8A8Static => {
                assert_eq!(
                    b.input,
                    InputQuant::Static(QuantParams::new(0.02, 0, -128, 127).unwrap())
                );
                let layer = b.to_quant_linear().unwrap();
                assert!(layer.bias_i32().is_some());
            }
        }
    }
}

/// Open a mutated checkpoint and expect an [`Error::Tensor`] naming `tensor` whose message
/// contains `needle`. Loading goes through `validate`, which loads every layer.
fn refused(t: &BTreeMap<String, TensorBuf>, cfg: Value, tensor: &str, needle: &str) {
    let r = open_mem(t, cfg).and_then(|ck| ck.validate());
    match r {
        Err(Error::Tensor {
            tensor: got,
            detail,
            ..
        }) => {
            assert_eq!(got, tensor, "{detail}");
            assert!(detail.contains(needle), "`{detail}` lacks `{needle}`");
        }
        other => panic!("expected a refusal naming `{tensor}` ({needle}), got {other:?}"),
    }
}

fn refused_config(t: &BTreeMap<String, TensorBuf>, cfg: Value, needle: &str) {
    match open_mem(t, cfg).and_then(|ck| ck.validate()) {
        Err(Error::Format { detail, .. }) => {
            assert!(detail.contains(needle), "`{detail}` lacks `{needle}`")
        }
        other => panic!("expected a config refusal ({needle}), got {other:?}"),
    }
}

fn f32buf(shape: Vec<usize>, v: &[f32]) -> TensorBuf {
    TensorBuf::from_f32(Dtype::F32, shape, v).unwrap()
}

#[test]
fn scales_that_do_not_fit_their_layer_are_refused_naming_the_tensor() {
    let (base, cfg) = base_checkpoint(CheckpointScheme::W8A8Dynamic);
    let scales = base["enc.a.weight_scale"].clone();
    let s: Vec<f32> = SafeTensors::from_bytes(
        "x",
        safetensors::to_bytes(
            &[("s".to_string(), scales.clone())].into_iter().collect(),
            &BTreeMap::new(),
        )
        .unwrap(),
    )
    .unwrap()
    .tensor("s")
    .unwrap()
    .to_f32()
    .unwrap();

    let with = |name: &str, buf: TensorBuf| {
        let mut t = base.clone();
        t.insert(name.to_string(), buf);
        t
    };
    let without = |name: &str| {
        let mut t = base.clone();
        t.remove(name);
        t
    };
    // Shape: [out] instead of [out, 1]; [1] under a per-channel group; [out + 1, 1].
    refused(
        &with("enc.a.weight_scale", f32buf(vec![6], &s)),
        cfg.clone(),
        "enc.a.weight_scale",
        "[6, 1]",
    );
    refused(
        &with("enc.a.weight_scale", f32buf(vec![1], &s[..1])),
        cfg.clone(),
        "enc.a.weight_scale",
        "strategy `channel`",
    );
    let mut s7 = s.clone();
    s7.push(1.0);
    refused(
        &with("enc.a.weight_scale", f32buf(vec![7, 1], &s7)),
        cfg.clone(),
        "enc.a.weight_scale",
        "does not fit",
    );
    // Dtype: integer or f64 scales.
    refused(
        &with(
            "enc.a.weight_scale",
            TensorBuf::from_i8(vec![6, 1], &[1; 6]),
        ),
        cfg.clone(),
        "enc.a.weight_scale",
        "dtype I8",
    );
    refused(
        &with(
            "enc.a.weight_scale",
            TensorBuf {
                dtype: Dtype::F64,
                shape: vec![6, 1],
                data: vec![0; 48],
            },
        ),
        cfg.clone(),
        "enc.a.weight_scale",
        "dtype F64",
    );
    // Values: zero, negative, NaN, inf.
    for bad in [0.0f32, -0.01, f32::NAN, f32::INFINITY] {
        let mut v = s.clone();
        v[3] = bad;
        refused(
            &with("enc.a.weight_scale", f32buf(vec![6, 1], &v)),
            cfg.clone(),
            "enc.a.weight_scale",
            "index 3",
        );
    }
    // Missing.
    refused(
        &without("enc.a.weight_scale"),
        cfg.clone(),
        "enc.a.weight_scale",
        "missing",
    );
    // The weight itself: float where I8 belongs, wrong rank.
    refused(
        &with("enc.a.weight", f32buf(vec![6, 8], &[0.0; 48])),
        cfg.clone(),
        "enc.a.weight",
        "I8",
    );
    refused(
        &with("enc.a.weight", TensorBuf::from_i8(vec![48], &[0; 48])),
        cfg.clone(),
        "enc.a.weight",
        "[out, in]",
    );
    // A non-zero weight zero point next to symmetric weights; a zero one is accepted.
    let mut zp = vec![0i8; 6];
    refused(
        &{
            zp[2] = 3;
            with(
                "enc.a.weight_zero_point",
                TensorBuf::from_i8(vec![6, 1], &zp),
            )
        },
        cfg.clone(),
        "enc.a.weight_zero_point",
        "symmetric",
    );
    open_mem(
        &with(
            "enc.a.weight_zero_point",
            TensorBuf::from_i8(vec![6, 1], &[0; 6]),
        ),
        cfg.clone(),
    )
    .unwrap()
    .validate()
    .unwrap();
    // Bias of the wrong length or with a NaN.
    refused(
        &with("enc.b.bias", f32buf(vec![5], &[0.0; 5])),
        cfg.clone(),
        "enc.b.bias",
        "4 output features",
    );
    refused(
        &with("enc.b.bias", f32buf(vec![4], &[0.0, f32::NAN, 0.0, 0.0])),
        cfg.clone(),
        "enc.b.bias",
        "not finite",
    );
    // An input scale where the group is dynamic; a stray input scale without a layer.
    refused(
        &with("enc.a.input_scale", f32buf(vec![1], &[0.1])),
        cfg.clone(),
        "enc.a.input_scale",
        "dynamically",
    );
    refused(
        &with("dec.input_scale", f32buf(vec![1], &[0.1])),
        cfg.clone(),
        "dec.input_scale",
        "no quantized weight",
    );
    // An int8 weight in an ignored module.
    refused(
        &with("emb.weight", TensorBuf::from_i8(vec![3, 8], &[1; 24])),
        cfg.clone(),
        "emb.weight",
        "ignore",
    );

    // Static activations: the input scale must be there, one element, a usable float.
    let (sbase, scfg) = base_checkpoint(CheckpointScheme::W8A8Static);
    let swith = |name: &str, buf: Option<TensorBuf>| {
        let mut t = sbase.clone();
        match buf {
            Some(b) => t.insert(name.to_string(), b),
            None => t.remove(name),
        };
        t
    };
    refused(
        &swith("enc.b.input_scale", None),
        scfg.clone(),
        "enc.b.input_scale",
        "missing",
    );
    refused(
        &swith("enc.b.input_scale", Some(f32buf(vec![2], &[0.1, 0.1]))),
        scfg.clone(),
        "enc.b.input_scale",
        "one element",
    );
    refused(
        &swith("enc.b.input_scale", Some(f32buf(vec![1], &[-0.1]))),
        scfg.clone(),
        "enc.b.input_scale",
        "usable scale",
    );
    refused(
        &swith(
            "enc.b.input_zero_point",
            Some(TensorBuf::from_i8(vec![1], &[5])),
        ),
        scfg.clone(),
        "enc.b.input_zero_point",
        "symmetric",
    );
    // Weight-only: no input tensors at all.
    let (wbase, wcfg) = base_checkpoint(CheckpointScheme::W8Only);
    let mut t = wbase.clone();
    t.insert("enc.a.input_scale".into(), f32buf(vec![1], &[0.1]));
    refused(&t, wcfg, "enc.a.input_scale", "quantizes no input");
}

#[test]
fn configs_this_crate_cannot_run_are_refused() {
    let (t, cfg) = base_checkpoint(CheckpointScheme::W8A8Dynamic);
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut c = cfg.clone();
        f(&mut c);
        c
    };
    let g = "/quantization_config/config_groups/group_0";
    refused_config(&t, json!({"model_type": "x"}), "no `quantization_config`");
    refused_config(
        &t,
        edit(&|c| c["quantization_config"]["quant_method"] = json!("gptq")),
        "quant_method",
    );
    refused_config(
        &t,
        edit(&|c| c["quantization_config"]["format"] = json!("pack-quantized")),
        "pack-quantized",
    );
    refused_config(
        &t,
        edit(&|c| c["quantization_config"]["quantization_status"] = json!("frozen")),
        "frozen",
    );
    refused_config(
        &t,
        edit(&|c| *c.pointer_mut(&format!("{g}/weights/num_bits")).unwrap() = json!(4)),
        "4-bit",
    );
    refused_config(
        &t,
        edit(&|c| *c.pointer_mut(&format!("{g}/weights/type")).unwrap() = json!("float")),
        "int8 only",
    );
    refused_config(
        &t,
        edit(&|c| *c.pointer_mut(&format!("{g}/weights/strategy")).unwrap() = json!("group")),
        "strategy `group`",
    );
    refused_config(
        &t,
        edit(&|c| *c.pointer_mut(&format!("{g}/weights/dynamic")).unwrap() = json!(true)),
        "dynamic weights",
    );
    refused_config(
        &t,
        edit(&|c| {
            *c.pointer_mut(&format!("{g}/input_activations/dynamic"))
                .unwrap() = json!("local")
        }),
        "local",
    );
    refused_config(
        &t,
        edit(&|c| *c.pointer_mut(&format!("{g}/format")).unwrap() = json!("float-quantized")),
        "float-quantized",
    );
    refused_config(
        &t,
        edit(&|c| *c.pointer_mut(&format!("{g}/targets")).unwrap() = json!(["re:("])),
        "regular expression",
    );
    refused_config(
        &t,
        edit(&|c| c["quantization_config"]["config_groups"] = json!("nope")),
        "does not parse",
    );
    // Two groups claiming the same module at the same rank.
    refused_config(
        &t,
        edit(&|c| {
            let g0 = c.pointer(g).unwrap().clone();
            c["quantization_config"]["config_groups"]["group_1"] = g0;
        }),
        "alike",
    );
    // Asymmetric weights are named at the weight zero point.
    refused(
        &t,
        edit(&|c| *c.pointer_mut(&format!("{g}/weights/symmetric")).unwrap() = json!(false)),
        "enc.a.weight_zero_point",
        "asymmetric",
    );
    // No group matches an int8 weight.
    refused(
        &t,
        edit(&|c| *c.pointer_mut(&format!("{g}/targets")).unwrap() = json!(["re:enc\\.b"])),
        "enc.a.weight",
        "no config group",
    );
}

#[test]
fn quant_linears_save_and_load_with_the_same_outputs() {
    let dir = std::env::temp_dir().join(format!("int8rt-ct-save-{}", std::process::id()));
    let mut rng = Rng::new(21);
    let ctx = Context::new();
    let shapes = [("blk.q", 12, 16), ("blk.o", 16, 12)];
    let ws: Vec<Vec<f32>> = shapes
        .iter()
        .map(|&(_, r, c)| random_weights(&mut rng, r, c))
        .collect();
    let bs: Vec<Vec<f32>> = shapes.iter().map(|&(_, r, _)| rng.f32s(r, 0.1)).collect();
    let xs: Vec<Vec<f32>> = shapes
        .iter()
        .map(|&(_, _, c)| rng.f32s(5 * c, 1.0))
        .collect();
    let mut others = BTreeMap::new();
    others.insert("emb.weight".to_string(), f32buf(vec![2, 16], &[0.25; 32]));
    for act in [
        ActivationQuant::default(),
        // A static scale wide enough for the inputs, so nothing is clipped at -128.
        ActivationQuant::Static(QuantParams::symmetric(8.0).unwrap()),
    ] {
        let layers: Vec<QuantLinear> = shapes
            .iter()
            .enumerate()
            .map(|(i, &(n, r, c))| {
                let cfg = LinearConfig {
                    weights: WeightQuantConfig::default(),
                    activations: act,
                };
                QuantLinear::from_f32(n, &ws[i], r, c, Some(&bs[i]), cfg).unwrap()
            })
            .collect();
        let refs: Vec<&QuantLinear> = layers.iter().collect();
        int8rt::io::compressed::save_quant_linears(
            &dir,
            &refs,
            Dtype::F32,
            &others,
            Some(&json!({"model_type": "t"})),
            &["emb".to_string()],
        )
        .unwrap();
        let ck = CompressedCheckpoint::open_dir(&dir).unwrap();
        assert_eq!(ck.validate().unwrap(), ["blk.o", "blk.q"]);
        assert_eq!(ck.float("emb.weight").unwrap(), vec![0.25; 32]);
        for (i, l) in layers.iter().enumerate() {
            let loaded = ck.linear(l.name()).unwrap();
            assert_eq!(&loaded.weights, l.weights());
            assert_eq!(loaded.bias.as_deref(), l.bias());
            let back = loaded.to_quant_linear().unwrap();
            let m = xs[i].len() / l.in_features();
            assert_eq!(
                back.forward_f32(&ctx, &xs[i], m).unwrap(),
                l.forward_f32(&ctx, &xs[i], m).unwrap(),
                "{} {act:?}",
                l.name()
            );
        }
    }
    // One checkpoint, one scheme.
    let cfg = |a| LinearConfig {
        weights: WeightQuantConfig::default(),
        activations: a,
    };
    let a =
        QuantLinear::from_f32("a", &ws[0], 12, 16, None, cfg(ActivationQuant::default())).unwrap();
    let b = QuantLinear::from_f32(
        "b",
        &ws[0],
        12,
        16,
        None,
        cfg(ActivationQuant::Static(
            QuantParams::symmetric(1.0).unwrap(),
        )),
    )
    .unwrap();
    let r = int8rt::io::compressed::save_quant_linears(
        &dir,
        &[&a, &b],
        Dtype::F32,
        &BTreeMap::new(),
        None,
        &[],
    );
    assert!(matches!(r, Err(Error::Unsupported(_))), "{r:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
