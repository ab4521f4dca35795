//! tests/cli.rs — the `int8rt` command line end to end: `quantize` a small f16 checkpoint in each
//! scheme and check what it wrote through the strict loader (scales in the weight's dtype, the
//! ignore list honoured, other tensors copied byte for byte, the model config kept); `inspect`;
//! and the refusals a user meets.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use half::f16;
use int8rt::calib::{AmaxMethod, ObserverConfig, TensorObserver};
use int8rt::io::compressed::quantize_for_checkpoint;
use int8rt::io::safetensors::{self, Dtype, TensorBuf};
use int8rt::io::{CompressedCheckpoint, InputQuant, SafeTensors};
use int8rt::quant::{Convention, Granularity, QuantParams, WeightQuantConfig};

mod common;
use common::Rng;

struct Dir(PathBuf);
impl Dir {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("int8rt-cli-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
}
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn int8rt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_int8rt"))
        .args(args)
        .output()
        .expect("the int8rt binary runs")
}

fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

/// `int8rt quantize <input> -o <out> <extra…>`.
fn quantize(input: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "quantize",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    int8rt(&args)
}

/// The command succeeded (its output is the failure message otherwise); returns its stdout.
fn succeeded(o: &Output) -> String {
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    text(&o.stdout)
}

/// The command failed, and its stderr says `what`.
fn refused_with(o: &Output, what: &str) {
    assert!(!o.status.success(), "{}", text(&o.stdout));
    let e = text(&o.stderr);
    assert!(e.contains(what), "{e}");
}

/// A small f16 model: two Linears, an embedding table, a norm; and its config.json.
fn write_model(dir: &Path) -> BTreeMap<String, Vec<f32>> {
    let mut rng = Rng::new(3);
    let mut floats = BTreeMap::new();
    floats.insert("blk.0.fc1.weight".to_string(), rng.f32s(8 * 16, 0.05));
    floats.insert("blk.0.fc1.bias".to_string(), rng.f32s(8, 0.1));
    floats.insert("blk.0.fc2.weight".to_string(), rng.f32s(16 * 8, 0.05));
    floats.insert("emb.weight".to_string(), rng.f32s(10 * 16, 1.0));
    floats.insert("norm.weight".to_string(), vec![1.0; 16]);
    let shapes: BTreeMap<&str, Vec<usize>> = [
        ("blk.0.fc1.weight", vec![8, 16]),
        ("blk.0.fc1.bias", vec![8]),
        ("blk.0.fc2.weight", vec![16, 8]),
        ("emb.weight", vec![10, 16]),
        ("norm.weight", vec![16]),
    ]
    .into_iter()
    .collect();
    let mut t = BTreeMap::new();
    for (n, v) in &floats {
        let v16: Vec<f32> = v.iter().map(|&x| f16::from_f32(x).to_f32()).collect();
        t.insert(
            n.clone(),
            TensorBuf::from_f32(Dtype::F16, shapes[n.as_str()].clone(), &v16).unwrap(),
        );
    }
    safetensors::write(dir.join("model.safetensors"), &t, &BTreeMap::new()).unwrap();
    std::fs::write(
        dir.join("config.json"),
        r#"{"model_type": "tiny", "hidden_size": 16}"#,
    )
    .unwrap();
    floats
        .into_iter()
        .map(|(n, v)| (n, v.iter().map(|&x| f16::from_f32(x).to_f32()).collect()))
        .collect()
}

#[test]
fn quantize_writes_a_checkpoint_the_strict_loader_accepts() {
    let d = Dir::new("q");
    let floats = write_model(&d.0);
    let input = d.0.join("model.safetensors");
    for (full_range, out_name) in [(false, "narrow"), (true, "full")] {
        let out = d.0.join(out_name);
        // (a `.weight` suffix names the same module)
        let ignore = if full_range { "emb.weight" } else { "emb" };
        let extra: &[&str] = if full_range {
            &["--ignore", ignore, "--full-range"]
        } else {
            &["--ignore", ignore]
        };
        let stdout = succeeded(&quantize(&input, &out, extra));
        assert!(
            stdout.contains("blk.0.fc1") && stdout.contains("8×16"),
            "{stdout}"
        );
        assert!(stdout.contains("read back and validated"), "{stdout}");

        let ck = CompressedCheckpoint::open_dir(&out).unwrap();
        assert_eq!(ck.validate().unwrap(), ["blk.0.fc1", "blk.0.fc2"]);
        assert_eq!(
            ck.config_json()["model_type"],
            "tiny",
            "the model config is kept"
        );
        assert_eq!(
            ck.config().ignore.as_deref(),
            Some(&["emb".to_string()][..])
        );
        let cfg = WeightQuantConfig {
            granularity: Granularity::PerChannel,
            convention: if full_range {
                Convention::CompressedTensors
            } else {
                Convention::Int8rt
            },
        };
        let l = ck.linear("blk.0.fc1").unwrap();
        let want =
            quantize_for_checkpoint("w", &floats["blk.0.fc1.weight"], 8, 16, Dtype::F16, cfg)
                .unwrap();
        assert_eq!(l.weights, want);
        assert_eq!(l.scale_dtype, Dtype::F16, "scales in the weight's dtype");
        // The stored scale is amax / 127 (or / 127.5) rounded to f16.
        let row0 = &floats["blk.0.fc1.weight"][..16];
        let amax = row0.iter().fold(0f32, |a, &x| a.max(x.abs()));
        let div = if full_range { 127.5 } else { 127.0 };
        assert_eq!(l.weights.scales()[0], f16::from_f32(amax / div).to_f32());
        assert_eq!(l.bias.as_deref(), Some(&floats["blk.0.fc1.bias"][..]));
        assert!(matches!(l.input, InputQuant::Dynamic { .. }));
        // Untouched tensors are copied byte for byte.
        let src = SafeTensors::open(&input).unwrap();
        for n in ["emb.weight", "norm.weight", "blk.0.fc1.bias"] {
            assert_eq!(
                ck.tensors().tensor(n).unwrap().bytes(),
                src.tensor(n).unwrap().bytes(),
                "{n}"
            );
        }
        // inspect reads it back.
        let s = succeeded(&int8rt(&["inspect", out.to_str().unwrap()]));
        assert!(
            s.contains("2 quantized Linear layers, all validated"),
            "{s}"
        );
        assert!(s.contains("inputs dynamic per token"), "{s}");
    }
}

#[test]
fn static_and_weight_only_schemes() {
    let d = Dir::new("s");
    let _ = write_model(&d.0);
    let input = d.0.join("model.safetensors");
    let out = d.0.join("static");
    // Without calibration data: a clear refusal.
    let o = quantize(
        &input,
        &out,
        &["--scheme", "w8a8-static", "--ignore", "emb"],
    );
    refused_with(&o, "--calib-data");

    // Calibration inputs: one [rows, in] tensor per Linear.
    let mut rng = Rng::new(5);
    let x1 = rng.f32s(6 * 16, 1.0);
    let x2 = rng.f32s(4 * 8, 2.0);
    let mut c = BTreeMap::new();
    c.insert(
        "blk.0.fc1".to_string(),
        TensorBuf::from_f32(Dtype::F32, vec![6, 16], &x1).unwrap(),
    );
    c.insert(
        "blk.0.fc2".to_string(),
        TensorBuf::from_f32(Dtype::F32, vec![4, 8], &x2).unwrap(),
    );
    let calib = d.0.join("calib.safetensors");
    safetensors::write(&calib, &c, &BTreeMap::new()).unwrap();
    // w8a8-static from `calib` by `method`, into `out`.
    let calibrated = |method: &str| {
        let calib = calib.to_str().unwrap();
        let args = [
            "--scheme",
            "w8a8-static",
            "--calib-data",
            calib,
            "--method",
            method,
            "--ignore",
            "emb",
            "--force",
        ];
        quantize(&input, &out, &args)
    };
    assert!(succeeded(&calibrated("max")).contains("input scale"));
    let ck = CompressedCheckpoint::open_dir(&out).unwrap();
    let l = ck.linear("blk.0.fc1").unwrap();
    let amax = x1.iter().fold(0f32, |a, &x| a.max(x.abs()));
    let s = f16::from_f32(amax / 127.0).to_f32();
    assert_eq!(
        l.input,
        InputQuant::Static(QuantParams::new(s, 0, -128, 127).unwrap())
    );
    l.to_quant_linear().unwrap();

    // The histogram methods: the stored input scale is the calibration module's amax / 127.
    for (flag, method) in [
        ("percentile:99.9", AmaxMethod::Percentile(99.9)),
        ("mse", AmaxMethod::Mse),
        ("entropy", AmaxMethod::Entropy),
    ] {
        succeeded(&calibrated(flag));
        let cfg = ObserverConfig {
            signed_histogram: false,
            moving_average: None,
            ..ObserverConfig::default()
        };
        let mut obs = TensorObserver::new("x", cfg).unwrap();
        obs.observe(&x1, &[6, 16]).unwrap();
        let want = f16::from_f32(obs.amax(method, false).unwrap() / 127.0).to_f32();
        let ck = CompressedCheckpoint::open_dir(&out).unwrap();
        match ck.linear("blk.0.fc1").unwrap().input {
            InputQuant::Static(p) => assert_eq!(p.scale(), want, "{flag}"),
            other => panic!("{other:?}"),
        }
        let group = &ck.config().config_groups["group_0"];
        let observer = &group.input_activations.as_ref().unwrap().extra["observer"];
        assert_eq!(observer, flag, "the method is recorded as the observer");
    }

    // Calibration data that lacks a layer, or has the wrong width.
    let mut bad = c.clone();
    bad.remove("blk.0.fc2");
    safetensors::write(&calib, &bad, &BTreeMap::new()).unwrap();
    refused_with(&calibrated("max"), "blk.0.fc2");

    // Weight-only.
    let wo = d.0.join("wo");
    succeeded(&quantize(
        &input,
        &wo,
        &["--scheme", "w8-only", "--ignore", "re:emb.*"],
    ));
    let ck = CompressedCheckpoint::open_dir(&wo).unwrap();
    assert_eq!(ck.linear("blk.0.fc2").unwrap().input, InputQuant::None);
    assert!(ck.config().config_groups["group_0"]
        .input_activations
        .is_none());
}

#[test]
fn refusals_the_user_meets() {
    let d = Dir::new("r");
    let _ = write_model(&d.0);
    let input = d.0.join("model.safetensors");
    let out = d.0.join("q");
    let o = quantize(&input, &out, &[]);
    succeeded(&o);
    // The embedding table is quantized when not ignored, with a warning that says so.
    assert!(
        text(&o.stderr).contains("looks like an embedding"),
        "{}",
        text(&o.stderr)
    );
    // Quantizing an int8 checkpoint again.
    let again = d.0.join("again");
    refused_with(
        &quantize(&out.join("model.safetensors"), &again, &[]),
        "already int8",
    );
    // A bad --method.
    refused_with(
        &quantize(&input, &again, &["--method", "percentile:101"]),
        "(0, 100]",
    );
    // Nothing is lost: files already in the output directory are replaced only under --force,
    // and the input checkpoint and its config never (quantizing in place, by any path).
    let written = std::fs::read(out.join("model.safetensors")).unwrap();
    refused_with(&quantize(&input, &out, &[]), "pass --force");
    assert_eq!(
        std::fs::read(out.join("model.safetensors")).unwrap(),
        written
    );
    succeeded(&quantize(&input, &out, &["--force"]));
    let float_model = std::fs::read(&input).unwrap();
    let float_config = std::fs::read(d.0.join("config.json")).unwrap();
    let same_dir = d.0.join("q").join("..");
    for dir in [&d.0, &same_dir] {
        refused_with(
            &quantize(&input, dir, &["--force"]),
            "would replace the input checkpoint",
        );
    }
    let cfg = d.0.join("config.json");
    let cfg_arg = ["--config", cfg.to_str().unwrap(), "--force"];
    refused_with(
        &quantize(&out.join("model.safetensors"), &d.0, &cfg_arg),
        "would replace the model config",
    );
    assert_eq!(std::fs::read(&input).unwrap(), float_model);
    assert_eq!(std::fs::read(&cfg).unwrap(), float_config);
    // A Linear with an empty dimension: refused up front, naming it, and no output directory is
    // left behind; kept float with --ignore, the empty tensor is copied.
    let mut t = BTreeMap::new();
    t.insert(
        "fc.weight".to_string(),
        TensorBuf::from_f32(Dtype::F32, vec![0, 16], &[]).unwrap(),
    );
    t.insert(
        "head.weight".to_string(),
        TensorBuf::from_f32(Dtype::F32, vec![2, 2], &[1.0, -1.0, 0.5, 0.25]).unwrap(),
    );
    let empty = d.0.join("empty.safetensors");
    safetensors::write(&empty, &t, &BTreeMap::new()).unwrap();
    let nowhere = d.0.join("a").join("b");
    let o = quantize(&empty, &nowhere, &[]);
    refused_with(&o, "`fc.weight` has shape [0, 16]");
    refused_with(&o, "--ignore fc");
    assert!(!nowhere.exists());
    succeeded(&quantize(&empty, &nowhere, &["--ignore", "fc"]));
    let ck = CompressedCheckpoint::open_dir(&nowhere).unwrap();
    assert_eq!(ck.validate().unwrap(), ["head"]);
    assert_eq!(ck.tensors().tensor("fc.weight").unwrap().shape(), [0, 16]);
    // A failure after the output directory was made (a NaN weight) leaves no directory behind.
    t.insert(
        "head.weight".to_string(),
        TensorBuf::from_f32(Dtype::F32, vec![2, 2], &[1.0, f32::NAN, 0.5, 0.25]).unwrap(),
    );
    safetensors::write(&empty, &t, &BTreeMap::new()).unwrap();
    let nan_out = d.0.join("nan");
    refused_with(
        &quantize(&empty, &nan_out, &["--ignore", "fc"]),
        "non-finite",
    );
    assert!(!nan_out.exists());
    // A missing file: the system's reason is said once.
    let o = quantize(&d.0.join("missing.safetensors"), &again, &[]);
    refused_with(&o, "missing.safetensors");
    let e = text(&o.stderr);
    assert_eq!(e.matches("No such file or directory").count(), 1, "{e}");
    // A truncated file: inspect names it and fails.
    let bytes = std::fs::read(&input).unwrap();
    let cut = d.0.join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() - 10]).unwrap();
    let o = int8rt(&["inspect", cut.to_str().unwrap()]);
    refused_with(&o, "cut.safetensors");
    refused_with(&o, "data section");
    // A scale tampered into the wrong shape: inspect refuses, naming the tensor.
    let ck = SafeTensors::open(out.join("model.safetensors")).unwrap();
    let mut t = BTreeMap::new();
    for n in ck.names() {
        let v = ck.tensor(n).unwrap();
        let shape = if n == "blk.0.fc1.weight_scale" {
            vec![8]
        } else {
            v.shape().to_vec()
        };
        t.insert(
            n.to_string(),
            TensorBuf {
                dtype: v.dtype(),
                shape,
                data: v.bytes().to_vec(),
            },
        );
    }
    drop(ck);
    safetensors::write(out.join("model.safetensors"), &t, &BTreeMap::new()).unwrap();
    refused_with(
        &int8rt(&["inspect", out.to_str().unwrap()]),
        "blk.0.fc1.weight_scale",
    );
}

/// `int8rt tune` needs a GPU: on the CPU it refuses before reading or writing anything; with a
/// GPU (device tests, `INT8RT_REQUIRE_CUDA=1` machines) it writes one tuning per Linear shape that
/// the library loads back.
#[test]
fn tune_writes_one_tuning_per_shape_or_refuses_on_the_cpu() {
    let d = Dir::new("t");
    let _ = write_model(&d.0);
    let q = d.0.join("q");
    succeeded(&quantize(
        &d.0.join("model.safetensors"),
        &q,
        &["--ignore", "emb"],
    ));
    let tunings = d.0.join("tunings");
    let o = int8rt(&[
        "tune",
        q.to_str().unwrap(),
        "-o",
        tunings.to_str().unwrap(),
        "--device",
        "cpu",
    ]);
    refused_with(&o, "tune measures GPU kernels, and the device is cpu");
    assert!(!tunings.exists(), "nothing is written on a refusal");

    let gpu = int8rt::cuda::CudaDevice::new(0);
    if gpu.is_err() && std::env::var("INT8RT_REQUIRE_CUDA").as_deref() != Ok("1") {
        return;
    }
    let o = int8rt(&[
        "tune",
        q.to_str().unwrap(),
        "-o",
        tunings.to_str().unwrap(),
        "--device",
        "cuda",
        "--rows",
        "1,4",
        "--reps",
        "3",
    ]);
    let stdout = succeeded(&o);
    // fc1 [8, 16] and fc2 [16, 8]: two shapes, two files.
    for (n, k) in [(8, 16), (16, 8)] {
        let t = std::fs::read_to_string(tunings.join(format!("{n}x{k}.tuning"))).unwrap();
        let t = int8rt::cuda::GemmTuning::from_text(&t).unwrap();
        assert_eq!(t.shape(), (n, k));
        assert_eq!(t.entries().iter().map(|e| e.m).collect::<Vec<_>>(), [1, 4]);
    }
    assert!(stdout.contains("≤     4 rows"), "{stdout}");
}
