//! fuzz/harness/load_checkpoint.rs — the body of the `load_checkpoint` fuzz target, shared with
//! the deterministic smoke test `tests/io_fuzz_smoke.rs`: the checkpoint loader on arbitrary
//! bytes (safetensors headers — lengths, JSON, dtypes, shapes, offsets — and `config.json`
//! quantization configs) must answer with a value or an error: no panic, no read out of bounds.
//!
//! Input layout: a 2-byte little-endian length `n`, then `n` bytes of `config.json`, then the
//! safetensors file.

use int8rt::io::compressed::QuantizationConfig;
use int8rt::io::{CompressedCheckpoint, SafeTensors};

/// Run every loader entry point on `data`.
pub fn check(data: &[u8]) {
    let (config, tensors) = match data {
        [a, b, rest @ ..] => {
            let n = u16::from_le_bytes([*a, *b]) as usize;
            rest.split_at(n.min(rest.len()))
        }
        _ => (&[][..], data),
    };
    let config: Option<serde_json::Value> = serde_json::from_slice(config).ok();
    if let Some(c) = &config {
        let _ = QuantizationConfig::from_config_json("config.json", c);
    }
    let Ok(st) = SafeTensors::from_bytes("fuzz.safetensors", tensors.to_vec()) else {
        return;
    };
    // Every view and conversion of a parsed file stays in bounds.
    let names: Vec<String> = st.names().map(String::from).collect();
    for n in &names {
        let v = st.tensor(n).expect("a listed tensor exists");
        assert_eq!(v.bytes().len(), v.numel() * v.dtype().size());
        let _ = v.to_f32();
        let _ = v.to_i8();
        let _ = v.to_i64();
    }
    let Some(config) = config else {
        return;
    };
    let Ok(ck) = CompressedCheckpoint::from_parts(st, "config.json".into(), config) else {
        return;
    };
    for name in ck.quantized_layers() {
        let _ = ck.group_for(&name);
        if let Ok(l) = ck.linear(&name) {
            // A layer that loads must also build (or refuse with an error).
            let _ = l.to_quant_linear();
        }
    }
    let _ = ck.validate();
}
