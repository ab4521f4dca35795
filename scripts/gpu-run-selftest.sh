#!/usr/bin/env bash
# scripts/gpu-run-selftest.sh — runs scripts/gpu-run.sh (what a GPU session sends to the device
# machine) here, without a GPU, on a stand-in bundle: every binary a two-line script that passes
# one test (or, for `gpu`, fails when asked), nvidia-smi a script that prints an H200's identity
# and a sample every 200 ms, gpu-peers.py one table row. It checks what a device call depends on
# and cannot be retried cheaply: the step table, the exit status (0 when all pass, 1 when a test
# fails), the logs archive in $OUT, the per-step clock table (scripts/gpu-clocks.py) and no
# nvidia-smi sampler left running. .ci/run calls it; about 30 s.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
t="$(mktemp -d)"
trap 'rm -rf "$t"' EXIT
mkdir -p "$t/bundle/bin" "$t/path" "$t/out"

cat > "$t/path/nvidia-smi" <<'EOF'
#!/usr/bin/env bash
# A stand-in: the queries scripts/gpu-run.sh makes, answered as an H200 would.
case "$*" in
*-lms*)
    # Busy (utilization 40 %) with the software power cap active, at 1,755 MHz, every 200 ms.
    while true; do
        echo "$(date '+%Y/%m/%d %H:%M:%S.%3N'), 1755, 2619, 480.50, 43, 40, 0x0000000000000004"
        sleep 0.2
    done
    ;;
*uuid*) printf 'uuid, pci.bus_id\nGPU-selftest, 00000000:19:00.0\n' ;;
*name,driver*) echo "NVIDIA H200 (stand-in), 580.00, 143771 MiB" ;;
*) echo "$(date '+%Y/%m/%d %H:%M:%S.%3N'), 1980, 2619, 120.0, 40, 0, 0x0" ;;
esac
EOF
for b in gpu gpu_calib qat_gpu kernels_static gpu_gemm gpu_calib_collect gpu_latency gpu_profile; do
    cat > "$t/bundle/bin/$b" <<'EOF'
#!/usr/bin/env bash
if [ "${1:-}" = --list ]; then echo "one_test: test"; exit 0; fi
sleep 0.7
if [ "$(basename "$0")" = gpu ] && [ -n "${SELFTEST_FAIL:-}" ]; then echo "assertion failed"; exit 101; fi
echo "test result: ok. 1 passed; 0 failed"
EOF
done
chmod +x "$t/path/nvidia-smi" "$t/bundle/bin/"*
cp "$ROOT/scripts/gpu-run.sh" "$t/bundle/run.sh"
cp "$ROOT/scripts/gpu-clocks.py" "$t/bundle/gpu-clocks.py"
echo 'print("| cublas_f16 | 1,4096,4096 | 0.0100 | 3.4 | 3355 |")' > "$t/bundle/gpu-peers.py"

fail() {
    echo "gpu-run selftest: $*" >&2
    sed 's/^/    /' "$t/log" >&2
    exit 1
}
run() {
    (cd "$t" && PATH="$t/path:$PATH" OUT="$t/out" INT8RT_SKIP_CALIB_BENCH=1 bash bundle/run.sh) > "$t/log" 2>&1
}

run || fail "exit status $? with every step passing"
grep -q '^| gpu-tests | pass |' "$t/log" || fail "no passing gpu-tests row"
grep -q '^| peers | pass |' "$t/log" || fail "no passing peers row"
grep -q '^| cublas_f16 | 1,4096,4096 |' "$t/log" || fail "the peers' table is not in the summary"
grep -q 'GPU-selftest' "$t/log" || fail "the card's identity is not printed"
# Each step lasts over 0.7 s, so the sampler caught at least two busy samples of it.
grep -Eq '^\| gpu-tests \| [0-9]+ \(([2-9]|[1-9][0-9]+) busy\) \| 1755 \(1755\) \| 2619 \(2619\) \| 480 \| 43 \| sw-power-cap \|$' "$t/log" ||
    fail "no clock row for gpu-tests (1755 MHz, 480 W, 43 °C, sw-power-cap)"
tar -tzf "$t/out/logs.tgz" | grep -q 'clocks.csv' || fail "clocks.csv is not in logs.tgz"
tar -tzf "$t/out/logs.tgz" | grep -q 'summary.txt' || fail "summary.txt is not in logs.tgz"
sleep 0.5
if pgrep -f "$t/path/nvidia-smi" > /dev/null; then
    pkill -f "$t/path/nvidia-smi" || true
    fail "the nvidia-smi sampler outlived run.sh"
fi

status=0
SELFTEST_FAIL=1 run || status=$?
[ "$status" -eq 1 ] || fail "exit status $status with a failing GPU test (want 1)"
grep -q '^| gpu-tests | FAIL |' "$t/log" || fail "no FAIL row for the failing GPU test"
echo "gpu-run selftest: ok (step table, exit status, logs archive, clock table, sampler stopped)"
