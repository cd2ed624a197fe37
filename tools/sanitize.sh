#!/usr/bin/env bash
# The parsers of hostile input (checkpoints, config.json, tokenizer.json, run configs, CounterFact,
# localize's questions.jsonl and its answer normalisation of arbitrary UTF-8)
# under AddressSanitizer + UndefinedBehaviorSanitizer: a separate build (gcc, CUDA off) of only the
# CLI and the parser tests, which then run with UBSan aborting on its first finding. Called by
# tools/test.sh (and so by CI); budgeted at 6-8 minutes on 2 cores from a clean build (docs/fuzzing.md).
# Build folder: $MOETRACE_SANITIZE_BUILD_DIR, else build-sanitize next to build/.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${MOETRACE_SANITIZE_BUILD_DIR:-$root/build-sanitize}"
tests=(test_model_hostile_inputs tokenizer_unit_test test_pipeline_inputs test_localize_data test_localize_match)
flags="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Debug -DMOETRACE_CUDA=OFF \
  -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_C_FLAGS="$flags" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=address,undefined"
cmake --build "$build" -j "$(nproc)" --target moetrace "${tests[@]}"
regex="^($(IFS='|'; echo "${tests[*]}"))\$"
cd "$build"
# Leak checking is off: MPI and HDF5 keep allocations alive on purpose until exit.
ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:strict_string_checks=1 \
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  ctest --output-on-failure -j "$(nproc)" -R "$regex"
