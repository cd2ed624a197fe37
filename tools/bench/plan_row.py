#!/usr/bin/env python3
"""One markdown row of tools/bench/plan_vs_measured.sh: a run's log (with /usr/bin/time -v) against
`moetrace plan --from --format json` of the same config.
  plan_row.py NAME RANKS EP RUN.log PLAN.json RESULTS.h5"""
import json
import os
import re
import sys

name, ranks, ep, log_path, plan_path, results = sys.argv[1:7]
log = open(log_path, errors="replace").read()
plan = json.load(open(plan_path))
total = plan["total"]

def engine_work():
    all_ranks = re.search(r"engine work on all \d+ ranks [^:]*: (\d+) engine calls, (\d+) layer-token steps", log)
    one = re.search(r"engine work on this rank: (\d+) engine calls, (\d+) layer-token steps", log)
    m = one if int(ep) == int(ranks) or not all_ranks else all_ranks
    return (int(m[1]), int(m[2])) if m else (None, None)

calls, steps = engine_work()
rss_kb = max(int(x) for x in re.findall(r"Maximum resident set size \(kbytes\): (\d+)", log))
wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", log)
wall_s = (int(wall[1] or 0) * 3600 + int(wall[2]) * 60 + float(wall[3])) if wall else float("nan")
stage_s = sum(float(x) for x in re.findall(r"\[info\] [^\n]*: done, [^\n]* in ([\d.]+) s", log))
plan_rss = plan["memory"]["rank_total_bytes"] / 1e9
plan_results = plan["memory"]["results_file_bytes"] / 1e6
plan_s = plan.get("this_node", {}).get("seconds", total["seconds"])
groups = int(ranks) // int(ep)
note = "" if int(ranks) == 1 else (" (rank 0)" if groups == 1 else " (all ranks)")
print(f"| {name} | {ranks}, {ep} | {total['engine_calls']} / {calls}{note} | {total['layer_token_steps']} / {steps} | "
      f"{plan_rss:.3f} / {rss_kb * 1024 / 1e9:.3f} ({plan_rss / (rss_kb * 1024 / 1e9):.2f}x) | "
      f"{plan_results:.3f} / {os.path.getsize(results) / 1e6:.3f} | {plan_s:.1f} / {stage_s:.1f} | {wall_s:.1f} | "
      f"{plan_s / wall_s:.2f} |")
