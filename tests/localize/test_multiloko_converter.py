#!/usr/bin/python3
"""ctest: tools/multiloko_to_json.py on the hand-made MultiLoKo-layout tree in
tests/localize/data/multiloko. Checks the converter's output, its few-shot templates and its error
exits, and leaves the converted files (and templates_en.toml) in --out-dir for
test_localize_multiloko (C++ loader) to read."""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib

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


# The templates the hand-made few-shot files must give, written out by hand (TOML-decoded).
EN_EXAMPLES = [
    ("Which river flows through Vienna?", "name", "Danube"),
    ("How many strings has a standard violin?", "number", "4"),
    ("What does the set {{1, 2}} contain besides 1?", "number", "2"),
    ('Which novel begins with "Call me Ishmael"?', "title", "Moby-Dick"),
    ("Which character separates Windows path parts?", "character", "\\"),
]
FR_EXAMPLES = [("Quel fleuve traverse Lyon avec la Saône ?", "nom", "le Rhône")]
DE_EXAMPLES = [("Welcher Fluss fließt durch Köln?", "Name", "Rhein"),
               ("Wie viele Bundesländer hat Österreich? Bitte nur die Zahl.", "Zahl", "9")]


def expected(examples, q="Q:", a="A:", with_type=True):
    shots = "".join(f"{q} {question}{f' ({t})' if with_type else ''}\n{a} {answer}\n\n" for question, t, answer in examples)
    return shots + f"{q} {{question}}{' ({output_type})' if with_type else ''}\n{a}"


def read_toml(path):
    with open(path, "rb") as f:
        raw = f.read()
    return raw, tomllib.loads(raw.decode("utf-8"))


def check_templates(out):
    # Default: every language of the conversion, 5 shots (the sixth English example left out).
    p_q, p_t = os.path.join(out, "multiloko_en_t.jsonl"), os.path.join(out, "templates_en.toml")
    r = run(ROOT, "--out", p_q, "--templates", p_t)
    check(r.returncode == 0, f"templates exit {r.returncode}: {r.stderr.decode()}")
    raw, doc = read_toml(p_t)
    check(list(doc) == ["templates"], f"one [templates] table: {list(doc)}")
    t = doc["templates"]
    check(list(t) == ["en", "fr", "de"], f"template languages in header order: {list(t)}")
    check(t["en"] == expected(EN_EXAMPLES), f"en template {t['en']!r}")
    check(t["fr"] == expected(FR_EXAMPLES), f"fr template (answer from 'target') {t['fr']!r}")
    check(t["de"] == expected(DE_EXAMPLES), f"de template (line feed inside a question) {t['de']!r}")
    check("sixth" not in t["en"], "--shots 5 by default")
    check(b"\\n" in raw and b"\n\n" not in raw.split(b"[templates]")[1].strip(), "one line per template")
    with open(p_q, "rb") as f1, open(os.path.join(out, "multiloko_en.jsonl"), "rb") as f2:
        check(f1.read() == f2.read(), "--templates leaves the question file as it was")

    # Templates only, fewer shots, no output-type hints, other labels, fewer languages.
    with tempfile.TemporaryDirectory() as tmp:
        labels = os.path.join(tmp, "labels.json")
        with open(labels, "w", encoding="utf-8") as f:
            json.dump({"de": ["Frage:", "Antwort:"], "fr": ["Q :", "R :"]}, f, ensure_ascii=False)
        p = os.path.join(tmp, "t.toml")
        r = run(ROOT, "--templates", p, "--shots", "1", "--no-output-type", "--labels", labels, "--languages", "de")
        check(r.returncode == 0, f"templates only exit {r.returncode}: {r.stderr.decode()}")
        t = read_toml(p)[1]["templates"]
        check(list(t) == ["en", "de"], f"selected languages {list(t)}")
        check(t["en"] == expected(EN_EXAMPLES[:1], with_type=False), f"en one shot {t['en']!r}")
        check(t["de"] == expected(DE_EXAMPLES[:1], "Frage:", "Antwort:", with_type=False), f"de labels {t['de']!r}")
        check(sorted(os.listdir(tmp)) == ["labels.json", "t.toml"], "no question file without --out")
        # German-sourced: German and English templates.
        r = run(ROOT, "--templates", p, "--source", "german")
        check(r.returncode == 0 and list(read_toml(p)[1]["templates"]) == ["de", "en"], "german-sourced templates")

        # Bad few-shot input: exit 2 naming the file (and line); neither file written.
        def bad_tree(edit):
            root = os.path.join(tmp, "bad")
            shutil.rmtree(root, ignore_errors=True)
            shutil.copytree(ROOT, root)
            edit(root)
            return root

        def write(root, lang, text, mode="w"):
            with open(os.path.join(root, lang, "knowledge_fewshot.jsonl"), mode + "b") as f:
                f.write(text)

        fr_file = os.path.join("french", "knowledge_fewshot.jsonl")
        cases = [
            (lambda r: os.remove(os.path.join(r, fr_file)), (), fr_file + ": not a file"),
            (lambda r: write(r, "german", b'{"question": "x",\n', "a"), (), "german/knowledge_fewshot.jsonl: line 3: not valid JSON"),
            (lambda r: write(r, "french", b'{"question": "Qui ?", "answer": "Moi"}\n'), (), "example 1 has no 'output_type'"),
            (lambda r: write(r, "french", b'{"question": "Qui ?", "answer": ""}\n'), (), "line 1: no non-blank answer"),
            (lambda r: write(r, "french", b'{"question": "Qui \xff ?", "answer": "a"}\n'), (), "line 1: invalid UTF-8"),
            (lambda r: write(r, "french", b'["Qui ?"]\n'), (), "line 1: expected a JSON object"),
            (lambda r: write(r, "french", b'\n\n'), (), "no few-shot example"),
            (lambda r: None, ("--labels", os.path.join(tmp, "absent.json")), "cannot read the labels"),
        ]
        with open(os.path.join(tmp, "bad_labels.json"), "w") as f:
            json.dump({"xx": ["Q:", "A:"]}, f)
        cases.append((lambda r: None, ("--labels", os.path.join(tmp, "bad_labels.json")), "unknown language code 'xx'"))
        with open(os.path.join(tmp, "bad_pair.json"), "w") as f:
            json.dump({"de": ["Q:"]}, f)
        cases.append((lambda r: None, ("--labels", os.path.join(tmp, "bad_pair.json")), "'de': expected two"))
        for edit, extra, mention in cases:
            root = bad_tree(edit)
            q, tt = os.path.join(tmp, "q.jsonl"), os.path.join(tmp, "tt.toml")
            r = run(root, "--out", q, "--templates", tt, *extra)
            check(r.returncode == 2, f"{mention}: exit {r.returncode}")
            check(mention.encode() in r.stderr, f"message {r.stderr.decode()!r} should mention {mention!r}")
            check(not os.path.exists(q) and not os.path.exists(tt), f"{mention}: no output on error")
        for args in (("--templates", os.path.join(tmp, "x.toml"), "--shots", "0"), ()):
            r = run(ROOT, *args)
            check(r.returncode == 2, f"usage error {args}: exit {r.returncode}")


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

    check_templates(out)

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
