#include "protocols/report.h"

#include <cmath>
#include <map>

#include <fmt/format.h>
#include <fmt/ostream.h>

#include "protocols/report_provenance_format.h"

namespace moetrace {
namespace {

std::string interval(const SummaryRecord& s) {
  if (std::isnan(s.mean)) return "n/a";
  return fmt::format("{} [{}, {}]", format_value(s.mean), format_value(s.ci_low), format_value(s.ci_high));
}

const SummaryRecord* find(const std::vector<SummaryRecord>& v, const std::string& name) {
  for (const auto& s : v)
    if (s.name == name) return &s;
  return nullptr;
}

void table(std::ostream& out, const ReportData& d, int split, const std::string& title,
           const std::vector<SummaryRecord>& rows, const std::vector<std::pair<std::string, std::string>>& order) {
  fmt::print(out, "\n{}\n", title);
  fmt::print(out, "  {:<34} {:>5}  {:<38} {:>7}  {:>9}\n", "measure", "n", "mean [95% bootstrap CI]", "frac>0", "p (flip)");
  for (const auto& [name, label] : order) {
    const SummaryRecord* s = find(rows, name);
    if (!s) continue;
    const auto degenerate = degenerate_reason(d, *s, split);
    fmt::print(out, "  {:<34} {:>5}  {:<38} {:>7.3f}  {}\n", label, s->n, interval(*s), s->frac_positive,
               degenerate ? *degenerate : fmt::format("{:>9.4f}", s->p_value));
  }
}

void print_sweep(std::ostream& out, const LayerSweepData& s) {
  fmt::print(out, "\nLayer sweep (site {}, window {}): mean rescue on discovery cases by layer\n", s.site, s.window);
  auto tied = [&](int l) { return std::find(s.tied_layers.begin(), s.tied_layers.end(), l) != s.tied_layers.end(); };
  for (std::size_t l = 0; l < s.discovery_mean.size(); ++l) {
    const int li = static_cast<int>(l);
    const char* mark = li == s.selected_layer ? "   <- selected" : (tied(li) ? "   (tied)" : "");
    fmt::print(out, "  layer {:>3}  {:>11}{}\n", l, format_value(s.discovery_mean[l]), mark);
  }
  if (s.tie_tolerance)
    fmt::print(out, "  tie rule: layers within {:g} x max|mean| of the best are tied; the earliest is selected\n",
               *s.tie_tolerance);
  for (const std::string& w : s.warnings) fmt::print(out, "  WARNING: {}\n", w);
}

void print_experts_by_layer(std::ostream& out, const ReportData& d) {
  if (d.experts_by_layer.empty()) return;
  fmt::print(out, "\nExperts by layer (mode all_layers): best candidate per layer, chosen on discovery cases;\n"
                  "validation rescue and specificity vs sampled controls with 95% bootstrap intervals\n");
  fmt::print(out, "  {:>5}  {:>6}  {:>5}  {:>9}  {:<38} {:<38}\n", "layer", "expert", "cand.", "active", "rescue",
             "specificity");
  for (const LayerExpertRow& r : d.experts_by_layer) {
    const std::string e = r.best_expert >= 0 ? fmt::format("E{:03d}", r.best_expert) : "-";
    const auto deg = degenerate_reason(d, r.specificity, 1);
    fmt::print(out, "  {:>5}  {:>6}  {:>5}  {:>9}  {:<38} {:<38}{}\n", r.layer, e, r.candidates,
               fmt::format("{}/{}", r.clean_active, r.cases), interval(r.rescue), interval(r.specificity),
               r.layer == (d.sweep ? d.sweep->selected_layer : -1) ? "  <- selected layer" : (deg ? "  " + *deg : ""));
  }
}

}  // namespace

std::string format_value(double v) {
  if (std::isnan(v)) return "n/a";
  if (v == 0) return "0";
  const double a = std::abs(v);
  if (a >= 1e-3 && a < 1e5) return fmt::format("{:+.3f}", v);
  return fmt::format("{:+.3e}", v);
}

double contrast_gap(const ReportData& d, int split) {
  double sum = 0;
  int n = 0;
  for (const CaseRow& c : d.cases)
    if (c.split == split && std::isfinite(c.d_clean - c.d_noised)) {
      sum += std::abs(c.d_clean - c.d_noised);
      ++n;
    }
  return n ? sum / n : NAN;
}

std::optional<std::string> degenerate_reason(const ReportData& d, const SummaryRecord& s, int split) {
  if (std::isnan(s.mean) || s.n == 0) return std::nullopt;
  const double gap = contrast_gap(d, split);
  if (!std::isfinite(gap)) return std::nullopt;
  const double noise = kNoiseTolerance * gap;
  const double size = std::max({std::abs(s.mean), std::abs(s.ci_low), std::abs(s.ci_high)});
  if (!(size <= noise)) return std::nullopt;
  if (s.name == measure::kSpecificityEqualNorm) {
    // Both equal-norm rescues at noise level: the patches change nothing, i.e. the control's
    // patch (which sets the norm) is ~0.
    bool patches_zero = true;
    for (const CaseRow& c : d.cases)
      if (c.split == split)
        for (int k : {kControlEqualNormSelected, kControlEqualNormControl})
          if (!std::isnan(c.controls[k]) && std::abs(c.controls[k]) > noise) patches_zero = false;
    if (patches_zero) return std::string("degenerate: control patch norm ~0");
  }
  return fmt::format("degenerate: |values| <= {:.0e} x gap", kNoiseTolerance);
}

void print_report(const std::string& path, std::ostream& out) { print_report(read_report_data(path), out); }

void print_report(const ReportData& d, std::ostream& out) {
  fmt::print(out, "moetrace report: {}\n", d.path);
  print_report_provenance(d.provenance, out);
  if (!d.has_cases) {
    fmt::print(out, "  no cases yet\n");
    return;
  }
  int disc = 0, val = 0;
  for (const CaseRow& c : d.cases) (c.split == 0 ? disc : val)++;
  fmt::print(out, "\nCases: {} usable ({} discovery, {} validation) of {} records seen; noise sigma {:.4f}\n",
             d.cases.size(), disc, val, d.records_seen, d.noise_sigma);
  for (const auto& [reason, n] : d.skipped) fmt::print(out, "  skipped {:>6}  {}\n", n, reason);

  if (!d.sweep) return;
  const LayerSweepData& s = *d.sweep;
  const int lstar = s.selected_layer;
  print_sweep(out, s);

  const int estar = d.selected_expert;
  if (estar >= 0) {
    fmt::print(out, "\nSelected: layer {} and expert L{}E{:03d}, clean-active at the final position in {}/{} validation cases\n",
               lstar, lstar, estar, d.validation_clean_active, d.validation_cases);
  } else if (d.has_expert_selection) {
    fmt::print(out, "\nSelected: layer {}; no expert met the candidate threshold\n", lstar);
  } else {
    fmt::print(out, "\nSelected: layer {}; no expert traced yet\n", lstar);
  }
  const std::vector<std::pair<std::string, std::string>> order{
      {measure::kLayerRescue, fmt::format("layer {} rescue", lstar)},
      {measure::kLayerRescueNormalized, fmt::format("layer {} rescue (normalised)", lstar)},
      {measure::kExpertRescue, fmt::format("expert L{}E{:03d} rescue", lstar, estar)},
      {measure::kSpecificity, "specificity vs sampled controls"},
      {measure::kSpecificityGateMatched, "specificity vs gate-matched"},
      {measure::kSpecificityEqualNorm, "specificity, equal-norm patches"},
      {measure::coalition("clean_topk"), "coalition: clean top-k"},
      {measure::coalition("union"), "coalition: union"}};
  table(out, d, 1, "Held-out validation (selection fixed on discovery)", d.validation, order);
  table(out, d, 0, "Discovery (where the selection was made; optimistic)", d.discovery, order);
  print_experts_by_layer(out, d);
  if (const SummaryRecord* v = find(d.validation, measure::kLayerRescue))
    fmt::print(out, "\nLocalisation: layer {} validation rescue interval {} zero.\n", lstar,
               v->ci_low > 0 || v->ci_high < 0 ? "excludes" : "includes");
  if (const SummaryRecord* v = find(d.validation, measure::kSpecificity); v && estar >= 0) {
    const auto deg = degenerate_reason(d, *v, 1);
    fmt::print(out, "Specificity of L{}E{:03d}: {} ({}).\n", lstar, estar, interval(*v),
               deg ? *deg
                   : (v->ci_low > 0 ? "more than its peers"
                                    : (v->ci_high < 0 ? "less than its peers" : "not distinguishable from its peers")));
  }

  std::string group;
  for (const RobustnessRow& r : d.robustness) {
    if (robustness_group_name(r.group) != group) fmt::print(out, "\nRobustness: {}\n", group = robustness_group_name(r.group));
    std::string extra = fmt::format("layer {}", r.selected_layer);
    if (r.selected_expert)
      extra += fmt::format(", expert {}, specificity {} [{}, {}]", *r.selected_expert, format_value(r.specificity_mean),
                           format_value(r.specificity_ci_low), format_value(r.specificity_ci_high));
    fmt::print(out, "  {:<28} n={:<4} rescue {:<38} {}\n", r.rescue.name, r.rescue.n, interval(r.rescue), extra);
  }
}

}  // namespace moetrace
