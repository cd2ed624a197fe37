#!/usr/bin/env python3
"""The layering check of docs/ARCHITECTURE.md ("Layers and the check that keeps them"), run by ctest.

Reads the #include lines of src/ and kernels/ and fails on
  - an include that points up (or sideways) the documented order:
        cli > protocols > localize > engine, comm > backend, kernels > model, results, tokenizer > util
    a directory may include its own files and those of a strictly lower level; kernels/ (the CUDA
    backend) may include src/backend/ as well. The single exception is EXCEPTIONS below.
  - a results layout name outside src/results/: `layout::`, `L::k...` (the layout headers'
    namespaces), a string literal that looks like an HDF5 path ("/name...") or an attribute call
    (set_attr, has_attr, attr_*) with a string literal on its line.
Violations listed in the allowlist file (path, kind, count: at most that many of that kind in that
file) pass; it holds today's violations until they are moved into src/results/ and is meant to be
emptied. Also fails on
  - a function longer than 60 lines (header to closing brace) in src/ or kernels/, unless the
    exemption file (long_function_exemptions.txt: `<file> <function>  # reason`) lists it: only flat
    parsers of a config or file format belong there.
and reports the number of cross-directory includes by pair.

usage: check_layering.py [--root DIR] [--allowlist FILE] [--exemptions FILE] [--verbose]
exit 0: no violation beyond the allowlist and exemptions; 1: violations (listed); 2: bad allowlist or
exemption line.
"""
import argparse
import collections
import os
import re
import sys

LEVEL = {
    "util": 0,
    "model": 1, "results": 1, "tokenizer": 1,
    "backend": 2, "kernels": 2,
    "engine": 3, "comm": 3,
    "localize": 4,
    "protocols": 5,
    "cli": 6,
}
# Same-level includes that the order allows: kernels/ implements src/backend/'s interface.
SIDEWAYS = {("kernels", "backend")}
# (file, included file): the registry must name every backend to construct it by name; the CUDA
# backend is linked into it only when built (MOETRACE_WITH_CUDA), so this include stays behind
# that macro in the one file that knows all backends.
EXCEPTIONS = {("src/backend/backend_registry.cpp", "kernels/cuda_backend.h")}

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')
LAYOUT_NAME = re.compile(r"\blayout::|\bL::k[A-Z]")
# (File-system paths such as "/proc/meminfo" are not HDF5 paths.)
HDF5_PATH = re.compile(r'"/(?!(?:proc|sys|dev|tmp|etc|usr|var|run|home)\b)[A-Za-z_][A-Za-z0-9_]*')
# An attribute named by a literal: a results-file attribute call with a string literal on its line.
ATTR_LITERAL = re.compile(r'\b(set_attr|has_attr|attr_[a-z0-9_]+)\s*\((?=[^\n]*")')
SOURCE_EXT = (".h", ".cpp", ".cu", ".cuh")
LONG_FUNCTION = 60


def layer_of(path):
    parts = path.split("/")
    if parts[0] == "kernels":
        return "kernels"
    if parts[0] == "src" and len(parts) > 2:
        return parts[1]
    return None


def sources(root):
    for top in ("src", "kernels"):
        for d, _, files in os.walk(os.path.join(root, top)):
            for f in sorted(files):
                if f.endswith(SOURCE_EXT):
                    full = os.path.join(d, f)
                    yield os.path.relpath(full, root).replace(os.sep, "/"), full


def strip_comments(text):
    """Drops // and /* */ comments, keeping string literals and line breaks."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c == '"' or c == "'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            out.append(text[i:j + 1])
            i = j + 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("\n" * text.count("\n", i, j))
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def function_name(header):
    """The (qualified) name before the parameter list: `File::apply`, `parse_run_config`."""
    m = re.search(r"([A-Za-z_~][A-Za-z0-9_:~]*)\s*\($", header.split("(")[0] + "(")
    return m.group(1) if m else header.split("(")[0].strip()


def long_functions(code):
    """(first line, length, name) of every function body at namespace or class scope longer than the limit.
    A heuristic over braces: a `{` opened at namespace/class scope after a header holding `(` and
    not starting with a control keyword or `=` opens a function; its length is header to `}`."""
    found, stack, header, header_line, line = [], [], "", 1, 1
    # Preprocessor lines (macro bodies included) become empty lines.
    code = re.sub(r"^[ \t]*#(?:[^\n]*\\\n)*[^\n]*", lambda m: "\n" * m.group(0).count("\n"), code, flags=re.M)
    code = re.sub(r'"(\\.|[^"\\])*"', '""', code)
    code = re.sub(r"'(\\.|[^'\\])*'", "''", code)
    for c in code:
        if c == "\n":
            line += 1
        if c == "{":
            in_function = any(kind == "function" for kind, _, _ in stack)
            h = header.strip()
            is_function = (not in_function and "(" in h and "=" not in h.split("(")[0]
                           and not re.match(r"(namespace|class|struct|enum|union|extern)\b", h))
            name = function_name(h) if is_function else ""
            stack.append(("function" if is_function else "block", header_line, name))
            header, header_line = "", line
        elif c == "}":
            if stack:
                kind, start, name = stack.pop()
                if kind == "function" and line - start + 1 > LONG_FUNCTION:
                    found.append((start, line - start + 1, name))
            header, header_line = "", line
        elif c == ";":
            header, header_line = "", line
        else:
            if not header.strip() and not c.isspace():
                header_line = line
            header += c
    return found


def read_allowlist(path):
    allowed = {}
    if not path or not os.path.exists(path):
        return allowed
    with open(path, encoding="utf-8") as f:
        for number, raw in enumerate(f, 1):
            text = raw.split("#", 1)[0].strip()
            if not text:
                continue
            fields = text.split()
            if len(fields) != 3 or fields[1] not in ("include", "layout") or not fields[2].isdigit():
                print(f"{path}:{number}: expected '<file> include|layout <count>', got: {raw.strip()}")
                sys.exit(2)
            allowed[(fields[0], fields[1])] = int(fields[2])
    return allowed


def read_exemptions(path):
    """{(file, function): reason} from `<file> <function>  # reason` lines; a reason is required."""
    exempt = {}
    if not path or not os.path.exists(path):
        return exempt
    with open(path, encoding="utf-8") as f:
        for number, raw in enumerate(f, 1):
            text, _, reason = raw.partition("#")
            if not text.strip():
                continue
            fields = text.split()
            if len(fields) != 2 or not reason.strip():
                print(f"{path}:{number}: expected '<file> <function>  # reason', got: {raw.strip()}")
                sys.exit(2)
            exempt[(fields[0], fields[1])] = reason.strip()
    return exempt


def check(root, allowlist, verbose, exemptions=None):
    exemptions = exemptions or {}
    found = collections.defaultdict(list)  # (file, kind) -> messages
    pairs = collections.Counter()
    long = []
    for rel, full in sources(root):
        src_layer = layer_of(rel)
        with open(full, encoding="utf-8", errors="replace") as f:
            text = f.read()
        code = strip_comments(text)
        for number, line in enumerate(code.splitlines(), 1):
            m = INCLUDE.match(line)
            if m:
                target = m.group(1)
                dst_layer = target.split("/")[0] if "/" in target else None
                if dst_layer not in LEVEL or dst_layer == src_layer:
                    continue
                pairs[(src_layer, dst_layer)] += 1
                if (rel, target) in EXCEPTIONS:
                    continue
                if LEVEL[dst_layer] >= LEVEL[src_layer] and (src_layer, dst_layer) not in SIDEWAYS:
                    found[(rel, "include")].append(
                        f"{rel}:{number}: {src_layer} includes {target} ({dst_layer} is not below {src_layer})")
                continue
            if src_layer == "results":
                continue
            for m in [*LAYOUT_NAME.finditer(line), *HDF5_PATH.finditer(line), *ATTR_LITERAL.finditer(line)]:
                found[(rel, "layout")].append(f"{rel}:{number}: results layout name outside src/results: "
                                              f"{line[m.start():m.start() + 40].strip()}")
        long += [(rel, start, n, name) for start, n, name in long_functions(code)]

    failures, used = [], set()
    for key, messages in sorted(found.items()):
        allowed = allowlist.get(key, 0)
        if key in allowlist:
            used.add(key)
        if len(messages) > allowed:
            failures.append((key, allowed, messages))
    print("cross-directory includes by pair (from -> to: count):")
    for (a, b), n in sorted(pairs.items()):
        print(f"  {a} -> {b}: {n}")
    print(f"  total: {sum(pairs.values())}")
    layout_total = sum(len(m) for (f, k), m in found.items() if k == "layout")
    print(f"results layout names outside src/results: {layout_total} "
          f"(allowlisted: {sum(n for (f, k), n in allowlist.items() if k == 'layout')})")
    exempted = [f for f in long if (f[0], f[3]) in exemptions]
    too_long = [f for f in long if (f[0], f[3]) not in exemptions]
    print(f"functions over {LONG_FUNCTION} lines: {len(too_long)} (exempted flat parsers: {len(exempted)})")
    if verbose:
        for rel, start, n, name in sorted(exempted, key=lambda x: -x[2]):
            print(f"  exempt {rel}:{start}: {name}: {n} lines ({exemptions[(rel, name)]})")
    for key in sorted(set(exemptions) - {(f[0], f[3]) for f in exempted}):
        print(f"exemption no longer needed (remove it): {key[0]} {key[1]}")
    for key in sorted(set(allowlist) - used):
        print(f"allowlist entry no longer needed (remove it): {key[0]} {key[1]}")
    for key, allowed in sorted(allowlist.items()):
        n = len(found.get(key, []))
        if key in used and n < allowed:
            print(f"allowlist entry can shrink: {key[0]} {key[1]} {n} (allows {allowed})")
    for (rel, kind), allowed, messages in failures:
        print(f"FAIL {rel}: {len(messages)} {kind} violation(s), {allowed} allowed:")
        for m in messages:
            print("  " + m)
    for rel, start, n, name in sorted(too_long, key=lambda x: -x[2]):
        print(f"FAIL {rel}:{start}: {name} is {n} lines (over {LONG_FUNCTION}); split it into named steps, "
              f"or, for a flat parser of a config or file format only, list it in the exemption file")
    return 1 if failures or too_long else 0


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", default=os.path.dirname(here))
    p.add_argument("--allowlist", default=os.path.join(here, "layering_allowlist.txt"))
    p.add_argument("--exemptions", default=os.path.join(here, "long_function_exemptions.txt"))
    p.add_argument("--verbose", action="store_true", help="list the exempted long functions")
    a = p.parse_args()
    sys.exit(check(a.root, read_allowlist(a.allowlist), a.verbose, read_exemptions(a.exemptions)))


if __name__ == "__main__":
    main()
