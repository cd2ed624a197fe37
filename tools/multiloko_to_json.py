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

Few-shot templates (--templates FILE): MultiLoKo's <lang>/knowledge_fewshot.jsonl holds a few
solved examples per language (one JSON object a line: "question", the answer as "answer" or the
first of "targets" or "target", and "output_type"). For every language of the conversion (the same
--source, --translations and --languages selection) the examples of that language's folder become
its prompt template in moetrace's template syntax (docs/localize.md, "Prompt templates"), written
as a TOML [templates] table (language code -> template) for the localize config:

  Q: <example question> (<example output_type>)
  A: <example answer>
  <blank line, repeated for each example>
  Q: {question} ({output_type})
  A:

The labels are "Q:" and "A:" unless --labels gives a JSON file {"<code>": ["<question label>",
"<answer label>"], ...} (languages it lacks keep Q:/A:); --no-output-type leaves the
"(<output_type>)" hints out; --shots N uses the first N examples (default 5). Braces in the
examples are escaped ({{ }}); each answer ends its line, so the prompt teaches the model to end
its answer with a line feed, where decoding stops.

Usage:
  tools/multiloko_to_json.py BENCHMARK_DATA --out questions.jsonl [--templates templates.toml]
      [--subset dev] [--source english] [--translations human|machine] [--languages en,de,fr]
      [--shots 5] [--labels labels.json] [--no-output-type]
(at least one of --out and --templates).
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


def write_atomically(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


# ---- few-shot templates -------------------------------------------------------------------------

FEWSHOT_FILE = "knowledge_fewshot.jsonl"


def read_fewshot(path):
    """[(question, answer, output_type or None)] of a knowledge_fewshot.jsonl file, in file order."""
    if not os.path.isfile(path):
        raise InputProblem(f"{path}: not a file (the few-shot examples of this language)")
    out = []
    with open(path, "rb") as f:
        for n, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                raise InputProblem(f"{path}: line {n}: invalid UTF-8") from None
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputProblem(f"{path}: line {n}: not valid JSON: {e}") from None
            if not isinstance(rec, dict):
                raise InputProblem(f"{path}: line {n}: expected a JSON object")
            question = rec.get("question")
            if not isinstance(question, str) or not question.strip():
                raise InputProblem(f"{path}: line {n}: no non-blank string field 'question'")
            answer = rec.get("answer")
            if answer is None and isinstance(rec.get("targets"), list) and rec["targets"]:
                answer = rec["targets"][0]
            if answer is None:
                answer = rec.get("target")
            if isinstance(answer, (int, float)) and not isinstance(answer, bool):
                answer = str(answer)
            if not isinstance(answer, str) or not answer.strip():
                raise InputProblem(f"{path}: line {n}: no non-blank answer ('answer', 'targets' or 'target')")
            output_type = rec.get("output_type")
            if output_type is not None and not isinstance(output_type, str):
                raise InputProblem(f"{path}: line {n}: field 'output_type' must be a string")
            out.append((question.strip(), answer.strip(), output_type.strip() if output_type else None))
    if not out:
        raise InputProblem(f"{path}: no few-shot example")
    return out


def escape_braces(text):
    return text.replace("{", "{{").replace("}", "}}")


def one_line(text):
    """Line feeds inside an example would end the model's answer early: they become spaces."""
    return " ".join(text.replace("\r", "\n").split("\n")).strip()


def fewshot_template(examples, labels, with_type, path):
    q_label, a_label = labels
    parts = []
    for i, (question, answer, output_type) in enumerate(examples):
        if with_type and not output_type:
            raise InputProblem(f"{path}: example {i + 1} has no 'output_type' (or pass --no-output-type)")
        hint = f" ({escape_braces(one_line(output_type))})" if with_type else ""
        parts.append(f"{q_label} {escape_braces(one_line(question))}{hint}\n{a_label} {escape_braces(one_line(answer))}\n\n")
    parts.append(f"{q_label} {{question}}{' ({output_type})' if with_type else ''}\n{a_label}")
    return "".join(parts)


def toml_string(text):
    """A TOML basic string (one line; control characters escaped)."""
    out = ['"']
    for ch in text:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def read_labels(path):
    if not path:
        return {}
    try:
        with open(path, "rb") as f:
            table = json.loads(f.read().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputProblem(f"{path}: cannot read the labels: {e}") from None
    if not isinstance(table, dict):
        raise InputProblem(f"{path}: expected a JSON object of language code -> [question label, answer label]")
    for code, pair in table.items():
        if code not in NAMES:
            raise InputProblem(f"{path}: unknown language code '{code}'")
        if (not isinstance(pair, list) or len(pair) != 2 or not all(isinstance(x, str) and x.strip() for x in pair)
                or any("\n" in x or "\r" in x for x in pair)):
            raise InputProblem(f"{path}: '{code}': expected two non-blank one-line strings")
    return {code: (escape_braces(q.strip()), escape_braces(a.strip())) for code, (q, a) in table.items()}


def templates_text(root, files, shots, labels_path, with_type, origin):
    labels = read_labels(labels_path)
    lines = [f"# Few-shot prompt templates from MultiLoKo's {FEWSHOT_FILE} ({origin}),",
             f"# written by tools/multiloko_to_json.py: up to {shots} examples per language.",
             "[templates]"]
    for code, _ in files:
        path = os.path.join(root, NAMES[code], FEWSHOT_FILE)
        examples = read_fewshot(path)[:shots]
        tpl = fewshot_template(examples, labels.get(code, ("Q:", "A:")), with_type, path)
        lines.append(f"{code} = {toml_string(tpl)}")
    return ("\n".join(lines) + "\n").encode("utf-8")


def convert(root, out_path, subset, source, kind, wanted, templates=None):
    """Reads and checks everything first, then writes: an error leaves no file behind."""
    files = plan_files(root, subset, source, kind, wanted)
    tpl_text = None
    if templates:
        templates_path, shots, labels_path, with_type = templates
        tpl_text = templates_text(root, files, shots, labels_path, with_type,
                                  f"MultiLoKo {subset}, {source}-sourced, {kind} translations")
    if out_path:
        convert_questions(out_path, files, subset, source, kind)
    if tpl_text is not None:
        write_atomically(templates_path, tpl_text)
        print(f"{templates_path}: templates for {len(files)} languages ({', '.join(c for c, _ in files)})",
              file=sys.stderr)


def convert_questions(out_path, files, subset, source, kind):
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

    write_atomically(out_path, ("\n".join(lines) + "\n").encode("utf-8", errors="surrogateescape"))

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
    ap.add_argument("--out", help="question file to write (moetrace's format)")
    ap.add_argument("--templates", help="TOML [templates] snippet to write from the few-shot files")
    ap.add_argument("--shots", type=int, default=5, help="few-shot examples per template (>= 1)")
    ap.add_argument("--labels", help="JSON file: language code -> [question label, answer label]")
    ap.add_argument("--no-output-type", action="store_true", help="templates without the output-type hints")
    ap.add_argument("--subset", default="dev")
    ap.add_argument("--source", default="english", help="MultiLoKo language whose questions are used")
    ap.add_argument("--translations", default="human", choices=["human", "machine"])
    ap.add_argument("--languages", default="", help="comma-separated codes to keep (the source language is always kept)")
    args = ap.parse_args(argv)
    wanted = [c for c in args.languages.split(",") if c]
    if not args.out and not args.templates:
        ap.error("give --out, --templates or both")
    if args.shots < 1:
        ap.error("--shots must be >= 1")
    templates = (args.templates, args.shots, args.labels, not args.no_output_type) if args.templates else None
    try:
        convert(args.root, args.out, args.subset, args.source, args.translations, wanted, templates)
    except (InputProblem, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
