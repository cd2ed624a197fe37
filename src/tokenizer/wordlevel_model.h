#pragma once
// WordLevel: each pre-tokenised piece is one token, looked up whole in the vocabulary; pieces that
// are not in it become unk_token.
#include <nlohmann/json_fwd.hpp>

#include "tokenizer/json_reader.h"
#include "tokenizer/model.h"
#include "tokenizer/vocab.h"

namespace moetrace::tok {

class WordLevelModel : public Model {
 public:
  WordLevelModel(const nlohmann::json& model, TokenizerFile& file, const std::string& where);
  void tokenize(std::string_view piece, std::vector<ModelToken>& out) const override;
  std::optional<std::int32_t> token_to_id(std::string_view token) const override { return vocab_.find(token); }
  const std::string* id_to_token(std::int32_t id) const override { return vocab_.token(id); }
  std::size_t vocab_size() const override { return vocab_.size(); }
  std::optional<std::int32_t> unk_id() const override { return unk_id_; }

 private:
  Vocab vocab_;
  std::optional<std::int32_t> unk_id_;
  std::string unk_token_;
};

}  // namespace moetrace::tok
