#pragma once
// `moetrace report`: the paper-style tables of a results file, as plain text, and the same numbers
// as JSON or CSV for pandas / R (docs/report.md).
#include <optional>
#include <ostream>
#include <string>

#include "results/report_data.h"

namespace moetrace {

// A measure is degenerate when its mean and both ends of its 95% interval lie within
// kNoiseTolerance x the clean-noised gap of its cases (mean |d_clean - d_noised|): its values are
// float rounding, not an effect, and a p-value would only rank rounding errors (docs/statistics.md).
inline constexpr double kNoiseTolerance = 1e-6;

// Mean |d_clean - d_noised| over the cases of one split (0 discovery, 1 validation).
double contrast_gap(const ReportData& d, int split);
// Why the summary `s` of `split` is degenerate ("degenerate: ..."), or nothing when it is not.
std::optional<std::string> degenerate_reason(const ReportData& d, const SummaryRecord& s, int split);
// A value with enough significant digits to show its size: "+0.123", "-4.560e-08", "n/a" for NaN.
std::string format_value(double v);

void print_report(const std::string& results_path, std::ostream& out);
void print_report(const ReportData& data, std::ostream& out);

enum class CsvTable { Cases, Layers, Summaries, ExpertsByLayer };
void write_report_json(const ReportData& data, std::ostream& out);
void write_report_csv(const ReportData& data, CsvTable table, std::ostream& out);

}  // namespace moetrace
