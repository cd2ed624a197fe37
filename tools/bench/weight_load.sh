#!/usr/bin/env bash
# What loading a model costs, with and without the packed weight store (docs/weights.md), against the
# two limits measured on the same files in the same run:
#   - `cat STORE > /dev/null` with the store in the page cache (the warm limit: reading the bytes once);
#   - `dd if=STORE iflag=direct bs=64M` (the disk's sequential read rate, no page cache: the cold limit).
# For each backend: today's load (from the checkpoint, the checkpoint in the page cache), the store's
# build, a warm load (store in the page cache) and a cold load (after `echo 3 > /proc/sys/vm/drop_caches`),
# each with wall and CPU time, page faults and peak RSS (`moetrace store load`); min and median of
# --repeats. Needs root for the cold numbers (drop_caches). Prints a Markdown table.
#
#   tools/bench/weight_load.sh --model DIR [--backends "cpu cpu-bf16"] [--store DIR] [--repeats N] [--build DIR]
#
# The model is typically the tools/bench/run_vs_peer.sh checkpoint (Qwen3 widths, 12 layers, 32 experts,
# 5.3 GB bf16): `python3 tools/peer/cpu_peer.py write --arch qwen3 --layers 12 --experts 32 --out DIR`.
# The store folder (default: a temporary one) is removed at the end; it needs 1x (cpu-bf16) or 2x (cpu)
# the checkpoint's size on disk.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
model="" backends="cpu cpu-bf16" store="" repeats=3 build="$here/build"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --model) model="$2"; shift 2 ;;
    --backends) backends="$2"; shift 2 ;;
    --store) store="$2"; shift 2 ;;
    --repeats) repeats="$2"; shift 2 ;;
    --build) build="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ -n "$model" && -d "$model" ]] || { echo "--model DIR: a model folder is required" >&2; exit 2; }
[[ $(id -u) == 0 ]] || { echo "weight_load.sh: cold numbers need root (drop_caches)" >&2; exit 2; }
moetrace="$build/src/cli/moetrace"
[[ -x "$moetrace" ]] || { echo "no $moetrace: build first" >&2; exit 2; }
own_store=0
[[ -n "$store" ]] || { store="$(mktemp -d "${TMPDIR:-/tmp}/moetrace-store-bench.XXXXXX")"; own_store=1; }
log="$store.bench.log"
: > "$log"

drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }
# Seconds of wall time of a command (stdout to the log).
wall() { local t0 t1; t0=$(date +%s.%N); "$@" > /dev/null 2>> "$log"; t1=$(date +%s.%N); echo "$t1 - $t0" | bc -l; }
# "min median" of a list of numbers.
stats() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.2f %.2f", a[1], m}'; }
# `moetrace store load` repeated; prints "wall_min wall_med cpu_med faults_med rss_gb"; $1: cold (drop before each)
loads() {
  local cold=$1; shift
  local w=() c=() f=() r=()
  for _ in $(seq "$repeats"); do
    [[ $cold == 1 ]] && drop_caches
    local line
    line=$("$moetrace" store load "$@" 2>> "$log" | tail -1)
    w+=("$(sed -E 's/.*load_seconds=([0-9.]+).*/\1/' <<< "$line")")
    c+=("$(sed -E 's/.*cpu_seconds=([0-9.]+).*/\1/' <<< "$line")")
    f+=("$(sed -E 's/.* page_faults=([0-9]+).*/\1/' <<< "$line")")
    r+=("$(sed -E 's/.*peak_rss_bytes=([0-9]+).*/\1/' <<< "$line")")
  done
  local ws cs fs rs
  ws=$(stats "${w[@]}"); cs=$(stats "${c[@]}"); fs=$(stats "${f[@]}"); rs=$(stats "${r[@]}")
  echo "$ws ${cs#* } ${fs#* } $(echo "${rs#* } / 1000000000" | bc -l)"
}

echo "| backend | what | wall s (min / median of $repeats) | CPU s | page faults | peak RSS GB | x its limit |"
echo "|---|---|---:|---:|---:|---:|---:|"
for b in $backends; do
  rm -rf "${store:?}"/*.mtstore*
  cat "$model"/*.safetensors > /dev/null
  read -r pmin pmed pcpu pflt prss <<< "$(loads 0 --model "$model" --backend "$b")"
  t_build=$(wall "$moetrace" store build --model "$model" --backend "$b" --weight-store "$store")
  file=$(ls "$store"/*.mtstore)
  gb=$(echo "$(stat -c %s "$file") / 1000000000" | bc -l)
  cat "$file" > /dev/null
  cats=(); for _ in $(seq "$repeats"); do cats+=("$(wall cat "$file")"); done
  read -r cat_min _ <<< "$(stats "${cats[@]}")"
  dds=(); for _ in $(seq "$repeats"); do drop_caches; dds+=("$(wall dd if="$file" of=/dev/null bs=64M iflag=direct)"); done
  read -r dd_min _ <<< "$(stats "${dds[@]}")"
  read -r wmin wmed wcpu wflt wrss <<< "$(loads 0 --model "$model" --backend "$b" --weight-store "$store")"
  read -r cmin cmed ccpu cflt crss <<< "$(loads 1 --model "$model" --backend "$b" --weight-store "$store")"
  printf '| %s | limit: `cat` of the %.2f GB store from the page cache | %.2f | | | | |\n' "$b" "$gb" "$cat_min"
  printf '| %s | limit: `dd iflag=direct` of the store (%.2f GB/s) | %.2f | | | | |\n' "$b" "$(echo "$gb / $dd_min" | bc -l)" "$dd_min"
  printf '| %s | load from the checkpoint (today; checkpoint in the page cache) | %.2f / %.2f | %.2f | %.0f | %.2f | %.1fx cat |\n' \
    "$b" "$pmin" "$pmed" "$pcpu" "$pflt" "$prss" "$(echo "$pmed / $cat_min" | bc -l)"
  printf '| %s | store build (once) | %.2f | | | | %.1fx dd |\n' "$b" "$t_build" "$(echo "$t_build / $dd_min" | bc -l)"
  printf '| %s | warm load (store in the page cache) | %.2f / %.2f | %.2f | %.0f | %.2f | %.2fx cat |\n' \
    "$b" "$wmin" "$wmed" "$wcpu" "$wflt" "$wrss" "$(echo "$wmed / $cat_min" | bc -l)"
  printf '| %s | cold load (after drop_caches) | %.2f / %.2f | %.2f | %.0f | %.2f | %.2fx dd |\n' \
    "$b" "$cmin" "$cmed" "$ccpu" "$cflt" "$crss" "$(echo "$cmed / $dd_min" | bc -l)"
done
echo
echo "host: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; OMP_NUM_THREADS=${OMP_NUM_THREADS:-unset}; log: $log"
[[ $own_store == 1 ]] && rm -rf "$store"
exit 0
