#!/usr/bin/env bash
# scripts/gpu-run.sh (copied into the bundle as run.sh) — run the GPU verification built by
# scripts/gpu-bundle.sh on a machine with an NVIDIA GPU, its driver, the CUDA toolkit and PyTorch
# (no Rust toolchain): the GPU tests with INT8RT_REQUIRE_CUDA=1 (no GPU is a failure, not a
# skip), the static kernel checks (cuobjdump from the toolkit), the criterion GPU benches, the
# PyTorch peers (cuBLAS f16, cuBLASLt int8) in the same call, and the per-call latency of a GPU
# layer (examples/gpu_latency.rs); prints a short table last, then the card's clocks, power and
# clock-event reasons per step (sampled by nvidia-smi, summed up by gpu-clocks.py).
#
#   gpu-bundle/run.sh            # or: scripts/gpu-run.sh [bundle folder]
#   device tool: run(command="bash gpu-bundle/run.sh", carry=["gpu-bundle"])  # logs: $OUT/logs.tgz
#   INT8RT_BENCH_SWEEP=1 gpu-bundle/run.sh   # the bench also times every tensor-core tile × split-K
#                                            # factor (the data to tune cuda::ops::mma_dispatch; ~8 min more)
#   INT8RT_BENCH_SWEEP=stream ...            # only the weight-streaming tiles × split-K, M = 16 … 256
#   INT8RT_SKIP_CALIB_BENCH=1 ...             # without the calibration-collection bench
#   INT8RT_BENCH_FILTER="4096x4096 x8192x8192" ...  # the GEMM bench on those shapes only
#   INT8RT_BENCH_FILTER=per-shape ...          # every shape in its own bench process
#   INT8RT_SKIP_PEERS=1 ...                   # without the PyTorch peers
#   INT8RT_PEER_SHAPES="1,4096,4096 ..." ...  # the peers at those M,K,N shapes only
#   INT8RT_BENCH_QUICK=1 ...                  # the bench's shorter timing windows, no sweep
#   INT8RT_PROFILE="64x4096x4096=gemv 64x4096x4096=mma:stream64x64:4" ...
#                                            # each of those forced kernels run once
#                                            # (examples/gpu_profile.rs), under Nsight Compute
#                                            # when ncu is found (its report in profile.log)
#   INT8RT_PROFILE_PEERS="128,4096,4096" ...  # the PyTorch peers' GEMM kernels at those shapes
#                                            # under Nsight Compute (names, tiles, launch, time)
#   INT8RT_TESTS="tma every_tile" ...         # only the test functions whose names contain a word
#   INT8RT_NSYS=1 ...                         # the latency example again under Nsight Systems
#                                            # (CUDA API and kernel summaries, latency-nsys.log)
#   Test binaries run one test per process (INT8RT_TEST_TIMEOUT s each, default 180), every other
#   step under INT8RT_STEP_TIMEOUT s (default 480): a kernel that faults or hangs on the hardware
#   costs its own test or step, not the rest of the device call.
set -uo pipefail
dir="${1:-$(cd "$(dirname "$0")" && pwd)}"
has_bins() { [ -d "$1/bin" ] || [ -f "$1/bin.tar.xz" ]; }
has_bins "$dir" || dir="$dir/gpu-bundle"
has_bins "$dir" || { echo "no bundle at $dir (run scripts/gpu-bundle.sh first)" >&2; exit 2; }
bins="$dir/bin"
if [ ! -d "$bins" ]; then
    # The bundle ships its binaries compressed; unpack them beside the logs.
    bins="$(mktemp -d)/bin"
    python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' \
        "$dir/bin.tar.xz" "$(dirname "$bins")" || { echo "cannot unpack $dir/bin.tar.xz" >&2; exit 2; }
fi
export INT8RT_REQUIRE_CUDA=1
if command -v cuobjdump > /dev/null; then export INT8RT_CUOBJDUMP="$(command -v cuobjdump)"; fi
# The logs go to scratch; under the device tool, which brings back at most 8 files from $OUT,
# they are also packed into $OUT/logs.tgz after every step (so a run cut off at its time limit
# still returns what it did; two runs of 2026-11-26 lost most of their logs as single files).
logs="$(mktemp -d)"
archive() {
    if [ -n "${OUT:-}" ] && [ -d "$OUT" ]; then
        tar -C "$logs" -czf "$OUT/logs.tgz.part" . && mv "$OUT/logs.tgz.part" "$OUT/logs.tgz"
    fi
}
cd "$logs"
# Criterion's own reports (hundreds of small files) go to scratch too.
export CRITERION_HOME="${CRITERION_HOME:-$(mktemp -d)/criterion}"
gpu="$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)"
echo "GPU: ${gpu:-unknown}; bundle commit $(cat "$dir/COMMIT" 2>/dev/null || echo unknown)"
# Which card (each call may start another machine) and its limits: maximum clocks, power limit.
nvidia-smi -i 0 --query-gpu=uuid,pci.bus_id,clocks.max.sm,clocks.max.mem,power.limit,enforced.power.limit \
    --format=csv 2>/dev/null | tee "$logs/card.csv"
# The clocks, power and temperature every 200 ms through the whole call, with the clock-event
# reasons (power cap, thermal, hardware slowdown) where this driver names them; gpu-clocks.py
# sums them up per step at the end (a peer's time that swings between calls while ours holds —
# cuBLAS f16 at 128 and 256 rows on 2026-11-28 — is either the card's clocks or not).
clock_fields=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,utilization.gpu
for r in clocks_event_reasons.active clocks_throttle_reasons.active; do
    if nvidia-smi -i 0 --query-gpu="$clock_fields,$r" --format=csv,noheader > /dev/null 2>&1; then
        clock_fields="$clock_fields,$r"
        break
    fi
done
sampler=
if command -v nvidia-smi > /dev/null; then
    nvidia-smi -i 0 --query-gpu="$clock_fields" --format=csv,noheader,nounits -lms 200 \
        > "$logs/clocks.csv" 2> /dev/null &
    sampler=$!
    trap '[ -n "$sampler" ] && kill "$sampler" 2> /dev/null' EXIT
fi

steps=()
# INT8RT_TESTS: a quick first look at a few kernels (space-separated words; see each_test).
INT8RT_TESTS_RE="$(echo "${INT8RT_TESTS:-}" | xargs | tr ' ' '|')"
[ -n "$INT8RT_TESTS_RE" ] || INT8RT_TESTS_RE=.
# Each step under a time limit (INT8RT_STEP_TIMEOUT seconds, default 480): a kernel that hangs
# on the hardware costs that step, not the rest of the device call.
step() {
    local name="$1"
    shift
    echo "== $name: $*"
    local t0=$SECONDS start limit=(timeout -k 10 "${INT8RT_STEP_TIMEOUT:-480}")
    start="$(date +%s.%N)"
    # (a function — each_test, profile — limits each of its processes itself)
    [ "$(type -t "$1")" = function ] && limit=()
    if "${limit[@]}" "$@" > "$logs/$name.log" 2>&1; then r=pass; else r=FAIL; fi
    printf '%s\t%s\t%s\n' "$name" "$start" "$(date +%s.%N)" >> "$logs/steps.tsv"
    tail -n 40 "$logs/$name.log"
    archive
    steps+=("$name|$r|$((SECONDS - t0)) s|$(grep -h '^test result' "$logs/$name.log" | sed 's/test result: //; s/; finished.*//' | tr '\n' ' ')")
}
# A test binary one test per process (each under its own limit): a kernel that faults poisons
# its process's CUDA context, and a hang stops its process — either way the other tests still run.
each_test() {
    local bin="$1" t pass=0 fail=0
    # (INT8RT_TESTS="tma bulk": only the tests whose names contain one of those words)
    for t in $("$bin" --list 2>/dev/null | sed -n 's/: test$//p' | grep -E "${INT8RT_TESTS_RE:-.}"); do
        # (each process's own "test result" line is renamed: the summary counts the whole step)
        if timeout -k 10 "${INT8RT_TEST_TIMEOUT:-180}" "$bin" --exact "$t" --test-threads=1 --nocapture 2>&1 |
            sed 's/^test result:/  (one test:/'; then
            pass=$((pass + 1))
        else
            echo "FAILED (or timed out after ${INT8RT_TEST_TIMEOUT:-180} s): $t"
            fail=$((fail + 1))
        fi
    done
    if [ $fail -eq 0 ] && [ $pass -eq 0 ] && [ -n "${INT8RT_TESTS:-}" ]; then
        echo "test result: ok. 0 passed; 0 failed (none matches INT8RT_TESTS)"
    elif [ $fail -eq 0 ] && [ $pass -gt 0 ]; then
        echo "test result: ok. $pass passed; 0 failed (one process per test)"
    else
        echo "test result: FAILED. $pass passed; $fail failed (one process per test)"
        return 1
    fi
}
# Correctness first, then the timings (a run cut off at the device's time limit keeps the most
# important logs), then the rest.
step gpu-tests each_test "$bins/gpu"
step kernel-checks "$bins/kernels_static" --nocapture
if [ "${INT8RT_BENCH_FILTER:-}" = per-shape ]; then
    # One bench process per shape (a kernel that faults costs its shape alone): the issue's
    # shapes, M = 16, 64, 256 at 4096², M = 1, 8 at 8192².
    INT8RT_BENCH_FILTER="/1x4096x4096 /8x4096x4096 /16x4096x4096 /32x4096x4096 /64x4096x4096"
    INT8RT_BENCH_FILTER="$INT8RT_BENCH_FILTER /128x4096x4096 /1x8192x8192 /8x8192x8192 /512x1024x1024"
    INT8RT_BENCH_FILTER="$INT8RT_BENCH_FILTER /1024x4096x1024 /2048x2048x2048 /8192x8192x8192"
    INT8RT_BENCH_FILTER="$INT8RT_BENCH_FILTER /256x4096x4096"
fi
if [ -n "${INT8RT_BENCH_FILTER:-}" ]; then
    # Only the shapes whose criterion group name contains one of the filters (e.g. "4096x4096";
    # "/8x4096x4096" is that shape alone).
    for f in $INT8RT_BENCH_FILTER; do step "bench-${f//\//}" "$bins/gpu_gemm" --bench "$f"; done
else
    step bench "$bins/gpu_gemm" --bench
fi
# The peers at the bench's shapes (benches/gpu_gemm.rs: SHAPES, EXTRA_SHAPES, M = 256).
shapes="1,4096,4096 8,4096,4096 32,4096,4096 128,4096,4096 512,1024,1024 1024,4096,1024 2048,2048,2048"
shapes="$shapes 8192,8192,8192 2,4096,4096 4,4096,4096 16,4096,4096 64,4096,4096 1,8192,8192 8,8192,8192"
shapes="$shapes 256,4096,4096"
# (INT8RT_PEER_SHAPES="1,4096,4096 64,4096,4096": the peers at those M,K,N alone — a short call
# on another card times its own peers at the shapes it benches, no more)
shapes="${INT8RT_PEER_SHAPES:-$shapes}"
# shellcheck disable=SC2086
[ -z "${INT8RT_SKIP_PEERS:-}" ] && step peers python3 "$dir/gpu-peers.py" --shapes $shapes
[ -x "$bins/gpu_latency" ] && step latency "$bins/gpu_latency"
# Where a layer's forward spends its host time (~20 µs of it on the H100, issue 3): the latency
# example under Nsight Systems when it is installed and INT8RT_NSYS=1 — its CUDA API summary
# (time per driver call: launches, allocations, copies, synchronizations) and kernel summary.
nsys_latency() {
    local nsys
    nsys="$(command -v nsys || ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys 2> /dev/null | head -1)"
    if [ -z "$nsys" ]; then
        echo "no nsys on this machine"
        return 0
    fi
    timeout -k 5 150 "$nsys" profile -t cuda --stats=true --force-overwrite true \
        -o "$(mktemp -d)/latency" "$bins/gpu_latency"
}
[ -n "${INT8RT_NSYS:-}" ] && [ -x "$bins/gpu_latency" ] && step latency-nsys nsys_latency
# Bytes moved per kernel (DRAM reads, L2 → SM reads, all L2 traffic): whether a tile re-reads
# its operands from the L2 more than the arithmetic of its grid says.
NCU_BYTES=dram__bytes_read.sum,lts__t_sectors_srcunit_tex_op_read.sum,lts__t_bytes.sum
# One forced kernel per spec, under Nsight Compute when it is installed (the sections that say
# whether a kernel is bound by memory, by latency or by issue), else timed by events alone.
profile() {
    local ncu spec
    ncu="$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2> /dev/null | head -1)"
    for spec in $INT8RT_PROFILE; do
        echo "== $spec"
        if [ -n "$ncu" ]; then
            timeout -k 5 90 "$ncu" -k 'regex:^(gemm|gemv)' --launch-skip 3 --launch-count 1 \
                --section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy \
                --section LaunchStats --section WarpStateStats --section SchedulerStats \
                --metrics "$NCU_BYTES" \
                "$bins/gpu_profile" "$spec" && continue
            echo "ncu failed on $spec; without it:"
        fi
        "$bins/gpu_profile" "$spec"
    done
}
[ -n "${INT8RT_PROFILE:-}" ] && [ -x "$bins/gpu_profile" ] && step profile profile
# The peers' own kernels at a few shapes under Nsight Compute, one summary line set per distinct
# kernel (cuBLAS and cuBLASLt name their tile shape, split-K and stages; grid, block, registers,
# shared memory, duration, DRAM throughput): what the tensor-core tiles at 33 … 256 rows are up
# against (issue 4). INT8RT_PROFILE_PEERS="64,4096,4096 128,4096,4096".
peer_profile() {
    local ncu shape
    ncu="$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2> /dev/null | head -1)"
    if [ -z "$ncu" ]; then
        echo "no ncu on this machine"
        return 0
    fi
    for shape in $INT8RT_PROFILE_PEERS; do
        echo "== $shape"
        # (cuBLASLt's int8 kernel is named "Kernel2" under torch 2.11 / CUDA 13, cuBLAS's f16
        # ones "nvjet_sm90_…": the first run of 2026-11-26 matched neither. The peers' script
        # warms up with 10 calls, so --reps 1 profiles 11 launches of each peer.)
        timeout -k 5 150 "$ncu" -k 'regex:Kernel|nvjet|gemm|Gemm|xmma|cutlass|splitK|reduce' \
            --print-summary per-kernel --section SpeedOfLight --section LaunchStats --section Occupancy \
            --metrics "$NCU_BYTES" \
            python3 "$dir/gpu-peers.py" --shapes "$shape" --reps 1 || echo "ncu failed on $shape"
    done
}
[ -n "${INT8RT_PROFILE_PEERS:-}" ] && step peer-profile peer_profile
step gpu-calib-tests each_test "$bins/gpu_calib"
step qat-gpu-tests each_test "$bins/qat_gpu"
# INT8RT_SKIP_CALIB_BENCH=1 leaves out the calibration-collection bench (its kernels unchanged).
[ -z "${INT8RT_SKIP_CALIB_BENCH:-}" ] && step calib-bench "$bins/gpu_calib_collect" --bench

summary() {
    echo
    echo "== summary (${gpu:-unknown GPU})"
    echo "| step | result | time | tests |"
    echo "|---|---|---|---|"
    for s in "${steps[@]}"; do
        IFS='|' read -r n r t d <<< "$s"
        echo "| $n | $r | $t | $d |"
    done
    echo
    grep -h '^| ' "$logs"/bench*.log 2>/dev/null
    echo
    # What CudaWeights::tune chose per shape (row int8rt_tuned_i32), and any kernel it rejected for
    # giving other bits than the default path on this GPU.
    grep -h '^tuned \|^TUNING REJECTED' "$logs"/bench*.log 2>/dev/null
    echo
    grep -h '^| ' "$logs/peers.log" 2>/dev/null
    if [ -s "$logs/clocks.csv" ] && [ -f "$dir/gpu-clocks.py" ]; then
        echo
        python3 "$dir/gpu-clocks.py" "$logs/clocks.csv" "$logs/steps.tsv"
    fi
}
# (also in the archive, as summary.txt)
summary | tee "$logs/summary.txt"
archive
for s in "${steps[@]}"; do
    case "$s" in *"|FAIL|"*) exit 1 ;; esac
done
exit 0
