#include "results/report_data.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <sstream>

#include <fmt/format.h>

#include "results/tracing_layout.h"

namespace moetrace {
namespace {

namespace A = layout::attr;

std::string attr_or(h5::File& h, const std::string& o, const char* name, const std::string& fallback = "") {
  return h.exists(o) && h.has_attr(o, name) ? h.attr_string(o, name) : fallback;
}

std::vector<std::string> split_list(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, sep);) {
    const auto b = item.find_first_not_of(' ');
    if (b != std::string::npos) out.push_back(item.substr(b));
  }
  return out;
}

// Column c of row r of a stored [rows, cols] matrix, NaN outside it.
double cell(const h5::Array<double>& m, std::size_t r, std::size_t c) {
  if (m.shape.size() != 2 || r >= m.shape[0] || c >= m.shape[1]) return NAN;
  return m.data[r * m.shape[1] + c];
}

LayerSweepData read_sweep(ResultsFile& f) {
  h5::File& h = f.h5();
  const std::string g = layout::kLayerSweep, rescue = TracingResults::layer_sweep_table();
  LayerSweepData s;
  s.site = attr_or(h, rescue, A::kSite);
  s.window = h.has_attr(rescue, A::kWindow) ? h.attr_int(rescue, A::kWindow) : 1;
  s.selected_layer = static_cast<int>(h.attr_int(g, A::kSelectedLayer));
  s.discovery_mean = h.read_double(layout::kDiscoveryMean).data;
  if (h.exists(layout::kTiedLayers))
    for (auto v : h.read_int(layout::kTiedLayers).data) s.tied_layers.push_back(static_cast<int>(v));
  s.warnings = split_list(attr_or(h, g, A::kWarnings), '\n');
  if (h.has_attr(g, A::kTieTolerance)) s.tie_tolerance = h.attr_double(g, A::kTieTolerance);
  if (h.has_attr(g, A::kDiscoveryGap)) s.discovery_gap = h.attr_double(g, A::kDiscoveryGap);
  s.flat = h.has_attr(g, A::kCurveFlat) && h.attr_int(g, A::kCurveFlat) != 0;
  s.zero = h.has_attr(g, A::kCurveZero) && h.attr_int(g, A::kCurveZero) != 0;
  s.no_rescue = h.has_attr(g, A::kNoRescue) && h.attr_int(g, A::kNoRescue) != 0;
  return s;
}

void read_experts_by_layer(ResultsFile& f, ReportData& d) {
  h5::File& h = f.h5();
  if (!h.exists(layout::kExperts)) return;
  std::vector<int> layers;
  for (const std::string& child : h.children(layout::kExperts))
    if (child.rfind("layer_", 0) == 0 && h.exists(std::string(layout::kExperts) + "/" + child + "/validation")) {
      int l = 0;
      const char* b = child.data() + 6;
      const auto [end, ec] = std::from_chars(b, child.data() + child.size(), l);
      if (ec != std::errc() || end != child.data() + child.size())
        h5::fail_damaged(f.path(), std::string(layout::kExperts) + "/" + child, "its name is not layer_<number>");
      layers.push_back(l);
    }
  std::sort(layers.begin(), layers.end());
  for (int l : layers) {
    const std::string g = fmt::format("{}/layer_{}/validation", layout::kExperts, l);
    LayerExpertRow row;
    row.layer = l;
    row.best_expert = static_cast<int>(h.attr_int(g, A::kBestExpert));
    row.candidates = h.attr_int(g, A::kCandidates);
    row.clean_active = h.attr_int(g, A::kCleanActive);
    row.cases = h.attr_int(g, A::kCases);
    const auto s = f.read_summaries(g);
    row.rescue = summary_or_nan(s, measure::kExpertRescue);
    row.specificity = summary_or_nan(s, measure::kSpecificity);
    d.experts_by_layer.push_back(row);
  }
}

void read_robustness(ResultsFile& f, ReportData& d) {
  h5::File& h = f.h5();
  for (RobustnessGroup g : kRobustnessGroups) {
    const std::string group = std::string(layout::kRobustness) + "/" + robustness_group_name(g);
    for (const SummaryRecord& s : f.read_summaries(group)) {
      const std::string o = group + "/" + s.name;
      RobustnessRow r;
      r.group = g;
      r.rescue = s;
      r.selected_layer = h.attr_int(o, A::kSelectedLayer);
      if (h.has_attr(o, A::kMultiplier)) r.multiplier = h.attr_double(o, A::kMultiplier);
      if (h.has_attr(o, A::kSplitSeed)) r.split_seed = h.attr_int(o, A::kSplitSeed);
      if (h.has_attr(o, A::kThreshold)) r.threshold = h.attr_double(o, A::kThreshold);
      if (h.has_attr(o, A::kSelectedExpert)) {
        r.selected_expert = h.attr_int(o, A::kSelectedExpert);
        r.specificity_mean = h.attr_double(o, A::kSpecificityMean);
        r.specificity_ci_low = h.attr_double(o, A::kSpecificityCiLow);
        r.specificity_ci_high = h.attr_double(o, A::kSpecificityCiHigh);
      }
      d.robustness.push_back(r);
    }
  }
}

void read_case_rows(ResultsFile& f, ReportData& d, bool case_texts, const CaseTable& t) {
  h5::File& h = f.h5();
  const std::vector<std::string> relation =
      case_texts ? h.read_strings(std::string(layout::kCases) + "/relation_id") : std::vector<std::string>{};
  const std::size_t n = t.case_id.size();
  for (std::size_t size : {t.prompt.size(), t.subject.size(), t.true_object.size(), t.foil_object.size(),
                           t.split.size(), t.d_clean.size(), t.d_noised.size()})
    if (size != n) h5::fail_damaged(f.path(), layout::kCases, "its datasets disagree on the number of cases");
  if (case_texts && relation.size() != n)
    h5::fail_damaged(f.path(), layout::kCases, "its datasets disagree on the number of cases");
  const int lstar = d.sweep ? d.sweep->selected_layer : -1, estar = d.selected_expert;
  const std::string sweep = TracingResults::layer_sweep_table();
  const auto layer = lstar >= 0 && h.exists(sweep) ? f.read_matrix(sweep) : h5::Array<double>{};
  const std::string rescue_table = TracingResults::expert_table(lstar, ExpertTable::Rescue),
                    active_table = TracingResults::expert_table(lstar, ExpertTable::CleanActive);
  const bool experts = estar >= 0 && h.exists(rescue_table) && h.exists(active_table);
  const auto rescue = experts ? f.read_matrix(rescue_table) : h5::Array<double>{};
  const auto active = experts ? f.read_matrix(active_table) : h5::Array<double>{};
  const std::string controls = TracingResults::controls_table();
  const auto ctl = h.exists(controls) ? f.read_matrix(controls) : h5::Array<double>{};
  if (h.exists(controls)) d.control_columns = split_list(attr_or(h, controls, A::kColumns), ',');
  const std::string coalitions = TracingResults::coalitions_table();
  const auto coal = h.exists(coalitions) ? f.read_matrix(coalitions) : h5::Array<double>{};
  if (h.exists(coalitions)) d.coalition_names = split_list(attr_or(h, coalitions, A::kColumns), ',');
  for (std::size_t i = 0; i < n; ++i) {
    CaseRow r;
    r.case_id = t.case_id[i];
    r.split = t.split[i];
    if (case_texts) r.relation = relation[i];
    r.subject = t.subject[i];
    r.true_object = t.true_object[i];
    r.foil_object = t.foil_object[i];
    r.prompt = t.prompt[i];
    r.d_clean = t.d_clean[i];
    r.d_noised = t.d_noised[i];
    r.layer_rescue = cell(layer, i, static_cast<std::size_t>(std::max(lstar, 0)));
    if (experts) {
      r.expert_clean_active = cell(active, i, estar) != 0 && !std::isnan(cell(active, i, estar));
      r.expert_rescue = r.expert_clean_active ? cell(rescue, i, estar) : 0.0;  // the protocol's convention
    }
    for (std::size_t c = 0; c < kControlColumns; ++c) r.controls[c] = cell(ctl, i, c);
    for (std::size_t c = 0; c < d.coalition_names.size(); ++c) r.coalitions.push_back(cell(coal, i, c));
    d.cases.push_back(std::move(r));
  }
}

}  // namespace

ReportData read_report_data(const std::string& path, bool case_texts) {
  ResultsFile f(path, ResultsFile::Mode::Read);
  h5::File& h = f.h5();
  ReportData d;
  d.path = path;
  d.provenance = read_report_provenance(f);
  if (!h.exists(std::string(layout::kCases) + "/case_id")) return d;
  d.has_cases = true;
  const CaseTable cases = f.read_cases(layout::kCases);
  d.records_seen = h.has_attr(layout::kCases, A::kRecordsSeen) ? h.attr_int(layout::kCases, A::kRecordsSeen) : 0;
  d.noise_sigma = h.has_attr(layout::kCases, A::kNoiseSigma) ? h.attr_double(layout::kCases, A::kNoiseSigma) : NAN;
  if (h.exists(std::string(layout::kSkipped) + "/reason"))
    for (const std::string& r : h.read_strings(std::string(layout::kSkipped) + "/reason")) ++d.skipped[r];
  if (h.has_attr(layout::kLayerSweep, A::kSelectedLayer)) d.sweep = read_sweep(f);
  if (h.exists(layout::kExperts) && h.has_attr(layout::kExperts, A::kSelectedExpert)) {
    d.has_expert_selection = true;
    d.selected_expert = static_cast<int>(h.attr_int(layout::kExperts, A::kSelectedExpert));
    d.candidate_threshold = h.has_attr(layout::kExperts, A::kCandidateThreshold)
                                ? h.attr_double(layout::kExperts, A::kCandidateThreshold) : NAN;
    const std::string cand = layout::kCandidates;
    if (h.exists(cand))
      for (auto v : h.read_int(cand).data) d.candidates.push_back(static_cast<int>(v));
  }
  if (h.exists(layout::kValidation)) {
    if (h.has_attr(layout::kValidation, A::kCases)) d.validation_cases = h.attr_int(layout::kValidation, A::kCases);
    if (h.has_attr(layout::kValidation, A::kSelectedExpertCleanActive))
      d.validation_clean_active = h.attr_int(layout::kValidation, A::kSelectedExpertCleanActive);
  }
  d.validation = f.read_summaries(layout::kValidation);
  d.discovery = f.read_summaries(layout::kDiscovery);
  read_experts_by_layer(f, d);
  read_robustness(f, d);
  read_case_rows(f, d, case_texts, cases);
  return d;
}

}  // namespace moetrace
