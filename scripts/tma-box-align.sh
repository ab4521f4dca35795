#!/usr/bin/env bash
# scripts/tma-box-align.sh — on a machine with an sm_90 GPU and the CUDA toolkit: build
# bench/probes/tma_box_align.cu with nvcc and load one TMA box per process at origins whose first
# byte is, or is not, a multiple of 16, with and without the 128-byte swizzle, so a trap at one
# origin costs its own process. Prints one line per origin (landed and how many bytes differ from
# the layout src/cuda/tma_probe.rs expects, or the CUDA error). Run beside scripts/gpu-run.sh:
#   device tool: run(command="bash scripts/tma-box-align.sh")
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
nvcc="$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)"
bin="$(mktemp -d)/tma_box_align"
"$nvcc" -O2 -arch=sm_90a -o "$bin" "$root/bench/probes/tma_box_align.cu" -lcuda || exit 1
# box rows, first byte, first row, swizzle
for c in "1 160 69 128" "1 172 69 128" "8 172 0 128" "8 4 0 128" "8 8 0 128" "8 16 0 128" \
    "8 1 0 128" "8 -4 0 128" "8 172 0 0" "1 172 69 0" "8 4 0 0" "8 -16 -3 128"; do
    # shellcheck disable=SC2086
    out="$(timeout 20 "$bin" $c 2>&1)"
    echo "[$c] rc $? : $(echo "$out" | tr '\n' ' ' | cut -c1-300)"
done
