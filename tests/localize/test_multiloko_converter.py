#!/usr/bin/python3
"""ctest: tools/multiloko_to_json.py on the hand-made MultiLoKo-layout tree in
tests/localize/data/multiloko. Checks the converter's output and its error exits, and leaves the
converted files in --out-dir for test_localize_multiloko (C++ loader) to read."""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "data", "multiloko")
TOOL = os.path.join(HERE, "..", "..", "tools", "multiloko_to_json.py")
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)


def run(*args):
    return subprocess.run([sys.executable, TOOL, *args], capture_output=True)


def load(path):
    with open(path, "rb") as f:
        raw = f.read()
    lines = raw.decode("utf-8", errors="surrogateescape").splitlines()
    return raw, json.loads(lines[0]), [json.loads(l) for l in lines[1:]]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out-dir", required=True)
    out = ap.parse_args().out_dir
    os.makedirs(out, exist_ok=True)

    # English-sourced, human translations (the 31-language set in the real data).
    p = os.path.join(out, "multiloko_en.jsonl")
    r = run(ROOT, "--out", p)
    check(r.returncode == 0, f"default conversion exit {r.returncode}: {r.stderr.decode()}")
    raw, header, qs = load(p)
    check(header == {"format": "moetrace-localize", "version": 1, "languages": ["en", "fr", "de"],
                     "source": "MultiLoKo dev, english-sourced, human translations"}, f"header {header}")
    ids = [q["id"] for q in qs]
    check(ids == ["001_Eiffel_Tower.txt", "002_Danube.txt", "003_Mozart.txt", "003_Mozart.txt#2",
                  "004_Rhine.txt", "005_Alps.txt"], f"ids {ids}")
    by_id = {q["id"]: q for q in qs}
    check(by_id["003_Mozart.txt#2"]["languages"]["de"]["answers"] == ["1756"], "second repeat aligned with second repeat")
    check(by_id["003_Mozart.txt#2"]["meta"] == {"multiloko_id": "003_Mozart.txt"}, "meta keeps the MultiLoKo id")
    check(by_id["002_Danube.txt"]["languages"]["fr"] == {"question": "Dans quelle mer se jette le Danube ?",
                                                         "answers": ["la mer Noire"], "output_type": "nom"},
          "French entry aligned by id, not by line")
    check(by_id["002_Danube.txt"]["languages"]["en"]["answers"] == ["Black Sea", "the Black Sea"], "all targets kept")
    check(by_id["004_Rhine.txt"]["languages"]["en"]["answers"] == [""], "an empty target is passed through")
    check(set(by_id["005_Alps.txt"]["languages"]) == {"en", "de"}, "missing French translation left out")
    check(b"ann\xe9e Mozart" in raw, "invalid UTF-8 passed through byte for byte")
    check("999_Extra.txt" not in raw.decode("utf-8", "replace"), "translation without source dropped")
    check(b"1 questions without a translation, 1 translations without a source question" in r.stderr,
          f"counts reported: {r.stderr.decode()}")

    # Machine translations: only German has one, for one question.
    p = os.path.join(out, "multiloko_machine.jsonl")
    r = run(ROOT, "--out", p, "--translations", "machine")
    _, header, qs = load(p)
    check(r.returncode == 0 and header["languages"] == ["en", "de"], f"machine languages {header['languages']}")
    check([q["id"] for q in qs if "de" in q["languages"]] == ["001_Eiffel_Tower.txt"], "machine alignment")

    # Language selection keeps the source language.
    p = os.path.join(out, "multiloko_en_de.jsonl")
    r = run(ROOT, "--out", p, "--languages", "de")
    _, header, qs = load(p)
    check(r.returncode == 0 and header["languages"] == ["en", "de"], f"selection languages {header['languages']}")
    check(all(set(q["languages"]) == {"en", "de"} for q in qs), "selection drops other languages")

    # German-sourced questions with their English translations, in another order.
    p = os.path.join(out, "multiloko_de.jsonl")
    r = run(ROOT, "--out", p, "--source", "german")
    _, header, qs = load(p)
    check(r.returncode == 0 and header["languages"] == ["de", "en"], f"german-sourced languages {header}")
    check([q["id"] for q in qs] == ["010_Brandenburger_Tor.txt", "011_Zugspitze.txt"], "german-sourced ids")
    check(qs[1]["languages"]["en"]["answers"] == ["Zugspitze", "the Zugspitze"], "german-sourced alignment")

    # Bad input: exit 2 with a message naming what is wrong; no output written.
    with tempfile.TemporaryDirectory() as tmp:
        bad_root = os.path.join(tmp, "data")
        shutil.copytree(ROOT, bad_root)
        with open(os.path.join(bad_root, "english", "dev_translated_human_german.jsonl"), "a") as f:
            f.write('{"id": "x", "question": \n')
        for args, mention in [
            ((bad_root,), "dev_translated_human_german.jsonl: line 7: not valid JSON"),
            ((ROOT, "--languages", "xx"), "--languages: 'xx'"),
            ((ROOT, "--source", "klingon"), "unknown MultiLoKo language 'klingon'"),
            ((os.path.join(tmp, "absent"),), "dev.jsonl: not a file"),
        ]:
            target = os.path.join(tmp, "out.jsonl")
            r = run(*args, "--out", target)
            check(r.returncode == 2, f"{args}: exit {r.returncode}")
            check(mention.encode() in r.stderr, f"{args}: message {r.stderr.decode()!r} should mention {mention!r}")
            check(not os.path.exists(target), f"{args}: no output on error")

    if failures:
        print(f"{len(failures)} checks failed", file=sys.stderr)
        return 1
    print("multiloko converter: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
