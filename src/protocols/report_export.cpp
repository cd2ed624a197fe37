// `moetrace report --format json|csv`: the report's numbers for pandas or R (fields: docs/report.md).
#include <cmath>

#include <fmt/format.h>
#include <fmt/ostream.h>
#include <nlohmann/json.hpp>

#include "protocols/report.h"
#include "protocols/report_format.h"
#include "protocols/report_provenance_format.h"

namespace moetrace {
namespace {

using json = nlohmann::ordered_json;  // fields in the documented order

json summary_json(const ReportData& d, const SummaryRecord& s, int split) {
  const auto deg = degenerate_reason(d, s, split);
  return {{"name", s.name},
          {"n", s.n},
          {"mean", json_number(s.mean)},
          {"ci_low", json_number(s.ci_low)},
          {"ci_high", json_number(s.ci_high)},
          {"frac_positive", json_number(s.frac_positive)},
          {"p_sign_flip", deg ? json(nullptr) : json_number(s.p_value)},
          {"degenerate", deg ? json(*deg) : json(nullptr)}};
}

json case_json(const ReportData& d, const CaseRow& c) {
  json j{{"case_id", c.case_id},       {"split", c.split == 0 ? "discovery" : "validation"},
         {"relation_id", c.relation},  {"subject", c.subject},
         {"true_object", c.true_object}, {"foil_object", c.foil_object},
         {"prompt", c.prompt},         {"d_clean", json_number(c.d_clean)},
         {"d_noised", json_number(c.d_noised)}, {"layer_rescue", json_number(c.layer_rescue)},
         {"expert_clean_active", c.expert_clean_active != 0}, {"expert_rescue", json_number(c.expert_rescue)}};
  for (std::size_t k = 0; k < d.control_columns.size() && k < kControlColumns; ++k) {
    const double v = c.controls[k];
    if (d.control_columns[k] == kGateMatchedExpertColumn)  // an expert index, not a measurement
      j[d.control_columns[k]] = std::isfinite(v) && v >= 0 ? json(static_cast<int>(v)) : json(nullptr);
    else
      j[d.control_columns[k]] = json_number(v);
  }
  for (std::size_t k = 0; k < d.coalition_names.size(); ++k)
    j["coalition_" + d.coalition_names[k]] = json_number(c.coalitions[k]);
  return j;
}

std::vector<std::string> summary_fields(const ReportData& d, const std::string& split_name, int split,
                                        const SummaryRecord& s) {
  const auto deg = degenerate_reason(d, s, split);
  return {split_name, s.name, std::to_string(s.n), csv_number(s.mean), csv_number(s.ci_low), csv_number(s.ci_high),
          csv_number(s.frac_positive), deg ? "" : csv_number(s.p_value), deg ? *deg : ""};
}

}  // namespace

void write_report_json(const ReportData& d, std::ostream& out) {
  json j;
  j["format"] = "moetrace-report/1";
  j["file"] = d.path;
  j["provenance"] = report_provenance_json(d.provenance);
  int disc = 0, val = 0;
  for (const CaseRow& c : d.cases) (c.split == 0 ? disc : val)++;
  j["cases"] = {{"usable", d.cases.size()}, {"discovery", disc}, {"validation", val},
                {"records_seen", d.records_seen}, {"noise_sigma", json_number(d.noise_sigma)},
                {"skipped", d.skipped}, {"gap_discovery", json_number(contrast_gap(d, 0))},
                {"gap_validation", json_number(contrast_gap(d, 1))}};
  j["layer_sweep"] = nullptr;
  if (d.sweep) {
    const LayerSweepData& s = *d.sweep;
    json means = json::array();
    for (double m : s.discovery_mean) means.push_back(json_number(m));
    j["layer_sweep"] = {{"site", s.site}, {"window", s.window}, {"selected_layer", s.selected_layer},
                        {"discovery_mean", means}, {"tied_layers", s.tied_layers},
                        {"tie_tolerance", s.tie_tolerance ? json_number(*s.tie_tolerance) : json(nullptr)},
                        {"flat", s.flat}, {"zero", s.zero}, {"no_rescue", s.no_rescue}, {"warnings", s.warnings}};
  }
  j["selection"] = {{"layer", d.sweep ? json(d.sweep->selected_layer) : json(nullptr)},
                    {"expert", d.selected_expert >= 0 ? json(d.selected_expert) : json(nullptr)},
                    {"candidates", d.candidates}, {"candidate_threshold", json_number(d.candidate_threshold)},
                    {"validation_cases", d.validation_cases},
                    {"validation_clean_active", d.validation_clean_active}};
  for (auto [key, rows, split] : {std::tuple{"validation", &d.validation, 1}, std::tuple{"discovery", &d.discovery, 0}}) {
    json a = json::array();
    for (const SummaryRecord& s : *rows) a.push_back(summary_json(d, s, split));
    j[key] = a;
  }
  json by_layer = json::array();
  for (const LayerExpertRow& r : d.experts_by_layer)
    by_layer.push_back({{"layer", r.layer}, {"best_expert", r.best_expert >= 0 ? json(r.best_expert) : json(nullptr)},
                        {"candidates", r.candidates}, {"clean_active", r.clean_active}, {"cases", r.cases},
                        {"rescue", summary_json(d, r.rescue, 1)}, {"specificity", summary_json(d, r.specificity, 1)}});
  j["experts_by_layer"] = by_layer;
  json robust = json::array();
  for (const RobustnessRow& r : d.robustness) {
    json row = summary_json(d, r.rescue, 1);
    row["group"] = robustness_group_name(r.group);
    row["selected_layer"] = r.selected_layer;
    if (r.selected_expert) {
      row["selected_expert"] = *r.selected_expert;
      row["specificity"] = {{"mean", json_number(r.specificity_mean)}, {"ci_low", json_number(r.specificity_ci_low)},
                            {"ci_high", json_number(r.specificity_ci_high)}};
    }
    robust.push_back(row);
  }
  j["robustness"] = robust;
  json cases = json::array();
  for (const CaseRow& c : d.cases) cases.push_back(case_json(d, c));
  j["case_rows"] = cases;
  out << j.dump(2) << "\n";
}

void write_report_csv(const ReportData& d, CsvTable table, std::ostream& out) {
  switch (table) {
    case CsvTable::Cases: {
      std::vector<std::string> head{"case_id", "split", "relation_id", "subject", "true_object", "foil_object",
                                    "d_clean", "d_noised", "layer_rescue", "expert_clean_active", "expert_rescue"};
      for (std::size_t k = 0; k < d.control_columns.size() && k < kControlColumns; ++k) head.push_back(d.control_columns[k]);
      for (const std::string& n : d.coalition_names) head.push_back("coalition_" + n);
      csv_row(out, head);
      for (const CaseRow& c : d.cases) {
        std::vector<std::string> f{std::to_string(c.case_id), c.split == 0 ? "discovery" : "validation", c.relation,
                                   c.subject, c.true_object, c.foil_object, csv_number(c.d_clean),
                                   csv_number(c.d_noised), csv_number(c.layer_rescue),
                                   std::to_string(c.expert_clean_active), csv_number(c.expert_rescue)};
        for (std::size_t k = 0; k < d.control_columns.size() && k < kControlColumns; ++k) f.push_back(csv_number(c.controls[k]));
        for (double v : c.coalitions) f.push_back(csv_number(v));
        csv_row(out, f);
      }
      return;
    }
    case CsvTable::Layers: {
      csv_row(out, {"layer", "discovery_mean", "tied", "selected"});
      if (!d.sweep) return;
      const LayerSweepData& s = *d.sweep;
      for (std::size_t l = 0; l < s.discovery_mean.size(); ++l) {
        const int li = static_cast<int>(l);
        const bool tied = std::find(s.tied_layers.begin(), s.tied_layers.end(), li) != s.tied_layers.end();
        csv_row(out, {std::to_string(l), csv_number(s.discovery_mean[l]), tied ? "1" : "0",
                      li == s.selected_layer ? "1" : "0"});
      }
      return;
    }
    case CsvTable::Summaries: {
      csv_row(out, {"split", "measure", "n", "mean", "ci_low", "ci_high", "frac_positive", "p_sign_flip", "degenerate"});
      for (const SummaryRecord& s : d.validation) csv_row(out, summary_fields(d, "validation", 1, s));
      for (const SummaryRecord& s : d.discovery) csv_row(out, summary_fields(d, "discovery", 0, s));
      return;
    }
    case CsvTable::ExpertsByLayer: {
      csv_row(out, {"layer", "best_expert", "candidates", "clean_active", "cases", "rescue_n", "rescue_mean",
                    "rescue_ci_low", "rescue_ci_high", "specificity_n", "specificity_mean", "specificity_ci_low",
                    "specificity_ci_high", "specificity_p_sign_flip"});
      for (const LayerExpertRow& r : d.experts_by_layer)
        csv_row(out, {std::to_string(r.layer), r.best_expert >= 0 ? std::to_string(r.best_expert) : "",
                      std::to_string(r.candidates), std::to_string(r.clean_active), std::to_string(r.cases),
                      std::to_string(r.rescue.n), csv_number(r.rescue.mean), csv_number(r.rescue.ci_low),
                      csv_number(r.rescue.ci_high), std::to_string(r.specificity.n), csv_number(r.specificity.mean),
                      csv_number(r.specificity.ci_low), csv_number(r.specificity.ci_high),
                      degenerate_reason(d, r.specificity, 1) ? "" : csv_number(r.specificity.p_value)});
      return;
    }
  }
}

}  // namespace moetrace
