#!/usr/bin/env bash
# scripts/ci-cuda-env.sh — source me. Installs the pinned NVRTC, cuobjdump and nvdisasm wheels
# into .venv-ci (git-ignored) and exports what the build and the kernel checks need:
#   LD_LIBRARY_PATH       libnvrtc.so.12 for build.rs (kernels compiled at every build)
#   INT8RT_REQUIRE_NVRTC  1: a build without NVRTC, or a test without the images, fails
#   INT8RT_CUOBJDUMP      cuobjdump for the SASS checks (tests/kernels_static.rs)
# No GPU and no CUDA toolkit are needed. Leaves the caller's shell options alone (it is sourced);
# returns non-zero when an install step fails.
_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_venv="$_root/.venv-ci"
_pins=(nvidia-cuda-nvrtc-cu12==12.9.86 nvidia-cuda-cuobjdump==13.5.37 nvidia-cuda-nvdisasm==13.5.37)
if [ ! -x "$_venv/bin/python" ]; then
    python3 -m venv "$_venv" || return 1
fi
if ! "$_venv/bin/pip" freeze 2>/dev/null | grep -qx "nvidia-cuda-nvrtc-cu12==12.9.86" \
    || ! "$_venv/bin/pip" freeze 2>/dev/null | grep -qx "nvidia-cuda-nvdisasm==13.5.37" \
    || ! "$_venv/bin/pip" freeze 2>/dev/null | grep -qx "nvidia-cuda-cuobjdump==13.5.37"; then
    "$_venv/bin/pip" install --quiet --disable-pip-version-check "${_pins[@]}" || return 1
fi
_site="$("$_venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" || return 1
export LD_LIBRARY_PATH="$_site/nvidia/cuda_nvrtc/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="$_site/nvidia/cu13/bin:$PATH"   # cuobjdump finds nvdisasm on PATH
export INT8RT_CUOBJDUMP="$_site/nvidia/cu13/bin/cuobjdump"
export INT8RT_REQUIRE_NVRTC=1
echo "NVRTC: $_site/nvidia/cuda_nvrtc/lib; cuobjdump: $INT8RT_CUOBJDUMP"
