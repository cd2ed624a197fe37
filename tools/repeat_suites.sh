#!/usr/bin/env bash
# Runs ctest suites several times in a row, optionally while a load command keeps the cores busy (a
# build on both cores, as in CI), and prints per test how often it passed. For the tests that kill,
# signal or wait on whole moetrace processes (labels mpi, slurm, cli): they must pass every time, on
# an idle or a loaded machine (docs/distribution.md, "Test pause points").
#
#   tools/repeat_suites.sh [--build DIR] [--rounds N] [--labels mpi,slurm,cli] [--jobs J] [--load 'COMMAND']
#
# --jobs: ctest -j J within each label (default 1).
# --load: started before the first round in its own process group, restarted whenever it ends, and
# killed at the end (e.g. a clean build in a scratch folder: 'rm -rf /tmp/b && cmake -S . -B /tmp/b
# -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build /tmp/b -j 2 >/dev/null').
# Exit status 0 when every test passed in every round.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="$root/build" rounds=5 labels="mpi,slurm,cli" load="" jobs=1
while (($#)); do
  case "$1" in
    --build) build="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --labels) labels="$2"; shift 2 ;;
    --load) load="$2"; shift 2 ;;
    --jobs) jobs="$2"; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ -f "$build/CTestTestfile.cmake" ]] || { echo "no ctest build in $build" >&2; exit 2; }
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "--rounds must be a positive integer, not '$rounds'" >&2; exit 2; }
[[ "$jobs" =~ ^[1-9][0-9]*$ ]] || { echo "--jobs must be a positive integer, not '$jobs'" >&2; exit 2; }

load_pid=""
stop_load() { [[ -z "$load_pid" ]] || kill -- "-$load_pid" 2>/dev/null; wait "$load_pid" 2>/dev/null; load_pid=""; }
trap stop_load EXIT
if [[ -n "$load" ]]; then
  setsid bash -c "while :; do $load; done" >/dev/null 2>&1 &
  load_pid=$!
  echo "load: $load (process group $load_pid)"
fi

out="$(mktemp -d "${TMPDIR:-/tmp}/repeat-suites.XXXXXX")"
declare -A passed=() runs=()
failed_any=0
for label in ${labels//,/ }; do
  for round in $(seq "$rounds"); do
    log="$out/$label.$round.log"
    start=$SECONDS
    (cd "$build" && ctest -L "^$label\$" -j "$jobs" --output-on-failure) >"$log" 2>&1
    rc=$?
    echo "$(date -Is) label $label round $round: ctest exit $rc in $((SECONDS - start)) s, load average $(cut -d' ' -f1-3 /proc/loadavg)"
    while read -r name result; do
      runs[$label/$name]=$((${runs[$label/$name]:-0} + 1))
      if [[ "$result" == Passed ]]; then
        passed[$label/$name]=$((${passed[$label/$name]:-0} + 1))
      else
        failed_any=1
        echo "  $name: $result (log $log)"
      fi
    done < <(awk '/Test +#[0-9]+: / {
                    for (i = 1; i <= NF; ++i) if ($i ~ /^#[0-9]+:$/) name = $(i + 1)
                    result = "Failed"
                    if ($0 ~ / Passed /) result = "Passed"; else if ($0 ~ /Skipped|Not Run/) result = "Skipped"
                    print name, result }' "$log")
  done
done
echo
echo "| label | test | passed / run |"
echo "|---|---|---|"
for key in $(printf '%s\n' "${!runs[@]}" | sort); do
  echo "| ${key%%/*} | ${key#*/} | ${passed[$key]:-0} / ${runs[$key]} |"
done
echo "logs: $out"
exit "$failed_any"
