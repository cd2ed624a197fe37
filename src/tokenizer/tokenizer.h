#pragma once
// moetrace::Tokenizer: Hugging Face tokenizer.json tokenizers in C++.
//
// Supported (see docs/tokenizer.md): byte-level BPE with a Split regex pre-tokenizer and NFC
// (Qwen3), byte-level BPE with the GPT-2 regex inside ByteLevel (GPT-NeoX / OLMoE), SentencePiece
// style BPE with byte fallback and Prepend/Replace normalisers (Llama / Mixtral), WordLevel with
// whitespace pre-tokenisation; added and special tokens; TemplateProcessing (BOS); decoding.
//
// OFFSETS: Encoding::offsets are BYTE offsets into the UTF-8 string given to encode(), half-open
// [begin, end). A token always covers whole characters of the input (a byte-level token that holds
// part of a multi-byte character reports that whole character). Special tokens added by the
// post-processor have {0, 0}.
//
// Thread safety: a Tokenizer may be shared between threads (the BPE cache is locked).
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/encoding.h"

namespace moetrace {

class Tokenizer {
 public:
  // `path` is a tokenizer.json file or a model folder holding one; tokenizer_config.json next to
  // it is read when present. Throws InputError naming the file and, for unsupported features, the
  // feature.
  static Tokenizer from_path(const std::filesystem::path& path);
  // From JSON text (tokenizer_config may be empty). `where` names the source in errors.
  static Tokenizer from_json_text(const std::string& tokenizer_json, const std::string& tokenizer_config,
                                  const std::string& where);

  // Encodes UTF-8 text (InputError on invalid UTF-8). add_special_tokens applies the
  // post-processor's template (e.g. Mixtral's BOS); protocol runs use false.
  Encoding encode(std::string_view text, bool add_special_tokens = true) const;
  std::vector<std::int32_t> encode_ids(std::string_view text, bool add_special_tokens = true) const {
    return encode(text, add_special_tokens).ids;
  }
  // InputError for ids outside the vocabulary.
  std::string decode(const std::vector<std::int32_t>& ids, bool skip_special_tokens = false) const;

  std::optional<std::int32_t> token_to_id(std::string_view token) const;  // added tokens included
  std::optional<std::string> id_to_token(std::int32_t id) const;
  std::size_t vocab_size() const;  // one past the largest id, added tokens included
  // The model's unk_token id (text outside the vocabulary maps to it), if it has one.
  std::optional<std::int32_t> unk_id() const;
  const std::string& model_type() const;  // "BPE" or "WordLevel"
  const std::string& source() const;      // file it was loaded from

 struct Impl;  // defined in tokenizer.cpp

 private:
  std::shared_ptr<const Impl> impl_;
};

}  // namespace moetrace
