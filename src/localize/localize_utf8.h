#pragma once
// UTF-8 checks shared by the question loader and the answer normaliser (utf8proc's rules: no
// overlong forms, no surrogates, nothing above U+10FFFF).
#include <cstddef>
#include <string>
#include <string_view>

namespace moetrace::localize {

// Byte offset of the first invalid UTF-8 sequence in `s`, or npos when it is all valid.
std::size_t find_invalid_utf8(std::string_view s);

// `s` with each byte that does not start a valid sequence replaced by U+FFFD.
std::string utf8_lossy(std::string_view s);

}  // namespace moetrace::localize
