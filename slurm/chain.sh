#!/usr/bin/env bash
# Submits a whole study as a chain of dependent Slurm jobs: job arrays of shards for the per-case
# stages, a merge after each, then a final run and a report (slurm/README.md, "Staged chains"):
#
#   stage 1  shard.sbatch array, SHARDS tasks: the case scan and the layer sweep of cases i, i+n, ...
#            (moetrace run --shard i/n, each task its own file, requeued on 75)
#   merge 1  moetrace merge -> OUT_DIR/merged1.h5                        (afterok: stage 1)
#   stage 2  array on copies of merged1.h5: the layer selection, then expert tracing
#   merge 2  -> OUT_DIR/merged2.h5
#   stage 3  array on copies of merged2.h5: the expert selection, then controls and coalitions
#   merge 3  -> OUT_DIR/results.h5
#   final    sweep.sbatch with OUT=OUT_DIR/results.h5: resumes it (statistics, heat maps, robustness)
#   report   moetrace report OUT_DIR/results.h5 > OUT_DIR/report.txt
#
# Each job depends on the previous one with --dependency=afterok, so a failed stage stops the chain
# (the jobs after it stay pending with Reason=DependencyNeverSatisfied: scancel them, fix, and run
# chain.sh again: finished shard files are resumed, existing merged files kept). The final results
# are bit-identical to one `moetrace run` of CONFIG (docs/distribution.md, "Shards and merges").
#
#   CONFIG=configs/qwen3-30b-a3b.toml OUT_DIR=results/qwen3 SHARDS=16 bash slurm/chain.sh [sbatch options]
#
# Variables: CONFIG (required), OUT_DIR (required: a folder for this study alone), SHARDS (default 4),
# STAGES (sharded stages, 1 to 3, default 3: with fewer, the final run computes the remaining per-case
# stages unsharded), MOETRACE (default build/src/cli/moetrace). Options after the script name
# (--partition, --account, --qos, --time, --cpus-per-task, ...) are passed to every sbatch call.
# Run it from the repository root, as the scripts are submitted from there. Prints one line per job:
# "<step> <job id>".
set -euo pipefail
: "${CONFIG:?set CONFIG=path/to/config.toml}"
: "${OUT_DIR:?set OUT_DIR=folder for this study}"
SHARDS="${SHARDS:-4}"
STAGES="${STAGES:-3}"
[[ "$SHARDS" =~ ^[1-9][0-9]*$ ]] || { echo "chain.sh: SHARDS=$SHARDS: expected a positive integer" >&2; exit 2; }
[[ "$STAGES" =~ ^[1-3]$ ]] || { echo "chain.sh: STAGES=$STAGES: expected 1, 2 or 3" >&2; exit 2; }
[[ "$CONFIG$OUT_DIR" != *,* ]] || { echo "chain.sh: CONFIG and OUT_DIR must not contain commas (sbatch --export splits at them)" >&2; exit 2; }
[[ -r "$CONFIG" ]] || { echo "chain.sh: CONFIG=$CONFIG: no such readable file" >&2; exit 2; }
command -v sbatch >/dev/null || { echo "chain.sh: sbatch not found (run on a Slurm submit host)" >&2; exit 2; }
mkdir -p "$OUT_DIR/logs"
CONFIG="$(realpath "$CONFIG")"
OUT_DIR="$(realpath "$OUT_DIR")"
MOETRACE="$(realpath -m "${MOETRACE:-$PWD/build/src/cli/moetrace}")"
export MOETRACE
[[ -x "$MOETRACE" ]] || { echo "chain.sh: MOETRACE=$MOETRACE is not an executable (build first)" >&2; exit 2; }
extra=("$@")

submit() {  # sbatch options... -> the job id
  sbatch --parsable "${extra[@]}" "$@" | cut -d';' -f1
}

after="" from=""
for stage in $(seq 1 "$STAGES"); do
  shards=$(submit --array=0-$((SHARDS - 1)) ${after:+--dependency=afterok:$after} \
    --job-name="moetrace-stage$stage" --output="$OUT_DIR/logs/stage$stage.shard%a.log" \
    --export="ALL,CONFIG=$CONFIG,OUT_DIR=$OUT_DIR,STAGE=$stage,SHARDS=$SHARDS,FROM=$from" slurm/shard.sbatch)
  echo "stage$stage-shards $shards"
  merged="$OUT_DIR/merged$stage.h5"
  [[ "$stage" == "$STAGES" ]] && merged="$OUT_DIR/results.h5"
  inputs=""
  for i in $(seq 0 $((SHARDS - 1))); do inputs+=" '$OUT_DIR/stage$stage.shard$i.h5'"; done
  # A merged file that exists is complete (merge writes <out>.tmp and renames it): a rerun keeps it.
  merge=$(submit --dependency=afterok:"$shards" --ntasks=1 --cpus-per-task=1 --job-name="moetrace-merge$stage" \
    --output="$OUT_DIR/logs/merge$stage.log" --open-mode=append \
    --wrap="[ -e '$merged' ] || '$MOETRACE' merge --out '$merged'$inputs")
  echo "stage$stage-merge $merge"
  after="$merge" from="$merged"
done

final=$(submit --dependency=afterok:"$after" --job-name=moetrace-final --output="$OUT_DIR/logs/final.log" \
  --export="ALL,CONFIG=$CONFIG,OUT=$OUT_DIR/results.h5" slurm/sweep.sbatch)
echo "final $final"
report=$(submit --dependency=afterok:"$final" --ntasks=1 --cpus-per-task=1 --job-name=moetrace-report \
  --output="$OUT_DIR/logs/report.log" --wrap="'$MOETRACE' report '$OUT_DIR/results.h5' > '$OUT_DIR/report.txt'")
echo "report $report"
