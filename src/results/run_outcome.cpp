#include "results/run_outcome.h"

#include <cmath>

#include "results/report_data.h"
#include "results/results_file.h"
#include "results/tracing_results.h"
#include "util/error.h"

namespace moetrace {

RunOutcome read_run_outcome(const std::string& path, const std::vector<double>& multipliers) {
  const ReportData report = read_report_data(path, false);
  RunOutcome o;
  ResultsFile file(path, ResultsFile::Mode::Read);
  o.config_text = file.stored_config_text();
  for (double m : multipliers) {
    const std::string name = TracingResults::scan_table(m);
    if (o.scans.count(m) || !file.has(name)) continue;
    const auto a = file.read_matrix(name);
    if (a.shape.size() != 2 || a.shape[1] != 2) fail_input("{}: {} is not a [records, 2] table", path, name);
    const std::vector<bool> done = file.done_rows(name);
    auto& rows = o.scans[m];
    for (std::size_t r = 0; r < a.shape[0]; ++r)
      rows.emplace_back(r < done.size() && done[r] ? a.data[2 * r] : NAN, r < done.size() && done[r] ? a.data[2 * r + 1] : NAN);
  }
  if (report.sweep) o.selected_layer = report.sweep->selected_layer;
  o.has_expert_selection = report.has_expert_selection;
  o.selected_expert = report.selected_expert;
  for (const CaseRow& c : report.cases) {
    o.expert_active.push_back(c.expert_clean_active);
    const double g = c.controls[kControlGateMatchedExpert];
    o.gate_matched.push_back(std::isfinite(g) ? static_cast<int>(g) : -1);
  }
  for (const RobustnessRow& r : report.robustness)
    if (r.group == RobustnessGroup::Splits && r.split_seed) o.split_layers[*r.split_seed] = static_cast<int>(r.selected_layer);
  return o;
}

}  // namespace moetrace
