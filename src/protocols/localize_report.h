#pragma once
// `moetrace report` for a results file of `moetrace localize`: the protocol's tables as text, and
// the same numbers as JSON or CSV (docs/report.md "Localisation files").
#include <optional>
#include <ostream>
#include <string>

#include "results/localize_report_data.h"

namespace moetrace {

enum class LocalizeCsvTable { Buckets, Experts, Effects, Languages, Curve, Contrast };

// The table named `name` (buckets, experts, effects, languages, curve, contrast), or nothing.
std::optional<LocalizeCsvTable> parse_localize_csv_table(const std::string& name);

void print_localize_report(const LocalizeReportData& data, std::ostream& out);
void write_localize_report_json(const LocalizeReportData& data, std::ostream& out);
void write_localize_report_csv(const LocalizeReportData& data, LocalizeCsvTable table, std::ostream& out);

// "excludes zero" when the interval [ci_low, ci_high] lies wholly above or below 0, "includes zero"
// otherwise, "not computed" for a missing or NaN interval.
std::string interval_verdict(const SummaryRecord* s);

}  // namespace moetrace
