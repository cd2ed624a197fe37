#!/usr/bin/env bash
# Sets everything up and runs moetrace's main job on the embedded demo: installs Debian packages,
# builds, runs the full tracing protocol (configs/demo.toml) on the small MoE in demo/, and prints
# the report. The plots are one more command: python3 tools/plot_results.py results/demo.h5
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bash "$root/.ci/install-deps"
build="${MOETRACE_BUILD_DIR:-$root/build}"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build "$build" -j "$(nproc)" --target moetrace
out="${MOETRACE_DEMO_OUT:-$root/results/demo.h5}"
mkdir -p "$(dirname "$out")"
rm -f "$out"
"$build/src/cli/moetrace" run "$root/configs/demo.toml" --out "$out"
"$build/src/cli/moetrace" report "$out"
echo
echo "Plots: python3 $root/tools/plot_results.py $out   (writes PNGs beside the results file)"
