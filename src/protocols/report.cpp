#include "protocols/report.h"

#include <cmath>
#include <map>

#include <fmt/format.h>
#include <fmt/ostream.h>

#include "results/results_file.h"
#include "util/error.h"

namespace moetrace {
namespace {

std::string interval(const SummaryRecord& s) {
  if (std::isnan(s.mean)) return "n/a";
  return fmt::format("{:+.3f} [{:+.3f}, {:+.3f}]", s.mean, s.ci_low, s.ci_high);
}

const SummaryRecord* find(const std::vector<SummaryRecord>& v, const std::string& name) {
  for (const auto& s : v)
    if (s.name == name) return &s;
  return nullptr;
}

void table(std::ostream& out, const std::string& title, const std::vector<SummaryRecord>& rows,
           const std::vector<std::pair<std::string, std::string>>& order) {
  fmt::print(out, "\n{}\n", title);
  fmt::print(out, "  {:<34} {:>5}  {:<30} {:>7}  {:>9}\n", "measure", "n", "mean [95% bootstrap CI]", "frac>0", "p (flip)");
  for (const auto& [name, label] : order) {
    const SummaryRecord* s = find(rows, name);
    if (!s) continue;
    fmt::print(out, "  {:<34} {:>5}  {:<30} {:>7.3f}  {:>9.4f}\n", label, s->n, interval(*s), s->frac_positive, s->p_value);
  }
}

}  // namespace

void print_report(const std::string& path, std::ostream& out) {
  ResultsFile f(path, ResultsFile::Mode::Read);
  h5::File& h = f.h5();
  const std::string prov = layout::kProvenance;
  fmt::print(out, "moetrace report: {}\n", path);
  fmt::print(out, "  model {}  (backend {}, {} rank(s), commit {})\n", h.attr_string(prov, "model_path"),
             h.attr_string(prov, "backend"), h.attr_int(prov, "ranks"), h.attr_string(prov, "git_commit"));
  if (!h.has_attr(prov, "completed")) fmt::print(out, "  NOTE: the run has not completed; tables show what is there\n");
  if (!h.exists(layout::kCases)) {
    fmt::print(out, "  no cases yet\n");
    return;
  }
  const CaseTable cases = f.read_cases(layout::kCases);
  int disc = 0, val = 0;
  for (int s : cases.split) (s == 0 ? disc : val)++;
  fmt::print(out, "\nCases: {} usable ({} discovery, {} validation) of {} records seen; noise sigma {:.4f}\n",
             cases.case_id.size(), disc, val, h.attr_int(layout::kCases, "records_seen"),
             h.attr_double(layout::kCases, "noise_sigma"));
  if (h.exists(std::string(layout::kSkipped) + "/reason")) {
    std::map<std::string, int> counts;
    for (const std::string& r : h.read_strings(std::string(layout::kSkipped) + "/reason")) ++counts[r];
    for (const auto& [reason, n] : counts) fmt::print(out, "  skipped {:>6}  {}\n", n, reason);
  }

  if (!h.has_attr(layout::kLayerSweep, "selected_layer")) return;
  const int lstar = static_cast<int>(h.attr_int(layout::kLayerSweep, "selected_layer"));
  const auto means = h.read_double(std::string(layout::kLayerSweep) + "/discovery_mean");
  const std::string sweep_ds = std::string(layout::kLayerSweep) + "/rescue";
  fmt::print(out, "\nLayer sweep (site {}, window {}): mean rescue on discovery cases by layer\n",
             h.attr_string(sweep_ds, "site"), h.attr_int(sweep_ds, "window"));
  for (std::size_t l = 0; l < means.data.size(); ++l)
    fmt::print(out, "  layer {:>3}  {:+.3f}{}\n", l, means.data[l], static_cast<int>(l) == lstar ? "   <- selected" : "");

  const int estar = h.has_attr(layout::kExperts, "selected_expert") ? static_cast<int>(h.attr_int(layout::kExperts, "selected_expert")) : -1;
  const auto val_rows = f.read_summaries(layout::kValidation);
  if (estar >= 0) {
    const std::int64_t active = h.attr_int(layout::kValidation, "selected_expert_clean_active");
    fmt::print(out, "\nSelected: layer {} and expert L{}E{:03d}, clean-active at the final position in {}/{} validation cases\n",
               lstar, lstar, estar, active, h.attr_int(layout::kValidation, "cases"));
  } else {
    fmt::print(out, "\nSelected: layer {}; no expert met the candidate threshold\n", lstar);
  }
  const std::vector<std::pair<std::string, std::string>> order{
      {"layer_rescue", fmt::format("layer {} rescue", lstar)},
      {"layer_rescue_normalized", fmt::format("layer {} rescue (normalised)", lstar)},
      {"expert_rescue", fmt::format("expert L{}E{:03d} rescue", lstar, estar)},
      {"specificity", "specificity vs sampled controls"},
      {"specificity_gate_matched", "specificity vs gate-matched"},
      {"specificity_equal_norm", "specificity, equal-norm patches"},
      {"coalition_clean_topk", "coalition: clean top-k"},
      {"coalition_union", "coalition: union"}};
  table(out, "Held-out validation (selection fixed on discovery)", val_rows, order);
  table(out, "Discovery (where the selection was made; optimistic)", f.read_summaries(layout::kDiscovery), order);
  if (const SummaryRecord* s = find(val_rows, "layer_rescue"))
    fmt::print(out, "\nLocalisation: layer {} validation rescue interval {} zero.\n", lstar,
               s->ci_low > 0 || s->ci_high < 0 ? "excludes" : "includes");
  if (const SummaryRecord* s = find(val_rows, "specificity"); s && estar >= 0)
    fmt::print(out, "Specificity of L{}E{:03d}: {} ({}).\n", lstar, estar, interval(*s),
               s->ci_low > 0 ? "more than its peers" : (s->ci_high < 0 ? "less than its peers" : "not distinguishable from its peers"));

  const std::string rob = layout::kRobustness;
  for (const char* g : {"noise_multiplier", "filter", "splits"}) {
    const std::string group = rob + "/" + g;
    const auto rows = f.read_summaries(group);
    if (rows.empty()) continue;
    fmt::print(out, "\nRobustness: {}\n", g);
    for (const auto& s : rows) {
      const std::string o = group + "/" + s.name;
      std::string extra = fmt::format("layer {}", h.attr_int(o, "selected_layer"));
      if (h.has_attr(o, "selected_expert"))
        extra += fmt::format(", expert {}, specificity {:+.3f} [{:+.3f}, {:+.3f}]", h.attr_int(o, "selected_expert"),
                             h.attr_double(o, "specificity_mean"), h.attr_double(o, "specificity_ci_low"),
                             h.attr_double(o, "specificity_ci_high"));
      fmt::print(out, "  {:<28} n={:<4} rescue {:<30} {}\n", s.name, s.n, interval(s), extra);
    }
  }
}

}  // namespace moetrace
