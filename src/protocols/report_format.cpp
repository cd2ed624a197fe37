#include "protocols/report_format.h"

#include <cmath>

#include <fmt/format.h>
#include <fmt/ostream.h>

namespace moetrace {

nlohmann::ordered_json json_number(double v) { return std::isfinite(v) ? nlohmann::ordered_json(v) : nlohmann::ordered_json(nullptr); }

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char ch : s) out += ch == '"' ? std::string("\"\"") : std::string(1, ch);
  return out + "\"";
}

std::string csv_number(double v) { return std::isfinite(v) ? fmt::format("{}", v) : ""; }

void csv_row(std::ostream& out, const std::vector<std::string>& fields) {
  for (std::size_t i = 0; i < fields.size(); ++i) fmt::print(out, "{}{}", i ? "," : "", csv_field(fields[i]));
  fmt::print(out, "\n");
}

}  // namespace moetrace
