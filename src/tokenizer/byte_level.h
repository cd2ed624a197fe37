#pragma once
// GPT-2's byte-to-unicode table: every byte 0..255 is represented by one printable code point
// (printable Latin-1 bytes by themselves, the rest by U+0100 onwards), so that byte-level BPE
// vocabularies are ordinary strings.
#include <array>
#include <string>
#include <string_view>

#include "tokenizer/normalized_string.h"

namespace moetrace::tok {

// UTF-8 of the code point that stands for byte b.
const std::array<std::string, 256>& byte_level_chars();
// The byte that code point cp stands for, or -1 when cp is not in the table.
int byte_level_byte(char32_t cp);
// Replaces every byte of s by its code point; each output character keeps its byte's alignment.
NormalizedString byte_level_encode(const NormalizedString& s);
// Maps a byte-level token back to its bytes; false when some character is not in the table.
bool byte_level_decode(std::string_view token, std::string& bytes_out);

}  // namespace moetrace::tok
