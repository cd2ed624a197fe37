#!/usr/bin/env python3
"""Mutation fuzzing of every input `moetrace` reads, through the real CLI (issue 12).

Each target input (safetensors header and data, config.json, tokenizer.json, a CounterFact file,
a run config, a fixture file given to `replay`, a results file given to `report` and
`run --resume`, a `localize` config and question file, a checkpoint journal given to `run --resume`,
a results file cut short, weights that overflow float32, `report` writing to /dev/full) is mutated with a fixed seed: random byte flips, truncations and insertions, and
targeted mutations (huge or negative integers, NaN, wrong types, duplicate keys, overlapping
safetensors offsets, damaged HDF5 chunks). Every mutant is run with a timeout and an address-space
limit, and must end with

  exit 0  and sane results (finite where they must be; a resumed results file equal to the
          undamaged run's), or
  exit 2  with a message naming the mutated file;

never exit 3 (internal error), a signal, a timeout or an allocation beyond the limit.

Usage: mutate_inputs.py --moetrace BIN --source REPO --fixtures DIR [--seed N] [--scale F] [--only T1,T2]
Prints one line per failing mutant and a summary; exits 1 if any mutant failed.
"""
import argparse
import concurrent.futures
import json
import os
import random
import re
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib

import h5py
import numpy as np

MEMORY_LIMIT = 2 << 30  # bytes of address space per moetrace process
TIMEOUT_S = 30

BIG_NUMBERS = ["4294967346", "2147483648", "4294967304", "-7", "-2147483649", "1099511627776",
               "9223372036854775807", "18446744073709551615", "1e400", "-1e400", "nan", "inf", "-inf",
               "1.5", "0", "-1", "9" * 400, "1e-400", "0.0"]
WRONG_TYPES = ['"yes"', "[]", "{}", "true", "null", '"' + "x" * 5000 + '"', "[1, 2]"]


def limit_resources():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


class Runner:
    def __init__(self, binary):
        self.binary = binary
        self.env = dict(os.environ, OMP_NUM_THREADS="1", OMPI_MCA_mpi_yield_when_idle="1",
                        OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")

    def __call__(self, args):
        try:
            p = subprocess.run([self.binary, "--log-level", "warn"] + args, capture_output=True,
                               timeout=TIMEOUT_S, preexec_fn=limit_resources, env=self.env)
            return p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace")
        except subprocess.TimeoutExpired as e:
            return "timeout", ((e.stdout or b"") + (e.stderr or b"")).decode("utf-8", "replace")


# ---- generic mutators -------------------------------------------------------------------------

def byte_mutation(rng, data, lo=0, hi=None):
    """A random flip, truncation, insertion or overwrite inside data[lo:hi]."""
    data = bytearray(data)
    hi = len(data) if hi is None else hi
    pos = rng.randrange(lo, max(lo + 1, hi))
    kind = rng.choice(["flip", "flip", "truncate", "insert", "overwrite"])
    if kind == "flip":
        for _ in range(rng.randint(1, 8)):
            p = rng.randrange(lo, max(lo + 1, hi))
            if p < len(data):
                data[p] ^= 1 << rng.randrange(8)
    elif kind == "truncate":
        del data[pos:]
    elif kind == "insert":
        data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    else:
        n = rng.randint(1, 16)
        data[pos:pos + n] = bytes(rng.randrange(256) for _ in range(n))
    return bytes(data), kind


NUMBER = re.compile(rb"(?<![\w.])-?\d+(\.\d+)?([eE][-+]?\d+)?(?![\w.])")
STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')


def text_mutation(rng, text, numbers=True):
    """Targeted: a number becomes an extreme, a value the wrong type, a key duplicated or dropped."""
    kind = rng.choice(["number", "number", "type", "duplicate", "delete", "string"])
    if kind == "number" and numbers:
        spans = [m.span() for m in NUMBER.finditer(text)]
        if spans:
            a, b = rng.choice(spans)
            return text[:a] + rng.choice(BIG_NUMBERS).encode() + text[b:], "number"
    if kind == "type":
        spans = [m.span() for m in NUMBER.finditer(text)] + [m.span() for m in STRING.finditer(text)]
        if spans:
            a, b = rng.choice(spans)
            return text[:a] + rng.choice(WRONG_TYPES).encode() + text[b:], "type"
    if kind == "string":
        spans = [m.span() for m in STRING.finditer(text)]
        if spans:
            a, b = rng.choice(spans)
            value = rng.choice(['""', '"' + "\u00e9" * 20000 + '"', '"{}"', '"\\u0000"', '"\\ud800"'])
            return text[:a] + value.encode() + text[b:], "string"
    lines = text.split(b"\n")
    if kind == "duplicate" and len(lines) > 1:
        i = rng.randrange(len(lines))
        lines.insert(i, lines[i])
        return b"\n".join(lines), "duplicate-line"
    if len(lines) > 1:
        del lines[rng.randrange(len(lines))]
        return b"\n".join(lines), "delete-line"
    return byte_mutation(rng, text)


# ---- safetensors ------------------------------------------------------------------------------

def safetensors_mutation(rng, data):
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    names = [k for k in header if k != "__metadata__"]
    kind = rng.choice(["length", "offsets", "shape", "dtype", "duplicate", "header-bytes", "data-bytes",
                       "nan", "text"])
    if kind == "length":
        new_n = rng.choice([0, 7, n - 1, n - 8, n + 1, len(data), 1 << 40, (1 << 64) - 1])
        return struct.pack("<Q", new_n) + data[8:], "length-prefix"
    if kind == "data-bytes":
        out, k = byte_mutation(rng, data, 8 + n, len(data))
        return out, "data-" + k
    if kind == "header-bytes":
        out, k = byte_mutation(rng, data, 8, 8 + n)
        return out, "header-" + k
    if kind == "nan":
        body = bytearray(body)
        pos = rng.randrange(0, len(body) // 2) * 2
        body[pos:pos + 2] = rng.choice([b"\xc0\x7f", b"\x80\x7f", b"\x80\xff"])  # bf16 NaN, +Inf, -Inf
        return data[:8 + n] + bytes(body), "nan-weight"
    name = rng.choice(names)
    t = header[name]
    if kind == "offsets":
        a, b = t["data_offsets"]
        other = header[rng.choice(names)]["data_offsets"]
        t["data_offsets"] = rng.choice([[a + 2, b + 2], [a, b + 2], other, [b, a], [a, a], [0, b - a],
                                        [a, len(body) + 64], [a, 1 << 62]])
    elif kind == "shape":
        t["shape"] = rng.choice([[1 << 62, 2], [-1, 4], [0], [1 << 31, 1 << 31], t["shape"][::-1] + [1], [3]])
    elif kind == "dtype":
        t["dtype"] = rng.choice(["F64", "I8", "XX", "", 7])
    elif kind == "duplicate":
        text = json.dumps(header)
        entry = json.dumps({name: header[rng.choice(names)]})[1:-1]
        text = "{" + entry + ", " + text[1:]
        hb = text.encode()
        return struct.pack("<Q", len(hb)) + hb + body, "duplicate-name"
    else:
        text, k = text_mutation(rng, data[8:8 + n])
        return struct.pack("<Q", len(text)) + text + body, "header-" + k
    hb = json.dumps(header).encode()
    hb += b" " * (-len(hb) % 8)
    return struct.pack("<Q", len(hb)) + hb + body, kind


# ---- HDF5 files -------------------------------------------------------------------------------

def hdf5_mutation(rng, data, path_for_offsets, datasets, groups):
    """Random byte damage, or a few bytes overwritten inside a dataset's data / a group's header."""
    kind = rng.choice(["bytes", "dataset", "dataset", "group"])
    if kind == "bytes":
        return byte_mutation(rng, data)
    with h5py.File(path_for_offsets, "r") as f:
        if kind == "group" and groups:
            name = rng.choice(groups)
            addr = h5py.h5o.get_info(f[name].id).addr
            span = (addr, addr + 64)
        else:
            name = rng.choice(datasets)
            ds = f[name]
            if ds.chunks:
                info = ds.id.get_chunk_info(rng.randrange(ds.id.get_num_chunks()))
                span = (info.byte_offset, info.byte_offset + info.size)
            else:
                off = ds.id.get_offset()
                if off is None:
                    return byte_mutation(rng, data)
                span = (off, off + ds.id.get_storage_size())
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        p = rng.randrange(span[0], max(span[0] + 1, span[1]))
        if p < len(data):
            data[p] = (data[p] + rng.randrange(1, 256)) % 256
    return bytes(data), f"{kind}:{name}"


def datasets_of(path):
    out = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: out.append(n) if isinstance(o, h5py.Dataset) and o.size > 0 else None)
    return out


def groups_of(path):
    out = ["/"]
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: out.append(n) if isinstance(o, h5py.Group) else None)
    return out


def read_all(path):
    values = {}
    with h5py.File(path, "r") as f:
        def visit(name, o):
            if isinstance(o, h5py.Dataset) and not name.startswith("provenance"):
                values[name] = o[()]
        f.visititems(visit)
    return values


def same_values(a, b):
    if a.keys() != b.keys():
        return sorted(set(a) ^ set(b))
    bad = []
    for k in a:
        x, y = np.asarray(a[k]), np.asarray(b[k])
        if x.shape != y.shape:
            bad.append(k)
        elif x.dtype.kind == "f":
            if not np.array_equal(x, y, equal_nan=True):
                bad.append(k)
        elif not np.array_equal(x, y):
            bad.append(k)
    return bad


# ---- the workload -----------------------------------------------------------------------------

class Workload:
    def __init__(self, args, work):
        self.work = work
        self.run = Runner(args.moetrace)
        src, fix = args.source, args.fixtures
        # A small CounterFact file: the first demo records (enough for a discovery and a validation split).
        records = json.load(open(os.path.join(src, "demo", "counterfact_demo.json")))[:10]
        self.counterfact = os.path.join(work, "cf.json")
        json.dump(records, open(self.counterfact, "w"), indent=1)
        self.demo_model = os.path.join(src, "demo", "model")
        self.config_text = (
            f'[model]\npath = "{self.demo_model}"\n[data]\ncounterfact = "{self.counterfact}"\n'
            'object_rule = "leading_space"\n[cases]\nn = 0\nsplit_seed = 0\n[noise]\nmultiplier = 3.0\n'
            'samples = 1\n[experts]\ncandidate_threshold = 0.5\nsampled_controls = 1\n'
            '[statistics]\nbootstrap = 100\nsign_flips = 100\n[heatmap]\ncases = 0\n'
            '[run]\ncheckpoint_every_s = 0\nprogress_every_s = 60\nbatch_rows = 64\n')
        self.config = os.path.join(work, "run.toml")
        open(self.config, "w").write(self.config_text)
        self.strings = os.path.join(work, "strings.json")
        json.dump(["The official language of France is", " Paris", "", "\u00e9\u4e2d\U0001F600 x"],
                  open(self.strings, "w"))
        # Localisation: the multilingual demo model, its first 16 questions, a small protocol.
        lines = open(os.path.join(src, "demo", "localize", "questions.jsonl"), "rb").read().split(b"\n")
        self.questions = os.path.join(work, "questions.jsonl")
        open(self.questions, "wb").write(b"\n".join(lines[:17]) + b"\n")
        self.localize_text = (
            f'[model]\npath = "{os.path.join(src, "demo", "localize", "model")}"\n'
            f'[data]\nquestions = "{self.questions}"\nlanguages = ["qaa", "qab", "qac"]\n'
            '[templates]\ndefault = "{question}"\n'
            '[ask]\nmax_new_tokens = 3\nprompts_per_call = 16\nmatch = "prefix"\nbucket = "generation"\n'
            'logprob_threshold = -0.7\n'
            '[contrast]\nstatistic = "prob_mean"\ntop_n = 2\nsign_flips = 100\nseed = 0\n'
            '[deactivation]\ncontrol_draws = 2\ncurve_n = [1, 2]\nbootstrap = 100\n'
            '[run]\nchunk_tokens = 256\ncheckpoint_every_s = 0\nprogress_every_s = 60\n')
        self.localize_config = os.path.join(work, "localize.toml")
        open(self.localize_config, "w").write(self.localize_text)
        # Replay: the Qwen3-MoE tiny fixture's model and the inputs of two facts.
        self.tiny_model = os.path.join(fix, "qwen3moe-tiny")
        self.fixture_in = os.path.join(work, "replay_in.h5")
        with h5py.File(os.path.join(fix, "qwen3moe-tiny.golden.h5"), "r") as g, h5py.File(self.fixture_in, "w") as o:
            for k, v in g.attrs.items():
                o.attrs[k] = v
            for fact in ["0", "1"]:
                src_g, dst = g["facts/" + fact], o.create_group("facts/" + fact)
                for k, v in src_g.attrs.items():
                    dst.attrs[k] = v
                for name in ["ids", "subject", "noise", "deactivate/experts"]:
                    if name in src_g:
                        dst.create_dataset(name, data=src_g[name][()])
        # The reference results file, written by the real CLI.
        self.results = os.path.join(work, "reference.h5")
        rc, out = self.run(["run", self.config, "--out", self.results])
        if rc != 0:
            sys.exit(f"the unmutated workload failed (exit {rc}):\n{out}")
        self.reference = read_all(self.results)
        self.results_datasets = datasets_of(self.results)
        self.results_groups = groups_of(self.results)
        self.fixture_datasets = datasets_of(self.fixture_in)
        self.fixture_groups = groups_of(self.fixture_in)

    # Each check returns None when the mutant's outcome is acceptable, else a description.
    def expect(self, rc, out, names, sane=None):
        if rc == 0:
            return sane() if sane else None
        if rc == 2:
            if any(n in out for n in names):
                return None
            return f"exit 2 without naming {names[0]}: {out.strip()[-600:]}"
        return f"exit {rc}: {out.strip()[-800:]}"

    def run_sane(self, out_path):
        def check():
            with h5py.File(out_path, "r") as f:
                if int(f["provenance"].attrs.get("completed", 0)) != 1:
                    return "exit 0 but the run is not marked completed"
                for name in ["cases/d_clean", "cases/d_noised"]:
                    if not np.all(np.isfinite(f[name][()])):
                        return f"exit 0 but {name} holds non-finite values"
            return None
        return check

    def localize_sane(self, out_path):
        def check():
            with h5py.File(out_path, "r") as f:
                if int(f["provenance"].attrs.get("completed", 0)) != 1:
                    return "exit 0 but the run is not marked completed"
                if "localize/effect/chosen" not in f:
                    return "exit 0 but no deactivation effect"
                if not np.all(np.isfinite(f["localize/contrast/p"][()])):
                    return "exit 0 but the contrast holds non-finite p-values"
            return None
        return check

    def replay_sane(self, out_path):
        def check():
            with h5py.File(out_path, "r") as f:
                bad = []
                f.visititems(lambda n, o: bad.append(n) if isinstance(o, h5py.Dataset) and o.dtype.kind == "f"
                             and not np.all(np.isfinite(o[()])) else None)
            return f"exit 0 but non-finite values in {bad[:3]}" if bad else None
        return check


# ---- issue 25: journals, report output, cut results files, overflowing weights ------------------
# (a separate block: each target is (name, count, fn(rng, folder) -> (kind, problem)))

def journal_bytes(base_path, payloads):
    """A well-formed checkpoint journal continuing the file at base_path (docs/results.md)."""
    data = open(base_path, "rb").read()
    head = b"MTJRNL01" + struct.pack("<QI", len(data), zlib.crc32(data))
    out = head + struct.pack("<I", zlib.crc32(head))
    for p in payloads:
        rec = b"MTRC" + struct.pack("<QI", len(p), zlib.crc32(p))
        out += rec + struct.pack("<I", zlib.crc32(rec)) + p
    return out


def issue25_targets(w):
    def journal(r, d):
        """--resume with a journal that is not a regular file, or whose last record is damaged."""
        p = os.path.join(d, "resume.h5")
        shutil.copy(w.results, p)
        j = p + ".journal"
        kind = r.choice(["directory", "fifo", "dev-zero", "dir-link", "last-header", "appended", "bytes"])
        if kind == "directory":
            os.mkdir(j)
        elif kind == "fifo":
            os.mkfifo(j)
        elif kind == "dev-zero":
            os.symlink("/dev/zero", j)
        elif kind == "dir-link":
            os.symlink(d, j)
        else:
            records = r.randint(1, 3)
            data = bytearray(journal_bytes(p, [b""] * records))
            last = len(data) - 20
            if kind == "last-header":  # magic, size, payload CRC or header CRC of the last record
                data[last + r.choice([0, 1, 4, 5, 11, 12, 16, 19])] ^= 1 << r.randrange(8)
            elif kind == "appended":
                data += bytes(r.randrange(256) for _ in range(r.choice([1, 19, 20, 100, 4096])))
            else:
                data, k = byte_mutation(r, bytes(data))
                kind += "-" + k
            open(j, "wb").write(data)
        rc, t = w.run(["run", w.config, "--out", p, "--resume"])

        def resumed_equals_reference():
            bad = same_values(w.reference, read_all(p))
            return f"exit 0 after --resume but {bad[:4]} differ from the undamaged run" if bad else None
        return kind, w.expect(rc, t, ["resume.h5.journal"], resumed_equals_reference)

    def report_output(r, d):
        """`report > /dev/full`: the lost output must not be exit 0."""
        fmt = r.choice([[], ["--format", "json"], ["--format", "csv"]])
        with open("/dev/full", "wb") as full:
            p = subprocess.run([w.run.binary, "--log-level", "warn", "report", w.results] + fmt, stdout=full,
                               stderr=subprocess.PIPE, timeout=TIMEOUT_S, preexec_fn=limit_resources, env=w.run.env)
        out = p.stderr.decode("utf-8", "replace")
        if p.returncode == 2 and "standard output" in out:
            return " ".join(fmt) or "text", None
        return " ".join(fmt) or "text", f"exit {p.returncode}: {out.strip()[-600:]}"

    def results_cut(r, d):
        """A results file cut short, often inside its 512-byte seal: the message gives the real size."""
        size = r.choice([r.randint(32, 511), r.randint(512, os.path.getsize(w.results) - 1)])
        p = os.path.join(d, "cut.h5")
        open(p, "wb").write(open(w.results, "rb").read()[:size])
        rc, t = w.run(["report", p])
        if rc == 2 and f"it has {size} bytes" not in t:
            return f"{size} bytes", f"exit 2 without the real size {size}: {t.strip()[-600:]}"
        return f"{size} bytes", w.expect(rc, t, ["cut.h5"])

    def overflowing_weights(r, d):
        """Finite weights whose products overflow float32: never exit 0 with non-finite outputs."""
        m = os.path.join(d, "model")
        os.makedirs(m)
        for f in os.listdir(w.tiny_model):
            os.symlink(os.path.join(w.tiny_model, f), os.path.join(m, f))
        data = bytearray(open(os.path.join(w.tiny_model, "model.safetensors"), "rb").read())
        n = struct.unpack("<Q", data[:8])[0]
        header = json.loads(data[8:8 + n])
        name = r.choice(["lm_head.weight", "model.norm.weight"])
        a, b = header[name]["data_offsets"]
        value = r.choice([b"\x7f\x7f", b"\x7f\xff", b"\x00\x7f"])  # bf16 max, -max, 2^127
        data[8 + n + a:8 + n + b] = value * ((b - a) // 2)
        os.unlink(os.path.join(m, "model.safetensors"))
        open(os.path.join(m, "model.safetensors"), "wb").write(data)
        out = os.path.join(d, "out.h5")
        args = ["replay", "--model", m, "--in", w.fixture_in, "--out", out]
        if r.random() < 0.5:
            args.insert(1, "--clean-only")
        rc, t = w.run(args)
        return f"{name}={value.hex()}", w.expect(rc, t, [m], w.replay_sane(out))

    return [("journal", 20, journal), ("report>/dev/full", 3, report_output), ("results-cut", 10, results_cut),
            ("overflowing-weights", 8, overflowing_weights)]

# ---- end of the issue 25 block ------------------------------------------------------------------

# ---- localize: values only the model or tokenizer can judge (issue 25, item 3) ------------------
# Config values valid on their own but not for the demo model (4 layers, 16 experts, top-2, 64
# positions, 1051 token ids), and question files with records the model cannot ask (Unicode white
# space only, prompts longer than its positions). Each must end in exit 0 with sane results (the
# unusable records skipped and counted under /localize/skipped in lenient mode) or exit 2 naming
# the file.

LOCALIZE_EXTREMES = [
    ("top_n 40", "top_n = 2", "top_n = 40"),                              # clipped to 4 x 8
    ("top_n 1<<20", "top_n = 2", "top_n = 1048576"),
    ("per_layer top_n 9", "top_n = 2", 'top_n = 9\nselection = "per_layer"'),  # exit 2: at most 8
    ("per_layer top_n 8", "top_n = 2", 'top_n = 8\nselection = "per_layer"'),
    ("curve 1 64", "curve_n = [1, 2]", "curve_n = [1, 64]"),              # clipped to 4 x 14
    ("curve 56 57 1<<20", "curve_n = [1, 2]", "curve_n = [56, 57, 1048576]"),
    ("eos 2^31-1", "[data]", "eos_ids = [2147483647]\n[data]"),
    ("eos vocab", "[data]", "eos_ids = [1051]\n[data]"),
    ("eos last id", "[data]", "eos_ids = [1050]\n[data]"),
    ("backend tpu", "[data]", 'backend = "tpu"\n[data]'),
    ("backend cuda:x", "[data]", 'backend = "cuda:x"\n[data]'),
    ("max_new_tokens 64", "max_new_tokens = 3", "max_new_tokens = 64"),
    ("max_new_tokens 60", "max_new_tokens = 3", "max_new_tokens = 60"),   # every demo prompt too long
    ("long template", 'default = "{question}"', 'default = "' + "word " * 80 + '{question}"'),
]

WHITE_SPACE = ["\u3000", "\u00a0", "\u2028", "\u2029", "\u0085", "\u1680", "\u2007", "\u202f", "\u205f", " \t"]


def localize_question_mutation(r, text):
    """A few records of the question file made unaskable: white space only, or a long question."""
    lines = text.split(b"\n")
    records = [i for i in range(1, len(lines)) if lines[i].strip()]
    kind = r.choice(["white space", "long question", "both"])
    for i in r.sample(records, r.randint(1, 3)):
        rec = json.loads(lines[i])
        lang = r.choice(["qaa", "qab", "qac"])  # the languages the workload asks
        if kind == "white space" or (kind == "both" and r.random() < 0.5):
            rec["languages"][lang]["question"] = "".join(r.choice(WHITE_SPACE) for _ in range(r.randint(1, 6)))
        else:
            rec["languages"][lang]["question"] += " wuth" * r.randint(60, 3000)
        lines[i] = json.dumps(rec, ensure_ascii=r.random() < 0.5).encode()
    return b"\n".join(lines), kind


def localize_skips_counted(w, out_path):
    sane = w.localize_sane(out_path)

    def check():
        problem = sane()
        if problem:
            return problem
        with h5py.File(out_path, "r") as f:
            if int(f["localize/skipped"].attrs.get("total", 0)) < 1:
                return "exit 0 but the unaskable questions are not counted under /localize/skipped"
        return None
    return check


def add_localize_hostile(w, add):
    def extremes(r, d):
        kind, old, new = r.choice(LOCALIZE_EXTREMES)
        assert old in w.localize_text, old
        p = os.path.join(d, "localize.toml")
        open(p, "w").write(w.localize_text.replace(old, new, 1))
        out = os.path.join(d, "out.h5")
        rc, o = w.run(["localize", p, "--out", out])
        return kind, w.expect(rc, o, ["localize.toml"], w.localize_sane(out))

    def unaskable(r, d):
        data, kind = localize_question_mutation(r, open(w.questions, "rb").read())
        p = os.path.join(d, "questions.jsonl")
        open(p, "wb").write(data)
        cfg = os.path.join(d, "localize.toml")
        strict = r.random() < 0.4
        open(cfg, "w").write(w.localize_text.replace(w.questions, p).replace(
            "[data]\n", "[data]\nstrict = true\n" if strict else "[data]\n"))
        out = os.path.join(d, "out.h5")
        rc, o = w.run(["localize", cfg, "--out", out])
        if strict:
            problem = w.expect(rc, o, ["questions.jsonl"]) if rc != 0 else "exit 0 under strict = true"
        else:
            problem = w.expect(rc, o, ["questions.jsonl"], localize_skips_counted(w, out))
        return kind + (" strict" if strict else ""), problem

    add("localize-extremes", 20, extremes)
    add("questions-unaskable", 20, unaskable)

# ---- end of the localize hostile block ------------------------------------------------------------


def make_mutants(w, rng, scale):
    """(target, kind, callable) triples; the callable writes its mutant into a folder and runs it."""
    mutants = []

    def add(target, count, fn):
        for i in range(max(1, int(count * scale))):
            mutants.append((target, i, random.Random(rng.randrange(1 << 30)), fn))

    def model_copy(d, src):
        os.makedirs(d)
        for f in os.listdir(src):
            os.symlink(os.path.join(src, f), os.path.join(d, f))
        return d

    def replace(d, name, data):
        p = os.path.join(d, name)
        os.unlink(p)
        open(p, "wb").write(data)
        return p

    def safetensors(r, d):
        m = model_copy(os.path.join(d, "model"), w.tiny_model)
        data, kind = safetensors_mutation(r, open(os.path.join(w.tiny_model, "model.safetensors"), "rb").read())
        replace(m, "model.safetensors", data)
        out = os.path.join(d, "out.h5")
        rc, text = w.run.__call__(["replay", "--clean-only", "--model", m, "--in", w.fixture_in, "--out", out])
        return kind, w.expect(rc, text, ["model.safetensors"], w.replay_sane(out))

    def config_json(r, d):
        m = model_copy(os.path.join(d, "model"), w.tiny_model)
        text = open(os.path.join(w.tiny_model, "config.json"), "rb").read()
        data, kind = text_mutation(r, text) if r.random() < 0.7 else byte_mutation(r, text)
        replace(m, "config.json", data)
        out = os.path.join(d, "out.h5")
        rc, t = w.run(["replay", "--clean-only", "--model", m, "--in", w.fixture_in, "--out", out])
        return kind, w.expect(rc, t, ["config.json"], w.replay_sane(out))

    def fixture(r, d):
        data = open(w.fixture_in, "rb").read()
        if r.random() < 0.5:
            data, kind = hdf5_mutation(r, data, w.fixture_in, w.fixture_datasets, w.fixture_groups)
            p = os.path.join(d, "in.h5")
            open(p, "wb").write(data)
        else:  # targeted values: ids beyond the vocabulary, every expert of a layer deactivated, NaN noise
            p = os.path.join(d, "in.h5")
            shutil.copy(w.fixture_in, p)
            kind = r.choice(["ids", "deactivate-all", "nan-noise", "subject"])
            with h5py.File(p, "r+") as f:
                g = f["facts/0"]
                if kind == "ids":
                    ids = g["ids"][()].astype(np.int64)
                    ids[r.randrange(len(ids))] = r.choice([1 << 40, -7, 500, (1 << 32) + 5])
                    del g["ids"]
                    g["ids"] = ids
                elif kind == "deactivate-all":
                    layer = r.randrange(4)
                    if "deactivate" in g:
                        del g["deactivate"]
                    g["deactivate/experts"] = np.array([[layer, e] for e in range(r.choice([13, 16]))], np.int64)
                elif kind == "nan-noise":
                    n = g["noise"][()]
                    n.flat[r.randrange(n.size)] = r.choice([np.nan, np.inf])
                    g["noise"][...] = n
                else:
                    g["subject"][...] = np.array(r.choice([[5, 2], [-1, 3], [0, 1 << 40]]), np.int64)
        out = os.path.join(d, "out.h5")
        rc, t = w.run(["replay", "--model", w.tiny_model, "--in", p, "--out", out])
        return kind, w.expect(rc, t, ["in.h5"], w.replay_sane(out))

    def tokenizer(r, d):
        m = model_copy(os.path.join(d, "model"), w.demo_model)
        text = open(os.path.join(w.demo_model, "tokenizer.json"), "rb").read()
        data, kind = text_mutation(r, text) if r.random() < 0.7 else byte_mutation(r, text)
        p = replace(m, "tokenizer.json", data)
        rc, t = w.run(["tokenize", "--tokenizer", p, "--input", w.strings])
        return kind, w.expect(rc, t, ["tokenizer.json"])

    def counterfact(r, d):
        text = open(w.counterfact, "rb").read()
        if r.random() < 0.2:
            records = json.load(open(w.counterfact))
            kind = r.choice(["long-prompt", "big-id", "dup-id"])
            if kind == "long-prompt":
                records[0]["requested_rewrite"]["prompt"] = "The {} " + "word " * 2_000_000
            elif kind == "big-id":
                records[1]["case_id"] = 1 << 64
            else:
                records[2]["case_id"] = records[3]["case_id"]
            data = json.dumps(records).encode()
        else:
            data, kind = text_mutation(r, text) if r.random() < 0.7 else byte_mutation(r, text)
        p = os.path.join(d, "cf.json")
        open(p, "wb").write(data)
        cfg = os.path.join(d, "run.toml")
        open(cfg, "w").write(w.config_text.replace(w.counterfact, p))
        out = os.path.join(d, "out.h5")
        rc, t = w.run(["run", cfg, "--out", out])
        return kind, w.expect(rc, t, ["cf.json"], w.run_sane(out))

    def run_config(r, d):
        text = w.config_text.encode()
        if r.random() < 0.25:
            kind = r.choice(["samples", "bootstrap", "n", "nan", "dir", "fifo"])
            t = w.config_text
            if kind == "samples":
                t = t.replace("samples = 1", "samples = 1000000000")
            elif kind == "bootstrap":
                t = t.replace("bootstrap = 100", "bootstrap = 4294967346")
            elif kind == "n":
                t = t.replace("n = 0", "n = 2147483648")
            elif kind == "nan":
                t = t.replace("multiplier = 3.0", "multiplier = nan").replace("threshold = 0.5", "threshold = nan")
            elif kind == "dir":
                t = t.replace(w.counterfact, "/tmp")
            else:
                fifo = os.path.join(d, "fifo.json")
                os.mkfifo(fifo)
                t = t.replace(w.counterfact, fifo)
            data = t.encode()
        else:
            data, kind = text_mutation(r, text) if r.random() < 0.7 else byte_mutation(r, text)
        p = os.path.join(d, "run.toml")
        open(p, "wb").write(data)
        out = os.path.join(d, "out.h5")
        rc, t = w.run(["run", p, "--out", out])
        return kind, w.expect(rc, t, ["run.toml"], w.run_sane(out))

    def results(r, d):
        data, kind = hdf5_mutation(r, open(w.results, "rb").read(), w.results, w.results_datasets,
                                   w.results_groups)
        p = os.path.join(d, "damaged.h5")
        open(p, "wb").write(data)
        rc, t = w.run(["report", p])
        problem = w.expect(rc, t, ["damaged.h5"])
        if problem:
            return kind, "report: " + problem
        rc, t = w.run(["run", w.config, "--out", p, "--resume"])

        def resumed_equals_reference():
            bad = same_values(w.reference, read_all(p))
            return f"exit 0 after --resume but {bad[:4]} differ from the undamaged run" if bad else None
        problem = w.expect(rc, t, ["damaged.h5"], resumed_equals_reference)
        return kind, ("resume: " + problem) if problem else None

    add("safetensors", 50, safetensors)
    add("config.json", 30, config_json)
    add("fixture.h5", 20, fixture)
    add("tokenizer.json", 40, tokenizer)
    add("counterfact", 30, counterfact)
    add("run.toml", 40, run_config)
    def localize_config(r, d):
        t = w.localize_text
        if r.random() < 0.3:
            kind = r.choice(["curve", "top_n", "tokens", "nan", "template", "draws", "dir"])
            if kind == "curve":
                t = t.replace("curve_n = [1, 2]", "curve_n = [1, 4294967297]")
            elif kind == "top_n":
                t = t.replace("top_n = 2", "top_n = 9223372036854775807")
            elif kind == "tokens":
                t = t.replace("max_new_tokens = 3", "max_new_tokens = 2147483648")
            elif kind == "nan":
                t = t.replace("logprob_threshold = -0.7", "logprob_threshold = nan")
            elif kind == "template":
                t = t.replace('default = "{question}"', 'default = "{quest} {"')
            elif kind == "draws":
                t = t.replace("control_draws = 2", "control_draws = 100000000")
            else:
                t = t.replace(w.questions, "/tmp")
            data = t.encode()
        else:
            data, kind = text_mutation(r, t.encode()) if r.random() < 0.7 else byte_mutation(r, t.encode())
        p = os.path.join(d, "localize.toml")
        open(p, "wb").write(data)
        out = os.path.join(d, "out.h5")
        rc, o = w.run(["localize", p, "--out", out])
        return kind, w.expect(rc, o, ["localize.toml"], w.localize_sane(out))

    def questions(r, d):
        text = open(w.questions, "rb").read()
        data, kind = text_mutation(r, text) if r.random() < 0.6 else byte_mutation(r, text)
        p = os.path.join(d, "questions.jsonl")
        open(p, "wb").write(data)
        cfg = os.path.join(d, "localize.toml")
        strict = r.random() < 0.3
        open(cfg, "w").write(w.localize_text.replace(w.questions, p).replace(
            "[data]\n", "[data]\nstrict = true\n" if strict else "[data]\n"))
        out = os.path.join(d, "out.h5")
        rc, o = w.run(["localize", cfg, "--out", out])
        return kind + (" strict" if strict else ""), w.expect(rc, o, ["questions.jsonl"], w.localize_sane(out))

    add("results.h5", 30, results)
    for target, count, fn in issue25_targets(w):  # journals, report output, cut files, overflow
        add(target, count, fn)
    add("localize.toml", 30, localize_config)
    add("questions.jsonl", 30, questions)
    add_localize_hostile(w, add)
    # Interleaved, so that a run cut by the time budget still covers every target.
    random.Random(rng.randrange(1 << 30)).shuffle(mutants)
    return mutants


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--moetrace", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--fixtures", required=True)
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies the number of mutants per target")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--only", default="", help="comma-separated targets to run (e.g. localize-extremes,questions-unaskable)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (failing mutants stay in it)")
    ap.add_argument("--budget-s", type=float, default=160,
                    help="mutants not started after this many seconds are skipped (and counted as such)")
    args = ap.parse_args()
    t0 = time.time()
    work = tempfile.mkdtemp(prefix="moetrace-fuzz-")
    w = Workload(args, work)
    rng = random.Random(args.seed)
    mutants = make_mutants(w, rng, args.scale)
    if args.only:
        mutants = [m for m in mutants if m[0] in args.only.split(",")]

    def one(m):
        target, i, r, fn = m
        if time.time() - t0 > args.budget_s:
            return target, i, "skipped", None
        d = os.path.join(work, f"{target}-{i}")
        os.makedirs(d)
        kind, problem = fn(r, d)
        if not problem and not args.keep:
            shutil.rmtree(d, ignore_errors=True)
        return target, i, kind, problem

    failures, counts, skipped = [], {}, 0
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        for target, i, kind, problem in pool.map(one, mutants):
            if kind == "skipped":
                skipped += 1
                continue
            counts[target] = counts.get(target, 0) + 1
            if problem:
                failures.append((target, i, kind, problem))
                print(f"FAIL {target} #{i} ({kind}): {problem}", flush=True)
    elapsed = time.time() - t0
    print(f"{len(mutants) - skipped} mutants run ({', '.join(f'{k} {v}' for k, v in counts.items())}), "
          f"{skipped} skipped over the {args.budget_s:.0f} s budget, seed {args.seed}: {len(failures)} failed, "
          f"{elapsed:.0f} s")
    if failures:
        print(f"failing mutants kept under {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
