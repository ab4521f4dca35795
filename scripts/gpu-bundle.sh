#!/usr/bin/env bash
# scripts/gpu-bundle.sh — build, on this machine (no GPU needed), everything the GPU verification
# runs, into the git-ignored gpu-bundle/: the GPU test binaries (tests/gpu.rs, tests/gpu_calib.rs,
# tests/qat_gpu.rs, tests/kernels_static.rs), the GPU benches (benches/gpu_gemm.rs, benches/gpu_calib_collect.rs),
# the per-call latency probe (examples/gpu_latency.rs), the one-kernel runner for a profiler
# (examples/gpu_profile.rs), the PyTorch peers script (shared/bench/gpu-peers.py), run.sh
# (scripts/gpu-run.sh) and the clock summary it prints (scripts/gpu-clocks.py). The kernels are
# compiled with NVRTC here and embedded as CUBIN (sm_80, sm_90) + PTX (compute_61), so
# the GPU machine needs only its driver. Binaries are stripped and shipped as one bin.tar.xz (every
# binary embeds the same CUBINs, so xz's window folds them: ~6 MiB instead of ~62), which run.sh
# unpacks with Python's tarfile; the bundle must stay under the device tool's 64 MiB carry limit.
#
#   scripts/gpu-bundle.sh && <copy gpu-bundle/ to the GPU machine> && gpu-bundle/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ci-cuda-env.sh
out=gpu-bundle
rm -rf "$out"
mkdir -p "$out/bin"

peers=""
for p in "${INT8RT_SHARED:-}/bench/gpu-peers.py" ../shared/bench/gpu-peers.py /work/shared/bench/gpu-peers.py; do
    if [ -f "$p" ]; then peers="$p"; break; fi
done
[ -n "$peers" ] || { echo "gpu-peers.py not found (set INT8RT_SHARED to the shared/ folder)" >&2; exit 1; }

# Print "name path" for each executable artifact named in $@ from cargo's JSON messages.
executables() {
    python3 -c '
import json, sys
want = set(sys.argv[1:])
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] in want:
        print(m["target"]["name"], m["executable"])
' "$@"
}

{
    cargo test --release --features gpu-bench --no-run --message-format=json --test gpu --test gpu_calib \
        --test qat_gpu --test kernels_static | executables gpu gpu_calib qat_gpu kernels_static
    cargo bench --features gpu-bench --bench gpu_gemm --bench gpu_calib_collect --no-run --message-format=json \
        | executables gpu_gemm gpu_calib_collect
    cargo build --release --features cuda --example gpu_latency --example gpu_profile --message-format=json \
        | executables gpu_latency gpu_profile
} > "$out/.artifacts"
while read -r name path; do
    cp "$path" "$out/bin/$name"
    strip "$out/bin/$name"
done < "$out/.artifacts"
rm "$out/.artifacts"
for b in gpu gpu_calib qat_gpu kernels_static gpu_gemm gpu_calib_collect gpu_latency gpu_profile; do
    [ -x "$out/bin/$b" ] || { echo "missing binary $b" >&2; exit 1; }
done
tar -C "$out" -cf - bin | xz -9 -T2 > "$out/bin.tar.xz"
rm -r "$out/bin"
cp "$peers" "$out/gpu-peers.py"
cp scripts/gpu-run.sh "$out/run.sh"
cp scripts/gpu-clocks.py "$out/gpu-clocks.py"
chmod +x "$out/run.sh"
git rev-parse HEAD > "$out/COMMIT" 2>/dev/null || true
size=$(du -sb "$out" | cut -f1)
echo "gpu-bundle: $((size / 1024 / 1024)) MiB"
ls -la "$out"
if [ "$size" -gt $((64 * 1024 * 1024)) ]; then
    echo "gpu-bundle is over 64 MiB" >&2
    exit 1
fi
