//! fuzz/fuzz_targets/load_checkpoint.rs — libFuzzer target over the checkpoint loader: malformed
//! safetensors headers and `config.json` quantization configs must give errors, never a panic or
//! an out-of-bounds read. The body is `harness/load_checkpoint.rs` (also run by
//! `tests/io_fuzz_smoke.rs`); seeds are in `seeds/load_checkpoint`.

#![no_main]

#[path = "../harness/load_checkpoint.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::check(data));
