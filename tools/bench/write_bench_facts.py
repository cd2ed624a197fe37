#!/usr/bin/python3
"""Synthetic English facts in CounterFact format and the run config of the end-to-end benchmarks
(tools/bench/run_vs_peer.sh, tools/bench/store_run.sh).

    write_bench_facts.py WORK MODEL BACKEND FACTS [WEIGHT_STORE]

Writes WORK/counterfact.json (FACTS facts: 4 templates of ~16 words, two-word invented subjects, at
most 64 distinct), WORK/case_ids.json (the first half discovery, the second validation, fixed so that a
random model's filter keeps them all) and WORK/run.toml (every stage but heat maps and robustness
grids; [model] weight_store when WEIGHT_STORE is given).
"""
import json
import sys

work, model, backend, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
store = sys.argv[5] if len(sys.argv) > 5 else ""
first = ["Marlowe", "Teodora", "Ignatius", "Wilhelmina", "Bartholomew", "Constance", "Leopold", "Rosalind"]
last = ["Featherstone", "Castellanos", "Abernathy", "Thistlewood", "Pemberton", "Okonkwo", "Lindqvist", "Ravensworth"]
cities = [" Paris", " Lisbon", " Vienna", " Oslo", " Prague", " Dublin", " Madrid", " Athens"]
templates = ["According to the old family records kept in the archive, {} was born in the city of",
             "The newspaper obituary published last spring reported that {} had spent most of a long life in",
             "Official documents from the ministry state that the main office of {} is located in",
             "Historians who studied the letters agree that the early career of {} began in"]
if not 2 <= n <= len(first) * len(last):
    sys.exit(f"write_bench_facts.py: FACTS must be 2 .. {len(first) * len(last)}")
facts = []
for i in range(n):
    subject = f"{first[i % 8]} {last[(i // 8) % 8]}"
    facts.append({"case_id": i, "requested_rewrite": {
        "prompt": templates[i % 4], "relation_id": f"P{19 + i % 4}", "subject": subject,
        "target_true": {"str": cities[i % 8].strip(), "id": f"Q{i}"},
        "target_new": {"str": cities[(i + 3) % 8].strip(), "id": f"Q{100 + i}"}},
        "paraphrase_prompts": [], "neighborhood_prompts": [], "attribute_prompts": [], "generation_prompts": []})
json.dump(facts, open(f"{work}/counterfact.json", "w"), indent=1)
json.dump({"bench": {"discovery": list(range(n // 2)), "validation": list(range(n // 2, n))}},
          open(f"{work}/case_ids.json", "w"))
store_line = f'weight_store = "{store}"\n' if store else ""
open(f"{work}/run.toml", "w").write(f'''[model]
path = "{model}"
backend = "{backend}"
{store_line}[data]
counterfact = "{work}/counterfact.json"
case_ids = "{work}/case_ids.json"
case_ids_key = "bench"
object_rule = "bare_then_space"
add_bos = false
[cases]
n = {n}
filter = "strict"
[noise]
sigma_rule = "embedding_std"
multiplier = 3.0
samples = 1
[layer_sweep]
site = "moe"
positions = "final"
window = 1
[experts]
mode = "selected_layer"
candidate_threshold = 0.5
sampled_controls = 3
[coalitions]
sets = ["clean_topk", "union"]
[run]
batch_rows = 4096
progress_every_s = 30
''')
