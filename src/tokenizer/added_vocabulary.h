#pragma once
// Added tokens (tokenizer.json "added_tokens"): found in the raw input before normalisation, longest
// match first from left to right, honouring lstrip / rstrip (the token absorbs the whitespace on
// that side) and single_word (the match must not touch a word character).
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/vocab.h"

namespace moetrace::tok {

struct AddedToken {
  std::int32_t id = -1;
  std::string content;
  bool single_word = false, lstrip = false, rstrip = false, normalized = false, special = false;
};

// A run of the input: either ordinary text or one added token.
struct Section {
  std::uint32_t begin, end;   // original byte range (an added token's range includes stripped whitespace)
  std::int32_t added_id = -1; // id of the added token, -1 for ordinary text
};

class AddedVocabulary {
 public:
  void add(const AddedToken& t);
  std::vector<Section> split(std::string_view text) const;
  std::optional<std::int32_t> find(std::string_view content) const;
  const AddedToken* by_id(std::int32_t id) const;
  const std::vector<AddedToken>& tokens() const { return tokens_; }
  bool empty() const { return tokens_.empty(); }

 private:
  std::vector<AddedToken> tokens_;
  std::unordered_map<std::string, std::size_t, StringHash, std::equal_to<>> by_content_;
  std::unordered_map<std::int32_t, std::size_t> by_id_;
  std::vector<std::size_t> by_first_byte_[256];  // indices into tokens_, longest first
};

}  // namespace moetrace::tok
