#!/usr/bin/env bash
# `moetrace run` through the packed weight store on a random real-width checkpoint, measured as a user's
# second run would be (the store built beforehand, untimed), for the "Larger than memory" section of
# docs/weights.md:
#   - FACTS synthetic English facts in CounterFact format (discovery and validation halves fixed, so a
#     random model's filter keeps them all), every stage of tools/bench/run_vs_peer.sh's config;
#   - the run under /usr/bin/time -v: wall, CPU (user + sys), page faults (major + minor), bytes read
#     from disk (file system inputs x 512) and peak RSS, per fact;
#   - the disk's sequential read rate on the store (`dd iflag=direct`, first 4 GiB) in the same run, and
#     the bytes-read limit = bytes read / that rate.
# --cold drops the page cache first (root). Prints one Markdown table row (and the header with --header).
#
#   tools/bench/store_run.sh --model DIR --store DIR [--facts 64] [--backend cpu-bf16] [--work DIR]
#                            [--build DIR] [--cold] [--header]
#
# The checkpoint: `python3 tools/peer/cpu_peer.py write --arch qwen3 --layers 48 --experts 64 --out DIR`
# (32 GB: larger than a 24 GiB machine), or 12 layers for the in-memory rate. A tokenizer.json must be
# in DIR (Qwen3's: see tools/bench/run_vs_peer.sh).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
model="" store="" facts=64 backend=cpu-bf16 work="" build="$here/build" cold=0 header=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --model) model="$2"; shift 2 ;;
    --store) store="$2"; shift 2 ;;
    --facts) facts="$2"; shift 2 ;;
    --backend) backend="$2"; shift 2 ;;
    --work) work="$2"; shift 2 ;;
    --build) build="$2"; shift 2 ;;
    --cold) cold=1; shift ;;
    --header) header=1; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ -n "$model" && -f "$model/config.json" && -f "$model/tokenizer.json" ]] || { echo "--model DIR with config.json and tokenizer.json is required" >&2; exit 2; }
[[ -n "$store" ]] || { echo "--store DIR is required" >&2; exit 2; }
[[ -n "$work" ]] || work="$(mktemp -d "${TMPDIR:-/tmp}/moetrace-store-run.XXXXXX")"
mkdir -p "$work"
moetrace="$build/src/cli/moetrace"

python3 "$here/tools/bench/write_bench_facts.py" "$work" "$model" "$backend" "$facts" "$store"

"$moetrace" store build "$work/run.toml" > /dev/null 2> "$work/store_build.log"
file="$("$moetrace" store build "$work/run.toml" 2> /dev/null)"
layers=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["num_hidden_layers"])' "$model/config.json")
sync; echo 3 > /proc/sys/vm/drop_caches
t0=$(date +%s.%N); dd if="$file" of=/dev/null bs=64M count=64 iflag=direct 2> /dev/null; t1=$(date +%s.%N)
rate=$(echo "4294967296 / ($t1 - $t0)" | bc -l)
[[ $cold == 1 ]] && { sync; echo 3 > /proc/sys/vm/drop_caches; }
rm -f "$work/run.h5" "$work/run.h5.journal"
/usr/bin/time -v "$moetrace" run "$work/run.toml" --out "$work/run.h5" > "$work/moetrace.log" 2>&1 \
  || { tail -30 "$work/moetrace.log" >&2; exit 1; }
python3 - "$work/moetrace.log" "$layers" "$rate" "$(stat -c %s "$file")" "$header" "$cold" "$backend" <<'PY'
import re, sys
log, layers, rate, store_bytes, header, cold, backend = open(sys.argv[1]).read(), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1", sys.argv[6] == "1", sys.argv[7]
get = lambda k: float(re.search(k + r": ([0-9.:]+)", log).group(1)) if ":" not in re.search(k + r": ([0-9.:]+)", log).group(1) else None
def wall():
    t = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([0-9:.]+)", log).group(1).split(":")
    return sum(float(x) * 60 ** i for i, x in enumerate(reversed(t)))
cpu = get("User time \\(seconds\\)") + get("System time \\(seconds\\)")
major, minor = get("Major \\(requiring I/O\\) page faults"), get("Minor \\(reclaiming a frame\\) page faults")
read = get("File system inputs") * 512
rss = get("Maximum resident set size \\(kbytes\\)") * 1024
facts = int(re.search(r"done: (\d+) cases", log).group(1))
w = wall()
stream = "streamed" if "stream through memory" in log else "resident"
if header:
    print("| layers | backend | store GB | facts | cache | weights | wall s/fact | CPU s/fact | read GB | read / disk rate s | page faults (major + minor) | peak RSS GB |")
    print("|---:|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|")
print(f"| {layers} | {backend} | {store_bytes / 1e9:.1f} | {facts} | {'cold' if cold else 'warm'} | {stream} | {w / facts:.2f} | {cpu / facts:.2f} | "
      f"{read / 1e9:.1f} | {read / rate:.0f} (disk {rate / 1e9:.2f} GB/s) | {major:.0f} + {minor:.0f} | {rss / 1e9:.2f} |")
print(f"wall {w:.1f} s, CPU {cpu:.1f} s for {facts} facts; log {sys.argv[1]}", file=sys.stderr)
PY
