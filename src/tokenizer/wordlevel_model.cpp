#include "tokenizer/wordlevel_model.h"

#include <nlohmann/json.hpp>

#include "util/error.h"
#include "util/message.h"

namespace moetrace::tok {

WordLevelModel::WordLevelModel(const nlohmann::json& m, TokenizerFile& file, const std::string& where) {
  if (!file.has_vocab) fail_input("{}: WordLevel model has no \"vocab\"", where);
  if (!file.vocab_is_object) fail_input("{}: model \"vocab\" must be an object of token -> id", where);
  vocab_.load(std::move(file.vocab), where);
  if (m.contains("unk_token") && m["unk_token"].is_string()) {
    unk_token_ = m["unk_token"].get<std::string>();
    unk_id_ = vocab_.find(unk_token_);
  }
}

void WordLevelModel::tokenize(std::string_view piece, std::vector<ModelToken>& out) const {
  if (piece.empty()) return;
  const auto end = static_cast<std::uint32_t>(piece.size());
  if (auto id = vocab_.find(piece)) {
    out.push_back({*id, 0, end});
  } else if (unk_id_) {
    out.push_back({*unk_id_, 0, end});
  } else {
    fail_input("WordLevel: \"{}\" is not in the vocabulary and the unk_token \"{}\" is missing from it",
               truncate_for_message(piece), truncate_for_message(unk_token_));
  }
}

}  // namespace moetrace::tok
