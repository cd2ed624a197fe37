#!/usr/bin/env bash
# Sets everything up and runs the router-contrast localisation protocol on the multilingual demo:
# installs Debian packages, builds, runs `moetrace localize` (configs/demo_localize.toml) on the
# small MoE in demo/localize/ (synthetic facts in 5 synthetic languages, 4 planted knowledge
# experts), prints the report, and checks that the planted experts are found and that deactivating
# them flips most correct validation pairs while the random and popular controls flip few
# (tools/demo/check_demo_localize.py). The plots: python3 tools/plot_results.py results/demo_localize.h5
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bash "$root/.ci/install-deps"
build="${MOETRACE_BUILD_DIR:-$root/build}"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build "$build" -j "$(nproc)" --target moetrace
out="${MOETRACE_DEMO_OUT:-$root/results/demo_localize.h5}"
mkdir -p "$(dirname "$out")"
rm -f "$out"
"$build/src/cli/moetrace" localize "$root/configs/demo_localize.toml" --out "$out"
"$build/src/cli/moetrace" report "$out"
echo
/usr/bin/python3 "$root/tools/demo/check_demo_localize.py" "$out"
echo
echo "Plots: python3 $root/tools/plot_results.py $out   (writes PNGs beside the results file)"
