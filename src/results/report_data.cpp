#include "results/report_data.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <sstream>

#include <fmt/format.h>

namespace moetrace {
namespace {

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
  const std::string g = layout::kLayerSweep, rescue = g + "/rescue";
  LayerSweepData s;
  s.site = attr_or(h, rescue, "site");
  s.window = h.has_attr(rescue, "window") ? h.attr_int(rescue, "window") : 1;
  s.selected_layer = static_cast<int>(h.attr_int(g, "selected_layer"));
  s.discovery_mean = h.read_double(g + "/discovery_mean").data;
  if (h.exists(g + "/tied_layers"))
    for (auto v : h.read_int(g + "/tied_layers").data) s.tied_layers.push_back(static_cast<int>(v));
  s.warnings = split_list(attr_or(h, g, "warnings"), '\n');
  if (h.has_attr(g, "tie_tolerance")) s.tie_tolerance = h.attr_double(g, "tie_tolerance");
  if (h.has_attr(g, "discovery_gap")) s.discovery_gap = h.attr_double(g, "discovery_gap");
  s.flat = h.has_attr(g, "curve_flat") && h.attr_int(g, "curve_flat") != 0;
  s.zero = h.has_attr(g, "curve_zero") && h.attr_int(g, "curve_zero") != 0;
  s.no_rescue = h.has_attr(g, "no_rescue") && h.attr_int(g, "no_rescue") != 0;
  return s;
}

SummaryRecord summary_or_nan(const std::vector<SummaryRecord>& v, const std::string& name) {
  for (const auto& s : v)
    if (s.name == name) return s;
  SummaryRecord r;
  r.name = name;
  r.mean = r.ci_low = r.ci_high = r.frac_positive = r.p_value = NAN;
  return r;
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
    row.best_expert = static_cast<int>(h.attr_int(g, "best_expert"));
    row.candidates = h.attr_int(g, "candidates");
    row.clean_active = h.attr_int(g, "clean_active");
    row.cases = h.attr_int(g, "cases");
    const auto s = f.read_summaries(g);
    row.rescue = summary_or_nan(s, "expert_rescue");
    row.specificity = summary_or_nan(s, "specificity");
    d.experts_by_layer.push_back(row);
  }
}

void read_robustness(ResultsFile& f, ReportData& d) {
  h5::File& h = f.h5();
  for (const char* name : {"noise_multiplier", "filter", "splits"}) {
    const std::string group = std::string(layout::kRobustness) + "/" + name;
    for (const SummaryRecord& s : f.read_summaries(group)) {
      const std::string o = group + "/" + s.name;
      RobustnessRow r;
      r.group = name;
      r.rescue = s;
      r.selected_layer = h.attr_int(o, "selected_layer");
      if (h.has_attr(o, "selected_expert")) {
        r.selected_expert = h.attr_int(o, "selected_expert");
        r.specificity_mean = h.attr_double(o, "specificity_mean");
        r.specificity_ci_low = h.attr_double(o, "specificity_ci_low");
        r.specificity_ci_high = h.attr_double(o, "specificity_ci_high");
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
  const std::string sweep = std::string(layout::kLayerSweep) + "/rescue";
  const auto layer = lstar >= 0 && h.exists(sweep) ? f.read_matrix(sweep) : h5::Array<double>{};
  const std::string eg = fmt::format("{}/layer_{}", layout::kExperts, lstar);
  const bool experts = estar >= 0 && h.exists(eg + "/rescue") && h.exists(eg + "/clean_active");
  const auto rescue = experts ? f.read_matrix(eg + "/rescue") : h5::Array<double>{};
  const auto active = experts ? f.read_matrix(eg + "/clean_active") : h5::Array<double>{};
  const std::string controls = std::string(layout::kControls) + "/values";
  const auto ctl = h.exists(controls) ? f.read_matrix(controls) : h5::Array<double>{};
  if (h.exists(controls)) d.control_columns = split_list(attr_or(h, controls, "columns"), ',');
  const std::string coalitions = std::string(layout::kCoalitions) + "/rescue";
  const auto coal = h.exists(coalitions) ? f.read_matrix(coalitions) : h5::Array<double>{};
  if (h.exists(coalitions)) d.coalition_names = split_list(attr_or(h, coalitions, "columns"), ',');
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
    for (std::size_t c = 0; c < 5; ++c) r.controls[c] = cell(ctl, i, c);
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
  d.records_seen = h.has_attr(layout::kCases, "records_seen") ? h.attr_int(layout::kCases, "records_seen") : 0;
  d.noise_sigma = h.has_attr(layout::kCases, "noise_sigma") ? h.attr_double(layout::kCases, "noise_sigma") : NAN;
  if (h.exists(std::string(layout::kSkipped) + "/reason"))
    for (const std::string& r : h.read_strings(std::string(layout::kSkipped) + "/reason")) ++d.skipped[r];
  if (h.has_attr(layout::kLayerSweep, "selected_layer")) d.sweep = read_sweep(f);
  if (h.exists(layout::kExperts) && h.has_attr(layout::kExperts, "selected_expert")) {
    d.has_expert_selection = true;
    d.selected_expert = static_cast<int>(h.attr_int(layout::kExperts, "selected_expert"));
    d.candidate_threshold = h.has_attr(layout::kExperts, "candidate_threshold")
                                ? h.attr_double(layout::kExperts, "candidate_threshold") : NAN;
    const std::string cand = std::string(layout::kExperts) + "/candidates";
    if (h.exists(cand))
      for (auto v : h.read_int(cand).data) d.candidates.push_back(static_cast<int>(v));
  }
  if (h.exists(layout::kValidation)) {
    if (h.has_attr(layout::kValidation, "cases")) d.validation_cases = h.attr_int(layout::kValidation, "cases");
    if (h.has_attr(layout::kValidation, "selected_expert_clean_active"))
      d.validation_clean_active = h.attr_int(layout::kValidation, "selected_expert_clean_active");
  }
  d.validation = f.read_summaries(layout::kValidation);
  d.discovery = f.read_summaries(layout::kDiscovery);
  read_experts_by_layer(f, d);
  read_robustness(f, d);
  read_case_rows(f, d, case_texts, cases);
  return d;
}

}  // namespace moetrace
