#!/usr/bin/env bash
# One command for the CPU comparison of docs/benchmarks.md ("CPU backend against the PyTorch peer"):
# tools/peer/cpu_peer.py writes a random checkpoint with the real layer widths (Qwen3-30B-A3B: 2 layers;
# Mixtral-8x7B: 1 layer; bf16, real vocabulary) plus prompts.json and the noise, then times its
# ROME-style layer sweep and one-layer expert sweep (float32, one batch of L+2 / k+2 rows per fact);
# moetrace_gpu_sweep_bench runs the same sweeps on the same files on the CPU backend (`cpu`, then
# `cpu-bf16`), 64 facts driven as one batch by the bench. Prints per-fact times scaled to full depth,
# the ratios, the thread count and the peer's BLAS rate, checks that both sides' contrasts agree
# (<= 1e-5 relative, float32), records peak RSS and weights held, and writes the table into
# docs/benchmarks.md.
#
# The peer's BLAS floor (docs/benchmarks.md, "The peers' BLAS floor"): before anything else the script
# installs libopenblas0-pthread with apt-get if it is missing, puts its libblas.so.3 first on the peer's
# LD_LIBRARY_PATH and runs `cpu_peer.py blas-check`: the peer's own 512x2048x2048 float32 product
# (torch.matmul, --threads) must reach half of OpenBLAS's own kernel for this CPU (cblas_sgemm, same
# product and threads). Below that it refuses: exit 2, the reason on stderr, nothing measured, docs
# untouched. `cpu_peer.py run` repeats the check, and the summary refuses a peer JSON without a passed
# check (an old one kept by --reuse-peer). Every table printed and written shows the peer's GFLOP/s
# beside the OpenBLAS reference.
#
#   tools/bench/cpu_vs_peer.sh [--arch qwen3|mixtral|both] [--threads N] [--peer-facts N] [--repeats N]
#                              [--build DIR] [--work DIR] [--no-docs] [--keep] [--reuse-peer]
#                              [--peer-blas DIR] [--experts N]
# (--reuse-peer: keep an existing <work>/<arch>.peer.json, e.g. after changing only moetrace;
#  --peer-blas DIR: the folder whose libblas.so.3 the peer loads, default Debian's OpenBLAS
#  (/usr/lib/x86_64-linux-gnu/openblas-pthread); /usr/lib/x86_64-linux-gnu/blas puts it on the
#  reference BLAS, which the floor refuses;
#  --experts N: N experts per layer instead of the real model's, a quick check of the script
#  (not the benchmark: implies --no-docs))
#
# Needs Debian's python3-torch (apt-get install python3-torch; not a CI dependency) and a build of
# moetrace (build/ by default). Memory: about 2x the float32 model (~8 GB) at a time; the model
# folders are removed at the end unless --keep.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
arch=both threads="${OMP_NUM_THREADS:-1}" peer_facts=3 repeats=2 build="$here/build"
work="${TMPDIR:-/tmp}/moetrace-cpu-vs-peer" docs=1 keep=0 reuse_peer=0 peer_blas="" experts=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --arch) arch="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --peer-facts) peer_facts="$2"; shift 2 ;;
    --repeats) repeats="$2"; shift 2 ;;
    --build) build="$2"; shift 2 ;;
    --work) work="$2"; shift 2 ;;
    --no-docs) docs=0; shift ;;
    --keep) keep=1; shift ;;
    --reuse-peer) reuse_peer=1; shift ;;
    --peer-blas) peer_blas="$2"; shift 2 ;;
    --experts) experts="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ $experts == 0 ]] || { docs=0; echo "== --experts $experts: a check of the script, not the benchmark (docs untouched)" >&2; }
py=/usr/bin/python3  # Debian's python with python3-torch
mkdir -p "$work"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS="$threads" OPENBLAS_NUM_THREADS="$threads"
source "$here/tools/bench/peer_blas.sh"
peer_blas_setup "$peer_blas" "$threads" "$work/blas.json" \
  || { echo "cpu_vs_peer.sh: refused (the reason is above): nothing measured, docs/benchmarks.md untouched" >&2; exit 2; }
bench="$build/tools/bench/moetrace_gpu_sweep_bench"
[[ -x "$bench" ]] || cmake --build "$build" -j"$(nproc)" --target moetrace_gpu_sweep_bench >&2
archs=("$arch"); [[ "$arch" == both ]] && archs=(qwen3 mixtral)
rss() { sed -n 's/.*Maximum resident set size (kbytes): //p' "$1"; }
tags=()
for a in "${archs[@]}"; do
  l=2; [[ "$a" == mixtral ]] && l=1
  t="$a"; ex=(); [[ $experts == 0 ]] || { t="$a-e$experts"; ex=(--experts "$experts"); }
  tags+=("$t")
  model="$work/$t-model"
  echo "== $t: writing the random checkpoint ($l layers)" >&2
  [[ -f "$model/prompts.json" ]] || peer_py "$here/tools/peer/cpu_peer.py" write --arch "$a" --layers "$l" "${ex[@]}" --out "$model" >&2
  if [[ $reuse_peer == 1 && -s "$work/$t.peer.json" ]]; then
    echo "== $t: peer: reusing $work/$t.peer.json" >&2
  # a kept peer JSON counts only with a passed BLAS floor check (not one from before the check existed)
  "$py" -c 'import json, sys; b = json.load(open(sys.argv[1])).get("blas") or {}; sys.exit(0 if b.get("accepted") else 1)' \
      "$work/$t.peer.json" || { echo "cpu_vs_peer.sh: refused: $work/$t.peer.json has no passed BLAS floor check: run again without --reuse-peer" >&2; exit 2; }
  else
    echo "== $t: peer (torch, float32, $threads threads)" >&2
    peer_py "$here/tools/peer/cpu_peer.py" run --model "$model" --facts "$peer_facts" --threads "$threads" > "$work/$t.peer.json" \
      || { rc=$?; rm -f "$work/$t.peer.json"; echo "cpu_vs_peer.sh: the peer exited $rc (above); docs/benchmarks.md untouched" >&2; exit "$rc"; }
  fi
  for backend in cpu cpu-bf16; do
    echo "== $t: moetrace ($backend, $threads threads, 64 facts per batch)" >&2
    /usr/bin/time -v "$bench" --model "$model" --backend "$backend" --facts 64 --repeats "$repeats" \
        > "$work/$t.$backend.json" 2> "$work/$t.$backend.log" || { cat "$work/$t.$backend.log" >&2; exit 1; }
    grep -v "^\s" "$work/$t.$backend.log" | grep -v "Command being timed" >&2 || true
    # The load alone: read the checkpoint, upload the weights, exit (no activations, no records).
    /usr/bin/time -v "$bench" --model "$model" --backend "$backend" --load-only \
        > /dev/null 2> "$work/$t.$backend.load.log" || { cat "$work/$t.$backend.load.log" >&2; exit 1; }
    echo "{\"peak_rss_bytes\": $(( $(rss "$work/$t.$backend.log") * 1024 )), \"load_peak_rss_bytes\": $(( $(rss "$work/$t.$backend.load.log") * 1024 )), \"file_bytes\": $(stat -c %s "$model/model.safetensors")}" \
        > "$work/$t.$backend.mem.json"
  done
  [[ $keep == 1 ]] || rm -rf "$model"
done
"$py" - "$work" "$here/docs/benchmarks.md" "$docs" "${tags[@]}" <<'PY' > "$work/summary.md"
import json, sys, datetime
work, doc, write_doc, archs = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4:]
peers = {a: json.load(open(f"{work}/{a}.peer.json")) for a in archs}
for a, p in peers.items():  # a peer JSON without a passed floor check (e.g. kept by --reuse-peer) is no measurement
    b = p.get("blas")
    if not b or not b.get("accepted"):
        print(f"cpu_vs_peer.sh: refused: {work}/{a}.peer.json " + (f"failed the BLAS floor: {b['reason']}" if b else
              "has no BLAS floor check (made before the check existed): run again without --reuse-peer")
              + "; docs/benchmarks.md untouched", file=sys.stderr)
        sys.exit(2)


def blas_cell(b):
    """The peer's GFLOP/s on the floor product and OpenBLAS's own, both at the peer's threads."""
    return f"{b['peer_gflops']:.1f} ({b['reference']['gflops_best']:.1f})"


lines = []
out = lines.append
out("| model | sweep | peer (median / min) | moetrace `cpu` (median / min) | ratio | moetrace `cpu-bf16` (median / min) | ratio bf16 | peer BLAS GFLOP/s (OpenBLAS) |")
out("|---|---|---:|---:|---:|---:|---:|---:|")
notes, checks, mem = [], [], []
for a in archs:
    p = peers[a]
    m = {b: json.load(open(f"{work}/{a}.{b}.json")) for b in ("cpu", "cpu-bf16")}
    for sweep in ("layer_sweep", "expert_sweep"):
        if sweep not in p["per_fact_full_depth"]:
            continue
        # CPU seconds per fact at full depth (process CPU time, all threads), median and min
        ps, pmin = p["cpu_per_fact_full_depth"][sweep], p["cpu_per_fact_full_depth_min"][sweep]
        mf = m["cpu"]["per_fact_full_depth"]
        mb = m["cpu-bf16"]["per_fact_full_depth"]
        f_med, f_min = mf[sweep + "_cpu_s"], mf[sweep + "_cpu_s_min"]
        b_med, b_min = mb[sweep + "_cpu_s"], mb[sweep + "_cpu_s_min"]
        out(f"| {a} | {sweep.replace('_', ' ')} | {ps:.2f} / {pmin:.2f} | {f_med:.2f} / {f_min:.2f} | **{ps / f_med:.1f}x** "
            f"| {b_med:.2f} / {b_min:.2f} | {ps / b_med:.1f}x | {blas_cell(p['blas'])} |")
    # contrasts of fact 0: peer rows [clean, noised, restored...] against moetrace's sample (float32)
    s = m["cpu"]["sample"]
    pl = p["sample"]["layer_sweep_contrasts_fact0"]
    B = p["bench_layers"]
    pairs = [(pl[0], s["clean_contrast_fact0"]), (pl[1], s["noised_contrast_fact0"])]
    pairs += [(pl[2 + l], s["layer_sweep_contrasts_fact0"][l]) for l in range(B)]
    if "expert_sweep_contrasts_fact0" in p["sample"]:
        pe = p["sample"]["expert_sweep_contrasts_fact0"]
        pairs += [(pe[2 + j], s["expert_sweep_contrasts_fact0"][j]) for j in range(len(pe) - 2)]
    scale = max(abs(x) for x, _ in pairs)
    rel = max(abs(x - y) for x, y in pairs) / scale
    checks.append(f"{a}: {len(pairs)} contrasts of fact 0, max|peer - moetrace| / max|peer| = {rel:.2e} "
                  f"({'ok' if rel <= 1e-5 else 'ABOVE 1e-5'})")
    for b in ("cpu", "cpu-bf16"):
        mm = json.load(open(f"{work}/{a}.{b}.mem.json"))
        wb = m[b]["weight_bytes"]
        mem.append(f"| {a} | `{b}` | {mm['file_bytes'] / 1e9:.3f} | {wb / 1e9:.3f} | {wb / mm['file_bytes']:.3f} | "
                   f"{mm['load_peak_rss_bytes'] / 1e9:.3f} | {mm['load_peak_rss_bytes'] / wb:.3f} | "
                   f"{mm['peak_rss_bytes'] / 1e9:.3f} | {mm['peak_rss_bytes'] / wb:.3f} |")
    heads = ", ".join(f"{n.replace('_', ' ')} {v:.2f} s" for n, v in p.get("per_fact_lm_head", {}).items())
    bl = p["blas"]
    notes.append(f"{a}: {p['bench_layers']} bench layers scaled to {p['full_layers']} (peer's LM head, not scaled: {heads}); peer torch {p['torch']}, "
                 f"{p['threads']} threads, OpenBLAS core {p['openblas_core']} ({bl['openblas_threads']} threads), "
                 f"BLAS {bl['peer_gflops']:.1f} GFLOP/s on {'x'.join(map(str, bl['shape']))} float32 against OpenBLAS's "
                 f"own {bl['reference']['gflops_best']:.1f} (core {bl['reference']['core']}; floor {bl['floor_gflops']:.1f}), "
                 f"{p['facts']} timed facts; "
                 f"moetrace {m['cpu']['threads']} threads, {m['cpu']['facts']} facts in one batch, "
                 f"{m['cpu']['repeats']} repeats (median)")
out("")
out("CPU seconds per fact at full depth (process CPU time, both sides; ratio = peer median / moetrace median). "
    "Peer BLAS: the peer's own 512x2048x2048 float32 product (torch.matmul, its threads), best GFLOP/s, and in "
    "brackets OpenBLAS's own kernel for this CPU on the same product and threads; the peer must reach half of it.")
out("")
out("Contrast check (float32 on both sides, same checkpoint, prompts and noise):")
out("")
for c in checks:
    out(f"- {c}")
out("")
out("| model | mode | bf16 file GB | weights held GB | held / file | load alone: peak RSS GB | load / held | load + 64-fact sweeps: peak RSS GB | sweeps / held |")
out("|---|---|---:|---:|---:|---:|---:|---:|---:|")
lines += mem
out("")
for n in notes:
    out(f"- {n}")
text = "\n".join(lines)
if write_doc:
    begin, end = "<!-- cpu_vs_peer:begin -->", "<!-- cpu_vs_peer:end -->"
    d = open(doc).read()
    stamp = f"Measured {datetime.date.today().isoformat()} by `tools/bench/cpu_vs_peer.sh`:\n\n"
    if begin in d and end in d:
        d = d[:d.index(begin) + len(begin)] + "\n" + stamp + text + "\n" + d[d.index(end):]
        open(doc, "w").write(d)
print(text)
PY
cat "$work/summary.md"
