#!/usr/bin/python3
"""Independent reference for moetrace's counter RNG (src/util/counter_rng.h) and held-out
statistics (src/protocols/statistics.h), written from the definitions in docs/statistics.md with
numpy, not from the C++ code.

It checks its own Philox4x32-10 against the Random123 known-answer vectors and its percentile
rule against numpy.percentile, then writes a JSON file of input vectors and expected outputs that
tests/protocols/test_statistics_reference.cpp reads and compares with the C++ results (1e-12).

Usage: /usr/bin/python3 tools/reference/stats_reference.py --out stats_reference.json
(needs numpy; Debian's python3-numpy)
"""
import argparse
import json
import math
import sys

import numpy as np

MASK32 = np.uint64(0xFFFFFFFF)
U32 = np.uint64(32)

# Random123 tests/kat_vectors (github.com/DEShawResearch/random123), the philox4x32 10 lines:
# counter (4 words), key (2 words), expected output (4 words).
KAT = [
    ([0x00000000] * 4, [0x00000000] * 2, [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]),
    ([0xFFFFFFFF] * 4, [0xFFFFFFFF] * 2, [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]),
    ([0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344], [0xA4093822, 0x299F31D0],
     [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1]),
]

BOOTSTRAP_TAG = int.from_bytes(b"bootstrp", "big")  # 0x626f6f7473747270
SIGNFLIP_TAG = int.from_bytes(b"signflip", "big")   # 0x7369676e666c6970


def philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Vectorised Philox4x32-10: c0..c3 arrays (uint64 holding 32-bit values), k0, k1 ints."""
    m0, m1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
    w0, w1 = 0x9E3779B9, 0xBB67AE85
    c = [np.asarray(x, dtype=np.uint64) for x in (c0, c1, c2, c3)]
    c = list(np.broadcast_arrays(*c))
    for rnd in range(10):
        if rnd:
            k0, k1 = (k0 + w0) & 0xFFFFFFFF, (k1 + w1) & 0xFFFFFFFF
        prod0 = m0 * c[0]  # < 2^64, no wrap
        prod1 = m1 * c[2]
        c = [(prod1 >> U32) ^ c[1] ^ np.uint64(k0), prod1 & MASK32,
             (prod0 >> U32) ^ c[3] ^ np.uint64(k1), prod0 & MASK32]
    return c


def stream_words(seed, case_id, samples, nwords):
    """Words W_0..W_{nwords-1} of the streams (seed, case_id, sample) for each sample: [S, nwords]."""
    samples = np.asarray(samples, dtype=np.uint64).reshape(-1, 1)
    nblocks = (nwords + 3) // 4
    blocks = np.arange(nblocks, dtype=np.uint64).reshape(1, -1)
    out = philox4x32_10(case_id & 0xFFFFFFFF, case_id >> 32, samples, blocks,
                        seed & 0xFFFFFFFF, seed >> 32)
    words = np.stack(out, axis=-1)  # [S, nblocks, 4]: word 4b + j = lane j of block b
    return words.reshape(samples.shape[0], nblocks * 4)[:, :nwords]


def uniforms(hi, lo):
    m = ((hi << U32) | lo) >> np.uint64(12)
    return (m.astype(np.float64) + 0.5) * 2.0 ** -52


def normals(seed, case_id, sample, count):
    """Z_0..Z_{count-1}: Box-Muller on each block (u1 from words 0,1; u2 from words 2,3)."""
    w = stream_words(seed, case_id, [sample], 4 * ((count + 1) // 2))[0].reshape(-1, 4)
    u1, u2 = uniforms(w[:, 0], w[:, 1]), uniforms(w[:, 2], w[:, 3])
    r = np.sqrt(-2.0 * np.log(u1))
    t = (2.0 * math.pi) * u2
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1).reshape(-1)[:count]


def seq_sum(a, axis=-1):
    """Sequential left-to-right sum (np.cumsum accumulates in order), like the C++ loops."""
    return np.cumsum(a, axis=axis).take(-1, axis=axis)


def percentile_type7(sorted_a, q):
    n = len(sorted_a)
    h = (n - 1) * q
    j = math.floor(h)
    if j + 1 >= n:
        return float(sorted_a[n - 1])
    g = h - j
    return float(sorted_a[j] + g * (sorted_a[j + 1] - sorted_a[j]))


def bootstrap_means(x, seed, B):
    n = len(x)
    w = stream_words(seed, BOOTSTRAP_TAG, np.arange(B), n)  # [B, n]
    idx = ((w * np.uint64(n)) >> U32).astype(np.int64)
    return seq_sum(x[idx], axis=1) / n


def sign_flip(x, seed, F):
    n = len(x)
    thr = abs(seq_sum(x)) - 1e-12 * seq_sum(np.abs(x))
    if 2 ** n <= F:
        k = np.arange(2 ** n, dtype=np.int64).reshape(-1, 1)
        neg = ((k >> np.arange(n, dtype=np.int64)) & 1).astype(bool)
        s = seq_sum(np.where(neg, -x, x), axis=1)
        count = int(np.sum(np.abs(s) >= thr))
        return count / 2 ** n, True
    w = stream_words(seed, SIGNFLIP_TAG, np.arange(F), n)
    neg = (w >> np.uint64(31)).astype(bool)
    s = seq_sum(np.where(neg, -x, x), axis=1)
    count = int(np.sum(np.abs(s) >= thr))
    return (1 + count) / (F + 1), False


def summarize(x, seed, B, F):
    x = np.asarray(x, dtype=np.float64)
    means = np.sort(bootstrap_means(x, seed, B))
    lo, hi = percentile_type7(means, 0.025), percentile_type7(means, 0.975)
    # Our percentile rule is numpy's default ("linear"); numpy may differ in the last bit.
    for q, v in ((2.5, lo), (97.5, hi)):
        ref = float(np.percentile(means, q))
        assert abs(ref - v) <= 1e-12 * max(1.0, abs(ref)), (ref, v)
    p, exact = sign_flip(x, seed, F)
    return {"n": len(x), "mean": float(seq_sum(x) / len(x)), "ci_low": lo, "ci_high": hi,
            "frac_positive": float(np.mean(x > 0)), "p_sign_flip": p, "p_exact": exact}


def check_kat():
    for ctr, key, want in KAT:
        got = philox4x32_10(*[np.uint64(v) for v in ctr], key[0], key[1])
        got = [int(v) for v in got]
        if got != want:
            sys.exit(f"Philox KAT failed: ctr={ctr} key={key} got={[hex(g) for g in got]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    check_kat()

    gen = np.random.default_rng(20240601)  # only makes the input vectors; they go into the JSON
    vectors = [
        ("hand5_exact", [0.3, -0.1, 0.25, 0.05, 0.4], 1, 5000, 10000),
        ("normal13_exact", list(gen.normal(0.2, 1.0, 13)), 7, 5000, 10000),
        ("normal14_random", list(gen.normal(0.2, 1.0, 14)), 7, 5000, 10000),
        ("shift40_bigseed", list(gen.normal(0.5, 2.0, 40)), (1 << 63) + 5, 5000, 10000),
        ("heavy200", list(gen.standard_t(2.0, 200)), 0xDEADBEEFCAFEF00D, 2000, 3000),
        ("single", [1.5], 3, 1000, 1000),
        ("with_zeros", [0.0, 0.0, 1.0, -1.0, 2.0, 0.0, -0.5, 0.0, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0,
                        -2.0], 11, 777, 999),
        ("tiny_F", [1.0, 2.0, 3.0], 5, 10, 4),
        ("all_zero", [0.0] * 20, 9, 100, 200),
    ]
    cases = []
    for name, vals, seed, B, F in vectors:
        vals = [float(v) for v in vals]
        cases.append({"name": name, "values": vals, "seed": str(seed), "resamples": B, "flips": F,
                      "expected": summarize(vals, seed, B, F)})

    rng = []
    for seed, case_id, sample in [(0, 0, 0), (12345, 42, 3), ((1 << 64) - 1, (1 << 64) - 1, 0xFFFFFFFF),
                                  (0x0123456789ABCDEF, 0xFEDCBA9876543210, 17)]:
        words = stream_words(seed, case_id, [sample], 12)[0]
        uni = uniforms(words[0::2], words[1::2])
        rng.append({"seed": str(seed), "case_id": str(case_id), "sample": sample,
                    "u32": [int(v) for v in words], "uniform": [float(v) for v in uni],
                    "normal": [float(v) for v in normals(seed, case_id, sample, 9)]})

    with open(args.out, "w") as f:
        json.dump({"generator": "tools/reference/stats_reference.py", "cases": cases, "rng": rng}, f,
                  indent=1)
    print(f"wrote {len(cases)} statistics cases and {len(rng)} RNG streams to {args.out}")


if __name__ == "__main__":
    main()
