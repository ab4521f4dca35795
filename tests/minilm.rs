//! tests/minilm.rs — the real-model integration test: all-MiniLM-L6-v2 in Rust (the code of
//! `examples/minilm`) against reference values, and its int8 variants against the f32 model on a
//! few hundred WordNet sentences, with the targets of the issue.
//!
//! Needs the files `scripts/fetch-real-data.sh` fetches (not committed). Without them each test
//! prints why it is skipped and passes — unless `INT8RT_REQUIRE_MODELS=1` (set by CI, which
//! fetches them), where a missing file fails the test.

#[allow(dead_code)]
#[path = "../examples/minilm/eval.rs"]
mod eval;
#[allow(dead_code)]
#[path = "../examples/minilm/model.rs"]
mod model;
#[allow(dead_code)]
#[path = "../examples/minilm/tokenizer.rs"]
mod tokenizer;
#[allow(dead_code)]
#[path = "../examples/minilm/wordnet.rs"]
mod wordnet;

use std::path::Path;

use int8rt::gemm::Context;
use int8rt::quant::Granularity;

use eval::{Batches, QuantLinears};
use model::{Batch, F32Linears, MiniLm};

const MODEL_DIR: &str = "models/all-MiniLM-L6-v2";
const WORDNET_DIR: &str = "data/fetched/wordnet";

/// Whether the fetched files are here; otherwise skip with a message, or fail under
/// `INT8RT_REQUIRE_MODELS=1`.
fn have_files(test: &str) -> bool {
    let needed = [
        format!("{MODEL_DIR}/model.safetensors"),
        format!("{MODEL_DIR}/tokenizer.json"),
        format!("{MODEL_DIR}/config.json"),
        format!("{WORDNET_DIR}/data.noun"),
        format!("{WORDNET_DIR}/data.verb"),
        format!("{WORDNET_DIR}/data.adj"),
        format!("{WORDNET_DIR}/data.adv"),
    ];
    let missing: Vec<&String> = needed.iter().filter(|p| !Path::new(p).exists()).collect();
    if missing.is_empty() {
        return true;
    }
    let msg = format!("{test}: missing {missing:?}; run scripts/fetch-real-data.sh");
    if std::env::var("INT8RT_REQUIRE_MODELS").as_deref() == Ok("1") {
        panic!("{msg} (INT8RT_REQUIRE_MODELS=1 makes this a failure)");
    }
    // Written to the real stderr, past libtest's capture, so a skip is visible in the log.
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "skipped: {msg}");
    false
}

#[test]
fn tokenizer_gives_the_reference_ids() {
    if !have_files("tokenizer_gives_the_reference_ids") {
        return;
    }
    let tok = tokenizer::WordPiece::from_file(format!("{MODEL_DIR}/tokenizer.json")).unwrap();
    assert_eq!(
        tok.encode("This is an example sentence"),
        [101, 2023, 2003, 2019, 2742, 6251, 102]
    );
    // Ids from the reference `tokenizers` library (scripts/make-tokenizer-golden.py).
    let golden: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string("tests/data/minilm-tokenizer-golden.json").unwrap(),
    )
    .unwrap();
    let cases = golden["cases"].as_array().unwrap();
    assert!(cases.len() > 250);
    let mut failures = Vec::new();
    for c in cases {
        let text = c["text"].as_str().unwrap();
        let want: Vec<u32> = c["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let got = tok.encode(text);
        if got != want {
            failures.push(format!("{text:?}\n  got  {got:?}\n  want {want:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn f32_encoder_reproduces_the_reference_embedding() {
    if !have_files("f32_encoder_reproduces_the_reference_embedding") {
        return;
    }
    let model = MiniLm::load(MODEL_DIR).unwrap();
    let tok = tokenizer::WordPiece::from_file(format!("{MODEL_DIR}/tokenizer.json")).unwrap();
    let lin = F32Linears {
        layers: &model.linears,
        threads: 2,
    };
    let ids = tok.encode("This is an example sentence");
    let alone = model
        .encode(&lin, &Batch::new(std::slice::from_ref(&ids)))
        .unwrap();
    // The reference (REAL-DATA.md: a numpy implementation that agrees with ONNX Runtime to 1.8e-6).
    let want = [
        0.06765689f32,
        0.06349591,
        0.04871311,
        0.07930498,
        0.03744806,
    ];
    for (i, (&a, &b)) in alone.iter().zip(&want).enumerate() {
        assert!((a - b).abs() <= 2e-6, "dim {i}: {a} vs reference {b}");
    }
    let norm: f64 = alone
        .iter()
        .map(|&v| v as f64 * v as f64)
        .sum::<f64>()
        .sqrt();
    assert!((norm - 1.0).abs() < 1e-6, "L2 norm {norm}");

    // The padding mask: the same sentence padded next to a longer one gives the same embedding.
    let long = tok.encode("a considerably longer sentence, so that the first one gets several padding tokens at its end");
    assert!(long.len() > ids.len() + 5);
    let both = model.encode(&lin, &Batch::new(&[ids, long])).unwrap();
    let h = model.cfg.hidden;
    let d = alone
        .iter()
        .zip(&both[..h])
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(d <= 1e-6, "padding changed the embedding by {d}");
}

#[test]
fn int8_encoder_meets_the_accuracy_targets() {
    if !have_files("int8_encoder_meets_the_accuracy_targets") {
        return;
    }
    let model = MiniLm::load(MODEL_DIR).unwrap();
    let tok = tokenizer::WordPiece::from_file(format!("{MODEL_DIR}/tokenizer.json")).unwrap();
    let all = wordnet::load_pairs(WORDNET_DIR).unwrap();
    assert!(all.len() > 30_000, "{} WordNet pairs", all.len());
    let (pairs, calib) = wordnet::split(&all, 150, 32);
    assert_eq!((pairs.len(), calib.len()), (150, 32));
    assert!(
        calib.iter().all(|c| !pairs.contains(c)),
        "calibration and evaluation overlap"
    );
    let batches = Batches::new(&tok, &eval::sentences(&pairs), 32);
    let calib_batches = Batches::new(&tok, &eval::sentences(&calib), 32);
    let threads = 2;
    let ctx = Context::new().with_threads(threads);

    let f32_lin = F32Linears {
        layers: &model.linears,
        threads,
    };
    let (f32_row, reference) = eval::evaluate("f32", &model, &f32_lin, &batches, None).unwrap();

    let wo = eval::weight_only_layers(&model).unwrap();
    let wo_lin = F32Linears {
        layers: &wo,
        threads,
    };
    let w8 = eval::evaluate("w8", &model, &wo_lin, &batches, Some(&reference))
        .unwrap()
        .0;

    let tok_lin = QuantLinears {
        layers: eval::quant_layers(&model, |_| eval::dynamic(Granularity::PerRow)).unwrap(),
        ctx: ctx.clone(),
    };
    let per_token = eval::evaluate("w8a8 token", &model, &tok_lin, &batches, Some(&reference))
        .unwrap()
        .0;

    let run = eval::calibrate(&model, &calib_batches, threads).unwrap();
    let mut statics = Vec::new();
    for method in eval::CalibMethod::ALL {
        let acts = eval::static_acts(&model, &run, method).unwrap();
        let lin = QuantLinears {
            layers: eval::quant_layers(&model, |i| acts[i]).unwrap(),
            ctx: ctx.clone(),
        };
        let name = format!("static {method}");
        statics.push(
            eval::evaluate(&name, &model, &lin, &batches, Some(&reference))
                .unwrap()
                .0,
        );
    }
    let minmax = statics[0].clone();

    for r in [&f32_row, &w8, &per_token].into_iter().chain(&statics) {
        eprintln!("{r:?}");
    }
    // Targets of the issue.
    assert!(
        w8.mean_cos >= 0.999 && w8.min_cos >= 0.995,
        "weight-only: {w8:?}"
    );
    assert!(
        per_token.mean_cos >= 0.995 && per_token.min_cos >= 0.975,
        "per-token: {per_token:?}"
    );
    for r in [&w8, &per_token] {
        assert!(
            (r.recall - f32_row.recall).abs() <= 0.02,
            "recall {r:?} vs f32 {f32_row:?}"
        );
    }
    // Per-tensor static ranges suffer from the outliers in some Linear inputs, yet still track
    // the f32 model (numpy reference on 2000 sentences: mean 0.980, min 0.921).
    assert!(
        minmax.mean_cos >= 0.97 && minmax.min_cos >= 0.90,
        "static max: {minmax:?}"
    );
    assert!(minmax.mean_cos < per_token.mean_cos);
    // Percentile and MSE ranges clip the rare large values and beat min-max. Entropy (KL, as
    // TensorRT) clips much harder and loses on this model: it is reported, not asserted
    // (bench/RESULTS-minilm.md has the per-layer ranges).
    for r in &statics[1..3] {
        assert!(
            r.mean_cos > minmax.mean_cos && r.min_cos > minmax.min_cos - 0.01,
            "{r:?} vs {minmax:?}"
        );
    }
}

#[test]
fn quantized_checkpoint_from_the_cli_gives_the_same_bits() {
    if !have_files("quantized_checkpoint_from_the_cli_gives_the_same_bits") {
        return;
    }
    // `int8rt quantize` the real model, load the checkpoint through the strict loader, and
    // compare with the layers quantized in memory: the same embeddings, bit for bit.
    let out = std::env::temp_dir().join(format!("int8rt-minilm-ck-{}", std::process::id()));
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_int8rt"))
        .args(["quantize", &format!("{MODEL_DIR}/model.safetensors"), "-o"])
        .arg(&out)
        .args([
            "--scheme",
            "w8a8-dynamic",
            "--ignore",
            "re:.*embeddings",
            "pooler.dense",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ck = int8rt::io::CompressedCheckpoint::open_dir(&out).unwrap();
    let model = MiniLm::load(MODEL_DIR).unwrap();
    assert_eq!(ck.validate().unwrap().len(), 36);
    let loaded: Vec<_> = model
        .linears
        .iter()
        .map(|d| ck.linear(&d.name).unwrap().to_quant_linear().unwrap())
        .collect();
    eval::check_layers(&model, &loaded).unwrap();
    let ctx = Context::new().with_threads(2);
    let from_ck = QuantLinears {
        layers: loaded,
        ctx: ctx.clone(),
    };
    let in_memory = QuantLinears {
        layers: eval::quant_layers(&model, |_| eval::dynamic(Granularity::PerRow)).unwrap(),
        ctx,
    };
    let tok = tokenizer::WordPiece::from_file(format!("{MODEL_DIR}/tokenizer.json")).unwrap();
    let all = wordnet::load_pairs(WORDNET_DIR).unwrap();
    let (pairs, _) = wordnet::split(&all, 32, 0);
    let batches = Batches::new(&tok, &eval::sentences(&pairs), 16);
    let (a, _) = eval::encode_all(&model, &from_ck, &batches).unwrap();
    let (b, _) = eval::encode_all(&model, &in_memory, &batches).unwrap();
    assert_eq!(a, b);
    std::fs::remove_dir_all(&out).unwrap();
}
