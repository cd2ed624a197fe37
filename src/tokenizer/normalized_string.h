#pragma once
// A piece of text in the middle of the tokenizer pipeline, together with where each of its bytes
// came from in the caller's original string. Every byte of `text` carries the half-open byte range
// [start, end) of the original UTF-8 input it was produced from, so that the offsets of a token
// are the union of the ranges of its bytes, whatever normalisers and pre-tokenisers did.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace moetrace::tok {

struct NormalizedString {
  std::string text;
  std::vector<std::uint32_t> start, end;  // one entry per byte of text, in original byte offsets

  // Identity alignment: text[i] came from original byte base + i.
  static NormalizedString from_original(std::string_view s, std::size_t base);

  std::size_t size() const { return text.size(); }
  bool empty() const { return text.empty(); }
  NormalizedString slice(std::size_t b, std::size_t e) const;
  // Appends bytes that all came from the original range [os, oe).
  void append(std::string_view bytes, std::uint32_t os, std::uint32_t oe);
  // Appends bytes [b, e) of other with their alignment.
  void append_from(const NormalizedString& other, std::size_t b, std::size_t e);
};

}  // namespace moetrace::tok
