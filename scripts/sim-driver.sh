#!/usr/bin/env bash
# scripts/sim-driver.sh — run a command against the simulated CUDA driver: builds
# kernels/sim/libcuda_sim.cpp with every kernel compiled as C++ (the host simulation) into
# target/sim-driver/libcuda.so.1 (rebuilt when a kernel source changes), then runs the command
# with that directory first on LD_LIBRARY_PATH, so cudarc loads it instead of NVIDIA's driver and
# the crate's driver-side code runs on a machine without a GPU, every launch simulated. A cargo
# command keeps its own environment and gets the library into the programs it runs (as their
# runner), so nothing is rebuilt.
#
#   scripts/sim-driver.sh cargo test --release --test gpu            # the GPU suite, simulated
#   INT8RT_SIMDRV_SKIP_KERNELS=1 scripts/sim-driver.sh cargo run --release --example gpu_latency
#                                  # host time per forward, kernels counted but not run
#   scripts/sim-driver.sh --build  # build only; prints the library's directory
#
# Environment for the library: INT8RT_SIMDRV_ARCH (compute capability, default 90; below 80 the
# kernels' sm_75 code runs, from target/sim-driver-sm75/),
# INT8RT_SIMDRV_SMS (default 132), INT8RT_SIMDRV_POOLS=0 (no memory pools),
# INT8RT_SIMDRV_SKIP_KERNELS=1. The compile flags are kernels/sim/cxxflags, which
# src/cuda/sim.rs's `build_cxx` (the simulation library of the unit tests) reads too.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${CARGO_TARGET_DIR:-$root/target}/sim-driver"
variant=()
if [ "${INT8RT_SIMDRV_ARCH:-90}" -lt 80 ]; then
    # An sm_75 device runs the kernels' sm_75 code (kernels/common.cuh, I8RT_SM75_CODE), as its
    # CUBIN would: a library of its own.
    out="$out-sm75"
    variant=(-DI8RT_SIM_SM75=1)
fi
mkdir -p "$out"
srcs=("$root"/kernels/*.cu "$root"/kernels/*.cuh "$root"/kernels/sim/*)
hash="$(cat "${srcs[@]}" | sha256sum | cut -c1-16)"
if [ ! -f "$out/libcuda.so.1" ] || [ "$(cat "$out/hash" 2>/dev/null)" != "$hash" ]; then
    echo "sim-driver: compiling the kernels for the host simulation (about a minute)" >&2
    # One compiler per core, a translation unit each (one command compiles them one by one),
    # then one link.
    # shellcheck disable=SC2207
    flags=($(grep -v '^ *#' "$root/kernels/sim/cxxflags") ${variant[@]+"${variant[@]}"})
    # (objects and the linked library under names of this run's own: two runs building at once
    # — two test processes, say — each link whole objects, and the last rename wins)
    objs="$(mktemp -d "$out/obj.XXXXXX")"
    trap 'rm -rf "$objs"' EXIT
    export CXX="${CXX:-c++}" SIMDRV_OBJS="$objs" SIMDRV_INC="$root/kernels"
    printf '%s\0' "$root"/kernels/*.cu "$root/kernels/sim/sim_main.cpp" "$root/kernels/sim/libcuda_sim.cpp" |
        xargs -0 -P "$(nproc)" -I{} bash -c '
            src="$1"; shift
            lang=(); case "$src" in *.cu) lang=(-x c++) ;; esac
            exec "$CXX" "$@" -I "$SIMDRV_INC" "${lang[@]}" -c "$src" -o "$SIMDRV_OBJS/$(basename "$src").o"
        ' _ {} "${flags[@]}"
    "$CXX" "${flags[@]}" "$objs"/*.o -Wl,-soname,libcuda.so.1 -o "$objs/libcuda.so.1"
    # (renamed into place, never rewritten: a program still running on the previous build keeps
    # its mapped file — copying over it killed such a run with SIGBUS)
    mv "$objs/libcuda.so.1" "$out/libcuda.so.1"
    rm -rf "$objs"
    trap - EXIT
    # cudarc tries the unversioned name first: a real driver elsewhere must not win.
    ln -sfn libcuda.so.1 "$out/libcuda.so"
    echo "$hash" > "$out/hash"
fi
if [ "${1:-}" = "--build" ]; then
    echo "$out"
    exit 0
fi
[ $# -gt 0 ] || { echo "usage: $0 --build | <command> [args...]" >&2; exit 2; }
if [ "$1" = "cargo" ]; then
    # Cargo itself keeps its environment (build.rs reruns when LD_LIBRARY_PATH changes, which
    # would rebuild everything): the programs it runs get the library through this script as
    # their runner.
    triple="$(rustc -vV | sed -n 's/^host: //p' | tr 'a-z-' 'A-Z_')"
    export "CARGO_TARGET_${triple}_RUNNER=$root/scripts/sim-driver.sh --exec"
    exec "$@"
fi
[ "$1" = "--exec" ] && shift
export LD_LIBRARY_PATH="$out${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
exec "$@"
