#pragma once
// PCRE2 (UTF + Unicode properties, JIT-compiled where available) for the regexes of tokenizer.json:
// Split patterns, the GPT-2 ByteLevel pattern, Replace normalisers and decoders.
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace moetrace::tok {

class Regex {
 public:
  // Throws InputError naming `where` and PCRE2's message when the pattern does not compile.
  Regex(const std::string& pattern, const std::string& where);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // All non-overlapping matches [begin, end) from left to right (empty matches are skipped).
  // `text` must be valid UTF-8.
  std::vector<std::pair<std::size_t, std::size_t>> find_all(std::string_view text) const;
  const std::string& pattern() const { return pattern_; }
  bool jit() const { return jit_; }

 private:
  std::string pattern_;
  void* code_ = nullptr;  // pcre2_code*
  bool jit_ = false;
};

}  // namespace moetrace::tok
