#include "protocols/sweeps.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "engine/run_record.h"
#include "util/error.h"

namespace moetrace {
Sweeps::Sweeps(const RunConfig& config, CaseTracer& tracer) : config_(config), tracer_(tracer) {}

std::vector<int> Sweeps::sweep_positions(const RunConfig& config, const Prompt& p) {
  switch (config.sweep_positions) {
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

std::vector<std::vector<double>> Sweeps::rescues(const Chunk& cases,
                                                 const std::vector<std::vector<Condition>>& conditions) const {
  MOETRACE_ASSERT(cases.size() == conditions.size(), "one condition list per case");
  std::vector<PatchedRun> runs;
  for (std::size_t c = 0; c < cases.size(); ++c)
    for (int s = 0; s < static_cast<int>(cases[c]->noised.size()); ++s)
      for (const Condition& cond : conditions[c]) runs.push_back({cases[c], s, &cond});
  const std::vector<float> d = tracer_.evaluate(runs, PatchMode::FastPath);
  std::vector<std::vector<double>> out(cases.size());
  std::size_t k = 0;
  for (std::size_t c = 0; c < cases.size(); ++c) {
    const TracedCase& tc = *cases[c];
    const int S = static_cast<int>(tc.noised.size());
    out[c].assign(conditions[c].size(), 0.0);
    for (int s = 0; s < S; ++s)
      for (std::size_t i = 0; i < conditions[c].size(); ++i)
        out[c][i] += (static_cast<double>(d[k++]) - tc.noised[s].contrast) / S;
  }
  return out;
}

std::vector<Condition> Sweeps::layer_sweep_conditions(const RunConfig& config, const Prompt& p, int layers) {
  std::vector<Condition> conds;
  for (int l = 0; l < layers; ++l)
    conds.push_back(restore_window(config.sweep_site, l, config.sweep_window, layers, sweep_positions(config, p)));
  return conds;
}

Condition Sweeps::expert_condition(int layer, int position, int expert) {
  return restore_experts(layer, {position}, ExpertSet::Listed, {expert});
}

std::vector<Condition> Sweeps::coalition_conditions(int layer, int position, const std::vector<CoalitionSet>& sets) {
  std::vector<Condition> conds;
  for (CoalitionSet set : sets)
    conds.push_back(restore_experts(layer, {position}, set == CoalitionSet::Union ? ExpertSet::Union : ExpertSet::CleanRouted));
  return conds;
}

std::vector<Condition> Sweeps::heatmap_conditions(int tokens, int layers) {
  constexpr Site kSites[] = {Site::Hidden, Site::Attn, Site::Moe};
  std::vector<Condition> conds;
  for (Site site : kSites)
    for (int l = 0; l < layers; ++l)
      for (int t = 0; t < tokens; ++t) conds.push_back(restore_site(site, l, {t}));
  return conds;
}

std::vector<std::vector<double>> Sweeps::layer_sweep(const Chunk& cases) const {
  const int L = tracer_.engine().model().config.num_layers;
  std::vector<std::vector<Condition>> conds(cases.size());
  for (std::size_t c = 0; c < cases.size(); ++c) conds[c] = layer_sweep_conditions(config_, cases[c]->prompt, L);
  return rescues(cases, conds);
}

std::vector<std::vector<ExpertRow>> Sweeps::expert_layers(const Chunk& cases, const std::vector<int>& layers) const {
  const ModelConfig& mc = tracer_.engine().model().config;
  std::vector<std::vector<ExpertRow>> rows(cases.size());
  std::vector<std::vector<Condition>> conds(cases.size());
  std::vector<std::vector<std::pair<int, int>>> where(cases.size());  // condition -> (layer index, expert)
  for (std::size_t c = 0; c < cases.size(); ++c) {
    const TracedCase& tc = *cases[c];
    const int last = tc.prompt.num_tokens() - 1;
    for (std::size_t li = 0; li < layers.size(); ++li) {
      const int layer = layers[li];
      const Routing& routing = tc.clean.record->layers[layer].routing;
      ExpertRow row{std::vector<double>(mc.num_experts, NAN), std::vector<double>(mc.num_experts, 0.0),
                    std::vector<double>(mc.num_experts, 0.0)};
      for (int j = 0; j < mc.top_k; ++j) {
        const int e = routing.expert(last, j);
        row.clean_active[e] = 1;
        row.clean_weight[e] = routing.weights[last * mc.top_k + j];
        conds[c].push_back(expert_condition(layer, last, e));
        where[c].emplace_back(static_cast<int>(li), e);
      }
      rows[c].push_back(std::move(row));
    }
  }
  const auto r = rescues(cases, conds);
  for (std::size_t c = 0; c < cases.size(); ++c)
    for (std::size_t i = 0; i < where[c].size(); ++i) rows[c][where[c][i].first].rescue[where[c][i].second] = r[c][i];
  return rows;
}

std::vector<std::pair<double, double>> Sweeps::equal_norm(const std::vector<EqualNormRequest>& requests, int layer) const {
  // Per sample: ||restored update - noised update|| of the expert and of the control, then each
  // restored with its update scaled to the smaller of the two.
  std::vector<ExpertUpdateDistance> sizes;
  for (const EqualNormRequest& q : requests) {
    const TracedCase& tc = *q.traced;
    const int last = tc.prompt.num_tokens() - 1;
    for (const StreamOutput& run : tc.noised) {
      MOETRACE_ASSERT(run.record && tc.noised_full_from >= 0 && tc.noised_full_from <= layer,
                      "equal-norm controls need noised runs recorded in full at their layer");
      for (int e : {q.expert, q.control}) sizes.push_back({tc.clean.record.get(), run.record.get(), layer, last, e});
    }
  }
  const std::vector<double> n = expert_update_distances(tracer_.engine().backend(), sizes);
  // Each sample has its own scales, so runs are built per sample rather than through rescues().
  std::vector<Condition> conds;
  std::vector<PatchedRun> runs;
  for (std::size_t i = 0; i < sizes.size(); i += 2) {
    const double target = std::min(n[i], n[i + 1]);
    for (std::size_t j = i; j < i + 2; ++j) {
      Condition c = expert_condition(layer, sizes[j].position, sizes[j].expert);
      c.patches[0].scale = n[j] > 0 ? static_cast<float>(target / n[j]) : 0.0f;
      conds.push_back(std::move(c));
    }
  }
  std::size_t k = 0;
  for (const EqualNormRequest& q : requests)
    for (int s = 0; s < static_cast<int>(q.traced->noised.size()); ++s)
      for (int j = 0; j < 2; ++j) runs.push_back({q.traced, s, &conds[k++]});
  const std::vector<float> d = tracer_.evaluate(runs, PatchMode::FastPath);
  std::vector<std::pair<double, double>> out;
  k = 0;
  for (const EqualNormRequest& q : requests) {
    const TracedCase& tc = *q.traced;
    const int S = static_cast<int>(tc.noised.size());
    std::pair<double, double> o{0, 0};
    for (int s = 0; s < S; ++s) {
      o.first += (d[k++] - tc.noised[s].contrast) / static_cast<double>(S);
      o.second += (d[k++] - tc.noised[s].contrast) / static_cast<double>(S);
    }
    out.push_back(o);
  }
  return out;
}

std::vector<std::vector<double>> Sweeps::coalitions(const Chunk& cases, int layer,
                                                    const std::vector<CoalitionSet>& sets) const {
  std::vector<std::vector<Condition>> conds(cases.size());
  for (std::size_t c = 0; c < cases.size(); ++c)
    conds[c] = coalition_conditions(layer, cases[c]->prompt.num_tokens() - 1, sets);
  return rescues(cases, conds);
}

std::vector<std::vector<std::vector<double>>> Sweeps::heatmaps(const Chunk& cases) const {
  const int L = tracer_.engine().model().config.num_layers;
  std::vector<std::vector<Condition>> conds(cases.size());
  for (std::size_t c = 0; c < cases.size(); ++c) conds[c] = heatmap_conditions(cases[c]->prompt.num_tokens(), L);
  const auto r = rescues(cases, conds);
  std::vector<std::vector<std::vector<double>>> out(cases.size());
  for (std::size_t c = 0; c < cases.size(); ++c) {
    const std::size_t cells = r[c].size() / 3;
    for (int k = 0; k < 3; ++k)
      out[c].emplace_back(r[c].begin() + static_cast<std::ptrdiff_t>(k * cells), r[c].begin() + static_cast<std::ptrdiff_t>((k + 1) * cells));
  }
  return out;
}

}  // namespace moetrace
