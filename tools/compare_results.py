#!/usr/bin/python3
"""Compares moetrace results files bit for bit, outside /provenance.

    python3 tools/compare_results.py REFERENCE.h5 OTHER.h5 [OTHER.h5 ...]

Every dataset's dtype, shape and bytes and every attribute (of the root and of every group and dataset)
outside /provenance must be identical to REFERENCE's. Prints one line per differing file and a summary;
exits 0 when all are identical, 1 otherwise, 2 on bad usage. Used by tools/bench/scaling.sh and the Slurm
integration test (tests/slurm), the proof that a result does not depend on ranks, restarts or jobs.
"""
import sys

import h5py
import numpy as np


def content(path):
    """Every dataset's bytes and every attribute outside /provenance, keyed by name."""
    items = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if name == "provenance" or name.startswith("provenance/"):
                return
            for k, v in obj.attrs.items():
                items[f"{name}@{k}"] = np.asarray(v).tobytes() if not isinstance(v, (str, bytes)) else v
            if isinstance(obj, h5py.Dataset):
                data = obj[()]
                if data.dtype.kind == "O":
                    items[name] = repr(data.tolist())
                else:
                    items[name] = (str(data.dtype), data.shape, np.ascontiguousarray(data).tobytes())
        for k, v in f.attrs.items():
            items[f"/@{k}"] = np.asarray(v).tobytes()
        f.visititems(visit)
    return items

if len(sys.argv) < 3:
    print(__doc__, file=sys.stderr)
    sys.exit(2)
ref = content(sys.argv[1])
bad = 0
for path in sys.argv[2:]:
    got = content(path)
    diff = sorted(k for k in set(ref) | set(got) if ref.get(k) != got.get(k))
    if diff:
        bad += 1
        print(f"DIFFERS: {path}: {len(diff)} item(s), e.g. {diff[:5]}")
print(f"results: {len(sys.argv) - 2} files, {len(ref)} datasets and attributes outside /provenance each; "
      + ("all bit-identical to the reference run" if not bad else f"{bad} file(s) differ from the reference run"))
sys.exit(1 if bad else 0)
