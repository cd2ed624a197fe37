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

# Sanitizer step: the parsers of hostile input (checkpoints, config.json, tokenizer.json, run
# configs, CounterFact) under AddressSanitizer + UndefinedBehaviorSanitizer, in a separate build
# with CUDA off that builds only the CLI and these tests. UBSan aborts on the first finding.
# MOETRACE_SANITIZE=OFF skips it. About 6-8 minutes on 2 cores (docs/fuzzing.md).
if [ "${MOETRACE_SANITIZE:-ON}" != "OFF" ]; then
  sanitize_build="${MOETRACE_SANITIZE_BUILD_DIR:-$build-sanitize}"
  sanitize_tests=(test_model_hostile_inputs tokenizer_unit_test test_pipeline_inputs)
  san_flags="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined"
  cmake -S "$root" -B "$sanitize_build" -DCMAKE_BUILD_TYPE=Debug -DMOETRACE_CUDA=OFF \
    -DCMAKE_CXX_FLAGS="$san_flags" -DCMAKE_C_FLAGS="$san_flags" \
    -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=address,undefined"
  cmake --build "$sanitize_build" -j "$(nproc)" --target moetrace "${sanitize_tests[@]}"
  regex="^($(IFS='|'; echo "${sanitize_tests[*]}"))\$"
  (cd "$sanitize_build" &&
    ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:strict_string_checks=1 \
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    ctest --output-on-failure -j "$(nproc)" -R "$regex")
fi
