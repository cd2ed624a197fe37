#!/usr/bin/python3
"""Converts MultiLoKo (github.com/facebookresearch/multiloko) to moetrace's question format
(docs/localize.md, "Data format": JSON Lines, a header line, then one question per line with the
question and its accepted answers per language).

MultiLoKo layout (after extracting benchmark_data.tar.xz.enc as its README says), one folder per
language, named by language (english, german, simplified_mandarin, ...):

  <lang>/<subset>.jsonl                            questions sourced in <lang> (subset: dev)
  <lang>/<subset>_translated_{human,machine}_english.jsonl   their translations into English
  english/<subset>_translated_{human,machine}_<lang>.jsonl   English questions translated into <lang>

Each line is {"text", "question", "targets": [short answers], "target": long answer, "id",
"output_type"}. The parallel 31-language set is the English-sourced questions with their 30
translations (--source english, the default); --source <language> gives that language's own
questions with their English translations (2 languages).

Questions are aligned by MultiLoKo's "id" across files; the k-th repeat of an id within a file
(k >= 1) is aligned with the k-th repeat elsewhere and written as "<id>#<k+1>". A question missing
from a translation file is written without that language (moetrace's loader then skips it as
"missing language" or, strict, refuses it; select fewer languages to keep it); translations whose
id the source lacks are dropped. Both are counted on stderr. Text is passed through unchanged,
invalid UTF-8 included, so that the loader, not the converter, judges records.

Usage:
  tools/multiloko_to_json.py BENCHMARK_DATA --out questions.jsonl
      [--subset dev] [--source english] [--translations human|machine] [--languages en,de,fr]
Exit status: 0 written, 2 bad input (message names the file and line).
"""
import argparse
import json
import os
import sys

# MultiLoKo folder name -> language code used in moetrace's format (BCP-47-like).
LANGUAGE_CODES = {
    "arabic": "ar", "bengali": "bn", "cantonese": "yue", "czech": "cs", "dutch": "nl",
    "english": "en", "farsi": "fa", "french": "fr", "german": "de", "hebrew": "he",
    "hindi": "hi", "indonesian": "id", "italian": "it", "japanese": "ja", "khmer": "km",
    "korean": "ko", "malay": "ms", "marathi": "mr", "polish": "pl", "portuguese": "pt",
    "romanian": "ro", "russian": "ru", "simplified_mandarin": "zh-Hans", "spanish": "es",
    "swedish": "sv", "tagalog": "tl", "thai": "th", "traditional_mandarin": "zh-Hant",
    "turkish": "tr", "urdu": "ur", "vietnamese": "vi",
}
NAMES = {code: name for name, code in LANGUAGE_CODES.items()}


class InputProblem(Exception):
    pass


def read_jsonl(path):
    """[(line number, record)] of a MultiLoKo file; bytes that are not UTF-8 survive as surrogate
    escapes and are written back as the same bytes."""
    if not os.path.isfile(path):
        raise InputProblem(f"{path}: not a file")
    out = []
    with open(path, "rb") as f:
        for n, raw in enumerate(f, start=1):
            line = raw.decode("utf-8", errors="surrogateescape").strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputProblem(f"{path}: line {n}: not valid JSON: {e}") from None
            if not isinstance(rec, dict):
                raise InputProblem(f"{path}: line {n}: expected a JSON object")
            if not isinstance(rec.get("id"), str) or not rec["id"]:
                raise InputProblem(f"{path}: line {n}: no string field 'id'")
            if "question" not in rec:
                raise InputProblem(f"{path}: line {n} (id {rec['id']!r}): no field 'question'")
            out.append((n, rec))
    return out


def keyed(records):
    """{(id, k): record} with k counting earlier records of the same id in this file."""
    seen, out = {}, {}
    for _, rec in records:
        k = seen.get(rec["id"], 0)
        seen[rec["id"]] = k + 1
        out[(rec["id"], k)] = rec
    return out


def entry(rec):
    targets = rec.get("targets", [])
    e = {"question": rec["question"], "answers": targets if isinstance(targets, list) else [targets]}
    if isinstance(rec.get("output_type"), str):
        e["output_type"] = rec["output_type"]
    return e


def plan_files(root, subset, source, kind, wanted):
    """[(code, path)] in output order, the source language first."""
    if source not in LANGUAGE_CODES:
        raise InputProblem(f"--source: unknown MultiLoKo language '{source}' (one of {', '.join(sorted(LANGUAGE_CODES))})")
    src_dir = os.path.join(root, source)
    files = [(LANGUAGE_CODES[source], os.path.join(src_dir, f"{subset}.jsonl"))]
    if source == "english":
        prefix = f"{subset}_translated_{kind}_"
        found = {}
        if os.path.isdir(src_dir):
            for name in sorted(os.listdir(src_dir)):
                if name.startswith(prefix) and name.endswith(".jsonl"):
                    lang = name[len(prefix):-len(".jsonl")]
                    if lang not in LANGUAGE_CODES:
                        print(f"warning: {os.path.join(src_dir, name)}: unknown language '{lang}', ignored", file=sys.stderr)
                        continue
                    found[LANGUAGE_CODES[lang]] = os.path.join(src_dir, name)
        files += [(code, found[code]) for code in sorted(found, key=lambda c: NAMES[c])]
    else:
        files.append(("en", os.path.join(src_dir, f"{subset}_translated_{kind}_english.jsonl")))
    if wanted:
        have = {code for code, _ in files}
        for code in wanted:
            if code not in have:
                raise InputProblem(f"--languages: '{code}' has no file for --source {source} --translations {kind} "
                                   f"under {root} (available: {', '.join(c for c, _ in files)})")
        files = [(code, path) for code, path in files if code in wanted or code == files[0][0]]
    return files


def convert(root, out_path, subset, source, kind, wanted):
    files = plan_files(root, subset, source, kind, wanted)
    src_code, src_path = files[0]
    source_records = read_jsonl(src_path)
    translations = {code: keyed(read_jsonl(path)) for code, path in files[1:]}
    missing = {code: 0 for code in translations}
    used = {code: set() for code in translations}

    header = {"format": "moetrace-localize", "version": 1, "languages": [code for code, _ in files],
              "source": f"MultiLoKo {subset}, {source}-sourced, {kind} translations"}
    lines = [json.dumps(header, ensure_ascii=False)]
    for key, rec in keyed(source_records).items():
        mid, k = key
        langs = {src_code: entry(rec)}
        for code, table in translations.items():
            if key in table:
                langs[code] = entry(table[key])
                used[code].add(key)
            else:
                missing[code] += 1
        q = {"id": mid if k == 0 else f"{mid}#{k + 1}", "languages": langs, "meta": {"multiloko_id": mid}}
        lines.append(json.dumps(q, ensure_ascii=False))

    tmp = out_path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(("\n".join(lines) + "\n").encode("utf-8", errors="surrogateescape"))
    os.replace(tmp, out_path)

    print(f"{out_path}: {len(lines) - 1} questions in {len(files)} languages ({', '.join(c for c, _ in files)})",
          file=sys.stderr)
    for code in translations:
        extra = len(translations[code]) - len(used[code])
        if missing[code] or extra:
            print(f"  {code}: {missing[code]} questions without a translation, {extra} translations without a "
                  f"source question (dropped)", file=sys.stderr)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root", help="MultiLoKo benchmark_data folder")
    ap.add_argument("--out", required=True)
    ap.add_argument("--subset", default="dev")
    ap.add_argument("--source", default="english", help="MultiLoKo language whose questions are used")
    ap.add_argument("--translations", default="human", choices=["human", "machine"])
    ap.add_argument("--languages", default="", help="comma-separated codes to keep (the source language is always kept)")
    args = ap.parse_args(argv)
    wanted = [c for c in args.languages.split(",") if c]
    try:
        convert(args.root, args.out, args.subset, args.source, args.translations, wanted)
    except (InputProblem, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
