#!/usr/bin/python3
"""Check a `moetrace localize` results file of the multilingual demo (configs/demo_localize.toml).

Reads the file by the layout of docs/localize.md (src/results/localize_layout.h) with h5py, and the
planted knowledge experts from demo/localize/planted.json (written by
tools/demo/train_localize_demo.py), and checks what the demo is meant to show:

  1. the contrast ranks the planted experts first (top_global), and the deactivated set
     (/localize/conditions/chosen/experts) is the planted set;
  2. deactivating them turns most previously correct validation pairs wrong (> --min-effect);
  3. the random layer-matched and popular-expert controls turn few wrong (< --max-control);
  4. the bootstrap interval of chosen minus random (and minus popular) excludes zero.

The shares are recomputed from the per-pair outcome matrices (asked vs. each condition over the
validation pairs) and compared with the file's summary records, so a summary that disagrees with
the rows it summarises fails too. Prints a short verdict; exit 0 when every check passes, 1 when
one fails, 2 when the file lacks what the layout promises.

  /usr/bin/python3 tools/demo/check_demo_localize.py results/demo_localize.h5
"""
import argparse
import json
import os
import sys

import h5py
import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUCKET = 0  # outcome column: 1 success, 0 failure


def text(x):
    return x.decode("utf-8") if isinstance(x, bytes) else str(x)


def summary(f, group, name):
    g = f[f"{group}/{name}"]
    return {k: (int(g.attrs[k]) if k == "n" else float(g.attrs[k]))
            for k in ("n", "mean", "ci_low", "ci_high", "frac_positive", "p_sign_flip")}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="?", default=os.path.join(ROOT, "results", "demo_localize.h5"))
    ap.add_argument("--planted", default=os.path.join(ROOT, "demo", "localize", "planted.json"))
    ap.add_argument("--min-effect", type=float, default=0.5)
    ap.add_argument("--max-control", type=float, default=0.15)
    args = ap.parse_args()

    with open(args.planted) as fh:
        planted = {tuple(p) for p in json.load(fh)["planted"]}
    failures = []

    def check(ok, what):
        print(("  ok    " if ok else "  FAIL  ") + what)
        if not ok:
            failures.append(what)

    try:
        f = h5py.File(args.results, "r")
    except OSError as e:
        print(f"{args.results}: cannot open: {e}", file=sys.stderr)
        return 2
    with f:
        try:
            root = f["/localize"]
            E = int(root.attrs["experts"])
            top = [divmod(int(i), E) for i in f["/localize/contrast/top_global"][()]]
            chosen_pairs = f["/localize/conditions/chosen/experts"][()].reshape(-1, 2)
            chosen = {(int(l), int(e)) for l, e in chosen_pairs}
            effect_field = f["/localize/contrast/effect"][()]
            asked = f["/localize/asked/outcome"][()]
            validation = f["/localize/validation_pairs"][()].astype(np.int64)
            languages = [text(x) for x in f["/localize/languages"][()]]
            conditions = list(f["/localize/conditions"].keys())
            n_random = len([c for c in conditions if c.startswith("random_")])
            after = {c: f[f"/localize/conditions/{c}/outcome"][()] for c in ["chosen", "popular"] +
                     [f"random_{d}" for d in range(n_random)]}
            popular = {(int(l), int(e)) for l, e in f["/localize/conditions/popular/experts"][()].reshape(-1, 2)}
            eff = {name: summary(f, "/localize/effect", name)
                   for name in ("chosen", "popular", "random", "chosen_minus_random", "chosen_minus_popular")}
            curve = {}
            if "/localize/curve" in f:
                for name in f["/localize/curve"].keys():
                    curve[int(name[2:])] = summary(f, "/localize/curve", name)
            unrelated = summary(f, "/localize/effect", "unrelated_turned_wrong") \
                if "/localize/effect/unrelated_turned_wrong" in f else None
            contrast_attrs = {k: int(f["/localize/contrast"].attrs[k]) for k in ("n_success", "n_failure",
                                                                                  "n_mixed_questions")}
        except (KeyError, ValueError) as e:
            print(f"{args.results}: not a complete localize results file: {e}", file=sys.stderr)
            return 2

    before = asked[validation, BUCKET] == 1
    n_correct = int(before.sum())

    def turned_wrong(cond):
        return (after[cond][before, BUCKET] == 0).astype(float)

    chosen_tw = turned_wrong("chosen")
    popular_tw = turned_wrong("popular")
    random_tw = np.mean([turned_wrong(f"random_{d}") for d in range(n_random)], axis=0) if n_random else None

    k = len(planted)
    print(f"demo localisation: {len(asked)} pairs in {len(languages)} languages; discovery contrast on "
          f"{contrast_attrs['n_success']} correct / {contrast_attrs['n_failure']} wrong pairs "
          f"({contrast_attrs['n_mixed_questions']} mixed questions)")
    print(f"  planted experts (layer, expert): {sorted(planted)}")
    print(f"  contrast top {k + 2}: " + ", ".join(f"({l}, {e}) {effect_field[l * E + e]:+.3f}" for l, e in top[:k + 2]))
    print(f"  popular-expert control: {sorted(popular)}; {n_random} random layer-matched draws")
    print(f"  validation: {n_correct} pairs correct before deactivation")
    print(f"  turned wrong: chosen {eff['chosen']['mean']:.3f} [{eff['chosen']['ci_low']:.3f}, "
          f"{eff['chosen']['ci_high']:.3f}], random {eff['random']['mean']:.3f}, popular {eff['popular']['mean']:.3f}")
    for name in ("chosen_minus_random", "chosen_minus_popular"):
        s = eff[name]
        print(f"  {name}: {s['mean']:+.3f} [{s['ci_low']:+.3f}, {s['ci_high']:+.3f}]")
    if curve:
        print("  effect vs N: " + ", ".join(f"N={n}: {curve[n]['mean']:.3f}" for n in sorted(curve)))
    if unrelated is not None:
        print(f"  unrelated (counting) questions turned wrong: {unrelated['mean']:.3f} of {unrelated['n']}")

    check(set(top[:k]) == planted, f"the contrast ranks the {k} planted experts first")
    check(chosen == planted, "the deactivated set is the planted set")
    check(n_correct > 0 and eff["chosen"]["n"] == n_correct, "summary n = previously correct validation pairs")
    if n_correct:
        check(abs(chosen_tw.mean() - eff["chosen"]["mean"]) < 1e-12, "chosen share equals the outcome rows")
        check(abs(popular_tw.mean() - eff["popular"]["mean"]) < 1e-12, "popular share equals the outcome rows")
        if random_tw is not None:
            check(abs(random_tw.mean() - eff["random"]["mean"]) < 1e-12, "random share equals the outcome rows")
    check(eff["chosen"]["mean"] > args.min_effect, f"chosen turns more than {args.min_effect} wrong")
    check(eff["random"]["mean"] < args.max_control, f"random controls turn less than {args.max_control} wrong")
    check(eff["popular"]["mean"] < args.max_control, f"popular control turns less than {args.max_control} wrong")
    check(eff["chosen_minus_random"]["ci_low"] > 0, "the interval of chosen minus random excludes zero")
    check(eff["chosen_minus_popular"]["ci_low"] > 0, "the interval of chosen minus popular excludes zero")
    print("verdict: " + ("PASS, the planted experts are found and their deactivation is specific"
                         if not failures else f"FAIL ({len(failures)} checks)"))
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
