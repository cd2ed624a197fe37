#!/usr/bin/env bash
# One copy per node: the proportional set size (Pss, /proc/PID/smaps_rollup) of the two ranks of
# `mpirun -np 2 moetrace run CONFIG --ep R` (R = 1 and 2), with the weight store and without it, sampled
# every 0.5 s while the ranks run; prints the peak of the two ranks' sum (and its anonymous and file
# parts) as a Markdown table. CONFIG must set [model] weight_store (tools/bench/store_run.sh writes one);
# the run without the store uses a copy of CONFIG without that line. Pss divides each shared page among
# the processes that map it, so the sum counts the store's pages once: with the store it should be about
# one copy of the replicated weights plus the experts once, without it (each rank its own packed copy)
# twice the replicated weights plus the experts (R = 2) or two whole models (R = 1).
#
#   tools/bench/store_pss.sh --config RUN.toml [--build DIR]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
config="" build="$here/build"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --config) config="$2"; shift 2 ;;
    --build) build="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
grep -q '^weight_store' "$config" || { echo "--config: a config with [model] weight_store" >&2; exit 2; }
moetrace="$build/src/cli/moetrace"
work="$(mktemp -d "${TMPDIR:-/tmp}/moetrace-pss.XXXXXX")"
grep -v '^weight_store' "$config" > "$work/plain.toml"
"$moetrace" store build "$config" > /dev/null 2> "$work/build.log"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1

# Peak over time of the sum over the rank processes of Pss, Pss_Anon, Pss_File (kB), and of Rss.
sample() {
  local peak=0 line best="0 0 0 0"
  while kill -0 "$1" 2> /dev/null; do
    local pss=0 anon=0 file=0 rss=0
    for pid in $(pgrep -f "moetrace run .*--out $2" || true); do
      [[ -r /proc/$pid/smaps_rollup ]] || continue
      read -r p a f r < <(awk '/^Pss:/{p=$2} /^Pss_Anon:/{a=$2} /^Pss_File:/{f=$2} /^Rss:/{r=$2} END{print p+0, a+0, f+0, r+0}' \
                          "/proc/$pid/smaps_rollup" 2> /dev/null || echo 0 0 0 0)
      pss=$((pss + p)); anon=$((anon + a)); file=$((file + f)); rss=$((rss + r))
    done
    if (( pss > peak )); then peak=$pss; best="$pss $anon $file $rss"; fi
    sleep 0.5
  done
  echo "$best"
}

echo "| ranks | --ep | weights | peak sum of Pss GB | of it anonymous | of it file (the store) | sum of Rss GB | weights per rank (log) |"
echo "|---:|---:|---|---:|---:|---:|---:|---|"
for ep in 1 2; do
  for kind in store checkpoint; do
    cfg="$config"; [[ $kind == checkpoint ]] && cfg="$work/plain.toml"
    out="$work/ep$ep.$kind.h5"
    mpirun -np 2 --oversubscribe -x OMP_NUM_THREADS "$moetrace" run "$cfg" --ep "$ep" --out "$out" > "$work/$kind.$ep.log" 2>&1 &
    mpi=$!
    read -r pss anon file rss <<< "$(sample "$mpi" "$out")"
    wait "$mpi" || { tail -20 "$work/$kind.$ep.log" >&2; exit 1; }
    per_rank=$(grep -o '[0-9.]* MiB of weights per rank' "$work/$kind.$ep.log" | head -1)
    printf '| 2 | %s | %s | %.2f | %.2f | %.2f | %.2f | %s |\n' "$ep" "$kind" "$(echo "$pss / 1000000" | bc -l)" \
      "$(echo "$anon / 1000000" | bc -l)" "$(echo "$file / 1000000" | bc -l)" "$(echo "$rss / 1000000" | bc -l)" "$per_rank"
  done
done
rm -rf "$work"
