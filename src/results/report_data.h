#pragma once
// Everything `moetrace report` shows, read from a results file in one place (only src/results
// knows the layout): the text report and the JSON / CSV exports render this.
#include <cmath>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "results/report_provenance.h"
#include "results/results_file.h"
#include "results/tracing_results.h"

namespace moetrace {

// One usable case with its values at the selected layer and expert (NaN where not computed).
struct CaseRow {
  std::int64_t case_id = 0;
  int split = 0;
  std::string relation, subject, true_object, foil_object, prompt;
  double d_clean = 0, d_noised = 0, layer_rescue = NAN;
  int expert_clean_active = 0;
  double expert_rescue = NAN;
  double controls[kControlColumns] = {NAN, NAN, NAN, NAN, NAN};  // the controls table's columns (ControlColumn)
  std::vector<double> coalitions;
};

struct ReportData {
  std::string path;
  ReportProvenance provenance;
  // cases
  bool has_cases = false;
  std::int64_t records_seen = 0;
  double noise_sigma = NAN;
  std::map<std::string, int> skipped;
  std::vector<CaseRow> cases;
  std::vector<std::string> coalition_names;
  std::vector<std::string> control_columns;
  // selection
  std::optional<LayerSweepData> sweep;
  int selected_expert = -1;
  bool has_expert_selection = false;
  std::vector<int> candidates;
  double candidate_threshold = NAN;
  std::int64_t validation_cases = 0, validation_clean_active = 0;
  std::vector<SummaryRecord> validation, discovery;
  std::vector<LayerExpertRow> experts_by_layer;
  std::vector<RobustnessRow> robustness;
};

// `case_texts`: also read the per-case strings the tables do not need (relation ids), for the
// JSON / CSV exports; the text report leaves them out.
ReportData read_report_data(const std::string& path, bool case_texts = true);

}  // namespace moetrace
