#!/usr/bin/env bash
# Scaling study of `mpirun -np N moetrace run CONFIG --ep R` on a fixed workload (docs/distribution.md,
# "Measured scaling on this machine"; docs/benchmarks.md, "Scaling").
#
#   tools/bench/scaling.sh [--pairs "1:1 2:1 2:2 4:1 4:2 4:4"] [--cases 240] [--samples 3]
#                          [--repeat 3] [--moetrace PATH] [--work DIR] [--keep]
#                          [--config FILE] [--mpirun-args "ARGS"] [--gpu-per-rank]
#
# Workload: the demo model (demo/model) and demo/counterfact_demo.json, copied into the work folder
# first (so that every pair reads the same files even if the checkout changes meanwhile), with a config
# written there: a fixed number of usable cases ([cases] n), `--samples` noise draws per case, expert
# tracing at all layers, candidate threshold 0.25 (so that an expert is selected on the demo and the
# controls, coalitions and statistics all run), no heat maps, no robustness grids. Each (N, R) pair
# runs `--repeat` times (the best wall time is kept) with the caller's OMP_NUM_THREADS (1 when it is
# not set; slurm/scaling.sbatch sets it from --cpus-per-task) and OMPI_MCA_mpi_yield_when_idle=1 (waiting ranks yield the core: a small host has fewer cores than the
# larger jobs have ranks), under `mpirun --oversubscribe --bind-to none`.
#
# On a cluster (slurm/scaling.sbatch): --config FILE runs that config as it is instead of the demo
# workload (--cases and --samples are then ignored); --mpirun-args replaces the default mpirun options
# `--oversubscribe --bind-to none`; --gpu-per-rank sets each rank's CUDA_VISIBLE_DEVICES to the entry
# of the inherited list at its node-local rank.
#
# Pairs are "N:R" separated by spaces ("N,R" is accepted too, but not through `sbatch --export`, which
# splits its argument at commas); a malformed pair, or R not dividing N, is an error (exit 2).
# As root, mpirun refuses to start unless OMPI_ALLOW_RUN_AS_ROOT=1 and OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# are set: this script does not set them for you (it stops with a message saying so).
#
# Printed table, one line per pair:
#   N, R, groups = N/R; wall s = the mpirun job, start to exit (best of --repeat); run s = from the
#   job's first to its last log line (without MPI start-up); cases/s = cases / wall s; speed-up =
#   wall(first pair) / wall; eff = speed-up x N(first pair) / N (parallel efficiency per rank) and
#   eff/core = the same with min(N, cores) for N; steps = layer-token steps of rank 0's engine;
#   B/step = exchange bytes sent by rank 0 per layer-token step (slot rows + ownership headers;
#   0 without an exchange, R = 1).
# Then every results file is compared with the first pair's (by default (1,1)): every dataset and
# every attribute outside /provenance, bit for bit (h5py), and the script says whether they are
# identical (exit 1 if not).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
pairs="1:1 2:1 2:2 4:1 4:2 4:4" cases=240 samples=3 repeat=3 keep=0 user_config="" mpirun_args="" gpu_per_rank=0
moetrace="$here/build/src/cli/moetrace"
work="${TMPDIR:-/tmp}/moetrace-scaling.$$"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --pairs) pairs="$2"; shift 2 ;;
    --cases) cases="$2"; shift 2 ;;
    --samples) samples="$2"; shift 2 ;;
    --repeat) repeat="$2"; shift 2 ;;
    --moetrace) moetrace="$2"; shift 2 ;;
    --work) work="$2"; shift 2 ;;
    --keep) keep=1; shift ;;
    --config) user_config="$(realpath "$2")"; shift 2 ;;
    --mpirun-args) mpirun_args="$2"; shift 2 ;;
    --gpu-per-rank) gpu_per_rank=1; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ -x "$moetrace" ]] || { echo "no moetrace binary at $moetrace (cmake --build build --target moetrace)" >&2; exit 2; }
command -v mpirun >/dev/null || { echo "mpirun not found (apt-get install openmpi-bin)" >&2; exit 2; }
if [[ "$(id -u)" == 0 && ( "${OMPI_ALLOW_RUN_AS_ROOT:-}" != 1 || "${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-}" != 1 ) ]]; then
  echo "running as root: Open MPI's mpirun needs OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 in the environment (export them if you mean it)" >&2
  exit 2
fi
# Pairs: "N:R" (or "N,R"), N and R positive, R dividing N; normalised to "N:R".
norm_pairs=()
for pair in $pairs; do
  if [[ ! "$pair" =~ ^([1-9][0-9]*)[:,]([1-9][0-9]*)$ ]]; then
    echo "malformed pair '$pair' in --pairs \"$pairs\": expected N:R pairs separated by spaces, e.g. \"1:1 2:1 2:2\"" >&2
    exit 2
  fi
  if (( BASH_REMATCH[1] % BASH_REMATCH[2] != 0 )); then echo "pair $pair: R must divide N" >&2; exit 2; fi
  norm_pairs+=("${BASH_REMATCH[1]}:${BASH_REMATCH[2]}")
done
(( ${#norm_pairs[@]} > 0 )) || { echo "--pairs is empty" >&2; exit 2; }
pairs="${norm_pairs[*]}"
mkdir -p "$work"
[[ "$keep" == 1 ]] || trap 'rm -rf "$work"' EXIT

config="$work/scaling.toml"
if [[ -n "$user_config" ]]; then
  config="$user_config"
else
mkdir -p "$work/demo"
cp -r "$here/demo/model" "$work/demo/model"
cp "$here/demo/counterfact_demo.json" "$work/demo/"
cat > "$config" <<EOF
# Fixed workload of tools/bench/scaling.sh.
[model]
path = "$work/demo/model"

[data]
counterfact = "$work/demo/counterfact_demo.json"
object_rule = "leading_space"

[cases]
n = $cases
shuffle_seed = 0
split_seed = 0
filter = "strict"

[noise]
samples = $samples

[experts]
mode = "all_layers"
candidate_threshold = 0.25

[heatmap]
cases = 0

[run]
progress_every_s = 100000
checkpoint_every_s = 100000
EOF
fi

export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" OMPI_MCA_mpi_yield_when_idle=1
if [[ -n "$mpirun_args" ]]; then read -ra mpi_opts <<<"$mpirun_args"; else mpi_opts=(--oversubscribe --bind-to none); fi
rank_cmd=("$moetrace")
if [[ "$gpu_per_rank" == 1 ]]; then
  # shellcheck disable=SC2016
  rank_cmd=(bash -c 'IFS=, read -ra gpus <<< "${CUDA_VISIBLE_DEVICES:-}"
                     if (( ${#gpus[@]} > 0 )); then
                       export CUDA_VISIBLE_DEVICES="${gpus[$(( ${OMPI_COMM_WORLD_LOCAL_RANK:-0} % ${#gpus[@]} ))]}"
                     fi
                     exec "$@"' moetrace-rank "$moetrace")
fi
cores="$(getconf _NPROCESSORS_ONLN)"

now() { date +%s.%N; }
# seconds between the first and the last "[HH:MM:SS.mmm]" log stamp of a log
log_span() {
  awk -F'[][]' '/^\[[0-9][0-9]:[0-9][0-9]:[0-9][0-9]\.[0-9]+\]/ {
      split($2, t, ":"); s = t[1] * 3600 + t[2] * 60 + t[3]; if (first == "") first = s; last = s }
    END { d = last - first; if (d < 0) d += 86400; printf "%.2f", d }' "$1"
}

load0="$(cut -d' ' -f1-3 /proc/loadavg)"
rows=()
for pair in $pairs; do
  n="${pair%:*}" r="${pair#*:}"
  best="" best_log=""
  for ((i = 1; i <= repeat; ++i)); do
    out="$work/n${n}r${r}.$i.h5" log="$work/n${n}r${r}.$i.log"
    rm -f "$out"
    t0="$(now)"
    if (cd "$work" && mpirun "${mpi_opts[@]}" -np "$n" "${rank_cmd[@]}" run "$config" --out "$out" --ep "$r" >"$log" 2>&1)
    then rc=0; else rc=$?; fi
    t1="$(now)"
    if [[ "$rc" != 0 ]]; then
      echo "mpirun -np $n ... --ep $r failed with status $rc; log: $log" >&2
      tail -20 "$log" >&2
      keep=1; trap - EXIT; exit 1
    fi
    wall="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')"
    echo "N=$n R=$r run $i/$repeat: ${wall} s" >&2
    if [[ -z "$best" ]] || awk -v a="$wall" -v b="$best" 'BEGIN { exit !(a < b) }'; then
      best="$wall" best_log="$log"
      cp "$out" "$work/n${n}r${r}.h5"
    fi
  done
  done_line="$(grep -E '\] done: [0-9]+ cases' "$best_log" | tail -1)"
  ncases="$(sed -E 's/.*done: ([0-9]+) cases.*/\1/' <<<"$done_line")"
  steps="$(sed -E 's/.* ([0-9]+) layer-token steps on rank 0.*/\1/' <<<"$done_line")"
  bytes=0 calls=0
  if xline="$(grep 'expert exchange on rank 0:' "$best_log")"; then
    bytes="$(sed -E 's/.*calls \(MoE layer steps\), ([0-9]+) bytes sent.*/\1/' <<<"$xline")"
    calls="$(sed -E 's/.*rank 0: ([0-9]+) combine calls.*/\1/' <<<"$xline")"
  fi
  rows+=("$n $r $best $(log_span "$best_log") $ncases $steps $bytes $calls")
done

echo
echo "host: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $cores cores," \
     "load average $load0 before, $(cut -d' ' -f1-3 /proc/loadavg) after;" \
     "$(mpirun --version 2>/dev/null | head -1); best of $repeat; workload:" \
     "$(if [[ -n "$user_config" ]]; then echo "$user_config";
        else echo "$cases cases x $samples noise samples, demo model (4 layers, 8 experts, top-2, H = 128)"; fi)"
printf '%s\n' "${rows[@]}" | awk -v cores="$cores" '
  BEGIN {
    printf "| %2s | %2s | %6s | %7s | %6s | %7s | %8s | %5s | %8s | %8s | %8s |\n", "N", "R", "groups", "wall s",
      "run s", "cases/s", "speed-up", "eff", "eff/core", "steps", "B/step"
    print "|---:|---:|-------:|--------:|-------:|--------:|---------:|------:|---------:|---------:|---------:|"
  }
  {
    n = $1; r = $2; wall = $3; span = $4; ncases = $5; steps = $6; bytes = $7
    c = (n < cores) ? n : cores
    if (NR == 1) { base = wall; n0 = n; c0 = c }
    s = base / wall
    printf "| %2d | %2d | %6d | %7.2f | %6.2f | %7.1f | %7.2fx | %5.2f | %8.2f | %8d | %8.1f |\n", n, r, n / r, wall,
      span, ncases / wall, s, s * n0 / n, s * c0 / c, steps, (steps > 0 ? bytes / steps : 0)
  }'
echo "(speed-up and efficiencies relative to the first pair, ${pairs%% *})"

# Bit-identity of every results file with the first pair's.
ref_pair="${pairs%% *}"
ref="$work/n${ref_pair%:*}r${ref_pair#*:}.h5"
files=()
for pair in $pairs; do files+=("$work/n${pair%:*}r${pair#*:}.h5"); done
/usr/bin/python3 "$here/tools/compare_results.py" "$ref" "${files[@]}"
