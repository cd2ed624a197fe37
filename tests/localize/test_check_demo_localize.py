#!/usr/bin/python3
"""tools/demo/check_demo_localize.py on hand-made results files in the layout of docs/localize.md:
a file that shows what the demo must show passes (exit 0); each way of not showing it fails (exit 1)
with the failing check named; a file without the layout's datasets is exit 2. (The real file comes
from `moetrace localize configs/demo_localize.toml`, run by tools/demo_localize.sh.)"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CHECKER = os.path.join(ROOT, "tools", "demo", "check_demo_localize.py")
E, P, V = 16, 600, 300
PLANTED = [[1, 2], [1, 10], [2, 10], [2, 12]]


def write(path, top=None, chosen_set=None, p_chosen=0.95, p_random=0.03, p_popular=0.05, diff_low=0.85,
          tamper_mean=0.0):
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        g = f.create_group("localize")
        g.attrs["experts"], g.attrs["layers"], g.attrs["top_k"] = np.int64(E), np.int64(4), np.int64(2)
        f["/localize/languages"] = np.array([b"qaa", b"qab"])
        top = top or [l * E + e for l, e in PLANTED] + [3 * E + 1]
        f["/localize/contrast/top_global"] = np.array(top, dtype=np.int32)
        f["/localize/contrast/effect"] = rng.random(4 * E)
        for k in ("n_success", "n_failure", "n_questions", "n_mixed_questions"):
            f["/localize/contrast"].attrs[k] = np.int64(10)
        asked = np.zeros((P, 5))
        asked[:, 0] = rng.random(P) < 0.5
        f["/localize/asked/outcome"] = asked
        val = np.sort(rng.choice(P, V, replace=False)).astype(np.int32)
        f["/localize/validation_pairs"] = val
        before = asked[val, 0] == 1

        def cond(name, experts, p):
            out = np.zeros((V, 5))
            out[:, 0] = asked[val, 0]
            out[before & (rng.random(V) < p), 0] = 0
            f[f"/localize/conditions/{name}/experts"] = np.array(experts, dtype=np.int32).reshape(-1)
            f[f"/localize/conditions/{name}/outcome"] = out
            return (out[before, 0] == 0).astype(float)

        ch = cond("chosen", chosen_set or PLANTED, p_chosen)
        po = cond("popular", [[0, 1], [0, 2], [3, 3], [3, 4]], p_popular)
        rs = np.mean([cond(f"random_{d}", [[1, 3], [1, 4], [2, 5], [2, 6]], p_random) for d in range(5)], 0)

        def summ(group, name, x, lo, hi, shift=0.0):
            s = f.create_group(f"{group}/{name}")
            s.attrs["n"] = np.int64(len(x))
            s.attrs["mean"] = float(np.mean(x)) + shift
            s.attrs["ci_low"], s.attrs["ci_high"] = float(lo), float(hi)
            s.attrs["frac_positive"], s.attrs["p_sign_flip"] = 0.5, 1.0

        summ("/localize/effect", "chosen", ch, 0.5, 1.0, tamper_mean)
        summ("/localize/effect", "popular", po, 0.0, 0.2)
        summ("/localize/effect", "random", rs, 0.0, 0.1)
        summ("/localize/effect", "chosen_minus_random", ch - rs, diff_low, 0.99)
        summ("/localize/effect", "chosen_minus_popular", ch - po, 0.8, 0.99)
        for n in (1, 4):
            summ("/localize/curve", f"n_{n}", ch, 0.5, 1.0)


def run(path, planted):
    r = subprocess.run([sys.executable, CHECKER, path, "--planted", planted], capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr


def main():
    ap = argparse.ArgumentParser()
    ap.parse_args()
    failures = 0
    with tempfile.TemporaryDirectory() as d:
        planted = os.path.join(d, "planted.json")
        with open(planted, "w") as fh:
            json.dump({"planted": PLANTED}, fh)
        cases = [
            ("good", {}, 0, "verdict: PASS"),
            ("a control expert ranked among the first four", {"top": [1 * E + 2, 3 * E + 4, 1 * E + 10, 2 * E + 10]},
             1, "FAIL  the contrast ranks"),
            ("another deactivated set", {"chosen_set": [[1, 2], [1, 10], [2, 10], [3, 4]]}, 1, "FAIL  the deactivated set"),
            ("small effect", {"p_chosen": 0.3}, 1, "FAIL  chosen turns more than"),
            ("random controls flip many", {"p_random": 0.4}, 1, "FAIL  random controls"),
            ("popular control flips many", {"p_popular": 0.4}, 1, "FAIL  popular control"),
            ("interval includes zero", {"diff_low": -0.01}, 1, "FAIL  the interval of chosen minus random"),
            ("summary disagrees with the rows", {"tamper_mean": 0.01}, 1, "FAIL  chosen share equals the outcome rows"),
        ]
        for name, kw, want, text in cases:
            path = os.path.join(d, "r.h5")
            write(path, **kw)
            rc, out = run(path, planted)
            ok = rc == want and text in out
            failures += not ok
            print(("ok   " if ok else "FAIL ") + f"{name}: exit {rc}" + ("" if ok else "\n" + out))
        empty = os.path.join(d, "empty.h5")
        h5py.File(empty, "w").close()
        rc, out = run(empty, planted)
        ok = rc == 2 and "not a complete localize results file" in out
        failures += not ok
        print(("ok   " if ok else "FAIL ") + f"file without the layout: exit {rc}" + ("" if ok else "\n" + out))
        rc, out = run(os.path.join(d, "missing.h5"), planted)
        ok = rc == 2
        failures += not ok
        print(("ok   " if ok else "FAIL ") + f"missing file: exit {rc}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
