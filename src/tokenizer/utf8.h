#pragma once
// Small UTF-8 helpers shared by the tokenizer stages. Strings are std::string holding UTF-8.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace moetrace::tok {

// Length in bytes of the UTF-8 sequence that starts with lead byte b (1 for invalid leads).
inline std::size_t utf8_len(unsigned char b) {
  if (b < 0x80) return 1;
  if ((b >> 5) == 0x6) return 2;
  if ((b >> 4) == 0xE) return 3;
  if ((b >> 3) == 0x1E) return 4;
  return 1;
}

// Decodes the code point at s[i] (s must be valid UTF-8) and advances i past it.
char32_t next_code_point(std::string_view s, std::size_t& i);

// Appends the UTF-8 encoding of cp to out.
void append_utf8(std::string& out, char32_t cp);

// Byte offset of the first invalid UTF-8 sequence in s, or npos when s is valid.
std::size_t find_invalid_utf8(std::string_view s);

// Decodes arbitrary bytes as UTF-8, replacing each maximal invalid subpart with U+FFFD (the
// WHATWG / Rust from_utf8_lossy convention).
std::string utf8_lossy(std::string_view bytes);

// Unicode White_Space (the set Rust's char::is_whitespace uses).
bool is_unicode_whitespace(char32_t cp);

// Letters, numbers, marks and '_' (used for added tokens with single_word).
bool is_word_char(char32_t cp);

// Number of code points in s (valid UTF-8).
std::size_t count_code_points(std::string_view s);

}  // namespace moetrace::tok
