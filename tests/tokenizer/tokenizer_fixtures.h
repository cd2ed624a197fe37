#pragma once
// Small hand-written tokenizer.json documents for the unit tests.
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "tokenizer/byte_level.h"
#include "tokenizer/tokenizer.h"

namespace moetrace::test_tok {

using json = nlohmann::json;

inline Tokenizer make(const json& j, const std::string& where = "test tokenizer.json") {
  return Tokenizer::from_json_text(j.dump(), "", where);
}

// WordLevel with the Whitespace pre-tokenizer (a demo-model tokenizer).
inline json wordlevel_json() {
  return json::parse(R"({
    "version": "1.0", "truncation": null, "padding": null,
    "added_tokens": [{"id": 0, "content": "[UNK]", "special": true, "normalized": false,
                      "lstrip": false, "rstrip": false, "single_word": false}],
    "normalizer": null,
    "pre_tokenizer": {"type": "Whitespace"},
    "post_processor": null, "decoder": null,
    "model": {"type": "WordLevel", "vocab": {"[UNK]": 0, "the": 1, "cat": 2, "sat": 3, ".": 4, "é": 5, "Zoë": 6},
              "unk_token": "[UNK]"}
  })");
}

// Byte-level vocabulary: the 256 byte characters (ids 0..255) plus the given merges, each merged
// token taking the next id.
inline json byte_level_model(const std::vector<std::pair<std::string, std::string>>& merges) {
  json vocab = json::object();
  const auto& chars = tok::byte_level_chars();
  for (int b = 0; b < 256; ++b) vocab[chars[b]] = b;
  json m = json::array();
  int next = 256;
  for (const auto& [a, b] : merges) {
    m.push_back(json::array({a, b}));
    if (!vocab.contains(a + b)) vocab[a + b] = next++;
  }
  return json{{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", nullptr},
              {"end_of_word_suffix", nullptr}, {"fuse_unk", false}, {"byte_fallback", false},
              {"vocab", vocab}, {"merges", m}};
}

inline const std::vector<std::pair<std::string, std::string>>& english_merges() {
  static const std::vector<std::pair<std::string, std::string>> m = {
      {"t", "h"}, {"th", "e"}, {"\u0120", "th"}, {"\u0120th", "e"}, {"c", "a"}, {"ca", "t"}, {"\u0120", "cat"},
      {"\u0120", "P"}, {"a", "r"}, {"\u0120P", "ar"}, {"i", "s"}, {"\u0120Par", "is"}, {"\u0120", "i"}, {"\u0120i", "n"},
      {"'", "m"}, {"'", "T"}, {"\u00c3", "\u00a9"}};
  return m;
}

// GPT-NeoX / OLMoE style: ByteLevel pre-tokenizer with its own GPT-2 regex, no Split.
inline json neox_json() {
  json j = {{"version", "1.0"}, {"truncation", nullptr}, {"padding", nullptr}, {"added_tokens", json::array()},
            {"normalizer", {{"type", "NFC"}}},
            {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}}},
            {"post_processor", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", true}}},
            {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}}},
            {"model", byte_level_model(english_merges())}};
  j["added_tokens"].push_back({{"id", 1000}, {"content", "<|endoftext|>"}, {"special", true}, {"normalized", false},
                               {"lstrip", false}, {"rstrip", false}, {"single_word", false}});
  return j;
}

// Qwen3 style: NFC, Split with the Qwen regex, ByteLevel without regex.
inline json qwen_style_json() {
  json j = neox_json();
  j["pre_tokenizer"] = json::parse(R"({"type": "Sequence", "pretokenizers": [
      {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
       "behavior": "Isolated", "invert": false},
      {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}]})");
  return j;
}

// Llama / Mixtral style SentencePiece BPE with byte fallback.
inline json sentencepiece_json() {
  json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}};
  for (int b = 0; b < 256; ++b) vocab[fmt::format("<0x{:02X}>", b)] = 3 + b;
  int next = 259;
  for (const char* t : {"\u2581", "a", "b", "c", "P", "r", "i", "s", "\u00e9"}) vocab[t] = next++;
  const std::vector<std::pair<std::string, std::string>> merges = {
      {"\u2581", "a"}, {"a", "b"}, {"\u2581a", "b"}, {"\u2581", "P"}, {"a", "r"}, {"\u2581P", "ar"},
      {"i", "s"}, {"\u2581Par", "is"}, {"\u2581", "\u2581"}};
  json m = json::array();
  for (const auto& [a, b] : merges) {
    m.push_back(a + " " + b);
    if (!vocab.contains(a + b)) vocab[a + b] = next++;
  }
  return json{
      {"version", "1.0"}, {"truncation", nullptr}, {"padding", nullptr},
      {"added_tokens", json::parse(R"([
        {"id": 0, "content": "<unk>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
        {"id": 1, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
        {"id": 2, "content": "</s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}])")},
      {"normalizer", json::parse(R"({"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u2581"},
                                     {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]})")},
      {"pre_tokenizer", nullptr},
      {"post_processor", json::parse(R"({"type": "TemplateProcessing",
          "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
          "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                   {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
          "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}})")},
      {"decoder", json::parse(R"({"type": "Sequence", "decoders": [
          {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "}, {"type": "ByteFallback"},
          {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]})")},
      {"model", {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", "<unk>"}, {"continuing_subword_prefix", nullptr},
                 {"end_of_word_suffix", nullptr}, {"fuse_unk", true}, {"byte_fallback", true},
                 {"vocab", vocab}, {"merges", m}}}};
}

}  // namespace moetrace::test_tok
