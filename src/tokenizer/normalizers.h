#pragma once
// tokenizer.json "normalizer": Unicode normal forms (utf8proc), Prepend, Replace, Strip and Sequence.
// Each keeps the byte alignment of NormalizedString up to date.
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "tokenizer/normalized_string.h"

namespace moetrace::tok {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void normalize(NormalizedString& s) const = 0;
  // Convenience for strings without alignment (used to check added tokens).
  std::string normalize_text(std::string_view s) const;
};

// Builds the normaliser described by a tokenizer.json "normalizer" object (null gives nullptr).
// `where` names the file for error messages; unsupported types throw InputError naming the type.
std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& j, const std::string& where);

}  // namespace moetrace::tok
