#pragma once
// `moetrace report`: the paper-style tables of a results file, as plain text.
#include <ostream>
#include <string>

namespace moetrace {

void print_report(const std::string& results_path, std::ostream& out);

}  // namespace moetrace
