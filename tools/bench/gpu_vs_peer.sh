#!/usr/bin/env bash
# One command for the GPU comparison of docs/cuda.md: the transformers peer and moetrace on the SAME
# random real-shaped model (Qwen3-30B-A3B and/or Mixtral-8x7B layer shapes, fewer layers, times
# scaled to full depth) and the same 16-token prompts, printed side by side, with the peer's own
# GEMM rate (512x2048x2048 bf16 torch.matmul on the device, TFLOP/s) beside them.
#
# The peer's GEMM floor (docs/benchmarks.md, "The peers' BLAS floor"): transformers_peer.py refuses
# (exit 2, the reason on stderr; this script then stops with 2) when that rate is below 0.05 x the
# device's dense bf16 peak (known devices: tools/bench/blas_probe.py); the summary also refuses a
# peer JSON without a passed check.
#
#   tools/bench/gpu_vs_peer.sh [--arch qwen3|mixtral|both] [--layers N] [--facts N] [--work DIR]
#                              [--bench PATH/moetrace_gpu_sweep_bench] [--backend cuda-bf16] [--keep]
#
# Needs a GPU, python3 with torch + transformers, and a CUDA build of moetrace (built here if
# --bench is not given: cmake -DMOETRACE_CUDA=ON into build-cuda). Writes <work>/<arch>.peer.json,
# <work>/<arch>.moetrace.json and <work>/summary.txt; the saved model folders are removed unless --keep.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
arch=both layers="" facts=8 work="${TMPDIR:-/tmp}/moetrace-gpu-vs-peer" bench="" backend=cuda-bf16 keep=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --arch) arch="$2"; shift 2 ;;
    --layers) layers="$2"; shift 2 ;;
    --facts) facts="$2"; shift 2 ;;
    --work) work="$2"; shift 2 ;;
    --bench) bench="$2"; shift 2 ;;
    --backend) backend="$2"; shift 2 ;;
    --keep) keep=1; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
mkdir -p "$work"
if [[ -z "$bench" ]]; then
  bench="$here/build-cuda/tools/bench/moetrace_gpu_sweep_bench"
  if [[ ! -x "$bench" ]]; then
    cmake -S "$here" -B "$here/build-cuda" -DMOETRACE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DMOETRACE_BUILD_TESTS=OFF >&2
    cmake --build "$here/build-cuda" -j"$(nproc)" --target moetrace_gpu_sweep_bench >&2
  fi
fi
archs=("$arch"); [[ "$arch" == both ]] && archs=(qwen3 mixtral)
export PYTHONUNBUFFERED=1
for a in "${archs[@]}"; do
  l="$layers"; [[ -z "$l" ]] && { [[ "$a" == qwen3 ]] && l=8 || l=4; }
  echo "== $a: peer (transformers), $l layers" >&2
  python3 "$here/tools/peer/transformers_peer.py" --arch "$a" --layers "$l" --facts "$facts" \
      --out "$work/$a-model" > "$work/$a.peer.json" \
    || { rc=$?; rm -f "$work/$a.peer.json"; echo "gpu_vs_peer.sh: the peer exited $rc (above); nothing compared" >&2; exit "$rc"; }
  echo "== $a: moetrace ($backend)" >&2
  "$bench" --model "$work/$a-model" --backend "$backend" --facts 64 > "$work/$a.moetrace.json"
  [[ $keep == 1 ]] || rm -rf "$work/$a-model"
done
python3 - "$work" "${archs[@]}" <<'PY' > "$work/summary.txt"
import json, sys
work, archs = sys.argv[1], sys.argv[2:]
peers = {a: json.load(open(f"{work}/{a}.peer.json")) for a in archs}
for a, p in peers.items():
    g = p.get("gemm")
    if not g or not g.get("accepted"):
        print(f"gpu_vs_peer.sh: refused: {work}/{a}.peer.json " + (f"failed the GEMM floor: {g['reason']}" if g else
              "has no GEMM floor check (made before the check existed)"), file=sys.stderr)
        sys.exit(2)
print(f"{'model':<8} {'sweep':<13} {'peer s/fact':>12} {'moetrace s/fact':>16} {'ratio':>8} {'TFLOP/s':>8} {'FLOP floor s':>13} "
      f"{'peer GEMM TFLOP/s':>18}")
for a in archs:
    p = peers[a]
    m = json.load(open(f"{work}/{a}.moetrace.json"))
    for sweep in ("layer_sweep", "expert_sweep"):
        if sweep not in p["per_fact_full_depth"]:
            continue
        ps = p["per_fact_full_depth"][sweep]
        ms = m["per_fact_full_depth"][sweep + "_s"]
        tf = m["measured"]["tflops_" + sweep]
        floor = m["per_fact_full_depth"][sweep + "_flop_floor_s"]
        print(f"{a:<8} {sweep:<13} {ps:>12.4f} {ms:>16.5f} {ps / ms:>7.1f}x {tf:>8.1f} {floor:>13.6f} "
              f"{p['gemm']['peer_tflops']:>18.1f}")
    print(f"  ({a}: {p['bench_layers']} bench layers scaled to {p['full_layers']}; peer on {p['device']}, "
          f"torch {p['torch']}, transformers {p['transformers']}; moetrace {m['backend']}, "
          f"{m['facts']} facts batched, weights {m['weight_bytes'] / 1e9:.1f} GB, "
          f"activation pool peak {m['activation_pool_peak_bytes'] / 1e9:.2f} GB; "
          f"clean contrast fact 0: peer {p['sample'].get('layer_sweep_contrasts_fact0', [float('nan')])[0]:.3f}, "
          f"moetrace {m['sample']['clean_contrast_fact0']:.3f})")
    g = p["gemm"]
    floor = f"floor {g['floor_tflops']:.1f} = {g['floor_fraction']:g} x peak {g['peak_tflops']:.0f}" if g["floor_tflops"] \
        else "no known peak, no floor"
    print(f"  ({a}: peer GEMM {g['peer_tflops']:.1f} TFLOP/s on {'x'.join(map(str, g['shape']))} bf16, "
          f"torch.matmul on {g['device']}; {floor})")
PY
cat "$work/summary.txt"
