#!/usr/bin/env python3
"""Writes the fuzzers' seed corpora into tools/fuzz/corpus/<target>/ (small files, committed).

Seeds: tiny safetensors files written here (every supported dtype, metadata, an empty tensor), the
fixture and demo config.json files, the demo tokenizer.json plus a byte-level BPE and a
SentencePiece-style BPE tokenizer, and the run configs in configs/. Run from anywhere:
    python3 tools/fuzz/make_seeds.py
"""
import json
import pathlib
import shutil
import struct

here = pathlib.Path(__file__).resolve().parent
root = here.parent.parent
corpus = here / "corpus"


def safetensors(tensors, metadata=None):
    """tensors: list of (name, dtype, shape, raw bytes), written in this order."""
    header, data, offset = {}, b"", 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        data += raw
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def write(target, name, content):
    d = corpus / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(content if isinstance(content, bytes) else content.encode())


def bf16(values):
    return b"".join(struct.pack("<f", v)[2:] for v in values)


def main():
    if corpus.exists():
        shutil.rmtree(corpus)
    write("safetensors", "three_dtypes.safetensors", safetensors([
        ("model.embed_tokens.weight", "BF16", [2, 3], bf16([0.5, -1, 2, 0.25, 3, -0.125])),
        ("model.norm.weight", "F32", [4], struct.pack("<4f", 1, 1, 1, 1)),
        ("lm_head.weight", "F16", [1, 2], struct.pack("<2e", 0.5, -2)),
    ], {"format": "pt"}))
    write("safetensors", "empty_and_scalar.safetensors", safetensors([
        ("a", "F32", [0, 7], b""),
        ("b", "BF16", [], bf16([1.5])),
    ]))
    write("safetensors", "no_metadata.safetensors", safetensors([("w", "F16", [2, 2], struct.pack("<4e", 1, 2, 3, 4))]))

    for m in ["mixtral-tiny", "qwen3moe-tiny", "olmoe-tiny"]:
        src = root.parent / "shared" / "fixtures" / m / "config.json"
        if src.exists():
            write("model_config", m + ".json", src.read_bytes())
    write("model_config", "demo.json", (root / "demo" / "model" / "config.json").read_bytes())

    write("tokenizer_json", "demo_wordlevel.json", (root / "demo" / "model" / "tokenizer.json").read_bytes())
    byte_chars = [chr(c) for c in range(ord("!"), ord("~") + 1)]
    vocab = {c: i for i, c in enumerate(byte_chars + ["\u0120", "Ġt", "he", "Ġthe", "in"])}
    write("tokenizer_json", "byte_level_bpe.json", json.dumps({
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": len(vocab), "content": "<|endoftext|>", "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True}],
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
             "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": ["Ġ t", "h e", "Ġt he", "i n"]},
    }, ensure_ascii=False))
    sp_vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        sp_vocab["<0x%02X>" % b] = 3 + b
    for t in ["\u2581", "a", "b", "P", "r", "i", "s", "\u2581a", "ab", "\u2581ab"]:
        sp_vocab[t] = len(sp_vocab)
    special = lambda i, c: {"id": i, "content": c, "single_word": False, "lstrip": False, "rstrip": False,
                            "normalized": False, "special": True}
    write("tokenizer_json", "sentencepiece_bpe.json", json.dumps({
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [special(0, "<unk>"), special(1, "<s>"), special(2, "</s>")],
        "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u2581"},
                                                           {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
        "pre_tokenizer": None,
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                           "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "}, {"type": "ByteFallback"},
            {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "fuse_unk": True, "byte_fallback": True,
                  "vocab": sp_vocab, "merges": [["\u2581", "a"], ["a", "b"], ["\u2581a", "b"]]},
    }, ensure_ascii=False))

    for toml in sorted((root / "configs").glob("*.toml")):
        write("run_config", toml.name, toml.read_bytes())


if __name__ == "__main__":
    main()
