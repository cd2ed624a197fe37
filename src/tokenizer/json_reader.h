#pragma once
// Fast reading of tokenizer.json: a SAX pass that streams the two big members, model.vocab and
// model.merges, into flat vectors instead of a JSON tree (a 151k-token vocabulary then loads in a
// fraction of a second); everything else becomes an ordinary nlohmann::json tree.
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace moetrace::tok {

struct TokenizerFile {
  nlohmann::json rest;  // the document without model.vocab and model.merges
  bool has_vocab = false, vocab_is_object = true;
  std::vector<std::pair<std::string, std::int64_t>> vocab;
  bool has_merges = false, merges_are_valid = true;
  std::string bad_merge;  // first malformed merge, for the error message
  // Each merge either as ("a b", "") when written as one string with no second part flag, or as
  // the two parts of a ["a", "b"] pair; `merge_is_pair` tells which.
  std::vector<std::pair<std::string, std::string>> merges;
  std::vector<bool> merge_is_pair;
};

// InputError naming `where` when text is not valid JSON.
TokenizerFile parse_tokenizer_json(std::string_view text, const std::string& where);

}  // namespace moetrace::tok
