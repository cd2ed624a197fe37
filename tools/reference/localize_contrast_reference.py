#!/usr/bin/python3
"""Independent reference for moetrace's router-contrast statistics (src/localize/localize_contrast.h),
written from the definitions in docs/localize.md ("Contrast statistics") in plain Python, not from
the C++ code. The sign-flip test is the one of tools/reference/stats_reference.py (Philox checked
against the Random123 vectors there), applied to the per-question differences; Student's t CDF
is a regularised incomplete beta function written here (no scipy).

It writes a JSON file of inputs (shuffled pairs, so the canonical order is exercised) and expected
outputs that tests/localize/test_localize_contrast_reference.cpp compares with the C++ results.

Usage: /usr/bin/python3 tools/reference/localize_contrast_reference.py --out contrast_reference.json
(needs numpy; Debian's python3-numpy)
"""
import argparse
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stats_reference  # noqa: E402  (Philox streams and the sign-flip test)


def seq_mean(v):
    s = 0.0
    for x in v:
        s += x
    return s / len(v)


# --- Student's t via the regularised incomplete beta function (continued fraction, Lentz) ---

def betacf(a, b, x):
    tiny, eps = 1e-300, 1e-16
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            return h
    raise RuntimeError("betacf did not converge")


def betainc(a, b, x):
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    lbt = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(lbt) * betacf(a, b, x) / a
    return 1.0 - math.exp(lbt) * betacf(b, a, 1.0 - x) / b


def t_two_sided_p(t, df):
    """P(|T| >= |t|) = I_{df/(df+t^2)}(df/2, 1/2)."""
    return betainc(df / 2.0, 0.5, df / (df + t * t))


# --- the tests, from the definitions ---

def mann_whitney(x, y):
    nx, ny = len(x), len(y)
    n = nx + ny
    pooled = sorted([(v, True) for v in x] + [(v, False) for v in y], key=lambda p: p[0])
    rank_sum, tie = 0.0, 0.0
    i = 0
    while i < n:
        j = i
        while j < n and pooled[j][0] == pooled[i][0]:
            j += 1
        mid = (i + 1 + j) / 2.0
        rank_sum += mid * sum(1 for k in range(i, j) if pooled[k][1])
        t = float(j - i)
        tie += t ** 3 - t
        i = j
    u = rank_sum - nx * (nx + 1) / 2.0
    effect = u / (nx * ny) - 0.5
    var = nx * ny / 12.0 * ((n + 1) - tie / (n * (n - 1))) if n > 1 else 0.0
    if not var > 0:
        return effect, 0.0, 0.0, 1.0
    dev = u - nx * ny / 2.0
    z = math.copysign(max(0.0, abs(dev) - 0.5), dev) / math.sqrt(var)
    return effect, z, 0.0, min(1.0, math.erfc(abs(z) / math.sqrt(2.0)))


def welch(x, y):
    mx, my = seq_mean(x), seq_mean(y)
    vx = sum((a - mx) ** 2 for a in x) / (len(x) - 1) / len(x)
    vy = sum((a - my) ** 2 for a in y) / (len(y) - 1) / len(y)
    effect = mx - my
    se2 = vx + vy
    if not se2 > 0:
        return effect, (0.0 if effect == 0 else math.copysign(math.inf, effect)), 0.0, (1.0 if effect == 0 else 0.0)
    t = effect / math.sqrt(se2)
    df = se2 * se2 / (vx * vx / (len(x) - 1) + vy * vy / (len(y) - 1))
    return effect, t, df, min(1.0, t_two_sided_p(t, df))


def bh(p):
    m = len(p)
    order = sorted(range(m), key=lambda i: (p[i], i))
    q = [0.0] * m
    running = 1.0
    for j in range(m - 1, -1, -1):
        running = min(running, m * p[order[j]] / (j + 1))
        q[order[j]] = running
    return q


def contrast(case):
    L, E = case["layers"], case["experts"]
    W = L * E
    pairs = sorted(case["pairs"], key=lambda p: (p["question"].encode(), p["language"].encode()))
    success = [p for p in pairs if p["success"]]
    failure = [p for p in pairs if not p["success"]]
    questions = []
    for p in pairs:
        if not questions or questions[-1][0] != p["question"]:
            questions.append((p["question"], [], []))
        questions[-1][1 if p["success"] else 2].append(p)
    mixed = [(s, f) for _, s, f in questions if s and f]
    out = []
    for k in range(W):
        e = {"mean_success": seq_mean([p["values"][k] for p in success]),
             "mean_failure": seq_mean([p["values"][k] for p in failure]), "df": 0.0, "p_exact": False}
        x = [p["values"][k] for p in success]
        y = [p["values"][k] for p in failure]
        if case["method"] == "paired_sign_flip":
            d = [seq_mean([p["values"][k] for p in s]) - seq_mean([p["values"][k] for p in f]) for s, f in mixed]
            e["effect"] = e["statistic"] = seq_mean(d)
            pval, exact = stats_reference.sign_flip(np.array(d, dtype=np.float64), case["seed"], case["flips"])
            e["p"], e["p_exact"] = float(pval), bool(exact)
        elif case["method"] == "mann_whitney":
            e["effect"], e["statistic"], e["df"], e["p"] = mann_whitney(x, y)
        else:
            e["effect"], e["statistic"], e["df"], e["p"] = welch(x, y)
        out.append(e)
    q = bh([e["p"] for e in out])
    for e, qv in zip(out, q):
        e["q"] = qv

    def score(k):
        eff = out[k]["effect"]
        return {"success_higher": eff, "failure_higher": -eff, "either": abs(eff)}[case["direction"]]

    def ranked(idx):
        return sorted(idx, key=lambda k: (-score(k), out[k]["p"], k))[:case["top_n"]]

    return {"n_success": len(success), "n_failure": len(failure), "n_questions": len(questions),
            "n_mixed_questions": len(mixed), "experts": out, "top_global": ranked(range(W)),
            "top_per_layer": [ranked(range(l * E, (l + 1) * E)) for l in range(L)]}


def make_case(name, rng, method, layers, experts, questions, languages, flips, seed, direction, top_n,
              round_to=None, planted=((1, 2, 0.15),), constant_expert=None):
    langs = ["en", "de", "fr", "ja", "sw", "zh-Hans", "pt-BR", "ar"][:languages]
    pairs = []
    for q in range(questions):
        qid = f"q{q:03d}"
        ability = rng.uniform(-1.5, 1.5)
        buckets = [rng.uniform() < 1 / (1 + math.exp(-(ability + rng.normal(0, 1)))) for _ in langs]
        if q % 3 == 0:  # make sure many questions are mixed
            buckets[0], buckets[-1] = True, False
        for lang, ok in zip(langs, buckets):
            v = rng.dirichlet(np.ones(experts), size=layers)  # routing probabilities per layer
            for (pl, pe, shift) in planted:
                if pl < layers and pe < experts and ok:
                    v[pl, pe] += shift
            if constant_expert is not None:
                v[constant_expert] = 0.25
            v = v.reshape(-1)
            if round_to is not None:
                v = np.round(v, round_to)
            pairs.append({"question": qid, "language": lang, "success": bool(ok), "values": [float(a) for a in v]})
    order = rng.permutation(len(pairs))
    pairs = [pairs[i] for i in order]
    case = {"name": name, "method": method, "layers": layers, "experts": experts, "flips": flips, "seed": seed,
            "direction": direction, "top_n": top_n, "pairs": pairs}
    case["expected"] = contrast(case)
    return case


def self_checks():
    stats_reference.check_kat()
    # t distribution: df = 1 is Cauchy, df = 2 has a closed form; large df tends to the normal.
    for t in (0.3, 1.0, 2.5, 7.0):
        cauchy = 1.0 - 2.0 * math.atan(t) / math.pi
        assert abs(t_two_sided_p(t, 1.0) - cauchy) <= 1e-13 * max(cauchy, 1e-300), (t, cauchy)
        two = 1.0 - t / math.sqrt(2.0 + t * t)
        assert abs(t_two_sided_p(t, 2.0) - two) <= 1e-12 * two, (t, two)
        normal = math.erfc(t / math.sqrt(2.0))
        assert abs(t_two_sided_p(t, 1e7) - normal) <= 1e-3 * normal, (t, normal)
    # BH by hand.
    q = bh([0.01, 0.04, 0.03, 0.2])
    assert all(abs(a - b) < 1e-15 for a, b in zip(q, [0.04, 0.16 / 3, 0.16 / 3, 0.2])), q


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    self_checks()
    rng = np.random.default_rng(20261201)
    cases = [
        make_case("paired random flips", rng, "paired_sign_flip", 3, 6, 24, 5, 3000, 0x1234abcd5678, "success_higher", 4),
        make_case("paired exact", rng, "paired_sign_flip", 2, 4, 9, 3, 4096, 7, "success_higher", 3),
        make_case("paired failure higher", rng, "paired_sign_flip", 2, 5, 18, 4, 1500, 2**63 + 11, "failure_higher", 2,
                  planted=((0, 1, -0.1),)),
        make_case("mann-whitney with ties", rng, "mann_whitney", 3, 5, 20, 6, 1, 0, "success_higher", 5, round_to=1,
                  constant_expert=(2, 0)),
        make_case("mann-whitney either", rng, "mann_whitney", 2, 6, 15, 4, 1, 0, "either", 3),
        make_case("welch", rng, "welch", 3, 6, 25, 5, 1, 0, "success_higher", 4, constant_expert=(0, 3)),
        make_case("welch either", rng, "welch", 2, 8, 12, 8, 1, 0, "either", 20),
    ]
    with open(args.out, "w") as f:
        json.dump({"cases": cases}, f)
    print(f"wrote {len(cases)} cases to {args.out}")


if __name__ == "__main__":
    main()
