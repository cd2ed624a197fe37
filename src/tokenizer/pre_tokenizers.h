#pragma once
// tokenizer.json "pre_tokenizer": Split (all five delimiter behaviours, invert), ByteLevel (with or
// without the GPT-2 regex, add_prefix_space), Whitespace, WhitespaceSplit, Metaspace and Sequence.
// A pre-tokenizer turns the pieces of one section of text into smaller pieces; the model then
// tokenises each piece on its own.
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "tokenizer/normalized_string.h"

namespace moetrace::tok {

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // `first_section` is true for the section that starts the input (Metaspace prepend_scheme "first").
  virtual void pre_tokenize(std::vector<NormalizedString>& pieces, bool first_section) const = 0;
};

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& j, const std::string& where);

}  // namespace moetrace::tok
