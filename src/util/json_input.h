#pragma once
// Reading JSON input files (config.json, model.safetensors.index.json, safetensors headers,
// tokenizer_config.json) as hostile input: every library exception becomes an InputError naming
// the file, duplicate keys are an error (nlohmann::json would silently keep the last one), and
// fields are read through checked getters that name the field and refuse what does not fit
// (1.5 where an integer belongs, 4294967304 for an int, NaN or 1e400 for a float).
#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace moetrace {

// Deeper nesting than this is refused (readers, and dump() for messages, recurse per level).
inline constexpr int kMaxJsonDepth = 128;

// Parses `text`; InputError "<origin>: ..." for invalid JSON, numbers out of range, duplicate keys
// and nesting deeper than kMaxJsonDepth.
nlohmann::json parse_json_input(std::string_view text, const std::string& origin);

// `v` as an integer in [lo, hi]: a JSON integer (not 1.5, not "3"); InputError naming `field` otherwise.
std::int64_t json_integer(const nlohmann::json& v, std::int64_t lo, std::int64_t hi, std::string_view origin,
                          std::string_view field);
// `v` as a finite number in [lo, hi] (NaN never passes).
double json_finite(const nlohmann::json& v, double lo, double hi, std::string_view origin, std::string_view field);
bool json_bool(const nlohmann::json& v, std::string_view origin, std::string_view field);
std::string json_string(const nlohmann::json& v, std::string_view origin, std::string_view field);

// A JSON value quoted for an error message (dumped, then truncated).
std::string json_for_message(const nlohmann::json& v);

}  // namespace moetrace
