#!/usr/bin/env bash
# Sets everything up and runs moetrace's test suite: installs Debian packages, builds (with the
# CUDA backend too when nvcc is at /usr/local/cuda), then runs ctest. GPU tests carry the label
# `gpu` and run only where `nvidia-smi` sees a GPU.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bash "$root/.ci/install-deps"
build="${MOETRACE_BUILD_DIR:-$root/build}"
cuda_flag=()
if [ -x /usr/local/cuda/bin/nvcc ] && [ "${MOETRACE_CUDA:-auto}" != "OFF" ]; then
  cuda_flag=(-DMOETRACE_CUDA=ON -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc)
fi
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release "${cuda_flag[@]}"
cmake --build "$build" -j "$(nproc)"
exclude=()
if ! nvidia-smi -L >/dev/null 2>&1; then exclude=(-LE gpu); fi
(cd "$build" && ctest --output-on-failure -j "$(nproc)" "${exclude[@]}")

# Sanitizer step (ASan + UBSan on the parsers of hostile input, tools/sanitize.sh): a separate
# build of only the CLI and the parser tests. MOETRACE_SANITIZE=OFF skips it.
if [ "${MOETRACE_SANITIZE:-ON}" != "OFF" ]; then
  MOETRACE_SANITIZE_BUILD_DIR="${MOETRACE_SANITIZE_BUILD_DIR:-$build-sanitize}" bash "$root/tools/sanitize.sh"
fi
