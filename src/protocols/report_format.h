#pragma once
// The field formats both reports (tracing and localize) share in their JSON and CSV exports
// (docs/report.md).
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace moetrace {

// A finite number, or null.
nlohmann::ordered_json json_number(double v);
// RFC 4180: a field holding a comma, quote or line break quoted, its quotes doubled.
std::string csv_field(const std::string& s);
// Numbers round-trip ({} is the shortest exact form); NaN is an empty field (pandas reads NaN).
std::string csv_number(double v);
// One CSV line of the fields, each through csv_field.
void csv_row(std::ostream& out, const std::vector<std::string>& fields);

}  // namespace moetrace
