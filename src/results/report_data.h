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

namespace moetrace {

struct LayerSweepData {
  std::string site;
  std::int64_t window = 1;
  int selected_layer = -1;
  std::vector<double> discovery_mean;
  std::vector<int> tied_layers;          // empty in files written before the tie rule
  std::vector<std::string> warnings;     // flat / zero / tie / near-tie, as logged by the run
  std::optional<double> tie_tolerance, discovery_gap;
  bool flat = false, zero = false, no_rescue = false;
};

// mode = "all_layers": the best candidate of one traced layer and its validation statistics.
struct LayerExpertRow {
  int layer = 0, best_expert = -1;
  std::int64_t candidates = 0, clean_active = 0, cases = 0;
  SummaryRecord rescue, specificity;
};

struct RobustnessRow {
  std::string group;  // noise_multiplier, filter or splits
  SummaryRecord rescue;
  std::int64_t selected_layer = -1;
  std::optional<std::int64_t> selected_expert;
  double specificity_mean = 0, specificity_ci_low = 0, specificity_ci_high = 0;
};

// One usable case with its values at the selected layer and expert (NaN where not computed).
struct CaseRow {
  std::int64_t case_id = 0;
  int split = 0;
  std::string relation, subject, true_object, foil_object, prompt;
  double d_clean = 0, d_noised = 0, layer_rescue = NAN;
  int expert_clean_active = 0;
  double expert_rescue = NAN;
  double controls[5] = {NAN, NAN, NAN, NAN, NAN};  // /experts/controls/values columns
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
