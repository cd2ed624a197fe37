#include "protocols/sweeps.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "util/error.h"

namespace moetrace {
namespace {

Site parse_site(const std::string& s) {
  if (s == "hidden") return Site::Hidden;
  if (s == "attn") return Site::Attn;
  return Site::Moe;
}

// ||c_e(clean) - c_e(noised)|| at (layer, position); c_e = 0 where e is not routed.
double delta_norm(Backend& b, const RunRecord& clean, const RunRecord& noised, int layer, int pos, int e, int H) {
  std::vector<float> delta(H, 0.0f), row(H);
  auto add = [&](const RunRecord& r, float sign) {
    const LayerRecord& L = r.layers[layer];
    const int slot = L.routing.slot_of(pos, e);
    if (slot < 0) return;
    TensorPtr t = b.gather_rows(*L.updates, {pos * L.routing.k + slot});
    b.download(*t, row.data());
    for (int i = 0; i < H; ++i) delta[i] += sign * row[i];
  };
  add(clean, 1.0f);
  add(noised, -1.0f);
  double s = 0;
  for (float v : delta) s += static_cast<double>(v) * v;
  return std::sqrt(s);
}

}  // namespace

Sweeps::Sweeps(const RunConfig& config, CaseTracer& tracer) : config_(config), tracer_(tracer) {}

std::vector<int> Sweeps::sweep_positions(const Prompt& p) const {
  switch (config_.sweep_positions) {
    case SweepPositions::Final: return {p.num_tokens() - 1};
    case SweepPositions::LastSubject: return {p.subject_end - 1};
    case SweepPositions::Subject: {
      std::vector<int> v(p.subject_end - p.subject_begin);
      std::iota(v.begin(), v.end(), p.subject_begin);
      return v;
    }
  }
  return {};
}

std::vector<double> Sweeps::rescues(const TracedCase& tc, const std::vector<Condition>& conditions) const {
  const int S = static_cast<int>(tc.noised.size());
  std::vector<PatchedRun> runs;
  for (int s = 0; s < S; ++s)
    for (const Condition& c : conditions) runs.push_back({&tc, s, &c});
  const std::vector<float> d = tracer_.evaluate(runs, PatchMode::FastPath);
  std::vector<double> out(conditions.size(), 0.0);
  for (int s = 0; s < S; ++s)
    for (std::size_t i = 0; i < conditions.size(); ++i)
      out[i] += (static_cast<double>(d[s * conditions.size() + i]) - tc.noised[s].contrast) / S;
  return out;
}

std::vector<double> Sweeps::layer_sweep(const TracedCase& tc) const {
  const int L = tracer_.engine().model().config.num_layers;
  std::vector<Condition> conds;
  for (int l = 0; l < L; ++l)
    conds.push_back(restore_window(parse_site(config_.sweep_site), l, config_.sweep_window, L, sweep_positions(tc.prompt)));
  return rescues(tc, conds);
}

ExpertRow Sweeps::expert_layer(const TracedCase& tc, int layer) const {
  const ModelConfig& c = tracer_.engine().model().config;
  const int last = tc.prompt.num_tokens() - 1;
  const Routing& routing = tc.clean.record->layers[layer].routing;
  ExpertRow row{std::vector<double>(c.num_experts, NAN), std::vector<double>(c.num_experts, 0.0),
                std::vector<double>(c.num_experts, 0.0)};
  std::vector<Condition> conds;
  std::vector<int> experts;
  for (int j = 0; j < c.top_k; ++j) {
    const int e = routing.expert(last, j);
    row.clean_active[e] = 1;
    row.clean_weight[e] = routing.weights[last * c.top_k + j];
    experts.push_back(e);
    conds.push_back(restore_experts(layer, {last}, ExpertSet::Listed, {e}));
  }
  const std::vector<double> r = rescues(tc, conds);
  for (std::size_t i = 0; i < experts.size(); ++i) row.rescue[experts[i]] = r[i];
  return row;
}

std::pair<double, double> Sweeps::equal_norm(const TracedCase& tc, int layer, int expert, int control) const {
  const int H = tracer_.engine().model().config.hidden_size, last = tc.prompt.num_tokens() - 1;
  const int S = static_cast<int>(tc.noised.size());
  std::vector<Condition> conds;
  for (int s = 0; s < S; ++s) {
    MOETRACE_ASSERT(tc.noised[s].record && tc.noised[s].record->level == RecordLevel::Full,
                    "equal-norm controls need fully recorded noised runs");
    Backend& b = tracer_.engine().backend();
    const double n1 = delta_norm(b, *tc.clean.record, *tc.noised[s].record, layer, last, expert, H);
    const double n2 = delta_norm(b, *tc.clean.record, *tc.noised[s].record, layer, last, control, H);
    const double target = std::min(n1, n2);
    for (auto [e, n] : {std::pair{expert, n1}, std::pair{control, n2}}) {
      Condition c = restore_experts(layer, {last}, ExpertSet::Listed, {e});
      c.patches[0].scale = n > 0 ? static_cast<float>(target / n) : 0.0f;
      conds.push_back(std::move(c));
    }
  }
  // Each sample has its own scales, so runs are built per sample rather than through rescues().
  std::vector<PatchedRun> runs;
  for (int s = 0; s < S; ++s)
    for (int j = 0; j < 2; ++j) runs.push_back({&tc, s, &conds[2 * s + j]});
  const std::vector<float> d = tracer_.evaluate(runs, PatchMode::FastPath);
  std::pair<double, double> out{0, 0};
  for (int s = 0; s < S; ++s) {
    out.first += (d[2 * s] - tc.noised[s].contrast) / static_cast<double>(S);
    out.second += (d[2 * s + 1] - tc.noised[s].contrast) / static_cast<double>(S);
  }
  return out;
}

double Sweeps::coalition(const TracedCase& tc, int layer, const std::string& set) const {
  const int last = tc.prompt.num_tokens() - 1;
  return rescues(tc, {restore_experts(layer, {last}, set == "union" ? ExpertSet::Union : ExpertSet::CleanRouted)})[0];
}

std::vector<double> Sweeps::heatmap(const TracedCase& tc, Site site) const {
  const int L = tracer_.engine().model().config.num_layers, T = tc.prompt.num_tokens();
  std::vector<Condition> conds;
  for (int l = 0; l < L; ++l)
    for (int t = 0; t < T; ++t) conds.push_back(restore_site(site, l, {t}));
  return rescues(tc, conds);
}

}  // namespace moetrace
