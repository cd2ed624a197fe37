#include "tokenizer/normalized_string.h"

namespace moetrace::tok {

NormalizedString NormalizedString::from_original(std::string_view s, std::size_t base) {
  NormalizedString n;
  n.text.assign(s);
  n.start.resize(s.size());
  n.end.resize(s.size());
  // Each byte maps to its whole character so that a token never ends inside a character.
  std::size_t i = 0;
  while (i < s.size()) {
    std::size_t len = 1;
    const auto b = static_cast<unsigned char>(s[i]);
    if (b >= 0xC0) len = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : 2;
    if (i + len > s.size()) len = s.size() - i;
    for (std::size_t k = 0; k < len; ++k) {
      n.start[i + k] = static_cast<std::uint32_t>(base + i);
      n.end[i + k] = static_cast<std::uint32_t>(base + i + len);
    }
    i += len;
  }
  return n;
}

NormalizedString NormalizedString::slice(std::size_t b, std::size_t e) const {
  NormalizedString n;
  n.append_from(*this, b, e);
  return n;
}

void NormalizedString::append(std::string_view bytes, std::uint32_t os, std::uint32_t oe) {
  text.append(bytes);
  start.insert(start.end(), bytes.size(), os);
  end.insert(end.end(), bytes.size(), oe);
}

void NormalizedString::append_from(const NormalizedString& o, std::size_t b, std::size_t e) {
  text.append(o.text, b, e - b);
  start.insert(start.end(), o.start.begin() + b, o.start.begin() + e);
  end.insert(end.end(), o.end.begin() + b, o.end.begin() + e);
}

}  // namespace moetrace::tok
