#include "util/json_input.h"

#include <cmath>
#include <unordered_set>
#include <utility>
#include <vector>

#include "util/error.h"
#include "util/message.h"

namespace moetrace {

using nlohmann::json;

nlohmann::json parse_json_input(std::string_view text, const std::string& origin) {
  // One set of keys per open object: a key seen twice in the same object is an error.
  std::vector<std::unordered_set<std::string>> open;
  auto callback = [&](int depth, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::array_start:
        if (depth >= kMaxJsonDepth) fail_input("{}: JSON nested deeper than {} levels", origin, kMaxJsonDepth);
        break;
      case json::parse_event_t::object_start:
        if (depth >= kMaxJsonDepth) fail_input("{}: JSON nested deeper than {} levels", origin, kMaxJsonDepth);
        open.emplace_back();
        break;
      case json::parse_event_t::object_end:
        if (!open.empty()) open.pop_back();
        break;
      case json::parse_event_t::key:
        if (!open.empty() && !open.back().insert(parsed.get<std::string>()).second)
          fail_input("{}: the key \"{}\" appears twice in the same object", origin,
                     truncate_for_message(parsed.get<std::string>()));
        break;
      default: break;
    }
    return true;
  };
  try {
    return json::parse(text.begin(), text.end(), callback);
  } catch (const json::parse_error& e) {
    fail_input("{}: not valid JSON: {}", origin, e.what());
  } catch (const json::exception& e) {
    // out_of_range for numbers such as 1e400 or a 400-digit integer, and the like.
    fail_input("{}: unreadable JSON: {}", origin, e.what());
  }
}

std::string json_for_message(const nlohmann::json& v) {
  return truncate_for_message(v.dump(-1, ' ', false, json::error_handler_t::replace));
}

std::int64_t json_integer(const json& v, std::int64_t lo, std::int64_t hi, std::string_view origin,
                          std::string_view field) {
  bool ok = false;
  std::int64_t x = 0;
  if (v.is_number_unsigned()) {
    const auto u = v.get<std::uint64_t>();
    ok = std::in_range<std::int64_t>(u);
    x = ok ? static_cast<std::int64_t>(u) : 0;
  } else if (v.is_number_integer()) {
    x = v.get<std::int64_t>();
    ok = true;
  }
  if (!ok || x < lo || x > hi)
    fail_input("{}: field '{}' must be an integer in [{}, {}], got {}", origin, field, lo, hi, json_for_message(v));
  return x;
}

double json_finite(const json& v, double lo, double hi, std::string_view origin, std::string_view field) {
  const double x = v.is_number() ? v.get<double>() : std::nan("");
  if (!(std::isfinite(x) && x >= lo && x <= hi))
    fail_input("{}: field '{}' must be a finite number in [{}, {}], got {}", origin, field, lo, hi,
               json_for_message(v));
  return x;
}

bool json_bool(const json& v, std::string_view origin, std::string_view field) {
  if (!v.is_boolean()) fail_input("{}: field '{}' must be true or false, got {}", origin, field, json_for_message(v));
  return v.get<bool>();
}

std::string json_string(const json& v, std::string_view origin, std::string_view field) {
  if (!v.is_string()) fail_input("{}: field '{}' must be a string, got {}", origin, field, json_for_message(v));
  return v.get<std::string>();
}

}  // namespace moetrace
