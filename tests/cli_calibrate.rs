//! tests/cli_calibrate.rs — runs the `int8rt calibrate` binary on golden `.npy` inputs and checks
//! its JSON against the values the reference implementations computed
//! (`tests/data/calibration-golden/expected.json`), plus its options and its refusals.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/calibration-golden")
        .join(name)
}

fn expected(case: &str) -> Value {
    let text = std::fs::read_to_string(golden("expected.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["cases"][case].clone()
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_int8rt"))
        .args(args)
        .output()
        .unwrap()
}

fn calibrate(file: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["calibrate", file.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    let out = run(&args);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn f(v: &Value) -> f32 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}")) as f32
}

/// Scale within 1 ulp, zero point exact.
fn same_qparams(got: &Value, want: &Value) {
    let (a, b) = (f(&got["scale"]), f(&want["scale"]));
    assert!(
        (a.to_bits() as i64 - b.to_bits() as i64).abs() <= 1,
        "scale {a} vs {b}"
    );
    assert_eq!(got["zero_point"], want["zero_point"]);
}

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("int8rt-cli-{}-{name}", std::process::id()))
}

#[test]
fn json_matches_the_references() {
    for case in ["gaussian", "relu", "laplace", "constant", "zeros", "tiny3"] {
        let exp = expected(case);
        let got = calibrate(&golden(&format!("{case}.npy")), &[]);
        assert_eq!(got["shape"], exp["shape"], "{case}");
        let count: usize = exp["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .product();
        assert_eq!(got["count"].as_u64().unwrap() as usize, count);
        assert_eq!(got["nonfinite"], 0);
        assert_eq!(f(&got["min"]), f(&exp["min"]), "{case}");
        assert_eq!(f(&got["max"]), f(&exp["max"]), "{case}");
        let pq = &exp["pq_hist"];
        let amax = &got["amax"];
        assert_eq!(f(&amax["max"]), f(&exp["pq_max"]["amax"]), "{case}");
        assert_eq!(
            f(&amax["percentile_99.9"]),
            f(&pq["percentile_99.9"]),
            "{case}"
        );
        assert_eq!(
            f(&amax["percentile_99.99"]),
            f(&pq["percentile_99.99"]),
            "{case}"
        );
        assert_eq!(f(&amax["mse"]), f(&pq["mse_signed"]), "{case}");
        assert_eq!(f(&amax["entropy"]), f(&pq["entropy_signed"]), "{case}");
        assert!(f(&amax["percentile_99.99"]) <= f(&amax["percentile_99.999"]));
        assert!(amax.get("cross_entropy").is_none());
        match pq.get("mse_unsigned") {
            Some(mse_u) => {
                let u = &got["amax_unsigned"];
                assert_eq!(f(&u["mse"]), f(mse_u), "{case}");
                assert_eq!(f(&u["entropy"]), f(&pq["entropy_unsigned"]), "{case}");
                assert_eq!(
                    f(&u["percentile_99.99"]),
                    f(&pq["percentile_99.99"]),
                    "{case}"
                );
            }
            None => assert!(got.get("amax_unsigned").is_none(), "{case}"),
        }
        let ao = &exp["torch_ao"];
        same_qparams(
            &got["torch_ao"]["affine_quint8"],
            &ao["minmax_quint8_affine"],
        );
        same_qparams(
            &got["torch_ao"]["symmetric_qint8"],
            &ao["minmax_qint8_symmetric"],
        );
        assert!(f(&got["asymmetric"]["scale"]) > 0.0);
        assert!(got.get("per_channel").is_none());
    }
}

#[test]
fn batch_axis_grows_the_histogram_like_the_reference() {
    let exp = expected("multibatch");
    let got = calibrate(&golden("multibatch.npy"), &["--batch-axis", "0"]);
    let pq = &exp["pq_hist"];
    for (k, g) in [
        ("percentile_99.9", "percentile_99.9"),
        ("percentile_99.99", "percentile_99.99"),
        ("mse_signed", "mse"),
        ("entropy_signed", "entropy"),
    ] {
        assert_eq!(f(&got["amax"][g]), f(&pq[k]), "{k}");
    }
    // Without --batch-axis the whole array is one batch: a different (2048-bin) histogram.
    let whole = calibrate(&golden("multibatch.npy"), &[]);
    assert_ne!(
        whole["amax"]["percentile_99.99"],
        got["amax"]["percentile_99.99"]
    );
    assert_eq!(whole["amax"]["max"], got["amax"]["max"]);
}

#[test]
fn softmax_axis_adds_cross_entropy_and_axis_adds_per_channel() {
    let exp = expected("softmax");
    let got = calibrate(&golden("softmax_logits.npy"), &["--softmax-axis", "1"]);
    assert_eq!(
        f(&got["amax"]["cross_entropy"]),
        f(&exp["cross_entropy"]["on_logits"]["xmax"])
    );

    let exp = expected("weight_64x256");
    let got = calibrate(&golden("weight_64x256.npy"), &["--axis", "0"]);
    assert_eq!(got["per_channel"]["axis"], 0);
    let want = exp["per_channel_axis0"]["pq_max_axis0"]["amax"]
        .as_array()
        .unwrap();
    let have = got["per_channel"]["amax"].as_array().unwrap();
    assert_eq!(have.len(), 64);
    for (a, b) in have.iter().zip(want) {
        assert_eq!(f(a), f(b));
    }
    // Per channel along axis 1 with the rows as batches.
    let got = calibrate(
        &golden("weight_64x256.npy"),
        &["--axis", "1", "--batch-axis", "0"],
    );
    assert_eq!(got["per_channel"]["amax"].as_array().unwrap().len(), 256);
}

#[test]
fn plot_and_table() {
    let svg = tmp("plot.svg");
    let out = run(&[
        "calibrate",
        golden("relu.npy").to_str().unwrap(),
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(
        table.contains("percentile_99.99") && table.contains("torch.ao"),
        "{table}"
    );
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(
        text.starts_with("<svg")
            && text.contains("entropy = ")
            && text.trim_end().ends_with("</svg>")
    );
    let _ = std::fs::remove_file(svg);
}

#[test]
fn non_finite_values_are_refused_or_counted() {
    let path = tmp("nan.npy");
    int8rt::npy::write_f32(
        &path,
        &[2, 3],
        &[1.0, f32::NAN, -2.0, f32::INFINITY, 0.5, 3.0],
    )
    .unwrap();
    let out = run(&["calibrate", path.to_str().unwrap(), "--json"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("2 non-finite") && err.contains("nan.npy"),
        "{err}"
    );
    let got = calibrate(&path, &["--skip-nonfinite"]);
    assert_eq!(got["nonfinite"], 2);
    assert_eq!(got["count"], 6);
    assert_eq!(f(&got["max"]), 3.0);
    assert_eq!(f(&got["min"]), -2.0);
    let _ = std::fs::remove_file(path);
    // Not a float32 array / not a file / bad axis.
    let out = run(&[
        "calibrate",
        golden("gaussian.hist_counts.npy").to_str().unwrap(),
        "--json",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("float32"));
    assert!(!run(&["calibrate", "/nonexistent.npy"]).status.success());
    let out = run(&[
        "calibrate",
        golden("gaussian.npy").to_str().unwrap(),
        "--axis",
        "5",
    ]);
    assert!(!out.status.success());
}

/// A range past f32::MAX has no affine parameters: those entries say why, and the report stands
/// (the command succeeds with every amax). Extreme magnitudes print with an exponent; a 0-d
/// array keeps its shape.
#[test]
fn extreme_ranges_report_what_has_no_parameters() {
    let path = tmp("extreme.npy");
    int8rt::npy::write_f32(&path, &[3], &[3e38, -3e38, 1.0]).unwrap();
    let got = calibrate(&path, &[]);
    assert_eq!(f(&got["amax"]["max"]), 3e38);
    assert!(
        got["asymmetric"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("wider than f32")),
        "{got}"
    );
    assert!(
        got["torch_ao"]["affine_quint8"]["error"].is_string(),
        "{got}"
    );
    assert!(f(&got["torch_ao"]["symmetric_qint8"]["scale"]) > 1e36);
    let out = run(&["calibrate", path.to_str().unwrap()]);
    assert!(out.status.success());
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains("min, max    -3e38, 3e38"), "{table}");
    assert!(table.contains("asymmetric u8        none: "), "{table}");
    let _ = std::fs::remove_file(&path);

    let path = tmp("scalar.npy");
    int8rt::npy::write_f32(&path, &[], &[2.5]).unwrap();
    let got = calibrate(&path, &[]);
    assert_eq!(got["shape"], serde_json::json!([]));
    assert_eq!(got["count"], 1);
    assert_eq!(f(&got["amax"]["max"]), 2.5);
    let _ = std::fs::remove_file(&path);
}
