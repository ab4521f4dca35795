#!/usr/bin/env bash
# scripts/miri-pool.sh — runs the spinning pool's unit tests (src/gemm/pool.rs, the crate's only
# hand-written cross-thread hand-off) under Miri, which reports data races, use after free and
# missing happens-before edges that the native tests can only hit by chance. The module has no
# dependencies, so it is compiled alone in a throw-away crate under target/ (Miri cannot build
# the whole crate: cudarc and the x86 intrinsics). Needs the nightly toolchain's `miri` and
# `rust-src` components (installed here if rustup can). One run interprets the six tests in
# about 2.5 minutes on a 2-vCPU Zen 3 VM (plus the sysroot build the first time). Not in
# .ci/run: CI already takes 21–26 of its 30 minutes there. Miri's scheduler takes a seed, so
# other interleavings come from other seeds, one run each:
#   for s in 1 2 3; do MIRIFLAGS="-Zmiri-seed=$s" bash scripts/miri-pool.sh; done
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="$ROOT/target/miri-pool"
if ! cargo +nightly miri --version >/dev/null 2>&1; then
  rustup component add --toolchain nightly miri rust-src
fi
mkdir -p "$DIR/src"
cat > "$DIR/Cargo.toml" <<'TOML'
[package]
name = "int8rt-pool-miri"
version = "0.0.0"
edition = "2021"
publish = false

[workspace]
TOML
printf '#![allow(dead_code)]\n#[path = "%s/src/gemm/pool.rs"]\nmod pool;\n' "$ROOT" > "$DIR/src/lib.rs"
cd "$DIR"
cargo +nightly miri test
