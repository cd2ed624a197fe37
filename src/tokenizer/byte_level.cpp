#include "tokenizer/byte_level.h"

#include <vector>

#include "tokenizer/utf8.h"

namespace moetrace::tok {
namespace {
struct Tables {
  std::array<std::string, 256> chars;
  std::array<char32_t, 256> cps{};
  std::vector<int> reverse;  // indexed by code point
  Tables() {
    std::array<bool, 256> direct{};
    for (int b = '!'; b <= '~'; ++b) direct[b] = true;
    for (int b = 0xA1; b <= 0xAC; ++b) direct[b] = true;
    for (int b = 0xAE; b <= 0xFF; ++b) direct[b] = true;
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) cps[b] = direct[b] ? static_cast<char32_t>(b) : next++;
    reverse.assign(next, -1);
    for (int b = 0; b < 256; ++b) {
      append_utf8(chars[b], cps[b]);
      reverse[cps[b]] = b;
    }
  }
};
const Tables& tables() {
  static const Tables t;
  return t;
}
}  // namespace

const std::array<std::string, 256>& byte_level_chars() { return tables().chars; }

int byte_level_byte(char32_t cp) {
  const auto& r = tables().reverse;
  return cp < r.size() ? r[cp] : -1;
}

NormalizedString byte_level_encode(const NormalizedString& s) {
  const auto& chars = tables().chars;
  NormalizedString out;
  out.text.reserve(s.size() * 2);
  out.start.reserve(s.size() * 2);
  out.end.reserve(s.size() * 2);
  for (std::size_t i = 0; i < s.size(); ++i) {
    const std::string& c = chars[static_cast<unsigned char>(s.text[i])];
    out.text.append(c);
    for (std::size_t k = 0; k < c.size(); ++k) {
      out.start.push_back(s.start[i]);
      out.end.push_back(s.end[i]);
    }
  }
  return out;
}

bool byte_level_decode(std::string_view token, std::string& bytes_out) {
  std::size_t i = 0;
  const std::size_t mark = bytes_out.size();
  while (i < token.size()) {
    const int b = byte_level_byte(next_code_point(token, i));
    if (b < 0) {
      bytes_out.resize(mark);
      return false;
    }
    bytes_out.push_back(static_cast<char>(b));
  }
  return true;
}

}  // namespace moetrace::tok
