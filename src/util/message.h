#pragma once
// Values quoted in error messages come from input and may be huge (a 10 MB prompt, a 400-digit
// number): quote them through `truncate_for_message`, which keeps the start and says how much
// was left out.
#include <cstddef>
#include <string>
#include <string_view>

namespace moetrace {

// `s` itself when at most `max_bytes` long; otherwise its first bytes (cut at a UTF-8 character
// boundary) followed by "... (N bytes)".
std::string truncate_for_message(std::string_view s, std::size_t max_bytes = 120);

// The current time as ISO 8601 in UTC ("2026-12-06T18:30:00Z"), as results files and weight stores record it.
std::string utc_now();

}  // namespace moetrace
