#pragma once
// Byte-pair encoding as in Hugging Face tokenizers: the piece is split into characters, and the
// adjacent pair with the lowest merge rank (leftmost first among equal ranks) is merged until no
// merge applies. Serves both byte-level BPE (Qwen3, GPT-NeoX/OLMoE) and SentencePiece-style BPE
// with byte fallback (Llama / Mixtral). Results for short pieces are cached.
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "tokenizer/json_reader.h"
#include "tokenizer/model.h"
#include "tokenizer/vocab.h"

namespace moetrace::tok {

class BpeModel : public Model {
 public:
  // Reads a tokenizer.json "model" object of type BPE. Unsupported options (dropout,
  // continuing_subword_prefix, end_of_word_suffix) throw InputError naming the option.
  // `model` is the "model" object without vocab and merges, which come pre-read in `file`.
  BpeModel(const nlohmann::json& model, TokenizerFile& file, const std::string& where);

  void tokenize(std::string_view piece, std::vector<ModelToken>& out) const override;
  std::optional<std::int32_t> token_to_id(std::string_view token) const override { return vocab_.find(token); }
  const std::string* id_to_token(std::int32_t id) const override { return vocab_.token(id); }
  std::size_t vocab_size() const override { return vocab_.size(); }
  std::optional<std::int32_t> unk_id() const override { return unk_id_; }

 private:
  struct Merge {
    std::uint32_t rank;
    std::int32_t id;
  };
  static std::uint64_t key(std::int32_t a, std::int32_t b) {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(a)) << 32) | static_cast<std::uint32_t>(b);
  }
  static std::size_t hash_key(std::uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return static_cast<std::size_t>(k);
  }
  // Flat open-addressing table: pair of token ids -> merge.
  struct MergeSlot {
    std::uint64_t key = ~0ULL;
    Merge merge{};
  };
  const Merge* find_merge(std::int32_t a, std::int32_t b) const {
    const std::uint64_t k = key(a, b);
    for (std::size_t i = hash_key(k) & merge_mask_;; i = (i + 1) & merge_mask_) {
      const MergeSlot& s = merge_slots_[i];
      if (s.key == k) return &s.merge;
      if (s.key == ~0ULL) return nullptr;
    }
  }
  void run_bpe(std::string_view piece, std::vector<ModelToken>& out) const;

  Vocab vocab_;
  std::vector<MergeSlot> merge_slots_;
  std::size_t merge_mask_ = 0;
  std::optional<std::int32_t> unk_id_;
  bool byte_fallback_ = false;
  bool fuse_unk_ = false;
  bool ignore_merges_ = false;
  std::int32_t byte_ids_[256];  // <0xXX> ids for byte fallback, -1 where missing

  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<ModelToken>, StringHash, std::equal_to<>> cache_;
};

}  // namespace moetrace::tok
