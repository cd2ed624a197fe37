#include "results/tracing_results.h"

#include <fmt/format.h>

#include "results/tracing_layout.h"

namespace moetrace {
namespace {

namespace A = layout::attr;

std::int64_t i64(int v) { return static_cast<std::int64_t>(v); }

std::string join(const std::vector<std::string>& items, const char* sep) {
  std::string out;
  for (const std::string& s : items) out += (out.empty() ? "" : sep) + s;
  return out;
}

std::string experts_group(int layer) { return fmt::format("{}/layer_{}", layout::kExperts, layer); }

}  // namespace

const char* robustness_group_name(RobustnessGroup g) {
  switch (g) {
    case RobustnessGroup::NoiseMultiplier: return "noise_multiplier";
    case RobustnessGroup::Filter: return "filter";
    case RobustnessGroup::Splits: return "splits";
  }
  return "";
}

std::string TracingResults::scan_table(double m) { return fmt::format("{}/multiplier_{}", layout::kScan, m); }
std::string TracingResults::layer_sweep_table() { return std::string(layout::kLayerSweep) + "/rescue"; }
std::string TracingResults::expert_table(int layer, ExpertTable t) {
  const char* name = t == ExpertTable::CleanActive ? "clean_active" : t == ExpertTable::CleanWeight ? "clean_weight" : "rescue";
  return experts_group(layer) + "/" + name;
}
std::string TracingResults::controls_table() { return std::string(layout::kControls) + "/values"; }
std::string TracingResults::coalitions_table() { return std::string(layout::kCoalitions) + "/rescue"; }
std::string TracingResults::heatmap_table(const std::string& site) { return std::string(layout::kHeatmap) + "/" + site; }
std::string TracingResults::robustness_table(RobustnessGroup g, const std::string& variant) {
  return fmt::format("{}/{}/{}/layer_rescue", layout::kRobustness, robustness_group_name(g), variant);
}

bool TracingResults::has_cases() const { return file_.has(std::string(layout::kCases) + "/case_id"); }

std::vector<std::int64_t> TracingResults::stored_case_ids() const { return file_.read_cases(layout::kCases).case_id; }

void TracingResults::write_cases(const CaseTable& t, const std::vector<std::pair<std::int64_t, std::string>>& skipped) {
  file_.write_cases(layout::kCases, t);
  std::vector<std::int64_t> ids;
  std::vector<std::string> reasons;
  for (const auto& [id, r] : skipped) {
    ids.push_back(id);
    reasons.push_back(r);
  }
  file_.write_skips(layout::kSkipped, ids, reasons);
}

void TracingResults::write_scan_counts(std::int64_t records_seen, double noise_sigma, const std::map<std::string, int>& skipped) {
  file_.set_attr(layout::kCases, A::kRecordsSeen, records_seen);
  file_.set_attr(layout::kCases, A::kNoiseSigma, noise_sigma);
  for (const auto& [reason, count] : skipped) file_.set_attr(layout::kSkipped, reason, i64(count));
}

void TracingResults::write_layer_sweep_settings(const std::string& site, std::int64_t window) {
  file_.set_attr(layer_sweep_table(), A::kSite, site);
  file_.set_attr(layer_sweep_table(), A::kWindow, window);
}

void TracingResults::write_layer_choice(const LayerSweepData& d) {
  const std::string g = layout::kLayerSweep;
  file_.write_vector(layout::kDiscoveryMean, d.discovery_mean);
  file_.write_ints(layout::kTiedLayers, d.tied_layers);
  file_.set_attr(g, A::kSelectedLayer, i64(d.selected_layer));
  file_.set_attr(g, A::kTieTolerance, d.tie_tolerance.value_or(NAN));
  file_.set_attr(g, A::kDiscoveryGap, d.discovery_gap.value_or(NAN));
  file_.set_attr(g, A::kCurveFlat, i64(d.flat));
  file_.set_attr(g, A::kCurveZero, i64(d.zero));
  file_.set_attr(g, A::kNoRescue, i64(d.no_rescue));
  file_.set_attr(g, A::kWarnings, join(d.warnings, "\n"));
}

void TracingResults::write_expert_selection(const ExpertSelectionData& d) {
  file_.write_ints(layout::kCandidates, d.candidates);
  file_.set_attr(layout::kExperts, A::kSelectedLayer, i64(d.layer));
  file_.set_attr(layout::kExperts, A::kSelectedExpert, i64(d.expert));
  file_.set_attr(layout::kExperts, A::kCandidateThreshold, d.candidate_threshold);
}

void TracingResults::write_layer_expert(const LayerExpertRow& r) {
  const std::string g = experts_group(r.layer) + "/validation";
  file_.write_summary(g, r.rescue);
  file_.write_summary(g, r.specificity);
  file_.set_attr(g, A::kBestExpert, i64(r.best_expert));
  file_.set_attr(g, A::kCandidates, r.candidates);
  file_.set_attr(g, A::kCleanActive, r.clean_active);
  file_.set_attr(g, A::kCases, r.cases);
}

void TracingResults::write_control_columns(const std::vector<std::string>& coalitions, int layer) {
  file_.set_attr(controls_table(), A::kColumns,
                 fmt::format("sampled_controls_mean, {}, gate_matched_rescue, equal_norm_selected, equal_norm_control",
                             kGateMatchedExpertColumn));
  file_.set_attr(coalitions_table(), A::kColumns, join(coalitions, ", "));
  file_.set_attr(coalitions_table(), A::kLayer, i64(layer));
}

void TracingResults::write_split_statistics(const SplitStatistics& s) {
  const std::string g = s.split == 0 ? layout::kDiscovery : layout::kValidation;
  for (const SummaryRecord& r : s.summaries) file_.write_summary(g, r);
  file_.set_attr(g, A::kSelectedLayer, i64(s.selected_layer));
  file_.set_attr(g, A::kSelectedExpert, i64(s.selected_expert));
  file_.set_attr(g, A::kCases, s.cases);
  file_.set_attr(g, A::kSelectedExpertCleanActive, s.selected_expert_clean_active);
}

void TracingResults::write_heatmap_cases(const std::vector<int>& case_rows) {
  file_.write_ints(layout::kHeatmapCaseIndex, case_rows);
}

void TracingResults::write_heatmap_labels(const std::vector<std::string>& token_texts, int layers, int tokens) {
  const std::string texts = layout::kHeatmapTokenText;
  file_.write_strings(texts, token_texts);
  file_.set_attr(texts, A::kTokens, i64(tokens));
  for (const char* site : kHeatmapSites) {  // rows are [layers x tokens], flattened
    file_.set_attr(heatmap_table(site), A::kLayers, i64(layers));
    file_.set_attr(heatmap_table(site), A::kTokens, i64(tokens));
  }
}

void TracingResults::write_robustness(const RobustnessRow& r) {
  const std::string g = fmt::format("{}/{}", layout::kRobustness, robustness_group_name(r.group));
  const std::string o = g + "/" + r.rescue.name;
  file_.write_summary(g, r.rescue);
  if (r.split_seed) file_.set_attr(o, A::kSplitSeed, *r.split_seed);
  if (r.threshold) file_.set_attr(o, A::kThreshold, *r.threshold);
  file_.set_attr(o, A::kSelectedLayer, r.selected_layer);
  if (r.multiplier) file_.set_attr(o, A::kMultiplier, *r.multiplier);
  if (!r.selected_expert) return;
  file_.set_attr(o, A::kSelectedExpert, *r.selected_expert);
  file_.set_attr(o, A::kSpecificityMean, r.specificity_mean);
  file_.set_attr(o, A::kSpecificityCiLow, r.specificity_ci_low);
  file_.set_attr(o, A::kSpecificityCiHigh, r.specificity_ci_high);
}

}  // namespace moetrace
