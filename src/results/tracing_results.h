#pragma once
// The results file of `moetrace run` (docs/results.md; names in tracing_layout.h): the only code
// that knows where the tracing protocol's datasets and attributes live. Per-case tables are
// ResultsFile matrices (float64, a done flag per row), filled by the row executors through the
// names below; everything else is written here from plain records, which the report reads back
// (report_data.h) in the same types.
#include <cmath>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "results/results_file.h"

namespace moetrace {

// Names of the summary records (ResultsFile::write_summary) under /validation and /discovery.
namespace measure {
inline constexpr const char* kLayerRescue = "layer_rescue";
inline constexpr const char* kLayerRescueNormalized = "layer_rescue_normalized";
inline constexpr const char* kExpertRescue = "expert_rescue";
inline constexpr const char* kSpecificity = "specificity";
inline constexpr const char* kSpecificityGateMatched = "specificity_gate_matched";
inline constexpr const char* kSpecificityEqualNorm = "specificity_equal_norm";
inline std::string coalition(const std::string& set) { return "coalition_" + set; }
}  // namespace measure

// Columns of the controls table ([cases, kControlColumns]), named in its `columns` attribute.
enum ControlColumn : int {
  kControlSampled = 0,          // sampled controls' mean rescue
  kControlGateMatchedExpert,    // the gate-matched expert (an index)
  kControlGateMatched,          // its rescue
  kControlEqualNormSelected,    // equal-norm rescue of e*
  kControlEqualNormControl,     // equal-norm rescue of the gate-matched control
  kControlColumns
};
inline constexpr const char* kGateMatchedExpertColumn = "gate_matched_expert";

// The three per-expert tables of a traced layer ([cases, experts] each).
enum class ExpertTable { CleanActive, CleanWeight, Rescue };
// The robustness groups (/robustness/<group>/<variant>).
enum class RobustnessGroup { NoiseMultiplier, Filter, Splits };
inline constexpr RobustnessGroup kRobustnessGroups[] = {RobustnessGroup::NoiseMultiplier, RobustnessGroup::Filter,
                                                        RobustnessGroup::Splits};
const char* robustness_group_name(RobustnessGroup g);
// The heat-map sites, in the order of a heat-map row.
inline constexpr const char* kHeatmapSites[] = {"hidden", "attn", "moe"};

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

struct ExpertSelectionData {
  int layer = -1, expert = -1;
  std::vector<int> candidates;
  double candidate_threshold = NAN;
};

// mode = "all_layers": the best candidate of one traced layer and its validation statistics.
struct LayerExpertRow {
  int layer = 0, best_expert = -1;
  std::int64_t candidates = 0, clean_active = 0, cases = 0;
  SummaryRecord rescue, specificity;
};

// The held-out statistics of one split at (l*, e*).
struct SplitStatistics {
  int split = 1;  // 0 discovery, 1 validation
  std::vector<SummaryRecord> summaries;
  int selected_layer = -1, selected_expert = -1;
  std::int64_t cases = 0, selected_expert_clean_active = 0;
};

struct RobustnessRow {
  RobustnessGroup group = RobustnessGroup::NoiseMultiplier;
  SummaryRecord rescue;  // its name is the variant's
  std::int64_t selected_layer = -1;
  std::optional<double> multiplier;                    // noise_multiplier
  std::optional<std::int64_t> split_seed;              // splits
  std::optional<double> threshold;                     // splits
  std::optional<std::int64_t> selected_expert;         // splits
  double specificity_mean = 0, specificity_ci_low = 0, specificity_ci_high = 0;  // splits
};

class TracingResults {
 public:
  explicit TracingResults(ResultsFile& file) : file_(file) {}
  ResultsFile& file() { return file_; }

  // Row tables (ResultsFile matrices), by name.
  static std::string scan_table(double noise_multiplier);  // [records in scan order, 2]
  static std::string layer_sweep_table();                  // [cases, layers]
  static std::string expert_table(int layer, ExpertTable t);
  static std::string controls_table();                     // [cases, kControlColumns]
  static std::string coalitions_table();                   // [cases, coalitions]
  static std::string heatmap_table(const std::string& site);  // [cases, layers x tokens]
  static std::string robustness_table(RobustnessGroup g, const std::string& variant);  // [cases, layers]

  // Cases: written once; a resumed run compares its case ids with the stored ones.
  bool has_cases() const;
  std::vector<std::int64_t> stored_case_ids() const;
  void write_cases(const CaseTable& t, const std::vector<std::pair<std::int64_t, std::string>>& skipped_cases);
  void write_scan_counts(std::int64_t records_seen, double noise_sigma, const std::map<std::string, int>& skipped);

  void write_layer_sweep_settings(const std::string& site, std::int64_t window);
  void write_layer_choice(const LayerSweepData& d);  // all but site and window
  void write_expert_selection(const ExpertSelectionData& d);
  void write_layer_expert(const LayerExpertRow& r);
  void write_control_columns(const std::vector<std::string>& coalitions, int layer);
  void write_split_statistics(const SplitStatistics& s);
  void write_heatmap_cases(const std::vector<int>& case_rows);
  // Each token's text, [cases x tokens] flattened, and every site's shape.
  void write_heatmap_labels(const std::vector<std::string>& token_texts, int layers, int tokens);
  void write_robustness(const RobustnessRow& r);
  void complete() { file_.complete(); }
  void flush() { file_.flush(); }

 private:
  ResultsFile& file_;
};

}  // namespace moetrace
